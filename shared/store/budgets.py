"""Throttling budgets: one partition per (Sales environment, app identity), shared by every worker.

Dataverse counts service protection per user per environment, so every process that sends with
one identity must see the same Retry-After and share one in-flight allowance. The partition is
small and read whole in one query (``snapshot``); writers never overwrite each other blindly:

  "state"            NotBefore (epoch s): no request before it (the latest Retry-After seen);
                     Blocks: how many 429s moved it. Updated only forward, ETag-guarded.
  "p~<participant>"  one row per slice sending with the identity: JoinedAt, ExpiresAt, Label.
                     Rows whose ExpiresAt passed belong to dead workers and are ignored.

The key (``budget_key``) is a hash of environment + identity: no secret and no user text in keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError
from shared.store._boundary import translated
from shared.store.keys import encode_key
from shared.store.tables import Tables, etag_of, match, properties

BUDGETS = "budgets"
_STATE = "state"
_PARTICIPANT = "p~"
_WRITE_ATTEMPTS = 16
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

    def rank(self, participant: str) -> int | None:
        for index, p in enumerate(self.participants):
            if p.id == participant:
                return index
        return None


class BudgetRepository:
    def __init__(self, tables: Tables, clock: Callable[[], float] = time.time) -> None:
        self._tables = tables
        self._clock = clock

    def snapshot(self, key: str) -> BudgetSnapshot:
        """The partition in one query: the shared block and the live participants."""
        client = self._tables.client(BUDGETS)
        now = self._clock()
        not_before, blocks = 0.0, 0
        live: list[Participant] = []
        with translated(f"read throttling budget {key}"):
            rows = list(
                client.query_entities("PartitionKey eq @pk", parameters={"pk": key}, **_FAIL_FAST)
            )
        for row in rows:
            data = properties(row)
            if row["RowKey"] == _STATE:
                not_before = float(data.get("NotBefore") or 0.0)
                blocks = int(data.get("Blocks") or 0)
            elif str(row["RowKey"]).startswith(_PARTICIPANT):
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
        live.sort(key=lambda p: (p.joined_at, p.id))
        return BudgetSnapshot(not_before=not_before, blocks=blocks, participants=tuple(live))

    def block_until(self, key: str, until: float) -> float:
        """Move the shared NotBefore forward to ``until`` (never back); returns the stored value."""
        client = self._tables.client(BUDGETS)
        what = f"throttling budget {key}"
        for _ in range(_WRITE_ATTEMPTS):
            try:
                with translated(what):
                    current = client.get_entity(key, _STATE)
            except NotFoundError:
                entity = {"PartitionKey": key, "RowKey": _STATE, "NotBefore": until, "Blocks": 1}
                try:
                    with translated(what):
                        client.create_entity(entity)
                    return until
                except ConflictError:
                    continue  # someone created it meanwhile: read it again
            stored = float(properties(current).get("NotBefore") or 0.0)
            if stored >= until:
                return stored
            entity = {
                "PartitionKey": key,
                "RowKey": _STATE,
                "NotBefore": until,
                "Blocks": int(properties(current).get("Blocks") or 0) + 1,
            }
            try:
                with translated(what):
                    client.update_entity(
                        entity, mode=UpdateMode.REPLACE, **match(etag_of(current.metadata))
                    )
                return until
            except (PreconditionFailedError, NotFoundError):
                continue  # another worker moved it meanwhile: compare again
        raise ConflictError(f"{what}: kept changing while recording a Retry-After")

    def join(self, key: str, participant: str, label: str, seconds: float) -> Participant:
        """Register (or re-register) a participant alive for ``seconds``."""
        now = self._clock()
        entity = self._participant(key, participant, label, joined_at=now, expires=now + seconds)
        with translated(f"join throttling budget {key}"):
            self._tables.client(BUDGETS).upsert_entity(entity, mode=UpdateMode.REPLACE)
        return Participant(participant, now, now + seconds, label)

    def renew(self, key: str, participant: Participant, seconds: float) -> Participant:
        """Keep a participant alive; its place in the order (JoinedAt) is kept."""
        expires = self._clock() + seconds
        entity = self._participant(
            key, participant.id, participant.label, joined_at=participant.joined_at, expires=expires
        )
        with translated(f"renew throttling budget {key}"):
            self._tables.client(BUDGETS).upsert_entity(
                entity, mode=UpdateMode.REPLACE, **_FAIL_FAST
            )
        return Participant(participant.id, participant.joined_at, expires, participant.label)

    def leave(self, key: str, participant: str) -> None:
        row = _PARTICIPANT + encode_key(participant, "participant id")
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
