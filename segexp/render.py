"""Plain-text rendering of runs for operators: progress lines and per-segment summaries."""

from __future__ import annotations

from typing import Any

REASON_LABELS = {
    "no-customer-record": "no customer record",
    "empty-contact-id": "empty contact ID",
    "malformed-contact-id": "malformed contact ID",
    "contact-not-found": "contact not found in Sales",
    "contact-inactive": "contact inactive",
    "duplicate-contact": "duplicate contact",
    "rejected-by-sales": "rejected by Sales",
}


def progress_line(run: dict[str, Any]) -> str:
    parts = []
    for seg in run.get("segments") or []:
        p = seg.get("progress") or {}
        total = p.get("total") or 0
        done = p.get("done") or 0
        pct = f" {100 * done // total:3d}%" if total else ""
        parts.append(f"{seg['segment']}: {p.get('phase', '?')}{pct}")
    return f"[{run['status']}] slices={run.get('slices', 0)} " + " | ".join(parts)


def run_summary(run: dict[str, Any]) -> str:
    lines = [
        f"Run {run['id']} ({run['trigger']}{', dry run' if run.get('dryRun') else ''}): "
        f"{run['status'].upper()}",
        f"  queued {run.get('queuedAt')}  started {run.get('startedAt')}  "
        f"finished {run.get('finishedAt')}  slices {run.get('slices', 0)}",
    ]
    if run.get("error"):
        lines.append(f"  error: {run['error']}")
    if run.get("reason"):
        lines.append(f"  note: {run['reason']}")
    for seg in run.get("segments") or []:
        lines.append(
            f"  Segment {seg['segment']!r} -> list {seg.get('listName')!r} ({seg.get('listId')})"
        )
        flags = [f for f in ("listCreated", "listRecreated") if seg.get(f)]
        lines.append(
            f"    members {seg['members']:>7,}   matched {seg['matched']:>7,}   "
            f"added {seg['added']:>7,}   removed {seg['removed']:>7,}   failed {seg['failed']:>5,}"
            + (f"   ({', '.join(flags)})" if flags else "")
        )
        source = seg.get("source")
        if source:
            lines.append(
                f"    read from {source['kind']}: {source.get('memberRows', 0):,} membership rows, "
                f"{source.get('lookupRows', 0):,} lookup rows, watermark {source.get('watermark')}"
            )
        left = seg.get("leftOut") or {}
        if left:
            total = sum(left.values())
            lines.append(f"    left out {total:,}:")
            for reason, count in sorted(left.items(), key=lambda kv: -kv[1]):
                lines.append(f"      {count:>7,}  {REASON_LABELS.get(reason, reason)}")
        if seg.get("error"):
            lines.append(f"    error: {seg['error']}")
    return "\n".join(lines)


def runs_table(runs: list[dict[str, Any]]) -> str:
    lines = [f"{'run id':34} {'trigger':10} {'status':20} {'queued at':27} added removed left-out"]
    for run in runs:
        segs = run.get("segments") or []
        added = sum(s.get("added", 0) for s in segs)
        removed = sum(s.get("removed", 0) for s in segs)
        left = sum(sum((s.get("leftOut") or {}).values()) for s in segs)
        lines.append(
            f"{run['id']:34} {run['trigger']:10} {run['status']:20} {run.get('queuedAt', ''):27} "
            f"{added:>5} {removed:>7} {left:>8}"
        )
    return "\n".join(lines)
