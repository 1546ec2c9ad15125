"""This process's view of one identity's shared throttling budget (see shared_budget.py for the
design): a cached copy of the partition, fresh reads right before requests leave, and a
housekeeper thread that renews this process's participants and moves their slots.

Slots (requests a participant may keep in flight) are explicit leases in the partition's "slots"
row, changed only under its ETag, so their sum over live participants never exceeds the dop.
Each participant's *target* is its equal share of the dop by join order (``target``); its
*held* slots follow the target:
- shrinking is local first: the participant stops admitting requests beyond the target and
  publishes the smaller number once its requests in flight are within it (never before);
- growing is published first: slots are claimed only when the row shows them free, and used
  only after the claim was written.
A newcomer therefore sends only into slots that are actually free: no guessed settling time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from shared.errors import StoreError
from shared.store.budgets import BudgetSnapshot
from shared.store.protocols import BudgetStore

if TYPE_CHECKING:
    from shared.runs.shared_budget import SharedGate, SlotUse

log = logging.getLogger(__name__)

CACHE_SECONDS = 0.2  # how often a participant that wants more slots re-reads the row
SEND_FRESH_SECONDS = 0.05  # a request leaves only after a read of the shared block this recent
IDLE_READ_SECONDS = 2.0  # otherwise the housekeeper re-reads this often (to see joins, leaves)
TICK_SECONDS = 0.25
READ_RETRY_SECONDS = 1.0  # after a failed read the last state serves this long before a retry
PARTICIPANT_SECONDS = 15.0  # a participant row outlives its last renewal by this much
RENEW_AFTER = PARTICIPANT_SECONDS / 3
MAX_CONCURRENT = 52  # Dataverse's concurrent-request limit per user [S3]

BudgetBoard = BudgetStore  # the shared state's storage (shared.store.budgets.BudgetRepository)


def target(snap: BudgetSnapshot, participant: str, capacity: int) -> int:
    """A participant's equal share of ``capacity`` by join order: with n live participants the
    k-th gets capacity // n, plus one while k < capacity % n (the shares add up to capacity).
    A participant not (yet) visible in the snapshot gets nothing."""
    rank = snap.rank(participant)
    if rank is None:
        return 0
    base, extra = divmod(capacity, len(snap.participants))
    return base + (1 if rank < extra else 0)


def grant(
    snap: BudgetSnapshot, held: Mapping[str, int], capacities: Mapping[str, int]
) -> dict[str, int] | None:
    """The slots map to write when this process's participants (``held``: what each holds now,
    ``capacities``: its dop) take the free slots their targets allow, oldest first; None when
    nothing changes. Other participants' entries are kept as read (only live ones count)."""
    live = {p.id for p in snap.participants}
    ours = {pid: n for pid, n in held.items() if pid in live}
    if not ours:
        return None
    capacity = min(capacities[pid] for pid in ours)
    new = {pid: n for pid, n in snap.held.items() if pid not in held}
    free = capacity - sum(new.values()) - sum(ours.values())
    for pid in sorted(ours, key=lambda p: snap.rank(p) or 0):
        extra = max(0, min(target(snap, pid, capacities[pid]) - ours[pid], free))
        ours[pid] += extra
        free -= extra
    new.update({pid: n for pid, n in ours.items() if n > 0})
    return None if new == dict(snap.held) else new


