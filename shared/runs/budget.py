"""When a sync call inside a slice should stop (pure logic over a clock; tested without I/O)."""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.models import SegmentResult
from shared.settings import Settings

# Share of the slice budget a call may always spend applying, counted from the end of its
# planning (reading the list, resolving members). Without it a tiny budget on a big segment
# would redo the planning every slice only to apply a single (possibly small) chunk.
MIN_APPLY_SHARE = 0.5
APPLY_PHASES = ("validating", "applying")


class SliceBudget:
    """Stop once past the slice deadline, but only after the call applied something and had
    at least MIN_APPLY_SHARE of the budget to apply in: every slice makes real progress, and
    a slice overruns its deadline by at most the planning time plus that share."""

    def __init__(
        self, deadline: float, budget: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.deadline = deadline
        self.min_apply = max(0.0, budget) * MIN_APPLY_SHARE
        self.clock = clock
        self.apply_started: float | None = None
        self.progressed = False

    def observe(self, partial: SegmentResult) -> None:
        if self.apply_started is None and partial.progress.phase in APPLY_PHASES:
            self.apply_started = self.clock()
        # Progress that lasts: members added, removed or refused in Sales. Members a validation
        # rejects count as done in the call's progress, but a later slice validates them again;
        # stopping on them alone (streamed validation while the list is read, past a deadline
        # spent planning) let every slice stop before its first write, for ever.
        if partial.added or partial.removed or partial.failed:
            self.progressed = True

    def spent(self) -> bool:
        now = self.clock()
        if now < self.deadline or not self.progressed:
            return False
        return self.apply_started is None or now >= self.apply_started + self.min_apply


def slice_budget(settings: Settings) -> float:
    """Seconds of work per slice: the configured slice minus a safety margin for saving."""
    return settings.run_slice_seconds - min(30.0, settings.run_slice_seconds * 0.1)


class TurnNotYet(Exception):
    """The identity already has ``dop`` participants sending: this slice would only wait for a
    share, so it gives its worker back and comes again later (fair turns, see shared_budget.py)."""

    def __init__(self, ahead: int) -> None:
        super().__init__(
            f"waiting for a turn: {ahead} other export slice(s) are sending with this "
            "connection's identity, using all of its parallel requests"
        )
        self.ahead = ahead
