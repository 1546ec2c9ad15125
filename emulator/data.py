"""Deterministic, storage-free synthetic contacts.

Contact ``i`` (0-based) of a data set with seed ``seed`` has a GUID that callers can compute without
querying: the high 64 bits are a per-seed prefix (with the UUID version nibble 4), the low 64 bits
are
the RFC 4122 variant bits ``10`` followed by a keyed 62-bit Feistel permutation of ``i``. The
mapping is
invertible, so a million contacts cost no memory: existence is "decodes to an index < N and not
deleted". Whether a contact is inactive is a seeded hash of ``i`` compared with the fraction.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from functools import lru_cache

_HALF_BITS = 31
_HALF_MASK = (1 << _HALF_BITS) - 1
_LOW_MASK = (1 << 62) - 1
_ROUNDS = 4
GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


_M64 = (1 << 64) - 1


@lru_cache(maxsize=64)
def _keys(seed: int) -> tuple[int, tuple[int, ...], int]:
    digest = hashlib.blake2b(f"emulator-prefix:{seed}".encode(), digest_size=8).digest()
    prefix = int.from_bytes(digest, "big")
    # Version nibble (bits 12..15 of the third group) = 4, like a random UUID.
    prefix = (prefix & ~(0xF << 12)) | (0x4 << 12)
    keys = tuple(
        int.from_bytes(
            hashlib.blake2b(f"emulator-round:{seed}:{r}".encode(), digest_size=8).digest(), "big"
        )
        for r in range(_ROUNDS)
    )
    inactive_key = int.from_bytes(
        hashlib.blake2b(f"emulator-inactive:{seed}".encode(), digest_size=8).digest(), "big"
    )
    return prefix, keys, inactive_key


def _mix(x: int) -> int:
    """A fast 64-bit integer mixer (splitmix64 finaliser); speed matters, secrecy does not."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _permute(i: int, keys: tuple[int, ...]) -> int:
    left, right = i >> _HALF_BITS, i & _HALF_MASK
    for key in keys:
        left, right = right, left ^ (_mix(right ^ key) & _HALF_MASK)
    return (left << _HALF_BITS) | right


def _unpermute(x: int, keys: tuple[int, ...]) -> int:
    left, right = x >> _HALF_BITS, x & _HALF_MASK
    for key in reversed(keys):
        left, right = right ^ (_mix(left ^ key) & _HALF_MASK), left
    return (left << _HALF_BITS) | right


def _format(value: int) -> str:
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def contact_id(i: int, seed: int) -> str:
    """GUID (lower-case string) of synthetic contact number ``i``."""
    if not 0 <= i <= _LOW_MASK:
        raise ValueError("contact index out of range")
    prefix, keys, _ = _keys(seed)
    low = (0b10 << 62) | _permute(i, keys)
    return _format((prefix << 64) | low)


def contact_index(guid: str, seed: int) -> int | None:
    """Inverse of :func:`contact_id`; None when the GUID is not a synthetic id of this seed.

    ``guid`` must already be a valid GUID string (see :func:`normalize_guid`)."""
    value = int(guid.replace("-", ""), 16)
    prefix, keys, _ = _keys(seed)
    if value >> 64 != prefix or (value >> 62) & 0b11 != 0b10:
        return None
    return _unpermute(value & _LOW_MASK, keys)


def is_inactive(i: int, seed: int, fraction: float) -> bool:
    """Whether synthetic contact ``i`` is inactive (statecode 1); seeded, independent of order."""
    if fraction <= 0.0:
        return False
    return _mix(i ^ _keys(seed)[2]) / 2**64 < fraction


def derived_guid(seed: int, name: str) -> str:
    """A stable GUID for emulator identities (tenant, client, organization...)."""
    return str(
        uuid.UUID(
            bytes=hashlib.blake2b(f"{name}:{seed}".encode(), digest_size=16).digest(), version=4
        )
    )


def normalize_guid(text: str) -> str | None:
    """Lower-case canonical form, or None if ``text`` is not a plain 8-4-4-4-12 GUID."""
    if not GUID_RE.match(text):
        return None
    return text.lower()
