"""Background customer imports: their records (state and progress) and their staged chunks.

  customerimports       "import" / import id          state, rows, rowsWritten, chunks, ...
  customerimportchunks  import id / <chunk>.<part>    Rows, Parts, P0..Pn (shared/store/staging.py)

An import id starts with the inverted creation time in milliseconds, so the partition lists
newest first. Records are saved with their ETag (a worker's checkpoint never overwrites another
worker's newer one); chunks are written before the record exists and deleted when the import
ends.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import secrets
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import NotFoundError, StoreError
from shared.store._boundary import translated
from shared.store.limits import check_entity
from shared.store.staging import chunk_lines, pack_lines, unpack_parts
from shared.store.tables import Tables, delete_partition, etag_of, match

IMPORTS, IMPORT_CHUNKS = "customerimports", "customerimportchunks"
_PK = "import"
_WRITERS = 4
MAX_ERROR_CHARS = 2000
IMPORT_ID_PATTERN = r"^[0-9]{13}-[0-9a-f]{8}$"
_ID = re.compile(IMPORT_ID_PATTERN)


class ImportState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (ImportState.SUCCEEDED, ImportState.FAILED)


@dataclass(frozen=True, slots=True)
class CustomerImport:
    id: str
    state: ImportState
    rows: int
    chunks: int
    created_by: str
    created_at: str  # ISO 8601 UTC, like every other record
    merge: bool = False
    rows_written: int = 0
    chunks_written: int = 0  # the checkpoint: chunks 0 .. chunks_written-1 are in the table
    deliveries: int = 0  # queue deliveries that worked on it (slices and retries)
    updated_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None  # why it failed (final), or the last failure it is retrying
    etag: str | None = None

    def but(self, **changes: Any) -> CustomerImport:
        return replace(self, **changes)


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="milliseconds")


def new_import_id(now: datetime | None = None) -> str:
    """Inverted milliseconds (newest sorts first) + 32 random bits."""
    millis = int((now or datetime.now(UTC)).timestamp() * 1000)
    return f"{10**13 - millis:013d}-{secrets.token_hex(4)}"


def is_import_id(value: str) -> bool:
    return bool(_ID.fullmatch(value))


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_ERROR_CHARS]


def _to_entity(record: CustomerImport) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _PK,
        "RowKey": record.id,
        "State": record.state.value,
        "Rows": record.rows,
        "Chunks": record.chunks,
        "CreatedBy": record.created_by,
        "CreatedAt": record.created_at,
        "Merge": record.merge,
        "RowsWritten": record.rows_written,
        "ChunksWritten": record.chunks_written,
        "Deliveries": record.deliveries,
        "UpdatedAt": record.updated_at or record.created_at,
        "StartedAt": record.started_at,
        "FinishedAt": record.finished_at,
        "Error": _clip(record.error),
    }
    return {k: v for k, v in entity.items() if v is not None}


def _from_entity(entity: Mapping[str, Any]) -> CustomerImport:
    return CustomerImport(
        id=entity["RowKey"],
        state=ImportState(entity["State"]),
        rows=int(entity["Rows"]),
        chunks=int(entity["Chunks"]),
        created_by=entity.get("CreatedBy", ""),
        created_at=entity.get("CreatedAt", ""),
        merge=bool(entity.get("Merge", False)),
        rows_written=int(entity.get("RowsWritten", 0)),
        chunks_written=int(entity.get("ChunksWritten", 0)),
        deliveries=int(entity.get("Deliveries", 0)),
        updated_at=entity.get("UpdatedAt", ""),
        started_at=entity.get("StartedAt"),
        finished_at=entity.get("FinishedAt"),
        error=entity.get("Error"),
        etag=etag_of(getattr(entity, "metadata", None)),
    )


def _part_key(chunk: int, part: int) -> str:
    return f"{chunk:06d}.{part:03d}"


class CustomerImportRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    # --- records -------------------------------------------------------------------------------

    def create(self, record: CustomerImport) -> CustomerImport:
        with translated(f"record customer import {record.id}"):
            meta = self._tables.client(IMPORTS).create_entity(_to_entity(record))
        return record.but(etag=etag_of(meta))

    def get(self, import_id: str) -> CustomerImport:
        if not is_import_id(import_id):
            raise NotFoundError(f"customer import {import_id!r}: not found")
        with translated(f"get customer import {import_id}"):
            entity = self._tables.client(IMPORTS).get_entity(_PK, import_id)
        return _from_entity(entity)

    def list(self, limit: int = 50) -> list[CustomerImport]:
        """Newest first."""
        out: list[CustomerImport] = []
        with translated("list customer imports"):
            for entity in self._tables.client(IMPORTS).query_entities(
                "PartitionKey eq @pk", parameters={"pk": _PK}, results_per_page=min(limit, 1000)
            ):
                out.append(_from_entity(entity))
                if len(out) >= limit:
                    break
        return out

    def save(self, record: CustomerImport) -> CustomerImport:
        """Replace the record if it is unchanged since it was read (PreconditionFailedError
        otherwise: another worker saved a newer checkpoint)."""
        with translated(f"save customer import {record.id}"):
            meta = self._tables.client(IMPORTS).update_entity(
                _to_entity(record), mode=UpdateMode.REPLACE, **match(record.etag)
            )
        return record.but(etag=etag_of(meta))

    def delete(self, import_id: str) -> None:
        """Idempotent (its staged chunks are removed too)."""
        self.delete_chunks(import_id)
        with contextlib.suppress(NotFoundError), translated(f"delete customer import {import_id}"):
            self._tables.client(IMPORTS).delete_entity(_PK, import_id)

    # --- staged chunks -------------------------------------------------------------------------

    def stage(self, import_id: str, rows: Sequence[Mapping[str, object]]) -> tuple[int, int]:
        """Write validated rows as chunks under `import_id`; (chunks, rows). On failure what
        was written is removed (best effort) and the error raised."""
        client = self._tables.client(IMPORT_CHUNKS)

        def write(number: int, lines: list[str]) -> None:
            parts = pack_lines(lines)
            for index, props in enumerate(parts):
                entity: dict[str, Any] = {
                    "PartitionKey": import_id,
                    "RowKey": _part_key(number, index),
                    "Rows": len(lines),
                    "Parts": len(parts),
                    "Properties": len(props),
                }
                entity.update({f"P{i}": text for i, text in enumerate(props)})
                check_entity(entity, f"customer import {import_id} chunk {number}")
                with translated(f"stage customer import {import_id}"):
                    # upsert (PUT) so the SDK may retry it; the key is new, nothing is replaced
                    client.upsert_entity(entity, mode=UpdateMode.REPLACE)

        chunks = 0
        try:
            with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
                futures = []
                for number, lines in enumerate(chunk_lines(rows)):
                    futures.append(pool.submit(write, number, lines))
                    chunks += 1
                for future in futures:
                    future.result()
        except BaseException:
            with contextlib.suppress(StoreError):
                self.delete_chunks(import_id)
            raise
        return chunks, len(rows)

    def read_chunk(self, import_id: str, number: int) -> builtins.list[dict[str, Any]]:
        """The rows of one staged chunk; StoreError if it is missing or incomplete."""
        with translated(f"read customer import {import_id} chunk {number}"):
            entities = list(
                self._tables.client(IMPORT_CHUNKS).query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                    parameters={
                        "pk": import_id,
                        "lo": _part_key(number, 0),
                        "hi": f"{number + 1:06d}.",
                    },
                )
            )
        entities.sort(key=lambda e: e["RowKey"])
        if not entities or len(entities) != int(entities[0]["Parts"]):
            raise StoreError(
                f"customer import {import_id}: staged chunk {number} is missing or incomplete "
                f"({len(entities)} part(s) found)"
            )
        parts = [[e[f"P{i}"] for i in range(int(e["Properties"]))] for e in entities]
        try:
            return unpack_parts(parts, int(entities[0]["Rows"]))
        except ValueError as error:
            raise StoreError(f"customer import {import_id}: {error}") from error

    def delete_chunks(self, import_id: str) -> None:
        """Idempotent."""
        delete_partition(
            self._tables.client(IMPORT_CHUNKS), import_id, "delete staged customer rows"
        )

    def staged_ids(self) -> set[str]:
        """Ids of the imports that have staged chunks (the stale sweep's input)."""
        with translated("list staged customer imports"):
            return {
                e["PartitionKey"]
                for e in self._tables.client(IMPORT_CHUNKS).query_entities(
                    "PartitionKey ne ''", select=["PartitionKey"]
                )
            }


def created_at_of(import_id: str) -> datetime:
    """When an import id was made (its first 13 digits are inverted milliseconds)."""
    millis = 10**13 - int(import_id[:13])
    return datetime.fromtimestamp(millis / 1000, UTC)
