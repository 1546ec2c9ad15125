"""Failure paths: slices and continuation, cancel, lease contention, bad credentials, unreachable
server, poison messages, and a throttling storm. Azurite + the emulator over HTTPS on loopback."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, start_emulator
from shared.models import RunMessage, RunStatus, Trigger
from shared.runs.requests import cancel_run, request_run
from shared.runs.worker import Outcome, process_message
from shared.settings import Settings
from shared.store import encode_message, open_store
from tests.runs.helpers import (
    drain,
    list_id_of,
    make_connection,
    make_export,
    run_env,
    seed_customers,
    seed_segment,
)
from tests.support import Azurite, free_port


@pytest.fixture(scope="module")
def slow_emu() -> Iterator[Any]:
    """Real-time costs: a 100-member chunk takes at least 0.22 s, so tiny slices must split."""
    with start_emulator(EmulatorConfig(contacts=5000, seed=21, time_scale=1.0)) as running:
        yield running


def open_test_store(settings: Settings) -> Any:
    store = open_store(settings)
    store.ensure()
    return store


def seeded_export(store: Any, emu: Any, segment: str, indices: range) -> tuple[Any, list[int]]:
    members = [i for i in indices if not emu.is_inactive(i)]
    seed_customers(store, emu, members)
    seed_segment(store, segment, members)
    return make_export(store, make_connection(store, emu), [segment]), members


def take_message(store: Any) -> str:
    [received] = store.queue.receive(max_messages=1, visibility_timeout=30)
    store.queue.delete(received)
    return encode_message(received.message)


@pytest.fixture
def slow(azurite: Azurite, table_prefix: str, slow_emu: Any) -> Iterator[tuple[Any, Settings]]:
    settings = Settings.from_env(
        run_env(
            azurite,
            table_prefix,
            slow_emu,
            RUN_SLICE_SECONDS="1",
            SALES_CHUNK_SIZE="100",
            SALES_MAX_PARALLEL="1",
        )
    )
    store = open_test_store(settings)
    try:
        yield store, settings
    finally:
        store.close()


def test_a_long_run_continues_across_slices_and_sums_its_figures(
    slow: tuple[Any, Settings], slow_emu: Any
) -> None:
    store, settings = slow
    export, members = seeded_export(store, slow_emu, "Sliced", range(0, 500))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    final = drain(store, settings, run)
    assert final.status is RunStatus.SUCCEEDED
    assert final.slices >= 2  # >= 5 x 0.22 s of modeled chunk work, 0.9 s budgets
    assert slow_emu.state.list_members(list_id_of(final, "Sliced")) == {
        slow_emu.contact_id(i) for i in members
    }
    [segment] = final.segments
    assert segment.added == len(members) and segment.matched == len(members)
    assert segment.complete and segment.progress.phase == "done"


def test_cancel_between_slices_stops_the_run(slow: tuple[Any, Settings], slow_emu: Any) -> None:
    store, settings = slow
    export, members = seeded_export(store, slow_emu, "Stopped", range(1000, 1500))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert process_message(store, settings, take_message(store)) is Outcome.CONTINUED
    asked = cancel_run(store, export.id, run.id, requested_by="bob")
    assert asked.status is RunStatus.RUNNING and asked.cancel_requested
    final = drain(store, settings, run)
    assert final.status is RunStatus.CANCELED
    assert final.reason is not None and "bob" in final.reason
    applied = slow_emu.state.list_members(list_id_of(final, "Stopped"))
    assert 0 < len(applied) < len(members)
    assert final.segments[0].added == len(applied)
    assert store.active_runs.get(export.id) is None


def test_cancel_during_a_slice_stops_at_the_next_chunk(
    azurite: Azurite, table_prefix: str, slow_emu: Any
) -> None:
    settings = Settings.from_env(
        run_env(azurite, table_prefix, slow_emu, SALES_CHUNK_SIZE="100", SALES_MAX_PARALLEL="1")
    )
    store = open_test_store(settings)
    export, members = seeded_export(store, slow_emu, "MidSlice", range(3000, 4500))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    outcome: list[Outcome] = []
    worker = threading.Thread(
        target=lambda: outcome.append(process_message(store, settings, take_message(store)))
    )
    worker.start()
    while store.runs.get(export.id, run.id).segments[0].added == 0 and worker.is_alive():
        time.sleep(0.05)
    cancel_run(store, export.id, run.id, requested_by="bob")
    worker.join(timeout=120)
    assert outcome == [Outcome.FINISHED]
    final = store.runs.get(export.id, run.id)
    assert final.status is RunStatus.CANCELED and final.slices == 1
    assert 0 < final.segments[0].added < len(members)
    store.close()


def test_a_leased_export_makes_the_message_wait_instead_of_failing(
    store: Any, settings: Settings, emu: Any
) -> None:
    export, _ = seeded_export(store, emu, "Leased", range(5000, 5050))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    other = store.leases.acquire(export.id, "another-worker", settings.lease_seconds)
    assert other is not None
    assert process_message(store, settings, take_message(store)) is Outcome.BUSY
    assert store.runs.get(export.id, run.id).status is RunStatus.QUEUED
    store.leases.release(other)
    final = drain(store, settings, run)  # the re-enqueued copy shows up after its delay
    assert final.status is RunStatus.SUCCEEDED


def test_a_stale_slice_delivered_again_after_hand_off_is_dropped(
    slow: tuple[Any, Settings], slow_emu: Any
) -> None:
    store, settings = slow
    export, _ = seeded_export(store, slow_emu, "Handoff", range(2000, 2500))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    first = take_message(store)
    assert process_message(store, settings, first) is Outcome.CONTINUED
    before = store.runs.get(export.id, run.id)
    assert before.slices == 2
    assert process_message(store, settings, first, dequeue_count=2) is Outcome.DUPLICATE
    assert store.runs.get(export.id, run.id).etag == before.etag
    time.sleep(1.1)  # the continuation is enqueued with a 1 s delivery delay
    [pending] = store.queue.receive(max_messages=32, visibility_timeout=30)
    assert (pending.message.run_id, pending.message.slice) == (run.id, 1)


def test_a_refused_secret_fails_the_run_naming_the_setting(
    azurite: Azurite, table_prefix: str, emu: Any
) -> None:
    settings = Settings.from_env(run_env(azurite, table_prefix, emu, SEGEXP_SECRET_WRONG="not-it"))
    store = open_test_store(settings)
    members = [i for i in range(5100, 5110) if not emu.is_inactive(i)]
    seed_customers(store, emu, members)
    seed_segment(store, "Refused", members)
    connection = make_connection(store, emu, secret_setting="SEGEXP_SECRET_WRONG")
    export = make_export(store, connection, ["Refused"])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert process_message(store, settings, take_message(store)) is Outcome.FINISHED
    final = store.runs.get(export.id, run.id)
    assert final.status is RunStatus.FAILED and final.finished_at
    assert final.error is not None and "refused by Entra ID" in final.error
    assert "SEGEXP_SECRET_WRONG" in final.error and "not-it" not in final.error
    assert store.active_runs.get(export.id) is None
    store.close()


def test_a_missing_secret_setting_fails_the_run_naming_it(
    store: Any, settings: Any, emu: Any
) -> None:
    seed_segment(store, "NoSecret", [])
    connection = make_connection(store, emu, secret_setting="SEGEXP_SECRET_UNSET")
    export = make_export(store, connection, ["NoSecret"])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert process_message(store, settings, take_message(store)) is Outcome.FINISHED
    final = store.runs.get(export.id, run.id)
    assert final.status is RunStatus.FAILED
    assert final.error is not None and "SEGEXP_SECRET_UNSET" in final.error


def test_an_unknown_server_fails_pointing_at_the_server_address(
    store: Any, settings: Settings, emu: Any
) -> None:
    seed_segment(store, "Unknown", [])
    closed = free_port()  # nothing listens here, and Entra has no such resource
    connection = make_connection(store, emu, server=f"https://127.0.0.1:{closed}")
    export = make_export(store, connection, ["Unknown"])
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert process_message(store, settings, take_message(store)) is Outcome.FINISHED
    final = store.runs.get(export.id, run.id)
    assert final.status is RunStatus.FAILED
    assert final.error == (
        f"Entra ID does not know 127.0.0.1:{closed} as a Sales environment (invalid scope): "
        "check the connection's server address"
    )


def test_an_unreachable_server_is_retried_then_fails_clearly(
    azurite: Azurite, table_prefix: str, tmp_path: Path
) -> None:
    vanishing = start_emulator(EmulatorConfig(contacts=100, seed=41, time_scale=0.01))
    ca_file = tmp_path / "ca.pem"  # the emulator deletes its own copy when it stops
    shutil.copyfile(vanishing.ca_file, ca_file)
    settings = Settings.from_env(
        run_env(
            azurite,
            table_prefix,
            vanishing,
            SALES_MAX_RETRIES="1",
            MAX_DEQUEUE_COUNT="2",
            SALES_CA_BUNDLE=str(ca_file),
        )
    )
    store = open_test_store(settings)
    export, _ = seeded_export(store, vanishing, "Vanishing", range(0, 20))
    first = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert drain(store, settings, first).status is RunStatus.SUCCEEDED  # token now cached
    host = vanishing.base_url.removeprefix("https://")
    vanishing.stop()  # the server goes away
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    body = take_message(store)

    with pytest.raises(Exception):  # noqa: B017 - any error: the host redelivers the message
        process_message(store, settings, body, dequeue_count=1)
    waiting = store.runs.get(export.id, run.id)
    assert waiting.status is RunStatus.RUNNING
    assert waiting.error is not None and waiting.error.startswith("attempt 1 of 2 failed")
    assert store.leases.get(export.id) is None  # released for the retry

    assert process_message(store, settings, body, dequeue_count=2) is Outcome.FINISHED
    final = store.runs.get(export.id, run.id)
    assert final.status is RunStatus.FAILED
    assert final.error == (
        f"gave up after 2 attempts: could not reach {host}: check the connection's server address"
    )
    assert store.active_runs.get(export.id) is None
    store.close()


def test_a_detached_or_deleted_connection_fails_the_queued_run(
    store: Any, settings: Settings, emu: Any
) -> None:
    seed_segment(store, "Orphan", [])
    detached_conn = make_connection(store, emu)
    detached = make_export(store, detached_conn, ["Orphan"])
    run1 = request_run(store, detached.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    deleted_conn = make_connection(store, emu)
    deleted = make_export(store, deleted_conn, ["Orphan"])
    run2 = request_run(store, deleted.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    store.exports.detach_connection(detached_conn.id)
    store.connections.delete(deleted_conn.id)

    for _ in range(2):
        assert process_message(store, settings, take_message(store)) is Outcome.FINISHED
    one, two = store.runs.get(detached.id, run1.id), store.runs.get(deleted.id, run2.id)
    assert one.status is two.status is RunStatus.FAILED
    assert one.error is not None and "detached" in one.error
    assert two.error is not None and "no longer exists" in two.error


def test_poison_handling_closes_a_run_never_left_running(store: Any, settings: Settings) -> None:
    from shared.runs.triggers import on_poison_message

    assert on_poison_message(b"garbage", store=store) is None
    missing = RunMessage(export_id="gone", run_id="gone")
    assert on_poison_message(encode_message(missing), store=store) is None


def test_a_throttling_storm_completes_without_violations(
    azurite: Azurite, table_prefix: str
) -> None:
    stormy = start_emulator(EmulatorConfig(contacts=5000, seed=31, time_scale=0.01))
    try:
        stormy.set_faults(throttle=0.2, unavailable=0.1, seed=7)
        settings = Settings.from_env(
            run_env(azurite, table_prefix, stormy, SALES_CHUNK_SIZE="100", SALES_MAX_RETRIES="12")
        )
        store = open_test_store(settings)
        export, members = seeded_export(store, stormy, "Storm", range(0, 1500))
        run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        final = drain(store, settings, run)
        stats = stormy.stats()
        assert final.status is RunStatus.SUCCEEDED, final.error
        assert stormy.state.list_members(list_id_of(final, "Storm")) == {
            stormy.contact_id(i) for i in members
        }
        assert stats["throttled"] > 0 and stats["faults"]
        assert stats["violations"] == 0
        store.close()
    finally:
        stormy.stop()
