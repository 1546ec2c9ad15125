"""Delegated sign-in end to end: real msal (auth code + PKCE) against the emulator's authorize
and token endpoints, the encrypted per-connection cache in Azurite, rotation, and session end."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from emulator import EmulatorConfig, RunningEmulator, start_emulator
from shared.api.app import create_api
from shared.errors import SessionEndedError
from shared.models import SignInStatus
from shared.sales.delegated import DelegatedProvider
from shared.settings import Settings
from shared.store import open_store
from tests.api.helpers import ADMIN, VIEWER, base_env

REDIRECT = "http://localhost:7071/signin/callback"
USER, PASSWORD = "admin@contoso.test", "emulator-admin"


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    saved = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    with start_emulator(EmulatorConfig(contacts=50)) as emu:
        yield emu
    os.environ.update(saved)


def delegated_env(emu: RunningEmulator) -> dict[str, str]:
    return {
        "ALLOW_LOOPBACK_SALES": "true",
        "ENTRA_AUTHORITY_HOST": emu.authority_host,
        "SALES_CA_BUNDLE": emu.ca_file,
        "SEGEXP_SECRET_EMU_APP": emu.client_secret,
        "TOKEN_CACHE_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def connection_body(emu: RunningEmulator) -> dict[str, Any]:
    return {
        "displayName": "Signed-in Sales",
        "serverAddress": emu.base_url,
        "credential": {
            "kind": "delegated",
            "tenantId": emu.tenant_id,
            "clientId": emu.client_id,
            "secretSetting": "SEGEXP_SECRET_EMU_APP",
        },
        "contactIdField": "ContactId",
    }


def log_in(
    emu: RunningEmulator, authorize_url: str, user: str = USER, pw: str = PASSWORD
) -> dict[str, str]:
    """What a browser does on the emulator's login and consent pages; -> the callback's query."""
    with httpx.Client(verify=emu.ca_file) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200 and 'type="password"' in page.text
        form = dict(re.findall(r'name="(p_[^"]+)" value="([^"]*)"', page.text))
        form = {k: unescape(v) for k, v in form.items()}
        answer = browser.post(
            authorize_url.split("?")[0],
            data={**form, "username": user, "password": pw, "action": "signin"},
        )
        if answer.status_code == 200 and "Accept" in answer.text:  # consent, first time only
            hidden = {
                k: unescape(v)
                for k, v in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', answer.text)
            }
            answer = browser.post(authorize_url.split("?")[0], data={**hidden, "consent": "yes"})
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(REDIRECT)
        return dict(parse_qsl(urlsplit(location).query))


def sign_in(client: TestClient, emu: RunningEmulator, cid: str) -> dict[str, Any]:
    started = client.post(
        f"/api/connections/{cid}/sign-in", json={"redirectUri": REDIRECT}, headers=ADMIN
    )
    assert started.status_code == 200, started.text
    query = log_in(emu, started.json()["authorizeUrl"])
    done = client.post(
        f"/api/connections/{cid}/sign-in/complete",
        json={"flow": started.json()["flow"], "query": query},
        headers=ADMIN,
    )
    assert done.status_code == 200, done.text
    return done.json()


def test_sign_in_runs_as_the_user_rotates_and_ends(
    emulator: RunningEmulator, azurite: Any, table_prefix: str
) -> None:
    env = base_env(azurite, table_prefix, **delegated_env(emulator))
    settings = Settings.from_env(env)
    with TestClient(create_api(lambda: settings), raise_server_exceptions=False) as client:
        created = client.post("/api/connections", json=connection_body(emulator), headers=ADMIN)
        assert created.status_code == 201, created.text
        cid = created.json()["id"]
        assert created.json()["signIn"] is None

        connection = sign_in(client, emulator, cid)
        assert connection["signIn"]["account"] == USER
        assert connection["signIn"]["status"] == "signed-in"
        assert connection["signIn"]["signedInAt"]

        # The cache rests encrypted and no API answer carries it.
        store = open_store(settings)
        row = store.signins.get(cid)
        assert row is not None and row.encrypted_cache.startswith("v1.")
        assert (
            "refresh" not in row.encrypted_cache.lower()
            and "secret" not in row.encrypted_cache.lower()
        )
        for path in (f"/api/connections/{cid}", "/api/connections"):
            text = client.get(path, headers=ADMIN).text
            assert row.encrypted_cache[:40] not in text and "encrypted" not in text.lower()

        # Dataverse calls act as the signed-in user: the test's WhoAmI succeeds.
        tested = client.post(f"/api/connections/{cid}/test", headers=ADMIN)
        assert tested.json()["ok"] is True, tested.text

        # A run refreshes silently; the rotated refresh token is written back with the ETag.
        conn = store.connections.get(cid)
        provider = DelegatedProvider(conn, settings, store.signins)
        first = provider.token()
        grants = emulator.authorize.refresh_grants
        provider.invalidate(first)
        assert provider.token() != first
        assert emulator.authorize.refresh_grants == grants + 1
        rotated = store.signins.get(cid)
        assert rotated is not None and rotated.etag != row.etag
        assert rotated.encrypted_cache != row.encrypted_cache

        # A second process with the rotated cache refreshes again (the old token is gone).
        other = DelegatedProvider(conn, settings, store.signins)
        other._force = True
        assert other.token()

        # Revoke-all: the session has ended, the connection says so, a retry says the same.
        emulator.authorize.revoke_sessions(USER)
        provider.invalidate(provider.token())
        with pytest.raises(SessionEndedError, match="sign in again"):
            provider.token()
        shown = client.get(f"/api/connections/{cid}", headers=ADMIN).json()["signIn"]
        assert shown["status"] == SignInStatus.SIGN_IN_NEEDED.value
        assert "revoked" in shown["reason"]
        with pytest.raises(SessionEndedError):
            DelegatedProvider(conn, settings, store.signins).token()

        # Signing in again restores it; a claims challenge ends it the same way.
        assert sign_in(client, emulator, cid)["signIn"]["status"] == "signed-in"
        emulator.authorize.demand_claims(USER)
        try:
            fresh = DelegatedProvider(conn, settings, store.signins)
            fresh._force = True
            with pytest.raises(SessionEndedError):
                fresh.token()
            reason = client.get(f"/api/connections/{cid}", headers=ADMIN).json()["signIn"]["reason"]
            assert "claims challenge" in reason
        finally:
            emulator.authorize.demand_claims(USER, on=False)
        store.close()


def test_sign_in_refuses_bad_input(
    emulator: RunningEmulator, azurite: Any, table_prefix: str
) -> None:
    settings = Settings.from_env(base_env(azurite, table_prefix, **delegated_env(emulator)))
    with TestClient(create_api(lambda: settings), raise_server_exceptions=False) as client:
        cid = client.post("/api/connections", json=connection_body(emulator), headers=ADMIN).json()[
            "id"
        ]
        bad = client.post(
            f"/api/connections/{cid}/sign-in",
            json={"redirectUri": "http://evil.test/cb"},
            headers=ADMIN,
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "redirectUri"
        viewer = client.post(
            f"/api/connections/{cid}/sign-in", json={"redirectUri": REDIRECT}, headers=VIEWER
        )
        assert viewer.status_code == 403
        started = client.post(
            f"/api/connections/{cid}/sign-in", json={"redirectUri": REDIRECT}, headers=ADMIN
        ).json()
        query = log_in(emulator, started["authorizeUrl"])
        forged = client.post(
            f"/api/connections/{cid}/sign-in/complete",
            json={"flow": started["flow"][:-6] + "AAAAAA", "query": query},
            headers=ADMIN,
        )
        assert forged.status_code == 400 and forged.json()["type"].endswith("sign-in-failed")
        wrong_state = client.post(
            f"/api/connections/{cid}/sign-in/complete",
            json={"flow": started["flow"], "query": {**query, "state": "other"}},
            headers=ADMIN,
        )
        assert wrong_state.status_code == 400
        assert client.get(f"/api/connections/{cid}", headers=ADMIN).json()["signIn"] is None
