"""Notification targets and the last outcome told per (export, target); ETag concurrency.

notifytargets  "target" / target id          display name, format, setting NAMES, exports
notifystate    export id / target id          Outcome, ReasonKey, RunId, Delivered
"""

from __future__ import annotations

import dataclasses
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import NotFoundError
from shared.models import Audit, NotificationFormat, NotificationTarget, NotifyState
from shared.store import codec
from shared.store._boundary import translated
from shared.store.keys import encode_key, try_encode_key
from shared.store.limits import check_entity
from shared.store.tables import Tables, etag_of, match

NOTIFY_TARGETS, NOTIFY_STATE = "notifytargets", "notifystate"
_TARGET_PK = "target"


def _target_entity(t: NotificationTarget) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _TARGET_PK,
        "RowKey": encode_key(t.id, "target id"),
        "Id": t.id,
        "DisplayName": t.display_name,
        "Format": str(t.format),
        "UrlSetting": t.url_setting,
        "SecretSetting": t.secret_setting,
        "AllExports": t.export_ids is None,
        "Enabled": bool(t.enabled),
        "CreatedBy": t.audit.created_by,
        "CreatedAt": t.audit.created_at,
        "UpdatedBy": t.audit.updated_by,
        "UpdatedAt": t.audit.updated_at,
    }
    codec.put_json(entity, "ExportIds", list(t.export_ids or []))
    check_entity(entity, f"notification target {t.id!r}")
    return entity


def _target_from(entity: Any) -> NotificationTarget:
    all_exports = bool(entity.get("AllExports", True))
    return NotificationTarget(
        id=entity["Id"],
        display_name=entity.get("DisplayName") or "",
        format=NotificationFormat(entity["Format"]),
        url_setting=entity["UrlSetting"],
        secret_setting=entity.get("SecretSetting") or None,
        export_ids=None if all_exports else list(codec.get_json(entity, "ExportIds", [])),
        enabled=bool(entity.get("Enabled", True)),
        audit=Audit(
            entity.get("CreatedBy") or "",
            entity.get("CreatedAt") or "",
            entity.get("UpdatedBy") or "",
            entity.get("UpdatedAt") or "",
        ),
        etag=etag_of(entity.metadata),
    )


class NotificationTargetRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def get(self, id: str) -> NotificationTarget:
        key = try_encode_key(id)
        if key is None:
            raise NotFoundError(f"notification target {id!r}: not found")
        with translated(f"get notification target {id!r}"):
            entity = self._tables.client(NOTIFY_TARGETS).get_entity(_TARGET_PK, key)
        return _target_from(entity)

    def list(self) -> list[NotificationTarget]:
        with translated("list notification targets"):
            entities = list(
                self._tables.client(NOTIFY_TARGETS).query_entities(
                    "PartitionKey eq @pk", parameters={"pk": _TARGET_PK}
                )
            )
        return [_target_from(e) for e in entities]

    def create(self, t: NotificationTarget) -> NotificationTarget:
        entity = _target_entity(t)
        with translated(f"create notification target {t.id!r}"):
            meta = self._tables.client(NOTIFY_TARGETS).create_entity(entity)
        return dataclasses.replace(t, etag=etag_of(meta))

    def update(self, t: NotificationTarget, if_match: str | None) -> NotificationTarget:
        entity = _target_entity(t)
        with translated(f"update notification target {t.id!r}"):
            meta = self._tables.client(NOTIFY_TARGETS).update_entity(
                entity, mode=UpdateMode.REPLACE, **match(if_match)
            )
        return dataclasses.replace(t, etag=etag_of(meta))

    def delete(self, id: str, if_match: str | None = None) -> None:
        key = try_encode_key(id)
        if key is None:
            return
        with translated(f"delete notification target {id!r}"):
            self._tables.client(NOTIFY_TARGETS).delete_entity(_TARGET_PK, key, **match(if_match))


class NotifyStateRepository:
    """One row per (export, target): what the target was last told. Writes are conditional:
    insert when there was no row (409 if someone else inserted first), replace with If-Match
    otherwise (412 if it changed since read), so two workers never both decide to tell."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def get(self, export_id: str, target_id: str) -> NotifyState | None:
        pk, rk = try_encode_key(export_id), try_encode_key(target_id)
        if pk is None or rk is None:
            return None
        try:
            with translated("get notification state"):
                e = self._tables.client(NOTIFY_STATE).get_entity(pk, rk)
        except NotFoundError:
            return None
        return NotifyState(
            export_id=export_id,
            target_id=target_id,
            outcome=e.get("Outcome") or "ok",
            reason_key=e.get("ReasonKey") or "",
            run_id=e.get("RunId") or "",
            delivered=bool(e.get("Delivered", True)),
            etag=etag_of(e.metadata),
        )

    def put(self, state: NotifyState, if_match: str | None) -> NotifyState:
        """Insert (if_match None) or replace the row if unchanged; ConflictError / 412 else."""
        entity = {
            "PartitionKey": encode_key(state.export_id, "export id"),
            "RowKey": encode_key(state.target_id, "target id"),
            "Outcome": state.outcome,
            "ReasonKey": state.reason_key,
            "RunId": state.run_id,
            "Delivered": bool(state.delivered),
        }
        check_entity(entity, "notification state")
        client = self._tables.client(NOTIFY_STATE)
        with translated("save notification state"):
            if if_match is None:
                meta = client.create_entity(entity)
            else:
                meta = client.update_entity(entity, mode=UpdateMode.REPLACE, **match(if_match))
        return dataclasses.replace(state, etag=etag_of(meta))
