"""Staged chunks: packing is lossless and within Table Storage's limits (pure), a wide row
spans several entities of one chunk, and the stale sweep removes what nothing will read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.imports.worker import STALE_AFTER, sweep_stale
from shared.store import staging
from shared.store.customer_imports import CustomerImport, ImportState, new_import_id, now_iso
from shared.store.limits import MAX_PROPERTY_BYTES
from tests.imports.conftest import Rig


def test_pack_and_unpack_round_trip_with_wide_and_non_ascii_rows() -> None:
    rows: list[dict[str, Any]] = [
        {"CustomerId": f"C-{i}", "Name": 'Zoë 😀\n"quoted"', "N": i, "F": 0.1, "B": None}
        for i in range(3)
    ]
    rows.append({"CustomerId": "wide", **{f"P{i}": "é" * 30_000 for i in range(16)}})
    chunks = list(staging.chunk_lines(rows))
    assert [len(c) for c in chunks] == [3, 1]  # the wide row (~2.9M escaped chars) alone
    unpacked: list[dict[str, Any]] = []
    for lines in chunks:
        parts = staging.pack_lines(lines)
        for part in parts:
            assert len(part) <= 15
            assert all(p.isascii() and 2 * len(p) <= MAX_PROPERTY_BYTES for p in part)
        unpacked += staging.unpack_parts(parts, len(lines))
    assert len(staging.pack_lines(chunks[1])) > 1  # it spans several entities
    assert unpacked == rows
    with pytest.raises(ValueError):
        staging.unpack_parts(staging.pack_lines(chunks[0]), 4)


def test_chunks_hold_whole_rows_within_the_row_and_character_budgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(staging, "CHUNK_ROWS", 3)
    chunks = list(staging.chunk_lines({"CustomerId": f"C-{i}"} for i in range(7)))
    assert [len(c) for c in chunks] == [3, 3, 1]
    monkeypatch.setattr(staging, "CHUNK_CHARS", 50)
    chunks = list(staging.chunk_lines({"CustomerId": "x" * 30} for _ in range(3)))
    assert [len(c) for c in chunks] == [1, 1, 1]


def test_the_stale_sweep(rig: Rig) -> None:
    imports = rig.store.customer_imports
    now = datetime.now(UTC)
    rows = [{"CustomerId": "C-1"}]
    orphan = new_import_id(now - timedelta(hours=2))  # staged, never recorded
    fresh_orphan = new_import_id(now)  # its request may still be recording it
    for import_id in (orphan, fresh_orphan):
        imports.stage(import_id, rows)
    abandoned = new_import_id(now - STALE_AFTER - timedelta(hours=1))
    imports.stage(abandoned, rows)
    long_ago = now_iso(now - STALE_AFTER - timedelta(minutes=1))
    record = CustomerImport(
        id=abandoned,
        state=ImportState.RUNNING,
        rows=1,
        chunks=1,
        created_by="t",
        created_at=long_ago,
        updated_at=long_ago,
    )
    imports.create(record)
    alive = new_import_id(now)
    imports.stage(alive, rows)
    imports.create(record.but(id=alive, created_at=now_iso(now), updated_at=now_iso(now)))
    assert sorted(sweep_stale(rig.store, now)) == sorted([orphan, abandoned])
    assert imports.staged_ids() == {fresh_orphan, alive}
    gone = imports.get(abandoned)
    assert gone.state is ImportState.FAILED and "abandoned" in (gone.error or "")
    assert imports.get(alive).state is ImportState.RUNNING
