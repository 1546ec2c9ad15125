"""Connections: list (sortable), add / edit (every API error beside its field), test, remove
(with the exports that use it: remove or detach each), and Sign in for delegated connections."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shared.console.forms import connection_document, connection_form_values
from shared.console.pages.common import begin, errors_for, form_data
from shared.console.web import Api, problem_page, render, see_other

router = APIRouter(include_in_schema=False)
SIGNIN_COOKIE = "segexp_signin"
CALLBACK_PATH = "/signin/callback"
SORT_KEYS = {
    "name": lambda c: c.get("displayName", "").lower(),
    "type": lambda c: c.get("type", ""),
    "created": lambda c: c.get("createdAt", ""),
    "usableBy": lambda c: c.get("usableBy", ""),
    "signIn": lambda c: (c.get("signIn") or {}).get("status") or "",
}


@router.get("/connections", response_class=HTMLResponse)
async def connections_page(request: Request, sort: str = "name", dir: str = "asc") -> Response:
    api = await begin(request)
    answer = await api.get("/api/connections")
    if not answer.ok:
        return problem_page(request, answer)
    items = list(answer.body["items"])
    key = SORT_KEYS.get(sort, SORT_KEYS["name"])
    items.sort(key=key, reverse=dir == "desc")
    return render(
        request,
        "connections.html",
        title="Connections",
        items=items,
        sort=sort if sort in SORT_KEYS else "name",
        dir="desc" if dir == "desc" else "asc",
    )


async def _form_page(
    request: Request,
    values: dict[str, Any],
    errors: dict[str, str],
    connection: dict[str, Any] | None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "connection_form.html",
        status=status,
        title="Edit connection" if connection else "Add connection",
        values=values,
        errors=errors,
        error_for=lambda name: errors_for(errors, name),
        connection=connection,
    )


@router.get("/connections/new", response_class=HTMLResponse)
async def new_connection(request: Request) -> Response:
    await begin(request)
    return await _form_page(request, connection_form_values(None), {}, None)


@router.post("/connections/new", response_class=HTMLResponse)
async def create_connection(request: Request) -> Response:
    api = await begin(request)
    form = await form_data(request)
    document, errors = connection_document(form, creating=True)
    if not errors:
        answer = await api.call("POST", "/api/connections", json=document)
        if answer.ok:
            cid = answer.body["id"]
            if form.get("then") == "sign-in" and answer.body["credential"]["kind"] == "delegated":
                return await _sign_in_redirect(request, api, cid)
            return see_other(f"/connections/{cid}/edit", "Connection saved.")
        errors = answer.field_errors() or {"": answer.detail}
    return await _form_page(request, form, errors, None, status=422)


@router.get("/connections/{cid}/edit", response_class=HTMLResponse)
async def edit_connection(request: Request, cid: str) -> Response:
    api = await begin(request)
    answer = await api.get(f"/api/connections/{cid}")
    if not answer.ok:
        return problem_page(request, answer)
    return await _form_page(request, connection_form_values(answer.body), {}, answer.body)


@router.post("/connections/{cid}/edit", response_class=HTMLResponse)
async def update_connection(request: Request, cid: str) -> Response:
    api = await begin(request)
    form = await form_data(request)
    current = await api.get(f"/api/connections/{cid}")
    if not current.ok:
        return problem_page(request, current)
    document, errors = connection_document(form, creating=False)
    if not errors:
        etag = current.headers.get("etag")
        answer = await api.call(
            "PATCH",
            f"/api/connections/{cid}",
            json=document,
            headers={"If-Match": etag} if etag else None,
        )
        if answer.ok:
            return see_other(f"/connections/{cid}/edit", "Connection saved.")
        errors = answer.field_errors() or {"": answer.detail}
    return await _form_page(request, form, errors, current.body, status=422)


@router.post("/connections/{cid}/test", response_class=HTMLResponse)
async def test_connection(request: Request, cid: str) -> Response:
    api = await begin(request)
    await form_data(request)
    connection = await api.get(f"/api/connections/{cid}")
    answer = await api.call("POST", f"/api/connections/{cid}/test")
    if not answer.ok:
        return problem_page(request, answer)
    return render(
        request,
        "connection_test.html",
        title="Connection test",
        connection=connection.body,
        result=answer.body,
    )


@router.get("/connections/{cid}/remove", response_class=HTMLResponse)
async def remove_connection_page(request: Request, cid: str) -> Response:
    api = await begin(request)
    connection = await api.get(f"/api/connections/{cid}")
    if not connection.ok:
        return problem_page(request, connection)
    exports = await api.get("/api/exports")
    using = [e for e in (exports.body or {}).get("items", []) if e.get("connectionId") == cid]
    return render(
        request,
        "connection_remove.html",
        title="Remove connection",
        connection=connection.body,
        exports=using,
    )


@router.post("/connections/{cid}/remove", response_class=HTMLResponse)
async def remove_connection(request: Request, cid: str) -> Response:
    api = await begin(request)
    form = await form_data(request)
    detach = form.get("detach") == "true"
    answer = await api.call(
        "DELETE", f"/api/connections/{cid}", params={"detach": "true"} if detach else None
    )
    if answer.status == 409:
        return see_other(f"/connections/{cid}/remove")
    if not answer.ok:
        return problem_page(request, answer)
    return see_other("/connections", "Connection removed.")


# --- Sign in (delegated) --------------------------------------------------------------------


async def _sign_in_redirect(request: Request, api: Api, cid: str) -> Response:
    redirect_uri = str(request.url.replace(path=CALLBACK_PATH, query=""))
    answer = await api.call(
        "POST", f"/api/connections/{cid}/sign-in", json={"redirectUri": redirect_uri}
    )
    if not answer.ok:
        return problem_page(request, answer)
    response = RedirectResponse(answer.body["authorizeUrl"], status_code=303)
    # The flow is encrypted by the API; the cookie only carries it to the callback. Lax, so
    # the authority's top-level redirect back brings it along.
    response.set_cookie(
        SIGNIN_COOKIE,
        json.dumps({"connection": cid, "flow": answer.body["flow"]}),
        max_age=900,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=CALLBACK_PATH,
    )
    return response


@router.post("/connections/{cid}/sign-in", response_class=HTMLResponse)
async def start_sign_in(request: Request, cid: str) -> Response:
    api = await begin(request)
    await form_data(request)
    return await _sign_in_redirect(request, api, cid)


@router.get(CALLBACK_PATH, response_class=HTMLResponse)
async def finish_sign_in(request: Request) -> Response:
    api = await begin(request)
    try:
        pending = json.loads(request.cookies.get(SIGNIN_COOKIE, ""))
        cid, flow = str(pending["connection"]), str(pending["flow"])
    except (ValueError, KeyError, TypeError):
        return render(
            request,
            "message.html",
            400,
            title="Sign-in not completed",
            message="No sign-in was started in this browser (or it took too long). Start it "
            "again from the connection's page.",
        )
    query = {k: v for k, v in request.query_params.items()}
    answer = await api.call(
        "POST", f"/api/connections/{cid}/sign-in/complete", json={"flow": flow, "query": query}
    )
    if answer.ok:
        account = (answer.body.get("signIn") or {}).get("account", "")
        response: Response = see_other(f"/connections/{cid}/edit", f"Signed in as {account}.")
    else:
        response = render(
            request, "message.html", answer.status, title="Sign-in failed", message=answer.detail
        )
    response.delete_cookie(SIGNIN_COOKIE, path=CALLBACK_PATH)
    return response
