"""Who is calling, and with which role.

Three sources, chosen by ``settings.auth_mode`` (never mixed):
- ``entra``: an Entra ID bearer token, validated with PyJWT (RS256 only; signature against the
  tenant's JWKS, issuer, audience, exp/nbf); roles from the ``roles`` claim.
- ``easyauth``: App Service Authentication's ``X-MS-CLIENT-PRINCIPAL`` header, trusted only when
  the platform says the auth module is on (``WEBSITE_AUTH_ENABLED``); otherwise the header is
  forgeable and ignored.
- ``local-dev``: every caller is ``settings.local_dev_user`` with ``settings.local_dev_roles``
  (settings refuse this mode inside Azure).
The highest known role wins; unknown role names are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.models import Role
from shared.settings import AuthMode, Settings

log = logging.getLogger("shared.api.identity")

ROLE_RANK = {Role.VIEWER: 1, Role.CONTRIBUTOR: 2, Role.ADMIN: 3}
PRINCIPAL_HEADER = "x-ms-client-principal"
MAX_TOKEN_LENGTH = 16 * 1024


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: Role | None  # highest role held; None = authenticated but no app role
    source: str

    def at_least(self, role: Role) -> bool:
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class NotAuthenticated(Exception):
    """No usable identity; the message is safe to show (says what, never token contents)."""


class IdentityUnavailable(Exception):
    """The token could not be checked because the signing keys could not be fetched."""


def highest_role(names: Iterable[str]) -> Role | None:
    best: Role | None = None
    for name in names:
        try:
            role = Role(name)
        except ValueError:
            continue
        if best is None or ROLE_RANK[role] > ROLE_RANK[best]:
            best = role
    return best


# --- EasyAuth ----------------------------------------------------------------------------------


def easyauth_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get("WEBSITE_AUTH_ENABLED", "").strip().lower() in ("true", "1")


def decode_client_principal(raw: str) -> Caller:
    """Decode the base64 JSON principal App Service puts in ``X-MS-CLIENT-PRINCIPAL``."""
    try:
        text = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)
        principal = json.loads(text)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise NotAuthenticated("the client principal header is malformed") from None
    if not isinstance(principal, dict) or not isinstance(principal.get("claims", []), list):
        raise NotAuthenticated("the client principal header is malformed")
    by_type: dict[str, list[str]] = {}
    for claim in principal.get("claims", []):
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str):
            by_type.setdefault(claim["typ"], []).append(str(claim.get("val", "")))
    name_typ = principal.get("name_typ") or "name"
    role_typ = principal.get("role_typ") or "roles"
    names = (
        by_type.get(name_typ)
        or by_type.get("preferred_username")
        or by_type.get("http://schemas.microsoft.com/identity/claims/objectidentifier")
        or by_type.get("oid")
        or [""]
    )
    roles = by_type.get(role_typ, []) + (by_type.get("roles", []) if role_typ != "roles" else [])
    name = names[0].strip()
    if not name:
        raise NotAuthenticated("the client principal names no user")
    return Caller(name=name[:256], role=highest_role(roles), source="easyauth")


# --- Entra bearer tokens -----------------------------------------------------------------------


def default_fetch(url: str) -> Mapping[str, Any]:
    import httpx  # lazy: only entra mode needs it

    response = httpx.get(url, timeout=5.0, follow_redirects=False)
    response.raise_for_status()
    return response.json()


class JwksCache:
    """Signing keys by ``kid``, cached for ``ttl`` seconds. An unknown ``kid`` triggers one
    refetch (keys rotate), but not more often than ``min_refetch`` seconds, so tokens with made-up
    kids cannot turn every request into a key download."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 3600.0,
        min_refetch: float = 30.0,
        fetch: Callable[[str], Mapping[str, Any]] = default_fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refetch = min_refetch
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _load(self) -> None:
        from jwt import PyJWK  # lazy

        try:
            document = self._fetch(self.url)
        except Exception as exc:
            raise IdentityUnavailable(
                f"signing keys could not be fetched ({type(exc).__name__})"
            ) from None
        keys: dict[str, Any] = {}
        for entry in document.get("keys", []) if isinstance(document, Mapping) else []:
            if not isinstance(entry, Mapping) or entry.get("kty") != "RSA" or not entry.get("kid"):
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry["kid"])] = PyJWK.from_dict(dict(entry), algorithm="RS256").key
            except Exception:
                continue  # one bad key must not hide the others
        self.fetches += 1
        self._keys = keys
        self._fetched_at = self._clock()

    def key(self, kid: str) -> Any | None:
        with self._lock:
            now = self._clock()
            expired = self._fetched_at is None or now - self._fetched_at >= self.ttl
            rotated = (
                kid not in self._keys
                and self._fetched_at is not None
                and now - self._fetched_at >= self.min_refetch
            )
            if expired or rotated:
                self._load()
            return self._keys.get(kid)


