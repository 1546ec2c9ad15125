"""The Store: one object per worker process holding every repository over lazy clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.settings import Settings
from shared.store.budgets import BUDGETS, BudgetRepository
from shared.store.customers import CUSTOMERS, CustomerRepository
from shared.store.leases import LEASES, LeaseRepository
from shared.store.queue import RunQueue
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
    BUDGETS,
    SIGNINS,
    SCHEDULE_CLAIMS,
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
    ) -> None:
        options = dict(client_options or {})
        self.settings = settings
        self.tables = Tables(
            settings.storage_connection, settings.table_prefix, **{**TABLE_RETRY, **options}
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
        self.customers = CustomerRepository(self.tables)
        self.budgets = BudgetRepository(self.tables, clock)
        self.signins = SignInRepository(self.tables)
        self.schedule_claims = ScheduleClaimRepository(self.tables)
        self.queue = RunQueue(
            settings.storage_connection, settings.run_queue, **{**QUEUE_RETRY, **options}
        )

    def ensure(self) -> None:
        """Create every table and the run queue if missing (idempotent)."""
        for short in TABLES:
            self.tables.client(short)
        self.queue.ensure()

    def close(self) -> None:
        self.tables.close()
        self.queue.close()


def open_store(settings: Settings, **kwargs: Any) -> Store:
    """A Store over settings.storage_connection (no I/O until first use)."""
    return Store(settings, **kwargs)
