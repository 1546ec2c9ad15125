"""Runs: recent runs of every export, one export's history, and a run's page (live progress by
polling the API, per-segment counts, cancel, the members left out: search, filter, CSV)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from shared.console.pages.common import begin, form_data
from shared.console.web import problem_page, render, see_other
from shared.models import RejectionReason

router = APIRouter(include_in_schema=False)
RECENT_PER_EXPORT = 10
LEFT_OUT_PAGE = 50


@router.get("/runs", response_class=HTMLResponse)
async def recent_runs(request: Request) -> Response:
    api = await begin(request)
    exports = await api.get("/api/exports")
    if not exports.ok:
        return problem_page(request, exports)
    items = exports.body["items"]
    pages = await asyncio.gather(
        *(api.get(f"/api/exports/{e['id']}/runs", limit=RECENT_PER_EXPORT) for e in items)
    )
    runs: list[dict[str, Any]] = []
    for export, page in zip(items, pages, strict=True):
        for run in (page.body or {}).get("items", []) if page.ok else []:
            runs.append({**run, "exportName": export["displayName"]})
    runs.sort(key=lambda r: r.get("queuedAt", ""), reverse=True)
    return render(request, "runs.html", title="Runs", runs=runs, export=None, next_link=None)


@router.get("/runs/{eid}", response_class=HTMLResponse)
async def export_history(request: Request, eid: str, continuation: str = "") -> Response:
    api = await begin(request)
    export = await api.get(f"/api/exports/{eid}")
    if not export.ok:
        return problem_page(request, export)
    page = await api.get(f"/api/exports/{eid}/runs", limit=20, continuation=continuation)
    if not page.ok:
        return problem_page(request, page)
    runs = [{**r, "exportName": export.body["displayName"]} for r in page.body["items"]]
    token = ""
    if page.body.get("nextLink"):
        from urllib.parse import parse_qs, urlsplit

        token = parse_qs(urlsplit(page.body["nextLink"]).query).get("continuation", [""])[0]
    return render(
        request,
        "runs.html",
        title=f"Runs of {export.body['displayName']}",
        runs=runs,
        export=export.body,
        next_link=f"/runs/{eid}?continuation={token}" if token else None,
    )


@router.get("/runs/{eid}/{rid}", response_class=HTMLResponse)
async def run_page(
    request: Request,
    eid: str,
    rid: str,
    customerId: str = "",
    reason: str = "",
    continuation: str = "",
) -> Response:
    api = await begin(request)
    run, export = await asyncio.gather(
        api.get(f"/api/exports/{eid}/runs/{rid}"), api.get(f"/api/exports/{eid}")
    )
    if not run.ok:
        return problem_page(request, run)
    reason = reason if reason in {r.value for r in RejectionReason} else ""
    left = await api.get(
        f"/api/exports/{eid}/runs/{rid}/rejections",
        limit=LEFT_OUT_PAGE,
        customerId=customerId[:256],
        reason=reason,
        continuation=continuation,
    )
    next_page = ""
    if left.ok and left.body.get("nextLink"):
        next_page = "?" + left.body["nextLink"].split("?", 1)[1]
    totals: dict[str, int] = {}
    for segment in run.body.get("segments", []):
        for key, count in (segment.get("leftOut") or {}).items():
            totals[key] = totals.get(key, 0) + int(count)
    return render(
        request,
        "run.html",
        title=f"Run of {(export.body or {}).get('displayName', eid)}",
        run=run.body,
        export=export.body if export.ok else {"id": eid, "displayName": eid},
        left=(left.body or {}).get("items", []) if left.ok else [],
        left_error="" if left.ok else left.detail,
        next_page=next_page,
        totals=totals,
        reasons=[r.value for r in RejectionReason],
        customer_id=customerId,
        reason=reason,
        active=run.body.get("status") in ("queued", "running"),
    )


@router.post("/runs/{eid}/{rid}/cancel", response_class=HTMLResponse)
async def cancel_run(request: Request, eid: str, rid: str) -> Response:
    api = await begin(request)
    await form_data(request)
    answer = await api.call("POST", f"/api/exports/{eid}/runs/{rid}/cancel")
    if not answer.ok:
        return problem_page(request, answer)
    return see_other(f"/runs/{eid}/{rid}", "Cancel requested: the run stops at its next step.")
