"""Delegated connections: a Sales user signs in (authorization code flow with PKCE through msal)
and runs act as that user with ``acquire_token_silent``.

The msal token cache is kept per connection, encrypted (tokencache.TokenCipher) in the sign-in
store, and written back with ETag concurrency whenever msal changes it (the refresh token is
replaced on each use). When the session has ended (refresh token revoked or expired, a Conditional
Access claims challenge) the connection is marked "sign-in needed" and SessionEndedError is raised.
No token, code or cache ever leaves this module in clear text; errors carry Entra's error code only.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.errors import (
    AuthenticationError,
    ConfigurationError,
    PreconditionFailedError,
    SessionEndedError,
    TransientSalesError,
)
from shared.models import Connection, SignIn, SignInStatus
from shared.sales.auth import CachedTokenProvider, _pinned_session, instance_discovery_for
from shared.sales.tokencache import DecryptError, TokenCipher, cache_purpose, flow_purpose
from shared.settings import Settings

FLOW_LIFETIME = 900.0  # seconds a started sign-in may take
# Entra answers that only a new interactive sign-in fixes (refresh token revoked, expired or
# needing MFA / Conditional Access). Anything else (5xx, temporarily_unavailable) is transient.
_SESSION_ENDED = {"invalid_grant", "interaction_required", "login_required", "consent_required"}
_ATTEMPTS = 3


class SignInStore(Protocol):
    def get(self, connection_id: str) -> SignIn | None: ...

    def put(self, signin: SignIn, if_match: str | None) -> SignIn: ...


class SignInError(Exception):
    """The sign-in could not be completed; the message is safe to show."""


def scope_for(connection: Connection) -> str:
    return f"{connection.server_address.rstrip('/')}/user_impersonation"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def msal_app(connection: Connection, settings: Settings, cache: Any = None) -> Any:
    """A ConfidentialClientApplication for the connection's app registration."""
    import msal  # lazy

    cred = connection.credential
    if not (cred.tenant_id and cred.client_id and cred.secret_setting):
        raise ConfigurationError(
            f"connection {connection.id} needs tenantId, clientId and secretSetting for sign-in"
        )
    authority = f"{settings.entra_authority_host.rstrip('/')}/{cred.tenant_id}"
    verify: str | bool = settings.sales_ca_bundle or True
    extra: dict[str, Any] = {"verify": verify}
    if isinstance(verify, str):
        extra = {"http_client": _pinned_session(verify)}
    try:
        return msal.ConfidentialClientApplication(
            cred.client_id,
            client_credential=settings.secret(cred.secret_setting),
            authority=authority,
            instance_discovery=instance_discovery_for(authority),
            token_cache=cache,
            **extra,
        )
    except ValueError as exc:
        raise AuthenticationError(f"Entra ID authority refused: {exc}") from None
    except ConfigurationError:
        raise
    except Exception as exc:
        raise TransientSalesError(
            f"could not reach the Entra ID authority {authority}: {type(exc).__name__}"
        ) from None


def start_sign_in(connection: Connection, settings: Settings, redirect_uri: str) -> tuple[str, str]:
    """-> (the authorize URL to send the browser to, the sealed flow to keep for the callback).
    msal adds PKCE (S256), state and nonce; the flow (with the code verifier) is encrypted."""
    cipher = TokenCipher(settings.token_cache_key)
    flow = msal_app(connection, settings).initiate_auth_code_flow(
        scopes=[scope_for(connection)], redirect_uri=redirect_uri, prompt="select_account"
    )
    sealed = cipher.encrypt(
        json.dumps({"flow": flow, "expires": time.time() + FLOW_LIFETIME}).encode(),
        flow_purpose(connection.id),
    )
    return str(flow["auth_uri"]), sealed


def complete_sign_in(
    connection: Connection, settings: Settings, sealed_flow: str, query: dict[str, str]
) -> SignIn:
    """Redeem the code (msal checks state, nonce and sends the PKCE verifier) and return the new
    sign-in with its encrypted cache (not saved: the caller saves it)."""
    import msal  # lazy

    cipher = TokenCipher(settings.token_cache_key)
    try:
        sealed = json.loads(cipher.decrypt(sealed_flow, flow_purpose(connection.id)))
    except (DecryptError, ValueError):
        raise SignInError("the sign-in was not started here, or for another connection") from None
    if not isinstance(sealed, dict) or float(sealed.get("expires", 0)) < time.time():
        raise SignInError("the sign-in took too long; start it again")
    cache = msal.SerializableTokenCache()
    app = msal_app(connection, settings, cache)
    try:
        result = app.acquire_token_by_auth_code_flow(
            sealed["flow"], query, scopes=[scope_for(connection)]
        )
    except ValueError:  # state mismatch or a replayed callback
        raise SignInError(
            "the sign-in answer does not match the sign-in that was started"
        ) from None
    except Exception as exc:
        raise TransientSalesError(
            f"could not reach the Entra ID token endpoint: {type(exc).__name__}"
        ) from None
    if "access_token" not in result:
        error = str(result.get("error", "unknown_error"))
        raise SignInError(f"Entra ID did not sign the account in ({error})")
    claims = result.get("id_token_claims") or {}
    account = str(claims.get("preferred_username") or claims.get("name") or claims.get("oid", ""))
    return SignIn(
        connection_id=connection.id,
        account=account[:256],
        signed_in_at=_now_iso(),
        status=SignInStatus.SIGNED_IN,
        encrypted_cache=cipher.encrypt(cache.serialize().encode(), cache_purpose(connection.id)),
    )


