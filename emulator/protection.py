"""Service protection per user (token subject), modeled on Dataverse's documented limits [S3].

Two sliding windows (request count; combined execution time) evaluated lazily at admission — the
execution time of a request is charged when it completes, so in-flight work can overshoot the
budget, like the real service — plus a concurrency cap that fails immediately.

Retry-After is whole wall seconds: the true scaled wait rounded up, at least 1. Every 429 (including
injected ones) blocks the user until the Retry-After it announced; any request for that user
arriving
earlier is a *violation*: it is answered 429 again and the block is lengthened by
``violation_penalty_seconds`` (scaled), mirroring "continuing to send lengthens Retry-After".
Requests arriving within ``in_flight_grace_wall_seconds`` of the 429 were already on their way
(the client could not have seen it yet): they get a 429 with the remaining wait but are not
violations and do not lengthen it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.config import Limits
from emulator.odata import CODE_CONCURRENCY, CODE_EXECUTION_TIME, CODE_REQUESTS


@dataclass
class Throttle:
    code: str
    message: str
    retry_after: int  # header value, whole seconds
    violation: bool
    since_block: float | None = None  # wall s since the block was announced (None: a new block)


@dataclass
class _UserState:
    requests: deque[float] = field(default_factory=deque)
    costs: deque[tuple[float, float]] = field(default_factory=deque)  # (completed, wall cost)
    cost_sum: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0  # the most this user ever had in flight at once (since reset)
    blocked_until: float = 0.0
    blocked_at: float = 0.0  # when the current block was announced
    blocked_code: str = CODE_REQUESTS
    blocked_message: str = ""


def message_for(code: str, limits: Limits) -> str:
    if code == CODE_REQUESTS:
        return (
            f"Number of requests exceeded the limit of {limits.requests_per_window} over time "
            f"window of {limits.window_seconds:g} seconds."
        )
    if code == CODE_EXECUTION_TIME:
        return (
            "Combined execution time of incoming requests exceeded limit of "
            f"{limits.execution_seconds_per_window * 1000:,.0f} milliseconds over time window of "
            f"{limits.window_seconds:g} seconds. Decrease number of concurrent requests or reduce "
            "the duration of requests and try again later."
        )
    return f"Number of concurrent requests exceeded the limit of {limits.concurrent_requests}."


def retry_after_header(wait_wall_seconds: float) -> int:
    return max(1, math.ceil(wait_wall_seconds - 1e-9))


class ServiceProtection:
    def __init__(
        self, limits: Limits, time_scale: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.scale = time_scale
        self.clock = clock
        self._users: dict[str, _UserState] = {}
        self._lock = threading.Lock()

    @property
    def window(self) -> float:
        return self.limits.window_seconds * self.scale

    @property
    def execution_budget(self) -> float:
        return self.limits.execution_seconds_per_window * self.scale

    def _purge(self, st: _UserState, now: float) -> None:
        horizon = now - self.window
        while st.requests and st.requests[0] <= horizon:
            st.requests.popleft()
        while st.costs and st.costs[0][0] <= horizon:
            st.cost_sum -= st.costs.popleft()[1]

    def admit(self, user: str) -> Throttle | None:
        """None = admitted (call :meth:`release` when done); else the 429 to answer."""
        now = self.clock()
        with self._lock:
            st = self._users.setdefault(user, _UserState())
            self._purge(st, now)
            if now < st.blocked_until:
                in_flight = now - st.blocked_at < self.limits.in_flight_grace_wall_seconds
                if not in_flight:  # the client had been told to wait: a violation
                    st.blocked_until += self.limits.violation_penalty_seconds * self.scale
                return Throttle(
                    st.blocked_code,
                    st.blocked_message,
                    retry_after_header(st.blocked_until - now),
                    violation=not in_flight,
                    since_block=now - st.blocked_at,
                )
            wait: float | None = None
            code = CODE_REQUESTS
            if st.in_flight >= self.limits.concurrent_requests:
                code, wait = CODE_CONCURRENCY, 0.0
            elif len(st.requests) >= self.limits.requests_per_window:
                oldest_to_leave = st.requests[len(st.requests) - self.limits.requests_per_window]
                code, wait = CODE_REQUESTS, oldest_to_leave + self.window - now
            elif st.cost_sum >= self.execution_budget:
                code, wait = CODE_EXECUTION_TIME, self._execution_wait(st, now)
            if wait is not None:
                header = retry_after_header(wait)
                self._block(st, now, header, code)
                return Throttle(code, st.blocked_message, header, violation=False)
            st.requests.append(now)
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            return None

    def _execution_wait(self, st: _UserState, now: float) -> float:
        remaining = st.cost_sum
        for completed, cost in st.costs:
            remaining -= cost
            if remaining < self.execution_budget:
                return completed + self.window - now
        return self.window

    def _block(self, st: _UserState, now: float, header: int, code: str) -> None:
        st.blocked_at = now
        st.blocked_until = max(st.blocked_until, now + header)
        st.blocked_code = code
        st.blocked_message = message_for(code, self.limits)

    def block(self, user: str, header: int, code: str = CODE_REQUESTS) -> None:
        """Record an externally decided 429 (fault injection) so early retries are violations."""
        now = self.clock()
        with self._lock:
            self._block(self._users.setdefault(user, _UserState()), now, header, code)

    def release(self, user: str, wall_cost: float) -> None:
        now = self.clock()
        with self._lock:
            st = self._users.setdefault(user, _UserState())  # reset() may have run meanwhile
            st.in_flight = max(0, st.in_flight - 1)
            st.costs.append((now, wall_cost))
            st.cost_sum += wall_cost

    def remaining(self, user: str) -> tuple[int, float]:
        """(requests left, model execution ms left) in the current window — debugging headers."""
        now = self.clock()
        with self._lock:
            st = self._users.setdefault(user, _UserState())
            self._purge(st, now)
            left_ms = max(0.0, self.execution_budget - st.cost_sum) / self.scale * 1000
            return max(0, self.limits.requests_per_window - len(st.requests)), left_ms

    def max_in_flight(self) -> dict[str, int]:
        """Per user (token subject): the most requests admitted and not yet answered at once."""
        with self._lock:
            return {user: st.max_in_flight for user, st in self._users.items() if st.max_in_flight}

    def reset_peaks(self) -> None:
        """Start counting max_in_flight afresh (with the stats), keeping the limit windows."""
        with self._lock:
            for st in self._users.values():
                st.max_in_flight = st.in_flight

    def reset(self) -> None:
        with self._lock:
            self._users.clear()
