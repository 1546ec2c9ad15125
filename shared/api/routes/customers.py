"""/api/customers: the unified customer rows (upsert by CustomerId, JSON or CSV). Admin writes;
every role reads. A file with any bad row is rejected whole (422, per-row errors, nothing
written)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from shared.api.deps import admin, any_role, get_store
from shared.api.identity import Caller
from shared.api.schemas import CUSTOMER_ID_PATTERN, ImportReportOut
from shared.api.uploads import read_customer_rows, rows_problem
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
router = APIRouter(prefix="/api/customers", tags=["customers"])

CustomerId = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, description="CustomerId")]
ROWS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"CustomerId": {"type": "string"}},
                        "required": ["CustomerId"],
                        "additionalProperties": {"type": ["string", "null"]},
                    },
                }
            },
            "text/csv": {"schema": {"type": "string"}, "example": "CustomerId,ContactId\nC-1,\n"},
        },
    }
}


@router.post(
    "",
    response_model=ImportReportOut,
    summary="Upsert customer rows by CustomerId (Admin): JSON array or CSV",
    openapi_extra=ROWS_BODY,
)
async def upsert_customers(
    request: Request,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> ImportReportOut:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    rows = read_customer_rows(request.headers.get("content-type"), body)
    report = await run_in_threadpool(store.customers.upsert_many, rows)
    if report.errors:  # the store re-checks (e.g. entity size); still all-or-nothing
        raise rows_problem(report.errors, "customer file")
    log.info("customers upserted by %s: %d row(s)", caller.name, report.upserted)
    return ImportReportOut(rows=report.rows, upserted=report.upserted)


@router.get("/{customer_id}", summary="One unified customer row (all roles)")
def get_customer(
    customer_id: CustomerId,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> JSONResponse:
    from shared.errors import NotFoundError

    row = store.customers.get(customer_id)
    if row is None:
        raise NotFoundError(customer_id)
    return JSONResponse(dict(row))
