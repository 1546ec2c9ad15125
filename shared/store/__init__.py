"""Table and Queue Storage for the app (Contract 3): ``store = open_store(settings)``.

Tables (``settings.table_prefix`` + name) and their keys; user text in keys is escaped by
keys.encode_key (``~XX``) and kept verbatim in a property:

  connections    "connection" / connection id
  exports        "export" / export id
  exportstate    export id / segment                        list id + name per segment
  runs           export id / r<inverted ns time><rand>      newest first; plus i<run id> index rows
  rejections     export id~~run id / segment~~<chunk no>    ~30 000 chars of packed rejections each
  activeruns     "active" / export id                       insert-if-absent marker (RunId)
  leases         "lease" / export id                        Holder, ExpiresAt; ETag-guarded
  segments       "segment" / segment name                   header: Version, Chunks, Members
  segmentchunks  version / <chunk no>                       P0..P14: newline-joined member ids
  customers      b<crc32 % 32> / customer id                CustomerId + any columns
  customerstats  "customers" / "stats"                      per-bucket row bounds, Revision
  budgets        budget key / "state" | p~<participant>     shared throttling budget (budgets.py)
  customerimports       "import" / import id (inverted ms)  background import: state, progress
  customerimportchunks  import id / <chunk>.<part>          staged rows (staging.py), until it ends

Queue ``settings.run_queue``: base64(JSON ``{"exportId", "runId", "slice"}``).
Queue ``settings.import_queue``: base64(JSON ``{"importId"}``) (shared/imports/messages.py).
"""

from shared.store.budgets import BudgetRepository, BudgetSnapshot, Participant
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
    "BudgetRepository",
    "BudgetSnapshot",
    "ConnectionRepository",
    "CustomerRepository",
    "ExportRepository",
    "ExportStateRepository",
    "ImportFormatError",
    "ImportReport",
    "Lease",
    "LeaseRepository",
    "Participant",
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
