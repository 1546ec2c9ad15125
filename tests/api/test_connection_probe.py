"""POST /api/connections/{id}/test against the local Dataverse emulator over real HTTPS and real
msal: every check passes with the right secret; with a wrong one the token check fails, the
report says so, and the secret appears nowhere in the answer or the logs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import ADMIN, create_connection

SETTING = "SEGEXP_SECRET_CONTOSO"


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from emulator import EmulatorConfig, start_emulator

    with start_emulator(EmulatorConfig(contacts=200, seed=3, time_scale=0.01)) as running:
        yield running


def _client(make_client: Callable[..., TestClient], emu: Any, secret: str) -> TestClient:
    return make_client(
        ALLOW_LOOPBACK_SALES="true",
        ENTRA_AUTHORITY_HOST=emu.authority_host,
        SALES_CA_BUNDLE=emu.ca_file,
        SALES_MAX_RETRIES="1",
        **{SETTING: secret},
    )


def _connection(client: TestClient, emu: Any) -> str:
    created = create_connection(
        client,
        serverAddress=emu.base_url,
        credential={
            "kind": "client-secret",
            "tenantId": emu.tenant_id,
            "clientId": emu.client_id,
            "secretSetting": SETTING,
        },
    )
    return str(created["id"])


def test_all_checks_pass_with_the_right_identity(
    make_client: Callable[..., TestClient], emu: Any
) -> None:
    client = _client(make_client, emu, emu.client_secret)
    response = client.post(f"/api/connections/{_connection(client, emu)}/test", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(c["name"], c["ok"]) for c in body["checks"]] == [
        ("token", True),
        ("who-am-i", True),
        ("read-contacts", True),
        ("list-privileges", True),
    ]
    assert body["ok"] is True
    assert emu.client_secret not in response.text


def test_wrong_secret_fails_the_token_check_without_leaking_it(
    make_client: Callable[..., TestClient], emu: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng~secret.value-7c2e-for_tests"
    client = _client(make_client, emu, wrong)
    response = client.post(f"/api/connections/{_connection(client, emu)}/test", headers=ADMIN)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    token = body["checks"][0]
    assert token["name"] == "token" and token["ok"] is False and token["detail"]
    assert all(not c["ok"] for c in body["checks"][1:])
    assert wrong not in response.text
    assert wrong not in caplog.text
