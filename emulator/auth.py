"""Entra-like token endpoint (client credentials only) and bearer-token validation.

Tokens are JWT-shaped (HS256 with a per-start key, so they look like real access tokens to anyone
who
decodes them) but validated by lookup, which lets ``expire_tokens()`` revoke them all at once.
Token lifetime is wall-clock seconds (not time-scaled): clients compare it with the real clock.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt


@dataclass(frozen=True)
class Principal:
    client_id: str
    user_id: str  # the application user's systemuserid
    expires_at: float


class TokenError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str):
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description
        self.claims: str | None = None  # a Conditional Access claims challenge (JSON)

    def body(self) -> dict[str, Any]:
        trace = str(uuid.uuid4())
        extra = {"claims": self.claims} if self.claims else {}
        return {
            **extra,
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace}",
            "error_codes": [self.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        }


class TokenService:
    def __init__(
        self,
        tenant_id: str,
        clients: dict[str, str],
        user_ids: dict[str, str],
        lifetime_seconds: int,
    ) -> None:
        self.tenant_id = tenant_id
        self.clients = dict(clients)
        self.user_ids = dict(user_ids)
        self.lifetime = lifetime_seconds
        self.base_url = ""  # set once the port is known
        self.authority_host = ""
        self._key = secrets.token_bytes(32)
        self._tokens: dict[str, Principal] = {}
        self._lock = threading.Lock()

    # -- discovery ------------------------------------------------------------------------------
    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        self._check_tenant(tenant)
        root = f"{self.authority_host}/{tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{self.authority_host}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.authority_host}/{self.tenant_id}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.authority_host}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
            "tenant_region_scope": "EU",
        }

    def _check_tenant(self, tenant: str) -> None:
        if tenant.lower() != self.tenant_id.lower():
            raise TokenError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")

    # -- token endpoint -------------------------------------------------------------------------
    def issue(
        self, tenant: str, form_body: bytes, basic_auth: tuple[str, str] | None
    ) -> dict[str, Any]:
        self._check_tenant(tenant)
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type (only client_credentials is "
                "emulated).",
            )
        client_id = form.get("client_id") or (basic_auth[0] if basic_auth else "")
        secret = form.get("client_secret") or (basic_auth[1] if basic_auth else "")
        if client_id not in self.clients:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'.",
            )
        if not secret or not secrets.compare_digest(secret, self.clients[client_id]):
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the "
                "client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
        scope = form.get("scope", "")
        # Microsoft's sample builds serviceUrl + "//.default"; Entra accepts both forms.
        if scope not in (f"{self.base_url}/.default", f"{self.base_url}//.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must "
                f"have a scope value with /.default suffixed to the resource identifier; the "
                f"emulated resource is {self.base_url}.",
            )
        now = time.time()
        expires_at = now + self.lifetime
        claims = {
            "aud": self.base_url,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(expires_at),
            "appid": client_id,
            "oid": self.user_ids[client_id],
            "sub": self.user_ids[client_id],
            "tid": self.tenant_id,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self._key, algorithm="HS256")
        with self._lock:
            self._tokens[token] = Principal(client_id, self.user_ids[client_id], expires_at)
        return {
            "token_type": "Bearer",
            "expires_in": self.lifetime,
            "ext_expires_in": self.lifetime,
            "access_token": token,
        }

    # -- validation -----------------------------------------------------------------------------
    def validate(self, authorization: str | None) -> Principal:
        """Principal for a valid bearer token; raises PermissionError(reason) otherwise."""
        if not authorization:
            raise PermissionError("Bearer token is missing.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PermissionError("Authorization header is not a Bearer token.")
        with self._lock:
            principal = self._tokens.get(token.strip())
        if principal is None:
            raise PermissionError("Bearer token is invalid.")
        if time.time() >= principal.expires_at:
            raise PermissionError("Bearer token has expired.")
        return principal

    def mint_user_token(self, client_id: str, user_id: str, scope: str) -> str:
        """A delegated access token: Dataverse calls made with it act as ``user_id``."""
        now = time.time()
        expires_at = now + self.lifetime
        claims = {
            "aud": self.base_url,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(expires_at),
            "appid": client_id,
            "oid": user_id,
            "sub": user_id,
            "scp": scope,
            "tid": self.tenant_id,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self._key, algorithm="HS256")
        with self._lock:
            self._tokens[token] = Principal(client_id, user_id, expires_at)
        return token

    def expire_user_tokens(self, user_id: str) -> int:
        """Expire the access tokens issued to one user (revocation drills)."""
        with self._lock:
            hits = [t for t, p in self._tokens.items() if p.user_id == user_id]
            for token in hits:
                p = self._tokens[token]
                self._tokens[token] = Principal(p.client_id, p.user_id, 0.0)
            return len(hits)

    def expire_tokens(self) -> int:
        """Make every issued token expired (tests of the 401-refresh path)."""
        with self._lock:
            for token, p in list(self._tokens.items()):
                self._tokens[token] = Principal(p.client_id, p.user_id, 0.0)
            return len(self._tokens)

    def challenge(self) -> str:
        return (
            f'Bearer authorization_uri="{self.authority_host}/{self.tenant_id}/oauth2/authorize", '
            f'resource_id="{self.base_url}"'
        )
