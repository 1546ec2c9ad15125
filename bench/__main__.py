"""Benchmark the Sales sync against the local Dataverse emulator and print a table of figures.

    python -m bench [--sizes 10000,100000,1000000] [--time-scale 1.0] [--no-naive]

For each size: the emulator (a separate process, so its memory and CPU are not ours) is started
with its default cost model and limits, then three cases run, each in a fresh process:
initial export, no-change refresh, refresh with 5 % churn. Printed per case: outer HTTP requests
and inner $batch operations by kind, wall time, members per second, the emulator's theoretical
minimum time for the recorded work and our ratio to it, peak RSS of our process. Also a naive
baseline (one AddMemberList per member) for the smallest size. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import math
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from emulator.config import Limits

ENTRA_KINDS = ("token", "openid-configuration")  # the token endpoint, not Dataverse
TARGETS = {  # from the issue: (size, phase) -> max outer requests
    (100_000, "initial"): 320,
    (100_000, "refresh"): 25,
    (100_000, "churn"): 50,
}


@contextmanager
def emulator(contacts: int, time_scale: float, seed: int) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            "0",
            "--contacts",
            str(contacts),
            "--time-scale",
            str(time_scale),
            "--seed",
            str(seed),
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


def control(info: dict[str, Any], method: str, path: str, body: object = None) -> Any:
    ctx = ssl.create_default_context(cafile=info["ca_file"])
    with httpx.Client(verify=ctx, timeout=60) as http:
        r = http.request(method, f"{info['base_url']}/_emulator/{path}", json=body)
        r.raise_for_status()
        return r.json()


def run_case(
    info: dict[str, Any], size: int, phase: str, list_id: str | None, seed: int, max_parallel: int
) -> dict[str, Any]:
    control(info, "POST", "reset-stats", {"throttling": True})
    cmd = [
        sys.executable,
        "-m",
        "bench.case",
        "--emulator",
        json.dumps(info),
        "--size",
        str(size),
        "--phase",
        phase,
        "--seed",
        str(seed),
        "--max-parallel",
        str(max_parallel),
    ]
    if list_id:
        cmd += ["--list-id", list_id]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    ours = json.loads(out.stdout.strip().splitlines()[-1])
    stats = control(info, "GET", "stats")
    log = control(info, "GET", "log")["value"]
    return {
        "size": size,
        "phase": phase,
        **ours,
        "emulator": stats,
        "time_scale": info["time_scale"],
        "serial_paging_seconds": serial_paging_seconds(log, info),
    }


def sliding_window_seconds(cost: float, parallelism: int, limits: Limits | None = None) -> float:
    """Model seconds to spend ``cost`` seconds of execution time with at most ``parallelism``
    requests in flight when any window of W seconds may hold at most Le of it: burst Le at full
    parallelism, wait for the window to slide past it, repeat. Tighter than the emulator's
    continuous form once the work exceeds one window's budget (e.g. 2,000 s of work at 8 in
    flight: 300 + 800 / 8 = 400 s, not 250 s)."""
    limits = limits or Limits()
    budget, window = limits.execution_seconds_per_window, limits.window_seconds
    full = max(0, math.ceil(cost / budget) - 1)
    return full * window + (cost - full * budget) / parallelism


def serial_paging_seconds(log: list[dict[str, Any]], info: dict[str, Any]) -> float:
    """Wall seconds of the member-page chain: page k+1's address comes in page k's nextLink,
    so no client can read one list's pages in parallel. A lower bound the emulator's formula
    (which assumes all cost can run in parallel) does not include. The emulator's log holds the
    last 1,000 requests; every case here reads its pages within that many."""
    scale = float(info.get("time_scale", 1.0))
    return sum(e["cost"] for e in log if e["kind"] == "list-members-read") * scale


def _kinds(by_kind: dict[str, dict[str, int]]) -> str:
    parts = []
    for kind, statuses in sorted(by_kind.items()):
        if kind in ENTRA_KINDS:
            continue
        total = sum(statuses.values())
        bad = {s: n for s, n in statuses.items() if not s.startswith("2")}
        parts.append(f"{kind} {total}" + (f" ({bad})" if bad else ""))
    return ", ".join(parts) or "-"


def report(rows: list[dict[str, Any]], time_scale: float) -> str:
    lines = [
        "| size | case | outer requests | inner $batch ops | wall s | members/s | min s (binding) "
        "| ratio | peak RSS MB | added / removed / left out | violations |",
        "|---:|---|---:|---:|---:|---:|---|---:|---:|---|---:|",
    ]
    for row in rows:
        st = row["emulator"]
        outer = st["requests_total"] - sum(
            sum(st["requests"].get(kind, {}).values()) for kind in ENTRA_KINDS
        )
        inner = st["batch_operations_total"]
        mn = dict(st["min_wall_time"])
        window = sliding_window_seconds(mn["cost_seconds"], mn["parallelism"]) * row["time_scale"]
        if window > mn["wall_seconds"]:
            mn.update(wall_seconds=window, binding="execution window")
        if row.get("serial_paging_seconds", 0.0) > mn["wall_seconds"]:
            mn.update(wall_seconds=row["serial_paging_seconds"], binding="serial paging")
        wall = row["wall_seconds"]
        work = max(row.get("members", 0), 1)
        ratio = wall / mn["wall_seconds"] if mn["wall_seconds"] > 0 else float("nan")
        target = TARGETS.get((row["size"], row["phase"]))
        outer_cell = f"{outer}" + (f" (target ≤ {target})" if target else "")
        left = sum((row.get("left_out") or {}).values())
        lines.append(
            f"| {row['size']:,} | {row['phase']} | {outer_cell} | {inner} | {wall:.1f} "
            f"| {work / wall:,.0f} | {mn['wall_seconds']:.1f} ({mn['binding']}) | {ratio:.2f} "
            f"| {row['peak_rss_mb']:.0f} | {row.get('added', 0):,} / {row.get('removed', 0):,} / "
            f"{left:,} | {st['violations']} |"
        )
    lines.append("")
    lines.append("Requests by kind (outer; inner $batch operations in brackets):")
    for row in rows:
        st = row["emulator"]
        lines.append(
            f"- {row['size']:,} {row['phase']}: {_kinds(st['requests'])}"
            f" [{_kinds(st['batch_operations'])}]"
        )
    lines.append(
        f"\nEmulator time scale {time_scale} (model seconds x scale = wall seconds); the naive "
        "baseline runs on its own emulator (see --naive-time-scale)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="emulator time scale; below 1 the client's own CPU time weighs more",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-parallel", type=int, default=8)
    p.add_argument("--no-naive", action="store_true")
    p.add_argument("--save", default=None, help="also write the raw figures (JSON) to this file")
    p.add_argument(
        "--naive-time-scale",
        type=float,
        default=0.1,
        help="the naive baseline is bound by the request-count limit; scale it down",
    )
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows: list[dict[str, Any]] = []
    for size in sizes:
        contacts = size + size // 20 + 10  # room for the churned-in members
        with emulator(contacts, args.time_scale, args.seed) as info:
            started = time.perf_counter()
            first = run_case(info, size, "initial", None, args.seed, args.max_parallel)
            rows.append(first)
            for phase in ("refresh", "churn"):
                rows.append(
                    run_case(info, size, phase, first["list_id"], args.seed, args.max_parallel)
                )
            print(f"size {size:,}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if sizes and not args.no_naive:
        size = min(sizes)
        with emulator(size + 10, args.naive_time_scale, args.seed) as info:
            rows.append(run_case(info, size, "naive", None, args.seed, args.max_parallel))
    if args.save:
        with open(args.save, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)
    print(report(rows, args.time_scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
