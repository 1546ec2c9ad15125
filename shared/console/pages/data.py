"""Data: the embedded source's segments (with member counts) and CSV uploads of segments and
customer rows. The browser streams the file to these routes (progress shown by the page's
script); they hand it to the API unchanged as text/csv. A customer file too big to be written
inside one request (the API's 413 too-many-rows) is handed to the background import instead;
the page's script then follows the import's progress, and the page lists recent imports."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from shared.console.pages.common import Denied, begin, check_csrf_header, form_data
from shared.console.web import render, see_other

router = APIRouter(include_in_schema=False)
SEGMENT = "segment"
CUSTOMERS = "/api/customers"
IMPORTS = "/api/customer-imports"


@router.get("/data", response_class=HTMLResponse)
async def data_page(request: Request) -> Response:
    api = await begin(request)
    segments = await api.get("/api/segments")
    imports = await api.get("/api/customer-imports", limit=10)
    return render(
        request,
        "data.html",
        title="Data",
        segments=(segments.body or {}).get("items", []) if segments.ok else [],
        segments_error="" if segments.ok else segments.detail,
        imports=(imports.body or {}).get("items", []) if imports.ok else [],
    )


def _too_many_rows(answer: Any) -> bool:
    return (
        answer.status == 413
        and isinstance(answer.body, dict)
        and str(answer.body.get("type", "")).endswith("too-many-rows")
    )


async def _upload(request: Request, target: str, method: str) -> Response:
    """Body: the CSV file itself (the page's script sends it with its CSRF header), or a
    multipart form when scripts are off."""
    api = await begin(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await form_data(request)
        upload: Any = form.get("file")
        content = await upload.read() if hasattr(upload, "read") else b""
        name = str(form.get("name") or "")
    else:
        check_csrf_header(request)
        content = await request.body()
        name = request.query_params.get("name", "")
    path = target
    if target == SEGMENT:
        path = "/api/segments/" + quote(name.strip(), safe="")
    if target == SEGMENT and not name.strip():
        message = "name: give the segment a name"
        if wants_json:
            return JSONResponse({"ok": False, "message": message}, status_code=422)
        raise Denied(render(request, "message.html", 422, title="Not uploaded", message=message))
    headers = {"Content-Type": "text/csv"}
    answer = await api.call(method, path, content=content, headers=headers)
    if target == CUSTOMERS and _too_many_rows(answer):
        answer = await api.call("POST", IMPORTS, content=content, headers=headers)
        if answer.ok:
            record = answer.body
            message = (
                f"Importing {record['rows']:,} rows in the background (import {record['id']})."
            )
            if wants_json:
                return JSONResponse(
                    {"ok": True, "message": message, "importUrl": f"{IMPORTS}/{record['id']}"},
                    status_code=202,
                )
            return see_other("/data", message)
    message = answer.detail if not answer.ok else "Uploaded."
    if answer.ok and isinstance(answer.body, dict):
        counts = {k: v for k, v in answer.body.items() if isinstance(v, int)}
        if counts:
            message = "Uploaded: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + "."
    if wants_json:
        return JSONResponse({"ok": answer.ok, "message": message}, status_code=answer.status)
    if answer.ok:
        return see_other("/data", message)
    return render(request, "message.html", answer.status, title="Not uploaded", message=message)


@router.post("/data/segments")
async def upload_segment(request: Request) -> Response:
    return await _upload(request, SEGMENT, "PUT")


@router.post("/data/customers")
async def upload_customers(request: Request) -> Response:
    return await _upload(request, CUSTOMERS, "POST")
