"""Evaluating parsed $filter conditions (emulator/odata.py parses them) against a row.

Conditions at the top level are joined by 'and'; ``Or`` holds groups joined by 'or'. String
comparisons on the properties named in ``fold`` are case-insensitive, as Dataverse's are [S7].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from emulator.odata import Condition, Eq, In, Ne, Or


def _same(have: Any, want: Any, folded: bool) -> bool:
    if folded and isinstance(have, str) and isinstance(want, str):
        return have.casefold() == want.casefold()
    if folded and have is None and isinstance(want, str):
        return want == ""
    return bool(have == want)


def holds(cond: Condition, row: Mapping[str, Any], fold: frozenset[str] = frozenset()) -> bool:
    if isinstance(cond, Or):
        return any(all_hold(group, row, fold) for group in cond.groups)
    have = row.get(cond.prop)
    folded = cond.prop in fold
    if isinstance(cond, Eq):
        return _same(have, cond.value, folded)
    if isinstance(cond, Ne):
        return not _same(have, cond.value, folded)
    assert isinstance(cond, In)
    if not folded and cond.value_set is not None:
        # A set lookup, not a scan of the values: a contacts query re-checks an In of 1,000 ids
        # on each of its 1,000 rows (a million comparisons a query made the emulator, not the
        # client, the bench's bottleneck).
        try:
            return have in cond.value_set
        except TypeError:  # an unhashable property value: compare one by one
            pass
    return any(_same(have, v, folded) for v in cond.values)


def all_hold(
    conds: Iterable[Condition], row: Mapping[str, Any], fold: frozenset[str] = frozenset()
) -> bool:
    return all(holds(c, row, fold) for c in conds)


def key_values(cond: Condition, key: str) -> set[Any] | None:
    """The values ``key`` can take for ``cond`` to hold, when the condition pins it down (an
    index look-up instead of a scan); None when it does not."""
    if isinstance(cond, Eq) and cond.prop == key:
        return {cond.value}
    if isinstance(cond, In) and cond.prop == key:
        return set(cond.values)
    if isinstance(cond, Or):
        out: set[Any] = set()
        for group in cond.groups:
            found = group_key_values(group, key)
            if found is None:
                return None
            out |= found
        return out
    return None


def group_key_values(conds: Iterable[Condition], key: str) -> set[Any] | None:
    """Like ``key_values`` for conditions joined by 'and' (the intersection)."""
    out: set[Any] | None = None
    for cond in conds:
        found = key_values(cond, key)
        if found is not None:
            out = found if out is None else out & found
    return out
