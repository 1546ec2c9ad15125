"""Many exports on one Sales connection, run by several worker processes (issue 12).

    python -m bench.many_exports [--exports 6] [--members 100000] [--workers 1,2,6]
                                 [--throttle 0,0.01] [--retry-after 2] [--listeners 6]
                                 [--time-scale 1.0] [--slice-seconds 480]
                                 [--sizes 100000,10000,10000,10000] [--other-sizes 10000]

Starts its own Azurite and emulator on loopback, uploads the customers and N segments once
through the HTTP API (in process, AUTH_MODE=local-dev), then for each (worker processes M,
injected 429 rate) case: creates N exports on the one connection (each its own list), asks for a
run of every enabled export at once (POST /api/runs, what the schedule does), works the queue
with M ``python -m shared.runs.worker_main --listeners L`` processes (one Functions instance
each), waits until every run is final and prints: total wall, its ratio to the emulator's bound
for the total work, 429s, Retry-After violations, the largest number of requests in flight,
each export's start and finish (seconds from the request), whether each list is exact. A
benchmark: it prints, it does not judge.

``--sizes`` gives each export on the connection its own member count (mixed sizes: are small
exports stuck behind a big one?); ``--other-sizes`` adds exports on a SECOND connection (another
app identity, so another budget: are they ever held back?).

Fairness: each export's "fair finish" is its finish in a fair round-robin (processor sharing)
of its identity's capacity among the exports still running, all requested at once. An export's
work is the emulator's measured total execution cost apportioned by members added; an
identity's capacity is its work divided by the emulator's bound for that work (so a perfectly
fair, perfectly efficient fleet has finish - fair finish = 0; the goal is at most one slice
budget). Table traffic: the budget's table operations (from each worker's "shared budget stats"
log line) per Sales request the emulator answered.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECRET_SETTING = "SEGEXP_SECRET_BENCH"
OTHER_SECRET_SETTING = "SEGEXP_SECRET_BENCH_OTHER"
OTHER_CLIENT = "4f6b2a0e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER_SECRET = "other-bench-" + "s" * 20
STATS_MARK = "shared budget stats "
NO_ROW_EVERY = 200  # every 200th member has no customer row


def _env(azurite: Any, emu: Any, slice_seconds: float) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": "bench",
        "RUN_QUEUE_NAME": "bench-runs",
        "AUTH_MODE": "local-dev",
        "LOCAL_DEV_USER": "bench@localhost",
        "LOCAL_DEV_ROLES": "Admin",
        "ALLOW_LOOPBACK_SALES": "true",
        "ENTRA_AUTHORITY_HOST": emu.authority_host,
        "SALES_CA_BUNDLE": emu.ca_file,
        SECRET_SETTING: emu.client_secret,
        OTHER_SECRET_SETTING: OTHER_SECRET,
        "RUN_SLICE_SECONDS": str(slice_seconds),
    }


def _check(response: Any, *expected: int) -> Any:
    if response.status_code not in expected:
        raise SystemExit(
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text[:500]}"
        )
    return response.json() if response.content else None


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _bound(stats: dict[str, Any], time_scale: float) -> tuple[float, str]:
    """The emulator's lower bound for the recorded work, or the sliding-window one if larger."""
    from bench.__main__ import sliding_window_seconds

    mn = stats["min_wall_time"]
    window = sliding_window_seconds(mn["cost_seconds"], mn["parallelism"]) * time_scale
    if window > mn["wall_seconds"]:
        return window, "execution window"
    return float(mn["wall_seconds"]), str(mn["binding"])


def fair_finishes(work: list[float], rate: float) -> list[float]:
    """Finish times of jobs all started at 0 sharing ``rate`` (work per second) equally among
    those still running (processor sharing, the limit of a fair round-robin)."""
    order = sorted(range(len(work)), key=lambda i: work[i])
    finish = [0.0] * len(work)
    t, done, left = 0.0, 0.0, len(work)
    for i in order:
        t += (work[i] - done) * left / rate if rate > 0 else 0.0
        done, left = work[i], left - 1
        finish[i] = t
    return finish


