"""The run queue: RunMessage <-> base64(JSON) text, as the Functions queue trigger expects."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigurationError
from shared.models import RunMessage
from shared.storage import StorageConnection
from shared.store._boundary import register_cache, translated
from shared.store.clients import queue_client

if TYPE_CHECKING:  # the queue SDK costs ~170 ms to import: only load it when a queue is used
    from azure.core.credentials import TokenCredential
    from azure.storage.queue import QueueClient

_KEYS = {"exportId", "runId", "slice"}
_QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")


def encode_message(message: RunMessage) -> str:
    """The JSON body (before the base64 the queue client applies)."""
    return json.dumps(
        {"exportId": message.export_id, "runId": message.run_id, "slice": message.slice},
        separators=(",", ":"),
    )


def _parse(text: str) -> RunMessage:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("run message must be a JSON object")
    if set(data) != _KEYS:
        raise ValueError(
            f"run message must have exactly the keys {sorted(_KEYS)}, got {sorted(data)}"
        )
    export_id, run_id, slice_ = data["exportId"], data["runId"], data["slice"]
    if not isinstance(export_id, str) or not export_id:
        raise ValueError("run message exportId must be a non-empty string")
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("run message runId must be a non-empty string")
    if not isinstance(slice_, int) or isinstance(slice_, bool) or slice_ < 0:
        raise ValueError("run message slice must be a whole number >= 0")
    return RunMessage(export_id=export_id, run_id=run_id, slice=slice_)


def decode_message(body: str | bytes) -> RunMessage:
    """Strictly parse a run message: the JSON itself (what the Functions trigger hands over after
    decoding) or its base64 form (what is stored in the queue). ValueError on anything else."""
    if isinstance(body, bytes | bytearray):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError("run message is not UTF-8 text") from error
    elif isinstance(body, str):
        text = body
    else:
        raise ValueError(f"run message must be text or bytes, got {type(body).__name__}")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return _parse(stripped)
        except json.JSONDecodeError as error:
            raise ValueError(f"run message is not valid JSON: {error.msg}") from error
    try:
        decoded = base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise ValueError("run message is neither JSON nor base64-encoded JSON") from error
    if not decoded.lstrip().startswith("{"):
        raise ValueError("run message is neither JSON nor base64-encoded JSON")
    try:
        return _parse(decoded)
    except json.JSONDecodeError as error:
        raise ValueError(f"run message is not valid JSON: {error.msg}") from error


@dataclass(frozen=True, slots=True)
class ReceivedRun:
    """A message taken from the queue by `receive` (local runners without the Functions host)."""

    message: RunMessage | None  # None when the body was not a valid run message
    error: str | None
    id: str
    pop_receipt: str
    dequeue_count: int


class StorageQueue:
    """A queue on a storage connection, created on first use, sending base64 text (as the
    Functions queue trigger reads it). `setting` names the app setting of its name."""

    def __init__(
        self,
        connection: StorageConnection,
        name: str,
        *,
        setting: str = "RUN_QUEUE_NAME",
        credential: TokenCredential | None = None,
        **client_options: Any,
    ) -> None:
        if not _QUEUE_NAME.fullmatch(name) or "--" in name:
            raise ConfigurationError(
                f"queue name {name!r} ({setting}) must be 3-63 lowercase letters, digits "
                "and single hyphens, starting and ending with a letter or digit"
            )
        self.connection = connection
        self._credential = credential
        self.name = name
        self._options = client_options
        self._client: QueueClient | None = None
        self._ensured = False
        self._lock = threading.Lock()
        register_cache(self)

    def forget(self) -> None:
        """Forget that the queue exists (it is created again on next use)."""
        self._ensured = False

    def _queue(self) -> QueueClient:
        if self._client is not None and self._ensured:
            return self._client
        with self._lock:
            if self._client is None:
                self._client = queue_client(
                    self.connection, self.name, self._credential, **self._options
                )
            if not self._ensured:
                self._create(self._client)
                self._ensured = True
        return self._client

    def _create(self, client: QueueClient) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            with translated(f"create queue {self.name}"):
                client.create_queue()
        except ResourceExistsError:
            pass
        except Exception as error:  # ConflictError from the boundary means: already there
            from shared.errors import ConflictError

            if not isinstance(error, ConflictError):
                raise

    def ensure(self) -> None:
        self._queue()

    def send_text(self, text: str, visibility_timeout: int = 0) -> None:
        """Enqueue `text` (base64-encoded by the client); delivery delayed by
        `visibility_timeout` seconds."""
        with translated(f"send to queue {self.name}"):
            self._queue().send_message(text, visibility_timeout=visibility_timeout or None)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._ensured = False


class RunQueue(StorageQueue):
    def send(self, message: RunMessage, visibility_timeout: int = 0) -> None:
        """Enqueue; `visibility_timeout` seconds delay delivery (continuations may wait)."""
        self.send_text(encode_message(message), visibility_timeout)

    def receive(self, max_messages: int = 1, visibility_timeout: int = 60) -> list[ReceivedRun]:
        """Take up to `max_messages` (hidden for `visibility_timeout` s); delete them when done."""
        out: list[ReceivedRun] = []
        with translated(f"receive from queue {self.name}"):
            for item in self._queue().receive_messages(
                max_messages=max_messages,
                messages_per_page=max_messages,
                visibility_timeout=visibility_timeout,
            ):
                try:
                    message, error = decode_message(item.content), None
                except ValueError as problem:
                    message, error = None, str(problem)
                out.append(
                    ReceivedRun(
                        message, error, item.id, item.pop_receipt or "", item.dequeue_count or 0
                    )
                )
                if len(out) >= max_messages:
                    break
        return out

    def delete(self, received: ReceivedRun) -> None:
        with translated(f"delete from queue {self.name}"):
            self._queue().delete_message(received.id, received.pop_receipt)
