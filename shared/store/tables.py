"""Lazily created Table clients (one service client per Store) and shared table helpers."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.data.tables import EdmType, EntityProperty, TableClient, TableServiceClient, UpdateMode

from shared.errors import ConfigurationError, NotFoundError, StoreUnavailableError
from shared.storage import StorageConnection
from shared.store._boundary import register_cache, translated
from shared.store.clients import table_service
from shared.store.limits import (
    INT32_MAX,
    INT32_MIN,
    MAX_BATCH_BYTES,
    MAX_BATCH_OPERATIONS,
    payload_estimate,
)

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_SYSTEM = ("PartitionKey", "RowKey", "Timestamp")

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

Operation = tuple[Any, ...]  # ("upsert", entity, {...}) as azure-data-tables expects


def match(if_match: str | None) -> dict[str, Any]:
    """SDK keywords for an optional If-Match: None means unconditional."""
    if if_match is None:
        return {"match_condition": MatchConditions.Unconditionally}
    return {"etag": if_match, "match_condition": MatchConditions.IfNotModified}


def etag_of(metadata: Mapping[str, Any] | None) -> str | None:
    return None if metadata is None else metadata.get("etag")


def plain(value: Any) -> Any:
    """Unwrap EntityProperty (the SDK returns Int64 values as (value, EdmType.INT64))."""
    if isinstance(value, tuple) and len(value) == 2:
        return value[0]
    return value


def wire(value: Any) -> Any:
    """What the SDK should send: it refuses plain ints beyond int32, so mark those Edm.Int64."""
    if type(value) is int and not INT32_MIN <= value <= INT32_MAX:
        return EntityProperty(value, EdmType.INT64)
    return value


def properties(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The custom properties of a read entity, as plain Python values."""
    return {k: plain(v) for k, v in entity.items() if k not in _SYSTEM}


class Tables:
    """Table names (prefix + name), one lazily built service client, tables created on first use."""

    def __init__(
        self,
        connection: StorageConnection,
        prefix: str,
        *,
        credential: TokenCredential | None = None,
        **client_options: Any,
    ) -> None:
        self.connection = connection
        self._credential = credential
        self._prefix = prefix
        self._options = client_options
        self._service: TableServiceClient | None = None
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()
        register_cache(self)

    def forget(self) -> None:
        """Forget which tables exist (each is created again on next use)."""
        with self._lock:
            self._clients.clear()

    def name(self, short: str) -> str:
        full = f"{self._prefix}{short}"
        if not _TABLE_NAME.fullmatch(full):
            raise ConfigurationError(
                f"table name {full!r} (TABLE_PREFIX + {short!r}) must be 3-63 letters or digits, "
                "starting with a letter"
            )
        return full

    def _service_client(self) -> TableServiceClient:
        if self._service is None:
            self._service = table_service(self.connection, self._credential, **self._options)
        return self._service

    def client(self, short: str) -> TableClient:
        """The table's client; the table is created (if missing) the first time it is used."""
        client = self._clients.get(short)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(short)
            if client is None:
                name = self.name(short)
                with translated(f"create table {name}"):
                    client = self._service_client().create_table_if_not_exists(name)
                self._clients[short] = client
        return client

    def drop_all(self, shorts: Iterable[str]) -> None:
        """Delete the tables (tests and teardown only)."""
        service = self._service_client()
        for short in shorts:
            with translated(f"delete table {self.name(short)}"):
                service.delete_table(self.name(short))
            self._clients.pop(short, None)

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.close()
            self._service = None
            self._clients.clear()


def batches(operations: Sequence[Operation]) -> Iterator[list[Operation]]:
    """Split operations on ONE partition into transactions of <=100 ops and <=4 MiB.

    The byte budget uses an estimate of each entity's JSON (see limits.payload_estimate).
    """
    current: list[Operation] = []
    size = 0
    budget = MAX_BATCH_BYTES - 64 * 1024  # headroom for multipart framing
    for op in operations:
        op_size = payload_estimate(op[1]) if op[0] != "delete" else 512
        if current and (len(current) >= MAX_BATCH_OPERATIONS or size + op_size > budget):
            yield current
            current, size = [], 0
        current.append(op)
        size += op_size
    if current:
        yield current


_BATCH_RETRY_DELAYS = (0.2, 1.0)


def submit(client: TableClient, operations: Sequence[Operation], what: str) -> None:
    """Submit upserts/deletes of one partition in as many <=100-op transactions as needed.

    A $batch is a POST, which the SDK does not retry after a dropped connection; these
    batches are idempotent (no inserts), so we retry them a couple of times ourselves."""
    if any(op[0] not in ("upsert", "delete") for op in operations):
        raise ValueError("submit() takes only upsert and delete operations (idempotent)")
    for batch in batches(operations):
        for delay in (*_BATCH_RETRY_DELAYS, None):
            try:
                with translated(what):
                    client.submit_transaction(batch)
                break
            except StoreUnavailableError:
                if delay is None:
                    raise
                time.sleep(delay)


def delete_partition(client: TableClient, pk: str, what: str) -> None:
    """Delete every row of one partition; idempotent (a concurrent delete is not an error)."""
    with translated(what):
        keys = [
            e["RowKey"]
            for e in client.query_entities(
                "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"]
            )
        ]
    with contextlib.suppress(NotFoundError):  # deleted concurrently
        submit(client, [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in keys], what)


def replace_op(entity: Mapping[str, Any]) -> Operation:
    return ("upsert", dict(entity), {"mode": UpdateMode.REPLACE})
