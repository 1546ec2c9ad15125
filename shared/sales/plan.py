"""PURE planning: desired members vs current list members -> adds, removes, rejections. No I/O.

Input is the resolved segment (customer id -> normalized contact id pairs, in segment order),
indexed once by ``index_desired``, and the contact ids currently in the list. The plan says which
contacts to add (still to be validated in Sales), which to remove (mirror mode only) and which
members are left out as duplicates. ``removals_among`` lets the caller start removing while the
list's pages are still being read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from shared.models import ExportMode, Rejection, RejectionReason


@dataclass(frozen=True, slots=True)
class Add:
    contact_id: str
    customer_id: str


@dataclass(frozen=True, slots=True)
class Remove:
    contact_id: str


@dataclass(frozen=True, slots=True)
class Desired:
    """The segment as contacts: contact id -> the customer it came from (first one wins)."""

    owner: Mapping[str, str]
    rejections: tuple[Rejection, ...]  # duplicate-contact

    def __contains__(self, contact_id: object) -> bool:
        return contact_id in self.owner

    def __len__(self) -> int:
        return len(self.owner)


@dataclass(frozen=True, slots=True)
class Plan:
    adds: tuple[Add, ...]  # desired, not yet in the list (to validate, then add)
    removes: tuple[Remove, ...]  # in the list, not desired (mirror only)
    kept: int  # desired and already in the list
    extra_kept: int  # in the list, not desired, kept because the mode is additive
    rejections: tuple[Rejection, ...]  # duplicates found while planning

    @property
    def is_empty(self) -> bool:
        return not self.adds and not self.removes


def index_desired(desired: Iterable[tuple[str, str]]) -> Desired:
    """``desired`` yields (customer_id, contact_id) with normalized contact ids and unique
    customer ids (``resolve`` drops repeats). A contact wanted by several customers is kept once
    (the first in segment order); the others are rejected as ``duplicate-contact``."""
    owner: dict[str, str] = {}
    rejections: list[Rejection] = []
    for customer_id, contact_id in desired:
        first = owner.get(contact_id)
        if first is not None:
            rejections.append(
                Rejection(
                    customer_id=customer_id,
                    reason=RejectionReason.DUPLICATE_CONTACT,
                    contact_id=contact_id,
                    detail=f"customer {first} already maps to this contact",
                )
            )
            continue
        owner[contact_id] = customer_id
    return Desired(owner=owner, rejections=tuple(rejections))


def removals_among(contact_ids: Iterable[str], desired: Desired, mode: ExportMode) -> list[str]:
    """Members (e.g. of one page of the list) that the plan will remove."""
    if mode is not ExportMode.MIRROR:
        return []
    return [c for c in contact_ids if c not in desired.owner]


def plan_membership(
    desired: Desired | Iterable[tuple[str, str]],
    current: AbstractSet[str],
    mode: ExportMode,
) -> Plan:
    index = desired if isinstance(desired, Desired) else index_desired(desired)
    adds: list[Add] = []
    kept = 0
    for contact_id, customer_id in index.owner.items():
        if contact_id in current:
            kept += 1
        else:
            adds.append(Add(contact_id, customer_id))
    not_desired = [c for c in current if c not in index.owner]
    if mode is ExportMode.MIRROR:
        removes = tuple(Remove(c) for c in sorted(not_desired))
        extra = 0
    else:
        removes = ()
        extra = len(not_desired)
    return Plan(
        adds=tuple(adds),
        removes=removes,
        kept=kept,
        extra_kept=extra,
        rejections=index.rejections,
    )


def balanced_chunks(total: int, max_size: int, width: int) -> int:
    """A chunk size <= ``max_size`` that cuts ``total`` into a multiple of ``width`` chunks, so
    ``width`` parallel workers finish their last round together instead of leaving slots idle."""
    if total <= 0:
        return max(1, max_size)
    chunks = math.ceil(total / max_size)
    rounds = math.ceil(chunks / max(1, width))
    size = math.ceil(total / (rounds * max(1, width)))
    # Small totals are not worth splitting: requests cost more than the idle slots.
    return max(1, min(max_size, max(size, MIN_BALANCED_CHUNK)))


MIN_BALANCED_CHUNK = 250
