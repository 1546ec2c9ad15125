"""Token endpoint with the real msal library, and bearer-token enforcement on the Web API."""

from __future__ import annotations

import httpx
import msal
import pytest

from emulator import RunningEmulator
from tests.emulator.conftest import api_client, get_token


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override msal's verify=; the emulator's CA must win.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _msal_app(emu: RunningEmulator, secret: str | None = None, client_id: str | None = None):
    return msal.ConfidentialClientApplication(
        client_id or emu.client_id,
        client_credential=secret or emu.client_secret,
        authority=emu.authority,
        instance_discovery=False,
        verify=emu.ca_file,
    )


def test_msal_gets_a_token_that_the_web_api_accepts(emu: RunningEmulator) -> None:
    result = _msal_app(emu).acquire_token_for_client(scopes=[emu.scope])
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == emu.config.token_lifetime_seconds
    with api_client(emu, result["access_token"]) as c:
        r = c.get("WhoAmI")
    assert r.status_code == 200
    assert set(r.json()) >= {"UserId", "BusinessUnitId", "OrganizationId"}
    stats = emu.stats()
    assert stats["requests"]["token"] == {"200": 1}
    assert stats["requests"]["openid-configuration"]["200"] >= 1


def test_msal_wrong_secret_is_invalid_client(emu: RunningEmulator) -> None:
    result = _msal_app(emu, secret="not-the-secret").acquire_token_for_client(scopes=[emu.scope])
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]
    assert emu.stats()["requests"]["token"] == {"401": 1}


def test_msal_unknown_client_is_rejected(emu: RunningEmulator) -> None:
    app = _msal_app(emu, client_id="00000000-0000-0000-0000-00000000beef")
    result = app.acquire_token_for_client(scopes=[emu.scope])
    assert result["error"] == "unauthorized_client"
    assert "AADSTS700016" in result["error_description"]


def test_msal_wrong_scope_is_invalid_scope(emu: RunningEmulator) -> None:
    result = _msal_app(emu).acquire_token_for_client(
        scopes=["https://contoso.crm.dynamics.com/.default"]
    )
    assert result["error"] == "invalid_scope"


def test_token_endpoint_rejects_other_grants_and_tenants(emu: RunningEmulator) -> None:
    with httpx.Client(verify=emu.ssl_context()) as c:
        r = c.post(f"{emu.authority}/oauth2/v2.0/token", data={"grant_type": "password"})
        assert r.status_code == 400
        assert r.json()["error"] == "unsupported_grant_type"
        other = f"{emu.authority_host}/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token"
        r = c.post(other, data={"grant_type": "client_credentials"})
        assert r.status_code == 400


def test_extra_client_gets_its_own_identity(make_emulator) -> None:
    emu = make_emulator(extra_clients={"second-app": "second-secret"})
    token = get_token(emu, "second-app", "second-secret")
    with api_client(emu, token) as c, api_client(emu, get_token(emu)) as c1:
        assert c.get("WhoAmI").json()["UserId"] != c1.get("WhoAmI").json()["UserId"]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-token", "Basic dXNlcjpwYXNz"],
)
def test_missing_or_invalid_token_is_401_with_challenge(
    emu: RunningEmulator, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with api_client(emu, **headers) as c:
        r = c.get("WhoAmI")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert emu.tenant_id in r.headers["WWW-Authenticate"]
    assert set(r.json()["error"]) == {"code", "message"}


def test_expired_token_is_401_and_a_new_token_works(emu: RunningEmulator) -> None:
    token = get_token(emu)
    with api_client(emu, token) as c:
        assert c.get("WhoAmI").status_code == 200
        assert emu.expire_tokens() >= 1
        r = c.get("WhoAmI")
        assert r.status_code == 401
        assert "expired" in r.json()["error"]["message"]
    with api_client(emu, get_token(emu)) as c:
        assert c.get("WhoAmI").status_code == 200


def test_token_lifetime_expires_tokens(make_emulator) -> None:
    emu = make_emulator(token_lifetime_seconds=0)
    with api_client(emu, get_token(emu)) as c:
        assert c.get("WhoAmI").status_code == 401
