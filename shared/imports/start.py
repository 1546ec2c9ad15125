"""Start a background customer import: the part that runs inside the HTTP request.

The rows were parsed and validated by the caller (shared.store.customers.validate_rows: a bad
file never gets here). Order: stage the chunks, record the import, enqueue its message; a
failure at any step removes what it wrote (best effort; the stale sweep in worker.py removes
anything left), so nothing half-made is ever picked up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence

from shared.errors import StoreError
from shared.imports.messages import encode_import_message
from shared.store.customer_imports import (
    CustomerImport,
    ImportState,
    new_import_id,
    now_iso,
)
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)


def start_import(
    store: StoreApi,
    rows: Sequence[Mapping[str, object]],
    *,
    created_by: str,
    merge: bool = False,
) -> CustomerImport:
    """Stage validated rows, record a queued import and enqueue it; the saved record."""
    imports = store.customer_imports
    import_id = new_import_id()
    chunks, count = imports.stage(import_id, rows)
    now = now_iso()
    record = CustomerImport(
        id=import_id,
        state=ImportState.QUEUED,
        rows=count,
        chunks=chunks,
        created_by=created_by,
        created_at=now,
        updated_at=now,
        merge=merge,
    )
    try:
        record = imports.create(record)
    except BaseException:
        with contextlib.suppress(StoreError):
            imports.delete_chunks(import_id)
        raise
    try:
        store.import_queue.send_text(encode_import_message(import_id))
    except BaseException as error:
        failed = record.but(
            state=ImportState.FAILED,
            finished_at=now_iso(),
            updated_at=now_iso(),
            error=f"the import could not be queued ({type(error).__name__}); upload it again",
        )
        with contextlib.suppress(StoreError):
            imports.save(failed)
        with contextlib.suppress(StoreError):
            imports.delete_chunks(import_id)
        raise
    log.info("customer import %s queued: %d rows in %d chunks", import_id, count, chunks)
    return record
