"""Run history (newest first), per-run rejections (paged) and active-run markers."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError
from shared.models import Rejection, RejectionReason, Run
from shared.store import codec
from shared.store._boundary import translated
from shared.store.keys import encode_key, join_keys, try_encode_key
from shared.store.limits import check_entity
from shared.store.tables import Tables, delete_partition, etag_of, match, replace_op, submit

RUNS, REJECTIONS, ACTIVE_RUNS = "runs", "rejections", "activeruns"

_INVERT_FROM = 10**19  # time.time_ns() stays below this until the year 2286
_RUN_ROW = re.compile(r"r\d{19}[0-9a-f]{8}")
_INDEX_PREFIX = "i"  # index rows: run id -> run row key, same partition as the runs
_ROW_KEY_CACHE = 10_000


def run_row_key(now_ns: int | None = None) -> str:
    """Inverted timestamp + random suffix: lexical order is newest first."""
    now = time.time_ns() if now_ns is None else now_ns
    return f"r{_INVERT_FROM - now:019d}{secrets.token_hex(4)}"


class RunRepository:
    """Runs of one export live in one partition: run rows `r<inverted time><rand>` sorted
    newest first, plus an index row `i<run id>` per run written in the same transaction."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._row_keys: dict[tuple[str, str], str] = {}  # (export, run) -> row key; immutable
        self._lock = threading.Lock()

    def _pk(self, export_id: str) -> str:
        return encode_key(export_id, "export id")

    def _entity(self, run: Run, row_key: str) -> dict[str, Any]:
        entity = {
            "PartitionKey": self._pk(run.export_id),
            "RowKey": row_key,
            **codec.run_props(run),
        }
        check_entity(entity, f"run {run.id!r} of export {run.export_id!r}")
        return entity

    def _row_key(self, export_id: str, run_id: str) -> str:
        cached = self._row_keys.get((export_id, run_id))
        if cached is not None:
            return cached
        pk, rid = try_encode_key(export_id), try_encode_key(run_id)
        if pk is None or rid is None:
            raise NotFoundError(f"run {run_id!r} of export {export_id!r}: not found")
        with translated(f"get run {run_id!r} of export {export_id!r}"):
            index = self._tables.client(RUNS).get_entity(pk, _INDEX_PREFIX + rid)
        row_key = str(index["RunRowKey"])
        self._remember(export_id, run_id, row_key)
        return row_key

    def _remember(self, export_id: str, run_id: str, row_key: str) -> None:
        with self._lock:
            if len(self._row_keys) >= _ROW_KEY_CACHE:
                self._row_keys.clear()  # a long-lived worker: start over rather than grow
            self._row_keys[(export_id, run_id)] = row_key

    def create(self, run: Run) -> Run:
        """Record a new run (a uuid id if run.id is empty); ConflictError if the id exists."""
        if not run.id:
            run = dataclasses.replace(run, id=str(uuid.uuid4()))
        row_key = run_row_key()
        entity = self._entity(run, row_key)
        index = {
            "PartitionKey": entity["PartitionKey"],
            "RowKey": _INDEX_PREFIX + encode_key(run.id, "run id"),
            "RunRowKey": row_key,
        }
        check_entity(index, f"run {run.id!r} index")
        with translated(f"create run {run.id!r} of export {run.export_id!r}"):
            self._tables.client(RUNS).submit_transaction([("create", index), ("create", entity)])
        self._remember(run.export_id, run.id, row_key)
        return self.get(run.export_id, run.id)

    def get(self, export_id: str, run_id: str) -> Run:
        row_key = self._row_key(export_id, run_id)
        with translated(f"get run {run_id!r} of export {export_id!r}"):
            entity = self._tables.client(RUNS).get_entity(self._pk(export_id), row_key)
        return codec.run_from(entity, etag_of(entity.metadata))

    def update(self, run: Run) -> Run:
        """Replace the run; guarded by run.etag (PreconditionFailedError on mismatch)."""
        row_key = self._row_key(run.export_id, run.id)
        entity = self._entity(run, row_key)
        with translated(f"update run {run.id!r} of export {run.export_id!r}"):
            meta = self._tables.client(RUNS).update_entity(
                entity, mode=UpdateMode.REPLACE, **match(run.etag)
            )
        return dataclasses.replace(run, etag=etag_of(meta))

    def list(
        self, export_id: str, limit: int = 20, continuation: str | None = None
    ) -> tuple[list[Run], str | None]:
        """Newest first; `continuation` is the opaque token returned by the previous page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if continuation is not None and not _RUN_ROW.fullmatch(continuation):
            raise ValueError("invalid continuation token")
        pk = try_encode_key(export_id)
        if pk is None:
            return [], None
        # continuation = row key of the last run returned: the next page starts after it
        after = continuation or "r"
        with translated(f"list runs of export {export_id!r}"):
            pages = self._tables.client(RUNS).query_entities(
                "PartitionKey eq @pk and RowKey gt @after and RowKey lt @end",
                parameters={"pk": pk, "after": after, "end": "s"},
                results_per_page=min(limit + 1, 1000),
            )
            entities = []
            for entity in pages:
                entities.append(entity)
                if len(entities) > limit:
                    break
        runs = [codec.run_from(e, etag_of(e.metadata)) for e in entities[:limit]]
        more = len(entities) > limit
        return runs, (entities[limit - 1]["RowKey"] if more else None)

    def delete_all(self, export_id: str) -> int:
        """Delete an export's whole run history (runs and index rows); returns runs deleted."""
        pk = try_encode_key(export_id)
        if pk is None:
            return 0
        client = self._tables.client(RUNS)
        with translated(f"list runs of export {export_id!r}"):
            keys = [
                e["RowKey"]
                for e in client.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"]
                )
            ]
        with contextlib.suppress(NotFoundError):  # deleted concurrently: idempotent
            submit(
                client,
                [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in keys],
                f"delete runs of export {export_id!r}",
            )
        with self._lock:
            for key in [k for k in self._row_keys if k[0] == export_id]:
                del self._row_keys[key]
        return sum(1 for rk in keys if rk.startswith("r"))


