from __future__ import annotations

from shared.models import ExportMode, RejectionReason
from shared.sales.plan import Add, MembershipDiff, Remove, balanced_chunks, plan_membership


def test_mirror_adds_missing_and_removes_extra_members() -> None:
    plan = plan_membership(
        [("c1", "a"), ("c2", "b"), ("c3", "c")], {"b", "x", "y"}, ExportMode.MIRROR
    )
    assert plan.adds == (Add("a", "c1"), Add("c", "c3"))
    assert plan.removes == (Remove("x"), Remove("y"))
    assert plan.kept == 1 and plan.extra_kept == 0
    assert plan.rejections == ()


def test_additive_never_removes() -> None:
    plan = plan_membership([("c1", "a")], {"a", "x"}, ExportMode.ADDITIVE)
    assert plan.adds == () and plan.removes == ()
    assert plan.kept == 1 and plan.extra_kept == 1
    assert plan.is_empty


def test_two_customers_on_one_contact_keep_the_first_and_reject_the_second() -> None:
    plan = plan_membership([("c1", "a"), ("c2", "a"), ("c3", "b")], {"b"}, ExportMode.MIRROR)
    assert plan.adds == (Add("a", "c1"),)
    assert plan.kept == 1
    (rejection,) = plan.rejections
    assert rejection.customer_id == "c2" and rejection.contact_id == "a"
    assert rejection.reason is RejectionReason.DUPLICATE_CONTACT
    assert "c1" in rejection.detail


def test_duplicate_of_a_kept_member_is_not_removed_in_mirror_mode() -> None:
    plan = plan_membership([("c1", "a"), ("c2", "a")], {"a"}, ExportMode.MIRROR)
    assert plan.removes == () and plan.adds == () and plan.kept == 1
    assert len(plan.rejections) == 1


def test_empty_segment_in_mirror_mode_empties_the_list() -> None:
    plan = plan_membership([], {"b", "a"}, ExportMode.MIRROR)
    assert plan.removes == (Remove("a"), Remove("b"))
    assert plan.adds == () and plan.kept == 0


def test_plans_are_immutable_values() -> None:
    first = plan_membership(iter([("c1", "a")]), set(), ExportMode.MIRROR)
    second = plan_membership([("c1", "a")], frozenset(), ExportMode.MIRROR)
    assert first == second
    assert hash(first.adds[0]) == hash(Add("a", "c1"))


def test_streaming_diff_counts_each_member_once_and_never_removes_a_desired_one() -> None:
    owner = {"a": "c1", "b": "c2", "c": "c3", "d": "c4"}
    diff = MembershipDiff(owner, ExportMode.MIRROR)
    assert diff.see(["a", "x"]) == ["x"]
    assert diff.take_missing(["b", "a"]) == [Add("b", "c2")]  # "a" is a member already
    # pages that shifted: "a" and "x" again, and "b" (handed out early) turns out to be a member
    assert diff.see(["a", "x", "b", "y"]) == ["y"]
    assert diff.finish() == [Add("c", "c3"), Add("d", "c4")]
    assert (diff.kept, diff.early_members, diff.removals, diff.taken) == (1, 1, 2, 1)


def test_streaming_diff_in_additive_mode_counts_extra_members() -> None:
    diff = MembershipDiff({"a": "c1"}, ExportMode.ADDITIVE)
    assert diff.see(["a", "x", "x", "y"]) == []
    assert diff.extra_kept == 2 and diff.kept == 1 and diff.finish() == []


def test_balanced_chunks_fill_every_worker_in_the_last_round() -> None:
    assert balanced_chunks(100_000, 1000, 8) == 962  # 104 chunks = 13 full rounds of 8
    assert balanced_chunks(9_500, 1000, 8) == 594  # 16 chunks instead of 10 (2 rounds either way)
    assert balanced_chunks(600, 1000, 8) == 250  # split, but never below 250 a request
    assert balanced_chunks(11, 3, 4) == 3
    assert balanced_chunks(0, 1000, 8) == 1000


def test_mirror_removes_inactive_members_and_reports_the_desired_ones() -> None:
    plan = plan_membership(
        [("c1", "a"), ("c2", "b")], {"a", "b", "x"}, ExportMode.MIRROR, inactive={"b", "x"}
    )
    assert plan.removes == (Remove("b"), Remove("x")) and plan.adds == ()
    assert plan.kept == 1
    (rejection,) = plan.rejections
    assert (rejection.customer_id, rejection.reason) == ("c2", RejectionReason.CONTACT_INACTIVE)


def test_additive_leaves_inactive_members() -> None:
    plan = plan_membership([("c1", "a")], {"a", "x"}, ExportMode.ADDITIVE, inactive={"a", "x"})
    assert plan.removes == () and plan.adds == () and plan.rejections == ()


def test_streaming_diff_removes_an_inactive_member_once() -> None:
    diff = MembershipDiff({"a": "c1", "b": "c2"}, ExportMode.MIRROR)
    assert diff.see(["a", "b"], inactive={"b"}) == ["b"]
    assert diff.see(["b"], inactive={"b"}) == []  # a shifted page shows it again
    assert diff.see(["a"], inactive={"a"}) == []  # counted as kept already: the next run
    assert diff.kept == 1 and diff.removals == 1 and diff.inactive == [Add("b", "c2")]
    assert diff.finish() == []
