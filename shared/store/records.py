"""Connections, exports and per-export list state: small records with ETag concurrency."""

from __future__ import annotations

import dataclasses

from azure.data.tables import UpdateMode

from shared.errors import NotFoundError, PreconditionFailedError
from shared.models import Connection, Export, SegmentListState
from shared.store import codec
from shared.store._boundary import translated
from shared.store.keys import encode_key, try_encode_key
from shared.store.limits import check_entity
from shared.store.tables import Tables, delete_partition, etag_of, match

CONNECTIONS, EXPORTS, EXPORT_STATE = "connections", "exports", "exportstate"
_CONNECTION_PK = "connection"
_EXPORT_PK = "export"
_DETACH_ATTEMPTS = 5


class ConnectionRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def _entity(self, c: Connection) -> dict[str, object]:
        entity = {
            "PartitionKey": _CONNECTION_PK,
            "RowKey": encode_key(c.id, "connection id"),
            **codec.connection_props(c),
        }
        check_entity(entity, f"connection {c.id!r}")
        return entity

    def get(self, id: str) -> Connection:
        key = try_encode_key(id)
        if key is None:
            raise NotFoundError(f"connection {id!r}: not found")
        with translated(f"get connection {id!r}"):
            entity = self._tables.client(CONNECTIONS).get_entity(_CONNECTION_PK, key)
        return codec.connection_from(entity, etag_of(entity.metadata))

    def list(self) -> list[Connection]:
        with translated("list connections"):
            entities = list(
                self._tables.client(CONNECTIONS).query_entities(
                    "PartitionKey eq @pk", parameters={"pk": _CONNECTION_PK}
                )
            )
        return [codec.connection_from(e, etag_of(e.metadata)) for e in entities]

    def create(self, c: Connection) -> Connection:
        entity = self._entity(c)
        with translated(f"create connection {c.id!r}"):
            meta = self._tables.client(CONNECTIONS).create_entity(entity)
        return dataclasses.replace(c, etag=etag_of(meta))

    def update(self, c: Connection, if_match: str | None) -> Connection:
        entity = self._entity(c)
        with translated(f"update connection {c.id!r}"):
            meta = self._tables.client(CONNECTIONS).update_entity(
                entity, mode=UpdateMode.REPLACE, **match(if_match)
            )
        return dataclasses.replace(c, etag=etag_of(meta))

    def delete(self, id: str, if_match: str | None = None) -> None:
        """Idempotent: deleting a missing connection is not an error (a stale ETag is: 412)."""
        key = try_encode_key(id)
        if key is None:
            return
        with translated(f"delete connection {id!r}"):
            self._tables.client(CONNECTIONS).delete_entity(_CONNECTION_PK, key, **match(if_match))


class ExportRepository:
    def __init__(self, tables: Tables, state: ExportStateRepository) -> None:
        self._tables = tables
        self._state = state

    def _entity(self, e: Export) -> dict[str, object]:
        entity = {
            "PartitionKey": _EXPORT_PK,
            "RowKey": encode_key(e.id, "export id"),
            **codec.export_props(e),
        }
        check_entity(entity, f"export {e.id!r}")
        return entity

    def get(self, id: str) -> Export:
        key = try_encode_key(id)
        if key is None:
            raise NotFoundError(f"export {id!r}: not found")
        with translated(f"get export {id!r}"):
            entity = self._tables.client(EXPORTS).get_entity(_EXPORT_PK, key)
        return codec.export_from(entity, etag_of(entity.metadata))

    def list(self, connection_id: str | None = None) -> list[Export]:
        query, params = "PartitionKey eq @pk", {"pk": _EXPORT_PK}
        if connection_id is not None:
            query += " and ConnectionId eq @cid"
            params["cid"] = connection_id
        with translated("list exports"):
            entities = list(self._tables.client(EXPORTS).query_entities(query, parameters=params))
        return [codec.export_from(e, etag_of(e.metadata)) for e in entities]

    def create(self, e: Export) -> Export:
        entity = self._entity(e)
        with translated(f"create export {e.id!r}"):
            meta = self._tables.client(EXPORTS).create_entity(entity)
        return dataclasses.replace(e, etag=etag_of(meta))

    def update(self, e: Export, if_match: str | None) -> Export:
        entity = self._entity(e)
        with translated(f"update export {e.id!r}"):
            meta = self._tables.client(EXPORTS).update_entity(
                entity, mode=UpdateMode.REPLACE, **match(if_match)
            )
        return dataclasses.replace(e, etag=etag_of(meta))

    def delete(self, id: str, if_match: str | None = None) -> None:
        """Idempotent. Also forgets the export's list state (its runs stay as history)."""
        key = try_encode_key(id)
        if key is None:
            return
        with translated(f"delete export {id!r}"):
            self._tables.client(EXPORTS).delete_entity(_EXPORT_PK, key, **match(if_match))
        self._state.delete(id)

    def detach_connection(self, connection_id: str) -> int:
        """Set connection_id to None on every export using the connection; returns how many.

        Each export is rewritten with its own ETag; a concurrent edit makes us re-read and retry.
        """
        detached = 0
        for export in self.list(connection_id):
            current: Export | None = export
            for _ in range(_DETACH_ATTEMPTS):
                if current is None or current.connection_id != connection_id:
                    break
                try:
                    self.update(dataclasses.replace(current, connection_id=None), current.etag)
                    detached += 1
                    break
                except PreconditionFailedError:
                    try:
                        current = self.get(export.id)
                    except NotFoundError:
                        current = None
            else:
                raise PreconditionFailedError(
                    f"export {export.id!r} kept changing while detaching connection "
                    f"{connection_id!r}; try again"
                )
        return detached


class ExportStateRepository:
    """segment -> marketing list, per export; worker writes here never touch the export's ETag."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def get(self, export_id: str) -> dict[str, SegmentListState]:
        key = try_encode_key(export_id)
        if key is None:
            return {}
        with translated(f"get list state of export {export_id!r}"):
            entities = list(
                self._tables.client(EXPORT_STATE).query_entities(
                    "PartitionKey eq @pk", parameters={"pk": key}
                )
            )
        return {
            e["Segment"]: SegmentListState(
                segment=e["Segment"], list_id=e["ListId"], list_name=e.get("ListName") or ""
            )
            for e in entities
        }

    def put(self, export_id: str, state: SegmentListState) -> None:
        entity = {
            "PartitionKey": encode_key(export_id, "export id"),
            "RowKey": encode_key(state.segment, "segment name"),
            "Segment": state.segment,
            "ListId": state.list_id,
            "ListName": state.list_name,
        }
        check_entity(entity, f"list state of export {export_id!r}")
        with translated(f"put list state of export {export_id!r}"):
            self._tables.client(EXPORT_STATE).upsert_entity(entity, mode=UpdateMode.REPLACE)

    def delete(self, export_id: str, segment: str | None = None) -> None:
        """Forget one segment's list (or all of the export's); idempotent."""
        pk = try_encode_key(export_id)
        if pk is None:
            return
        client = self._tables.client(EXPORT_STATE)
        if segment is not None:
            rk = try_encode_key(segment)
            if rk is not None:
                with translated(f"delete list state of export {export_id!r}"):
                    client.delete_entity(pk, rk)
            return
        delete_partition(client, pk, f"delete list state of export {export_id!r}")
