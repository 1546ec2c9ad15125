"""sync_segment and probe_connection against the real emulator over HTTPS with real msal."""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import pytest

from shared.errors import AuthenticationError
from shared.models import ExportMode, RejectionReason, SegmentResult
from shared.sales import open_sales_client, probe_connection, sync_segment
from shared.sales.factory import forget_process_state
from shared.sales.plan import balanced_chunks
from tests.sales.helpers import Segment, active, connection_for, requests_by_kind, settings_for

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def emu(emulator: Any) -> Any:
    emulator.set_faults()
    emulator.reset_stats(throttling=True)
    return emulator


def run(emu: Any, request: Any, **settings_extra: str) -> Any:
    with open_sales_client(connection_for(emu), settings_for(emu, **settings_extra)) as client:
        return sync_segment(client, request)


def test_initial_export_then_no_change_refresh(emu: Any) -> None:
    indices = range(0, 2500)
    segment = Segment.of(emu, indices)
    first = run(emu, segment.request("Initial"))
    expected = active(emu, indices)
    result = first.result
    assert result.complete and result.list_created
    assert emu.state.list_members(result.list_id) == expected
    assert result.added == result.matched == len(expected)
    assert result.left_out == {"contact-inactive": 2500 - len(expected)}
    assert {r.reason for r in first.rejections} == {RejectionReason.CONTACT_INACTIVE}
    made = requests_by_kind(emu.stats())
    # find by name, create, validation (3 queries of <=1000), and the valid members cut so
    # that the emulator's dop hint (8) workers finish together: about 8 chunks, not 3 (the
    # size is fixed from the share of valid contacts in the first validation to answer)
    assert math.ceil(len(expected) / balanced_chunks(len(expected), 1000, 8)) == 8
    assert 8 <= made.pop("add-list-members") <= 9
    # validation: one query first (the first adds start sooner), then the other two in one batch
    assert made == {"list-query": 1, "list-create": 1, "batch": 2}

    emu.reset_stats()
    again = run(emu, segment.request("Initial", list_id=result.list_id))
    assert again.result.complete and again.result.added == again.result.removed == 0
    assert again.result.matched == len(expected)
    # list get, one member page, one validation batch for the inactive members: nothing else
    assert requests_by_kind(emu.stats()) == {"list-get": 1, "list-members-read": 1, "batch": 1}
    assert emu.stats()["members_added"] == 0


def test_mirror_removes_and_additive_keeps(emu: Any) -> None:
    indices = list(range(2500, 2800))
    segment = Segment.of(emu, indices)
    first = run(emu, segment.request("Mirror vs additive", chunk_size=100))
    list_id = first.result.list_id
    kept = [f"cust-{i}" for i in indices[:150]]

    additive = run(
        emu, segment.request("Mirror vs additive", kept, list_id=list_id, mode=ExportMode.ADDITIVE)
    )
    assert additive.result.removed == 0 and additive.result.complete
    assert emu.state.list_members(list_id) == active(emu, indices)

    mirror = run(emu, segment.request("Mirror vs additive", kept, list_id=list_id, chunk_size=40))
    assert mirror.result.complete
    assert emu.state.list_members(list_id) == active(emu, indices[:150])
    assert mirror.result.removed == len(active(emu, indices[150:]))


def test_deleted_list_is_recreated_and_reported(emu: Any) -> None:
    indices = range(2800, 2900)
    segment = Segment.of(emu, indices)
    first = run(emu, segment.request("Deleted list"))
    assert emu.state.delete_list(first.result.list_id)
    again = run(emu, segment.request("Deleted list", list_id=first.result.list_id))
    assert again.result.list_recreated and again.result.list_id != first.result.list_id
    assert emu.state.list_members(again.result.list_id) == active(emu, indices)
    assert [x["listid"] for x in emu.state.find_lists("Deleted list")] == [again.result.list_id]


def test_contact_deleted_between_validation_and_add_is_isolated(emu: Any) -> None:
    indices = [i for i in range(2900, 3100) if not emu.is_inactive(i)]
    segment = Segment.of(emu, indices)
    victim_index = indices[77]
    victim = emu.contact_id(victim_index)
    deleted: list[str] = []

    def on_progress(snapshot: SegmentResult) -> None:
        # the first validation has answered, no add has been sent yet: delete one contact
        if snapshot.progress.phase == "applying" and not deleted and snapshot.added == 0:
            assert emu.state.delete_contact(victim)
            deleted.append(victim)

    out = run(
        emu,
        segment.request("Deleted contact", chunk_size=50, on_progress=on_progress),
        SALES_MAX_PARALLEL="1",
    )
    assert deleted == [victim]
    assert out.result.complete
    assert emu.state.list_members(out.result.list_id) == {emu.contact_id(i) for i in indices} - {
        victim
    }
    (rejection,) = out.rejections
    assert rejection.reason is RejectionReason.CONTACT_NOT_FOUND  # Sales said 404, not refused
    assert rejection.customer_id == f"cust-{victim_index}" and rejection.contact_id == victim
    assert "Does Not Exist" in rejection.detail
    assert out.result.failed == 0 and out.result.added == len(indices) - 1


