"""Customer Insights – Data's output tables, as CI-D writes them into Dataverse (read-only).

Entity sets (Microsoft's CI-D docs, see emulator/README.md for confirmed vs guessed):
``msdynci_segmentmemberships`` (one row per customer; ``msdynci_segments`` holds the JSON
``{"Segments": [...]}`` naming every segment the customer is in), ``msdynci_customerprofiles``
(unified profiles; the contact ID is in a column named like
``msdynci_{DataSourceName}_{TableName}_{PrimaryKeyColumnName}``) and ``msdynci_alternatekeys``
(one row per source key of a customer; ``msdynci_entityname`` ``contact`` carries the contact id).

Synthetic and storage-free like the contacts: customer ``i`` is ``cid-<i:08d>``; segment ``k`` of
size ``s`` covers a range of customer indices (ranges overlap, so rows name several segments);
joins, leaves, new and removed segments are kept as small overrides, changed in-process between
runs (``CidTables.join/leave/drop_segment/add_segment``) or through ``/_emulator/cid/...``.
Customer ``i`` maps to Sales contact ``i``; a seeded fraction of profiles have no contact id.

Queries: ``contains(msdynci_segments,'<text>')`` (substring of the stored JSON, as Dataverse's
``contains`` does), ``Microsoft.Dynamics.CRM.In`` / ``eq`` on the string columns listed below,
``and``; ``$select`` (unknown column: 400), ``$top``, paging with ``odata.maxpagesize`` and
``$skiptoken``; inside ``$batch`` like any GET. Writes: 403, as for a role with read only.
"""

from __future__ import annotations

import heapq
import json
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator import odata
from emulator.data import contact_id, derived_guid
from emulator.odata import CODE_QUERY, CODE_UNAUTHORIZED, STRING, ApiError, Eq, In, unsupported

if TYPE_CHECKING:
    from emulator.webapi import ApiRequest, ApiResponse, WebApi, _Query

MEMBERSHIPS = "msdynci_segmentmemberships"
PROFILES = "msdynci_customerprofiles"
KEYS = "msdynci_alternatekeys"
ENTITY_SETS = {
    MEMBERSHIPS: "msdynci_segmentmembership",
    PROFILES: "msdynci_customerprofile",
    KEYS: "msdynci_alternatekey",
}
DEFAULT_CONTACT_COLUMN = "msdynci_dataverse_contact_contactid"
MODIFIED_BASE = "2026-12-01T02:00:00Z"  # the seeded "last CI-D refresh"
_CONTAINS = re.compile(r"^\s*contains\(\s*msdynci_segments\s*,\s*'((?:[^']|'')*)'\s*\)\s*$")
_KEYED = re.compile(r"^(msdynci_\w+)\((.*)\)")


@dataclass
class CidConfig:
    """What the CI-D tables hold at start. No customers: CI-D is not sharing data (404)."""

    customers: int = 0
    segments: dict[str, int] = field(default_factory=dict)  # output table name -> size
    no_contact_fraction: float = 0.0  # profiles (and keys) without a contact id
    contact_column: str = DEFAULT_CONTACT_COLUMN

    def __post_init__(self) -> None:
        if not 0.0 <= self.no_contact_fraction <= 1.0:
            raise ValueError("no_contact_fraction must be within [0, 1]")
        for name, size in self.segments.items():
            if not 0 <= size <= self.customers:
                raise ValueError(f"segment {name!r}: size must be within [0, customers]")


def parse_segments(text: str) -> dict[str, int]:
    """``Name:size,Name2:size`` (the --cid-segments flag)."""
    out: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, size = item.partition(":")
        out[name.strip()] = int(size)
    return out


def customer_id(i: int) -> str:
    return f"cid-{i:08d}"


def customer_index(text: str) -> int | None:
    if len(text) == 12 and text.startswith("cid-") and text[4:].isdigit():
        return int(text[4:])
    return None


