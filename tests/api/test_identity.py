"""Caller identity: Entra bearer tokens (local RSA keys, JWKS on loopback), EasyAuth headers
(trusted only with WEBSITE_AUTH_ENABLED), local-dev; 401 vs 403; highest role wins."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from shared.api.identity import (
    Caller,
    IdentityResolver,
    JwksCache,
    accepted_issuers,
    decode_client_principal,
    default_jwks_url,
    highest_role,
)
from shared.errors import ConfigurationError
from shared.models import Role
from shared.settings import Settings
from tests.api.helpers import (
    ADMIN,
    AUDIENCE,
    VIEWER,
    TokenIssuer,
    bearer,
    entra_env,
    principal_header,
)

OPENAPI = "/api/openapi.json"  # any role, no store involved


def test_highest_role_wins_and_unknown_roles_are_ignored() -> None:
    assert highest_role(["Viewer", "Admin", "Contributor"]) is Role.ADMIN
    assert highest_role(["Viewer", "Contributor"]) is Role.CONTRIBUTOR
    assert highest_role(["Exporter", "admin"]) is None  # case matters: app role values are exact
    assert Caller("x", Role.CONTRIBUTOR, "t").at_least(Role.VIEWER)
    assert not Caller("x", Role.VIEWER, "t").at_least(Role.CONTRIBUTOR)


def test_client_principal_roles_from_role_typ_and_roles_claims() -> None:
    header = principal_header("ada@contoso.test", "Viewer", role_typ="roles")
    caller = decode_client_principal(header["X-MS-CLIENT-PRINCIPAL"])
    assert (caller.name, caller.role) == ("ada@contoso.test", Role.VIEWER)
    header = principal_header("bob@contoso.test", "Viewer", "Admin")
    assert decode_client_principal(header["X-MS-CLIENT-PRINCIPAL"]).role is Role.ADMIN


def test_entra_token_with_role_is_accepted(
    make_client: Callable[..., TestClient], issuer: TokenIssuer
) -> None:
    client = make_client(**entra_env(issuer))
    response = client.get(OPENAPI, headers=bearer(issuer.token("Viewer")))
    assert response.status_code == 200
    assert response.json()["info"]["title"]


def test_entra_token_problems_are_401_with_www_authenticate(
    make_client: Callable[..., TestClient], issuer: TokenIssuer
) -> None:
    client = make_client(**entra_env(issuer))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = time.time()
    cases = {
        "missing": {},
        "not bearer": {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
        "garbage": bearer("not.a.token"),
        "expired": bearer(issuer.token("Admin", lifetime=-3600)),
        "not yet valid": bearer(issuer.token("Admin", not_before=now + 3600)),
        "wrong audience": bearer(issuer.token("Admin", audience="api://someone-else")),
        "wrong issuer": bearer(issuer.token("Admin", issuer="https://evil.example/v2.0")),
        "forged signature": bearer(issuer.token("Admin", key=other_key)),
        "hs256": bearer(issuer.token("Admin", algorithm="HS256", key="k" * 32)),
        "alg none": bearer(
            jwt.encode(
                {"aud": AUDIENCE, "roles": ["Admin"]}, None, algorithm="none", headers={"kid": "k1"}
            )
        ),
    }
    for label, headers in cases.items():
        response = client.get(OPENAPI, headers=headers)
        assert response.status_code == 401, label
        assert response.headers["content-type"] == "application/problem+json", label
        assert response.headers["www-authenticate"].startswith("Bearer"), label
        body = response.json()
        assert body["status"] == 401 and body["instance"] == OPENAPI, label


def test_entra_token_without_app_role_is_403(
    make_client: Callable[..., TestClient], issuer: TokenIssuer
) -> None:
    client = make_client(**entra_env(issuer))
    assert client.get(OPENAPI, headers=bearer(issuer.token())).status_code == 403
    assert client.get(OPENAPI, headers=bearer(issuer.token("Exporter"))).status_code == 403


def test_unknown_kid_refetches_once_then_uses_rotated_key(
    make_client: Callable[..., TestClient], issuer: TokenIssuer
) -> None:
    client = make_client(
        resolver_factory=lambda s: IdentityResolver(s, min_refetch=0), **entra_env(issuer)
    )
    assert client.get(OPENAPI, headers=bearer(issuer.token("Viewer"))).status_code == 200
    assert issuer.fetches == 1
    # cached: a second request does not fetch again
    assert client.get(OPENAPI, headers=bearer(issuer.token("Viewer"))).status_code == 200
    assert issuer.fetches == 1
    issuer.add_key("k2")  # the tenant rotates keys
    response = client.get(OPENAPI, headers=bearer(issuer.token("Viewer", kid="k2")))
    assert response.status_code == 200
    assert issuer.fetches == 2
    issuer.add_key("k3", publish=False)  # never published: one refetch, then 401
    response = client.get(OPENAPI, headers=bearer(issuer.token("Viewer", kid="k3")))
    assert response.status_code == 401
    assert issuer.fetches == 3


def test_unknown_kid_refetch_is_rate_limited(issuer: TokenIssuer) -> None:
    from shared.api.identity import default_fetch

    clock = [1000.0]
    cache = JwksCache(issuer.url, min_refetch=30, fetch=default_fetch, clock=lambda: clock[0])
    assert cache.key("k1") is not None and issuer.fetches == 1
    assert cache.key("made-up") is None and issuer.fetches == 1  # too soon to refetch
    clock[0] += 31
    assert cache.key("made-up") is None and issuer.fetches == 2
    clock[0] += 3600  # ttl expired: refreshed even for a known kid
    assert cache.key("k1") is not None and issuer.fetches == 3


def test_jwks_unreachable_is_503_not_500(make_client: Callable[..., TestClient]) -> None:
    from tests.support import free_port

    issuer = TokenIssuer()
    issuer.add_key("k1")
    issuer.url = f"http://127.0.0.1:{free_port()}/keys"  # nothing listens there
    client = make_client(**entra_env(issuer))
    response = client.get(OPENAPI, headers=bearer(issuer.token("Admin")))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


def test_easyauth_header_trusted_only_when_platform_auth_is_enabled(
    make_client: Callable[..., TestClient],
) -> None:
    enabled = make_client()
    assert enabled.get(OPENAPI, headers=VIEWER).status_code == 200
    disabled = make_client(WEBSITE_AUTH_ENABLED="false")
    response = disabled.get(OPENAPI, headers=ADMIN)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_easyauth_header_ignored_in_entra_mode(
    make_client: Callable[..., TestClient], issuer: TokenIssuer
) -> None:
    client = make_client(**entra_env(issuer))
    assert client.get(OPENAPI, headers=ADMIN).status_code == 401


def test_malformed_principal_header_is_401(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    for raw in ("%%%not-base64", "bm90IGpzb24=", "W10="):  # garbage, 'not json', '[]'
        response = client.get(OPENAPI, headers={"X-MS-CLIENT-PRINCIPAL": raw})
        assert response.status_code == 401, raw


def test_local_dev_mode_everyone_is_the_configured_user(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(AUTH_MODE="local-dev", LOCAL_DEV_ROLES="Viewer")
    assert client.get(OPENAPI).status_code == 200
    response = client.post("/api/runs")
    assert response.status_code == 403  # Viewer may not run all
    assert response.json()["type"].endswith("forbidden")


def test_health_is_anonymous_and_says_nothing_else(make_client: Callable[..., TestClient]) -> None:
    client = make_client(WEBSITE_AUTH_ENABLED="false")
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_default_key_url_and_issuer_follow_the_tenant() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "API_AUDIENCE": AUDIENCE,
            "ENTRA_TENANT_ID": "contoso.onmicrosoft.com",
        }
    )
    assert default_jwks_url(settings) == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/discovery/v2.0/keys"
    )
    assert accepted_issuers(settings) == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0",
        "https://sts.windows.net/contoso.onmicrosoft.com/",
    )
    keys_only = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "API_AUDIENCE": AUDIENCE,
            "JWKS_URL": "http://127.0.0.1:1/keys",
        }
    )
    with pytest.raises(ConfigurationError):
        accepted_issuers(keys_only)
