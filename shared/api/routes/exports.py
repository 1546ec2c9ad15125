"""/api/exports: Admin manages all exports; a Contributor manages the exports on connections usable
by contributors (and detached ones) and reads the rest; a Viewer reads. Saving never runs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Response

from shared.api.common import (
    ETAG_HEADER,
    IfMatch,
    check_if_match,
    merge_patch,
    save_patched,
    utc_now_iso,
    validate_document,
)
from shared.api.deps import any_role, contributor, get_settings, get_store
from shared.api.identity import Caller
from shared.api.problems import ApiProblem
from shared.api.schemas import (
    RESOURCE_ID_PATTERN,
    ExportIn,
    ExportList,
    ExportOut,
    ExportPatch,
    ResourceId,
    export_input_dict,
    export_out,
    export_source_from,
    schedule_from_input,
)
from shared.api.sources import load_connection, reading_connection_id, source_errors
from shared.errors import NotFoundError
from shared.listname import ListNameError, render_list_name
from shared.models import Audit, Connection, Export, Role, SourceKind, UsableBy
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
router = APIRouter(prefix="/api/exports", tags=["exports"])

ExportId = Annotated[str, Path(pattern=RESOURCE_ID_PATTERN, description="export id")]


class ExportMerged(ExportIn):
    """A merged export may stay detached (no connection) until a connection is attached."""

    connection_id: ResourceId | None = None  # type: ignore[assignment]


def may_use(caller: Caller, connection: Connection | None) -> bool:
    """May the caller point an export at this connection?"""
    if connection is None:
        return False
    if caller.is_admin:
        return True
    return (
        caller.role is Role.CONTRIBUTOR
        and connection.usable_by is UsableBy.ADMINISTRATORS_AND_CONTRIBUTORS
    )


def may_manage(caller: Caller, export: Export, connections: dict[str, Connection]) -> bool:
    """May the caller change or run this export? Admin: all. Contributor: exports on a
    connection usable by contributors, and detached exports (only an admin-approved
    connection can be attached to them again). Viewer: none."""
    if caller.is_admin:
        return True
    if caller.role is not Role.CONTRIBUTOR:
        return False
    if export.connection_id is None:
        return True
    return may_use(caller, connections.get(export.connection_id))


def connections_by_id(store: StoreApi) -> dict[str, Connection]:
    return {c.id: c for c in store.connections.list()}


def require_manage(caller: Caller, export: Export, store: StoreApi) -> None:
    connection = None
    if export.connection_id is not None:
        try:
            connection = store.connections.get(export.connection_id)
        except NotFoundError:
            connection = None
    mapping = {connection.id: connection} if connection else {}
    if not may_manage(caller, export, mapping):
        raise ApiProblem(
            403,
            "You may read this export but not change or run it: its connection is not usable "
            "by contributors.",
            kind="forbidden",
        )


def check_references(
    body: ExportIn,
    caller: Caller,
    store: StoreApi,
    *,
    connection_changed: bool,
    settings: Settings | None = None,
) -> None:
    """Connection usable, segments exist in the export's source and are distinct, list names
    fit. 422 naming the field. A Customer Insights source is asked (a few small reads)."""
    errors: list[dict[str, str]] = []
    if body.connection_id is not None and connection_changed:
        try:
            connection: Connection | None = store.connections.get(body.connection_id)
        except (NotFoundError, ValueError):
            connection = None
        if not may_use(caller, connection):
            errors.append({"field": "connectionId", "message": "no such connection usable by you"})
    seen: set[str] = set()
    for index, name in enumerate(body.segments):
        if name in seen:
            errors.append({"field": f"segments[{index}]", "message": "duplicate segment"})
        seen.add(name)
    source = export_source_from(body.source)
    reader = None
    if source.kind is SourceKind.CUSTOMER_INSIGHTS and source.connection_id is not None:
        reader = load_connection(store, source.connection_id)
        if not may_use(caller, reader):
            errors.append(
                {"field": "source.connectionId", "message": "no such connection usable by you"}
            )
    elif source.kind is SourceKind.EMBEDDED and source.connection_id is not None:
        errors.append(
            {
                "field": "source.connectionId",
                "message": "only a customer-insights source reads through a connection",
            }
        )
    elif source.kind is SourceKind.CUSTOMER_INSIGHTS:
        reader = load_connection(store, reading_connection_id(source, body.connection_id))
    # Customer Insights is asked only about an otherwise valid export (no reads for bad input)
    if settings is not None and (not errors or source.kind is SourceKind.EMBEDDED):
        flagged = {e["field"] for e in errors}
        errors.extend(
            e
            for e in source_errors(store, settings, source, reader, body.segments)
            if e["field"] not in flagged
        )
    errors.extend(_list_name_errors(body.list_name, body.display_name, body.segments))
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        raise ApiProblem(
            422,
            f"The export is not valid: {summary}",
            kind="validation",
            title="Invalid request",
            errors=errors,
        )


def _environment(server_address: str) -> str:
    parts = urlsplit(server_address.strip())
    return f"{(parts.hostname or '').lower()}:{parts.port or 443}"


def _list_names(export: Export, store: StoreApi) -> dict[str, str]:
    """casefolded name -> name of the lists ``export`` writes: rendered from its template, and
    the names it recorded for the lists it created."""
    names: dict[str, str] = {}
    for segment in export.segments:
        try:
            name = render_list_name(export.list_name, segment=segment, export=export.display_name)
        except ListNameError:
            continue
        names[name.casefold()] = name
    for state in store.export_state.get(export.id).values():
        if state.list_name:
            names.setdefault(state.list_name.casefold(), state.list_name)
    return names


def check_list_ownership(body: ExportIn, export_id: str | None, store: StoreApi) -> None:
    """A marketing list belongs to exactly one export: 409 naming the export when a list name
    this export would write is another export's on the same Sales environment (whatever the
    connection: an admin-only and a shared connection may reach the same environment).
    Dataverse compares names case-insensitively, so this does too. The run checks again in
    Sales (the list records its owner), which also covers other installations."""
    if body.connection_id is None:
        return
    try:
        connection = store.connections.get(body.connection_id)
    except (NotFoundError, ValueError):
        return  # check_references reports it
    environment = _environment(connection.server_address)
    wanted: dict[str, str] = {}
    for segment in body.segments:
        try:
            name = render_list_name(body.list_name, segment=segment, export=body.display_name)
        except ListNameError:
            return  # check_references reports it
        wanted[name.casefold()] = name
    connections = connections_by_id(store)
    for other in store.exports.list():
        if other.id == export_id or other.connection_id is None:
            continue
        reach = connections.get(other.connection_id)
        if reach is None or _environment(reach.server_address) != environment:
            continue
        theirs = _list_names(other, store)
        clash = sorted(set(wanted) & set(theirs))
        if clash:
            name = theirs[clash[0]]
            raise ApiProblem(
                409,
                f"The marketing list {name!r} belongs to export {other.display_name!r} "
                f"({other.id}) on the same Sales environment; a list belongs to exactly one "
                "export. Choose another listName.",
                kind="list-owned",
                extra={"exportId": other.id, "listName": name},
            )


def _list_name_errors(
    template: str, export_name: str, segments: Sequence[str]
) -> list[dict[str, str]]:
    names = []
    for segment in segments:
        try:
            names.append(render_list_name(template, segment=segment, export=export_name))
        except ListNameError as exc:
            return [{"field": "listName", "message": str(exc)}]
    if len(set(names)) != len(names):
        return [
            {
                "field": "listName",
                "message": "renders the same name for several segments; include {segment}",
            }
        ]
    return []


def _build(body: ExportIn, *, id: str, audit: Audit) -> Export:
    return Export(
        id=id,
        display_name=body.display_name,
        connection_id=body.connection_id,
        segments=list(body.segments),
        source=export_source_from(body.source),
        mode=body.mode,
        enabled=body.enabled,
        list_name=body.list_name,
        audit=audit,
        schedule=schedule_from_input(body.schedule),
    )


def _answer(response: Response, export: Export, caller: Caller, store: StoreApi) -> ExportOut:
    if export.etag:
        response.headers["ETag"] = export.etag
    can_edit = caller.is_admin or (
        caller.role is Role.CONTRIBUTOR and may_manage(caller, export, connections_by_id(store))
    )
    return export_out(export, can_edit=can_edit)


@router.get("", response_model=ExportList, summary="List exports (all roles)")
def list_exports(
    caller: Annotated[Caller, Depends(any_role)], store: Annotated[StoreApi, Depends(get_store)]
) -> ExportList:
    connections = connections_by_id(store)
    exports = sorted(store.exports.list(), key=lambda e: e.display_name.lower())
    return ExportList(
        items=[export_out(e, can_edit=may_manage(caller, e, connections)) for e in exports]
    )


@router.post(
    "",
    status_code=201,
    response_model=ExportOut,
    summary="Create an export (Admin; Contributor on usable connections). Saving never runs.",
    responses={201: {"headers": {**ETAG_HEADER, "Location": {"schema": {"type": "string"}}}}},
)
def create_export(
    body: ExportIn,
    response: Response,
    caller: Annotated[Caller, Depends(contributor)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> ExportOut:
    check_references(body, caller, store, connection_changed=True, settings=settings)
    check_list_ownership(body, None, store)
    now = utc_now_iso()
    export = _build(body, id=uuid.uuid4().hex, audit=Audit(caller.name, now, caller.name, now))
    created = store.exports.create(export)
    log.info("export %s created by %s", created.id, caller.name)
    response.headers["Location"] = f"/api/exports/{created.id}"
    return _answer(response, created, caller, store)


@router.get(
    "/{export_id}",
    response_model=ExportOut,
    summary="Read an export (all roles)",
    responses={200: {"headers": ETAG_HEADER}},
)
def get_export(
    export_id: ExportId,
    response: Response,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> ExportOut:
    return _answer(response, store.exports.get(export_id), caller, store)


@router.patch(
    "/{export_id}",
    response_model=ExportOut,
    summary="Change an export (JSON merge patch; If-Match optional). Saving never runs.",
    responses={200: {"headers": ETAG_HEADER}},
)
def patch_export(
    export_id: ExportId,
    patch: ExportPatch,
    response: Response,
    caller: Annotated[Caller, Depends(contributor)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    if_match: IfMatch = None,
) -> ExportOut:
    changes = patch.model_dump(by_alias=True, exclude_unset=True)
    if "connectionId" in changes and changes["connectionId"] is None:
        raise ApiProblem(
            422,
            "connectionId: an export cannot be detached by PATCH; delete its connection with "
            "?detach=true instead.",
            kind="validation",
            errors=[{"field": "connectionId", "message": "must not be null"}],
        )

    def load() -> Export:
        current = store.exports.get(export_id)
        require_manage(caller, current, store)
        return current

    def save(current: Export) -> Export:
        merged = merge_patch(export_input_dict(current), changes)
        for whole in ("schedule", "source"):  # replaced as a whole, not merged
            if isinstance(changes.get(whole), dict):
                merged[whole] = changes[whole]
        body = validate_document(ExportMerged, merged)
        check_references(
            body,
            caller,
            store,
            connection_changed=body.connection_id != current.connection_id,
            settings=settings,
        )
        check_list_ownership(body, current.id, store)
        audit = Audit(
            current.audit.created_by, current.audit.created_at, caller.name, utc_now_iso()
        )
        return store.exports.update(_build(body, id=current.id, audit=audit), if_match=current.etag)

    saved = save_patched(load, save, if_match, "export")
    log.info("export %s changed by %s", export_id, caller.name)
    return _answer(response, saved, caller, store)


@router.delete("/{export_id}", status_code=204, summary="Delete an export (If-Match optional)")
def delete_export(
    export_id: ExportId,
    caller: Annotated[Caller, Depends(contributor)],
    store: Annotated[StoreApi, Depends(get_store)],
    if_match: IfMatch = None,
) -> Response:
    current: Export = store.exports.get(export_id)
    require_manage(caller, current, store)
    check_if_match(if_match, current.etag)
    active = store.active_runs.get(export_id)
    if active is not None:
        try:
            still_active = store.runs.get(export_id, active).status.is_active
        except NotFoundError:
            still_active = False
        if still_active:
            raise ApiProblem(
                409,
                f"Run {active} of this export is queued or running; cancel it or wait for it "
                "to finish before deleting the export.",
                kind="run-active",
                extra={"activeRunId": active},
            )
    store.exports.delete(export_id, if_match=current.etag)
    log.info("export %s deleted by %s", export_id, caller.name)
    return Response(status_code=204)
