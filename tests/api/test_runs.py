"""Runs over the API on Azurite: request (202/409), history paging, one run, rejections as JSON
and CSV (formula-safe), cancel, run all; roles."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi.testclient import TestClient

from shared.api.deps import ApiContext
from shared.models import Rejection, RejectionReason
from tests.api.helpers import ADMIN, CONTRIBUTOR, VIEWER, seed
from tests.api.test_problems import assert_problem


def _store(client: TestClient) -> Any:
    context: ApiContext = client.app.state.context  # type: ignore[attr-defined]
    return context.store()


def test_request_run_202_location_and_409_naming_the_active_run(client: TestClient) -> None:
    data = seed(client)
    url = f"/api/exports/{data['open_export']['id']}/runs"
    response = client.post(url + "?dryRun=true", headers=CONTRIBUTOR)
    assert response.status_code == 202
    run = response.json()
    assert response.headers["location"] == f"{url}/{run['id']}"
    assert (run["status"], run["trigger"], run["dryRun"]) == ("queued", "on-demand", True)
    assert run["requestedBy"] == "carl@contoso.test"
    assert [s["segment"] for s in run["segments"]] == ["High value", "Lapsed"]
    assert run["segments"][0]["progress"] == {"phase": "pending", "done": 0, "total": 0}
    again = assert_problem(client.post(url, headers=ADMIN), 409)
    assert again["activeRunId"] == run["id"]
    assert run["id"] in again["detail"]
    assert again["activeRun"] == f"{url}/{run['id']}"
    fetched = client.get(f"{url}/{run['id']}", headers=VIEWER)
    assert fetched.status_code == 200 and fetched.json() == run
    assert_problem(client.post(url, headers=VIEWER), 403)
    assert_problem(client.post(f"/api/exports/{'0' * 32}/runs", headers=ADMIN), 404)


def test_history_is_newest_first_and_paged(client: TestClient) -> None:
    data = seed(client)
    url = f"/api/exports/{data['open_export']['id']}/runs"
    ids = []
    for _ in range(3):
        run = client.post(url, headers=ADMIN).json()
        ids.append(run["id"])
        cancel = client.post(f"{url}/{run['id']}/cancel", headers=CONTRIBUTOR)
        assert cancel.status_code == 200 and cancel.json()["status"] == "canceled"
    first = client.get(url + "?limit=2", headers=VIEWER).json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:2]
    assert first["nextLink"].startswith(url + "?")
    second = client.get(first["nextLink"], headers=VIEWER).json()
    assert [r["id"] for r in second["items"]] == [ids[0]]
    assert second["nextLink"] is None
    bad = client.get(url + "?continuation=garbage", headers=VIEWER)
    assert assert_problem(bad, 400)["errors"][0]["field"] == "continuation"
    assert_problem(client.get(url + "?limit=0", headers=VIEWER), 422)
    assert_problem(client.get(url + "?limit=101", headers=VIEWER), 422)
    assert_problem(client.get(f"{url}/20990101T000000000Z-00000000", headers=VIEWER), 404)
    assert_problem(client.get(f"/api/exports/{'0' * 32}/runs", headers=VIEWER), 404)


def test_rejections_json_paged_and_csv_formula_safe(client: TestClient) -> None:
    data = seed(client)
    export_id = data["open_export"]["id"]
    run = client.post(f"/api/exports/{export_id}/runs", headers=ADMIN).json()
    rejections = [
        Rejection("C-1", RejectionReason.NO_CUSTOMER_RECORD),
        Rejection('=HYPERLINK("http://x")', RejectionReason.EMPTY_CONTACT_ID, detail="+1 cmd"),
        Rejection("C-3", RejectionReason.CONTACT_INACTIVE, contact_id="0b3c", detail="@SUM(A1)"),
    ]
    _store(client).rejections.replace_segment(export_id, run["id"], "High value", rejections)
    url = f"/api/exports/{export_id}/runs/{run['id']}/rejections"
    page = client.get(url + "?limit=2", headers=VIEWER).json()
    assert page["items"][0] == {
        "segment": "High value",
        "customerId": "C-1",
        "reason": "no-customer-record",
        "contactId": None,
        "detail": "",
    }
    rest = client.get(page["nextLink"], headers=VIEWER).json()
    assert [r["customerId"] for r in page["items"] + rest["items"]] == [
        r.customer_id for r in rejections
    ]
    for response in (
        client.get(url, headers={**VIEWER, "Accept": "text/csv"}),
        client.get(url + "?format=csv", headers=VIEWER),
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == ["segment", "customerId", "reason", "contactId", "detail"]
        assert rows[1] == ["High value", "C-1", "no-customer-record", "", ""]
        assert rows[2] == [
            "High value",
            '\'=HYPERLINK("http://x")',
            "empty-contact-id",
            "",
            "'+1 cmd",
        ]
        assert rows[3][4] == "'@SUM(A1)"
    assert_problem(client.get(url + "?format=xml", headers=VIEWER), 422)
    assert_problem(client.get(url.replace(run["id"], "20990101T000000000Z-0"), headers=VIEWER), 404)


def test_cancel_roles(client: TestClient) -> None:
    data = seed(client)
    private = f"/api/exports/{data['private_export']['id']}/runs"
    run = client.post(private, headers=ADMIN).json()
    assert_problem(client.post(f"{private}/{run['id']}/cancel", headers=VIEWER), 403)
    assert_problem(client.post(f"{private}/{run['id']}/cancel", headers=CONTRIBUTOR), 403)
    canceled = client.post(f"{private}/{run['id']}/cancel", headers=ADMIN)
    assert canceled.status_code == 200
    assert canceled.json()["cancelRequested"] is True
    # canceling a finished run changes nothing
    again = client.post(f"{private}/{run['id']}/cancel", headers=ADMIN)
    assert again.status_code == 200 and again.json()["status"] == "canceled"


def test_run_all_is_admin_only_and_skips_disabled(client: TestClient) -> None:
    data = seed(client)
    client.patch(
        f"/api/exports/{data['private_export']['id']}", json={"enabled": False}, headers=ADMIN
    )
    assert_problem(client.post("/api/runs", headers=CONTRIBUTOR), 403)
    response = client.post("/api/runs", headers=ADMIN)
    assert response.status_code == 202
    runs = response.json()["items"]
    assert [(r["exportId"], r["status"]) for r in runs] == [(data["open_export"]["id"], "queued")]
    # a second "run all" records a skipped run naming the active one
    skipped = client.post("/api/runs", headers=ADMIN).json()["items"]
    assert skipped[0]["status"] == "skipped"
    assert runs[0]["id"] in skipped[0]["reason"]
