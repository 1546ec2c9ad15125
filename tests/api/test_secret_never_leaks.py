"""A known secret, put into the environment as a connection's secret setting, never appears in
any response (body or header), any table entity in Azurite, or any log line, whatever the
request: normal use, a connection test against a failing endpoint, bodies that try to post it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from fastapi.testclient import TestClient

from tests.api.helpers import ADMIN, CONTRIBUTOR, VIEWER, connection_body, put_segment
from tests.support import free_port

SECRET = "Zq8~s3cr3t.V4lue-For_Tests-9f1d"  # shaped like an Entra client secret
SETTING = "SEGEXP_SECRET_CONTOSO"


def _all_table_text(azurite: Any, prefix: str) -> str:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    parts = []
    for table in service.list_tables():
        if not table.name.startswith(prefix):
            continue
        client = service.get_table_client(table.name)
        parts.extend(repr(dict(entity)) for entity in client.list_entities())
    assert parts, "expected the API to have written entities"
    return "\n".join(parts)


def test_secret_never_leaks(
    make_client: Callable[..., TestClient],
    azurite: Any,
    table_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    dead = f"https://127.0.0.1:{free_port()}"
    client = make_client(
        **{SETTING: SECRET},
        ALLOW_LOOPBACK_SALES="true",
        ENTRA_AUTHORITY_HOST=dead,
        SALES_MAX_RETRIES="0",
    )
    responses = []

    def send(method: str, url: str, **kwargs: Any) -> Any:
        response = client.request(method, url, **kwargs)
        responses.append(response)
        return response

    cred = connection_body()["credential"]
    created = send(
        "POST", "/api/connections", json=connection_body(serverAddress=dead), headers=ADMIN
    )
    assert created.status_code == 201
    url = created.headers["location"]
    # attempts to post the secret itself, in every shape
    attempts = [
        connection_body(credential={**cred, "clientSecret": SECRET}),
        connection_body(credential={**cred, "secret": SECRET}),
        connection_body(credential={**cred, "secretSetting": SECRET}),
        connection_body(secret=SECRET),
        connection_body(credential={"kind": "client-secret", "password": SECRET}),
        connection_body(serverAddress=f"https://{SECRET}@contoso.crm.dynamics.com"),
        connection_body(serverAddress=f"https://contoso.crm.dynamics.com/?s={SECRET}"),
        connection_body(tenantId=SECRET),
    ]
    for body in attempts:
        assert send("POST", "/api/connections", json=body, headers=ADMIN).status_code in (400, 422)
    assert (
        send("PATCH", url, json={"credential": {"clientSecret": SECRET}}, headers=ADMIN).status_code
        == 400
    )
    assert (
        send(
            "PATCH", url, json={"credential": {"secretSetting": SECRET}}, headers=ADMIN
        ).status_code
        == 422
    )
    # the connection test against an endpoint that fails
    tested = send("POST", f"{url}/test", headers=ADMIN)
    assert tested.status_code == 200 and tested.json()["ok"] is False
    # everything a caller can read
    put_segment(client, "High value", ["C-1"])
    export = send(
        "POST",
        "/api/exports",
        json={"displayName": "E", "connectionId": created.json()["id"], "segments": ["High value"]},
        headers=CONTRIBUTOR,
    )
    assert export.status_code == 201
    send("POST", f"/api/exports/{export.json()['id']}/runs", headers=ADMIN)
    for headers in (ADMIN, CONTRIBUTOR, VIEWER):
        for path in ("/api/connections", url, "/api/exports", "/api/openapi.json", "/api/segments"):
            send("GET", path, headers=headers)
    send("GET", f"/api/exports/{export.json()['id']}/runs", headers=VIEWER)

    for response in responses:
        assert SECRET not in response.text, response.request.url
        assert all(SECRET not in value for value in response.headers.values())
    assert SECRET not in _all_table_text(azurite, table_prefix)
    assert caplog.records, "expected some log records to scan"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in (record.exc_text or "")
    assert SECRET not in caplog.text
    assert created.json()["credential"]["secretSetting"] == SETTING  # the name, never the value
