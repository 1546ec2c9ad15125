"""Webhook addresses and delivery: the only part of shared/notify that does network I/O.

Address rules (server-side request forgery): https on port 443 to a public host name; no user
info; IP literals only if globally routable. Loopback (http or https, any port) only when
``ALLOW_LOOPBACK_WEBHOOKS=true`` (local development and tests). Before sending, a host name is
resolved and refused if any address is not global (private, link-local such as the instance
metadata endpoint, loopback...). Redirects are never followed (a 3xx is a failed delivery).

Delivery: a few attempts with backoff on network errors, 408, 429 (``Retry-After`` honoured when
it fits) and 5xx, all within the caller's deadline. Error texts name the kind of failure, never
the URL (it is a secret: whoever has it can post to the channel).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

MAX_URL = 2048
ATTEMPTS = 3
BACKOFF = (1.0, 3.0)  # seconds before the 2nd and 3rd attempts
ATTEMPT_TIMEOUT = 5.0  # seconds, capped by what is left of the deadline
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}

Resolver = Callable[[str], list[str]]


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookAddressError(ValueError):
    """The webhook URL is not acceptable; the message says why and never repeats the URL."""


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


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


def send(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    deadline: float,
    allow_loopback: bool,
    transport: httpx.BaseTransport | None = None,
    resolver: Resolver = resolve,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """POST the body, retrying with backoff within ``deadline`` (a ``clock()`` value)."""
    try:
        host, loopback = check_url(url, allow_loopback=allow_loopback)
        if not loopback:
            check_resolved(host, resolver)
    except WebhookAddressError as exc:
        return Delivery(False, 0, error=f"webhook URL {exc}")
    attempts = 0
    status: int | None = None
    error = "no time left to send"
    with httpx.Client(transport=transport, follow_redirects=False, trust_env=False) as client:
        for attempt in range(ATTEMPTS):
            left = deadline - clock()
            if left <= 0.05:
                break
            attempts += 1
            retry_after: float | None = None
            try:
                response = client.post(
                    url.strip(), content=body, headers=headers, timeout=min(ATTEMPT_TIMEOUT, left)
                )
            except httpx.TimeoutException:
                status, error = None, "timed out"
            except httpx.HTTPError as exc:
                status, error = None, f"could not connect ({type(exc).__name__})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return Delivery(True, attempts, status)
                error = f"answered HTTP {status}"
                if status not in _RETRY_STATUS:
                    return Delivery(False, attempts, status, error)
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt + 1 >= ATTEMPTS:
                break
            wait = retry_after if retry_after is not None else BACKOFF[attempt]
            if clock() + wait >= deadline:
                error += "; no time left to retry"
                break
            sleep(wait)
    return Delivery(False, attempts, status, error)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: use our own backoff
    return max(0.0, seconds)
