"""Two plain ASGI middlewares: a last-resort 500 problem that never shows internals, and the
request gate (caller from the headers first, then the body limited per route while it streams,
413)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from re import Pattern

from fastapi import HTTPException
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api.deps import CALLER_KEY, ApiContext, get_caller, resolve_caller
from shared.api.limits import MAX_BODY_BYTES, UPLOAD_ROUTES
from shared.api.problems import CONFIGURATION_DETAIL, ApiProblem, problem_response
from shared.errors import ConfigurationError

log = logging.getLogger("shared.api")


class GuardMiddleware:
    """Catches anything unhandled: logs its type and place (not request data) and answers a
    plain 500 problem. Starlette's own ServerErrorMiddleware would re-raise after answering."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if isinstance(exc, ConfigurationError):  # raised outside the routes (body limit)
                log.error("configuration error: %s", exc)
                detail, kind = CONFIGURATION_DETAIL, "configuration"
            else:
                log.exception(
                    "unhandled error answering %s %s", scope.get("method"), scope.get("path")
                )
                detail, kind = (
                    "The server failed to answer this request. It has been logged.",
                    "internal",
                )
            if started:
                return
            response = problem_response(
                None, 500, detail, kind=kind, instance=str(scope.get("path", ""))
            )
            await response(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its route's limit. A FastAPI HTTPException so
    FastAPI's own body reader passes it on; answered as a 413 problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit), headers={"Connection": "close"})


def too_large(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


@dataclass(frozen=True, slots=True)
class RouteRule:
    """What RequestGate needs to know about one route."""

    path: Pattern[str]
    methods: frozenset[str]
    needs_caller: bool  # its dependencies resolve the caller (get_caller)
    upload: bool  # listed in shared.api.limits.UPLOAD_ROUTES


def _depends_on(dependant: Dependant, target: Callable[..., object]) -> bool:
    return any(sub.call is target or _depends_on(sub, target) for sub in dependant.dependencies)


def route_rules(routes: Iterable[APIRoute]) -> list[RouteRule]:
    return [
        RouteRule(
            path=route.path_regex,
            methods=frozenset(route.methods or ()),
            needs_caller=_depends_on(route.dependant, get_caller),
            upload=any((m, route.path) in UPLOAD_ROUTES for m in route.methods or ()),
        )
        for route in routes
    ]


class RequestGate:
    """Runs before any route reads a byte of the body (issue 11 #7):

    1. a route that needs a caller gets it from the headers alone; a request without a usable
       identity is answered 401 (403, 503) at once and its body is never read;
    2. the body then streams to the route through a counting ``receive``: a declared
       Content-Length over the route's limit is a 413 before reading, and a body that passes
       the limit while streaming (chunked, or lying about its length) stops there with a 413.
       Nothing is buffered here; the route reads the body itself.

    Limits (shared.api.limits): MAX_UPLOAD_BYTES on the upload routes, MAX_BODY_BYTES elsewhere.
    Requests that match no route pass through (404/405 read no body)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Callable[[], Sequence[RouteRule]],
        context: Callable[[], ApiContext],
    ) -> None:
        self.app = app
        self._rules = rules
        self._context = context

    def _rule(self, scope: Scope) -> RouteRule | None:
        path, method = scope.get("path", ""), scope.get("method", "")
        for rule in self._rules():
            if method in rule.methods and rule.path.match(path):
                return rule
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self._rule(scope)
        if rule is not None and rule.needs_caller:
            headers = Headers(scope=scope)
            try:
                caller = await run_in_threadpool(
                    resolve_caller, self._context().resolver(), headers
                )
            except ApiProblem as refused:
                await self._answer(scope, receive, send, refused)
                return
            scope.setdefault("state", {})[CALLER_KEY] = caller
        limit = MAX_BODY_BYTES
        if rule is not None and rule.upload:
            limit = self._context().settings().max_upload_bytes
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                malformed = ApiProblem(
                    400, "Content-Length is not a number.", kind="malformed-body"
                )
                await self._answer(scope, receive, send, malformed)
                return
            if int(declared) > limit:
                await self._answer(scope, receive, send, _problem(limit))
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except BodyTooLarge:  # read outside a route's exception handling
            if not started:
                await self._answer(scope, receive, send, _problem(limit))

    @staticmethod
    async def _answer(scope: Scope, receive: Receive, send: Send, problem: ApiProblem) -> None:
        headers = {"Connection": "close", **problem.headers}  # the unread body is dropped
        response = problem_response(
            None,
            problem.status,
            problem.detail,
            kind=problem.kind,
            title=problem.title,
            headers=headers,
            instance=str(scope.get("path", "")),
        )
        await response(scope, receive, send)


def _problem(limit: int) -> ApiProblem:
    return ApiProblem(413, too_large(limit), kind="body-too-large")
