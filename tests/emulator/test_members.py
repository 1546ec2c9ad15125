"""Marketing lists and their members: create/read/query lists, bulk and single member actions,
member reads with paging, and the rules that reject bad member calls."""

from __future__ import annotations

import httpx
import pytest

from emulator import RunningEmulator
from tests.emulator.conftest import NS, create_list, members_body


def _members_via_api(client: httpx.Client, list_id: str, page_size: int) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    url: str | None = f"lists({list_id})/listcontact_association?$select=contactid"
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    while url:
        r = client.get(url, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["Preference-Applied"] == f"odata.maxpagesize={page_size}"
        doc = r.json()
        assert len(doc["value"]) <= page_size
        ids += [row["contactid"] for row in doc["value"]]
        pages += 1
        url = doc.get("@odata.nextLink")
    return ids, pages


def test_create_list_with_and_without_representation(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    r = client.post("lists", json={"listname": "A", "createdfromcode": 2, "type": False})
    assert r.status_code == 204
    assert r.content == b""
    entity = r.headers["OData-EntityId"]
    assert entity.startswith(emu.api_url + "lists(")
    r = client.post(
        "lists",
        json={"listname": "B", "createdfromcode": 2, "type": False, "purpose": "segment export"},
        headers={"Prefer": "return=representation"},
    )
    assert r.status_code == 201
    assert r.headers["Preference-Applied"] == "return=representation"
    row = r.json()
    assert row["listname"] == "B"
    assert row["statecode"] == 0 and row["statuscode"] == 0 and row["lockstatus"] is False
    assert emu.state.get_list(row["listid"])["purpose"] == "segment export"
    assert {x["listname"] for x in emu.state.find_lists("a")} == {"A"}


def test_add_members_then_read_them_back_in_pages(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    wanted = [emu.contact_id(i) for i in range(0, 2000, 3)]
    for start in range(0, len(wanted), 250):
        r = client.post(
            "AddListMembersList", json=members_body(list_id, wanted[start : start + 250])
        )
        assert r.status_code == 204, r.text
    assert emu.state.list_members(list_id) == set(wanted)
    ids, pages = _members_via_api(client, list_id, 100)
    assert ids == sorted(wanted)  # stable order by contactid, no duplicates or gaps
    assert pages == -(-len(wanted) // 100)
    r = client.get(f"lists({list_id})?$select=membercount")
    assert r.json()["membercount"] == len(wanted)
    stats = emu.stats()
    assert stats["members_added"] == len(wanted)
    assert stats["requests"]["list-members-read"]["200"] == pages


def test_paging_12k_members_default_and_max_page_size(make_emulator) -> None:
    from tests.emulator.conftest import api_client, get_token

    emu = make_emulator(contacts=13_000)
    with api_client(emu, get_token(emu)) as client:
        list_id = create_list(client)
        wanted = [emu.contact_id(i) for i in range(12_000)]
        emu.state.add_members(list_id, wanted)
        ids, pages = _members_via_api(client, list_id, 5000)
        assert (len(ids), pages) == (12_000, 3)
        assert ids == sorted(wanted)
        # Larger than the maximum: clamped to 5000 and said so.
        r = client.get(
            f"lists({list_id})/listcontact_association?$select=contactid",
            headers={"Prefer": "odata.maxpagesize=20000"},
        )
        assert r.headers["Preference-Applied"] == "odata.maxpagesize=5000"
        assert len(r.json()["value"]) == 5000
        # No preference: default page size 5000, no Preference-Applied.
        r = client.get(f"lists({list_id})/listcontact_association?$select=contactid")
        assert len(r.json()["value"]) == 5000 and "Preference-Applied" not in r.headers
        # The intersect table gives the same members.
        seen: list[str] = []
        url: str | None = f"listmembers?$select=_entityid_value&$filter=_listid_value eq {list_id}"
        while url:
            doc = client.get(url).json()
            seen += [row["_entityid_value"] for row in doc["value"]]
            url = doc.get("@odata.nextLink")
        assert seen == sorted(wanted)
        assert emu.stats()["rows_read"] >= 24_000 + 5000 + 5000


def test_duplicate_add_and_absent_remove_are_no_ops(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    a, b, c = (emu.contact_id(i) for i in (1, 2, 3))
    assert client.post("AddListMembersList", json=members_body(list_id, [a, b])).status_code == 204
    assert (
        client.post("AddListMembersList", json=members_body(list_id, [a, b, b])).status_code == 204
    )
    assert emu.state.list_members(list_id) == {a, b}
    r = client.post("RemoveListMembersList", json=members_body(list_id, [b, c]))
    assert r.status_code == 204
    assert emu.state.list_members(list_id) == {a}
    stats = emu.stats()
    assert (stats["members_added"], stats["members_removed"]) == (2, 1)


def test_nonexistent_contact_rejects_the_whole_call(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    ghost = emu.contact_id(10_000_000)  # well-formed but beyond the data set
    good = emu.contact_id(4)
    r = client.post("AddListMembersList", json=members_body(list_id, [good, ghost]))
    assert r.status_code == 404
    assert r.json()["error"] == {
        "code": "0x80040217",
        "message": f"contact With Id = {ghost} Does Not Exist",
    }
    assert emu.state.list_members(list_id) == set()
    deleted = emu.contact_id(5)
    emu.state.delete_contact(deleted)
    r = client.post("AddListMembersList", json=members_body(list_id, [deleted]))
    assert r.status_code == 404


def test_inactive_contacts_may_be_added(client: httpx.Client, emu: RunningEmulator) -> None:
    list_id = create_list(client)
    inactive = [emu.contact_id(i) for i in range(200) if emu.is_inactive(i)]
    assert inactive, "the fixture's inactive fraction should give some inactive contacts"
    assert (
        client.post("AddListMembersList", json=members_body(list_id, inactive)).status_code == 204
    )
    assert emu.state.list_members(list_id) == set(inactive)


@pytest.mark.parametrize(
    "member",
    [
        {"contactid": "CONTACT"},  # no @odata.type
        {"@odata.type": NS + "account", "accountid": "CONTACT"},  # wrong member type
        {"@odata.type": NS + "systemuser", "systemuserid": "CONTACT"},  # not a list member type
        {"@odata.type": NS + "contact"},  # no key
        {"@odata.type": NS + "contact", "contactid": "not-a-guid"},
    ],
)
def test_bad_members_are_400(client: httpx.Client, emu: RunningEmulator, member: dict) -> None:
    list_id = create_list(client)
    member = {k: (emu.contact_id(1) if v == "CONTACT" else v) for k, v in member.items()}
    body = {"List": {"@odata.type": NS + "list", "listid": list_id}, "Members": [member]}
    r = client.post("AddListMembersList", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["message"]
    assert emu.state.list_members(list_id) == set()


@pytest.mark.parametrize(
    ("fields", "after_create"),
    [
        ({"type": True}, None),  # dynamic
        ({"createdfromcode": 1}, None),  # account list
        ({}, {"statecode": 1, "statuscode": 1}),  # inactive
        ({"lockstatus": True}, None),  # locked
    ],
)
def test_lists_that_cannot_take_members_are_400(
    client: httpx.Client, emu: RunningEmulator, fields: dict, after_create: dict | None
) -> None:
    list_id = create_list(client, **fields)
    if after_create:
        assert client.patch(f"lists({list_id})", json=after_create).status_code == 204
    contact = emu.contact_id(7)
    for action in ("AddListMembersList", "RemoveListMembersList"):
        r = client.post(action, json=members_body(list_id, [contact]))
        assert r.status_code == 400, (action, r.text)
    r = client.post(f"lists({list_id})/{NS}AddMemberList", json={"EntityId": contact})
    assert r.status_code == 400
    assert emu.state.list_members(list_id) == set()


def test_unknown_list_is_404(client: httpx.Client, emu: RunningEmulator) -> None:
    missing = "11111111-2222-4333-8444-555555555555"
    r = client.post("AddListMembersList", json=members_body(missing, [emu.contact_id(1)]))
    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"list With Id = {missing} Does Not Exist"
    assert client.get(f"lists({missing})/listcontact_association").status_code == 404
    assert client.get(f"lists({missing})").status_code == 404


def test_bound_add_and_remove_member(client: httpx.Client, emu: RunningEmulator) -> None:
    list_id = create_list(client)
    contact = emu.contact_id(9)
    r = client.post(f"lists({list_id})/{NS}AddMemberList", json={"EntityId": contact})
    assert r.status_code == 200
    first_id = r.json()["Id"]
    r = client.post(f"lists({list_id})/{NS}AddMemberList", json={"EntityId": contact})
    assert r.json()["Id"] == first_id  # already a member: same listmember row
    assert emu.state.list_members(list_id) == {contact}
    # Bound actions need the namespace.
    r = client.post(f"lists({list_id})/RemoveMemberList", json={"EntityId": contact})
    assert r.status_code == 400
    r = client.post(f"lists({list_id})/{NS}RemoveMemberList", json={"EntityId": contact})
    assert r.status_code == 204
    assert emu.state.list_members(list_id) == set()
    r = client.post(f"lists({list_id})/{NS}AddMemberList", json={"EntityId": "nope"})
    assert r.status_code == 400
    stats = emu.stats()["requests"]
    assert stats["add-member"] == {"200": 2, "400": 1}
    assert stats["remove-member"] == {"204": 1, "400": 1}


def test_action_body_must_be_well_formed(client: httpx.Client, emu: RunningEmulator) -> None:
    list_id = create_list(client)
    for body in (
        {"Members": []},
        {"List": {"listid": list_id}},
        {"List": {"@odata.type": NS + "contact", "listid": list_id}, "Members": []},
        {"List": {"listid": list_id}, "Members": [], "Extra": 1},
    ):
        assert client.post("AddListMembersList", json=body).status_code == 400, body
    r = client.post(
        "AddListMembersList", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = client.post("AddListMembersList", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    # A List without @odata.type is accepted (its parameter type is concrete); empty Members: no-op.
    assert (
        client.post(
            "AddListMembersList", json={"List": {"listid": list_id}, "Members": []}
        ).status_code
        == 204
    )


def test_deleting_a_contact_removes_its_memberships(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    a, b = emu.contact_id(11), emu.contact_id(12)
    client.post("AddListMembersList", json=members_body(list_id, [a, b]))
    assert client.delete(f"contacts({a})").status_code == 204
    assert emu.state.list_members(list_id) == {b}
    assert client.get(f"contacts({a})").status_code == 404


def test_listmembers_filter_by_entity(client: httpx.Client, emu: RunningEmulator) -> None:
    list_id = create_list(client)
    a, b = emu.contact_id(21), emu.contact_id(22)
    emu.state.add_members(list_id, [a, b])
    flt = f"_listid_value eq {list_id} and _entityid_value eq {b}"
    r = client.get(
        "listmembers", params={"$select": "listmemberid,_entityid_value", "$filter": flt}
    )
    assert r.status_code == 200
    (row,) = r.json()["value"]
    assert row["_entityid_value"] == b and set(row) == {"listmemberid", "_entityid_value"}
    other = "11111111-2222-4333-8444-555555555555"
    r = client.get("listmembers", params={"$filter": f"_listid_value eq {other}"})
    assert r.json()["value"] == []


def test_ref_associate_and_listmember_writes_are_not_supported(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    ref = {"@odata.id": f"{emu.api_url}contacts({emu.contact_id(1)})"}
    r = client.post(f"lists({list_id})/listcontact_association/$ref", json=ref)
    assert r.status_code == 501 and "not support" in r.json()["error"]["message"]
    r = client.post("listmembers", json={"listid@odata.bind": f"/lists({list_id})"})
    assert r.status_code == 501
    assert emu.state.list_members(list_id) == set()


def test_list_actions_refuse_more_members_than_the_cap(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    cap = emu.config.max_members_per_call
    assert cap == 1000
    wanted = [emu.contact_id(i) for i in range(cap + 1)]
    for action in ("AddListMembersList", "RemoveListMembersList"):
        r = client.post(action, json=members_body(list_id, wanted))
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert "members" in message and str(cap) in message and str(cap + 1) in message
    assert emu.state.list_members(list_id) == set()
    r = client.post("AddListMembersList", json=members_body(list_id, wanted[:cap]))
    assert r.status_code == 204
    assert len(emu.state.list_members(list_id)) == cap
