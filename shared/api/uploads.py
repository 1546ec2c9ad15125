"""Upload bodies (segment members, customer rows) as JSON or CSV, parsed by the store's import
parsers (``shared.store.imports``) and turned into problems: 415 for another media type, 400 for
a file that cannot be parsed, 422 naming each bad row and field. Nothing is written when
anything is wrong, and no problem echoes a value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.api.problems import ApiProblem

MAX_LISTED_ERRORS = 50
ACCEPTED = ("application/json", "text/json", "text/csv", "application/csv", "text/plain")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_media_type(content_type: str | None) -> None:
    kind = media_type(content_type)
    if kind in ACCEPTED or kind.endswith(("+json", "+csv")):
        return
    raise ApiProblem(
        415,
        f"Send application/json or text/csv (got {kind or 'no Content-Type'}).",
        kind="unsupported-media-type",
    )


def _where(row: int, field: str) -> str:
    place = f"row {row}" if row else "file"
    return place + (f".{field}" if field else "")


def rows_problem(errors: Sequence[Any], what: str) -> ApiProblem:
    """One problem for the parser's/store's RowErrors (1-based data rows; row 0 = the file)."""
    listed = [{"field": _where(e.row, e.field), "message": e.message} for e in errors]
    file_level = all(e.row == 0 and not e.field for e in errors)
    malformed = file_level and any(
        e.message.startswith(("malformed", "not UTF-8", "empty file")) for e in errors
    )
    shown = listed[:MAX_LISTED_ERRORS]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in shown[:5])
    more = len(listed) - 5
    detail = (
        f"The {what} was rejected ({len(listed)} problem(s); nothing was written): {summary}"
        + (f"; and {more} more" if more > 0 else "")
    )
    if malformed:
        return ApiProblem(
            400, detail, kind="malformed-body", title="Malformed request body", errors=shown
        )
    return ApiProblem(
        422, detail, kind="rejected-file", title="The file was rejected", errors=shown
    )


def read_segment_members(content_type: str | None, body: bytes) -> list[str]:
    """Member customer ids: a JSON array, {"members": [...]}, or CSV (CustomerId column, or one
    id per line without a header)."""
    from shared.store.imports import ImportFormatError, parse_segment_members  # lazy: heavy

    check_media_type(content_type)
    try:
        return parse_segment_members(body, content_type)
    except ImportFormatError as exc:
        raise rows_problem(exc.errors, "member list") from None


def read_customer_rows(content_type: str | None, body: bytes) -> list[Mapping[str, object]]:
    """Customer rows: a JSON array of objects, or CSV with a header row (empty cell = absent)."""
    from shared.store.imports import parse_customer_rows  # lazy: heavy

    check_media_type(content_type)
    rows, errors = parse_customer_rows(body, content_type)
    if errors:
        raise rows_problem(errors, "customer file")
    return list(rows)
