"""What the API checks about an export's segment source, and how it opens one for a listing.

Embedded: the segments must have been uploaded. Customer Insights: the reading connection must
be usable by the caller, the contact-ID mapping must work (the profile column exists, or the
alternate-key table is readable) and every segment must be named by some membership row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from shared.api.problems import ApiProblem
from shared.errors import NotFoundError, SegmentExportError, TransientSalesError
from shared.models import Connection, Export, ExportSource, SourceKind
from shared.settings import Settings
from shared.store.protocols import StoreApi

if TYPE_CHECKING:  # imported lazily: importing the app must not load msal/httpx (sales client)
    from shared.sources import SegmentSource

Error = dict[str, str]


def reading_connection_id(source: ExportSource, export_connection_id: str | None) -> str | None:
    return source.connection_id or export_connection_id


@contextmanager
def opened(
    store: StoreApi, settings: Settings, source: ExportSource, connection: Connection | None
) -> Iterator[SegmentSource]:
    """The source for an API call (a Customer Insights source needs ``connection``)."""
    from shared.sources import open_source

    holder = Export(id="api", display_name="api", connection_id=None, segments=[], source=source)
    try:
        with open_source(store, settings, holder, connection) as opened_source:
            yield opened_source
    except TransientSalesError as exc:
        raise ApiProblem(
            503,
            f"Customer Insights could not be read just now; try again ({exc})",
            kind="source-unavailable",
        ) from None


def source_errors(
    store: StoreApi,
    settings: Settings,
    source: ExportSource,
    connection: Connection | None,
    segments: Sequence[str],
) -> list[Error]:
    """Problems with the segments and the source, as 422 error entries (field + message)."""
    if source.kind is SourceKind.EMBEDDED:
        known = {info.name for info in store.segments.list()}
        return [
            {"field": f"segments[{i}]", "message": "no such segment"}
            for i, name in enumerate(segments)
            if name not in known
        ]
    if connection is None:
        return [{"field": "source", "message": "customer-insights needs a connection to read"}]
    from shared.sources import CustomerInsightsSource

    errors: list[Error] = []
    try:
        with opened(store, settings, source, connection) as ci:
            assert isinstance(ci, CustomerInsightsSource)
            ci.check_contact_ids()
            for i, name in enumerate(segments):
                if not ci.has_segment(name):
                    errors.append(
                        {
                            "field": f"segments[{i}]",
                            "message": f"Customer Insights has no segment {name!r} (no "
                            "membership row names it; use its output table name)",
                        }
                    )
    except ApiProblem:
        raise
    except SegmentExportError as exc:
        field = "source.connectionId" if source.connection_id else "source"
        errors.append({"field": field, "message": str(exc)})
    return errors


def load_connection(store: StoreApi, connection_id: str | None) -> Connection | None:
    if connection_id is None:
        return None
    try:
        connection: Connection = store.connections.get(connection_id)
    except (NotFoundError, ValueError):
        return None
    return connection


def ci_readers(store: StoreApi, connection_id: str) -> list[Export]:
    """The Customer Insights exports that read CI-D through this connection."""
    return [
        e
        for e in store.exports.list()
        if e.source.kind is SourceKind.CUSTOMER_INSIGHTS
        and reading_connection_id(e.source, e.connection_id) == connection_id
    ]


def mapping_check(store: StoreApi, settings: Settings, connection: Connection) -> tuple[bool, str]:
    """The connection test's Customer Insights check: (ok, detail)."""
    from shared.sources import CustomerInsightsSource

    try:
        with opened(store, settings, ExportSource(SourceKind.CUSTOMER_INSIGHTS), connection) as ci:
            assert isinstance(ci, CustomerInsightsSource)
            return True, ci.check_contact_ids()
    except ApiProblem as exc:
        return False, exc.detail
    except SegmentExportError as exc:
        return False, str(exc)
