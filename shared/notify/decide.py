"""When to tell a target about an export's run (pure: no I/O).

Alerts that are not noisy: a target hears when an export's outcome TURNS to failed or
partially-succeeded, again only when the reason changes, and once when it recovers. An identical
failure on the next run says nothing (unless telling the target about it did not work last time:
then the next alike run tries again). Canceled, skipped and dry runs change nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.models import NotifyState, Run, RunStatus

OK = "ok"
RECOVERED = "recovered"
_BAD = {RunStatus.FAILED: "failed", RunStatus.PARTIALLY_SUCCEEDED: "partially-succeeded"}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_ID = re.compile(r"\b[0-9a-fA-F]{16,}\b")
_NUMBER = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
REASON_KEY_MAX = 400


@dataclass(frozen=True, slots=True)
class Decision:
    event: str | None  # failed, partially-succeeded, recovered, or None: tell nobody
    outcome: str  # the state to record: ok, failed, partially-succeeded
    reason_key: str


def reason_key(run: Run) -> str:
    """What makes two bad runs "the same reason": the error (or the per-segment errors and the
    reason) with ids, counts and times taken out, so "after 5 attempts" equals "after 6"."""
    parts = [run.error or ""]
    if run.status is RunStatus.PARTIALLY_SUCCEEDED:
        parts += sorted(f"{s.segment}: {s.error}" for s in run.segments if s.error)
        parts.append(run.reason or "")
    text = " | ".join(p for p in parts if p)
    text = _GUID.sub("<id>", text)
    text = _HEX_ID.sub("<id>", text)
    text = _NUMBER.sub("#", text)
    return _SPACE.sub(" ", text).strip()[:REASON_KEY_MAX]


def decide(previous: NotifyState | None, run: Run) -> Decision | None:
    """The event to send for this finished run, and the state to keep; None: keep the state."""
    if run.dry_run or not run.status.is_final:
        return None
    if run.status is RunStatus.SUCCEEDED:
        if previous is not None and previous.outcome != OK:
            return Decision(RECOVERED, OK, "")
        return None
    outcome = _BAD.get(run.status)
    if outcome is None:  # canceled, skipped: says nothing about the export's health
        return None
    key = reason_key(run)
    if (
        previous is not None
        and previous.outcome == outcome
        and previous.reason_key == key
        and previous.delivered
    ):
        return None
    return Decision(outcome, outcome, key)
