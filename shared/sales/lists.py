"""Marketing-list lifecycle: find the segment's list, create it, recreate it when deleted.

Policy (documented in the README's Sales section):
- A list belongs to exactly one export: the one that created it. Its id is written into the
  list's ``description`` in the create request itself (``owner_marker``), so ownership is
  recorded atomically with the list, lives where the list lives (Sales, not this app's Table
  Storage, which other installations do not share) and survives a crash between creating the
  list and saving its id.
- A stored list id is looked up first; a stored list that another export owns is refused. If
  Sales says it no longer exists (404), the list is recreated (``recreated=True`` so the run
  reports it) — after a look-up by name, so that a run killed between creating a list and saving
  its id adopts that list instead of making another.
- Without a stored id, a static contact list with exactly the rendered name is adopted only if
  it carries this export's marker (the oldest if several). A usable list with that name that
  this export did not create (another export's, or one made by hand) is refused: never adopted,
  never duplicated. Otherwise a list is created (``createdfromcode=2`` contact, ``type=false``
  static). Lists with that name that are dynamic or not for contacts are left alone.
- A stored list that is now dynamic or not a contact list is refused (FatalSalesError): writing
  to it would change something the user built on purpose.
- A stored list that is inactive or locked is reported (FatalSalesError naming what to do), not
  reactivated: deactivating or locking a list in Sales is a deliberate act we do not undo.
- Dry runs only read: a missing list is reported as "would be created", nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.errors import FatalSalesError, TransientSalesError
from shared.sales.client import SalesClient, SalesNotFoundError
from shared.sales.odata import normalize_guid, odata_filter, relative_url

CONTACT = 2  # createdfromcode / membertype value for contacts
LIST_FIELDS = (
    "listid,listname,type,createdfromcode,statecode,lockstatus,createdon,membercount,description"
)
_OWNER_KEY = "segment-export-owner="
_OWNER = re.compile(re.escape(_OWNER_KEY) + r"([0-9A-Za-z_-]{1,64})")


def owner_marker(owner: str) -> str:
    """The list description that records which export created (owns) the list."""
    return (
        "Kept equal to a customer segment by Segment Export; do not edit this line. "
        f"{_OWNER_KEY}{owner}"
    )


def list_owner(description: object) -> str | None:
    """The export id recorded in a list's description, if any."""
    found = _OWNER.search(description) if isinstance(description, str) else None
    return found.group(1) if found else None


class ListOwnedError(FatalSalesError):
    """The list with the export's name (or its stored id) belongs to someone else."""


