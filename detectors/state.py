"""Small picklable per-key state pieces for windowed detectors.

``Span`` tracks first/last event time, a count and a few evidence ids; ``add_capped`` keeps sets
and dicts bounded (``engine.max_distinct_per_key``) while still counting what overflowed;
``FlowTable`` holds a window's one-way flow records for matching each with its reverse record.
"""

from __future__ import annotations

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
    that outweighs the smallest kept one replaces it, otherwise its amount goes to ``other``. Totals
    stay exact. ``floor`` is a lower bound of the smallest kept amount (amounts only grow), so a
    small newcomer costs no scan; only one that beats the floor looks for the true minimum."""

    __slots__ = ("cap", "counts", "floor", "other")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[Hashable, int] = {}
        self.floor = 0
        self.other = 0

    def add(self, key: Hashable, amount: int) -> None:
        counts = self.counts
        if key in counts:
            counts[key] += amount
        elif len(counts) < self.cap:
            counts[key] = amount
        elif amount <= self.floor:
            self.other += amount
        else:
            smallest = min(counts, key=counts.__getitem__)
            low = counts[smallest]
            if amount > low:
                self.other += counts.pop(smallest)
                counts[key] = amount
                self.floor = min(low, amount)
            else:
                self.other += amount
                self.floor = low

    def merge(self, other: TopCounts) -> None:
        for key, amount in other.counts.items():
            self.add(key, amount)
        self.other += other.other

    def top(self) -> tuple[Hashable, int] | None:
        if not self.counts:
            return None
        key = max(self.counts, key=lambda k: (self.counts[k], str(k)))
        return key, self.counts[key]

    def total(self) -> int:
        return sum(self.counts.values()) + self.other

    def __len__(self) -> int:
        return len(self.counts)

    def __getstate__(self) -> tuple[int, dict[Hashable, int], int, int]:
        return (self.cap, self.counts, self.floor, self.other)

    def __setstate__(self, s: tuple[int, dict[Hashable, int], int, int]) -> None:
        self.cap, self.counts, self.floor, self.other = s


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
