"""Dataverse Web API client on httpx: headers, paging, $batch, throttling, retries, typed errors.

Service protection rules this client keeps (see reference/dataverse-web-api.md §7):
- 429: wait exactly ``Retry-After`` (exponential backoff when absent). The wait is a gate shared by
  every thread using the identity (limits are per user), so no request leaves before it elapses;
  then one probe request goes first and the rest follow only if it passes. Request starts are
  spaced (1.5x the fastest answer seen, 20 ms until there is one) so a 429 reaches us before
  the next request leaves: no burst lands on a server that has just blocked us.
- 502/503/504/408 and network errors (refused, reset, dropped mid-response): capped exponential
  backoff with jitter, then ``TransientSalesError``.
- 401: refresh the token once and re-send; a second 401 is an ``AuthenticationError``.
- No cookie jar, so the ARRAffinity cookie is never sent back and requests spread over servers.
- Parallel callers size their pools with ``dop`` = min(x-ms-dop-hint, configured maximum).
- A ``deadline`` (the caller's clock) bounds every wait: a gate wait, a Retry-After or a backoff
  that would end after it raises ``WaitBeyondDeadline`` instead of sleeping past it.
- The gate is a ``Gate`` Protocol: ``ThrottleGate`` serves one process; a gate shared by every
  process of an identity (``shared.runs.shared_budget``) is wired in by the caller, so this
  module never knows where the shared state lives.
Errors carry status, service error code, request id and a short body excerpt, never a token.
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import SplitResult, urlsplit

import httpx

from shared import telemetry
from shared.errors import (
    AuthenticationError,
    FatalSalesError,
    SalesError,
    SalesTimeoutError,
    TransientSalesError,
)
from shared.sales.auth import BearerAuth, TokenProvider, token_of
from shared.sales.batch import BatchPart, BatchPartResponse, build_batch, parse_batch
from shared.sales.odata import API_PATH

RETRIABLE_STATUS = frozenset({408, 502, 503, 504})
THROTTLED = 429
BODY_EXCERPT = 300
MAX_SPACING = 0.25  # seconds; upper bound of the adaptive spacing between request starts


class SalesNotFoundError(FatalSalesError):
    """404: the addressed record does not exist (e.g. a list deleted in Sales)."""


class SalesBadRequestError(FatalSalesError):
    """400-class refusal of one request (not auth, not throttling)."""


class WaitBeyondDeadline(TransientSalesError):
    """A wait for the throttling budget (gate, Retry-After, backoff) would end after the
    caller's deadline: the caller stops and resumes later instead of outliving its budget.
    ``wait_seconds`` is the wait it refused (resuming earlier only meets the same wait)."""

    def __init__(self, message: str, *, wait_seconds: float = 0.0) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


def check_wait(
    clock: Callable[[], float], deadline: float | None, seconds: float, why: str
) -> None:
    """Raise WaitBeyondDeadline when waiting ``seconds`` (> 0) from now would pass ``deadline``.
    No wait, no stop: a slice whose planning outlasted its budget still sends (and progresses)."""
    if deadline is not None and seconds > 0 and clock() + seconds > deadline:
        raise WaitBeyondDeadline(
            f"{why}: a wait of {seconds:.1f} s would end after the slice's deadline "
            f"({max(0.0, deadline - clock()):.1f} s left); stopping here, the next slice resumes",
            wait_seconds=seconds,
        )


class Gate(Protocol):
    """What the client needs from a throttling gate. ``enter`` blocks until a request may leave
    (True when it goes as the probe after a 429) and raises WaitBeyondDeadline rather than
    waiting past ``deadline``; ``leave`` reports its answer; ``close_for`` records a 429's wait;
    ``set_capacity`` tells the gate the requests the caller keeps in flight (its dop)."""

    spacing: float

    def enter(self, deadline: float | None = None) -> bool: ...

    def leave(self, probe: bool, *, throttled: bool) -> None: ...

    def close_for(self, seconds: float) -> None: ...

    def observe(self, seconds: float) -> None: ...

    def learn_latency(self, seconds: float) -> None: ...

    def set_capacity(self, requests: int) -> None: ...


class _NoCookies(httpx.BaseTransport):
    """Drops Set-Cookie before httpx stores it: no ARRAffinity stickiness to one web server."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if "set-cookie" in response.headers:
            del response.headers["set-cookie"]
        return response

    def close(self) -> None:
        self._inner.close()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 8
    backoff_base: float = 0.5  # seconds, doubled per attempt (5xx, network)
    backoff_cap: float = 30.0
    throttle_base: float = 2.0  # 2**n seconds when a 429 has no Retry-After
    throttle_cap: float = 300.0
    retry_after_margin: float = 0.0  # added to Retry-After (0: honour it exactly)
    start_spacing: float = 0.02  # seconds between request starts (see ThrottleGate)


