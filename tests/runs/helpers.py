"""Helpers for the runs tests: settings on Azurite + emulator, seeding, and draining the queue."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from emulator.data import is_inactive
from shared.models import Connection, Credential, CredentialKind, Export, ExportMode, Run
from shared.runs.worker_main import serve
from shared.settings import Settings
from tests.support import Azurite

SECRET_SETTING = "SEGEXP_SECRET_EMU"
CONTACT_FIELD = "ContactId"
DRAIN_LIMIT_SECONDS = 120.0  # a safety bound against hangs, not a timing assertion


def run_env(azurite: Azurite, prefix: str, emu: Any, **extra: str) -> dict[str, str]:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "TABLE_PREFIX": prefix,
        "RUN_QUEUE_NAME": f"q-{prefix}",
        "AUTH_MODE": "local-dev",
        "ALLOW_LOOPBACK_SALES": "true",
        "ENTRA_AUTHORITY_HOST": emu.authority_host,
        "SALES_CA_BUNDLE": emu.ca_file,
        SECRET_SETTING: emu.client_secret,
        "SALES_MAX_RETRIES": "8",
        "LEASE_SECONDS": "5",
        "MAX_DEQUEUE_COUNT": "3",
    }
    env.update(extra)
    return env


def run_settings(azurite: Azurite, prefix: str, emu: Any, **extra: str) -> Settings:
    return Settings.from_env(run_env(azurite, prefix, emu, **extra))


def customer_id(i: int) -> str:
    return f"cust-{i:07d}"


def make_connection(
    store: Any,
    emu: Any,
    *,
    server: str | None = None,
    secret_setting: str = SECRET_SETTING,
    contact_field: str = CONTACT_FIELD,
) -> Connection:
    connection = Connection(
        id=uuid.uuid4().hex,
        display_name="Emulated Sales",
        server_address=server or emu.base_url,
        credential=Credential(
            kind=CredentialKind.CLIENT_SECRET,
            tenant_id=emu.tenant_id,
            client_id=emu.client_id,
            secret_setting=secret_setting,
        ),
        contact_id_field=contact_field,
    )
    created: Connection = store.connections.create(connection)
    return created


def make_export(
    store: Any,
    connection: Connection,
    segments: list[str],
    *,
    mode: ExportMode = ExportMode.MIRROR,
    list_name: str = "{segment}",
    enabled: bool = True,
    name: str = "Export",
) -> Export:
    export = Export(
        id=uuid.uuid4().hex,
        display_name=name,
        connection_id=connection.id,
        segments=segments,
        mode=mode,
        list_name=list_name,
        enabled=enabled,
    )
    created: Export = store.exports.create(export)
    return created


def seed_customers(
    store: Any, emu: Any, indices: Iterable[int], *, contact: Mapping[int, str] | None = None
) -> None:
    """Customer rows whose contact-ID field holds contact i's GUID (or an override)."""
    overrides = contact or {}
    rows = [
        {"CustomerId": customer_id(i), CONTACT_FIELD: overrides.get(i, emu.contact_id(i))}
        for i in indices
    ]
    for start in range(0, len(rows), 5000):
        store.customers.upsert_many(rows[start : start + 5000])


def seed_segment(store: Any, segment: str, indices: Iterable[int]) -> list[str]:
    members = [customer_id(i) for i in indices]
    store.segments.put(segment, members)
    return members


def active_contacts(emu_config: Any, indices: Iterable[int]) -> set[str]:
    """Contact ids of the indices whose synthetic contact is active (the matched set)."""
    return {
        _contact(emu_config, i)
        for i in indices
        if not is_inactive(i, emu_config.seed, emu_config.inactive_fraction)
    }


def _contact(emu_config: Any, i: int) -> str:
    from emulator.data import contact_id

    return contact_id(i, emu_config.seed)


def drain(store: Any, settings: Settings, run: Run, *, limit: float = DRAIN_LIMIT_SECONDS) -> Run:
    """Work the run queue in this process (like the host) until the run is final."""
    started = time.monotonic()

    def done() -> bool:
        if time.monotonic() - started > limit:
            raise AssertionError(f"run {run.id} did not finish within {limit}s")
        current: Run = store.runs.get(run.export_id, run.id)
        return current.status.is_final

    serve(settings, store, should_stop=done, visibility=30, retry_delay=1, poll_interval=0.1)
    final: Run = store.runs.get(run.export_id, run.id)
    return final


def list_id_of(run: Run, segment: str) -> str:
    for result in run.segments:
        if result.segment == segment:
            assert result.list_id, f"segment {segment} has no list id: {result}"
            return result.list_id
    raise AssertionError(f"segment {segment} not in run {run.id}")
