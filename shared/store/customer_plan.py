"""How to read a set of customer ids, bucket by bucket: point reads, a bucket scan, or the
process's cached column. Pure: decided from the ids per bucket and what is known of each
bucket's size (customer_stats bounds, counts this process took at the current revision).

Costs, in "rows scanned" units, measured by ``python -m bench.lookups`` on Azurite (both
client-CPU-bound on this machine: a point read is one HTTP request for one row, a scan page
carries up to 1,000 rows): reading a bucket by scan costs its row count; point reads cost
SCAN_ROWS_PER_POINT_READ per id. When the bounds of a bucket leave the choice open, the
caller scans ONE such bucket (the one with the most wanted ids: its scan answers the most
ids, so it wastes the least) and estimates the others from it (hash buckets fill evenly);
later lookups at the same revision reuse that sample instead of scanning another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum

from shared.store.customer_stats import Bounds

POINT_READ_ALWAYS = 64  # this few ids: point reads, whatever the table size
SCAN_ROWS_PER_POINT_READ = 80  # bench.lookups, Azurite, 2026-12-03: measured 37-113 (bench/README)


class Read(StrEnum):
    POINT = "point"
    SCAN = "scan"
    CACHED = "cached"


@dataclass(slots=True)
class Plan:
    reads: dict[str, Read] = field(default_factory=dict)  # bucket -> how it is read
    open: set[str] = field(default_factory=set)  # buckets whose bounds leave the choice open
    sample: str | None = None  # the open bucket to scan first (None: nothing open)


def cheaper(ids: int, rows: int) -> Read:
    """Point reads for ``ids`` ids vs a scan of ``rows`` rows (a tie scans: fewer requests)."""
    return Read.POINT if ids * SCAN_ROWS_PER_POINT_READ < rows else Read.SCAN


def plan(
    wanted: Mapping[str, int],
    bounds: Callable[[str], Bounds],
    known: Mapping[str, int],
    cached: Set[str],
) -> Plan:
    """``wanted``: bucket -> number of ids; ``known``: bucket -> exact rows (this revision);
    ``cached``: buckets whose column this process holds for the current revision."""
    result = Plan()
    few = sum(wanted.values()) <= POINT_READ_ALWAYS
    for bucket, ids in wanted.items():
        if bucket in cached:
            result.reads[bucket] = Read.CACHED
        elif few:
            result.reads[bucket] = Read.POINT
        elif bucket in known:
            result.reads[bucket] = cheaper(ids, known[bucket])
        else:
            b = bounds(bucket)
            cost = ids * SCAN_ROWS_PER_POINT_READ
            if b.upper is not None and b.upper <= cost:
                result.reads[bucket] = Read.SCAN  # even the most rows it can hold
            elif b.lower > cost:
                result.reads[bucket] = Read.POINT  # even the fewest rows it can hold
            else:
                result.open.add(bucket)
    if result.open:
        result.sample = max(sorted(result.open), key=lambda b: wanted[b])
    return result


@dataclass(frozen=True, slots=True)
class Sample:
    """What scanning one open bucket taught: where its count fell between its bounds (None
    when its bounds were unknown or exact) and the count itself. Valid for one revision."""

    share: float | None
    counted: int


def sampled(bounds: Bounds, counted: int) -> Sample:
    share = None
    if bounds.upper is not None and bounds.upper > bounds.lower:
        share = min(1.0, max(0.0, (counted - bounds.lower) / (bounds.upper - bounds.lower)))
    return Sample(share, counted)


def settle(
    result: Plan,
    wanted: Mapping[str, int],
    bounds: Callable[[str], Bounds],
    sample: Sample,
    *,
    scanned: bool,
) -> None:
    """Decide the open buckets from a sample (``scanned``: the plan's sample bucket was just
    scanned for it; else the sample is an earlier one of the same revision and nothing is
    scanned first): each is estimated at the sample's place between its own bounds (or at
    the sample's count when its bounds are unknown), clipped to its bounds."""
    if scanned:
        assert result.sample is not None
        result.reads[result.sample] = Read.SCAN
    for bucket in sorted(result.open - set(result.reads)):
        b = bounds(bucket)
        if sample.share is not None and b.upper is not None:
            estimate = b.lower + sample.share * (b.upper - b.lower)
        else:
            estimate = float(sample.counted)
        estimate = max(float(b.lower), estimate)
        if b.upper is not None:
            estimate = min(float(b.upper), estimate)
        result.reads[bucket] = cheaper(wanted[bucket], round(estimate))
    result.open.clear()
