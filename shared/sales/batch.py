"""Pure ``$batch`` request building and response parsing (multipart/mixed, CRLF). No I/O.

Only independent requests are used (no change sets): inner GETs whose URLs may be up to 64 KB
because they travel in the body instead of the request line.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class BatchPart:
    method: str
    url: str  # absolute path, e.g. "/api/data/v9.2/contacts?$select=contactid"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass(frozen=True, slots=True)
class BatchPartResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> object:
        return json.loads(self.body) if self.body.strip() else None


class BatchFormatError(ValueError):
    """The $batch response could not be read."""


def build_batch(parts: Sequence[BatchPart], boundary: str | None = None) -> tuple[str, bytes]:
    """Return (Content-Type header value, body) for a $batch of independent requests."""
    boundary = boundary or f"batch_{uuid.uuid4()}"
    lines: list[str] = []
    for part in parts:
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            f"{part.method} {part.url} HTTP/1.1",
        ]
        headers = dict(part.headers)
        if part.body is not None:
            headers.setdefault("Content-Type", "application/json; type=entry")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append("")
        lines.append(part.body or "")
    lines.append(f"--{boundary}--")
    lines.append("")
    return f"multipart/mixed; boundary={boundary}", CRLF.join(lines).encode("utf-8")


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


def _boundary(content_type: str) -> str:
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise BatchFormatError(f"no boundary in Content-Type {content_type!r}")
    return match.group(1).strip()


def _split_headers(block: bytes) -> tuple[list[str], bytes]:
    """Header lines and the rest, split at the first empty line (CRLF or bare LF tolerated)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = block.find(sep)
        if index >= 0:
            head, rest = block[:index], block[index + len(sep) :]
            return head.decode("utf-8", "replace").splitlines(), rest
    return block.decode("utf-8", "replace").splitlines(), b""


def _parse_headers(lines: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _parts(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    parts: list[bytes] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break  # closing delimiter
        parts.append(chunk.removeprefix(b"\r\n").removeprefix(b"\n"))
    return parts


def _strip_trailing_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def parse_batch(content_type: str, body: bytes) -> list[BatchPartResponse]:
    """Parse a $batch response into inner responses, in order (change sets flattened)."""
    responses: list[BatchPartResponse] = []
    for part in _parts(body, _boundary(content_type)):
        head_lines, rest = _split_headers(part)
        part_headers = _parse_headers(head_lines)
        part_type = part_headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            responses.extend(parse_batch(part_type, rest))
            continue
        http_lines, payload = _split_headers(rest)
        if not http_lines:
            raise BatchFormatError("an inner response has no status line")
        status_line = http_lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise BatchFormatError(f"bad inner status line {http_lines[0]!r}")
        responses.append(
            BatchPartResponse(
                status=int(status_line[1]),
                headers=_parse_headers(http_lines[1:]),
                body=_strip_trailing_newline(payload),
            )
        )
    return responses
