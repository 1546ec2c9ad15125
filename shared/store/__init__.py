"""Table and Queue Storage for the app (Contract 3). See store.py for the entry point."""

from shared.store.customers import CustomerRepository, ImportReport, RowError
from shared.store.imports import ImportFormatError, parse_customer_rows, parse_segment_members
from shared.store.leases import Lease, LeaseRepository
from shared.store.queue import ReceivedRun, RunQueue, decode_message, encode_message
from shared.store.records import ConnectionRepository, ExportRepository, ExportStateRepository
from shared.store.runs import (
    ActiveRunRepository,
    RejectionRecord,
    RejectionRepository,
    RunRepository,
)
from shared.store.segments import SegmentInfo, SegmentRepository
from shared.store.store import Store, open_store

__all__ = [
    "ActiveRunRepository",
    "ConnectionRepository",
    "CustomerRepository",
    "ExportRepository",
    "ExportStateRepository",
    "ImportFormatError",
    "ImportReport",
    "Lease",
    "LeaseRepository",
    "ReceivedRun",
    "RejectionRecord",
    "RejectionRepository",
    "RowError",
    "RunQueue",
    "RunRepository",
    "SegmentInfo",
    "SegmentRepository",
    "Store",
    "decode_message",
    "encode_message",
    "open_store",
    "parse_customer_rows",
    "parse_segment_members",
]
