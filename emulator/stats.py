"""Request log, counters and the theoretical minimum wall time for the recorded work.

Minimum wall time (model seconds; multiply by time_scale for wall seconds), for R requests that
count against the limits (outer API requests, a $batch = 1) and C seconds of modeled execution:

    by_parallelism = C / P                      P = min(concurrent_requests, dop_hint) by default
    by_requests    = max(0, (R - Lr) / Lr * W)  Lr = requests per window, W = window seconds
    by_execution   = max(0, (C - Le) / Le * W)  Le = execution seconds per window
    minimum        = max(by_parallelism, by_requests, by_execution)

The window bounds are the continuous form of "at most Lr requests / Le seconds in any window of W":
the first window's budget is free, every further budget-full needs another W.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

from emulator.config import Limits


class Stats:
    def __init__(self, log_size: int) -> None:
        self._lock = threading.Lock()
        self._log_size = log_size
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.started = time.monotonic()
            self.requests: Counter[tuple[str, int]] = Counter()
            self.batch_ops: Counter[tuple[str, int]] = Counter()
            self.throttled_by_code: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.members_added = 0
            self.members_removed = 0
            self.rows_read = 0
            self.violations = 0
            # Wall seconds between a block's announcement and each request that met it (the
            # client-side window in which a Retry-After had not reached every sender yet).
            self.met_block_after: list[float] = []
            self.limited_requests = 0  # admitted requests that count against the request limit
            self.total_cost = 0.0  # model seconds
            self.in_flight = 0
            self.max_concurrency = 0
            self.tokens_issued = 0
            self.log: deque[dict[str, Any]] = deque(maxlen=self._log_size)

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)  # reset() may have zeroed it meanwhile

    def record(
        self,
        kind: str,
        status: int,
        *,
        user: str | None = None,
        method: str = "",
        path: str = "",
        cost: float = 0.0,
        added: int = 0,
        removed: int = 0,
        rows: int = 0,
        limited: bool = False,
        throttle_code: str | None = None,
        violation: bool = False,
        fault: str | None = None,
        since_block: float | None = None,
    ) -> None:
        with self._lock:
            self.requests[(kind, status)] += 1
            self.members_added += added
            self.members_removed += removed
            self.rows_read += rows
            self.total_cost += cost
            if limited:
                self.limited_requests += 1
            if kind == "token" and status == 200:
                self.tokens_issued += 1
            if status == 429:
                self.throttled_by_code[throttle_code or "?"] += 1
            if violation:
                self.violations += 1
            if since_block is not None and len(self.met_block_after) < 1000:
                self.met_block_after.append(round(since_block, 3))
            if fault:
                self.faults[fault] += 1
            self.log.append(
                {
                    "t": round(time.monotonic() - self.started, 6),
                    "kind": kind,
                    "status": status,
                    "user": user,
                    "method": method,
                    "path": path[:200],
                    "cost": round(cost, 6),
                    "fault": fault,
                    "violation": violation,
                }
            )

    def record_batch_op(self, kind: str, status: int) -> None:
        with self._lock:
            self.batch_ops[(kind, status)] += 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready snapshot; status codes are string keys so in-process and HTTP forms match."""
        with self._lock:
            return {
                "requests": _nest(self.requests),
                "requests_total": sum(self.requests.values()),
                "batch_operations": _nest(self.batch_ops),
                "batch_operations_total": sum(self.batch_ops.values()),
                "members_added": self.members_added,
                "members_removed": self.members_removed,
                "rows_read": self.rows_read,
                "throttled": sum(self.throttled_by_code.values()),
                "throttled_by_code": dict(self.throttled_by_code),
                "violations": self.violations,
                "met_block_after_seconds": sorted(self.met_block_after),
                "faults": dict(self.faults),
                "limited_requests": self.limited_requests,
                "total_cost_seconds": round(self.total_cost, 6),
                "max_concurrency": self.max_concurrency,
                "tokens_issued": self.tokens_issued,
                "elapsed_wall_seconds": round(time.monotonic() - self.started, 6),
            }

    def recent(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.log)[-limit:]


def _nest(counter: Counter[tuple[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (kind, status), n in sorted(counter.items()):
        out.setdefault(kind, {})[str(status)] = n
    return out


def theoretical_min_wall_time(
    requests: int,
    cost_seconds: float,
    limits: Limits,
    parallelism: int,
    time_scale: float = 1.0,
) -> dict[str, Any]:
    """Lower bound on the time the recorded work could take under the limits (see module doc)."""
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    w = limits.window_seconds
    bounds = {
        "by_parallelism": cost_seconds / parallelism,
        "by_requests": max(
            0.0, (requests - limits.requests_per_window) / limits.requests_per_window * w
        ),
        "by_execution": max(
            0.0,
            (cost_seconds - limits.execution_seconds_per_window)
            / limits.execution_seconds_per_window
            * w,
        ),
    }
    binding = max(bounds, key=lambda k: bounds[k])
    model = bounds[binding]
    return {
        "model_seconds": model,
        "wall_seconds": model * time_scale,
        "binding": binding,
        "parallelism": parallelism,
        "requests": requests,
        "cost_seconds": cost_seconds,
        **bounds,
    }
