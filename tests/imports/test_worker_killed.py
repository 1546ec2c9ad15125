"""A real worker process (``python -m shared.runs.worker_main``, the local stand-in for the
Functions host) SIGKILLed mid-import: the message comes back after its visibility, a second
worker resumes at the saved checkpoint and the import finishes exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.helpers import base_env
from tests.imports.conftest import Rig
from tests.imports.test_customer_imports import JSON, assert_all_written
from tests.runs.processes import WorkerProcess, wait_until

ROWS = 12_000  # three staged chunks of shared.store.staging.CHUNK_ROWS = 5,000


def test_a_killed_worker_is_resumed_by_another(rig: Rig, azurite: Any, tmp_path: Path) -> None:
    data = [{"CustomerId": f"K-{i:05d}", "ContactId": f"c{i}"} for i in range(ROWS)]
    answer = rig.client.post("/api/customer-imports", json=data, headers=JSON)
    assert answer.status_code == 202, answer.text
    import_id = answer.json()["id"]
    assert answer.json()["chunks"] == 3
    env = base_env(azurite, rig.settings.table_prefix)
    imports = rig.store.customer_imports

    first = WorkerProcess(env, tmp_path / "worker-1.log")
    wait_until(lambda: imports.get(import_id).rows_written > 0, "the first checkpoint")
    first.kill()
    killed = imports.get(import_id)
    assert killed.state.value == "running" and 0 < killed.rows_written < ROWS

    second = WorkerProcess(env, tmp_path / "worker-2.log")
    try:
        wait_until(lambda: imports.get(import_id).state.is_final, "the import to end")
    finally:
        second.stop()
    final = imports.get(import_id)
    assert (final.state.value, final.rows_written, final.chunks_written) == ("succeeded", ROWS, 3)
    assert final.deliveries == 2
    assert_all_written(rig, data)
    assert imports.staged_ids() == set()
