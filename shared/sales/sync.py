"""Sync one segment to its static contact marketing list (Contract 2).

find/create the list -> read its members (5,000 a page) while the segment resolves -> diff ->
validate only the contacts to add -> add/remove in chunks, up to ``dop`` requests in flight.

One coordinating thread schedules every request on one bounded pool, by priority: the next
member page (the serial critical path), bisection pieces, ready add chunks, validation batches
(at most two in flight), removals. Removals start as soon as a page shows a member who left the
segment; since pages come in contactid order, desired contacts below the last id read are known
non-members and are validated and added before the last page arrives. Chunks are sized so the
workers finish their last round together. Every call recomputes desired vs actual, so calling
again after an incomplete result (deadline, cancel, crash) converges to the same list.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import math
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from shared.errors import FatalSalesError, SalesError, TransientSalesError
from shared.models import (
    ExportMode,
    Rejection,
    RejectionReason,
    SegmentResult,
)
from shared.sales.client import SalesBadRequestError, SalesClient, SalesNotFoundError
from shared.sales.lists import ensure_list
from shared.sales.members import (
    ACTIVE,
    ADD,
    REMOVE,
    VALIDATE_IDS_PER_QUERY,
    MemberPage,
    change_members,
    contact_states,
    members_cap,
    members_url,
    read_member_page,
)
from shared.sales.plan import (
    Add,
    Desired,
    MembershipDiff,
    balanced_chunks,
    inactive_member,
    index_desired,
)
from shared.sales.resolve import Resolution, resolve_members
from shared.settings import SALES_MAX_MEMBERS_PER_CALL

VALIDATE_MIN_QUERIES_PER_BATCH = 5  # small validations go out as one request
VALIDATE_MAX_QUERIES_PER_BATCH = 10  # bounds one request's execution time on the server
# Resolve customers on a second thread while the list is read: the customer lookup waits on
# Table Storage while the member pages wait on Sales. (With an in-memory lookup the two threads
# merely share the GIL; measured no slower.)
RESOLVE_WHILE_READING = True
# While the list is read, desired contacts below the last member id seen are known non-members
# (pages come in contactid order); they are validated in batches of at least this many.
STREAM_VALIDATE_MIN = VALIDATE_IDS_PER_QUERY * VALIDATE_MIN_QUERIES_PER_BATCH
VALIDATE_IN_FLIGHT = 2


@dataclass
class SegmentSyncRequest:
    segment: str
    customer_ids: Sequence[str]
    lookup_customers: Callable[[Sequence[str]], Mapping[str, Mapping[str, object]]]
    contact_id_field: str
    list_name: str
    mode: ExportMode
    owner: str  # the export's id: the list belongs to it (see shared.sales.lists)
    list_id: str | None = None
    dry_run: bool = False
    deadline: float | None = None  # time.monotonic() after which no new chunk starts
    chunk_size: int = 1000
    on_progress: Callable[[SegmentResult], None] | None = None
    should_stop: Callable[[], bool] | None = None
    # Report what the list held before any write (result.baseline_*): nothing is written until
    # the whole list was read and on_progress has seen the baseline (no writes while reading).
    record_baseline: bool = False


@dataclass
class SegmentSyncResult:
    """``result.members``/``matched``/``left_out`` and ``rejections`` are absolute for this call;
    ``added``/``removed``/``failed`` count what this call applied (in a dry run: what it would
    add/remove; a list that would be created shows ``list_created`` with ``list_id`` None).
    ``matched`` = active members already in the list + validated adds - adds that did not land.
    ``failed`` counts members Sales refused in a bulk call (isolated by bisection); refused adds
    are also ``rejected-by-sales`` rejections. An add answered 404 for the contact (deleted after
    validation) is a ``contact-not-found`` rejection, not a failure."""

    result: SegmentResult
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Task:
    kind: str  # "page", "validate", "add", "remove"
    adds: tuple[Add, ...] = ()
    contact_ids: tuple[str, ...] = ()
    url: str = ""


def sync_segment(client: SalesClient, request: SegmentSyncRequest) -> SegmentSyncResult:
    return _SegmentSync(client, request).run()


def _member_level(exc: SalesError) -> bool:
    """Could one bad member explain this failure of a bulk call? (Then bisect.)"""
    if isinstance(exc, SalesNotFoundError | SalesBadRequestError):
        return True
    return type(exc) is FatalSalesError and exc.status == 500


def _mentions(exc: SalesError, value: str) -> bool:
    text = f"{exc} {exc.body_excerpt}".lower()
    return value.lower() in text


class _SegmentSync:
    def __init__(self, client: SalesClient, request: SegmentSyncRequest) -> None:
        self.client = client
        self.request = request
        self.result = SegmentResult(segment=request.segment)
        self.rejections: list[Rejection] = []
        self.left_out: Counter[str] = Counter()
        # Never more than the list actions accept (Settings bounds it too; see members_cap).
        self.chunk_size = max(1, min(request.chunk_size, SALES_MAX_MEMBERS_PER_CALL))
        self.list_id: str | None = None
        self.member_count: int | None = None
        self.stopped = False
        # Everything below is touched only by the coordinating thread.
        self.width = 1
        self.resolution = Resolution()
        self.diff: MembershipDiff | None = None
        self.pending: list[str] = []  # members read before the segment was resolved
        self.pending_inactive: set[str] = set()  # ... whose contact is inactive
        self.read = 0  # members read so far
        self.scan_url: str | None = None  # next page of the list's members
        self.scanning = False  # a page request is in flight
        self.planned = False
        self.removal_buffer: list[str] = []
        # streaming adds while reading (see _stream_adds)
        self.ordered = True
        self.watermark: str | None = None
        self.sorted_desired: list[str] = []
        self.cursor = 0
        self.to_validate: deque[Add] = deque()
        self.validated: list[Add] = []
        self.ready: deque[_Task] = deque()
        self.urgent: deque[_Task] = deque()
        self.removals: deque[_Task] = deque()
        self.validating = 0
        self.queries_per_batch = VALIDATE_MIN_QUERIES_PER_BATCH
        self.add_chunk = self.chunk_size
        self.adds_total = 0  # adds planned (before validation)
        self.checked = 0  # adds validated so far
        self.cut_any = False  # add chunks are cut with one size, fixed at the first cut
        self.kept = 0
        self.valid = 0  # validated adds that Sales should accept
        self.refused = 0  # validated adds that did not land (refused, or the contact vanished)

    # --- bookkeeping -------------------------------------------------------------------------

    def _reject(self, rejection: Rejection) -> None:
        self.rejections.append(rejection)
        self.left_out[rejection.reason.value] += 1

    def _phase(self, phase: str) -> None:
        self.result.progress.phase = phase
        self._publish()

    def _publish(self) -> None:
        self.result.left_out = dict(self.left_out)
        self.result.matched = self.kept + self.valid - self.refused
        callback = self.request.on_progress
        if callback is not None:
            snapshot = dataclasses.replace(
                self.result,
                left_out=dict(self.result.left_out),
                progress=dataclasses.replace(self.result.progress),
            )
            callback(snapshot)

    def _halt(self) -> bool:
        deadline = self.request.deadline
        if deadline is not None and self.client.clock() >= deadline:
            return True
        stop = self.request.should_stop
        return bool(stop is not None and stop())

    # --- the call ----------------------------------------------------------------------------

    def run(self) -> SegmentSyncResult:
        request = self.request
        self._phase("reading-list")
        outcome = ensure_list(
            self.client,
            list_id=request.list_id,
            list_name=request.list_name,
            owner=request.owner,
            dry_run=request.dry_run,
        )
        if outcome.list is not None:
            self.list_id = outcome.list.id
            self.member_count = outcome.list.member_count
            self.result.list_id = outcome.list.id
            self.result.list_name = outcome.list.name
        else:
            self.result.list_name = request.list_name
        self.result.list_created = outcome.created
        self.result.list_recreated = outcome.recreated
        if outcome.created or outcome.recreated:
            self._publish()  # let the caller store the new list id before anything else
        if not outcome.empty and self.list_id is not None:
            self.scan_url = members_url(self.list_id)
        # Use the server's parallelism hint if a response already carried it; otherwise one
        # WhoAmI is spent later, and only if there is parallel work.
        self.width = self.client.dop if self.client.dop_hint else 1
        self._run_tasks()
        if request.dry_run:
            self.result.added = self.valid  # what would be added
        complete = self.planned and not self.stopped and not self._work_left()
        return self._finish(complete=complete)

    def _finish(self, *, complete: bool) -> SegmentSyncResult:
        self.result.complete = complete
        self.result.progress.phase = "done" if complete else self.result.progress.phase
        self._publish()
        return SegmentSyncResult(result=self.result, rejections=self.rejections)

    def _resolve(self) -> Desired:
        """Runs on its own thread while the list's pages are read."""
        request = self.request
        return index_desired(
            resolve_members(
                request.customer_ids,
                request.lookup_customers,
                request.contact_id_field,
                self.resolution,
            )
        )

    # --- planning (coordinating thread) ------------------------------------------------------

    def _on_resolved(self, desired: Desired) -> None:
        self.result.members = self.resolution.members
        for rejection in self.resolution.rejections:
            self._reject(rejection)
        for rejection in desired.rejections:
            self._reject(rejection)
        if self.scan_url is not None:  # still reading: keep the ids in order for early adds
            self.sorted_desired = sorted(desired.owner)
        # The diff consumes the contact index (built for this call only): no second copy.
        owner = desired.owner
        assert isinstance(owner, dict)
        self.diff = MembershipDiff(owner, self.request.mode)
        pending, self.pending = self.pending, []
        inactive, self.pending_inactive = self.pending_inactive, set()
        self._see(pending, inactive)
        self._stream_adds()

    def _on_page(self, page: MemberPage) -> None:
        ids = page.ids
        self.scan_url = page.next_url
        self.read += len(ids)
        if ids and self.ordered:
            in_order = all(a < b for a, b in itertools.pairwise(ids))
            if in_order and (self.watermark is None or ids[0] > self.watermark):
                self.watermark = ids[-1]
            else:
                self.ordered = False  # no early adds from here on; the final plan does the rest
        if self.diff is None:
            self.pending.extend(ids)  # until the segment is resolved
            self.pending_inactive.update(page.inactive)
            return
        self._see(ids, page.inactive)
        self._stream_adds()

    def _see(self, ids: list[str], inactive: frozenset[str] | set[str]) -> None:
        """Feed members to the diff; removals start while the list is still read (mirror).
        Members whose contact became inactive leave the list too (mirror), reported as
        ``contact-inactive`` when the segment wants them."""
        assert self.diff is not None
        found = self.diff.see(ids, inactive)
        if self.diff.inactive:
            for add in self.diff.inactive:
                self._reject(inactive_member(add))
            self.diff.inactive.clear()
        if self.request.dry_run or not found:
            return
        self.removal_buffer.extend(found)
        if self.scan_url is not None and not self.request.record_baseline:
            # still reading: cut only full chunks
            target = self._removal_chunk()
            while len(self.removal_buffer) >= target:
                self._queue_removals(self.removal_buffer[:target])
                del self.removal_buffer[:target]

    def _stream_adds(self) -> None:
        """Pages arrive in contactid order, so a desired contact below the last id read that was
        not seen is not a member: validate and add it without waiting for the last page. (If
        Sales ever pages out of order, streaming stops; an early add of an existing member is a
        no-op in Sales, so the end state is the same either way.)"""
        if self.diff is None or self.scan_url is None or not self.ordered:
            return
        if self.watermark is None or self.request.record_baseline:
            return
        keys, cursor, watermark = self.sorted_desired, self.cursor, self.watermark
        end = cursor
        while end < len(keys) and keys[end] <= watermark:
            end += 1
        self.to_validate.extend(self.diff.take_missing(keys[cursor:end]))
        self.cursor = end
        if end and not self.request.dry_run:  # size add chunks from the rate seen so far
            estimate = math.ceil(self.diff.taken * len(keys) / end)
            self.add_chunk = balanced_chunks(estimate, self.chunk_size, self.width)

    def _removal_chunk(self) -> int:
        """Chunk size for removals found so far, from the share of non-members among the
        members read and the list's member count (when Sales reports it)."""
        if not self.member_count or not self.read or self.diff is None:
            return self.chunk_size
        estimate = math.ceil(self.diff.removals / self.read * self.member_count)
        return balanced_chunks(estimate, self.chunk_size, self.width)

    def _queue_removals(self, ids: Sequence[str]) -> None:
        self.removals.append(_Task("remove", contact_ids=tuple(ids)))

    def _plan(self) -> None:
        """Resolution and reading are done: the rest of the diff."""
        diff = self.diff
        assert diff is not None
        request = self.request
        late = diff.finish()
        self.sorted_desired = []
        self.planned = True
        # Early adds of contacts that turned out to be members (pages out of order) were no-ops
        # in Sales; they count among the validated adds, not as kept.
        self.kept = diff.kept
        if not request.dry_run:
            self.result.read_kept = diff.kept
            self.result.read_undesired = diff.removals
            if request.record_baseline:
                # Nothing was written yet (see record_baseline): this is what the list held.
                self.result.baseline_kept = diff.kept
                self.result.baseline_undesired = diff.removals
        self.to_validate.extend(late)
        self.result.progress.total = diff.taken + len(late) + diff.removals
        rest, self.removal_buffer = self.removal_buffer, []
        # Parallel work ahead? Learn the server's hint (at most one WhoAmI) before sizing it.
        if request.dry_run:
            tasks = math.ceil(len(self.to_validate) / VALIDATE_IDS_PER_QUERY)
        else:
            tasks = math.ceil(len(self.to_validate) / self.chunk_size) + len(self.removals)
            tasks += math.ceil(len(rest) / self.chunk_size)
        if tasks > 1:
            self.width = self.client.ensure_dop()
        if request.dry_run:
            self.result.removed = diff.removals
        else:
            size = balanced_chunks(len(rest), self.chunk_size, self.width)
            for start in range(0, len(rest), size):
                self._queue_removals(rest[start : start + size])
        self.adds_total = diff.taken + len(late)
        if self.read and not request.dry_run:
            # Adds found while reading were cut for a long run; what is left now is the tail:
            # cut it (and any chunk not yet started) so the workers finish it together.
            share = self.valid / self.checked if self.checked else 1.0
            waiting = [a for t in self.ready for a in t.adds] + self.validated
            self.ready.clear()
            self.validated = waiting
            expected = len(waiting) + math.ceil(len(self.to_validate) * share)
            self.add_chunk = balanced_chunks(expected, self.chunk_size, self.width)
            self.cut_any = True
        self._plan_validation(self.width)
        self._cut_ready(flush=not self.to_validate and self.validating == 0)
        self._phase("validating" if self.to_validate else "applying")

    # --- scheduling --------------------------------------------------------------------------

    def _work_left(self) -> bool:
        return bool(
            self.to_validate
            or self.validated
            or self.ready
            or self.urgent
            or self.removals
            or self.scan_url
        )

    def _plan_validation(self, width: int) -> None:
        queries = math.ceil(len(self.to_validate) / VALIDATE_IDS_PER_QUERY)
        per_batch = math.ceil(queries / max(1, width))
        self.queries_per_batch = max(
            1,
            min(
                VALIDATE_MAX_QUERIES_PER_BATCH,
                max(min(queries, VALIDATE_MIN_QUERIES_PER_BATCH), per_batch),
            ),
        )

    def _next_task(self) -> _Task | None:
        if self.scan_url and not self.scanning:
            self.scanning = True
            return _Task("page", url=self.scan_url)
        if self.urgent:
            return self.urgent.popleft()
        if self.ready:
            return self.ready.popleft()
        if self._validation_ready():
            # Into an empty list, the first batch is one query so the first adds start at once.
            first = not (self.checked or self.validating or self.read)
            queries = 1 if first else self.queries_per_batch
            take = queries * VALIDATE_IDS_PER_QUERY
            count = min(take, len(self.to_validate))
            batch = tuple(self.to_validate.popleft() for _ in range(count))
            self.validating += 1
            return _Task("validate", adds=batch)
        if self.removals:
            return self.removals.popleft()
        return None

    def _has_next(self) -> bool:
        return bool(
            (self.scan_url and not self.scanning)
            or self.urgent
            or self.ready
            or self._validation_ready()
            or self.removals
        )

    def _validation_ready(self) -> bool:
        if not self.to_validate:
            return False
        # Validation only has to stay ahead of the adds: a couple of batches in flight leave the
        # other slots to add chunks (a dry run has nothing else to do).
        if not self.request.dry_run and self.validating >= VALIDATE_IN_FLIGHT:
            return False
        # While reading, wait for a full batch: a few big requests, not one per page.
        return self.planned or len(self.to_validate) >= STREAM_VALIDATE_MIN

    def _cut_ready(self, *, flush: bool) -> None:
        if not self.cut_any and self.planned and self.checked:
            # Size add chunks by the members expected to pass validation (the share seen so far),
            # so the last round of parallel adds is as full as the others.
            expected = math.ceil(self.valid / self.checked * self.adds_total)
            self.add_chunk = balanced_chunks(expected, self.chunk_size, self.width)
        size = self.add_chunk
        while len(self.validated) >= size or (flush and self.validated):
            chunk = self.validated[:size]
            del self.validated[:size]
            self.ready.append(_Task("add", adds=tuple(chunk)))
            self.cut_any = True

    def _run_tasks(self) -> None:
        failure: BaseException | None = None
        pool = ThreadPoolExecutor(
            max_workers=self.client.max_parallel, thread_name_prefix="sales-sync"
        )
        resolver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sales-resolve")
        try:
            running: dict[Future[Any], _Task | None] = {}
            if RESOLVE_WHILE_READING:
                # each task runs in a copy of this context: its spans nest under the segment's
                running[resolver.submit(contextvars.copy_context().run, self._resolve)] = None
            else:
                self._on_resolved(self._resolve())
            while True:
                if (
                    failure is None
                    and not self.planned
                    and self.diff is not None
                    and self.scan_url is None
                    and not self.scanning
                ):
                    self._plan()
                busy = sum(1 for t in running.values() if t is not None)
                while failure is None and not self.stopped and busy < self.width:
                    if not self._has_next():
                        break
                    if self._halt():
                        self.stopped = True
                        break
                    task = self._next_task()
                    if task is None:
                        break
                    running[pool.submit(contextvars.copy_context().run, self._execute, task)] = task
                    busy += 1
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    try:
                        outcome = future.result()
                    except SalesError as exc:
                        if task is not None and task.kind == "validate":
                            self.validating -= 1
                        if task is not None and task.kind == "page":
                            self.scanning = False
                        if failure is None:
                            try:
                                self._on_failure(task, exc)
                            except SalesError as fatal:
                                failure = fatal
                        continue
                    except BaseException as exc:  # lookup errors, bugs: stop cleanly, re-raise
                        if failure is None:
                            failure = exc
                        continue
                    if failure is not None:
                        continue
                    if task is None:
                        self._on_resolved(outcome)
                    else:
                        self._on_success(task, outcome)
        finally:
            pool.shutdown(wait=True)
            resolver.shutdown(wait=True)
        if failure is not None:
            self._publish()
            raise failure

    # --- task bodies (worker threads) --------------------------------------------------------

    def _execute(self, task: _Task) -> Any:
        if task.kind == "page":
            return read_member_page(self.client, task.url)
        if task.kind == "validate":
            return contact_states(self.client, [a.contact_id for a in task.adds])
        assert self.list_id is not None
        if task.kind == "add":
            change_members(self.client, ADD, self.list_id, [a.contact_id for a in task.adds])
        else:
            change_members(self.client, REMOVE, self.list_id, task.contact_ids)
        return None

    # --- outcomes (coordinating thread) ------------------------------------------------------

    def _on_success(self, task: _Task, outcome: Any) -> None:
        progress = self.result.progress
        if task.kind == "page":
            self.scanning = False
            self._on_page(outcome)
            return
        if task.kind == "validate":
            self.validating -= 1
            assert outcome is not None
            accepted = 0
            self.checked += len(task.adds)
            for add in task.adds:
                if add.contact_id not in outcome:
                    self._reject(
                        Rejection(
                            add.customer_id,
                            RejectionReason.CONTACT_NOT_FOUND,
                            add.contact_id,
                            "no contact with this id in Sales",
                        )
                    )
                elif outcome[add.contact_id] not in (ACTIVE, None):
                    self._reject(
                        Rejection(
                            add.customer_id,
                            RejectionReason.CONTACT_INACTIVE,
                            add.contact_id,
                            "the contact is inactive in Sales",
                        )
                    )
                else:
                    self.valid += 1
                    accepted += 1
                    if not self.request.dry_run:
                        self.validated.append(add)
            # Rejected members are done; valid ones count when applied (or at once in a dry run).
            progress.done += len(task.adds) - (0 if self.request.dry_run else accepted)
            self._cut_ready(flush=self.planned and not self.to_validate and self.validating == 0)
            if progress.phase == "validating" and self.ready:
                progress.phase = "applying"
            self._publish()
            return
        count = len(task.adds) if task.kind == "add" else len(task.contact_ids)
        if task.kind == "add":
            self.result.added += count
        else:
            self.result.removed += count
        progress.done += count
        progress.phase = "applying"
        self._publish()

    def _on_failure(self, task: _Task | None, exc: SalesError) -> None:
        gone = isinstance(exc, SalesNotFoundError) and task is not None and task.kind == "page"
        if not gone and (
            task is None or task.kind in ("page", "validate") or not _member_level(exc)
        ):
            raise exc
        assert task is not None  # the branch above raised for a failure outside a task
        if gone or (self.list_id and _mentions(exc, self.list_id)):
            raise TransientSalesError(
                f"the marketing list {self.list_id} disappeared during the run; the next run "
                f"recreates it ({exc})",
                status=exc.status,
                code=exc.code,
                request_id=exc.request_id,
            )
        ids = [a.contact_id for a in task.adds] if task.kind == "add" else list(task.contact_ids)
        cap = members_cap(exc, len(ids))
        if cap is not None:  # refused for its size, not for a member: no bisection
            self._learn_cap(task, cap)
            return
        if len(ids) == 1:
            self._refuse(task, ids[0], exc)
            return
        named = [c for c in ids if _mentions(exc, c)]
        if len(named) == 1:  # the error names the culprit: set it aside, retry the rest at once
            self._refuse(task, named[0], exc)
            self.urgent.append(self._without(task, named[0]))
            return
        half = len(ids) // 2
        self.urgent.append(self._slice(task, 0, half))
        self.urgent.append(self._slice(task, half, len(ids)))

    def _learn_cap(self, task: _Task, cap: int) -> None:
        """Sales refused ``task`` for its size: send at most ``cap`` members a call from now on,
        re-cutting the refused chunk and every chunk not yet sent (never bisecting blindly)."""
        self.chunk_size = min(self.chunk_size, cap)
        self.add_chunk = min(self.add_chunk, self.chunk_size)
        size = self.chunk_size
        if task.kind == "add":
            waiting = [
                a for t in (task, *self.urgent, *self.ready) if t.kind == "add" for a in t.adds
            ]
            keep = [t for t in self.urgent if t.kind != "add"]
            self.urgent = deque(keep)
            self.ready.clear()
            self.validated = waiting + self.validated
            self._cut_ready(flush=self.planned and not self.to_validate and self.validating == 0)
            return
        removals = [task, *self.removals]
        self.removals = deque(
            _Task("remove", contact_ids=t.contact_ids[start : start + size])
            for t in removals
            for start in range(0, len(t.contact_ids), size)
        )

    @staticmethod
    def _slice(task: _Task, start: int, stop: int) -> _Task:
        if task.kind == "add":
            return _Task("add", adds=task.adds[start:stop])
        return _Task("remove", contact_ids=task.contact_ids[start:stop])

    @staticmethod
    def _without(task: _Task, contact_id: str) -> _Task:
        if task.kind == "add":
            return _Task("add", adds=tuple(a for a in task.adds if a.contact_id != contact_id))
        return _Task("remove", contact_ids=tuple(c for c in task.contact_ids if c != contact_id))

    def _refuse(self, task: _Task, contact_id: str, exc: SalesError) -> None:
        """One member isolated from a failed bulk call. A 404 is the contact itself (the list's
        404 was ruled out by the caller): deleted after validation, so the member is left out as
        ``contact-not-found`` (and a removal has nothing left to remove), not refused by Sales."""
        self.result.progress.done += 1
        message = str(exc)[:300]
        gone = isinstance(exc, SalesNotFoundError)
        if not gone:
            self.result.failed += 1
        if task.kind == "add":
            self.refused += 1
            customer = next(a.customer_id for a in task.adds if a.contact_id == contact_id)
            reason = (
                RejectionReason.CONTACT_NOT_FOUND if gone else RejectionReason.REJECTED_BY_SALES
            )
            self._reject(Rejection(customer, reason, contact_id, message))
        self._publish()
