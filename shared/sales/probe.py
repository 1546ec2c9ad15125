"""Connection test: token, WhoAmI, read contacts, list privileges. Reads only, creates nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shared.errors import AuthenticationError, SegmentExportError
from shared.models import Connection
from shared.sales.client import RetryPolicy, SalesClient
from shared.sales.factory import open_sales_client
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class ProbeCheck:
    name: str  # "token", "who-am-i", "read-contacts", "list-privileges"
    ok: bool
    detail: str


_HINTS = {
    "token": "check the tenant id, client id and the app setting holding the secret (or the "
    "managed identity), and that the app is registered in that tenant",
    "who-am-i": "add the app as an application user in the Dynamics 365 environment",
    "read-contacts": "give the application user a security role with Read on Contact",
    "list-privileges": "give the application user a security role with Read, Create and Append "
    "To on Marketing List (and Append on Contact)",
}


def _failure(name: str, exc: Exception) -> ProbeCheck:
    return ProbeCheck(name, False, f"{exc} — {_HINTS[name]}")


def _run_checks(client: SalesClient) -> list[ProbeCheck]:
    checks: list[ProbeCheck] = []
    try:
        client.tokens.token()
        checks.append(ProbeCheck("token", True, "a token was issued for the environment"))
    except SegmentExportError as exc:
        checks.append(_failure("token", exc))
        return checks + [
            ProbeCheck(name, False, "not run: no token")
            for name in ("who-am-i", "read-contacts", "list-privileges")
        ]

    steps: list[tuple[str, Callable[[], str]]] = [
        ("who-am-i", lambda: _who_am_i(client)),
        ("read-contacts", lambda: _read(client, "contacts?$select=contactid&$top=1", "contacts")),
        (
            "list-privileges",
            lambda: _read(client, "lists?$select=listid&$top=1", "marketing lists"),
        ),
    ]
    for name, step in steps:
        try:
            checks.append(ProbeCheck(name, True, step()))
        except AuthenticationError as exc:
            checks.append(_failure(name, exc))
        except SegmentExportError as exc:
            checks.append(_failure(name, exc))
    return checks


def _who_am_i(client: SalesClient) -> str:
    data = client.who_am_i()
    user = data.get("UserId", "?")
    dop = client.dop_hint
    return f"signed in as application user {user}" + (f"; x-ms-dop-hint {dop}" if dop else "")


def _read(client: SalesClient, url: str, what: str) -> str:
    rows = client.get_json(url).get("value", [])
    count = len(rows) if isinstance(rows, list) else 0
    return f"can read {what} ({'at least one found' if count else 'none found yet'})"


def probe_connection(
    connection: Connection,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
) -> list[ProbeCheck]:
    """Report each check; never raises for a Sales or credential problem."""
    try:
        with open_sales_client(
            connection, settings, transport=transport, retry=RetryPolicy(max_retries=2)
        ) as client:
            return _run_checks(client)
    except SegmentExportError as exc:  # e.g. the secret's app setting is missing
        return [_failure("token", exc)] + [
            ProbeCheck(name, False, "not run: no token")
            for name in ("who-am-i", "read-contacts", "list-privileges")
        ]
