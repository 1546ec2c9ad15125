"""Customer lookups on Azurite: the strategy comes from the stored counts (no scan first), the
counts follow writes, scans correct them, and a process's cached column follows the table's
revision (a customer write between two runs is seen by the second)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from shared.settings import Settings
from shared.sources.embedded import EmbeddedSource
from shared.store import Store, open_store
from shared.store.customer_plan import POINT_READ_ALWAYS, SCAN_ROWS_PER_POINT_READ
from shared.store.customer_stats import WRITE_WINDOW, Bounds
from shared.store.customers import BUCKETS, CUSTOMERS, bucket_of


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Wire:
    """Counts the requests a Store sends, by kind (raw_request_hook: what went on the wire)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.lock = threading.Lock()
        self.scans = 0  # queries of the customer table
        self.point_reads = 0

    def __call__(self, request: Any) -> None:
        url = request.http_request.url
        path = url.split("?")[0].rsplit("/", 1)[-1]
        if request.http_request.method != "GET" or path.split("(")[0] != self.table:
            return
        with self.lock:
            if "PartitionKey=" in path:
                self.point_reads += 1
            else:
                self.scans += 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wire(settings: Settings) -> Wire:
    return Wire(settings.table_prefix + CUSTOMERS)


@pytest.fixture
def fresh(settings: Settings, clock: Clock, wire: Wire) -> Iterator[Store]:
    """Another process's Store on the same tables: nothing learned, nothing cached."""
    s = open_store(settings, clock=clock, client_options={"raw_request_hook": wire})
    try:
        yield s
    finally:
        s.close()


def customers(count: int, prefix: str = "cust", contact: str = "contact") -> list[dict[str, Any]]:
    return [{"CustomerId": f"{prefix}-{n}", "ContactId": f"{contact}-{n}"} for n in range(count)]


def actual_rows(store: Store) -> dict[str, int]:
    counts = dict.fromkeys((f"b{n:02d}" for n in range(BUCKETS)), 0)
    for entity in store.tables.client(CUSTOMERS).list_entities(select=["PartitionKey"]):
        counts[entity["PartitionKey"]] += 1
    return counts


def test_a_small_segment_of_a_big_table_is_point_read_without_scanning_first(
    settings: Settings, clock: Clock, wire: Wire, fresh: Store
) -> None:
    writer = open_store(settings, clock=clock)
    # enough rows per bucket that a few ids per bucket are cheaper to read one by one
    per_bucket = 4 * SCAN_ROWS_PER_POINT_READ
    assert writer.customers.upsert_many(customers(BUCKETS * per_bucket)).ok
    snapshot = writer.customers.stats.read()
    assert {b: s.upper for b, s in snapshot.bounds.items()} == actual_rows(writer)
    assert all(s.exact for s in snapshot.bounds.values())  # one import into an empty table
    writer.close()

    # three ids from every bucket: more than POINT_READ_ALWAYS, so the counts decide
    by_bucket: dict[str, list[str]] = {}
    for n in range(BUCKETS * per_bucket):
        by_bucket.setdefault(bucket_of(f"cust-{n}"), []).append(f"cust-{n}")
    wanted = [i for ids in by_bucket.values() for i in ids[:3]] + ["nobody"]
    assert len(wanted) > POINT_READ_ALWAYS
    lookup = fresh.customers.lookup_column(wanted, "ContactId")
    assert lookup(wanted) == {i: i.replace("cust", "contact") for i in wanted[:-1]}
    assert lookup.read.scan_buckets == 0 and lookup.read.cached_buckets == 0
    assert lookup.read.rows_read == len(wanted) - 1  # the rows it needed, nothing more
    assert wire.scans == 0
    assert wire.point_reads == len(wanted)

    # a segment as big as the table: bucket scans, one query (page) per bucket here
    everyone = [f"cust-{n}" for n in range(BUCKETS * per_bucket)]
    other = open_store(settings, clock=clock)
    big = other.customers.lookup_column(everyone, "ContactId")
    assert big.read.scan_buckets == BUCKETS
    assert big.read.rows_read == len(everyone) == big.read.found
    other.close()


