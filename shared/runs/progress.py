"""The slice's progress writer: the worker's copy of the run, saved with ETag checks."""

from __future__ import annotations

import time

from shared.errors import ConflictError, PreconditionFailedError
from shared.models import Run
from shared.runs.clock import utc_now_iso
from shared.store.protocols import StoreApi

PROGRESS_SAVE_INTERVAL = 1.5  # seconds between progress writes while a segment is applied


class RunClosed(Exception):
    """Someone else gave the run a final status meanwhile (cancel, poison handling)."""


class RunWriter:
    """Owns the worker's copy of the run. The worker is the only writer of progress; others
    only set cancel_requested (and its reason), which a conflicting write merges in."""

    def __init__(self, store: StoreApi, run: Run) -> None:
        self._store = store
        self.run = run
        self._saved_at = 0.0

    def save(self) -> None:
        for _ in range(8):
            try:
                self.run.progress_at = utc_now_iso()
                self.run = self._store.runs.update(self.run)
                self._saved_at = time.monotonic()
                return
            except PreconditionFailedError:
                fresh: Run = self._store.runs.get(self.run.export_id, self.run.id)
                if fresh.status.is_final:
                    raise RunClosed() from None
                self.run.etag = fresh.etag
                if fresh.cancel_requested:
                    self.run.cancel_requested = True
                    self.run.reason = fresh.reason
        raise ConflictError("the run record kept changing under the worker")

    def save_if_due(self) -> None:
        if time.monotonic() - self._saved_at >= PROGRESS_SAVE_INTERVAL:
            self.save()
