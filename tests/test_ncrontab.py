"""The NCRONTAB evaluator (pure): parsing, next due time, latest due time, impossible dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.ncrontab import CrontabError, parse


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        ("0 0 2 * * *", at(2026, 12, 3, 14, 0), at(2026, 12, 4, 2, 0)),
        ("0 0 2 * * *", at(2026, 12, 3, 1, 59, 59), at(2026, 12, 3, 2, 0)),
        ("0 0 2 * * *", at(2026, 12, 3, 2, 0), at(2026, 12, 4, 2, 0)),  # strictly after
        ("*/15 * * * * *", at(2026, 1, 1, 0, 0, 7), at(2026, 1, 1, 0, 0, 15)),
        ("0 */5 * * * *", at(2026, 1, 1, 0, 58, 0), at(2026, 1, 1, 1, 0, 0)),
        ("0 30 9 * * Mon-Fri", at(2026, 12, 4, 10, 0), at(2026, 12, 7, 9, 30)),  # Fri -> Mon
        ("0 0 0 1 Jan *", at(2026, 6, 1), at(2027, 1, 1)),
        ("0 0 0 31 * *", at(2026, 1, 31, 0, 0, 1), at(2026, 3, 31)),  # skips February
        ("0 0 0 29 2 *", at(2026, 3, 1), at(2028, 2, 29)),  # next leap day
        ("0 0 9 13 * Fri", at(2026, 12, 3), at(2027, 8, 13, 9)),  # both day AND weekday
        ("0 0 12 * * 0", at(2026, 12, 3), at(2026, 12, 6, 12)),  # 0 is Sunday
        ("5/20 0 0 * * *", at(2026, 12, 3, 0, 0, 6), at(2026, 12, 3, 0, 0, 25)),  # a/n
        ("0 0 8-10/2 * * *", at(2026, 12, 3, 8, 0), at(2026, 12, 3, 10, 0)),
        ("0 0 1,13 * * *", at(2026, 12, 3, 2), at(2026, 12, 3, 13)),
    ],
)
def test_next_after(expression: str, moment: datetime, expected: datetime) -> None:
    assert parse(expression).next_after(moment) == expected


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        ("0 0 2 * * *", at(2026, 12, 3, 14, 0), at(2026, 12, 3, 2, 0)),
        ("0 0 2 * * *", at(2026, 12, 3, 2, 0), at(2026, 12, 3, 2, 0)),  # at, inclusive
        ("0 0 2 * * *", at(2026, 12, 3, 1, 59), at(2026, 12, 2, 2, 0)),
        ("0 */5 * * * *", at(2026, 1, 1, 0, 7, 30), at(2026, 1, 1, 0, 5)),
        ("0 30 9 * * Mon-Fri", at(2026, 12, 6, 23, 0), at(2026, 12, 4, 9, 30)),  # Sun -> Fri
        ("0 0 0 29 Feb *", at(2027, 1, 1), at(2024, 2, 29)),
    ],
)
def test_latest_at_or_before(expression: str, moment: datetime, expected: datetime) -> None:
    assert parse(expression).latest_at_or_before(moment) == expected


def test_sub_second_moments() -> None:
    table = parse("* * * * * *")
    moment = at(2026, 1, 1) + timedelta(milliseconds=400)
    assert table.next_after(moment) == at(2026, 1, 1, 0, 0, 1)
    assert table.latest_at_or_before(moment) == at(2026, 1, 1)


def test_names_are_case_insensitive_and_the_expression_is_normalised() -> None:
    table = parse("  0 0 6  * jan,JUL  sun ")
    assert table.expression == "0 0 6 * jan,JUL sun"
    assert table.next_after(at(2026, 12, 3)) == at(2027, 1, 3, 6)


def test_a_walk_agrees_with_brute_force() -> None:
    table = parse("*/20 10 */6 * * Tue,Sat")
    moment, seen = at(2026, 3, 1), []
    for _ in range(30):
        nxt = table.next_after(moment)
        assert nxt is not None
        assert table.latest_at_or_before(nxt) == nxt
        if seen:  # nothing due between two consecutive due times
            assert table.latest_at_or_before(nxt - timedelta(seconds=1)) == seen[-1]
        seen.append(nxt)
        moment = nxt
    for nxt in seen:
        assert nxt.second % 20 == 0 and nxt.minute == 10 and nxt.hour % 6 == 0
        assert nxt.isoweekday() in (2, 6)


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("0 0 2 * *", "6 fields"),
        ("0 0 2 * * * *", "6 fields"),
        ("60 0 2 * * *", "second"),
        ("0 60 * * * *", "minute"),
        ("0 0 24 * * *", "hour"),
        ("0 0 0 0 * *", "day"),
        ("0 0 0 * 13 *", "month"),
        ("0 0 0 * * 7", "day-of-week"),
        ("0 0 0 * Foo *", "month"),
        ("0 0 5-2 * * *", "backwards"),
        ("*/0 * * * * *", "step"),
        ("0,,1 * * * * *", "empty"),
        ("0 0 0 30 Feb *", "never"),
        ("0 0 0 31 4 *", "never"),
        ("", "6 fields"),
    ],
)
def test_invalid_expressions_are_refused_naming_the_field(expression: str, names: str) -> None:
    with pytest.raises(CrontabError, match=names):
        parse(expression)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        parse("* * * * * *").next_after(datetime(2026, 1, 1))
