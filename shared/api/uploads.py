"""Reading upload bodies (segment members, customer rows) as JSON or CSV.

Content negotiation and error reporting live here; every problem names the row/field and
never echoes a value. Nothing is written when anything is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.api.problems import ApiProblem

MAX_LISTED_ERRORS = 50


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(kind: str) -> bool:
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def unsupported(kind: str) -> ApiProblem:
    return ApiProblem(
        415,
        f"Send application/json or text/csv (got {kind or 'no Content-Type'}).",
        kind="unsupported-media-type",
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise ApiProblem(
            400,
            "The request body is not valid JSON.",
            kind="malformed-body",
            title="Malformed request body",
            errors=[{"field": "body", "message": "not valid JSON"}],
        ) from None


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiProblem(
            400,
            "The CSV is not UTF-8 text.",
            kind="malformed-body",
            title="Malformed request body",
            errors=[{"field": "body", "message": "not UTF-8"}],
        ) from None


def rows_problem(errors: list[Mapping[str, str]], what: str) -> ApiProblem:
    shown = list(errors[:MAX_LISTED_ERRORS])
    more = len(errors) - len(shown)
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in shown[:5])
    return ApiProblem(
        422,
        f"The {what} was rejected ({len(errors)} problem(s); nothing was written): {summary}"
        + (f"; and {more} more" if more > 0 else ""),
        kind="rejected-file",
        title="The file was rejected",
        errors=shown,
    )


def read_segment_members(content_type: str | None, body: bytes) -> list[str]:
    from shared.store import imports

    kind = media_type(content_type)
    if _is_json(kind):
        document = _json(body)
        if isinstance(document, Mapping):
            extra = sorted(set(document) - {"members"})
            if extra or "members" not in document:
                raise ApiProblem(
                    422,
                    'Send a JSON array of customer IDs or {"members": [...]}.',
                    kind="validation",
                    errors=[
                        {
                            "field": extra[0] if extra else "members",
                            "message": "unknown field" if extra else "required",
                        }
                    ],
                )
            document = document["members"]
        if not isinstance(document, list):
            raise ApiProblem(
                422,
                'Send a JSON array of customer IDs or {"members": [...]}.',
                kind="validation",
                errors=[{"field": "members", "message": "must be an array of strings"}],
            )
        parsed = imports.members_from_values(document)
    elif kind == "text/csv":
        parsed = imports.members_from_csv(_text(body))
    else:
        raise unsupported(kind)
    if parsed.errors:
        raise rows_problem([_err(e) for e in parsed.errors], "member list")
    return list(parsed.values)


def read_customer_rows(content_type: str | None, body: bytes) -> list[dict[str, Any]]:
    from shared.store import imports

    kind = media_type(content_type)
    if _is_json(kind):
        document = _json(body)
        if not isinstance(document, list):
            raise ApiProblem(
                422,
                "Send a JSON array of customer rows (objects with a CustomerId).",
                kind="validation",
                errors=[{"field": "body", "message": "must be an array of objects"}],
            )
        parsed = imports.customers_from_values(document)
    elif kind == "text/csv":
        parsed = imports.customers_from_csv(_text(body))
    else:
        raise unsupported(kind)
    if parsed.errors:
        raise rows_problem([_err(e) for e in parsed.errors], "customer file")
    return list(parsed.values)


def _err(error: Any) -> dict[str, str]:
    row = getattr(error, "row", None)
    field = getattr(error, "field", None)
    where = f"rows[{row}]" if row is not None else "body"
    if field:
        where += f".{field}"
    return {"field": where, "message": str(getattr(error, "message", error))}
