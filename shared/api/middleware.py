"""Two plain ASGI middlewares: a last-resort 500 problem that never shows internals, and the
upload limit (declared Content-Length and the streamed length) answered with 413."""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.api.problems import CONFIGURATION_DETAIL, problem_response
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


class BodyLimitMiddleware:
    """Refuses bodies over the limit before any route sees them. The limit comes from settings,
    resolved lazily (``limit()`` is called per request, after the first it is a cached read)."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(scope, receive, send, 400, "Content-Length is not a number.")
                    return
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, 413, self._too_large(limit))
            return
        # Read the stream ourselves: Content-Length may be absent (chunked) or lie.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, 413, self._too_large(limit))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _too_large(limit: int) -> str:
        return f"The request body is larger than the limit of {limit} bytes."

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        response = problem_response(
            None,
            status,
            detail,
            kind="body-too-large" if status == 413 else "malformed-body",
            instance=str(scope.get("path", "")),
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
