from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.models import RejectionReason
from shared.sales.resolve import Resolution, resolve_members

GOOD = "6F9619FF-8B86-D011-B42D-00C04FC964FF"


def test_reasons_for_every_member_that_cannot_be_mapped() -> None:
    rows = {
        "ok": {"ContactId": GOOD},
        "braced": {"ContactId": "{" + GOOD.lower() + "}"},
        "empty": {"ContactId": "  "},
        "missing": {"Other": 1},
        "none": {"ContactId": None},
        "bad": {"ContactId": "12345"},
        "number": {"ContactId": 12345},
    }
    calls: list[list[str]] = []

    def lookup(ids: Sequence[str]) -> Mapping[str, Mapping[str, object]]:
        calls.append(list(ids))
        return {i: rows[i] for i in ids if i in rows}

    resolution = Resolution()
    ids = ["ok", "braced", "empty", "missing", "none", "bad", "number", "ghost", "ok"]
    pairs = list(resolve_members(ids, lookup, "ContactId", resolution, batch_size=3))
    assert pairs == [("ok", GOOD.lower()), ("braced", GOOD.lower())]
    assert resolution.members == 8  # "ok" counted once
    reasons = {r.customer_id: r.reason for r in resolution.rejections}
    assert reasons == {
        "empty": RejectionReason.EMPTY_CONTACT_ID,
        "missing": RejectionReason.EMPTY_CONTACT_ID,
        "none": RejectionReason.EMPTY_CONTACT_ID,
        "bad": RejectionReason.MALFORMED_CONTACT_ID,
        "number": RejectionReason.MALFORMED_CONTACT_ID,
        "ghost": RejectionReason.NO_CUSTOMER_RECORD,
    }
    assert "12345" in next(r.detail for r in resolution.rejections if r.customer_id == "bad")
    # customers are looked up in batches, each id once
    assert [len(c) for c in calls] == [3, 3, 2]
    assert sorted(i for c in calls for i in c) == sorted(set(ids))
