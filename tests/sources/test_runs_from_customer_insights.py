"""Runs whose export reads Customer Insights: the worker on Azurite + the emulator over HTTPS."""

from __future__ import annotations

import dataclasses
from typing import Any

from emulator.cid import customer_id
from emulator.data import contact_id
from shared.models import (
    ContactIdSource,
    ExportSource,
    RejectionReason,
    Run,
    RunStatus,
    SourceKind,
    Trigger,
)
from shared.runs.requests import request_run
from tests.runs.helpers import drain, list_id_of, make_connection, make_export

COLUMN = "msdynci_dataverse_contact_contactid"
CI = ExportSource(kind=SourceKind.CUSTOMER_INSIGHTS)


def expected_contacts(emu: Any, indices: list[int]) -> set[str]:
    """Members with a contact id whose contact is active in Sales."""
    return {
        contact_id(i, emu.config.seed)
        for i in indices
        if emu.cid.has_contact(i) and not emu.is_inactive(i)
    }


def ci_export(store: Any, emu: Any, segments: list[str], mode: ContactIdSource, **kw: Any) -> Any:
    connection = make_connection(store, emu, contact_field=COLUMN)
    if mode is not ContactIdSource.COLUMN:
        connection = store.connections.update(
            dataclasses.replace(connection, contact_id_source=mode), if_match=connection.etag
        )
    export = make_export(store, connection, segments, **kw)
    return store.exports.update(dataclasses.replace(export, source=CI), if_match=export.etag)


def run_now(store: Any, settings: Any, export: Any) -> Run:
    return drain(
        store, settings, request_run(store, export.id, trigger=Trigger.ON_DEMAND, requested_by="t")
    )


def test_both_mappings_export_the_members_with_a_contact_id_and_explain_the_rest(
    store: Any, settings: Any, cid_emu: Any, cid: Any
) -> None:
    members = cid.members("VIP_2")
    without = [i for i in members if not cid.has_contact(i)]
    inactive = [i for i in members if cid.has_contact(i) and cid_emu.is_inactive(i)]
    for mode in (ContactIdSource.COLUMN, ContactIdSource.ALTERNATE_KEY):
        export = ci_export(store, cid_emu, ["VIP_2"], mode, list_name=f"{{segment}} {mode.value}")
        final = run_now(store, settings, export)
        assert final.status is RunStatus.SUCCEEDED, final
        [segment] = final.segments
        assert cid_emu.state.list_members(list_id_of(final, "VIP_2")) == expected_contacts(
            cid_emu, members
        )
        assert segment.members == len(members)
        assert segment.left_out == {
            RejectionReason.EMPTY_CONTACT_ID.value: len(without),
            **({RejectionReason.CONTACT_INACTIVE.value: len(inactive)} if inactive else {}),
        }
        assert segment.source is not None
        assert segment.source.kind == "customer-insights"
        assert segment.source.member_rows == len(members)
        assert segment.source.watermark
        rejections, _ = store.rejections.list(export.id, final.id, limit=1000)
        empty = {r.customer_id for r in rejections if r.reason is RejectionReason.EMPTY_CONTACT_ID}
        assert empty == {customer_id(i) for i in without}


def test_membership_changes_between_runs_reach_the_list(
    store: Any, settings: Any, cid_emu: Any, cid: Any
) -> None:
    export = ci_export(store, cid_emu, ["Movers"], ContactIdSource.COLUMN)
    first = run_now(store, settings, export)
    list_id = list_id_of(first, "Movers")
    before = cid.members("Movers")
    assert cid_emu.state.list_members(list_id) == expected_contacts(cid_emu, before)
    first_mark = first.segments[0].source.watermark

    leaving = [i for i in before if cid.has_contact(i) and not cid_emu.is_inactive(i)][:7]
    outside = set(before)
    joining = [
        i
        for i in range(3900, 4000)
        if i not in outside and cid.has_contact(i) and not cid_emu.is_inactive(i)
    ][:5]
    cid.leave("Movers", leaving)
    cid.join("Movers", joining)

    second = run_now(store, settings, export)
    assert second.status is RunStatus.SUCCEEDED
    [segment] = second.segments
    assert (segment.added, segment.removed) == (len(joining), len(leaving))
    assert cid_emu.state.list_members(list_id) == expected_contacts(cid_emu, cid.members("Movers"))
    assert segment.source.watermark > first_mark  # the joins carry a newer modifiedon


def test_a_segment_that_disappears_fails_alone_and_keeps_its_list(
    store: Any, settings: Any, cid_emu: Any, cid: Any
) -> None:
    export = ci_export(store, cid_emu, ["Gone", "Churners"], ContactIdSource.COLUMN)
    first = run_now(store, settings, export)
    assert first.status is RunStatus.SUCCEEDED
    gone_list = list_id_of(first, "Gone")
    kept = cid_emu.state.list_members(gone_list)
    cid.drop_segment("Gone")

    second = run_now(store, settings, export)
    assert second.status is RunStatus.PARTIALLY_SUCCEEDED
    gone, churners = second.segments
    assert gone.error and "'Gone' does not exist in the customer-insights source" in gone.error
    assert churners.complete and churners.error is None
    assert cid_emu.state.list_members(gone_list) == kept  # never emptied by a vanished segment
    assert "'Gone'" in (second.reason or "")


def test_a_source_read_without_privilege_fails_the_run_saying_what_to_fix(
    store: Any, settings: Any, cid_emu: Any, cid: Any
) -> None:
    export = ci_export(store, cid_emu, ["Churners"], ContactIdSource.COLUMN)
    cid.readable = False
    final = run_now(store, settings, export)
    assert final.status is RunStatus.FAILED
    assert (
        final.error and "Viewer role" in final.error and "msdynci_segmentmemberships" in final.error
    )
