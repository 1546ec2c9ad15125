"""Console plumbing: templates, the in-process API client, the CSRF token, security headers."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).resolve().parent
CSRF_COOKIE = "segexp_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
# Identity headers the API reads: App Service Authentication's principal, or a bearer token.
FORWARDED = ("x-ms-client-principal", "authorization")
_env: Any = None


def templates() -> Any:
    global _env
    if _env is None:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

        _env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _env


def static_app() -> StaticFiles:
    return StaticFiles(directory=HERE / "static")


# --- the API, in process ------------------------------------------------------------------------


@dataclass
class ApiAnswer:
    status: int
    body: Any
    headers: httpx.Headers

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or "")
        return ""

    def field_errors(self) -> dict[str, str]:
        """problem+json ``errors`` by field path (``credential.tenantId``, ``segments[0]``)."""
        out: dict[str, str] = {}
        if isinstance(self.body, dict):
            for error in self.body.get("errors") or []:
                if isinstance(error, dict) and error.get("field"):
                    out.setdefault(str(error["field"]), str(error.get("message", "")))
        return out


class Api:
    """Calls the public API routes of this same app over ASGI, as the page's caller."""

    def __init__(self, request: Request) -> None:
        headers = {h: v for h in FORWARDED if (v := request.headers.get(h))}
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=request.app),
            base_url="http://console.internal",
            headers=headers,
            timeout=120.0,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiAnswer:
        response = await self._client.request(
            method, path, json=json, params=params, content=content, headers=headers
        )
        body: Any = None
        if "json" in response.headers.get("content-type", ""):
            body = response.json()
        elif response.content:
            body = response.text
        return ApiAnswer(response.status_code, body, response.headers)

    async def get(self, path: str, **params: Any) -> ApiAnswer:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return await self.call("GET", path, params=clean or None)

    async def close(self) -> None:
        await self._client.aclose()


# --- CSRF: a random token in a SameSite=Strict cookie, echoed by every form -------------------


def csrf_token(request: Request) -> str:
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(32))
    return token


def set_csrf_cookie(request: Request, response: Response) -> None:
    new = request.state.__dict__.get("new_csrf")
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )


def same_origin(request: Request) -> bool:
    """Browsers send Origin on POST; when present it must be this site."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return (
        same_origin(request)
        and bool(cookie)
        and bool(submitted)
        and hmac.compare_digest(cookie.encode(), str(submitted).encode())
    )


# --- rendering ------------------------------------------------------------------------------


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("me", getattr(request.state, "me", None))
    context.setdefault("flash", request.query_params.get("done", ""))
    html = (
        templates()
        .get_template(name)
        .render(request=request, csrf=csrf_token(request), path=request.url.path, **context)
    )
    response = HTMLResponse(html, status_code=status)
    set_csrf_cookie(request, response)
    return response


def see_other(url: str, done: str = "") -> RedirectResponse:
    if done:
        from urllib.parse import quote

        url += ("&" if "?" in url else "?") + "done=" + quote(done)
    return RedirectResponse(url, status_code=303)


def problem_page(request: Request, answer: ApiAnswer) -> HTMLResponse:
    return render(
        request, "message.html", status=answer.status, title="Not done", message=answer.detail
    )


# --- security headers on every console response --------------------------------------------


class SecurityHeadersMiddleware:
    """CSP without inline script or style, no framing, no referrer, no sniffing. ``form-action``
    allows the Entra authority because Sign in redirects a form post to it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith("/api/"):
            await self.app(scope, receive, send)
            return
        authority = ""
        try:
            ctx = scope["app"].state.context if "app" in scope else None
            if ctx is not None:
                authority = ctx.settings().entra_authority_host
        except Exception:  # settings problems show on the page itself
            authority = ""
        csp = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; form-action 'self' {authority}; frame-ancestors 'none'; "
            "base-uri 'none'; object-src 'none'"
        )

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),  # keeps Origin on same-site form posts
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
