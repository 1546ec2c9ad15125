"""The queue worker: run one time-budgeted slice of a run, then finish it or hand off.

One message = one slice. The slice takes the export's lease (ETag-guarded, expiring, renewed by
a heartbeat), syncs the run's segments in order within the budget, saves progress as it goes and
either records the final status or enqueues a continuation for the next slice.

Duplicate and stale deliveries do no double work: a final run is left alone, a message whose
slice number is behind the run's ``slices`` counter is dropped, and two live deliveries of the
same slice are serialised by the lease (the loser re-enqueues itself with a short delay).
``run.slices`` counts slices started or handed off: a slice hands off by enqueuing slice k+1
(visible after a second), recording ``slices = k+2`` and only then releasing the lease.

The parts live in their own modules: the lease heartbeat (shared.runs.lease_keeper), the
progress writer (shared.runs.progress), the slice (shared.runs.slice) and one segment's sync
step (shared.runs.segment_step). This module is the entry point and keeps their public names.
"""

from __future__ import annotations

import logging

from shared import telemetry
from shared.errors import NotFoundError, PreconditionFailedError
from shared.models import Run, RunMessage
from shared.runs.budget import slice_budget
from shared.runs.clock import utc_now_iso
from shared.runs.lease_keeper import (
    CANCEL_POLL_INTERVAL,
    busy_delay,
    default_holder,
    wait_for_lease,
)
from shared.runs.progress import PROGRESS_SAVE_INTERVAL
from shared.runs.slice import CONTINUATION_DELAY, ClientOpener, Outcome, Slice, already_done
from shared.runs.status import status_when_stopped_by_failure
from shared.settings import Settings
from shared.store.protocols import StoreApi

__all__ = [
    "CANCEL_POLL_INTERVAL",
    "CONTINUATION_DELAY",
    "PROGRESS_SAVE_INTERVAL",
    "ClientOpener",
    "Outcome",
    "busy_delay",
    "decode_run_message",
    "default_holder",
    "finish_abandoned",
    "process_message",
    "slice_budget",
]

log = logging.getLogger(__name__)


def process_message(
    store: StoreApi,
    settings: Settings,
    body: str | bytes,
    *,
    dequeue_count: int = 1,
    holder: str | None = None,
    open_client: ClientOpener | None = None,
) -> Outcome:
    """Handle one run message. Raises only to ask the queue for a retry (transient failure
    before the last allowed delivery); every other failure is recorded on the run.
    """
    try:
        message = decode_run_message(store, body)
    except Exception as exc:
        log.warning("dropping a run message that cannot be decoded (%s)", exc)
        return Outcome.DROPPED
    try:
        run: Run = store.runs.get(message.export_id, message.run_id)
    except NotFoundError:
        log.warning("dropping message for unknown run %s", message.run_id)
        return Outcome.DROPPED
    if already_done(run, message):
        return Outcome.DUPLICATE
    lease = store.leases.acquire(
        message.export_id, holder or default_holder(), settings.lease_seconds
    )
    if lease is None:
        store.queue.send(message, visibility_timeout=wait_for_lease(store, settings, message))
        log.info(
            "export %s is leased by another worker; run %s retried later", message.export_id, run.id
        )
        return Outcome.BUSY
    work = Slice(store, settings, message, lease, open_client)
    try:
        with telemetry.run_slice(message.export_id, message.run_id, message.slice):
            return work.execute(dequeue_count)
    finally:
        work.close()


def decode_run_message(store: StoreApi, body: str | bytes) -> RunMessage:
    """The run queue's message format (JSON as the trigger hands it over, or its base64 form)."""
    from shared.store.queue import decode_message  # lazy: the queue SDK is heavy

    return decode_message(body)


def finish_abandoned(store: StoreApi, body: str | bytes, reason: str) -> Run | None:
    """Close a run whose message was given up on (poison queue): failed, marker released."""
    try:
        message = decode_run_message(store, body)
        run: Run = store.runs.get(message.export_id, message.run_id)
    except Exception as exc:
        log.warning("poison message ignored (%s)", type(exc).__name__)
        return None
    for _ in range(6):
        if run.status.is_final:
            store.active_runs.release(run.export_id, run.id)
            return run
        run.status = status_when_stopped_by_failure(run.segments)
        run.finished_at = utc_now_iso()
        run.error = reason
        try:
            run = store.runs.update(run)
            break
        except PreconditionFailedError:
            run = store.runs.get(message.export_id, message.run_id)
    store.active_runs.release(run.export_id, run.id)
    return run