def test_mirror_list_ends_equal_to_the_matched_segment_when_contacts_turn_inactive(
    emu: Any,
) -> None:
    indices = [i for i in range(5600, 5700) if not emu.is_inactive(i)]
    segment = Segment.of(emu, indices)
    before_add, after_add = emu.contact_id(indices[10]), emu.contact_id(indices[20])
    touched: list[str] = []

    def on_progress(snapshot: SegmentResult) -> None:
        # validated, no add sent yet: deactivate one contact (Sales still accepts the add)
        if snapshot.progress.phase == "applying" and not touched and snapshot.added == 0:
            emu.state.set_contact_state(before_add, 1)
            touched.append(before_add)

    first = run(emu, segment.request("Turned inactive", on_progress=on_progress))
    assert touched and before_add in emu.state.list_members(first.result.list_id)
    emu.state.set_contact_state(after_add, 1)  # deactivated after it was added
    emu.reset_stats()

    again = run(emu, segment.request("Turned inactive", list_id=first.result.list_id))

    wanted = {emu.contact_id(i) for i in indices} - {before_add, after_add}
    assert emu.state.list_members(first.result.list_id) == wanted
    result = again.result
    assert result.complete and result.removed == 2 and result.added == 0
    assert result.matched == len(wanted) and result.left_out == {"contact-inactive": 2}
    assert {r.contact_id for r in again.rejections} == {before_add, after_add}
    # the statecode came with the member page: no validation request
    assert requests_by_kind(emu.stats()) == {
        "list-get": 1,
        "list-members-read": 1,
        "remove-list-members": 1,
    }
    fresh = run(emu, segment.request("Turned inactive, fresh"))
    assert (fresh.result.matched, fresh.result.left_out) == (result.matched, result.left_out)


def test_a_service_with_a_smaller_member_cap_is_learned_from_its_first_refusal(emu: Any) -> None:
    indices = [i for i in range(5700, 5990) if not emu.is_inactive(i)]
    segment = Segment.of(emu, indices)
    cap = emu.config.max_members_per_call
    emu.config.max_members_per_call = 50
    try:
        out = run(emu, segment.request("Small cap", chunk_size=200), SALES_MAX_PARALLEL="1")
    finally:
        emu.config.max_members_per_call = cap
    assert out.result.complete and out.result.added == len(indices) and out.result.failed == 0
    assert emu.state.list_members(out.result.list_id) == {emu.contact_id(i) for i in indices}
    adds = emu.stats()["requests"]["add-list-members"]
    # one refusal, then chunks of at most 50: no bisection
    assert adds.get("400") == 1
    assert adds.get("204") == math.ceil(len(indices) / 50)


def test_token_expiry_mid_run_refreshes_once_and_finishes(emu: Any) -> None:
    indices = range(3100, 3600)
    segment = Segment.of(emu, indices)
    expired: list[int] = []

    def on_progress(snapshot: SegmentResult) -> None:
        if snapshot.added and not expired:
            expired.append(emu.expire_tokens())

    forget_process_state()
    out = run(
        emu,
        segment.request("Token expiry", chunk_size=100, on_progress=on_progress),
        SALES_MAX_PARALLEL="2",
    )
    assert expired and expired[0] >= 1
    assert out.result.complete
    assert emu.state.list_members(out.result.list_id) == active(emu, indices)
    stats = emu.stats()
    assert stats["tokens_issued"] == 2
    assert sum(by.get("401", 0) for by in stats["requests"].values()) >= 1


def test_throttle_unavailable_and_drop_storm_is_honoured(emu: Any) -> None:
    indices = range(3600, 4200)
    segment = Segment.of(emu, indices)
    emu.set_faults(throttle=0.1, unavailable=0.08, drop=0.05, seed=7)
    try:
        out = run(emu, segment.request("Storm", chunk_size=50), SALES_MAX_RETRIES="20")
        refresh = run(
            emu,
            segment.request("Storm", list_id=out.result.list_id, chunk_size=50),
            SALES_MAX_RETRIES="20",
        )
    finally:
        emu.set_faults()
    stats = emu.stats()
    assert stats["faults"].get("throttle", 0) >= 1 and stats["faults"].get("drop", 0) >= 1
    assert stats["violations"] == 0
    assert out.result.complete and refresh.result.complete and refresh.result.added == 0
    assert emu.state.list_members(out.result.list_id) == active(emu, indices)


def test_interrupted_runs_converge(emu: Any) -> None:
    indices = list(range(4600, 5200))
    segment = Segment.of(emu, indices)
    rng = random.Random(5)
    # the segment changes between two exports; each export is interrupted at random points
    for wanted in (indices[:400], indices[200:]):
        ids = [f"cust-{i}" for i in wanted]
        list_id = None
        for _attempt in range(50):
            budget = [rng.randint(0, 4)]

            def should_stop(budget: list[int] = budget) -> bool:
                budget[0] -= 1
                return budget[0] < 0

            out = run(
                emu,
                segment.request(
                    "Interrupted", ids, list_id=list_id, chunk_size=60, should_stop=should_stop
                ),
            )
            list_id = out.result.list_id or list_id
            if out.result.complete:
                break
        else:
            pytest.fail("never completed")
        assert emu.state.list_members(list_id) == active(emu, wanted)
        assert out.result.matched == len(active(emu, wanted))
    assert len(emu.state.find_lists("Interrupted")) == 1


