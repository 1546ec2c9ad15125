"""Exports: list (last run, schedule, refreshed, your permissions), add / view / edit with a
segment picker and a live list-name preview, run, duplicate, remove, run all."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from shared.console.forms import export_document, export_form_values
from shared.console.pages.common import begin, errors_for, form_data
from shared.console.schema_fields import SchemaField, extra_fields, submitted, values_of
from shared.console.web import Api, problem_page, render, see_other
from shared.listname import ListNameError, render_list_name

router = APIRouter(include_in_schema=False)
KNOWN = {"displayName", "connectionId", "segments", "mode", "enabled", "listName"}
PREVIEW_LIMIT = 10


def schedule_text(export: dict[str, Any]) -> str:
    schedule = export.get("schedule")
    if isinstance(schedule, dict):
        kind = str(schedule.get("kind", ""))
        if kind == "cron":
            return f"cron {schedule.get('expression', '')}"
        return {"refresh": "Scheduled refresh", "off": "Off"}.get(kind, kind)
    return "Scheduled refresh" if export.get("enabled", True) else "Off"


async def _last_run(api: Api, export_id: str) -> dict[str, Any] | None:
    answer = await api.get(f"/api/exports/{export_id}/runs", limit=5)
    if not answer.ok or not answer.body.get("items"):
        return None
    runs = answer.body["items"]
    last = dict(runs[0])
    refreshed = next(
        (r for r in runs if r.get("status") in ("succeeded", "partially-succeeded")), None
    )
    last["refreshed"] = (refreshed or {}).get("finishedAt") or ""
    return last


@router.get("/exports", response_class=HTMLResponse)
async def exports_page(request: Request) -> Response:
    api = await begin(request)
    exports, connections = await asyncio.gather(
        api.get("/api/exports"), api.get("/api/connections")
    )
    if not exports.ok:
        return problem_page(request, exports)
    names = {c["id"]: c["displayName"] for c in (connections.body or {}).get("items", [])}
    items = list(exports.body["items"])
    lasts = await asyncio.gather(*(_last_run(api, e["id"]) for e in items))
    rows = [
        {
            **e,
            "connectionName": names.get(e.get("connectionId") or "", ""),
            "last": last,
            "scheduleText": schedule_text(e),
        }
        for e, last in zip(items, lasts, strict=True)
    ]
    rows.sort(key=lambda r: r["displayName"].lower())
    return render(request, "exports.html", title="Exports", items=rows)


def preview_names(template: str, export: str, segments: list[str]) -> tuple[list[str], str]:
    """The names the export will give its lists (the worker's own rendering function)."""
    names: list[str] = []
    for segment in segments[:PREVIEW_LIMIT] or ["<segment>"]:
        try:
            names.append(render_list_name(template, segment=segment, export=export or "<export>"))
        except ListNameError as exc:
            return [], str(exc)
    return names, ""


@router.get("/exports/preview")
async def preview(request: Request, listName: str = "", displayName: str = "") -> Response:
    await begin(request)
    segments = request.query_params.getlist("segments")
    names, error = preview_names(listName, displayName, segments)
    return JSONResponse({"names": names, "error": error})


async def _schema_fields(api: Api) -> list[SchemaField]:
    answer = await api.get("/api/openapi.json")
    return extra_fields(answer.body, "ExportIn", KNOWN) if answer.ok else []


async def _form(
    request: Request,
    api: Api,
    values: dict[str, Any],
    errors: dict[str, str],
    export: dict[str, Any] | None,
    fields: list[SchemaField],
    status: int = 200,
) -> Response:
    connections, segments = await asyncio.gather(
        api.get("/api/connections"), api.get("/api/segments")
    )
    chosen = values.get("segments") or []
    if isinstance(chosen, str):
        chosen = [chosen]
    names, preview_error = preview_names(
        str(values.get("listName", "")), str(values.get("displayName", "")), list(chosen)
    )
    me = request.state.me
    can_edit = export is None or export.get("yourPermissions") == "edit"
    can_edit = can_edit and me["rank"] >= 2
    title = (
        "Add export"
        if export is None
        else (
            f"Edit export: {export['displayName']}"
            if can_edit
            else f"Export: {export['displayName']}"
        )
    )
    return render(
        request,
        "export_form.html",
        status=status,
        title=title,
        values=values,
        chosen=set(chosen),
        errors=errors,
        error_for=lambda name: errors_for(errors, name),
        export=export,
        can_edit=can_edit,
        connections=(connections.body or {}).get("items", []),
        segments=(segments.body or {}).get("items", []) if segments.ok else [],
        preview=names,
        preview_error=preview_error,
        fields=fields,
    )


@router.get("/exports/new", response_class=HTMLResponse)
async def new_export(request: Request) -> Response:
    api = await begin(request)
    return await _form(request, api, export_form_values(None), {}, None, await _schema_fields(api))


@router.post("/exports/new", response_class=HTMLResponse)
async def create_export(request: Request) -> Response:
    api = await begin(request)
    form = await form_data(request)
    fields = await _schema_fields(api)
    answer = await api.call(
        "POST", "/api/exports", json=export_document(form, submitted(form, fields))
    )
    if answer.ok:
        return see_other(f"/exports/{answer.body['id']}", "Export saved. Saving does not run it.")
    errors = answer.field_errors() or {"": answer.detail}
    return await _form(request, api, form, errors, None, fields, status=422)


@router.get("/exports/{eid}", response_class=HTMLResponse)
async def view_export(request: Request, eid: str) -> Response:
    api = await begin(request)
    answer = await api.get(f"/api/exports/{eid}")
    if not answer.ok:
        return problem_page(request, answer)
    fields = await _schema_fields(api)
    values = {**export_form_values(answer.body), **values_of(answer.body, fields)}
    return await _form(request, api, values, {}, answer.body, fields)


@router.post("/exports/{eid}", response_class=HTMLResponse)
async def update_export(request: Request, eid: str) -> Response:
    api = await begin(request)
    form = await form_data(request)
    current = await api.get(f"/api/exports/{eid}")
    if not current.ok:
        return problem_page(request, current)
    fields = await _schema_fields(api)
    etag = current.headers.get("etag")
    answer = await api.call(
        "PATCH",
        f"/api/exports/{eid}",
        json=export_document(form, submitted(form, fields)),
        headers={"If-Match": etag} if etag else None,
    )
    if answer.ok:
        return see_other(f"/exports/{eid}", "Export saved. Saving does not run it.")
    errors = answer.field_errors() or {"": answer.detail}
    return await _form(request, api, form, errors, current.body, fields, status=422)


@router.post("/exports/{eid}/run", response_class=HTMLResponse)
async def run_export(request: Request, eid: str) -> Response:
    api = await begin(request)
    await form_data(request)
    answer = await api.call("POST", f"/api/exports/{eid}/runs")
    if answer.ok:
        return see_other(f"/runs/{eid}/{answer.body['id']}", "Run requested.")
    if answer.status == 409 and isinstance(answer.body, dict) and answer.body.get("activeRunId"):
        return see_other(f"/runs/{eid}/{answer.body['activeRunId']}", answer.detail)
    return problem_page(request, answer)


@router.post("/exports/{eid}/duplicate", response_class=HTMLResponse)
async def duplicate_export(request: Request, eid: str) -> Response:
    api = await begin(request)
    await form_data(request)
    current = await api.get(f"/api/exports/{eid}")
    if not current.ok:
        return problem_page(request, current)
    fields = await _schema_fields(api)
    document = export_document(
        {
            **export_form_values(current.body),
            "displayName": f"Copy of {current.body['displayName']}"[:100],
        },
        submitted(values_of(current.body, fields), fields),
    )
    answer = await api.call("POST", "/api/exports", json=document)
    if not answer.ok:
        return problem_page(request, answer)
    return see_other(f"/exports/{answer.body['id']}", "Duplicate created; it has not run.")


@router.post("/exports/{eid}/remove", response_class=HTMLResponse)
async def remove_export(request: Request, eid: str) -> Response:
    api = await begin(request)
    form = await form_data(request)
    answer = await api.call("DELETE", f"/api/exports/{eid}")
    if not answer.ok and answer.status != 404:
        return problem_page(request, answer)
    back = str(form.get("back") or "")
    return see_other(back if back.startswith("/connections/") else "/exports", "Export removed.")


@router.post("/exports-run-all", response_class=HTMLResponse)
async def run_all(request: Request) -> Response:
    api = await begin(request)
    await form_data(request)
    answer = await api.call("POST", "/api/runs")
    if not answer.ok:
        return problem_page(request, answer)
    count = len(answer.body.get("items", []))
    return see_other("/runs", f"{count} run(s) requested.")
