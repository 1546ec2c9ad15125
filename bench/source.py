"""Benchmark the Customer Insights source: a segment read from CI-D's tables, then synced.

    python -m bench.source [--sizes 100000,1000000] [--time-scale 1.0]

For each size the emulator (its own process) plays Sales and CI-D: N + 5 % customers, one
segment "Bench" of N members, 5 % of profiles without a contact id. Two cases, each in a fresh
process (so its peak RSS is its own), as one segment of a run does it: read the members
(msdynci_segmentmemberships, contains filter, 5,000 a page), look the contact ids up (In filters
inside $batch against msdynci_customerprofiles) while the Sales sync runs:
"initial" (new list) and "refresh" (no change in CI-D). Printed like ``python -m bench``:
requests and $batch operations by kind, wall time, the emulator's bound and our ratio to it,
peak RSS. Not a pass/fail test.

    python -m bench.source --case --emulator '<json>' --size N [--list-id ID]   (one case)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.__main__ import control, report, serial_paging_seconds
from bench.case import _connection, _settings
from shared.models import ContactIdSource, ExportMode
from shared.sales import SegmentSyncRequest, open_sales_client, sync_segment
from shared.sources import CustomerInsightsSource, customer_rows

COLUMN = "msdynci_dataverse_contact_contactid"
SEGMENT = "Bench"
NO_CONTACT = 0.05


@contextmanager
def emulator(size: int, time_scale: float, seed: int) -> Iterator[dict[str, Any]]:
    customers = size + size // 20 + 10
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            "0",
            "--contacts",
            str(customers),
            "--time-scale",
            str(time_scale),
            "--seed",
            str(seed),
            "--cid-customers",
            str(customers),
            "--cid-segments",
            f"{SEGMENT}:{size}",
            "--cid-no-contact-fraction",
            str(NO_CONTACT),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited before it was ready")
        yield {**json.loads(line), "time_scale": time_scale}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def one_case(info: dict[str, Any], size: int, list_id: str | None) -> dict[str, Any]:
    settings = _settings(info, 8)
    connection = _connection(info)
    started = time.perf_counter()
    with open_sales_client(connection, settings) as client:
        source = CustomerInsightsSource(client, ContactIdSource.COLUMN, COLUMN)
        members = source.members(SEGMENT)
        read_members = time.perf_counter() - started
        request = SegmentSyncRequest(
            segment=SEGMENT,
            customer_ids=members,
            lookup_customers=customer_rows(source),
            contact_id_field=source.contact_field,
            list_name=f"Source bench {size}",
            mode=ExportMode.MIRROR,
            owner=f"source-bench-{size}",
            list_id=list_id,
            chunk_size=settings.sales_chunk_size,
        )
        outcome = sync_segment(client, request)
        sent = client.requests_sent
    r = outcome.result
    read = source.describe()
    return {
        "wall_seconds": time.perf_counter() - started,
        "member_read_seconds": read_members,
        "client_requests": sent,
        "list_id": r.list_id,
        "members": r.members,
        "matched": r.matched,
        "added": r.added,
        "removed": r.removed,
        "failed": r.failed,
        "left_out": r.left_out,
        "complete": r.complete,
        "error": r.error,
        "source": {
            "member_rows": read.member_rows,
            "lookup_rows": read.lookup_rows,
            "watermark": read.watermark,
            "requests": read.requests,
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_case(info: dict[str, Any], size: int, phase: str, list_id: str | None) -> dict[str, Any]:
    control(info, "POST", "reset-stats", {"throttling": True})
    cmd = [sys.executable, "-m", "bench.source", "--case", "--emulator", json.dumps(info)]
    cmd += ["--size", str(size)] + (["--list-id", list_id] if list_id else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    ours = json.loads(out.stdout.strip().splitlines()[-1])
    stats = control(info, "GET", "stats")
    log = control(info, "GET", "log")["value"]
    # The membership pages are a nextLink chain too, read before the segment can be planned.
    chain = serial_paging_seconds(log, info) + sum(
        e["cost"] for e in log if e["kind"] == "segmentmemberships-query"
    ) * float(info["time_scale"])
    return {
        "size": size,
        "phase": phase,
        **ours,
        "emulator": stats,
        "time_scale": info["time_scale"],
        "serial_paging_seconds": chain,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.source", description=__doc__)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--save", default=None)
    p.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--emulator", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--list-id", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(one_case(json.loads(args.emulator), args.size, args.list_id)), flush=True)
        return 0
    rows: list[dict[str, Any]] = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        with emulator(size, args.time_scale, args.seed) as info:
            started = time.perf_counter()
            # phases named apart from `python -m bench`'s (its request targets are Sales-only)
            first = run_case(info, size, "CI-D initial", None)
            rows.append(first)
            rows.append(run_case(info, size, "CI-D refresh", first["list_id"]))
            print(f"size {size:,}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if args.save:
        with open(args.save, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)
    print(report(rows, args.time_scale))
    for row in rows:
        src = row["source"]
        print(
            f"- {row['size']:,} {row['phase']}: members read in {row['member_read_seconds']:.1f} s"
            f" ({src['member_rows']:,} membership rows, {src['lookup_rows']:,} profile rows, "
            f"{src['requests']} source requests; watermark {src['watermark']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
