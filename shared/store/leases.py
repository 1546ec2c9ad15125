"""Export leases: expiring, ETag-guarded ownership of an export while a run slice works on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from azure.data.tables import UpdateMode

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError
from shared.store._boundary import translated
from shared.store.keys import encode_key, try_encode_key
from shared.store.tables import Tables, etag_of, match

LEASES = "leases"
_PK = "lease"
_RENEW_ATTEMPTS = 3  # a renewal whose answer was lost, then a retry against the stored ETag


@dataclass(frozen=True, slots=True)
class Lease:
    export_id: str
    holder: str
    expires_at: float  # seconds since the epoch (wall clock of the Store's clock)
    etag: str
    seconds: float  # the lease length; renew() extends by this much from now by default


class LeaseRepository:
    def __init__(self, tables: Tables, clock: Callable[[], float] = time.time) -> None:
        self._tables = tables
        self._clock = clock

    def _entity(self, export_id: str, holder: str, seconds: float) -> dict[str, object]:
        if seconds <= 0:
            raise ValueError("lease seconds must be positive")
        return {
            "PartitionKey": _PK,
            "RowKey": encode_key(export_id, "export id"),
            "ExportId": export_id,
            "Holder": holder,
            "ExpiresAt": float(self._clock() + seconds),
            "Seconds": float(seconds),
        }

    def acquire(self, export_id: str, holder: str, seconds: float) -> Lease | None:
        """The lease if it was free, expired or already ours; None while someone else holds it."""
        entity = self._entity(export_id, holder, seconds)
        client = self._tables.client(LEASES)
        what = f"lease of export {export_id!r}"
        try:
            with translated(what):
                meta = client.create_entity(entity)
            return self._lease(entity, etag_of(meta))
        except ConflictError:
            pass
        try:
            with translated(what):
                current = client.get_entity(_PK, str(entity["RowKey"]))
        except NotFoundError:
            return self._retry_create(entity)
        if current["Holder"] != holder and float(current["ExpiresAt"]) > self._clock():
            return None
        try:  # free (expired) or ours: take it over, but only if nobody else did meanwhile
            with translated(what):
                meta = client.update_entity(
                    entity, mode=UpdateMode.REPLACE, **match(etag_of(current.metadata))
                )
        except (PreconditionFailedError, NotFoundError):
            return None
        return self._lease(entity, etag_of(meta))

    def _retry_create(self, entity: dict[str, object]) -> Lease | None:
        try:
            with translated(f"lease of export {entity['ExportId']!r}"):
                meta = self._tables.client(LEASES).create_entity(entity)
        except ConflictError:
            return None
        return self._lease(entity, etag_of(meta))

    @staticmethod
    def _lease(entity: dict[str, object], etag: str | None) -> Lease:
        assert etag is not None
        return Lease(
            export_id=str(entity["ExportId"]),
            holder=str(entity["Holder"]),
            expires_at=float(entity["ExpiresAt"]),  # type: ignore[arg-type]
            etag=etag,
            seconds=float(entity.get("Seconds") or 0.0),  # type: ignore[arg-type]
        )

    def renew(self, lease: Lease, seconds: float | None = None) -> Lease:
        """Extend the lease to `seconds` (default: the lease's length) from now.

        Raises ConflictError if the lease was lost (taken over after expiry, or released)."""
        if seconds is None:
            seconds = lease.seconds
        etag = lease.etag
        what = f"renew lease of export {lease.export_id!r}"
        for _ in range(_RENEW_ATTEMPTS):
            entity = self._entity(lease.export_id, lease.holder, seconds)
            try:
                with translated(what):
                    meta = self._tables.client(LEASES).update_entity(
                        entity, mode=UpdateMode.REPLACE, **match(etag)
                    )
                return self._lease(entity, etag_of(meta))
            except PreconditionFailedError:
                # A 412 does not by itself mean the lease is gone: a renewal that storage
                # applied but whose answer was lost (connection reset, storage restart) comes
                # back as 412 when the client retries it with the old ETag. The stored holder
                # decides: holders are unique per slice, so a record still naming ours is ours.
                stored = self.get(lease.export_id)
                if stored is None or stored.holder != lease.holder:
                    break
                etag = stored.etag
            except NotFoundError:
                break
        raise ConflictError(f"lease of export {lease.export_id!r} was lost by {lease.holder!r}")

    def release(self, lease: Lease) -> None:
        """Give the lease up; a no-op if it is already gone or someone else holds it now."""
        key = try_encode_key(lease.export_id)
        if key is None:
            return
        try:
            with translated(f"release lease of export {lease.export_id!r}"):
                self._tables.client(LEASES).delete_entity(_PK, key, **match(lease.etag))
        except PreconditionFailedError:
            pass

    def get(self, export_id: str) -> Lease | None:
        """The current lease record (possibly expired), or None."""
        key = try_encode_key(export_id)
        if key is None:
            return None
        try:
            with translated(f"get lease of export {export_id!r}"):
                entity = self._tables.client(LEASES).get_entity(_PK, key)
        except NotFoundError:
            return None
        return self._lease(dict(entity), etag_of(entity.metadata))
