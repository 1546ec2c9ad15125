"""Customer rows: validation before any write, chunked transactions, point and bulk reads."""

from __future__ import annotations

import pytest

from shared.store import RowError, Store
from shared.store.customer_plan import POINT_READ_ALWAYS
from shared.store.customers import BUCKETS, MAX_REPORTED_ERRORS, bucket_of


def rows(count: int, prefix: str = "cust") -> list[dict[str, object]]:
    return [
        {
            "CustomerId": f"{prefix}-{n}",
            "ContactId": f"00000000-0000-4000-8000-{n:012d}",
            "Score": n,
            "Ratio": n / 4,
            "Vip": n % 2 == 0,
            "Note": None,
        }
        for n in range(count)
    ]


def test_upsert_and_get_types(store: Store) -> None:
    report = store.customers.upsert_many(
        [{"CustomerId": "a/b#c?d\\e", "Big": 2**40, "Neg": -3, "F": 0.5, "B": False, "T": "é"}]
    )
    assert (report.rows, report.upserted, report.errors) == (1, 1, [])
    assert store.customers.get("a/b#c?d\\e") == {
        "CustomerId": "a/b#c?d\\e",
        "Big": 2**40,
        "Neg": -3,
        "F": 0.5,
        "B": False,
        "T": "é",
    }
    assert store.customers.get("missing") is None
    assert store.customers.get("bad\x00") is None


def test_replace_drops_columns_merge_keeps_them(store: Store) -> None:
    store.customers.upsert_many([{"CustomerId": "c1", "A": "1", "B": "2"}])
    store.customers.upsert_many([{"CustomerId": "c1", "A": "9"}])
    assert store.customers.get("c1") == {"CustomerId": "c1", "A": "9"}
    store.customers.upsert_many([{"CustomerId": "c1", "C": "3"}], merge=True)
    assert store.customers.get("c1") == {"CustomerId": "c1", "A": "9", "C": "3"}


def test_a_bad_row_means_nothing_is_written(store: Store) -> None:
    batch = rows(300)
    batch[120] = {"CustomerId": "ok-id", "bad column": 1}
    batch[250] = {"ContactId": "no id"}
    batch.append({"CustomerId": "cust-5"})  # row 301 repeats row 6
    batch.append({"CustomerId": "c\x01"})
    batch.append({"CustomerId": "list", "Tags": ["a"]})
    batch.append({"CustomerId": "huge", "Blob": "x" * 40_000})
    report = store.customers.upsert_many(batch)
    assert report.upserted == 0
    assert report.rows == 304
    fields = {(e.row, e.field) for e in report.errors}
    assert (121, "bad column") in fields
    assert (251, "CustomerId") in fields
    assert (301, "CustomerId") in fields
    assert (302, "CustomerId") in fields
    assert (303, "Tags") in fields
    assert any(e.row == 304 and e.field == "Blob" and "65536" in e.message for e in report.errors)
    assert all(isinstance(e, RowError) for e in report.errors)
    assert store.customers.get_many([f"cust-{n}" for n in range(300)]) == {}


def test_many_rows_in_one_partition_are_chunked_into_transactions(store: Store) -> None:
    # 250 ids that all hash into the same bucket: three transactions of <=100 operations
    same: list[str] = []
    n = 0
    while len(same) < 250:
        if bucket_of(f"id{n}") == "b00":
            same.append(f"id{n}")
        n += 1
    report = store.customers.upsert_many([{"CustomerId": i, "ContactId": i} for i in same])
    assert report.upserted == 250
    found = store.customers.get_many(same)
    assert set(found) == set(same)
    client = store.tables.client("customers")
    stored = list(client.query_entities("PartitionKey eq @pk", parameters={"pk": "b00"}))
    assert len(stored) == 250


def test_get_many_small_and_large_with_columns(store: Store) -> None:
    data = rows(1200)
    assert store.customers.upsert_many(data).upserted == 1200
    few = ["cust-1", "cust-7", "nope", "bad\x00"]
    assert store.customers.get_many(few) == {
        "cust-1": {k: v for k, v in data[1].items() if v is not None},
        "cust-7": {k: v for k, v in data[7].items() if v is not None},
    }
    # point reads (few ids), bucket scans (many), then steered by the counts
    everyone = [f"cust-{n}" for n in range(1200)] + ["ghost-1", "ghost-2"]
    for wanted in (everyone, everyone[:100], everyone[: POINT_READ_ALWAYS + 5]):
        got = store.customers.get_many(wanted, columns=["ContactId"])
        assert set(got) == set(wanted) - {"ghost-1", "ghost-2"}
        assert got["cust-10"] == {"CustomerId": "cust-10", "ContactId": data[10]["ContactId"]}
    assert store.customers.get_many([]) == {}


def test_buckets_are_stable_and_spread() -> None:
    assert bucket_of("customer-42") == bucket_of("customer-42")
    spread = {bucket_of(f"customer-{n}") for n in range(1000)}
    assert len(spread) == BUCKETS


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"CustomerId": "x", "PartitionKey": "p"}, "PartitionKey"),
        ({"CustomerId": "x", "1abc": "p"}, "1abc"),
        ({"CustomerId": "x", "a" * 256: "p"}, "a" * 256),
        ({"CustomerId": "x", "n": 2**64}, "n"),
        ({"CustomerId": "x", "n": float("nan")}, "n"),
        ({"CustomerId": 12}, "CustomerId"),
        ({"CustomerId": "x" * 257}, "CustomerId"),
    ],
)
def test_row_validation_names_the_field(store: Store, row: dict, field: str) -> None:
    report = store.customers.upsert_many([row])
    assert report.upserted == 0
    assert [(e.row, e.field) for e in report.errors] == [(1, field)]


def test_prefetch_answers_batches_from_one_read(store: Store) -> None:
    store.customers.upsert_many(rows(50))
    lookup = store.customers.prefetch([f"cust-{n}" for n in range(0, 50, 5)], ["ContactId"])
    store.customers.upsert_many([{"CustomerId": "cust-5", "ContactId": "changed"}])
    assert lookup(["cust-5", "cust-6", "nobody"]) == {
        "cust-5": {"CustomerId": "cust-5", "ContactId": "00000000-0000-4000-8000-000000000005"}
    }


def test_whole_row_size_limit_and_error_cap(store: Store) -> None:
    wide = {"CustomerId": "wide", **{f"C{n}": "x" * 30_000 for n in range(20)}}
    report = store.customers.upsert_many([wide])
    assert [(e.row, e.field) for e in report.errors] == [(1, "")]
    assert "1048576" in report.errors[0].message
    many_bad = [{"CustomerId": f"c{n}", "bad col": 1} for n in range(MAX_REPORTED_ERRORS + 500)]
    report = store.customers.upsert_many(many_bad)
    assert report.upserted == 0
    assert len(report.errors) == MAX_REPORTED_ERRORS + 1
    assert report.errors[-1].row == 0 and "1500 rows" in report.errors[-1].message
