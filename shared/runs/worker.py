"""The queue worker: run one time-budgeted slice of a run, then finish it or hand off.

One message = one slice. The slice takes the export's lease (ETag-guarded, expiring, renewed by
a heartbeat), syncs the run's segments in order within the budget, saves progress as it goes and
either records the final status or enqueues a continuation for the next slice.

Duplicate and stale deliveries do no double work: a final run is left alone, a message whose
slice number is behind the run's ``slices`` counter is dropped, and two live deliveries of the
same slice are serialised by the lease (the loser re-enqueues itself with a short delay).
``run.slices`` counts slices started or handed off: a slice hands off by enqueuing slice k+1
(visible after a second), recording ``slices = k+2`` and only then releasing the lease.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from enum import StrEnum
from typing import Any

from shared.errors import (
    AuthenticationError,
    ConflictError,
    FatalSalesError,
    NotFoundError,
    PreconditionFailedError,
)
from shared.listname import ListNameError, render_list_name
from shared.models import (
    Connection,
    Export,
    Run,
    RunMessage,
    RunStatus,
    SegmentListState,
    SegmentResult,
)
from shared.runs.budget import SliceBudget
from shared.runs.clock import utc_now_iso
from shared.runs.failures import RunFatalError, describe, is_retryable
from shared.runs.status import decide_final_status, is_pending, join_reasons, merge_segment
from shared.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_SAVE_INTERVAL = 1.5  # seconds between progress writes while a segment is applied
CANCEL_POLL_INTERVAL = 2.0  # seconds between cancel checks (one run read each)
CONTINUATION_DELAY = 1  # seconds; lets this slice record the hand-off before the next starts

ClientOpener = Callable[[Connection, Settings], AbstractContextManager[Any]]


class Outcome(StrEnum):
    DROPPED = "dropped"  # undecodable, or the run no longer exists
    DUPLICATE = "duplicate"  # the run is final or a later slice already started
    BUSY = "busy"  # another worker holds the export's lease: re-enqueued with a delay
    CONTINUED = "continued"  # budget used up: continuation enqueued
    FINISHED = "finished"  # the run reached a final status
    LEASE_LOST = "lease-lost"  # the lease lapsed and another worker took over


class _LeaseLost(Exception):
    pass


class _RunClosed(Exception):
    """Someone else gave the run a final status meanwhile (cancel, poison handling)."""


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def slice_budget(settings: Settings) -> float:
    """Seconds of work per slice: the configured slice minus a safety margin for saving."""
    return settings.run_slice_seconds - min(30.0, settings.run_slice_seconds * 0.1)


def busy_delay(settings: Settings) -> int:
    """Visibility delay for a message whose export is leased by another worker."""
    return int(max(1.0, min(15.0, settings.lease_seconds / 4)))


def _wait_for_lease(store: Any, settings: Settings, message: RunMessage) -> int:
    """Seconds until the other holder's lease lapses (a dead worker's will), bounded by
    busy_delay; a live holder renews it and we simply look again then."""
    fallback = busy_delay(settings)
    try:
        current = store.leases.get(message.export_id)
    except Exception:
        return fallback
    if current is None:
        return 1
    remaining = float(current.expires_at) - time.time()
    return int(max(1, min(fallback, math.ceil(remaining))))


def process_message(
    store: Any,
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
    if _already_done(run, message):
        return Outcome.DUPLICATE
    lease = store.leases.acquire(
        message.export_id, holder or default_holder(), settings.lease_seconds
    )
    if lease is None:
        store.queue.send(message, visibility_timeout=_wait_for_lease(store, settings, message))
        log.info(
            "export %s is leased by another worker; run %s retried later", message.export_id, run.id
        )
        return Outcome.BUSY
    work = _Slice(store, settings, message, lease, open_client)
    try:
        return work.execute(dequeue_count)
    finally:
        work.close()


def decode_run_message(store: Any, body: str | bytes) -> RunMessage:
    """The store's decoder (JSON as the trigger hands it over, or its base64 form)."""
    decode = getattr(store.queue, "decode_message", None)
    if decode is None:
        from shared.store import decode_message as decode
    message: RunMessage = decode(body)
    return message


def finish_abandoned(store: Any, body: str | bytes, reason: str) -> Run | None:
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
        run.status = RunStatus.FAILED
        run.finished_at = utc_now_iso()
        run.error = reason
        try:
            run = store.runs.update(run)
            break
        except PreconditionFailedError:
            run = store.runs.get(message.export_id, message.run_id)
    store.active_runs.release(run.export_id, run.id)
    return run


def _already_done(run: Run, message: RunMessage) -> bool:
    if run.status.is_final:
        return True
    return message.slice + 1 < run.slices


