"""Background customer imports over the API and the import worker, on Azurite: a bad file
changes nothing; a good one goes queued -> running -> succeeded with every row readable; a
delivery that fails mid-import (an exception injected through the worker's hook seam) resumes
from its checkpoint and finishes exactly; progress is visible mid-way; the time budget
continues in a new message; poison handling fails the import with the last error; the
synchronous route refuses a file past its row limit."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest

from shared.api.routes import customers as customers_route
from shared.imports.messages import encode_import_message
from shared.imports.worker import (
    NO_HOOKS,
    ImportHooks,
    ImportOutcome,
    give_up,
    process_import,
)
from shared.runs.worker_main import IMPORTS, queue_client, serve
from shared.store import staging
from shared.store.customer_imports import CustomerImport
from tests.api.helpers import ADMIN, CONTRIBUTOR, VIEWER
from tests.api.test_problems import assert_problem
from tests.imports.conftest import Rig

JSON = {**ADMIN, "Content-Type": "application/json"}
CSV = {**ADMIN, "Content-Type": "text/csv"}


def rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "CustomerId": f"C-{i:05d}",
            "ContactId": f"00000000-0000-0000-0000-{i:012d}",
            "Score": i * 7,
            "Big": 2**40 + i,
            "Ratio": i / 4,
            "Vip": i % 3 == 0,
            "Name": f"Zoë {i}\nsecond line",
            "Gone": None,
        }
        for i in range(count)
    ]


def deliver(
    rig: Rig, hooks: ImportHooks = NO_HOOKS, clock: Any = None
) -> ImportOutcome | Exception:
    """One delivery from the real import queue, handled as the host does: deleted on success,
    visible again at once on failure."""
    queue = queue_client(rig.settings, rig.settings.import_queue)
    message = queue.receive_message(visibility_timeout=60)
    assert message is not None, "no import message queued"
    extra = {} if clock is None else {"clock": clock}
    try:
        outcome = process_import(
            rig.store,
            rig.settings,
            message.content,
            dequeue_count=message.dequeue_count,
            hooks=hooks,
            **extra,
        )
    except Exception as error:
        queue.update_message(message, visibility_timeout=0)
        return error
    queue.delete_message(message)
    return outcome


def queued_messages(rig: Rig) -> int:
    queue = queue_client(rig.settings, rig.settings.import_queue)
    return int(queue.get_queue_properties().approximate_message_count)


def start(rig: Rig, data: list[dict[str, Any]]) -> dict[str, Any]:
    answer = rig.client.post("/api/customer-imports", json=data, headers=JSON)
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    assert answer.headers["location"] == f"/api/customer-imports/{body['id']}"
    return body


def assert_all_written(rig: Rig, data: list[dict[str, Any]]) -> None:
    stored = rig.store.customers.get_many([r["CustomerId"] for r in data])
    assert len(stored) == len(data)
    for row in data:
        expected = {k: v for k, v in row.items() if v is not None}
        assert stored[row["CustomerId"]] == expected


def test_a_bad_file_changes_nothing(rig: Rig) -> None:
    bad = rows(30)
    bad[4]["CustomerId"] = ""
    bad[9]["Bad-Column"] = "x"
    answer = rig.client.post("/api/customer-imports", json=bad, headers=JSON)
    body = assert_problem(answer, 422)
    assert {e["field"] for e in body["errors"]} == {"row 5.CustomerId", "row 10.Bad-Column"}
    duplicate = rows(30)
    duplicate[12]["CustomerId"] = duplicate[11]["CustomerId"]
    answer = rig.client.post("/api/customer-imports", json=duplicate, headers=JSON)
    assert [e["field"] for e in assert_problem(answer, 422)["errors"]] == ["row 13.CustomerId"]
    too_big = rows(2)
    too_big[1].update({f"Col{i}": "x" * 30_000 for i in range(20)})  # > 1 MiB as one entity
    answer = rig.client.post("/api/customer-imports", json=too_big, headers=JSON)
    assert "1048576" in assert_problem(answer, 422)["errors"][0]["message"]
    malformed = rig.client.post("/api/customer-imports", content=b'CustomerId\n"C-1\n', headers=CSV)
    assert_problem(malformed, 400)
    assert rig.client.get("/api/customer-imports", headers=VIEWER).json()["items"] == []
    assert rig.store.customer_imports.staged_ids() == set()
    assert queued_messages(rig) == 0
    assert rig.store.customers.get("C-00000") is None


class Progress:
    """Records what the API shows after each checkpoint (called from inside the worker)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.seen: list[tuple[str, int, int]] = []
        self.writes: list[int] = []

    def after_write(self, record: CustomerImport, chunk: int) -> None:
        self.writes.append(chunk)

    def after_checkpoint(self, record: CustomerImport) -> None:
        shown = self.rig.client.get(f"/api/customer-imports/{record.id}", headers=VIEWER).json()
        self.seen.append((shown["state"], shown["rowsWritten"], shown["chunksWritten"]))


