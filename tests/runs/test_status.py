"""The pure run rules: figures across slices and the final status."""

from __future__ import annotations

from dataclasses import replace

from shared.models import ExportMode, RunStatus, SegmentProgress, SegmentResult
from shared.runs.status import (
    decide_final_status,
    exact_totals,
    is_pending,
    join_reasons,
    merge_segment,
)


def synced(name: str, members: int, matched: int, **kwargs: object) -> SegmentResult:
    return SegmentResult(segment=name, members=members, matched=matched, complete=True, **kwargs)  # type: ignore[arg-type]


def test_merge_adds_applied_counts_and_keeps_latest_absolute_figures() -> None:
    base = SegmentResult(
        segment="A",
        list_id="L1",
        list_name="A",
        members=10,
        matched=9,
        added=4,
        removed=1,
        failed=1,
        list_created=True,
        left_out={"no-customer-record": 1},
    )
    call = SegmentResult(
        segment="A",
        members=12,
        matched=10,
        added=5,
        removed=2,
        failed=0,
        complete=True,
        left_out={"contact-inactive": 2},
        progress=SegmentProgress(phase="done", done=7, total=7),
    )
    merged = merge_segment(base, call)
    assert (merged.added, merged.removed, merged.failed) == (9, 3, 1)
    assert (merged.members, merged.matched) == (12, 10)
    assert merged.left_out == {"contact-inactive": 2}
    assert merged.list_id == "L1" and merged.list_created and merged.complete
    assert merged.progress.phase == "done" and merged.progress is not call.progress


def test_merge_takes_a_new_list_id_when_the_list_was_recreated() -> None:
    base = SegmentResult(segment="A", list_id="old")
    call = SegmentResult(segment="A", list_id="new", list_recreated=True)
    merged = merge_segment(base, call)
    assert merged.list_id == "new" and merged.list_recreated


def test_everything_matched_is_succeeded() -> None:
    status, reason = decide_final_status([synced("A", 5, 5, added=5), synced("B", 0, 0)])
    assert status is RunStatus.SUCCEEDED and reason is None


def test_left_out_members_keep_it_succeeded_with_counts_by_reason() -> None:
    status, reason = decide_final_status(
        [synced("A", 10, 7, left_out={"contact-inactive": 2, "no-customer-record": 1})]
    )
    assert status is RunStatus.SUCCEEDED
    assert reason is not None
    assert "3 members left out" in reason and "contact-inactive 2" in reason


def test_one_failed_segment_of_two_is_partial_and_names_it() -> None:
    failed = SegmentResult(segment="B", error="Sales refused the request")
    status, reason = decide_final_status([synced("A", 3, 3), failed])
    assert status is RunStatus.PARTIALLY_SUCCEEDED
    assert reason is not None and "1 of 2 segments synced" in reason and "'B'" in reason


def test_every_segment_failed_is_failed() -> None:
    status, reason = decide_final_status(
        [SegmentResult(segment="A", error="x"), SegmentResult(segment="B", error="y")]
    )
    assert status is RunStatus.FAILED
    assert reason is not None and "every segment failed" in reason


def test_all_members_unmatched_is_partial_and_says_so() -> None:
    status, reason = decide_final_status([synced("A", 4, 0, left_out={"empty-contact-id": 4})])
    assert status is RunStatus.PARTIALLY_SUCCEEDED
    assert reason is not None and "none of the 4 members matched" in reason


def test_members_refused_by_sales_make_it_partial() -> None:
    status, reason = decide_final_status([synced("A", 4, 4, failed=1)])
    assert status is RunStatus.PARTIALLY_SUCCEEDED
    assert reason is not None and "refused 1 member" in reason


def test_pending_means_neither_complete_nor_failed() -> None:
    assert is_pending(SegmentResult(segment="A"))
    assert not is_pending(SegmentResult(segment="A", complete=True))
    assert not is_pending(SegmentResult(segment="A", error="boom"))


def test_join_reasons_skips_empty_parts() -> None:
    assert join_reasons(None, "a", "", "b") == "a; b"
    assert join_reasons(None) is None


def test_added_and_removed_are_derived_from_what_the_list_held() -> None:
    # A killed worker applied chunks it never saved: the summed figures fall short.
    summed = SegmentResult(
        segment="S", added=600, removed=70, baseline_kept=100, baseline_undesired=120
    )
    # The resuming call read 650 desired members (550 beyond the baseline) and 30 undesired
    # ones still in the list (90 were removed), then added 50 and removed 10 itself.
    call = SegmentResult(segment="S", added=50, removed=10, read_kept=650, read_undesired=30)
    exact = exact_totals(summed, call, ExportMode.MIRROR)
    assert (exact.added, exact.removed) == (600, 100)
    assert exact_totals(summed, call, ExportMode.ADDITIVE).removed == 70  # never removes
    done = replace(summed, complete=True, matched=900)
    finished = exact_totals(done, call, ExportMode.MIRROR)
    assert (finished.added, finished.removed) == (800, 120)  # complete: the list is the segment
    unknown = replace(summed, baseline_kept=None)
    assert exact_totals(unknown, call, ExportMode.MIRROR) == unknown  # no baseline: as summed
    unread = replace(call, read_kept=None)
    assert exact_totals(summed, unread, ExportMode.MIRROR) == summed  # nothing read yet


def test_merge_keeps_the_first_baseline() -> None:
    base = SegmentResult(segment="S", baseline_kept=5, baseline_undesired=7)
    call = SegmentResult(segment="S", baseline_kept=50, baseline_undesired=70)
    merged = merge_segment(base, call)
    assert (merged.baseline_kept, merged.baseline_undesired) == (5, 7)
    assert merge_segment(SegmentResult(segment="S"), call).baseline_kept == 50
