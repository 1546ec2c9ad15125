"""Many exports on one Sales connection, run by several worker processes (issue 12).

    python -m bench.many_exports [--exports 6] [--members 100000] [--workers 1,2,6]
                                 [--throttle 0,0.01] [--retry-after 2] [--listeners 6]
                                 [--time-scale 1.0] [--slice-seconds 480]

Starts its own Azurite and emulator on loopback, uploads the customers and N segments once
through the HTTP API (in process, AUTH_MODE=local-dev), then for each (worker processes M,
injected 429 rate) case: creates N exports on the one connection (each its own list), asks for a
run of every enabled export at once (POST /api/runs, what the schedule does), works the queue
with M ``python -m shared.runs.worker_main --listeners L`` processes (one Functions instance
each), waits until every run is final and prints: total wall, its ratio to the emulator's bound
for the total work, 429s, Retry-After violations, the largest number of requests in flight,
each export's start and finish (seconds from the request), whether each list is exact. A
benchmark: it prints, it does not judge.
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


def run_case(
    client: Any,
    emu: Any,
    env: dict[str, str],
    *,
    connection_id: str,
    segments: list[str],
    workers: int,
    listeners: int,
    throttle: float,
    retry_after: int,
    expected: set[str],
    time_scale: float,
    log: Path,
) -> dict[str, Any]:
    tag = f"m{workers}-t{throttle:g}"
    exports = [
        _check(
            client.post(
                "/api/exports",
                json={
                    "displayName": f"{tag}-{segment}",
                    "connectionId": connection_id,
                    "segments": [segment],
                    "mode": "mirror",
                    "listName": "{export}",
                },
            ),
            201,
        )
        for segment in segments
    ]
    emu.reset_stats(throttling=True)
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
    for export in exports:
        run = runs[export["id"]]
        segment = run["segments"][0]
        exact = emu.state.list_members(segment["listId"]) == expected
        emu.state.delete_list(segment["listId"])  # keep the emulator's memory flat
        begin, end = _epoch(run.get("startedAt")), _epoch(run.get("finishedAt"))
        per_export.append(
            {
                "export": export["displayName"],
                "status": run["status"],
                "slices": run["slices"],
                "start_s": round(begin - requested, 1) if begin else None,
                "finish_s": round(end - requested, 1) if end else None,
                "exact": exact,
            }
        )
        _check(client.delete(f"/api/exports/{export['id']}"), 204)
    return {
        "workers": workers,
        "listeners": listeners,
        "throttle": throttle,
        "wall_seconds": round(wall, 1),
        "bound_seconds": round(bound, 1),
        "binding": binding,
        "ratio": round(wall / bound, 2) if bound else None,
        "requests": stats["requests_total"],
        "throttled": stats["throttled"],
        "injected_429": stats["faults"].get("throttle", 0),
        "violations": stats["violations"],
        "max_in_flight": stats["max_concurrency"],
        "exports": per_export,
    }


def table(rows: list[dict[str, Any]], slice_seconds: float) -> str:
    lines = [
        "| worker processes | injected 429s | wall s | bound s (binding) | ratio | requests "
        "| 429s | violations | max in flight | per export start→finish s | lists exact |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        spans = ", ".join(f"{e['start_s']}→{e['finish_s']}" for e in row["exports"])
        exact = sum(1 for e in row["exports"] if e["exact"])
        late = max((e["finish_s"] or 0.0) for e in row["exports"]) - row["bound_seconds"]
        lines.append(
            f"| {row['workers']} × {row['listeners']} listeners | {row['throttle']:.0%} "
            f"| {row['wall_seconds']} | {row['bound_seconds']} ({row['binding']}) "
            f"| {row['ratio']} | {row['requests']} | {row['throttled']} "
            f"| {row['violations']} | {row['max_in_flight']} | {spans} "
            f"| {exact} / {len(row['exports'])} (last finish {late:+.0f} s vs bound; "
            f"slice {slice_seconds:g} s) |"
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
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from fastapi.testclient import TestClient

    from devtools.azurite import start_azurite
    from emulator import EmulatorConfig, start_emulator
    from shared.api.app import create_api
    from shared.settings import Settings

    azurite = start_azurite()
    emu = start_emulator(
        EmulatorConfig(
            contacts=args.members + 1000,
            inactive_fraction=args.inactive_fraction,
            seed=7,
            time_scale=args.time_scale,
        )
    )
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "many_exports_worker.log"
    log.write_text("")
    rows: list[dict[str, Any]] = []
    try:
        env = _env(azurite, emu, args.slice_seconds)
        settings = Settings.from_env(env)
        client = TestClient(create_api(settings_provider=lambda: settings))
        n = args.members
        ids = [f"c{i:07d}" for i in range(n)]
        connection = _check(
            client.post(
                "/api/connections",
                json={
                    "displayName": "Bench Sales",
                    "serverAddress": emu.base_url,
                    "credential": {
                        "kind": "client-secret",
                        "tenantId": emu.tenant_id,
                        "clientId": emu.client_id,
                        "secretSetting": SECRET_SETTING,
                    },
                    "contactIdField": "ContactId",
                },
            ),
            201,
        )
        t = time.monotonic()
        rows_csv = "CustomerId,ContactId\n" + "".join(
            f"{ids[i]},{emu.contact_id(i)}\n" for i in range(n) if i % NO_ROW_EVERY
        )
        headers = {"Content-Type": "text/csv"}
        _check(client.post("/api/customers", content=rows_csv, headers=headers), 200)
        members = "CustomerId\n" + "\n".join(ids) + "\n"
        segments = [f"S{k + 1}" for k in range(args.exports)]
        for segment in segments:
            _check(client.put(f"/api/segments/{segment}", content=members, headers=headers), 201)
        print(f"setup: {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
        expected = {
            emu.contact_id(i) for i in range(n) if i % NO_ROW_EVERY and not emu.is_inactive(i)
        }
        for throttle in (float(x) for x in args.throttle.split(",")):
            for workers in (int(x) for x in args.workers.split(",")):
                row = run_case(
                    client,
                    emu,
                    env,
                    connection_id=connection["id"],
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
            f"{args.exports} exports × {n:,} members, one connection, time scale "
            f"{args.time_scale:g}, injected Retry-After {args.retry_after} s\n"
        )
        print(table(rows, args.slice_seconds))
        return 0
    finally:
        emu.stop()
        azurite.stop()


if __name__ == "__main__":
    raise SystemExit(main())
