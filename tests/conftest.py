"""Shared fixtures: real Azurite for the whole session; each test gets its own table prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = start_azurite()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def table_prefix() -> str:
    """A fresh prefix so tests sharing one Azurite never see each other's tables."""
    return "t" + uuid.uuid4().hex[:10]
