"""Azurite with OAuth on, once per session (HTTPS on loopback, self-signed certificate)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.oauth_azurite import OAuthAzurite, start_oauth_azurite


@pytest.fixture(scope="session")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthAzurite]:
    server = start_oauth_azurite(Path(tmp_path_factory.mktemp("oauth-azurite")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # On this machine these override an explicit verify= in requests; the tests pass their own.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
