"""/api/exports on Azurite: validation (nothing stored), permissions per role, If-Match, saving
never runs."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import (
    ADMIN,
    CONTRIBUTOR,
    VIEWER,
    create_connection,
    create_export,
    export_body,
    seed,
)
from tests.api.test_problems import assert_problem


def _exports(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get("/api/exports", headers=ADMIN).json()["items"])


def test_create_by_contributor_on_usable_connection(client: TestClient) -> None:
    data = seed(client)
    response = create_export(
        client,
        data["shared"]["id"],
        headers=CONTRIBUTOR,
        displayName="Carl's",
        mode="additive",
        listName="Carl {segment}",  # "{segment}" is the seeded export's lists (409)
    )
    body = response.json()
    assert response.headers["location"] == f"/api/exports/{body['id']}"
    assert response.headers["etag"]
    assert body["mode"] == "additive" and body["enabled"] is True
    assert body["createdBy"] == "carl@contoso.test"
    assert body["yourPermissions"] == "edit"
    assert body["detached"] is False


def test_defaults(client: TestClient) -> None:
    seed(client)
    # another environment: the seeded exports' lists there are named "{segment}" already
    other = create_connection(client, serverAddress="https://fabrikam.crm4.dynamics.com")
    body = {"displayName": "Minimal", "connectionId": other["id"], "segments": ["Lapsed"]}
    created = client.post("/api/exports", json=body, headers=ADMIN).json()
    assert (created["mode"], created["enabled"], created["listName"]) == (
        "mirror",
        True,
        "{segment}",
    )


def test_saving_never_runs(client: TestClient) -> None:
    data = seed(client)
    export_id = data["open_export"]["id"]
    assert client.get(f"/api/exports/{export_id}/runs", headers=ADMIN).json()["items"] == []
    client.patch(f"/api/exports/{export_id}", json={"enabled": False}, headers=ADMIN)
    assert client.get(f"/api/exports/{export_id}/runs", headers=ADMIN).json()["items"] == []


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("empty segments", {"segments": []}, "segments"),
    ("unknown segment", {"segments": ["High value", "Nope"]}, "segments[1]"),
    ("duplicate segment", {"segments": ["Lapsed", "Lapsed"]}, "segments[1]"),
    ("too many", {"segments": [f"s{i}" for i in range(51)]}, "segments"),
    ("segment type", {"segments": [5]}, "segments[0]"),
    ("segment chars", {"segments": ["a/b"]}, "segments[0]"),
    ("mode", {"mode": "replace"}, "mode"),
    ("enabled", {"enabled": "perhaps"}, "enabled"),
    ("placeholder", {"listName": "{segment}-{date}"}, "listName"),
    ("format spec", {"listName": "{segment:>300}"}, "listName"),
    ("brace", {"listName": "{segment"}, "listName"),
    ("rendered too long", {"listName": "{segment}" + "x" * 120}, "listName"),
    ("same name", {"listName": "{export}"}, "listName"),
    ("name", {"displayName": "y" * 101}, "displayName"),
    ("schedule type", {"schedule": "daily"}, "schedule"),
    ("schedule kind", {"schedule": {"kind": "hourly"}}, "schedule"),
    ("cron without expression", {"schedule": {"kind": "cron"}}, "schedule.expression"),
    (
        "cron 5 fields",
        {"schedule": {"kind": "cron", "expression": "0 2 * * *"}},
        "schedule.expression",
    ),
    (
        "cron range",
        {"schedule": {"kind": "cron", "expression": "0 0 25 * * *"}},
        "schedule.expression",
    ),
    (
        "cron never",
        {"schedule": {"kind": "cron", "expression": "0 0 0 30 Feb *"}},
        "schedule.expression",
    ),
    (
        "off with expression",
        {"schedule": {"kind": "off", "expression": "* * * * * *"}},
        "schedule.expression",
    ),
    ("unknown field", {"cadence": "daily"}, "cadence"),
    ("unknown connection", {"connectionId": "0" * 32}, "connectionId"),
]


@pytest.mark.parametrize(("label", "change", "field"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_export_is_422_naming_the_field_and_stores_nothing(
    client: TestClient, label: str, change: dict[str, Any], field: str
) -> None:
    data = seed(client)
    before = _exports(client)
    response = client.post(
        "/api/exports", json=export_body(data["shared"]["id"], **change), headers=ADMIN
    )
    body = assert_problem(response, 422)
    assert field in [e["field"] for e in body["errors"]], body
    assert _exports(client) == before


def test_list_name_at_the_dataverse_limit_is_accepted(client: TestClient) -> None:
    data = seed(client)
    # "High value" is 10 characters: 10 + 118 = 128
    create_export(client, data["shared"]["id"], listName="{segment}" + "x" * 118)


def test_contributor_cannot_use_an_admin_only_connection(client: TestClient) -> None:
    data = seed(client)
    response = client.post(
        "/api/exports", json=export_body(data["private"]["id"]), headers=CONTRIBUTOR
    )
    body = assert_problem(response, 422)
    assert body["errors"] == [
        {"field": "connectionId", "message": "no such connection usable by you"}
    ]


def test_every_role_reads_all_exports_with_permissions(client: TestClient) -> None:
    data = seed(client)
    permissions = {
        who: {
            e["displayName"]: e["yourPermissions"]
            for e in client.get("/api/exports", headers=headers).json()["items"]
        }
        for who, headers in (("admin", ADMIN), ("contributor", CONTRIBUTOR), ("viewer", VIEWER))
    }
    assert permissions == {
        "admin": {"Spring promo": "edit", "Admin-only export": "edit"},
        "contributor": {"Spring promo": "edit", "Admin-only export": "view"},
        "viewer": {"Spring promo": "view", "Admin-only export": "view"},
    }
    one = client.get(f"/api/exports/{data['private_export']['id']}", headers=CONTRIBUTOR)
    assert one.status_code == 200 and one.json()["yourPermissions"] == "view"


def test_contributor_changes_only_exports_on_usable_connections(client: TestClient) -> None:
    data = seed(client)
    private_url = f"/api/exports/{data['private_export']['id']}"
    open_url = f"/api/exports/{data['open_export']['id']}"
    assert_problem(client.patch(private_url, json={"enabled": False}, headers=CONTRIBUTOR), 403)
    assert_problem(client.delete(private_url, headers=CONTRIBUTOR), 403)
    assert_problem(client.post(private_url + "/runs", headers=CONTRIBUTOR), 403)
    moved = client.patch(
        open_url, json={"connectionId": data["private"]["id"]}, headers=CONTRIBUTOR
    )
    assert assert_problem(moved, 422)["errors"][0]["field"] == "connectionId"
    changed = client.patch(open_url, json={"segments": ["Lapsed"]}, headers=CONTRIBUTOR)
    assert changed.status_code == 200
    assert changed.json()["segments"] == ["Lapsed"]
    assert changed.json()["updatedBy"] == "carl@contoso.test"
    assert changed.json()["createdBy"] == "ada@contoso.test"
    for verb in ("patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"enabled": False}} if verb == "patch" else {}
        assert_problem(getattr(client, verb)(open_url, headers=VIEWER, **kwargs), 403)
    assert_problem(
        client.post("/api/exports", json=export_body(data["shared"]["id"]), headers=VIEWER), 403
    )
    assert client.delete(open_url, headers=CONTRIBUTOR).status_code == 204
    assert_problem(client.get(open_url, headers=ADMIN), 404)


def test_patch_validates_the_merged_export(client: TestClient) -> None:
    data = seed(client)
    url = f"/api/exports/{data['open_export']['id']}"
    before = client.get(url, headers=ADMIN).json()
    assert_problem(client.patch(url, json={"segments": ["Nope"]}, headers=ADMIN), 422)
    assert_problem(client.patch(url, json={"connectionId": None}, headers=ADMIN), 422)
    assert_problem(client.patch(url, json={"listName": "same"}, headers=ADMIN), 422)
    assert_problem(client.patch(url, json={"displayName": None}, headers=ADMIN), 422)
    assert_problem(client.patch(url, json={"bogus": 1}, headers=ADMIN), 422)
    assert client.get(url, headers=ADMIN).json() == before
    # null resets a field that has a default (RFC 7396 merge patch)
    client.patch(url, json={"mode": "additive"}, headers=ADMIN)
    reset = client.patch(url, json={"mode": None}, headers=ADMIN)
    assert reset.status_code == 200 and reset.json()["mode"] == "mirror"


def test_patch_and_delete_honour_if_match(client: TestClient) -> None:
    data = seed(client)
    url = f"/api/exports/{data['open_export']['id']}"
    etag = client.get(url, headers=ADMIN).headers["etag"]
    ok = client.patch(url, json={"mode": "additive"}, headers={**ADMIN, "If-Match": etag})
    assert ok.status_code == 200
    stale = client.patch(url, json={"mode": "mirror"}, headers={**ADMIN, "If-Match": etag})
    assert_problem(stale, 412)
    assert_problem(client.delete(url, headers={**ADMIN, "If-Match": etag}), 412)
    assert client.delete(url, headers={**ADMIN, "If-Match": "*"}).status_code == 204


def test_delete_is_409_while_a_run_is_active(client: TestClient) -> None:
    data = seed(client)
    url = f"/api/exports/{data['open_export']['id']}"
    run = client.post(url + "/runs", headers=ADMIN).json()
    body = assert_problem(client.delete(url, headers=ADMIN), 409)
    assert body["activeRunId"] == run["id"]
    client.post(f"{url}/runs/{run['id']}/cancel", headers=ADMIN)
    assert client.delete(url, headers=ADMIN).status_code == 204


def test_detached_export_can_be_reattached(client: TestClient) -> None:
    data = seed(client)
    client.delete(f"/api/connections/{data['private']['id']}?detach=true", headers=ADMIN)
    url = f"/api/exports/{data['private_export']['id']}"
    renamed = client.patch(url, json={"displayName": "Still detached"}, headers=CONTRIBUTOR)
    assert renamed.status_code == 200 and renamed.json()["detached"] is True
    attached = client.patch(url, json={"connectionId": data["shared"]["id"]}, headers=CONTRIBUTOR)
    assert attached.status_code == 200
    assert attached.json()["connectionId"] == data["shared"]["id"]


def test_schedule_defaults_to_refresh_and_round_trips(client: TestClient) -> None:
    data = seed(client)
    assert data["open_export"]["schedule"] == {"kind": "refresh", "expression": None}
    cron = {"kind": "cron", "expression": "0  30 6 * * mon-fri"}
    created = create_export(
        client,
        data["shared"]["id"],
        displayName="Weekday mornings",
        schedule=cron,
        listName="Weekday {segment}",  # "{segment}" names the seeded export's lists (409)
    ).json()
    assert created["schedule"] == {"kind": "cron", "expression": "0 30 6 * * mon-fri"}
    url = f"/api/exports/{created['id']}"
    assert client.get(url, headers=VIEWER).json()["schedule"] == created["schedule"]
    # a schedule in a PATCH replaces the whole schedule (no stale expression is merged in)
    off = client.patch(url, json={"schedule": {"kind": "off"}}, headers=CONTRIBUTOR)
    assert off.status_code == 200 and off.json()["schedule"] == {"kind": "off", "expression": None}
    bad = client.patch(
        url, json={"schedule": {"kind": "cron", "expression": "*/0 * * * * *"}}, headers=ADMIN
    )
    assert assert_problem(bad, 422)["errors"][0]["field"] == "schedule.expression"
    assert client.get(url, headers=ADMIN).json()["schedule"]["kind"] == "off"
    reset = client.patch(url, json={"schedule": None}, headers=ADMIN)
    assert reset.json()["schedule"] == {"kind": "refresh", "expression": None}
