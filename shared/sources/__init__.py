"""Segment sources: where a segment's members and their contact IDs come from (see base.py)."""

from shared.sources.base import (
    CUSTOMER_INSIGHTS,
    EMBEDDED,
    SegmentNotInSource,
    SegmentOffer,
    SegmentSource,
    SourceReadError,
    customer_rows,
)
from shared.sources.customer_insights import CustomerInsightsSource
from shared.sources.embedded import EmbeddedSource
from shared.sources.factory import open_source, source_connection

__all__ = [
    "CUSTOMER_INSIGHTS",
    "EMBEDDED",
    "CustomerInsightsSource",
    "EmbeddedSource",
    "SegmentNotInSource",
    "SegmentOffer",
    "SegmentSource",
    "SourceReadError",
    "customer_rows",
    "open_source",
    "source_connection",
]
