"""Validation of a connection's Sales server address (pure; no I/O, no DNS).

Rules: https only; the host must match one of the allowed patterns (``*.dynamics.com`` matches
any subdomain, never the bare domain) and use port 443; loopback hosts (any port) only when
explicitly allowed (local emulator); no user info, no path other than "/", no query, no
fragment. The result is normalised: lower-case host, default port dropped, no trailing slash.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from shared.loopback import is_loopback

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
MAX_LENGTH = 2048


class AddressError(ValueError):
    """The address is not acceptable; the message says why (never repeats the address)."""


def host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.strip().lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]  # ".dynamics.com"
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def normalise_server_address(
    raw: str, allowed_hosts: Iterable[str], *, allow_loopback: bool = False
) -> str:
    """Return the normalised address or raise AddressError."""
    if not isinstance(raw, str) or not raw.strip():
        raise AddressError("must be an https URL such as https://contoso.crm.dynamics.com")
    value = raw.strip()
    if len(value) > MAX_LENGTH or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise AddressError("must be an https URL without spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise AddressError("is not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise AddressError("must use https")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise AddressError("must not contain user information")
    if parts.path not in ("", "/"):
        raise AddressError("must not contain a path (only the environment's root URL)")
    if parts.query or "?" in value:
        raise AddressError("must not contain a query")
    if parts.fragment or "#" in value:
        raise AddressError("must not contain a fragment")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise AddressError("must name a host")
    if is_loopback(host):
        if not allow_loopback:
            raise AddressError("must not be a loopback address")
    else:
        labels = host.split(".")
        if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
            raise AddressError("must have a valid DNS host name")
        if not any(host_matches(host, pattern) for pattern in allowed_hosts):
            raise AddressError(
                "must be a Dynamics 365 host (allowed: " + ", ".join(allowed_hosts) + ")"
            )
        if port is not None and port != 443:  # Dataverse listens on 443 only
            raise AddressError("must use the https port 443 (no other port on Sales hosts)")
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != 443:
        return f"https://{shown}:{port}"
    return f"https://{shown}"
