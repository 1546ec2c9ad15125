"""/api/segments: the embedded segment source (members as customer IDs). Admin writes (JSON or
CSV); every role reads."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AfterValidator

from shared.api.common import MAX_CONTINUATION, next_link
from shared.api.deps import admin, any_role, get_store
from shared.api.identity import Caller
from shared.api.problems import ApiProblem
from shared.api.schemas import (
    SEGMENT_NAME_PATTERN,
    SegmentDetail,
    SegmentList,
    segment_info_out,
)
from shared.api.uploads import read_segment_members
from shared.models import SourceKind
from shared.names import clean_name
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.api")
router = APIRouter(prefix="/api/segments", tags=["segments"])

# The path form of schemas.SegmentName (same pattern and the same name rule: NFC, no format chars).
SegmentName = Annotated[
    str,
    Path(pattern=SEGMENT_NAME_PATTERN, description="segment name"),
    AfterValidator(clean_name),
]
MEMBERS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "array", "items": {"type": "string"}},
                        {
                            "type": "object",
                            "properties": {
                                "members": {"type": "array", "items": {"type": "string"}}
                            },
                            "required": ["members"],
                            "additionalProperties": False,
                        },
                    ]
                }
            },
            "text/csv": {
                "schema": {"type": "string"},
                "example": "CustomerId\nC-1\nC-2\n",
            },
        },
    }
}


@router.get("", response_model=SegmentList, summary="List segments (all roles)")
def list_segments(
    caller: Annotated[Caller, Depends(any_role)], store: Annotated[StoreApi, Depends(get_store)]
) -> SegmentList:
    infos = sorted(store.segments.list(), key=lambda s: s.name.lower())
    return SegmentList(items=[segment_info_out(i) for i in infos])


@router.get(
    "/{name}",
    response_model=SegmentDetail,
    summary="One segment; with ?members=true a page of its members",
)
def get_segment(
    name: SegmentName,
    caller: Annotated[Caller, Depends(any_role)],
    store: Annotated[StoreApi, Depends(get_store)],
    members: Annotated[bool, Query(description="include a page of members")] = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    continuation: Annotated[str | None, Query(max_length=MAX_CONTINUATION)] = None,
) -> SegmentDetail:
    info = store.segments.get(name)
    detail = SegmentDetail(**segment_info_out(info).model_dump())
    if not members:
        return detail
    start = 0
    if continuation is not None:
        if not continuation.isdigit() or len(continuation) > 9:
            raise ApiProblem(
                400,
                "continuation: not a token from a nextLink of this listing",
                kind="validation",
                errors=[{"field": "continuation", "message": "not a valid continuation token"}],
            )
        start = int(continuation)
    ids = store.segments.members(name)
    page = ids[start : start + limit]
    more = start + limit < len(ids)
    detail.member_ids = list(page)
    detail.next_link = next_link(
        f"/api/segments/{quote(name, safe='')}",
        str(start + limit) if more else None,
        members="true",
        limit=limit,
    )
    return detail


@router.put(
    "/{name}",
    response_model=SegmentDetail,
    summary='Replace a segment\'s members (Admin): JSON array, {"members": [...]}, or CSV',
    openapi_extra=MEMBERS_BODY,
)
async def put_segment(
    name: SegmentName,
    request: Request,
    response: Response,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> SegmentDetail:
    body = await request.body()
    customer_ids = read_segment_members(request.headers.get("content-type"), body)
    from starlette.concurrency import run_in_threadpool

    existed = await run_in_threadpool(_exists, store, name)
    info = await run_in_threadpool(store.segments.put, name, customer_ids)
    log.info("segment %s replaced by %s (%d members)", name, caller.name, len(customer_ids))
    if not existed:
        response.status_code = 201
        response.headers["Location"] = f"/api/segments/{quote(name, safe='')}"
    return SegmentDetail(**segment_info_out(info).model_dump())


def _exists(store: StoreApi, name: str) -> bool:
    from shared.errors import NotFoundError

    try:
        store.segments.get(name)
    except NotFoundError:
        return False
    return True


@router.delete(
    "/{name}", status_code=204, summary="Delete a segment (Admin); 409 while exports use it"
)
def delete_segment(
    name: SegmentName,
    caller: Annotated[Caller, Depends(admin)],
    store: Annotated[StoreApi, Depends(get_store)],
) -> Response:
    store.segments.get(name)  # 404 for an unknown segment
    users = [
        e
        for e in store.exports.list()
        if name in e.segments and e.source.kind is SourceKind.EMBEDDED
    ]
    if users:
        names = ", ".join(f"{e.display_name} ({e.id})" for e in users)
        raise ApiProblem(
            409,
            f"The segment is exported by {len(users)} export(s): {names}. Remove it from them "
            "first.",
            kind="segment-in-use",
            extra={"exports": [{"id": e.id, "displayName": e.display_name} for e in users]},
        )
    store.segments.delete(name)
    log.info("segment %s deleted by %s", name, caller.name)
    return Response(status_code=204)
