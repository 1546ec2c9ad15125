"""Open the source an export names, for one run or one API call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from shared.errors import NotFoundError
from shared.models import Connection, Export, ExportSource, SourceKind
from shared.settings import Settings
from shared.sources.base import SegmentSource, SourceReadError
from shared.sources.customer_insights import CustomerInsightsSource
from shared.sources.embedded import EmbeddedSource
from shared.store.protocols import StoreApi

ClientOpener = Callable[[Connection, Settings], AbstractContextManager[Any]]


def source_connection(store: StoreApi, source: ExportSource, own: Connection) -> Connection:
    """The connection a source reads through: its own, else the export's."""
    if source.connection_id is None or source.connection_id == own.id:
        return own
    try:
        connection: Connection = store.connections.get(source.connection_id)
    except NotFoundError:
        raise SourceReadError(
            f"the source's connection {source.connection_id} no longer exists; "
            "pick another in the export's source"
        ) from None
    return connection


@contextmanager
def open_source(
    store: StoreApi,
    settings: Settings,
    export: Export,
    connection: Connection | None,
    *,
    client: Any = None,
    open_client: ClientOpener | None = None,
) -> Iterator[SegmentSource]:
    """The export's source. ``client`` is the export's open SalesClient (reused when the source
    reads the same connection); another connection gets its own client, which shares the
    throttling gate when environment and identity are the same (see sales/factory.py)."""
    if export.source.kind is SourceKind.EMBEDDED:
        yield EmbeddedSource(store, connection.contact_id_field if connection else "")
        return
    if connection is None:
        raise SourceReadError("a Customer Insights source needs a connection to read through")
    reading = source_connection(store, export.source, connection)
    if client is not None and reading.id == connection.id:
        yield _ci_source(client, reading, settings)
        return
    opener = open_client
    if opener is None:
        from shared.sales import open_sales_client

        opener = open_sales_client
    with opener(reading, settings) as own_client:
        yield _ci_source(own_client, reading, settings)


def _ci_source(client: Any, connection: Connection, settings: Settings) -> CustomerInsightsSource:
    return CustomerInsightsSource(
        client,
        connection.contact_id_source,
        connection.contact_id_field,
        page_size=min(5000, settings.sales_page_size),
    )
