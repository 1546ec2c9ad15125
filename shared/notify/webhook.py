"""Webhook delivery: the only part of shared/notify that does network I/O.

The address is checked first (shared/notify/address.py), its host name resolved and refused if
any address is not global. Redirects are never followed (a 3xx is a failed delivery).

Delivery: a few attempts with backoff on network errors, 408, 429 (``Retry-After`` honoured when
it fits) and 5xx, all within the caller's deadline. Error texts name the kind of failure, never
the URL (it is a secret: whoever has it can post to the channel).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shared.notify.address import Resolver, WebhookAddressError, check_resolved, check_url, resolve

ATTEMPTS = 3
BACKOFF = (1.0, 3.0)  # seconds before the 2nd and 3rd attempts
ATTEMPT_TIMEOUT = 5.0  # seconds, capped by what is left of the deadline
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


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
