"""Small picklable per-key state pieces for windowed detectors.

``Span`` tracks first/last event time, a count and a few evidence ids; ``add_capped`` keeps sets
and dicts bounded (``engine.max_distinct_per_key``) while still counting what overflowed;
``FlowTable`` holds a window's one-way flow records for matching each with its reverse record.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Any

__all__ = ["FlowTable", "Span", "TopCounts", "add_capped", "bump_capped"]


class Span:
    """Event-time span, event count and up to ``max_ids`` evidence ids of one key in one window."""

    __slots__ = ("count", "first", "ids", "last")

    def __init__(self) -> None:
        self.count = 0
        self.first = 0
        self.last = 0
        self.ids: list[str] = []

    def add(self, ts: int, event_id: str, max_ids: int) -> None:
        if self.count == 0:
            self.first = self.last = ts
        elif ts < self.first:
            self.first = ts
        elif ts > self.last:
            self.last = ts
        self.count += 1
        if len(self.ids) < max_ids:
            self.ids.append(event_id)

    def merge(self, other: Span, max_ids: int) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.first, self.last = other.first, other.last
        else:
            self.first = min(self.first, other.first)
            self.last = max(self.last, other.last)
        self.count += other.count
        for i in other.ids:
            if len(self.ids) >= max_ids:
                break
            if i not in self.ids:
                self.ids.append(i)

    def __getstate__(self) -> tuple[int, int, int, list[str]]:
        return (self.count, self.first, self.last, self.ids)

    def __setstate__(self, state: tuple[int, int, int, list[str]]) -> None:
        self.count, self.first, self.last, self.ids = state


def add_capped(values: set[Any], item: Hashable, cap: int) -> bool:
    """Add to a set unless it is full; True when the item is (now) in the set."""
    if item in values:
        return True
    if len(values) >= cap:
        return False
    values.add(item)
    return True


def bump_capped(counts: dict[Any, int], key: Hashable, amount: int, cap: int) -> None:
    """Add ``amount`` to ``counts[key]``; new keys beyond ``cap`` go to the ``None`` bucket."""
    if key in counts:
        counts[key] += amount
    elif len(counts) < cap:
        counts[key] = amount
    else:
        counts[None] = counts.get(None, 0) + amount


class TopCounts:
    """Amounts per key for at most ``cap`` keys, biased to the largest (heavy hitters): a new key
    that outweighs the smallest kept one replaces it (the first kept of the smallest, in insertion
    order), otherwise its amount goes to ``other``. Totals stay exact. Amounts are never negative,
    so a kept count only grows.

    Finding the smallest kept key costs no scan. ``floor`` is a lower bound of the smallest kept
    amount, so a newcomer at or under it goes to ``other`` at once; one above it asks a heap of
    ``(amount, insertion number, key)``, one entry per kept key, built the first time the table is
    full and a newcomer beats the floor. Entries are refreshed lazily: an entry whose amount is
    behind its key's count is pushed again with the count when it comes to the top, so the top is
    the true (smallest amount, earliest inserted) key, the one a scan in insertion order would find.
    The heap is a cache: it is not pickled, and rebuilt from ``counts`` (in its order) when needed."""

    __slots__ = ("_heap", "_seq", "cap", "counts", "floor", "other")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[Hashable, int] = {}
        self.floor = 0
        self.other = 0
        self._heap: list[tuple[int, int, Hashable]] | None = None
        self._seq = 0

    def add(self, key: Hashable, amount: int) -> None:
        counts = self.counts
        if key in counts:
            counts[key] += amount
        elif len(counts) < self.cap:
            counts[key] = amount
        elif amount <= self.floor:
            self.other += amount
        else:
            self._replace_smallest(key, amount)

    def _replace_smallest(self, key: Hashable, amount: int) -> None:
        """``key`` is new, the table full and ``amount`` above the floor: evict the smallest kept
        key if ``amount`` outweighs it, else count ``amount`` under ``other``."""
        counts = self.counts
        heap = self._heap
        if heap is None or len(heap) != len(counts):
            heap = self._heap = [(n, i, k) for i, (k, n) in enumerate(counts.items())]
            heapq.heapify(heap)
            self._seq = len(heap)
        while True:  # refresh entries behind their key's count until the top is current
            low, seq, smallest = heap[0]
            now = counts[smallest]
            if now == low:
                break
            heapq.heapreplace(heap, (now, seq, smallest))
        if amount > low:
            self.other += counts.pop(smallest)
            counts[key] = amount
            heapq.heapreplace(heap, (amount, self._seq, key))
            self._seq += 1
        else:
            self.other += amount
        self.floor = low

    def merge(self, other: TopCounts) -> None:
        for key, amount in other.counts.items():
            self.add(key, amount)
        self.other += other.other

    def top(self) -> tuple[Hashable, int] | None:
        """The largest kept key and amount; among equal amounts the greatest ``str(key)``."""
        counts = self.counts
        if not counts:
            return None
        most = max(counts.values())
        tied = [k for k, n in counts.items() if n == most]
        key = tied[0] if len(tied) == 1 else max(tied, key=str)
        return key, most

    def total(self) -> int:
        return sum(self.counts.values()) + self.other

    def __len__(self) -> int:
        return len(self.counts)

    def __getstate__(self) -> tuple[int, dict[Hashable, int], int, int]:
        return (self.cap, self.counts, self.floor, self.other)

    def __setstate__(self, s: tuple[int, dict[Hashable, int], int, int]) -> None:
        self.cap, self.counts, self.floor, self.other = s
        self._heap = None
        self._seq = 0


class FlowTable:
    """One window's one-way flow records by 5-tuple: (earliest start time, whether one refuses), at most
    ``cap`` keys (``engine.max_keys_per_window``); records beyond are counted in ``dropped``."""

    __slots__ = ("dropped", "seen")

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int, str, int, str], tuple[int, bool]] = {}
        self.dropped = 0

    def add(self, key: tuple[str, int, str, int, str], ts: int, refuses: bool, cap: int) -> bool:
        """Record one record; False when the table is full and it was dropped."""
        seen = self.seen
        old = seen.get(key)
        if old is None:
            if len(seen) >= cap:
                self.dropped += 1
                return False
            seen[key] = (ts, refuses)
        elif ts < old[0] or (refuses and not old[1]):
            seen[key] = (min(ts, old[0]), refuses or old[1])
        return True

    def merge(self, other: FlowTable, cap: int) -> None:
        for key, (ts, refuses) in other.seen.items():
            self.add(key, ts, refuses, cap)
        self.dropped += other.dropped

    def __getstate__(self) -> tuple[dict[tuple[str, int, str, int, str], tuple[int, bool]], int]:
        return (self.seen, self.dropped)

    def __setstate__(self, s: tuple[dict[tuple[str, int, str, int, str], tuple[int, bool]], int]) -> None:
        self.seen, self.dropped = s
