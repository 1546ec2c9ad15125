"""The embedded segment source: segment name -> member customer ids.

Members are packed: ids joined by newlines (ids never contain control characters) into string
properties of ~32 000 UTF-16 units, several properties per chunk entity, so a million members
are a few dozen entities. A put writes a complete new version of the chunks, then flips the
version pointer in the segment's header (ETag-checked), then deletes the old chunks. Readers
follow the header's version and check the chunk and member counts it records, so they see the
old set or the new one, never a mix or a half.
"""

from __future__ import annotations

import builtins
import contextlib
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import UpdateMode

from shared.errors import ConflictError, NotFoundError, PreconditionFailedError, StoreError
from shared.store._boundary import translated
from shared.store.keys import encode_key, text_problem, try_encode_key, utf16_units
from shared.store.limits import MAX_ENTITY_BYTES, check_entity, json_chars
from shared.store.tables import Tables, etag_of, match, submit

SEGMENTS, SEGMENT_CHUNKS = "segments", "segmentchunks"
_HEADER_PK = "segment"
MAX_ID_CHARS = 256
MAX_NAME_CHARS = 256
_PROPERTY_UNITS = 32_000  # per packed property (limit 32 768 UTF-16 units)
_PROPERTIES_PER_CHUNK = 15  # 15 * ~64 KB stays under 1 MiB with room for names and keys
_CHUNK_JSON_BUDGET = 900_000  # Azurite measures the JSON body (non-ASCII is \\u-escaped)
_READ_ATTEMPTS = 5
_FLIP_ATTEMPTS = 5
_WRITERS = 4


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    name: str
    members: int
    duplicates: int  # duplicate ids dropped by the last put
    updated_at: str  # ISO 8601 UTC
    version: str
    etag: str | None = None


def validate_member_ids(ids: Iterable[object]) -> list[str]:
    """Problems as messages naming the 1-based position; empty if all ids are valid."""
    problems = []
    for position, value in enumerate(ids, start=1):
        problem = text_problem(value, max_chars=MAX_ID_CHARS)
        if problem:
            problems.append(f"member {position}: customer id {problem}")
            if len(problems) >= 20:
                problems.append("(further problems not listed)")
                break
    return problems


def pack_members(ids: Sequence[str]) -> list[list[str]]:
    """Ids -> chunks (entities) -> properties (newline-joined strings). Pure."""
    chunks: list[list[str]] = []
    props: list[str] = []
    current: list[str] = []
    units = 0
    chunk_json = 0

    def close_property() -> None:
        nonlocal current, units, chunk_json
        if current:
            text = "\n".join(current)
            props.append(text)
            chunk_json += json_chars(text)
            current, units = [], 0

    def close_chunk() -> None:
        nonlocal props, chunk_json
        close_property()
        if props:
            chunks.append(props)
        props, chunk_json = [], 0

    for member in ids:
        size = utf16_units(member) + 1
        if current and units + size > _PROPERTY_UNITS:
            close_property()
            if len(props) >= _PROPERTIES_PER_CHUNK or chunk_json >= _CHUNK_JSON_BUDGET:
                close_chunk()
        current.append(member)
        units += size
    close_chunk()
    return chunks


class SegmentRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    # --- reads ---------------------------------------------------------------------------------

    def _header(self, name: str) -> Any:
        key = try_encode_key(name)
        if key is None:
            raise NotFoundError(f"segment {name!r}: not found")
        with translated(f"get segment {name!r}"):
            return self._tables.client(SEGMENTS).get_entity(_HEADER_PK, key)

    @staticmethod
    def _info(entity: Any) -> SegmentInfo:
        return SegmentInfo(
            name=entity["Name"],
            members=int(entity["Members"]),
            duplicates=int(entity.get("Duplicates", 0)),
            updated_at=entity.get("UpdatedAt") or "",
            version=entity["Version"],
            etag=etag_of(entity.metadata),
        )

    def get(self, name: str) -> SegmentInfo:
        return self._info(self._header(name))

    def list(self) -> list[SegmentInfo]:
        with translated("list segments"):
            entities = list(
                self._tables.client(SEGMENTS).query_entities(
                    "PartitionKey eq @pk", parameters={"pk": _HEADER_PK}
                )
            )
        return [self._info(e) for e in entities]

    def members(self, name: str) -> builtins.list[str]:
        """All member ids of the current version (order not significant)."""
        for _ in range(_READ_ATTEMPTS):
            header = self._header(name)
            version, chunks = header["Version"], int(header["Chunks"])
            expected = int(header["Members"])
            with translated(f"read members of segment {name!r}"):
                entities = list(
                    self._tables.client(SEGMENT_CHUNKS).query_entities(
                        "PartitionKey eq @pk", parameters={"pk": version}
                    )
                )
            if len(entities) != chunks:
                continue  # the version was replaced and its chunks deleted while we read
            members: list[str] = []
            for entity in sorted(entities, key=lambda e: e["RowKey"]):
                for index in range(int(entity["Properties"])):
                    members.extend(entity[f"P{index}"].split("\n"))
            if len(members) == expected:
                return members
        raise StoreError(
            f"segment {name!r}: could not read a consistent member set (it keeps changing or "
            "its stored chunks are damaged)"
        )

    # --- writes --------------------------------------------------------------------------------

    def put(self, name: str, customer_ids: Sequence[str]) -> SegmentInfo:
        """Replace the segment's members (created if new). Duplicates are dropped and counted.

        Raises ValueError naming the first bad ids (empty, control characters, > 256 chars)."""
        problem = text_problem(name, max_chars=MAX_NAME_CHARS)
        if problem:
            raise ValueError(f"segment name {problem}")
        header_key = encode_key(name, "segment name")
        customer_ids = list(customer_ids)  # iterated twice below
        problems = validate_member_ids(customer_ids)
        if problems:
            raise ValueError("; ".join(problems))
        unique = list(dict.fromkeys(customer_ids))
        duplicates = len(customer_ids) - len(unique)
        version = uuid.uuid4().hex
        chunks = pack_members(unique)
        header = {
            "PartitionKey": _HEADER_PK,
            "RowKey": header_key,
            "Name": name,
            "Version": version,
            "Chunks": len(chunks),
            "Members": len(unique),
            "Duplicates": duplicates,
            "UpdatedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        check_entity(header, f"segment {name!r}")
        try:
            self._write_chunks(name, version, chunks)
            meta, old_version = self._flip(name, header)
        except BaseException:
            # never pointed to: remove what was written (best effort; the error that matters
            # is the one being raised)
            with contextlib.suppress(StoreError):
                self._delete_chunks(version)
            raise
        if old_version is not None:
            # the new version is live; a failure here only leaves unreferenced chunks behind
            with contextlib.suppress(StoreError):
                self._delete_chunks(old_version)
        return SegmentInfo(
            name=name,
            members=len(unique),
            duplicates=duplicates,
            updated_at=str(header["UpdatedAt"]),
            version=version,
            etag=etag_of(meta),
        )

    def _write_chunks(
        self, name: str, version: str, chunks: builtins.list[builtins.list[str]]
    ) -> None:
        client = self._tables.client(SEGMENT_CHUNKS)

        def write(number: int) -> None:
            props = chunks[number]
            entity: dict[str, Any] = {
                "PartitionKey": version,
                "RowKey": f"{number:06d}",
                "Properties": len(props),
            }
            entity.update({f"P{i}": text for i, text in enumerate(props)})
            size = check_entity(entity, f"segment {name!r} member chunk")
            assert size <= MAX_ENTITY_BYTES
            with translated(f"write members of segment {name!r}"):
                # upsert (PUT) so the SDK may retry it; the version is new, nothing is replaced
                client.upsert_entity(entity, mode=UpdateMode.REPLACE)

        if len(chunks) <= 1:
            for number in range(len(chunks)):
                write(number)
            return
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            for future in [pool.submit(write, n) for n in range(len(chunks))]:
                future.result()

    def _flip(self, name: str, header: dict[str, Any]) -> tuple[Any, str | None]:
        """Point the header at the new version; last writer wins, with ETag checks."""
        client = self._tables.client(SEGMENTS)
        for _ in range(_FLIP_ATTEMPTS):
            try:
                current = self._header(name)
            except NotFoundError:
                try:
                    with translated(f"create segment {name!r}"):
                        return client.create_entity(header), None
                except ConflictError:
                    continue  # created concurrently: flip over it
            try:
                with translated(f"update segment {name!r}"):
                    meta = client.update_entity(
                        header, mode=UpdateMode.REPLACE, **match(etag_of(current.metadata))
                    )
                return meta, current["Version"]
            except (PreconditionFailedError, NotFoundError):
                continue
        raise ConflictError(f"segment {name!r} is being changed concurrently; try again")

    def _delete_chunks(self, version: str) -> None:
        client = self._tables.client(SEGMENT_CHUNKS)
        with translated("delete old segment members"):
            keys = [
                e["RowKey"]
                for e in client.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": version}, select=["RowKey"]
                )
            ]
        with contextlib.suppress(NotFoundError):  # deleted concurrently
            submit(
                client,
                [("delete", {"PartitionKey": version, "RowKey": k}) for k in keys],
                "delete old segment members",
            )

    def delete(self, name: str) -> None:
        """Idempotent."""
        for _ in range(_FLIP_ATTEMPTS):
            try:
                header = self._header(name)
            except NotFoundError:
                return
            try:
                with translated(f"delete segment {name!r}"):
                    self._tables.client(SEGMENTS).delete_entity(
                        _HEADER_PK, header["RowKey"], **match(etag_of(header.metadata))
                    )
            except PreconditionFailedError:
                continue  # replaced meanwhile: delete the newer version instead
            self._delete_chunks(header["Version"])
            return
        raise ConflictError(f"segment {name!r} is being changed concurrently; try again")
