"""Map segment members (customer ids) to Dynamics 365 contact ids through the customer rows.

Members that cannot be mapped become rejections with a reason: no customer record, empty
contact-ID field, malformed contact ID. Duplicates are the planner's job (plan.py).
Customer rows are looked up in batches so a large segment never holds every row at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from shared.models import Rejection, RejectionReason
from shared.sales.odata import normalize_guid

LOOKUP_BATCH = 5000

Lookup = Callable[[Sequence[str]], Mapping[str, Mapping[str, object]]]


@dataclass(slots=True)
class Resolution:
    """Filled while ``pairs()`` is consumed."""

    members: int = 0  # unique customer ids in the segment
    rejections: list[Rejection] = field(default_factory=list)


def contact_id_from_row(
    row: Mapping[str, object], field_name: str
) -> tuple[str | None, Rejection | None]:
    """Return (normalized contact id, None) or (None, reason-less rejection template)."""
    raw = row.get(field_name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, Rejection("", RejectionReason.EMPTY_CONTACT_ID, None, f"{field_name} is empty")
    contact_id = normalize_guid(raw if isinstance(raw, str) else str(raw))
    if contact_id is None:
        shown = str(raw)[:60]
        return None, Rejection(
            "", RejectionReason.MALFORMED_CONTACT_ID, None, f"{field_name} is not a GUID: {shown!r}"
        )
    return contact_id, None


def resolve_members(
    customer_ids: Sequence[str],
    lookup: Lookup,
    contact_id_field: str,
    resolution: Resolution,
    *,
    batch_size: int = LOOKUP_BATCH,
) -> Iterator[tuple[str, str]]:
    """Yield (customer_id, contact_id) for members that map; record the others in ``resolution``."""
    seen: set[str] = set()
    batch: list[str] = []

    def flush() -> Iterator[tuple[str, str]]:
        rows = lookup(batch)
        for customer_id in batch:
            row = rows.get(customer_id)
            if row is None:
                resolution.rejections.append(
                    Rejection(customer_id, RejectionReason.NO_CUSTOMER_RECORD, None, "")
                )
                continue
            contact_id, problem = contact_id_from_row(row, contact_id_field)
            if problem is not None:
                resolution.rejections.append(
                    Rejection(customer_id, problem.reason, None, problem.detail)
                )
                continue
            assert contact_id is not None
            yield customer_id, contact_id

    for customer_id in customer_ids:
        if customer_id in seen:
            continue
        seen.add(customer_id)
        resolution.members += 1
        batch.append(customer_id)
        if len(batch) >= batch_size:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
