"""Table Storage keys: validation and a reversible, readable encoding of user data.

Azure forbids ``/ \\ # ?`` and control characters (U+0000-U+001F, U+007F-U+009F) in PartitionKey
and RowKey and limits each key to 1 KiB (UTF-16, i.e. 512 code units). Names and ids that users
choose are encoded by escaping the forbidden characters (plus ``%``, which real Azure mishandles
in URLs, and our escape character ``~``) as ``~XX``; everything else stays readable. Control
characters are not encodable: they are rejected as invalid user data.
"""

from __future__ import annotations

import re

from shared.errors import StoreLimitError

MAX_KEY_BYTES = 1024  # per key, UTF-16
_ESCAPED = frozenset("/\\#?%~")
# control characters Azure forbids in keys, and lone surrogates (not encodable as UTF-8)
_BAD_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
SEPARATOR = "~~"  # never produced by encode_key: "~" is always followed by two hex digits


def is_control(ch: str) -> bool:
    code = ord(ch)
    return code <= 0x1F or 0x7F <= code <= 0x9F


def utf16_units(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def text_problem(value: object, *, max_chars: int | None = None) -> str | None:
    """Why `value` cannot be used as an id or name, or None if it can."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if value == "":
        return "must not be empty"
    bad = _BAD_CHAR.search(value)
    if bad is not None:
        ch = bad.group()
        if is_control(ch):
            return f"contains a control character (U+{ord(ch):04X}) at position {bad.start() + 1}"
        return "is not valid Unicode text (lone surrogate)"
    if max_chars is not None and len(value) > max_chars:
        return f"is {len(value)} characters long; at most {max_chars} are allowed"
    return None


def encode_key(value: str, what: str = "key") -> str:
    """Encode user text as a key part; raises StoreLimitError naming `what` if impossible."""
    problem = text_problem(value)
    if problem:
        raise StoreLimitError(f"{what} {problem}")
    if _ESCAPED.isdisjoint(value):
        encoded = value
    else:
        encoded = "".join(f"~{ord(ch):02X}" if ch in _ESCAPED else ch for ch in value)
    check_key(encoded, what)
    return encoded


def try_encode_key(value: object) -> str | None:
    """The encoded key, or None when `value` could never have been stored (lookups: not found)."""
    if not isinstance(value, str):
        return None
    try:
        return encode_key(value)
    except StoreLimitError:
        return None


def decode_key(key: str) -> str:
    if "~" not in key:
        return key
    out: list[str] = []
    i = 0
    while i < len(key):
        ch = key[i]
        if ch == "~":
            hex_digits = key[i + 1 : i + 3]
            if len(hex_digits) != 2 or any(c not in "0123456789ABCDEF" for c in hex_digits):
                raise ValueError(f"malformed key escape at position {i}")
            out.append(chr(int(hex_digits, 16)))
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def join_keys(*parts: str) -> str:
    """Compose already-encoded parts unambiguously."""
    return SEPARATOR.join(parts)


def check_key(key: str, what: str = "key") -> None:
    size = 2 * utf16_units(key)
    if size > MAX_KEY_BYTES:
        raise StoreLimitError(
            f"{what} is too long for a Table Storage key: {size} bytes (UTF-16, after escaping); "
            f"at most {MAX_KEY_BYTES} bytes are allowed"
        )
