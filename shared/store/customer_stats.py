"""Per-bucket row counts and a revision of the customer table, kept in one Table Storage row.

Lookups read this row once (one point read) to choose point reads or bucket scans without
scanning first, and to check that a process's cached contact-ID column is still current.

Counts are BOUNDS, not exact numbers: an upsert cannot tell a new row from a replaced one
without reading it first, and reading costs as much as the write itself (a point read per row,
or a scan of the bucket per import chunk, which makes a chunked import quadratic). So a write
of n rows to a bucket raises its upper bound by n and leaves its lower bound (except into a
bucket known to be empty: then every row is new and both bounds rise). A delete lowers only the
lower bound: the SDK answers a delete of a missing row like any other, and of two concurrent
deletes of one row both would see it "existed" in a prior read, so lowering the upper bound
could take it below the truth. Deletes are single rows (the API), so the drift is small. A scan
that counts a bucket makes both bounds exact again (count_buckets), unless a customer write
began in the meantime or was still running.

The revision is a counter raised by every customer write AFTER its rows are written, so a
reader that saw revision r and later sees r again knows no write landed since it read r.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError
from shared.store._boundary import translated
from shared.store.tables import Tables, plain, wire

CUSTOMER_STATS = "customerstats"
_PK, _RK = "customers", "stats"
# A count taken by a scan is stored only while no customer write is running (a write raises the
# bounds BEFORE its rows land and says it is done after). A writer that died mid-write is
# presumed gone this many seconds after it began (one write call takes far less than this).
WRITE_WINDOW = 600.0
_RETRIES = 40


@dataclass(frozen=True, slots=True)
class Bounds:
    lower: int
    upper: int | None  # None: unknown (rows written before counting existed)

    @property
    def exact(self) -> bool:
        return self.upper is not None and self.lower == self.upper


UNKNOWN = Bounds(0, None)


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    revision: int
    bounds: Mapping[str, Bounds]  # bucket -> bounds (missing bucket: UNKNOWN)
    etag: str
    writers: int  # writes begun and not yet done
    writing_until: float  # the newest of them presumed gone after this time

    def of(self, bucket: str) -> Bounds:
        return self.bounds.get(bucket, UNKNOWN)


def _bucket_suffix(bucket: str) -> str:
    return bucket[1:]  # "b07" -> "07"


def _snapshot(entity: Mapping[str, Any], etag: str, buckets: list[str]) -> StatsSnapshot:
    bounds: dict[str, Bounds] = {}
    for bucket in buckets:
        n = _bucket_suffix(bucket)
        lower, upper = plain(entity.get(f"L{n}")), plain(entity.get(f"U{n}"))
        if upper is not None:
            bounds[bucket] = Bounds(int(lower or 0), int(upper))
    return StatsSnapshot(
        revision=int(plain(entity.get("Revision", 0))),
        bounds=bounds,
        etag=etag,
        writers=int(plain(entity.get("Writers", 0))),
        writing_until=float(plain(entity.get("WritingUntil", 0.0))),
    )


def _fields(bounds: Mapping[str, Bounds]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for bucket, b in bounds.items():
        if b.upper is None:
            continue
        n = _bucket_suffix(bucket)
        fields[f"L{n}"], fields[f"U{n}"] = wire(b.lower), wire(b.upper)
    return fields


class CustomerStats:
    """The counts-and-revision row of the customer table (one per table prefix)."""

    def __init__(
        self,
        tables: Tables,
        buckets: list[str],
        is_empty: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tables = tables
        self.buckets = buckets
        self._is_empty = is_empty  # one cheap read of the customer table (first use only)
        self._clock = clock

    def _client(self) -> TableClient:
        return self._tables.client(CUSTOMER_STATS)

    def read(self) -> StatsSnapshot:
        """The current row (created on first use: all buckets exactly 0 when the customer table
        is empty, else unknown, i.e. customers stored before counting existed)."""
        client = self._client()
        for _ in range(_RETRIES):
            try:
                with translated("read customer counts"):
                    entity = client.get_entity(_PK, _RK)
                return _snapshot(entity, str(entity.metadata["etag"]), self.buckets)
            except NotFoundError:
                pass
            known = {b: Bounds(0, 0) for b in self.buckets} if self._is_empty() else {}
            try:
                with translated("create customer counts"):
                    client.create_entity({"PartitionKey": _PK, "RowKey": _RK, **_fields(known)})
            except ConflictError:
                pass  # created concurrently: read theirs
        raise PreconditionFailedError("customer counts: row kept disappearing")

    def _update(self, change: Callable[[StatsSnapshot], dict[str, Any] | None]) -> bool:
        """Read-modify-write guarded by the row's ETag (retried on a concurrent change).
        ``change`` returns the properties to merge, or None to give up. True if written."""
        client = self._client()
        for attempt in range(_RETRIES):
            snapshot = self.read()
            fields = change(snapshot)
            if fields is None:
                return False
            try:
                with translated("update customer counts"):
                    client.update_entity(
                        {"PartitionKey": _PK, "RowKey": _RK, **fields},
                        mode=UpdateMode.MERGE,
                        etag=snapshot.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                return True
            except PreconditionFailedError:
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise PreconditionFailedError("customer counts: too many concurrent writers")

    def writing(self, rows_per_bucket: Mapping[str, int]) -> None:
        """Before writing rows: raise the bounds (see the module doc) and mark a write running."""

        def change(s: StatsSnapshot) -> dict[str, Any]:
            new: dict[str, Bounds] = {}
            for bucket, n in rows_per_bucket.items():
                b = s.of(bucket)
                if b.upper is None:
                    continue  # unknown stays unknown until a scan counts the bucket
                lower = b.lower + n if b.upper == 0 else b.lower  # empty: every row is new
                new[bucket] = Bounds(lower, b.upper + n)
            until = max(s.writing_until, self._clock() + WRITE_WINDOW)
            return {**_fields(new), "Writers": s.writers + 1, "WritingUntil": until}

        self._update(change)

    def deleted(self, rows_per_bucket: Mapping[str, int]) -> None:
        """After rows were deleted (or found missing): lower the lower bounds (see the module
        doc); a new revision."""

        def change(s: StatsSnapshot) -> dict[str, Any]:
            new: dict[str, Bounds] = {}
            for bucket, n in rows_per_bucket.items():
                b = s.of(bucket)
                if b.upper is not None:
                    new[bucket] = Bounds(max(0, b.lower - n), b.upper)
            return {**_fields(new), "Revision": wire(s.revision + 1)}

        self._update(change)

    def written(self) -> None:
        """After rows were written (or a write failed part-way): a new revision; done."""
        self._update(lambda s: {"Revision": wire(s.revision + 1), "Writers": max(0, s.writers - 1)})

    def count_buckets(self, seen: StatsSnapshot, counts: Mapping[str, int]) -> bool:
        """Store exact counts taken by scans that started after ``seen`` was read, unless the
        row changed since (a write began or landed) or a write was still running then."""
        if not counts or (seen.writers > 0 and self._clock() < seen.writing_until):
            return False
        fields = _fields({b: Bounds(n, n) for b, n in counts.items()})
        try:
            with translated("update customer counts"):
                self._client().update_entity(
                    {"PartitionKey": _PK, "RowKey": _RK, **fields},
                    mode=UpdateMode.MERGE,
                    etag=seen.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (PreconditionFailedError, NotFoundError):
            return False
        return True
