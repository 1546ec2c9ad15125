"""Fixtures for API tests: clients on Azurite per auth mode; a JWKS endpoint on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_api
from shared.settings import Settings
from tests.api.helpers import TokenIssuer, base_env


@pytest.fixture
def make_client(azurite: Any, table_prefix: str) -> Iterator[Callable[..., TestClient]]:
    """Build a TestClient for an app with the given extra settings (on this test's tables)."""
    clients: list[TestClient] = []

    def build(resolver_factory: Any = None, **extra: str) -> TestClient:
        settings = Settings.from_env(base_env(azurite, table_prefix, **extra))
        api = create_api(lambda: settings, resolver_factory=resolver_factory)
        client = TestClient(api, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """EasyAuth mode: send ADMIN / CONTRIBUTOR / VIEWER headers per request."""
    return make_client()


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    state = TokenIssuer()
    state.add_key("k1")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.fetches += 1
            body = json.dumps(state.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/discovery/v2.0/keys"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
