"""Abandoned runs: a queued or running run that nothing will continue is freed.

A run is abandoned when it is ``queued`` or ``running``, no worker holds a live lease on its
export, and nothing was saved on it for longer than a dead host's message stays hidden plus the
lease (the longest a live run can go without either). That happens when a worker died and its
message was completed or lost, or when an API process died between recording a run and
enqueuing it. The rule is applied from the timer and whenever a request or a cancel touches the
export: the run's next slice is queued again (duplicate slices are safe: the lease serialises
them and a stale one is dropped), or, once that was done MAX_DEQUEUE_COUNT times without
progress, the run is finished as failed with the reason. A cancel of an abandoned run takes
effect at once (shared.runs.requests.cancel_run).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.errors import NotFoundError, PreconditionFailedError
from shared.models import Run, RunMessage
from shared.runs.clock import utc_now
from shared.runs.status import status_when_stopped_by_failure
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)

# The Functions host hides a queue message it is processing for 10 minutes (renewed while the
# function runs); a message of a host that died comes back after at most that long.
HOST_MESSAGE_VISIBILITY = timedelta(minutes=10)


def abandoned_after(settings: Settings) -> timedelta:
    """How long a run may show no sign of life before it counts as abandoned."""
    return HOST_MESSAGE_VISIBILITY + timedelta(seconds=settings.lease_seconds)


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def last_sign_of_life(run: Run) -> datetime | None:
    """When a worker last saved the run, else when it was started or queued."""
    return _parse(run.progress_at) or _parse(run.started_at) or _parse(run.queued_at)


def is_abandoned(
    run: Run, lease_expires_at: float | None, now: datetime, settings: Settings
) -> bool:
    """Pure rule: active, no live lease, and silent for longer than abandoned_after."""
    if not run.status.is_active:
        return False
    if lease_expires_at is not None and lease_expires_at > now.timestamp():
        return False
    seen = last_sign_of_life(run)
    return seen is not None and now - seen > abandoned_after(settings)


def abandoned_run(
    store: StoreApi, settings: Settings, export_id: str, run_id: str, now: datetime
) -> Run | None:
    """The run if it is abandoned now, else None."""
    try:
        run = store.runs.get(export_id, run_id)
    except NotFoundError:
        return None
    lease = store.leases.get(export_id)
    expires = float(lease.expires_at) if lease is not None else None
    return run if is_abandoned(run, expires, now, settings) else None


def free_if_abandoned(
    store: StoreApi, settings: Settings, export_id: str, now: datetime | None = None
) -> Run | None:
    """Queue the next slice of the export's abandoned active run again, or fail it once that
    was tried MAX_DEQUEUE_COUNT times without progress. Returns the run it acted on, else None.
    """
    now = now or utc_now()
    run_id = store.active_runs.get(export_id)
    if run_id is None:
        return None
    run = abandoned_run(store, settings, export_id, run_id, now)
    if run is None:
        return None
    silent = int((now - (last_sign_of_life(run) or now)).total_seconds())
    # Recording the sweep first (ETag-guarded) makes one sweeper act, and restarts the clock.
    run.progress_at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if run.requeues >= settings.max_dequeue_count:
        run.status = status_when_stopped_by_failure(run.segments)
        run.finished_at = run.progress_at
        run.error = (
            f"no worker continued this run for {silent} s, and queuing it again "
            f"{run.requeues} times (MAX_DEQUEUE_COUNT) did not help; run the export again"
        )
    else:
        run.requeues += 1
    try:
        run = store.runs.update(run)
    except PreconditionFailedError:
        return None  # someone else touched it meanwhile (a worker, a cancel, another sweep)
    if run.status.is_final:
        store.active_runs.release(export_id, run.id)
        log.warning("run %s abandoned and failed: %s", run.id, run.error)
        return run
    following = RunMessage(export_id=export_id, run_id=run.id, slice=max(run.slices - 1, 0))
    store.queue.send(following)
    log.warning(
        "run %s showed no sign of life for %d s and had no live lease; slice %d queued again",
        run.id,
        silent,
        following.slice,
    )
    return run
