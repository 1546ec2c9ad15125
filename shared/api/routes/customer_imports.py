"""/api/customer-imports: large customer files imported in the background, with progress.

POST parses and validates the whole file inside the request exactly as POST /api/customers
does (a bad file: 422 naming rows and fields, nothing stored), stages the rows in Table
Storage, records the import and queues it: 202 + Location. The import queue's worker
(shared/imports/worker.py) writes the rows, so the request's time does not grow with the
table writes (Azure's front end ends a request at 230 s). GET shows state and rowsWritten.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from shared.api.deps import admin, any_role, get_store
from shared.api.identity import Caller
from shared.api.routes.customers import ROWS_BODY
from shared.api.schemas import CustomerImportList, CustomerImportOut
from shared.api.uploads import read_customer_rows, rows_problem
from shared.store.customer_imports import IMPORT_ID_PATTERN, CustomerImport
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
PREFIX = "/api/customer-imports"
router = APIRouter(prefix=PREFIX, tags=["customers"])

ImportId = Annotated[str, Path(pattern=IMPORT_ID_PATTERN, description="import id")]


def import_location(import_id: str) -> str:
    return f"{PREFIX}/{import_id}"


def import_out(record: CustomerImport) -> CustomerImportOut:
    return CustomerImportOut(
        id=record.id,
        state=record.state.value,
        rows=record.rows,
        rows_written=record.rows_written,
        chunks=record.chunks,
        chunks_written=record.chunks_written,
        merge=record.merge,
        created_by=record.created_by,
        created_at=record.created_at,
        updated_at=record.updated_at or record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        error=record.error,
        deliveries=record.deliveries,
    )


@router.post(
    "",
    status_code=202,
    response_model=CustomerImportOut,
    summary="Import customer rows in the background (Admin): JSON array or CSV; 202 + Location",
    openapi_extra=ROWS_BODY,
    responses={202: {"headers": {"Location": {"schema": {"type": "string"}}}}},
)
async def start_customer_import(
    request: Request,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
    merge: Annotated[
        bool, Query(description="keep stored columns a row does not name (default: replace)")
    ] = False,
) -> CustomerImportOut:
    from starlette.concurrency import run_in_threadpool

    from shared.imports.start import start_import
    from shared.store.customers import validate_rows

    body = await request.body()
    rows = read_customer_rows(request.headers.get("content-type"), body)
    del body
    errors = await run_in_threadpool(validate_rows, rows)
    if errors:  # all-or-nothing, as POST /api/customers: nothing is staged
        raise rows_problem(errors, "customer file")
    record = await run_in_threadpool(
        lambda: start_import(store, rows, created_by=caller.name, merge=merge)
    )
    log.info("customer import %s queued by %s: %d row(s)", record.id, caller.name, record.rows)
    response.headers["Location"] = import_location(record.id)
    return import_out(record)


@router.get("", response_model=CustomerImportList, summary="Recent imports, newest first (all)")
def list_customer_imports(
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> CustomerImportList:
    return CustomerImportList(items=[import_out(r) for r in store.customer_imports.list(limit)])


@router.get("/{import_id}", response_model=CustomerImportOut, summary="One import (all)")
def get_customer_import(
    import_id: ImportId,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> CustomerImportOut:
    return import_out(store.customer_imports.get(import_id))
