"""End to end on Azurite + the Sales emulator: real runs through the queue worker tell a webhook
receiver on loopback when the export fails, stay quiet while it keeps failing the same way, and
tell it once when it recovers; the delivery is recorded on the run."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.models import NotificationFormat, NotificationTarget, RunStatus, Trigger
from shared.runs.requests import request_run
from shared.settings import Settings
from shared.store import open_store
from tests.notify.receiver import Receiver, serve_receiver
from tests.runs.helpers import (
    SECRET_SETTING,
    drain,
    make_connection,
    make_export,
    run_env,
    seed_customers,
    seed_segment,
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as running:
        yield running


def test_failure_then_silence_then_recovery(
    azurite: Any, table_prefix: str, emu: Any, receiver: Receiver
) -> None:
    settings = Settings.from_env(
        run_env(azurite, table_prefix, emu, ALLOW_LOOPBACK_WEBHOOKS="true", OPS_HOOK=receiver.url)
    )
    store = open_store(settings)
    store.ensure()
    try:
        members = [i for i in range(7000, 7020) if not emu.is_inactive(i)]
        seed_customers(store, emu, members)
        seed_segment(store, "N1", members)
        connection = make_connection(store, emu, secret_setting="SECRET_NOT_SET")
        export = make_export(store, connection, ["N1"], name="Alerting export")
        store.notify_targets.create(
            NotificationTarget(
                id=uuid.uuid4().hex,
                display_name="ops",
                format=NotificationFormat.SLACK,
                url_setting="OPS_HOOK",
            )
        )

        def run_once() -> Any:
            run = request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="ann")
            return drain(store, settings, run)

        first = run_once()
        assert first.status is RunStatus.FAILED and "SECRET_NOT_SET" in (first.error or "")
        [told] = first.notifications
        assert (told.event, told.delivered) == ("failed", True)
        assert "failed" in receiver.wait_for(1)[0].json()["text"]

        second = run_once()
        assert second.status is RunStatus.FAILED and second.notifications == []

        store.connections.update(
            dataclasses.replace(
                connection,
                credential=dataclasses.replace(
                    connection.credential, secret_setting=SECRET_SETTING
                ),
            ),
            None,
        )
        third = run_once()
        assert third.status is RunStatus.SUCCEEDED
        assert [(n.event, n.delivered) for n in third.notifications] == [("recovered", True)]
        posts = receiver.wait_for(2)
        assert len(posts) == 2 and "recovered" in posts[1].json()["text"]
    finally:
        store.close()
