"""/api/connections on Azurite: create/read/patch/delete, validation (nothing stored), roles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import (
    ADMIN,
    CONTRIBUTOR,
    NO_ROLE,
    VIEWER,
    connection_body,
    create_connection,
    create_export,
    put_segment,
    seed,
)
from tests.api.test_problems import assert_problem


def _count(client: TestClient) -> int:
    return len(client.get("/api/connections", headers=ADMIN).json()["items"])


def test_create_answers_201_location_etag_normalised_and_audited(client: TestClient) -> None:
    response = client.post(
        "/api/connections",
        json=connection_body(serverAddress="https://Contoso.CRM.dynamics.com/"),
        headers=ADMIN,
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/api/connections/{body['id']}"
    assert response.headers["etag"]
    assert body["serverAddress"] == "https://contoso.crm.dynamics.com"
    assert body["credential"] == {
        "kind": "client-secret",
        "tenantId": "8e0c6b1a-2f7d-4c1e-9a55-0f3b2c1d4e5f",
        "clientId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "secretSetting": "SEGEXP_SECRET_CONTOSO",
    }
    assert body["createdBy"] == body["updatedBy"] == "ada@contoso.test"
    assert body["createdAt"].endswith("Z")
    again = client.get(response.headers["location"], headers=ADMIN)
    assert again.status_code == 200
    assert again.json() == body
    assert again.headers["etag"] == response.headers["etag"]


def test_defaults_and_managed_identity(client: TestClient) -> None:
    body = connection_body(credential={"kind": "managed-identity"})
    del body["usableBy"], body["type"]
    created = client.post("/api/connections", json=body, headers=ADMIN).json()
    assert created["usableBy"] == "administrators"
    assert created["type"] == "dynamics365-sales"
    assert created["credential"]["kind"] == "managed-identity"
    with_id = create_connection(
        client,
        credential={"kind": "managed-identity", "clientId": "3F2504E0-4F89-11D3-9A0C-0305E82C3301"},
    )
    assert with_id["credential"]["clientId"] == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    by_domain = create_connection(
        client,
        credential={
            "kind": "client-secret",
            "tenantId": "contoso.onmicrosoft.com",
            "clientId": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "secretSetting": "SEGEXP_SECRET_S",
        },
    )
    assert by_domain["credential"]["tenantId"] == "contoso.onmicrosoft.com"


CRED = connection_body()["credential"]
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("empty name", {"displayName": ""}, "displayName"),
    ("blank name", {"displayName": "   "}, "displayName"),
    ("long name", {"displayName": "x" * 101}, "displayName"),
    ("name type", {"displayName": 7}, "displayName"),
    ("type", {"type": "salesforce"}, "type"),
    ("usableBy", {"usableBy": "everyone"}, "usableBy"),
    ("http", {"serverAddress": "http://contoso.crm.dynamics.com"}, "serverAddress"),
    ("host", {"serverAddress": "https://contoso.example.com"}, "serverAddress"),
    ("path", {"serverAddress": "https://contoso.crm.dynamics.com/main.aspx"}, "serverAddress"),
    ("userinfo", {"serverAddress": "https://u:p@contoso.crm.dynamics.com"}, "serverAddress"),
    ("query", {"serverAddress": "https://contoso.crm.dynamics.com?a=b"}, "serverAddress"),
    ("loopback", {"serverAddress": "https://127.0.0.1:8443"}, "serverAddress"),
    ("tenant", {"credential": {**CRED, "tenantId": "not a tenant"}}, "credential.tenantId"),
    ("client guid", {"credential": {**CRED, "clientId": "1234"}}, "credential.clientId"),
    (
        "setting name",
        {"credential": {**CRED, "secretSetting": "has-dash"}},
        "credential.secretSetting",
    ),
    (
        "setting digit",
        {"credential": {**CRED, "secretSetting": "1ABC"}},
        "credential.secretSetting",
    ),
    (
        "setting long",
        {"credential": {**CRED, "secretSetting": "A" * 129}},
        "credential.secretSetting",
    ),
    (
        "no setting",
        {"credential": {k: v for k, v in CRED.items() if k != "secretSetting"}},
        "credential.secretSetting",
    ),
    ("kind", {"credential": {**CRED, "kind": "password"}}, "credential"),
    (
        "mi extra",
        {"credential": {"kind": "managed-identity", "tenantId": CRED["tenantId"]}},
        "credential.tenantId",
    ),
    ("column", {"contactIdField": "Contact Id"}, "contactIdField"),
    ("unknown field", {"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(("label", "change", "field"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_connection_is_4xx_naming_the_field_and_stores_nothing(
    client: TestClient, label: str, change: dict[str, Any], field: str
) -> None:
    response = client.post("/api/connections", json=connection_body(**change), headers=ADMIN)
    body = assert_problem(response, 422)
    assert field in [e["field"] for e in body["errors"]], body
    assert field in body["detail"]
    assert _count(client) == 0


def test_missing_required_fields(client: TestClient) -> None:
    body = assert_problem(client.post("/api/connections", json={}, headers=ADMIN), 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"displayName", "serverAddress", "credential", "contactIdField"} <= fields


@pytest.mark.parametrize(
    "change",
    [
        {"credential": {**CRED, "clientSecret": "s3cr3t-value-xyz"}},
        {"secret": "s3cr3t-value-xyz"},
        {"credential": {**CRED, "secret": "s3cr3t-value-xyz"}},
    ],
)
def test_a_secret_value_in_the_body_is_400_and_not_echoed(
    client: TestClient, change: dict[str, Any]
) -> None:
    response = client.post("/api/connections", json=connection_body(**change), headers=ADMIN)
    body = assert_problem(response, 400)
    assert body["type"].endswith("secret-not-accepted")
    assert "s3cr3t-value-xyz" not in response.text
    assert _count(client) == 0


def test_loopback_allowed_only_by_setting(make_client: Callable[..., TestClient]) -> None:
    client = make_client(ALLOW_LOOPBACK_SALES="true")
    created = create_connection(client, serverAddress="https://127.0.0.1:8443/")
    assert created["serverAddress"] == "https://127.0.0.1:8443"


def test_unknown_and_malformed_ids_are_404(client: TestClient) -> None:
    assert_problem(client.get("/api/connections/" + "0" * 32, headers=ADMIN), 404)
    assert_problem(client.get("/api/connections/not-an-id", headers=ADMIN), 404)
    assert_problem(client.patch("/api/connections/x'y", json={}, headers=ADMIN), 404)
    assert_problem(client.delete("/api/connections/" + "f" * 32, headers=ADMIN), 404)


def test_patch_merges_validates_and_audits(client: TestClient) -> None:
    created = create_connection(client)
    url = f"/api/connections/{created['id']}"
    response = client.patch(
        url,
        json={"displayName": "Renamed", "credential": {"tenantId": "contoso.onmicrosoft.com"}},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["displayName"] == "Renamed"
    assert body["credential"]["tenantId"] == "contoso.onmicrosoft.com"
    assert body["credential"]["secretSetting"] == "SEGEXP_SECRET_CONTOSO"  # merged, kept
    assert body["createdAt"] == created["createdAt"]
    assert body["updatedAt"] >= created["updatedAt"]
    # changing the credential kind replaces the credential
    response = client.patch(url, json={"credential": {"kind": "managed-identity"}}, headers=ADMIN)
    assert response.json()["credential"] == {
        "kind": "managed-identity",
        "tenantId": None,
        "clientId": None,
        "secretSetting": None,
    }
    # the merged result is validated; nothing changes when it is invalid
    before = client.get(url, headers=ADMIN).json()
    bad = client.patch(url, json={"serverAddress": "https://evil.example.com"}, headers=ADMIN)
    assert_problem(bad, 422)
    bad = client.patch(url, json={"displayName": None}, headers=ADMIN)
    assert assert_problem(bad, 422)["errors"][0]["field"] == "displayName"
    bad = client.patch(url, json={"credential": {"clientSecret": "x"}}, headers=ADMIN)
    assert_problem(bad, 400)
    assert client.get(url, headers=ADMIN).json() == before


def test_patch_and_delete_honour_if_match(client: TestClient) -> None:
    created = client.post("/api/connections", json=connection_body(), headers=ADMIN)
    url, etag = created.headers["location"], created.headers["etag"]
    stale = client.patch(url, json={"displayName": "A"}, headers={**ADMIN, "If-Match": '"nope"'})
    assert_problem(stale, 412)
    fresh = client.patch(url, json={"displayName": "B"}, headers={**ADMIN, "If-Match": etag})
    assert fresh.status_code == 200
    new_etag = fresh.headers["etag"]
    assert new_etag != etag
    assert_problem(client.delete(url, headers={**ADMIN, "If-Match": etag}), 412)
    assert client.get(url, headers=ADMIN).json()["displayName"] == "B"
    assert client.delete(url, headers={**ADMIN, "If-Match": new_etag}).status_code == 204
    assert_problem(client.get(url, headers=ADMIN), 404)


def test_delete_is_409_naming_exports_unless_detach(client: TestClient) -> None:
    put_segment(client, "High value", ["C-1"])
    put_segment(client, "Lapsed", ["C-2"])
    connection = create_connection(client)
    export = create_export(client, connection["id"]).json()
    url = f"/api/connections/{connection['id']}"
    conflict = assert_problem(client.delete(url, headers=ADMIN), 409)
    assert conflict["exports"] == [{"id": export["id"], "displayName": "Spring promo"}]
    assert "Spring promo" in conflict["detail"]
    assert client.get(url, headers=ADMIN).status_code == 200
    assert client.delete(url + "?detach=true", headers=ADMIN).status_code == 204
    detached = client.get(f"/api/exports/{export['id']}", headers=ADMIN).json()
    assert detached["detached"] is True and detached["connectionId"] is None
    assert detached["segments"] == ["High value", "Lapsed"]  # keeps its configuration
    run = client.post(f"/api/exports/{export['id']}/runs", headers=ADMIN)
    assert assert_problem(run, 409)["type"].endswith("export-not-runnable")


def test_roles_on_connections(client: TestClient) -> None:
    data = seed(client)
    for headers in (CONTRIBUTOR, VIEWER):
        listed = client.get("/api/connections", headers=headers)
        assert listed.status_code == 200
        assert listed.json()["items"] == [
            {
                "id": data["shared"]["id"],
                "displayName": "Contoso Sales (prod)",
                "type": "dynamics365-sales",
            }
        ]
        one = f"/api/connections/{data['shared']['id']}"
        assert_problem(client.get(one, headers=headers), 403)
        assert_problem(client.patch(one, json={}, headers=headers), 403)
        assert_problem(client.delete(one, headers=headers), 403)
        assert_problem(client.post(one + "/test", headers=headers), 403)
        assert_problem(
            client.post("/api/connections", json=connection_body(), headers=headers), 403
        )
    admin_view = client.get("/api/connections", headers=ADMIN).json()["items"]
    assert {c["displayName"] for c in admin_view} == {
        "Contoso Sales (prod)",
        "Fabrikam (admins only)",
    }
    assert "serverAddress" in admin_view[0]
    assert_problem(client.get("/api/connections", headers=NO_ROLE), 403)
    assert_problem(client.get("/api/connections"), 401)


def test_connection_test_reports_each_check_against_a_failing_endpoint(
    make_client: Callable[..., TestClient],
) -> None:
    from tests.support import free_port

    dead = f"https://127.0.0.1:{free_port()}"  # nothing listens: every check fails, fast
    client = make_client(
        ALLOW_LOOPBACK_SALES="true",
        ENTRA_AUTHORITY_HOST=dead,
        SEGEXP_SECRET_CONTOSO="a-secret-that-must-not-leak",
        SALES_MAX_RETRIES="0",
    )
    created = create_connection(client, serverAddress=dead)
    response = client.post(f"/api/connections/{created['id']}/test", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is False
    assert [c["name"] for c in body["checks"]] == [
        "token",
        "who-am-i",
        "read-contacts",
        "list-privileges",
    ]
    assert body["checks"][0]["ok"] is False and body["checks"][0]["detail"]
    assert "a-secret-that-must-not-leak" not in response.text
