"""Fixtures for the Sales module tests: unit helpers here, the real emulator in emulator_env."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from shared.sales.client import RetryPolicy, SalesClient
from tests.sales.fakes import BASE, FakeDataverse


class StaticTokens:
    """A token provider that counts refreshes (unit tests only)."""

    def __init__(self) -> None:
        self.issued = 0
        self.current = "tok-0"
        self._lock = threading.Lock()

    def token(self) -> str:
        return self.current

    def invalidate(self, token: str) -> None:
        with self._lock:
            if token == self.current:
                self.issued += 1
                self.current = f"tok-{self.issued}"


class FakeTime:
    """A clock that only moves when someone sleeps; records the sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(fake_time: FakeTime) -> Iterator[Callable[..., SalesClient]]:
    made: list[SalesClient] = []

    def make(fake: FakeDataverse, **kwargs: object) -> SalesClient:
        options: dict[str, object] = {
            "transport": fake.transport(),
            "sleep": fake_time.sleep,
            "clock": fake_time.clock,
            "rng": lambda: 0.5,
            "retry": RetryPolicy(max_retries=4, start_spacing=0.0),
            "max_parallel": 4,
        }
        options.update(kwargs)
        tokens = options.pop("tokens", None) or StaticTokens()
        client = SalesClient(BASE, tokens, **options)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# --- the real emulator (integration tests) ----------------------------------------------------

INTEGRATION_CONTACTS = 6000


@pytest.fixture(scope="session")
def emulator() -> Iterator[object]:
    """One emulator for the session (HTTPS on loopback, real token endpoint). Tests use their
    own list names and contact ranges so they do not see each other's changes."""
    import os

    from emulator import EmulatorConfig, start_emulator

    # msal is pinned to SALES_CA_BUNDLE by our code; drop the machine's bundle override anyway so
    # nothing else in the process trusts the wrong store.
    saved = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    emu = start_emulator(
        EmulatorConfig(
            contacts=INTEGRATION_CONTACTS, inactive_fraction=0.05, seed=11, time_scale=0.01
        ),
        port=0,
    )
    try:
        yield emu
    finally:
        emu.stop()
        os.environ.update(saved)