class IdentityView:
    """This process's cached copy of one identity's shared state, and its housekeeper."""

    def __init__(
        self, board: BudgetBoard, key: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.board = board
        self.key = key
        self._clock = clock
        self._io = threading.Lock()  # one read at a time: concurrent askers share its answer
        self._snapshot = BudgetSnapshot(not_before=0.0, blocks=0, participants=())
        self._fetched = float("-inf")  # when the cached snapshot's read started
        self._retry_at = float("-inf")
        self._failing = False
        self._local_not_before = 0.0  # blocks this process recorded (kept if a write is lost)
        self._gates: set[SharedGate] = set()
        self._gates_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()
        self.sends = 0  # requests let through by this process's gates of this identity
        self.block_writes = 0
        self.block_write_max = 0.0  # seconds from a 429's answer to its block row written
        self.slot_seconds = {"held": 0.0, "busy": 0.0, "idle": 0.0}  # of closed participants

    # --- the cached state ---------------------------------------------------------------------

    def current(self, max_age: float = CACHE_SECONDS) -> BudgetSnapshot:
        """The shared state, read again when the cached copy is older than ``max_age``. On a
        storage error the last state seen serves (for READ_RETRY_SECONDS before a retry)."""
        if self._clock() - self._fetched < max_age:
            return self._merged()
        with self._io:
            started = self._clock()
            if started - self._fetched < max_age or started < self._retry_at:
                return self._merged()
            try:
                fresh = self.board.snapshot(self.key)
            except StoreError as exc:
                if not self._failing:  # once per outage, not five times a second
                    log.warning("throttling budget unreadable (%s); using the last state", exc)
                self._failing = True
                self._retry_at = self._clock() + READ_RETRY_SECONDS
                return self._merged()
            self._failing = False
            self._snapshot, self._fetched = fresh, started
            return self._merged()

    def _merged(self) -> BudgetSnapshot:
        snap = self._snapshot
        if self._local_not_before > snap.not_before:
            return BudgetSnapshot(
                self._local_not_before, snap.blocks, snap.participants, snap.held, snap.slots_etag
            )
        return snap

    def note_block(self, until: float, write_seconds: float | None) -> None:
        with self._stats_lock:
            self._local_not_before = max(self._local_not_before, until)
            if write_seconds is not None:
                self.block_writes += 1
                self.block_write_max = max(self.block_write_max, write_seconds)

    def add_use(self, use: SlotUse) -> None:
        with self._stats_lock:
            self.slot_seconds["held"] += use.held
            self.slot_seconds["busy"] += use.busy
            self.slot_seconds["idle"] += use.idle

    def count_send(self) -> None:
        with self._stats_lock:
            self.sends += 1

    def stats(self) -> dict[str, object]:
        """Process-wide figures for the bench (logged when a participant leaves)."""
        with self._stats_lock:
            return {
                "pid": os.getpid(),
                "sends": self.sends,
                "table_ops": dict(self.board.ops),
                "block_writes": self.block_writes,
                "block_write_max_s": round(self.block_write_max, 3),
                "slot_seconds": {k: round(v, 1) for k, v in self.slot_seconds.items()},
            }

    # --- participants and the housekeeper -----------------------------------------------------

    def register(self, gate: SharedGate) -> None:
        with self._gates_lock:
            self._gates.add(gate)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"budget-{self.key[:8]}", daemon=True
                )
                self._thread.start()
        self.wake()

    def unregister(self, gate: SharedGate) -> None:
        with self._gates_lock:
            self._gates.discard(gate)
        log.info("shared budget stats %s %s", self.key[:12], json.dumps(self.stats()))

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()
            with self._gates_lock:
                gates = list(self._gates)
                if not gates:
                    self._thread = None
                    return
            try:
                for gate in gates:
                    gate.renew_if_due()
                self.balance(gates)
            except Exception:  # the housekeeper must outlive any one bad turn
                log.exception("throttling budget housekeeping failed; trying again")

    def balance(self, gates: list[SharedGate]) -> None:
        """Move this process's participants' slots toward their targets (module docstring)."""
        wanting = any(g.wants_more() for g in gates)
        snap = self.current(CACHE_SECONDS if wanting else IDLE_READ_SECONDS)
        for gate in gates:
            if snap.rank(gate.participant.id) is None:
                continue  # not in this (cached) state yet, or lapsed: no new target from it
            goal = target(snap, gate.participant.id, gate.capacity)
            gate.retarget(goal)
            # Slots the row already shows as ours are ours (e.g. a claim written before a
            # shrink that was not published yet): use them up to the target.
            gate.grow_to(min(goal, snap.held.get(gate.participant.id, 0)))

        def decide(fresh: BudgetSnapshot) -> dict[str, int] | None:
            held = {g.participant.id: g.held for g in gates}
            return grant(fresh, held, {g.participant.id: g.capacity for g in gates})

        if decide(snap) is None:
            return  # nothing to publish and, as far as we know, nothing free to claim
        started = self._clock()
        try:
            written = self.board.update_held(self.key, decide)
        except StoreError as exc:  # keep what we hold; shrinks stay local until it works
            log.warning("could not update the throttling budget's slots (%s)", exc)
            return
        with self._io:
            if started > self._fetched:
                self._snapshot, self._fetched = written, started
        for gate in gates:
            gate.grow_to(written.held.get(gate.participant.id, 0))
