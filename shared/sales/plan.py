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
    rejections: tuple[Rejection, ...]  # duplicates; desired members inactive in Sales (mirror)

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


class _Mark:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_KEPT = _Mark("KEPT")  # seen in the list
_TAKEN = _Mark("TAKEN")  # handed out early as a known non-member
_INACTIVE = _Mark("INACTIVE")  # seen in the list with an inactive contact (mirror: removed)


class MembershipDiff:
    """Incremental desired-vs-list diff, fed with the list's members page by page. Pure.

    Takes over ``owner`` (contact id -> customer id) and marks contacts in place as they are
    seen in the list (kept) or handed out as known non-members (``take_missing``); what is left
    unmarked at the end is to add. Nothing holds every list member, so a million-member list
    costs no more memory than the segment itself. A member reported twice (pages that shift
    while the list changes) is counted once and never mistaken for a removal.

    Members whose contact is inactive (the member pages carry ``statecode``) are not matched: in
    mirror mode they are removed, and the desired ones among them are collected in
    ``inactive`` (contact-inactive) and never re-added; additive mode leaves them as they are.
    """

    def __init__(self, owner: dict[str, str], mode: ExportMode) -> None:
        self._state: dict[str, str | _Mark] = owner  # type: ignore[assignment]
        self._mode = mode
        self.kept = 0  # desired contacts seen in the list
        self.extra_kept = 0  # non-desired members left alone (additive)
        self.removals = 0  # non-desired members to remove (mirror)
        self.early_members = 0  # handed out as missing, then seen (pages out of order)
        self.taken = 0
        self._removed: set[str] = set()  # removal ids already returned (small: the churn)
        self.inactive: list[Add] = []  # desired members removed as inactive (caller drains it)

    def see(self, members: Iterable[str], inactive: AbstractSet[str] = frozenset()) -> list[str]:
        """Feed list members (``inactive``: those whose contact is inactive); returns those to
        remove (mirror mode), each once."""
        out: list[str] = []
        state = self._state
        mirror = self._mode is ExportMode.MIRROR
        for contact_id in members:
            value = state.get(contact_id)
            # (A member already counted as kept that shows up again, now inactive, on a page
            # that shifted stays kept: the next run removes it. Counts match actions.)
            if mirror and contact_id in inactive and value is not _KEPT and value is not _INACTIVE:
                if value is None:
                    if contact_id in self._removed:
                        continue
                    self._removed.add(contact_id)
                else:
                    if isinstance(value, str):
                        self.inactive.append(Add(contact_id, value))
                    # _TAKEN: handed out to validation, which reports it inactive
                    state[contact_id] = _INACTIVE
                out.append(contact_id)
                continue
            if value is None:
                if contact_id in self._removed:
                    continue
                if self._mode is ExportMode.MIRROR:
                    self._removed.add(contact_id)
                    out.append(contact_id)
                else:
                    self._removed.add(contact_id)
                    self.extra_kept += 1
            elif value is _KEPT or value is _INACTIVE:
                continue
            elif value is _TAKEN:
                self.early_members += 1
                state[contact_id] = _KEPT
            else:
                state[contact_id] = _KEPT
                self.kept += 1
        self.removals += len(out)
        return out

    def take_missing(self, contact_ids: Iterable[str]) -> list[Add]:
        """Hand out desired contacts known not to be members yet (e.g. below the ids read so far
        when pages come in id order)."""
        out: list[Add] = []
        state = self._state
        for contact_id in contact_ids:
            value = state.get(contact_id)
            if isinstance(value, str):
                state[contact_id] = _TAKEN
                out.append(Add(contact_id, value))
        self.taken += len(out)
        return out

    def finish(self) -> list[Add]:
        """The remaining adds, in segment order; the diff is used up."""
        adds = [Add(c, v) for c, v in self._state.items() if isinstance(v, str)]
        self._state = {}
        self._removed = set()
        return adds


def plan_membership(
    desired: Desired | Iterable[tuple[str, str]],
    current: AbstractSet[str],
    mode: ExportMode,
    inactive: AbstractSet[str] = frozenset(),
) -> Plan:
    """``inactive``: the members of ``current`` whose contact is inactive in Sales."""
    index = desired if isinstance(desired, Desired) else index_desired(desired)
    diff = MembershipDiff(dict(index.owner), mode)
    removes = diff.see(sorted(current), inactive)
    rejections = index.rejections + tuple(inactive_member(a) for a in diff.inactive)
    return Plan(
        adds=tuple(diff.finish()),
        removes=tuple(Remove(c) for c in sorted(removes)),
        kept=diff.kept,
        extra_kept=diff.extra_kept,
        rejections=rejections,
    )


def inactive_member(add: Add) -> Rejection:
    """The rejection of a desired member removed because its contact is inactive."""
    return Rejection(
        customer_id=add.customer_id,
        reason=RejectionReason.CONTACT_INACTIVE,
        contact_id=add.contact_id,
        detail="the contact is inactive in Sales; removed from the list",
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
