"""Names people give things (segments, exports, connections): one rule (issue 11 #12).

A name is normalised to NFC (so "Café" typed two ways is one name) and refuses characters that
change how text looks without being seen: format characters (Unicode category Cf: bidi
overrides and isolates, zero-width space/joiners, BOM, soft hyphen), controls (Cc), line and
paragraph separators and lone surrogates.
"""

from __future__ import annotations

import unicodedata

_REFUSED = {
    "Cf": "an invisible formatting character",
    "Cc": "a control character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate",
}


def clean_name(value: str) -> str:
    """The NFC form of ``value``; ValueError naming the first refused character (by code
    point, never by echoing the text)."""
    text = unicodedata.normalize("NFC", value)
    for ch in text:
        what = _REFUSED.get(unicodedata.category(ch))
        if what:
            raise ValueError(f"must not contain {what} (U+{ord(ch):04X})")
    return text
