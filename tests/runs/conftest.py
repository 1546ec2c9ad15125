"""Fixtures for the runs tests: one emulator for the directory, a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulator import EmulatorConfig, start_emulator
from tests.runs.helpers import run_env
from tests.support import Azurite

EMULATOR_CONTACTS = 30_000


@pytest.fixture(scope="session")
def emu() -> Iterator[Any]:
    with start_emulator(
        EmulatorConfig(contacts=EMULATOR_CONTACTS, inactive_fraction=0.05, seed=11, time_scale=0.01)
    ) as running:
        yield running


@pytest.fixture
def env(azurite: Azurite, table_prefix: str, emu: Any) -> dict[str, str]:
    return run_env(azurite, table_prefix, emu)