def test_a_good_import_goes_queued_running_succeeded(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "CHUNK_ROWS", 100)
    data = rows(450)
    body = start(rig, data)
    assert (body["state"], body["rows"], body["rowsWritten"], body["chunks"]) == (
        "queued",
        450,
        0,
        5,
    )
    assert rig.store.customers.get("C-00000") is None  # nothing written inside the request
    progress = Progress(rig)
    assert deliver(rig, progress) is ImportOutcome.FINISHED
    assert progress.seen == [
        ("running", 100, 1),
        ("running", 200, 2),
        ("running", 300, 3),
        ("running", 400, 4),
        ("running", 450, 5),
    ]
    final = rig.client.get(f"/api/customer-imports/{body['id']}", headers=VIEWER).json()
    assert (final["state"], final["rowsWritten"], final["error"]) == ("succeeded", 450, None)
    assert final["finishedAt"] and final["startedAt"] and final["deliveries"] == 1
    assert_all_written(rig, data)
    assert rig.store.customer_imports.staged_ids() == set()  # staged chunks deleted
    listed = rig.client.get("/api/customer-imports", headers=VIEWER).json()["items"]
    assert [i["id"] for i in listed] == [body["id"]]


class FailOnce(Progress):
    """Raises once, after chunk `at` is written and before its checkpoint is saved: what a
    worker that dies at the worst moment leaves behind."""

    def __init__(self, rig: Rig, at: int) -> None:
        super().__init__(rig)
        self.at = at
        self.failed = False

    def after_write(self, record: CustomerImport, chunk: int) -> None:
        super().after_write(record, chunk)
        if chunk == self.at and not self.failed:
            self.failed = True
            raise ConnectionResetError("injected: the worker lost storage mid-import")


def test_a_failed_delivery_resumes_from_its_checkpoint_and_finishes_exactly(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "CHUNK_ROWS", 100)
    data = rows(500)
    body = start(rig, data)
    hooks = FailOnce(rig, at=2)
    first = deliver(rig, hooks)
    assert isinstance(first, ConnectionResetError)
    mid = rig.client.get(f"/api/customer-imports/{body['id']}", headers=VIEWER).json()
    assert (mid["state"], mid["rowsWritten"], mid["chunksWritten"]) == ("running", 200, 2)
    assert "injected" in mid["error"] and "delivery 1" in mid["error"]
    assert deliver(rig, hooks) is ImportOutcome.FINISHED
    assert hooks.writes == [0, 1, 2, 2, 3, 4]  # only the unsaved chunk is written again
    final = rig.client.get(f"/api/customer-imports/{body['id']}", headers=VIEWER).json()
    assert (final["state"], final["rowsWritten"], final["deliveries"]) == ("succeeded", 500, 2)
    assert final["error"] is None
    assert_all_written(rig, data)


