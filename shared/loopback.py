"""The one rule for "is this host this machine?" (Sales server addresses, webhook targets,
sign-in redirect URIs). Pure: no DNS, so a name is loopback only if it is one of the local names."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str | None) -> bool:
    """True for a local host name or any loopback IP literal (127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
