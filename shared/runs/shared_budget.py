"""One throttling budget per (Sales environment, app identity), shared by every worker process.

Dataverse evaluates service protection per user per environment. On Azure Functions each
instance is a separate process (and one instance runs several queue messages at once), so a gate
inside one process cannot keep the identity within its limits: a 429 seen by one process must
hold back all of them, and their requests in flight together must stay within ``x-ms-dop-hint``.

Why Table Storage: the app already depends on it (no new service to deploy or secure), every
Functions plan reaches it, it offers ETag-guarded writes and one partition is read in one cheap
query. A Service Bus session or Redis would add infrastructure; a blob lease allows one holder
only; the Functions host has no cross-instance semaphore. The rows are in shared/store/budgets.py,
this process's cached view and its housekeeper in budget_view.py.

How it works:
- **Retry-After is shared.** The process answered 429 closes its own gate at once and records
  the block in ONE upsert of its own row (no read, no contention). Every request re-reads the
  shared state right before it leaves unless this process read it within SEND_FRESH_SECONDS,
  and waits until the latest NotBefore passes. What remains is the time a 429 takes to reach its
  receiver plus that upsert plus the other process's read and send (bench/README.md measures
  it); Dataverse documents no grace for requests already on their way, so it is kept minimal
  rather than assumed harmless.
- **Requests in flight are strictly shared out.** Each slice sending with the identity is a
  participant (a row renewed while it works; a dead worker's row lapses and its slots with it).
  Participants hold explicit slots in the ETag-guarded "slots" row: their sum over live
  participants never exceeds ``dop`` = min(hint, 52), a participant never has more requests
  in flight than it holds, gives slots back only once its requests are back and claims only
  free ones (budget_view.py). Targets are equal shares by join order.
- **Fair turns.** Equal shares mean every export sharing an identity progresses at the same
  rate, so a small export finishes early instead of waiting for a 1M one; with more
  participants than ``dop`` the oldest ``dop`` send and the rest wait for a turn (each slice
  joins afresh, so turns rotate slice by slice). An export on another connection has another
  identity, another partition and is never held back.
- **Bounded waits.** A shared Retry-After that would end after the client's deadline raises
  ``WaitBeyondDeadline`` instead of outliving the slice; so does a wait for a slot.
- **Storage outage.** Work is never blocked on it: reads fall back to the last state seen (and
  this process's own gate still honours every 429 it sees itself); slots cannot be claimed, so
  participants keep (or shrink to) what they hold and in flight stays within the dop. Strictness
  holds unless a process cannot renew its row for PARTICIPANT_SECONDS while others can reach
  storage: they then count it dead and reuse its slots while it may still be sending.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.errors import StoreError
from shared.runs.budget import TurnNotYet
from shared.runs.budget_view import (
    CACHE_SECONDS,
    MAX_CONCURRENT,
    PARTICIPANT_SECONDS,
    RENEW_AFTER,
    SEND_FRESH_SECONDS,
    BudgetBoard,
    IdentityView,
    target,
)
from shared.sales.client import ThrottleGate, check_wait
from shared.store.budgets import BudgetSnapshot, Participant

log = logging.getLogger(__name__)

LEAVE_WAIT_SECONDS = 30.0  # a closing participant waits this long for its requests to be back


class SharedGate:
    """The client's ``Gate`` for one slice: this process's ThrottleGate (spacing, probe after a
    429) plus the identity's shared Retry-After and this participant's slots. Close it
    (``shared_gate`` does) so its slots return to the others."""

    def __init__(
        self,
        view: IdentityView,
        local: ThrottleGate,
        participant: Participant,
        *,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.view = view
        self.local = local
        self.participant = participant
        self._wall = wall
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._in_flight = 0
        self._held = 0  # slots published as ours (or, while shrinking, the smaller local limit)
        self._target = 0
        self._capacity = 1
        self._waiting = 0  # threads waiting here for a slot
        self.use = SlotUse()
        self.waited_for_block = 0.0  # seconds spent waiting on other processes' Retry-After
        self.closed = False
        view.register(self)

    # --- Gate protocol -----------------------------------------------------------------------

    @property
    def spacing(self) -> float:
        return self.local.spacing

    @spacing.setter
    def spacing(self, value: float) -> None:
        self.local.spacing = value

    def set_capacity(self, requests: int) -> None:
        with self._cond:
            self._capacity = max(1, min(MAX_CONCURRENT, requests))
        self.view.wake()

    def enter(self, deadline: float | None = None) -> bool:
        self._wait_for_block(deadline, CACHE_SECONDS)
        with self._cond:
            self._tally(waiting=+1)
            try:
                while self._in_flight >= min(self._held, self._target):
                    if self._held < self._target or self._target == 0:
                        self.view.wake()  # slots to claim (or to learn of): the housekeeper
                    # A slot frees when one of our requests ends, or when the housekeeper
                    # claims one; a wait past the slice's deadline stops the slice instead.
                    why = "waiting for a parallel slot"
                    check_wait(self._clock, deadline, CACHE_SECONDS, why)
                    self._cond.wait(CACHE_SECONDS)
            finally:
                self._tally(waiting=-1)
            self._tally(in_flight=+1)
        try:
            probe = self.local.enter(deadline)
        except BaseException:
            self._release()
            raise
        # Right before the request leaves: the shared state as of at most SEND_FRESH_SECONDS
        # ago, so a Retry-After another process was just told is honoured.
        try:
            self._wait_for_block(deadline, SEND_FRESH_SECONDS)
        except BaseException:
            self.local.leave(probe, throttled=True)  # not sent: the probe turn passes on
            self._release()
            raise
        self.view.count_send()
        return probe

    def _wait_for_block(self, deadline: float | None, max_age: float) -> None:
        while (blocked := self.view.current(max_age).not_before - self._wall()) > 0:
            why = "the identity is throttled (Retry-After)"
            check_wait(self._clock, deadline, blocked, why)
            self._sleep(blocked)
            self.waited_for_block += blocked

    def leave(self, probe: bool, *, throttled: bool) -> None:
        self.local.leave(probe, throttled=throttled)
        self._release()

    def close_for(self, seconds: float) -> None:
        self.local.close_for(seconds)  # this process's threads stop at once
        until = self._wall() + max(0.0, seconds)
        self.view.note_block(until, None)
        started = self._clock()
        try:
            self.view.board.block_until(self.view.key, until)
        except StoreError as exc:
            log.warning("could not share a Retry-After with other workers (%s)", exc)
            return
        self.view.note_block(until, self._clock() - started)

    def observe(self, seconds: float) -> None:
        self.local.observe(seconds)

    def learn_latency(self, seconds: float) -> None:
        self.local.learn_latency(seconds)

    # --- slots (moved by the view's housekeeper) ---------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def held(self) -> int:
        return self._held

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def share(self, snap: BudgetSnapshot) -> int:
        """This participant's target in ``snap`` (its equal share of the dop)."""
        return target(snap, self.participant.id, self._capacity)

    def wants_more(self) -> bool:
        return self._held < self._target

    def retarget(self, requests: int) -> None:
        """A new target; held slots beyond it are given up locally as soon as they are free."""
        with self._cond:
            self._target = requests
            if self._held > requests:
                self._tally(held=max(requests, self._in_flight) - self._held)
            self._cond.notify_all()

    def grow_to(self, held: int) -> None:
        """The housekeeper wrote ``held`` slots as ours: use them."""
        with self._cond:
            if held > self._held:
                self._tally(held=held - self._held)
                self._cond.notify_all()

    def _release(self) -> None:
        with self._cond:
            self._tally(in_flight=-1)
            shrinking = self._held > self._target
            self._cond.notify_all()
        if shrinking:
            self.view.wake()  # a slot to give back

    def _tally(self, *, in_flight: int = 0, held: int = 0, waiting: int = 0) -> None:
        """Change the counts (under ``_cond``), integrating slot use over time first."""
        self.use.advance(self._clock(), self._held, self._in_flight, self._waiting)
        self._in_flight += in_flight
        self._held += held
        self._waiting += waiting

    def renew_if_due(self) -> None:
        if self._wall() < self.participant.expires_at - PARTICIPANT_SECONDS + RENEW_AFTER:
            return
        try:
            self.participant = self.view.board.renew(
                self.view.key, self.participant, PARTICIPANT_SECONDS
            )
        except StoreError as exc:
            log.warning("could not renew the throttling-budget participant (%s)", exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with self._cond:  # our slots return only once our requests are back
            self._cond.wait_for(lambda: self._in_flight <= 0, LEAVE_WAIT_SECONDS)
            self._tally()
        self.view.add_use(self.use)
        self.view.unregister(self)
        try:  # our row goes, and with it our slots (entries of non-live participants are void)
            self.view.board.leave(self.view.key, self.participant.id)
        except StoreError as exc:  # the row expires anyway
            log.warning("could not leave the throttling budget (%s)", exc)


class SlotUse:
    """Slot-seconds a participant held, had in flight, and held idle while no thread of it
    waited for a slot (lent to nobody: what strict shares cost). For the bench."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.held = 0.0
        self.busy = 0.0
        self.idle = 0.0

    def advance(self, now: float, held: int, in_flight: int, waiting: int) -> None:
        if self.since is not None:
            dt = now - self.since
            self.held += held * dt
            self.busy += in_flight * dt
            if not waiting:
                self.idle += max(0, held - in_flight) * dt
        self.since = now


_views_lock = threading.Lock()
_views: dict[tuple[int, str], IdentityView] = {}


def identity_view(board: BudgetBoard, key: str) -> IdentityView:
    """The process-wide view of one identity's budget (one cache per board and key)."""
    with _views_lock:
        view = _views.get((id(board), key))
        if view is None or view.board is not board:
            view = _views[(id(board), key)] = IdentityView(board, key)
        return view


@contextmanager
def shared_gate(
    board: BudgetBoard,
    key: str,
    local: ThrottleGate,
    *,
    label: str,
    capacity: int | None = None,
) -> Iterator[SharedGate]:
    """Join the identity's budget as a new participant for the duration of the block. With
    ``capacity`` (the dop expected), raise TurnNotYet instead when ``capacity`` older
    participants are already sending: each would get no share at all."""
    participant = board.join(key, f"{label}.{uuid.uuid4().hex[:12]}", label, PARTICIPANT_SECONDS)
    view = identity_view(board, key)
    if capacity is not None:
        try:
            rank = board.snapshot(key).rank(participant.id)
        except StoreError:
            rank = None  # storage trouble: just go ahead, the slots still apply
        if rank is not None and rank >= capacity:
            try:
                board.leave(key, participant.id)
            except StoreError as exc:  # the row expires anyway
                log.warning("could not leave the throttling budget (%s)", exc)
            raise TurnNotYet(rank)
    gate = SharedGate(view, local, participant)
    if capacity is not None:
        gate.set_capacity(capacity)
    try:
        yield gate
    finally:
        gate.close()
