"""The three Dataverse calls a sync is made of: read a page of a list's members, check which
contacts exist and are active, add or remove members in bulk. Each is one request (or one
$batch) through SalesClient; scheduling and bookkeeping live in sync.py."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.errors import FatalSalesError, SalesError
from shared.sales.batch import BatchPart
from shared.sales.client import SalesClient, error_for
from shared.sales.odata import (
    API_PATH,
    CONTACTS_IN_PREFIX,
    MAX_BATCH_GET_URL,
    chunk_ids_by_url,
    contacts_in_url,
    relative_url,
)

VALIDATE_IDS_PER_QUERY = 1000  # ids per inner GET (about 39 KB of URL, under the 64 KB limit)
_TOO_MANY = re.compile(r"too many|too large|exceed|maximum|at most|limit", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.-])(\d{1,3}(?:,\d{3})+|\d+)(?![\w-]|\.\d)")
ADD = "AddListMembersList"
REMOVE = "RemoveListMembersList"


ACTIVE = 0  # contact statecode: 0 active, 1 inactive


def members_url(list_id: str) -> str:
    """The list's members through listcontact_association: contact rows, so their statecode
    comes with them at no extra request (inactive members are found while the list is read)."""
    return relative_url(
        f"lists({list_id})/listcontact_association", {"$select": "contactid,statecode"}
    )


@dataclass(frozen=True, slots=True)
class MemberPage:
    ids: list[str]  # member contact ids (lower case), in the order Sales sent them
    inactive: frozenset[str]  # those whose contact is inactive (statecode other than 0)
    next_url: str | None


def read_member_page(client: SalesClient, url: str) -> MemberPage:
    """One page of the list's members and the next page's link, if any."""
    data = client.get_json(url, headers={"Prefer": f"odata.maxpagesize={client.page_size}"})
    rows = data.get("value", [])
    ids: list[str] = []
    inactive: set[str] = set()
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("contactid"):
            contact_id = str(row["contactid"]).lower()
            ids.append(contact_id)
            state = row.get("statecode")
            if state is not None and state != ACTIVE:
                inactive.add(contact_id)
    link = data.get("@odata.nextLink")
    return MemberPage(ids, frozenset(inactive), str(link) if link else None)


def contact_states(client: SalesClient, ids: Sequence[str]) -> dict[str, int | None]:
    """contact id -> statecode for the ids that exist (absent: no such contact). One $batch of
    ``In`` queries, each URL well under the 64 KB allowed inside a batch."""
    groups = chunk_ids_by_url(
        ids,
        url_prefix_length=CONTACTS_IN_PREFIX,
        max_url=MAX_BATCH_GET_URL,
        max_ids=VALIDATE_IDS_PER_QUERY,
    )
    prefer = {"Prefer": f"odata.maxpagesize={client.page_size}"}
    parts = [BatchPart("GET", API_PATH + contacts_in_url(g), prefer) for g in groups]
    found: dict[str, int | None] = {}
    for response in client.batch(parts):
        if response.status >= 400:
            raise error_for(response.status, response.headers, response.body, "validate contacts")
        data = response.json()
        if not isinstance(data, dict):
            raise FatalSalesError("validate contacts: unexpected response shape")
        _collect(data.get("value", []), found)
        link = data.get("@odata.nextLink")
        if link:  # a server with smaller pages than asked for
            for rows in client.iter_pages(str(link)):
                _collect(rows, found)
    return found


def _collect(rows: object, found: dict[str, int | None]) -> None:
    if not isinstance(rows, list):
        return
    for row in rows:
        if isinstance(row, dict) and row.get("contactid"):
            state = row.get("statecode")
            found[str(row["contactid"]).lower()] = int(state) if state is not None else None


def change_members(client: SalesClient, action: str, list_id: str, ids: Sequence[str]) -> None:
    """AddListMembersList / RemoveListMembersList for ``ids`` (all-or-nothing in Sales)."""
    client.post_action(
        action,
        {
            "List": {"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list_id},
            "Members": [
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c} for c in ids
            ],
        },
        context=f"{action} ({len(ids)} members)",
    )


def members_cap(exc: SalesError, sent: int) -> int | None:
    """The members per call to send from now on, when ``exc`` refused a bulk list action of
    ``sent`` members for its size; None when the refusal is about something else (then one
    member may be to blame). The limit is not documented (the stricter stand-in we were checked
    against caps a call at 1,000), so it is learned from the refusal: the number it names, or
    half of what was sent (413, or a message without a usable number)."""
    if sent <= 1:
        return None
    if exc.status == 413:
        return sent // 2
    if exc.status != 400:
        return None
    message = _service_message(exc)
    if "member" not in message.lower() or not _TOO_MANY.search(message):
        return None
    numbers = [int(n.replace(",", "")) for n in _NUMBER.findall(message)]
    below = [n for n in numbers if 0 < n < sent]
    return max(below) if below else sent // 2


def _service_message(exc: SalesError) -> str:
    try:
        error = json.loads(exc.body_excerpt).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(exc.args[0]) if exc.args else ""
