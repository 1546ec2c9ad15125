"""Notifications after finished runs, on Azurite, to a real HTTP receiver on loopback: told on a
turn to failed, again only when the reason changes, once on recovery; delivery recorded on the
run; a broken or stalled webhook never changes the run; concurrent workers tell once."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from typing import Any

from shared.models import (
    Export,
    NotificationFormat,
    NotificationTarget,
    Run,
    RunStatus,
    SegmentResult,
    Trigger,
)
from shared.notify import payloads
from shared.notify.service import notify_run_finished
from shared.runs.clock import new_run_id
from shared.settings import Settings
from tests.notify.conftest import SIGNING_KEY
from tests.notify.receiver import Receiver


def make_export(store: Any, name: str = "Spring promo") -> Export:
    export = Export(id=uuid.uuid4().hex, display_name=name, connection_id="c" * 32, segments=["S"])
    created: Export = store.exports.create(export)
    return created


def make_target(
    store: Any, fmt: NotificationFormat = NotificationFormat.JSON, **kw: Any
) -> NotificationTarget:
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "display_name": "Ops",
        "format": fmt,
        "url_setting": "OPS_WEBHOOK_URL",
        "secret_setting": "OPS_WEBHOOK_KEY" if fmt is NotificationFormat.JSON else None,
    }
    values.update(kw)
    created: NotificationTarget = store.notify_targets.create(NotificationTarget(**values))
    return created


def finished(store: Any, export: Export, status: RunStatus, error: str | None = None) -> Run:
    run = Run(
        export_id=export.id,
        id=new_run_id(),
        trigger=Trigger.SCHEDULE,
        status=status,
        queued_at="2026-12-03T10:00:00.000Z",
        finished_at="2026-12-03T10:01:00.000Z",
        error=error,
        segments=[
            SegmentResult(
                segment="S", members=10, matched=8, added=8, left_out={"no-customer-record": 2}
            )
        ],
    )
    created: Run = store.runs.create(run)
    return created


def test_told_on_failure_again_on_new_reason_and_once_on_recovery(
    store: Any, settings: Settings, receiver: Receiver
) -> None:
    export = make_export(store)
    target = make_target(store)
    sequence = [
        (RunStatus.FAILED, "the app setting CONTOSO_SECRET is missing", "failed"),
        (RunStatus.FAILED, "the app setting CONTOSO_SECRET is missing", None),  # identical
        (RunStatus.FAILED, "Sales refused the token", "failed"),  # the reason changed
        (RunStatus.SUCCEEDED, None, "recovered"),
        (RunStatus.SUCCEEDED, None, None),
        (RunStatus.CANCELED, None, None),
    ]
    told = 0
    for status, error, event in sequence:
        run = finished(store, export, status, error)
        results = notify_run_finished(store, settings, export.id, run.id)
        saved = store.runs.get(export.id, run.id)
        assert saved.status is status  # notifications never change the run's outcome
        if event is None:
            assert results == [] and saved.notifications == []
            continue
        told += 1
        [result] = saved.notifications
        assert (result.target_id, result.event, result.delivered, result.status_code) == (
            target.id, event, True, 200,
        )  # fmt: skip
        post = receiver.wait_for(told)[-1]
        body = post.json()
        assert (body["event"], body["runId"], body["exportName"]) == (event, run.id, "Spring promo")
        assert payloads.verify(SIGNING_KEY, post.body, post.headers[payloads.SIGNATURE_HEADER])
    assert len(receiver.received) == 3


def test_targets_for_one_export_and_for_all(
    store: Any, settings: Settings, receiver: Receiver
) -> None:
    watched, other = make_export(store, "Watched"), make_export(store, "Other")
    make_target(store, NotificationFormat.TEAMS, export_ids=[watched.id], display_name="Teams")
    make_target(store, NotificationFormat.SLACK, display_name="Slack, all exports")
    make_target(store, NotificationFormat.SLACK, enabled=False, display_name="Off")
    run = finished(store, other, RunStatus.FAILED, "boom")
    assert len(notify_run_finished(store, settings, other.id, run.id)) == 1
    run = finished(store, watched, RunStatus.FAILED, "boom")
    assert len(notify_run_finished(store, settings, watched.id, run.id)) == 2
    kinds = sorted("attachments" in p.json() for p in receiver.wait_for(3))
    assert kinds == [False, False, True]  # two Slack bodies, one Teams workflow message


def test_a_broken_webhook_is_recorded_and_the_next_alike_run_tries_again(
    store: Any, settings: Settings, receiver: Receiver
) -> None:
    export = make_export(store)
    make_target(store, NotificationFormat.SLACK, url_setting="BROKEN_WEBHOOK_URL")
    first = finished(store, export, RunStatus.FAILED, "boom")
    [result] = notify_run_finished(store, settings, export.id, first.id)
    assert not result.delivered and result.attempts >= 1 and "connect" in (result.error or "")
    assert "nobody-listens" not in (result.error or "")
    saved = store.runs.get(export.id, first.id)
    assert saved.status is RunStatus.FAILED and saved.error == "boom"
    assert saved.notifications == [result]
    second = finished(store, export, RunStatus.FAILED, "boom")
    [retry] = notify_run_finished(store, settings, export.id, second.id)
    assert retry.event == "failed" and not retry.delivered


def test_server_errors_are_retried_then_delivered(
    store: Any, settings: Settings, receiver: Receiver
) -> None:
    export = make_export(store)
    make_target(store, NotificationFormat.SLACK)
    receiver.statuses[:] = [503, 429]
    run = finished(store, export, RunStatus.FAILED, "boom")
    [result] = notify_run_finished(store, settings, export.id, run.id)
    assert (result.delivered, result.attempts) == (True, 3)
    assert len(receiver.wait_for(3)) == 3


def test_a_stalled_webhook_is_cut_off_by_the_time_bound(
    store: Any, env: dict[str, str], receiver: Receiver
) -> None:
    settings = Settings.from_env({**env, "NOTIFY_TIMEOUT_SECONDS": "1"})
    export = make_export(store)
    make_target(store, NotificationFormat.SLACK)
    receiver.stall = threading.Event()
    run = finished(store, export, RunStatus.FAILED, "boom")
    [result] = notify_run_finished(store, settings, export.id, run.id)
    receiver.stall.set()
    assert not result.delivered and "timed out" in (result.error or "")
    assert store.runs.get(export.id, run.id).status is RunStatus.FAILED


def test_a_missing_url_setting_is_recorded_not_raised(store: Any, settings: Settings) -> None:
    export = make_export(store)
    make_target(store, NotificationFormat.TEAMS, url_setting="NOT_SET_ANYWHERE")
    run = finished(store, export, RunStatus.FAILED, "boom")
    [result] = notify_run_finished(store, settings, export.id, run.id)
    assert not result.delivered and "NOT_SET_ANYWHERE" in (result.error or "")


def test_concurrent_workers_tell_a_change_once(
    store: Any, settings: Settings, receiver: Receiver
) -> None:
    export = make_export(store)
    make_target(store, NotificationFormat.SLACK)
    run = finished(store, export, RunStatus.FAILED, "boom")
    barrier = threading.Barrier(4)
    counts: list[int] = []

    def worker() -> None:
        barrier.wait()
        counts.append(len(notify_run_finished(store, settings, export.id, run.id)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == [0, 0, 0, 1]
    assert len(receiver.wait_for(1)) == 1
    # a redelivered message for the same run tells nobody again
    assert notify_run_finished(store, settings, export.id, run.id) == []
    assert len(dataclasses.replace(store.runs.get(export.id, run.id)).notifications) == 1
