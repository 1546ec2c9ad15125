"""Webhook addresses (server-side request forgery rules). No network I/O except ``resolve``.

https on port 443 to a public, fully qualified host name; no user info; IP literals only if
globally routable. Loopback (http or https, any port) only when ``ALLOW_LOOPBACK_WEBHOOKS=true``
(local development and tests). Before sending, a host name is resolved and refused if any of its
addresses is not global (private, link-local such as the instance metadata endpoint, loopback).
Messages never repeat the URL (it is a secret: whoever has it can post to the channel).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from shared.loopback import is_loopback

MAX_URL = 2048

Resolver = Callable[[str], list[str]]


class WebhookAddressError(ValueError):
    """The webhook URL is not acceptable; the message says why and never repeats the URL."""


def check_url(url: str, *, allow_loopback: bool) -> tuple[str, bool]:
    """(host, is_loopback) of an acceptable webhook URL, or WebhookAddressError. No I/O."""
    if not isinstance(url, str) or not url.strip():
        raise WebhookAddressError("is empty")
    value = url.strip()
    if len(value) > MAX_URL or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise WebhookAddressError("is too long or contains spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise WebhookAddressError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise WebhookAddressError("must not contain user information")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise WebhookAddressError("must name a host")
    if is_loopback(host):
        if not allow_loopback:
            raise WebhookAddressError(
                "must not be a loopback address (allowed only with ALLOW_LOOPBACK_WEBHOOKS=true, "
                "for local development)"
            )
        if scheme not in ("http", "https"):
            raise WebhookAddressError("must use https (or http on loopback)")
        return host, True
    if scheme != "https":
        raise WebhookAddressError("must use https")
    if port is not None and port != 443:
        raise WebhookAddressError("must use port 443")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not literal.is_global:
        raise WebhookAddressError("must not point at a private, link-local or reserved address")
    if literal is None and "." not in host:
        raise WebhookAddressError("must use a fully qualified host name")
    return host, False


def resolve(host: str) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)]


def check_resolved(host: str, resolver: Resolver = resolve) -> None:
    """Refuse a host name that resolves to a non-global address (e.g. 169.254.169.254)."""
    try:
        addresses = resolver(host)
    except OSError:
        raise WebhookAddressError("host name does not resolve") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global:
            raise WebhookAddressError("resolves to a private, link-local or reserved address")
