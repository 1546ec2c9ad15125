from __future__ import annotations

from shared.models import ExportMode, RejectionReason
from shared.sales.plan import Add, Remove, plan_membership


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
