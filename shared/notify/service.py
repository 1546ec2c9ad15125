"""Tell the targets about a finished run: decide, claim the state change, send, record.

Called after the run's final status is saved (shared/runs/triggers.py), never inside the run:
a broken or slow webhook cannot fail or slow a run. The whole pass is bounded by
``NOTIFY_TIMEOUT_SECONDS``; every error is caught, logged (without the URL) and recorded on the
run as an undelivered notification.

Per (export, target) the store keeps the last outcome told. The state change is written BEFORE
sending, conditionally (insert-if-absent / If-Match), so when two workers see the same change
only the one whose write succeeds sends it. If sending fails, the state says so and the next
alike run sends again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

import httpx

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError
from shared.models import (
    Export,
    NotificationFormat,
    NotificationResult,
    NotificationTarget,
    NotifyState,
    Run,
)
from shared.notify import payloads, webhook
from shared.notify.decide import Decision, decide
from shared.runs.clock import utc_now_iso
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)
_STATE_ATTEMPTS = 4


@dataclasses.dataclass
class Sender:
    """The network seam: tests pass an httpx transport; production uses the default."""

    transport: httpx.BaseTransport | None = None
    resolver: webhook.Resolver = webhook.resolve
    sleep: Callable[[float], None] = time.sleep


def notify_run_finished(
    store: StoreApi,
    settings: Settings,
    export_id: str,
    run_id: str,
    *,
    sender: Sender | None = None,
) -> list[NotificationResult]:
    """Send what this finished run calls for to every target covering its export."""
    sender = sender or Sender()
    targets = [t for t in store.notify_targets.list() if t.covers(export_id)]
    if not targets:
        return []
    run = store.runs.get(export_id, run_id)
    if not run.status.is_final:
        return []
    try:
        export = store.exports.get(export_id)
    except NotFoundError:
        export = Export(
            id=export_id, display_name="(deleted export)", connection_id=None, segments=[]
        )
    deadline = time.monotonic() + settings.notify_timeout_seconds
    results: list[NotificationResult] = []
    for target in sorted(targets, key=lambda t: t.id):
        try:
            result = _notify_one(store, settings, target, export, run, deadline, sender)
        except Exception as exc:  # a store hiccup for one target must not stop the others
            log.warning(
                "notification to target %s about run %s failed (%s)",
                target.id,
                run.id,
                type(exc).__name__,
            )
            continue
        if result is not None:
            results.append(result)
    if results:
        _record(store, run, results)
    return results


def _claim(
    store: StoreApi, target: NotificationTarget, run: Run
) -> tuple[Decision, NotifyState] | None:
    for _ in range(_STATE_ATTEMPTS):
        previous = store.notify_state.get(run.export_id, target.id)
        if previous is not None and previous.run_id == run.id:
            return None  # this run was already claimed (another worker, or a redelivery)
        decision = decide(previous, run)
        if decision is None:
            return None
        state = NotifyState(
            export_id=run.export_id,
            target_id=target.id,
            outcome=decision.outcome,
            reason_key=decision.reason_key,
            run_id=run.id,
            delivered=False,
        )
        try:
            saved = store.notify_state.put(state, previous.etag if previous else None)
        except (ConflictError, PreconditionFailedError):
            continue  # someone else changed it: decide again on what they wrote
        return decision, saved
    return None


def _notify_one(
    store: StoreApi,
    settings: Settings,
    target: NotificationTarget,
    export: Export,
    run: Run,
    deadline: float,
    sender: Sender,
) -> NotificationResult | None:
    claimed = _claim(store, target, run)
    if claimed is None:
        return None
    decision, state = claimed
    assert decision.event is not None
    delivery = _deliver(settings, target, export, run, decision.event, deadline, sender)
    if delivery.delivered:
        # a conflict means a later run already moved the state on
        with contextlib.suppress(ConflictError, PreconditionFailedError):
            store.notify_state.put(dataclasses.replace(state, delivered=True), state.etag)
    log.info(
        "notification %s to target %s for run %s: %s after %d attempt(s)",
        decision.event,
        target.id,
        run.id,
        "delivered" if delivery.delivered else f"not delivered ({delivery.error})",
        delivery.attempts,
    )
    return NotificationResult(
        target_id=target.id,
        event=decision.event,
        delivered=delivery.delivered,
        attempts=delivery.attempts,
        status_code=delivery.status_code,
        error=delivery.error,
        at=utc_now_iso(),
    )


def _deliver(
    settings: Settings,
    target: NotificationTarget,
    export: Export,
    run: Run,
    event: str,
    deadline: float,
    sender: Sender,
) -> webhook.Delivery:
    url = settings.environ.get(target.url_setting) or ""
    if not url.strip():
        return webhook.Delivery(
            False,
            0,
            error=f"the app setting {target.url_setting} (webhook URL) is missing or empty",
        )
    secret = None
    if target.format is NotificationFormat.JSON:
        secret = settings.environ.get(target.secret_setting or "") or None
        if secret is None:
            return webhook.Delivery(
                False,
                0,
                error=f"the app setting {target.secret_setting} (signing secret) is missing "
                "or empty",
            )
    facts = payloads.summary(export, run, event, utc_now_iso())
    message = payloads.build(target.format, facts, secret=secret)
    return webhook.send(
        url,
        message.body,
        message.headers,
        deadline=deadline,
        allow_loopback=settings.allow_loopback_webhooks,
        transport=sender.transport,
        resolver=sender.resolver,
        sleep=sender.sleep,
    )


def _record(store: StoreApi, run: Run, results: list[NotificationResult]) -> None:
    """Add the results to the (final) run; re-read and retry when the run changed meanwhile."""
    current = run
    for _ in range(_STATE_ATTEMPTS):
        current.notifications = [*current.notifications, *results]
        try:
            store.runs.update(current)
            return
        except PreconditionFailedError:
            current = store.runs.get(run.export_id, run.id)
    log.warning("could not record notifications on run %s", run.id)