def mark_sign_in_needed(signins: SignInStore, connection_id: str, reason: str) -> None:
    """Set the status (keeps who/when; drops the cache, which can no longer be used)."""
    for _ in range(_ATTEMPTS):
        current = signins.get(connection_id)
        if current is None or current.status is SignInStatus.SIGN_IN_NEEDED:
            return
        try:
            signins.put(
                dataclasses.replace(
                    current, status=SignInStatus.SIGN_IN_NEEDED, reason=reason, encrypted_cache=""
                ),
                current.etag,
            )
            return
        except PreconditionFailedError:
            continue


class DelegatedProvider(CachedTokenProvider):
    """Tokens as the signed-in user: acquire_token_silent over the stored, encrypted cache."""

    def __init__(
        self,
        connection: Connection,
        settings: Settings,
        signins: SignInStore,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(self._acquire, clock=clock)
        self._connection = connection
        self._settings = settings
        self._signins = signins
        self._force = False

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None
                self._force = True  # msal would hand back the same cached token otherwise

    def _acquire(self) -> tuple[str, float]:
        import msal  # lazy

        cipher = TokenCipher(self._settings.token_cache_key)
        cid = self._connection.id
        for _ in range(_ATTEMPTS):
            signin = self._signins.get(cid)
            if signin is None or signin.status is SignInStatus.SIGN_IN_NEEDED:
                raise SessionEndedError("not signed in")
            cache = msal.SerializableTokenCache()
            try:
                cache.deserialize(cipher.decrypt(signin.encrypted_cache, cache_purpose(cid)))
            except DecryptError:
                mark_sign_in_needed(self._signins, cid, "the stored sign-in cannot be decrypted")
                raise SessionEndedError("undecryptable cache") from None
            app = msal_app(self._connection, self._settings, cache)
            accounts = app.get_accounts()
            try:
                result = (
                    app.acquire_token_silent_with_error(
                        [scope_for(self._connection)],
                        account=accounts[0],
                        force_refresh=self._force,
                    )
                    if accounts
                    else None
                )
            except Exception as exc:  # network trouble reaching the token endpoint
                raise TransientSalesError(
                    f"could not reach the Entra ID token endpoint: {type(exc).__name__}"
                ) from None
            if result and "access_token" in result:
                self._force = False
                if cache.has_state_changed:  # the refresh token rotated: keep the new one
                    self._save(
                        signin, cipher.encrypt(cache.serialize().encode(), cache_purpose(cid))
                    )
                return str(result["access_token"]), float(result.get("expires_in", 3600))
            error = str(result.get("error", "")) if result else "no_refresh_token"
            if error and error not in _SESSION_ENDED and error != "no_refresh_token":
                raise TransientSalesError(f"Entra ID could not refresh the sign-in ({error})")
            latest = self._signins.get(cid)
            if latest is not None and latest.etag != signin.etag:
                continue  # another process rotated the token meanwhile: use its cache
            reason = "Entra ID asks the user to sign in again"
            if result and result.get("claims"):
                reason += " (Conditional Access claims challenge)"
            elif error == "invalid_grant":
                reason += " (the session was revoked or expired)"
            mark_sign_in_needed(self._signins, cid, reason)
            raise SessionEndedError(error)
        raise TransientSalesError("the sign-in kept changing while refreshing; try again")

    def _save(self, read: SignIn, encrypted: str) -> None:
        update = dataclasses.replace(read, encrypted_cache=encrypted)
        for _ in range(_ATTEMPTS):
            try:
                self._signins.put(update, update.etag)
                return
            except PreconditionFailedError:
                latest = self._signins.get(read.connection_id)
                # Someone signed in anew (or marked the session ended): theirs wins.
                if latest is None or latest.signed_in_at != read.signed_in_at:
                    return
                if latest.status is not SignInStatus.SIGNED_IN:
                    return
                update = dataclasses.replace(latest, encrypted_cache=encrypted)