# --- rejections -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """A Rejection plus the segment it belongs to."""

    segment: str
    customer_id: str
    reason: RejectionReason
    contact_id: str | None = None
    detail: str = ""


MAX_DETAIL_CHARS = 2000  # longer details are cut (with an ellipsis) so packing stays bounded
_PACK_CHARS = 30_000  # ASCII JSON characters per rejection entity (one string property)
_CHUNK_DIGITS = 6


def _pack(rejections: Sequence[Rejection]) -> list[tuple[str, int]]:
    """Rejections as (JSON array of [customer, reason, contact, detail], count), each at most
    ~30 000 characters."""
    packs: list[tuple[str, int]] = []
    current: list[str] = []
    size = 2
    for r in rejections:
        detail = (
            r.detail if len(r.detail) <= MAX_DETAIL_CHARS else r.detail[:MAX_DETAIL_CHARS] + "…"
        )
        item = json.dumps(
            [r.customer_id, str(r.reason), r.contact_id, detail],
            ensure_ascii=True,
            separators=(",", ":"),
        )
        if current and size + len(item) + 1 > _PACK_CHARS:
            packs.append(("[" + ",".join(current) + "]", len(current)))
            current, size = [], 2
        current.append(item)
        size += len(item) + 1
    if current:
        packs.append(("[" + ",".join(current) + "]", len(current)))
    return packs


