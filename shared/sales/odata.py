"""Pure OData request text: query strings, escaped literals, GUID handling. No I/O.

Values never reach a filter through an f-string: ``odata_filter`` substitutes escaped literals for
named placeholders (the same idea as azure-data-tables' ``parameters=``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote

API_PATH = "/api/data/v9.2/"

# Characters left as they are in a query value. Dataverse (and the OData spec) accept these
# unencoded; keeping them short lets more ids fit under the URL limits.
_QUERY_SAFE = "$'(),=[]:@/*-._~"

_GUID = re.compile(
    r"^\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?$"
)

# The documented limits are 32,768 characters for a URL and 65,536 for a GET inside $batch;
# stay well under both (host, path and headers also count on real servers).
MAX_GET_URL = 30_000
MAX_BATCH_GET_URL = 60_000


def normalize_guid(value: object) -> str | None:
    """Canonical lower-case GUID text, or None when ``value`` is not a GUID."""
    if not isinstance(value, str):
        return None
    match = _GUID.match(value.strip())
    if match is None:
        return None
    return match.group(1).lower()


def string_literal(value: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return string_literal(value)
    raise TypeError(f"unsupported OData literal type {type(value).__name__}")


class _Template(string.Template):
    delimiter = "@"


def odata_filter(template: str, **parameters: object) -> str:
    """Fill ``@name`` placeholders with escaped OData literals.

    >>> odata_filter("listname eq @name", name="O'Brien")
    "listname eq 'O''Brien'"
    """
    return _Template(template).substitute({k: _literal(v) for k, v in parameters.items()})


def in_filter(property_name: str, guids: Sequence[str]) -> str:
    """``Microsoft.Dynamics.CRM.In`` over GUID values (already normalized, so nothing to escape)."""
    values = ",".join(f"'{g}'" for g in guids)
    return (
        f"Microsoft.Dynamics.CRM.In(PropertyName={string_literal(property_name)},"
        f"PropertyValues=[{values}])"
    )


def query_string(params: Mapping[str, str]) -> str:
    return "&".join(
        f"{quote(k, safe='$@')}={quote(v, safe=_QUERY_SAFE)}" for k, v in params.items()
    )


def relative_url(path: str, params: Mapping[str, str] | None = None) -> str:
    """``path`` (relative to the Web API root) with an encoded query string."""
    if not params:
        return path
    return f"{path}?{query_string(params)}"


def chunk_ids_by_url(
    ids: Iterable[str],
    *,
    url_prefix_length: int,
    max_url: int,
    max_ids: int,
    per_id: int = 39,
) -> Iterator[list[str]]:
    """Split normalized GUIDs so each ``In`` query URL stays under ``max_url`` characters.

    A GUID costs 36 characters plus two quotes and a comma (all left unencoded)."""
    room = max(1, (max_url - url_prefix_length) // per_id)
    size = max(1, min(room, max_ids))
    chunk: list[str] = []
    for value in ids:
        chunk.append(value)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def contacts_in_url(guids: Sequence[str]) -> str:
    """The validation query for a group of contact ids (relative to the Web API root)."""
    return relative_url(
        "contacts",
        {"$select": "contactid,statecode", "$filter": in_filter("contactid", guids)},
    )


CONTACTS_IN_PREFIX = len(API_PATH) + len(contacts_in_url([]))
