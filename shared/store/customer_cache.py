"""A per-process cache of one customer column, bucket by bucket, for one table revision.

Exports running in one worker process (a nightly refresh: several listeners at once) look up
the same customer table; the first to scan a bucket keeps {customer id: value} of the column
it read, the others wait for that one load instead of scanning again. Everything cached
belongs to one revision of the table (customer_stats): a lookup that sees a newer revision
drops the cache; one that saw an older revision neither reads nor fills it. Bounded by rows
held (least recently used buckets go first); a bucket bigger than the bound is not kept, and
lookups use the cache only for tables whose counts say they fit whole (customer_reads).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

Column = dict[str, object]  # customer id -> the column's value (None when the row lacks it)
_Key = tuple[str, str]  # (column, bucket)

# ~180 bytes a row with short ids and GUID strings (bench.lookups: +53 MB peak RSS for 300k):
# a 1M-row table costs ~180 MB; a bigger table is not cached (customer_reads).
CACHE_MAX_ROWS = 1_000_000


class ColumnCache:
    def __init__(self, max_rows: int = CACHE_MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._revision = -1
        self._held: OrderedDict[_Key, Column] = OrderedDict()
        self._rows = 0
        self._loading: dict[tuple[int, str, str], Future[Column]] = {}

    def _advance(self, revision: int) -> None:
        if revision > self._revision:
            self._revision = revision
            self._held.clear()
            self._rows = 0

    def cached(self, revision: int, column: str) -> set[str]:
        """Buckets held (or being loaded) for this column at this revision."""
        with self._lock:
            self._advance(revision)
            if revision != self._revision:
                return set()
            held = {bucket for (col, bucket) in self._held if col == column}
            loading = {b for (r, col, b) in self._loading if r == revision and col == column}
            return held | loading

    def get(
        self, revision: int, column: str, bucket: str, load: Callable[[], Column]
    ) -> tuple[Column, bool]:
        """The bucket's column: held, waited for (another thread loads it), or loaded here.
        Returns (column, loaded_here)."""
        key = (column, bucket)
        mine: Future[Column] | None = None
        with self._lock:
            self._advance(revision)
            current = revision == self._revision
            if current and key in self._held:
                self._held.move_to_end(key)
                return self._held[key], False
            pending = self._loading.get((revision, column, bucket)) if current else None
            if pending is None and current:
                mine = Future()
                self._loading[(revision, column, bucket)] = mine
        if pending is not None:
            return pending.result(), False
        try:
            values = load()
        except BaseException as error:
            if mine is not None:
                self._finish(revision, column, bucket)
                mine.set_exception(error)
            raise
        if mine is not None:
            self._keep(revision, key, values)
            self._finish(revision, column, bucket)
            mine.set_result(values)
        return values, True

    def _finish(self, revision: int, column: str, bucket: str) -> None:
        with self._lock:
            self._loading.pop((revision, column, bucket), None)

    def _keep(self, revision: int, key: _Key, values: Column) -> None:
        with self._lock:
            if revision != self._revision or len(values) > self.max_rows:
                return
            old = self._held.pop(key, None)
            self._rows -= len(old) if old is not None else 0
            while self._held and self._rows + len(values) > self.max_rows:
                _, evicted = self._held.popitem(last=False)
                self._rows -= len(evicted)
            self._held[key] = values
            self._rows += len(values)

    @property
    def rows(self) -> int:
        with self._lock:
            return self._rows
