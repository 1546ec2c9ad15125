"""/api/notifications/targets on Azurite: Admin only; setting NAMES stored, never URLs; the URL
setting must exist and hold an acceptable address; json needs its signing key; 422 names the
field and stores nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import ADMIN, CONTRIBUTOR, VIEWER, create_export, seed
from tests.api.test_problems import assert_problem

URL = "/api/notifications/targets"
HOOK = "https://hooks.slack.example.org/services/T0/B0/SECRETPART"
SETTINGS = {
    "SLACK_URL": HOOK,
    "LOCAL_URL": "http://127.0.0.1:9/hook",
    "PLAIN_HTTP_URL": "http://hooks.example.org/x",
    "METADATA_URL": "https://169.254.169.254/metadata/identity",
    "JSON_KEY": "k3y",
}


@pytest.fixture
def api(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(**SETTINGS)


def body(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "displayName": "Ops channel",
        "format": "slack",
        "urlSetting": "SLACK_URL",
    }
    document.update(overrides)
    return document


def test_admin_creates_reads_changes_and_deletes_a_target(api: TestClient) -> None:
    created = api.post(URL, json=body(), headers=ADMIN)
    assert created.status_code == 201, created.text
    target = created.json()
    assert created.headers["location"] == f"{URL}/{target['id']}" and created.headers["etag"]
    assert (target["format"], target["urlSetting"], target["exports"], target["enabled"]) == (
        "slack", "SLACK_URL", None, True,
    )  # fmt: skip
    listed = api.get(URL, headers=ADMIN)
    assert [t["id"] for t in listed.json()["items"]] == [target["id"]]
    assert "SECRETPART" not in listed.text and "SECRETPART" not in created.text
    one = f"{URL}/{target['id']}"
    changed = api.patch(one, json={"format": "json", "secretSetting": "JSON_KEY"}, headers=ADMIN)
    assert changed.status_code == 200 and changed.json()["secretSetting"] == "JSON_KEY"
    assert api.delete(one, headers=ADMIN).status_code == 204
    assert_problem(api.get(one, headers=ADMIN), 404)


def test_a_target_for_some_exports(api: TestClient) -> None:
    data = seed(api)
    export_id = data["open_export"]["id"]
    created = api.post(URL, json=body(exports=[export_id, export_id]), headers=ADMIN).json()
    assert created["exports"] == [export_id]
    unknown = api.post(URL, json=body(exports=["0" * 32]), headers=ADMIN)
    assert assert_problem(unknown, 422)["errors"][0]["field"] == "exports[0]"
    other = create_export(
        api, data["shared"]["id"], displayName="Other", listName="Other {segment}"
    ).json()["id"]
    replaced = api.patch(f"{URL}/{created['id']}", json={"exports": [other]}, headers=ADMIN)
    assert replaced.json()["exports"] == [other]
    everything = api.patch(f"{URL}/{created['id']}", json={"exports": None}, headers=ADMIN)
    assert everything.json()["exports"] is None


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("no such setting", {"urlSetting": "NOT_SET"}, "urlSetting", "no such app setting"),
    ("http to a public host", {"urlSetting": "PLAIN_HTTP_URL"}, "urlSetting", "https"),
    ("instance metadata", {"urlSetting": "METADATA_URL"}, "urlSetting", "link-local"),
    ("loopback not allowed here", {"urlSetting": "LOCAL_URL"}, "urlSetting", "loopback"),
    ("a URL where a name goes", {"urlSetting": HOOK}, "urlSetting", ""),
    ("json without key", {"format": "json"}, "secretSetting", "required"),
    ("json key missing", {"format": "json", "secretSetting": "NOPE"}, "secretSetting", "no such"),
    ("key on slack", {"secretSetting": "JSON_KEY"}, "secretSetting", "only the json"),
    ("format", {"format": "email"}, "format", ""),
    ("unknown field", {"url": HOOK}, "url", ""),
]


@pytest.mark.parametrize(("label", "change", "field", "says"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_target_is_422_naming_the_field_and_never_echoes_the_url(
    api: TestClient, label: str, change: dict[str, Any], field: str, says: str
) -> None:
    response = api.post(URL, json=body(**change), headers=ADMIN)
    problem = assert_problem(response, 422)
    errors = {e["field"]: e["message"] for e in problem["errors"]}
    assert field in errors and says in errors[field], problem
    assert "SECRETPART" not in response.text and "169.254" not in response.text
    assert api.get(URL, headers=ADMIN).json()["items"] == []


def test_loopback_only_where_the_setting_allows_it(make_client: Callable[..., TestClient]) -> None:
    dev = make_client(**SETTINGS, ALLOW_LOOPBACK_WEBHOOKS="true")
    assert dev.post(URL, json=body(urlSetting="LOCAL_URL"), headers=ADMIN).status_code == 201


def test_only_admins_manage_or_read_targets(api: TestClient) -> None:
    for headers in (CONTRIBUTOR, VIEWER):
        assert_problem(api.get(URL, headers=headers), 403)
        assert_problem(api.post(URL, json=body(), headers=headers), 403)
