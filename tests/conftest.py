"""Shared fixtures: real Azurite for the whole session; each test gets its own table prefix."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from shared.store import Store, open_store
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


# A folder whose conftest defines ``env`` (its app settings as the host would pass them) gets the
# Settings and a fresh, ensured Store on them from here (tests/runs, tests/notify, tests/sources).
@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings)
    opened.ensure()
    try:
        yield opened
    finally:
        opened.close()
