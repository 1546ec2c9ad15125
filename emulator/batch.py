"""OData $batch (multipart/mixed) for the emulator [S2].

* At most ``max_batch_parts`` requests in total (change-set members included), else 400.
* No nested $batch; no GET inside a change set (400 for the whole batch).
* Parts run sequentially; responses come back in request order with CRLF line breaks and the
  request's Content-ID echoed.
* A change set is atomic: if any of its requests fails, everything it did is rolled back and the
  change set is answered by that single error response.
* Without ``Prefer: odata.continue-on-error`` the batch stops at the first failure and the outer
  status is the failing status, with only that error part in the body (as the reference describes);
  with it, the outer status is 200 and every part has its own response.
* The batch counts as ONE request for service protection; its modeled cost is the sum of its parts'
  costs. Parts are neither throttled nor fault-injected individually (UNCONFIRMED in the reference).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from emulator.odata import CODE_INVALID_ARGUMENT, ApiError, bad_request
from emulator.webapi import API_PREFIX, ApiRequest, ApiResponse

if TYPE_CHECKING:
    from emulator.webapi import WebApi, _Query

_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)


@dataclass
class _Op:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None


@dataclass
class _ChangeSet:
    ops: list[_Op] = field(default_factory=list)


class _Rollback(Exception):
    def __init__(self, response: ApiResponse, op: _Op):
        super().__init__("change set failed")
        self.response = response
        self.op = op


def _boundary(content_type: str) -> str:
    m = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/mixed") or m is None:
        raise bad_request(
            "A $batch request needs Content-Type: multipart/mixed; boundary=...",
            CODE_INVALID_ARGUMENT,
        )
    return m.group(1).strip()


def _split(body: bytes, boundary: str) -> list[bytes]:
    """Body parts between delimiter lines (RFC 2046: the CRLF before a delimiter belongs to it)."""
    delim = b"--" + boundary.encode("latin-1")
    parts: list[bytes] = []
    current: list[bytes] | None = None
    closed = False
    for line in body.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n").rstrip(b" \t")
        if bare == delim:
            if current is not None:
                parts.append(_chop(b"".join(current)))
            current = []
            continue
        if bare == delim + b"--":
            if current is not None:
                parts.append(_chop(b"".join(current)))
            closed = True
            break
        if current is not None:
            current.append(line)
    if not closed:
        raise bad_request(
            "The $batch body is missing its closing boundary delimiter.", CODE_INVALID_ARGUMENT
        )
    return parts


def _chop(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def _headers_and_rest(data: bytes) -> tuple[dict[str, str], bytes]:
    headers: dict[str, str] = {}
    lines = data.split(b"\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip(b"\r")
        i += 1
        if not line:
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise bad_request(
                f"Malformed header line in $batch part: '{name}'.", CODE_INVALID_ARGUMENT
            )
        headers[name.strip().lower()] = value.strip()
    return headers, b"\n".join(lines[i:])


def _parse_op(data: bytes) -> _Op:
    mime, rest = _headers_and_rest(data)
    if mime.get("content-type", "").lower() != "application/http":
        raise bad_request(
            "Each $batch part must have Content-Type: application/http.", CODE_INVALID_ARGUMENT
        )
    if mime.get("content-transfer-encoding", "binary").lower() != "binary":
        raise bad_request(
            "$batch parts must use Content-Transfer-Encoding: binary.", CODE_INVALID_ARGUMENT
        )
    request_line, _, after = rest.partition(b"\n")
    words = request_line.decode("latin-1").strip().split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise bad_request("Malformed request line in a $batch part.", CODE_INVALID_ARGUMENT)
    headers, body = _headers_and_rest(after)
    return _Op(words[0].upper(), words[1], headers, body, mime.get("content-id"))


def parse_batch(body: bytes, content_type: str) -> list[_Op | _ChangeSet]:
    items: list[_Op | _ChangeSet] = []
    for part in _split(body, _boundary(content_type)):
        mime, rest = _headers_and_rest(part)
        ctype = mime.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            cs = _ChangeSet()
            for inner in _split(rest, _boundary(ctype)):
                inner_mime, _ = _headers_and_rest(inner)
                if inner_mime.get("content-type", "").lower().startswith("multipart/"):
                    raise bad_request("Change sets cannot be nested.", CODE_INVALID_ARGUMENT)
                op = _parse_op(inner)
                if op.method == "GET":
                    raise bad_request(
                        "GET requests are not allowed inside a change set.", CODE_INVALID_ARGUMENT
                    )
                cs.ops.append(op)
            items.append(cs)
        else:
            items.append(_parse_op(part))
    return items


def _target(api: WebApi, url: str, refs: dict[str, str], max_len: int) -> str:
    if len(url) > max_len:
        raise ApiError(
            414, CODE_INVALID_ARGUMENT, f"The URL of a $batch part exceeds {max_len} characters."
        )
    if url.startswith("$"):
        ref, _, rest = url[1:].partition("/")
        if ref not in refs:
            raise bad_request(
                f"Content-ID Reference: '${ref}' does not exist in the batch context."
            )
        return refs[ref] + ("/" + rest if rest else "")
    if url.startswith(api.service_root):
        return url[len(api.service_root) :]
    if url.startswith(("http://", "https://")):
        raise bad_request(f"The $batch part URL '{url[:100]}' is not on this service.")
    if url.startswith(API_PREFIX):
        return url[len(API_PREFIX) :]
    if url.startswith("/"):
        raise bad_request(f"The $batch part URL '{url[:100]}' is not a Web API URL.")
    return url


def execute_batch(api: WebApi, req: ApiRequest, q: _Query) -> ApiResponse:
    items = parse_batch(req.body, req.headers.get("content-type", ""))
    total = sum(len(i.ops) if isinstance(i, _ChangeSet) else 1 for i in items)
    limit = api.cfg.max_batch_parts
    if total > limit:
        raise bad_request(
            f"The number of requests in a batch ({total}) exceeds the maximum of {limit}.",
            CODE_INVALID_ARGUMENT,
        )
    cont = q.prefs.continue_on_error
    out = ApiResponse(200, "batch")
    parts: list[bytes] = []

    def run(op: _Op, refs: dict[str, str]) -> ApiResponse:
        try:
            target = _target(api, op.url, refs, api.cfg.max_batch_inner_url_length)
            sub = ApiRequest(op.method, target, op.headers, op.body, req.principal, in_batch=True)
            resp = api.handle(sub)
        except ApiError as err:
            resp = ApiResponse(err.status, "other", err.body(), {"OData-Version": "4.0"})
        out.cost += resp.cost
        out.rows += resp.rows
        if api.on_batch_op is not None:
            api.on_batch_op(resp.kind, resp.status)
        return resp

    for item in items:
        if isinstance(item, _Op):
            resp = run(item, {})
            out.added += resp.added
            out.removed += resp.removed
            part = _http_part(resp, item.content_id)
            if resp.is_error() and not cont:
                return _finish(out, [part], resp.status, cont)
            parts.append(part)
            continue
        refs: dict[str, str] = {}
        done: list[tuple[_Op, ApiResponse]] = []
        try:
            with api.state.transaction():
                for op in item.ops:
                    resp = run(op, refs)
                    if resp.is_error():
                        raise _Rollback(resp, op)
                    done.append((op, resp))
                    entity = resp.headers.get("OData-EntityId", "")
                    if op.content_id and entity.startswith(api.service_root):
                        refs[op.content_id] = entity[len(api.service_root) :]
        except _Rollback as rb:
            part = _http_part(rb.response, rb.op.content_id)
            if not cont:
                return _finish(out, [part], rb.response.status, cont)
            parts.append(part)
            continue
        for _, resp in done:
            out.added += resp.added
            out.removed += resp.removed
        parts.append(_changeset_part(done))
    return _finish(out, parts, 200, cont)


def _finish(out: ApiResponse, parts: list[bytes], status: int, cont: bool) -> ApiResponse:
    boundary = f"batchresponse_{uuid.uuid4()}"
    out.status = status
    out.body = _multipart(boundary, parts)
    out.headers["Content-Type"] = f"multipart/mixed; boundary={boundary}"
    if cont:
        out.headers["Preference-Applied"] = "odata.continue-on-error"
    return out


def _multipart(boundary: str, parts: list[bytes]) -> bytes:
    chunks = [b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts]
    return b"".join(chunks) + b"--" + boundary.encode() + b"--\r\n"


def _changeset_part(done: list[tuple[_Op, ApiResponse]]) -> bytes:
    boundary = f"changesetresponse_{uuid.uuid4()}"
    inner = _multipart(boundary, [_http_part(r, op.content_id) for op, r in done])
    return f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode() + inner.rstrip(
        b"\r\n"
    )


def _http_part(resp: ApiResponse, content_id: str | None) -> bytes:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    try:
        reason = HTTPStatus(resp.status).phrase
    except ValueError:
        reason = "Unknown"
    head += ["", f"HTTP/1.1 {resp.status} {reason}"]
    body = b""
    if resp.body is not None:
        body = resp.body if isinstance(resp.body, bytes) else _json(resp.body)
    for name, value in resp.headers.items():
        head.append(f"{name}: {value}")
    head.append("")
    return ("\r\n".join(head) + "\r\n").encode() + body


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
