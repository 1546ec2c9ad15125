"""Packing validated customer rows into staged chunks for a background import. Pure: no I/O.

A chunk is a run of whole rows: the unit the import worker writes and checkpoints. Its rows are
JSON lines (ASCII-only JSON: ``\\uXXXX`` escapes, so one character is one UTF-16 unit and one
byte of the SDK's request body), cut into string properties of at most _PROPERTY_UNITS units;
at most _PROPERTIES_PER_PART properties make one entity ("part"), which keeps a part under
Table Storage's 64 KiB-per-property and 1 MiB-per-entity limits (shared/store/limits.py checks
each part before it is written). A chunk whose rows do not fit one part spans several (one
customer row may itself be close to 1 MiB), so no row is ever split between chunks.

Why Table Storage and not a blob: the app already reaches Table Storage with the one
identity and role it has (no azure-storage-blob dependency, no container to provision), and
chunks are bounded (CHUNK_ROWS rows or CHUNK_CHARS characters), so a 300,000-row file is a
few dozen entities, as a million segment members are (shared/store/segments.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

CHUNK_ROWS = 5_000  # rows per chunk: ~3-4 s of writing at Azurite's measured rate (bench/)
CHUNK_CHARS = 2_000_000  # JSON characters per chunk (several parts when rows are wide)
_PROPERTY_UNITS = 32_000  # per property (limit 32,768 UTF-16 units = 64 KiB)
_PROPERTIES_PER_PART = 15  # 15 * ~64 KB stays under 1 MiB with room for names and keys

Part = list[str]  # the string properties P0..Pn of one entity


def row_text(row: Mapping[str, object]) -> str:
    """One row as one line of ASCII JSON (newlines inside values are escaped)."""
    return json.dumps(row, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def chunk_lines(rows: Iterable[Mapping[str, object]]) -> Iterator[list[str]]:
    """Rows -> chunks of JSON lines: at most CHUNK_ROWS rows and (unless one row alone is
    larger) CHUNK_CHARS characters each."""
    current: list[str] = []
    chars = 0
    for row in rows:
        line = row_text(row)
        if current and (len(current) >= CHUNK_ROWS or chars + len(line) + 1 > CHUNK_CHARS):
            yield current
            current, chars = [], 0
        current.append(line)
        chars += len(line) + 1
    if current:
        yield current


def pack_lines(lines: Sequence[str]) -> list[Part]:
    """One chunk's lines -> parts (entities) -> properties of <= _PROPERTY_UNITS characters."""
    text = "\n".join(lines)
    pieces = [text[i : i + _PROPERTY_UNITS] for i in range(0, len(text), _PROPERTY_UNITS)]
    return [
        pieces[i : i + _PROPERTIES_PER_PART] for i in range(0, len(pieces), _PROPERTIES_PER_PART)
    ] or [[""]]


def unpack_parts(parts: Sequence[Part], expected_rows: int) -> list[dict[str, Any]]:
    """Parts of one chunk (in order) -> its rows; ValueError if they do not add up."""
    text = "".join(piece for part in parts for piece in part)
    rows = [json.loads(line) for line in text.split("\n")] if text else []
    if len(rows) != expected_rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"staged chunk holds {len(rows)} rows, its record says {expected_rows}")
    return rows
