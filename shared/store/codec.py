"""Domain dataclasses <-> Table entities (pure: no I/O).

Enums are stored as their string values; nested values (segment lists, per-segment results) as
compact ASCII JSON, split over several properties (`Name`, `Name_1`, ... plus `Name_parts`) when
longer than one 64 KiB string property. Total size is checked separately (limits.check_entity).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from shared.models import (
    Audit,
    Connection,
    ContactIdSource,
    Credential,
    CredentialKind,
    Export,
    ExportMode,
    ExportSource,
    NotificationResult,
    Run,
    RunStatus,
    Schedule,
    ScheduleKind,
    SegmentProgress,
    SegmentResult,
    SourceKind,
    SourceRead,
    Trigger,
    UsableBy,
)

JSON_PART_CHARS = 32_000  # ASCII JSON: characters == UTF-16 units, below the 32 768 limit


def put_json(entity: dict[str, Any], name: str, value: Any) -> None:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    parts = [text[i : i + JSON_PART_CHARS] for i in range(0, len(text), JSON_PART_CHARS)] or [""]
    entity[name] = parts[0]
    for index, part in enumerate(parts[1:], start=1):
        entity[f"{name}_{index}"] = part
    if len(parts) > 1:
        entity[f"{name}_parts"] = len(parts)


def get_json(entity: Mapping[str, Any], name: str, default: Any) -> Any:
    if name not in entity or entity[name] is None:
        return default
    count = int(_plain(entity.get(f"{name}_parts", 1)))
    text = "".join([entity[name], *(entity[f"{name}_{i}"] for i in range(1, count))])
    return json.loads(text)


def _plain(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value


def _opt(entity: Mapping[str, Any], name: str) -> Any:
    value = entity.get(name)
    return None if value is None else _plain(value)


def _audit_props(audit: Audit) -> dict[str, Any]:
    return {
        "CreatedBy": audit.created_by,
        "CreatedAt": audit.created_at,
        "UpdatedBy": audit.updated_by,
        "UpdatedAt": audit.updated_at,
    }


def _audit(entity: Mapping[str, Any]) -> Audit:
    return Audit(
        created_by=entity.get("CreatedBy") or "",
        created_at=entity.get("CreatedAt") or "",
        updated_by=entity.get("UpdatedBy") or "",
        updated_at=entity.get("UpdatedAt") or "",
    )


# --- connections ------------------------------------------------------------------------------


def connection_props(c: Connection) -> dict[str, Any]:
    return {
        "Id": c.id,
        "DisplayName": c.display_name,
        "Type": c.type,
        "ServerAddress": c.server_address,
        "UsableBy": str(c.usable_by),
        "ContactIdField": c.contact_id_field,
        "ContactIdSource": str(c.contact_id_source),
        "CredentialKind": str(c.credential.kind),
        "TenantId": c.credential.tenant_id,
        "ClientId": c.credential.client_id,
        "SecretSetting": c.credential.secret_setting,  # the setting's NAME, never the secret
        **_audit_props(c.audit),
    }


def connection_from(entity: Mapping[str, Any], etag: str | None) -> Connection:
    return Connection(
        id=entity["Id"],
        display_name=entity.get("DisplayName") or "",
        server_address=entity.get("ServerAddress") or "",
        credential=Credential(
            kind=CredentialKind(entity["CredentialKind"]),
            tenant_id=_opt(entity, "TenantId"),
            client_id=_opt(entity, "ClientId"),
            secret_setting=_opt(entity, "SecretSetting"),
        ),
        contact_id_field=entity.get("ContactIdField") or "",
        contact_id_source=ContactIdSource(entity.get("ContactIdSource") or ContactIdSource.COLUMN),
        usable_by=UsableBy(entity.get("UsableBy") or UsableBy.ADMINISTRATORS),
        type=entity.get("Type") or "dynamics365-sales",
        audit=_audit(entity),
        etag=etag,
    )


# --- exports ----------------------------------------------------------------------------------


def export_props(e: Export) -> dict[str, Any]:
    props: dict[str, Any] = {
        "Id": e.id,
        "DisplayName": e.display_name,
        "ConnectionId": e.connection_id,  # None (detached) -> property absent
        "Mode": str(e.mode),
        "Enabled": bool(e.enabled),
        "ListName": e.list_name,
        "ScheduleKind": str(e.schedule.kind),
        "ScheduleExpression": e.schedule.expression,  # None -> property absent
        "SourceKind": str(e.source.kind),
        "SourceConnectionId": e.source.connection_id,  # None -> absent: the export's connection
        **_audit_props(e.audit),
    }
    put_json(props, "Segments", list(e.segments))
    return props


def export_from(entity: Mapping[str, Any], etag: str | None) -> Export:
    return Export(
        id=entity["Id"],
        display_name=entity.get("DisplayName") or "",
        connection_id=_opt(entity, "ConnectionId"),
        segments=list(get_json(entity, "Segments", [])),
        mode=ExportMode(entity.get("Mode") or ExportMode.MIRROR),
        enabled=bool(entity.get("Enabled", True)),
        source=ExportSource(
            kind=SourceKind(entity.get("SourceKind") or SourceKind.EMBEDDED),
            connection_id=_opt(entity, "SourceConnectionId"),
        ),
        list_name=entity.get("ListName") or "{segment}",
        audit=_audit(entity),
        etag=etag,
        schedule=Schedule(
            ScheduleKind(entity.get("ScheduleKind") or ScheduleKind.REFRESH),
            _opt(entity, "ScheduleExpression"),
        ),
    )


# --- runs -------------------------------------------------------------------------------------


def segment_result_to_json(result: SegmentResult) -> dict[str, Any]:
    return asdict(result)


def segment_result_from_json(data: Mapping[str, Any]) -> SegmentResult:
    values = dict(data)
    progress = values.pop("progress", None) or {}
    source = values.pop("source", None)
    return SegmentResult(
        source=SourceRead(
            **{k: v for k, v in source.items() if k in SourceRead.__dataclass_fields__}
        )
        if isinstance(source, Mapping)
        else None,
        **{k: v for k, v in values.items() if k in SegmentResult.__dataclass_fields__},
        progress=SegmentProgress(
            **{k: v for k, v in progress.items() if k in SegmentProgress.__dataclass_fields__}
        ),
    )


def run_props(r: Run) -> dict[str, Any]:
    props: dict[str, Any] = {
        "Id": r.id,
        "ExportId": r.export_id,
        "Trigger": str(r.trigger),
        "Status": str(r.status),
        "DryRun": bool(r.dry_run),
        "RequestedBy": r.requested_by,
        "QueuedAt": r.queued_at,
        "StartedAt": r.started_at,
        "FinishedAt": r.finished_at,
        "Error": r.error,
        "Reason": r.reason,
        "Slices": int(r.slices),
        "CancelRequested": bool(r.cancel_requested),
        "ProgressAt": r.progress_at,
        "AttemptedSlice": int(r.attempted_slice),
        "SliceAttempts": int(r.slice_attempts),
        "Requeues": int(r.requeues),
    }
    put_json(props, "Segments", [segment_result_to_json(s) for s in r.segments])
    if r.notifications:
        put_json(props, "Notifications", [asdict(n) for n in r.notifications])
    return props


def run_from(entity: Mapping[str, Any], etag: str | None) -> Run:
    return Run(
        export_id=entity["ExportId"],
        id=entity["Id"],
        trigger=Trigger(entity["Trigger"]),
        status=RunStatus(entity["Status"]),
        dry_run=bool(entity.get("DryRun", False)),
        requested_by=entity.get("RequestedBy") or "",
        queued_at=entity.get("QueuedAt") or "",
        started_at=_opt(entity, "StartedAt"),
        finished_at=_opt(entity, "FinishedAt"),
        segments=[segment_result_from_json(s) for s in get_json(entity, "Segments", [])],
        error=_opt(entity, "Error"),
        reason=_opt(entity, "Reason"),
        slices=int(_plain(entity.get("Slices", 0))),
        cancel_requested=bool(entity.get("CancelRequested", False)),
        progress_at=_opt(entity, "ProgressAt"),
        attempted_slice=int(_plain(entity.get("AttemptedSlice", 0))),
        slice_attempts=int(_plain(entity.get("SliceAttempts", 0))),
        requeues=int(_plain(entity.get("Requeues", 0))),
        etag=etag,
        notifications=[
            NotificationResult(
                **{k: v for k, v in n.items() if k in NotificationResult.__dataclass_fields__}
            )
            for n in get_json(entity, "Notifications", [])
        ],
    )
