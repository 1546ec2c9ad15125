"""Delegated connections' sign-ins (who, when, status, the ENCRYPTED token cache), one row per
connection, with ETag concurrency: msal rotates the refresh token on use and every writer must
build on the latest cache."""

from __future__ import annotations

import dataclasses
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import NotFoundError
from shared.models import SignIn, SignInStatus
from shared.store import codec
from shared.store._boundary import translated
from shared.store.keys import encode_key, try_encode_key
from shared.store.limits import check_entity
from shared.store.tables import Tables, etag_of, match

SIGNINS = "signins"
_PK = "signin"


class SignInRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def get(self, connection_id: str) -> SignIn | None:
        key = try_encode_key(connection_id)
        if key is None:
            return None
        try:
            with translated(f"get sign-in of connection {connection_id!r}"):
                entity = self._tables.client(SIGNINS).get_entity(_PK, key)
        except NotFoundError:
            return None
        return SignIn(
            connection_id=entity["ConnectionId"],
            account=entity.get("Account") or "",
            signed_in_at=entity.get("SignedInAt") or "",
            status=SignInStatus(entity.get("Status") or SignInStatus.SIGNED_IN),
            reason=entity.get("Reason") or "",
            encrypted_cache=codec.get_json(entity, "Cache", ""),
            etag=etag_of(entity.metadata),
        )

    def put(self, signin: SignIn, if_match: str | None) -> SignIn:
        """if_match None: create (a row already there is a ConflictError); ``"*"``: replace
        whatever is there; an ETag: replace that version only (else PreconditionFailedError)."""
        entity: dict[str, Any] = {
            "PartitionKey": _PK,
            "RowKey": encode_key(signin.connection_id, "connection id"),
            "ConnectionId": signin.connection_id,
            "Account": signin.account,
            "SignedInAt": signin.signed_in_at,
            "Status": str(signin.status),
            "Reason": signin.reason,
        }
        codec.put_json(entity, "Cache", signin.encrypted_cache)
        check_entity(entity, f"sign-in of connection {signin.connection_id!r}")
        client = self._tables.client(SIGNINS)
        with translated(f"save sign-in of connection {signin.connection_id!r}"):
            if if_match is None:
                meta = client.create_entity(entity)
            elif if_match == "*":
                meta = client.upsert_entity(entity, mode=UpdateMode.REPLACE)
            else:
                meta = client.update_entity(entity, mode=UpdateMode.REPLACE, **match(if_match))
        return dataclasses.replace(signin, etag=etag_of(meta))

    def delete(self, connection_id: str) -> None:
        key = try_encode_key(connection_id)
        if key is None:
            return
        try:
            with translated(f"delete sign-in of connection {connection_id!r}"):
                self._tables.client(SIGNINS).delete_entity(_PK, key)
        except NotFoundError:
            return
