from __future__ import annotations

import pytest

from shared.sales.batch import BatchFormatError, BatchPart, build_batch, parse_batch


def test_build_uses_crlf_and_one_part_per_request() -> None:
    content_type, body = build_batch(
        [
            BatchPart(
                "GET",
                "/api/data/v9.2/contacts?$select=contactid",
                {"Prefer": "odata.maxpagesize=10"},
            ),
            BatchPart("POST", "/api/data/v9.2/AddListMembersList", {}, '{"a":1}'),
        ],
        boundary="batch_x",
    )
    assert content_type == "multipart/mixed; boundary=batch_x"
    text = body.decode()
    assert "\n" not in text.replace("\r\n", "")
    assert text.count("--batch_x\r\n") == 2 and text.endswith("--batch_x--\r\n")
    assert (
        "GET /api/data/v9.2/contacts?$select=contactid HTTP/1.1\r\nPrefer: odata.maxpagesize=10\r\n"
        in text
    )
    assert 'Content-Type: application/json; type=entry\r\n\r\n{"a":1}\r\n' in text


RESPONSE = (
    "--batchresponse_1\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "\r\n"
    '{"value":[{"contactid":"a"}]}\r\n'
    "--batchresponse_1\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
    "\r\n"
    "--changesetresponse_2\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-EntityId: https://x/api/data/v9.2/lists(1)\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_2--\r\n"
    "--batchresponse_1\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Retry-After: 3\r\n"
    "REQ_ID: r-9\r\n"
    "\r\n"
    '{"error":{"code":"0x80072322","message":"Number of requests exceeded"}}\r\n'
    "--batchresponse_1--\r\n"
)


def test_parse_flattens_change_sets_and_keeps_order() -> None:
    parts = parse_batch("multipart/mixed; boundary=batchresponse_1", RESPONSE.encode())
    assert [p.status for p in parts] == [200, 204, 429]
    assert parts[0].json() == {"value": [{"contactid": "a"}]}
    assert parts[1].headers["odata-entityid"].endswith("lists(1)")
    assert parts[1].json() is None
    assert parts[2].headers["retry-after"] == "3"
    assert parts[2].headers["req_id"] == "r-9"


def test_parse_tolerates_bare_newlines_and_quoted_boundary() -> None:
    text = RESPONSE.replace("\r\n", "\n")
    parts = parse_batch('multipart/mixed; boundary="batchresponse_1"', text.encode())
    assert [p.status for p in parts] == [200, 204, 429]


def test_parse_rejects_garbage() -> None:
    with pytest.raises(BatchFormatError):
        parse_batch("application/json", b"{}")
    with pytest.raises(BatchFormatError):
        parse_batch(
            "multipart/mixed; boundary=b",
            b"--b\r\nContent-Type: application/http\r\n\r\nnonsense\r\n--b--",
        )
