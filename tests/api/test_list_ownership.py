"""A marketing list belongs to one export: saving an export whose list names collide with
another export's lists on the same Sales environment is a 409 naming that export."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import ADMIN, CONTRIBUTOR, create_connection, export_body, seed
from tests.api.test_problems import assert_problem


def test_contributor_cannot_target_the_list_of_an_admin_only_export(client: TestClient) -> None:
    data = seed(client)
    private = data["private_export"]  # writes "Admin Lapsed" through the admin-only connection
    before = client.get("/api/exports", headers=ADMIN).json()["items"]
    body = export_body(data["shared"]["id"], segments=["Lapsed"], listName="admin {segment}")
    response = client.post("/api/exports", json=body, headers=CONTRIBUTOR)
    problem = assert_problem(response, 409)
    assert private["id"] in problem["detail"] and "Admin-only export" in problem["detail"]
    assert problem["exportId"] == private["id"] and problem["listName"] == "Admin Lapsed"
    assert client.get("/api/exports", headers=ADMIN).json()["items"] == before


def test_renaming_into_another_exports_list_is_409(client: TestClient) -> None:
    data = seed(client)
    url = f"/api/exports/{data['open_export']['id']}"
    response = client.patch(url, json={"listName": "Admin {segment}"}, headers=ADMIN)
    assert_problem(response, 409)
    # its own names are not a collision with itself
    response = client.patch(url, json={"displayName": "Renamed"}, headers=ADMIN)
    assert response.status_code == 200, response.text


def test_the_same_name_on_another_environment_is_fine(client: TestClient) -> None:
    data = seed(client)
    elsewhere = create_connection(
        client, displayName="Other org", serverAddress="https://fabrikam.crm4.dynamics.com"
    )
    body = export_body(elsewhere["id"], segments=["Lapsed"], listName="Admin {segment}")
    response = client.post("/api/exports", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert data["private_export"]["listName"] == "Admin {segment}"