def test_dry_run_writes_nothing(emu: Any) -> None:
    indices = list(range(5200, 5400))
    segment = Segment.of(emu, indices)
    dry_new = run(emu, segment.request("Dry run", dry_run=True))
    assert dry_new.result.list_created and dry_new.result.list_id is None
    assert dry_new.result.added == len(active(emu, indices))
    assert emu.state.find_lists("Dry run") == []
    real = run(emu, segment.request("Dry run", [f"cust-{i}" for i in indices[:100]]))
    emu.reset_stats()
    dry = run(
        emu,
        segment.request(
            "Dry run",
            [f"cust-{i}" for i in indices[50:]],
            list_id=real.result.list_id,
            dry_run=True,
        ),
    )
    assert dry.result.added == len(active(emu, indices[100:]))
    assert dry.result.removed == len(active(emu, indices[:50]))
    stats = emu.stats()
    assert stats["members_added"] == stats["members_removed"] == 0
    assert set(requests_by_kind(stats)) <= {"list-get", "list-members-read", "batch"}
    assert emu.state.list_members(real.result.list_id) == active(emu, indices[:100])


def test_every_rejection_reason_is_reported(emu: Any) -> None:
    indices = [i for i in range(5400, 5500)]
    inactive = next(i for i in indices if emu.is_inactive(i))
    good = [i for i in indices if not emu.is_inactive(i)]
    segment = Segment.of(emu, [*good[:20], inactive])
    segment.rows.update(
        {
            "empty": {"ContactId": ""},
            "malformed": {"ContactId": "contact-42"},
            "ghost": {"ContactId": str(uuid.uuid4())},
            "twin": {"ContactId": emu.contact_id(good[0]).upper()},
            "deleted": {"ContactId": emu.contact_id(good[30])},
        }
    )
    ids = [*segment.rows, "nobody"]
    victim = emu.contact_id(good[30])

    def on_progress(snapshot: SegmentResult) -> None:
        if snapshot.progress.phase == "applying" and snapshot.added == 0:
            emu.state.delete_contact(victim)

    out = run(emu, segment.request("Reasons", ids, on_progress=on_progress))
    reasons = {r.customer_id: r.reason for r in out.rejections}
    assert reasons == {
        "empty": RejectionReason.EMPTY_CONTACT_ID,
        "malformed": RejectionReason.MALFORMED_CONTACT_ID,
        "ghost": RejectionReason.CONTACT_NOT_FOUND,
        "twin": RejectionReason.DUPLICATE_CONTACT,
        "deleted": RejectionReason.CONTACT_NOT_FOUND,  # deleted after validation: 404
        "nobody": RejectionReason.NO_CUSTOMER_RECORD,
        f"cust-{inactive}": RejectionReason.CONTACT_INACTIVE,
    }
    assert sum(out.result.left_out.values()) == len(out.rejections) == 7
    assert emu.state.list_members(out.result.list_id) == {emu.contact_id(i) for i in good[:20]}


def test_probe_reports_each_check(emu: Any) -> None:
    checks = probe_connection(connection_for(emu), settings_for(emu))
    assert [(c.name, c.ok) for c in checks] == [
        ("token", True),
        ("who-am-i", True),
        ("read-contacts", True),
        ("list-privileges", True),
    ]
    assert "x-ms-dop-hint 8" in checks[1].detail
    stats = emu.stats()
    assert stats["members_added"] == 0 and "list-create" not in stats["requests"]


def test_probe_with_a_wrong_secret_says_what_to_fix(emu: Any) -> None:
    settings = settings_for(emu, SEGEXP_SECRET_WRONG="not-the-secret")
    checks = probe_connection(connection_for(emu, secret_setting="SEGEXP_SECRET_WRONG"), settings)
    assert [c.ok for c in checks] == [False, False, False, False]
    assert "invalid_client" in checks[0].detail and "secret" in checks[0].detail
    assert "not-the-secret" not in " ".join(c.detail for c in checks)
    missing = probe_connection(
        connection_for(emu, secret_setting="SEGEXP_SECRET_NOT_SET"), settings
    )
    assert not missing[0].ok and "SEGEXP_SECRET_NOT_SET" in missing[0].detail


def test_wrong_secret_fails_the_sync_as_an_authentication_error(emu: Any) -> None:
    segment = Segment.of(emu, range(10))
    settings = settings_for(emu, SEGEXP_SECRET_WRONG2="nope")
    with (
        pytest.raises(AuthenticationError),
        open_sales_client(
            connection_for(emu, secret_setting="SEGEXP_SECRET_WRONG2"), settings
        ) as client,
    ):
        sync_segment(client, segment.request("Never"))
    assert emu.state.find_lists("Never") == []