class CidTables:
    """The three tables; thread-safe (the server answers on many threads)."""

    def __init__(self, cfg: CidConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed
        self.customers = cfg.customers
        self.contact_column = cfg.contact_column
        self.provisioned = cfg.customers > 0  # False: data sharing off (404 for the sets)
        self.readable = True  # False: the caller lacks read privileges (403)
        self._lock = threading.Lock()
        self._ranges: dict[str, tuple[int, int]] = {}
        self._joins: dict[str, set[int]] = {}
        self._leaves: dict[str, set[int]] = {}
        self._modified: dict[int, str] = {}
        self._stamp = 0
        count = max(1, len(cfg.segments))
        for k, (name, size) in enumerate(cfg.segments.items()):
            start = min(k * max(1, cfg.customers // (count + 1)), cfg.customers - size)
            self._ranges[name] = (start, start + size)

    # --- changes (in-process, between runs) ----------------------------------------------------
    def _touch(self, indices: Iterable[int]) -> str:
        self._stamp += 1
        stamp = f"2026-12-02T{2 + self._stamp // 3600 % 20:02d}:{self._stamp // 60 % 60:02d}:"
        stamp += f"{self._stamp % 60:02d}Z"
        for i in indices:
            self._modified[i] = stamp
        return stamp

    def _check(self, indices: Iterable[int]) -> list[int]:
        out = list(indices)
        for i in out:
            if not 0 <= i < self.customers:
                raise ValueError(f"customer index {i} is outside [0, {self.customers})")
        return out

    def join(self, segment: str, indices: Iterable[int]) -> None:
        with self._lock:
            if segment not in self._ranges:
                raise KeyError(segment)
            got = self._check(indices)
            self._joins.setdefault(segment, set()).update(got)
            self._leaves.get(segment, set()).difference_update(got)
            self._touch(got)

    def leave(self, segment: str, indices: Iterable[int]) -> None:
        with self._lock:
            if segment not in self._ranges:
                raise KeyError(segment)
            got = self._check(indices)
            self._leaves.setdefault(segment, set()).update(got)
            self._joins.get(segment, set()).difference_update(got)
            self._touch(got)

    def add_segment(self, segment: str, indices: Iterable[int]) -> None:
        with self._lock:
            got = self._check(indices)
            self._ranges[segment] = (0, 0)
            self._joins[segment] = set(got)
            self._leaves.pop(segment, None)
            self._touch(got)

    def drop_segment(self, segment: str) -> None:
        with self._lock:
            members = list(self._members_locked(segment))
            self._ranges.pop(segment, None)
            self._joins.pop(segment, None)
            self._leaves.pop(segment, None)
            self._touch(members)

    # --- reads ---------------------------------------------------------------------------------
    def segment_names(self) -> list[str]:
        with self._lock:
            return list(self._ranges)

    def members(self, segment: str) -> list[int]:
        with self._lock:
            return list(self._members_locked(segment))

    def _members_locked(self, segment: str, after: int = -1) -> Iterator[int]:
        if segment not in self._ranges:
            return iter(())
        lo, hi = self._ranges[segment]
        joins = sorted(i for i in self._joins.get(segment, ()) if i > after)
        leaves = set(self._leaves.get(segment, ()))
        merged = heapq.merge(range(max(lo, after + 1), hi), joins)

        def gen() -> Iterator[int]:
            last = -1
            for i in merged:
                if i != last and i not in leaves:
                    yield i
                last = i

        return gen()

    def _snapshot(
        self,
    ) -> tuple[dict[str, tuple[int, int]], dict[str, set[int]], dict[str, set[int]]]:
        with self._lock:
            return (
                dict(self._ranges),
                {k: set(v) for k, v in self._joins.items()},
                {k: set(v) for k, v in self._leaves.items()},
            )

    def membership_row(self, i: int, snap: Any = None) -> dict[str, Any] | None:
        ranges, joins, leaves = snap or self._snapshot()
        names = [
            name
            for name, (lo, hi) in ranges.items()
            if (lo <= i < hi or i in joins.get(name, ())) and i not in leaves.get(name, ())
        ]
        if not names:
            return None
        cid = customer_id(i)
        identifier = f"{cid}|CustomerInsights|Customer|Segments"
        return {
            "msdynci_segmentmembershipid": derived_guid(self.seed, f"membership:{identifier}"),
            "msdynci_customerid": cid,
            "msdynci_segments": json.dumps({"Segments": names}),
            "msdynci_segmentprovider": "CustomerInsights",
            "msdynci_segmentmembershiptype": "Customer",
            "msdynci_identifier": identifier,
            "modifiedon": self._modified.get(i, MODIFIED_BASE),
        }

    def has_contact(self, i: int) -> bool:
        if self.cfg.no_contact_fraction <= 0:
            return True
        mark = zlib.crc32(f"cid-no-contact:{self.seed}:{i}".encode()) / 2**32
        return mark >= self.cfg.no_contact_fraction

    def profile_row(self, i: int) -> dict[str, Any]:
        cid = customer_id(i)
        return {
            "msdynci_customerprofileid": derived_guid(self.seed, f"profile:{cid}"),
            "msdynci_customerid": cid,
            "msdynci_firstname": f"First{i}",
            "msdynci_lastname": f"Last{i}",
            "msdynci_emailaddress": f"customer{i}@example.com",
            self.contact_column: contact_id(i, self.seed) if self.has_contact(i) else None,
            "modifiedon": MODIFIED_BASE,
        }

    def key_rows(self, i: int) -> list[dict[str, Any]]:
        cid = customer_id(i)
        rows = [("webshop", "customer", f"W{i:08d}")]
        if self.has_contact(i):
            rows.append(("dataverse", "contact", contact_id(i, self.seed)))
        return [
            {
                "msdynci_alternatekeyid": derived_guid(self.seed, f"key:{cid}:{source}"),
                "msdynci_customerid": cid,
                "msdynci_datasourcename": source,
                "msdynci_entityname": entity,
                "msdynci_alternatevalue": value,
                "modifiedon": MODIFIED_BASE,
            }
            for source, entity, value in rows
        ]


MEMBERSHIP_COLUMNS = (
    "msdynci_segmentmembershipid",
    "msdynci_customerid",
    "msdynci_segments",
    "msdynci_segmentprovider",
    "msdynci_segmentmembershiptype",
    "msdynci_identifier",
    "modifiedon",
)
KEY_COLUMNS = (
    "msdynci_alternatekeyid",
    "msdynci_customerid",
    "msdynci_datasourcename",
    "msdynci_entityname",
    "msdynci_alternatevalue",
    "modifiedon",
)
_FILTER_PROPS = {
    MEMBERSHIPS: {"msdynci_customerid": STRING},
    PROFILES: {"msdynci_customerid": STRING},
    KEYS: {
        "msdynci_customerid": STRING,
        "msdynci_entityname": STRING,
        "msdynci_datasourcename": STRING,
    },
}


def serves(path: str) -> bool:
    m = _KEYED.match(path)
    return (m.group(1) if m else path) in ENTITY_SETS


def classify(method: str, path: str) -> str | None:
    if not serves(path):
        return None
    name = (_KEYED.match(path) or re.match(r"(.*)", path)).group(1)  # type: ignore[union-attr]
    short = name.removeprefix("msdynci_")
    return f"{short}-query" if method == "GET" else f"{short}-write"


def handle(
    api: WebApi, tables: CidTables | None, req: ApiRequest, path: str, q: _Query
) -> ApiResponse:
    """Answer a request on one of the three entity sets (``serves(path)`` is true)."""
    keyed = _KEYED.match(path)
    name = keyed.group(1) if keyed else path
    entity = ENTITY_SETS[name]
    if tables is None or not tables.provisioned:
        raise ApiError(404, CODE_QUERY, f"Resource not found for the segment '{name}'.")
    user = req.principal.user_id
    if req.method != "GET":
        # Microsoft asks callers to only read these tables; the Viewer role grants read only.
        verb = {"POST": "Create", "PATCH": "Write", "PUT": "Write", "DELETE": "Delete"}
        raise ApiError(
            403,
            CODE_UNAUTHORIZED,
            f"Principal user (Id={user}, type=8) is missing prv{verb.get(req.method, 'Write')}"
            f"{entity} privilege on entity '{entity}'.",
        )
    if not tables.readable:
        raise ApiError(
            403,
            CODE_UNAUTHORIZED,
            f"Principal user (Id={user}, type=8) is missing prvRead{entity} privilege on entity "
            f"'{entity}'.",
        )
    if keyed:
        raise unsupported(f"single-row reads of {name} (query the collection)")
    api._no_options(q, ("$select", "$filter", "$top", "$skiptoken"))
    if name == MEMBERSHIPS:
        columns: tuple[str, ...] = MEMBERSHIP_COLUMNS
    elif name == PROFILES:
        columns = _profile_columns(tables)
    else:
        columns = KEY_COLUMNS
    select = odata.parse_select(q.options.get("$select"), columns, entity)
    contains, conds = _parse(q, name, entity)
    ids: set[int] | None = None
    checks: list[Eq] = []
    for c in conds:
        if c.prop == "msdynci_customerid":
            values = c.values if isinstance(c, In) else (c.value,)
            found = {
                i for v in values if (i := customer_index(v)) is not None and i < tables.customers
            }
            ids = found if ids is None else ids & found
        elif isinstance(c, In):
            raise unsupported(f"Microsoft.Dynamics.CRM.In on '{c.prop}'")
        else:
            checks.append(c)
    after = api._after(name, q)
    if name == MEMBERSHIPS:
        rows = _membership_rows(tables, contains, ids, after)
        pk = "msdynci_segmentmembershipid"
    elif name == PROFILES:
        rows = _indexed(tables.profile_row, ids, tables.customers, after)
        pk = "msdynci_customerprofileid"
    else:
        rows = _key_rows(tables, ids, after)
        pk = "msdynci_alternatekeyid"
    if checks:
        rows = ((p, r) for p, r in rows if all(r.get(c.prop) == c.value for c in checks))
    fragment = name + (f"({','.join(select)})" if select else "")
    return api._collection(q, name, fragment, rows, select, pk)


def _profile_columns(tables: CidTables) -> tuple[str, ...]:
    return tuple(tables.profile_row(0))


def _parse(q: _Query, name: str, entity: str) -> tuple[str | None, list[Any]]:
    text = q.options.get("$filter")
    if text is None:
        return None, []
    m = _CONTAINS.match(text)
    if m:
        if name != MEMBERSHIPS:
            raise unsupported(f"contains() on {name}")
        return m.group(1).replace("''", "'"), []
    if "contains(" in text:
        raise unsupported("contains() combined with other conditions")
    conds = odata.parse_filter(text, q.aliases, _FILTER_PROPS[name], entity)
    if any(not isinstance(c, Eq | In) for c in conds):  # 'ne' / 'or' (emulator/filters.py)
        raise unsupported(f"'ne' and 'or' in $filter on {name}")
    return None, conds


def _position(i: int) -> str:
    return f"{i:08d}"


def _start(after: str | None) -> int:
    return -1 if after is None else int(after.split(":")[0])


def _indexed(
    row: Callable[[int], dict[str, Any]], ids: set[int] | None, count: int, after: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    first = _start(after) + 1
    indices: Iterable[int] = (
        sorted(i for i in ids if i >= first) if ids is not None else range(first, count)
    )
    for i in indices:
        yield _position(i), row(i)


def _key_rows(
    tables: CidTables, ids: set[int] | None, after: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    start = _start(after)
    skip = int(after.split(":")[1]) if after else -1
    indices: Iterable[int] = (
        sorted(i for i in ids if i >= start)
        if ids is not None
        else range(max(0, start), tables.customers)
    )
    for i in indices:
        for k, row in enumerate(tables.key_rows(i)):
            if i == start and k <= skip:
                continue
            yield f"{_position(i)}:{k}", row


def _membership_rows(
    tables: CidTables, contains: str | None, ids: set[int] | None, after: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    snap = tables._snapshot()
    ranges, joins, _ = snap
    first = _start(after) + 1
    candidates: Iterable[int]
    quoted = _quoted_name(contains)
    if ids is not None:
        candidates = sorted(i for i in ids if i >= first)
    elif quoted is not None:
        # The documented query: '"Name"' matches exactly the rows naming that segment.
        with tables._lock:  # copies the overrides; the generator then needs no lock
            candidates = tables._members_locked(quoted, first - 1)
    else:
        spans = [range(max(lo, first), hi) for lo, hi in ranges.values()]
        extra = sorted({i for s in joins.values() for i in s if i >= first})
        candidates = _unique(heapq.merge(*spans, extra))
    for i in candidates:
        row = tables.membership_row(i, snap)
        if row is None:
            continue
        if contains is not None and contains not in row["msdynci_segments"]:
            continue
        yield _position(i), row


def _quoted_name(contains: str | None) -> str | None:
    if (
        contains is None
        or len(contains) < 2
        or not contains.startswith('"')
        or not contains.endswith('"')
    ):
        return None
    try:
        name = json.loads(contains)
    except ValueError:
        return None
    return name if isinstance(name, str) and '"' not in contains[1:-1] else None


def _unique(values: Iterable[int]) -> Iterator[int]:
    last = None
    for v in values:
        if v != last:
            yield v
        last = v


# --- /_emulator/cid/... control endpoints ---------------------------------------------------
def control(
    tables: CidTables | None, method: str, parts: list[str], doc: dict[str, Any]
) -> tuple[int, Any]:
    """POST segments/<name>/join|leave {"customers": [indices]}, POST segments/<name>
    {"customers": [...]} (create or replace), DELETE segments/<name>, POST access
    {"readable": bool, "provisioned": bool}, GET segments (names and sizes)."""
    if tables is None:
        return 404, {"error": "the emulator was started without CI-D tables"}
    try:
        if method == "GET" and parts == ["segments"]:
            return 200, {"value": {n: len(tables.members(n)) for n in tables.segment_names()}}
        if method == "POST" and parts == ["access"]:
            if "readable" in doc:
                tables.readable = bool(doc["readable"])
            if "provisioned" in doc:
                tables.provisioned = bool(doc["provisioned"])
            return 200, {"ok": True}
        if len(parts) >= 2 and parts[0] == "segments":
            name = parts[1]
            indices = [int(i) for i in doc.get("customers", [])]
            if method == "DELETE" and len(parts) == 2:
                tables.drop_segment(name)
            elif method == "POST" and len(parts) == 2:
                tables.add_segment(name, indices)
            elif method == "POST" and parts[2:] == ["join"]:
                tables.join(name, indices)
            elif method == "POST" and parts[2:] == ["leave"]:
                tables.leave(name, indices)
            else:
                return 404, {"error": "unknown CI-D control endpoint"}
            return 200, {"ok": True}
    except KeyError as exc:
        return 404, {"error": f"no segment {exc}"}
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": "unknown CI-D control endpoint"}
