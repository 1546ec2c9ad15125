"""The segment source seam: where a segment's members and their contact IDs come from.

A run asks the export's source, at the start of each segment's sync, for the segment's members
(customer ids) and, in batches, for each member's contact ID. ``sales/`` never knows where they
came from: ``customer_rows`` adapts a source to the lookup ``SegmentSyncRequest`` takes, so the
reasons for leaving a member out (no customer record, empty or malformed contact ID, ...) are
decided in one place (``shared/sales/resolve.py``) whatever the source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.errors import SegmentExportError, SourceReadError
from shared.models import SourceKind, SourceRead

EMBEDDED = SourceKind.EMBEDDED.value
CUSTOMER_INSIGHTS = SourceKind.CUSTOMER_INSIGHTS.value
__all__ = ["SourceRead", "SourceReadError"]  # re-exported for the package's users


@dataclass(frozen=True, slots=True)
class SegmentOffer:
    """A segment a source can serve, with its current member count."""

    name: str
    members: int


class SegmentNotInSource(SegmentExportError):
    """The source has no segment of this name (deleted, renamed, or never there)."""

    def __init__(self, kind: str, segment: str, hint: str = "") -> None:
        detail = f"segment {segment!r} does not exist in the {kind} source"
        super().__init__(detail + (f" ({hint})" if hint else ""))
        self.segment = segment


class SegmentSource(Protocol):
    """One source, opened for one run (or one API call)."""

    @property
    def kind(self) -> str: ...

    @property
    def contact_field(self) -> str:
        """The column the contact IDs come from (named in left-out details)."""
        ...

    def members(self, segment: str) -> Sequence[str]:
        """The segment's members (customer ids), read fresh and page by page.
        Raises SegmentNotInSource when the source has no such segment."""
        ...

    def lookup(self, customer_ids: Sequence[str]) -> Mapping[str, object | None]:
        """customer id -> the raw contact-ID value (None when empty) for the ids that have a
        customer record; ids without a record are absent. Reads only these ids' rows."""
        ...

    def describe(self) -> SourceRead:
        """What was read since the last ``members`` call (that segment's read)."""
        ...

    def list_segments(self) -> list[SegmentOffer]:
        """The segments this source offers, with member counts."""
        ...


CustomerRows = Callable[[Sequence[str]], Mapping[str, Mapping[str, object]]]


def customer_rows(source: SegmentSource) -> CustomerRows:
    """The source's lookup in the row shape ``SegmentSyncRequest.lookup_customers`` takes
    (one column: ``source.contact_field``)."""
    field = source.contact_field

    def lookup(batch: Sequence[str]) -> Mapping[str, Mapping[str, object]]:
        return {cid: {field: value} for cid, value in source.lookup(batch).items()}

    return lookup
