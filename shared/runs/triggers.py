"""Bodies of the timer and queue functions, kept out of function_app.py (a thin composition root).

Nothing here builds a client at import time: settings and the store are made on first use and
cached for the worker process's life.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime

from shared import telemetry
from shared.models import Export, Run, Trigger
from shared.runs import schedule
from shared.runs.clock import utc_now
from shared.runs.requests import (
    ActiveRunError,
    ExportNotRunnableError,
    record_skipped,
    request_run,
)
from shared.runs.sweeper import free_if_abandoned
from shared.runs.worker import Outcome, decode_run_message, finish_abandoned, process_message
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)

SCHEDULE_REQUESTER = "schedule"

# who claimed a due time (operators reading the claims table); not an identifier of anyone
_INSTANCE = f"{socket.gethostname()}:{os.getpid()}"

_lock = threading.Lock()
_runtime: tuple[Settings, StoreApi] | None = None


def runtime() -> tuple[Settings, StoreApi]:
    """Settings and store for this process, built (and the store ensured) on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            from shared.store import open_store

            settings = Settings.from_env()
            telemetry.configure(settings.environ)
            store = open_store(settings)
            store.ensure()
            _runtime = (settings, store)
        return _runtime


def on_timer(
    timer_past_due: bool,
    *,
    store: StoreApi | None = None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> list[Run]:
    """Both timers (scheduled_refresh, schedule_tick): start every export whose schedule is due.

    Each due time starts exactly one run across ticks and instances: it is claimed in the store
    (an insert that fails when the row exists) before the run is requested. A run still active
    at the due time makes that due time a recorded ``skipped`` run naming it. See
    shared/runs/schedule.py for which due time a tick considers.
    """
    if store is None or settings is None:
        settings, store = runtime()
    if timer_past_due:
        log.warning("timer tick is past due; starting the exports due now")
    now = now or utc_now()
    refresh = schedule.crontab(settings.refresh_schedule)
    runs: list[Run] = []
    for export in store.exports.list():
        try:
            free_if_abandoned(store, settings, export.id, now)
        except Exception:
            log.exception("could not check export %s for an abandoned run", export.id)
        due = schedule.due_time(export, refresh, now)
        if due is None:
            continue
        try:
            run = _start_due(store, settings, export, due, now)
        except Exception:
            log.exception("could not start export %s due at %s", export.id, due.isoformat())
            continue
        if run is not None:
            runs.append(run)
    queued = sum(1 for r in runs if r.status.is_active)
    if runs:
        log.info("schedule: %d runs queued, %d skipped", queued, len(runs) - queued)
    return runs


def _start_due(
    store: StoreApi, settings: Settings, export: Export, due: datetime, now: datetime
) -> Run | None:
    """Claim the due time, then request the run (or record it skipped); None if not ours."""
    if not store.schedule_claims.claim(export.id, due, claimed_by=_INSTANCE):
        return None  # another tick or instance started this due time
    try:
        run: Run = request_run(
            store,
            export.id,
            trigger=Trigger.SCHEDULE,
            requested_by=SCHEDULE_REQUESTER,
            settings=settings,
            now=now,
        )
    except ActiveRunError as exc:
        run = record_skipped(store, export, Trigger.SCHEDULE, SCHEDULE_REQUESTER, exc.active_run_id)
    except ExportNotRunnableError as exc:
        log.info("export %s due at %s not run: %s", export.id, due.isoformat(), exc)
        return None
    store.schedule_claims.set_run(export.id, due, run.id)
    return run


def on_run_message(
    body: str | bytes,
    dequeue_count: int,
    *,
    store: StoreApi | None = None,
    settings: Settings | None = None,
) -> Outcome:
    """Queue trigger: run one slice. Raises only when the queue should deliver it again."""
    if store is None or settings is None:
        settings, store = runtime()
    outcome = process_message(store, settings, body, dequeue_count=dequeue_count)
    log.info("run message handled: %s (delivery %d)", outcome, dequeue_count)
    if outcome is Outcome.FINISHED:  # the final status is saved and the lease released
        after_final(store, settings, body)
    return outcome


def after_final(store: StoreApi, settings: Settings, body: str | bytes) -> None:
    """Notifications for a run whose final status is saved: bounded (NOTIFY_TIMEOUT_SECONDS),
    and nothing they do (a broken or slow webhook, a store error) reaches the run or the queue."""
    try:
        from shared.notify.service import notify_run_finished  # lazy: only after a final run

        message = decode_run_message(store, body)
        notify_run_finished(store, settings, message.export_id, message.run_id)
    except Exception as exc:
        log.warning("notifications after a run failed (%s)", type(exc).__name__)


def on_poison_message(body: str | bytes, *, store: StoreApi | None = None) -> Run | None:
    """The host gave up on a run message (it failed max-dequeue-count times, e.g. the worker
    process kept dying): make sure the run is not left running for ever."""
    settings = None
    if store is None:
        settings, store = runtime()
    run = finish_abandoned(
        store,
        body,
        "the worker stopped repeatedly while running this run and it was given up; "
        "see the function logs, then run the export again",
    )
    if run is not None:
        after_final(store, settings or store.settings, body)
    return run