class TokenValidator:
    def __init__(
        self, *, keys: JwksCache, issuers: Sequence[str], audience: str, leeway: float = 60.0
    ):
        self.keys = keys
        self.issuers = tuple(issuers)
        self.audience = audience
        self.leeway = leeway

    def validate(self, token: str) -> dict[str, Any]:
        import jwt  # lazy: PyJWT + cryptography cost import time

        if len(token) > MAX_TOKEN_LENGTH:
            raise NotAuthenticated("the bearer token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise NotAuthenticated("the bearer token is malformed") from None
        if header.get("alg") != "RS256":
            raise NotAuthenticated("the bearer token must be signed with RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise NotAuthenticated("the bearer token names no signing key")
        key = self.keys.key(kid)
        if key is None:
            raise NotAuthenticated("the bearer token is signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuers,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("the bearer token has expired") from None
        except jwt.ImmatureSignatureError:
            raise NotAuthenticated("the bearer token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise NotAuthenticated("the bearer token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise NotAuthenticated("the bearer token has the wrong issuer") from None
        except jwt.PyJWTError:
            raise NotAuthenticated("the bearer token is not valid") from None
        return claims


def caller_from_claims(claims: Mapping[str, Any]) -> Caller:
    name = ""
    for claim in ("preferred_username", "upn", "email", "unique_name", "oid", "sub", "azp"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            name = value.strip()
            break
    if not name:
        raise NotAuthenticated("the bearer token names no caller")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list):
        roles = []
    return Caller(name=name[:256], role=highest_role(str(r) for r in roles), source="entra")


def default_jwks_url(settings: Settings) -> str:
    if settings.jwks_url:
        return settings.jwks_url
    return f"{settings.entra_authority_host}/{settings.entra_tenant_id}/discovery/v2.0/keys"


# Entra's v1.0 access tokens are issued by the cloud's security token service, v2.0 tokens by
# the authority host itself (Microsoft Q&A "token issuers for the sovereign clouds": global and
# US Government v1 = https://sts.windows.net, China v1 = https://sts.chinacloudapi.cn and v2 =
# https://login.partner.microsoftonline.cn). Unknown hosts (a local emulator) issue v2 only.
_V1_ISSUER_HOSTS = {
    "login.microsoftonline.com": "https://sts.windows.net",
    "login.windows.net": "https://sts.windows.net",
    "login.microsoftonline.us": "https://sts.windows.net",
    "login.chinacloudapi.cn": "https://sts.chinacloudapi.cn",
    "login.partner.microsoftonline.cn": "https://sts.chinacloudapi.cn",
}
_V2_ISSUER_HOSTS = {
    "login.chinacloudapi.cn": "https://login.partner.microsoftonline.cn",
}


def accepted_issuers(settings: Settings) -> tuple[str, ...]:
    """The token issuers the API accepts: TOKEN_ISSUER exactly when set; otherwise the
    tenant's v2.0 issuer on ENTRA_AUTHORITY_HOST and its v1.0 issuer (the cloud's STS)."""
    if settings.token_issuer:
        return (settings.token_issuer,)
    tenant = settings.entra_tenant_id
    if not tenant:
        from shared.errors import ConfigurationError

        raise ConfigurationError("AUTH_MODE=entra needs TOKEN_ISSUER or ENTRA_TENANT_ID")
    authority = settings.entra_authority_host.rstrip("/")
    host = (urlsplit(authority).hostname or "").lower()
    issuers = [f"{authority}/{tenant}/v2.0"]
    if host in _V2_ISSUER_HOSTS:
        issuers.append(f"{_V2_ISSUER_HOSTS[host]}/{tenant}/v2.0")
    if host in _V1_ISSUER_HOSTS:
        issuers.append(f"{_V1_ISSUER_HOSTS[host]}/{tenant}/")
    return tuple(issuers)


class IdentityResolver:
    """Resolves the caller from request headers according to the settings' auth mode."""

    def __init__(
        self,
        settings: Settings,
        *,
        fetch: Callable[[str], Mapping[str, Any]] = default_fetch,
        min_refetch: float = 30.0,
    ) -> None:
        self.settings = settings
        self._validator: TokenValidator | None = None
        self._fetch = fetch
        self._min_refetch = min_refetch

    @property
    def validator(self) -> TokenValidator:
        if self._validator is None:
            self._validator = TokenValidator(
                keys=JwksCache(
                    default_jwks_url(self.settings),
                    fetch=self._fetch,
                    min_refetch=self._min_refetch,
                ),
                issuers=accepted_issuers(self.settings),
                audience=self.settings.api_audience or "",
            )
        return self._validator

    def resolve(self, headers: Mapping[str, str]) -> Caller:
        mode = self.settings.auth_mode
        if mode is AuthMode.LOCAL_DEV:
            return Caller(
                name=self.settings.local_dev_user,
                role=highest_role(self.settings.local_dev_roles),
                source="local-dev",
            )
        if mode is AuthMode.EASYAUTH:
            if not easyauth_enabled(self.settings.environ):
                raise NotAuthenticated("App Service Authentication is not enabled")
            raw = headers.get(PRINCIPAL_HEADER)
            if not raw:
                raise NotAuthenticated("sign in first")
            if len(raw) > 64 * 1024:
                raise NotAuthenticated("the client principal header is too long")
            return decode_client_principal(raw)
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("a bearer token is required")
        return caller_from_claims(self.validator.validate(token.strip()))
