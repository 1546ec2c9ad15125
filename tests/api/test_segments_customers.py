"""Segment source and customer rows over the API on Azurite: JSON and CSV uploads, per-row
errors with nothing written, paging, roles."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import ADMIN, CONTRIBUTOR, VIEWER, put_segment, seed
from tests.api.test_problems import assert_problem

CSV = {**ADMIN, "Content-Type": "text/csv"}


def test_put_json_array_object_and_csv(client: TestClient) -> None:
    created = client.put("/api/segments/High value", json=["C-1", "C-2", "C-1"], headers=ADMIN)
    assert created.status_code == 201
    assert created.headers["location"] == "/api/segments/High%20value"
    assert (created.json()["members"], created.json()["duplicates"]) == (2, 1)
    replaced = client.put("/api/segments/High value", json={"members": ["C-9"]}, headers=ADMIN)
    assert replaced.status_code == 200 and replaced.json()["members"] == 1
    from_csv = client.put(
        "/api/segments/Lapsed", content=b"Name,CustomerId\nx,C-4\ny,C-5\n", headers=CSV
    )
    assert from_csv.status_code == 201 and from_csv.json()["members"] == 2
    bare = client.put("/api/segments/Bare", content=b"C-6\r\nC-7\r\n", headers=CSV)
    assert bare.json()["members"] == 2
    names = [s["name"] for s in client.get("/api/segments", headers=VIEWER).json()["items"]]
    assert names == ["Bare", "High value", "Lapsed"]


def test_members_paged(client: TestClient) -> None:
    put_segment(client, "Big", [f"C-{i}" for i in range(5)])
    seen: list[str] = []
    url: str | None = "/api/segments/Big?members=true&limit=2"
    while url:
        page = client.get(url, headers=VIEWER).json()
        assert page["members"] == 5
        seen += page["memberIds"]
        url = page["nextLink"]
    assert sorted(seen) == [f"C-{i}" for i in range(5)]
    info = client.get("/api/segments/Big", headers=VIEWER).json()
    assert info["memberIds"] is None
    assert_problem(client.get("/api/segments/Big?members=true&continuation=x", headers=VIEWER), 400)


def test_bad_uploads_change_nothing(client: TestClient) -> None:
    put_segment(client, "Keep", ["C-1"])
    cases = [
        (b'["C-2", 7, ""]', {**ADMIN, "Content-Type": "application/json"}, 422),
        (b'{"members": ["C-2"], "extra": 1}', {**ADMIN, "Content-Type": "application/json"}, 422),
        (b'{"members": "C-2"}', {**ADMIN, "Content-Type": "application/json"}, 422),
        (b'["C-2"', {**ADMIN, "Content-Type": "application/json"}, 400),
        (b'CustomerId\n"C-2\n', CSV, 400),  # unterminated quote
        (b"A,B\n1,2\n", CSV, 422),  # several columns, no CustomerId
        (b"CustomerId,B\nC-2\n", CSV, 422),  # short row
        (b"\xff\xfe\x00bad", CSV, 400),  # not UTF-8
        (b"<members/>", {**ADMIN, "Content-Type": "application/xml"}, 415),
        (b"C-2", {k: v for k, v in ADMIN.items()}, 415),  # no content type
    ]
    for body, headers, status in cases:
        problem = assert_problem(
            client.put("/api/segments/Keep", content=body, headers=headers), status
        )
        if status == 422:
            assert problem["errors"], body
    members = client.get("/api/segments/Keep?members=true", headers=VIEWER).json()["memberIds"]
    assert members == ["C-1"]
    json_error = client.put("/api/segments/Keep", json=["ok", 7], headers=ADMIN).json()
    assert json_error["errors"] == [
        {"field": "row 2.CustomerId", "message": "must be a string, got int"}
    ]


def test_segment_names_are_validated(client: TestClient) -> None:
    long_name = "n" * 101
    body = assert_problem(client.put(f"/api/segments/{long_name}", json=[], headers=ADMIN), 422)
    assert body["errors"][0]["field"] == "name"
    assert_problem(client.get(f"/api/segments/{long_name}", headers=VIEWER), 404)
    assert_problem(client.get("/api/segments/unknown", headers=VIEWER), 404)


def test_delete_segment_409_while_exported(client: TestClient) -> None:
    data = seed(client)
    body = assert_problem(client.delete("/api/segments/Lapsed", headers=ADMIN), 409)
    assert {e["id"] for e in body["exports"]} == {
        data["open_export"]["id"],
        data["private_export"]["id"],
    }
    put_segment(client, "Unused", ["C-1"])
    assert client.delete("/api/segments/Unused", headers=ADMIN).status_code == 204
    assert_problem(client.get("/api/segments/Unused", headers=ADMIN), 404)
    assert_problem(client.delete("/api/segments/Unused", headers=ADMIN), 404)


def test_segment_roles(client: TestClient) -> None:
    put_segment(client, "S", ["C-1"])
    for headers in (CONTRIBUTOR, VIEWER):
        assert client.get("/api/segments/S", headers=headers).status_code == 200
        assert_problem(client.put("/api/segments/S", json=["C-2"], headers=headers), 403)
        assert_problem(client.delete("/api/segments/S", headers=headers), 403)
    assert_problem(client.get("/api/segments"), 401)


def test_customers_upsert_json_and_csv(client: TestClient) -> None:
    response = client.post(
        "/api/customers",
        json=[
            {"CustomerId": "C-1", "ContactId": "c0ffee00-0000-0000-0000-000000000001", "Score": 7},
            {"CustomerId": "C-2", "ContactId": None},
        ],
        headers=ADMIN,
    )
    assert response.status_code == 200
    assert response.json() == {"rows": 2, "upserted": 2}
    csv_response = client.post(
        "/api/customers", content=b"CustomerId,ContactId\nC-3,abc\nC-1,\n", headers=CSV
    )
    assert csv_response.json() == {"rows": 2, "upserted": 2}
    assert client.get("/api/customers/C-3", headers=VIEWER).json() == {
        "CustomerId": "C-3",
        "ContactId": "abc",
    }
    # upsert replaces the row: C-1 no longer has a ContactId
    assert client.get("/api/customers/C-1", headers=VIEWER).json() == {"CustomerId": "C-1"}
    assert_problem(client.get("/api/customers/nobody", headers=VIEWER), 404)


def test_customer_file_with_a_bad_row_writes_nothing(client: TestClient) -> None:
    response = client.post(
        "/api/customers",
        json=[{"CustomerId": "C-10"}, {"ContactId": "x"}, {"CustomerId": "C-11", "Bad Name": 1}],
        headers=ADMIN,
    )
    body = assert_problem(response, 422)
    fields = [e["field"] for e in body["errors"]]
    assert "row 2.CustomerId" in fields
    assert any(f.startswith("row 3.") for f in fields)
    assert_problem(client.get("/api/customers/C-10", headers=VIEWER), 404)
    dup = client.post("/api/customers", content=b"CustomerId\nC-12\nC-12\n", headers=CSV)
    assert assert_problem(dup, 422)["errors"][0]["field"] == "row 2.CustomerId"
    assert_problem(client.get("/api/customers/C-12", headers=VIEWER), 404)
    assert_problem(client.post("/api/customers", json={"CustomerId": "C"}, headers=ADMIN), 422)
    assert_problem(client.post("/api/customers", content=b"x", headers=CSV), 422)


def test_customer_roles(client: TestClient) -> None:
    for headers in (CONTRIBUTOR, VIEWER):
        assert_problem(
            client.post("/api/customers", json=[{"CustomerId": "C"}], headers=headers), 403
        )
