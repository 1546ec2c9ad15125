"""Turn exceptions into short, actionable run errors, and decide which ones are worth a retry.

Messages name what to check (a setting, the server address) and never include a secret: they
are built from our own error objects, whose text carries status, code and request id only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from shared.errors import (
    AuthenticationError,
    ConfigurationError,
    FatalSalesError,
    SalesError,
    SalesTimeoutError,
    SessionEndedError,
    SourceReadError,
    StoreError,
    StoreUnavailableError,
    TransientSalesError,
)
from shared.models import Connection, CredentialKind

_MAX_DETAIL = 240


class RunFatalError(Exception):
    """A whole-run problem that retrying will not fix (export or connection gone, detached)."""


def is_retryable(exc: BaseException) -> bool:
    """Worth another attempt through the queue (the host redelivers the message)."""
    if isinstance(exc, RunFatalError | ConfigurationError | FatalSalesError):
        return False
    return not (isinstance(exc, StoreError) and not isinstance(exc, StoreUnavailableError))


def describe(exc: BaseException, connection: Connection | None) -> str:
    """A short message for run.error / segment.error."""
    if isinstance(exc, RunFatalError | ConfigurationError):
        return _short(str(exc))
    if isinstance(exc, SessionEndedError):
        return SessionEndedError.MESSAGE
    if isinstance(exc, AuthenticationError):
        if _unknown_resource(exc):
            return (
                f"Entra ID does not know {_host(connection)} as a Sales environment (invalid "
                "scope): check the connection's server address"
            )
        return _short(_credential_advice(connection) + f" ({exc})")
    if isinstance(exc, TransientSalesError) and "token endpoint" in str(exc):
        return _short(
            "could not reach the Entra ID token endpoint: check the ENTRA_AUTHORITY_HOST "
            f"setting and the network ({exc})"
        )
    if isinstance(exc, SalesTimeoutError):
        return _short(
            "Sales did not answer a write within SALES_TIMEOUT_SECONDS; what it applied is "
            f"counted when the run resumes (raise the setting if Sales is this slow): {exc}"
        )
    if isinstance(exc, SalesError) and _unreachable(exc):
        host = _host(connection)
        return f"could not reach {host}: check the connection's server address"
    if isinstance(exc, SourceReadError):  # already says what to fix
        return _short(str(exc))
    if isinstance(exc, FatalSalesError):
        return _short(f"Sales refused the request: {exc}")
    if isinstance(exc, TransientSalesError):
        return _short(f"Sales kept throttling or failing: {exc}")
    if isinstance(exc, StoreUnavailableError):
        return _short(f"storage did not answer: {exc}")
    if isinstance(exc, StoreError):
        return _short(f"storage refused an operation: {exc}")
    return f"unexpected error ({type(exc).__name__}); see the function logs"


def _credential_advice(connection: Connection | None) -> str:
    if connection is None:
        return "the connection's credential was refused"
    credential = connection.credential
    if credential.kind is CredentialKind.MANAGED_IDENTITY:
        return (
            "the managed identity was refused: check that it is enabled on the function app "
            "and is an application user in the Sales environment"
        )
    return (
        "the connection's credential was refused by Entra ID: check the tenant id, the client id "
        f"and the secret in app setting {credential.secret_setting}"
    )


def _unknown_resource(exc: SalesError) -> bool:
    """Entra refused the scope: the server address is not a resource it knows."""
    text = str(exc)
    return any(marker in text for marker in ("invalid_scope", "AADSTS500011", "AADSTS70011"))


def _unreachable(exc: SalesError) -> bool:
    """No HTTP answer at all: DNS, refused connection, TLS or connect timeout."""
    if exc.status is not None:
        return False
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 10:
        name = type(cause).__name__
        if name in ("ConnectError", "ConnectTimeout", "ConnectionRefusedError", "gaierror"):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    text = str(exc).lower()
    return any(word in text for word in ("connect", "unreachable", "resolve", "refused"))


def _host(connection: Connection | None) -> str:
    if connection is None:
        return "the Sales server"
    return urlsplit(connection.server_address).netloc or connection.server_address


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