class _RunWriter:
    """Owns the worker's copy of the run. The worker is the only writer of progress; others
    only set cancel_requested (and its reason), which a conflicting write merges in."""

    def __init__(self, store: Any, run: Run) -> None:
        self._store = store
        self.run = run
        self._saved_at = 0.0

    def save(self) -> None:
        for _ in range(8):
            try:
                self.run = self._store.runs.update(self.run)
                self._saved_at = time.monotonic()
                return
            except PreconditionFailedError:
                fresh: Run = self._store.runs.get(self.run.export_id, self.run.id)
                if fresh.status.is_final:
                    raise _RunClosed() from None
                self.run.etag = fresh.etag
                if fresh.cancel_requested:
                    self.run.cancel_requested = True
                    self.run.reason = fresh.reason
        raise ConflictError("the run record kept changing under the worker")

    def save_if_due(self) -> None:
        if time.monotonic() - self._saved_at >= PROGRESS_SAVE_INTERVAL:
            self.save()


class _Heartbeat:
    """Renews the export's lease and watches for a cancel request, off the main thread, so a
    long Sales call (throttling waits) cannot let the lease lapse unnoticed."""

    def __init__(self, store: Any, settings: Settings, lease: Any, run: Run) -> None:
        self._store = store
        self._lease = lease
        self._renew_every = max(1.0, settings.lease_seconds / 3)
        self._export_id, self._run_id = run.export_id, run.id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lost = False
        self.cancel_reason: str | None = None
        self.cancel_requested = False
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> Any:
        with self._lock:
            return self._lease

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="run-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        renewed = polled = time.monotonic()
        while not self._stop.wait(0.25):
            now = time.monotonic()
            if now - renewed >= self._renew_every:
                self.renew()
                renewed = now
            if now - polled >= CANCEL_POLL_INTERVAL:
                self._poll_cancel()
                polled = now

    def renew(self) -> None:
        if self.lost:
            return
        try:
            with self._lock:
                self._lease = self._store.leases.renew(self._lease)
        except ConflictError:
            log.warning("lease on export %s was lost", self._export_id)
            self.lost = True
        except Exception as exc:  # transient: try again next tick; expiry is the backstop
            log.warning("lease renewal failed (%s); retrying", type(exc).__name__)

    def _poll_cancel(self) -> None:
        try:
            run: Run = self._store.runs.get(self._export_id, self._run_id)
        except Exception:
            return
        if run.cancel_requested or run.status.is_final:
            self.cancel_reason = run.reason
            self.cancel_requested = True


