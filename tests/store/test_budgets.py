"""The shared throttling budget's rows (Azurite): a Retry-After only moves forward, participants
are ordered by joining and expire when their worker stops renewing."""

from __future__ import annotations

import threading

from shared.settings import Settings
from shared.store import Store, open_store
from shared.store.budgets import BudgetSnapshot


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_block_moves_forward_only(store: Store) -> None:
    assert store.budgets.snapshot("k1").not_before == 0.0
    assert store.budgets.block_until("k1", 100.0) == 100.0
    assert store.budgets.block_until("k1", 50.0) == 100.0  # an earlier Retry-After loses
    assert store.budgets.block_until("k1", 130.0) == 130.0
    snap = store.budgets.snapshot("k1")
    assert (snap.not_before, snap.blocks) == (130.0, 2)
    assert store.budgets.snapshot("k2").not_before == 0.0  # another identity is untouched


def test_concurrent_blocks_keep_the_latest(store: Store) -> None:
    barrier = threading.Barrier(6)

    def block(i: int) -> None:
        barrier.wait()
        store.budgets.block_until("k", 1000.0 + i)

    threads = [threading.Thread(target=block, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert store.budgets.snapshot("k").not_before == 1005.0


def test_participants_in_join_order_and_expiry(settings: Settings) -> None:
    clock = Clock()
    s = open_store(settings, clock=clock)
    try:
        a = s.budgets.join("k", "export-a.1", "export-a", 30)
        clock.now += 1
        s.budgets.join("k", "export-b.1", "export-b", 30)
        snap = s.budgets.snapshot("k")
        assert [p.id for p in snap.participants] == ["export-a.1", "export-b.1"]
        assert snap.rank("export-b.1") == 1
        clock.now += 20
        s.budgets.renew("k", a, 30)  # keeps its place in the order
        clock.now += 15  # b was not renewed: its worker is gone
        snap = s.budgets.snapshot("k")
        assert [p.id for p in snap.participants] == ["export-a.1"]
        assert snap.participants[0].joined_at == a.joined_at
        s.budgets.leave("k", "export-a.1")
        s.budgets.leave("k", "export-a.1")  # idempotent
        assert s.budgets.snapshot("k").participants == ()
    finally:
        s.close()


def test_slots_change_under_the_etag_only(settings: Settings) -> None:
    """Six writers (processes) claim slots at once: each decision is made on the row it then
    replaces, so the sum never passes the capacity; entries of non-live participants are void."""
    stores = [open_store(settings) for _ in range(6)]
    try:
        for i, s in enumerate(stores):
            s.budgets.join("k", f"p{i}", f"export-{i}", 60)
        barrier = threading.Barrier(6)

        def claim(i: int) -> None:
            barrier.wait()

            def take_two(snap: BudgetSnapshot) -> dict[str, int] | None:
                free = 8 - sum(snap.held.values())
                return {**snap.held, f"p{i}": 2} if free >= 2 else None

            stores[i].budgets.update_held("k", take_two)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        held = stores[0].budgets.snapshot("k").held
        assert sum(held.values()) == 8 and set(held.values()) == {2}
        gone = next(iter(held))
        stores[0].budgets.leave("k", gone)  # its worker ended: its slots are free
        assert gone not in stores[0].budgets.snapshot("k").held
    finally:
        for s in stores:
            s.close()
