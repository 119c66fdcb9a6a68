"""The detection engine: one loop that the offline scanner and the Flink job both drive.

``process(events)`` takes events of any kinds and keys, roughly in event-time order. Each kind
has its allowance for disorder (``Lateness``: flow exporters write a record minutes after the
flow's last packet, hosts and audit trails within seconds), and the kinds that share an
allowance share a watermark (max event time seen of those kinds minus the allowance), so a
flow record minutes behind never holds back, nor is judged by, the process events' watermark.
For each event the engine advances its kind's watermark, dispatches the event to the detectors
that read that kind, and, when the watermark passes the end of an open window, closes it and
turns its findings into alerts. An event behind its kind's watermark is *late*, as the job
decides it (its SQL source sends such an event to the DLQ), even when a window that would hold
it is still open: so a file has the same late events offline and in the job. A late event is
counted per detector (``stats()['late']``) and once (``late_events``) and, for single-event
rules, still raised as its own alert (configurable; the job raises none, the DLQ has the event).
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from detectors.alert import Alert, make_alert_id, severity_for_score
from detectors.base import EMPTY_REGISTRY, Batch, Detector, Finding
from detectors.config import EngineSettings
from detectors.context import DetectionContext
from detectors.interface_copies import InterfaceCopies
from ingest.schema import AuditEvent, AuthEvent, Event, FlowEvent, ProcessEvent
from ingest.tenants import TenantRegistry

__all__ = ["DetectionEngine", "DetectorFailure", "Lateness"]

log = logging.getLogger(__name__)

_KIND_CLASSES: Final = {"flow": FlowEvent, "process": ProcessEvent, "audit": AuditEvent, "auth": AuthEvent}
_FAR_PAST: Final = -(2**62)
_FAR_FUTURE: Final = 2**62
_MAX_FAILURE_RECORDS: Final = 100
_CHUNK: Final = 4096


class DetectorFailure(RuntimeError):
    """A detector raised (only propagated when the engine is strict)."""


@dataclass(frozen=True)
class Lateness:
    """How far behind the newest event of its kind an event may arrive and still be on time, per
    kind (``per_kind``), else ``default_ms``. The job's Kafka sources use the same values for
    their watermarks (``streams.runner.job_config``), so a file gives the same late events
    offline and in the job."""

    default_ms: int
    per_kind: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def for_flows(cls, out_of_orderness_ms: int, flow_export_delay_ms: int) -> Lateness:
        """The settings' split: flows get the exporters' delay, every other kind the small bound."""
        return cls(out_of_orderness_ms, {"flow": flow_export_delay_ms})

    def allowance(self, kind: str) -> int:
        return self.per_kind.get(kind, self.default_ms)


@dataclass
class _Lane:
    """The event-time clock of the kinds that share one allowance."""

    allowance: int
    max_ts: int = _FAR_PAST
    watermark: int = _FAR_PAST
    next_close: int = _FAR_PAST


class DetectionEngine:
    """Runs detectors over events; its whole state pickles (detectors, windows, watermark)."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        context: DetectionContext | None = None,
        *,
        strict: bool = False,
        lateness: Lateness | None = None,
    ) -> None:
        self.context = context if context is not None else DetectionContext()
        self.detectors = list(detectors)
        ids = [d.meta.id for d in self.detectors]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate detector ids: {dupes}")
        self.strict = strict
        # Without one, every kind gets the detector configuration's single bound (library use).
        self.lateness = lateness or Lateness(self.context.config.engine.max_out_of_orderness_ms)
        self.max_logged = self.context.config.engine.max_logged_failures
        # A VPC flow record that repeats another interface's record of the flow is not a detector's.
        self.copies = InterfaceCopies.for_settings(self.context.config.engine)
        # The ids of the flow records the last ``process`` call took as copies: the job's posture
        # metrics leave them out too, so a connection is one flow there as well.
        self.copied: list[str] = []
        allowances = sorted({self.lateness.allowance(kind) for kind in _KIND_CLASSES})
        self._lanes = [_Lane(a) for a in allowances]
        self._kind_lane = {kind: allowances.index(self.lateness.allowance(kind)) for kind in _KIND_CLASSES}
        self._det_lane = [self._lane_of_detector(d) for d in self.detectors]
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
        self.copied = []
        out: list[Alert] = []
        it = iter(events)
        while True:
            chunk = list(islice(it, _CHUNK))
            if not chunk:
                break
            out.extend(self._process_chunk(chunk))
        for i, lane in enumerate(self._lanes):
            if lane.next_close <= lane.watermark or self._late_pending[i]:
                out.extend(self._close(i))
        self._alerts += len(out)
        return out

    def flush(self) -> list[Alert]:
        """Close every open window (end of input). Later events for those windows are late."""
        self._bind()
        out: list[Alert] = []
        horizons = [lane.watermark for lane in self._lanes]
        for d, i in zip(self.detectors, self._det_lane, strict=True):
            end = d.open_until()
            findings = self._guarded_close(d, None)
            out.extend(self._alert(d, f) for f in findings)
            if end is not None and end > horizons[i]:
                horizons[i] = end
        for lane, horizon in zip(self._lanes, horizons, strict=True):
            if horizon > lane.watermark:
                lane.watermark = horizon
                lane.max_ts = max(lane.max_ts, horizon + lane.allowance)
            lane.next_close = _FAR_PAST
        self._late_pending = [False] * len(self._lanes)  # close_all raised them
        self._alerts += len(out)
        return out

    def advance(self, watermark: int) -> list[Alert]:
        """Move every kind's watermark to ``watermark`` (e.g. the stream's watermark when a key went
        quiet) and return the alerts of windows that closed. Never moves one back. Later events
        older than the new watermark's closed windows are late, exactly as if a newer event had
        been seen."""
        if watermark <= self.watermark:
            return []
        self._bind()
        out: list[Alert] = []
        for i, lane in enumerate(self._lanes):
            if watermark > lane.watermark:
                lane.watermark = watermark
                lane.max_ts = max(lane.max_ts, watermark + lane.allowance)
                if watermark >= lane.next_close or self._late_pending[i]:
                    out.extend(self._close(i))
        self._alerts += len(out)
        return out

    def adopt(self, old: DetectionEngine) -> list[str]:
        """Take over ``old``'s state: the engine of the same key under the configuration this one
        replaces (a job restored after its settings changed), so the new settings apply to it at
        once and nothing learned is lost. Each kind's clock (newest event, watermark) and the counts
        carry over, and each detector of the same id adopts its predecessor (``Detector.adopt``).
        Returns the ids of detectors whose open windows were dropped because their window layout
        changed; a detector new to the configuration starts empty, one left out is gone."""
        for kind, i in self._kind_lane.items():
            mine, theirs = self._lanes[i], old._lanes[old._kind_lane[kind]]
            mine.max_ts = max(mine.max_ts, theirs.max_ts)
            mine.watermark = max(mine.watermark, theirs.watermark)
            mine.next_close = _FAR_PAST  # recomputed by the next close
        previous = {d.meta.id: d for d in old.detectors}
        dropped = [
            d.meta.id for d in self.detectors if d.meta.id in previous and not d.adopt(previous[d.meta.id])
        ]
        self.copies = old.copies  # which interface observes each 5-tuple
        self.copies.configure(self.context.config.engine)
        self._events += old._events
        self._unknown += old._unknown
        self._late_events += old._late_events
        self._alerts += old._alerts
        self.failures = (old.failures + self.failures)[:_MAX_FAILURE_RECORDS]
        for det_id, n in old._failure_counts.items():
            self._failure_counts[det_id] = self._failure_counts.get(det_id, 0) + n
        self._bound = None  # the new detectors get the registry at the next call
        return dropped

    def drain_window_scores(self) -> list[dict[str, Any]]:
        """Per tenant and closed window, the anomaly detectors' score distribution (``anomaly_p50``,
        ``anomaly_p95``, ``anomaly_p99`` of 1 - p-value, ``scored`` rows) since the last call."""
        out: list[dict[str, Any]] = []
        for d in self.detectors:
            drain = getattr(d, "drain_window_scores", None)
            if drain is not None:
                out.extend(drain())
        return out

    def late(self, events: Iterable[Event]) -> None:
        """Events the caller found behind their kind's watermark, as the job's source finds them
        (``detectors.job_order``): each is handled as ``process`` handles a late event, whatever the
        engine's own watermark. A single-event rule's late findings are raised by the next
        ``process`` or ``flush``."""
        dispatch = self._dispatch
        for ev in events:
            self._events += 1
            dets = dispatch.get(ev.__class__)
            if dets is None:
                self._unknown += 1
            else:
                self._late_one(ev, dets)

    def lane_of(self, event: Event) -> int | None:
        """The index of ``event``'s watermark lane (the kinds that share its allowance), None for an
        unknown kind."""
        return self._lane_of.get(event.__class__)

    @property
    def lane_allowances(self) -> list[int]:
        """Each lane's allowance for disorder, in ms, by lane index."""
        return [lane.allowance for lane in self._lanes]

    def run(self, events: Iterable[Event]) -> list[Alert]:
        """``process`` then ``flush``: all alerts of a finite input."""
        out = self.process(events)
        out.extend(self.flush())
        return out

    @property
    def watermark(self) -> int:
        """The slowest kind's watermark (every kind's, once ``advance`` moved them together)."""
        return min(lane.watermark for lane in self._lanes)

    def watermark_of(self, kind: str) -> int:
        return self._lanes[self._kind_lane[kind]].watermark

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
            "watermark": self.watermark,
            "late_events": self._late_events,
            "interface_copies": self.copies.copies,
            "interface_pairs_forgotten": self.copies.forgotten,
            "late": sum(c["late"] for c in per.values()),
            "overflow": sum(c["overflow"] for c in per.values()),
            "failures": sum(self._failure_counts.values()),
            "detectors": per,
        }

    def state_size(self) -> int:
        return sum(d.state_size() for d in self.detectors)

    def health_counts(self) -> dict[str, tuple[int, int]]:
        """Running totals per detector id: (failures, overflow), the events it failed on and those
        a full pane could not track. Cheap (no state walk): the job reads it after every step."""
        failures = self._failure_counts
        return {
            d.meta.id: (failures.get(d.meta.id, 0), d.counters.get("overflow", 0)) for d in self.detectors
        }

    # --- internals -----------------------------------------------------------------------------
    def _build_dispatch(self) -> None:
        table: dict[type, list[Detector]] = {cls: [] for cls in _KIND_CLASSES.values()}
        for d in self.detectors:
            for kind in sorted(d.meta.kinds):
                table[_KIND_CLASSES[kind]].append(d)
        self._dispatch = {cls: tuple(ds) for cls, ds in table.items()}
        self._lane_of: dict[type, int] = {cls: self._kind_lane[kind] for kind, cls in _KIND_CLASSES.items()}
        self._lane_detectors = [
            tuple(d for d, i in zip(self.detectors, self._det_lane, strict=True) if i == lane)
            for lane in range(len(self._lanes))
        ]
        # The pane sizes of each lane's detectors (a few): where its next window can end.
        self._lane_panes = [tuple(sorted({d.window.pane_ms for d in dets})) for dets in self._lane_detectors]
        # Per lane: a single-event rule holds a late finding, raised by the lane's next close.
        self._late_pending = [any(d._late_findings for d in dets) for dets in self._lane_detectors]

    def _lane_of_detector(self, d: Detector) -> int:
        """A detector's windows close on one watermark: all its kinds must share an allowance."""
        lanes = {self._kind_lane[kind] for kind in d.meta.kinds}
        if len(lanes) != 1:
            raise ValueError(
                f"detector {d.meta.id} reads kinds {sorted(d.meta.kinds)} with different lateness "
                "allowances; its windows would have no single watermark to close on"
            )
        return lanes.pop()

    def _bind(self) -> None:
        reg = self.context.current_registry()
        if reg is not self._bound:
            for d in self.detectors:
                d.bind(reg)
            self._bound = reg

    def _process_chunk(self, chunk: list[Event]) -> list[Alert]:
        """Fast path: when no event of the chunk is behind its kind's running watermark, each
        detector gets its kind's events as one batch. Otherwise the chunk goes event by event
        (``_process_slow``). Both give the same state: lateness is decided per event against the
        running watermark of its kind."""
        lanes = self._lanes
        allowance = [lane.allowance for lane in lanes]
        max_ts = [lane.max_ts for lane in lanes]
        wm = [lane.watermark for lane in lanes]
        groups: dict[type, list[Event]] = {cls: [] for cls in self._dispatch}
        route = {cls: (self._lane_of[cls], group) for cls, group in groups.items()}
        unknown = 0
        for ev in chunk:
            entry = route.get(ev.__class__)
            if entry is None:
                unknown += 1
                continue
            i, group = entry
            ts = ev.ts
            if ts > max_ts[i]:
                max_ts[i] = ts
                if ts - allowance[i] > wm[i]:
                    wm[i] = ts - allowance[i]
            elif ts < wm[i]:
                return self._process_slow(chunk)
            group.append(ev)
        for lane, lane_max, lane_wm in zip(lanes, max_ts, wm, strict=True):
            lane.max_ts = lane_max
            lane.watermark = lane_wm
        self._events += len(chunk)
        self._unknown += unknown
        reg = self._bound or EMPTY_REGISTRY
        flows = groups.get(FlowEvent)
        if flows:
            groups[FlowEvent] = self.copies.keep(flows, reg, self.copied)  # type: ignore[arg-type,assignment]
        for cls, evs in groups.items():
            if not evs:
                continue
            batch = Batch(evs, reg)
            for d in self._dispatch[cls]:
                d.observe_batch(batch)
                if d.errors:
                    self._drain(d)
        out: list[Alert] = []
        for i, lane in enumerate(lanes):
            if lane.watermark >= lane.next_close:
                out.extend(self._close(i))
        return out

    def _process_slow(self, chunk: list[Event]) -> list[Alert]:
        out: list[Alert] = []
        dispatch = self._dispatch
        lane_of = self._lane_of
        reg = self._bound or EMPTY_REGISTRY
        for ev in chunk:
            self._events += 1
            dets = dispatch.get(ev.__class__)
            if dets is None:
                self._unknown += 1
                continue
            i = lane_of[ev.__class__]
            lane = self._lanes[i]
            ts = ev.ts
            if ts > lane.max_ts:
                lane.max_ts = ts
                if ts - lane.allowance > lane.watermark:
                    lane.watermark = ts - lane.allowance
            wm = lane.watermark
            if ts < wm:
                self._late_one(ev, dets)
            elif ev.__class__ is FlowEvent and self.copies.is_copy(ev, reg):
                self.copied.append(ev.id)
            elif dets:
                single = Batch([ev], reg)
                for d in dets:
                    d.observe_batch(single)
                    if d.errors:
                        self._drain(d)
            if wm >= lane.next_close:
                out.extend(self._close(i))
        return out

    def _late_one(self, ev: Event, dets: tuple[Detector, ...]) -> None:
        """An event behind its kind's watermark: each of its detectors' ``late`` (counted; a
        single-event rule keeps a late finding, raised at the next close)."""
        for d in dets:
            try:
                d.late(ev, ev.ts)
            except Exception as exc:
                d.error(ev, exc)
            if d.errors:
                self._drain(d)
            if d._late_findings:
                self._late_pending[self._lane_of[ev.__class__]] = True
        if dets:
            self._late_events += 1

    def _close(self, lane_index: int) -> list[Alert]:
        """Close every window of the lane's detectors that ended at or before its watermark; the
        next check is the next pane boundary of any of them (window ends are multiples of their
        pane), so a pane opened later by a new key can never be missed."""
        lane = self._lanes[lane_index]
        wm = lane.watermark
        out: list[Alert] = []
        for d in self._lane_detectors[lane_index]:
            due = d.next_close()
            if due is not None and due <= wm:
                out.extend(self._alert(d, f) for f in self._guarded_close(d, wm))
        self._late_pending[lane_index] = False
        lane.next_close = min(
            (wm - wm % pane + pane for pane in self._lane_panes[lane_index]), default=_FAR_FUTURE
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
            alert_id=make_alert_id(
                meta.id,
                f.entity,
                f.window.start,
                f.window.end,
                tenant=f.tenant,
                secret=self.context.alert_id_secret,
            ),
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
        state["_lane_of"] = None
        state["_lane_detectors"] = None
        state["_lane_panes"] = None
        state["_late_pending"] = None
        state["_bound"] = None
        state["copied"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "copies" not in state:  # a checkpoint from before interface copies (the defaults; adopt sets)
            self.copies = InterfaceCopies.for_settings(EngineSettings())
        self.copied = []
        self._build_dispatch()
