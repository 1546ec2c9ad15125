"""Parse uploaded segment members and customer rows (CSV or JSON). Pure: no I/O.

Rows are numbered 1-based by data record (a CSV header is not counted; JSON: array position),
the same numbering CustomerRepository.upsert_many uses, so errors from both line up.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from shared.store.customers import ID_COLUMN, RowError, row_problems
from shared.store.keys import text_problem
from shared.store.segments import MAX_ID_CHARS

CSV_TYPES = {"text/csv", "application/csv", "text/plain"}
JSON_TYPES = {"application/json", "text/json"}
MAX_ERRORS = 1000  # enough to explain a bad file; stop collecting beyond this


class ImportFormatError(ValueError):
    """The upload cannot be used; `errors` name row and field."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        shown = "; ".join(_describe(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{shown}{more}")


def _describe(error: RowError) -> str:
    where = f"row {error.row}" if error.row else "file"
    field = f", field {error.field!r}" if error.field else ""
    return f"{where}{field}: {error.message}"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFormatError(
            [RowError(0, "", f"not UTF-8 text (byte {error.start + 1})")]
        ) from error


def _kind(content_type: str | None) -> str:
    kind = media_type(content_type)
    if kind in CSV_TYPES or kind.endswith("+csv"):
        return "csv"
    if kind in JSON_TYPES or kind.endswith("+json"):
        return "json"
    raise ImportFormatError(
        [
            RowError(
                0,
                "",
                f"unsupported content type {kind or '(none)'!r}; use text/csv or application/json",
            )
        ]
    )


def _csv_records(text: str) -> list[list[str]]:
    try:
        return [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
    except csv.Error as error:
        raise ImportFormatError([RowError(0, "", f"malformed CSV: {error}")]) from error


def _id_column(header: list[str]) -> int | None:
    for index, name in enumerate(header):
        if name.strip().lower() == ID_COLUMN.lower():
            return index
    return None


# --- segment members --------------------------------------------------------------------------


def parse_segment_members(data: bytes, content_type: str | None) -> list[str]:
    """Member customer ids from CSV (a `CustomerId` column, or one id per line without a
    header) or JSON (an array of strings, or {"members": [...]}). Raises ImportFormatError."""
    kind = _kind(content_type)
    text = _text(data)
    ids = _json_members(text) if kind == "json" else _csv_members(text)
    problems = []
    for number, value in enumerate(ids, start=1):
        problem = text_problem(value, max_chars=MAX_ID_CHARS)
        if problem:
            problems.append(RowError(number, ID_COLUMN, f"customer id {problem}"))
        if len(problems) >= MAX_ERRORS:
            break
    if problems:
        raise ImportFormatError(problems)
    return ids


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        message = f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        raise ImportFormatError([RowError(0, "", message)]) from error
    except RecursionError:  # arrays or objects nested thousands deep: never a valid upload
        message = "malformed JSON: nested too deeply"
        raise ImportFormatError([RowError(0, "", message)]) from None


def _json_members(text: str) -> list[Any]:
    data = _load_json(text)
    if isinstance(data, Mapping):
        if set(data) != {"members"}:
            raise ImportFormatError(
                [RowError(0, "", 'a JSON object must have exactly one key, "members"')]
            )
        data = data["members"]
    if not isinstance(data, list):
        raise ImportFormatError(
            [RowError(0, "", 'expected a JSON array of customer ids or {"members": [...]}')]
        )
    errors = [
        RowError(n, ID_COLUMN, f"must be a string, got {type(v).__name__}")
        for n, v in enumerate(data, start=1)
        if not isinstance(v, str)
    ]
    if errors:
        raise ImportFormatError(errors[:MAX_ERRORS])
    return data


def _csv_members(text: str) -> list[str]:
    records = _csv_records(text)
    if not records:
        return []
    column = _id_column(records[0])
    if column is None:
        if len(records[0]) > 1:
            raise ImportFormatError(
                [RowError(0, ID_COLUMN, "CSV with several columns needs a CustomerId header")]
            )
        column, body = 0, records  # one id per line, no header
        errors = [
            RowError(n, ID_COLUMN, f"expected one value per line, got {len(r)}")
            for n, r in enumerate(body, start=1)
            if len(r) != 1
        ]
    else:
        body = records[1:]
        width = len(records[0])
        errors = [
            RowError(n, "", f"has {len(r)} fields; the header has {width}")
            for n, r in enumerate(body, start=1)
            if len(r) != width
        ]
    if errors:
        raise ImportFormatError(errors[:MAX_ERRORS])
    return [r[column].strip() for r in body]


# --- customer rows ----------------------------------------------------------------------------


def parse_customer_rows(
    data: bytes, content_type: str | None
) -> tuple[list[dict[str, Any]], list[RowError]]:
    """Customer rows from CSV (header row; empty cells are absent values; all values text) or a
    JSON array of objects (text, numbers, true/false, null). Returns the records and the problems
    found (no records when the file itself is malformed); write nothing unless there are no
    problems."""
    try:
        kind = _kind(content_type)
        text = _text(data)
        rows = _json_rows(text) if kind == "json" else _csv_rows(text)
    except ImportFormatError as error:
        return [], error.errors
    errors: list[RowError] = []
    for number, row in enumerate(rows, start=1):
        errors.extend(RowError(number, f, m) for f, m in row_problems(row))
        if len(errors) >= MAX_ERRORS:
            break
    return rows, errors


def _json_rows(text: str) -> list[dict[str, Any]]:
    data = _load_json(text)
    if not isinstance(data, list):
        raise ImportFormatError([RowError(0, "", "expected a JSON array of customer objects")])
    errors = [
        RowError(n, "", f"must be an object, got {type(v).__name__}")
        for n, v in enumerate(data, start=1)
        if not isinstance(v, dict)
    ]
    if errors:
        raise ImportFormatError(errors[:MAX_ERRORS])
    return data


def _csv_rows(text: str) -> list[dict[str, Any]]:
    records = _csv_records(text)
    if not records:
        raise ImportFormatError([RowError(0, "", "empty file: expected a header row")])
    # the id column is recognised in any letter case and stored as "CustomerId"
    header = [
        ID_COLUMN if name.strip().lower() == ID_COLUMN.lower() else name.strip()
        for name in records[0]
    ]
    if ID_COLUMN not in header:
        raise ImportFormatError([RowError(0, ID_COLUMN, "the header has no CustomerId column")])
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates:
        raise ImportFormatError(
            [RowError(0, d, "column appears more than once in the header") for d in duplicates]
        )
    rows: list[dict[str, Any]] = []
    errors: list[RowError] = []
    for number, record in enumerate(records[1:], start=1):
        if len(record) != len(header):
            errors.append(
                RowError(number, "", f"has {len(record)} fields; the header has {len(header)}")
            )
            rows.append({})
            continue
        row = {
            name: (value if value != "" else None)
            for name, value in zip(header, record, strict=True)
        }
        customer_id = row.get(ID_COLUMN)
        if isinstance(customer_id, str):
            row[ID_COLUMN] = customer_id.strip()
        rows.append(row)
    if errors:
        raise ImportFormatError(errors[:MAX_ERRORS])
    return rows
