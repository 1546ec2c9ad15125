"""When to tell (pure) and what to say (pure): transitions, reason keys, formats, signatures."""

from __future__ import annotations

import json

import pytest

from shared.models import (
    Export,
    NotificationFormat,
    NotifyState,
    Run,
    RunStatus,
    SegmentResult,
    Trigger,
)
from shared.notify import payloads
from shared.notify.decide import decide, reason_key


def run(
    status: RunStatus, *, error: str | None = None, reason: str | None = None, **kw: object
) -> Run:
    return Run(
        export_id="e1",
        id=f"r-{status}-{error}-{reason}",
        trigger=Trigger.SCHEDULE,
        status=status,
        error=error,
        reason=reason,
        segments=[
            SegmentResult(
                segment="High value", added=3, removed=1, left_out={"no-customer-record": 2}
            )
        ],
        **kw,  # type: ignore[arg-type]
    )


def state(outcome: str, key: str = "", delivered: bool = True) -> NotifyState:
    return NotifyState(
        export_id="e1", target_id="t1", outcome=outcome, reason_key=key, delivered=delivered
    )


def test_first_failure_is_told_and_an_identical_one_is_not() -> None:
    failed = run(RunStatus.FAILED, error="the app setting X is missing")
    first = decide(None, failed)
    assert first is not None and first.event == "failed"
    assert decide(state("failed", first.reason_key), failed) is None


def test_counts_and_ids_do_not_make_a_new_reason() -> None:
    a = run(
        RunStatus.FAILED,
        error="gave up after 5 attempts: HTTP 503 from 1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    )
    b = run(
        RunStatus.FAILED,
        error="gave up after 6 attempts: HTTP 503 from 6fa459ea-ee8a-3ca4-894e-db77e160355e",
    )
    assert reason_key(a) == reason_key(b)
    assert decide(state("failed", reason_key(a)), b) is None


def test_a_new_reason_or_a_new_outcome_is_told_again() -> None:
    old = reason_key(run(RunStatus.FAILED, error="token refused"))
    other = decide(state("failed", old), run(RunStatus.FAILED, error="list privileges missing"))
    assert other is not None and other.event == "failed"
    partial = decide(
        state("failed", old), run(RunStatus.PARTIALLY_SUCCEEDED, reason="segment B failed")
    )
    assert partial is not None and partial.event == "partially-succeeded"


def test_recovery_is_told_once_and_first_success_says_nothing() -> None:
    ok = run(RunStatus.SUCCEEDED)
    assert decide(None, ok) is None
    recovered = decide(state("failed", "x"), ok)
    assert recovered is not None and (recovered.event, recovered.outcome) == ("recovered", "ok")
    assert decide(state("ok"), ok) is None


def test_an_undelivered_notice_is_retried_by_the_next_alike_run() -> None:
    failed = run(RunStatus.FAILED, error="boom")
    again = decide(state("failed", reason_key(failed), delivered=False), failed)
    assert again is not None and again.event == "failed"


@pytest.mark.parametrize("status", [RunStatus.CANCELED, RunStatus.SKIPPED, RunStatus.RUNNING])
def test_canceled_skipped_and_active_runs_change_nothing(status: RunStatus) -> None:
    assert decide(state("failed", "x"), run(status)) is None


def test_dry_runs_change_nothing() -> None:
    assert decide(None, run(RunStatus.FAILED, error="x", dry_run=True)) is None


EXPORT = Export(
    id="e1", display_name="Spring <promo> & co", connection_id="c", segments=["High value"]
)


def facts(event: str = "failed") -> dict[str, object]:
    return payloads.summary(
        EXPORT, run(RunStatus.FAILED, error="token refused"), event, "2026-12-03T10:00:00.000Z"
    )


def test_generic_json_is_the_facts_signed_over_the_exact_body() -> None:
    message = payloads.build(NotificationFormat.JSON, facts(), secret="k3y")
    body = json.loads(message.body)
    assert (
        body["event"] == "failed" and body["exportId"] == "e1" and body["reason"] == "token refused"
    )
    assert body["leftOut"] == {"no-customer-record": 2} and body["added"] == 3
    signature = message.headers[payloads.SIGNATURE_HEADER]
    assert payloads.verify("k3y", message.body, signature)
    assert not payloads.verify("k3y", message.body + b" ", signature)
    assert not payloads.verify("other", message.body, signature)
    with pytest.raises(ValueError, match="secret"):
        payloads.build(NotificationFormat.JSON, facts(), secret=None)


def test_teams_workflow_message_carries_an_adaptive_card() -> None:
    message = payloads.build(NotificationFormat.TEAMS, facts())
    body = json.loads(message.body)
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert "Spring <promo> & co" in card["body"][0]["text"] and "failed" in card["body"][0]["text"]
    assert payloads.SIGNATURE_HEADER not in message.headers


def test_slack_message_has_fallback_text_and_escapes_mrkdwn() -> None:
    body = json.loads(payloads.build(NotificationFormat.SLACK, facts("recovered")).body)
    assert body["text"] == 'Segment export "Spring &lt;promo&gt; &amp; co" recovered'
    assert body["blocks"][0]["type"] == "section"
