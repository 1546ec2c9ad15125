"""The admin console: server-rendered pages at ``/`` that are a client of the HTTP API.

Every action goes through the public API's routes (called in process over ASGI with the
caller's own identity headers), so roles, validation and problems are the API's. Jinja2
templates, one plain ES module and a stylesheet served from this package: no CDN, no build step.
A strict Content-Security-Policy (no inline script or style) and a CSRF token on every form.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def console_routers() -> list[APIRouter]:
    from shared.console.pages import connections, data, exports, home, runs

    return [m.router for m in (home, connections, exports, runs, data)]


def mount_console(api: FastAPI) -> list[APIRouter]:
    """Add the console's pages and assets to the API app (cheap: templates load lazily);
    returns the pages' routers (the request gate reads their routes)."""
    from fastapi import Request
    from fastapi.responses import Response

    from shared.console.pages.common import Denied
    from shared.console.web import SecurityHeadersMiddleware, static_app

    async def denied(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Denied)
        return exc.response

    routers = console_routers()
    for router in routers:
        api.include_router(router)
    api.mount("/console-assets", static_app(), name="console-assets")
    api.add_exception_handler(Denied, denied)
    api.add_middleware(SecurityHeadersMiddleware)
    return routers
