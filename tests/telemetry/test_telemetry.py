"""Telemetry with the SDK's in-memory exporters: a real run (Azurite + the Sales emulator) gives
slice > segment > request spans, the member / request / run metrics and logs carrying run and
export ids, and nothing exported names a customer ID, contact ID, secret or token. Off by
default: importing the app loads no OpenTelemetry."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulator import EmulatorConfig, start_emulator
from shared import telemetry
from shared.models import RunStatus, Trigger
from shared.runs.requests import request_run
from shared.sales.client import SalesClient
from shared.settings import Settings
from shared.store import open_store
from tests.runs.helpers import (
    customer_id,
    drain,
    make_connection,
    make_export,
    run_env,
    seed_customers,
    seed_segment,
)
from tests.sales.conftest import StaticTokens
from tests.support import REPO
from tests.telemetry.conftest import Recorded


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    config = EmulatorConfig(contacts=3_000, inactive_fraction=0.05, seed=23, time_scale=0.01)
    with start_emulator(config) as running:
        yield running


def test_a_run_is_traced_measured_and_logged_without_any_id_of_a_person(
    azurite: Any, table_prefix: str, emu: Any, recorded: Recorded
) -> None:
    settings = Settings.from_env(run_env(azurite, table_prefix, emu))
    store = open_store(settings)
    store.ensure()
    try:
        members = list(range(100, 400))
        seed_customers(store, emu, members[:-20])  # the last 20 have no customer record
        seed_segment(store, "T1", members)
        seed_segment(store, "T2", members[:50])
        connection = make_connection(store, emu)
        export = make_export(store, connection, ["T1", "T2"])
        run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        done = drain(store, settings, run)
    finally:
        store.close()
    assert done.status is RunStatus.SUCCEEDED

    spans = recorded.spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    slices = [s for s in spans if s.name == "run.slice"]
    segments = [s for s in spans if s.name == "run.segment"]
    requests = [s for s in spans if s.name == "sales.request"]
    assert slices and len(segments) == 2 and requests
    assert slices[0].attributes["segexp.run_id"] == run.id  # type: ignore[index]
    assert all(s.parent and by_id[s.parent.span_id].name == "run.slice" for s in segments)
    # every Sales request hangs under a segment (also those sent from the sync's worker threads)
    assert all(r.parent and by_id[r.parent.span_id].name == "run.segment" for r in requests)
    kinds = {r.attributes["segexp.request_kind"] for r in requests}  # type: ignore[index]
    assert {"lists", "AddListMembersList", "$batch"} <= kinds  # reads, adds, validations
    for r in requests:
        attributes = r.attributes or {}
        assert attributes["http.request.method"] in ("GET", "POST", "PATCH", "DELETE")
        assert attributes["http.response.status_code"] < 400
        assert attributes["segexp.throttled"] is False

    added = sum(p.value for p in recorded.points("segexp.members.added"))
    assert added == sum(s.added for s in done.segments) > 0
    left_out = {
        p.attributes["segexp.reason"]: p.value for p in recorded.points("segexp.members.left_out")
    }
    expected: dict[str, int] = {}
    for segment in done.segments:
        for reason, count in segment.left_out.items():
            expected[reason] = expected.get(reason, 0) + count
    assert left_out == expected and left_out["no-customer-record"] == 20
    connection_requests = recorded.points("segexp.sales.requests")
    assert sum(p.value for p in connection_requests) == len(requests)
    assert {p.attributes["segexp.connection_id"] for p in connection_requests} == {connection.id}
    [duration] = recorded.points("segexp.run.duration")
    assert duration.count == 1 and duration.attributes["segexp.outcome"] == "succeeded"

    logs = [item.log_record for item in recorded.logs.get_finished_logs()]
    run_logs = [r for r in logs if (r.attributes or {}).get("segexp.run_id") == run.id]
    assert run_logs and all((r.attributes or {})["segexp.export_id"] == export.id for r in run_logs)

    text = recorded.all_text()
    for i in members:
        assert customer_id(i) not in text
        assert emu.contact_id(i) not in text and emu.contact_id(i).upper() not in text
    assert emu.client_secret not in text
    assert "eyJ" not in text and "Bearer" not in text  # no token


def test_a_throttled_request_is_marked_and_its_wait_counted(recorded: Recorded) -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "0.05"}, json={"error": {"code": "x"}}),
        httpx.Response(200, json={"UserId": "u"}),
    ]
    client = SalesClient(
        "https://contoso.crm.dynamics.com",
        StaticTokens(),
        transport=httpx.MockTransport(lambda request: answers.pop(0)),
    )
    with telemetry.run_slice("e1", "r1", 0):
        telemetry.set_connection("c1")
        client.who_am_i()
    client.close()
    requests = [s for s in recorded.spans.get_finished_spans() if s.name == "sales.request"]
    assert [(s.attributes or {})["segexp.throttled"] for s in requests] == [True, False]
    assert (requests[0].attributes or {})["segexp.retry_after_s"] == pytest.approx(0.05)
    assert (requests[0].attributes or {})["segexp.request_kind"] == "WhoAmI"
    [waited] = recorded.points("segexp.sales.throttled_seconds")
    assert waited.value == pytest.approx(0.05) and waited.attributes["segexp.connection_id"] == "c1"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("lists(5f3e…)/listcontact_association?$select=contactid", "lists"),
        ("contacts?$filter=contactid eq 1b4e28ba-2fa1-11d2-883f-0016d3cca427", "contacts"),
        ("https://x.crm.dynamics.com/api/data/v9.2/lists(1)/y?$skiptoken=abc", "lists"),
        ("AddListMembersList", "AddListMembersList"),
        ("$batch", "$batch"),
    ],
)
def test_request_kind_never_carries_a_key(url: str, kind: str) -> None:
    assert telemetry.request_kind(url) == kind


def test_off_by_default_and_importing_the_app_loads_no_opentelemetry_sdk() -> None:
    # (FastAPI itself imports the light opentelemetry API package when it is installed)
    code = (
        "import sys, function_app\n"
        "from shared import telemetry\n"
        "from shared.settings import Settings\n"
        "env = {'AzureWebJobsStorage': 'UseDevelopmentStorage=true', 'AUTH_MODE': 'local-dev'}\n"
        "assert telemetry.configure(Settings.from_env(env).environ) is False\n"
        "assert not telemetry.enabled()\n"
        "with telemetry.run_slice('e', 'r', 0), telemetry.segment(0):\n"
        "    telemetry.sales_request('GET', 'WhoAmI', status=200, seconds=0.1)\n"
        "heavy = ('opentelemetry.sdk', 'opentelemetry.instrumentation', 'azure.monitor')\n"
        "loaded = [m for m in sys.modules if m.startswith(heavy)]\n"
        "print(sorted(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_worker_route_is_not_configured_twice() -> None:
    code = (
        "import sys\n"
        "from shared import telemetry\n"
        "env = {'APPLICATIONINSIGHTS_CONNECTION_STRING': 'InstrumentationKey=x',\n"
        "       'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY': 'true'}\n"
        "assert telemetry.configure(env) is True and telemetry.enabled()\n"
        "assert telemetry.configure(env) is True\n"
        "print('azure.monitor.opentelemetry' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
