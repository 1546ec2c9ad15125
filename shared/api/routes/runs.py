"""Runs: request (202), history (paged, newest first), one run, its rejections (JSON or CSV),
cancel, and "run all enabled exports now"."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from shared.api.common import MAX_CONTINUATION, next_link
from shared.api.deps import admin, any_role, contributor, get_settings, get_store
from shared.api.identity import Caller
from shared.api.problems import ApiProblem
from shared.api.routes.exports import require_manage
from shared.api.schemas import (
    RESOURCE_ID_PATTERN,
    RUN_ID_PATTERN,
    RejectionOut,
    RejectionPage,
    RunAllOut,
    RunOut,
    RunPage,
)
from shared.models import RejectionReason, Run, Trigger
from shared.settings import Settings
from shared.store.protocols import StoreApi

if TYPE_CHECKING:
    from shared.store.runs import RejectionRecord

log = logging.getLogger("shared.api")
router = APIRouter(tags=["runs"])

ExportId = Annotated[str, Path(pattern=RESOURCE_ID_PATTERN, description="export id")]
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="run id")]
Continuation = Annotated[
    str | None, Query(max_length=MAX_CONTINUATION, description="from the previous page's nextLink")
]
CSV_COLUMNS = ("segment", "customerId", "reason", "contactId", "detail")
_FORMULA_PREFIXES = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")  # and their full-width forms


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate(run)


def run_location(run: Run) -> str:
    return f"/api/exports/{run.export_id}/runs/{run.id}"


def _continuation_problem() -> ApiProblem:
    return ApiProblem(
        400,
        "continuation: not a token from a nextLink of this listing",
        kind="validation",
        errors=[{"field": "continuation", "message": "not a valid continuation token"}],
    )


@router.post(
    "/api/exports/{export_id}/runs",
    status_code=202,
    response_model=RunOut,
    summary="Run an export now (Admin, Contributor on usable connections); 409 if one is active",
    responses={202: {"headers": {"Location": {"schema": {"type": "string"}}}}},
)
def request_export_run(
    export_id: ExportId,
    response: Response,
    caller: Annotated[Caller, Depends(contributor)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    dry_run: Annotated[
        bool, Query(alias="dryRun", description="plan only; write nothing to Sales")
    ] = False,
) -> RunOut:
    from shared.runs.requests import ActiveRunError, ExportNotRunnableError, request_run

    require_manage(caller, store.exports.get(export_id), store)
    try:
        run = request_run(
            store,
            export_id,
            trigger=Trigger.ON_DEMAND,
            requested_by=caller.name,
            dry_run=dry_run,
            settings=settings,
        )
    except ActiveRunError as exc:
        active = exc.active_run_id
        raise ApiProblem(
            409,
            f"Run {active} of this export is already queued or running; wait for it to finish "
            "or cancel it.",
            kind="run-active",
            title="A run is already active",
            extra={
                "activeRunId": active,
                "activeRun": f"/api/exports/{export_id}/runs/{active}",
            },
        ) from None
    except ExportNotRunnableError as exc:
        raise ApiProblem(
            409, f"The export cannot run: {exc.reason}.", kind="export-not-runnable"
        ) from None
    response.headers["Location"] = run_location(run)
    return run_out(run)


@router.get(
    "/api/exports/{export_id}/runs",
    response_model=RunPage,
    summary="Run history of an export, newest first (paged)",
)
def list_runs(
    export_id: ExportId,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    continuation: Continuation = None,
) -> RunPage:
    store.exports.get(export_id)  # 404 for an unknown export
    try:
        runs, token = store.runs.list(export_id, limit=limit, continuation=continuation)
    except ValueError:
        raise _continuation_problem() from None
    return RunPage(
        items=[run_out(r) for r in runs],
        next_link=next_link(f"/api/exports/{export_id}/runs", token, limit=limit),
    )


@router.get(
    "/api/exports/{export_id}/runs/{run_id}",
    response_model=RunOut,
    summary="One run with per-segment results and progress",
)
def get_run(
    export_id: ExportId,
    run_id: RunId,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> RunOut:
    return run_out(store.runs.get(export_id, run_id))


def csv_cell(value: object) -> str:
    """Neutralise spreadsheet formulas (CSV injection): prefix a quote when the text starts with
    a formula lead-in (= + - @ and their full-width forms) or any whitespace (spreadsheets may
    trim it and then evaluate what follows; tab, CR and LF included)."""
    text = "" if value is None else str(value)
    risky = text[:1] in _FORMULA_PREFIXES or text[:1].isspace()
    return "'" + text if risky else text


def _rejection_row(record: RejectionRecord) -> dict[str, Any]:
    return {
        "segment": record.segment,
        "customer_id": record.customer_id,
        "reason": record.reason.value,
        "contact_id": record.contact_id,
        "detail": record.detail or "",
    }


_FILTER_SCAN_PAGES = 20


def _rejection_filter(
    reason: RejectionReason | None, customer_id: str | None
) -> Callable[[dict[str, Any]], bool] | None:
    if reason is None and not customer_id:
        return None
    needle = (customer_id or "").casefold()

    def wanted(row: dict[str, Any]) -> bool:
        if reason is not None and row["reason"] != reason.value:
            return False
        return needle in str(row["customer_id"]).casefold()

    return wanted


def _csv_lines(store: StoreApi, export_id: str, run_id: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    token: str | None = None
    while True:
        records, token = store.rejections.list(export_id, run_id, limit=1000, continuation=token)
        for record in records:
            row = _rejection_row(record)
            writer.writerow(
                [
                    csv_cell(row[k])
                    for k in ("segment", "customer_id", "reason", "contact_id", "detail")
                ]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if not token:
            return


@router.get(
    "/api/exports/{export_id}/runs/{run_id}/rejections",
    response_model=RejectionPage,
    summary="Members left out of the lists, with reason (paged JSON, or all as CSV)",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def list_rejections(
    request: Request,
    export_id: ExportId,
    run_id: RunId,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    continuation: Continuation = None,
    format: Annotated[
        Literal["json", "csv"] | None, Query(description="csv = the whole list as CSV")
    ] = None,
    reason: Annotated[
        RejectionReason | None, Query(description="only members left out for this reason")
    ] = None,
    customer_id: Annotated[
        str | None,
        Query(
            alias="customerId",
            max_length=256,
            description="only members whose customer ID contains this text (case-insensitive)",
        ),
    ] = None,
) -> Any:
    store.runs.get(export_id, run_id)  # 404 for an unknown run
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "").lower()
    )
    if wants_csv:
        # Read the first page now so storage errors become a problem, not a broken download.
        store.rejections.list(export_id, run_id, limit=1)
        return StreamingResponse(
            _csv_lines(store, export_id, run_id),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="rejections-{run_id}.csv"'},
        )
    wanted = _rejection_filter(reason, customer_id)
    items: list[RejectionOut] = []
    token = continuation
    # With a filter a page may hold fewer than `limit` items (even none): follow nextLink. Each
    # request scans a bounded number of stored pages so a rare match cannot make it unbounded.
    for _ in range(_FILTER_SCAN_PAGES if wanted else 1):
        try:
            records, token = store.rejections.list(
                export_id, run_id, limit=limit, continuation=token
            )
        except ValueError:
            raise _continuation_problem() from None
        rows = [_rejection_row(r) for r in records]
        items += [RejectionOut(**row) for row in rows if wanted is None or wanted(row)]
        if not token or items:
            break
    page = RejectionPage(
        items=items,
        next_link=next_link(
            f"/api/exports/{export_id}/runs/{run_id}/rejections",
            token,
            limit=limit,
            reason=reason.value if reason else None,
            customerId=customer_id or None,
        ),
    )
    return JSONResponse(page.model_dump(mode="json", by_alias=True))


@router.post(
    "/api/exports/{export_id}/runs/{run_id}/cancel",
    response_model=RunOut,
    summary="Cancel a run (Admin, Contributor); a running run stops at its next chunk boundary",
    responses={202: {"model": RunOut, "description": "cancel requested; the run is stopping"}},
)
def cancel(
    export_id: ExportId,
    run_id: RunId,
    response: Response,
    caller: Annotated[Caller, Depends(contributor)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> RunOut:
    from shared.runs.requests import cancel_run

    require_manage(caller, store.exports.get(export_id), store)
    store.runs.get(export_id, run_id)
    run = cancel_run(store, export_id, run_id, caller.name, settings=settings)
    if run.status.is_active:
        response.status_code = 202
    return run_out(run)


@router.post(
    "/api/runs",
    status_code=202,
    response_model=RunAllOut,
    summary="Run every enabled export now (Admin); exports with an active run get a skipped run",
)
def run_all(
    caller: Annotated[Caller, Depends(admin)], store: Annotated[StoreApi, Depends(get_store)]
) -> RunAllOut:
    from shared.runs.requests import request_all

    runs = request_all(store, trigger=Trigger.ON_DEMAND, requested_by=caller.name)
    log.info("run all requested by %s: %d run(s)", caller.name, len(runs))
    return RunAllOut(items=[run_out(r) for r in runs])
