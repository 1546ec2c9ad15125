"""Customer lookups of the embedded source (issue 12): rows read, requests, seconds, strategy.

    python -m bench.lookups [--customers 300000] [--sizes 1000,10000,100000,300000]
                            [--exports 6] [--location DIR] [--before DIR]

Loads N customer rows (an import in chunks of 10,000 rows, through CustomerRepository, so the
per-bucket counts are kept as an import keeps them) into Azurite, then, each case in a fresh
process (its own cache, its own peak RSS), looks up the contact-ID column of a segment of S
random customers (0.5 % of them without a row):

- ``first``: the first lookup of a new worker process (nothing learned, nothing cached);
- ``again``: a second export in the same process, another segment of the same size;
- ``6 at once``: --exports exports of S members started together in one process (a nightly
  refresh on one worker), wall time until the last has its contact ids.

An initial export's first Sales write (validate / add) waits for its segment's contact ids, so
the lookup's seconds are the time to the first Sales request it can make.
``--before DIR``: also run every case with the ``shared`` package found in DIR (e.g.
``git archive <commit> shared | tar -x -C DIR``), the code before this change; requests and
rows are counted on the wire, so both are measured the same way. ``--location`` keeps Azurite
on disk there and reuses a previous load. Prints figures; judges nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PREFIX = "lookups"
FIELD = "ContactId"
MISSING_EVERY = 200


def segment(customers: int, size: int, seed: int) -> list[str]:
    picks = random.Random(seed).sample(range(customers), min(size, customers))
    return [f"cust-{n}" if k % MISSING_EVERY else f"ghost-{n}" for k, n in enumerate(picks)]


class Counter:
    """Azure-core hooks counting requests and entities on the wire (code-independent)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.rows = 0

    def on_request(self, request: Any) -> None:
        with self.lock:
            self.requests += 1

    def on_response(self, response: Any) -> None:
        http = response.http_response
        path = http.request.url.split("?")[0].rsplit("/", 1)[-1]
        if http.request.method != "GET" or http.status_code != 200 or "customers" not in path:
            return
        body = json.loads(http.text() or "{}")
        with self.lock:
            self.rows += len(body["value"]) if "value" in body else 1


def _store(connection: str, counter: Counter | None = None) -> Any:
    from shared.settings import Settings
    from shared.storage import StorageConnection
    from shared.store import open_store

    options: dict[str, Any] = {}
    if counter is not None:
        options.update(raw_request_hook=counter.on_request, raw_response_hook=counter.on_response)
    settings = Settings(storage=StorageConnection.from_string(connection), table_prefix=PREFIX)
    return open_store(settings, client_options=options)


def _lookup(store: Any, ids: list[str]) -> tuple[int, str]:
    """(ids found, strategy) through the embedded source's call (or the old one)."""
    customers = store.customers
    if hasattr(customers, "lookup_column"):
        values = customers.lookup_column(ids, FIELD)
        return values.read.found, values.read.strategy
    rows = customers.prefetch(ids, columns=[FIELD])  # the code before this change
    return len(rows(ids)), "-"


def run_case(connection: str, customers: int, size: int, case: str, exports: int) -> None:
    counter = Counter()
    store = _store(connection, counter)
    seeds = [size * 10 + k for k in range(exports if case == "concurrent" else 2)]
    results: dict[int, tuple[float, int, str]] = {}
    if case == "concurrent":
        start = time.perf_counter()

        def one(seed: int) -> None:
            found, strategy = _lookup(store, segment(customers, size, seed))
            results[seed] = (time.perf_counter() - start, found, strategy)

        threads = [threading.Thread(target=one, args=(s,)) for s in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = max(r[0] for r in results.values())
        strategy = "; ".join(sorted({r[2] for r in results.values()}))
        found = sum(r[1] for r in results.values())
    else:
        if case == "again":
            _lookup(store, segment(customers, size, seeds[1]))
            counter.requests = counter.rows = 0
        ids = segment(customers, size, seeds[0])
        start = time.perf_counter()
        found, strategy = _lookup(store, ids)
        seconds = time.perf_counter() - start
    store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"seconds": seconds, "found": found, "strategy": strategy, "peak_rss_mb": peak}
    out.update(requests=counter.requests, rows=counter.rows)
    print(json.dumps(out))


def load(connection: str, customers: int) -> None:
    store = _store(connection)
    stored = store.customers.get_many([f"cust-{customers - 1}"])
    if stored:
        print(f"{customers:,} customers already loaded", flush=True)
        return
    start = time.perf_counter()
    for first in range(0, customers, 10_000):
        rows = [
            {"CustomerId": f"cust-{n}", FIELD: str(uuid.UUID(int=n)), "Name": f"N {n}", "Score": n}
            for n in range(first, min(customers, first + 10_000))
        ]
        report = store.customers.upsert_many(rows)
        assert report.ok, report.errors[:3]
    print(f"loaded {customers:,} customers in {time.perf_counter() - start:.0f} s", flush=True)
    store.close()


def _subprocess(
    code: Path, connection: str, customers: int, size: int, case: str, exports: int
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(REPO)])}
    args = [sys.executable, "-m", "bench.lookups", "--case", case, "--connection", connection]
    args += ["--customers", str(customers), "--sizes", str(size), "--exports", str(exports)]
    done = subprocess.run(args, env=env, cwd=code, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--sizes", default="1000,10000,100000,300000")
    parser.add_argument("--exports", type=int, default=6)
    parser.add_argument("--location", type=Path)
    parser.add_argument("--before", type=Path, help="a directory holding the old `shared`")
    parser.add_argument("--case", choices=["first", "again", "concurrent"], help=argparse.SUPPRESS)
    parser.add_argument("--connection", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.case:
        run_case(args.connection, args.customers, sizes[0], args.case, args.exports)
        return

    from devtools.azurite import start_azurite

    azurite = start_azurite(location=args.location)
    try:
        load(azurite.connection_string, args.customers)
        codes = [("after", REPO)] + ([("before", args.before)] if args.before else [])
        print(f"load average {os.getloadavg()[0]:.1f} at start ({os.cpu_count()} cores)")
        print(
            "| members | case | code | strategy | rows read | requests | seconds "
            "| peak RSS MB |\n|---:|---|---|---|---:|---:|---:|---:|"
        )
        for size in sizes:
            for case in ("first", "again", "concurrent"):
                if case == "concurrent" and size != 100_000:
                    continue
                for name, code in codes:
                    r = _subprocess(
                        code, azurite.connection_string, args.customers, size, case, args.exports
                    )
                    label = f"{args.exports} at once" if case == "concurrent" else case
                    print(
                        f"| {size:,} | {label} | {name} | {r['strategy']} | {r['rows']:,} "
                        f"| {r['requests']:,} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} |",
                        flush=True,
                    )
        print(f"load average {os.getloadavg()[0]:.1f} at end")
    finally:
        azurite.stop()


if __name__ == "__main__":
    main()
