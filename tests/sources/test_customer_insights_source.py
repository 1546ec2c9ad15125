"""The Customer Insights source against the emulator over HTTPS (real msal, real $batch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from emulator.cid import customer_id
from shared.models import Connection, ContactIdSource, Credential, CredentialKind
from shared.sales import open_sales_client
from shared.sources import CustomerInsightsSource, SegmentNotInSource, SourceReadError
from shared.sources.customer_insights import contains_filter, segment_names
from tests.runs.helpers import SECRET_SETTING
from tests.sales.helpers import requests_by_kind, settings_for

COLUMN = "msdynci_dataverse_contact_contactid"


def connection(emu: Any) -> Connection:
    return Connection(
        id="c",
        display_name="CI-D",
        server_address=emu.base_url,
        credential=Credential(
            CredentialKind.CLIENT_SECRET, emu.tenant_id, emu.client_id, SECRET_SETTING
        ),
        contact_id_field=COLUMN,
    )


@pytest.fixture
def client(cid_emu: Any) -> Iterator[Any]:
    settings = settings_for(cid_emu, **{SECRET_SETTING: cid_emu.client_secret})
    with open_sales_client(connection(cid_emu), settings) as opened:
        yield opened


def kinds(emu: Any) -> dict[str, int]:
    return requests_by_kind(emu.stats())


def batch_ops(emu: Any) -> dict[str, int]:
    return {k: sum(v.values()) for k, v in emu.stats()["batch_operations"].items()}


def test_members_are_read_with_the_documented_contains_filter_in_pages(
    cid_emu: Any, cid: Any, client: Any
) -> None:
    source = CustomerInsightsSource(client, ContactIdSource.COLUMN, COLUMN, page_size=250)
    cid_emu.reset_stats()
    members = source.members("VIP")
    assert sorted(members) == [customer_id(i) for i in cid.members("VIP")]
    assert len(members) == 900
    # "VIP" must not pick up VIP_2's members: the name is matched with its quotes
    assert not set(members) & {
        customer_id(i) for i in set(cid.members("VIP_2")) - set(cid.members("VIP"))
    }
    read = source.describe()
    assert (read.kind, read.member_rows, read.requests) == ("customer-insights", 900, 4)
    assert read.watermark is not None
    assert kinds(cid_emu) == {"segmentmemberships-query": 4}
    assert contains_filter("VIP") == "contains(msdynci_segments,'\"VIP\"')"


@pytest.mark.parametrize("mode", [ContactIdSource.COLUMN, ContactIdSource.ALTERNATE_KEY])
def test_both_mappings_find_the_same_contact_ids_in_batched_in_queries(
    cid_emu: Any, cid: Any, client: Any, mode: ContactIdSource
) -> None:
    source = CustomerInsightsSource(client, mode, COLUMN, ids_per_query=100)
    members = source.members("Lapsed")
    cid_emu.reset_stats()
    found = source.lookup(members)
    # 700 ids at 100 per In query: 7 queries, sent as $batches of 2 (in parallel)
    assert kinds(cid_emu) == {"batch": 4}
    table = "customerprofiles" if mode is ContactIdSource.COLUMN else "alternatekeys"
    assert batch_ops(cid_emu) == {f"{table}-query": 7}
    for i in cid.members("Lapsed"):
        expected = cid_emu.contact_id(i) if cid.has_contact(i) else None
        assert found[customer_id(i)] == expected
    without = [i for i in cid.members("Lapsed") if not cid.has_contact(i)]
    assert without, "the seeded fraction leaves some profiles without a contact id"
    assert source.describe().lookup_rows == (
        700 if mode is ContactIdSource.COLUMN else 700 - len(without)
    )


def test_a_segment_no_row_names_is_not_in_the_source(client: Any) -> None:
    source = CustomerInsightsSource(client, ContactIdSource.COLUMN, COLUMN)
    with pytest.raises(SegmentNotInSource, match=r"'VI'.*deleted or renamed"):
        source.members("VI")
    assert source.has_segment("VIP") and not source.has_segment("VI")


def test_listing_counts_every_segment(cid: Any, client: Any) -> None:
    source = CustomerInsightsSource(client, ContactIdSource.COLUMN, COLUMN)
    offers = {o.name: o.members for o in source.list_segments()}
    assert offers == {name: len(cid.members(name)) for name in cid.segment_names()}


def test_read_failures_say_what_to_fix(cid: Any, client: Any) -> None:
    source = CustomerInsightsSource(client, ContactIdSource.COLUMN, COLUMN)
    cid.readable = False
    with pytest.raises(SourceReadError, match="Viewer role") as denied:
        source.members("VIP")
    assert denied.value.status == 403
    cid.readable = True
    cid.provisioned = False
    with pytest.raises(SourceReadError, match="Data sharing") as missing:
        source.members("VIP")
    assert missing.value.status == 404
    cid.provisioned = True
    wrong = CustomerInsightsSource(client, ContactIdSource.COLUMN, "msdynci_nosuchcolumn")
    with pytest.raises(SourceReadError, match="contact-ID field"):
        wrong.check_contact_ids()
    assert "has the column" in source.check_contact_ids()
    keys = CustomerInsightsSource(client, ContactIdSource.ALTERNATE_KEY, COLUMN)
    assert "alternatekeys" in keys.check_contact_ids()


def test_the_tables_refuse_writes_like_a_read_only_role(client: Any) -> None:
    from shared.errors import FatalSalesError

    with pytest.raises(FatalSalesError) as refused:
        client.send("POST", "msdynci_segmentmemberships", json_body={"msdynci_customerid": "x"})
    assert refused.value.status == 403
    assert "prvCreatemsdynci_segmentmembership" in str(refused.value)


def test_segment_names_reads_the_stored_json_and_reports_the_rest() -> None:
    assert segment_names('{"Segments":["A","B"]}') == ["A", "B"]
    assert segment_names('["A"]') == ["A"]
    assert segment_names("A,B") is None
    assert segment_names(None) is None
    assert segment_names('{"Segments":[1]}') is None


def test_reading_through_another_connection_of_the_same_identity_shares_the_gate(
    store: Any, settings: Any, cid_emu: Any
) -> None:
    from shared.models import Export, ExportSource, SourceKind
    from shared.sources import open_source
    from tests.runs.helpers import make_connection

    sales = make_connection(store, cid_emu, contact_field=COLUMN)
    reader = make_connection(store, cid_emu, contact_field=COLUMN)
    export = Export(
        id="e",
        display_name="e",
        connection_id=sales.id,
        segments=["VIP"],
        source=ExportSource(SourceKind.CUSTOMER_INSIGHTS, reader.id),
    )
    with (
        open_sales_client(sales, settings) as client,
        open_source(store, settings, export, sales, client=client) as source,
    ):
        assert isinstance(source, CustomerInsightsSource)
        # its own client (another connection record), but one throttling budget per
        # environment and identity: the same gate as the writes
        assert source._client is not client
        assert source._client.gate is client.gate
        assert len(source.members("VIP")) == 900
