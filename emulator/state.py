"""In-memory Dataverse state: synthetic contacts (see data.py), marketing lists and their members.

All mutations go through primitives that write an undo entry when a transaction is open, so a $batch
change set can be rolled back. One re-entrant lock guards everything; handlers never sleep under it.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from emulator import data

CONTACT_FIELDS = (
    "contactid",
    "statecode",
    "statuscode",
    "firstname",
    "lastname",
    "fullname",
    "emailaddress1",
)
LIST_FIELDS = (
    "listid",
    "listname",
    "createdfromcode",
    "type",
    "membertype",
    "statecode",
    "statuscode",
    "lockstatus",
    "description",
    "purpose",
    "source",
    "membercount",
    "query",
    "ignoreinactivelistmembers",
    "donotsendonoptout",
    "_ownerid_value",
    "createdon",
    "modifiedon",
    "versionnumber",
)
_LISTMEMBER_NS = uuid.UUID("8b2f5f0e-3c1d-4f7a-9a53-0d7c1b5e2a11")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def listmember_id(list_id: str, contact_id: str) -> str:
    """Deterministic id of the listmember intersect row (no storage needed)."""
    return str(uuid.uuid5(_LISTMEMBER_NS, f"{list_id}:{contact_id}"))


class State:
    def __init__(self, contacts: int, inactive_fraction: float, seed: int, owner_id: str) -> None:
        self.lock = threading.RLock()
        self.seed = seed
        self.contact_count = contacts
        self.inactive_fraction = inactive_fraction
        self.owner_id = owner_id
        self._deleted: set[int] = set()  # deleted synthetic contacts by index
        self._statecode: dict[int, int] = {}  # overrides of synthetic contacts' statecode
        self._extra: dict[str, dict[str, Any]] = {}  # contacts created at run time, by id
        self._lists: dict[str, dict[str, Any]] = {}
        self._members: dict[str, set[str]] = {}
        # Sorted members per list for paging, kept in step on change (re-sorting a 1M-member list
        # on every chunk would make the emulator, not the client, the bottleneck).
        self._sorted: dict[str, list[str]] = {}
        self._journal: list[Callable[[], object]] | None = None

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing: on exception every mutation made inside is undone, then re-raised."""
        with self.lock:
            if self._journal is not None:
                yield  # nested: the outer transaction owns the undo log
                return
            journal: list[Callable[[], object]] = []
            self._journal = journal
            try:
                yield
            except BaseException:
                self._journal = None  # undo steps must not journal themselves
                for undo in reversed(journal):
                    undo()
                raise
            finally:
                self._journal = None

    def _undo(self, fn: Callable[[], object]) -> None:
        if self._journal is not None:
            self._journal.append(fn)

    # -- contacts -----------------------------------------------------------------------------
    def contact_id(self, i: int) -> str:
        return data.contact_id(i, self.seed)

    def _index(self, cid: str) -> int | None:
        i = data.contact_index(cid, self.seed)
        if i is None or i >= self.contact_count or i in self._deleted:
            return None
        return i

    def contact_exists(self, cid: str) -> bool:
        with self.lock:
            return cid in self._extra or self._index(cid) is not None

    def contact_statecode(self, cid: str) -> int | None:
        with self.lock:
            if cid in self._extra:
                return int(self._extra[cid]["statecode"])
            i = self._index(cid)
            if i is None:
                return None
            return self._synthetic_state(i)

    def _synthetic_state(self, i: int) -> int:
        if i in self._statecode:
            return self._statecode[i]
        return 1 if data.is_inactive(i, self.seed, self.inactive_fraction) else 0

    def get_contact(self, cid: str) -> dict[str, Any] | None:
        with self.lock:
            if cid in self._extra:
                return dict(self._extra[cid])
            i = self._index(cid)
            if i is None:
                return None
            return self._synthetic_row(i, cid)

    def _synthetic_row(self, i: int, cid: str | None = None) -> dict[str, Any]:
        state = self._synthetic_state(i)
        return {
            "contactid": cid or self.contact_id(i),
            "statecode": state,
            "statuscode": 2 if state else 1,
            "firstname": "Contact",
            "lastname": f"{i:07d}",
            "fullname": f"Contact {i:07d}",
            "emailaddress1": f"contact{i}@example.com",
        }

    def iter_contacts(self, start: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """All contacts in a stable order (synthetic by index, then created ones) from position."""
        pos = start
        while pos < self.contact_count:
            with self.lock:
                row = None if pos in self._deleted else self._synthetic_row(pos)
            if row is not None:
                yield pos, row
            pos += 1
        with self.lock:
            extras = list(self._extra.values())
        for offset, row in enumerate(extras):
            p = self.contact_count + offset
            if p >= pos:
                yield p, dict(row)

    def add_contact(
        self,
        firstname: str = "New",
        lastname: str = "Contact",
        statecode: int = 0,
        contactid: str | None = None,
        emailaddress1: str | None = None,
    ) -> str:
        cid = (contactid or str(uuid.uuid4())).lower()
        with self.lock:
            if self.contact_exists(cid):
                raise KeyError(cid)
            self._extra[cid] = {
                "contactid": cid,
                "statecode": statecode,
                "statuscode": 2 if statecode else 1,
                "firstname": firstname,
                "lastname": lastname,
                "fullname": f"{firstname} {lastname}".strip(),
                "emailaddress1": emailaddress1,
            }
            self._undo(lambda: self._extra.pop(cid, None))
        return cid

    def set_contact_state(self, cid: str, statecode: int) -> None:
        cid = cid.lower()
        with self.lock:
            if cid in self._extra:
                row = self._extra[cid]
                old = row["statecode"]
                row["statecode"], row["statuscode"] = statecode, 2 if statecode else 1
                self._undo(lambda: row.update(statecode=old, statuscode=2 if old else 1))
                return
            i = self._index(cid)
            if i is None:
                raise KeyError(cid)
            had = self._statecode.get(i)
            self._statecode[i] = statecode
            self._undo(lambda: self._restore_state(i, had))

    def _restore_state(self, i: int, had: int | None) -> None:
        if had is None:
            self._statecode.pop(i, None)
        else:
            self._statecode[i] = had

    def deactivate_contact(self, cid: str) -> None:
        self.set_contact_state(cid, 1)

    def activate_contact(self, cid: str) -> None:
        self.set_contact_state(cid, 0)

    def delete_contact(self, cid: str) -> bool:
        """Delete a contact; like Dataverse, its list memberships are deleted with it."""
        cid = cid.lower()
        with self.lock:
            if cid in self._extra:
                row = self._extra.pop(cid)
                self._undo(lambda: self._extra.__setitem__(cid, row))
            else:
                i = self._index(cid)
                if i is None:
                    return False
                self._deleted.add(i)
                self._undo(lambda: self._deleted.discard(i))
            for list_id, members in self._members.items():
                if cid in members:
                    self._remove_members(list_id, [cid])
            return True

    # -- lists --------------------------------------------------------------------------------
    def create_list(self, fields: dict[str, Any], list_id: str | None = None) -> str:
        lid = (list_id or str(uuid.uuid4())).lower()
        stamp = now_iso()
        row: dict[str, Any] = {
            "listid": lid,
            "listname": None,
            "createdfromcode": None,
            "type": False,
            "membertype": None,
            "statecode": 0,
            "statuscode": 0,
            "lockstatus": False,
            "description": None,
            "purpose": None,
            "source": None,
            "query": None,
            "ignoreinactivelistmembers": True,
            "donotsendonoptout": True,
            "_ownerid_value": self.owner_id,
            "createdon": stamp,
            "modifiedon": stamp,
            "versionnumber": 1,
        }
        row.update(fields)
        if row["membertype"] is None:
            row["membertype"] = row["createdfromcode"]
        with self.lock:
            if lid in self._lists:
                raise KeyError(lid)
            self._lists[lid] = row
            self._members[lid] = set()
            self._undo(lambda: self._drop_list(lid))
        return lid

    def _drop_list(self, lid: str) -> None:
        self._lists.pop(lid, None)
        self._members.pop(lid, None)
        self._sorted.pop(lid, None)

    def get_list(self, list_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self._lists.get(list_id.lower())
            if row is None:
                return None
            out = dict(row)
            out["membercount"] = len(self._members[list_id.lower()])
            return out

    def all_lists(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.get_list(lid) for lid in sorted(self._lists)]  # type: ignore[misc]

    def find_lists(self, name: str) -> list[dict[str, Any]]:
        """Lists whose name equals ``name`` case-insensitively (Dataverse string compare)."""
        key = name.casefold()
        return [r for r in self.all_lists() if (r["listname"] or "").casefold() == key]

    def update_list(self, list_id: str, fields: dict[str, Any]) -> None:
        lid = list_id.lower()
        with self.lock:
            row = self._lists[lid]
            old = dict(row)
            row.update(fields)
            row["modifiedon"] = now_iso()
            row["versionnumber"] = old["versionnumber"] + 1
            self._undo(lambda: (row.clear(), row.update(old)))

    def delete_list(self, list_id: str) -> bool:
        lid = list_id.lower()
        with self.lock:
            if lid not in self._lists:
                return False
            row, members = self._lists[lid], self._members[lid]
            self._drop_list(lid)
            self._undo(
                lambda: (self._lists.__setitem__(lid, row), self._members.__setitem__(lid, members))
            )
            return True

    # -- members ------------------------------------------------------------------------------
    def list_members(self, list_id: str) -> set[str]:
        with self.lock:
            return set(self._members.get(list_id.lower(), set()))

    def is_member(self, list_id: str, cid: str) -> bool:
        with self.lock:
            return cid in self._members.get(list_id, ())

    def add_members(self, list_id: str, ids: Iterable[str]) -> int:
        """Add contacts (no validation; see webapi for the rules). Returns how many were new."""
        lid = list_id.lower()
        with self.lock:
            members = self._members[lid]
            new = [c.lower() for c in ids if c.lower() not in members]
            new = list(dict.fromkeys(new))
            if new:
                members.update(new)
                self._sorted_add(lid, new)
                self._undo(lambda: self._remove_members(lid, new))
            return len(new)

    def remove_members(self, list_id: str, ids: Iterable[str]) -> int:
        with self.lock:
            return self._remove_members(list_id.lower(), [c.lower() for c in ids])

    def _remove_members(self, lid: str, ids: list[str]) -> int:
        members = self._members.get(lid)
        if members is None:
            return 0
        gone = list(dict.fromkeys(c for c in ids if c in members))
        if gone:
            members.difference_update(gone)
            self._sorted_remove(lid, gone)
            self._undo(lambda: self.add_members(lid, gone))
        return len(gone)

    def _sorted_add(self, lid: str, new: list[str]) -> None:
        ordered = self._sorted.get(lid)
        if ordered is not None:
            ordered.extend(sorted(new))
            ordered.sort()  # two sorted runs: Timsort merges them in linear time

    def _sorted_remove(self, lid: str, gone: list[str]) -> None:
        ordered = self._sorted.get(lid)
        if ordered is None:
            return
        if len(gone) < 64:
            for cid in gone:
                i = bisect.bisect_left(ordered, cid)
                if i < len(ordered) and ordered[i] == cid:
                    del ordered[i]
        else:
            drop = set(gone)
            self._sorted[lid] = [cid for cid in ordered if cid not in drop]

    def members_page(self, list_id: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Members in contactid order strictly after ``after``; (page, more)."""
        lid = list_id.lower()
        with self.lock:
            ordered = self._sorted.get(lid)
            if ordered is None:
                ordered = sorted(self._members.get(lid, ()))
                self._sorted[lid] = ordered
            start = 0 if after is None else bisect.bisect_right(ordered, after)
            page = ordered[start : start + limit]
            return page, start + limit < len(ordered)
