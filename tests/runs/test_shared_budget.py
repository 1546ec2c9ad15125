"""The gate shared by every worker of one identity (Table Storage on Azurite): a 429 seen by one
process holds back the others, in-flight shares add up to the dop hint, waits respect deadlines.
Two Store objects stand for two worker processes (each has its own cache of the shared state)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.runs.budget import TurnNotYet
from shared.runs.shared_budget import JOIN_SETTLE, MAX_DRAIN, SharedGate, shared_gate
from shared.sales.client import ThrottleGate, WaitBeyondDeadline
from shared.settings import Settings
from shared.store import Store, open_store


class Stop(Exception):
    pass


@pytest.fixture
def two_stores(settings: Settings) -> Iterator[tuple[Store, Store]]:
    a, b = open_store(settings), open_store(settings)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def later() -> float:
    return time.time() + JOIN_SETTLE + MAX_DRAIN + 1  # past any newcomer's settling time


def test_a_429_in_one_process_holds_back_the_other(two_stores: tuple[Store, Store]) -> None:
    store_a, store_b = two_stores
    with (
        shared_gate(store_a.budgets, "id1", ThrottleGate(), label="export-a") as gate_a,
        shared_gate(store_b.budgets, "id1", ThrottleGate(), label="export-b") as gate_b,
        shared_gate(store_b.budgets, "id2", ThrottleGate(), label="export-c") as other,
    ):
        for gate in (gate_a, gate_b, other):
            gate.set_capacity(8)
        gate_a.close_for(100.0)  # process A was answered 429, Retry-After 100 s
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            raise Stop

        b = SharedGate(gate_b.view, gate_b.local, gate_b.participant, wall=later, sleep=sleep)
        b.set_capacity(8)
        with pytest.raises(Stop):
            b.enter()
        ahead = later() - time.time()  # B's clock runs ahead (past its settling time)
        assert 95 - ahead < slept[0] <= 100 - ahead + 1  # B waits out A's Retry-After
        # With a deadline sooner than the block's end, B stops instead of waiting past it.
        with pytest.raises(WaitBeyondDeadline, match="throttled"):
            b.enter(time.monotonic() + 5)
        # Another identity (another connection) is not held back.
        c = SharedGate(other.view, other.local, other.participant, wall=later)
        c.set_capacity(8)
        assert c.enter() is False
        c.leave(False, throttled=False)


def test_shares_add_up_to_the_dop_hint(two_stores: tuple[Store, Store]) -> None:
    store_a, store_b = two_stores
    with (
        shared_gate(store_a.budgets, "id", ThrottleGate(), label="e1") as g1,
        shared_gate(store_b.budgets, "id", ThrottleGate(), label="e2") as g2,
        shared_gate(store_a.budgets, "id", ThrottleGate(), label="e3") as g3,
    ):
        gates = [SharedGate(g.view, g.local, g.participant, wall=later) for g in (g1, g2, g3)]
        for g in gates:
            g.set_capacity(8)
        snap = store_b.budgets.snapshot("id")
        assert [g.share(snap) for g in gates] == [3, 3, 2]
        # A participant may not exceed its share: a third request waits for one of its two.
        third = gates[2]
        assert [third.enter() for _ in range(2)] == [False, False]
        entered = threading.Event()
        waiter = threading.Thread(target=lambda: (third.enter(), entered.set()))
        waiter.start()
        third.leave(False, throttled=False)  # one of its requests came back
        waiter.join(timeout=60)
        assert entered.is_set() and third._in_flight == 2  # never more than its share
    # Everyone left: a newcomer alone gets the whole dop.
    with shared_gate(store_a.budgets, "id", ThrottleGate(), label="e4") as g4:
        g = SharedGate(g4.view, g4.local, g4.participant, wall=later)
        g.set_capacity(8)
        assert g.share(store_a.budgets.snapshot("id")) == 8


def test_more_participants_than_dop_take_turns(settings: Settings) -> None:
    store = open_store(settings)
    try:
        with (
            shared_gate(store.budgets, "id", ThrottleGate(), label="first") as g1,
            shared_gate(store.budgets, "id", ThrottleGate(), label="second") as g2,
        ):
            gates = [SharedGate(g.view, g.local, g.participant, wall=later) for g in (g1, g2)]
            for g in gates:
                g.set_capacity(1)
            snap = store.budgets.snapshot("id")
            assert [g.share(snap) for g in gates] == [1, 0]  # the older one sends first
            g1.close()  # its slice ended: the turn passes on
            assert gates[1].share(store.budgets.snapshot("id")) == 1
    finally:
        store.close()


def test_a_slice_finding_its_identity_fully_used_waits_for_a_turn(settings: Settings) -> None:
    store = open_store(settings)
    try:
        with shared_gate(store.budgets, "id", ThrottleGate(), label="big", capacity=1):
            small = shared_gate(store.budgets, "id", ThrottleGate(), label="small", capacity=1)
            with pytest.raises(TurnNotYet) as info, small:
                pass
            assert info.value.ahead == 1
            assert [p.label for p in store.budgets.snapshot("id").participants] == ["big"]
        # The turn is free again: the next slice joins.
        with shared_gate(store.budgets, "id", ThrottleGate(), label="small", capacity=1) as gate:
            assert gate.participant.label == "small"
    finally:
        store.close()


def test_a_newcomer_waits_until_older_participants_requests_are_back(settings: Settings) -> None:
    store = open_store(settings)
    try:
        with (
            shared_gate(store.budgets, "id", ThrottleGate(), label="old") as old,
            shared_gate(store.budgets, "id", ThrottleGate(), label="new") as new,
        ):
            for g in (old, new):
                g.set_capacity(8)
            snap = store.budgets.snapshot("id")
            assert old.share(snap) == 4  # the oldest never waits
            assert new.share(snap) == 0  # the old one may still have 8 in flight
            settled = SharedGate(new.view, new.local, new.participant, wall=later)
            settled.set_capacity(8)
            assert settled.share(snap) == 4
    finally:
        store.close()


def test_a_slice_without_a_turn_gives_its_worker_back_and_runs_later(
    azurite: Any, table_prefix: str, emu: Any
) -> None:
    from shared.models import RunStatus, Trigger
    from shared.runs.requests import request_run
    from shared.runs.worker import Outcome, process_message
    from shared.sales.factory import identity_key
    from shared.store import encode_message
    from tests.runs.helpers import (
        drain,
        list_id_of,
        make_connection,
        make_export,
        run_settings,
        seed_customers,
        seed_segment,
    )

    settings = run_settings(azurite, table_prefix, emu, SALES_MAX_PARALLEL="1")
    store = open_store(settings)
    store.ensure()
    try:
        indices = [i for i in range(700, 760) if not emu.is_inactive(i)]
        seed_customers(store, emu, indices)
        seed_segment(store, "Turns", indices)
        connection = make_connection(store, emu)
        export = make_export(store, connection, ["Turns"])
        run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
        key = identity_key(connection)
        # Another worker's slice is sending with the identity and uses its one parallel request.
        store.budgets.join(key, "other-export.1", "other-export", 60)
        [received] = store.queue.receive(visibility_timeout=30)
        body = encode_message(received.message)
        assert process_message(store, settings, body) is Outcome.BUSY
        waiting = store.runs.get(export.id, run.id)
        assert "waiting for a turn" in (waiting.reason or "")
        assert [p.label for p in store.budgets.snapshot(key).participants] == ["other-export"]
        store.queue.delete(received)
        store.budgets.leave(key, "other-export.1")  # its slice ended: our turn
        final = drain(store, settings, run)
        assert final.status is RunStatus.SUCCEEDED, final.error
        assert emu.state.list_members(list_id_of(final, "Turns")) == {
            emu.contact_id(i) for i in indices
        }
    finally:
        store.close()
