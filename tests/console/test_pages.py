"""The console without a browser: forms to API documents, schema-driven extra fields, CSRF and
Origin refusal, security headers, and what each auth mode shows."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from shared.console.forms import connection_document, export_document
from shared.console.schema_fields import extra_fields, submitted, values_of
from tests.api.helpers import ADMIN, VIEWER


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_connection_form_becomes_the_api_document() -> None:
    form = {
        "displayName": " Contoso ",
        "credential.kind": "managed-identity",
        "credential.tenantId": "ignored for managed identity",
        "credential.clientId": "",
        "serverAddress": "https://x.crm.dynamics.com",
        "contactIdField": "ContactId",
        "usableBy": "administrators",
    }
    document, errors = connection_document(form, creating=True)
    assert document["credential"] == {"kind": "managed-identity"}
    assert document["displayName"] == "Contoso"
    assert errors == {"agree": "agree that data leaves your Customer Insights compliance boundary"}
    document, errors = connection_document({**form, "agree": "yes"}, creating=False)
    assert errors == {}


def test_schema_fields_offer_new_api_fields() -> None:
    doc: dict[str, Any] = {
        "components": {
            "schemas": {
                "ExportIn": {
                    "properties": {
                        "displayName": {"type": "string"},
                        "schedule": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Refresh"},
                                {"$ref": "#/components/schemas/Cron"},
                            ]
                        },
                        "priority": {"type": "integer"},
                        "notify": {"type": "boolean"},
                    }
                },
                "Refresh": {"type": "object", "properties": {"kind": {"const": "refresh"}}},
                "Cron": {
                    "type": "object",
                    "properties": {"kind": {"const": "cron"}, "expression": {"type": "string"}},
                },
            }
        }
    }
    fields = extra_fields(doc, "ExportIn", {"displayName"})
    by_name = {f.name: f for f in fields}
    assert by_name["schedule.kind"].options == ["refresh", "cron"]
    assert by_name["schedule.expression"].widget == "text"
    assert by_name["priority"].widget == "number"
    assert by_name["notify"].options == ["true", "false"]
    form = {"schedule.kind": "cron", "schedule.expression": "0 0 * * * *", "priority": "3"}
    extra = submitted({**form, "notify": "false"}, fields)
    document = export_document({"displayName": "E", "segments": ["A"]}, extra)
    assert document["schedule"] == {"kind": "cron", "expression": "0 0 * * * *"}
    assert document["priority"] == 3 and document["notify"] is False
    assert values_of(document, fields)["schedule.kind"] == "cron"


def test_csrf_origin_and_headers(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    page = client.get("/connections/new", headers=ADMIN)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "<script>" not in page.text and " style=" not in page.text
    token = csrf_of(page.text)
    form = {"csrf": token, "displayName": "X", "agree": "yes"}
    # No token, a wrong token, or another site's Origin: refused, nothing created.
    for data, extra in (
        ({**form, "csrf": ""}, {}),
        ({**form, "csrf": "x" * 43}, {}),
        (form, {"Origin": "https://evil.example"}),
    ):
        answer = client.post("/connections/new", data=data, headers={**ADMIN, **extra})
        assert answer.status_code == 403, answer.text
    assert client.get("/api/connections", headers=ADMIN).json()["items"] == []
    # The right token gets as far as the API, whose errors come back beside the fields.
    answer = client.post("/connections/new", data=form, headers=ADMIN)
    assert answer.status_code == 422
    assert 'id="serverAddress-error"' in answer.text or 'id="credential-kind-error"' in answer.text


def test_roles_and_modes(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    assert client.get("/exports").status_code == 401  # no App Service session
    viewer = client.get("/exports", headers=VIEWER)
    assert viewer.status_code == 200 and "Add export" not in viewer.text
    assert "Add connection" not in client.get("/connections", headers=VIEWER).text
    entra = make_client(AUTH_MODE="entra", API_AUDIENCE="api://x", ENTRA_TENANT_ID="contoso.test")
    page = entra.get("/")
    assert page.status_code == 401 and "App Service Authentication" in page.text