class ThrottleGate:
    """Service protection is per user, so one gate serves every thread of an app identity.

    - ``close_for(seconds)``: a 429 moves ``not_before`` for all threads; nobody sends earlier.
    - After a 429 the gate reopens for ONE probe request only; the others wait for its answer
      and follow only if it was not throttled again. Releasing every waiting thread at the same
      instant would send a burst that can arrive after the server has already blocked us again.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        spacing: float = 0.0,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        # Minimum time between two request starts, so that a 429 answer reaches us before the
        # next request leaves and a throttle is not followed by a burst. A 429 comes back about
        # as fast as the fastest answers do (it costs the server nothing), so the gap is 1.5x
        # the fastest answer seen (``spacing`` until there is one), and at least 1.5x any 429
        # round trip seen.
        self.spacing = spacing
        self._fastest: float | None = None
        self._throttle_rtt = 0.0
        self._last_start = float("-inf")
        self._cond = threading.Condition()
        self._not_before = 0.0
        self._cautious = False  # after a 429: let one probe through before the rest
        self._probe_out = False

    def close_for(self, seconds: float) -> None:
        with self._cond:
            self._not_before = max(self._not_before, self._clock() + max(0.0, seconds))
            self._cautious = True
            self._cond.notify_all()

    def learn_latency(self, seconds: float) -> None:
        """A 429 took ``seconds`` to come back: keep starts at least 1.5 times that apart."""
        with self._cond:
            self._throttle_rtt = max(self._throttle_rtt, seconds)

    def observe(self, seconds: float) -> None:
        """Any answer took ``seconds`` from send to response."""
        with self._cond:
            if self._fastest is None or seconds < self._fastest:
                self._fastest = seconds

    def _gap(self) -> float:
        fastest = self.spacing / 1.5 if self._fastest is None else self._fastest
        return min(MAX_SPACING, 1.5 * max(fastest, self._throttle_rtt))

    def remaining(self) -> float:
        with self._cond:
            return self._not_before - self._clock()

    def set_capacity(self, requests: int) -> None:
        """In-process callers bound their own parallelism (pool sizes); nothing to do."""

    def enter(self, deadline: float | None = None) -> bool:
        """Block until this thread may send; True when it was let through as the probe.
        Raises WaitBeyondDeadline instead of waiting past ``deadline`` (this gate's clock)."""
        while True:
            with self._cond:
                now = self._clock()
                blocked = self._not_before - now
                remaining = max(self._not_before, self._last_start + self._gap()) - now
                if remaining <= 0:
                    if not self._cautious:
                        self._last_start = now
                        return False
                    if not self._probe_out:
                        self._probe_out = True
                        self._last_start = now
                        return True
                    self._cond.wait(timeout=1.0)  # the probe's answer (one request) wakes us
                    continue
            # Only a Retry-After can be long; the spacing gap is at most MAX_SPACING.
            check_wait(self._clock, deadline, blocked, "throttled (Retry-After)")
            self._sleep(remaining)

    def leave(self, probe: bool, *, throttled: bool) -> None:
        """Report the answer to a request let through by ``enter``."""
        if not probe:
            return
        with self._cond:
            self._probe_out = False
            if not throttled:
                self._cautious = False
            self._cond.notify_all()

    def wait(self) -> None:
        """Wait out the current block (no probe bookkeeping); for callers that do not send."""
        while (remaining := self.remaining()) > 0:
            self._sleep(remaining)


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, possibly fractional, or an HTTP date)."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError):
        return None


