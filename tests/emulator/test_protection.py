"""Service protection (request count, execution time, concurrency), Retry-After and violations,
seeded fault injection, and the stats / minimum-wall-time bookkeeping."""

from __future__ import annotations

import threading

import httpx
import pytest

from emulator import Costs, Limits, RunningEmulator
from emulator.stats import theoretical_min_wall_time
from tests.emulator.conftest import api_client, get_token


def _retry_after(r: httpx.Response) -> int:
    value = r.headers["Retry-After"]
    assert value.isdigit() and int(value) >= 1
    return int(value)


def test_request_limit_retry_after_honoured_vs_violation(make_emulator) -> None:
    limits = Limits(
        requests_per_window=5,
        window_seconds=200,
        violation_penalty_seconds=0,
        in_flight_grace_wall_seconds=0,
    )
    emu = make_emulator(limits=limits, time_scale=0.01)  # window = 2 s of wall time
    with api_client(emu, get_token(emu)) as c:
        assert [c.get("WhoAmI").status_code for _ in range(5)] == [200] * 5
        r = c.get("WhoAmI")
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "0x80072322"
        assert "limit of 5 over time window of 200 seconds" in r.json()["error"]["message"]
        assert emu.stats()["violations"] == 0
        r = c.get("WhoAmI")  # sent before Retry-After elapsed
        assert r.status_code == 429
        assert emu.stats()["violations"] == 1
        throttled = 2
        while r.status_code == 429:  # honour every Retry-After until the window lets us in
            threading.Event().wait(_retry_after(r))
            r = c.get("WhoAmI")
            throttled += r.status_code == 429
    stats = emu.stats()
    assert stats["violations"] == 1  # honouring Retry-After is never a violation
    assert stats["throttled"] == throttled
    assert stats["throttled_by_code"] == {"0x80072322": throttled}
    assert stats["requests"]["whoami"] == {"200": 6, "429": throttled}


def test_violations_lengthen_the_wait(make_emulator) -> None:
    limits = Limits(
        requests_per_window=1,
        window_seconds=10_000,
        violation_penalty_seconds=100,
        in_flight_grace_wall_seconds=0,
    )
    emu = make_emulator(limits=limits, time_scale=0.01)
    with api_client(emu, get_token(emu)) as c:
        c.get("WhoAmI")
        first = _retry_after(c.get("WhoAmI"))
        waits = [_retry_after(c.get("WhoAmI")) for _ in range(3)]
    assert waits == sorted(waits) and waits[-1] > first
    assert emu.stats()["violations"] == 3
    assert len(emu.stats()["met_block_after_seconds"]) == 3  # how late each one came


def test_requests_already_in_flight_are_not_violations(make_emulator) -> None:
    limits = Limits(
        requests_per_window=1,
        window_seconds=10_000,
        violation_penalty_seconds=100,
        in_flight_grace_wall_seconds=60,  # everything in this test counts as "already sent"
    )
    emu = make_emulator(limits=limits, time_scale=0.01)
    with api_client(emu, get_token(emu)) as c:
        c.get("WhoAmI")
        first = c.get("WhoAmI")
        again = c.get("WhoAmI")
    assert first.status_code == again.status_code == 429
    assert _retry_after(again) <= _retry_after(first)  # not lengthened
    assert emu.stats()["violations"] == 0


def test_execution_time_limit(make_emulator) -> None:
    limits = Limits(execution_seconds_per_window=0.05, window_seconds=10_000)
    emu = make_emulator(limits=limits, costs=Costs(base_ms=20), time_scale=0.01)
    with api_client(emu, get_token(emu)) as c:
        codes = [c.get("WhoAmI").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("WhoAmI")
    assert r.json()["error"]["code"] == "0x80072321"
    assert "1,200,000" not in r.json()["error"]["message"]


def test_limits_are_per_user(make_emulator) -> None:
    limits = Limits(requests_per_window=2, window_seconds=10_000)
    emu = make_emulator(limits=limits, time_scale=0.01, extra_clients={"app-2": "secret-2"})
    with (
        api_client(emu, get_token(emu)) as one,
        api_client(emu, get_token(emu, "app-2", "secret-2")) as two,
    ):
        assert [one.get("WhoAmI").status_code for _ in range(3)] == [200, 200, 429]
        assert [two.get("WhoAmI").status_code for _ in range(2)] == [200, 200]


def test_concurrency_limit_fails_immediately(make_emulator) -> None:
    limits = Limits(concurrent_requests=2)
    emu = make_emulator(limits=limits, costs=Costs(base_ms=2000), time_scale=1.0)
    token = get_token(emu)
    clients = [api_client(emu, token) for _ in range(4)]
    for c in clients:  # open the TLS connections first so the requests really overlap
        c.get(f"{emu.authority}/v2.0/.well-known/openid-configuration")  # no modeled cost
    emu.reset_stats(throttling=True)
    barrier = threading.Barrier(len(clients))
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def call(c: httpx.Client) -> None:
        barrier.wait()
        r = c.get("WhoAmI")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=call, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert sorted(r.status_code for r in results) == [200, 200, 429, 429]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 429} == {"0x80072326"}
    assert all(_retry_after(r) >= 1 for r in results if r.status_code == 429)
    assert emu.stats()["max_concurrency"] == 2
    assert emu.stats()["max_concurrency_by_user"] == {emu.client_id: 2}  # per identity too