def _encode_token(row_key: str, offset: int) -> str:
    raw = json.dumps([row_key, offset], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        row_key, offset = json.loads(raw)
    except (ValueError, binascii.Error, TypeError) as error:
        raise ValueError("invalid continuation token") from error
    if not isinstance(row_key, str) or not isinstance(offset, int) or offset < 0:
        raise ValueError("invalid continuation token")
    return row_key, offset


class RejectionRepository:
    """Members left out, per run and segment. Rows pack a few hundred rejections each:
    PartitionKey = export~~run, RowKey = segment~~<chunk no>."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def replace_segment(
        self, export_id: str, run_id: str, segment: str, rejections: Sequence[Rejection]
    ) -> None:
        """Make the segment's stored rejections equal to `rejections` (absolute, not added)."""
        pk = join_keys(encode_key(export_id, "export id"), encode_key(run_id, "run id"))
        prefix = join_keys(encode_key(segment, "segment name"), "")
        what = f"rejections of run {run_id!r} segment {segment!r}"
        entities = []
        for number, (pack, count) in enumerate(_pack(rejections)):
            entity = {
                "PartitionKey": pk,
                "RowKey": f"{prefix}{number:0{_CHUNK_DIGITS}d}",
                "Segment": segment,
                "Count": count,
                "Items": pack,
            }
            check_entity(entity, what)
            entities.append(entity)
        client = self._tables.client(REJECTIONS)
        with translated(what):
            stale = [
                e["RowKey"]
                for e in client.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                    parameters={
                        "pk": pk,
                        "lo": f"{prefix}{len(entities):0{_CHUNK_DIGITS}d}",
                        "hi": prefix + ":",  # ':' sorts right after the digits
                    },
                    select=["RowKey"],
                )
            ]
        ops = [replace_op(e) for e in entities]
        ops += [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in stale]
        submit(client, ops, what)

    def _items(
        self, pk: str, start_key: str, end_key: str | None, offset: int, page_hint: int
    ) -> Iterator[tuple[str, int, RejectionRecord]]:
        query, params = "PartitionKey eq @pk and RowKey ge @lo", {"pk": pk, "lo": start_key}
        if end_key is not None:
            query += " and RowKey lt @hi"
            params["hi"] = end_key
        with translated("list rejections"):
            for entity in self._tables.client(REJECTIONS).query_entities(
                query, parameters=params, results_per_page=page_hint
            ):
                items = json.loads(entity["Items"])
                first = offset if entity["RowKey"] == start_key else 0
                for index in range(first, len(items)):
                    customer_id, reason, contact_id, detail = items[index]
                    yield (
                        entity["RowKey"],
                        index,
                        RejectionRecord(
                            segment=entity["Segment"],
                            customer_id=customer_id,
                            reason=RejectionReason(reason),
                            contact_id=contact_id,
                            detail=detail,
                        ),
                    )

    def list(
        self,
        export_id: str,
        run_id: str,
        limit: int = 100,
        continuation: str | None = None,
        segment: str | None = None,
    ) -> tuple[list[RejectionRecord], str | None]:
        """One page of a run's rejections (ordered by segment); optionally one segment only."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        start, offset = _decode_token(continuation) if continuation else ("", 0)
        eid, rid = try_encode_key(export_id), try_encode_key(run_id)
        if eid is None or rid is None:
            return [], None
        pk = join_keys(eid, rid)
        lo: str = ""
        hi: str | None = None
        if segment is not None:
            seg = try_encode_key(segment)
            if seg is None:
                return [], None
            lo, hi = join_keys(seg, ""), join_keys(seg, "") + ":"
        if start:
            if start < lo or (hi is not None and start >= hi):
                raise ValueError("invalid continuation token")
            lo = start
        page_hint = max(2, min(100, limit // 200 + 2))
        records: list[RejectionRecord] = []
        for row_key, index, record in self._items(pk, lo, hi, offset, page_hint):
            if len(records) == limit:
                return records, _encode_token(row_key, index)
            records.append(record)
        return records, None

    def delete_run(self, export_id: str, run_id: str) -> None:
        eid, rid = try_encode_key(export_id), try_encode_key(run_id)
        if eid is None or rid is None:
            return
        pk = join_keys(eid, rid)
        delete_partition(
            self._tables.client(REJECTIONS), pk, f"delete rejections of run {run_id!r}"
        )


# --- active-run markers -----------------------------------------------------------------------

_ACTIVE_PK = "active"
_CLAIM_ATTEMPTS = 10


class ActiveRunRepository:
    """One marker per export, inserted only if absent: the guard against two active runs."""

    def __init__(self, tables: Tables, clock: Callable[[], float] = time.time) -> None:
        self._tables = tables
        self._clock = clock

    def _key(self, export_id: str) -> str:
        return encode_key(export_id, "export id")

    def claim(self, export_id: str, run_id: str) -> str | None:
        """None if `run_id` now holds the marker (or already did); else the holder's run id."""
        entity = {
            "PartitionKey": _ACTIVE_PK,
            "RowKey": self._key(export_id),
            "ExportId": export_id,
            "RunId": run_id,
            "ClaimedAt": self._clock(),
        }
        check_entity(entity, f"active-run marker of export {export_id!r}")
        client = self._tables.client(ACTIVE_RUNS)
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                with translated(f"claim export {export_id!r}"):
                    client.create_entity(entity)
                return None
            except ConflictError:
                pass
            holder = self.get(export_id)
            if holder is not None:
                return None if holder == run_id else holder
            # released between our insert and our read: try the insert again
        raise ConflictError(f"export {export_id!r}: active-run marker keeps changing; try again")

    def get(self, export_id: str) -> str | None:
        key = try_encode_key(export_id)
        if key is None:
            return None
        try:
            with translated(f"get active run of export {export_id!r}"):
                entity = self._tables.client(ACTIVE_RUNS).get_entity(_ACTIVE_PK, key)
        except NotFoundError:
            return None
        return str(entity["RunId"])

    def release(self, export_id: str, run_id: str) -> None:
        """Remove the marker if `run_id` holds it; idempotent, never removes another run's."""
        key = try_encode_key(export_id)
        if key is None:
            return
        client = self._tables.client(ACTIVE_RUNS)
        try:
            with translated(f"get active run of export {export_id!r}"):
                entity = client.get_entity(_ACTIVE_PK, key)
        except NotFoundError:
            return
        if entity["RunId"] != run_id:
            return
        try:
            with translated(f"release export {export_id!r}"):
                client.delete_entity(_ACTIVE_PK, key, **match(etag_of(entity.metadata)))
        except PreconditionFailedError:
            pass  # someone replaced the marker meanwhile: it is no longer ours

    def takeover(self, export_id: str, stale_run_id: str, run_id: str) -> str | None:
        """Replace a marker still held by `stale_run_id` (e.g. a run found finished) with
        `run_id`, ETag-guarded. Returns None on success, else the current holder's run id
        (claims the marker if it is absent)."""
        client = self._tables.client(ACTIVE_RUNS)
        key = self._key(export_id)
        try:
            with translated(f"get active run of export {export_id!r}"):
                entity = client.get_entity(_ACTIVE_PK, key)
        except NotFoundError:
            return self.claim(export_id, run_id)
        if entity["RunId"] != stale_run_id:
            return None if entity["RunId"] == run_id else str(entity["RunId"])
        replacement = {
            "PartitionKey": _ACTIVE_PK,
            "RowKey": key,
            "ExportId": export_id,
            "RunId": run_id,
            "ClaimedAt": self._clock(),
        }
        try:
            with translated(f"take over export {export_id!r}"):
                client.update_entity(
                    replacement, mode=UpdateMode.REPLACE, **match(etag_of(entity.metadata))
                )
        except (PreconditionFailedError, NotFoundError):
            holder = self.get(export_id)
            return None if holder == run_id else (holder or self.claim(export_id, run_id))
        return None
