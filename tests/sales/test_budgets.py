"""Request budgets at a reduced scale (the benchmark's 100k targets, divided down): every request
an export sends is accounted for, and nothing is spent twice."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from shared.sales import open_sales_client, sync_segment
from tests.sales.helpers import Segment, active, connection_for, requests_by_kind, settings_for

N = 20_000
PAGE = 5000


@pytest.fixture(scope="module")
def big_emulator() -> Iterator[Any]:
    import os

    from emulator import EmulatorConfig, start_emulator

    saved = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    emu = start_emulator(
        EmulatorConfig(contacts=N + N // 10, inactive_fraction=0.05, seed=21, time_scale=0.005),
        port=0,
    )
    try:
        yield emu
    finally:
        emu.stop()
        os.environ.update(saved)


def _run(emu: Any, request: Any) -> tuple[Any, dict[str, int], dict[str, Any]]:
    emu.reset_stats(throttling=True)
    with open_sales_client(connection_for(emu), settings_for(emu)) as client:
        out = sync_segment(client, request)
    stats = emu.stats()
    return out, requests_by_kind(stats), stats


def test_initial_refresh_and_churn_stay_within_their_request_budgets(big_emulator: Any) -> None:
    emu = big_emulator
    segment = Segment.of(emu, range(N))
    first, made, stats = _run(emu, segment.request("Budget"))
    matched = active(emu, range(N))
    assert first.result.complete and emu.state.list_members(first.result.list_id) == matched
    # 100k initial must fit in 320 requests; here: find + create + validation + add chunks
    chunks = made.pop("add-list-members")
    assert chunks <= math.ceil(len(matched) / 250) and chunks >= math.ceil(len(matched) / 1000)
    assert made == {"list-query": 1, "list-create": 1, "batch": made["batch"]}
    assert made["batch"] <= math.ceil(N / 1000)  # one query per 1,000 ids, several per batch
    assert stats["violations"] == 0 and stats["max_concurrency"] <= 8

    list_id = first.result.list_id
    again, made, _ = _run(emu, segment.request("Budget", list_id=list_id))
    # no change: the list, its pages, one validation batch for the inactive contacts
    pages = math.ceil(len(matched) / PAGE)
    assert made == {"list-get": 1, "list-members-read": pages, "batch": 1}
    assert again.result.added == again.result.removed == 0

    rng = random.Random(3)
    leaving = set(rng.sample(range(N), N // 20))
    joining = range(N, N + N // 20)
    segment.rows.update(Segment.of(emu, joining).rows)
    ids = [f"cust-{i}" for i in range(N) if i not in leaving] + [f"cust-{i}" for i in joining]
    churn, made, stats = _run(emu, segment.request("Budget", ids, list_id=list_id))
    wanted = active(emu, [i for i in range(N) if i not in leaving] + list(joining))
    assert churn.result.complete and emu.state.list_members(list_id) == wanted
    assert churn.result.removed == len(active(emu, sorted(leaving)))
    changes = made.pop("add-list-members") + made.pop("remove-list-members")
    assert changes <= 2 * 8  # about one round of the dop for each direction
    assert made["list-get"] == 1 and made["list-members-read"] == pages
    assert made["batch"] <= 3
    assert stats["violations"] == 0
