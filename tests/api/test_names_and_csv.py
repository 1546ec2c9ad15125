"""Issue 11 #12: the rejections CSV neutralises every formula lead-in; segment, export and
connection names are NFC and refuse invisible formatting characters (422)."""

from __future__ import annotations

import unicodedata

import pytest
from fastapi.testclient import TestClient

from shared.api.routes.runs import csv_cell
from tests.api.helpers import ADMIN, connection_body


@pytest.mark.parametrize(
    "risky",
    [
        "=1+1",
        "+1",
        "-1",
        "@SUM(A1)",
        " =1+1",  # a leading space: some spreadsheets trim it, then evaluate
        "\t=1",
        "\r=1",
        "\n=1",
        "\u3000=1",  # ideographic space
        "\u00a0=1",  # no-break space
        "\uff1d1+1",  # full-width =
        "\uff0b1",  # full-width +
        "\uff0d1",  # full-width -
        "\uff201",  # full-width @
    ],
)
def test_csv_cells_neutralise_every_formula_lead_in(risky: str) -> None:
    assert csv_cell(risky) == "'" + risky


def test_csv_cells_leave_plain_values() -> None:
    for plain in ("C-1", "customer 7", "", "Ångström", "1"):
        assert csv_cell(plain) == plain


FORMAT = [
    "\u202eevil",  # right-to-left override
    "a\u200bb",  # zero-width space
    "a\u200db",  # zero-width joiner
    "\ufeffbom",  # byte order mark
    "a\u2066b\u2069",  # isolates
    "soft\u00adhyphen",
]


@pytest.mark.parametrize("name", FORMAT)
def test_segment_names_refuse_format_characters(client: TestClient, name: str) -> None:
    response = client.put(
        f"/api/segments/{name}", content=b"c1\n", headers={**ADMIN, "Content-Type": "text/csv"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "name"


def test_segment_names_are_stored_nfc_and_found_either_way(client: TestClient) -> None:
    nfd = unicodedata.normalize("NFD", "Café Ünïcode")
    nfc = unicodedata.normalize("NFC", nfd)
    assert nfd != nfc
    put = client.put(
        f"/api/segments/{nfd}", content=b"c1\nc2\n", headers={**ADMIN, "Content-Type": "text/csv"}
    )
    assert put.status_code in (200, 201), put.text
    assert put.json()["name"] == nfc
    assert client.get(f"/api/segments/{nfc}", headers=ADMIN).json()["name"] == nfc
    assert client.get(f"/api/segments/{nfd}", headers=ADMIN).json()["name"] == nfc
    listed = [s["name"] for s in client.get("/api/segments", headers=ADMIN).json()["items"]]
    assert listed.count(nfc) == 1 and nfd not in listed


@pytest.mark.parametrize("name", FORMAT)
def test_connection_and_export_names_refuse_format_characters(
    client: TestClient, name: str
) -> None:
    refused = client.post("/api/connections", json=connection_body(displayName=name), headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["displayName"]
    assert "U+" in refused.json()["errors"][0]["message"]
    created = client.post("/api/connections", json=connection_body(), headers=ADMIN)
    assert created.status_code == 201, created.text
    export = {
        "displayName": name,
        "connectionId": created.json()["id"],
        "segments": ["VIP"],
    }
    refused = client.post("/api/exports", json=export, headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["displayName"]
    export = {**export, "displayName": "ok", "segments": [name]}
    refused = client.post("/api/exports", json=export, headers=ADMIN)
    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["segments[0]"]
    assert "U+" in refused.json()["errors"][0]["message"]  # refused as a name, not as unknown


def test_export_names_are_stored_nfc(client: TestClient) -> None:
    created = client.post("/api/connections", json=connection_body(), headers=ADMIN).json()
    nfd = unicodedata.normalize("NFD", "Résumé")
    put = client.put(
        "/api/segments/Résumé", content=b"c1\n", headers={**ADMIN, "Content-Type": "text/csv"}
    )
    assert put.status_code == 201, put.text
    export = {"displayName": nfd, "connectionId": created["id"], "segments": [nfd]}
    response = client.post("/api/exports", json=export, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["displayName"] == "Résumé" and body["segments"] == ["Résumé"]
