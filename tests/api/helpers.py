"""Helpers for API tests: EasyAuth principals, locally minted Entra tokens, settings."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "api://segment-export-tests"
ISSUER = "https://login.example.test/tenant-under-test/v2.0"
ROLE_CLAIM = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"


def principal_header(name: str, *roles: str, role_typ: str = ROLE_CLAIM) -> dict[str, str]:
    """The X-MS-CLIENT-PRINCIPAL header App Service would send for this user."""
    claims = [{"typ": "name", "val": name}] + [{"typ": role_typ, "val": r} for r in roles]
    doc = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": role_typ}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(doc).encode()).decode()}


ADMIN = principal_header("ada@contoso.test", "Admin")
CONTRIBUTOR = principal_header("carl@contoso.test", "Contributor")
VIEWER = principal_header("vera@contoso.test", "Viewer")
NO_ROLE = principal_header("nora@contoso.test")


def base_env(azurite: Any, table_prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": table_prefix,
        "RUN_QUEUE_NAME": f"{table_prefix}-runs",
        "IMPORT_QUEUE_NAME": f"{table_prefix}-imports",
        "AUTH_MODE": "easyauth",
        "WEBSITE_AUTH_ENABLED": "true",
        "ALLOW_LOOPBACK_SALES": "false",
    }
    env.update(extra)
    return env


# --- Entra tokens ------------------------------------------------------------------------------


@dataclass
class TokenIssuer:
    """A local 'tenant': RSA keys, a JWKS endpoint on loopback, and a token minter."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    published: list[str] = field(default_factory=list)  # kids served in the JWKS
    fetches: int = 0

    def add_key(self, kid: str, *, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            jwk.update(kid=kid, use="sig", alg="RS256")
            keys.append(jwk)
        return {"keys": keys}

    def token(
        self,
        *roles: str,
        kid: str = "k1",
        sub: str = "user-1",
        name: str = "ada@contoso.test",
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
        lifetime: float = 600,
        not_before: float | None = None,
        algorithm: str = "RS256",
        key: Any = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "aud": audience,
            "iss": issuer,
            "sub": sub,
            "preferred_username": name,
            "iat": now,
            "exp": now + int(lifetime),
            **claims,
        }
        if roles:
            payload["roles"] = list(roles)
        if not_before is not None:
            payload["nbf"] = int(not_before)
        signing_key = key if key is not None else self.keys[kid]
        return jwt.encode(payload, signing_key, algorithm=algorithm, headers={"kid": kid})


def entra_env(issuer: TokenIssuer) -> dict[str, str]:
    return {
        "AUTH_MODE": "entra",
        "API_AUDIENCE": AUDIENCE,
        "JWKS_URL": issuer.url,
        "TOKEN_ISSUER": ISSUER,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- request bodies and seeding through the API ------------------------------------------------

TENANT = "8e0c6b1a-2f7d-4c1e-9a55-0f3b2c1d4e5f"
CLIENT_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def connection_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "displayName": "Contoso Sales (prod)",
        "type": "dynamics365-sales",
        "usableBy": "administrators-and-contributors",
        "serverAddress": "https://contoso.crm.dynamics.com",
        "credential": {
            "kind": "client-secret",
            "tenantId": TENANT,
            "clientId": CLIENT_ID,
            "secretSetting": "SEGEXP_SECRET_CONTOSO",
        },
        "contactIdField": "ContactId",
    }
    body.update(overrides)
    return body


def create_connection(client: Any, **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/connections", json=connection_body(**overrides), headers=ADMIN)
    assert response.status_code == 201, response.text
    return dict(response.json())


def put_segment(client: Any, name: str, members: list[str]) -> None:
    response = client.put(f"/api/segments/{name}", json=members, headers=ADMIN)
    assert response.status_code in (200, 201), response.text


def export_body(connection_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "displayName": "Spring promo",
        "connectionId": connection_id,
        "segments": ["High value", "Lapsed"],
        "mode": "mirror",
        "enabled": True,
        "listName": "{segment}",
    }
    body.update(overrides)
    return body


def create_export(client: Any, connection_id: str, headers: Any = None, **overrides: Any) -> Any:
    response = client.post(
        "/api/exports", json=export_body(connection_id, **overrides), headers=headers or ADMIN
    )
    assert response.status_code == 201, response.text
    return response


def seed(client: Any) -> dict[str, Any]:
    """Two segments, a contributor-usable and an admin-only connection, an export on each."""
    put_segment(client, "High value", ["C-1", "C-2", "C-3"])
    put_segment(client, "Lapsed", ["C-4"])
    shared = create_connection(client)
    private = create_connection(
        client, displayName="Fabrikam (admins only)", usableBy="administrators"
    )
    open_export = create_export(client, shared["id"]).json()
    private_export = create_export(
        client,
        private["id"],
        displayName="Admin-only export",
        segments=["Lapsed"],
        listName="Admin {segment}",  # both connections reach the same environment
    ).json()
    return {
        "shared": shared,
        "private": private,
        "open_export": open_export,
        "private_export": private_export,
    }
