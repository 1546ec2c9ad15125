"""Fixtures for the source tests: one emulator playing Sales and CI-D, a fresh store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from emulator import EmulatorConfig, start_emulator
from emulator.cid import CidConfig
from tests.runs.helpers import run_env
from tests.support import Azurite

CUSTOMERS = 4000
# Segment sizes; tests that change membership use their own segment.
SEGMENTS = {"VIP": 900, "VIP_2": 300, "Lapsed": 700, "Churners": 400, "Movers": 500, "Gone": 200}
NO_CONTACT = 0.1


@pytest.fixture(scope="session")
def cid_emu() -> Iterator[Any]:
    saved = {
        k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ
    }
    config = EmulatorConfig(
        contacts=CUSTOMERS,
        inactive_fraction=0.05,
        seed=23,
        time_scale=0.01,
        cid=CidConfig(customers=CUSTOMERS, segments=dict(SEGMENTS), no_contact_fraction=NO_CONTACT),
    )
    try:
        with start_emulator(config) as running:
            yield running
    finally:
        os.environ.update(saved)


@pytest.fixture
def cid(cid_emu: Any) -> Iterator[Any]:
    """The CI-D tables, readable and shared again after each test."""
    yield cid_emu.cid
    cid_emu.cid.readable = True
    cid_emu.cid.provisioned = True


@pytest.fixture
def env(azurite: Azurite, table_prefix: str, cid_emu: Any) -> dict[str, str]:
    return run_env(azurite, table_prefix, cid_emu)
