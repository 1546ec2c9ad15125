"""Several worker processes (python -m shared.runs.worker_main) on Azurite + the emulator share one
throttling budget per (environment, identity): a 429 answered to one worker holds back the others
(the emulator counts any request sent inside an announced Retry-After as a violation), and an
export on another connection (another identity) is never held back by it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from emulator import EmulatorConfig, start_emulator
from shared.models import Run, RunStatus
from shared.runs.requests import Trigger, request_run
from shared.sales.factory import identity_key
from shared.settings import Settings
from shared.store import open_store
from tests.runs.helpers import (
    SECRET_SETTING,
    list_id_of,
    make_connection,
    make_export,
    run_env,
    seed_customers,
    seed_segment,
)
from tests.runs.test_crash import WorkerProcess
from tests.support import Azurite

WAIT_LIMIT = 240.0  # a bound against hangs, not a timing assertion
OTHER_CLIENT = "6d0a4c1e-6b1f-4a8e-9d55-0f3c2b7a9e10"
OTHER_SECRET_SETTING = "SEGEXP_SECRET_EMU_OTHER"


@pytest.fixture(scope="module")
def budget_emu() -> Iterator[Any]:
    """An emulator of our own: these tests inject faults, which must not reach other tests."""
    with start_emulator(
        EmulatorConfig(
            contacts=10_000,
            inactive_fraction=0.0,
            seed=23,
            time_scale=0.05,
            extra_clients={OTHER_CLIENT: "other-" + "s" * 24},
        )
    ) as running:
        yield running


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def current(store: Any, run: Run) -> Run:
    fresh: Run = store.runs.get(run.export_id, run.id)
    return fresh


def test_one_workers_429_pauses_the_other_workers(
    azurite: Azurite, table_prefix: str, budget_emu: Any, tmp_path: Path
) -> None:
    env = run_env(azurite, table_prefix, budget_emu, SALES_CHUNK_SIZE="100", SALES_MAX_RETRIES="20")
    env[SECRET_SETTING] = budget_emu.client_secret
    store = open_store(Settings.from_env(env))
    store.ensure()
    members = range(0, 3000)
    seed_customers(store, budget_emu, members)
    connection = make_connection(store, budget_emu)
    exports = []
    for name in ("Alpha", "Beta"):
        seed_segment(store, name, members)
        exports.append(make_export(store, connection, [name], name=name))
    budget_emu.reset_stats(throttling=True)
    # One request in eight is answered 429 with Retry-After 2 s (the user is blocked meanwhile).
    budget_emu.set_faults(throttle=0.125, seed=5, retry_after_seconds=2)
    log = tmp_path / "workers.log"
    workers = [WorkerProcess(env, log) for _ in range(2)]
    try:
        runs = [
            request_run(store, e.id, trigger=Trigger.ON_DEMAND, requested_by="ann") for e in exports
        ]
        wait_until(lambda: all(current(store, r).status.is_final for r in runs), "both runs")
    finally:
        budget_emu.set_faults()
        for worker in workers:
            worker.stop()
    stats = budget_emu.stats()
    finals = [current(store, r) for r in runs]
    expected = {budget_emu.contact_id(i) for i in members}
    for final, name in zip(finals, ("Alpha", "Beta"), strict=True):
        assert final.status is RunStatus.SUCCEEDED, final.error
        assert budget_emu.state.list_members(list_id_of(final, name)) == expected
    # Both workers sent at the same time (each took one run), and were answered 429s...
    assert finals[0].started_at < finals[1].finished_at  # type: ignore[operator]
    assert finals[1].started_at < finals[0].finished_at  # type: ignore[operator]
    assert stats["throttled"] > 0
    # ...yet no request of either worker arrived while a Retry-After announced to the other
    # was running, and together they kept within the dop hint.
    entries = budget_emu.request_log(5000)
    trace = [  # the 429s and violations, to explain a failure
        (e["t"], e["status"], e["fault"], e["violation"]) for e in entries if e["status"] == 429
    ]
    assert stats["violations"] == 0, trace
    # The emulator's own count of this identity's requests in flight at once (admitted, not yet
    # answered), across both processes and every slice joining and leaving meanwhile.
    assert stats["max_concurrency_by_user"][budget_emu.client_id] <= budget_emu.config.dop_hint
    snapshot = store.budgets.snapshot(identity_key(connection))
    assert snapshot.blocks > 0 and snapshot.participants == ()  # shared, and everyone left
    store.close()


def test_a_throttled_identity_does_not_hold_back_another_connection(
    azurite: Azurite, table_prefix: str, budget_emu: Any, tmp_path: Path
) -> None:
    env = run_env(azurite, table_prefix, budget_emu, RUN_SLICE_SECONDS="20")
    env[SECRET_SETTING] = budget_emu.client_secret
    env[OTHER_SECRET_SETTING] = "other-" + "s" * 24
    store = open_store(Settings.from_env(env))
    store.ensure()
    members = range(5000, 5600)
    seed_customers(store, budget_emu, members)
    seed_segment(store, "Gamma", members)
    blocked_connection = make_connection(store, budget_emu)
    other = make_connection(store, budget_emu, secret_setting=OTHER_SECRET_SETTING)
    other = store.connections.update(
        replace(other, credential=replace(other.credential, client_id=OTHER_CLIENT)), None
    )
    blocked = make_export(store, blocked_connection, ["Gamma"], name="Blocked", list_name="b")
    free = make_export(store, other, ["Gamma"], name="Free", list_name="f")
    # Another worker was told to wait 10 minutes for the first identity.
    store.budgets.block_until(identity_key(blocked_connection), time.time() + 600)
    budget_emu.reset_stats(throttling=True)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log)
    try:
        held = request_run(store, blocked.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        run = request_run(store, free.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        wait_until(lambda: current(store, run).status.is_final, "the other connection's run")
        wait_until(
            lambda: "stopped early" in (current(store, held).reason or ""),
            "the held run's slice to stop at its deadline",
        )
    finally:
        worker.stop()
    final = current(store, run)
    assert final.status is RunStatus.SUCCEEDED, final.error
    assert budget_emu.state.list_members(list_id_of(final, "Gamma")) == {
        budget_emu.contact_id(i) for i in members
    }
    waiting = current(store, held)
    assert waiting.status is RunStatus.RUNNING  # resumes when the block is over
    assert "throttled" in (waiting.reason or "")
    users = {entry.get("user") for entry in budget_emu.request_log()}
    assert budget_emu.client_id not in users  # not one request sent into the block
    store.close()
