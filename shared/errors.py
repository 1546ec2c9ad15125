"""One root error and its branches, so callers can decide: retry, stop, or skip one member.

Layers map foreign errors (httpx, azure-core) to these at their boundary.
"""

from __future__ import annotations


class SegmentExportError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(SegmentExportError):
    """A setting is missing or invalid; names the setting."""


# --- Sales (Dataverse) -----------------------------------------------------------------------


class SalesError(SegmentExportError):
    """A Dataverse call failed. Carries what support needs, never a token or secret."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body_excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.body_excerpt = body_excerpt

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request-id={self.request_id}")
        return " ".join(parts)


class TransientSalesError(SalesError):
    """Worth retrying later (throttling, 5xx, network) once in-call retries are exhausted."""


class SalesTimeoutError(TransientSalesError):
    """A write got no answer within SALES_TIMEOUT_SECONDS: its outcome is unknown (it may still
    land). Not retried in the call; the next slice re-reads the list and counts what landed."""


class FatalSalesError(SalesError):
    """Retrying will not help (bad credentials, missing privileges, bad request)."""


class SourceReadError(FatalSalesError):
    """Reading a segment source failed for a reason a person must fix; the message says what."""


class AuthenticationError(FatalSalesError):
    """Entra ID refused the app identity, or Dataverse refused its token."""


class SessionEndedError(AuthenticationError):
    """A delegated connection's signed-in session ended (refresh token revoked or expired, or a
    Conditional Access claims challenge): only signing in again helps."""

    MESSAGE = "the signed-in account's session ended: sign in again"

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.MESSAGE)
        self.detail = detail  # Entra's error code only (never a token)


class MemberRejectedError(SalesError):
    """Sales refused one member (e.g. a contact deleted after validation); skip it, go on."""

    def __init__(self, message: str, *, member_id: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.member_id = member_id


# --- Store (Table Storage) -------------------------------------------------------------------


class StoreError(SegmentExportError):
    """A Table/Queue Storage operation failed."""


class NotFoundError(StoreError):
    pass


class ConflictError(StoreError):
    pass


class PreconditionFailedError(StoreError):
    """The ETag given with If-Match no longer matches."""


class StoreLimitError(StoreError):
    """A Table Storage limit would be broken (key characters, property or entity size)."""


class StoreUnavailableError(StoreError):
    """Storage did not answer; transient."""


class StoreAccessDeniedError(StoreError):
    """Storage refused the connection's credential (bad or expired token, no data role, wrong
    key) or no token could be obtained; retrying does not help until configuration changes."""