def test_the_time_budget_continues_in_a_new_message(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "CHUNK_ROWS", 50)
    data = rows(200)
    body = start(rig, data)
    ticks = iter(range(10**6))
    clock = lambda: float(next(ticks))  # noqa: E731  each reading is 1 s later; budget 480 s
    rig.settings = dataclasses.replace(rig.settings, run_slice_seconds=1.0)
    outcomes = []
    while not outcomes or outcomes[-1] is ImportOutcome.CONTINUED:
        outcome = deliver(rig, clock=clock)
        assert isinstance(outcome, ImportOutcome)
        outcomes.append(outcome)
    assert outcomes == [ImportOutcome.CONTINUED] * 3 + [ImportOutcome.FINISHED]
    final = rig.client.get(f"/api/customer-imports/{body['id']}", headers=VIEWER).json()
    assert (final["state"], final["rowsWritten"], final["deliveries"]) == ("succeeded", 200, 4)
    assert queued_messages(rig) == 0
    assert_all_written(rig, data)


def test_poison_fails_the_import_with_its_last_error(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "CHUNK_ROWS", 100)
    body = start(rig, rows(300))
    assert isinstance(deliver(rig, FailOnce(rig, at=1)), ConnectionResetError)
    record = give_up(rig.store, rig.settings, encode_import_message(body["id"]))
    assert record is not None
    final = rig.client.get(f"/api/customer-imports/{body['id']}", headers=VIEWER).json()
    assert final["state"] == "failed" and final["rowsWritten"] == 100
    assert "MAX_DEQUEUE_COUNT" in final["error"] and "injected" in final["error"]
    assert "100 of 300 rows" in final["error"]
    assert rig.store.customer_imports.staged_ids() == set()
    # a late delivery of the same message changes nothing
    assert deliver(rig) is ImportOutcome.SKIPPED
    assert rig.store.customer_imports.get(body["id"]).state.value == "failed"


def test_the_local_runner_imports_through_the_import_queue(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "CHUNK_ROWS", 100)
    data = rows(250)
    body = start(rig, data)
    done = threading.Event()

    def finished() -> bool:
        if rig.store.customer_imports.get(body["id"]).state.is_final:
            done.set()
        return done.is_set()

    serve(
        rig.settings,
        rig.store,
        should_stop=finished,
        visibility=60,
        retry_delay=1,
        poll_interval=0.05,
        listener=IMPORTS,
    )
    assert rig.store.customer_imports.get(body["id"]).state.value == "succeeded"
    assert_all_written(rig, data)


def test_the_synchronous_route_refuses_a_file_past_its_row_limit(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customers_route, "SYNC_MAX_ROWS", 10)
    answer = rig.client.post("/api/customers", json=rows(11), headers=JSON)
    body = assert_problem(answer, 413)
    assert body["type"].endswith("too-many-rows")
    assert body["maxRows"] == 10 and body["rows"] == 11
    assert body["importUrl"] == "/api/customer-imports"
    assert "/api/customer-imports" in body["detail"]
    assert rig.store.customers.get("C-00000") is None
    small = rig.client.post("/api/customers", json=rows(10), headers=JSON)
    assert small.status_code == 200 and small.json()["upserted"] == 10


def test_roles_and_unknown_imports(rig: Rig) -> None:
    answer = rig.client.post(
        "/api/customer-imports",
        json=rows(2),
        headers={**CONTRIBUTOR, "Content-Type": "application/json"},
    )
    assert_problem(answer, 403)
    assert rig.store.customer_imports.staged_ids() == set()
    assert_problem(
        rig.client.get("/api/customer-imports/0000000000000-00000000", headers=VIEWER), 404
    )
    assert_problem(rig.client.get("/api/customer-imports/not-an-id", headers=VIEWER), 404)
    assert_problem(rig.client.get("/api/customer-imports?limit=0", headers=VIEWER), 422)
