"""Fixtures for the notification tests: a store on Azurite and a webhook receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.notify.receiver import Receiver, serve_receiver
from tests.support import Azurite

SIGNING_KEY = "test-signing-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as running:
        yield running


@pytest.fixture
def env(azurite: Azurite, table_prefix: str, receiver: Receiver) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": table_prefix,
        "RUN_QUEUE_NAME": f"q-{table_prefix}",
        "AUTH_MODE": "local-dev",
        "ALLOW_LOOPBACK_WEBHOOKS": "true",
        "NOTIFY_TIMEOUT_SECONDS": "20",
        "OPS_WEBHOOK_URL": receiver.url,
        "OPS_WEBHOOK_KEY": SIGNING_KEY,
        "BROKEN_WEBHOOK_URL": "http://127.0.0.1:9/nobody-listens",
    }
