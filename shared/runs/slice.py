"""One time-budgeted slice of a run, run under the export's lease: sync the pending segments in
order, then finish the run or hand off to the next slice (see shared.runs.worker)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import TYPE_CHECKING

from shared import telemetry
from shared.errors import NotFoundError
from shared.models import Connection, Export, Run, RunMessage, RunStatus
from shared.runs.budget import TurnNotYet, slice_budget
from shared.runs.clock import utc_now_iso
from shared.runs.failures import RunFatalError, describe, is_retryable
from shared.runs.lease_keeper import Heartbeat
from shared.runs.progress import RunClosed, RunWriter
from shared.runs.segment_step import SegmentStep, left_behind_note
from shared.runs.status import (
    decide_final_status,
    is_pending,
    join_reasons,
    status_when_stopped_by_failure,
)
from shared.settings import Settings
from shared.store.protocols import StoreApi

if TYPE_CHECKING:
    from shared.sales.client import SalesClient
    from shared.sources import SegmentSource
    from shared.store.leases import Lease

log = logging.getLogger("shared.runs.worker")

CONTINUATION_DELAY = 1  # seconds; lets this slice record the hand-off before the next starts
TURN_DELAY = 5  # seconds before a slice that found its identity fully used looks again
MAX_RESUME_DELAY = 900  # seconds; a continuation never waits longer for a throttling block

ClientOpener = Callable[[Connection, Settings], AbstractContextManager["SalesClient"]]


class Outcome(StrEnum):
    DROPPED = "dropped"  # undecodable, or the run no longer exists
    DUPLICATE = "duplicate"  # the run is final or a later slice already started
    BUSY = "busy"  # another worker holds the export's lease: re-enqueued with a delay
    CONTINUED = "continued"  # budget used up: continuation enqueued
    FINISHED = "finished"  # the run reached a final status
    LEASE_LOST = "lease-lost"  # the lease lapsed and another worker took over


class LeaseLost(Exception):
    pass


class LeaseLostUnheld(Exception):
    """The slice lost the lease and no live holder took it over: deliver the message again."""


def already_done(run: Run, message: RunMessage) -> bool:
    if run.status.is_final:
        return True
    return message.slice + 1 < run.slices


class Slice:
    def __init__(
        self,
        store: StoreApi,
        settings: Settings,
        message: RunMessage,
        lease: Lease,
        open_client: ClientOpener | None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.message = message
        self.lease = lease
        self.open_client = open_client
        self.connection: Connection | None = None
        self.writer: RunWriter | None = None
        self.heartbeat: Heartbeat | None = None
        self.released = False
        self.hard_deadline: float | None = None  # no wait of this slice ends after it
        self.step: SegmentStep | None = None

    # --- entry / exit ----------------------------------------------------------------------

    def execute(self, dequeue_count: int) -> Outcome:
        try:
            return self._execute()
        except LeaseLost:
            if self._another_live_holder():
                return Outcome.LEASE_LOST
            # Nobody continues the run: leave the message to the queue, which delivers it again
            # (and gives it to poison handling past MAX_DEQUEUE_COUNT).
            raise LeaseLostUnheld(
                f"run {self.message.run_id} lost the export's lease and nobody else holds it; "
                "the slice will be delivered again"
            ) from None
        except RunClosed:
            return Outcome.DUPLICATE
        except TurnNotYet as turn:
            return self._wait_for_turn(turn)
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
        if already_done(run, message):
            return Outcome.DUPLICATE
        self.writer = RunWriter(self.store, run)
        if run.cancel_requested:
            return self._finish(RunStatus.CANCELED, run.reason or "canceled")
        if self._count_attempt(run) > self.settings.max_dequeue_count:
            run.error = (
                f"slice {message.slice} was started {run.slice_attempts} times without finishing "
                f"(more than MAX_DEQUEUE_COUNT={self.settings.max_dequeue_count}): the worker kept "
                "stopping while running it; see the function logs, then run the export again"
            )
            log.warning("run %s: %s", run.id, run.error)
            return self._finish(status_when_stopped_by_failure(run.segments), None)
        started = time.monotonic()
        deadline = started + slice_budget(self.settings)
        self.hard_deadline = started + self.settings.run_slice_seconds
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or utc_now_iso()
        run.slices = max(run.slices, message.slice + 1)
        self.writer.save()
        self.heartbeat = Heartbeat(self.store, self.settings, self.lease, self.writer.run)
        self.heartbeat.start()

        export = self._load_export()
        self.connection = self._load_connection(export)
        telemetry.set_connection(self.connection.id)
        states = self.store.export_state.get(export.id)
        left_behind = left_behind_note(export, states)
        step = SegmentStep(
            self.store,
            self.settings,
            self.writer,
            self.connection,
            check_lease=self._check_lease,
            should_stop=self._should_stop,
        )
        self.step = step

        with (
            self._open_client(self.connection) as client,
            self._open_source(export, client) as source,
        ):
            first = True
            for index in range(len(self.writer.run.segments)):
                if not is_pending(self.writer.run.segments[index]):
                    continue
                if self._should_stop() or (not first and time.monotonic() >= deadline):
                    break
                first = False  # the first pending segment always starts: every slice progresses
                with telemetry.segment(index):
                    step.run(client, source, export, index, states, deadline)
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

    # --- helpers ---------------------------------------------------------------------------

    def _should_stop(self) -> bool:
        hb = self.heartbeat
        return bool(hb and (hb.lost or hb.cancel_requested))

    def _count_attempt(self, run: Run) -> int:
        """Count this start of the message's slice on the run itself: a crash-looping slice
        whose messages are re-sent (BUSY) never reaches the queue's dequeue limit."""
        if run.attempted_slice == self.message.slice and run.slice_attempts > 0:
            run.slice_attempts += 1
        else:
            run.attempted_slice, run.slice_attempts = self.message.slice, 1
        return run.slice_attempts

    def _another_live_holder(self) -> bool:
        """Whether another worker holds an unexpired lease on the export (and so continues)."""
        mine = self.heartbeat.lease if self.heartbeat is not None else self.lease
        try:
            current = self.store.leases.get(self.message.export_id)
        except Exception as exc:  # unknown: let the queue deliver the message again
            log.warning("could not read the export's lease (%s)", type(exc).__name__)
            return False
        return (
            current is not None
            and current.holder != mine.holder
            and float(current.expires_at) > time.time()
        )

    def _check_lease(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost:
            raise LeaseLost()

    def _open_source(
        self, export: Export, client: SalesClient
    ) -> AbstractContextManager[SegmentSource]:
        """The export's segment source (embedded or Customer Insights), see shared/sources."""
        from shared.sources import open_source

        return open_source(
            self.store,
            self.settings,
            export,
            self.connection,
            client=client,
            # A source reading another connection spends that identity's shared budget too.
            open_client=self.open_client or self._open_budgeted,
        )

    def _open_client(self, connection: Connection) -> AbstractContextManager[SalesClient]:
        opener = self.open_client or self._open_budgeted
        return opener(connection, self.settings)

    def _open_budgeted(
        self, connection: Connection, settings: Settings
    ) -> AbstractContextManager[SalesClient]:
        """A client on the identity's budget shared by every worker (shared_budget.py)."""
        from shared.runs.sales_access import open_budgeted_client

        return open_budgeted_client(
            self.store,
            settings,
            connection,
            label=self.message.export_id,
            deadline=self.hard_deadline,
        )

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
        # A slice stopped by a long throttling wait hands off to a slice that starts when the
        # wait is over, instead of one that would only meet the same wait (no busy re-queueing).
        resume = self.step.resume_after if self.step is not None else 0.0
        delay = max(CONTINUATION_DELAY, min(MAX_RESUME_DELAY, math.ceil(resume)))
        self.store.queue.send(following, visibility_timeout=delay)
        self.writer.run.slices = max(self.writer.run.slices, following.slice + 1)
        self.writer.save()
        log.info("run %s continues in slice %d", self.message.run_id, following.slice)
        return Outcome.CONTINUED

    def _wait_for_turn(self, turn: TurnNotYet) -> Outcome:
        """Give the worker back: the same slice comes again after TURN_DELAY (the message is
        re-sent, so this costs no delivery attempt), and the run says why it waits."""
        self.store.queue.send(self.message, visibility_timeout=TURN_DELAY)
        if self.writer is not None:
            self.writer.run.reason = str(turn)
            # Waiting for a turn is not a start that died: take back this slice's attempt.
            if self.writer.run.attempted_slice == self.message.slice:
                attempts = self.writer.run.slice_attempts
                self.writer.run.slice_attempts = max(0, attempts - 1)
            try:
                self.writer.save()
            except RunClosed:
                return Outcome.DUPLICATE
        log.info("run %s: %s; slice %d again later", self.message.run_id, turn, self.message.slice)
        return Outcome.BUSY

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
        telemetry.run_finished(run)
        log.info("run %s finished: %s", run.id, status)
        return Outcome.FINISHED

    def _finish_failed(self, detail: str) -> None:
        writer = self.writer
        if writer is None:
            writer = self.writer = RunWriter(
                self.store, self.store.runs.get(self.message.export_id, self.message.run_id)
            )
            if writer.run.status.is_final:
                return
        writer.run.error = detail
        status = RunStatus.FAILED
        if not writer.run.dry_run:
            status = status_when_stopped_by_failure(writer.run.segments)
        try:
            self._finish(status, writer.run.reason if writer.run.cancel_requested else None)
        except RunClosed:
            return

    def _note_retry(self, detail: str, dequeue_count: int) -> None:
        """Best effort: show the retry on the run while it waits for the next delivery."""
        try:
            writer = self.writer or RunWriter(
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
