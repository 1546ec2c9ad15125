"""Store fixtures: a fresh Store (own table prefix and queue) on the session's Azurite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.settings import Settings
from shared.storage import StorageConnection
from shared.store import Store, open_store
from tests.support import Azurite


def make_settings(azurite: Azurite, prefix: str) -> Settings:
    return Settings(
        storage=StorageConnection.from_string(azurite.connection_string),
        table_prefix=prefix,
        run_queue=f"runs-{prefix}",
    )


@pytest.fixture
def settings(azurite: Azurite, table_prefix: str) -> Settings:
    return make_settings(azurite, table_prefix)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    try:
        yield s
    finally:
        s.close()
