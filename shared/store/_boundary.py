"""Map azure-core / transport errors to shared.errors at the store boundary.

Messages carry the operation and the service error code, never a connection string or key.
"""

from __future__ import annotations

import http.client
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import (
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    StoreAccessDeniedError,
    StoreError,
    StoreLimitError,
    StoreUnavailableError,
)


class _Forgetful(Protocol):
    def forget(self) -> None: ...


# Holders of "this table/queue exists" caches; told to forget when storage says it does not
# (deleted, or an in-memory Azurite restarted), so the next call creates it again.
_CACHES: weakref.WeakSet[_Forgetful] = weakref.WeakSet()
_MISSING_CODES = {"TableNotFound", "QueueNotFound"}


def register_cache(cache: _Forgetful) -> None:
    _CACHES.add(cache)


_LIMIT_CODES = {
    "PropertyValueTooLarge",
    "EntityTooLarge",
    "RequestBodyTooLarge",
    "KeyValueTooLarge",
}


def _code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None) or ""
    return str(getattr(code, "value", code))  # the tables SDK gives a TableErrorCode enum


def map_error(error: BaseException, what: str) -> StoreError:
    """The shared.errors equivalent of a foreign error (the caller raises it `from error`)."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, HttpResponseError) and _code(error) in _MISSING_CODES:
        for cache in list(_CACHES):
            cache.forget()
        return StoreUnavailableError(
            f"{what}: the table or queue does not exist (deleted, or storage was reset); "
            "it is created again on the next call"
        )
    if isinstance(error, ClientAuthenticationError) and not error.status_code:
        # raised by the token credential before any request (no identity, bad client id)
        return StoreAccessDeniedError(
            f"{what}: no storage token could be obtained ({type(error).__name__}); check the "
            "connection's __credential and __clientId settings and that the identity exists"
        )
    if isinstance(error, HttpResponseError) and error.status_code in (401, 403):
        return StoreAccessDeniedError(
            f"{what}: storage refused the credential (HTTP {error.status_code} "
            f"{_code(error) or 'AuthenticationFailed'}); check the connection setting's key or "
            "identity (__credential, __clientId) and its data role on the account"
        )
    if isinstance(error, ResourceNotFoundError):
        return NotFoundError(f"{what}: not found")
    if isinstance(error, ResourceExistsError):
        return ConflictError(f"{what}: already exists")
    if isinstance(error, ResourceModifiedError):
        return PreconditionFailedError(f"{what}: changed since it was read (ETag mismatch)")
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        code = _code(error)
        if status == 412:
            return PreconditionFailedError(f"{what}: changed since it was read (ETag mismatch)")
        if code in ("TableBeingDeleted", "QueueBeingDeleted"):
            return StoreUnavailableError(f"{what}: storage is still deleting it; try later")
        if status == 409:
            return ConflictError(f"{what}: already exists ({code or 'conflict'})")
        if status == 404:
            return NotFoundError(f"{what}: not found ({code or 'not found'})")
        if code in _LIMIT_CODES or status == 413:
            return StoreLimitError(f"{what}: Table Storage limit exceeded ({code or status})")
        if status in (408, 429) or status >= 500:
            return StoreUnavailableError(f"{what}: storage unavailable (HTTP {status} {code})")
        return StoreError(f"{what}: storage refused the request (HTTP {status} {code})")
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return StoreUnavailableError(f"{what}: storage unreachable ({type(error).__name__})")
    if isinstance(error, ConnectionError | http.client.HTTPException | TimeoutError):
        # http.client.BadStatusLine is what Azurite's malformed >100-op batch reply produces.
        return StoreUnavailableError(f"{what}: storage connection failed ({type(error).__name__})")
    return StoreError(f"{what}: {type(error).__name__}")


_FOREIGN = (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
    ConnectionError,
    http.client.HTTPException,
    TimeoutError,
)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a block of SDK calls; re-raise anything foreign as a shared.errors StoreError."""
    try:
        yield
    except StoreError:
        raise
    except _FOREIGN as error:
        raise map_error(error, what) from error
