"""Transaction chunking (pure) and error mapping at the boundary."""

from __future__ import annotations

import http.client

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.queue import QueueClient

from shared.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from shared.models import RunMessage
from shared.settings import Settings
from shared.storage import StorageConnection
from shared.store import Store, open_store
from shared.store._boundary import map_error
from shared.store.tables import batches
from tests.store.test_records import connection
from tests.support import Azurite


def test_batches_respect_the_operation_count() -> None:
    ops = [("upsert", {"PartitionKey": "p", "RowKey": str(n), "V": n}) for n in range(250)]
    sizes = [len(b) for b in batches(ops)]
    assert sizes == [100, 100, 50]
    assert [op for b in batches(ops) for op in b] == ops


def test_batches_respect_the_payload_size() -> None:
    big = "x" * 30_000  # ~60 KB each by Azure's formula: ~65 fit in 4 MiB
    ops = [("upsert", {"PartitionKey": "p", "RowKey": str(n), "V": big}) for n in range(100)]
    sizes = [len(b) for b in batches(ops)]
    assert len(sizes) == 2 and sum(sizes) == 100 and max(sizes) < 70


def test_batches_count_escaped_non_ascii_json() -> None:
    wide = "é" * 20_000  # 40 KB in UTF-16 but ~120 KB as \\u00e9 escapes in the JSON body
    ops = [("upsert", {"PartitionKey": "p", "RowKey": str(n), "V": wide}) for n in range(100)]
    sizes = [len(b) for b in batches(ops)]
    assert sum(sizes) == 100 and max(sizes) * 120_000 < 4 * 1024 * 1024


def test_foreign_errors_map_to_store_errors() -> None:
    assert isinstance(map_error(ResourceNotFoundError("x"), "op"), NotFoundError)
    assert isinstance(map_error(ResourceExistsError("x"), "op"), ConflictError)
    assert isinstance(map_error(ResourceModifiedError("x"), "op"), PreconditionFailedError)
    assert isinstance(map_error(ServiceRequestError("x"), "op"), StoreUnavailableError)
    assert isinstance(map_error(http.client.BadStatusLine("x"), "op"), StoreUnavailableError)
    assert isinstance(map_error(ConnectionResetError(), "op"), StoreUnavailableError)
    error = HttpResponseError("boom")
    error.status_code = 503
    assert isinstance(map_error(error, "op"), StoreUnavailableError)


def test_customer_and_segment_deletes_are_idempotent(store: Store) -> None:
    store.customers.upsert_many([{"CustomerId": "c/1"}])
    store.customers.delete("c/1")
    store.customers.delete("c/1")
    store.customers.delete("\x00")
    assert store.customers.get("c/1") is None
    store.segments.delete("never existed")
    store.exports.delete("never existed")
    store.runs.delete_all("never existed")
    store.rejections.delete_run("never", "existed")
    store.active_runs.release("never", "existed")


def test_ensure_creates_tables_and_queue(store: Store) -> None:
    store.ensure()
    store.ensure()
    names = {t.name for t in store.tables._service_client().list_tables()}
    prefix = store.settings.table_prefix
    assert {f"{prefix}connections", f"{prefix}runs", f"{prefix}customers"} <= names


@pytest.mark.parametrize(
    ("prefix", "queue"),
    [("bad-prefix", "runs"), ("9lives", "runs"), ("ok", "Bad_Queue"), ("ok", "a--b"), ("ok", "q")],
)
def test_bad_table_prefix_or_queue_name_is_a_configuration_error(
    azurite: Azurite, prefix: str, queue: str
) -> None:
    settings = Settings(
        storage=StorageConnection.from_string(azurite.connection_string),
        table_prefix=prefix,
        run_queue=queue,
    )
    with pytest.raises(ConfigurationError):
        open_store(settings)


def test_a_table_deleted_behind_our_back_is_created_again(store: Store) -> None:
    store.connections.create(connection("c1"))
    store.tables._service_client().delete_table(store.tables.name("connections"))
    with pytest.raises(StoreUnavailableError):
        store.connections.list()
    assert store.connections.list() == []  # the table exists again, empty


def test_a_queue_deleted_behind_our_back_is_created_again(store: Store) -> None:
    store.queue.send(RunMessage("e", "r"))
    QueueClient.from_connection_string(
        store.settings.storage.connection_string, store.settings.run_queue
    ).delete_queue()
    with pytest.raises(StoreUnavailableError):
        store.queue.send(RunMessage("e", "r"))
    store.queue.send(RunMessage("e", "r2"))
    assert [r.message for r in store.queue.receive(max_messages=5)] == [RunMessage("e", "r2")]
