"""Through the real Functions entry: function_app.app (AsgiFunctionApp) with built
func.HttpRequest objects, as the Functions host would call it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import azure.functions as func
import pytest

import function_app
from shared.api.deps import ApiContext
from shared.settings import Settings
from tests.api.helpers import ADMIN, VIEWER, base_env, connection_body


@pytest.fixture
def host_app(azurite: Any, table_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """function_app.app with its API's lazily resolved settings pointed at this test's tables."""
    settings = Settings.from_env(base_env(azurite, table_prefix))
    # State keeps attributes in its _state dict (monkeypatch.setattr would delete on undo).
    monkeypatch.setitem(function_app.api.state._state, "context", ApiContext(lambda: settings))
    return function_app.app


def call(app: Any, method: str, path: str, *, headers: Any = None, body: Any = None) -> Any:
    raw = b"" if body is None else json.dumps(body).encode()
    request = func.HttpRequest(
        method=method,
        url=f"http://localhost:7071{path}",
        headers={"Content-Type": "application/json", **(headers or {})},
        body=raw,
    )
    return asyncio.run(app.middleware.handle_async(request, None))


def test_http_binding_is_anonymous_catch_all(function_app_functions: dict[str, Any]) -> None:
    http = function_app_functions["http_app_func"]
    trigger = json.loads(http.get_function_json())["bindings"][0]
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "ANONYMOUS"
    assert trigger["route"] == "/{*route}"


def test_health_and_problem_through_the_host_adapter(host_app: Any) -> None:
    response = call(host_app, "GET", "/api/health")
    assert response.status_code == 200
    assert json.loads(response.get_body()) == {"status": "ok"}
    missing = call(host_app, "GET", "/api/missing", headers=VIEWER)
    assert missing.status_code == 404
    assert missing.mimetype == "application/problem+json"
    unauthenticated = call(host_app, "GET", "/api/connections")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")


def test_create_and_read_a_connection_through_the_host_adapter(host_app: Any) -> None:
    created = call(host_app, "POST", "/api/connections", headers=ADMIN, body=connection_body())
    assert created.status_code == 201
    location = created.headers["Location"]
    body = json.loads(created.get_body())
    assert location == f"/api/connections/{body['id']}"
    read = call(host_app, "GET", location, headers=ADMIN)
    assert read.status_code == 200
    assert json.loads(read.get_body())["displayName"] == "Contoso Sales (prod)"
    assert read.headers["ETag"] == created.headers["ETag"]
