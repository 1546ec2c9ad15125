"""The Customer Insights – Data source: CI-D's output tables in Dataverse, read at run start.

Tables (see the team's reference/customer-insights-tables.md, from Microsoft's CI-D docs):
- ``msdynci_segmentmemberships``: one row per customer, ``msdynci_segments`` holding the names
  of every segment the customer is in. One segment's members are the documented query
  ``$filter=contains(msdynci_segments,'"<Name>"')&$select=msdynci_customerid``; quoting the name
  keeps ``VIP`` from matching ``VIP_2``. Paged at 5,000 rows.
- ``msdynci_customerprofiles``: the unified profile; the contact ID is the column the connection
  names (``contact_id_source = column``).
- ``msdynci_alternatekeys``: rows with ``msdynci_entityname = 'contact'`` whose
  ``msdynci_alternatevalue`` is the contact ID (``contact_id_source = alternate-key``).
Profile and key lookups send ``Microsoft.Dynamics.CRM.In`` filters over a batch of customer ids,
several of them inside one ``$batch``. Reads only: Microsoft asks callers never to write these.
Every request goes through the connection's SalesClient, so reads share the throttling gate of
the writes to the same environment and identity (one Dataverse budget).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from shared.errors import FatalSalesError, SalesError
from shared.models import ContactIdSource, SourceRead
from shared.sales.batch import BatchPart
from shared.sales.client import SalesClient, error_for
from shared.sales.odata import API_PATH, MAX_BATCH_GET_URL, relative_url, string_literal
from shared.sources.base import (
    CUSTOMER_INSIGHTS,
    SegmentNotInSource,
    SegmentOffer,
    SourceReadError,
)

log = logging.getLogger(__name__)

MEMBERSHIPS = "msdynci_segmentmemberships"
PROFILES = "msdynci_customerprofiles"
ALTERNATE_KEYS = "msdynci_alternatekeys"
CUSTOMER_ID = "msdynci_customerid"
SEGMENTS = "msdynci_segments"
ALTERNATE_VALUE = "msdynci_alternatevalue"
PAGE_SIZE = 5000  # the documented maximum page size
IDS_PER_QUERY = 500  # customer ids per In filter (also bounded by URL length below)
QUERIES_PER_BATCH = 2  # In queries per $batch (Dataverse allows 1,000 operations)
# A $batch runs its parts one after another on the server, so a lookup sends several small
# batches at once (up to the client's parallelism) rather than one long one.

_MISSING_SEGMENT_HINT = (
    "no row of msdynci_segmentmemberships names it: it was deleted or renamed in Customer "
    "Insights, its output has not reached Dataverse yet, or Settings > Data sharing is off; "
    "a segment without members looks the same, so its list is left unchanged"
)


def contains_filter(segment: str) -> str:
    """The documented membership filter for one segment (name quoted as in the stored JSON)."""
    return f"contains({SEGMENTS},{string_literal(json.dumps(segment, ensure_ascii=False))})"


def in_strings(property_name: str, values: Sequence[str]) -> str:
    items = ",".join(string_literal(v) for v in values)
    return (
        f"Microsoft.Dynamics.CRM.In(PropertyName={string_literal(property_name)},"
        f"PropertyValues=[{items}])"
    )


def segment_names(text: object) -> list[str] | None:
    """The names in one ``msdynci_segments`` value, or None when it cannot be read.

    Its shape is not documented; public plugin code reads it as ``{"Segments": [...]}``. A bare
    JSON list is accepted too; anything else is a data problem for the caller to count."""
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("Segments")
    if isinstance(data, list) and all(isinstance(n, str) for n in data):
        return data
    return None


def explain(exc: SalesError, table: str) -> SourceReadError:
    """A source read failure in words that say what to fix (the fix first: run errors are
    shortened)."""
    status = exc.status
    if status == 403:
        fix = (
            f"the identity may not read {table}: give its application user the Customer "
            "Insights - Data Viewer role (Read on the msdynci_ tables)"
        )
    elif status == 404:
        fix = (
            f"{table} not found: turn on Data sharing in Customer Insights - Data, or read "
            "through the connection of the environment it shares data with"
        )
    elif status == 400 and "property" in str(exc).lower():
        fix = f"a column asked of {table} does not exist: check the connection's contact-ID field"
    else:
        fix = f"reading {table} failed: {exc}"
    return SourceReadError(
        f"Customer Insights source: {fix} (HTTP {status}, code {exc.code})",
        status=status,
        code=exc.code,
        request_id=exc.request_id,
        body_excerpt=exc.body_excerpt,
    )


class CustomerInsightsSource:
    kind = CUSTOMER_INSIGHTS

    def __init__(
        self,
        client: SalesClient,
        contact_id_source: ContactIdSource,
        contact_id_field: str,
        *,
        page_size: int = PAGE_SIZE,
        ids_per_query: int = IDS_PER_QUERY,
    ) -> None:
        self._client = client
        self._mode = ContactIdSource(contact_id_source)
        self._column = contact_id_field
        self._page_size = page_size
        self._ids_per_query = max(1, ids_per_query)
        self._read = SourceRead(kind=CUSTOMER_INSIGHTS)

    @property
    def contact_field(self) -> str:
        return self._column if self._mode is ContactIdSource.COLUMN else ALTERNATE_VALUE

    # --- membership ----------------------------------------------------------------------------

    def members(self, segment: str) -> Sequence[str]:
        url = relative_url(
            MEMBERSHIPS,
            {"$select": f"{CUSTOMER_ID},modifiedon", "$filter": contains_filter(segment)},
        )
        ids: list[str] = []
        newest: str | None = None
        requests = 0
        for rows in self._pages(url, MEMBERSHIPS):
            requests += 1
            for row in rows:
                customer_id = row.get(CUSTOMER_ID)
                if isinstance(customer_id, str) and customer_id:
                    ids.append(customer_id)
                modified = row.get("modifiedon")
                if isinstance(modified, str) and (newest is None or modified > newest):
                    newest = modified  # ISO 8601 UTC: text order is time order
        if not ids:
            raise SegmentNotInSource(CUSTOMER_INSIGHTS, segment, _MISSING_SEGMENT_HINT)
        self._read = SourceRead(
            kind=CUSTOMER_INSIGHTS, member_rows=len(ids), watermark=newest, requests=requests
        )
        return ids

    def _pages(self, url: str, table: str) -> Iterator[list[dict[str, object]]]:
        try:
            yield from self._client.iter_pages(url, page_size=self._page_size)
        except SalesError as exc:
            if exc.status in (400, 403, 404):
                raise explain(exc, table) from exc
            raise

    # --- contact ids ---------------------------------------------------------------------------

    def lookup(self, customer_ids: Sequence[str]) -> Mapping[str, object | None]:
        wanted = list(dict.fromkeys(i for i in customer_ids if i))
        found: dict[str, object | None] = {}
        rows_read = 0
        requests = 0
        groups = list(self._groups(wanted))
        batches = [
            [self._lookup_part(g) for g in groups[start : start + QUERIES_PER_BATCH]]
            for start in range(0, len(groups), QUERIES_PER_BATCH)
        ]
        workers = max(1, min(len(batches), self._client.max_parallel))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for pages in pool.map(lambda parts: list(self._batch_rows(parts)), batches):
                requests += 1
                for rows in pages:
                    rows_read += len(rows)
                    self._collect(rows, found)
        previous = self._read
        self._read = SourceRead(
            kind=CUSTOMER_INSIGHTS,
            member_rows=previous.member_rows,
            lookup_rows=previous.lookup_rows + rows_read,
            watermark=previous.watermark,
            requests=previous.requests + requests,
        )
        if self._mode is ContactIdSource.ALTERNATE_KEY:
            # Every member has a unified profile (CI-D writes memberships for profiles); a member
            # without a contact key has no contact ID: reported as empty, not as no record.
            for customer_id in wanted:
                found.setdefault(customer_id, None)
        return found

    def _table(self) -> str:
        return PROFILES if self._mode is ContactIdSource.COLUMN else ALTERNATE_KEYS

    def _url(self, ids: Sequence[str]) -> str:
        if self._mode is ContactIdSource.COLUMN:
            return relative_url(
                PROFILES,
                {
                    "$select": f"{CUSTOMER_ID},{self._column}",
                    "$filter": in_strings(CUSTOMER_ID, ids),
                },
            )
        return relative_url(
            ALTERNATE_KEYS,
            {
                "$select": f"{CUSTOMER_ID},{ALTERNATE_VALUE}",
                "$filter": f"msdynci_entityname eq 'contact' and {in_strings(CUSTOMER_ID, ids)}",
            },
        )

    def _groups(self, ids: Sequence[str]) -> Iterable[list[str]]:
        """Ids per In query: at most ids_per_query, and each URL under the $batch GET limit
        (ids are free text up to 100 characters: their encoded length is what counts)."""
        room = MAX_BATCH_GET_URL - len(API_PATH) - len(self._url(["x"])) - 64
        group: list[str] = []
        used = 0
        for customer_id in ids:
            cost = len(quote(string_literal(customer_id), safe="'")) + 1
            if group and (len(group) >= self._ids_per_query or used + cost > room):
                yield group
                group, used = [], 0
            group.append(customer_id)
            used += cost
        if group:
            yield group

    def _lookup_part(self, ids: Sequence[str]) -> BatchPart:
        prefer = {"Prefer": f"odata.maxpagesize={self._page_size}"}
        return BatchPart("GET", API_PATH + self._url(ids), prefer)

    def _batch_rows(self, parts: Sequence[BatchPart]) -> Iterator[list[dict[str, object]]]:
        table = self._table()
        try:
            responses = self._client.batch(parts)
        except SalesError as exc:
            if exc.status in (400, 403, 404):
                raise explain(exc, table) from exc
            raise
        for response in responses:
            if response.status >= 400:
                failed = error_for(
                    response.status, response.headers, response.body, f"read {table}"
                )
                if response.status in (400, 403, 404):
                    raise explain(failed, table) from failed
                raise failed
            data = response.json()
            if not isinstance(data, dict):
                raise FatalSalesError(f"read {table}: unexpected response shape")
            rows = data.get("value", [])
            yield rows if isinstance(rows, list) else []
            link = data.get("@odata.nextLink")
            if link:  # more keys than one page (several contact keys per customer)
                yield from self._pages(str(link), table)

    def _collect(self, rows: list[dict[str, object]], found: dict[str, object | None]) -> None:
        for row in rows:
            customer_id = row.get(CUSTOMER_ID)
            if not isinstance(customer_id, str):
                continue
            value = row.get(self.contact_field)
            if self._mode is ContactIdSource.ALTERNATE_KEY and customer_id in found:
                # A customer unified from several contacts has several contact keys; keep the
                # smallest so every run picks the same one (the others are not exported).
                current = found[customer_id]
                if current is not None and (value is None or str(value) >= str(current)):
                    continue
            found[customer_id] = value

    # --- describe / list / validate ------------------------------------------------------------

    def describe(self) -> SourceRead:
        return self._read

    def list_segments(self) -> list[SegmentOffer]:
        """Every segment named in the membership table, with its member count (one paged scan
        of ``msdynci_segments``; rows whose value cannot be read are logged and skipped)."""
        counts: Counter[str] = Counter()
        unreadable = 0
        url = relative_url(MEMBERSHIPS, {"$select": f"{CUSTOMER_ID},{SEGMENTS}"})
        for rows in self._pages(url, MEMBERSHIPS):
            for row in rows:
                names = segment_names(row.get(SEGMENTS))
                if names is None:
                    unreadable += 1
                    continue
                counts.update(set(names))
        if unreadable:
            log.warning("%d membership rows have an unreadable msdynci_segments value", unreadable)
        return [SegmentOffer(name, count) for name, count in sorted(counts.items())]

    def has_segment(self, segment: str) -> bool:
        """One cheap query: does any membership row name this segment?"""
        url = relative_url(
            MEMBERSHIPS,
            {"$select": CUSTOMER_ID, "$filter": contains_filter(segment), "$top": "1"},
        )
        try:
            rows = self._client.get_json(url).get("value", [])
        except SalesError as exc:
            if exc.status in (400, 403, 404):
                raise explain(exc, MEMBERSHIPS) from exc
            raise
        return bool(rows)

    def check_contact_ids(self) -> str:
        """Validate the mapping: the profile column exists (Dataverse answers 400 for a $select
        of an unknown column), or the key table is readable. Returns a short description."""
        if self._mode is ContactIdSource.COLUMN:
            url = relative_url(PROFILES, {"$select": f"{CUSTOMER_ID},{self._column}", "$top": "1"})
            what = f"{PROFILES} has the column {self._column}"
        else:
            url = relative_url(
                ALTERNATE_KEYS,
                {
                    "$select": f"{CUSTOMER_ID},{ALTERNATE_VALUE}",
                    "$filter": "msdynci_entityname eq 'contact'",
                    "$top": "1",
                },
            )
            what = f"{ALTERNATE_KEYS} can be read (contact keys)"
        table = PROFILES if self._mode is ContactIdSource.COLUMN else ALTERNATE_KEYS
        try:
            self._client.get_json(url)
        except SalesError as exc:
            if exc.status in (400, 403, 404):
                raise explain(exc, table) from exc
            raise
        return what
