"""The Store: one object per worker process holding every repository over lazy clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import StoreAccessDeniedError
from shared.settings import Settings
from shared.store.budgets import BUDGETS, BudgetRepository
from shared.store.customer_imports import IMPORT_CHUNKS, IMPORTS, CustomerImportRepository
from shared.store.customer_stats import CUSTOMER_STATS
from shared.store.customers import CUSTOMERS, CustomerRepository
from shared.store.leases import LEASES, LeaseRepository
from shared.store.notify import (
    NOTIFY_STATE,
    NOTIFY_TARGETS,
    NotificationTargetRepository,
    NotifyStateRepository,
)
from shared.store.queue import RunQueue, StorageQueue
from shared.store.records import (
    CONNECTIONS,
    EXPORT_STATE,
    EXPORTS,
    ConnectionRepository,
    ExportRepository,
    ExportStateRepository,
)
from shared.store.runs import (
    ACTIVE_RUNS,
    REJECTIONS,
    RUNS,
    ActiveRunRepository,
    RejectionRepository,
    RunRepository,
)
from shared.store.schedules import SCHEDULE_CLAIMS, ScheduleClaimRepository
from shared.store.segments import SEGMENT_CHUNKS, SEGMENTS, SegmentRepository
from shared.store.signins import SIGNINS, SignInRepository
from shared.store.tables import Tables

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

TABLES = (
    CONNECTIONS,
    EXPORTS,
    EXPORT_STATE,
    RUNS,
    REJECTIONS,
    ACTIVE_RUNS,
    LEASES,
    SEGMENTS,
    SEGMENT_CHUNKS,
    CUSTOMERS,
    CUSTOMER_STATS,
    BUDGETS,
    SIGNINS,
    SCHEDULE_CLAIMS,
    NOTIFY_TARGETS,
    NOTIFY_STATE,
    IMPORTS,
    IMPORT_CHUNKS,
)


# Fail within seconds when storage is down (the SDK defaults retry for minutes); a caller
# (queue trigger, API) retries the whole operation later instead. client_options override.
TABLE_RETRY = {"retry_total": 4, "retry_backoff_factor": 0.4, "retry_backoff_max": 8}
QUEUE_RETRY = {"retry_total": 2, "initial_backoff": 1, "increment_base": 1.5}


class Store:
    """Creates no client until first used; tables are created on first use (or by ensure())."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        client_options: dict[str, Any] | None = None,
        credential: TokenCredential | None = None,
    ) -> None:
        """`credential` replaces the token credential identity-based connections would build
        (tests; see shared/store/clients.py for the default choice)."""
        options = dict(client_options or {})
        self.settings = settings
        self.tables = Tables(
            settings.table_storage,
            settings.table_prefix,
            credential=credential,
            **{**TABLE_RETRY, **options},
        )
        for short in TABLES:  # fail fast on a bad TABLE_PREFIX, before any I/O
            self.tables.name(short)
        self.connections = ConnectionRepository(self.tables)
        self.export_state = ExportStateRepository(self.tables)
        self.exports = ExportRepository(self.tables, self.export_state)
        self.runs = RunRepository(self.tables)
        self.rejections = RejectionRepository(self.tables)
        self.active_runs = ActiveRunRepository(self.tables, clock)
        self.leases = LeaseRepository(self.tables, clock)
        self.segments = SegmentRepository(self.tables)
        self.customers = CustomerRepository(self.tables, clock=clock)
        self.customer_imports = CustomerImportRepository(self.tables)
        self.budgets = BudgetRepository(self.tables, clock)
        self.signins = SignInRepository(self.tables)
        self.schedule_claims = ScheduleClaimRepository(self.tables)
        self.notify_targets = NotificationTargetRepository(self.tables)
        self.notify_state = NotifyStateRepository(self.tables)
        # The run queue is always on AzureWebJobsStorage: the queue trigger's connection.
        self.queue = RunQueue(
            settings.storage,
            settings.run_queue,
            credential=credential,
            **{**QUEUE_RETRY, **options},
        )
        # Background customer imports (shared/imports): their own queue and trigger, on the
        # same connection, so a big import never waits behind (or delays) export runs.
        self.import_queue = StorageQueue(
            settings.storage,
            settings.import_queue,
            setting="IMPORT_QUEUE_NAME",
            credential=credential,
            **{**QUEUE_RETRY, **options},
        )

    def ensure(self) -> None:
        """Create every table and both queues if missing (idempotent). A refused credential
        is re-raised naming the connection setting, so a bad token is a clear startup error."""
        try:
            for short in TABLES:
                self.tables.client(short)
        except StoreAccessDeniedError as error:
            raise StoreAccessDeniedError(f"{self.tables.connection.setting}: {error}") from error
        for queue in (self.queue, self.import_queue):
            try:
                queue.ensure()
            except StoreAccessDeniedError as error:
                raise StoreAccessDeniedError(f"{queue.connection.setting}: {error}") from error

    def close(self) -> None:
        self.tables.close()
        self.queue.close()
        self.import_queue.close()


def open_store(settings: Settings, **kwargs: Any) -> Store:
    """A Store over the settings' storage connections (no I/O until first use)."""
    return Store(settings, **kwargs)
