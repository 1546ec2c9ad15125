"""The worker end to end on Azurite + the emulator: results, list reuse, rejections, slices."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from shared.models import ExportMode, RejectionReason, RunStatus, Trigger
from shared.runs.requests import request_run
from shared.runs.worker import Outcome, process_message
from shared.store import encode_message
from tests.runs.helpers import (
    active_contacts,
    customer_id,
    drain,
    list_id_of,
    make_connection,
    make_export,
    seed_customers,
    seed_segment,
)


def active_indices(emu: Any, indices: range) -> list[int]:
    return [i for i in indices if not emu.is_inactive(i)]


def test_a_run_makes_the_list_equal_the_matched_segment_and_explains_the_rest(
    store: Any, settings: Any, emu: Any
) -> None:
    indices = range(0, 400)
    seed_customers(store, emu, indices, contact={5: "", 6: "not-a-guid"})
    # 400..409 are members with no customer row at all
    seed_segment(store, "Spring", [*indices, *range(400, 410)])
    export = make_export(store, make_connection(store, emu), ["Spring"], name="Promo")
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")

    final = drain(store, settings, run)

    expected = active_contacts(emu.config, [i for i in indices if i not in (5, 6)])
    list_id = list_id_of(final, "Spring")
    assert emu.state.list_members(list_id) == expected
    [segment] = final.segments
    assert segment.complete and segment.error is None and segment.list_created
    assert (segment.members, segment.matched, segment.added) == (410, len(expected), len(expected))
    inactive = sum(1 for i in indices if i not in (5, 6) and emu.is_inactive(i))
    assert segment.left_out == {
        RejectionReason.NO_CUSTOMER_RECORD.value: 10,
        RejectionReason.EMPTY_CONTACT_ID.value: 1,
        RejectionReason.MALFORMED_CONTACT_ID.value: 1,
        **({RejectionReason.CONTACT_INACTIVE.value: inactive} if inactive else {}),
    }
    assert final.status is RunStatus.SUCCEEDED  # left-out members are reported, not failures
    assert final.reason is not None and "members left out" in final.reason
    assert final.started_at and final.finished_at and final.slices >= 1
    rejections, _ = store.rejections.list(export.id, run.id, limit=1000)
    assert len(rejections) == sum(segment.left_out.values())
    assert {
        r.customer_id for r in rejections if r.reason is RejectionReason.NO_CUSTOMER_RECORD
    } == {customer_id(i) for i in range(400, 410)}
    assert store.export_state.get(export.id)["Spring"].list_id == list_id
    assert store.active_runs.get(export.id) is None
    assert store.leases.get(export.id) is None


def test_later_runs_reuse_the_list_and_mirror_segment_changes(
    store: Any, settings: Any, emu: Any
) -> None:
    first_members = active_indices(emu, range(1000, 1300))
    seed_customers(store, emu, range(1000, 1400))
    seed_segment(store, "Loyal", first_members)
    export = make_export(store, make_connection(store, emu), ["Loyal"])
    first = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    assert first.status is RunStatus.SUCCEEDED and first.reason is None
    list_id = list_id_of(first, "Loyal")
    emu.state.update_list(list_id, {"listname": "Renamed in Sales"})

    unchanged = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.SCHEDULE, requested_by="s")
    )
    assert list_id_of(unchanged, "Loyal") == list_id
    assert (unchanged.segments[0].added, unchanged.segments[0].removed) == (0, 0)
    assert unchanged.status is RunStatus.SUCCEEDED

    second_members = first_members[100:] + active_indices(emu, range(1300, 1400))
    seed_segment(store, "Loyal", second_members)
    changed = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    assert list_id_of(changed, "Loyal") == list_id
    assert emu.state.list_members(list_id) == {emu.contact_id(i) for i in second_members}
    assert changed.segments[0].removed == 100
    assert changed.segments[0].added == len(active_indices(emu, range(1300, 1400)))
    history, _ = store.runs.list(export.id)
    assert [r.id for r in history] == [changed.id, unchanged.id, first.id]


def test_additive_mode_never_removes(store: Any, settings: Any, emu: Any) -> None:
    members = active_indices(emu, range(2000, 2100))
    seed_customers(store, emu, members)
    seed_segment(store, "Adds", members)
    export = make_export(store, make_connection(store, emu), ["Adds"], mode=ExportMode.ADDITIVE)
    first = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    seed_segment(store, "Adds", members[:50])
    second = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    assert second.segments[0].removed == 0
    assert emu.state.list_members(list_id_of(first, "Adds")) == {emu.contact_id(i) for i in members}


def test_a_deleted_list_is_recreated_and_the_new_id_kept(
    store: Any, settings: Any, emu: Any
) -> None:
    members = active_indices(emu, range(3000, 3050))
    seed_customers(store, emu, members)
    seed_segment(store, "Gone", members)
    export = make_export(store, make_connection(store, emu), ["Gone"])
    first = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    old = list_id_of(first, "Gone")
    assert emu.state.delete_list(old)
    second = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    new = list_id_of(second, "Gone")
    assert new != old and second.segments[0].list_recreated
    assert emu.state.list_members(new) == {emu.contact_id(i) for i in members}
    assert store.export_state.get(export.id)["Gone"].list_id == new
    assert second.status is RunStatus.SUCCEEDED


def test_all_members_unmatched_is_partial_with_a_clear_reason(
    store: Any, settings: Any, emu: Any
) -> None:
    seed_customers(store, emu, range(3100, 3120), contact=dict.fromkeys(range(3100, 3120), ""))
    seed_segment(store, "Nobody", range(3100, 3120))
    export = make_export(store, make_connection(store, emu), ["Nobody"])
    final = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    assert final.status is RunStatus.PARTIALLY_SUCCEEDED
    assert final.reason is not None and "none of the 20 members matched" in final.reason
    assert final.segments[0].left_out == {RejectionReason.EMPTY_CONTACT_ID.value: 20}


def test_a_removed_segment_keeps_its_list_and_the_next_run_says_so(
    store: Any, settings: Any, emu: Any
) -> None:
    a, b = active_indices(emu, range(3200, 3230)), active_indices(emu, range(3230, 3260))
    seed_customers(store, emu, [*a, *b])
    seed_segment(store, "KeepA", a)
    seed_segment(store, "DropB", b)
    export = make_export(store, make_connection(store, emu), ["KeepA", "DropB"])
    first = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    b_list = list_id_of(first, "DropB")
    current = store.exports.get(export.id)
    store.exports.update(dataclasses.replace(current, segments=["KeepA"]), current.etag)
    second = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    assert [s.segment for s in second.segments] == ["KeepA"]
    assert second.reason is not None and "'DropB'" in second.reason and b_list in second.reason
    assert emu.state.list_members(b_list) == {emu.contact_id(i) for i in b}


def test_a_missing_segment_fails_that_segment_only(store: Any, settings: Any, emu: Any) -> None:
    members = active_indices(emu, range(3300, 3320))
    seed_customers(store, emu, members)
    seed_segment(store, "Present", members)
    export = make_export(store, make_connection(store, emu), ["Present", "Absent"])
    final = drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    assert final.status is RunStatus.PARTIALLY_SUCCEEDED
    absent = final.segments[1]
    assert absent.error is not None and "does not exist" in absent.error
    assert final.reason is not None and "1 of 2 segments synced" in final.reason


def test_dry_run_plans_but_writes_nothing_to_sales(store: Any, settings: Any, emu: Any) -> None:
    members = active_indices(emu, range(3400, 3450))
    seed_customers(store, emu, members)
    seed_segment(store, "DryRunSeg", members)
    export = make_export(store, make_connection(store, emu), ["DryRunSeg"])
    lists_before = len(emu.state.all_lists())
    final = drain(
        store,
        settings,
        request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a", dry_run=True),
    )
    assert final.status is RunStatus.SUCCEEDED and final.dry_run
    assert final.segments[0].added == len(members) and final.segments[0].list_id is None
    assert len(emu.state.all_lists()) == lists_before
    assert store.export_state.get(export.id) == {}


def test_duplicate_delivery_does_no_double_work(store: Any, settings: Any, emu: Any) -> None:
    members = active_indices(emu, range(3500, 3600))
    seed_customers(store, emu, members)
    seed_segment(store, "Twice", members)
    export = make_export(store, make_connection(store, emu), ["Twice"])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    [received] = store.queue.receive(max_messages=1, visibility_timeout=30)
    body = encode_message(received.message)
    assert process_message(store, settings, body) is Outcome.FINISHED
    requests_after_first = emu.stats()["requests_total"]
    assert process_message(store, settings, body, dequeue_count=2) is Outcome.DUPLICATE
    assert emu.stats()["requests_total"] == requests_after_first
    final = store.runs.get(export.id, run.id)
    assert final.status is RunStatus.SUCCEEDED and final.slices == 1
    assert final.segments[0].added == len(members)


def test_undecodable_and_orphan_messages_are_dropped(store: Any, settings: Any) -> None:
    assert process_message(store, settings, b"\xff not a message") is Outcome.DROPPED
    orphan = '{"exportId":"nope","runId":"gone","slice":0}'
    assert process_message(store, settings, orphan) is Outcome.DROPPED


def test_racing_on_demand_and_schedule_apply_changes_once(
    store: Any, settings: Any, emu: Any
) -> None:
    import threading

    from shared.runs.requests import ActiveRunError, request_all

    members = active_indices(emu, range(3700, 3760))
    seed_customers(store, emu, members)
    seed_segment(store, "Raced", members)
    export = make_export(store, make_connection(store, emu), ["Raced"])
    barrier = threading.Barrier(2)

    def on_demand() -> None:
        barrier.wait()
        with contextlib.suppress(ActiveRunError):
            request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")

    def schedule() -> None:
        barrier.wait()
        request_all(store, trigger=Trigger.SCHEDULE, requested_by="schedule")

    threads = [threading.Thread(target=on_demand), threading.Thread(target=schedule)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emu.reset_stats()
    runs, _ = store.runs.list(export.id)
    [winner] = [r for r in runs if r.status is RunStatus.QUEUED]
    final = drain(store, settings, winner)

    assert final.status is RunStatus.SUCCEEDED
    assert emu.stats()["members_added"] == len(members)
    assert len(emu.state.find_lists("Raced")) == 1
    others = [r for r in store.runs.list(export.id)[0] if r.id != winner.id]
    assert all(r.status is RunStatus.SKIPPED and not r.segments for r in others)
