"""Recovery: no run is stranded after a lost storage answer, a lost lease, a dead worker or a dead
API process, and every count is exact afterwards (issue 13). Real processes throughout: Azurite,
the emulator over HTTPS on loopback, and ``python -m shared.runs.worker_main`` workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, start_emulator
from shared.models import RunStatus, Trigger
from shared.runs.requests import request_run
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
from tests.support import Azurite


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
