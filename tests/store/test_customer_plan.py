"""The lookup plan (pure) and the per-process column cache (threads, no storage)."""

from __future__ import annotations

import threading

from shared.store.customer_cache import ColumnCache
from shared.store.customer_plan import (
    POINT_READ_ALWAYS,
    SCAN_ROWS_PER_POINT_READ,
    Read,
    plan,
    sampled,
    settle,
)
from shared.store.customer_stats import UNKNOWN, Bounds

K = SCAN_ROWS_PER_POINT_READ


def test_exact_counts_decide_per_bucket_without_sampling() -> None:
    bounds = {"b00": Bounds(100 * K, 100 * K), "b01": Bounds(10, 10)}
    result = plan({"b00": 50, "b01": 50}, bounds.__getitem__, {}, set())
    assert result.reads == {"b00": Read.POINT, "b01": Read.SCAN}
    assert result.sample is None


def test_few_ids_are_point_read_even_in_unknown_buckets() -> None:
    result = plan({"b00": POINT_READ_ALWAYS}, lambda b: UNKNOWN, {}, set())
    assert result.reads == {"b00": Read.POINT}


def test_bounds_decide_when_both_ends_agree_and_one_bucket_is_sampled_otherwise() -> None:
    bounds = {
        "b00": Bounds(0, 5 * K),  # even full, scanning 5K rows beats 10 point reads
        "b01": Bounds(20 * K, 40 * K),  # even at its fewest, 10 point reads are cheaper
        "b02": Bounds(0, 100 * K),  # open
        "b03": Bounds(0, 100 * K),  # open, more ids: sampled
        "b04": UNKNOWN,  # open
    }
    wanted = {"b00": 10, "b01": 10, "b02": 10, "b03": 30, "b04": 10}
    result = plan(wanted, bounds.__getitem__, {}, {"b05"})
    assert result.reads == {"b00": Read.SCAN, "b01": Read.POINT}
    assert result.open == {"b02", "b03", "b04"} and result.sample == "b03"
    # the sample held 20% of its upper bound: b02 is estimated at 20 K rows (> 10 ids * K)
    sample = sampled(bounds["b03"], 20 * K)
    assert sample.share == 0.2
    settle(result, wanted, bounds.__getitem__, sample, scanned=True)
    assert result.reads["b03"] is Read.SCAN
    assert result.reads["b02"] is Read.POINT
    assert result.reads["b04"] is Read.POINT  # unknown bounds: estimated at the sample's rows
    assert not result.open
    # a later lookup at the same revision reuses the sample: nothing scanned first
    again = plan(wanted, bounds.__getitem__, {}, set())
    settle(again, wanted, bounds.__getitem__, sample, scanned=False)
    assert again.reads["b03"] is Read.SCAN  # estimated at 20 K rows < 30 ids * K
    assert again.reads["b02"] is Read.POINT


def test_known_counts_and_cached_buckets_win_over_bounds() -> None:
    wanted = {"b00": 100, "b01": 5, "b02": 5}
    assert sum(wanted.values()) > POINT_READ_ALWAYS
    known = {"b00": 1000 * K, "b02": 2 * K}
    result = plan(wanted, lambda b: UNKNOWN, known, {"b01"})
    assert result.reads == {"b00": Read.POINT, "b01": Read.CACHED, "b02": Read.SCAN}
    assert result.sample is None


def test_the_cache_loads_each_bucket_once_while_others_wait() -> None:
    cache = ColumnCache(max_rows=100)
    release = threading.Event()
    started = threading.Event()
    loads = []

    def load() -> dict[str, object]:
        loads.append(1)
        started.set()
        release.wait(30)
        return {"c1": "x"}

    got: list[tuple[dict[str, object], bool]] = []
    first = threading.Thread(target=lambda: got.append(cache.get(1, "Col", "b00", load)))
    first.start()
    assert started.wait(30)
    assert cache.cached(1, "Col") == {"b00"}  # being loaded counts as held
    second = threading.Thread(target=lambda: got.append(cache.get(1, "Col", "b00", load)))
    second.start()
    release.set()
    first.join(30)
    second.join(30)
    assert len(loads) == 1
    assert sorted(here for _, here in got) == [False, True]
    assert got[0][0] is got[1][0]


def test_the_cache_follows_revisions_and_its_bound() -> None:
    cache = ColumnCache(max_rows=5)
    cache.get(2, "Col", "b00", lambda: {"a": 1, "b": 2})
    cache.get(2, "Col", "b01", lambda: {"c": 3, "d": 4})
    assert cache.cached(2, "Col") == {"b00", "b01"}
    # an older revision neither reads nor fills the cache
    values, here = cache.get(1, "Col", "b00", lambda: {"a": "old"})
    assert here and values == {"a": "old"}
    assert cache.cached(1, "Col") == set()
    assert cache.get(2, "Col", "b00", lambda: {})[0] == {"a": 1, "b": 2}
    # the bound: the least recently used bucket goes
    cache.get(2, "Col", "b02", lambda: {"e": 5, "f": 6})
    assert cache.cached(2, "Col") == {"b00", "b02"}
    assert cache.rows == 4
    cache.get(2, "Col", "b03", lambda: {str(n): n for n in range(6)})  # bigger than the bound
    assert cache.cached(2, "Col") == {"b00", "b02"}
    # a newer revision drops everything
    assert cache.cached(3, "Col") == set()
    assert cache.rows == 0
