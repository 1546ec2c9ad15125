"""The embedded source: segments and unified customer rows uploaded to this app (Table Storage).

Contact IDs come from the customer rows' column named by the connection's contact-ID field.
The segment's customer rows are read once per segment (only the contact-ID column; point reads
or bucket scans, whichever the store's counts say is cheaper, or the buckets another export of
this process already read at the same table revision), then answered from memory batch by batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from shared.errors import NotFoundError
from shared.sources.base import EMBEDDED, SegmentNotInSource, SegmentOffer, SourceRead
from shared.store.protocols import ColumnValues, StoreApi


class EmbeddedSource:
    kind = EMBEDDED

    def __init__(self, store: StoreApi, contact_id_field: str) -> None:
        self._store = store
        self._field = contact_id_field
        self._read = SourceRead(kind=EMBEDDED)
        self._members: Sequence[str] = ()
        self._values: ColumnValues | None = None

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
        self._members, self._values = ids, None
        return ids

    def lookup(self, customer_ids: Sequence[str]) -> Mapping[str, object | None]:
        if self._values is None:
            self._values = self._store.customers.lookup_column(self._members, self._field)
            cost = self._values.read
            self._read = replace(
                self._read,
                lookup_rows=self._read.lookup_rows + cost.rows_read,
                lookup_shared_rows=self._read.lookup_shared_rows + cost.rows_cached,
                lookup_strategy=cost.strategy,
                requests=self._read.requests + cost.requests,
            )
        return self._values(customer_ids)

    def describe(self) -> SourceRead:
        return self._read

    def list_segments(self) -> list[SegmentOffer]:
        infos = sorted(self._store.segments.list(), key=lambda s: s.name.lower())
        return [SegmentOffer(name=i.name, members=i.members) for i in infos]