def _outcomes(emu: RunningEmulator, n: int) -> list[str]:
    out = []
    with api_client(emu, get_token(emu)) as c:
        for _ in range(n):
            try:
                out.append(str(c.get("WhoAmI").status_code))
            except httpx.RemoteProtocolError:
                out.append("dropped")
    return out


def test_fault_injection_is_seeded_and_deterministic(make_emulator) -> None:
    runs = []
    for _ in range(2):
        emu = make_emulator()
        emu.set_faults(unavailable=0.2, drop=0.15, seed=7)
        runs.append(_outcomes(emu, 40))
        assert emu.stats()["faults"] == {
            "unavailable": runs[-1].count("503"),
            "drop": runs[-1].count("dropped"),
        }
    assert runs[0] == runs[1]
    assert {"200", "503", "dropped"} <= set(runs[0])
    other = make_emulator()
    other.set_faults(unavailable=0.2, drop=0.15, seed=8)
    assert _outcomes(other, 40) != runs[0]


def test_injected_429_has_retry_after_and_draws_are_seeded(make_emulator) -> None:
    draws = []
    for _ in range(2):
        emu = make_emulator(time_scale=0.01)
        emu.set_faults(throttle=0.3, seed=3)
        _outcomes(emu, 20)
        draws.append([e["fault"] for e in emu.request_log() if e["kind"] == "whoami"])
    assert draws[0] == draws[1] and "throttle" in draws[0]
    emu = make_emulator(limits=Limits(in_flight_grace_wall_seconds=0))
    emu.set_faults(throttle=1.0, retry_after_seconds=30)
    with api_client(emu, get_token(emu)) as c:
        r = c.get("WhoAmI")
        assert r.status_code == 429 and _retry_after(r) == 30
        assert r.json()["error"]["code"] == "0x80072322"
        emu.set_faults()  # faults off; the announced Retry-After still applies
        assert c.get("WhoAmI").status_code == 429  # too early: a violation
        assert emu.stats()["violations"] == 1
    with pytest.raises(ValueError):
        emu.set_faults(throttle=0.7, unavailable=0.7)


def test_stats_cost_model_and_minimum_wall_time(make_emulator) -> None:
    emu = make_emulator(costs=Costs(base_ms=20, per_member_ms=2, per_row_read_ms=0.02))
    with api_client(emu, get_token(emu)) as c:
        c.get("WhoAmI")
        c.get("contacts?$select=contactid&$top=100")
    stats = emu.stats()
    assert stats["rows_read"] == 100
    assert stats["limited_requests"] == 2
    assert abs(stats["total_cost_seconds"] - (0.020 + 0.020 + 100 * 0.00002)) < 1e-9
    assert stats["min_wall_time"]["binding"] == "by_parallelism"
    log = emu.request_log()
    assert [e["kind"] for e in log if e["kind"] not in ("token",)] == ["whoami", "contacts-query"]
    emu.reset_stats()
    assert emu.stats()["requests_total"] == 0


def test_theoretical_minimum_formula() -> None:
    limits = Limits(requests_per_window=6000, execution_seconds_per_window=1200, window_seconds=300)
    assert theoretical_min_wall_time(100, 80.0, limits, 8)["model_seconds"] == 10.0
    by_requests = theoretical_min_wall_time(18_000, 1.0, limits, 8)
    assert by_requests["binding"] == "by_requests" and by_requests["model_seconds"] == 600.0
    by_exec = theoretical_min_wall_time(10, 3600.0, limits, 52, time_scale=0.5)
    assert by_exec["binding"] == "by_execution"
    assert by_exec["model_seconds"] == 600.0 and by_exec["wall_seconds"] == 300.0
