"""/api/sources: the segments a source offers, with member counts (to build an export by name)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from shared.api.deps import any_role, get_settings, get_store
from shared.api.identity import Caller
from shared.api.problems import ApiProblem, field_error
from shared.api.routes.exports import may_use
from shared.api.schemas import RESOURCE_ID_PATTERN, SourceSegmentList, SourceSegmentOut
from shared.api.sources import load_connection, opened
from shared.errors import SegmentExportError
from shared.models import ExportSource, SourceKind
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
router = APIRouter(prefix="/api/sources", tags=["sources"])


@router.get(
    "/{kind}/segments",
    response_model=SourceSegmentList,
    summary="Segments a source offers, with member counts (customer-insights: needs a "
    "connection the caller may use)",
)
async def list_source_segments(
    kind: SourceKind,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
    settings: Annotated[Settings, Depends(get_settings)],
    connection_id: Annotated[
        str | None,
        Query(
            alias="connectionId",
            pattern=RESOURCE_ID_PATTERN,
            description="customer-insights: the connection to read CI-D through",
        ),
    ] = None,
) -> SourceSegmentList:
    connection = None
    if kind is SourceKind.CUSTOMER_INSIGHTS:
        if connection_id is None:
            raise field_error(422, "connectionId", "required for customer-insights")
        connection = load_connection(store, connection_id)
        if connection is None or not may_use(caller, connection):
            raise field_error(422, "connectionId", "no such connection usable by you")

    def read() -> list[Any]:
        with opened(store, settings, ExportSource(kind=kind), connection) as source:
            return source.list_segments()

    try:
        offers = await run_in_threadpool(read)
    except ApiProblem:
        raise
    except SegmentExportError as exc:
        raise ApiProblem(422, str(exc), kind="source-unreadable") from None
    log.info("%s listed the segments of the %s source", caller.name, kind.value)
    return SourceSegmentList(
        kind=kind,
        connection_id=connection_id,
        items=[SourceSegmentOut(name=o.name, members=o.members) for o in offers],
    )
