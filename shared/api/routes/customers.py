"""/api/customers: the unified customer rows (upsert by CustomerId, JSON or CSV). Admin writes;
every role reads. A file with any bad row is rejected whole (422, per-row errors, nothing
written). A file of more than SYNC_MAX_ROWS rows is refused (413) in favour of the background
import (/api/customer-imports), whose time is not bound by one HTTP request."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from shared.api.deps import admin, any_role, get_store
from shared.api.identity import Caller
from shared.api.problems import ApiProblem
from shared.api.schemas import CUSTOMER_ID_PATTERN, ImportReportOut
from shared.api.uploads import read_customer_rows, rows_problem
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
router = APIRouter(prefix="/api/customers", tags=["customers"])

CustomerId = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, description="CustomerId")]
# The largest file POST /api/customers writes inside the request. Azure's front end ends an
# HTTP request at 230 s. Measured on Azurite (bench/README "Background customer imports"): 10,000
# rows took 10.8 s into an empty table (928 rows/s) but 129.8 s (77 rows/s) into a table already
# holding 300,000 rows on the loaded 2-core machine (Azurite's in-memory store slows as a table
# grows). Taking that worst measured rate, 5,000 rows take ~65 s (28 % of the limit; ~5 s
# typically), well inside 230 s. Bigger files go through POST /api/customer-imports.
SYNC_MAX_ROWS = 5_000
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
    summary="Upsert customer rows by CustomerId (Admin): JSON array or CSV; at most "
    f"{SYNC_MAX_ROWS:,} rows (413 above: use /api/customer-imports)",
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
    if len(rows) > SYNC_MAX_ROWS:
        raise ApiProblem(
            413,
            f"The file has {len(rows):,} rows; this route writes at most {SYNC_MAX_ROWS:,} "
            "inside one request. Send it to POST /api/customer-imports instead: it is "
            "validated the same way, then imported in the background with progress.",
            kind="too-many-rows",
            title="Too many rows for one request",
            extra={
                "maxRows": SYNC_MAX_ROWS,
                "rows": len(rows),
                "importUrl": "/api/customer-imports",
            },
        )
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
