"""The embedded source: segments and unified customer rows uploaded to this app (Table Storage).

Contact IDs come from the customer rows' column named by the connection's contact-ID field.
Lookups read only the rows the batch names (point reads, never a scan of the customer table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.errors import NotFoundError
from shared.sources.base import EMBEDDED, SegmentNotInSource, SegmentOffer, SourceRead


class EmbeddedSource:
    kind = EMBEDDED

    def __init__(self, store: Any, contact_id_field: str) -> None:
        self._store = store
        self._field = contact_id_field
        self._read = SourceRead(kind=EMBEDDED)

    @property
    def contact_field(self) -> str:
        return self._field

    def members(self, segment: str) -> Sequence[str]:
        try:
            info = self._store.segments.get(segment)
            ids: list[str] = self._store.segments.members(segment)
        except NotFoundError:
            raise SegmentNotInSource(
                EMBEDDED, segment, "upload it, or remove it from the export"
            ) from None
        self._read = SourceRead(
            kind=EMBEDDED, member_rows=len(ids), watermark=info.updated_at or None, requests=2
        )
        return ids

    def lookup(self, customer_ids: Sequence[str]) -> Mapping[str, object | None]:
        rows = self._store.customers.get_each(customer_ids, columns=[self._field])
        self._read = SourceRead(
            kind=EMBEDDED,
            member_rows=self._read.member_rows,
            lookup_rows=self._read.lookup_rows + len(rows),
            watermark=self._read.watermark,
            requests=self._read.requests + len(set(customer_ids)),
        )
        return {cid: row.get(self._field) for cid, row in rows.items()}

    def describe(self) -> SourceRead:
        return self._read

    def list_segments(self) -> list[SegmentOffer]:
        infos = sorted(self._store.segments.list(), key=lambda s: s.name.lower())
        return [SegmentOffer(name=i.name, members=i.members) for i in infos]
