"""Which exports are due at a timer tick (pure: no I/O).

Two timers call the same tick (see triggers.on_timer): ``scheduled_refresh`` on
``%REFRESH_SCHEDULE%`` and ``schedule_tick`` on ``%SCHEDULE_TICK%`` (every minute by default).
The host resolves ``%SETTING%`` only from app settings and fires each timer on its own, so
rather than trusting which timer fired, every tick evaluates every export's schedule itself:

- ``refresh``: the due times of REFRESH_SCHEDULE (evaluated here as NCRONTAB too);
- ``cron``: the due times of the export's own expression;
- ``off``: never (on demand only).

A tick at ``now`` considers only the export's LATEST due time at or before ``now`` and only if it
is at most ``CATCH_UP`` old: a tick that arrives late (host restarted, a slow instance) still
starts it, a longer outage does not replay a backlog (the next due time runs as usual). A due
time earlier than the export's creation is never run: saving an export never runs it. Turning
each due time into exactly one run is the store's job (an insert keyed by export + due time).
A cron export's resolution is SCHEDULE_TICK's interval: due times between two ticks are started
by the next tick, so an expression firing more often than the tick runs once per tick.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from shared import ncrontab
from shared.models import Export, ScheduleKind

CATCH_UP = timedelta(hours=1)
# A timer may fire a moment before our clock reaches its due time (host and worker clocks).
EARLY_SLACK = timedelta(seconds=2)


@functools.lru_cache(maxsize=256)
def crontab(expression: str) -> ncrontab.Crontab:
    return ncrontab.parse(expression)


def due_time(
    export: Export, refresh: ncrontab.Crontab, now: datetime, *, catch_up: timedelta = CATCH_UP
) -> datetime | None:
    """The due time this tick should start for the export, or None."""
    if not export.enabled or export.detached:
        return None
    schedule = export.schedule
    if schedule.kind is ScheduleKind.OFF:
        return None
    if schedule.kind is ScheduleKind.CRON:
        if not schedule.expression:
            return None
        table = crontab(schedule.expression)
    else:
        table = refresh
    due = table.latest_at_or_before(now + EARLY_SLACK)
    if due is None or now - due > catch_up:
        return None
    created = _parse_iso(export.audit.created_at)
    if created is not None and due < created:
        return None
    return due


def next_due(export: Export, refresh: ncrontab.Crontab, now: datetime) -> datetime | None:
    """When the export is next due (for display), or None if it never runs on a schedule."""
    if not export.enabled or export.detached or export.schedule.kind is ScheduleKind.OFF:
        return None
    if export.schedule.kind is ScheduleKind.CRON:
        if not export.schedule.expression:
            return None
        return crontab(export.schedule.expression).next_after(now)
    return refresh.next_after(now)


def _parse_iso(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
