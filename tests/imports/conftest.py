"""Background customer imports on Azurite: the API (TestClient) and the worker share one
real Store on a fresh table prefix and import queue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_api
from shared.settings import Settings
from shared.store import Store, open_store
from tests.api.helpers import base_env


@dataclass
class Rig:
    settings: Settings
    store: Store
    client: TestClient


@pytest.fixture
def rig(azurite: Any, table_prefix: str) -> Iterator[Rig]:
    settings = Settings.from_env(base_env(azurite, table_prefix))
    store = open_store(settings)
    store.ensure()
    api = create_api(lambda: settings, store_factory=lambda _s: store)
    with TestClient(api, raise_server_exceptions=False) as client:
        yield Rig(settings, store, client)
    store.close()
