"""The import queue trigger's body: write a staged import to the customers table.

One delivery works through the chunks after the record's checkpoint (``chunksWritten``): read
the chunk, upsert its rows (idempotent), save the checkpoint with the record's ETag. So a worker
that dies (or fails) between writing a chunk and saving its checkpoint only writes that chunk
again on the next delivery, and ``rowsWritten`` counts every row exactly once. A delivery stops
before a chunk that would not finish within RUN_SLICE_SECONDS (a Functions invocation has a
timeout) and enqueues a continuation. A failure is noted on the record and raised, so the queue
delivers the message again (retries of transient failures); after MAX_DEQUEUE_COUNT failed
deliveries the host moves it to ``<queue>-poison``, whose function marks the import failed with
the last error. Staged chunks are deleted when an import ends, and ``sweep_stale`` removes any
left behind (abandoned imports, staging whose request died).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from shared.errors import NotFoundError, PreconditionFailedError, StoreError
from shared.imports.messages import decode_import_message, encode_import_message
from shared.settings import Settings
from shared.store.customer_imports import (
    CustomerImport,
    ImportState,
    created_at_of,
    now_iso,
)
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)

# An active import whose record has not moved for this long is abandoned (its message was lost
# or its workers keep dying without reaching poison handling): failed, staged rows removed. A
# delivery saves the record at least once per chunk (seconds), and continuations are queued at
# once, so hours of silence cannot be a live import.
STALE_AFTER = timedelta(hours=6)
# Staged chunks without a record: the request stopped between staging and recording.
ORPHAN_AFTER = timedelta(hours=1)
_SAVE_ATTEMPTS = 5


class ImportOutcome(StrEnum):
    FINISHED = "finished"  # succeeded: every chunk written
    CONTINUED = "continued"  # time budget reached: a continuation message was queued
    SKIPPED = "skipped"  # nothing to do: unknown, final, bad message, or another worker has it


class ImportHooks(Protocol):
    """A seam for tests (fault injection between the steps); production uses NO_HOOKS."""

    def after_write(self, record: CustomerImport, chunk: int) -> None: ...
    def after_checkpoint(self, record: CustomerImport) -> None: ...


class _NoHooks:
    def after_write(self, record: CustomerImport, chunk: int) -> None:
        return None

    def after_checkpoint(self, record: CustomerImport) -> None:
        return None


NO_HOOKS: ImportHooks = _NoHooks()


def process_import(
    store: StoreApi,
    settings: Settings,
    body: str | bytes,
    *,
    dequeue_count: int = 1,
    clock: Callable[[], float] = time.monotonic,
    hooks: ImportHooks = NO_HOOKS,
) -> ImportOutcome:
    """Handle one delivery. Raises (after noting the error on the record) when the queue
    should deliver the message again."""
    try:
        import_id = decode_import_message(body)
    except ValueError as error:
        log.error("import message dropped: %s", error)  # retrying cannot make it valid
        return ImportOutcome.SKIPPED
    imports = store.customer_imports
    try:
        record = imports.get(import_id)
    except NotFoundError:
        log.warning("customer import %s not found; message dropped", import_id)
        return ImportOutcome.SKIPPED
    if record.state.is_final:
        return ImportOutcome.SKIPPED
    started = clock()
    now = now_iso()
    try:
        record = imports.save(
            record.but(
                state=ImportState.RUNNING,
                started_at=record.started_at or now,
                updated_at=now,
                deliveries=record.deliveries + 1,
            )
        )
    except PreconditionFailedError:
        return ImportOutcome.SKIPPED  # another delivery saved it first: it is working on it
    try:
        return _write_chunks(store, settings, record, started, clock, hooks)
    except PreconditionFailedError:
        log.info("customer import %s: another worker saved a newer checkpoint", import_id)
        return ImportOutcome.SKIPPED
    except Exception as error:
        _note_failure(store, import_id, error, dequeue_count)
        raise


def _write_chunks(
    store: StoreApi,
    settings: Settings,
    record: CustomerImport,
    started: float,
    clock: Callable[[], float],
    hooks: ImportHooks,
) -> ImportOutcome:
    imports = store.customer_imports
    budget = settings.run_slice_seconds
    slowest = 0.0
    written_here = 0
    while record.chunks_written < record.chunks:
        if written_here and clock() - started + slowest > budget:
            store.import_queue.send_text(encode_import_message(record.id))
            log.info(
                "customer import %s: %d/%d rows, continues in a new message",
                record.id,
                record.rows_written,
                record.rows,
            )
            return ImportOutcome.CONTINUED
        began = clock()
        number = record.chunks_written
        rows = imports.read_chunk(record.id, number)
        store.customers.write_rows(rows, merge=record.merge)
        hooks.after_write(record, number)
        record = imports.save(
            record.but(
                chunks_written=number + 1,
                rows_written=record.rows_written + len(rows),
                updated_at=now_iso(),
                error=None,
            )
        )
        hooks.after_checkpoint(record)
        written_here += 1
        slowest = max(slowest, clock() - began)
    finished = now_iso()
    record = imports.save(
        record.but(state=ImportState.SUCCEEDED, finished_at=finished, updated_at=finished)
    )
    log.info("customer import %s succeeded: %d rows", record.id, record.rows_written)
    _clean_up(store, record.id)
    return ImportOutcome.FINISHED


def _update(
    store: StoreApi, import_id: str, change: Callable[[CustomerImport], CustomerImport | None]
) -> CustomerImport | None:
    """Apply `change` to the current record, re-reading on an ETag conflict; None if the record
    is gone or `change` returns None."""
    imports = store.customer_imports
    for _ in range(_SAVE_ATTEMPTS):
        try:
            record = imports.get(import_id)
        except NotFoundError:
            return None
        changed = change(record)
        if changed is None:
            return record
        try:
            return imports.save(changed)
        except PreconditionFailedError:
            continue
    raise StoreError(f"customer import {import_id} keeps changing; could not save it")


def _note_failure(store: StoreApi, import_id: str, error: Exception, dequeue_count: int) -> None:
    """Record the error of a failed delivery (it will be delivered again, or given up)."""
    text = f"delivery {dequeue_count} failed: {type(error).__name__}: {error}"
    log.warning("customer import %s: %s", import_id, text)

    def note(record: CustomerImport) -> CustomerImport | None:
        if record.state.is_final:
            return None
        return record.but(error=text, updated_at=now_iso())

    with contextlib.suppress(StoreError):
        _update(store, import_id, note)


def give_up(store: StoreApi, settings: Settings, body: str | bytes) -> CustomerImport | None:
    """The poison function's body: the queue gave up on an import message (it failed, or its
    worker died, MAX_DEQUEUE_COUNT times). Marks the import failed with the last error."""
    try:
        import_id = decode_import_message(body)
    except ValueError as error:
        log.error("poison import message dropped: %s", error)
        return None

    def fail(record: CustomerImport) -> CustomerImport | None:
        if record.state.is_final:
            return None
        last = f" Last error: {record.error}" if record.error else ""
        done = now_iso()
        return record.but(
            state=ImportState.FAILED,
            finished_at=done,
            updated_at=done,
            error=(
                f"the import was given up after {settings.max_dequeue_count} failed deliveries "
                f"(MAX_DEQUEUE_COUNT); {record.rows_written:,} of {record.rows:,} rows were "
                f"written and stay. Upload the file again to import the rest.{last}"
            ),
        )

    record = _update(store, import_id, fail)
    _clean_up(store, import_id)
    return record


def _clean_up(store: StoreApi, import_id: str) -> None:
    """Delete a finished import's staged chunks, then any stale ones (best effort)."""
    try:
        store.customer_imports.delete_chunks(import_id)
        sweep_stale(store)
    except StoreError as error:
        log.warning("customer import clean-up failed (%s)", type(error).__name__)


