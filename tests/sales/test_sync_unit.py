"""sync_segment against the hand-written fake (fast, exact request accounting)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import httpx
import pytest

from shared.errors import FatalSalesError, TransientSalesError
from shared.models import ExportMode, RejectionReason, SegmentResult
from shared.sales.client import SalesClient
from shared.sales.lists import list_owner, owner_marker
from shared.sales.sync import SegmentSyncRequest, sync_segment
from tests.sales.conftest import FakeTime
from tests.sales.fakes import FakeDataverse, FakeList, guid

MakeClient = Callable[..., SalesClient]


def customers(n: int, **special: object) -> dict[str, dict[str, object]]:
    rows: dict[str, dict[str, object]] = {f"cust-{i}": {"ContactId": guid(i)} for i in range(n)}
    for key, value in special.items():
        rows[key] = {"ContactId": value}
    return rows


def request(
    rows: Mapping[str, Mapping[str, object]], ids: Sequence[str], **kwargs: object
) -> SegmentSyncRequest:
    def lookup(batch: Sequence[str]) -> Mapping[str, Mapping[str, object]]:
        return {i: rows[i] for i in batch if i in rows}

    options: dict[str, object] = {
        "segment": "High value",
        "customer_ids": list(ids),
        "lookup_customers": lookup,
        "contact_id_field": "ContactId",
        "list_name": "High value",
        "mode": ExportMode.MIRROR,
        "owner": "export-1",
        "chunk_size": 3,
    }
    options.update(kwargs)
    return SegmentSyncRequest(**options)  # type: ignore[arg-type]


def only_list(fake: FakeDataverse) -> FakeList:
    (found,) = fake.lists.values()
    return found


def test_initial_export_creates_a_static_contact_list_and_reports_every_rejection(
    make_client: MakeClient,
) -> None:
    fake = FakeDataverse.with_contacts(20, inactive={3})
    rows = customers(12, empty="", bad="xyz", ghost=guid(500), dup=guid(0))
    ids = [f"cust-{i}" for i in range(12)] + ["empty", "bad", "ghost", "dup", "nobody", "cust-1"]
    progress: list[SegmentResult] = []
    client = make_client(fake)
    out = sync_segment(client, request(rows, ids, on_progress=progress.append))

    created = only_list(fake)
    assert created.name == "High value" and created.createdfromcode == 2 and created.type is False
    expected = {guid(i) for i in range(12)} - {guid(3)}
    assert created.members == expected
    result = out.result
    assert result.complete and result.list_created and not result.list_recreated
    assert result.list_id == created.id
    assert result.members == 17  # unique customer ids
    assert result.matched == 11 and result.added == 11 and result.removed == 0
    assert result.left_out == {
        "contact-inactive": 1,
        "empty-contact-id": 1,
        "malformed-contact-id": 1,
        "contact-not-found": 1,
        "duplicate-contact": 1,
        "no-customer-record": 1,
    }
    by_customer = {r.customer_id: r.reason for r in out.rejections}
    assert by_customer["cust-3"] is RejectionReason.CONTACT_INACTIVE
    assert by_customer["ghost"] is RejectionReason.CONTACT_NOT_FOUND
    assert by_customer["dup"] is RejectionReason.DUPLICATE_CONTACT
    # requests: find by name, create, (dop) WhoAmI, one validation batch, ceil(11/3) = 4 adds
    assert fake.kinds.count("list-get") == 1 and fake.count("list-post") == 1
    assert fake.count("batch") == 1 and fake.count("AddListMembersList") == 4
    assert fake.count("members") == 0  # a new list is known to be empty
    assert len(fake.requests) == 1 + 1 + 1 + 1 + 4
    # progress: list created first (so the caller can store its id), then after each chunk
    first_with_id = next(p for p in progress if p.list_id)
    assert first_with_id.list_id == created.id and first_with_id.added == 0
    assert [p.added for p in progress if p.progress.phase == "applying"][-1] == 11
    assert progress[-1].complete and progress[-1].progress.phase == "done"


def test_no_change_refresh_reads_the_list_and_nothing_else(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(30)
    rows = customers(30)
    ids = list(rows)
    first = sync_segment(make_client(fake), request(rows, ids, chunk_size=10))
    fake.requests.clear()
    fake.kinds.clear()
    second = sync_segment(
        make_client(fake, page_size=7), request(rows, ids, list_id=first.result.list_id)
    )
    assert second.result.complete and second.result.added == 0 and second.result.removed == 0
    assert second.result.matched == 30
    assert fake.kinds == ["list-get"] + ["members"] * 5  # 30 members, 7 a page


def test_refresh_with_inactive_members_spends_one_validation_request(
    make_client: MakeClient,
) -> None:
    fake = FakeDataverse.with_contacts(40, inactive={1, 2, 3})
    rows = customers(40)
    first = sync_segment(make_client(fake), request(rows, list(rows), chunk_size=10))
    fake.kinds.clear()
    again = sync_segment(make_client(fake), request(rows, list(rows), list_id=first.result.list_id))
    assert fake.kinds == ["list-get", "members", "batch"]
    assert again.result.left_out == {"contact-inactive": 3}


def test_mirror_removes_members_who_left_and_additive_keeps_them(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(10)
    rows = customers(10)
    first = sync_segment(make_client(fake), request(rows, list(rows)))
    list_id = first.result.list_id
    smaller = [f"cust-{i}" for i in range(6)] + ["cust-9"]

    additive = sync_segment(
        make_client(fake), request(rows, smaller, list_id=list_id, mode=ExportMode.ADDITIVE)
    )
    assert additive.result.removed == 0 and len(only_list(fake).members) == 10

    mirror = sync_segment(make_client(fake), request(rows, smaller, list_id=list_id))
    assert mirror.result.removed == 3 and mirror.result.added == 0
    assert only_list(fake).members == {guid(i) for i in (0, 1, 2, 3, 4, 5, 9)}
    assert fake.count("RemoveListMembersList") == 1


def test_deleted_list_is_recreated_and_reported(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(5)
    rows = customers(5)
    first = sync_segment(make_client(fake), request(rows, list(rows)))
    old_id = first.result.list_id
    assert old_id is not None
    del fake.lists[old_id]
    again = sync_segment(make_client(fake), request(rows, list(rows), list_id=old_id))
    assert again.result.list_recreated and again.result.list_created
    assert again.result.list_id != old_id and again.result.added == 5
    assert only_list(fake).members == {guid(i) for i in range(5)}


def test_killed_after_create_adopts_the_list_by_name(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(5)
    fake.lists["x"] = FakeList(
        "00000000-0000-0000-0000-0000000000aa", "High value", description=owner_marker("export-1")
    )
    fake.lists = {v.id: v for v in fake.lists.values()}
    rows = customers(5)
    out = sync_segment(make_client(fake), request(rows, list(rows)))
    assert (
        not out.result.list_created and out.result.list_id == "00000000-0000-0000-0000-0000000000aa"
    )
    assert len(fake.lists) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": True}, "dynamic"),
        ({"createdfromcode": 1}, "not a contact list"),
        ({"statecode": 1}, "inactive"),
        ({"lockstatus": True}, "locked"),
    ],
)
def test_stored_list_that_changed_kind_or_state_is_refused(
    make_client: MakeClient, change: dict[str, object], message: str
) -> None:
    fake = FakeDataverse.with_contacts(3)
    target = FakeList("00000000-0000-0000-0000-0000000000bb", "High value")
    for key, value in change.items():
        setattr(target, key, value)
    fake.lists = {target.id: target}
    rows = customers(3)
    with pytest.raises(FatalSalesError, match=message):
        sync_segment(make_client(fake), request(rows, list(rows), list_id=target.id))
    assert target.members == set()
    assert fake.count("AddListMembersList") == 0


@pytest.mark.parametrize("named", [False, True])
def test_contact_deleted_after_validation_is_isolated(make_client: MakeClient, named: bool) -> None:
    fake = FakeDataverse.with_contacts(16)
    fake.name_culprit = named
    victim = guid(5)

    def hook(request: httpx.Request, kind: str) -> httpx.Response | None:
        if kind == "AddListMembersList":
            fake.contacts.pop(victim, None)  # deleted in Sales between validation and add
        return None

    fake.hook = hook
    rows = customers(16)
    out = sync_segment(make_client(fake, max_parallel=1), request(rows, list(rows), chunk_size=8))
    assert only_list(fake).members == {guid(i) for i in range(16)} - {victim}
    (rejection,) = out.rejections
    # Sales said 404 "contact With Id = ... Does Not Exist": the member is left out as not found
    # (like a contact missing at validation), not refused by Sales (which turns the run amber).
    assert rejection.reason is RejectionReason.CONTACT_NOT_FOUND
    assert rejection.customer_id == "cust-5" and rejection.contact_id == victim
    assert "Does Not Exist" in rejection.detail
    assert out.result.added == 15 and out.result.failed == 0 and out.result.matched == 15
    assert out.result.left_out == {"contact-not-found": 1}
    assert out.result.complete and out.result.progress.done == out.result.progress.total
    adds = fake.count("AddListMembersList")
    # 2 chunks of 8; the bad one: named -> 1 retry without it; bisection -> 2*log2(8) more
    assert adds == (2 + 1 if named else 2 + 6)


def test_list_deleted_during_the_run_fails_the_call_as_transient(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(6)
    rows = customers(6)

    def hook(request: httpx.Request, kind: str) -> httpx.Response | None:
        if kind == "AddListMembersList":
            fake.lists.clear()
        return None

    fake.hook = hook
    with pytest.raises(TransientSalesError, match="disappeared"):
        sync_segment(make_client(fake, max_parallel=1), request(rows, list(rows)))
    assert fake.count("AddListMembersList") == 1  # no bisection storm


def test_deadline_stops_before_a_new_chunk_and_rerun_converges(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    fake = FakeDataverse.with_contacts(20)
    rows = customers(20)
    stop_after = [2]

    def should_stop() -> bool:
        stop_after[0] -= 1
        return stop_after[0] < 0

    out = sync_segment(
        make_client(fake, max_parallel=1), request(rows, list(rows), should_stop=should_stop)
    )
    assert not out.result.complete and out.result.added < 20
    assert len(only_list(fake).members) == out.result.added

    passed = sync_segment(
        make_client(fake),
        request(rows, list(rows), list_id=out.result.list_id, deadline=fake_time.clock()),
    )
    assert not passed.result.complete and passed.result.added == 0

    done = sync_segment(make_client(fake), request(rows, list(rows), list_id=out.result.list_id))
    assert done.result.complete and done.result.added == 20 - out.result.added
    assert only_list(fake).members == {guid(i) for i in range(20)}


def test_dry_run_writes_nothing_and_reports_what_would_change(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(10, inactive={0})
    rows = customers(10)
    out = sync_segment(make_client(fake), request(rows, list(rows), dry_run=True))
    assert fake.lists == {}
    assert not any(
        k in ("list-post", "AddListMembersList", "RemoveListMembersList") for k in fake.kinds
    )
    assert out.result.list_created and out.result.list_id is None
    assert out.result.added == 9 and out.result.complete
    assert out.result.left_out == {"contact-inactive": 1}

    real = sync_segment(make_client(fake), request(rows, [f"cust-{i}" for i in range(1, 10)]))
    fake.kinds.clear()
    smaller = sync_segment(
        make_client(fake),
        request(rows, ["cust-1", "cust-2"], list_id=real.result.list_id, dry_run=True),
    )
    assert smaller.result.removed == 7 and smaller.result.added == 0
    assert len(only_list(fake).members) == 9
    assert fake.kinds == ["list-get", "members"]


@pytest.mark.parametrize("descending", [False, True])
def test_adds_start_while_reading_and_out_of_order_pages_stay_correct(
    make_client: MakeClient, descending: bool
) -> None:
    """Pages in contactid order let adds start before the last page; pages out of order stop
    that early start, and the few early adds of existing members are counted once, as kept."""
    fake = FakeDataverse.with_contacts(60)
    target = FakeList("00000000-0000-0000-0000-0000000000cc", "High value")
    target.members = {guid(i) for i in range(0, 60, 2)}  # the even contacts are members
    fake.lists = {target.id: target}
    fake.descending_pages = descending
    fake.dop_on_every_response = True  # width 2 from the first answer: a page and one more task
    rows = customers(60)
    order: list[str] = []
    fake.hook = lambda request, kind: order.append(kind) or None  # type: ignore[func-returns-value]
    import shared.sales.sync as sync_module

    old = sync_module.STREAM_VALIDATE_MIN
    sync_module.STREAM_VALIDATE_MIN = 5
    try:
        out = sync_segment(
            make_client(fake, page_size=5, max_parallel=2),
            request(rows, list(rows), list_id=target.id, chunk_size=5),
        )
    finally:
        sync_module.STREAM_VALIDATE_MIN = old
    assert target.members == {guid(i) for i in range(60)}
    assert out.result.complete and out.result.matched == 60
    last_page = max(i for i, kind in enumerate(order) if kind == "members")
    first_add = order.index("AddListMembersList")
    if descending:
        assert out.result.added >= 30  # early no-op adds of members are still sent
    else:
        assert first_add < last_page  # adding began before the list was fully read
        assert out.result.added == 30


def test_list_deleted_while_it_is_read_fails_the_call_as_transient(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(30)
    target = FakeList("00000000-0000-0000-0000-0000000000dd", "High value")
    target.members = {guid(i) for i in range(30)}
    fake.lists = {target.id: target}
    pages = [0]

    def hook(request: httpx.Request, kind: str) -> httpx.Response | None:
        if kind == "members":
            pages[0] += 1
            if pages[0] == 2:
                fake.lists.clear()
        return None

    fake.hook = hook
    rows = customers(30)
    with pytest.raises(TransientSalesError, match="disappeared"):
        sync_segment(make_client(fake, page_size=10), request(rows, list(rows), list_id=target.id))
    assert not any(k.endswith("MembersList") for k in fake.kinds)


def test_mirror_removes_members_whose_contact_became_inactive(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(10)
    rows = customers(10)
    first = sync_segment(make_client(fake), request(rows, list(rows)))
    list_id = first.result.list_id
    fake.contacts[guid(3)] = 1  # deactivated in Sales after it was added
    fake.kinds.clear()

    again = sync_segment(make_client(fake), request(rows, list(rows), list_id=list_id))

    # statecode comes with the member pages: no validation request for members already in
    assert fake.kinds == ["list-get", "members", "RemoveListMembersList"]
    assert only_list(fake).members == {guid(i) for i in range(10)} - {guid(3)}
    result = again.result
    assert result.complete and result.removed == 1 and result.added == 0
    assert result.matched == 9 and result.left_out == {"contact-inactive": 1}
    (rejection,) = again.rejections
    assert (rejection.customer_id, rejection.reason) == ("cust-3", RejectionReason.CONTACT_INACTIVE)
    # a fresh export of the same segment counts the same
    fresh = sync_segment(make_client(fake), request(rows, list(rows), list_name="Fresh"))
    assert fresh.result.matched == result.matched
    assert fresh.result.left_out == result.left_out


def test_additive_leaves_inactive_members_in_the_list(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(6)
    rows = customers(6)
    first = sync_segment(make_client(fake), request(rows, list(rows), mode=ExportMode.ADDITIVE))
    fake.contacts[guid(2)] = 1
    again = sync_segment(
        make_client(fake),
        request(rows, list(rows), list_id=first.result.list_id, mode=ExportMode.ADDITIVE),
    )
    assert only_list(fake).members == {guid(i) for i in range(6)}
    assert again.result.removed == 0 and fake.count("RemoveListMembersList") == 0


def test_contact_deactivated_between_validation_and_add_leaves_on_the_next_run(
    make_client: MakeClient,
) -> None:
    fake = FakeDataverse.with_contacts(8)
    victim = guid(4)

    def hook(request: httpx.Request, kind: str) -> httpx.Response | None:
        if kind == "AddListMembersList":
            fake.contacts[victim] = 1  # the add itself succeeds: Sales accepts inactive members
        return None

    fake.hook = hook
    rows = customers(8)
    first = sync_segment(make_client(fake), request(rows, list(rows)))
    assert victim in only_list(fake).members
    fake.hook = None
    again = sync_segment(make_client(fake), request(rows, list(rows), list_id=first.result.list_id))
    assert only_list(fake).members == {guid(i) for i in range(8)} - {victim}
    assert again.result.matched == 7 and again.result.left_out == {"contact-inactive": 1}


def test_inactive_members_outside_the_segment_are_removed_once(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(6)
    rows = customers(6)
    first = sync_segment(make_client(fake), request(rows, list(rows)))
    fake.contacts[guid(5)] = 1
    smaller = [f"cust-{i}" for i in range(5)]
    again = sync_segment(make_client(fake), request(rows, smaller, list_id=first.result.list_id))
    assert again.result.removed == 1 and again.result.left_out == {}
    assert only_list(fake).members == {guid(i) for i in range(5)}


def test_a_refusal_for_too_many_members_sets_the_chunk_size_for_the_rest(
    make_client: MakeClient,
) -> None:
    fake = FakeDataverse.with_contacts(100)
    fake.max_members = 8
    rows = customers(100)
    out = sync_segment(make_client(fake, max_parallel=1), request(rows, list(rows), chunk_size=25))
    assert only_list(fake).members == {guid(i) for i in range(100)}
    assert out.result.complete and out.result.added == 100 and out.result.failed == 0
    assert out.rejections == []
    # one refused call of 25, then every call at most 8: no bisection, no member sent twice
    # beyond the refused chunk
    refused, *accepted = fake.action_sizes
    assert refused == 25 and max(accepted) <= 8 and sum(accepted) == 100
    assert len(accepted) == 13  # ceil(100 / 8)


def test_a_refusal_without_a_number_halves_the_chunk_size(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(40)
    fake.max_members = 6
    fake.max_members_message = "Too many members in the request."
    rows = customers(40)
    out = sync_segment(make_client(fake, max_parallel=1), request(rows, list(rows), chunk_size=20))
    assert only_list(fake).members == {guid(i) for i in range(40)}
    assert out.result.added == 40 and out.result.failed == 0 and out.rejections == []
    sizes = [s for s in fake.action_sizes if s > 6]
    assert sizes == [20, 10]  # learned 5 after two refusals, then every chunk fits
    assert sum(s for s in fake.action_sizes if s <= 6) == 40


def test_a_created_list_records_the_export_that_owns_it(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(3)
    rows = customers(3)
    sync_segment(make_client(fake), request(rows, list(rows), owner="export-7"))
    assert list_owner(only_list(fake).description) == "export-7"


@pytest.mark.parametrize("description", [None, "made by hand", owner_marker("export-2")])
def test_a_list_this_export_did_not_create_is_not_adopted_by_name(
    make_client: MakeClient, description: str | None
) -> None:
    fake = FakeDataverse.with_contacts(3)
    theirs = FakeList(
        "00000000-0000-0000-0000-0000000000cc",
        "High value",
        members={guid(0)},
        description=description,
    )
    fake.lists = {theirs.id: theirs}
    rows = customers(3)
    with pytest.raises(FatalSalesError, match="High value") as raised:
        sync_segment(make_client(fake), request(rows, list(rows), owner="export-1"))
    if description and "export-2" in description:
        assert "export-2" in str(raised.value)
    assert theirs.members == {guid(0)} and len(fake.lists) == 1
    assert fake.count("AddListMembersList") == fake.count("RemoveListMembersList") == 0


def test_a_stored_list_owned_by_another_export_is_refused(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(3)
    theirs = FakeList(
        "00000000-0000-0000-0000-0000000000dd", "High value", description=owner_marker("export-2")
    )
    fake.lists = {theirs.id: theirs}
    rows = customers(3)
    with pytest.raises(FatalSalesError, match="export-2"):
        sync_segment(make_client(fake), request(rows, list(rows), list_id=theirs.id))
    assert theirs.members == set()


def test_a_dry_run_refuses_another_exports_list_too(make_client: MakeClient) -> None:
    fake = FakeDataverse.with_contacts(3)
    theirs = FakeList(
        "00000000-0000-0000-0000-0000000000ee", "High value", description=owner_marker("export-2")
    )
    fake.lists = {theirs.id: theirs}
    rows = customers(3)
    with pytest.raises(FatalSalesError, match="export-2"):
        sync_segment(make_client(fake), request(rows, list(rows), dry_run=True))
