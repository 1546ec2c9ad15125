"""A local stand-in for the Functions host's queue listener (the `func` host cannot run here).

    python -m shared.runs.worker_main [--visibility S] [--retry-delay S] [--exit-when-idle S]

Reads the run queue (settings from the environment, like the app), hands each message's decoded
text to the same ``on_run_message`` the queue trigger calls, and behaves like the host: delete on
success, make the message visible again after ``--retry-delay`` on failure, and give a message
that was delivered more than MAX_DEQUEUE_COUNT times to the poison handler. Used by the demo,
the benchmark and the crash tests (which SIGKILL it at random points).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from shared.runs.triggers import on_poison_message, on_run_message
from shared.settings import Settings
from shared.store.protocols import StoreApi

log = logging.getLogger("shared.runs.worker_main")


def queue_client(settings: Settings) -> Any:
    """A QueueClient on the run queue that decodes base64 text like the Functions host does."""
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    return QueueClient.from_connection_string(
        settings.storage_connection,
        settings.run_queue,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def serve(
    settings: Settings,
    store: StoreApi,
    *,
    should_stop: Callable[[], bool],
    visibility: int,
    retry_delay: int,
    exit_when_idle: float | None = None,
    poll_interval: float = 0.2,
) -> int:
    """Process messages until should_stop() (or idle for exit_when_idle seconds); returns how
    many deliveries were handled."""
    queue = queue_client(settings)
    handled = 0
    idle_since = time.monotonic()
    while not should_stop():
        try:
            message = queue.receive_message(visibility_timeout=visibility)
        except Exception as exc:  # storage down: keep polling, like the host
            log.warning("receive failed (%s)", type(exc).__name__)
            time.sleep(1.0)
            continue
        if message is None:
            if exit_when_idle is not None and time.monotonic() - idle_since >= exit_when_idle:
                break
            time.sleep(poll_interval)
            continue
        handled += 1
        if message.dequeue_count > settings.max_dequeue_count:
            on_poison_message(message.content, store=store)
            _delete(queue, message)
            idle_since = time.monotonic()
            continue
        try:
            on_run_message(message.content, message.dequeue_count, store=store, settings=settings)
        except Exception as exc:
            log.warning("delivery %d failed (%s); retrying later", message.dequeue_count, exc)
            try:
                queue.update_message(message, visibility_timeout=retry_delay)
            except Exception as inner:
                log.warning("could not reschedule the message (%s)", type(inner).__name__)
        else:
            _delete(queue, message)
        idle_since = time.monotonic()
    return handled


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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("azure", "httpx", "httpcore", "msal", "urllib3"):  # request-level chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from shared.store import open_store

    settings = Settings.from_env()
    store = open_store(settings)
    store.ensure()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    visibility = args.visibility or int(settings.run_slice_seconds + 60)
    print("worker ready", flush=True)
    serve(
        settings,
        store,
        should_stop=stop.is_set,
        visibility=visibility,
        retry_delay=args.retry_delay,
        exit_when_idle=args.exit_when_idle,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
