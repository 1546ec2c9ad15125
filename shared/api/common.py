"""Small helpers shared by the routers: ETags, merge patch, timestamps, paging links."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, TypeVar
from urllib.parse import urlencode

from fastapi import Header
from pydantic import BaseModel, ValidationError

from shared.api.problems import ApiProblem, validation_problem
from shared.errors import PreconditionFailedError

MAX_CONTINUATION = 2048
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=512)]
ETAG_HEADER = {"ETag": {"description": "version of the resource", "schema": {"type": "string"}}}
M = TypeVar("M", bound=BaseModel)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_if_match(if_match: str | None, etag: str | None) -> None:
    """412 when the client's If-Match names another version. ``*`` matches any version.
    If-Match is optional (see README "HTTP API": without it the last writer wins)."""
    if if_match is None:
        return
    wanted = [tag.strip() for tag in if_match.split(",") if tag.strip()]
    if "*" in wanted or (etag is not None and etag in wanted):
        return
    raise ApiProblem(
        412,
        "The resource changed since you read it (If-Match does not match its ETag). "
        "Read it again and retry.",
        kind="precondition-failed",
    )


PATCH_ATTEMPTS = 3  # read-merge-write rounds before a PATCH without If-Match gives up (409)


class Versioned(Protocol):
    @property
    def etag(self) -> str | None: ...


V = TypeVar("V", bound=Versioned)
S = TypeVar("S")


def save_patched(
    load: Callable[[], V], save: Callable[[V], S], if_match: str | None, what: str
) -> S:
    """A PATCH's read-merge-write under the stored ETag. ``save(current)`` merges the change
    onto ``current`` and writes it with ``if_match=current.etag``. With If-Match the client's
    version must be the stored one (412 otherwise); without it a write that lost a race merges
    again onto the newer version, up to PATCH_ATTEMPTS times, then 409."""
    for _ in range(PATCH_ATTEMPTS):
        current = load()
        check_if_match(if_match, current.etag)
        try:
            return save(current)
        except PreconditionFailedError:
            if if_match is not None:
                raise
    raise ApiProblem(409, f"The {what} kept changing; try again.", kind="conflict")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def validate_document(model: type[M], document: Mapping[str, Any]) -> M:
    """Validate a merged document; errors become a 422 problem naming the fields."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(list(exc.errors())) from None


def next_link(path: str, continuation: str | None, **params: Any) -> str | None:
    if not continuation:
        return None
    query = {k: v for k, v in params.items() if v is not None}
    query["continuation"] = continuation
    return f"{path}?{urlencode(query)}"
