"""Run requests on Azurite: queued runs, the one-active-run guard, request_all, cancel."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.errors import NotFoundError
from shared.models import Run, RunStatus, Trigger
from shared.runs.clock import new_run_id, utc_now_iso
from shared.runs.requests import (
    ActiveRunError,
    ExportNotRunnableError,
    cancel_run,
    request_all,
    request_run,
)
from tests.runs.helpers import make_connection, make_export


def queued_messages(store: Any) -> list[Any]:
    return store.queue.receive(max_messages=32, visibility_timeout=1)


def all_runs(store: Any, export_id: str) -> list[Run]:
    runs, _ = store.runs.list(export_id, limit=100)
    return runs


def test_request_run_records_a_queued_run_claims_the_export_and_enqueues(
    store: Any, emu: Any
) -> None:
    export = make_export(store, make_connection(store, emu), ["A", "B"])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann", dry_run=True)
    assert run.status is RunStatus.QUEUED and run.trigger is Trigger.ON_DEMAND
    assert run.dry_run and run.requested_by == "ann" and run.queued_at.endswith("Z")
    assert [s.segment for s in run.segments] == ["A", "B"]
    assert store.active_runs.get(export.id) == run.id
    [received] = queued_messages(store)
    assert (received.message.export_id, received.message.run_id, received.message.slice) == (
        export.id,
        run.id,
        0,
    )


def test_second_request_is_refused_naming_the_active_run_and_records_nothing(
    store: Any, emu: Any
) -> None:
    export = make_export(store, make_connection(store, emu), ["A"])
    first = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    with pytest.raises(ActiveRunError) as refused:
        request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="bob")
    assert refused.value.active_run_id == first.id
    assert first.id in str(refused.value)
    assert [r.id for r in all_runs(store, export.id)] == [first.id]


def test_unknown_and_detached_exports_are_refused(store: Any, emu: Any) -> None:
    connection = make_connection(store, emu)
    export = make_export(store, connection, ["A"])
    with pytest.raises(NotFoundError):
        request_run(store, "no-such-export", trigger=Trigger.ON_DEMAND, requested_by="ann")
    store.exports.detach_connection(connection.id)
    with pytest.raises(ExportNotRunnableError) as refused:
        request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert "detached" in refused.value.reason
    assert all_runs(store, export.id) == []
    assert store.active_runs.get(export.id) is None


def test_request_all_queues_enabled_attached_exports_and_records_skips(
    store: Any, emu: Any
) -> None:
    connection = make_connection(store, emu)
    other = make_connection(store, emu)
    busy = make_export(store, connection, ["A"], name="busy")
    idle = make_export(store, connection, ["B"], name="idle")
    disabled = make_export(store, connection, ["C"], name="disabled", enabled=False)
    detached = make_export(store, other, ["D"], name="detached")
    store.exports.detach_connection(other.id)
    active = request_run(store, busy.id, trigger=Trigger.ON_DEMAND, requested_by="ann")

    runs = request_all(store, trigger=Trigger.SCHEDULE, requested_by="schedule")

    by_export = {r.export_id: r for r in runs}
    assert set(by_export) == {busy.id, idle.id}
    skipped = by_export[busy.id]
    assert skipped.status is RunStatus.SKIPPED and skipped.trigger is Trigger.SCHEDULE
    assert skipped.reason is not None and active.id in skipped.reason
    assert skipped.finished_at is not None
    assert by_export[idle.id].status is RunStatus.QUEUED
    assert store.active_runs.get(busy.id) == active.id  # the skip did not touch the marker
    assert all_runs(store, disabled.id) == [] and all_runs(store, detached.id) == []
    assert {m.message.run_id for m in queued_messages(store)} == {active.id, by_export[idle.id].id}


def test_cancel_of_a_queued_run_is_immediate_and_frees_the_export(store: Any, emu: Any) -> None:
    export = make_export(store, make_connection(store, emu), ["A"])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    canceled = cancel_run(store, export.id, run.id, requested_by="bob")
    assert canceled.status is RunStatus.CANCELED and canceled.cancel_requested
    assert canceled.reason == "canceled by bob before it started"
    assert store.active_runs.get(export.id) is None
    again = cancel_run(store, export.id, run.id, requested_by="carl")  # final: unchanged
    assert again.reason == canceled.reason
    assert request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann").id != run.id


def test_cancel_of_a_running_run_only_asks_it_to_stop(store: Any, emu: Any) -> None:
    export = make_export(store, make_connection(store, emu), ["A"])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    run.status = RunStatus.RUNNING
    store.runs.update(run)
    asked = cancel_run(store, export.id, run.id, requested_by="bob")
    assert asked.status is RunStatus.RUNNING and asked.cancel_requested
    assert asked.reason is not None and "bob" in asked.reason
    assert store.active_runs.get(export.id) == run.id


def test_a_marker_left_by_a_finished_run_does_not_block_the_export(store: Any, emu: Any) -> None:
    export = make_export(store, make_connection(store, emu), ["A"])
    now = utc_now_iso()
    finished = store.runs.create(
        Run(
            export_id=export.id,
            id=new_run_id(),
            trigger=Trigger.ON_DEMAND,
            status=RunStatus.SUCCEEDED,
            queued_at=now,
            finished_at=now,
        )
    )
    assert store.active_runs.claim(export.id, finished.id) is None  # as if release was lost
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert store.active_runs.get(export.id) == run.id


def test_a_marker_naming_a_recent_unrecorded_run_still_blocks(store: Any, emu: Any) -> None:
    export = make_export(store, make_connection(store, emu), ["A"])
    in_flight = new_run_id()  # claimed by a requester that has not written its run yet
    assert store.active_runs.claim(export.id, in_flight) is None
    with pytest.raises(ActiveRunError):
        request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")


@pytest.mark.parametrize("round_", range(4))
def test_on_demand_and_schedule_racing_exactly_one_wins(store: Any, emu: Any, round_: int) -> None:
    export = make_export(store, make_connection(store, emu), ["A"])
    barrier = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def on_demand() -> None:
        barrier.wait()
        try:
            outcomes["on-demand"] = request_run(
                store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann"
            )
        except ActiveRunError as exc:
            outcomes["on-demand"] = exc

    def schedule() -> None:
        barrier.wait()
        outcomes["schedule"] = request_all(store, trigger=Trigger.SCHEDULE, requested_by="schedule")

    threads = [threading.Thread(target=on_demand), threading.Thread(target=schedule)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    runs = all_runs(store, export.id)
    queued = [r for r in runs if r.status is RunStatus.QUEUED]
    assert len(queued) == 1
    winner = queued[0]
    assert store.active_runs.get(export.id) == winner.id
    assert [m.message.run_id for m in queued_messages(store)] == [winner.id]
    if winner.trigger is Trigger.ON_DEMAND:
        [skipped] = outcomes["schedule"]
        assert skipped.status is RunStatus.SKIPPED and winner.id in (skipped.reason or "")
        assert len(runs) == 2
    else:
        assert isinstance(outcomes["on-demand"], ActiveRunError)
        assert outcomes["on-demand"].active_run_id == winner.id
        assert len(runs) == 1
