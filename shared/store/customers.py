"""Unified customer rows, keyed by CustomerId; any other columns are stored as properties.

Rows are spread over hash buckets (PartitionKey) so big imports run as parallel transactions.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from azure.data.tables import UpdateMode

from shared.errors import NotFoundError, StoreError, StoreLimitError
from shared.store._boundary import translated
from shared.store.customer_cache import ColumnCache
from shared.store.customer_reads import (
    ColumnLookup,
    CustomerReader,
    column_value,
    row_value,
)
from shared.store.customer_stats import CustomerStats
from shared.store.keys import encode_key, text_problem, try_encode_key
from shared.store.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_CUSTOM_PROPERTIES,
    check_entity,
    property_name_problem,
    property_problem,
)
from shared.store.tables import Tables, properties, submit, wire

CUSTOMERS = "customers"
ID_COLUMN = "CustomerId"
BUCKETS = 32
MAX_ID_CHARS = 256
MAX_REPORTED_ERRORS = 1000  # an import report lists at most this many problems (plus a summary)
_WRITERS = 4


class RowError(NamedTuple):
    row: int  # 1-based position of the row in the import
    field: str  # column name ("" for the whole row)
    message: str


@dataclass(slots=True)
class ImportReport:
    rows: int
    upserted: int
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def bucket_of(customer_id: str) -> str:
    """Stable hash bucket (PartitionKey) of a customer id."""
    return f"b{zlib.crc32(customer_id.encode('utf-8')) % BUCKETS:02d}"


def row_problems(row: object) -> list[tuple[str, str]]:
    """(field, message) problems of one customer row; empty if it can be stored."""
    if not isinstance(row, Mapping):
        return [("", f"a row must be an object of column -> value, got {type(row).__name__}")]
    problems: list[tuple[str, str]] = []
    if ID_COLUMN not in row or row[ID_COLUMN] is None:
        problems.append((ID_COLUMN, "is required"))
    else:
        problem = text_problem(row[ID_COLUMN], max_chars=MAX_ID_CHARS)
        if problem:
            problems.append((ID_COLUMN, problem))
    if len(row) > MAX_CUSTOM_PROPERTIES:
        problems.append(
            ("", f"{len(row)} columns; Table Storage allows at most {MAX_CUSTOM_PROPERTIES}")
        )
    for name, value in row.items():
        name_problem = property_name_problem(name)
        if name_problem:
            problems.append((str(name), name_problem))
            continue
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            too_big = property_problem(name, value)
            if too_big:
                problems.append((name, too_big))
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                problems.append((name, "integer does not fit in 64 bits"))
        elif isinstance(value, float):
            if not math.isfinite(value):
                problems.append((name, "number must be finite"))
        else:
            problems.append(
                (
                    name,
                    f"unsupported value type {type(value).__name__} (use text, number, "
                    "true/false or null)",
                )
            )
    return problems


def _entity(row: Mapping[str, Any]) -> dict[str, Any]:
    customer_id = row[ID_COLUMN]
    entity: dict[str, Any] = {
        "PartitionKey": bucket_of(customer_id),
        "RowKey": encode_key(customer_id, "CustomerId"),
    }
    entity.update({k: wire(v) for k, v in row.items() if v is not None})
    return entity


def validate_rows(rows: Iterable[object]) -> list[RowError]:
    """Every problem of an import (1-based rows), duplicates and entity limits included; empty
    if all rows can be written. Pure: the one check of the synchronous route and of a background
    import (shared/imports), run before anything is written."""
    errors: list[RowError] = []
    first_seen: dict[str, int] = {}
    bad_rows = 0
    for number, row in enumerate(rows, start=1):
        problems = row_problems(row)
        if not problems:
            assert isinstance(row, Mapping)
            customer_id = str(row[ID_COLUMN])
            if customer_id in first_seen:
                seen = first_seen[customer_id]
                problems.append((ID_COLUMN, f"duplicate CustomerId, first seen in row {seen}"))
            else:
                first_seen[customer_id] = number
        if not problems:
            try:
                check_entity(_entity(row), "the row")  # type: ignore[arg-type]
            except StoreLimitError as error:
                problems.append(("", str(error)))
        if problems:
            bad_rows += 1
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.extend(RowError(number, f, m) for f, m in problems)
    if bad_rows and len(errors) >= MAX_REPORTED_ERRORS:
        errors.append(RowError(0, "", f"{bad_rows} rows have problems; not all are listed"))
    return errors


class CustomerRepository:
    """Customer rows, their per-bucket counts (customer_stats) and this process's cache of
    looked-up columns (customer_cache): every write goes through _write or delete, so the
    counts and the revision the cache is checked against follow every path that writes."""

    def __init__(
        self,
        tables: Tables,
        cache: ColumnCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tables = tables
        buckets = [f"b{n:02d}" for n in range(BUCKETS)]
        self.stats = CustomerStats(tables, buckets, self._is_empty, clock)
        self._reader = CustomerReader(
            tables, CUSTOMERS, bucket_of, self.stats, cache or ColumnCache()
        )

    def _is_empty(self) -> bool:
        client = self._tables.client(CUSTOMERS)
        with translated("read customers"):
            first = next(iter(client.list_entities(results_per_page=1, select=["RowKey"])), None)
        return first is None

    def upsert_many(
        self, rows: Sequence[Mapping[str, object]], *, merge: bool = False
    ) -> ImportReport:
        """Validate every row, then write all of them (or, if any row is bad, nothing).

        Each row replaces the stored customer (merge=True keeps columns the row does not name).
        A CustomerId appearing twice in one import is an error."""
        errors = validate_rows(rows)
        if errors:
            return ImportReport(rows=len(rows), upserted=0, errors=errors)
        self.write_rows(rows, merge=merge)
        return ImportReport(rows=len(rows), upserted=len(rows), errors=[])

    def write_rows(self, rows: Sequence[Mapping[str, object]], *, merge: bool = False) -> None:
        """Write rows that passed validate_rows (upserts: idempotent, so a retry or a resumed
        background import may write a row again)."""
        self._write([_entity(row) for row in rows], merge)

    def _write(self, entities: list[dict[str, Any]], merge: bool) -> None:
        """Write rows bucket by bucket in parallel transactions: the counts are raised first
        and the revision after (customer_stats), so both hold whatever happens in between."""
        by_bucket: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        mode = UpdateMode.MERGE if merge else UpdateMode.REPLACE
        for entity in entities:
            by_bucket[entity["PartitionKey"]].append(("upsert", entity, {"mode": mode}))
        if not by_bucket:
            return
        self.stats.writing({b: len(ops) for b, ops in by_bucket.items()})
        try:
            self._submit(list(by_bucket.values()))
        except BaseException:
            with suppress(StoreError):  # some rows may have landed; the first error wins
                self.stats.written()
            raise
        self.stats.written()

    def _submit(self, work: list[list[tuple[Any, ...]]]) -> None:
        client = self._tables.client(CUSTOMERS)
        if len(work) <= 1:
            for ops in work:
                submit(client, ops, "import customers")
            return
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            for future in [pool.submit(submit, client, ops, "import customers") for ops in work]:
                future.result()

    def get(self, customer_id: str) -> dict[str, Any] | None:
        key = try_encode_key(customer_id)
        if key is None:
            return None
        try:
            with translated(f"get customer {customer_id!r}"):
                entity = self._tables.client(CUSTOMERS).get_entity(bucket_of(customer_id), key)
        except NotFoundError:
            return None
        return properties(entity)

    def get_many(
        self, ids: Iterable[str], columns: Sequence[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """{customer id: row} for the ids that exist. `columns` limits what is read
        (CustomerId is always included)."""
        wanted = {i for i in ids if try_encode_key(i) is not None}
        select = None if columns is None else sorted({ID_COLUMN, *columns})
        lookup = self._reader.read(wanted, select, row_value, None, ID_COLUMN)
        return lookup(list(wanted))

    def lookup_column(self, ids: Iterable[str], column: str) -> ColumnLookup:
        """Read one column of the `ids`' rows (point reads or bucket scans, whichever is
        cheaper; buckets another lookup of this process read at the current revision are
        answered from memory), then answer any subset from memory:
        ``lookup(batch) -> {customer id: value}`` for the ids that have a row (value None
        when the row lacks the column); ``lookup.read`` says what the read cost."""
        wanted = {i for i in ids if try_encode_key(i) is not None}
        select = sorted({ID_COLUMN, column})
        return self._reader.read(wanted, select, column_value(column), column, ID_COLUMN)

    def prefetch(
        self, ids: Iterable[str], columns: Sequence[str] | None = None
    ) -> Callable[[Sequence[str]], dict[str, dict[str, Any]]]:
        """Read all `ids` in one get_many, then answer lookups of any subset from memory."""
        rows = self.get_many(ids, columns)

        def lookup(batch: Sequence[str]) -> dict[str, dict[str, Any]]:
            return {i: rows[i] for i in batch if i in rows}

        return lookup

    def delete(self, customer_id: str) -> None:
        """Idempotent."""
        key = try_encode_key(customer_id)
        if key is None:
            return
        bucket = bucket_of(customer_id)
        with translated(f"delete customer {customer_id!r}"):
            self._tables.client(CUSTOMERS).delete_entity(bucket, key)
        self.stats.deleted({bucket: 1})
