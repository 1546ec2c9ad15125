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