def sweep_stale(store: StoreApi, now: datetime | None = None) -> list[str]:
    """Remove staged chunks nothing will read again; fail imports abandoned for STALE_AFTER.
    Returns the ids whose chunks were deleted."""
    now = now or datetime.now(UTC)
    imports = store.customer_imports
    removed: list[str] = []
    for import_id in sorted(imports.staged_ids()):
        try:
            record: CustomerImport | None = imports.get(import_id)
        except NotFoundError:
            record = None
        if record is None:
            if now - created_at_of(import_id) < ORPHAN_AFTER:
                continue  # its request may still be staging it
        elif not record.state.is_final:
            moved = datetime.fromisoformat(record.updated_at or record.created_at)
            if now - moved < STALE_AFTER:
                continue
            message = (
                f"abandoned: no progress since {record.updated_at} (its queue message was lost "
                "or its workers stopped); rows written so far stay. Upload the file again."
            )

            def abandon(
                current: CustomerImport, message: str = message, seen: str | None = record.etag
            ) -> CustomerImport | None:
                if current.state.is_final or current.etag != seen:
                    return None  # it moved meanwhile: alive after all
                return current.but(
                    state=ImportState.FAILED,
                    finished_at=now_iso(now),
                    updated_at=now_iso(now),
                    error=message,
                )

            saved = _update(store, import_id, abandon)
            if saved is None or not saved.state.is_final:
                continue
        imports.delete_chunks(import_id)
        removed.append(import_id)
    return removed
