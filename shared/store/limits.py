"""Azure Table Storage limits, enforced before writing (Azurite checks them only partly).

Entity size uses Azure's formula: 4 + 2*len(PartitionKey + RowKey) + sum over properties of
(8 + 2*len(name) + value size); string = 4 + 2*UTF-16 units, binary = 4 + bytes, int32 4,
int64/double/datetime 8, guid 16, bool 1.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime

from shared.errors import StoreLimitError
from shared.store.keys import check_key, utf16_units

MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTY_BYTES = 64 * 1024
MAX_CUSTOM_PROPERTIES = 252
MAX_BATCH_OPERATIONS = 100  # per transaction (one partition); Azurite mis-reports larger ones
MAX_BATCH_BYTES = 4 * 1024 * 1024  # request payload of one transaction
MAX_STRING_UNITS = MAX_PROPERTY_BYTES // 2  # UTF-16 code units in one string property
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
SYSTEM_PROPERTIES = frozenset({"PartitionKey", "RowKey", "Timestamp"})


def property_name_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return "column names must be strings"
    if not _PROPERTY_NAME.fullmatch(name):
        return (
            "is not a valid column name: start with a letter or underscore, then letters, "
            "digits or underscores, at most 255 characters"
        )
    if name in SYSTEM_PROPERTIES:
        return "is reserved by Table Storage"
    return None


def value_size(value: object) -> int:
    """Bytes one property value occupies by Azure's formula (ValueError for unsupported types)."""
    if isinstance(value, tuple):  # EntityProperty(value, edm_type)
        value = value[0]
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        if INT32_MIN <= value <= INT32_MAX:
            return 4
        if INT64_MIN <= value <= INT64_MAX:
            return 8
        raise ValueError("integer does not fit in 64 bits")
    if isinstance(value, float | datetime):
        return 8
    if isinstance(value, str):
        return 4 + 2 * utf16_units(value)
    if isinstance(value, bytes | bytearray):
        return 4 + len(value)
    if isinstance(value, uuid.UUID):
        return 16
    raise ValueError(f"unsupported property type {type(value).__name__}")


def property_problem(name: str, value: object) -> str | None:
    """Why one property can't be stored, or None."""
    try:
        size = value_size(value)
    except ValueError as error:
        return str(error)
    if isinstance(value, str) and size - 4 > MAX_PROPERTY_BYTES:
        return (
            f"value is {size - 4} bytes (UTF-16); Table Storage allows at most "
            f"{MAX_PROPERTY_BYTES} bytes per property"
        )
    if isinstance(value, bytes | bytearray) and len(value) > MAX_PROPERTY_BYTES:
        return f"value is {len(value)} bytes; at most {MAX_PROPERTY_BYTES} bytes per property"
    return None


def entity_size(entity: Mapping[str, object]) -> int:
    size = 4 + 2 * (
        utf16_units(str(entity.get("PartitionKey", "")))
        + utf16_units(str(entity.get("RowKey", "")))
    )
    for name, value in entity.items():
        if name in SYSTEM_PROPERTIES or value is None:
            continue
        size += 8 + 2 * len(name) + value_size(value)
    return size


def check_entity(entity: Mapping[str, object], what: str) -> int:
    """Raise StoreLimitError naming the field if `entity` breaks a limit; return its size."""
    check_key(str(entity["PartitionKey"]), f"{what}: PartitionKey")
    check_key(str(entity["RowKey"]), f"{what}: RowKey")
    custom = [n for n, v in entity.items() if n not in SYSTEM_PROPERTIES and v is not None]
    if len(custom) > MAX_CUSTOM_PROPERTIES:
        raise StoreLimitError(
            f"{what}: {len(custom)} properties; Table Storage allows at most "
            f"{MAX_CUSTOM_PROPERTIES} per entity"
        )
    largest, largest_size = "", 0
    for name in custom:
        value = entity[name]
        problem = property_problem(name, value)
        if problem:
            raise StoreLimitError(f"{what}: field {name!r}: {problem}")
        size = value_size(value)
        if size > largest_size:
            largest, largest_size = name, size
    total = entity_size(entity)
    if total > MAX_ENTITY_BYTES:
        raise StoreLimitError(
            f"{what}: entity is {total} bytes; Table Storage allows at most {MAX_ENTITY_BYTES} "
            f"bytes per entity (largest field {largest!r}: {largest_size} bytes)"
        )
    return total


def json_chars(text: str) -> int:
    """Characters `text` takes in the SDK's JSON (non-ASCII is sent as \\uXXXX escapes)."""
    if text.isascii():
        return len(text) + 2
    return 2 + sum(1 if ord(c) < 128 else 6 if ord(c) < 0x10000 else 12 for c in text)


def payload_estimate(entity: Mapping[str, object]) -> int:
    """Upper-bound-ish bytes of one entity in a batch body: the larger of Azure's (UTF-16)
    size and the escaped JSON, plus per-property overhead for type annotations."""
    body = 512  # sub-request line and headers
    for name, value in entity.items():
        if value is None:
            continue
        raw = value[0] if isinstance(value, tuple) else value
        body += 2 * len(name) + 40
        body += json_chars(raw) if isinstance(raw, str) else 32
    return max(body, entity_size(entity))
