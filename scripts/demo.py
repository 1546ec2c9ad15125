"""`make demo`: the whole job end to end on this machine, in about a minute.

Starts Azurite and the local Dataverse emulator (with contacts, some inactive), serves the HTTP
API (uvicorn, as `func start` would) and a queue worker (the same handler as the queue trigger),
loads a sample customer table and segments through the API, creates a connection and an export,
runs it on demand showing progress, prints a per-segment summary, runs it again (no-change
refresh), changes a segment and runs once more (5 % churn: adds and removes). Then the Customer
Insights path: two segments read live from CI-D's tables (played by the emulator) are exported;
membership changes in "CI-D"; the scheduled-refresh timer function, called as the Functions host
would, carries exactly that change into Sales. Stops everything it started. Loopback only.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from devtools.azurite import free_port, start_azurite, wait_for_port
from emulator.cid import CidConfig, CidTables
from emulator.data import is_inactive
from scripts import sample_data
from segexp.__main__ import follow
from segexp.client import ApiClient
from segexp.render import REASON_LABELS, run_summary, runs_table
from shared.settings import AZURE_HOST_MARKERS

REPO = Path(__file__).resolve().parent.parent
SEED = 7
CONTACTS = 6000
CUSTOMERS = 5000
SECRET_SETTING = "SEGEXP_SECRET_DEMO"
CID_SEGMENTS = {"High_value": 900, "Lapsed_buyers": 600}  # CI-D output table names and sizes
CID_COLUMN = "msdynci_dataverse_contact_contactid"
REFRESH_EVERY = 5  # seconds: the demo's REFRESH_SCHEDULE, so the next due time comes soon


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"\n== {text}")


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def emulator(workdir: Path) -> Iterator[dict[str, str]]:
    cmd = [
        sys.executable,
        "-m",
        "emulator",
        "--port",
        "0",
        "--contacts",
        str(CONTACTS),
        "--inactive-fraction",
        "0.05",
        "--seed",
        str(SEED),
        "--cid-customers",
        str(CUSTOMERS),
        "--cid-segments",
        ",".join(f"{name}:{size}" for name, size in CID_SEGMENTS.items()),
        "--cid-no-contact-fraction",
        "0.03",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the Dataverse emulator did not start")
        yield json.loads(line)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited early; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the API did not become healthy within 60 s")


def left_out_total(run: dict) -> int:
    return sum(sum((s.get("leftOut") or {}).values()) for s in run["segments"])


def emulator_control(emu: dict[str, str], method: str, path: str, body: object = None) -> Any:
    with httpx.Client(verify=ssl.create_default_context(cafile=emu["ca_file"]), timeout=30) as http:
        response = http.request(method, f"{emu['base_url']}/_emulator/{path}", json=body)
        response.raise_for_status()
        return response.json()


def call_refresh_timer(env: dict[str, str]) -> None:
    """What the Functions host does at a REFRESH_SCHEDULE due time: call scheduled_refresh."""
    os.environ.update(env)  # the host gives the function the app settings as its environment
    from azure.functions.timer import TimerRequest

    import function_app

    functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
    now = time.time()
    time.sleep(REFRESH_EVERY - now % REFRESH_EVERY + 0.2)  # the next due time
    functions["scheduled_refresh"].get_user_function()(TimerRequest(past_due=False))


def customer_insights_path(
    api: ApiClient, emu: dict[str, str], env: dict[str, str], sales: dict[str, Any]
) -> bool:
    step("Customer Insights - Data: a connection whose contact IDs come from the unified profile")
    connection = api.create_connection(
        {
            "displayName": "Contoso Sales + CI-D (local emulator)",
            "type": "dynamics365-sales",
            "usableBy": "administrators-and-contributors",
            "serverAddress": emu["base_url"],
            "credential": dict(sales["credential"]),
            "contactIdField": CID_COLUMN,
            "contactIdSource": "column",
        }
    )
    offered = api.source_segments("customer-insights", connection["id"])
    say("   segments CI-D offers (msdynci_segmentmemberships):")
    for item in offered:
        say(f"     {item['name']:<16} {item['members']:>6,} members")

    step("Data > Exports > Add destination, source Customer Insights (read at every run)")
    export = api.create_export(
        {
            "displayName": "CI-D promo",
            "connectionId": connection["id"],
            "source": {"kind": "customer-insights"},
            "segments": list(CID_SEGMENTS),
            "mode": "mirror",
            "enabled": True,
            "listName": "CI-D: {segment}",
        }
    )
    say(f"   export {export['id']} reads {', '.join(export['segments'])} from CI-D")
    run = api.start_run(export["id"])
    first = follow(api, export["id"], run["id"], interval=0.5)
    say(run_summary(first))

    step("In CI-D: 6 customers join High_value, 4 leave it (its next refresh writes Dataverse)")
    members = emulator_control(emu, "GET", "cid/segments")["value"]
    size = members["High_value"]
    # customers with a contact id whose contact is active: each join/leave changes the list
    cid = CidTables(CidConfig(customers=CUSTOMERS, no_contact_fraction=0.03), SEED)

    def exportable(i: int) -> bool:
        return cid.has_contact(i) and not is_inactive(i, SEED, 0.05)

    joining = [i for i in range(4000, CUSTOMERS) if exportable(i)][:6]  # in no segment yet
    leaving = [i for i in range(10, 100) if exportable(i)][:4]  # High_value is customers 0..899
    emulator_control(emu, "POST", "cid/segments/High_value/join", {"customers": joining})
    emulator_control(emu, "POST", "cid/segments/High_value/leave", {"customers": leaving})
    say(f"   High_value: {size:,} -> {size + len(joining) - len(leaving):,} members")

    step(f"Scheduled refresh: the host calls scheduled_refresh (every {REFRESH_EVERY} s here)")
    call_refresh_timer(env)
    runs = api.runs(export["id"])
    refreshed = follow(api, export["id"], runs[0]["id"], interval=0.5)
    say(run_summary(refreshed))
    [high] = [s for s in refreshed["segments"] if s["segment"] == "High_value"]
    [lapsed] = [s for s in refreshed["segments"] if s["segment"] == "Lapsed_buyers"]
    say(
        f"   carried into Sales: High_value +{high['added']} -{high['removed']} (CI-D changed "
        f"+{len(joining)} -{len(leaving)}), Lapsed_buyers +{lapsed['added']} -{lapsed['removed']}"
    )
    exact = (high["added"], high["removed"], lapsed["added"], lapsed["removed"]) == (
        len(joining),
        len(leaving),
        0,
        0,
    )

    step("Which data did each run use? (source and watermark per run)")
    for r in api.runs(export["id"]):
        marks = ", ".join(
            f"{s['segment']} {s['source']['kind']} @ {s['source']['watermark']}"
            for s in r["segments"]
            if s.get("source")
        )
        say(f"   {r['id']} {r['trigger']:10} {r['status']:20} {marks}")
    return exact and first["status"] == "succeeded" and refreshed["status"] == "succeeded"


def keep_running(api_url: str) -> None:
    """`make demo KEEP=1`: leave everything up for a newcomer to click through."""
    from emulator.authorize import DEFAULT_USERS

    step("Everything keeps running (KEEP=1)")
    say(f"   Console: {api_url}/   (you are the local-dev Admin)")
    say(f"   API docs: {api_url}/api/docs")
    users = ", ".join(f"{name} / {pw}" for name, pw in DEFAULT_USERS.items())
    say(f"   Emulator sign-in users (for a 'Sign in' connection): {users}")
    say("   Press Ctrl-C to stop everything the demo started.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("\n   stopping")


def main(argv: list[str] | None = None) -> int:
    keep = "--keep" in (sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="segexp-demo-"))
    with ExitStack() as stack:
        step("Starting Azurite (Table + Queue storage, in memory)")
        azurite = start_azurite()
        stack.callback(azurite.stop)
        say(
            f"   tables on 127.0.0.1:{azurite.table_port}, queues on 127.0.0.1:{azurite.queue_port}"
        )

        step(f"Starting the local Dataverse emulator ({CONTACTS:,} contacts, 5 % inactive)")
        emu = stack.enter_context(emulator(workdir))
        say(f"   Sales environment {emu['base_url']}, Entra token endpoint {emu['authority_host']}")

        env = {
            **os.environ,
            "AzureWebJobsStorage": azurite.connection_string,
            "AUTH_MODE": "local-dev",
            "LOCAL_DEV_USER": "demo-admin@localhost",
            "LOCAL_DEV_ROLES": "Admin",
            "ALLOW_LOOPBACK_SALES": "true",
            "ENTRA_AUTHORITY_HOST": emu["authority_host"],
            "SALES_CA_BUNDLE": emu["ca_file"],
            SECRET_SETTING: emu["client_secret"],
            "TABLE_PREFIX": "demo",
            # Encrypts delegated ("Sign in") connections' token caches; random per demo run.
            "TOKEN_CACHE_KEY": base64.b64encode(os.urandom(32)).decode(),
            "PYTHONUNBUFFERED": "1",
            "REFRESH_SCHEDULE": f"*/{REFRESH_EVERY} * * * * *",
        }
        for marker in AZURE_HOST_MARKERS:  # the demo runs on loopback, never in Azure
            env.pop(marker, None)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        step(f"Serving the HTTP API at {api_url} and starting the run-queue worker")
        api_log, worker_log = workdir / "api.log", workdir / "worker.log"
        api_proc = stack.enter_context(
            process(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "function_app:api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                env,
                api_log,
            )
        )
        wait_for_port(port, api_proc, timeout=60)
        wait_healthy(api_url, api_proc, api_log)
        stack.enter_context(
            process(
                [sys.executable, "-m", "shared.runs.worker_main", "--retry-delay", "2"],
                env,
                worker_log,
            )
        )
        say(f"   logs: {workdir}")

        api = stack.enter_context(ApiClient(api_url))
        sample = sample_data.build(CUSTOMERS, SEED)

        step("Loading the unified customer table (CSV) and three segments")
        report = api.upsert_customers_csv(sample.customers_csv)
        say(f"   customers: {report['upserted']:,} rows upserted")
        for name, members in sample.segments.items():
            info = api.put_segment(name, members)
            say(f"   segment {name!r}: {info['members']:,} members")

        step("Admin > Connections > Add connection (Dynamics 365 Sales)")
        connection = api.create_connection(
            {
                "displayName": "Contoso Sales (local emulator)",
                "type": "dynamics365-sales",
                "usableBy": "administrators-and-contributors",
                "serverAddress": emu["base_url"],
                "credential": {
                    "kind": "client-secret",
                    "tenantId": emu["tenant_id"],
                    "clientId": emu["client_id"],
                    "secretSetting": SECRET_SETTING,
                },
                "contactIdField": sample_data.CONTACT_FIELD,
            }
        )
        say(f"   connection {connection['id']} ({connection['displayName']})")
        for check in api.test_connection(connection["id"])["checks"]:
            say(f"   [{'ok' if check['ok'] else 'FAIL'}] {check['name']}: {check['detail']}")

        step("Data > Exports > Add destination (saving does not run it)")
        export = api.create_export(
            {
                "displayName": "Spring promo",
                "connectionId": connection["id"],
                "segments": list(sample.segments),
                "mode": "mirror",
                "enabled": True,
                "listName": "Segment: {segment}",
            }
        )
        say(f"   export {export['id']} with segments {', '.join(export['segments'])}")
        say(f"   runs so far: {len(api.runs(export['id']))}")

        step("Run on demand (first export: lists are created)")
        run = api.start_run(export["id"])
        first = follow(api, export["id"], run["id"], interval=0.5)
        say(run_summary(first))
        rejected = list(api.rejections(export["id"], first["id"]))
        say(f"   members left out: {len(rejected):,}; a few of them:")
        seen: set[str] = set()
        for r in rejected:
            if r["reason"] not in seen:
                seen.add(r["reason"])
                say(
                    f"     {r['segment']:<12} {r['customerId']:<11} "
                    f"{REASON_LABELS.get(r['reason'], r['reason'])}"
                    + (f" ({r['contactId']})" if r.get("contactId") else "")
                )

        step("Run again (no-change refresh)")
        run = api.start_run(export["id"])
        second = follow(api, export["id"], run["id"], interval=0.5)
        say(run_summary(second))

        step("A week later: 5 % of 'Lapsed' changed; run again (mirror: adds and removes)")
        api.put_segment("Lapsed", sample_data.churned(sample.segments["Lapsed"], CUSTOMERS))
        run = api.start_run(export["id"])
        third = follow(api, export["id"], run["id"], interval=0.5)
        say(run_summary(third))

        step("Run history (newest first)")
        say(runs_table(api.runs(export["id"])))
        ok = all(
            r["status"] in ("succeeded", "partially-succeeded") for r in (first, second, third)
        )
        ok = customer_insights_path(api, emu, env, connection) and ok
        if keep:
            say(f"\n   Demo finished in {time.monotonic() - started:.0f} s")
            keep_running(api_url)
        else:
            say(f"\n   Console (while the demo runs): {api_url}/ ; `make demo KEEP=1` keeps it up")
            step(
                f"Done in {time.monotonic() - started:.0f} s; stopping everything the demo started"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
