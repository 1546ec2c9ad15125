"""Export leases (ETag-guarded, expiring) and the run queue (base64 JSON)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient

from shared.errors import ConflictError, StoreUnavailableError
from shared.models import RunMessage
from shared.settings import Settings
from shared.storage import StorageConnection
from shared.store import Store, decode_message, encode_message, open_store
from tests.support import free_port


class FakeClock:
    """Wall clock the test moves by hand, so lease expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed_store(settings: Settings, clock: FakeClock) -> Iterator[Store]:
    s = open_store(settings, clock=clock)
    yield s
    s.close()


def test_lease_acquire_renew_release(timed_store: Store, clock: FakeClock) -> None:
    leases = timed_store.leases
    lease = leases.acquire("e1", "worker-a", 60)
    assert lease is not None and lease.holder == "worker-a"
    assert lease.expires_at == clock.now + 60
    assert leases.acquire("e1", "worker-b", 60) is None
    clock.now += 30
    renewed = leases.renew(lease)
    assert renewed.expires_at == clock.now + 60 and renewed.etag != lease.etag
    # A stale ETag alone is not a lost lease: the answer to the renewal may have been lost.
    # The stored holder is still worker-a, so the renewal goes through on the stored ETag.
    again = leases.renew(lease)
    assert again.holder == "worker-a" and again.etag not in (lease.etag, renewed.etag)
    leases.release(lease)  # stale ETag: does not remove the renewed lease
    assert leases.acquire("e1", "worker-b", 60) is None
    leases.release(again)
    leases.release(again)
    assert leases.get("e1") is None
    assert leases.acquire("e1", "worker-b", 60) is not None


def test_expired_lease_is_taken_over_and_the_loser_notices(
    timed_store: Store, clock: FakeClock
) -> None:
    leases = timed_store.leases
    old = leases.acquire("e1", "worker-a", 10)
    assert old is not None
    clock.now += 11
    new = leases.acquire("e1", "worker-b", 10)
    assert new is not None and new.holder == "worker-b"
    with pytest.raises(ConflictError, match="lost"):
        leases.renew(old)
    leases.release(old)  # no effect on worker-b's lease
    current = leases.get("e1")
    assert current is not None and current.holder == "worker-b"


def test_same_holder_may_reacquire(timed_store: Store) -> None:
    first = timed_store.leases.acquire("e1", "worker-a", 10)
    again = timed_store.leases.acquire("e1", "worker-a", 10)
    assert first is not None and again is not None and again.etag != first.etag


def test_queue_round_trip_is_base64_json(store: Store, settings: Settings) -> None:
    store.ensure()
    store.queue.send(RunMessage("e1", "r1", slice=2))
    raw = QueueClient.from_connection_string(settings.storage.connection_string, settings.run_queue)
    (stored,) = raw.receive_messages(max_messages=1, visibility_timeout=1)
    assert json.loads(base64.b64decode(stored.content)) == {
        "exportId": "e1",
        "runId": "r1",
        "slice": 2,
    }
    assert decode_message(stored.content) == RunMessage("e1", "r1", 2)
    assert decode_message(base64.b64decode(stored.content)) == RunMessage("e1", "r1", 2)
    raw.delete_message(stored)
    raw.close()


def test_queue_receive_and_delete(store: Store) -> None:
    store.queue.send(RunMessage("e1", "r1"))
    store.queue.send(RunMessage("e2", "r2", 1))
    got = store.queue.receive(max_messages=5, visibility_timeout=30)
    assert sorted((r.message.export_id, r.message.slice) for r in got if r.message) == [
        ("e1", 0),
        ("e2", 1),
    ]
    for item in got:
        store.queue.delete(item)
    assert store.queue.receive(max_messages=5, visibility_timeout=1) == []


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not base64 !!",
        base64.b64encode(b"plain text").decode(),
        '{"exportId": "e1", "runId": "r1"}',
        '{"exportId": "e1", "runId": "r1", "slice": -1}',
        '{"exportId": "e1", "runId": "r1", "slice": true}',
        '{"exportId": "", "runId": "r1", "slice": 0}',
        '{"exportId": "e1", "runId": "r1", "slice": 0, "extra": 1}',
        "[1, 2]",
        b"\xff\xfe",
        '{"exportId": ',
    ],
)
def test_decode_message_is_strict(garbage: str | bytes) -> None:
    with pytest.raises(ValueError):
        decode_message(garbage)


def test_encode_message_shape() -> None:
    assert json.loads(encode_message(RunMessage("e", "r", 3))) == {
        "exportId": "e",
        "runId": "r",
        "slice": 3,
    }


def test_unreachable_storage_maps_to_store_unavailable() -> None:
    port = free_port()  # nothing listens here
    settings = Settings(
        storage=StorageConnection.from_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
            f"KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        ),
        table_prefix="unreachable",
    )
    s = open_store(settings, client_options={"retry_total": 0})
    with pytest.raises(StoreUnavailableError):
        s.connections.list()
    with pytest.raises(StoreUnavailableError):
        s.queue.send(RunMessage("e", "r"))
    s.close()


def test_racing_takeover_of_an_expired_lease_has_one_winner(
    timed_store: Store, clock: FakeClock
) -> None:
    assert timed_store.leases.acquire("e1", "crashed-worker", 5) is not None
    clock.now += 6
    contenders = [f"worker-{n}" for n in range(8)]
    barrier = threading.Barrier(len(contenders))
    won: list[str] = []

    def contend(holder: str) -> None:
        barrier.wait()
        if timed_store.leases.acquire("e1", holder, 60) is not None:
            won.append(holder)

    threads = [threading.Thread(target=contend, args=(h,)) for h in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    current = timed_store.leases.get("e1")
    assert current is not None and current.holder == won[0]