def request_id_of(headers: Mapping[str, str]) -> str | None:
    for name in ("REQ_ID", "x-ms-service-request-id", "x-ms-request-id"):
        value = headers.get(name)
        if value:
            return value
    return None


def _error_detail(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code")
    message = error.get("message")
    return (str(code) if code else None), (str(message) if message else None)


def error_for(status: int, headers: Mapping[str, str], body: bytes, context: str) -> SalesError:
    """A typed error for a failed Dataverse response (outer or inside $batch)."""
    code, message = _error_detail(body)
    excerpt = body[:BODY_EXCERPT].decode("utf-8", "replace")
    text = f"{context}: {message or 'HTTP ' + str(status)}"
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id_of(headers),
        "body_excerpt": excerpt,
    }
    if status == 401:
        return AuthenticationError(text, **kwargs)
    if status == 403:
        return FatalSalesError(
            text + " (the application user lacks a privilege: check its security role)", **kwargs
        )
    if status == 404:
        return SalesNotFoundError(text, **kwargs)
    if status == THROTTLED or status in RETRIABLE_STATUS:
        return TransientSalesError(text, **kwargs)
    if 400 <= status < 500:
        return SalesBadRequestError(text, **kwargs)
    return FatalSalesError(text, **kwargs)


def _origin(parts: SplitResult) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, case-insensitive and with the default
    port filled in; None for anything else (no host, user info, another scheme, a bad port)."""
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower().rstrip(".")
    return scheme, host, port if port is not None else (443 if scheme == "https" else 80)


class SalesClient:
    """One app identity against one Dataverse environment. Thread-safe."""

    def __init__(
        self,
        server_address: str,
        tokens: TokenProvider,
        *,
        verify: str | bool | ssl.SSLContext = True,
        max_parallel: int = 8,
        page_size: int = 5000,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        gate: Gate | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        dop_hint: int | None = None,
        deadline: float | None = None,
    ) -> None:
        self.server_address = server_address.rstrip("/")
        self.api_url = self.server_address + API_PATH
        self.tokens = tokens
        self.max_parallel = max(1, max_parallel)
        self.page_size = page_size
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        if gate is None:
            gate = ThrottleGate(clock=clock, sleep=sleep, spacing=self.retry.start_spacing)
        else:  # a gate shared across clients keeps what it learnt
            gate.spacing = max(gate.spacing, self.retry.start_spacing)
        self.gate: Gate = gate
        # No wait (gate, Retry-After, backoff) ends after this (``clock`` time); None: unbounded.
        self.deadline = deadline
        self._dop_hint = dop_hint
        self._dop_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self.requests_sent = 0  # outer HTTP requests, for diagnostics and tests
        limits = httpx.Limits(
            max_connections=self.max_parallel + 2,
            max_keepalive_connections=self.max_parallel + 2,
        )
        if isinstance(verify, str):  # a CA file to trust (the local emulator)
            verify = ssl.create_default_context(cafile=verify)
        inner = transport or httpx.HTTPTransport(verify=verify, limits=limits)
        self.gate.set_capacity(self.dop)
        self._http = httpx.Client(
            base_url=self.api_url,
            auth=BearerAuth(tokens),
            timeout=timeout,
            transport=_NoCookies(inner),
            follow_redirects=False,
            headers={
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                "If-None-Match": "null",
            },
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SalesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def clock(self) -> Callable[[], float]:
        """The monotonic clock deadlines are measured with (injectable for tests)."""
        return self._clock

    # --- parallelism -------------------------------------------------------------------------

    @property
    def dop_hint(self) -> int | None:
        return self._dop_hint

    @property
    def dop(self) -> int:
        """Requests to keep in flight: the server's hint, capped by our own maximum."""
        hint = self._dop_hint
        return max(1, min(self.max_parallel, hint)) if hint else self.max_parallel

    def ensure_dop(self) -> int:
        """Learn x-ms-dop-hint (one WhoAmI) unless some response already carried it."""
        if self._dop_hint is None:
            self.who_am_i()
        return self.dop

    def _note(self, response: httpx.Response) -> None:
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.strip().isdigit():
            with self._dop_lock:
                changed = self._dop_hint != max(1, int(hint.strip()))
                self._dop_hint = max(1, int(hint.strip()))
            if changed:
                self.gate.set_capacity(self.dop)

    # --- sending -----------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.retry.backoff_cap, self.retry.backoff_base * (2 ** (attempt - 1)))
        return ceiling * (0.5 + 0.5 * self._rng())  # "equal jitter": never zero, never in step

    def _throttle_delay(self, response: httpx.Response, attempt: int) -> float:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            return retry_after + self.retry.retry_after_margin
        return min(self.retry.throttle_cap, self.retry.throttle_base**attempt)

    def _check_origin(self, url: str) -> None:
        # nextLinks come from the server; never send our token anywhere else. Anything that is
        # not a plain relative path must have our scheme, host and port, compared parsed.
        parts = urlsplit(url.strip())
        if not parts.scheme and not parts.netloc:
            return  # relative to the Web API root
        if _origin(parts) is None or _origin(parts) != _origin(urlsplit(self.server_address)):
            raise FatalSalesError(
                f"Sales returned a link to another host: {parts.hostname or parts.netloc!r}"
            )

    def send(
        self,
        method: str,
        url: str,
        *,
        json_body: object | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry_unsafe: bool = True,
        context: str = "",
        reads_only: bool = False,
    ) -> httpx.Response:
        """Send one request with the retry rules above. ``url`` is relative to the Web API root
        or absolute (nextLink). ``retry_unsafe=False`` makes network errors and 5xx final (for
        requests that must not run twice, such as creating a record). A write (any method but
        GET, unless ``reads_only``: a $batch of GETs) that times out is not sent again: it raises
        SalesTimeoutError."""
        self._check_origin(url)
        context = context or f"{method} {url.split('?', 1)[0]}"
        request_headers = dict(headers or {})
        body = content
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode("utf-8")
            request_headers.setdefault("Content-Type", "application/json")
        attempt = 0
        refreshed = False
        while True:
            probe = self.gate.enter(self.deadline)
            with self._counter_lock:
                self.requests_sent += 1
            started = self._clock()
            try:
                response = self._http.request(method, url, content=body, headers=request_headers)
            except httpx.TransportError as exc:
                telemetry.sales_request(
                    method, url, status=None, seconds=self._clock() - started,
                    error=type(exc).__name__,
                )  # fmt: skip
                self.gate.leave(probe, throttled=False)
                writes = method.upper() != "GET" and not reads_only
                if isinstance(exc, httpx.TimeoutException) and writes:
                    # The write may still be running in Sales, and may land: sending it again
                    # would run it twice at once, beyond the parallelism Sales allows. Its
                    # outcome is unknown; the caller re-reads what landed (next slice).
                    raise SalesTimeoutError(
                        f"{context}: no answer within SALES_TIMEOUT_SECONDS "
                        f"({self.timeout:g} s); outcome unknown"
                    ) from exc
                attempt += 1
                if not retry_unsafe or attempt > self.retry.max_retries:
                    raise TransientSalesError(
                        f"{context}: network error ({type(exc).__name__}), {attempt} attempt(s)"
                    ) from None
                self._pause(self._backoff(attempt), context)
                continue
            except BaseException:
                self.gate.leave(probe, throttled=False)
                raise
            elapsed = self._clock() - started
            throttled = response.status_code == THROTTLED
            if throttled:
                # Close the gate (here and, through a shared gate, in every other worker)
                # before anything else, so no other request leaves meanwhile.
                self.gate.close_for(self._throttle_delay(response, attempt + 1))
                self.gate.learn_latency(elapsed)
            self.gate.observe(elapsed)
            if telemetry.enabled():
                telemetry.sales_request(
                    method, url, status=response.status_code, seconds=self._clock() - started,
                    throttled=throttled,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )  # fmt: skip
            self.gate.leave(probe, throttled=throttled)
            self._note(response)
            status = response.status_code
            if status < 400:
                return response
            if status == 401 and not refreshed:
                refreshed = True
                used = token_of(response.request)
                if used is not None:
                    self.tokens.invalidate(used)
                continue
            if status == THROTTLED:
                attempt += 1
                if attempt > self.retry.max_retries:
                    raise error_for(status, response.headers, response.content, context)
                continue
            if status in RETRIABLE_STATUS and retry_unsafe:
                attempt += 1
                if attempt <= self.retry.max_retries:
                    self._pause(self._backoff(attempt), context)
                    continue
            raise error_for(status, response.headers, response.content, context)

    def _pause(self, seconds: float, context: str) -> None:
        """Back off before a retry, unless that would outlive the deadline."""
        check_wait(self._clock, self.deadline, seconds, f"{context}: backing off before a retry")
        self._sleep(seconds)

    # --- conveniences ------------------------------------------------------------------------

    def get_json(self, url: str, *, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = self.send("GET", url, headers=headers)
        data = response.json()
        if not isinstance(data, dict):
            raise FatalSalesError(f"GET {url.split('?', 1)[0]}: unexpected response shape")
        return data

    def iter_pages(
        self, url: str, *, page_size: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield each page's ``value`` rows, following ``@odata.nextLink`` unchanged."""
        prefer = {"Prefer": f"odata.maxpagesize={page_size or self.page_size}"}
        next_url: str | None = url
        while next_url:
            data = self.get_json(next_url, headers=prefer)
            rows = data.get("value", [])
            yield rows if isinstance(rows, list) else []
            link = data.get("@odata.nextLink")
            next_url = str(link) if link else None

    def who_am_i(self) -> dict[str, Any]:
        return self.get_json("WhoAmI")

    def post_action(self, action: str, body: Mapping[str, object], *, context: str = "") -> None:
        self.send("POST", action, json_body=body, context=context or action)

    def batch(self, parts: Sequence[BatchPart]) -> list[BatchPartResponse]:
        """One $batch of independent parts (``Prefer: odata.continue-on-error``), responses in
        order. Inner 429/5xx parts are re-sent in a new batch (after the shared gate) up to the
        retry limit; other inner errors are returned for the caller to judge."""
        results: list[BatchPartResponse | None] = [None] * len(parts)
        pending = list(range(len(parts)))
        attempt = 0
        while pending:
            content_type, body = build_batch([parts[i] for i in pending])
            headers = {"Content-Type": content_type, "Prefer": "odata.continue-on-error"}
            response = self.send(
                "POST",
                "$batch",
                content=body,
                headers=headers,
                context="$batch",
                reads_only=all(parts[i].method.upper() == "GET" for i in pending),
            )
            inner = parse_batch(response.headers.get("Content-Type", ""), response.content)
            if len(inner) != len(pending):
                raise FatalSalesError(
                    f"$batch: expected {len(pending)} responses, got {len(inner)}",
                    status=response.status_code,
                    request_id=request_id_of(response.headers),
                )
            retry_next: list[int] = []
            throttle = 0.0
            for index, part_response in zip(pending, inner, strict=True):
                status = part_response.status
                if status == THROTTLED or status in RETRIABLE_STATUS:
                    retry_next.append(index)
                    if status == THROTTLED:
                        after = parse_retry_after(part_response.headers.get("retry-after"))
                        if after is None:
                            after = min(self.retry.throttle_cap, self.retry.throttle_base**attempt)
                        throttle = max(throttle, after)
                else:
                    results[index] = part_response
            if not retry_next:
                break
            attempt += 1
            if attempt > self.retry.max_retries:
                raise TransientSalesError(
                    f"$batch: {len(retry_next)} inner request(s) still throttled or unavailable"
                )
            if throttle:
                self.gate.close_for(throttle + self.retry.retry_after_margin)
            else:
                self._pause(self._backoff(attempt), "$batch")
            pending = retry_next
        return [r for r in results if r is not None]
