"""Webhook address rules (SSRF) and delivery: retries with backoff, Retry-After, no redirects,
bounded by a deadline, errors that never repeat the URL. httpx.MockTransport; fake clock."""

from __future__ import annotations

import httpx
import pytest

from shared.notify.address import WebhookAddressError, check_resolved, check_url
from shared.notify.webhook import send

SECRET_URL = "https://hooks.example.org/services/T000/B000/SECRETPART"


@pytest.mark.parametrize(
    ("url", "loopback_allowed", "why"),
    [
        ("http://hooks.example.org/x", False, "https"),
        ("https://hooks.example.org:8443/x", False, "443"),
        ("https://user:pw@hooks.example.org/x", False, "user information"),
        ("https://10.1.2.3/x", False, "private"),
        ("https://169.254.169.254/metadata", False, "link-local"),
        ("https://[fd00::1]/x", False, "private"),
        ("https://intranet/x", False, "fully qualified"),
        ("http://127.0.0.1:8080/x", False, "loopback"),
        ("http://localhost:8080/x", False, "loopback"),
        ("ftp://127.0.0.1/x", True, "https"),
        ("", False, "empty"),
        ("https://exa mple.org/x", False, "spaces"),
    ],
)
def test_refused_addresses_say_why(url: str, loopback_allowed: bool, why: str) -> None:
    with pytest.raises(WebhookAddressError, match=why) as caught:
        check_url(url, allow_loopback=loopback_allowed)
    assert "SECRETPART" not in str(caught.value)


def test_accepted_addresses() -> None:
    assert check_url(SECRET_URL, allow_loopback=False) == ("hooks.example.org", False)
    assert check_url("http://127.0.0.1:9/x", allow_loopback=True) == ("127.0.0.1", True)
    assert check_url("https://[::1]:9/x", allow_loopback=True) == ("::1", True)


def test_a_host_name_resolving_to_a_private_address_is_refused() -> None:
    with pytest.raises(WebhookAddressError, match="resolves"):
        check_resolved("hooks.example.org", lambda host: ["93.184.215.14", "10.0.0.5"])
    check_resolved("hooks.example.org", lambda host: ["93.184.215.14"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def deliver(
    answers: list[int | Exception], *, deadline: float = 60.0, headers: dict[str, str] | None = None
) -> tuple[object, list[httpx.Request], Clock]:
    seen: list[httpx.Request] = []
    clock = Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0) if answers else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, headers=headers or {})

    result = send(
        SECRET_URL,
        b'{"a":1}',
        {"Content-Type": "application/json"},
        deadline=deadline,
        allow_loopback=False,
        transport=httpx.MockTransport(handler),
        resolver=lambda host: ["93.184.215.14"],
        sleep=clock.sleep,
        clock=clock,
    )
    return result, seen, clock


def test_delivered_first_time() -> None:
    result, seen, clock = deliver([202])
    assert (result.delivered, result.attempts, result.status_code) == (True, 1, 202)  # type: ignore[attr-defined]
    assert seen[0].content == b'{"a":1}' and clock.sleeps == []


def test_transient_failures_are_retried_with_backoff() -> None:
    result, _, clock = deliver([503, httpx.ConnectError("refused"), 200])
    assert (result.delivered, result.attempts) == (True, 3)  # type: ignore[attr-defined]
    assert clock.sleeps == [1.0, 3.0]


def test_retry_after_is_honoured() -> None:
    result, _, clock = deliver([429, 200], headers={"Retry-After": "2"})
    assert result.delivered and clock.sleeps == [2.0]  # type: ignore[attr-defined]


def test_client_errors_and_redirects_are_not_retried_and_not_followed() -> None:
    for status in (400, 404, 302):
        result, seen, _ = deliver([status])
        assert (result.delivered, result.attempts, result.status_code) == (False, 1, status)  # type: ignore[attr-defined]
        assert len(seen) == 1


def test_gives_up_after_three_attempts_and_never_names_the_url() -> None:
    result, seen, _ = deliver([500, 500, 500, 200])
    assert (result.delivered, result.attempts, len(seen)) == (False, 3, 3)  # type: ignore[attr-defined]
    assert "SECRETPART" not in (result.error or "")  # type: ignore[attr-defined]


def test_the_deadline_bounds_retries() -> None:
    # 1 s backoff fits before the 2 s deadline, the next 3 s does not
    result, seen, _ = deliver([500, 500, 200], deadline=2.0)
    assert (result.delivered, len(seen)) == (False, 2)  # type: ignore[attr-defined]
    assert "no time left" in (result.error or "")  # type: ignore[attr-defined]


def test_a_refused_address_sends_nothing() -> None:
    calls: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    result = send(
        "https://10.0.0.1/x", b"{}", {}, deadline=60, allow_loopback=False,
        transport=httpx.MockTransport(handler),
    )  # fmt: skip
    assert not result.delivered and result.attempts == 0 and calls == []
    assert "private" in (result.error or "")
