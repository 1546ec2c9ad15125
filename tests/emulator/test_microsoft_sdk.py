"""Microsoft's own Python SDK (PowerPlatform-Dataverse-Client), unchanged, against the emulator:
it resolves entity sets through EntityDefinitions, pages with odata.maxpagesize, sends `ne`/`or`
filters and reads picklist metadata before a create. What the emulator does not emulate is a 501,
which the SDK reports as a non-client error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from PowerPlatform.Dataverse import client as sdk
from PowerPlatform.Dataverse.core import errors

from emulator import RunningEmulator
from tests.emulator.conftest import get_token


class EmulatorCredential:
    """An azure.core TokenCredential: client credentials at the emulator's token endpoint."""

    def __init__(self, emu: RunningEmulator) -> None:
        self.emu = emu
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(get_token(self.emu), int(time.time()) + 3000)


@pytest.fixture
def dataverse(emu: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # requests (the SDK's HTTP library) trusts the emulator's CA through its documented variable
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_file)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with sdk.DataverseClient(emu.base_url, EmulatorCredential(emu)) as client:
        yield client


def test_sdk_lists_contacts_in_pages_with_a_filter(dataverse: Any, emu: RunningEmulator) -> None:
    active = sum(1 for i in range(emu.config.contacts) if not emu.is_inactive(i))
    pages = list(
        dataverse.records.list_pages(
            "contact", select=["contactid", "statecode"], filter="statecode eq 0", page_size=500
        )
    )
    rows = [r for page in pages for r in page]
    assert len(pages) == -(-active // 500) and len(rows) == active
    assert {r["statecode"] for r in rows} == {0}
    everyone = dataverse.records.list("contact", select=["contactid"], page_size=5000)
    assert len(everyone) == emu.config.contacts


def test_sdk_filters_with_ne_and_or(dataverse: Any, emu: RunningEmulator) -> None:
    inactive = sum(1 for i in range(emu.config.contacts) if emu.is_inactive(i))
    rows = dataverse.records.list("contact", select=["contactid"], filter="statecode ne 0")
    assert len(rows) == inactive
    a, b = emu.contact_id(3), emu.contact_id(7)
    both = dataverse.records.list(
        "contact", select=["contactid"], filter=f"contactid eq {a} or contactid eq {b}"
    )
    assert sorted(r["contactid"] for r in both) == sorted([a, b])
    mixed = dataverse.records.list(
        "contact",
        select=["contactid", "statecode"],
        filter=f"(contactid eq {a} or contactid eq {b}) and statecode ne 1",
    )
    assert {r["contactid"] for r in mixed} == {
        c for c, i in ((a, 3), (b, 7)) if not emu.is_inactive(i)
    }


def test_sdk_creates_reads_and_deletes_a_marketing_list(
    dataverse: Any, emu: RunningEmulator
) -> None:
    list_id = dataverse.records.create(
        "list", {"listname": "Made by the SDK", "createdfromcode": 2, "type": False}
    )
    row = emu.state.get_list(list_id)
    assert row is not None and row["listname"] == "Made by the SDK" and row["createdfromcode"] == 2
    got = dataverse.records.get("list", list_id, select=["listname", "createdfromcode"])
    assert got["listname"] == "Made by the SDK"
    found = dataverse.records.list(
        "list", select=["listid"], filter="listname eq 'Made by the SDK'"
    )
    assert [r["listid"] for r in found] == [list_id]
    dataverse.records.delete("list", list_id)
    assert emu.state.get_list(list_id) is None


def test_what_the_emulator_does_not_emulate_is_501(dataverse: Any) -> None:
    with pytest.raises(errors.HttpError) as raised:
        dataverse.records.list("contact", select=["contactid"], orderby=["lastname asc"])
    assert raised.value.status_code == 501
    assert "emulator" in str(raised.value)
