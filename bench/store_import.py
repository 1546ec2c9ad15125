"""Store import figures on a fresh in-memory Azurite (prints figures; not a pass/fail test).

    .venv/bin/python -m bench.store_import [--members 1000000] [--customers 100000]

Measures: segments.put of N member ids (and members() read back), customers.upsert_many of M
rows, customers.get_many of M ids (bucket scans) and of a few hundred ids (point reads).
"""

from __future__ import annotations

import argparse
import time
import uuid

from devtools.azurite import start_azurite
from shared.settings import Settings
from shared.storage import StorageConnection
from shared.store import open_store


def timed(label: str, count: int, unit: str, action):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    print(f"{label:<48} {seconds:8.2f} s  {count / seconds:12,.0f} {unit}/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()

    azurite = start_azurite()
    try:
        settings = Settings(
            storage=StorageConnection.from_string(azurite.connection_string), table_prefix="bench"
        )
        store = open_store(settings)
        store.ensure()

        members = [str(uuid.UUID(int=n)) for n in range(args.members)]
        info = timed(
            f"segments.put {args.members:,} ids",
            args.members,
            "members",
            lambda: store.segments.put("Bench", members),
        )
        chunks = store.tables.client("segmentchunks").query_entities(
            "PartitionKey eq @pk", parameters={"pk": info.version}, select=["RowKey"]
        )
        print(f"  -> {info.members:,} members stored in {len(list(chunks))} chunk entities")
        read = timed(
            f"segments.members {args.members:,} ids",
            args.members,
            "members",
            lambda: store.segments.members("Bench"),
        )
        assert len(read) == args.members
        timed(
            f"segments.put {args.members:,} ids again (replace)",
            args.members,
            "members",
            lambda: store.segments.put("Bench", members),
        )

        rows = [
            {
                "CustomerId": f"cust-{n}",
                "ContactId": str(uuid.UUID(int=n)),
                "Name": f"N {n}",
                "Score": n,
            }
            for n in range(args.customers)
        ]
        report = timed(
            f"customers.upsert_many {args.customers:,} rows",
            args.customers,
            "rows",
            lambda: store.customers.upsert_many(rows),
        )
        assert report.upserted == args.customers, report.errors[:3]
        ids = [str(r["CustomerId"]) for r in rows]
        found = timed(
            f"customers.get_many {args.customers:,} ids",
            args.customers,
            "ids",
            lambda: store.customers.get_many(ids, columns=["ContactId"]),
        )
        assert len(found) == args.customers
        few = ids[:: max(1, args.customers // 200)][:200]
        timed(
            f"customers.get_many {len(few)} ids (point reads)",
            len(few),
            "ids",
            lambda: store.customers.get_many(few, columns=["ContactId"]),
        )
        store.close()
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