def test_counts_follow_upserts_and_deletes_and_scans_make_them_exact(
    settings: Settings, clock: Clock
) -> None:
    store = open_store(settings, clock=clock)
    first = customers(600)
    assert store.customers.upsert_many(first).ok
    exact = actual_rows(store)
    assert store.customers.stats.read().bounds == {b: Bounds(n, n) for b, n in exact.items()}

    # the same customers again plus 100 new: an upsert cannot tell new from replaced rows
    assert store.customers.upsert_many(customers(700)).ok
    bounds = store.customers.stats.read().bounds
    now = actual_rows(store)
    for bucket, b in bounds.items():
        assert b.lower <= now[bucket] <= (b.upper or 0)
        written = sum(1 for n in range(700) if bucket_of(f"cust-{n}") == bucket)
        assert b.upper == exact[bucket] + written

    for n in range(10):
        store.customers.delete(f"cust-{n}")
    store.customers.delete("never-there")
    bounds = store.customers.stats.read().bounds
    now = actual_rows(store)
    assert sum(now.values()) == 690
    for bucket, b in bounds.items():
        assert b.lower <= now[bucket] <= (b.upper or 0)

    # a scan counts the buckets (no write is running): the counts are exact again
    reader = open_store(settings, clock=clock)
    reader.customers.lookup_column([f"cust-{n}" for n in range(700)], "ContactId")
    assert reader.customers.stats.read().bounds == {b: Bounds(n, n) for b, n in now.items()}
    reader.close()
    store.close()


def test_a_scan_while_a_write_runs_does_not_store_counts(settings: Settings, clock: Clock) -> None:
    store = open_store(settings, clock=clock)
    assert store.customers.upsert_many(customers(300)).ok
    assert store.customers.upsert_many(customers(300)).ok  # replaced: upper bounds doubled
    before = store.customers.stats.read().bounds
    store.customers.stats.writing({"b00": 1})  # a writer that has not landed its rows yet
    during = store.customers.stats.read().bounds
    assert during["b00"].upper == (before["b00"].upper or 0) + 1
    everyone = [f"cust-{n}" for n in range(300)]
    other = open_store(settings, clock=clock)
    other.customers.lookup_column(everyone, "ContactId")
    assert other.customers.stats.read().bounds == during
    other.close()
    # a writer that never said it was done is presumed gone after WRITE_WINDOW
    clock.now += WRITE_WINDOW + 1
    late = open_store(settings, clock=clock)
    late.customers.lookup_column(everyone, "ContactId")
    assert late.customers.stats.read().bounds == {
        b: Bounds(n, n) for b, n in actual_rows(store).items()
    }
    late.close()
    store.close()


def test_customers_stored_before_counting_existed_are_sampled_not_assumed_empty(
    store: Store, settings: Settings, clock: Clock, wire: Wire, fresh: Store
) -> None:
    client = store.tables.client(CUSTOMERS)
    for row in customers(200):  # written around the repository: no counts row
        entity = {"PartitionKey": bucket_of(row["CustomerId"]), "RowKey": row["CustomerId"]}
        client.upsert_entity({**entity, **row})
    assert fresh.customers.stats.read().bounds == {}  # unknown, not zero
    wanted = [f"cust-{n}" for n in range(200)]
    lookup = fresh.customers.lookup_column(wanted, "ContactId")
    assert lookup.read.found == 200
    assert lookup.read.scan_buckets >= 1  # at least the sampled bucket was counted


def test_a_customer_write_between_two_runs_is_seen_and_otherwise_the_column_is_shared(
    settings: Settings, clock: Clock
) -> None:
    store = open_store(settings, clock=clock)  # one worker process: one Store, one cache
    assert store.customers.upsert_many(customers(400)).ok
    members = [f"cust-{n}" for n in range(400)]
    store.segments.put("Everyone", members)

    def run() -> tuple[dict[str, object | None], Any]:
        source = EmbeddedSource(store, "ContactId")
        ids = source.members("Everyone")
        found = dict(source.lookup(ids[:200]))
        found.update(source.lookup(ids[200:]))
        return found, source.describe()

    first, read = run()
    assert first["cust-7"] == "contact-7"
    assert read.lookup_rows == 400 and read.lookup_shared_rows == 0
    assert "scanned" in read.lookup_strategy

    again, read = run()  # nothing written since: answered from the first run's read
    assert again == first
    assert read.lookup_rows == 0 and read.lookup_shared_rows == 400
    assert read.lookup_strategy == f"{BUCKETS} cached buckets"

    assert store.customers.upsert_many([{"CustomerId": "cust-7", "ContactId": "moved"}]).ok
    after, read = run()
    assert after["cust-7"] == "moved"
    assert read.lookup_rows > 0

    store.customers.delete("cust-8")
    after, read = run()
    assert "cust-8" not in after
    store.close()
