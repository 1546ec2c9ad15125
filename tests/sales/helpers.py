"""Helpers for integration tests against the emulator: settings, connection, segments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.models import Connection, Credential, CredentialKind, ExportMode
from shared.sales import SegmentSyncRequest
from shared.settings import Settings


def settings_for(emu: Any, **extra: str) -> Settings:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "AUTH_MODE": "local-dev",
        "ENTRA_AUTHORITY_HOST": emu.authority_host,
        "SALES_CA_BUNDLE": emu.ca_file,
        "ALLOW_LOOPBACK_SALES": "true",
        "SEGEXP_SECRET_EMU": emu.client_secret,
        **extra,
    }
    return Settings.from_env(env)


def connection_for(emu: Any, *, secret_setting: str = "SEGEXP_SECRET_EMU") -> Connection:
    return Connection(
        id="conn-emu",
        display_name="Emulator",
        server_address=emu.base_url,
        credential=Credential(
            CredentialKind.CLIENT_SECRET, emu.tenant_id, emu.client_id, secret_setting
        ),
        contact_id_field="ContactId",
    )


@dataclass
class Segment:
    """Customers cust-<i> mapped to emulator contact i (plus any extra rows)."""

    rows: dict[str, dict[str, object]]

    @classmethod
    def of(cls, emu: Any, indices: Sequence[int]) -> Segment:
        return cls({f"cust-{i}": {"ContactId": emu.contact_id(i)} for i in indices})

    def lookup(self, ids: Sequence[str]) -> Mapping[str, Mapping[str, object]]:
        return {i: self.rows[i] for i in ids if i in self.rows}

    def request(
        self, name: str, ids: Sequence[str] | None = None, **kwargs: Any
    ) -> SegmentSyncRequest:
        options: dict[str, Any] = {"mode": ExportMode.MIRROR, "owner": "export-it"}
        options.update(kwargs)
        return SegmentSyncRequest(
            segment=name,
            customer_ids=list(self.rows) if ids is None else list(ids),
            lookup_customers=self.lookup,
            contact_id_field="ContactId",
            list_name=name,
            **options,
        )


def active(emu: Any, indices: Sequence[int]) -> set[str]:
    return {emu.contact_id(i) for i in indices if not emu.is_inactive(i)}


IDENTITY_KINDS = frozenset({"token", "openid-configuration"})


def requests_by_kind(stats: Mapping[str, Any]) -> dict[str, int]:
    """Web API requests per kind (the token endpoint is not the Web API)."""
    return {
        kind: sum(by_status.values())
        for kind, by_status in stats["requests"].items()
        if kind not in IDENTITY_KINDS
    }
