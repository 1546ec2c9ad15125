"""Every error is problem+json: unknown route, wrong method, body too large (declared and
streamed), malformed JSON, unhandled exceptions (500 without internals)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from shared.api.app import create_api
from shared.api.problems import field_path
from shared.api.routes.runs import csv_cell
from shared.settings import Settings
from tests.api.helpers import ADMIN, base_env

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    return body


def test_unknown_route_is_404_problem(client: TestClient) -> None:
    body = assert_problem(client.get("/api/nothing-here", headers=ADMIN), 404)
    assert body["instance"] == "/api/nothing-here"
    assert_problem(client.get("/elsewhere"), 404)


def test_wrong_method_is_405_problem_with_allow(client: TestClient) -> None:
    response = client.put("/api/health")
    assert_problem(response, 405)
    assert "GET" in response.headers["allow"]


def test_body_over_limit_is_413_declared_and_streamed(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(MAX_UPLOAD_BYTES="2048")
    big = b"[" + b'"x",' * 1000 + b'"x"]'
    body = assert_problem(
        client.put(
            "/api/segments/s1",
            content=big,
            headers={**ADMIN, "Content-Type": "application/json"},
        ),
        413,
    )
    assert "2048" in body["detail"]

    def chunks() -> Any:  # no Content-Length: chunked transfer
        for _ in range(10):
            yield b"x" * 512

    assert_problem(
        client.put(
            "/api/segments/s1", content=chunks(), headers={**ADMIN, "Content-Type": "text/csv"}
        ),
        413,
    )


def test_bad_content_length_is_400(client: TestClient) -> None:
    response = client.post("/api/runs", content=b"", headers={**ADMIN, "Content-Length": "abc"})
    assert_problem(response, 400)


def test_malformed_json_is_400(client: TestClient, azurite: Any) -> None:
    response = client.post(
        "/api/connections",
        content=b'{"displayName": ',
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    body = assert_problem(response, 400)
    assert body["errors"] == [{"field": "body", "message": "not valid JSON"}]


def test_unhandled_exception_is_500_without_internals(azurite: Any, table_prefix: str) -> None:
    settings = Settings.from_env(base_env(azurite, table_prefix))

    def broken_store(_: Settings) -> Any:
        raise RuntimeError("internal-detail-7f3a at /secret/path")

    api = create_api(lambda: settings, store_factory=broken_store)
    with TestClient(api, raise_server_exceptions=False) as client:
        response = client.get("/api/connections", headers=ADMIN)
    body = assert_problem(response, 500)
    assert "internal-detail-7f3a" not in response.text
    assert "RuntimeError" not in response.text
    assert body["instance"] == "/api/connections"


def test_configuration_error_is_500_problem_without_setting_values() -> None:
    from shared.errors import ConfigurationError

    def no_settings() -> Settings:
        raise ConfigurationError("setting AzureWebJobsStorage (or STORAGE_CONNECTION) is required")

    with TestClient(create_api(no_settings), raise_server_exceptions=False) as client:
        body = assert_problem(client.get("/api/connections", headers=ADMIN), 500)
        posted = assert_problem(client.post("/api/runs", headers=ADMIN), 500)  # body limit path
    assert "STORAGE_CONNECTION" not in body["detail"]
    assert body["type"] == posted["type"] == "urn:segment-export:problem:configuration"


def test_field_paths_name_fields_not_pydantic_internals() -> None:
    assert field_path(("body", "credential", "client-secret", "tenantId")) == "credential.tenantId"
    assert field_path(("body", "segments", 2)) == "segments[2]"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("body",)) == "body"


def test_csv_cells_are_formula_safe() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    for risky in ("+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(risky) == "'" + risky
    assert csv_cell("C-1") == "C-1"
    assert csv_cell(None) == ""
