"""What every page does first: find out who is calling (through the API) and check CSRF."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from shared.console.web import CSRF_FIELD, CSRF_HEADER, Api, csrf_ok, render

RANK = {"Viewer": 1, "Contributor": 2, "Admin": 3}


class Denied(Exception):
    def __init__(self, response: HTMLResponse) -> None:
        self.response = response


async def begin(request: Request) -> Api:
    """The API client for this page, with ``request.state.me`` set; raises Denied with a page
    that says why when the API does not know the caller."""
    api = Api(request)
    answer = await api.get("/api/me")
    if answer.ok:
        me = dict(answer.body)
        me["rank"] = RANK.get(me.get("role", ""), 0)
        request.state.me = me
        return api
    await api.close()
    request.state.me = None
    if answer.status == 401:
        mode = ""
        try:
            mode = request.app.state.context.settings().auth_mode.value
        except Exception:
            mode = ""
        if mode == "entra":
            message = (
                "The console needs App Service Authentication: this app runs with "
                "AUTH_MODE=entra, which accepts bearer tokens only, and a browser page has none. "
                "Deploy it with App Service Authentication on and AUTH_MODE=easyauth, or call "
                "the API with a token (see /api/docs)."
            )
        else:
            message = f"Sign in first. {answer.detail}"
        raise Denied(
            render(request, "message.html", 401, title="Sign-in required", message=message)
        )
    raise Denied(
        render(request, "message.html", answer.status, title="No access", message=answer.detail)
    )


async def form_data(request: Request) -> dict[str, Any]:
    """The posted form as a dict (repeated names become lists); 403 page on a bad CSRF token."""
    form = await request.form()
    values: dict[str, Any] = {}
    for key in form:
        items = form.getlist(key)
        values[key] = items if len(items) > 1 or key.endswith("[]") else items[0]
    submitted = values.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not csrf_ok(request, submitted if isinstance(submitted, str) else None):
        raise Denied(
            render(
                request,
                "message.html",
                403,
                title="Form expired",
                message="The form was not sent from this console (or it expired). Reload the "
                "page and try again.",
            )
        )
    return values


def check_csrf_header(request: Request) -> None:
    if not csrf_ok(request, request.headers.get(CSRF_HEADER)):
        raise Denied(render(request, "message.html", 403, title="Form expired", message="Reload."))


def errors_for(errors: Mapping[str, str], name: str) -> str:
    """The API error for a form field named with the API's field path (``segments`` also
    collects ``segments[2]``)."""
    if name in errors:
        return errors[name]
    for field, message in errors.items():
        if field.startswith(name + "["):
            return message
    return ""
