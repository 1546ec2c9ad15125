"""One throttling budget per (Sales environment, app identity), shared by every worker process.

Dataverse evaluates service protection per user per environment. On Azure Functions each
instance is a separate process (and one instance runs several queue messages at once), so a gate
inside one process cannot keep the identity within its limits: a 429 seen by one process must
hold back all of them, and their requests in flight together must stay within ``x-ms-dop-hint``.

Why Table Storage: the app already depends on it (no new service to deploy or secure), every
Functions plan reaches it, it offers ETag-guarded writes (a Retry-After is only ever moved
forward, never lost to a concurrent writer) and one partition is read in one cheap query. A
Service Bus session or Redis would add infrastructure; a blob lease allows one holder only; the
Functions host has no cross-instance semaphore. The state is tiny and read with a short local
cache (``CACHE_SECONDS``), so the cost is a few small queries per second per busy process.

How it works (``BudgetRepository`` keeps the rows, see shared/store/budgets.py):
- **Retry-After is shared.** A 429 moves the identity's ``NotBefore`` forward (ETag-guarded)
  and closes this process's gate at once; every process reads ``NotBefore`` before sending (at
  most ``CACHE_SECONDS`` old) and waits until it passes. A request that another process had
  already sent when the 429 arrived can still meet the block: that is unavoidable without a
  central proxy, and bounded by the cache age plus the write (well under a second).
- **Requests in flight are shared out.** Each slice that sends with the identity registers as a
  participant (a row renewed while it works; a dead worker's row expires). Participants are
  ordered by when they joined; with ``dop`` = min(hint, 52) and n participants, the k-th may
  keep ``dop // n`` requests in flight, plus one while k < ``dop % n``. The shares add up to
  ``dop``, so the whole fleet stays within the hint. A new participant sends only after
  ``JOIN_SETTLE`` (others have re-read the list and shrunk) plus the longest request this
  process has seen take (``DEFAULT_DRAIN`` before it has seen any): by then the requests the
  older participants had sent under their larger shares have come back. Only a join shrinks
  anyone's share; a leaving participant frees its share to the others.
- **Fair turns.** Equal shares mean every export sharing an identity progresses at the same
  rate, so a small export finishes early instead of waiting for a 1M one; with more
  participants than ``dop`` the oldest ``dop`` send and the rest wait for a share (each slice
  joins afresh, so turns rotate slice by slice). An export on another connection has another
  identity, another partition and is never held back.
- **Bounded waits.** A shared Retry-After that would end after the client's deadline raises
  ``WaitBeyondDeadline`` instead of outliving the slice; a wait for a share lasts at most a
  request's time or a newcomer's settling time (participants admitted when the identity had
  room keep a share of at least one: only joins shrink shares, and later joiners rank after).
- If storage cannot be read the gate keeps the last state it saw (and this process's own gate
  still honours every 429 it sees itself); it never blocks work on a storage outage.
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
from shared.sales.client import ThrottleGate, check_wait
from shared.store.budgets import BudgetSnapshot, Participant
from shared.store.protocols import BudgetStore

log = logging.getLogger(__name__)

CACHE_SECONDS = 0.2  # how old the shared state may be when a request leaves
PARTICIPANT_SECONDS = 10.0  # a participant row outlives its last renewal by this much (dead worker)
RENEW_AFTER = PARTICIPANT_SECONDS / 3
JOIN_SETTLE = 2 * CACHE_SECONDS  # a newcomer waits until the others have seen it
DEFAULT_DRAIN = 2.0  # seconds an older participant's request may take, before we measured one
MAX_DRAIN = 15.0
MAX_CONCURRENT = 52  # Dataverse's concurrent-request limit per user [S3]


BudgetBoard = BudgetStore  # the shared state's storage (shared.store.budgets.BudgetRepository)


class IdentityView:
    """This process's cached copy of one identity's shared state (thread-safe)."""

    def __init__(
        self, board: BudgetBoard, key: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.board = board
        self.key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = BudgetSnapshot(not_before=0.0, blocks=0, participants=())
        self._fetched = float("-inf")
        self._failing = False
        self._slowest: float | None = None

    def current(self) -> BudgetSnapshot:
        with self._lock:
            if self._clock() - self._fetched >= CACHE_SECONDS:
                try:
                    fresh = self.board.snapshot(self.key)
                except StoreError as exc:
                    if not self._failing:  # once per outage, not five times a second
                        log.warning("throttling budget unreadable (%s); using the last state", exc)
                    self._failing = True
                else:
                    self._failing = False
                    # A block this process recorded is kept even if the write has not landed.
                    not_before = max(fresh.not_before, self._snapshot.not_before)
                    self._snapshot = BudgetSnapshot(not_before, fresh.blocks, fresh.participants)
                self._fetched = self._clock()
            return self._snapshot

    def observe(self, seconds: float) -> None:
        """A request of this identity took ``seconds`` (send to answer)."""
        with self._lock:
            self._slowest = max(self._slowest or 0.0, seconds)

    def settle_seconds(self) -> float:
        """How long a newcomer waits before its first request (see the module docstring)."""
        with self._lock:
            drain = DEFAULT_DRAIN if self._slowest is None else min(MAX_DRAIN, self._slowest)
        return JOIN_SETTLE + drain

    def refresh_soon(self) -> None:
        with self._lock:
            self._fetched = float("-inf")

    def note_block(self, until: float) -> None:
        with self._lock:
            snap = self._snapshot
            if until > snap.not_before:
                self._snapshot = BudgetSnapshot(until, snap.blocks + 1, snap.participants)


class SharedGate:
    """The client's ``Gate`` for one slice: this process's ThrottleGate (spacing, probe after a
    429) plus the identity's shared Retry-After and this participant's share of in-flight
    requests. Close it (``shared_gate`` does) so the share returns to the others."""

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
        self._capacity = 1
        self._renew_lock = threading.Lock()
        self.waited_for_block = 0.0  # seconds spent waiting on other processes' Retry-After
        self.closed = False

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
            self._cond.notify_all()

    def enter(self, deadline: float | None = None) -> bool:
        self._wait_for_block(deadline)
        while True:
            snap = self.view.current()
            self._renew_if_due()
            with self._cond:
                if self._in_flight < self.share(snap):
                    self._in_flight += 1
                    break
                # A share frees when one of our requests ends or an older participant leaves:
                # a request's time, or the newcomer's settling time (at most JOIN_SETTLE +
                # MAX_DRAIN), never a Retry-After (waited out above, bounded by the deadline).
                self._cond.wait(CACHE_SECONDS)
        try:
            probe = self.local.enter(deadline)
        except BaseException:
            self._release()
            raise
        # This process's own waits may have ended while another process was told to wait
        # longer: look at the shared state again right before the request leaves.
        try:
            self._wait_for_block(deadline)
        except BaseException:
            self.local.leave(probe, throttled=True)  # not sent: the probe turn passes on
            self._release()
            raise
        return probe

    def _wait_for_block(self, deadline: float | None) -> None:
        while (blocked := self.view.current().not_before - self._wall()) > 0:
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
        self.view.note_block(until)
        try:
            self.view.board.block_until(self.view.key, until)
        except StoreError as exc:
            log.warning("could not share a Retry-After with other workers (%s)", exc)

    def observe(self, seconds: float) -> None:
        self.local.observe(seconds)
        self.view.observe(seconds)

    def learn_latency(self, seconds: float) -> None:
        self.local.learn_latency(seconds)

    # --- shares ------------------------------------------------------------------------------

    def share(self, snap: BudgetSnapshot) -> int:
        """Requests this participant may keep in flight now (see the module docstring)."""
        rank = snap.rank(self.participant.id)
        count = len(snap.participants)
        if rank is None:  # our row is not visible yet (or storage is down): count us last
            rank, count = count, count + 1
        # Older participants shrink when they see us; wait until what they sent before that is
        # back. The oldest has nobody to wait for.
        if rank > 0 and self._wall() < self.participant.joined_at + self.view.settle_seconds():
            return 0
        base, extra = divmod(self._capacity, count)
        return base + (1 if rank < extra else 0)

    def _release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def _renew_if_due(self) -> None:
        if self._wall() < self.participant.expires_at - PARTICIPANT_SECONDS + RENEW_AFTER:
            return
        if not self._renew_lock.acquire(blocking=False):
            return
        try:
            self.participant = self.view.board.renew(
                self.view.key, self.participant, PARTICIPANT_SECONDS
            )
        except StoreError as exc:
            log.warning("could not renew the throttling-budget participant (%s)", exc)
        finally:
            self._renew_lock.release()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.view.board.leave(self.view.key, self.participant.id)
        except StoreError as exc:  # the row expires anyway
            log.warning("could not leave the throttling budget (%s)", exc)
        self.view.refresh_soon()


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
    view.refresh_soon()
    if capacity is not None:
        try:
            rank = board.snapshot(key).rank(participant.id)
        except StoreError:
            rank = None  # storage trouble: just go ahead, the shares still apply
        if rank is not None and rank >= capacity:
            try:
                board.leave(key, participant.id)
            except StoreError as exc:  # the row expires anyway
                log.warning("could not leave the throttling budget (%s)", exc)
            raise TurnNotYet(rank)
    gate = SharedGate(view, local, participant)
    try:
        yield gate
    finally:
        gate.close()
