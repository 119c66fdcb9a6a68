"""Per key of the job: the detectors' failures and overflows, reported per event-time minute.

A detector that raises on an event is counted and logged by the engine while the others carry
on (``detectors.engine``), and a detector whose pane holds ``engine.max_keys_per_window`` keys
stops tracking new ones (``overflow``). Both are blind spots: events the rule never judged. The
engine keeps running totals; this keeps, per key, the totals already reported and the increase
since, by the minute of event time the key had reached when it happened, and emits a minute once
the watermark passes its end (as ``streams.posture`` does), so a replayed step rewrites the same
record under the same id instead of counting twice.

Records (``ssa-metrics-*``): ``kind: detector``, ``tenant: "-"`` (the SOC's index: a detector's
health is the provider's concern, and a plain-mode key belongs to no one tenant), ``key`` (the
job's key, which names the tenant in secure mode), ``detector``, ``detector_errors`` (failures
that minute) and ``overflow`` (events a full pane could not track that minute).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["DetectorHealth"]

_MINUTE_MS: Final = 60_000


class DetectorHealth:
    """Reported totals per detector and the increases not yet emitted, per (minute, detector)."""

    __slots__ = ("last_ts", "pending", "reported")

    def __init__(self) -> None:
        self.reported: dict[str, tuple[int, int]] = {}
        self.pending: dict[tuple[int, str], list[int]] = {}
        self.last_ts = 0  # the latest event time the key has seen: the minute of a final step

    def observe(self, totals: Mapping[str, tuple[int, int]], ts: int) -> None:
        """Take the engine's running (failures, overflow) totals per detector at event time ``ts``;
        what grew since the last call is the minute of ``ts``'s."""
        reported = self.reported
        for detector, now in totals.items():
            before = reported.get(detector, (0, 0))
            if now == before:
                continue
            reported[detector] = now
            # A total below the reported one is a fresh engine's (a key restarted without state).
            failures = now[0] - before[0] if now[0] >= before[0] else now[0]
            overflow = now[1] - before[1] if now[1] >= before[1] else now[1]
            if failures or overflow:
                slot = self.pending.setdefault((ts - ts % _MINUTE_MS, detector), [0, 0])
                slot[0] += failures
                slot[1] += overflow

    def close(self, watermark: int, partition_key: str) -> list[dict[str, Any]]:
        """Records of every minute with failures or overflows that ended at or before ``watermark``."""
        due = sorted(k for k in self.pending if k[0] + _MINUTE_MS <= watermark)
        out = []
        for minute, detector in due:
            failures, overflow = self.pending.pop((minute, detector))
            out.append(
                {
                    "ts": minute,
                    "tenant": "-",
                    "kind": "detector",
                    "key": partition_key,
                    "detector": detector,
                    "detector_errors": failures,
                    "overflow": overflow,
                }
            )
        return out

    def __bool__(self) -> bool:
        return bool(self.pending)

    def __getstate__(self) -> tuple[dict[str, tuple[int, int]], dict[tuple[int, str], list[int]], int]:
        return self.reported, self.pending, self.last_ts

    def __setstate__(
        self, state: tuple[dict[str, tuple[int, int]], dict[tuple[int, str], list[int]], int]
    ) -> None:
        self.reported, self.pending, self.last_ts = state
