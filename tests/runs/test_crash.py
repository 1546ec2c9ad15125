"""Crash tests: worker processes SIGKILLed at random points, and storage restarted mid-run.

The worker runs as a real subprocess (``python -m shared.runs.worker_main``, the local stand-in
for the Functions queue listener) against Azurite and the emulator over HTTPS on loopback.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, start_emulator
from shared.models import RunStatus, Trigger
from shared.runs.requests import request_run
from shared.settings import Settings
from shared.store import open_store
from tests.runs.helpers import (
    active_contacts,
    list_id_of,
    make_connection,
    make_export,
    run_env,
    seed_customers,
    seed_segment,
)
from tests.runs.processes import WAIT_LIMIT, WorkerProcess, current, list_fill, wait_until
from tests.support import DEV_ACCOUNT_KEY, Azurite, start_azurite


@pytest.fixture(scope="module")
def crash_emu() -> Iterator[Any]:
    # Slow enough that adds take seconds (500-member chunk: 0.3 s), so kills land mid-apply too.
    with start_emulator(EmulatorConfig(contacts=25_000, seed=51, time_scale=0.3)) as running:
        yield running


@pytest.mark.slow
def test_workers_killed_at_ten_random_points_of_a_20k_export_still_converge(
    azurite: Azurite, table_prefix: str, crash_emu: Any, tmp_path: Path
) -> None:
    env = run_env(
        azurite,
        table_prefix,
        crash_emu,
        RUN_SLICE_SECONDS="4",
        LEASE_SECONDS="5",
        SALES_CHUNK_SIZE="500",
        SALES_MAX_PARALLEL="2",
        MAX_DEQUEUE_COUNT="30",  # each kill redelivers the same slice's message once more
    )
    settings = Settings.from_env(env)
    store = open_store(settings)
    store.ensure()
    indices = range(0, 20_000)
    with_rows = [i for i in indices if i % 97 != 0]  # every 97th member has no customer row
    seed_customers(store, crash_emu, with_rows)
    seed_segment(store, "Crashy", indices)
    export = make_export(store, make_connection(store, crash_emu), ["Crashy"])
    crash_emu.reset_stats()
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")

    # Ten seeded kill points, each an event (no sleeps): three early in a worker's life, after
    # its k-th request to Sales (the emulator's counter: token, list lookup, member pages,
    # validation; no lease expiry helps there), and seven at fill levels of the list (the
    # emulator's state), so kills land between and inside add chunks across the apply phase.
    # Every event comes before the end by construction: the run needs dozens more requests and
    # thousands more members (each chunk costs emulated time) after the latest of them.
    rng = random.Random(20261129)
    fills = sorted(rng.sample(range(500, 16_000), 7))
    plan: list[tuple[str, int]] = [("fill", f) for f in fills]
    for _ in range(3):
        plan.insert(rng.randrange(len(plan) + 1), ("requests", rng.randint(1, 6)))
    log = tmp_path / "workers.log"
    kill_points: list[str] = []
    for kind, value in plan:
        worker = WorkerProcess(env, log)
        try:
            wait_until(
                lambda w=worker: (
                    (lease := store.leases.get(export.id)) is not None
                    and lease.holder.startswith(w.holder_prefix)
                ),
                "the fresh worker to take the export's lease",
            )
            if kind == "requests":
                seen = crash_emu.stats()["requests_total"]
                wait_until(
                    lambda v=value, s=seen: crash_emu.stats()["requests_total"] >= s + v,
                    f"the worker's request {value} to Sales",
                )
            else:
                wait_until(
                    lambda v=value: list_fill(store, crash_emu, export.id) >= v,
                    f"the list to reach {value} members",
                )
            fill = list_fill(store, crash_emu, export.id)
        finally:
            worker.kill()
        assert not current(store, run).status.is_final, f"run ended before kill {kind}:{value}"
        kill_points.append(f"{kind}:{value}@{fill}")
    survivor = WorkerProcess(env, log)
    try:
        wait_until(lambda: current(store, run).status.is_final, "the run to finish")
    finally:
        survivor.stop()

    final = current(store, run)
    expected = active_contacts(crash_emu.config, with_rows)
    list_id = list_id_of(final, "Crashy")
    assert crash_emu.state.list_members(list_id) == expected
    stats = crash_emu.stats()
    assert stats["members_added"] == len(expected)  # every contact added exactly once
    assert stats["members_removed"] == 0  # no churn from redone work
    assert len(crash_emu.state.find_lists("Crashy")) == 1  # no second list from a redo
    [segment] = final.segments
    assert final.status is RunStatus.SUCCEEDED and final.error is None
    assert segment.complete and segment.matched == len(expected)
    assert segment.members == 20_000
    assert sum(segment.left_out.values()) == 20_000 - len(expected)
    assert segment.added == len(expected)  # exact, however often the run was killed
    assert segment.removed == 0 and segment.failed == 0
    assert final.slices >= 1 and final.started_at and final.finished_at
    assert final.started_at <= final.finished_at
    rejections, _ = store.rejections.list(export.id, run.id, limit=5000)
    assert len(rejections) == 20_000 - len(expected)
    history, _ = store.runs.list(export.id)
    assert [r.id for r in history] == [run.id]
    assert store.active_runs.get(export.id) is None
    assert store.leases.get(export.id) is None

    # Leftover deliveries (redelivered slices) change nothing once the run is final.
    sweeper = WorkerProcess(env, log, "--exit-when-idle", "5")
    sweeper.proc.wait(timeout=WAIT_LIMIT)
    sweeper.log.close()
    assert current(store, run).etag == final.etag
    assert store.queue.receive(max_messages=32, visibility_timeout=1) == []
    assert len(kill_points) == 10, kill_points
    store.close()


def start_disk_azurite(location: Path, ports: tuple[int, int, int] | None = None) -> Azurite:
    """Azurite that keeps its data on disk, so a restart on the same ports loses nothing."""
    return start_azurite(*(ports or (None, None, None)), location=location)


@pytest.mark.slow
def test_storage_restarted_mid_run_fails_the_slice_cleanly_and_the_retry_completes(
    table_prefix: str, crash_emu: Any, tmp_path: Path
) -> None:
    storage = start_disk_azurite(tmp_path / "azurite")
    ports = (storage.table_port, storage.queue_port, storage.blob_port)
    try:
        env = run_env(
            storage,
            table_prefix,
            crash_emu,
            RUN_SLICE_SECONDS="30",
            LEASE_SECONDS="5",
            SALES_CHUNK_SIZE="250",
            SALES_MAX_PARALLEL="1",
        )
        assert DEV_ACCOUNT_KEY in env["AzureWebJobsStorage"]
        settings = Settings.from_env(env)
        store = open_store(settings)
        store.ensure()
        members = [i for i in range(20_000, 24_000) if not crash_emu.is_inactive(i)]
        seed_customers(store, crash_emu, members)
        seed_segment(store, "Restarted", members)
        export = make_export(store, make_connection(store, crash_emu), ["Restarted"])
        run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        log = tmp_path / "worker.log"
        worker = WorkerProcess(env, log)
        try:
            wait_until(lambda: current(store, run).segments[0].added > 0, "the first applied chunk")
            storage.stop()  # storage goes away while the slice is applying
            time.sleep(2.0)
            storage = start_disk_azurite(tmp_path / "azurite", ports)
            wait_until(lambda: current(store, run).status.is_final, "the run to finish")
        finally:
            worker.stop()
        final = current(store, run)
        assert final.status is RunStatus.SUCCEEDED, final.error
        assert crash_emu.state.list_members(list_id_of(final, "Restarted")) == {
            crash_emu.contact_id(i) for i in members
        }
        assert store.active_runs.get(export.id) is None
        worker_log = log.read_text()
        assert "failed, will retry" in worker_log or "delivery 1 failed" in worker_log
        store.close()
    finally:
        storage.stop()
