"""A local stand-in for the Functions host's queue listener (the `func` host cannot run here).

    python -m shared.runs.worker_main [--visibility S] [--retry-delay S] [--exit-when-idle S]
                                      [--listeners N] [--import-listeners N]

Reads the run queue (settings from the environment, like the app), hands each message's decoded
text to the same ``on_run_message`` the queue trigger calls, and behaves like the host: delete on
success, make the message visible again after ``--retry-delay`` on failure, and move a message
that failed its MAX_DEQUEUE_COUNT-th delivery (or was delivered more often: its workers died) to
the poison queue ``<queue>-poison``, whose messages it hands to the poison function's body.
Used by the demo, the benchmark and the crash tests (which SIGKILL it at random points).
``--listeners N`` handles up to N messages at once in one process, as one Functions instance
does (host.json batchSize). The import queue (IMPORT_QUEUE_NAME, background customer imports)
is served the same way by ``--import-listeners`` more threads (1 by default; 0: none).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shared import telemetry
from shared.imports.triggers import on_import_message, on_import_poison
from shared.runs.triggers import on_poison_message, on_run_message
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.runs.worker_main")


POISON_SUFFIX = "-poison"  # the Functions host's poison queue: <queue>-poison


def poison_queue_name(settings: Settings) -> str:
    return f"{settings.run_queue}{POISON_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Listener:
    """One queue the runner serves, with the bodies of its function and its poison function."""

    queue: Callable[[Settings], str]
    handle: Callable[[str | bytes, int, StoreApi, Settings], object]
    poison: Callable[[str | bytes, StoreApi, Settings], object]


RUNS = Listener(
    queue=lambda s: s.run_queue,
    handle=lambda body, n, store, s: on_run_message(body, n, store=store, settings=s),
    poison=lambda body, store, s: on_poison_message(body, store=store),
)
IMPORTS = Listener(
    queue=lambda s: s.import_queue,
    handle=lambda body, n, store, s: on_import_message(body, n, store=store, settings=s),
    poison=lambda body, store, s: on_import_poison(body, store=store, settings=s),
)


def queue_client(settings: Settings, name: str | None = None) -> Any:
    """A QueueClient on the run queue (or another, e.g. its poison queue) that encodes and
    decodes base64 text like the Functions host does."""
    from shared.store.clients import queue_client as make_queue_client

    # The run queue and its poison queue live on AzureWebJobsStorage: the trigger's connection.
    return make_queue_client(settings.storage, name or settings.run_queue)


def serve(
    settings: Settings,
    store: StoreApi,
    *,
    should_stop: Callable[[], bool],
    visibility: int,
    retry_delay: int,
    exit_when_idle: float | None = None,
    poll_interval: float = 0.2,
    max_poll_interval: float = 2.0,
    listener: Listener = RUNS,
) -> int:
    """Process messages until should_stop() (or idle for exit_when_idle seconds); returns how
    many deliveries were handled (the listener's queue and its poison queue: by default the run
    queue)."""
    name = listener.queue(settings)
    queue = queue_client(settings, name)
    poison = queue_client(settings, f"{name}{POISON_SUFFIX}")
    _ensure(poison)
    handled = 0
    idle_since = time.monotonic()
    delay = poll_interval
    while not should_stop():
        if _serve_poison(poison, store, settings, visibility, listener):
            handled += 1
            idle_since = time.monotonic()
            continue
        try:
            message = queue.receive_message(visibility_timeout=visibility)
        except Exception as exc:  # storage down: keep polling, like the host
            log.warning("receive failed (%s)", type(exc).__name__)
            time.sleep(1.0)
            continue
        if message is None:
            if exit_when_idle is not None and time.monotonic() - idle_since >= exit_when_idle:
                break
            # Like the host (host.json maxPollingInterval): an idle listener polls less and
            # less often, so many idle listeners do not keep storage busy.
            time.sleep(delay)
            delay = min(max_poll_interval, delay * 2)
            continue
        delay = poll_interval
        handled += 1
        idle_since = time.monotonic()
        if message.dequeue_count > settings.max_dequeue_count:
            # Delivered more often than allowed without completing (its workers died): the
            # host moves such a message to the poison queue before running it again.
            _to_poison(queue, poison, message)
            continue
        try:
            listener.handle(message.content, message.dequeue_count, store, settings)
        except Exception as exc:
            if message.dequeue_count >= settings.max_dequeue_count:
                log.warning("delivery %d failed (%s); giving up", message.dequeue_count, exc)
                _to_poison(queue, poison, message)
                continue
            log.warning("delivery %d failed (%s); retrying later", message.dequeue_count, exc)
            try:
                queue.update_message(message, visibility_timeout=retry_delay)
            except Exception as inner:
                log.warning("could not reschedule the message (%s)", type(inner).__name__)
        else:
            _delete(queue, message)
    return handled


def _ensure(queue: Any) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()


def _to_poison(queue: Any, poison: Any, message: Any) -> None:
    """Move a message to the poison queue, as the host does past maxDequeueCount."""
    try:
        poison.send_message(message.content)
    except Exception as exc:  # it becomes visible again and is moved on its next delivery
        log.warning("could not move a message to the poison queue (%s)", type(exc).__name__)
        return
    log.warning("message delivered %d times moved to %s", message.dequeue_count, poison.queue_name)
    _delete(queue, message)


def _serve_poison(
    poison: Any, store: StoreApi, settings: Settings, visibility: int, listener: Listener
) -> bool:
    """Hand one poison-queue message (if any) to the poison function's body, like the host's
    listener on <queue>-poison. True if a message was handled."""
    try:
        message = poison.receive_message(visibility_timeout=visibility)
    except Exception as exc:
        log.warning("poison receive failed (%s)", type(exc).__name__)
        return False
    if message is None:
        return False
    try:
        listener.poison(message.content, store, settings)
    except Exception as exc:
        log.warning("poison delivery %d failed (%s)", message.dequeue_count, exc)
        return True
    _delete(poison, message)
    return True


def _delete(queue: Any, message: Any) -> None:
    try:
        queue.delete_message(message)
    except Exception as exc:  # it becomes visible again; the worker drops it as a duplicate
        log.warning("could not delete a handled message (%s)", type(exc).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.runs.worker_main")
    parser.add_argument(
        "--visibility", type=int, default=None, help="seconds a message stays hidden"
    )
    parser.add_argument("--retry-delay", type=int, default=2, help="seconds before a failed retry")
    parser.add_argument(
        "--exit-when-idle", type=float, default=None, help="stop after idle seconds"
    )
    parser.add_argument(
        "--listeners", type=int, default=1, help="messages handled at once (threads)"
    )
    parser.add_argument(
        "--import-listeners", type=int, default=1, help="threads on the import queue (0: none)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("azure", "httpx", "httpcore", "msal", "urllib3"):  # request-level chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from shared.config_check import startup_problems
    from shared.store import open_store

    startup_problems()  # logs each configuration problem as an error naming its setting
    settings = Settings.from_env()
    telemetry.configure(settings.environ)
    store = open_store(settings)
    store.ensure()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    visibility = args.visibility or int(settings.run_slice_seconds + 60)
    print("worker ready", flush=True)
    kinds = [RUNS] * max(1, args.listeners) + [IMPORTS] * max(0, args.import_listeners)
    listeners = [
        threading.Thread(
            target=serve,
            args=(settings, store),
            kwargs={
                "should_stop": stop.is_set,
                "visibility": visibility,
                "retry_delay": args.retry_delay,
                "exit_when_idle": args.exit_when_idle,
                "listener": kind,
            },
            name=f"listener-{n}" if kind is RUNS else f"import-listener-{n}",
            daemon=True,
        )
        for n, kind in enumerate(kinds)
    ]
    for listener in listeners:
        listener.start()
    while any(listener.is_alive() for listener in listeners):
        for listener in listeners:
            listener.join(timeout=0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
