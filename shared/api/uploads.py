"""Reading upload bodies (segment members, customer rows) as JSON or CSV.

Content negotiation and error reporting live here; every problem names the row/field and
never echoes a value. Nothing is written when anything is wrong.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from shared.api.problems import ApiProblem

ID_COLUMN = "CustomerId"
MAX_ID_CHARS = 256

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


def _csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and data rows (blank lines skipped); 400 for CSV that cannot be parsed."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), strict=True) if row]
    except csv.Error as exc:
        raise ApiProblem(
            400,
            f"The CSV cannot be parsed ({exc}).",
            kind="malformed-body",
            title="Malformed request body",
            errors=[{"field": "body", "message": "malformed CSV"}],
        ) from None
    if not rows:
        raise ApiProblem(
            422,
            "The CSV is empty; it needs a header row with a CustomerId column.",
            kind="validation",
            errors=[{"field": "body", "message": "empty CSV"}],
        )
    header = [name.strip() for name in rows[0]]
    return header, rows[1:]


def _id_column(header: list[str]) -> int:
    for index, name in enumerate(header):
        if name.lower() == ID_COLUMN.lower():
            return index
    raise ApiProblem(
        422,
        "The CSV needs a header row with a CustomerId column.",
        kind="validation",
        errors=[{"field": ID_COLUMN, "message": "missing column in the header row"}],
    )


def read_segment_members(content_type: str | None, body: bytes) -> list[str]:
    """Member customer ids from a JSON array, {"members": [...]} or a CSV with CustomerId."""
    from shared.store.keys import text_problem  # lazy: the store package is heavy to import

    kind = media_type(content_type)
    errors: list[dict[str, str]] = []
    if _is_json(kind):
        document = _json(body)
        if isinstance(document, Mapping):
            extra = sorted(str(k) for k in set(document) - {"members"})
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
        members = []
        for index, value in enumerate(document):
            problem = text_problem(value, max_chars=MAX_ID_CHARS)
            if problem:
                errors.append({"field": f"members[{index}]", "message": problem})
            else:
                members.append(value)
    elif kind == "text/csv":
        header, rows = _csv_rows(_text(body))
        column = _id_column(header)
        members = []
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            value = row[column].strip() if column < len(row) else ""
            problem = text_problem(value, max_chars=MAX_ID_CHARS)
            if problem:
                errors.append({"field": f"line {number}.{ID_COLUMN}", "message": problem})
            else:
                members.append(value)
    else:
        raise unsupported(kind)
    if errors:
        raise rows_problem(errors, "member list")
    return members


def read_customer_rows(content_type: str | None, body: bytes) -> list[Mapping[str, object]]:
    """Customer rows from a JSON array of objects or a CSV with a header row. Row-level checks
    (CustomerId present, value types, column names, sizes) are the store's, all-or-nothing."""
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
        return document
    if kind != "text/csv":
        raise unsupported(kind)
    header, rows = _csv_rows(_text(body))
    _id_column(header)
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated or any(not name for name in header):
        raise ApiProblem(
            422,
            "The CSV header must name every column once.",
            kind="validation",
            errors=[{"field": "header", "message": "duplicate or empty column name"}],
        )
    errors: list[dict[str, str]] = []
    parsed: list[Mapping[str, object]] = []
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            errors.append(
                {
                    "field": f"line {number}",
                    "message": f"has {len(row)} cells; the header has {len(header)}",
                }
            )
            continue
        # An empty cell is "no value" (the column is absent for this customer).
        cells = zip(header, row, strict=True)
        parsed.append({name: (cell if cell != "" else None) for name, cell in cells})
    if errors:
        raise rows_problem(errors, "customer file")
    return parsed


def report_problem(report: Any, *, from_csv: bool) -> ApiProblem:
    """422 from the store's ImportReport errors (1-based rows; nothing was written)."""

    def where(row: int, field: str) -> str:
        place = f"line {row + 1}" if from_csv else f"[{row - 1}]"  # CSV line 1 is the header
        return place + (f".{field}" if field else "")

    return rows_problem(
        [{"field": where(e.row, e.field), "message": e.message} for e in report.errors],
        "customer file",
    )
