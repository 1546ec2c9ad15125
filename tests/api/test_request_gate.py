"""Issue 11 #7: a caller is authenticated from the headers before one byte of the body is read;
bodies are limited per route while they stream (uploads: MAX_UPLOAD_BYTES; anything else:
1 MiB); JSON nested absurdly deep is a 400, never a 500."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_api
from shared.api.limits import MAX_BODY_BYTES, UPLOAD_ROUTES
from shared.settings import Settings
from tests.api.helpers import ADMIN, base_env

CHUNK = 64 * 1024
ENV = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",  # never reached: no store is built
    "AUTH_MODE": "easyauth",
    "WEBSITE_AUTH_ENABLED": "true",
}


class Sender:
    """The client side of one ASGI request: an endless body, counted as it is pulled."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total  # None: never ends
        self.pulls = 0
        self.sent = 0
        self.messages: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.pulls += 1
        size = CHUNK if self.total is None else min(CHUNK, self.total - self.sent)
        self.sent += size
        more = self.total is None or self.sent < self.total
        return {"type": "http.request", "body": b"[" * size, "more_body": more}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def problem(self) -> dict[str, Any]:
        headers = dict(self.messages[0]["headers"])
        assert headers[b"content-type"] == b"application/problem+json"
        body = b"".join(m.get("body", b"") for m in self.messages[1:])
        return dict(json.loads(body))


def call(
    method: str,
    path: str,
    sender: Sender,
    headers: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    *,
    real_store: bool = False,
) -> Sender:
    settings = Settings.from_env({**ENV, **(env or {})})

    def no_store(_: Settings) -> Any:
        raise AssertionError("the store must not be touched")

    app = create_api(lambda: settings, store_factory=None if real_store else no_store)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, sender.receive, sender.send))
    return sender


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/connections"),
        ("PUT", "/api/segments/big"),  # an upload route: large bodies are allowed, not anonymous
        ("POST", "/api/customers"),
        ("PATCH", "/api/exports/e1"),
    ],
)
@pytest.mark.parametrize("declared", [True, False])
def test_anonymous_body_is_refused_before_it_is_read(
    method: str, path: str, declared: bool
) -> None:
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(60 * 1024 * 1024)
    sender = call(method, path, Sender(), headers)
    assert sender.status == 401
    assert sender.problem["status"] == 401
    assert sender.pulls == 0  # not one chunk of the body was read


def test_every_route_that_needs_a_caller_refuses_an_anonymous_body_unread() -> None:
    """Every operation in the OpenAPI document (all but /api/health) is gated, so a router added
    later cannot skip the gate."""
    paths = create_api(lambda: Settings.from_env(ENV)).openapi()["paths"]
    checked = 0
    for template, item in paths.items():
        if template == "/api/health":
            continue
        path = re.sub(r"\{[^}]+\}", "x1", template)
        for method in item:
            sender = call(method.upper(), path, Sender(), {"Content-Type": "application/json"})
            assert (sender.status, sender.pulls) == (401, 0), (method, template)
            checked += 1
    assert checked >= 20


def test_a_caller_without_a_role_is_refused_before_the_body_is_read() -> None:
    from tests.api.helpers import NO_ROLE

    sender = call("POST", "/api/connections", Sender(), {**NO_ROLE, "Content-Length": "9"})
    assert sender.status == 403
    assert sender.pulls == 0


def test_json_body_over_1_mib_is_413_while_it_streams() -> None:
    sender = call("POST", "/api/connections", Sender(), {**ADMIN, "Content-Type": "text/json"})
    assert sender.status == 413
    problem = sender.problem
    assert problem["type"].endswith(":body-too-large")
    assert str(MAX_BODY_BYTES) in problem["detail"]
    assert sender.sent <= MAX_BODY_BYTES + CHUNK  # stopped as soon as the limit was passed


def test_declared_length_over_the_limit_is_413_before_reading() -> None:
    headers = {**ADMIN, "Content-Length": str(MAX_BODY_BYTES + 1)}
    sender = call("POST", "/api/exports", Sender(), headers)
    assert sender.status == 413
    assert sender.pulls == 0


def test_upload_routes_stream_up_to_max_upload_bytes(azurite: Any, table_prefix: str) -> None:
    limit = 3 * 1024 * 1024
    env = base_env(azurite, table_prefix, MAX_UPLOAD_BYTES=str(limit))
    headers = {**ADMIN, "Content-Type": "text/csv"}
    sender = call("PUT", "/api/segments/big", Sender(), headers, env, real_store=True)
    assert sender.status == 413
    assert limit < sender.sent <= limit + CHUNK


def test_every_upload_route_exists() -> None:
    from fastapi.routing import APIRoute

    from shared.console import console_routers

    paths = create_api(lambda: Settings.from_env(ENV)).openapi()["paths"]
    known = {(method.upper(), path) for path, item in paths.items() for method in item}
    known |= {  # the console's upload pages (not in the API's schema)
        (method, route.path)
        for router in console_routers()
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert set(UPLOAD_ROUTES) <= known


DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/connections"),
        ("PATCH", "/api/connections/c1"),
        ("POST", "/api/exports"),
        ("PUT", "/api/segments/deep"),
        ("POST", "/api/customers"),
    ],
)
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
def test_json_nested_100000_deep_is_400(
    make_client: Callable[..., TestClient], method: str, path: str, body: bytes
) -> None:
    client = make_client()
    response = client.request(
        method, path, content=body, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_an_upload_over_1_mib_is_accepted(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    ids = [f"customer-{n:012d}" for n in range(60_000)]  # ~1.4 MB of CSV
    body = ("CustomerId\n" + "\n".join(ids) + "\n").encode()
    assert len(body) > MAX_BODY_BYTES
    response = client.put(
        "/api/segments/large", content=body, headers={**ADMIN, "Content-Type": "text/csv"}
    )
    assert response.status_code in (200, 201), response.text
    assert response.json()["members"] == len(ids)
