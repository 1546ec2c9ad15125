"""Recovery time after a worker is killed, with the shipped settings.

    python -m bench.recovery_time [--members 20000] [--time-scale 1.0]

Starts its own Azurite and emulator on loopback, requests a run, works the queue with a real
worker process (``python -m shared.runs.worker_main`` with its defaults: the message is hidden
for RUN_SLICE_SECONDS + 60 s, the lease is LEASE_SECONDS), SIGKILLs it once the first chunk is
applied, and starts a second worker at once (a surviving instance). Prints how long the run went
without a worker (kill -> the slice started again) and kill -> final. Only the settings the local
setup needs (storage, loopback, emulator authority) are set. A benchmark: it prints, it does not
judge.
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


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shared.runs.worker_main"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
    )


def _wait(condition: Any, limit: float) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise SystemExit("gave up waiting (safety bound)")
        time.sleep(0.2)
    return time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery_time")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from devtools.azurite import start_azurite
    from emulator import EmulatorConfig, start_emulator
    from shared.models import Connection, Credential, CredentialKind, Export, Trigger
    from shared.runs.requests import request_run
    from shared.runs.sweeper import abandoned_after
    from shared.settings import Settings
    from shared.store import open_store

    azurite = start_azurite()
    emu = start_emulator(
        EmulatorConfig(contacts=args.members + 100, seed=9, time_scale=args.time_scale)
    )
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "recovery_time_worker.log"
    log.write_text("")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        env = {
            "AzureWebJobsStorage": azurite.connection_string,
            "AUTH_MODE": "local-dev",
            "ALLOW_LOOPBACK_SALES": "true",
            "ENTRA_AUTHORITY_HOST": emu.authority_host,
            "SALES_CA_BUNDLE": emu.ca_file,
            SECRET_SETTING: emu.client_secret,
        }
        settings = Settings.from_env(env)
        store = open_store(settings)
        store.ensure()
        members = [f"c{i:07d}" for i in range(args.members)]
        rows = [{"CustomerId": c, "ContactId": emu.contact_id(i)} for i, c in enumerate(members)]
        for start in range(0, len(rows), 5000):
            store.customers.upsert_many(rows[start : start + 5000])
        store.segments.put("Recovery", members)
        connection = store.connections.create(
            Connection(
                id="bench-connection",
                display_name="Bench",
                server_address=emu.base_url,
                credential=Credential(
                    kind=CredentialKind.CLIENT_SECRET,
                    tenant_id=emu.tenant_id,
                    client_id=emu.client_id,
                    secret_setting=SECRET_SETTING,
                ),
                contact_id_field="ContactId",
            )
        )
        export = store.exports.create(
            Export(
                id="bench-export",
                display_name="Recovery bench",
                connection_id=connection.id,
                segments=["Recovery"],
                enabled=False,
            )
        )
        run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="bench")

        def current() -> Any:
            return store.runs.get(export.id, run.id)

        workers.append(_worker(env, log))
        _wait(lambda: current().segments[0].added > 0, 600)
        killed = time.monotonic()
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait(timeout=30)
        workers.append(_worker(env, log))  # a surviving instance, polling the queue
        resumed = _wait(lambda: current().slice_attempts >= 2, 3600)
        final_at = _wait(lambda: current().status.is_final, 3600)
        final = current()
        figures = {
            "members": args.members,
            "lease_seconds": settings.lease_seconds,
            "message_visibility_seconds": int(settings.run_slice_seconds + 60),
            "abandoned_after_seconds": abandoned_after(settings).total_seconds(),
            "kill_to_resume_seconds": round(resumed - killed, 1),
            "kill_to_final_seconds": round(final_at - killed, 1),
            "status": str(final.status),
            "added": final.segments[0].added,
            "in_list": len(emu.state.list_members(final.segments[0].list_id)),
        }
        print(json.dumps(figures, indent=2))
        store.close()
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=60)
        emu.stop()
        azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
