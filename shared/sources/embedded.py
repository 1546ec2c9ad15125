"""The embedded source: segments and unified customer rows uploaded to this app (Table Storage).

Contact IDs come from the customer rows' column named by the connection's contact-ID field.
The segment's customer rows are read once per segment (only the contact-ID column), then
answered from memory batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from shared.errors import NotFoundError
from shared.sources.base import EMBEDDED, SegmentNotInSource, SegmentOffer, SourceRead
from shared.store.protocols import StoreApi


class EmbeddedSource:
    kind = EMBEDDED

    def __init__(self, store: StoreApi, contact_id_field: str) -> None:
        self._store = store
        self._field = contact_id_field
        self._read = SourceRead(kind=EMBEDDED)
        self._members: Sequence[str] = ()
        self._rows: Callable[[Sequence[str]], Mapping[str, Mapping[str, Any]]] | None = None

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
        self._members, self._rows = ids, None
        return ids

    def lookup(self, customer_ids: Sequence[str]) -> Mapping[str, object | None]:
        if self._rows is None:
            # One read of the segment's rows (contact-ID column only), then answered from
            # memory for every batch: point reads when the segment is small next to the buckets
            # it touches, else bucket scans (the store's cost model, see customers.get_many).
            self._rows = self._store.customers.prefetch(self._members, columns=[self._field])
        rows = self._rows(customer_ids)
        self._read = replace(self._read, lookup_rows=self._read.lookup_rows + len(rows))
        return {cid: row.get(self._field) for cid, row in rows.items()}

    def describe(self) -> SourceRead:
        return self._read

    def list_segments(self) -> list[SegmentOffer]:
        infos = sorted(self._store.segments.list(), key=lambda s: s.name.lower())
        return [SegmentOffer(name=i.name, members=i.members) for i in infos]
