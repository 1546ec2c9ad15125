"""End to end: a 100k-member export through HTTP API -> run queue -> worker -> Dataverse emulator.

    python -m bench.e2e_run [--members 100000] [--time-scale 1.0] [--slice-seconds 480]

Starts its own Azurite and emulator on loopback, sets everything up through the HTTP API (in
process, FastAPI TestClient, AUTH_MODE=local-dev), requests a run with POST
/api/exports/{id}/runs, works the queue with a real worker process
(``python -m shared.runs.worker_main``, the local stand-in for the Functions host), polls GET run
until it is final, checks the list, and prints the figures (wall time, requests, slices). Then a
second, unchanged run shows the steady-state cost. A benchmark: it prints, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECRET_SETTING = "SEGEXP_SECRET_BENCH"
NO_ROW_EVERY = 200  # every 200th member has no customer row (0.5 % left out for that reason)


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


def _run_once(client: Any, env: dict[str, str], export_id: str, log: Path) -> dict[str, Any]:
    started = time.monotonic()
    run = _check(client.post(f"/api/exports/{export_id}/runs"), 202)
    worker = subprocess.Popen(
        [sys.executable, "-m", "shared.runs.worker_main"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
    )
    polls = 0
    try:
        while True:
            current = _check(client.get(f"/api/exports/{export_id}/runs/{run['id']}"), 200)
            polls += 1
            if current["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    current["wall_seconds"] = round(time.monotonic() - started, 2)
    current["polls"] = polls
    return current


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_run")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--time-scale", type=float, default=1.0, help="emulator model->wall time")
    parser.add_argument("--slice-seconds", type=float, default=480.0)
    parser.add_argument("--inactive-fraction", type=float, default=0.02)
    args = parser.parse_args(argv)
    # Turn SIGTERM (e.g. from `timeout`) into SystemExit so the cleanup below still runs.
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
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "e2e_run_worker.log"
    log.write_text("")
    try:
        env = _env(azurite, emu, args.slice_seconds)
        settings = Settings.from_env(env)
        client = TestClient(create_api(settings_provider=lambda: settings))
        n = args.members
        ids = [f"c{i:07d}" for i in range(n)]

        t = time.monotonic()
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
        from shared.api.routes.customers import SYNC_MAX_ROWS

        with_rows = [i for i in range(n) if i % NO_ROW_EVERY]
        for start in range(0, len(with_rows), SYNC_MAX_ROWS):  # within the sync route's limit
            rows = "CustomerId,ContactId\n" + "".join(
                f"{ids[i]},{emu.contact_id(i)}\n" for i in with_rows[start : start + SYNC_MAX_ROWS]
            )
            headers = {"Content-Type": "text/csv"}
            _check(client.post("/api/customers", content=rows, headers=headers), 200)
        customers_seconds = time.monotonic() - t
        t = time.monotonic()
        members = "CustomerId\n" + "\n".join(ids) + "\n"
        _check(
            client.put(
                "/api/segments/Bench", content=members, headers={"Content-Type": "text/csv"}
            ),
            200,
            201,
        )
        export = _check(
            client.post(
                "/api/exports",
                json={
                    "displayName": "Bench",
                    "connectionId": connection["id"],
                    "segments": ["Bench"],
                    "mode": "mirror",
                },
            ),
            201,
        )
        segment_seconds = time.monotonic() - t

        emu.reset_stats()
        first = _run_once(client, env, export["id"], log)
        first_stats = emu.stats()
        emu.reset_stats()
        second = _run_once(client, env, export["id"], log)
        second_stats = emu.stats()

        segment = first["segments"][0]
        expected = {
            emu.contact_id(i) for i in range(n) if i % NO_ROW_EVERY and not emu.is_inactive(i)
        }
        list_ok = emu.state.list_members(segment["listId"]) == expected

        def figures(run: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
            seg = run["segments"][0]
            return {
                "status": run["status"],
                "wall_seconds": run["wall_seconds"],
                "slices": run["slices"],
                "members": seg["members"],
                "matched": seg["matched"],
                "left_out": seg["leftOut"],
                "added": seg["added"],
                "removed": seg["removed"],
                "failed": seg["failed"],
                "requests_total": stats["requests_total"],
                "requests": stats["requests"],
                "batch_operations_total": stats["batch_operations_total"],
                "throttled": stats["throttled"],
                "violations": stats["violations"],
                "max_concurrency": stats["max_concurrency"],
                "modeled_cost_seconds": stats["total_cost_seconds"],
                "min_wall_time": stats.get("min_wall_time"),
            }

        report = {
            "members": n,
            "time_scale": args.time_scale,
            "slice_seconds": args.slice_seconds,
            "setup": {
                "customers_upload_seconds": round(customers_seconds, 2),
                "segment_and_export_seconds": round(segment_seconds, 2),
            },
            "first_run": figures(first, first_stats),
            "second_run_unchanged": figures(second, second_stats),
            "list_equals_matched_segment": list_ok,
            "worker_log": str(log),
        }
        print(json.dumps(report, indent=2))
        return 0 if list_ok else 1
    finally:
        emu.stop()
        azurite.stop()


if __name__ == "__main__":
    raise SystemExit(main())
