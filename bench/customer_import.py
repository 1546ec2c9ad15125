"""A large customer upload through the background import (issue 12), on a fresh Azurite.

    python -m bench.customer_import [--rows 300000] [--sync-rows SYNC_MAX_ROWS]

Starts Azurite, the API (uvicorn serving function_app:api, AUTH_MODE=local-dev) and one local
queue runner (``python -m shared.runs.worker_main``, which serves the import queue) as separate
processes, then:
  1. POST /api/customers with --sync-rows rows (the synchronous route at its row limit) into
     the empty table;
  2. POST /api/customer-imports with a CSV of --rows rows: the request's time (parse, validate,
     stage) against Azure's 230 s front-end limit;
  3. polls GET /api/customer-imports/{id} until the import is final: wall time (202 -> final),
     the worker's own time (startedAt -> finishedAt), rows/s, staged chunks, deliveries;
  4. POST /api/customers with --sync-rows rows again, now into the big table, and with --rows
     rows (refused: 413 too-many-rows);
  5. peak RSS (VmHWM) of the API and of the worker process, and the machine's load average.
A benchmark: it prints figures, it does not judge.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FRONT_END_LIMIT_S = 230  # Azure's load balancer ends an HTTP request after 230 s


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def customers_csv(rows: int, prefix: str) -> bytes:
    lines = ["CustomerId,ContactId,Email,Tier"]
    for i in range(rows):
        lines.append(f"{prefix}{i:07d},{uuid.UUID(int=i + 1)},c{i}@example.test,{'ABC'[i % 3]}")
    return ("\n".join(lines) + "\n").encode()


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _sync(client: Any, rows: int, prefix: str) -> tuple[float, int]:
    """Time POST /api/customers with `rows` new rows: (seconds, status)."""
    body = customers_csv(rows, prefix)
    began = time.monotonic()
    answer = client.post("/api/customers", content=body, headers={"Content-Type": "text/csv"})
    return time.monotonic() - began, answer.status_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.customer_import")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--sync-rows", type=int, default=None, help="default: SYNC_MAX_ROWS")
    args = parser.parse_args(argv)

    import httpx

    from devtools.azurite import free_port, start_azurite, wait_for_port
    from shared.api.routes.customers import SYNC_MAX_ROWS

    sync_rows = args.sync_rows or SYNC_MAX_ROWS
    log = Path("/tmp") / f"bench-customer-import-{os.getpid()}.log"
    load_before = os.getloadavg()
    azurite = start_azurite()
    port = free_port()
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": "bench",
        "RUN_QUEUE_NAME": "bench-runs",
        "IMPORT_QUEUE_NAME": "bench-imports",
        "AUTH_MODE": "local-dev",
        "LOCAL_DEV_USER": "bench@localhost",
        "LOCAL_DEV_ROLES": "Admin",
        "MAX_UPLOAD_BYTES": str(1024 * 1024 * 1024),
    }
    api = _start(
        ["-m", "uvicorn", "function_app:api", "--host", "127.0.0.1", "--port", str(port)], env, log
    )
    worker = _start(["-m", "shared.runs.worker_main", "--import-listeners", "1"], env, log)
    out: dict[str, Any] = {}
    try:
        wait_for_port(port, api, timeout=60)
        body = customers_csv(args.rows, "C")
        csv_headers = {"Content-Type": "text/csv"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=1800) as client:
            out["sync"] = [_sync(client, sync_rows, "S")]
            began = time.monotonic()
            answer = client.post("/api/customer-imports", content=body, headers=csv_headers)
            out["request_s"] = time.monotonic() - began
            if answer.status_code != 202:
                raise SystemExit(f"POST /api/customer-imports: {answer.status_code} {answer.text}")
            record = answer.json()
            location = answer.headers["location"]
            samples: list[tuple[float, int]] = []
            while record["state"] not in ("succeeded", "failed"):
                time.sleep(1.0)
                record = client.get(location).json()
                samples.append((time.monotonic() - began - out["request_s"], record["rowsWritten"]))
            out["import_wall_s"] = time.monotonic() - began - out["request_s"]
            out["record"] = record
            out["samples"] = samples
            out["worker_rss_mb"] = peak_rss_mb(worker.pid)
            out["sync"].append(_sync(client, sync_rows, "T"))
            began = time.monotonic()
            refused = client.post("/api/customers", content=body, headers=csv_headers)
            out["refused_s"] = time.monotonic() - began
            out["refused"] = (refused.status_code, refused.json().get("type", ""))
            out["api_rss_mb"] = peak_rss_mb(api.pid)
    finally:
        _stop(worker)
        _stop(api)
        azurite.stop()
    load_after = os.getloadavg()
    record = out["record"]
    worker_s = _seconds(record["startedAt"], record["finishedAt"])
    megabytes = len(body) / 1e6
    print(f"\nrows {args.rows:,} ({megabytes:.1f} MB CSV); sync route limit {SYNC_MAX_ROWS:,} rows")
    print(
        "| rows | request s (parse+validate+stage) | of 230 s | import wall s (202 -> final) "
        "| worker s | rows/s (worker) | chunks | deliveries | state | API peak RSS MB "
        "| worker peak RSS MB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    print(
        f"| {args.rows:,} | {out['request_s']:.1f} | {out['request_s'] / FRONT_END_LIMIT_S:.0%} "
        f"| {out['import_wall_s']:.1f} | {worker_s:.1f} | {record['rowsWritten'] / worker_s:,.0f} "
        f"| {record['chunks']} | {record['deliveries']} | {record['state']} "
        f"(rowsWritten {record['rowsWritten']:,}) | {out['api_rss_mb']:.0f} "
        f"| {out['worker_rss_mb']:.0f} |"
    )
    print()
    for (seconds, status), table in zip(out["sync"], ("empty", f"{args.rows:,}-row"), strict=True):
        print(
            f"POST /api/customers, {sync_rows:,} rows into the {table} table (synchronous): "
            f"{seconds:.1f} s ({sync_rows / seconds:,.0f} rows/s, "
            f"{seconds / FRONT_END_LIMIT_S:.0%} of 230 s), status {status}"
        )
    print(
        f"POST /api/customers, {args.rows:,} rows: {out['refused'][0]} {out['refused'][1]} "
        f"after {out['refused_s']:.1f} s"
    )
    progress = ", ".join(
        f"{t:.0f} s: {n:,}" for t, n in out["samples"][:: max(1, len(out["samples"]) // 8)]
    )
    print(f"progress seen by GET (rowsWritten): {progress}")
    print(
        f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} "
        f"({os.cpu_count()} cores); logs: {log}"
    )
    return 0 if record["state"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
