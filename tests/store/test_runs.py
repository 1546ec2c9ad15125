"""Runs (newest first, paged, ETag-guarded), rejections (paged) and active-run markers."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError
from shared.models import (
    Rejection,
    RejectionReason,
    Run,
    RunStatus,
    SegmentProgress,
    SegmentResult,
    Trigger,
)
from shared.store import RejectionRecord, Store


def run(run_id: str, export_id: str = "e1", **changes: object) -> Run:
    r = Run(
        export_id=export_id,
        id=run_id,
        trigger=Trigger.ON_DEMAND,
        requested_by="alice",
        queued_at="2026-11-29T10:00:00Z",
    )
    return dataclasses.replace(r, **changes)


def test_run_round_trip_with_segment_results(store: Store) -> None:
    created = store.runs.create(run("r1"))
    assert created.etag and created.status is RunStatus.QUEUED
    result = SegmentResult(
        segment="High value",
        list_id="L1",
        list_name="High value",
        members=10,
        matched=7,
        left_out={"no-customer-record": 2, "contact-inactive": 1},
        added=5,
        removed=1,
        complete=False,
        progress=SegmentProgress(phase="applying", done=5, total=7),
    )
    running = dataclasses.replace(
        created, status=RunStatus.RUNNING, started_at="2026-11-29T10:00:05Z", segments=[result]
    )
    saved = store.runs.update(running)
    assert saved.etag != created.etag
    got = store.runs.get("e1", "r1")
    assert got == saved
    assert got.segments[0].progress == SegmentProgress(phase="applying", done=5, total=7)
    assert got.segments[0].left_out == {"no-customer-record": 2, "contact-inactive": 1}

    with pytest.raises(PreconditionFailedError):
        store.runs.update(dataclasses.replace(created, status=RunStatus.FAILED))
    assert store.runs.get("e1", "r1").status is RunStatus.RUNNING


def test_run_get_unknown_and_duplicate_create(store: Store) -> None:
    store.runs.create(run("r1"))
    with pytest.raises(ConflictError):
        store.runs.create(run("r1"))
    with pytest.raises(NotFoundError):
        store.runs.get("e1", "nope")
    with pytest.raises(NotFoundError):
        store.runs.get("other-export", "r1")
    assert store.runs.create(run("")).id  # an id is assigned when none is given


def test_runs_list_newest_first_with_continuation(store: Store) -> None:
    ids = [f"run-{n}" for n in range(7)]
    for run_id in ids:
        store.runs.create(run(run_id))
    store.runs.create(run("elsewhere", export_id="e2"))
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page, token = store.runs.list("e1", limit=3, continuation=token)
        pages += 1
        seen += [r.id for r in page]
        if token is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    everything, none = store.runs.list("e1", limit=100)
    assert [r.id for r in everything] == list(reversed(ids)) and none is None
    with pytest.raises(ValueError):
        store.runs.list("e1", continuation="garbage")
    assert store.runs.list("no-such-export") == ([], None)


def test_runs_with_a_fresh_store_find_run_by_id(store: Store, settings) -> None:
    from shared.store import open_store

    store.runs.create(run("r1"))
    other = open_store(settings)  # no cached row keys: uses the index rows
    try:
        got = other.runs.get("e1", "r1")
        other.runs.update(dataclasses.replace(got, slices=3))
        assert store.runs.get("e1", "r1").slices == 3
    finally:
        other.close()


def test_delete_all_runs_of_export(store: Store) -> None:
    for n in range(3):
        store.runs.create(run(f"r{n}"))
    assert store.runs.delete_all("e1") == 3
    assert store.runs.list("e1") == ([], None)
    with pytest.raises(NotFoundError):
        store.runs.get("e1", "r1")


def rejections(count: int, prefix: str = "cust") -> list[Rejection]:
    reasons = list(RejectionReason)
    return [
        Rejection(
            customer_id=f"{prefix}-{n}",
            reason=reasons[n % len(reasons)],
            contact_id=None if n % 2 else f"contact-{n}",
            detail=f"detail {n} " + "x" * (n % 50),
        )
        for n in range(count)
    ]


def page_all(store: Store, limit: int, segment: str | None = None) -> list[RejectionRecord]:
    out: list[RejectionRecord] = []
    token: str | None = None
    while True:
        page, token = store.rejections.list(
            "e1", "r1", limit=limit, continuation=token, segment=segment
        )
        assert len(page) <= limit
        out += page
        if token is None:
            return out


def test_rejections_replace_and_page(store: Store) -> None:
    big = rejections(1500)  # several packed rows
    store.rejections.replace_segment("e1", "r1", "High value", big)
    store.rejections.replace_segment("e1", "r1", "a/b#c?d\\e", rejections(5, "odd"))
    everything = page_all(store, limit=97)
    assert len(everything) == 1505
    high = [r for r in everything if r.segment == "High value"]
    assert [(r.customer_id, r.reason, r.contact_id, r.detail) for r in high] == [
        (r.customer_id, r.reason, r.contact_id, r.detail) for r in big
    ]
    assert {r.segment for r in everything} == {"High value", "a/b#c?d\\e"}
    only_odd = page_all(store, limit=2, segment="a/b#c?d\\e")
    assert [r.customer_id for r in only_odd] == [f"odd-{n}" for n in range(5)]

    # replacing with fewer leaves no stale rows behind; other segments untouched
    store.rejections.replace_segment("e1", "r1", "High value", rejections(3, "new"))
    after = page_all(store, limit=1000)
    assert sorted(r.customer_id for r in after if r.segment == "High value") == [
        "new-0",
        "new-1",
        "new-2",
    ]
    assert len(after) == 8
    store.rejections.replace_segment("e1", "r1", "High value", [])
    assert len(page_all(store, limit=1000, segment="High value")) == 0
    with pytest.raises(ValueError):
        store.rejections.list("e1", "r1", continuation="!!")
    store.rejections.delete_run("e1", "r1")
    assert store.rejections.list("e1", "r1") == ([], None)


def test_long_rejection_details_are_cut(store: Store) -> None:
    store.rejections.replace_segment(
        "e1", "r1", "s", [Rejection("c1", RejectionReason.REJECTED_BY_SALES, None, "y" * 50_000)]
    )
    (record,), _ = store.rejections.list("e1", "r1")
    assert record.detail.startswith("yyy") and record.detail.endswith("…")
    assert len(record.detail) == 2001


def test_active_run_claim_get_release(store: Store) -> None:
    assert store.active_runs.get("e1") is None
    assert store.active_runs.claim("e1", "r1") is None
    assert store.active_runs.claim("e1", "r1") is None  # same run again: still ours
    assert store.active_runs.claim("e1", "r2") == "r1"
    assert store.active_runs.get("e1") == "r1"
    store.active_runs.release("e1", "r2")  # not the holder: nothing happens
    assert store.active_runs.get("e1") == "r1"
    store.active_runs.release("e1", "r1")
    store.active_runs.release("e1", "r1")
    assert store.active_runs.get("e1") is None
    assert store.active_runs.claim("e1", "r2") is None


def test_active_run_takeover_of_a_stale_marker(store: Store) -> None:
    store.active_runs.claim("e1", "old")
    assert store.active_runs.takeover("e1", "someone-else", "new") == "old"
    assert store.active_runs.takeover("e1", "old", "new") is None
    assert store.active_runs.get("e1") == "new"
    assert store.active_runs.takeover("e1", "old", "newer") == "new"


def test_active_run_claim_race_has_exactly_one_winner(store: Store) -> None:
    store.active_runs.get("warmup")  # create the table before the race
    contenders = [f"run-{n}" for n in range(12)]
    barrier = threading.Barrier(len(contenders))
    results: dict[str, str | None] = {}

    def contend(run_id: str) -> None:
        barrier.wait()
        results[run_id] = store.active_runs.claim("e1", run_id)

    threads = [threading.Thread(target=contend, args=(r,)) for r in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r, holder in results.items() if holder is None]
    assert len(winners) == 1
    assert all(holder == winners[0] for r, holder in results.items() if r != winners[0])
    assert store.active_runs.get("e1") == winners[0]
