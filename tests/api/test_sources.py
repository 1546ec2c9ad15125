"""Exports with a Customer Insights source through the API, against the emulator over HTTPS:
the segments a source offers, save-time checks (segments, contact-ID mapping), the mapping
choice on connections, and what a run records about its source."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import ADMIN, VIEWER, create_connection, export_body, put_segment
from tests.api.test_problems import assert_problem

SETTING = "SEGEXP_SECRET_CONTOSO"
COLUMN = "msdynci_dataverse_contact_contactid"


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from emulator import EmulatorConfig, start_emulator
    from emulator.cid import CidConfig

    config = EmulatorConfig(
        contacts=300,
        seed=4,
        time_scale=0.01,
        cid=CidConfig(customers=300, segments={"High_value": 120, "Lapsed": 40}),
    )
    with start_emulator(config) as running:
        yield running


@pytest.fixture
def api(make_client: Callable[..., TestClient], emu: Any) -> Iterator[TestClient]:
    yield make_client(
        ALLOW_LOOPBACK_SALES="true",
        ENTRA_AUTHORITY_HOST=emu.authority_host,
        SALES_CA_BUNDLE=emu.ca_file,
        SALES_MAX_RETRIES="1",
        **{SETTING: emu.client_secret},
    )
    emu.cid.readable = True


def connection(api: TestClient, emu: Any, **overrides: Any) -> str:
    created = create_connection(
        api,
        serverAddress=emu.base_url,
        credential={
            "kind": "client-secret",
            "tenantId": emu.tenant_id,
            "clientId": emu.client_id,
            "secretSetting": SETTING,
        },
        **{"contactIdField": COLUMN, **overrides},
    )
    return str(created["id"])


CI = {"kind": "customer-insights"}


def test_the_source_lists_its_segments_with_member_counts(api: TestClient, emu: Any) -> None:
    conn = connection(api, emu)
    url = f"/api/sources/customer-insights/segments?connectionId={conn}"
    assert_problem(api.get(url, headers=VIEWER), 422)  # reading CI-D means using the connection
    answer = api.get(url, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "kind": "customer-insights",
        "connectionId": conn,
        "items": [{"name": "High_value", "members": 120}, {"name": "Lapsed", "members": 40}],
    }
    put_segment(api, "Uploaded", ["C-1", "C-2"])
    embedded = api.get("/api/sources/embedded/segments", headers=VIEWER).json()
    assert embedded["items"] == [{"name": "Uploaded", "members": 2}]
    assert_problem(api.get("/api/sources/customer-insights/segments", headers=ADMIN), 422)
    assert_problem(api.get("/api/sources/elsewhere/segments", headers=ADMIN), 404)


def test_an_export_naming_a_segment_ci_lacks_is_refused_naming_it(
    api: TestClient, emu: Any
) -> None:
    conn = connection(api, emu)
    body = export_body(conn, segments=["High_value", "High_val"], source=CI)
    refused = api.post("/api/exports", json=body, headers=ADMIN)
    assert_problem(refused, 422)
    assert refused.json()["errors"] == [
        {
            "field": "segments[1]",
            "message": "Customer Insights has no segment 'High_val' (no membership row names "
            "it; use its output table name)",
        }
    ]
    created = api.post("/api/exports", json={**body, "segments": ["High_value"]}, headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["source"] == {"kind": "customer-insights", "connectionId": None}
    # the source can be switched back by PATCH (replaced whole, not merged)
    export_id = created.json()["id"]
    back = api.patch(
        f"/api/exports/{export_id}", json={"source": {"kind": "embedded"}}, headers=ADMIN
    )
    assert_problem(back, 422)  # High_value was never uploaded to the embedded source
    assert back.json()["errors"] == [{"field": "segments[0]", "message": "no such segment"}]


def test_the_contact_id_mapping_is_checked_when_the_export_is_saved(
    api: TestClient, emu: Any
) -> None:
    wrong = connection(api, emu, contactIdField="msdynci_contactid_typo")
    refused = api.post(
        "/api/exports", json=export_body(wrong, segments=["Lapsed"], source=CI), headers=ADMIN
    )
    assert_problem(refused, 422)
    [error] = refused.json()["errors"]
    assert error["field"] == "source" and "contact-ID field" in error["message"]

    keys = connection(api, emu, contactIdField="unused", contactIdSource="alternate-key")
    assert (
        api.get(f"/api/connections/{keys}", headers=ADMIN).json()["contactIdSource"]
        == "alternate-key"
    )
    # CI-D read through another connection (alternate keys) than the one Sales is written with
    created = api.post(
        "/api/exports",
        json=export_body(wrong, segments=["Lapsed"], source={**CI, "connectionId": keys}),
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    assert created.json()["source"] == {"kind": "customer-insights", "connectionId": keys}


def test_a_source_without_read_privilege_is_refused_with_the_fix(api: TestClient, emu: Any) -> None:
    conn = connection(api, emu)
    emu.cid.readable = False
    refused = api.post(
        "/api/exports", json=export_body(conn, segments=["Lapsed"], source=CI), headers=ADMIN
    )
    assert_problem(refused, 422)
    assert "Viewer role" in refused.json()["errors"][0]["message"]
    listing = api.get(f"/api/sources/customer-insights/segments?connectionId={conn}", headers=ADMIN)
    assert_problem(listing, 422)
    assert "Viewer role" in listing.json()["detail"]


def test_a_connection_ci_exports_read_through_checks_its_mapping_on_save_and_test(
    api: TestClient, emu: Any
) -> None:
    conn = connection(api, emu)
    created = api.post(
        "/api/exports", json=export_body(conn, segments=["Lapsed"], source=CI), headers=ADMIN
    )
    assert created.status_code == 201, created.text
    tested = api.post(f"/api/connections/{conn}/test", headers=ADMIN).json()
    [check] = [c for c in tested["checks"] if c["name"] == "customer-insights"]
    assert check["ok"] and COLUMN in check["detail"]

    typo = api.patch(
        f"/api/connections/{conn}", json={"contactIdField": "msdynci_typo"}, headers=ADMIN
    )
    assert_problem(typo, 422)
    assert typo.json()["errors"][0]["field"] == "contactIdField"
    keys = api.patch(
        f"/api/connections/{conn}", json={"contactIdSource": "alternate-key"}, headers=ADMIN
    )
    assert keys.status_code == 200, keys.text
    assert keys.json()["contactIdSource"] == "alternate-key"