def identity_bound(cost: float, time_scale: float, parallelism: int) -> float:
    """Wall seconds the emulator's limits allow for ``cost`` model seconds of one identity's
    work: its own bound (emulator.stats), in which a window's execution budget is spent at
    admission, so a last window's requests may overshoot it (as Dataverse's may)."""
    from emulator import Limits
    from emulator.stats import theoretical_min_wall_time

    return float(
        theoretical_min_wall_time(0, cost, Limits(), parallelism, time_scale)["wall_seconds"]
    )


def budget_stats(log: Path, offset: int) -> dict[str, Any]:
    """Sum of each worker process's last "shared budget stats" line (per identity key) after
    ``offset`` in the workers' log."""
    last: dict[tuple[int, str], dict[str, Any]] = {}
    with log.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            line = raw.decode("utf-8", "replace")
            if STATS_MARK in line:
                key, _, payload = line.split(STATS_MARK, 1)[1].partition(" ")
                data = json.loads(payload)
                last[(int(data.get("pid", 0)), key)] = data
    total: dict[str, Any] = {"sends": 0, "table_ops": 0, "block_write_max_s": 0.0}
    slots = {"held": 0.0, "busy": 0.0, "idle": 0.0}
    ops: dict[int, int] = {}  # table_ops are per process (all identities): its latest count
    for (pid, _), data in last.items():
        total["sends"] += data["sends"]
        for kind in slots:
            slots[kind] += data.get("slot_seconds", {}).get(kind, 0.0)
        ops[pid] = max(ops.get(pid, 0), sum(data["table_ops"].values()))
        total["block_write_max_s"] = max(total["block_write_max_s"], data["block_write_max_s"])
    total["table_ops"] = sum(ops.values())
    total["slot_seconds"] = {k: round(v, 1) for k, v in slots.items()}
    return total


def run_case(
    client: Any,
    emu: Any,
    env: dict[str, str],
    *,
    connection_id: str,
    other_connection_id: str | None,
    segments: list[tuple[str, int, bool]],  # (segment, members, on the other connection)
    workers: int,
    listeners: int,
    throttle: float,
    retry_after: int,
    expected: dict[int, set[str]],
    time_scale: float,
    log: Path,
) -> dict[str, Any]:
    tag = f"m{workers}-t{throttle:g}"
    exports = [
        _check(
            client.post(
                "/api/exports",
                json={
                    "displayName": f"{tag}-{segment}{'-other' if other else ''}",
                    "connectionId": other_connection_id if other else connection_id,
                    "segments": [segment],
                    "mode": "mirror",
                    "listName": "{export}",
                },
            ),
            201,
        )
        for segment, _, other in segments
    ]
    emu.reset_stats(throttling=True)
    offset = log.stat().st_size
    emu.set_faults(throttle=throttle, seed=11, retry_after_seconds=retry_after)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shared.runs.worker_main", "--listeners", str(listeners)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            start_new_session=True,
        )
        for _ in range(workers)
    ]
    try:
        for proc in procs:  # every worker is listening before the runs are requested
            assert proc.stdout is not None
            proc.stdout.readline()
        requested = time.time()
        started = time.monotonic()
        _check(client.post("/api/runs"), 202, 200)
        runs: dict[str, dict[str, Any]] = {}
        while True:
            pending = 0
            for export in exports:
                page = _check(client.get(f"/api/exports/{export['id']}/runs"), 200)
                run = page["items"][0] if page.get("items") else None
                if run is None or run["status"] in ("queued", "running"):
                    pending += 1
                else:
                    runs[export["id"]] = run
            if not pending:
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)
    stats = emu.stats()
    emu.set_faults()
    bound, binding = _bound(stats, time_scale)
    per_export = []
    for export, (_, size, other) in zip(exports, segments, strict=True):
        run = runs[export["id"]]
        segment = run["segments"][0]
        exact = emu.state.list_members(segment["listId"]) == expected[size]
        emu.state.delete_list(segment["listId"])  # keep the emulator's memory flat
        begin, end = _epoch(run.get("startedAt")), _epoch(run.get("finishedAt"))
        per_export.append(
            {
                "export": export["displayName"],
                "members": size,
                "other_connection": other,
                "added": int(segment.get("added") or 0),
                "status": run["status"],
                "slices": run["slices"],
                "start_s": round(begin - requested, 1) if begin else None,
                "finish_s": round(end - requested, 1) if end else None,
                "exact": exact,
            }
        )
        _check(client.delete(f"/api/exports/{export['id']}"), 204)
    # Fair finishes: the measured cost apportioned by members added, per identity.
    parallelism = int(stats["min_wall_time"]["parallelism"])
    added = sum(e["added"] for e in per_export) or 1
    for other in (False, True):
        group = [e for e in per_export if e["other_connection"] is other]
        if not group:
            continue
        work = [stats["total_cost_seconds"] * e["added"] / added for e in group]
        bound_id = identity_bound(sum(work), time_scale, parallelism)
        for e, fair in zip(group, fair_finishes(work, sum(work) / bound_id), strict=True):
            e["fair_finish_s"] = round(fair, 1)
            e["late_s"] = round((e["finish_s"] or 0.0) - fair, 1)
    budget = budget_stats(log, offset)
    by_user = stats.get("max_concurrency_by_user", {})
    met = stats.get("met_block_after_seconds", [])
    return {
        "workers": workers,
        "listeners": listeners,
        "throttle": throttle,
        "wall_seconds": round(wall, 1),
        "bound_seconds": round(bound, 1),
        "binding": binding,
        "ratio": round(wall / bound, 2) if bound else None,
        "emulator_bound_seconds": round(stats["min_wall_time"]["wall_seconds"], 1),
        "emulator_ratio": round(wall / stats["min_wall_time"]["wall_seconds"], 2),
        "requests": stats["requests_total"],
        "throttled": stats["throttled"],
        "injected_429": stats["faults"].get("throttle", 0),
        "violations": stats["violations"],
        "max_in_flight": stats["max_concurrency"],
        "max_in_flight_by_identity": [by_user.get(emu.client_id, 0), by_user.get(OTHER_CLIENT, 0)],
        "met_block_after_s": met,  # each request that met a block: seconds after it began
        "budget_table_ops": budget["table_ops"],
        "table_ops_per_request": round(budget["table_ops"] / max(1, stats["requests_total"]), 2),
        "block_write_max_s": budget["block_write_max_s"],
        # slot-seconds held by participants: in flight / held idle while nothing waited for one
        "slot_seconds": budget["slot_seconds"],
        "exports": per_export,
    }


