"""Throttling budgets: one partition per (Sales environment, app identity), shared by every worker.

Dataverse counts service protection per user per environment, so every process that sends with
one identity must see the same Retry-After and share one in-flight allowance. The partition is
small and read whole in one query (``snapshot``); writers never overwrite each other blindly:

  "b~<writer>"       one row per writing process (``BudgetRepository`` instance): NotBefore (epoch
                     s), the latest Retry-After that process was answered, and Blocks, how many
                     429s moved it. Only its writer updates it (forward only), so recording a 429
                     is ONE upsert with no read first and no contention; readers take the maximum.
  "state"            the same, written by earlier versions (read, never written).
  "p~<participant>"  one row per slice sending with the identity: JoinedAt, ExpiresAt, Label.
                     Rows whose ExpiresAt passed belong to dead workers and are ignored.
  "slots"            Held: JSON {participant: requests it may keep in flight}, ETag-guarded.
                     Entries of participants that are not live are void (their slots are free).

The key (``budget_key``) is a hash of environment + identity: no secret and no user text in keys.
Rows of long-dead participants and writers are deleted by whoever reads them (best effort).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError, StoreError
from shared.store._boundary import translated
from shared.store.keys import encode_key
from shared.store.tables import Tables, etag_of, match, properties

BUDGETS = "budgets"
_STATE = "state"
_SLOTS = "slots"
_PARTICIPANT = "p~"
_WRITER = "b~"
_WRITE_ATTEMPTS = 16
STALE_PARTICIPANT_SECONDS = 300.0  # a participant row this long past its expiry is deleted
STALE_BLOCK_SECONDS = 3600.0  # another writer's row whose NotBefore passed this long ago too
# Reads and renewals are repeated within a second by their caller, which keeps the last state
# meanwhile: fail at once rather than stall the sending threads in the SDK's retries.
_FAIL_FAST: dict[str, Any] = {"retry_total": 0}


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    joined_at: float  # epoch seconds
    expires_at: float  # epoch seconds; renewed while the participant works
    label: str  # what it is (an export id), for operators


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    not_before: float  # epoch seconds; 0.0 when never throttled
    blocks: int
    participants: tuple[Participant, ...]  # live ones only, oldest first
    held: Mapping[str, int] = field(default_factory=dict)  # live participants' slots only
    slots_etag: str | None = None  # of the "slots" row; None when it does not exist yet

    def rank(self, participant: str) -> int | None:
        for index, p in enumerate(self.participants):
            if p.id == participant:
                return index
        return None


HeldChange = Callable[[BudgetSnapshot], Mapping[str, int] | None]


class BudgetRepository:
    def __init__(self, tables: Tables, clock: Callable[[], float] = time.time) -> None:
        self._tables = tables
        self._clock = clock
        self._writer = uuid.uuid4().hex[:16]  # this process's block row
        self._block_lock = threading.Lock()
        self._blocked: dict[str, tuple[float, int]] = {}  # key -> (NotBefore, Blocks) we wrote
        self._ops_lock = threading.Lock()
        self.ops: Counter[str] = Counter()  # table operations by kind (bench: ops per request)

    def _count(self, kind: str) -> None:
        with self._ops_lock:
            self.ops[kind] += 1

    def snapshot(self, key: str) -> BudgetSnapshot:
        """The partition in one query: the shared block, the live participants, their slots."""
        client = self._tables.client(BUDGETS)
        self._count("read")
        with translated(f"read throttling budget {key}"):
            rows = list(
                client.query_entities("PartitionKey eq @pk", parameters={"pk": key}, **_FAIL_FAST)
            )
        now = self._clock()
        not_before, blocks = 0.0, 0
        live: list[Participant] = []
        held: dict[str, int] = {}
        slots_etag: str | None = None
        stale: list[str] = []
        for row in rows:
            data, row_key = properties(row), str(row["RowKey"])
            if row_key == _STATE or row_key.startswith(_WRITER):
                until = float(data.get("NotBefore") or 0.0)
                not_before = max(not_before, until)
                blocks += int(data.get("Blocks") or 0)
                if row_key.startswith(_WRITER) and until < now - STALE_BLOCK_SECONDS:
                    stale.append(row_key)
            elif row_key == _SLOTS:
                slots_etag = etag_of(row.metadata)
                held = {str(k): int(v) for k, v in json.loads(data.get("Held") or "{}").items()}
            elif row_key.startswith(_PARTICIPANT):
                expires = float(data.get("ExpiresAt") or 0.0)
                if expires > now:
                    live.append(
                        Participant(
                            id=str(data.get("Participant", "")),
                            joined_at=float(data.get("JoinedAt") or 0.0),
                            expires_at=expires,
                            label=str(data.get("Label", "")),
                        )
                    )
                elif expires < now - STALE_PARTICIPANT_SECONDS:
                    stale.append(row_key)
        live.sort(key=lambda p: (p.joined_at, p.id))
        ids = {p.id for p in live}
        if stale:
            self._forget(key, stale[:4])
        return BudgetSnapshot(
            not_before=not_before,
            blocks=blocks,
            participants=tuple(live),
            held={pid: n for pid, n in held.items() if pid in ids and n > 0},
            slots_etag=slots_etag,
        )

    def _forget(self, key: str, row_keys: list[str]) -> None:
        client = self._tables.client(BUDGETS)
        for row_key in row_keys:
            self._count("write")
            try:
                with translated(f"clean throttling budget {key}"):
                    client.delete_entity(key, row_key, **_FAIL_FAST)
            except StoreError:
                pass  # someone else did, or storage is busy: the next reader tries again

    def block_until(self, key: str, until: float) -> float:
        """Move this process's NotBefore forward to ``until`` (never back) in one upsert; returns
        the latest NotBefore this process has recorded for ``key``."""
        with self._block_lock:  # forward only: our own writes never overtake each other
            stored, blocks = self._blocked.get(key, (0.0, 0))
            if stored >= until:
                return stored
            entity = {
                "PartitionKey": key,
                "RowKey": _WRITER + self._writer,
                "NotBefore": until,
                "Blocks": blocks + 1,
            }
            self._count("write")
            with translated(f"throttling budget {key}"):
                self._tables.client(BUDGETS).upsert_entity(entity, mode=UpdateMode.REPLACE)
            self._blocked[key] = (until, blocks + 1)
            return until

    def update_held(self, key: str, change: HeldChange) -> BudgetSnapshot:
        """Read the partition, let ``change`` decide the new slots map (None: leave it) and
        write it under the slots row's ETag, again from a fresh read if another writer won.
        Returns the snapshot the decision was made on, with the slots as written."""
        client = self._tables.client(BUDGETS)
        what = f"throttling budget slots {key}"
        for _ in range(_WRITE_ATTEMPTS):
            snap = self.snapshot(key)
            new = change(snap)
            if new is None:
                return snap
            held = {pid: n for pid, n in sorted(new.items()) if n > 0}
            entity = {"PartitionKey": key, "RowKey": _SLOTS, "Held": json.dumps(held)}
            self._count("write")
            try:
                with translated(what):
                    if snap.slots_etag is None:
                        client.create_entity(entity, **_FAIL_FAST)
                    else:
                        client.update_entity(
                            entity, mode=UpdateMode.REPLACE, **match(snap.slots_etag),
                            **_FAIL_FAST,
                        )  # fmt: skip
            except (ConflictError, PreconditionFailedError, NotFoundError):
                continue  # another worker changed the slots meanwhile: decide again
            return replace(snap, held=held)
        raise ConflictError(f"{what}: kept changing")

    def join(self, key: str, participant: str, label: str, seconds: float) -> Participant:
        """Register (or re-register) a participant alive for ``seconds``."""
        now = self._clock()
        entity = self._participant(key, participant, label, joined_at=now, expires=now + seconds)
        self._count("write")
        with translated(f"join throttling budget {key}"):
            self._tables.client(BUDGETS).upsert_entity(entity, mode=UpdateMode.REPLACE)
        return Participant(participant, now, now + seconds, label)

    def renew(self, key: str, participant: Participant, seconds: float) -> Participant:
        """Keep a participant alive; its place in the order (JoinedAt) is kept."""
        expires = self._clock() + seconds
        entity = self._participant(
            key, participant.id, participant.label, joined_at=participant.joined_at, expires=expires
        )
        self._count("write")
        with translated(f"renew throttling budget {key}"):
            self._tables.client(BUDGETS).upsert_entity(
                entity, mode=UpdateMode.REPLACE, **_FAIL_FAST
            )
        return Participant(participant.id, participant.joined_at, expires, participant.label)

    def leave(self, key: str, participant: str) -> None:
        """Remove a participant: its slots are free at once (entries of non-live ones are void)."""
        row = _PARTICIPANT + encode_key(participant, "participant id")
        self._count("write")
        try:
            with translated(f"leave throttling budget {key}"):
                self._tables.client(BUDGETS).delete_entity(key, row, **_FAIL_FAST)
        except NotFoundError:
            pass

    @staticmethod
    def _participant(
        key: str, participant: str, label: str, *, joined_at: float, expires: float
    ) -> dict[str, object]:
        return {
            "PartitionKey": key,
            "RowKey": _PARTICIPANT + encode_key(participant, "participant id"),
            "Participant": participant,
            "Label": label,
            "JoinedAt": joined_at,
            "ExpiresAt": expires,
        }