@dataclass(frozen=True, slots=True)
class MarketingList:
    id: str
    name: str
    dynamic: bool
    member_type: int | None
    state: int  # 0 active, 1 inactive
    locked: bool
    member_count: int | None = None  # as Sales reports it (sizes removal chunks while reading)
    owner: str | None = None  # the export that created it (from its description), if recorded

    @property
    def usable(self) -> bool:
        return (
            not self.dynamic and self.member_type == CONTACT and self.state == 0 and not self.locked
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MarketingList:
        member_type = row.get("createdfromcode")
        return cls(
            id=str(row.get("listid", "")).lower(),
            name=str(row.get("listname") or ""),
            dynamic=bool(row.get("type")),
            member_type=int(member_type) if member_type is not None else None,
            state=int(row.get("statecode") or 0),
            locked=bool(row.get("lockstatus")),
            member_count=int(row["membercount"]) if row.get("membercount") is not None else None,
            owner=list_owner(row.get("description")),
        )


@dataclass(frozen=True, slots=True)
class ListOutcome:
    list: MarketingList | None  # None only in a dry run that would create the list
    created: bool = False
    recreated: bool = False
    empty: bool = False  # known empty (just created / would be created): skip reading members


def get_list(client: SalesClient, list_id: str) -> MarketingList | None:
    guid = normalize_guid(list_id)
    if guid is None:
        return None
    try:
        row = client.get_json(relative_url(f"lists({guid})", {"$select": LIST_FIELDS}))
    except SalesNotFoundError:
        return None
    return MarketingList.from_row(row)


def find_lists(client: SalesClient, name: str) -> list[MarketingList]:
    url = relative_url(
        "lists",
        {
            "$select": LIST_FIELDS,
            "$filter": odata_filter("listname eq @name", name=name),
        },
    )
    rows = [r for r in client.get_json(url).get("value", []) if isinstance(r, dict)]
    rows.sort(key=lambda r: str(r.get("createdon") or ""))  # oldest first, when Sales says
    return [MarketingList.from_row(r) for r in rows]


def create_list(client: SalesClient, name: str, owner: str) -> MarketingList:
    """Create a static contact list owned by export ``owner``. Not retried blindly on network
    errors (a lost response may hide a created list): the caller looks it up by name first."""
    body = {
        "listname": name,
        "createdfromcode": CONTACT,
        "type": False,
        "description": owner_marker(owner),
    }
    response = client.send(
        "POST",
        "lists",
        json_body=body,
        headers={"Prefer": "return=representation"},
        retry_unsafe=False,
        context="create marketing list",
    )
    list_id: str | None = None
    if response.content:
        try:
            list_id = response.json().get("listid")
        except ValueError:
            list_id = None
    if not list_id:
        entity = response.headers.get("OData-EntityId", "")
        list_id = entity.rsplit("(", 1)[-1].rstrip(")") if "(" in entity else None
    guid = normalize_guid(list_id)
    if guid is None:
        raise FatalSalesError("Sales created the list but did not return its id")
    return MarketingList(guid, name, False, CONTACT, 0, False, owner=owner)


def _refuse(found: MarketingList) -> None:
    if found.dynamic or found.member_type != CONTACT:
        kind = "dynamic" if found.dynamic else "not a contact list"
        raise FatalSalesError(
            f"marketing list {found.name!r} ({found.id}) is {kind}; this export only manages "
            "static contact lists. Delete or rename that list in Sales, or point the export at "
            "another list name."
        )
    if found.state != 0:
        raise FatalSalesError(
            f"marketing list {found.name!r} ({found.id}) is inactive in Sales; activate it "
            "again in Sales (or delete it to let the next run create a new one)."
        )
    if found.locked:
        raise FatalSalesError(
            f"marketing list {found.name!r} ({found.id}) is locked in Sales; unlock it to let "
            "the export change its members."
        )


def _not_owned(found: MarketingList) -> ListOwnedError:
    whose = (
        f"belongs to export {found.owner}"
        if found.owner
        else "was not created by this export (it carries no export's marker)"
    )
    return ListOwnedError(
        f"marketing list {found.name!r} ({found.id}) {whose}; a list belongs to exactly one "
        "export. Change this export's listName, or rename or delete that list in Sales."
    )


def _mine(client: SalesClient, name: str, owner: str) -> MarketingList | None:
    """The oldest usable list named ``name`` that ``owner`` created; ListOwnedError if a usable
    list of that name belongs to someone else (and none to ``owner``)."""
    foreign: MarketingList | None = None
    for candidate in find_lists(client, name):
        if candidate.name != name or not candidate.usable:
            continue
        if candidate.owner == owner:
            return candidate
        foreign = foreign or candidate
    if foreign is not None:
        raise _not_owned(foreign)
    return None


def _adopt_or_create(
    client: SalesClient, name: str, owner: str, *, dry_run: bool
) -> tuple[MarketingList | None, bool]:
    """(list, created). Adopts the oldest usable list with exactly this name that this export
    created; refuses one that it did not."""
    mine = _mine(client, name, owner)
    if mine is not None:
        return mine, False
    if dry_run:
        return None, True
    try:
        return create_list(client, name, owner), True
    except TransientSalesError:
        # The create may have happened before the connection dropped: look before retrying.
        mine = _mine(client, name, owner)
        if mine is not None:
            return mine, True
        return create_list(client, name, owner), True


def ensure_list(
    client: SalesClient, *, list_id: str | None, list_name: str, owner: str, dry_run: bool
) -> ListOutcome:
    """``owner``: the id of the export syncing the list."""
    if list_id:
        found = get_list(client, list_id)
        if found is not None:
            # A stored list without a marker was created or adopted before markers existed.
            if found.owner is not None and found.owner != owner:
                raise _not_owned(found)
            _refuse(found)
            return ListOutcome(found)
        adopted, created = _adopt_or_create(client, list_name, owner, dry_run=dry_run)
        return ListOutcome(adopted, created=created, recreated=True, empty=created)
    adopted, created = _adopt_or_create(client, list_name, owner, dry_run=dry_run)
    return ListOutcome(adopted, created=created, empty=created)
