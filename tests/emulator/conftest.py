"""Fixtures: a fresh in-process emulator per test (HTTPS on loopback), tokens and API clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from emulator import EmulatorConfig, RunningEmulator, start_emulator

ODATA_HEADERS = {"OData-Version": "4.0", "OData-MaxVersion": "4.0", "Accept": "application/json"}
NS = "Microsoft.Dynamics.CRM."


def get_token(emu: RunningEmulator, client_id: str | None = None, secret: str | None = None) -> str:
    with httpx.Client(verify=emu.ssl_context()) as c:
        r = c.post(
            f"{emu.authority}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id or emu.client_id,
                "client_secret": secret or emu.client_secret,
                "scope": emu.scope,
            },
        )
    r.raise_for_status()
    return str(r.json()["access_token"])


def api_client(emu: RunningEmulator, token: str | None = None, **headers: str) -> httpx.Client:
    hdrs = dict(ODATA_HEADERS)
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    hdrs.update(headers)
    return httpx.Client(base_url=emu.api_url, verify=emu.ssl_context(), headers=hdrs, timeout=30)


def members_body(list_id: str, contact_ids: list[str]) -> dict[str, Any]:
    return {
        "List": {"@odata.type": NS + "list", "listid": list_id},
        "Members": [{"@odata.type": NS + "contact", "contactid": c} for c in contact_ids],
    }


def create_list(client: httpx.Client, name: str = "Segment", **fields: Any) -> str:
    body = {"listname": name, "createdfromcode": 2, "type": False, **fields}
    r = client.post("lists", json=body)
    assert r.status_code == 204, r.text
    return r.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., RunningEmulator]]:
    started: list[RunningEmulator] = []

    def make(**kwargs: Any) -> RunningEmulator:
        kwargs.setdefault("contacts", 2000)
        kwargs.setdefault("time_scale", 0.001)
        emu = start_emulator(EmulatorConfig(**kwargs))
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., RunningEmulator]) -> RunningEmulator:
    return make_emulator(inactive_fraction=0.1, seed=5)


@pytest.fixture
def client(emu: RunningEmulator) -> Iterator[httpx.Client]:
    with api_client(emu, get_token(emu)) as c:
        yield c
