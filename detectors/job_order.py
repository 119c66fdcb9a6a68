"""Offline, a file's events reach the engine in the order the job hands them over.

The job (``streams/``) cuts each kind's stream into micro-batches of ``MICRO_BATCH_MS`` of event
time, and hands a batch to the engine once that kind's watermark (the newest event time seen minus
the kind's allowance, ``Lateness``) has passed the batch's end: batches in the order of their ends,
each sorted by (time, id). An event already behind the watermark when it arrives is late (the job's
source sends it to the DLQ). A file read in its own order reaches the engine in another: a Zeek conn
log is written as connections are removed from its table, an exporter's CSV as it flushed, so two
records minutes apart in time may come in either order. The alerts of a rule whose state keeps a
sample of what arrived (the beacon rule thins a busy pair's connections to every other one as they
come) then depended on that order: on the real captures here, the job raised two beacons that
``ssa evaluate`` read in file order did not (a busy pair's sample thinned out of time order looked
less regular).

``OrderedFeed`` wraps an engine with that order: events are held per lane (the kinds that share an
allowance) in micro-batches until the lane's watermark passes a batch's end, then go to the engine in
the job's order; an event behind the watermark goes to ``DetectionEngine.late`` at once. The
watermark moves per event as the engine's own does, so an event is late here exactly where the
engine fed the file directly would have found it late. ``ssa scan`` and ``ssa evaluate`` feed their
engines through it; the job feeds its micro-batches to the engine directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from detectors.alert import Alert
from detectors.engine import DetectionEngine
from ingest.schema import Event

__all__ = ["MICRO_BATCH_MS", "OrderedFeed"]

MICRO_BATCH_MS: Final = 1000
"""Event time per micro-batch of the job (``streams.detect_fn.DetectionJobConfig.tick_ms``)."""

_FAR_PAST: Final = -(2**62)


def _time_and_id(ev: Event) -> tuple[int, str]:
    return ev.ts, ev.id


class OrderedFeed:
    """An engine fed in the job's order (module docstring); ``process``, ``flush`` and ``run`` as the
    engine's."""

    def __init__(self, engine: DetectionEngine, batch_ms: int = MICRO_BATCH_MS) -> None:
        if batch_ms <= 0:
            raise ValueError(f"micro-batch length must be positive, got {batch_ms}")
        self.engine = engine
        self.batch_ms = batch_ms
        self._allowance = engine.lane_allowances
        self._max_ts = [_FAR_PAST] * len(self._allowance)
        self._watermark = [_FAR_PAST] * len(self._allowance)
        self._pending: dict[tuple[int, int], list[Event]] = {}  # (batch end, lane) -> its events
        self._unknown: list[Event] = []  # kinds no detector reads: counted by the engine

    def process(self, events: Iterable[Event]) -> list[Alert]:
        """Take events in arrival order; return the alerts of what the watermarks released."""
        out: list[Alert] = []
        engine, pending, batch_ms = self.engine, self._pending, self.batch_ms
        max_ts, watermark, allowance = self._max_ts, self._watermark, self._allowance
        for ev in events:
            lane = engine.lane_of(ev)
            if lane is None:
                self._unknown.append(ev)
                continue
            ts = ev.ts
            if ts > max_ts[lane]:
                max_ts[lane] = ts
                if ts - allowance[lane] > watermark[lane]:
                    watermark[lane] = ts - allowance[lane]
            elif ts < watermark[lane]:
                out += self._release()  # the batches before it, as the job's windows fired
                engine.late([ev])
                continue
            key = (ts - ts % batch_ms + batch_ms, lane)
            held = pending.get(key)
            if held is None:
                pending[key] = [ev]
            else:
                held.append(ev)
        out += self._release()
        return out

    def flush(self) -> list[Alert]:
        """End of input: every held batch in order, then the engine's ``flush``."""
        out = self._release(everything=True)
        out += self.engine.flush()
        return out

    def run(self, events: Iterable[Event]) -> list[Alert]:
        out = self.process(events)
        out += self.flush()
        return out

    def _release(self, *, everything: bool = False) -> list[Alert]:
        """The held batches whose end the lane's watermark passed (all with ``everything``), in the
        order of their ends, each sorted by time and id, as one ``process`` call (the engine gives
        the same alerts however a sequence is cut into calls)."""
        watermark = self._watermark
        due = sorted(key for key in self._pending if everything or key[0] <= watermark[key[1]])
        if not due and not self._unknown:
            return []
        batch, self._unknown = self._unknown, []
        for key in due:
            held = self._pending.pop(key)
            held.sort(key=_time_and_id)
            batch += held
        return self.engine.process(batch)
