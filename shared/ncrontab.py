"""NCRONTAB (the Functions timer format): parse six fields and find due times. Pure: no I/O.

``second minute hour day month day-of-week``, UTC. Each field: ``*``, a value, a range ``a-b``,
a step ``*/n`` / ``a-b/n`` / ``a/n`` (``a`` to the field's maximum), or a comma list of those.
Months accept ``Jan``..``Dec`` and days of week ``Sun``..``Sat`` (0-6, Sunday is 0), any case.

Day of month and day of week must BOTH match (NCrontab's rule, unlike Vixie cron's "either"),
so ``0 0 9 13 * Fri`` fires only on Friday the 13th. An expression that can never fire (e.g.
``0 0 0 30 Feb *``) is refused when parsed, so a saved schedule always has a next due time.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

_MONTHS = {
    n: i
    for i, n in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

# name, low, high, value names
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)
# A schedule that matches no day within this many years never matches (the calendar repeats
# every 400 years, but any day/month/weekday combination that exists recurs within 28 years,
# and 29 February on a given weekday within 28 as well).
_SEARCH_DAYS = 366 * 29
MAX_EXPRESSION_LENGTH = 256


class CrontabError(ValueError):
    """The expression is not valid NCRONTAB; the message names the field and why."""


def _value(token: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    text = token.strip().lower()
    if text in names:
        return names[text]
    if not text.isdigit():
        raise CrontabError(f"{name}: {token!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise CrontabError(f"{name}: {value} is outside {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CrontabError(f"{name}: empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CrontabError(f"{name}: step {step_text!r} must be a whole number above 0")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _value(first, name, low, high, names)
            end = _value(last, name, low, high, names)
            if start > end:
                raise CrontabError(f"{name}: range {base!r} runs backwards")
        else:
            start = _value(base, name, low, high, names)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Crontab:
    """A parsed six-field NCRONTAB expression."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> Crontab:
        if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION_LENGTH:
            raise CrontabError(f"must be text of at most {MAX_EXPRESSION_LENGTH} characters")
        parts = expression.split()
        if len(parts) != 6:
            raise CrontabError(
                f"must have 6 fields (second minute hour day month day-of-week), found {len(parts)}"
            )
        sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        crontab = cls(
            expression=" ".join(parts),
            seconds=tuple(sorted(sets[0])),
            minutes=tuple(sorted(sets[1])),
            hours=tuple(sorted(sets[2])),
            days=sets[3],
            months=sets[4],
            weekdays=sets[5],
        )
        if crontab._next_day(date(2001, 1, 1), +1) is None:
            raise CrontabError("day, month and day-of-week never fall on one date")
        return crontab

    def _day_matches(self, day: date) -> bool:
        return (
            day.month in self.months
            and day.day in self.days
            and (day.isoweekday() % 7) in self.weekdays
        )

    def _next_day(self, start: date, direction: int) -> date | None:
        day = start
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                return day
            try:
                day += timedelta(days=direction)
            except OverflowError:
                return None
        return None

    def _times(self) -> tuple[int, ...]:
        """Due seconds of the day, ascending."""
        return _seconds_of_day(self.hours, self.minutes, self.seconds)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first due time strictly after ``moment`` (UTC), or None past year 9999."""
        moment = _utc(moment)
        times = self._times()
        day: date | None = moment.date()
        while day is not None:
            day = self._next_day(day, +1)
            if day is None:
                return None
            start = datetime.combine(day, time(), UTC)
            # first second-of-day strictly after the moment (on a later day: the first one)
            after = (moment - start).total_seconds()
            index = bisect.bisect_right(times, after) if after >= 0 else 0
            if index < len(times):
                return start + timedelta(seconds=times[index])
            day = _step(day, +1)
        return None

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        """The last due time at or before ``moment`` (UTC), or None before year 1."""
        moment = _utc(moment)
        times = self._times()
        day: date | None = moment.date()
        while day is not None:
            day = self._next_day(day, -1)
            if day is None:
                return None
            start = datetime.combine(day, time(), UTC)
            upto = (moment - start).total_seconds()
            index = bisect.bisect_right(times, upto)
            if index > 0:
                return start + timedelta(seconds=times[index - 1])
            day = _step(day, -1)
        return None


def _step(day: date, direction: int) -> date | None:
    try:
        return day + timedelta(days=direction)
    except OverflowError:
        return None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware (UTC)")
    return moment.astimezone(UTC)


@functools.lru_cache(maxsize=64)
def _seconds_of_day(
    hours: tuple[int, ...], minutes: tuple[int, ...], seconds: tuple[int, ...]
) -> tuple[int, ...]:
    return tuple(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)


def parse(expression: str) -> Crontab:
    return Crontab.parse(expression)
