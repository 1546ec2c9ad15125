"""Pure rules for a run's figures and final status (no I/O, tested without any service).

Final status rule (applied once every segment was attempted, unless canceled):

* ``succeeded`` — every segment synced completely (each list equals its matched members) and
  Sales accepted every add/remove (no ``failed`` members). An empty segment counts as synced.
  Members left out for data reasons (no customer record, no or bad contact id, contact missing
  or inactive, duplicate contact) do not lower the status: nearly every real segment has a few,
  and a status that is never green teaches people to ignore it. They are counted per reason on
  each segment, summed in the run's reason, and listed in the rejections.
* ``partially-succeeded`` — at least one segment synced completely, but something is short of
  the full result: another segment failed, Sales refused some members, or not a single member
  of a non-empty segment matched (almost always a wrong contact-ID field: the reason says so).
* ``failed`` — every segment failed, or the whole run failed (credential refused, server
  unreachable, export or connection gone, retries exhausted) before it changed anything in
  Sales; a run stopped by such a failure after it added or removed members, or synced a
  segment, is ``partially-succeeded`` (status_when_stopped_by_failure), with the error.
* ``canceled`` — someone asked to cancel; the worker stopped at the next chunk boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from shared.models import ExportMode, RunStatus, SegmentResult


def merge_segment(base: SegmentResult, call: SegmentResult) -> SegmentResult:
    """Combine the figures saved before a sync call with what that call reports.

    ``members``, ``matched``, ``left_out`` and the list are absolute in each call (the latest
    wins); ``added``, ``removed`` and ``failed`` count only one call's work, so they add up.
    """
    return replace(
        call,
        list_id=call.list_id or base.list_id,
        list_name=call.list_name or base.list_name,
        left_out=dict(call.left_out),
        added=base.added + call.added,
        removed=base.removed + call.removed,
        failed=base.failed + call.failed,
        list_created=base.list_created or call.list_created,
        list_recreated=base.list_recreated or call.list_recreated,
        progress=replace(call.progress),
        source=call.source or base.source,
        baseline_kept=base.baseline_kept if base.baseline_kept is not None else call.baseline_kept,
        baseline_undesired=(
            base.baseline_undesired
            if base.baseline_undesired is not None
            else call.baseline_undesired
        ),
    )


def exact_totals(merged: SegmentResult, call: SegmentResult, mode: ExportMode) -> SegmentResult:
    """added/removed from what the list held, not only from the chunks whose answers arrived.

    Summed per call, the figures miss chunks a killed worker applied but never saved, and
    writes that timed out but landed. Every call reads the list first: desired members it
    found beyond the run's baseline were added by earlier calls (and undesired ones missing
    were removed), whatever was saved. Once the segment is complete the list holds exactly its
    matched members (mirror: and none of the baseline's members to remove). The larger figure
    wins: a segment that changed during the run can only add work.
    """
    if merged.baseline_kept is None or call.read_kept is None:
        return merged
    added = max(merged.added, call.read_kept - merged.baseline_kept + call.added)
    if merged.complete:
        added = max(added, merged.matched - merged.baseline_kept)
    removed = merged.removed
    if (
        mode is ExportMode.MIRROR
        and merged.baseline_undesired is not None
        and call.read_undesired is not None
    ):
        removed = max(removed, merged.baseline_undesired - call.read_undesired + call.removed)
        if merged.complete:
            removed = max(removed, merged.baseline_undesired)
    return replace(merged, added=added, removed=removed)


def status_when_stopped_by_failure(segments: Sequence[SegmentResult]) -> RunStatus:
    """A run ended by a failure (retries exhausted, worker kept dying, abandoned) is
    ``partially-succeeded`` when it changed something in Sales first (a segment synced, or
    members added or removed), else ``failed``: the list is no longer what it was."""
    applied = any(s.complete or s.added or s.removed for s in segments)
    return RunStatus.PARTIALLY_SUCCEEDED if applied else RunStatus.FAILED


def is_pending(segment: SegmentResult) -> bool:
    """Still to do in a later slice: neither synced completely nor failed."""
    return not segment.complete and not segment.error


def decide_final_status(segments: Sequence[SegmentResult]) -> tuple[RunStatus, str | None]:
    """Final status and a short reason (None when nothing needs saying); see module docstring."""
    failed = [s for s in segments if s.error]
    synced = [s for s in segments if s.complete and not s.error]
    if not synced:
        if not failed:
            return RunStatus.FAILED, "no segment was synced"
        return RunStatus.FAILED, "every segment failed: " + _describe_failed(failed)
    parts: list[str] = []
    if failed:
        parts.append(
            f"{len(synced)} of {len(segments)} segments synced; failed: {_describe_failed(failed)}"
        )
    left_out: dict[str, int] = {}
    for segment in synced:
        for reason, count in segment.left_out.items():
            left_out[reason] = left_out.get(reason, 0) + count
    members = sum(s.members for s in synced)
    matched = sum(s.matched for s in synced)
    if members and not matched:
        parts.append(
            f"none of the {members:,} members matched an active contact: check the connection's "
            "contact-ID field and the customer rows (see the rejections)"
        )
    refused = sum(s.failed for s in synced)
    if refused:
        parts.append(f"Sales refused {refused:,} member changes; see rejections")
    status = RunStatus.PARTIALLY_SUCCEEDED if parts else RunStatus.SUCCEEDED
    if left_out and matched:
        by_reason = ", ".join(f"{reason} {count:,}" for reason, count in sorted(left_out.items()))
        parts.append(f"{sum(left_out.values()):,} members left out ({by_reason}); see rejections")
    return status, ("; ".join(parts) if parts else None)


def _describe_failed(failed: Sequence[SegmentResult]) -> str:
    return "; ".join(f"{s.segment!r}: {s.error}" for s in failed)


def join_reasons(*reasons: str | None) -> str | None:
    """Join the non-empty reasons with '; ' (None when there are none)."""
    kept = [r for r in reasons if r]
    return "; ".join(kept) if kept else None
