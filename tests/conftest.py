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


@pytest.fixture(scope="session")
def function_app_functions() -> dict[str, object]:
    """function_app.app's functions by name. FunctionApp.get_functions() works only once per
    app object, so every test that needs them shares this one session-wide map."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}
