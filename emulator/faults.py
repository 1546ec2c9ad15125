"""Seeded fault injection: one random draw per outer API request, so a fixed seed and a fixed
request order give the same faults every time."""

from __future__ import annotations

import random
import threading

from emulator.config import Faults


class FaultInjector:
    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self.set(faults)

    def set(self, faults: Faults) -> None:
        for name in ("throttle", "unavailable", "drop"):
            value = getattr(faults, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if faults.throttle + faults.unavailable + faults.drop > 1.0:
            raise ValueError("fault fractions must sum to at most 1")
        if faults.retry_after_seconds < 1:
            raise ValueError("retry_after_seconds must be at least 1")
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def draw(self) -> str | None:
        """ "drop", "throttle", "unavailable" or None."""
        f = self.faults
        if f.throttle == 0 and f.unavailable == 0 and f.drop == 0:
            return None
        with self._lock:
            r = self._rng.random()
        if r < f.drop:
            return "drop"
        if r < f.drop + f.throttle:
            return "throttle"
        if r < f.drop + f.throttle + f.unavailable:
            return "unavailable"
        return None
