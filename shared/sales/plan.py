"""PURE planning: desired members vs current list members -> adds, removes, rejections. No I/O.

Input is the resolved segment (customer id -> normalized contact id pairs, in segment order) and
the contact ids currently in the list. The plan says which contacts to add (still to be validated
in Sales), which to remove (mirror mode only) and which members are left out as duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable
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
class Plan:
    adds: tuple[Add, ...]  # desired, not yet in the list (to validate, then add)
    removes: tuple[Remove, ...]  # in the list, not desired (mirror only)
    kept: int  # desired and already in the list
    extra_kept: int  # in the list, not desired, kept because the mode is additive
    rejections: tuple[Rejection, ...]  # duplicates found while planning

    @property
    def is_empty(self) -> bool:
        return not self.adds and not self.removes


def plan_membership(
    desired: Iterable[tuple[str, str]],
    current: AbstractSet[str],
    mode: ExportMode,
) -> Plan:
    """``desired`` yields (customer_id, contact_id) with normalized contact ids.

    A contact wanted by several customers is kept once (the first customer in segment order);
    the others are rejected as ``duplicate-contact``. Customer ids are expected to be unique
    (``resolve`` drops repeats before planning).
    """
    owner: dict[str, str] = {}  # contact id -> first customer id that maps to it
    rejections: list[Rejection] = []
    adds: list[Add] = []
    kept = 0
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
        if contact_id in current:
            kept += 1
        else:
            adds.append(Add(contact_id, customer_id))
    not_desired = [c for c in current if c not in owner]
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
        rejections=tuple(rejections),
    )
