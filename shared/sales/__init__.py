"""The Sales sync module: everything that talks to Dynamics 365 Sales (Dataverse)."""

from shared.sales.client import SalesClient
from shared.sales.factory import open_sales_client
from shared.sales.probe import ProbeCheck, probe_connection
from shared.sales.sync import SegmentSyncRequest, SegmentSyncResult, sync_segment

__all__ = [
    "ProbeCheck",
    "SalesClient",
    "SegmentSyncRequest",
    "SegmentSyncResult",
    "open_sales_client",
    "probe_connection",
    "sync_segment",
]
