"""One segment's sync step inside a slice: read the segment's members from the export's source
(shared/sources), call the Sales sync with the slice's budget and stop conditions, record
progress, what was read, and the segment's list."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from shared.errors import AuthenticationError, FatalSalesError
from shared.listname import ListNameError, render_list_name
from shared.models import Connection, Export, SegmentListState, SegmentResult, SourceRead
from shared.runs.budget import SliceBudget, slice_budget
from shared.runs.failures import describe
from shared.runs.progress import RunWriter
from shared.runs.status import exact_totals, merge_segment
from shared.settings import Settings
from shared.store.protocols import StoreApi

if TYPE_CHECKING:
    from shared.sales.client import SalesClient
    from shared.sources import SegmentSource

log = logging.getLogger("shared.runs.worker")


def left_behind_note(export: Export, states: dict[str, SegmentListState]) -> str | None:
    """Segments removed from the export keep their list in Sales; say so on the run."""
    gone = sorted(name for name in states if name not in export.segments)
    if not gone:
        return None
    described = ", ".join(f"{name!r} (list {states[name].list_id})" for name in gone)
    return f"segments no longer exported, their lists were left in place in Sales: {described}"


@dataclass
class SegmentStep:
    """What a segment's sync needs from its slice: the store, the progress writer, the
    connection, and the slice's lease check and stop condition."""

    store: StoreApi
    settings: Settings
    writer: RunWriter
    connection: Connection
    check_lease: Callable[[], None]
    should_stop: Callable[[], bool]
    # Seconds the next slice should wait before it starts: the throttling wait that stopped
    # this one early (0 when it was not stopped that way).
    resume_after: float = 0.0

    def run(
        self,
        client: SalesClient,
        source: SegmentSource,
        export: Export,
        index: int,
        states: dict[str, SegmentListState],
        deadline: float,
    ) -> None:
        from shared.sales import SegmentSyncRequest, sync_segment
        from shared.sales.client import WaitBeyondDeadline
        from shared.sources import SegmentNotInSource, customer_rows

        run = self.writer.run
        base = replace(run.segments[index], left_out=dict(run.segments[index].left_out))
        name = base.segment
        try:
            members = source.members(name)  # read fresh by every slice of every run
        except SegmentNotInSource as exc:
            failed = replace(base, error=str(exc), source=SourceRead(kind=source.kind))
            self._set_segment(index, failed)
            self.writer.save()
            return
        base = replace(base, source=source.describe())
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
        applied: list[tuple[int, int, int, int | None]] = [(0, 0, 0, None)]

        def on_progress(partial: SegmentResult) -> None:
            self.check_lease()
            budget.observe(partial)
            remember_list(partial)
            self._set_segment(
                index, exact_totals(merge_segment(base, partial), partial, export.mode)
            )
            # Save at once after every applied chunk (a crash then loses at most the chunks in
            # flight from the run's figures); other updates at most every PROGRESS_SAVE_INTERVAL.
            counts = (partial.added, partial.removed, partial.failed, partial.baseline_kept)
            if counts != applied[0] and not run.dry_run:
                applied[0] = counts
                self.writer.save()
            else:
                self.writer.save_if_due()

        request = SegmentSyncRequest(
            segment=name,
            customer_ids=members,
            lookup_customers=customer_rows(source),
            contact_id_field=source.contact_field,
            list_name=list_name,
            mode=export.mode,
            owner=export.id,
            list_id=state.list_id if state else None,
            dry_run=run.dry_run,
            # The budget is enforced through should_stop (SliceBudget), not `deadline`: a call
            # stops after the deadline only once it applied something and had time to apply,
            # so every slice progresses even when planning a big segment outlasts the budget.
            deadline=None,
            chunk_size=self.settings.sales_chunk_size,
            on_progress=on_progress,
            should_stop=lambda: self.should_stop() or budget.spent(),
            # Until the run knows what the list held before it wrote anything, a call reads
            # the whole list before its first write and reports it (exact counts after crashes).
            record_baseline=base.baseline_kept is None and not run.dry_run,
        )
        try:
            outcome = sync_segment(client, request)
        except AuthenticationError:
            raise
        except WaitBeyondDeadline as exc:
            # Throttling waits would outlive the slice: keep what was applied (saved by
            # on_progress), hand off to the next slice, and say why on the run meanwhile.
            self.check_lease()
            log.info("run %s stops its slice early: %s", run.id, exc)
            self.resume_after = max(self.resume_after, exc.wait_seconds)
            self.writer.run.reason = f"slice {self.writer.run.slices} stopped early: {exc}"
            self.writer.save()
            return
        except FatalSalesError as exc:
            self.check_lease()
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
        self.check_lease()
        remember_list(outcome.result)
        merged = replace(
            exact_totals(merge_segment(base, outcome.result), outcome.result, export.mode),
            source=source.describe(),
        )
        self.store.rejections.replace_segment(export.id, run.id, name, outcome.rejections)
        self._set_segment(index, merged)
        self.writer.save()

    def _set_segment(self, index: int, result: SegmentResult) -> None:
        self.writer.run.segments[index] = result
