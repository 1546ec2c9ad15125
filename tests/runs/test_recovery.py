"""Recovery: no run is stranded after a lost storage answer, a lost lease, a dead worker or a dead
API process, and every count is exact afterwards (issue 13). Real processes throughout: Azurite,
the emulator over HTTPS on loopback, and ``python -m shared.runs.worker_main`` workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, start_emulator
from emulator.config import Costs
from shared.models import RunStatus, Trigger
from shared.runs.requests import ActiveRunError, cancel_run, request_run
from shared.runs.sweeper import abandoned_after, last_sign_of_life
from shared.runs.triggers import on_timer
from shared.runs.worker_main import poison_queue_name, queue_client
from shared.settings import Settings
from shared.store import encode_message, open_store
from tests.runs.faultproxy import FaultProxy
from tests.runs.helpers import (
    list_id_of,
    make_connection,
    make_export,
    run_env,
    seed_customers,
    seed_segment,
)
from tests.runs.processes import WorkerProcess, current, wait_until
from tests.support import REPO, Azurite


@pytest.fixture(scope="module")
def rec_emu() -> Iterator[Any]:
    # Slow enough that a slice spans several lease renewals (250-member chunk: ~0.15 s).
    with start_emulator(EmulatorConfig(contacts=12_000, seed=61, time_scale=0.3)) as running:
        yield running


def through_proxy(connection_string: str, table_port: int, proxy_port: int) -> str:
    return connection_string.replace(f":{table_port}/", f":{proxy_port}/")


def seeded(store: Any, emu: Any, segment: str, indices: range) -> tuple[Any, set[str]]:
    members = [i for i in indices if not emu.is_inactive(i)]
    seed_customers(store, emu, members)
    seed_segment(store, segment, members)
    export = make_export(store, make_connection(store, emu), [segment])
    return export, {emu.contact_id(i) for i in members}


def receive_one(store: Any) -> Any:
    got: list[Any] = []

    def received() -> bool:
        got.extend(store.queue.receive(max_messages=1, visibility_timeout=1))
        return bool(got)

    wait_until(received, "the run message to be visible")
    return got[0]


def is_lease_renewal(method: str, path: str) -> bool:
    return method == "PUT" and "leases(" in path


@pytest.mark.slow
def test_a_lost_answer_to_a_lease_renewal_does_not_strand_the_run(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    env = run_env(
        azurite,
        table_prefix,
        rec_emu,
        RUN_SLICE_SECONDS="120",
        LEASE_SECONDS="5",
        SALES_CHUNK_SIZE="250",
        SALES_MAX_PARALLEL="1",
    )
    store = open_store(Settings.from_env(env))
    store.ensure()
    export, expected = seeded(store, rec_emu, "Renewed", range(0, 5000))
    with FaultProxy(azurite.table_port) as proxy:
        # Storage applies the worker's first lease renewal but the answer never arrives; the
        # client's retry then carries the old ETag and meets 412.
        proxy.lose_answer_once(is_lease_renewal)
        worker_env = {
            **env,
            "AzureWebJobsStorage": through_proxy(
                env["AzureWebJobsStorage"], azurite.table_port, proxy.port
            ),
        }
        run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        worker = WorkerProcess(worker_env, tmp_path / "worker.log")
        try:
            wait_until(lambda: bool(proxy.lost), "the lost renewal answer")
            wait_until(lambda: current(store, run).status.is_final, "the run to finish")
        finally:
            worker.stop()
    final = current(store, run)
    assert final.status is RunStatus.SUCCEEDED, (final.status, final.error, final.reason)
    assert rec_emu.state.list_members(list_id_of(final, "Renewed")) == expected
    assert final.segments[0].added == len(expected)
    assert store.active_runs.get(export.id) is None
    assert "was lost" not in (tmp_path / "worker.log").read_text()
    store.close()


@pytest.mark.slow
def test_a_slice_whose_lease_vanished_leaves_its_message_to_be_delivered_again(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    env = run_env(
        azurite,
        table_prefix,
        rec_emu,
        RUN_SLICE_SECONDS="120",
        LEASE_SECONDS="5",
        SALES_CHUNK_SIZE="250",
        SALES_MAX_PARALLEL="1",
    )
    store = open_store(Settings.from_env(env))
    store.ensure()
    export, expected = seeded(store, rec_emu, "Vanished", range(5000, 10_000))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, run).segments[0].added > 0, "the first applied chunk")
        lease = store.leases.get(export.id)
        assert lease is not None
        store.leases.release(lease)  # the lease is gone and nobody else holds it
        wait_until(lambda: "was lost" in log.read_text(), "the worker to notice the lost lease")
        wait_until(lambda: current(store, run).status.is_final, "the run to finish")
    finally:
        worker.stop()
    final = current(store, run)
    assert final.status is RunStatus.SUCCEEDED, (final.status, final.error, final.reason)
    assert rec_emu.state.list_members(list_id_of(final, "Vanished")) == expected
    assert store.active_runs.get(export.id) is None
    store.close()


def test_the_local_runner_uses_the_poison_queue_as_the_host_does(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    env = run_env(azurite, table_prefix, rec_emu, MAX_DEQUEUE_COUNT="3")
    settings = Settings.from_env(env)
    store = open_store(settings)
    store.ensure()
    export, _ = seeded(store, rec_emu, "Poisoned", range(10_000, 10_010))
    poison = queue_client(settings, poison_queue_name(settings))
    poison.create_queue()

    # The host moved a message to <queue>-poison: the runner hands it to the poison function.
    moved = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    [received] = store.queue.receive(max_messages=1, visibility_timeout=30)
    store.queue.delete(received)
    poison.send_message(encode_message(received.message))
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, moved).status.is_final, "the poison function")
        closed = current(store, moved)
        assert closed.status is RunStatus.FAILED and "given up" in (closed.error or "")
        assert store.active_runs.get(export.id) is None

        # A message whose workers died MAX_DEQUEUE_COUNT times goes to the poison queue.
        worker.stop()
        crashing = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        for delivery in range(1, settings.max_dequeue_count + 1):
            # received and never completed: what a worker that died mid-slice leaves behind
            assert receive_one(store).dequeue_count == delivery
        worker = WorkerProcess(env, log)
        wait_until(lambda: current(store, crashing).status.is_final, "the poison path")
        closed = current(store, crashing)
        assert closed.status is RunStatus.FAILED and "given up" in (closed.error or "")
        assert "moved to " + poison_queue_name(settings) in log.read_text()
    finally:
        worker.stop()
    assert poison.peek_messages(max_messages=5) == []
    assert store.queue.receive(max_messages=5, visibility_timeout=1) == []
    store.close()


@pytest.mark.slow
def test_a_crash_looping_slice_is_failed_past_max_dequeue_count_even_when_messages_are_resent(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    # Visibility (3 s) shorter than the lease (5 s): a dead worker's message comes back while
    # its lease still stands, so each delivery is re-sent as a new message (fresh dequeue count).
    env = run_env(
        azurite,
        table_prefix,
        rec_emu,
        RUN_SLICE_SECONDS="120",
        LEASE_SECONDS="5",
        SALES_CHUNK_SIZE="250",
        SALES_MAX_PARALLEL="1",
        MAX_DEQUEUE_COUNT="3",
    )
    store = open_store(Settings.from_env(env))
    store.ensure()
    export, _ = seeded(store, rec_emu, "Looping", range(0, 5000))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    log = tmp_path / "workers.log"
    for attempt in (1, 2, 3):
        worker = WorkerProcess(env, log)
        try:
            wait_until(
                lambda a=attempt: current(store, run).slice_attempts == a,
                f"start {attempt} of slice 0",
            )
        finally:
            worker.kill()  # the slice dies every time it starts
    survivor = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, run).status.is_final, "the run to be given up")
    finally:
        survivor.stop()
    final = current(store, run)
    applied = final.segments[0].added > 0  # a killed start may have applied a chunk first
    given_up = RunStatus.PARTIALLY_SUCCEEDED if applied else RunStatus.FAILED
    assert final.status is given_up, (final.status, final.error)
    assert final.slice_attempts == 4 and final.attempted_slice == 0
    assert "MAX_DEQUEUE_COUNT=3" in (final.error or "")
    assert store.active_runs.get(export.id) is None
    store.close()


def stranded_by_a_killed_worker(store: Any, env: dict[str, str], run: Any, log: Path) -> None:
    """Kill the worker mid-apply and lose its message: nothing would continue the run."""
    worker = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, run).segments[0].added > 0, "the first applied chunk")
    finally:
        worker.kill()
    store.queue.delete(receive_one(store))  # its message is gone (completed or lost)
    assert current(store, run).status is RunStatus.RUNNING


def recovery_env(azurite: Azurite, table_prefix: str, emu: Any) -> dict[str, str]:
    return run_env(
        azurite,
        table_prefix,
        emu,
        RUN_SLICE_SECONDS="120",
        LEASE_SECONDS="5",
        SALES_CHUNK_SIZE="250",
        SALES_MAX_PARALLEL="1",
    )


@pytest.mark.slow
def test_the_timer_queues_an_abandoned_run_again_and_it_finishes_exactly(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    env = recovery_env(azurite, table_prefix, rec_emu)
    settings = Settings.from_env(env)
    store = open_store(settings)
    store.ensure()
    members = [i for i in range(0, 5000) if not rec_emu.is_inactive(i)]
    seed_customers(store, rec_emu, members)
    seed_segment(store, "Swept", members)
    # Not scheduled (enabled=False), so the timer tick only applies the abandoned-run rule.
    export = make_export(store, make_connection(store, rec_emu), ["Swept"], enabled=False)
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    log = tmp_path / "workers.log"
    stranded_by_a_killed_worker(store, env, run, log)

    # A tick within the window leaves it alone; one past it queues the run's slice again.
    silent_since = last_sign_of_life(current(store, run))
    assert silent_since is not None
    on_timer(False, store=store, settings=settings, now=silent_since + timedelta(seconds=60))
    assert current(store, run).requeues == 0
    late = silent_since + abandoned_after(settings) + timedelta(seconds=1)
    on_timer(False, store=store, settings=settings, now=late)
    assert current(store, run).requeues == 1
    worker = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, run).status.is_final, "the run to finish")
    finally:
        worker.stop()
    final = current(store, run)
    assert final.status is RunStatus.SUCCEEDED, (final.status, final.error)
    expected = {rec_emu.contact_id(i) for i in members}
    assert rec_emu.state.list_members(list_id_of(final, "Swept")) == expected
    assert store.active_runs.get(export.id) is None
    store.close()


@pytest.mark.slow
def test_cancel_of_an_abandoned_run_takes_effect_at_once(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    env = recovery_env(azurite, table_prefix, rec_emu)
    settings = Settings.from_env(env)
    store = open_store(settings)
    store.ensure()
    export, _ = seeded(store, rec_emu, "Dropped", range(5000, 10_000))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    stranded_by_a_killed_worker(store, env, run, tmp_path / "workers.log")
    silent_since = last_sign_of_life(current(store, run))
    assert silent_since is not None
    late = silent_since + abandoned_after(settings) + timedelta(seconds=1)

    canceled = cancel_run(store, export.id, run.id, "bob", settings=settings, now=late)

    assert canceled.status is RunStatus.CANCELED and canceled.finished_at
    assert "worker had stopped" in (canceled.reason or "")
    assert store.active_runs.get(export.id) is None
    again = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    assert again.status is RunStatus.QUEUED
    store.close()


REQUEST_IN_A_PROCESS = """
import sys
from shared.models import Trigger
from shared.runs.requests import ActiveRunError, cancel_run, request_run
from shared.runs.sweeper import abandoned_after, last_sign_of_life
from shared.runs.triggers import on_timer
from shared.settings import Settings
from shared.store import open_store
store = open_store(Settings.from_env())
print("ready", flush=True)
request_run(store, sys.argv[1], trigger=Trigger.ON_DEMAND, requested_by="api")
"""


@pytest.mark.slow
def test_an_api_process_dying_between_recording_and_enqueuing_does_not_block_the_export(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    env = recovery_env(azurite, table_prefix, rec_emu)
    settings = Settings.from_env(env)
    store = open_store(settings)
    store.ensure()
    export, expected = seeded(store, rec_emu, "Orphan", range(10_000, 10_400))
    # The API process's queue endpoint accepts connections and never answers: it hangs in the
    # enqueue after recording the run, and is killed there.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        port = blackhole.getsockname()[1]
        api_env = {
            **os.environ,
            **env,
            "AzureWebJobsStorage": env["AzureWebJobsStorage"].replace(
                f":{azurite.queue_port}/", f":{port}/"
            ),
        }
        api = subprocess.Popen(
            [sys.executable, "-c", REQUEST_IN_A_PROCESS, export.id],
            cwd=REPO,
            env=api_env,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert api.stdout is not None and api.stdout.readline().strip() == b"ready"
            wait_until(lambda: bool(store.runs.list(export.id)[0]), "the run to be recorded")
        finally:
            os.killpg(api.pid, signal.SIGKILL)
            api.wait(timeout=30)
    [orphan], _ = store.runs.list(export.id)
    assert orphan.status is RunStatus.QUEUED
    assert store.queue.receive(max_messages=1, visibility_timeout=1) == []

    queued_at = last_sign_of_life(orphan)
    assert queued_at is not None
    late = queued_at + abandoned_after(settings) + timedelta(seconds=1)
    with pytest.raises(ActiveRunError):  # the request touches the export: the run is freed
        request_run(
            store,
            export.id,
            trigger=Trigger.ON_DEMAND,
            requested_by="ann",
            settings=settings,
            now=late,
        )
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: current(store, orphan).status.is_final, "the orphan run to finish")
    finally:
        worker.stop()
    final = current(store, orphan)
    assert final.status is RunStatus.SUCCEEDED, (final.status, final.error)
    assert rec_emu.state.list_members(list_id_of(final, "Orphan")) == expected
    assert store.active_runs.get(export.id) is None
    store.close()


@pytest.mark.slow
def test_added_and_removed_are_exact_after_workers_are_killed_mid_apply(
    azurite: Azurite, table_prefix: str, rec_emu: Any, tmp_path: Path
) -> None:
    env = run_env(
        azurite,
        table_prefix,
        rec_emu,
        RUN_SLICE_SECONDS="4",
        LEASE_SECONDS="5",
        SALES_CHUNK_SIZE="250",
        SALES_MAX_PARALLEL="2",
        MAX_DEQUEUE_COUNT="30",
    )
    settings = Settings.from_env(env)
    store = open_store(settings)
    store.ensure()
    active = [i for i in range(0, 9000) if not rec_emu.is_inactive(i)]
    seed_customers(store, rec_emu, active)
    before = [i for i in active if i < 6000]
    after = [i for i in active if i >= 3000]
    seed_segment(store, "Churn", before)
    export = make_export(store, make_connection(store, rec_emu), ["Churn"])
    first = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    log = tmp_path / "workers.log"
    worker = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, first).status.is_final, "the first run")
    finally:
        worker.stop()
    assert current(store, first).status is RunStatus.SUCCEEDED

    # The segment moves: 3000 members leave, 3000 join. Kill workers mid-removal and mid-add.
    seed_segment(store, "Churn", after)
    rec_emu.reset_stats()
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")

    def written() -> int:
        stats = rec_emu.stats()
        return int(stats["members_added"] + stats["members_removed"])

    for kill in (1, 2, 3):  # each after 700 more members changed (6,000 changes in all)
        worker = WorkerProcess(env, log)
        try:
            wait_until(lambda k=kill: written() >= 700 * k, f"{700 * kill} members changed")
        finally:
            worker.kill()
        assert not current(store, run).status.is_final, f"run ended before kill {kill}"
    survivor = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, run).status.is_final, "the run to finish")
    finally:
        survivor.stop()
    final = current(store, run)
    [segment] = final.segments
    assert final.status is RunStatus.SUCCEEDED, (final.status, final.error)
    expected = {rec_emu.contact_id(i) for i in after}
    assert rec_emu.state.list_members(list_id_of(final, "Churn")) == expected
    joined, left = len(set(after) - set(before)), len(set(before) - set(after))
    stats = rec_emu.stats()
    assert (stats["members_added"], stats["members_removed"]) == (joined, left)
    assert (segment.added, segment.removed) == (joined, left)  # exact despite three kills
    store.close()


@pytest.fixture(scope="module")
def sluggish_emu() -> Iterator[Any]:
    # Writes slower than SALES_TIMEOUT_SECONDS=1: a 250-member chunk takes 2 s, and lands.
    with start_emulator(
        EmulatorConfig(contacts=3000, seed=71, time_scale=1.0, costs=Costs(per_member_ms=8.0))
    ) as running:
        yield running


@pytest.mark.slow
def test_writes_that_time_out_are_counted_and_the_run_is_partially_succeeded(
    azurite: Azurite, table_prefix: str, sluggish_emu: Any, tmp_path: Path
) -> None:
    env = run_env(
        azurite,
        table_prefix,
        sluggish_emu,
        RUN_SLICE_SECONDS="60",
        LEASE_SECONDS="5",
        SALES_CHUNK_SIZE="250",
        SALES_MAX_PARALLEL="1",
        SALES_TIMEOUT_SECONDS="1",
        MAX_DEQUEUE_COUNT="3",
    )
    store = open_store(Settings.from_env(env))
    store.ensure()
    export, _ = seeded(store, sluggish_emu, "Sluggish", range(0, 1500))
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: current(store, run).status.is_final, "the run to end")
    finally:
        worker.stop()
    final = current(store, run)
    [segment] = final.segments
    in_list = len(sluggish_emu.state.list_members(list_id_of(final, "Sluggish")))
    stats = sluggish_emu.stats()
    assert in_list > 0  # the writes that timed out landed
    assert final.status is RunStatus.PARTIALLY_SUCCEEDED, (final.status, final.error)
    assert "SALES_TIMEOUT_SECONDS" in (final.error or "")
    # Each delivery re-read the list and counted what the earlier ones' writes left; only the
    # last delivery's own write, still unanswered when the run gave up, is not counted.
    assert in_list - 250 <= segment.added <= in_list
    # At most one write a delivery (3): a timed-out write is never sent again while it may
    # still run in Sales.
    assert 1 <= sum(stats["requests"]["add-list-members"].values()) <= 3, stats["requests"]
    store.close()
