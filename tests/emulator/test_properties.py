"""Property tests on the Web API layer in-process (no socket): malformed input is a 4xx, never a
crash, and member actions match a plain set model."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.auth import Principal
from emulator.config import EmulatorConfig
from emulator.server import Emulator
from emulator.webapi import ApiRequest
from tests.emulator.conftest import members_body

HEADERS = {
    "odata-version": "4.0",
    "odata-maxversion": "4.0",
    "accept": "application/json",
    "content-type": "application/json",
}
PRINCIPAL = Principal("client", "user", float("inf"))
APP = Emulator(EmulatorConfig(contacts=50, seed=2))
APP.bind_url("https://127.0.0.1:1")

filter_atoms = st.sampled_from(
    [
        "statecode eq 0",
        "contactid eq ",
        "Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['",
        "'",
        "''",
        "(",
        ")",
        " and ",
        " or ",
        "@p1",
        "[",
        "]",
        ",",
        "eq",
        "null",
        "true",
        "-1",
        APP.state.contact_id(1),
        "listname",
        "\u00e9",
    ]
)


def _get(target: str) -> int:
    return APP.api.handle(ApiRequest("GET", target, HEADERS, b"", PRINCIPAL)).status


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(filter_atoms, max_size=8).map("".join), st.sampled_from(["contacts", "lists"]))
def test_any_filter_is_answered_200_400_or_501(flt: str, entity: str) -> None:
    status = _get(f"{entity}?$filter={quote(flt)}&@p1='contactid'")
    assert status in (200, 400, 501)  # 501: documented OData the emulator does not emulate


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_path_is_answered_without_crashing(path: str) -> None:
    assert _get(quote(path)) in (200, 400, 404, 405, 501)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, 49), max_size=6)), max_size=12))
def test_member_actions_match_a_set_model(steps: list[tuple[bool, list[int]]]) -> None:
    list_id = APP.state.create_list({"listname": "model", "createdfromcode": 2})
    model: set[str] = set()
    for add, indexes in steps:
        ids = [APP.state.contact_id(i) for i in indexes]
        body = json.dumps(members_body(list_id, ids)).encode()
        action = "AddListMembersList" if add else "RemoveListMembersList"
        resp = APP.api.handle(ApiRequest("POST", action, HEADERS, body, PRINCIPAL))
        assert resp.status == 204
        assert (resp.added if add else resp.removed) == len(
            set(ids) - model if add else set(ids) & model
        )
        model = model | set(ids) if add else model - set(ids)
    assert APP.state.list_members(list_id) == model
    APP.state.delete_list(list_id)
