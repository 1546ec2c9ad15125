"""Bodies of the timer and queue functions, kept out of function_app.py (a thin composition root).

Nothing here builds a client at import time: settings and the store are made on first use and
cached for the worker process's life.
"""

from __future__ import annotations

import logging
import threading

from shared.models import Run, Trigger
from shared.runs.requests import request_all
from shared.runs.worker import Outcome, finish_abandoned, process_message
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)

SCHEDULE_REQUESTER = "schedule"

_lock = threading.Lock()
_runtime: tuple[Settings, StoreApi] | None = None


def runtime() -> tuple[Settings, StoreApi]:
    """Settings and store for this process, built (and the store ensured) on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            from shared.store import open_store

            settings = Settings.from_env()
            store = open_store(settings)
            store.ensure()
            _runtime = (settings, store)
        return _runtime


def on_timer(timer_past_due: bool, *, store: StoreApi | None = None) -> list[Run]:
    """Scheduled refresh: queue a run for every enabled, attached export (one pass per tick,
    even when the tick is past due: missed ticks are not replayed)."""
    if store is None:
        _, store = runtime()
    if timer_past_due:
        log.warning("scheduled refresh is past due; running one refresh pass now")
    runs = request_all(store, trigger=Trigger.SCHEDULE, requested_by=SCHEDULE_REQUESTER)
    queued = sum(1 for r in runs if r.status.is_active)
    log.info("scheduled refresh: %d runs queued, %d skipped", queued, len(runs) - queued)
    return runs


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
    return outcome


def on_poison_message(body: str | bytes, *, store: StoreApi | None = None) -> Run | None:
    """The host gave up on a run message (it failed max-dequeue-count times, e.g. the worker
    process kept dying): make sure the run is not left running for ever."""
    if store is None:
        _, store = runtime()
    return finish_abandoned(
        store,
        body,
        "the worker stopped repeatedly while running this run and it was given up; "
        "see the function logs, then run the export again",
    )
