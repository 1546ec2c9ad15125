"""What a notification says, per target format (pure: no I/O).

Counts and names only: never a secret, token, contact ID or customer ID. The generic JSON body is
signed with HMAC-SHA256 over the exact bytes sent (header ``X-SegExp-Signature: sha256=<hex>``);
the body carries its own ``sentAt`` so a receiver can refuse replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from shared.models import Export, NotificationFormat, Run

SIGNATURE_HEADER = "X-SegExp-Signature"
EVENT_HEADER = "X-SegExp-Event"
TEXT_MAX = 1000  # the reason shown; the run itself has the full text

_TITLES = {
    "failed": "failed",
    "partially-succeeded": "partially succeeded",
    "recovered": "recovered",
}


@dataclass(frozen=True, slots=True)
class Message:
    body: bytes
    headers: dict[str, str]


def summary(export: Export, run: Run, event: str, sent_at: str) -> dict[str, Any]:
    """The facts every format shows (the generic JSON body is exactly this)."""
    reason = run.error if event == "failed" else run.reason
    if event == "partially-succeeded" and not reason:
        reason = "; ".join(f"{s.segment}: {s.error}" for s in run.segments if s.error)
    left_out: dict[str, int] = {}
    for segment in run.segments:
        for why, count in segment.left_out.items():
            left_out[why] = left_out.get(why, 0) + count
    return {
        "event": event,
        "exportId": export.id,
        "exportName": export.display_name,
        "runId": run.id,
        "status": str(run.status),
        "trigger": str(run.trigger),
        "finishedAt": run.finished_at,
        "reason": (reason or "")[:TEXT_MAX],
        "segments": len(run.segments),
        "added": sum(s.added for s in run.segments),
        "removed": sum(s.removed for s in run.segments),
        "failed": sum(s.failed for s in run.segments),
        "leftOut": left_out,
        "runPath": f"/api/exports/{export.id}/runs/{run.id}",
        "sentAt": sent_at,
    }


def headline(facts: dict[str, Any]) -> str:
    return f'Segment export "{facts["exportName"]}" {_TITLES.get(facts["event"], facts["event"])}'


def build(fmt: NotificationFormat, facts: dict[str, Any], *, secret: str | None = None) -> Message:
    if fmt is NotificationFormat.TEAMS:
        payload = teams(facts)
    elif fmt is NotificationFormat.SLACK:
        payload = slack(facts)
    else:
        payload = facts
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8", EVENT_HEADER: facts["event"]}
    if fmt is NotificationFormat.JSON:
        if not secret:
            raise ValueError("a json target needs its signing secret")
        headers[SIGNATURE_HEADER] = "sha256=" + sign(secret, body)
    return Message(body, headers)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (used by the tests): constant-time compare of the signature."""
    expected = "sha256=" + sign(secret, body)
    return hmac.compare_digest(expected, header)


def _facts_lines(facts: dict[str, Any]) -> list[tuple[str, str]]:
    lines = [
        ("Status", facts["status"]),
        ("Run", facts["runId"]),
        ("Trigger", facts["trigger"]),
        ("Added / removed / failed", f"{facts['added']} / {facts['removed']} / {facts['failed']}"),
    ]
    if facts["leftOut"]:
        left = ", ".join(f"{k}: {v}" for k, v in sorted(facts["leftOut"].items()))
        lines.append(("Left out", left))
    if facts["reason"]:
        lines.append(("Reason", facts["reason"]))
    return lines


def teams(facts: dict[str, Any]) -> dict[str, Any]:
    """A Teams workflow's "When a Teams webhook request is received" trigger takes a message
    with Adaptive Card attachments (the flow posts ``attachments[0].content``)."""
    colour = "Good" if facts["event"] == "recovered" else "Attention"
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": headline(facts),
                "weight": "Bolder",
                "size": "Medium",
                "color": colour,
                "wrap": True,
            },
            {
                "type": "FactSet",
                "facts": [{"title": k, "value": v} for k, v in _facts_lines(facts)],
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def slack(facts: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming webhook: ``text`` (also the notification fallback) plus blocks."""
    detail = "\n".join(f"*{k}:* {_slack_escape(v)}" for k, v in _facts_lines(facts))
    title = _slack_escape(headline(facts))
    return {
        "text": title,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": detail}},
        ],
    }


def _slack_escape(text: str) -> str:
    # Slack's three control characters in mrkdwn
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
