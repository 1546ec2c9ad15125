"""The operator CLI and the demo's sample data, end to end over real HTTP on loopback:
uvicorn serving the app, the run-queue worker (the queue trigger's handler) in a thread, Azurite,
and the Dataverse emulator with real msal."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from emulator import EmulatorConfig, start_emulator
from scripts import sample_data
from segexp.__main__ import main as cli
from shared.api.app import create_api
from shared.runs.worker_main import serve
from shared.settings import Settings
from shared.store import open_store
from tests.support import free_port, wait_for_port

SEED = 3
CUSTOMERS = 400


@pytest.fixture
def app_stack(azurite: Any, table_prefix: str) -> Iterator[dict[str, Any]]:
    emu = start_emulator(EmulatorConfig(contacts=CUSTOMERS + 50, seed=SEED, time_scale=0.05))
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "TABLE_PREFIX": table_prefix,
            "RUN_QUEUE_NAME": f"q{table_prefix}",
            "AUTH_MODE": "local-dev",
            "ALLOW_LOOPBACK_SALES": "true",
            "ENTRA_AUTHORITY_HOST": emu.authority_host,
            "SALES_CA_BUNDLE": emu.ca_file,
            "SEGEXP_SECRET_CLI": emu.client_secret,
        }
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_api(lambda: settings), host="127.0.0.1", port=port, log_level="error")
    )
    api_thread = threading.Thread(target=server.run, daemon=True)
    api_thread.start()
    wait_for_port(port, None)
    store = open_store(settings)
    store.ensure()
    stop = threading.Event()
    worker = threading.Thread(
        target=serve,
        args=(settings, store),
        kwargs={"should_stop": stop.is_set, "visibility": 60, "retry_delay": 1},
        daemon=True,
    )
    worker.start()
    try:
        yield {"api": f"http://127.0.0.1:{port}", "emu": emu}
    finally:
        stop.set()
        server.should_exit = True
        worker.join(timeout=30)
        api_thread.join(timeout=30)
        emu.stop()


def run_cli(capsys: pytest.CaptureFixture[str], api: str, *args: str) -> tuple[int, str]:
    code = cli(["--api", api, *args])
    return code, capsys.readouterr().out


def test_operator_imports_runs_and_reads_rejections(
    app_stack: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api, emu = app_stack["api"], app_stack["emu"]
    data = sample_data.build(CUSTOMERS, SEED)
    (tmp_path / "customers.csv").write_bytes(data.customers_csv)
    members = data.segments["Lapsed"]
    (tmp_path / "lapsed.csv").write_text("CustomerId\n" + "\n".join(members) + "\n")

    code, out = run_cli(capsys, api, "import-customers", str(tmp_path / "customers.csv"))
    assert code == 0 and json.loads(out)["upserted"] == CUSTOMERS
    code, out = run_cli(capsys, api, "import-segment", "Lapsed", str(tmp_path / "lapsed.csv"))
    assert code == 0 and json.loads(out)["members"] == len(set(members))

    # Configuration goes through the same HTTP API (no CLI verb creates connections).
    from segexp.client import ApiClient

    with ApiClient(api) as client:
        connection = client.create_connection(
            {
                "displayName": "CLI test",
                "serverAddress": emu.base_url,
                "credential": {
                    "kind": "client-secret",
                    "tenantId": emu.tenant_id,
                    "clientId": emu.client_id,
                    "secretSetting": "SEGEXP_SECRET_CLI",
                },
                "contactIdField": sample_data.CONTACT_FIELD,
            }
        )
        export = client.create_export(
            {"displayName": "CLI", "connectionId": connection["id"], "segments": ["Lapsed"]}
        )

    code, out = run_cli(capsys, api, "test-connection", connection["id"])
    assert code == 0 and "[FAIL]" not in out
    code, out = run_cli(capsys, api, "exports")
    assert export["id"] in out and "Lapsed" in out

    code, out = run_cli(capsys, api, "run", export["id"], "--follow")
    assert code == 0, out
    assert "Segment 'Lapsed'" in out
    run_id = out.split("queued run ", 1)[1].split()[0]

    # The list in Sales equals the matched members; every other member is a rejection.
    with ApiClient(api) as client:
        run = client.run(export["id"], run_id)
    segment = run["segments"][0]
    listed = emu.state.list_members(segment["listId"])
    assert len(listed) == segment["matched"] == segment["added"]
    assert segment["matched"] + sum(segment["leftOut"].values()) == len(set(members))
    assert {"no-customer-record", "contact-inactive"} <= set(segment["leftOut"])

    code, out = run_cli(capsys, api, "rejections", export["id"], run_id, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == sum(segment["leftOut"].values())
    assert all(r["reason"] for r in rows)

    code, out = run_cli(capsys, api, "runs", export["id"])
    assert code == 0 and run_id in out

    # A second run changes nothing in Sales.
    code, out = run_cli(capsys, api, "run", export["id"], "--follow")
    assert code == 0
    assert emu.state.list_members(segment["listId"]) == listed


def test_cli_reports_api_problems(
    app_stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(["--api", app_stack["api"], "run", "0" * 32])
    assert code == 2
    assert "404" in capsys.readouterr().err


def test_sample_data_covers_every_left_out_reason_it_claims() -> None:
    data = sample_data.build(300, SEED)
    rows = list(csv.DictReader(io.StringIO(data.customers_csv.decode())))
    contacts = [r[sample_data.CONTACT_FIELD] for r in rows]
    assert "" in contacts
    assert any(c.startswith("not-a-guid") for c in contacts)
    known = {r["CustomerId"] for r in rows}
    assert any(m not in known for m in data.segments["High value"])
    churned = sample_data.churned(data.segments["Lapsed"], 300)
    assert len(churned) == len(data.segments["Lapsed"])
    assert set(churned) != set(data.segments["Lapsed"])
