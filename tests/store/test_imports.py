"""Parsing uploads: CSV and JSON, strict, errors naming row and field."""

from __future__ import annotations

import pytest

from shared.store import ImportFormatError, RowError, Store
from shared.store.imports import parse_customer_rows, parse_segment_members


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (b"CustomerId,Name\nc1,x\n c2 ,y\n", "text/csv", ["c1", "c2"]),
        (b"\xef\xbb\xbfcustomerid\nc1\nc1\n", "text/csv; charset=utf-8", ["c1", "c1"]),
        (b"c1\nc2\n\nc3\n", "text/plain", ["c1", "c2", "c3"]),
        (b'"a,b"\nc\n', "text/csv", ["a,b", "c"]),
        (b'["c1", "c/2"]', "application/json", ["c1", "c/2"]),
        (b'{"members": ["c1"]}', "application/json", ["c1"]),
        (b"", "text/csv", []),
        (b"[]", "application/json", []),
    ],
)
def test_parse_segment_members(data: bytes, content_type: str, expected: list[str]) -> None:
    assert parse_segment_members(data, content_type) == expected


@pytest.mark.parametrize(
    ("data", "content_type", "row", "field"),
    [
        (b"Name,Email\nx,y\n", "text/csv", 0, "CustomerId"),
        (b'CustomerId\n"unterminated\n', "text/csv", 0, ""),
        (b"CustomerId,Name\nc1\n", "text/csv", 1, ""),
        (b"CustomerId\nc1\n\x01bad\n", "text/csv", 2, "CustomerId"),
        (b'["c1", 7]', "application/json", 2, "CustomerId"),
        (b'["c1", ""]', "application/json", 2, "CustomerId"),
        (b'{"people": []}', "application/json", 0, ""),
        (b"[1,", "application/json", 0, ""),
        (b"\xff\xfe", "text/csv", 0, ""),
        (b"c1", "application/xml", 0, ""),
    ],
)
def test_bad_member_uploads_name_row_and_field(
    data: bytes, content_type: str, row: int, field: str
) -> None:
    with pytest.raises(ImportFormatError) as caught:
        parse_segment_members(data, content_type)
    assert (caught.value.errors[0].row, caught.value.errors[0].field) == (row, field)
    assert str(caught.value)


def test_parse_customer_rows_csv_and_json() -> None:
    rows, errors = parse_customer_rows(
        b"customerid,ContactId,Email\nc1,0000,a@x\n c2 ,,\n", "text/csv"
    )
    assert errors == []
    assert rows == [
        {"CustomerId": "c1", "ContactId": "0000", "Email": "a@x"},
        {"CustomerId": "c2", "ContactId": None, "Email": None},
    ]
    rows, errors = parse_customer_rows(
        b'[{"CustomerId": "c1", "Score": 3, "Vip": true, "Ratio": 0.5, "Gone": null}]',
        "application/json",
    )
    assert errors == []
    assert rows == [{"CustomerId": "c1", "Score": 3, "Vip": True, "Ratio": 0.5, "Gone": None}]


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (
            b"Name\nx\n",
            "text/csv",
            RowError(0, "CustomerId", "the header has no CustomerId column"),
        ),
        (b"CustomerId,A,A\nc,1,2\n", "text/csv", (0, "A")),
        (b"CustomerId,A\nc\n", "text/csv", (1, "")),
        (b"CustomerId,bad col\nc,1\n", "text/csv", (1, "bad col")),
        (b'[{"CustomerId": "c"}, {"Name": "x"}]', "application/json", (2, "CustomerId")),
        (b'[{"CustomerId": "c", "Tags": ["a"]}]', "application/json", (1, "Tags")),
        (b'[{"CustomerId": "c", "Nested": {"a": 1}}]', "application/json", (1, "Nested")),
        (b'[{"CustomerId": 5}]', "application/json", (1, "CustomerId")),
        (b'["c1"]', "application/json", (1, "")),
        (b'{"CustomerId": "c"}', "application/json", (0, "")),
        (b"", "text/csv", (0, "")),
    ],
)
def test_bad_customer_uploads_name_row_and_field(
    data: bytes, content_type: str, expected: tuple[int, str] | RowError
) -> None:
    _, errors = parse_customer_rows(data, content_type)
    assert errors
    if isinstance(expected, RowError):
        assert errors[0] == expected
    else:
        assert (errors[0].row, errors[0].field) == expected


def test_parsed_file_with_a_bad_row_writes_nothing(store: Store) -> None:
    data = b"CustomerId,ContactId\n" + b"".join(b"c%d,x%d\n" % (n, n) for n in range(150))
    data += b"c150,\x01\n"  # a control character is allowed in a value, not in an id
    data += b"\x02,x\n"
    rows, errors = parse_customer_rows(data, "text/csv")
    assert [(e.row, e.field) for e in errors] == [(152, "CustomerId")]
    report = store.customers.upsert_many(rows)  # validated again by the store: nothing written
    assert report.upserted == 0 and [(e.row, e.field) for e in report.errors] == [
        (152, "CustomerId")
    ]
    assert store.customers.get("c0") is None
    rows, errors = parse_customer_rows(data.rsplit(b"\x02", 1)[0], "text/csv")
    assert errors == []
    assert store.customers.upsert_many(rows).upserted == 151
