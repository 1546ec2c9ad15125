"""SliceBudget: when a sync call inside a slice stops."""

from __future__ import annotations

from shared.models import SegmentProgress, SegmentResult
from shared.runs.budget import SliceBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def progress(phase: str, done: int = 0, *, added: int | None = None) -> SegmentResult:
    return SegmentResult(
        segment="s",
        added=done if added is None else added,
        progress=SegmentProgress(phase=phase, done=done, total=10),
    )


def test_nothing_stops_before_the_deadline() -> None:
    clock = Clock()
    budget = SliceBudget(deadline=10.0, budget=10.0, clock=clock)
    budget.observe(progress("applying", done=5))
    clock.now = 9.9
    assert not budget.spent()


def test_past_the_deadline_a_call_still_applies_something_first() -> None:
    clock = Clock()
    budget = SliceBudget(deadline=10.0, budget=10.0, clock=clock)
    clock.now = 30.0  # planning alone outlasted the budget
    budget.observe(progress("validating"))
    assert not budget.spent()
    clock.now = 34.0
    budget.observe(progress("applying", done=100))
    assert not budget.spent()  # only 4 s of the guaranteed 5 s apply window so far
    clock.now = 35.0
    assert budget.spent()


def test_a_call_that_started_applying_early_stops_right_at_the_deadline() -> None:
    clock = Clock()
    budget = SliceBudget(deadline=10.0, budget=10.0, clock=clock)
    clock.now = 1.0
    budget.observe(progress("applying", done=1))
    clock.now = 10.0
    assert budget.spent()


def test_members_rejected_by_validation_are_not_progress_that_lasts() -> None:
    # Streamed validation while the list is read rejects inactive contacts (done > 0) before
    # anything is written: a slice past its deadline must still go on to write something.
    clock = Clock()
    budget = SliceBudget(deadline=10.0, budget=10.0, clock=clock)
    clock.now = 20.0
    budget.observe(progress("reading-list", done=40, added=0))
    assert not budget.spent()
    budget.observe(progress("applying", done=540, added=500))
    clock.now = 25.0
    assert budget.spent()
