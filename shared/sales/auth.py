"""Token providers for Dataverse, and an httpx.Auth that puts the bearer token on each request.

Tokens are cached until shortly before they expire and shared by all threads of a client. A 401
from Dataverse invalidates exactly the token that was refused (``invalidate(token)``), so many
threads seeing the same 401 cause one refresh, not many. Providers build their real clients
(msal application, ManagedIdentityCredential) lazily on first use, never at import time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from shared.errors import AuthenticationError, TransientSalesError

# Hosts msal can validate itself (the public cloud and the sovereign clouds it knows). For any
# other host (a test token endpoint, a private authority) instance discovery would call the public
# discovery endpoint, which is both wrong and impossible offline, so it is switched off.
try:  # msal exposes the set in a module without a leading underscore; fall back if it moves
    from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS as _KNOWN_HOSTS
except ImportError:  # pragma: no cover - depends on the msal version
    _KNOWN_HOSTS = frozenset(
        {
            "login.microsoftonline.com",
            "login.microsoft.com",
            "login.windows.net",
            "sts.windows.net",
            "login.microsoftonline.us",
            "login.chinacloudapi.cn",
        }
    )


def instance_discovery_for(authority_host: str) -> bool | None:
    """None (msal's default: discover) for hosts Microsoft knows; False for any other host."""
    host = (urlsplit(authority_host).hostname or "").lower()
    return None if host in _KNOWN_HOSTS else False


def _pinned_session(ca_file: str) -> Any:
    """A requests session (msal's HTTP client) that trusts ``ca_file`` even when
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE are set (requests lets those override ``verify``)."""
    import requests

    class PinnedVerifySession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    session = PinnedVerifySession()
    session.verify = ca_file
    return session


class TokenProvider(Protocol):
    def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class CachedTokenProvider:
    """Caches one token; refreshes when within ``margin`` of expiry or after ``invalidate``."""

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],  # -> (token, seconds until it expires)
        *,
        clock: Callable[[], float] = time.monotonic,
        max_margin: float = 300.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._max_margin = max_margin
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                token, lifetime = self._fetch()
                # Refresh a little early: a tenth of the lifetime, at most five minutes.
                margin = min(self._max_margin, max(0.0, lifetime) / 10)
                self._token = token
                self._refresh_at = self._clock() + max(0.0, lifetime - margin)
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None


class MsalClientSecretProvider(CachedTokenProvider):
    """Client credentials through msal; the secret is read when the first token is needed."""

    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        secret: Callable[[], str],
        scope: str,
        verify: str | bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(self._acquire, clock=clock)
        self._authority = authority
        self._client_id = client_id
        self._secret = secret
        self._scope = scope
        self._verify = verify
        self._app: Any = None
        self._force = False

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None
                self._force = True  # msal would hand back the same cached token otherwise

    def _application(self) -> Any:
        if self._app is None:
            import msal  # lazy: keeps cold start light

            secret = self._secret()  # a missing setting is a ConfigurationError, said as such
            extra: dict[str, Any] = {"verify": self._verify}
            if isinstance(self._verify, str):
                extra = {"http_client": _pinned_session(self._verify)}
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=secret,
                    authority=self._authority,
                    instance_discovery=instance_discovery_for(self._authority),
                    **extra,
                )
            except ValueError as exc:  # msal refuses bad authorities / unknown tenants
                raise AuthenticationError(f"Entra ID authority refused: {exc}") from None
            except Exception as exc:  # requests' network errors during discovery
                raise TransientSalesError(
                    f"could not reach the Entra ID authority {self._authority}: "
                    f"{type(exc).__name__}"
                ) from None
        return self._app

    def _acquire(self) -> tuple[str, float]:
        app = self._application()
        if self._force:
            app.remove_tokens_for_client()
            self._force = False
        try:
            result = app.acquire_token_for_client(scopes=[self._scope])
        except Exception as exc:  # network trouble reaching the token endpoint
            raise TransientSalesError(
                f"could not reach the Entra ID token endpoint: {type(exc).__name__}"
            ) from None
        if not isinstance(result, dict) or "access_token" not in result:
            error = result.get("error", "unknown_error") if isinstance(result, dict) else "none"
            description = result.get("error_description", "") if isinstance(result, dict) else ""
            first_line = str(description).splitlines()[0] if description else ""
            raise AuthenticationError(
                f"Entra ID refused the app identity (client id {self._client_id}): "
                f"{error} {first_line}".strip()
            )
        return str(result["access_token"]), float(result.get("expires_in", 3600))


class ManagedIdentityProvider(CachedTokenProvider):
    """A token from the Function App's managed identity (system- or user-assigned)."""

    def __init__(
        self,
        *,
        scope: str,
        client_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(self._acquire, clock=clock)
        self._scope = scope
        self._client_id = client_id
        self._wall_clock = wall_clock
        self._credential: Any = None

    def _acquire(self) -> tuple[str, float]:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

        if self._credential is None:
            if self._client_id:
                self._credential = ManagedIdentityCredential(client_id=self._client_id)
            else:
                self._credential = ManagedIdentityCredential()
        try:
            access = self._credential.get_token(self._scope)
        except CredentialUnavailableError as exc:
            raise AuthenticationError(
                f"no managed identity is available to this app: {str(exc).splitlines()[0]}"
            ) from None
        except ClientAuthenticationError as exc:
            raise AuthenticationError(
                f"the managed identity could not get a token: {str(exc).splitlines()[0]}"
            ) from None
        return access.token, float(access.expires_on) - self._wall_clock()


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer`` from a provider. The client handles 401 itself (it refreshes
    once and re-sends through its throttle gate), so this flow sends each request once."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.provider.token()}"
        yield request


def token_of(request: httpx.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    return value[7:] if value.startswith("Bearer ") else None
