"""The list Sales receives carries the name the API accepted (one template function)."""

from __future__ import annotations

from typing import Any

from shared.models import Trigger
from shared.runs.requests import request_run
from tests.runs.helpers import (
    drain,
    list_id_of,
    make_connection,
    make_export,
    seed_customers,
    seed_segment,
)


def test_escaped_braces_reach_sales_as_single_braces(store: Any, settings: Any, emu: Any) -> None:
    seed_customers(store, emu, range(0, 3))
    seed_segment(store, "VIP", range(0, 3))
    export = make_export(
        store, make_connection(store, emu), ["VIP"], list_name="Promo {{2025}} {segment}"
    )
    run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")

    final = drain(store, settings, run)

    row = emu.state.get_list(list_id_of(final, "VIP"))
    assert row is not None and row["listname"] == "Promo {2025} VIP"
    assert final.segments[0].list_name == "Promo {2025} VIP"


def test_an_export_never_takes_over_another_exports_list(
    store: Any, settings: Any, emu: Any
) -> None:
    seed_customers(store, emu, range(100, 106))
    seed_segment(store, "Owned", range(100, 103))
    seed_segment(store, "Intruder", range(103, 106))
    connection = make_connection(store, emu)
    owner = make_export(store, connection, ["Owned"], name="Admin-only")
    first = drain(
        store, settings, request_run(store, owner.id, trigger=Trigger.ON_DEMAND, requested_by="a")
    )
    list_id = list_id_of(first, "Owned")
    before = emu.state.list_members(list_id)
    # written straight to the store (the API refuses it with 409): same rendered name
    intruder = make_export(store, connection, ["Intruder"], list_name="Owned", name="Contrib")
    run = request_run(store, intruder.id, trigger=Trigger.ON_DEMAND, requested_by="c")

    final = drain(store, settings, run)

    [segment] = final.segments
    assert segment.error is not None and owner.id in segment.error
    assert emu.state.list_members(list_id) == before
    assert [row["listid"] for row in emu.state.find_lists("Owned")] == [list_id]
