"""Time and id helpers for runs (one place, so tests and records agree on formats)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

_ID_TIME_FORMAT = "%Y%m%dT%H%M%S"


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_now_iso() -> str:
    """ISO 8601 UTC with milliseconds and a Z, the format every run timestamp uses."""
    return utc_now().isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by creation time and carries it (to recognise stale markers)."""
    now = now or utc_now()
    return f"{now.strftime(_ID_TIME_FORMAT)}{now.microsecond // 1000:03d}Z-{secrets.token_hex(4)}"


def run_id_created_at(run_id: str) -> datetime | None:
    """The creation time embedded in a run id made by new_run_id, else None."""
    stamp = run_id.split("Z-", 1)[0]
    if len(stamp) != 18:
        return None
    try:
        base = datetime.strptime(stamp[:15], _ID_TIME_FORMAT).replace(tzinfo=UTC)
        return base.replace(microsecond=int(stamp[15:]) * 1000)
    except ValueError:
        return None
