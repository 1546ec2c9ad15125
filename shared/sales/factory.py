"""Build a SalesClient for a stored connection.

Per worker process (never at import time) we keep, keyed by environment and app identity:
the token provider (so slices reuse a cached token), the throttle gate (service protection is
per user, so every client for the same identity waits on the same Retry-After), and the last
x-ms-dop-hint seen (so a refresh does not spend a WhoAmI on every slice).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from shared.errors import ConfigurationError
from shared.models import Connection, CredentialKind
from shared.sales.auth import ManagedIdentityProvider, MsalClientSecretProvider, TokenProvider
from shared.sales.client import Gate, RetryPolicy, SalesClient, ThrottleGate
from shared.sales.delegated import DelegatedProvider, SignInStore
from shared.secrets_rule import secret_setting_problem
from shared.settings import Settings

DOP_HINT_TTL = 900.0  # seconds a remembered x-ms-dop-hint stays trusted

_lock = threading.Lock()
_providers: dict[tuple[str, ...], TokenProvider] = {}
_gates: dict[tuple[str, ...], ThrottleGate] = {}
_dop_hints: dict[str, tuple[int, float]] = {}


def _identity_key(connection: Connection, settings_key: tuple[str, ...]) -> tuple[str, ...]:
    cred = connection.credential
    # A delegated connection acts as its own signed-in user: its own tokens and its own limits.
    user = connection.id if cred.kind is CredentialKind.DELEGATED else ""
    return (
        connection.server_address.rstrip("/").lower(),
        cred.kind.value,
        cred.tenant_id or "",
        cred.client_id or "",
        user,
        *settings_key,
    )


def identity_key(connection: Connection) -> str:
    """A stable, opaque name for (environment, app identity): whose throttling budget a request
    spends. A hash, so it can be a storage key and shows no tenant or client id."""
    raw = "\n".join(_identity_key(connection, ()))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:40]


def _default_signins(settings: Settings) -> SignInStore:
    from shared.store import open_store  # lazy: only delegated connections need the store here

    return open_store(settings).signins  # type: ignore[no-any-return]


def build_token_provider(
    connection: Connection, settings: Settings, signins: SignInStore | None = None
) -> TokenProvider:
    """A fresh provider for the connection's credential (secret read when first needed)."""
    cred = connection.credential
    scope = f"{connection.server_address.rstrip('/')}/.default"
    if cred.kind is CredentialKind.DELEGATED:
        return DelegatedProvider(connection, settings, signins or _default_signins(settings))
    if cred.kind is CredentialKind.MANAGED_IDENTITY:
        return ManagedIdentityProvider(scope=scope, client_id=cred.client_id)
    if not (cred.tenant_id and cred.client_id and cred.secret_setting):
        raise ConfigurationError(
            f"connection {connection.id} needs tenantId, clientId and secretSetting for a "
            "client-secret credential"
        )
    setting = cred.secret_setting
    return MsalClientSecretProvider(
        authority=f"{settings.entra_authority_host.rstrip('/')}/{cred.tenant_id}",
        client_id=cred.client_id,
        secret=lambda: settings.secret(setting),
        scope=scope,
        verify=settings.sales_ca_bundle or True,
    )


def _shared_provider(
    connection: Connection, settings: Settings, signins: SignInStore | None = None
) -> TokenProvider:
    cred = connection.credential
    # The secret's setting name and value are part of the key (hashed, in memory only) so a
    # rotated secret gets a new msal application instead of a stale one, and two connections
    # of one app naming different settings (e.g. both missing) never share a provider that
    # reads the other's setting.
    secret_hash = ""
    if cred.kind in (CredentialKind.CLIENT_SECRET, CredentialKind.DELEGATED) and (
        cred.secret_setting and secret_setting_problem(cred.secret_setting) is None
    ):
        raw = settings.environ.get(cred.secret_setting, "")
        secret_hash = hashlib.sha256(f"{cred.secret_setting}\n{raw}".encode()).hexdigest()
    key = _identity_key(
        connection, (settings.entra_authority_host, settings.sales_ca_bundle or "", secret_hash)
    )
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = build_token_provider(connection, settings, signins)
            _providers[key] = provider
        return provider


def process_gate(connection: Connection) -> ThrottleGate:
    """This process's gate for the connection's identity (shared by its threads and slices)."""
    key = _identity_key(connection, ())
    with _lock:
        gate = _gates.get(key)
        if gate is None:
            gate = ThrottleGate()
            _gates[key] = gate
        return gate


def _remembered_dop(server: str) -> int | None:
    with _lock:
        entry = _dop_hints.get(server)
    if entry is None or time.monotonic() - entry[1] > DOP_HINT_TTL:
        return None
    return entry[0]


def expected_dop(connection: Connection, settings: Settings) -> int:
    """The requests a client for ``connection`` will keep in flight: the last x-ms-dop-hint
    this process saw for the environment (if recent), capped by our configured maximum."""
    hint = _remembered_dop(connection.server_address.rstrip("/").lower())
    limit = max(1, settings.sales_max_parallel)
    return max(1, min(limit, hint)) if hint else limit


def _remember_dop(server: str, hint: int | None) -> None:
    if hint:
        with _lock:
            _dop_hints[server] = (hint, time.monotonic())


def forget_process_state() -> None:
    """Drop cached providers, gates and hints (tests; secret rotation drills)."""
    with _lock:
        _providers.clear()
        _gates.clear()
        _dop_hints.clear()


@contextmanager
def open_sales_client(
    connection: Connection,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    gate: Gate | None = None,
    deadline: float | None = None,
    signins: SignInStore | None = None,
) -> Iterator[SalesClient]:
    """A SalesClient for ``connection``; closes its HTTP pool on exit. ``gate`` replaces this
    process's gate (the runs wire one shared by every process of the identity); ``deadline``
    (time.monotonic) bounds every wait of the client's requests."""
    server = connection.server_address.rstrip("/").lower()
    client = SalesClient(
        connection.server_address,
        _shared_provider(connection, settings, signins),
        verify=settings.sales_ca_bundle or True,
        max_parallel=settings.sales_max_parallel,
        page_size=settings.sales_page_size,
        timeout=settings.sales_timeout_seconds,
        retry=retry or RetryPolicy(max_retries=settings.sales_max_retries),
        gate=gate or process_gate(connection),
        transport=transport,
        dop_hint=_remembered_dop(server),
        deadline=deadline,
    )
    try:
        yield client
    finally:
        _remember_dop(server, client.dop_hint)
        client.close()
