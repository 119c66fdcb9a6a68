"""The detection engine: one loop that the offline scanner and the Flink job both drive.

``process(events)`` takes events of any kinds and keys, roughly in event-time order (at most
``engine.max_out_of_orderness_ms`` out of order). For each event it advances the watermark
(max event time seen minus the bound), dispatches the event by kind to the detectors that read
that kind, and, when the watermark passes the end of an open window, closes it and turns its
findings into alerts. An event older than a detector's open windows is *late* for it: counted
(``stats()['late']``) and, for single-event rules, still raised as its own alert (configurable).
``flush()`` closes everything at end of input.

Lateness is decided per event against the running watermark, so the alerts of a sequence of
events do not depend on how it is cut into ``process`` calls: one batch gives the same alerts
as the same events streamed. Windows align to epoch multiples of their size, and ``alert_id``
hashes (detector, entity, window, tenant), so a replay rewrites the same alerts.

A detector that raises is counted and logged with the event id (``stats()['failures']``,
``failures``); with ``strict=True`` (tests) the error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any, Final

from detectors.alert import Alert, make_alert_id, severity_for_score
from detectors.base import EMPTY_REGISTRY, Batch, Detector, Finding
from detectors.context import DetectionContext
from ingest.schema import AuditEvent, AuthEvent, Event, FlowEvent, ProcessEvent
from ingest.tenants import TenantRegistry

__all__ = ["DetectionEngine", "DetectorFailure"]

log = logging.getLogger(__name__)

_KIND_CLASSES: Final = {"flow": FlowEvent, "process": ProcessEvent, "audit": AuditEvent, "auth": AuthEvent}
_FAR_PAST: Final = -(2**62)
_FAR_FUTURE: Final = 2**62
_MAX_FAILURE_RECORDS: Final = 100
_CHUNK: Final = 4096


class DetectorFailure(RuntimeError):
    """A detector raised (only propagated when the engine is strict)."""


class DetectionEngine:
    """Runs detectors over events; its whole state pickles (detectors, windows, watermark)."""

    def __init__(
        self, detectors: Sequence[Detector], context: DetectionContext | None = None, *, strict: bool = False
    ) -> None:
        self.context = context if context is not None else DetectionContext()
        self.detectors = list(detectors)
        ids = [d.meta.id for d in self.detectors]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate detector ids: {dupes}")
        self.strict = strict
        self.out_of_orderness = self.context.config.engine.max_out_of_orderness_ms
        self.max_logged = self.context.config.engine.max_logged_failures
        self._max_ts = _FAR_PAST
        self._watermark = _FAR_PAST
        self._next_close = _FAR_PAST
        self._events = 0
        self._unknown = 0
        self._late_events = 0
        self._alerts = 0
        self.failures: list[dict[str, str]] = []
        self._failure_counts: dict[str, int] = {}
        self._bound: TenantRegistry | None = None
        self._dispatch: dict[type, tuple[Detector, ...]] = {}
        self._build_dispatch()

    # --- public API ----------------------------------------------------------------------------
    def process(self, events: Iterable[Event]) -> list[Alert]:
        """Feed events; return the alerts of windows that closed as the watermark advanced."""
        self._bind()
        out: list[Alert] = []
        it = iter(events)
        while True:
            chunk = list(islice(it, _CHUNK))
            if not chunk:
                break
            out.extend(self._process_chunk(chunk))
        if self._next_close <= self._watermark or any(d._late_findings for d in self.detectors):
            out.extend(self._close(self._watermark))
        self._alerts += len(out)
        return out

    def flush(self) -> list[Alert]:
        """Close every open window (end of input). Later events for those windows are late."""
        self._bind()
        out: list[Alert] = []
        horizon = self._watermark
        for d in self.detectors:
            end = d.open_until()
            findings = self._guarded_close(d, None)
            out.extend(self._alert(d, f) for f in findings)
            if end is not None and end > horizon:
                horizon = end
        if horizon > self._watermark:
            self._watermark = horizon
            self._max_ts = max(self._max_ts, horizon + self.out_of_orderness)
        self._next_close = _FAR_PAST
        self._alerts += len(out)
        return out

    def advance(self, watermark: int) -> list[Alert]:
        """Move the watermark to ``watermark`` (e.g. the stream's watermark when a key went quiet)
        and return the alerts of windows that closed. Never moves it back. Later events older than
        the new watermark's closed windows are late, exactly as if a newer event had been seen."""
        if watermark <= self._watermark:
            return []
        self._bind()
        self._watermark = watermark
        if self._max_ts < watermark + self.out_of_orderness:
            self._max_ts = watermark + self.out_of_orderness
        out = self._close(watermark)
        self._alerts += len(out)
        return out

    def run(self, events: Iterable[Event]) -> list[Alert]:
        """``process`` then ``flush``: all alerts of a finite input."""
        out = self.process(events)
        out.extend(self.flush())
        return out

    @property
    def watermark(self) -> int:
        return self._watermark

    def window_specs(self) -> dict[str, str]:
        return {d.meta.id: d.window.describe() for d in self.detectors}

    def check_batch_window(self, batch_ms: int) -> None:
        """Raise unless every detector window fits inside an epoch-aligned batch of ``batch_ms``.

        The Flink job runs a fresh engine per tumbling window of ``batch_ms``; a detector window
        that does not divide it (or a sliding one) would be cut at batch boundaries.
        """
        bad = [
            f"{d.meta.id} ({d.window.describe()})" for d in self.detectors if not d.window.fits_in(batch_ms)
        ]
        if bad:
            raise ValueError(f"detector windows that do not fit a {batch_ms} ms batch: {', '.join(bad)}")

    def stats(self) -> dict[str, Any]:
        """Counters for metrics: events, alerts, late events (late for at least one detector), and per
        detector late/overflow/failures/state keys (``late`` sums the per-detector counts)."""
        per: dict[str, dict[str, int]] = {}
        for d in self.detectors:
            c = dict(d.counters)
            c["failures"] = self._failure_counts.get(d.meta.id, 0)
            c["state_keys"] = d.state_size()
            per[d.meta.id] = c
        return {
            "events": self._events,
            "unknown_kind": self._unknown,
            "alerts": self._alerts,
            "watermark": self._watermark,
            "late_events": self._late_events,
            "late": sum(c["late"] for c in per.values()),
            "overflow": sum(c["overflow"] for c in per.values()),
            "failures": sum(self._failure_counts.values()),
            "detectors": per,
        }

    def state_size(self) -> int:
        return sum(d.state_size() for d in self.detectors)

    # --- internals -----------------------------------------------------------------------------
    def _build_dispatch(self) -> None:
        table: dict[type, list[Detector]] = {cls: [] for cls in _KIND_CLASSES.values()}
        for d in self.detectors:
            for kind in sorted(d.meta.kinds):
                table[_KIND_CLASSES[kind]].append(d)
        self._dispatch = {cls: tuple(ds) for cls, ds in table.items()}

    def _bind(self) -> None:
        reg = self.context.current_registry()
        if reg is not self._bound:
            for d in self.detectors:
                d.bind(reg)
            self._bound = reg

    def _process_chunk(self, chunk: list[Event]) -> list[Alert]:
        """Fast path: when no event of the chunk is behind the running watermark, each detector gets
        its kind's events as one batch. Otherwise the chunk goes event by event (``_process_slow``).
        Both give the same state: lateness is decided per event against the running watermark."""
        ooo = self.out_of_orderness
        max_ts = self._max_ts
        wm = self._watermark
        groups: dict[type, list[Event]] = {cls: [] for cls in self._dispatch}
        unknown = 0
        for ev in chunk:
            ts = ev.ts
            if ts > max_ts:
                max_ts = ts
                if ts - ooo > wm:
                    wm = ts - ooo
            elif ts < wm:
                return self._process_slow(chunk)
            group = groups.get(ev.__class__)
            if group is None:
                unknown += 1
            else:
                group.append(ev)
        self._max_ts = max_ts
        self._watermark = wm
        self._events += len(chunk)
        self._unknown += unknown
        reg = self._bound or EMPTY_REGISTRY
        for cls, evs in groups.items():
            if not evs:
                continue
            batch = Batch(evs, reg)
            for d in self._dispatch[cls]:
                d.observe_batch(batch)
                if d.errors:
                    self._drain(d)
        if wm >= self._next_close:
            return self._close(wm)
        return []

    def _process_slow(self, chunk: list[Event]) -> list[Alert]:
        out: list[Alert] = []
        dispatch = self._dispatch
        ooo = self.out_of_orderness
        reg = self._bound or EMPTY_REGISTRY
        for ev in chunk:
            self._events += 1
            ts = ev.ts
            if ts > self._max_ts:
                self._max_ts = ts
                if ts - ooo > self._watermark:
                    self._watermark = ts - ooo
            wm = self._watermark
            dets = dispatch.get(ev.__class__)
            if dets is None:
                self._unknown += 1
                continue
            single: Batch | None = None
            late_here = False
            for d in dets:
                if ts < wm and d.is_closed(ts, wm):
                    late_here = True
                    try:
                        d.late(ev, ts)
                    except Exception as exc:
                        d.error(ev, exc)
                else:
                    if single is None:
                        single = Batch([ev], reg)
                    d.observe_batch(single)
                if d.errors:
                    self._drain(d)
            self._late_events += late_here
            if wm >= self._next_close:
                out.extend(self._close(wm))
        return out

    def _close(self, wm: int) -> list[Alert]:
        """Close every window that ended at or before ``wm``; the next check is the next pane
        boundary of any detector (window ends are multiples of their pane), so a pane opened
        later by a new key can never be missed."""
        out: list[Alert] = []
        for d in self.detectors:
            due = d.next_close()
            if due is not None and due <= wm:
                out.extend(self._alert(d, f) for f in self._guarded_close(d, wm))
        self._next_close = min(
            (wm - wm % d.window.pane_ms + d.window.pane_ms for d in self.detectors), default=_FAR_FUTURE
        )
        return out

    def _guarded_close(self, d: Detector, wm: int | None) -> list[Finding]:
        try:
            return d.close_all() if wm is None else d.close(wm)
        except Exception as exc:
            self._failed(d, None, exc)
            return []

    def _alert(self, d: Detector, f: Finding) -> Alert:
        meta = d.meta
        score = max(0, min(100, int(f.score)))
        evidence: dict[str, Any] = {
            "count": f.count,
            "event_ids": f.event_ids,
            "window_start": f.window.start,
            "window_end": f.window.end,
        }
        evidence.update(f.evidence)
        clock = self.context.clock
        return Alert(
            alert_id=make_alert_id(meta.id, f.entity, f.window.start, f.window.end, tenant=f.tenant),
            ts=clock() if clock is not None else f.window.end,
            first_seen=f.first_seen,
            last_seen=f.last_seen,
            tenant=f.tenant,
            entity=f.entity,
            category=meta.category,
            severity=severity_for_score(score),
            score=score,
            detector=meta.id,
            detector_version=meta.version,
            attack=f.attack or meta.attack[0],
            summary=f.summary,
            evidence=evidence,
        )

    def _drain(self, d: Detector) -> None:
        """Count, keep and log the failures a detector recorded; raise the first in strict mode."""
        errors, d.errors = d.errors, []
        first: tuple[str, Exception] | None = None
        for event_id, exc in errors:
            first = first or (event_id, exc)
            self._record_failure(d, event_id, exc)
        if self.strict and first is not None:
            raise DetectorFailure(
                f"detector {d.meta.id} failed on event {first[0]}: {first[1]!r}"
            ) from first[1]

    def _failed(self, d: Detector, ev: Event | None, exc: Exception) -> None:
        event_id = ev.id if ev is not None else "<window close>"
        d.counters["failures"] = d.counters.get("failures", 0) + 1
        self._record_failure(d, event_id, exc)
        if self.strict:
            raise DetectorFailure(f"detector {d.meta.id} failed on event {event_id}: {exc!r}") from exc

    def _record_failure(self, d: Detector, event_id: str, exc: Exception) -> None:
        det_id = d.meta.id
        count = self._failure_counts.get(det_id, 0) + 1
        self._failure_counts[det_id] = count
        if len(self.failures) < _MAX_FAILURE_RECORDS:
            self.failures.append({"detector": det_id, "event_id": event_id, "error": repr(exc)})
        if count <= self.max_logged:
            log.error("detector %s failed on event %s: %r", det_id, event_id, exc, exc_info=exc)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_dispatch"] = None
        state["_bound"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build_dispatch()
