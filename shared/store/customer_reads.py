"""Reading customer rows by id: per bucket, point reads, a scan, or the process's cached column
(customer_plan decides; customer_stats informs it without scanning; customer_cache shares
scans between lookups of one process). Every read reports what it cost (LookupRead).

Why not finer keys: a $filter may hold at most 15 discrete comparisons ("Querying tables and
entities"), and an ``or`` of RowKey values is served as a partition scan, not a range query
("Design for querying", Table Storage docs), so "many ids in one query" costs what a scan
costs; RowKey ranges only pay for dense sorted runs of ids, which a segment spread over every
bucket by the hash does not have. Point reads and bucket scans it is.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.errors import NotFoundError
from shared.store._boundary import translated
from shared.store.customer_cache import ColumnCache
from shared.store.customer_plan import Read, Sample, plan, sampled, settle
from shared.store.customer_stats import CustomerStats, StatsSnapshot
from shared.store.keys import encode_key
from shared.store.tables import Tables, plain, properties

V = TypeVar("V")
READERS = 16  # concurrent point reads / bucket scans of one lookup


@dataclass(frozen=True, slots=True)
class LookupRead:
    """What one lookup cost. ``rows_read`` came from storage (rows scanned, plus rows found by
    point reads); ``rows_cached`` were answered from buckets another lookup of this process
    read (held, or loaded while this one waited)."""

    ids: int = 0
    found: int = 0
    rows_read: int = 0
    rows_cached: int = 0
    requests: int = 0
    point_buckets: int = 0
    scan_buckets: int = 0
    cached_buckets: int = 0

    @property
    def strategy(self) -> str:
        parts = [
            f"{n} {name}"
            for n, name in (
                (self.point_buckets, "point-read"),
                (self.scan_buckets, "scanned"),
                (self.cached_buckets, "cached"),
            )
            if n
        ]
        return ", ".join(parts) + " buckets" if parts else "none"


@dataclass(slots=True)
class _Bucket:
    values: dict[str, Any]
    rows: int  # rows read from storage for it (0 when cached)
    requests: int
    read: Read


class ColumnLookup:
    """A lookup's answer: {customer id: value} for any subset of the ids read."""

    def __init__(
        self,
        buckets: dict[str, dict[str, Any]],
        read: LookupRead,
        bucket_of: Callable[[str], str],
    ) -> None:
        self._buckets = buckets
        self._bucket_of = bucket_of
        self.read = read

    def __call__(self, batch: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for customer_id in batch:
            values = self._buckets.get(self._bucket_of(customer_id))
            if values is not None and customer_id in values:
                found[customer_id] = values[customer_id]
        return found


class CustomerReader:
    def __init__(
        self,
        tables: Tables,
        table: str,
        bucket_of: Callable[[str], str],
        stats: CustomerStats,
        cache: ColumnCache,
    ) -> None:
        self._tables = tables
        self._bucket_of = bucket_of
        self._table = table
        self._stats = stats
        self._cache = cache
        self._lock = threading.Lock()
        self._known: tuple[int, dict[str, int]] = (-1, {})  # (revision, bucket -> rows)
        self._sample: tuple[int, Sample] | None = None  # (revision, what a sample taught)

    def read(
        self,
        wanted: Iterable[str],
        select: list[str] | None,
        value: Callable[[dict[str, Any]], Any],
        cache_column: str | None,
        id_column: str,
    ) -> ColumnLookup:
        """Read ``wanted`` (valid ids), keeping ``value(entity)`` per id. With ``cache_column``
        (select is then [id, column]) whole scanned buckets are shared via the cache, when the
        whole table fits in it (its counts' upper bounds say so); else a scan keeps only the
        wanted ids' rows, so memory follows the segment, not the table."""
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for customer_id in wanted:
            by_bucket[self._bucket_of(customer_id)].append(customer_id)
        if not by_bucket:
            return ColumnLookup({}, LookupRead(), self._bucket_of)
        snapshot = self._stats.read()
        revision = snapshot.revision
        with self._lock:
            known = dict(self._known[1]) if self._known[0] == revision else {}
            earlier = self._sample[1] if self._sample and self._sample[0] == revision else None
        uppers = [snapshot.of(b).upper for b in self._stats.buckets]
        fits = None not in uppers and sum(u or 0 for u in uppers) <= self._cache.max_rows
        shared = cache_column if fits else None
        cached = self._cache.cached(revision, shared) if shared else set()
        sizes = {b: len(ids) for b, ids in by_bucket.items()}
        chosen = plan(sizes, snapshot.of, known, cached)

        def scan(bucket: str) -> _Bucket:
            if shared is None:
                keep = set(by_bucket[bucket])
                values, rows, pages = self._scan(bucket, select, value, id_column, keep)
                return _Bucket(values, rows, pages, Read.SCAN)
            cost = [0, 0]

            def load() -> dict[str, Any]:
                values, cost[0], cost[1] = self._scan(bucket, select, value, id_column, None)
                return values

            values, here = self._cache.get(revision, shared, bucket, load)
            if not here:
                return _Bucket(values, 0, 0, Read.CACHED)
            return _Bucket(values, cost[0], cost[1], Read.SCAN)

        done: dict[str, _Bucket] = {}
        if chosen.sample is not None and earlier is not None:
            settle(chosen, sizes, snapshot.of, earlier, scanned=False)
        elif chosen.sample is not None:
            done[chosen.sample] = scan(chosen.sample)
            first = done[chosen.sample]
            counted = first.rows if first.read is Read.SCAN else len(first.values)
            learned = sampled(snapshot.of(chosen.sample), counted)
            with self._lock:
                self._sample = (revision, learned)
            settle(chosen, sizes, snapshot.of, learned, scanned=True)
        point_ids = [i for b, r in chosen.reads.items() if r is Read.POINT for i in by_bucket[b]]
        to_scan = [b for b, r in chosen.reads.items() if r is not Read.POINT and b not in done]
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            scans = dict(zip(to_scan, pool.map(scan, to_scan), strict=True))
            points = self._point_reads(point_ids, select, value, pool)
        done.update(scans)
        for b, result in done.items():
            if result.read is Read.SCAN:
                known[b] = result.rows
        self._learn(snapshot, known)
        return self._answer(by_bucket, done, points, len(point_ids), chosen.reads)

    def _answer(
        self,
        by_bucket: dict[str, list[str]],
        done: dict[str, _Bucket],
        points: dict[str, Any],
        point_requests: int,
        reads: dict[str, Read],
    ) -> ColumnLookup:
        buckets: dict[str, dict[str, Any]] = {b: r.values for b, r in done.items()}
        found = len(points)
        rows_cached = 0
        for b, result in done.items():
            hits = sum(1 for i in by_bucket[b] if i in result.values)
            found += hits
            if result.read is Read.CACHED:
                rows_cached += hits
        for b, r in reads.items():
            if r is Read.POINT:
                buckets[b] = points
        kinds = [r.read for r in done.values()] + [r for r in reads.values() if r is Read.POINT]
        read = LookupRead(
            ids=sum(len(ids) for ids in by_bucket.values()),
            found=found,
            rows_read=sum(r.rows for r in done.values()) + len(points),
            rows_cached=rows_cached,
            requests=1 + sum(r.requests for r in done.values()) + point_requests,
            point_buckets=kinds.count(Read.POINT),
            scan_buckets=kinds.count(Read.SCAN),
            cached_buckets=kinds.count(Read.CACHED),
        )
        return ColumnLookup(buckets, read, self._bucket_of)

    def _learn(self, snapshot: StatsSnapshot, known: dict[str, int]) -> None:
        with self._lock:
            if snapshot.revision >= self._known[0]:
                self._known = (snapshot.revision, known)
        self._stats.count_buckets(
            snapshot, {b: n for b, n in known.items() if not snapshot.of(b).exact}
        )

    def _scan(
        self,
        bucket: str,
        select: list[str] | None,
        value: Callable[[dict[str, Any]], Any],
        id_column: str,
        keep: set[str] | None,
    ) -> tuple[dict[str, Any], int, int]:
        """(id -> value for the rows kept (all when ``keep`` is None), rows read, pages)."""
        client = self._tables.client(self._table)
        found: dict[str, Any] = {}
        pages = rows = 0
        with translated("read customers"):
            for page in client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": bucket}, select=select
            ).by_page():
                pages += 1
                for entity in page:
                    rows += 1
                    customer_id = plain(entity.get(id_column))
                    if keep is None or customer_id in keep:
                        found[customer_id] = value(entity)
        return found, rows, max(pages, 1)

    def _point_reads(
        self,
        ids: list[str],
        select: list[str] | None,
        value: Callable[[dict[str, Any]], Any],
        pool: ThreadPoolExecutor,
    ) -> dict[str, Any]:
        client = self._tables.client(self._table)

        def get(customer_id: str) -> tuple[bool, Any]:
            try:
                with translated(f"get customer {customer_id!r}"):
                    entity = client.get_entity(
                        self._bucket_of(customer_id), encode_key(customer_id), select=select
                    )
            except NotFoundError:
                return False, None
            return True, value(entity)

        found: dict[str, Any] = {}
        for customer_id, (exists, v) in zip(ids, pool.map(get, ids), strict=True):
            if exists:
                found[customer_id] = v
        return found


def row_value(entity: dict[str, Any]) -> dict[str, Any]:
    return properties(entity)


def column_value(column: str) -> Callable[[dict[str, Any]], Any]:
    def value(entity: dict[str, Any]) -> Any:
        return plain(entity.get(column))

    return value
