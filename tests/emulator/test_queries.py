"""Contacts and lists queries, WhoAmI, strict headers and the OData subset (reject, never guess)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from emulator import RunningEmulator
from emulator.data import contact_id, contact_index, is_inactive
from tests.emulator.conftest import api_client, create_list, get_token


def _in_filter(ids: list[str]) -> str:
    values = ",".join(f"'{i}'" for i in ids)
    return f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[{values}])"


def test_contact_ids_are_deterministic_and_invertible(emu: RunningEmulator) -> None:
    ids = [emu.contact_id(i) for i in range(500)]
    assert ids == [contact_id(i, emu.config.seed) for i in range(500)]
    assert len(set(ids)) == 500
    assert [contact_index(c, emu.config.seed) for c in ids] == list(range(500))
    assert contact_index(ids[0], emu.config.seed + 1) is None
    assert contact_id(3, 1) != contact_id(3, 2)


def test_whoami_and_dop_hint(make_emulator) -> None:
    emu = make_emulator(dop_hint=12)
    with api_client(emu, get_token(emu)) as c:
        for path in ("WhoAmI", "WhoAmI()"):
            r = c.get(path)
            assert r.status_code == 200
            assert r.headers["x-ms-dop-hint"] == "12"
            assert r.headers["OData-Version"] == "4.0"
            assert r.json()["@odata.context"].endswith(
                "$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
            )


def test_contacts_in_filter_quoted_and_alias_forms(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    ids = [emu.contact_id(i) for i in range(40)]
    ghost = emu.contact_id(50_000)
    r = client.get(
        "contacts", params={"$select": "contactid,statecode", "$filter": _in_filter([*ids, ghost])}
    )
    assert r.status_code == 200
    rows = r.json()["value"]
    assert [row["contactid"] for row in rows] == sorted(ids)  # the ghost is simply not found
    expected_state = {emu.contact_id(i): int(is_inactive(i, 5, 0.1)) for i in range(40)}
    assert {row["contactid"]: row["statecode"] for row in rows} == expected_state
    params = {
        "$select": "contactid",
        "$filter": "Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)"
        " and statecode eq 0",
        "@p1": "'contactid'",
        "@p2": json.dumps(ids),
    }
    r = client.get("contacts", params=params)
    assert r.status_code == 200
    active = sorted(c for c, s in expected_state.items() if s == 0)
    assert [row["contactid"] for row in r.json()["value"]] == active
    assert set(r.json()["value"][0]) == {"contactid"}


def test_contacts_by_key_and_create(client: httpx.Client, emu: RunningEmulator) -> None:
    cid = emu.contact_id(3)
    r = client.get(f"contacts({cid})?$select=fullname")
    assert r.status_code == 200
    assert r.json()["contactid"] == cid and r.json()["fullname"] == "Contact 0000003"
    assert client.get(f"contacts({emu.contact_id(99_999)})").status_code == 404
    assert client.get("contacts(12345)").status_code == 400
    r = client.post(
        "contacts",
        json={"firstname": "Ada", "lastname": "Lovelace"},
        headers={"Prefer": "return=representation"},
    )
    assert r.status_code == 201
    new_id = r.json()["contactid"]
    assert emu.state.get_contact(new_id)["fullname"] == "Ada Lovelace"
    assert client.post("contacts", json={"fullname": "x"}).status_code == 400  # computed column
    assert (
        client.patch(f"contacts({new_id})", json={"statecode": 1, "statuscode": 2}).status_code
        == 204
    )
    assert emu.state.contact_statecode(new_id) == 1


def test_contacts_scan_pages_with_statecode_filter(make_emulator) -> None:
    emu = make_emulator(contacts=30, inactive_fraction=0.5, seed=9)
    with api_client(emu, get_token(emu)) as c:
        seen: list[str] = []
        url: str | None = "contacts?$select=contactid&$filter=statecode eq 1"
        while url:
            doc = c.get(url, headers={"Prefer": "odata.maxpagesize=4"}).json()
            seen += [row["contactid"] for row in doc["value"]]
            url = doc.get("@odata.nextLink")
        assert seen == [emu.contact_id(i) for i in range(30) if emu.is_inactive(i)]
        assert len(c.get("contacts?$select=contactid&$top=2").json()["value"]) == 2


def test_lists_query_patch_delete(client: httpx.Client, emu: RunningEmulator) -> None:
    a = create_list(client, "O'Brien segment")
    create_list(client, "Other")
    account_list = create_list(client, "O'Brien segment", createdfromcode=1)
    flt = (
        "listname eq 'o''brien SEGMENT' and createdfromcode eq 2 and type eq false"
        " and statecode eq 0"
    )
    r = client.get("lists", params={"$select": "listid,listname", "$filter": flt})
    assert r.status_code == 200
    assert [row["listid"] for row in r.json()["value"]] == [a]
    assert r.json()["value"][0]["listname"] == "O'Brien segment"
    r = client.patch(
        f"lists({a})", json={"description": "synced"}, headers={"Prefer": "return=representation"}
    )
    assert r.status_code == 200 and r.json()["description"] == "synced"
    assert client.patch(f"lists({a})", json={"createdfromcode": 1}).status_code == 400
    assert client.patch(f"lists({a})", json={"nosuchcolumn": 1}).status_code == 400
    etag = client.get(f"lists({a})").json()["@odata.etag"]
    assert (
        client.patch(
            f"lists({a})", json={"purpose": "p"}, headers={"If-Match": 'W/"999"'}
        ).status_code
        == 412
    )
    assert (
        client.patch(f"lists({a})", json={"purpose": "p"}, headers={"If-Match": etag}).status_code
        == 204
    )
    # Inactive lists are read-only until reactivated.
    assert client.patch(f"lists({a})", json={"statecode": 1, "statuscode": 1}).status_code == 204
    assert client.patch(f"lists({a})", json={"description": "x"}).status_code == 400
    assert client.patch(f"lists({a})", json={"statecode": 0}).status_code == 204
    assert client.delete(f"lists({account_list})").status_code == 204
    assert client.delete(f"lists({account_list})").status_code == 404
    assert emu.state.get_list(account_list) is None


def test_patch_upserts_but_if_match_star_does_not(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    new_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    body = {"listname": "Upserted", "createdfromcode": 2}
    assert client.patch(f"lists({new_id})", json=body, headers={"If-Match": "*"}).status_code == 404
    assert client.patch(f"lists({new_id})", json=body).status_code == 204
    assert emu.state.get_list(new_id)["listname"] == "Upserted"


@pytest.mark.parametrize("missing", ["OData-Version", "OData-MaxVersion", "Accept"])
def test_missing_odata_headers_are_400(emu: RunningEmulator, missing: str) -> None:
    headers = {
        "OData-Version": "4.0",
        "OData-MaxVersion": "4.0",
        "Accept": "application/json",
        "Authorization": f"Bearer {get_token(emu)}",
    }
    del headers[missing]
    if missing == "Accept":
        headers["Accept"] = "*/*"  # httpx always sends one; the emulator wants application/json
    r = httpx.get(emu.api_url + "WhoAmI", headers=headers, verify=emu.ssl_context())
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80040203"


@pytest.mark.parametrize(
    "query",
    [
        "contacts?$filter=contains(fullname,'a')",
        "contacts?$filter=statecode gt 0",
        "contacts?$filter=not (statecode eq 0)",
        "contacts?$orderby=contactid",
        "contacts?$expand=parentcustomerid",
        "contacts?$count=true",
        "lists?$filter=startswith(listname,'S')",
        "listmembers?$select=_entityid_value",
        "WhoAmI?$select=UserId",
        "contacts?$filter=contactid eq null",
    ],
)
def test_what_the_emulator_does_not_emulate_is_501(client: httpx.Client, query: str) -> None:
    r = client.get(query)
    assert r.status_code == 501, r.text
    assert "emulator does not support" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "query",
    [
        "contacts?$filter=contactid eq '00000000-0000-0000-0000-000000000000'",  # quoted guid
        "contacts?$filter=statecode eq '0'",
        "contacts?$filter=nosuch eq 1",
        "contacts?$select=nosuch",
        "contacts?$filter=statecode eq 0 or",
        "contacts?$filter=statecode ne",
        # aliases used but not defined:
        "contacts?$filter=Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)",
        "contacts?$filter=Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['x'])",
        "contacts?$select=contactid&$select=statecode",
        "contacts?$skiptoken=bogus",
        "lists?$filter=listname eq Segment",
        "lists?$filter=type eq 0",
    ],
)
def test_malformed_queries_are_400(client: httpx.Client, query: str) -> None:
    r = client.get(query)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "0x80060888"


def test_top_with_maxpagesize_is_not_emulated(client: httpx.Client) -> None:
    r = client.get("contacts?$select=contactid&$top=5", headers={"Prefer": "odata.maxpagesize=2"})
    assert r.status_code == 501


def test_ne_and_or_filters(client: httpx.Client, emu: RunningEmulator) -> None:
    a, b, c = (emu.contact_id(i) for i in (1, 2, 3))
    inactive = {emu.contact_id(i) for i in range(emu.config.contacts) if emu.is_inactive(i)}
    rows = _all(client, "contacts?$select=contactid&$filter=statecode ne 0")
    assert {r["contactid"] for r in rows} == inactive
    rows = _all(client, f"contacts?$select=contactid&$filter=contactid eq {a} or contactid eq {b}")
    assert {r["contactid"] for r in rows} == {a, b}
    query = f"(contactid eq {a} or contactid eq {c}) and contactid ne {a}"
    assert {
        r["contactid"] for r in _all(client, f"contacts?$select=contactid&$filter={query}")
    } == {c}
    create_list(client, "Alpha")
    create_list(client, "Beta")
    rows = _all(client, "lists?$select=listname&$filter=listname eq 'alpha' or listname eq 'BETA'")
    assert sorted(r["listname"] for r in rows) == ["Alpha", "Beta"]
    rows = _all(client, "lists?$select=listname&$filter=listname ne 'ALPHA'")
    assert [r["listname"] for r in rows] == ["Beta"]


def _all(client: httpx.Client, url: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        rows += r.json()["value"]
        url = r.json().get("@odata.nextLink")
    return rows


def test_skiptoken_is_bound_to_its_query(client: httpx.Client, emu: RunningEmulator) -> None:
    list_id = create_list(client)
    emu.state.add_members(list_id, [emu.contact_id(i) for i in range(5)])
    doc = client.get(
        f"lists({list_id})/listcontact_association?$select=contactid",
        headers={"Prefer": "odata.maxpagesize=2"},
    ).json()
    token = doc["@odata.nextLink"].split("$skiptoken=")[1]
    other = create_list(client, "Other")
    r = client.get(f"lists({other})/listcontact_association?$select=contactid&$skiptoken={token}")
    assert r.status_code == 400


def test_service_document_and_encoded_paths(client: httpx.Client) -> None:
    r = client.get("")
    assert r.status_code == 200
    assert {s["name"] for s in r.json()["value"]} == {"contacts", "lists", "listmembers"}
    assert client.get("Who%41mI").status_code == 200


def test_unknown_segments_methods_and_long_urls(client: httpx.Client, emu: RunningEmulator) -> None:
    r = client.get("accounts")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Resource not found for the segment 'accounts'."
    assert client.put("lists", json={}).status_code == 405
    long_filter = _in_filter([emu.contact_id(i) for i in range(900)])  # ~36 KB
    r = client.get("contacts", params={"$select": "contactid", "$filter": long_filter})
    assert r.status_code == 414
    short_filter = _in_filter([emu.contact_id(i) for i in range(300)])
    r = client.get("contacts", params={"$select": "contactid", "$filter": short_filter})
    assert r.status_code == 200 and len(r.json()["value"]) == 300


def test_create_list_validation(client: httpx.Client) -> None:
    assert client.post("lists", json={"createdfromcode": 2}).status_code == 400
    assert client.post("lists", json={"listname": "x"}).status_code == 400
    assert client.post("lists", json={"listname": "x", "createdfromcode": 3}).status_code == 400
    assert (
        client.post(
            "lists", json={"listname": "x", "createdfromcode": 2, "type": "false"}
        ).status_code
        == 400
    )
    assert (
        client.post("lists", json={"listname": "x" * 129, "createdfromcode": 2}).status_code == 400
    )
    assert (
        client.post("lists", json={"listname": "x", "createdfromcode": 2, "bogus": 1}).status_code
        == 400
    )
    owner = "/systemusers(00000000-0000-0000-0000-000000000001)"
    body = {"listname": "x", "createdfromcode": 2, "ownerid@odata.bind": owner}
    assert client.post("lists", json=body).status_code == 204


def test_null_literals_and_null_required_columns_are_400(client: httpx.Client) -> None:
    assert client.get("contacts?$filter=contactid eq null").status_code == 501  # not emulated
    list_id = create_list(client)
    assert client.patch(f"lists({list_id})", json={"listname": None}).status_code == 400
    assert client.patch(f"lists({list_id})", json={"type": None}).status_code == 400


def test_malformed_http_framing_is_400_not_a_crash(emu: RunningEmulator) -> None:
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=emu.ca_file)
    raw = socket.create_connection(("127.0.0.1", emu.port))
    with raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"POST /api/data/v9.2/lists HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
        reply = tls.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400 ")
    with api_client(emu, get_token(emu)) as c:  # and the server still serves
        assert c.get("WhoAmI").status_code == 200
