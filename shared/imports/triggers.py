"""Bodies of the import queue's functions (function_app.py ``customer_import`` and
``customer_import_poison``), and of the local runner's import listener."""

from __future__ import annotations

import logging

from shared.imports.worker import ImportOutcome, give_up, process_import
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger(__name__)


def on_import_message(
    body: str | bytes,
    dequeue_count: int,
    *,
    store: StoreApi | None = None,
    settings: Settings | None = None,
) -> ImportOutcome:
    """Queue trigger: work on one import. Raises only when the queue should deliver it again."""
    if store is None or settings is None:
        from shared.runs.triggers import runtime

        settings, store = runtime()
    outcome = process_import(store, settings, body, dequeue_count=dequeue_count)
    log.info("import message handled: %s (delivery %d)", outcome, dequeue_count)
    return outcome


def on_import_poison(
    body: str | bytes, *, store: StoreApi | None = None, settings: Settings | None = None
) -> None:
    """The queue gave up on an import message: the import ends failed, its staged rows go."""
    if store is None or settings is None:
        from shared.runs.triggers import runtime

        settings, store = runtime()
    give_up(store, settings, body)
