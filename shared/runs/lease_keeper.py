"""Keeping the export's lease while a slice runs: the heartbeat that renews it (and watches for a
cancel request), who holds it, and how long a message waits when another worker holds it."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from shared.errors import ConflictError
from shared.models import Run, RunMessage
from shared.settings import Settings
from shared.store.protocols import StoreApi

if TYPE_CHECKING:
    from shared.store.leases import Lease

log = logging.getLogger("shared.runs.worker")

CANCEL_POLL_INTERVAL = 2.0  # seconds between cancel checks (one run read each)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def busy_delay(settings: Settings) -> int:
    """Visibility delay for a message whose export is leased by another worker."""
    return int(max(1.0, min(15.0, settings.lease_seconds / 4)))


def wait_for_lease(store: StoreApi, settings: Settings, message: RunMessage) -> int:
    """Seconds until the other holder's lease lapses (a dead worker's will), bounded by
    busy_delay; a live holder renews it and we simply look again then."""
    fallback = busy_delay(settings)
    try:
        current = store.leases.get(message.export_id)
    except Exception:
        return fallback
    if current is None:
        return 1
    remaining = float(current.expires_at) - time.time()
    return int(max(1, min(fallback, math.ceil(remaining))))


class Heartbeat:
    """Renews the export's lease and watches for a cancel request, off the main thread, so a
    long Sales call (throttling waits) cannot let the lease lapse unnoticed."""

    def __init__(self, store: StoreApi, settings: Settings, lease: Lease, run: Run) -> None:
        self._store = store
        self._lease = lease
        self._renew_every = max(1.0, settings.lease_seconds / 3)
        self._export_id, self._run_id = run.export_id, run.id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lost = False
        self.cancel_reason: str | None = None
        self.cancel_requested = False
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> Any:
        with self._lock:
            return self._lease

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="run-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        renewed = polled = time.monotonic()
        while not self._stop.wait(0.25):
            now = time.monotonic()
            if now - renewed >= self._renew_every:
                self.renew()
                renewed = now
            if now - polled >= CANCEL_POLL_INTERVAL:
                self._poll_cancel()
                polled = now

    def renew(self) -> None:
        if self.lost:
            return
        try:
            with self._lock:
                self._lease = self._store.leases.renew(self._lease)
        except ConflictError:
            log.warning("lease on export %s was lost", self._export_id)
            self.lost = True
        except Exception as exc:  # transient: try again next tick; expiry is the backstop
            log.warning("lease renewal failed (%s); retrying", type(exc).__name__)

    def _poll_cancel(self) -> None:
        try:
            run: Run = self._store.runs.get(self._export_id, self._run_id)
        except Exception:
            return
        if run.cancel_requested or run.status.is_final:
            self.cancel_reason = run.reason
            self.cancel_requested = True
