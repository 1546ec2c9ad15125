"""Run requests (Contract 4): record a queued run, guard against two active runs, enqueue it.

The one guard against two active runs per export is the store's active-run marker
(``store.active_runs.claim``, an insert-if-absent row): whoever inserts it first owns the export
until its run reaches a final status. Used by the HTTP API (on demand) and the timer (schedule).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError, SegmentExportError
from shared.models import (
    Export,
    Run,
    RunMessage,
    RunStatus,
    ScheduleKind,
    SegmentResult,
    Trigger,
)
from shared.runs.clock import new_run_id, run_id_created_at, utc_now, utc_now_iso
from shared.runs.sweeper import abandoned_run, free_if_abandoned
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)

# A marker naming a run that does not exist is only stale once the requester that claimed it
# has surely given up creating the run record (claim and create are two calls).
MISSING_RUN_GRACE = timedelta(seconds=60)
_UPDATE_ATTEMPTS = 6


class ActiveRunError(SegmentExportError):
    """The export already has a queued or running run; nothing was recorded."""

    def __init__(self, active_run_id: str) -> None:
        super().__init__(f"run {active_run_id} is already queued or running for this export")
        self.active_run_id = active_run_id


class ExportNotRunnableError(SegmentExportError):
    """The export cannot run as configured (e.g. detached from a deleted connection)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def request_run(
    store: StoreApi,
    export_id: str,
    *,
    trigger: Trigger,
    requested_by: str,
    dry_run: bool = False,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> Run:
    """Record a queued run, claim the export's active-run marker and enqueue the first slice.

    Raises NotFoundError (unknown export), ExportNotRunnableError (detached) or ActiveRunError
    (another run is queued or running; nothing recorded). With settings, an abandoned active
    run is freed first (shared.runs.sweeper): queued again, or failed and the export freed.
    """
    export: Export = store.exports.get(export_id)
    if export.detached:
        raise ExportNotRunnableError(
            "the export is detached: its connection was deleted; attach a connection to run it"
        )
    if not export.segments:
        raise ExportNotRunnableError("the export has no segments; add at least one to run it")
    run_id = new_run_id()
    active = _claim(store, export_id, run_id)
    if active is not None and settings is not None:
        freed = free_if_abandoned(store, settings, export_id, now)
        if freed is not None and freed.status.is_final:
            active = _claim(store, export_id, run_id)
    if active is not None:
        raise ActiveRunError(active)
    run = Run(
        export_id=export_id,
        id=run_id,
        trigger=trigger,
        status=RunStatus.QUEUED,
        dry_run=dry_run,
        requested_by=requested_by,
        queued_at=utc_now_iso(),
        segments=[SegmentResult(segment=name) for name in export.segments],
    )
    try:
        run = store.runs.create(run)
    except BaseException:
        store.active_runs.release(export_id, run_id)
        raise
    try:
        store.queue.send(RunMessage(export_id=export_id, run_id=run_id, slice=0))
    except BaseException as exc:
        # Nobody would ever pick the run up: close it and free the export.
        _close_unqueued(store, run, f"could not enqueue the run ({type(exc).__name__}); try again")
        raise
    log.info("run %s queued for export %s (%s by %s)", run_id, export_id, trigger, requested_by)
    return run


def request_all(store: StoreApi, *, trigger: Trigger, requested_by: str) -> list[Run]:
    """Queue a run for every enabled, attached export with an active schedule (as Customer
    Insights' "Run all": an export whose schedule is ``off`` runs only on its own demand).
    An export that already has an active run gets a recorded ``skipped`` run naming it.
    One export's storage error does not stop the rest.
    """
    runs: list[Run] = []
    for export in store.exports.list():
        if not export.enabled or export.schedule.kind is ScheduleKind.OFF:
            continue
        if export.detached:
            log.info("export %s is detached from its connection; not run", export.id)
            continue
        try:
            try:
                run = request_run(store, export.id, trigger=trigger, requested_by=requested_by)
            except ActiveRunError as exc:
                run = record_skipped(store, export, trigger, requested_by, exc.active_run_id)
            runs.append(run)
        except (NotFoundError, ExportNotRunnableError) as exc:
            log.info("export %s not run: %s", export.id, exc)
        except Exception:
            log.exception("could not queue a run for export %s", export.id)
    return runs


def record_skipped(
    store: StoreApi, export: Export, trigger: Trigger, requested_by: str, active_run_id: str
) -> Run:
    """Record a final ``skipped`` run that names the run already active for the export."""
    now = utc_now_iso()
    run = Run(
        export_id=export.id,
        id=new_run_id(),
        trigger=trigger,
        status=RunStatus.SKIPPED,
        requested_by=requested_by,
        queued_at=now,
        finished_at=now,
        reason=f"skipped: run {active_run_id} was already queued or running for this export",
    )
    created: Run = store.runs.create(run)
    log.info("export %s skipped: run %s is active", export.id, active_run_id)
    return created


def cancel_run(
    store: StoreApi,
    export_id: str,
    run_id: str,
    requested_by: str,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> Run:
    """Ask a run to stop. A queued run becomes ``canceled`` at once (and frees the export); a
    running run gets ``cancel_requested`` and stops at the worker's next chunk boundary, unless
    (with settings) it is abandoned (shared.runs.sweeper): then it is canceled at once too.
    A run that has already finished is returned unchanged.
    """
    for _ in range(_UPDATE_ATTEMPTS):
        run: Run = store.runs.get(export_id, run_id)
        if run.status.is_final:
            return run
        run.cancel_requested = True
        abandoned = (
            settings is not None
            and run.status is RunStatus.RUNNING
            and abandoned_run(store, settings, export_id, run_id, now or utc_now()) is not None
        )
        if run.status is RunStatus.QUEUED:
            run.status = RunStatus.CANCELED
            run.finished_at = utc_now_iso()
            run.reason = f"canceled by {requested_by} before it started"
        elif abandoned:
            run.status = RunStatus.CANCELED
            run.finished_at = utc_now_iso()
            run.reason = f"canceled by {requested_by}; its worker had stopped"
        else:
            run.reason = f"cancel requested by {requested_by}; stopping at the next chunk"
        try:
            updated: Run = store.runs.update(run)
        except PreconditionFailedError:
            continue  # the worker wrote progress meanwhile: read again and re-apply
        if updated.status is RunStatus.CANCELED:
            store.active_runs.release(export_id, run_id)
        log.info("cancel of run %s requested by %s", run_id, requested_by)
        return updated
    raise ConflictError("the run kept changing while canceling it; try again")


def _claim(store: StoreApi, export_id: str, run_id: str) -> str | None:
    """Claim the export's marker for run_id; None if claimed, else the active run's id.

    A marker left behind by a run that already finished (or was never recorded) is cleared and
    the claim retried, so a crash between two writes cannot block an export for ever.
    """
    active: str | None = None
    for _ in range(3):
        active = store.active_runs.claim(export_id, run_id)
        if active is None or not _marker_is_stale(store, export_id, active):
            return active
        log.warning("clearing stale active-run marker %s of export %s", active, export_id)
        store.active_runs.release(export_id, active)
    return active


def _marker_is_stale(store: StoreApi, export_id: str, active_run_id: str) -> bool:
    try:
        run: Run = store.runs.get(export_id, active_run_id)
    except NotFoundError:
        created = run_id_created_at(active_run_id)
        return created is not None and utc_now() - created > MISSING_RUN_GRACE
    return run.status.is_final


def _close_unqueued(store: StoreApi, run: Run, error: str) -> None:
    try:
        run.status = RunStatus.FAILED
        run.finished_at = utc_now_iso()
        run.error = error
        store.runs.update(run)
    except Exception:
        log.exception("could not record the failure of unqueued run %s", run.id)
    finally:
        store.active_runs.release(run.export_id, run.id)