def table(rows: list[dict[str, Any]], slice_seconds: float) -> str:
    lines = [
        f"slice budget {slice_seconds:g} s; bounds: the emulator's / with the sliding execution "
        "window; slots: share of held slot-seconds in flight / held idle while nothing waited; "
        "per export: start→finish (finish − fair finish), s from the request; * = on the second "
        "connection",
        "",
        "| worker processes | injected 429s | wall s | bound s | ratio | requests | 429s "
        "| violations | max in flight (this identity) | table ops / request | slots busy / idle "
        "| per export start→finish (late vs fair) s | lists exact | worst late s |",
        "|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for row in rows:
        spans = ", ".join(
            f"{'*' if e['other_connection'] else ''}{e['start_s']}→{e['finish_s']} "
            f"({e.get('late_s', 0.0):+.0f})"
            for e in row["exports"]
        )
        exact = sum(1 for e in row["exports"] if e["exact"])
        worst = max(e.get("late_s", 0.0) for e in row["exports"])
        slots = row["slot_seconds"]
        held = slots["held"] or 1.0
        lines.append(
            f"| {row['workers']} × {row['listeners']} listeners | {row['throttle']:.0%} "
            f"| {row['wall_seconds']} | {row['emulator_bound_seconds']} / {row['bound_seconds']} "
            f"| {row['emulator_ratio']} / {row['ratio']} | {row['requests']} "
            f"| {row['throttled']} | {row['violations']} "
            f"| {row['max_in_flight_by_identity'][0]} | {row['table_ops_per_request']} "
            f"| {slots['busy'] / held:.0%} / {slots['idle'] / held:.0%} | {spans} "
            f"| {exact} / {len(row['exports'])} | {worst:+.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.many_exports")
    parser.add_argument("--exports", type=int, default=6)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,6", help="worker processes per case")
    parser.add_argument("--listeners", type=int, default=6, help="messages at once per process")
    parser.add_argument("--throttle", default="0,0.01", help="injected 429 fractions")
    parser.add_argument("--retry-after", type=int, default=2, help="injected Retry-After, s")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--slice-seconds", type=float, default=480.0)
    parser.add_argument("--inactive-fraction", type=float, default=0.02)
    parser.add_argument("--sizes", default="", help="members per export (overrides --exports)")
    parser.add_argument("--other-sizes", default="", help="exports on a second connection")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x] or [args.members] * args.exports
    other_sizes = [int(x) for x in args.other_sizes.split(",") if x]
    largest = max(sizes + other_sizes)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from fastapi.testclient import TestClient

    from devtools.azurite import start_azurite
    from emulator import EmulatorConfig, start_emulator
    from shared.api.app import create_api
    from shared.api.routes.customers import SYNC_MAX_ROWS
    from shared.settings import Settings

    azurite = start_azurite()
    emu = start_emulator(
        EmulatorConfig(
            contacts=largest + 1000,
            inactive_fraction=args.inactive_fraction,
            seed=7,
            time_scale=args.time_scale,
            extra_clients={OTHER_CLIENT: OTHER_SECRET},
        )
    )
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "many_exports_worker.log"
    log.write_text("")
    rows: list[dict[str, Any]] = []
    try:
        env = _env(azurite, emu, args.slice_seconds)
        settings = Settings.from_env(env)
        client = TestClient(create_api(settings_provider=lambda: settings))
        n = largest
        ids = [f"c{i:07d}" for i in range(n)]
        connection, other_connection = (
            _check(
                client.post(
                    "/api/connections",
                    json={
                        "displayName": f"Bench Sales ({client_id[:8]})",
                        "serverAddress": emu.base_url,
                        "credential": {
                            "kind": "client-secret",
                            "tenantId": emu.tenant_id,
                            "clientId": client_id,
                            "secretSetting": setting,
                        },
                        "contactIdField": "ContactId",
                    },
                ),
                201,
            )
            for client_id, setting in (
                (emu.client_id, SECRET_SETTING),
                (OTHER_CLIENT, OTHER_SECRET_SETTING),
            )
        )
        t = time.monotonic()
        headers = {"Content-Type": "text/csv"}
        for first in range(0, n, SYNC_MAX_ROWS):  # upserts, within the sync route's row limit
            rows_csv = "CustomerId,ContactId\n" + "".join(
                f"{ids[i]},{emu.contact_id(i)}\n"
                for i in range(first, min(n, first + SYNC_MAX_ROWS))
                if i % NO_ROW_EVERY
            )
            _check(client.post("/api/customers", content=rows_csv, headers=headers), 200)
        segments = [
            (f"S{k + 1}", size, k >= len(sizes)) for k, size in enumerate(sizes + other_sizes)
        ]
        for segment, size, _ in segments:
            members = "CustomerId\n" + "\n".join(ids[:size]) + "\n"
            _check(client.put(f"/api/segments/{segment}", content=members, headers=headers), 201)
        print(f"setup: {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
        expected = {
            size: {
                emu.contact_id(i)
                for i in range(size)
                if i % NO_ROW_EVERY and not emu.is_inactive(i)
            }
            for size in set(sizes + other_sizes)
        }
        for throttle in (float(x) for x in args.throttle.split(",")):
            for workers in (int(x) for x in args.workers.split(",")):
                row = run_case(
                    client,
                    emu,
                    env,
                    connection_id=connection["id"],
                    other_connection_id=other_connection["id"] if other_sizes else None,
                    segments=segments,
                    workers=workers,
                    listeners=args.listeners,
                    throttle=throttle,
                    retry_after=args.retry_after,
                    expected=expected,
                    time_scale=args.time_scale,
                    log=log,
                )
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        print(
            f"exports of {', '.join(f'{x:,}' for x in sizes)} members on one connection"
            + (
                f" and {', '.join(f'{x:,}' for x in other_sizes)} on a second"
                if other_sizes
                else ""
            )
            + f", time scale {args.time_scale:g}, injected Retry-After {args.retry_after} s\n"
        )
        print(table(rows, args.slice_seconds))
        return 0
    finally:
        emu.stop()
        azurite.stop()


if __name__ == "__main__":
    raise SystemExit(main())
