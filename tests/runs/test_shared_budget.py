"""The gate shared by every worker of one identity (Table Storage on Azurite): a 429 seen by one
process holds back the others, slots add up to the dop hint and a newcomer only uses free ones,
waits respect deadlines. Two Store objects stand for two worker processes (each has its own
cached view and housekeeper)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.runs.budget import TurnNotYet
from shared.runs.shared_budget import SharedGate, identity_view, shared_gate
from shared.sales.client import ThrottleGate, WaitBeyondDeadline
from shared.settings import Settings
from shared.store import Store, open_store

WAIT_LIMIT = 60.0  # a bound against hangs, not a timing assertion


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


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def published(store: Store, key: str) -> int:
    """Slots held by live participants, as the shared row says."""
    return sum(store.budgets.snapshot(key).held.values())


def test_a_429_in_one_process_holds_back_the_other(two_stores: tuple[Store, Store]) -> None:
    store_a, store_b = two_stores
    with (
        shared_gate(store_a.budgets, "id1", ThrottleGate(), label="export-a") as gate_a,
        shared_gate(store_b.budgets, "id2", ThrottleGate(), label="export-c") as other,
    ):
        for gate in (gate_a, other):
            gate.set_capacity(8)
        gate_a.close_for(100.0)  # process A was answered 429, Retry-After 100 s
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            raise Stop

        joined = store_b.budgets.join("id1", "export-b.1", "export-b", 30)
        b = SharedGate(identity_view(store_b.budgets, "id1"), ThrottleGate(), joined, sleep=sleep)
        try:
            b.set_capacity(8)
            with pytest.raises(Stop):
                b.enter()
            assert 95 < slept[0] <= 100  # B waits out A's Retry-After
            # With a deadline sooner than the block's end, B stops instead of waiting past it.
            with pytest.raises(WaitBeyondDeadline, match="throttled"):
                b.enter(time.monotonic() + 5)
        finally:
            b.close()
        # Another identity (another connection) is not held back.
        assert other.enter() is False
        other.leave(False, throttled=False)


def test_slots_add_up_to_the_dop_hint(two_stores: tuple[Store, Store]) -> None:
    store_a, store_b = two_stores
    with (
        shared_gate(store_a.budgets, "id", ThrottleGate(), label="e1", capacity=8) as g1,
        shared_gate(store_b.budgets, "id", ThrottleGate(), label="e2", capacity=8) as g2,
        shared_gate(store_a.budgets, "id", ThrottleGate(), label="e3", capacity=8) as g3,
    ):
        gates = [g1, g2, g3]
        snap = store_b.budgets.snapshot("id")
        assert [g.share(snap) for g in gates] == [3, 3, 2]
        for g in gates:
            g.view.wake()
        wait_until(lambda: [g.held for g in gates] == [3, 3, 2], "every share held")
        assert store_b.budgets.snapshot("id").held == {g.participant.id: g.held for g in gates}
        # A participant may not exceed its slots: a third request waits for one of its two.
        third = gates[2]
        assert [third.enter() for _ in range(2)] == [False, False]
        entered = threading.Event()
        waiter = threading.Thread(target=lambda: (third.enter(), entered.set()))
        waiter.start()
        third.leave(False, throttled=False)  # one of its requests came back
        waiter.join(timeout=WAIT_LIMIT)
        assert entered.is_set() and third.in_flight == 2  # never more than its slots
        for _ in range(2):
            third.leave(False, throttled=False)
    # Everyone left: a newcomer alone gets the whole dop.
    with shared_gate(store_a.budgets, "id", ThrottleGate(), label="e4", capacity=8) as g4:
        assert g4.share(store_a.budgets.snapshot("id")) == 8
        wait_until(lambda: g4.held == 8, "the whole dop held")


def test_a_newcomer_uses_only_slots_that_are_free(two_stores: tuple[Store, Store]) -> None:
    store_a, store_b = two_stores
    with shared_gate(store_a.budgets, "id", ThrottleGate(), label="old", capacity=8) as old:
        for _ in range(8):  # the old participant alone: 8 requests in flight
            old.enter()
        assert old.in_flight == 8
        with shared_gate(store_b.budgets, "id", ThrottleGate(), label="new", capacity=8) as new:
            # Both have seen each other: each one's share is now 4...
            old.view.wake()
            wait_until(lambda: old.wants_more() is False and old._target == 4, "old retargeted")
            new.view.wake()
            wait_until(lambda: new._target == 4, "the newcomer's target")
            # ...but the old one's 8 requests are still out: the newcomer holds nothing yet,
            # and the slots published for live participants never exceed 8.
            assert (old.held, new.held) == (8, 0)
            assert published(store_a, "id") == 8
            for _ in range(3):
                old.leave(False, throttled=False)
            wait_until(lambda: new.held == 3, "the three freed slots claimed")
            assert old.held == 5 and published(store_b, "id") == 8
            old.leave(False, throttled=False)
            wait_until(lambda: (old.held, new.held) == (4, 4), "equal shares")
            assert [new.enter() for _ in range(4)] == [False] * 4
            assert published(store_a, "id") == 8
            for _ in range(4):
                new.leave(False, throttled=False)
                old.leave(False, throttled=False)
        # The newcomer left: its slots are free for the old one again.
        old.view.wake()
        wait_until(lambda: old.held == 8, "the old participant's whole dop")


def test_slots_the_row_shows_as_ours_are_used_again(settings: Settings) -> None:
    """A participant that gave up slots locally (as a stale cached state without its row makes
    it do) while the row still reserves them for it takes them back: no write is needed, and
    none would come (the row already says what it wants), so it must not wait for one."""
    store = open_store(settings)
    try:
        with shared_gate(store.budgets, "id", ThrottleGate(), label="x", capacity=4) as gate:
            wait_until(lambda: gate.held == 4, "the slots held")
            gate.retarget(0)
            gate.view.wake()
            wait_until(lambda: gate.held == 4, "the reserved slots used again")
            assert [gate.enter() for _ in range(4)] == [False] * 4
            for _ in range(4):
                gate.leave(False, throttled=False)
    finally:
        store.close()


def test_more_participants_than_dop_take_turns(settings: Settings) -> None:
    store = open_store(settings)
    try:
        with (
            shared_gate(store.budgets, "id", ThrottleGate(), label="first") as g1,
            shared_gate(store.budgets, "id", ThrottleGate(), label="second") as g2,
        ):
            gates = [g1, g2]
            for g in gates:
                g.set_capacity(1)
            snap = store.budgets.snapshot("id")
            assert [g.share(snap) for g in gates] == [1, 0]  # the older one sends first
            wait_until(lambda: g1.held == 1, "the first one's turn")
            assert g2.held == 0
            g1.close()  # its slice ended: the turn passes on
            assert g2.share(store.budgets.snapshot("id")) == 1
            wait_until(lambda: g2.held == 1, "the second one's turn")
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


def test_a_storage_outage_never_blocks_work_and_keeps_the_slots_strict() -> None:
    """Azurite of its own, stopped mid-slice: the participant keeps sending with the slots it
    holds (reads fall back to the last state), never more, and a 429 still closes its gate."""
    from shared.storage import StorageConnection
    from tests.support import start_azurite

    server = start_azurite()
    store = open_store(
        Settings(
            storage=StorageConnection.from_string(server.connection_string), table_prefix="out"
        )
    )
    try:
        with shared_gate(store.budgets, "id", ThrottleGate(), label="x", capacity=3) as gate:
            wait_until(lambda: gate.held == 3, "the slots held")
            server.stop()  # storage is gone from here on
            assert [gate.enter() for _ in range(3)] == [False] * 3  # work goes on
            with pytest.raises(WaitBeyondDeadline, match="parallel slot"):
                gate.enter(time.monotonic() + 1)  # but never past the slots it holds
            for _ in range(3):
                gate.leave(False, throttled=False)
            gate.close_for(60)  # a 429: the write fails, this process still honours it
            with pytest.raises(WaitBeyondDeadline, match="throttled"):
                gate.enter(time.monotonic() + 5)
    finally:
        server.stop()
        store.close()
