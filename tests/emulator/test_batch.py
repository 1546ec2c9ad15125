"""$batch: multipart parsing, order, change-set atomicity, continue-on-error and limits."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx

from emulator import RunningEmulator
from tests.emulator.conftest import create_list, members_body

Part = tuple[str, str, dict[str, Any] | None, str | None]  # method, url, json body, Content-ID


def _http(method: str, url: str, body: dict[str, Any] | None, content_id: str | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    if body is not None:
        lines += ["Content-Type: application/json; type=entry", "", json.dumps(body)]
    else:
        lines += ["Accept: application/json", ""]
    return "\r\n".join(lines)


def batch_body(items: list[Part | list[Part]]) -> tuple[str, bytes]:
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks: list[str] = []
    for item in items:
        chunks.append(f"--{boundary}")
        if isinstance(item, list):
            cs = f"changeset_{uuid.uuid4().hex}"
            inner = [f"--{cs}\r\n{_http(*p)}" for p in item]
            chunks.append(
                f"Content-Type: multipart/mixed; boundary={cs}\r\n\r\n"
                + "\r\n".join(inner)
                + f"\r\n--{cs}--"
            )
        else:
            chunks.append(_http(*item))
    text = "\r\n".join(chunks) + f"\r\n--{boundary}--\r\n"
    return f"multipart/mixed; boundary={boundary}", text.encode()


def post_batch(
    client: httpx.Client, items: list[Part | list[Part]], **headers: str
) -> httpx.Response:
    ctype, body = batch_body(items)
    return client.post("$batch", content=body, headers={"Content-Type": ctype, **headers})


def statuses(resp: httpx.Response) -> list[int]:
    return [int(s) for s in re.findall(r"^HTTP/1\.1 (\d{3}) ", resp.text, re.MULTILINE)]


def test_batch_runs_parts_in_order_with_crlf_and_content_ids(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    a, b = emu.contact_id(1), emu.contact_id(2)
    r = post_batch(
        client,
        [
            ("POST", f"{emu.api_url}AddListMembersList", members_body(list_id, [a]), "1"),
            ("POST", "/api/data/v9.2/AddListMembersList", members_body(list_id, [b]), None),
            ("GET", f"lists({list_id})/listcontact_association?$select=contactid", None, "3"),
        ],
    )
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert statuses(r) == [204, 204, 200]
    assert "\r\nContent-ID: 1\r\n" in r.text and "\r\nContent-ID: 3\r\n" in r.text
    assert re.search(r"(?<!\r)\n", r.text) is None  # CRLF only
    assert a in r.text and b in r.text  # the GET saw both adds
    stats = emu.stats()
    assert stats["requests"]["batch"] == {"200": 1}
    assert stats["batch_operations"] == {
        "add-list-members": {"204": 2},
        "list-members-read": {"200": 1},
    }
    assert stats["members_added"] == 2


def test_change_set_is_atomic(client: httpx.Client, emu: RunningEmulator) -> None:
    list_id = create_list(client)
    good = emu.contact_id(3)
    ghost = emu.contact_id(9_000_000)
    r = post_batch(
        client,
        [
            [
                ("POST", "AddListMembersList", members_body(list_id, [good]), "1"),
                ("PATCH", f"lists({list_id})", {"description": "changed"}, "2"),
                ("POST", "AddListMembersList", members_body(list_id, [ghost]), "3"),
            ]
        ],
        Prefer="odata.continue-on-error",
    )
    assert r.status_code == 200
    assert statuses(r) == [404]  # the change set answers with its single error
    assert "Content-ID: 3" in r.text
    assert emu.state.list_members(list_id) == set()  # rolled back
    assert emu.state.get_list(list_id)["description"] is None
    assert emu.stats()["members_added"] == 0


def test_change_set_success_and_content_id_reference(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    r = post_batch(
        client,
        [
            [
                ("POST", "lists", {"listname": "From batch", "createdfromcode": 2}, "1"),
                ("PATCH", "$1", {"description": "via reference"}, "2"),
            ]
        ],
    )
    assert r.status_code == 200, r.text
    assert statuses(r) == [204, 204]
    assert "boundary=changesetresponse_" in r.text
    (row,) = emu.state.find_lists("From batch")
    assert row["description"] == "via reference"
    r = post_batch(client, [[("PATCH", "$9", {"description": "x"}, "1")]])
    assert r.status_code == 400


def test_without_continue_on_error_the_batch_stops_at_the_first_failure(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    a, c = emu.contact_id(1), emu.contact_id(3)
    items: list[Part | list[Part]] = [
        ("POST", "AddListMembersList", members_body(list_id, [a]), None),
        (
            "POST",
            "AddListMembersList",
            {"List": {"listid": list_id}, "Members": [{"contactid": c}]},
            None,
        ),
        ("POST", "AddListMembersList", members_body(list_id, [c]), None),
    ]
    r = post_batch(client, items)
    assert r.status_code == 400
    assert statuses(r) == [400]
    assert emu.state.list_members(list_id) == {a}  # first ran, third never ran
    r = post_batch(client, items, Prefer="odata.continue-on-error")
    assert r.status_code == 200
    assert r.headers["Preference-Applied"] == "odata.continue-on-error"
    assert statuses(r) == [204, 400, 204]
    assert emu.state.list_members(list_id) == {a, c}


def test_batch_limits_and_rules(client: httpx.Client, emu: RunningEmulator) -> None:
    list_id = create_list(client)
    get = ("GET", "WhoAmI", None, None)
    assert post_batch(client, [get] * 1000).status_code == 200
    r = post_batch(client, [get] * 1001)
    assert r.status_code == 400
    assert "1000" in r.json()["error"]["message"]
    r = post_batch(client, [[("GET", f"lists({list_id})", None, "1")]])
    assert r.status_code == 400  # no GET inside a change set
    r = post_batch(client, [("POST", "$batch", {}, None)], Prefer="odata.continue-on-error")
    assert statuses(r) == [400]  # no nested batch
    r = client.post(
        "$batch", content=b"--x\r\n", headers={"Content-Type": "multipart/mixed; boundary=x"}
    )
    assert r.status_code == 400
    r = client.post("$batch", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert emu.stats()["requests"]["batch"] == {"200": 2, "400": 4}


def test_batch_counts_one_request_but_all_execution_time(make_emulator) -> None:
    from tests.emulator.conftest import api_client, get_token

    emu = make_emulator()
    with api_client(emu, get_token(emu)) as c:
        list_id = create_list(c)
        emu.reset_stats()
        ids = [emu.contact_id(i) for i in range(100)]
        parts: list[Part | list[Part]] = [
            ("POST", "AddListMembersList", members_body(list_id, ids[i : i + 10]), None)
            for i in range(0, 100, 10)
        ]
        assert post_batch(c, parts).status_code == 200
    stats = emu.stats()
    costs = emu.config.costs
    assert stats["limited_requests"] == 1
    assert stats["batch_operations_total"] == 10
    expected = (10 * costs.base_ms + 100 * costs.per_member_ms) / 1000
    assert abs(stats["total_cost_seconds"] - expected) < 1e-9


def test_long_get_fits_inside_a_batch(client: httpx.Client, emu: RunningEmulator) -> None:
    ids = [emu.contact_id(i) for i in range(1000)]  # ~40 KB of URL: too long outside $batch
    values = ",".join(f"'{i}'" for i in ids)
    flt = f"Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=[{values}])"
    url = f"contacts?$select=contactid&$filter={flt}"
    assert 32_768 < len(url) < 65_536
    r = post_batch(client, [("GET", url, None, None)])
    assert statuses(r) == [200]
    assert r.text.count('"contactid"') == 1000
    too_long = url + "&@x='" + "y" * 30_000 + "'"
    r = post_batch(client, [("GET", too_long, None, None)], Prefer="odata.continue-on-error")
    assert statuses(r) == [414]


def test_batch_accepts_quoted_boundary_lf_lines_and_part_content_length(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    list_id = create_list(client)
    body = json.dumps(members_body(list_id, [emu.contact_id(8)]))
    text = (
        "--b1\n"
        "Content-Type: application/http\n"
        "Content-Transfer-Encoding: binary\n"
        f"Content-Length: {len(body) + 80}\n"
        "\n"
        "POST /api/data/v9.2/AddListMembersList HTTP/1.1\n"
        "Content-Type: application/json; type=entry\n"
        "\n"
        f"{body}\n"
        "--b1--\n"
    )
    r = client.post(
        "$batch", content=text.encode(), headers={"Content-Type": 'multipart/mixed; boundary="b1"'}
    )
    assert r.status_code == 200, r.text
    assert statuses(r) == [204]
    assert emu.state.list_members(list_id) == {emu.contact_id(8)}


def test_change_set_rollback_restores_every_kind_of_change(
    client: httpx.Client, emu: RunningEmulator
) -> None:
    doomed = create_list(client, "Doomed")
    kept = create_list(client, "Kept")
    members = {emu.contact_id(i) for i in range(5)}
    emu.state.add_members(doomed, members)
    emu.state.add_members(kept, members)
    victim = emu.contact_id(1)
    before = (emu.state.get_list(kept), emu.state.contact_statecode(victim))
    r = post_batch(
        client,
        [
            [
                ("POST", "lists", {"listname": "Created", "createdfromcode": 2}, "1"),
                ("PATCH", f"lists({kept})", {"description": "changed", "purpose": "p"}, "2"),
                ("DELETE", f"lists({doomed})", None, "3"),
                ("PATCH", f"contacts({victim})", {"statecode": 1, "statuscode": 2}, "4"),
                ("DELETE", f"contacts({emu.contact_id(2)})", None, "5"),
                ("POST", "RemoveListMembersList", members_body(kept, [emu.contact_id(3)]), "6"),
                ("DELETE", f"lists({doomed})", None, "7"),  # already deleted: 404, roll back
            ]
        ],
    )
    assert r.status_code == 404
    assert statuses(r) == [404] and "Content-ID: 7" in r.text
    assert emu.state.find_lists("Created") == []
    assert emu.state.list_members(doomed) == members
    assert emu.state.list_members(kept) == members
    assert (emu.state.get_list(kept), emu.state.contact_statecode(victim)) == before
    assert emu.state.contact_exists(emu.contact_id(2))
