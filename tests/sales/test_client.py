from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from shared.errors import (
    AuthenticationError,
    FatalSalesError,
    SalesTimeoutError,
    TransientSalesError,
)
from shared.sales.batch import BatchPart
from shared.sales.client import (
    MAX_SPACING,
    RetryPolicy,
    SalesClient,
    SalesNotFoundError,
    ThrottleGate,
    WaitBeyondDeadline,
    parse_retry_after,
)
from tests.sales.conftest import FakeTime, StaticTokens
from tests.sales.fakes import BASE, FakeDataverse, FakeList, guid

MakeClient = Callable[..., SalesClient]


def _throttle(retry_after: str | None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(
        429,
        json={"error": {"code": "0x80072322", "message": "Number of requests exceeded"}},
        headers=headers,
    )


def test_paging_follows_next_link_with_max_page_size(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(12)
    fake.lists["l"] = FakeList(
        "00000000-0000-0000-0000-00000000000a", "x", members={guid(i) for i in range(12)}
    )
    fake.lists = {v.id: v for v in fake.lists.values()}
    client = make_client(fake, page_size=5)
    pages = list(
        client.iter_pages(
            "lists(00000000-0000-0000-0000-00000000000a)/listcontact_association?$select=contactid"
        )
    )
    assert [len(p) for p in pages] == [5, 5, 2]
    assert all(r.headers["Prefer"] == "odata.maxpagesize=5" for r in fake.requests)
    assert f"$skiptoken={sorted(guid(i) for i in range(12))[9]}" in str(fake.requests[-1].url)


def test_no_affinity_cookie_is_sent_back(make_client: MakeClient) -> None:
    fake = FakeDataverse()
    client = make_client(fake)
    client.who_am_i()
    client.who_am_i()  # the fake asserts no Cookie header; Set-Cookie came on the first answer
    assert len(fake.requests) == 2


def test_dop_from_hint_capped_by_our_maximum(make_client: MakeClient) -> None:
    fake = FakeDataverse(dop_hint=16)
    client = make_client(fake, max_parallel=6)
    assert client.dop_hint is None
    assert client.ensure_dop() == 6
    assert client.ensure_dop() == 6 and fake.count("whoami") == 1  # learnt once
    fake2 = FakeDataverse(dop_hint=2)
    assert make_client(fake2, max_parallel=6).ensure_dop() == 2


def test_429_waits_exactly_retry_after_then_succeeds(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    fake = FakeDataverse()
    answers = [_throttle("7"), None]
    fake.hook = lambda request, kind: answers.pop(0)
    sent_at: list[float] = []
    original = fake.handle

    def recording(request: httpx.Request) -> httpx.Response:
        sent_at.append(fake_time.clock())
        return original(request)

    client = make_client(fake, transport=httpx.MockTransport(recording))
    assert client.who_am_i()["UserId"]
    assert fake_time.sleeps == [7.0]
    assert sent_at[1] - sent_at[0] == 7.0


def test_429_without_retry_after_backs_off_exponentially(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    fake = FakeDataverse()
    answers = [_throttle(None), _throttle(None), _throttle(None), None]
    fake.hook = lambda request, kind: answers.pop(0)
    client = make_client(fake)
    client.who_am_i()
    assert fake_time.sleeps == [2.0, 4.0, 8.0]


def test_429_closes_the_gate_for_every_thread(make_client: MakeClient, fake_time: FakeTime) -> None:
    """Thread B's request must not leave before thread A's Retry-After has elapsed."""
    fake = FakeDataverse()
    first = threading.Event()
    throttled_once = [False]
    sent: list[tuple[str, float]] = []

    def hook(request: httpx.Request, kind: str) -> httpx.Response | None:
        sent.append((threading.current_thread().name, fake_time.clock()))
        if not throttled_once[0]:
            throttled_once[0] = True
            return _throttle("30")
        return None

    fake.hook = hook
    client = make_client(fake)

    def a() -> None:
        client.who_am_i()
        first.set()

    def b() -> None:
        while not throttled_once[0]:
            pass
        client.who_am_i()

    ta = threading.Thread(target=a, name="A")
    tb = threading.Thread(target=b, name="B")
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    assert throttled_once[0]
    throttle_time = sent[0][1]
    assert all(t >= throttle_time + 30 for _, t in sent[1:]), sent


def test_gate_waits_for_the_latest_deadline(fake_time: FakeTime) -> None:
    gate = ThrottleGate(clock=fake_time.clock, sleep=fake_time.sleep)
    gate.close_for(5)
    gate.close_for(2)  # a shorter wait never shortens the gate
    gate.wait()
    assert fake_time.sleeps == [5.0]


def test_throttling_beyond_the_retry_limit_is_transient(make_client: MakeClient) -> None:
    fake = FakeDataverse()
    fake.hook = lambda request, kind: _throttle("1")
    client = make_client(fake, retry=RetryPolicy(max_retries=2))
    with pytest.raises(TransientSalesError) as info:
        client.who_am_i()
    assert info.value.status == 429 and info.value.code == "0x80072322"
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_retry_with_capped_jittered_backoff(
    make_client: MakeClient, fake_time: FakeTime, status: int
) -> None:
    fake = FakeDataverse()
    answers: list[httpx.Response | None] = [httpx.Response(status)] * 3 + [None]
    fake.hook = lambda request, kind: answers.pop(0)
    client = make_client(fake, retry=RetryPolicy(max_retries=5, backoff_base=1.0, backoff_cap=3.0))
    client.who_am_i()
    # rng() = 0.5 -> 75% of the ceiling: 1, 2, then capped at 3
    assert fake_time.sleeps == [0.75, 1.5, 2.25]


def test_dropped_connections_are_retried(make_client: MakeClient) -> None:
    fake = FakeDataverse()
    calls = [0]

    def flaky(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] <= 2:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return fake.handle(request)

    client = make_client(fake, transport=httpx.MockTransport(flaky))
    assert client.who_am_i()["UserId"]
    assert calls[0] == 3


def test_unsafe_requests_are_not_retried_after_a_network_error(make_client: MakeClient) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset")

    client = make_client(FakeDataverse(), transport=httpx.MockTransport(broken))
    with pytest.raises(TransientSalesError, match="ReadError"):
        client.send("POST", "lists", json_body={}, retry_unsafe=False)


def test_a_write_that_timed_out_is_not_sent_again_and_names_the_setting(
    make_client: MakeClient,
) -> None:
    fake = FakeDataverse()
    sent: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        if request.method != "GET" and len(sent) == 1:
            raise httpx.ReadTimeout("no answer")
        return fake.handle(request)

    client = make_client(fake, transport=httpx.MockTransport(slow), timeout=7.0)
    with pytest.raises(SalesTimeoutError, match=r"SALES_TIMEOUT_SECONDS \(7 s\)"):
        client.send("POST", "AddListMembersList", json_body={})
    assert sent == ["POST"]  # it may still be running in Sales: never a second copy


def test_a_read_that_timed_out_is_retried(make_client: MakeClient) -> None:
    fake = FakeDataverse()
    calls = [0]

    def slow_once(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        if calls[0] == 1:
            raise httpx.ReadTimeout("no answer")
        return fake.handle(request)

    client = make_client(fake, transport=httpx.MockTransport(slow_once))
    assert client.who_am_i()["UserId"]
    assert calls[0] == 2


def test_401_refreshes_the_token_once(make_client: MakeClient) -> None:
    fake = FakeDataverse()
    tokens = StaticTokens()
    seen: list[str] = []

    def hook(request: httpx.Request, kind: str) -> httpx.Response | None:
        seen.append(request.headers["Authorization"])
        return httpx.Response(401) if len(seen) == 1 else None

    fake.hook = hook
    client = make_client(fake, tokens=tokens)
    client.who_am_i()
    assert seen == ["Bearer tok-0", "Bearer tok-1"]


def test_second_401_is_an_authentication_error_without_the_token(make_client: MakeClient) -> None:
    fake = FakeDataverse()
    fake.hook = lambda request, kind: httpx.Response(
        401,
        json={"error": {"code": "0x80040220", "message": "ExpiredAuthTicket"}},
        headers={"REQ_ID": "r1"},
    )
    client = make_client(fake)
    with pytest.raises(AuthenticationError) as info:
        client.who_am_i()
    assert len(fake.requests) == 2
    text = f"{info.value} {info.value.body_excerpt}"
    assert "tok-" not in text and "Bearer" not in text
    assert info.value.request_id == "r1" and info.value.status == 401


def test_errors_carry_status_code_request_id_and_excerpt(make_client: MakeClient) -> None:
    fake = FakeDataverse()
    client = make_client(fake)
    with pytest.raises(SalesNotFoundError) as info:
        client.get_json("lists(00000000-0000-0000-0000-000000000001)")
    error = info.value
    assert error.status == 404 and error.code == "0x80040217"
    assert error.request_id == "req-0x80040217"
    assert "Does Not Exist" in error.body_excerpt and "Does Not Exist" in str(error)
    fake.hook = lambda request, kind: httpx.Response(
        403,
        json={"error": {"code": "0x80040220", "message": "PrincipalPrivilegeDenied"}},
        headers={"x-ms-service-request-id": "svc-1"},
    )
    with pytest.raises(FatalSalesError) as info2:
        client.who_am_i()
    assert info2.value.request_id == "svc-1" and "security role" in str(info2.value)


def test_next_link_to_another_host_is_refused(make_client: MakeClient) -> None:
    client = make_client(FakeDataverse())
    with pytest.raises(FatalSalesError, match="another host"):
        client.get_json("https://evil.example.com/api/data/v9.2/contacts")


def test_batch_retries_only_throttled_inner_parts(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    fake = FakeDataverse.with_contacts(3)
    client = make_client(fake)
    original_route = fake.route
    inner_calls = [0]

    def route(method, rel, body, headers):  # type: ignore[no-untyped-def]
        inner_calls[0] += 1
        if inner_calls[0] == 2:
            return _throttle("4")
        return original_route(method, rel, body, headers)

    fake.route = route  # type: ignore[method-assign]
    parts = [
        BatchPart(
            "GET",
            f"/api/data/v9.2/contacts?$select=contactid,statecode&$filter=Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['{guid(i)}'])",
        )
        for i in range(3)
    ]
    responses = client.batch(parts)
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.json()["value"][0]["contactid"] for r in responses] == [guid(0), guid(1), guid(2)]
    assert fake.count("batch") == 2 and fake_time.sleeps == [4.0]


@pytest.mark.parametrize(
    ("value", "expected"), [("5", 5.0), ("0.5", 0.5), ("", None), (None, None), ("soon", None)]
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_http_date_retry_after() -> None:
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=lambda: 90.0) == 10.0


def test_client_targets_the_web_api_root() -> None:
    client = SalesClient(BASE + "/", StaticTokens())
    assert client.api_url == BASE + "/api/data/v9.2/"
    client.close()


def test_gate_spaces_request_starts(fake_time: FakeTime) -> None:
    gate = ThrottleGate(clock=fake_time.clock, sleep=fake_time.sleep, spacing=0.05)
    assert gate.enter() is False
    assert gate.enter() is False
    assert fake_time.sleeps == pytest.approx([0.05])
    gate.learn_latency(0.1)  # a 429 took 100 ms to come back: starts 150 ms apart
    gate.enter()
    gate.learn_latency(2.0)  # never more than MAX_SPACING
    gate.enter()
    assert fake_time.sleeps == pytest.approx([0.05, 0.15, MAX_SPACING])


def test_after_a_429_one_probe_goes_first_and_the_rest_wait_for_its_answer(
    fake_time: FakeTime,
) -> None:
    gate = ThrottleGate(clock=fake_time.clock, sleep=fake_time.sleep)
    gate.close_for(3)
    assert gate.enter() is True  # waited out Retry-After, then let through alone
    assert fake_time.sleeps == [3.0]
    results: list[bool] = []
    other = threading.Thread(target=lambda: results.append(gate.enter()))
    other.start()
    other.join(timeout=0.2)
    assert other.is_alive() and results == []  # held back while the probe is out
    gate.close_for(2)  # the probe was throttled again
    gate.leave(True, throttled=True)
    other.join(timeout=10)
    assert results == [True]  # after the new wait, the waiting thread is the next probe
    gate.leave(True, throttled=False)
    assert gate.enter() is False  # the probe passed: the gate is fully open again


def test_a_retry_after_past_the_deadline_stops_instead_of_waiting(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    fake = FakeDataverse()
    fake.hook = lambda request, kind: _throttle("30")
    client = make_client(fake)
    client.deadline = fake_time.clock() + 10
    with pytest.raises(WaitBeyondDeadline, match="deadline"):
        client.who_am_i()
    assert len(fake.requests) == 1 and fake_time.sleeps == []  # no wait, no second request


def test_a_backoff_past_the_deadline_stops(make_client: MakeClient, fake_time: FakeTime) -> None:
    fake = FakeDataverse()
    fake.hook = lambda request, kind: httpx.Response(503)
    client = make_client(fake)
    client.deadline = fake_time.clock() + 0.1
    with pytest.raises(WaitBeyondDeadline, match="backing off"):
        client.who_am_i()
    assert len(fake.requests) == 1
