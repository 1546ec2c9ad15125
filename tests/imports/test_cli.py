"""The operator CLI over real HTTP on loopback (uvicorn serving the app, the import queue's
local runner in a thread, Azurite): a customer file past the synchronous route's row limit is
imported in the background and followed until it has succeeded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from segexp.__main__ import main as cli
from shared.api.app import create_api
from shared.api.routes import customers as customers_route
from shared.runs.worker_main import IMPORTS, serve
from shared.settings import Settings
from shared.store import Store, open_store
from tests.api.helpers import base_env
from tests.support import free_port, wait_for_port


@pytest.fixture
def served(azurite: Any, table_prefix: str) -> Iterator[tuple[str, Store]]:
    settings = Settings.from_env(
        base_env(azurite, table_prefix, AUTH_MODE="local-dev", WEBSITE_AUTH_ENABLED="")
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_api(lambda: settings), host="127.0.0.1", port=port, log_level="error")
    )
    web = threading.Thread(target=server.run, daemon=True)
    web.start()
    store = open_store(settings)
    store.ensure()
    stop = threading.Event()
    importer = threading.Thread(
        target=serve,
        args=(settings, store),
        kwargs={
            "should_stop": stop.is_set,
            "visibility": 60,
            "retry_delay": 1,
            "poll_interval": 0.05,
            "listener": IMPORTS,
        },
        daemon=True,
    )
    importer.start()
    try:
        wait_for_port(port, None)
        yield f"http://127.0.0.1:{port}", store
    finally:
        stop.set()
        server.should_exit = True
        importer.join(timeout=30)
        web.join(timeout=30)
        store.close()


def test_a_big_file_goes_through_the_background_import(
    served: tuple[str, Store],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, store = served
    monkeypatch.setattr(customers_route, "SYNC_MAX_ROWS", 5)
    file = tmp_path / "customers.csv"
    file.write_text("CustomerId,ContactId\n" + "".join(f"C-{i},\n" for i in range(12)))
    code = cli(["--api", api, "import-customers", str(file)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "12 rows: importing in the background" in out
    assert "succeeded: 12 of 12 rows written" in out
    assert len(store.customers.get_many([f"C-{i}" for i in range(12)])) == 12
    code = cli(["--api", api, "customer-imports"])
    listed = capsys.readouterr().out
    assert code == 0 and "succeeded" in listed and "12 / 12" in listed
