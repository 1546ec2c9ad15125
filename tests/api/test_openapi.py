"""The OpenAPI document covers the design's HTTP API contract; docs are served beside it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import ADMIN, connection_body
from tests.api.test_problems import assert_problem

CONTRACT = {
    "/api/connections": {"get", "post"},
    "/api/connections/{connection_id}": {"get", "patch", "delete"},
    "/api/connections/{connection_id}/test": {"post"},
    "/api/connections/{connection_id}/sign-in": {"post"},
    "/api/connections/{connection_id}/sign-in/complete": {"post"},
    "/api/exports": {"get", "post"},
    "/api/exports/{export_id}": {"get", "patch", "delete"},
    "/api/exports/{export_id}/runs": {"get", "post"},
    "/api/exports/{export_id}/runs/{run_id}": {"get"},
    "/api/exports/{export_id}/runs/{run_id}/rejections": {"get"},
    "/api/exports/{export_id}/runs/{run_id}/cancel": {"post"},
    "/api/runs": {"post"},
    "/api/segments": {"get"},
    "/api/segments/{name}": {"get", "put", "delete"},
    "/api/customers": {"post"},
    "/api/customers/{customer_id}": {"get"},
    "/api/customer-imports": {"get", "post"},
    "/api/customer-imports/{import_id}": {"get"},
    "/api/sources/{kind}/segments": {"get"},
    "/api/health": {"get"},
    "/api/notifications/targets": {"get", "post"},
    "/api/notifications/targets/{target_id}": {"get", "patch", "delete"},
    "/api/me": {"get"},
}


def test_openapi_lists_every_contract_route(client: TestClient) -> None:
    response = client.get("/api/openapi.json", headers=ADMIN)
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {path: set(ops) for path, ops in paths.items()} == CONTRACT
    connection_in = response.json()["components"]["schemas"]["ConnectionIn"]
    assert connection_in["additionalProperties"] is False
    assert "displayName" in connection_in["properties"]


def test_docs_page_beside_the_schema(client: TestClient) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert "/api/openapi.json" in response.text


def test_openapi_needs_an_identity(client: TestClient) -> None:
    assert_problem(client.get("/api/openapi.json"), 401)


def test_json_routes_refuse_other_media_types(client: TestClient) -> None:
    body = connection_body()
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = client.post(
            "/api/connections",
            content=str(body).encode(),
            headers={**ADMIN, "Content-Type": content_type},
        )
        assert_problem(response, 415)
    assert_problem(client.post("/api/connections", headers=ADMIN), 422)  # no body at all


def test_openapi_declares_bearer_security_except_health(client: TestClient) -> None:
    schema = client.get("/api/openapi.json", headers=ADMIN).json()
    assert schema["components"]["securitySchemes"]["entra"]["scheme"] == "bearer"
    assert schema["security"] == [{"entra": []}]
    assert schema["paths"]["/api/health"]["get"]["security"] == []