class _Slice:
    def __init__(
        self,
        store: Any,
        settings: Settings,
        message: RunMessage,
        lease: Any,
        open_client: ClientOpener | None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.message = message
        self.lease = lease
        self.open_client = open_client
        self.connection: Connection | None = None
        self.writer: _RunWriter | None = None
        self.heartbeat: _Heartbeat | None = None
        self.released = False

    # --- entry / exit ----------------------------------------------------------------------

    def execute(self, dequeue_count: int) -> Outcome:
        try:
            return self._execute()
        except _LeaseLost:
            return Outcome.LEASE_LOST
        except _RunClosed:
            return Outcome.DUPLICATE
        except Exception as exc:
            detail = describe(exc, self.connection)
            if is_retryable(exc) and dequeue_count < self.settings.max_dequeue_count:
                log.warning(
                    "run %s attempt %d failed, will retry: %s",
                    self.message.run_id,
                    dequeue_count,
                    detail,
                )
                self._note_retry(detail, dequeue_count)
                raise
            if is_retryable(exc):
                detail = f"gave up after {dequeue_count} attempts: {detail}"
            log.warning("run %s failed: %s", self.message.run_id, detail)
            self._finish_failed(detail)
            return Outcome.FINISHED

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self._release_lease()

    def _release_lease(self) -> None:
        if self.released:
            return
        self.released = True
        lease = self.heartbeat.lease if self.heartbeat is not None else self.lease
        if self.heartbeat is not None and self.heartbeat.lost:
            return
        try:
            self.store.leases.release(lease)
        except Exception as exc:  # it expires anyway
            log.warning("could not release the lease (%s)", type(exc).__name__)

    # --- the slice -------------------------------------------------------------------------

    def _execute(self) -> Outcome:
        message = self.message
        run: Run = self.store.runs.get(message.export_id, message.run_id)
        if _already_done(run, message):
            return Outcome.DUPLICATE
        self.writer = _RunWriter(self.store, run)
        if run.cancel_requested:
            return self._finish(RunStatus.CANCELED, run.reason or "canceled")
        started = time.monotonic()
        deadline = started + slice_budget(self.settings)
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or utc_now_iso()
        run.slices = max(run.slices, message.slice + 1)
        self.writer.save()
        self.heartbeat = _Heartbeat(self.store, self.settings, self.lease, self.writer.run)
        self.heartbeat.start()

        export = self._load_export()
        self.connection = self._load_connection(export)
        states = self.store.export_state.get(export.id)
        left_behind = _left_behind_note(export, states)

        with self._open_client(self.connection) as client:
            first = True
            for index in range(len(self.writer.run.segments)):
                if not is_pending(self.writer.run.segments[index]):
                    continue
                if self._should_stop() or (not first and time.monotonic() >= deadline):
                    break
                first = False  # the first pending segment always starts: every slice progresses
                self._sync_segment(client, export, index, states, deadline)
                if is_pending(self.writer.run.segments[index]):
                    break  # budget or cancel stopped it mid-segment
        self._check_lease()
        run = self.writer.run
        pending = any(is_pending(s) for s in run.segments)
        canceled = run.cancel_requested or (self.heartbeat and self.heartbeat.cancel_requested)
        if canceled and pending:  # a cancel that arrives after the last chunk changes nothing
            reason = run.reason or (self.heartbeat.cancel_reason if self.heartbeat else None)
            return self._finish(RunStatus.CANCELED, join_reasons(reason or "canceled", left_behind))
        if pending:
            return self._continue()
        status, reason = decide_final_status(run.segments)
        run.error = None if status is not RunStatus.FAILED else (reason or "the run failed")
        return self._finish(
            status, join_reasons(reason if status is not RunStatus.FAILED else None, left_behind)
        )

    def _sync_segment(
        self,
        client: Any,
        export: Export,
        index: int,
        states: dict[str, SegmentListState],
        deadline: float,
    ) -> None:
        from shared.sales import SegmentSyncRequest, sync_segment

        assert self.writer is not None and self.connection is not None
        run = self.writer.run
        base = replace(run.segments[index], left_out=dict(run.segments[index].left_out))
        name = base.segment
        try:
            members = self.store.segments.members(name)
        except NotFoundError:
            self._set_segment(
                index, replace(base, error=f"segment {name!r} does not exist in the segment source")
            )
            self.writer.save()
            return
        try:
            list_name = render_list_name(export.list_name, segment=name, export=export.display_name)
        except ListNameError as exc:
            self._set_segment(index, replace(base, error=f"the export's listName {exc}"))
            self.writer.save()
            return
        state = states.get(name)
        known_list = {"id": state.list_id if state else None}

        def remember_list(result: SegmentResult) -> None:
            if run.dry_run or not result.list_id or result.list_id == known_list["id"]:
                return
            self.store.export_state.put(
                export.id,
                SegmentListState(
                    segment=name, list_id=result.list_id, list_name=result.list_name or list_name
                ),
            )
            known_list["id"] = result.list_id

        budget = SliceBudget(deadline, slice_budget(self.settings))
        applied = [(0, 0, 0)]

        def on_progress(partial: SegmentResult) -> None:
            self._check_lease()
            budget.observe(partial)
            remember_list(partial)
            self._set_segment(index, merge_segment(base, partial))
            # Save at once after every applied chunk (a crash then loses at most the chunks in
            # flight from the run's figures); other updates at most every PROGRESS_SAVE_INTERVAL.
            counts = (partial.added, partial.removed, partial.failed)
            if counts != applied[0] and not run.dry_run:
                applied[0] = counts
                self.writer.save()  # type: ignore[union-attr]
            else:
                self.writer.save_if_due()  # type: ignore[union-attr]

        request = SegmentSyncRequest(
            segment=name,
            customer_ids=members,
            lookup_customers=self._customer_lookup(members),
            contact_id_field=self.connection.contact_id_field,
            list_name=list_name,
            mode=export.mode,
            list_id=state.list_id if state else None,
            dry_run=run.dry_run,
            # The budget is enforced through should_stop (SliceBudget), not `deadline`: a call
            # stops after the deadline only once it applied something and had time to apply,
            # so every slice progresses even when planning a big segment outlasts the budget.
            deadline=None,
            chunk_size=self.settings.sales_chunk_size,
            on_progress=on_progress,
            should_stop=lambda: self._should_stop() or budget.spent(),
        )
        try:
            outcome = sync_segment(client, request)
        except AuthenticationError:
            raise
        except FatalSalesError as exc:
            self._check_lease()
            self._set_segment(
                index,
                replace(
                    self.writer.run.segments[index],
                    complete=False,
                    error=describe(exc, self.connection),
                ),
            )
            self.writer.save()
            return
        self._check_lease()
        remember_list(outcome.result)
        merged = merge_segment(base, outcome.result)
        self.store.rejections.replace_segment(export.id, run.id, name, outcome.rejections)
        self._set_segment(index, merged)
        self.writer.save()

    # --- helpers ---------------------------------------------------------------------------

    def _customer_lookup(
        self, members: Sequence[str]
    ) -> Callable[[Sequence[str]], Mapping[str, Mapping[str, object]]]:
        """One read of the segment's customer rows (only the contact-ID column), answered from
        memory per batch, when the store offers it; else per-batch reads."""
        assert self.connection is not None
        customers = self.store.customers
        prefetch = getattr(customers, "prefetch", None)
        if prefetch is None:
            lookup: Callable[[Sequence[str]], Mapping[str, Mapping[str, object]]]
            lookup = customers.get_many
            return lookup
        prefetched: Callable[[Sequence[str]], Mapping[str, Mapping[str, object]]] = prefetch(
            members, columns=[self.connection.contact_id_field]
        )
        return prefetched

    def _set_segment(self, index: int, result: SegmentResult) -> None:
        assert self.writer is not None
        self.writer.run.segments[index] = result

    def _should_stop(self) -> bool:
        hb = self.heartbeat
        return bool(hb and (hb.lost or hb.cancel_requested))

    def _check_lease(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost:
            raise _LeaseLost()

    def _open_client(self, connection: Connection) -> AbstractContextManager[Any]:
        opener = self.open_client
        if opener is None:
            from shared.sales import open_sales_client

            opener = open_sales_client
        return opener(connection, self.settings)

    def _load_export(self) -> Export:
        try:
            export: Export = self.store.exports.get(self.message.export_id)
        except NotFoundError:
            raise RunFatalError("the export was deleted while the run was queued") from None
        if export.detached:
            raise RunFatalError(
                "the export is detached: its connection was deleted; "
                "attach a connection and run it again"
            )
        return export

    def _load_connection(self, export: Export) -> Connection:
        assert export.connection_id is not None
        try:
            connection: Connection = self.store.connections.get(export.connection_id)
        except NotFoundError:
            raise RunFatalError(
                f"the export's connection {export.connection_id} no longer exists; "
                "attach another connection"
            ) from None
        return connection

    def _continue(self) -> Outcome:
        assert self.writer is not None
        following = RunMessage(
            export_id=self.message.export_id,
            run_id=self.message.run_id,
            slice=self.message.slice + 1,
        )
        # Enqueue first: a crash after this leaves at worst a redundant (convergent) slice,
        # never a run without a message. The lease keeps the next slice waiting until we are done.
        self.store.queue.send(following, visibility_timeout=CONTINUATION_DELAY)
        self.writer.run.slices = max(self.writer.run.slices, following.slice + 1)
        self.writer.save()
        log.info("run %s continues in slice %d", self.message.run_id, following.slice)
        return Outcome.CONTINUED

    def _finish(self, status: RunStatus, reason: str | None) -> Outcome:
        assert self.writer is not None
        run = self.writer.run
        run.status = status
        run.finished_at = utc_now_iso()
        run.reason = reason
        for segment in run.segments:
            if segment.complete:
                segment.progress.phase = "done"
        self.writer.save()
        self.store.active_runs.release(run.export_id, run.id)
        log.info("run %s finished: %s", run.id, status)
        return Outcome.FINISHED

    def _finish_failed(self, detail: str) -> None:
        writer = self.writer
        if writer is None:
            writer = self.writer = _RunWriter(
                self.store, self.store.runs.get(self.message.export_id, self.message.run_id)
            )
            if writer.run.status.is_final:
                return
        writer.run.error = detail
        try:
            self._finish(
                RunStatus.FAILED, writer.run.reason if writer.run.cancel_requested else None
            )
        except _RunClosed:
            return

    def _note_retry(self, detail: str, dequeue_count: int) -> None:
        """Best effort: show the retry on the run while it waits for the next delivery."""
        try:
            writer = self.writer or _RunWriter(
                self.store, self.store.runs.get(self.message.export_id, self.message.run_id)
            )
            writer.run.error = (
                f"attempt {dequeue_count} of {self.settings.max_dequeue_count} failed, "
                f"retrying: {detail}"
            )
            writer.save()
        except Exception as exc:
            log.warning(
                "could not record the retry on run %s (%s)", self.message.run_id, type(exc).__name__
            )


def _left_behind_note(export: Export, states: dict[str, SegmentListState]) -> str | None:
    """Segments removed from the export keep their list in Sales; say so on the run."""
    gone = sorted(name for name in states if name not in export.segments)
    if not gone:
        return None
    described = ", ".join(f"{name!r} (list {states[name].list_id})" for name in gone)
    return f"segments no longer exported, their lists were left in place in Sales: {described}"
