"""The detector interface.

A detector declares its metadata (``meta``), the event kinds it reads, and the configuration
parameters it needs (``param_spec``). It keeps per-key state in event-time windows (see
``detectors.windows``): panes of one window size (tumbling) or one slide (sliding), each a dict
key -> state, capped at ``engine.max_keys_per_window`` keys. The ``DetectionEngine`` drives it:

- ``observe(event, ts)`` for every event of its kinds that is not late for it;
- ``late(event, ts)`` for an event whose window already closed (counted, never silently lost);
- ``close(watermark)`` returns the findings of windows whose end <= watermark and frees them;
- ``close_all()`` at end of input.

Two flavours:

- ``Rule``: stateless over one event (``match(event) -> Hit | None``). Hits are suppressed per
  (tenant, entity, window): one finding that counts occurrences.
- ``WindowedDetector``: stateful over an entity's events (``key``, ``new_state``, ``update``,
  ``finish_key``; ``merge`` for sliding windows).

Detectors never mutate events (they are frozen structs; ``extra`` dicts are only read) and hold
nothing that does not pickle: their whole state lives in plain dicts, lists and small slotted
objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from detectors.alert import Attack, Entity
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta
from detectors.windows import Window, WindowSpec
from ingest.schema import Event
from ingest.tenants import TenantRegistry

__all__ = ["Detector", "Finding", "Hit", "HitState", "Rule", "WindowedDetector", "entity_of_event"]

S = TypeVar("S")
_EMPTY_REGISTRY = TenantRegistry()


class Hit(NamedTuple):
    """One event matching a rule: the entity it is about, the tenant whose telemetry it is, and a
    short detail (``"exe=/bin/sh"``) that the alert counts."""

    entity: Entity
    tenant: str | None
    detail: str


@dataclass(slots=True)
class Finding:
    """What a detector reports for one (tenant, entity, window); the engine turns it into an Alert."""

    entity: Entity
    tenant: str | None
    window: Window
    score: int
    summary: str
    first_seen: int
    last_seen: int
    count: int
    event_ids: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)
    attack: Attack | None = None


def entity_of_event(event: Event) -> Entity:
    """VM if the event names one, else its host, else its source address, else its id."""
    if event.vm:
        return Entity("vm", event.vm)
    if event.host:
        return Entity("host", event.host)
    src = getattr(event, "src_ip", None)
    if src:
        return Entity("ip", src)
    return Entity("host", "unknown")


class HitState:
    """Suppression state of a rule for one (tenant, entity) in one window."""

    __slots__ = ("count", "details", "entity", "first", "ids", "last", "tenant")

    def __init__(self, entity: Entity, tenant: str | None) -> None:
        self.entity = entity
        self.tenant = tenant
        self.count = 0
        self.first = 0
        self.last = 0
        self.ids: list[str] = []
        self.details: dict[str, int] = {}

    def add(self, ts: int, event_id: str, detail: str, max_ids: int, max_details: int) -> None:
        if self.count == 0 or ts < self.first:
            self.first = ts
        if ts > self.last or self.count == 0:
            self.last = ts
        self.count += 1
        if len(self.ids) < max_ids:
            self.ids.append(event_id)
        details = self.details
        if detail in details:
            details[detail] += 1
        elif len(details) < max_details:
            details[detail] = 1

    def merge(self, other: HitState, max_ids: int, max_details: int) -> None:
        if other.count == 0:
            return
        if self.count == 0 or other.first < self.first:
            self.first = other.first
        if self.count == 0 or other.last > self.last:
            self.last = other.last
        self.count += other.count
        room = max_ids - len(self.ids)
        if room > 0:
            self.ids.extend(i for i in other.ids[:room] if i not in self.ids)
        for detail, n in other.details.items():
            if detail in self.details:
                self.details[detail] += n
            elif len(self.details) < max_details:
                self.details[detail] = n

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.entity, self.tenant, self.count, self.first, self.last, self.ids, self.details)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.entity, self.tenant, self.count, self.first, self.last, self.ids, self.details = state


class Detector(ABC):
    """Base of every detector; see the module docstring for the protocol."""

    meta: ClassVar[DetectorMeta]
    param_spec: ClassVar[ParamSpec] = {}
    max_details: ClassVar[int] = 8

    def __init__(self, config: DetectorConfig) -> None:
        settings = config.settings_for(self.meta.id, self.param_spec)
        self.enabled = settings.enabled
        self.window: WindowSpec = settings.window
        self.params: Mapping[str, Any] = settings.params
        self.max_keys = config.engine.max_keys_per_window
        self.max_distinct = config.engine.max_distinct_per_key
        self.max_ids = config.engine.evidence_event_ids
        self.late_policy = config.engine.late_rule_hits
        self.reg: TenantRegistry = _EMPTY_REGISTRY
        self.counters: dict[str, int] = {"late": 0, "overflow": 0, "findings": 0}
        self._size = self.window.size_ms
        self._pane = self.window.pane_ms
        self._panes: dict[int, dict[Hashable, Any]] = {}
        self._cur_start = -1
        self._cur_bucket: dict[Hashable, Any] | None = None
        self._closed_through: int | None = None  # sliding: end of the last window closed
        self._late_findings: list[Finding] = []
        self._last_alert_end: dict[tuple[str | None, Entity], int] = {}
        self.configure(config)

    # --- hooks for subclasses ------------------------------------------------------------------
    def configure(self, config: DetectorConfig) -> None:  # noqa: B027 - optional hook
        """Precompute sets and thresholds from ``self.params`` (and ``config.shared``)."""

    def bind(self, registry: TenantRegistry) -> None:
        """Called by the engine when the tenant registry is (re)loaded."""
        self.reg = registry

    @abstractmethod
    def observe(self, event: Event, ts: int) -> None:
        """Add one event that is not late for this detector."""

    @abstractmethod
    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        """Findings of one closed window (all its keys at once, so models can score a batch)."""

    def merge(self, into: Any, other: Any) -> None:
        """Fold ``other`` state into ``into`` (needed for sliding windows)."""
        raise NotImplementedError(f"{self.meta.id} does not support sliding windows")

    def new_state(self, key: Hashable) -> Any:
        raise NotImplementedError

    def late(self, event: Event, ts: int) -> None:
        """An event whose window already closed: counted; subclasses may do more."""
        self.counters["late"] += 1

    # --- window bookkeeping (used by subclasses' ``observe``) ----------------------------------
    def bucket(self, ts: int) -> dict[Hashable, Any]:
        start = ts - ts % self._pane
        if start == self._cur_start:
            return self._cur_bucket  # type: ignore[return-value]
        bucket = self._panes.get(start)
        if bucket is None:
            bucket = self._panes[start] = {}
        self._cur_start = start
        self._cur_bucket = bucket
        return bucket

    def state(self, ts: int, key: Hashable) -> Any:
        """The state of ``key`` in the pane of ``ts``, created if room; None when the pane is full."""
        bucket = self.bucket(ts)
        st = bucket.get(key)
        if st is None:
            if len(bucket) >= self.max_keys:
                self.counters["overflow"] += 1
                return None
            st = bucket[key] = self.new_state(key)
        return st

    def is_closed(self, ts: int, watermark: int) -> bool:
        """True when every window containing ``ts`` has closed."""
        return ts - ts % self._pane + self._size <= watermark

    def next_close(self) -> int | None:
        """Event time at which the earliest open window closes (None: nothing open)."""
        if self._late_findings:
            return -(2**62)
        if not self._panes:
            return None
        first = min(self._panes)
        if not self.window.sliding:
            return first + self._size
        end = first + self._pane
        if self._closed_through is not None and end <= self._closed_through:
            end = self._closed_through + self._pane
        return end

    def close(self, watermark: int) -> list[Finding]:
        out = self._late_findings
        self._late_findings = []
        if self.window.sliding:
            out.extend(self._close_sliding(watermark))
        else:
            for start in sorted(s for s in self._panes if s + self._size <= watermark):
                states = self._panes.pop(start)
                out.extend(self.finish(Window(start, start + self._size), states))
        self._reset_cursor()
        self.counters["findings"] += len(out)
        return out

    def close_all(self) -> list[Finding]:
        if not self._panes:
            return self.close(-(2**62))
        return self.close(max(self._panes) + self._size)

    def state_size(self) -> int:
        """Keys held across all open panes (the bounded-state check)."""
        return sum(len(b) for b in self._panes.values())

    def reset(self) -> None:
        self._panes.clear()
        self._late_findings.clear()
        self._last_alert_end.clear()
        self._closed_through = None
        self._reset_cursor()
        for k in self.counters:
            self.counters[k] = 0

    def _reset_cursor(self) -> None:
        self._cur_start = -1
        self._cur_bucket = None

    def _close_sliding(self, watermark: int) -> list[Finding]:
        out: list[Finding] = []
        if not self._panes:
            return out
        size, slide = self._size, self._pane
        end = min(self._panes) + slide
        if self._closed_through is not None:
            end = max(end, self._closed_through + slide)
        last = max(self._panes) + size
        while end <= watermark and end <= last:
            start = end - size
            merged: dict[Hashable, Any] = {}
            for p in range(start, end, slide):
                for key, st in self._panes.get(p, {}).items():
                    acc = merged.get(key)
                    if acc is None:
                        acc = merged[key] = self.new_state(key)
                    self.merge(acc, st)
            if merged:
                out.extend(self._suppress_overlap(self.finish(Window(start, end), merged)))
            self._closed_through = end
            for p in [p for p in self._panes if p + size <= end]:
                del self._panes[p]
            end += slide
        return out

    def _suppress_overlap(self, findings: list[Finding]) -> list[Finding]:
        """Sliding windows overlap: one (tenant, entity) raises once per window span, not per slide."""
        last = self._last_alert_end
        out = []
        for f in findings:
            k = (f.tenant, f.entity)
            prev = last.get(k)
            if prev is not None and prev > f.window.start:
                self.counters["suppressed"] = self.counters.get("suppressed", 0) + 1
                continue
            last[k] = f.window.end
            out.append(f)
        horizon = (self._closed_through or 0) - self._size
        for k in [k for k, end in last.items() if end <= horizon]:
            del last[k]
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["reg"] = None  # the engine binds the current registry before the next batch
        state["_cur_start"] = -1
        state["_cur_bucket"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.reg is None:
            self.reg = _EMPTY_REGISTRY


class Rule(Detector):
    """A stateless rule over one event; hits are suppressed per (tenant, entity, window)."""

    @abstractmethod
    def match(self, event: Event) -> Hit | None:
        """A hit when the event is a signal; never mutates the event."""

    def summarize(self, st: HitState) -> str:
        top = max(st.details.items(), key=lambda kv: (kv[1], kv[0]))[0] if st.details else ""
        times = "once" if st.count == 1 else f"{st.count} times"
        where = f" in tenant {st.tenant}" if st.tenant else ""
        return f"{self.meta.title}: {st.entity.type} {st.entity.id}{where}, {times} ({top})"

    def score_for(self, st: HitState) -> int:
        return self.meta.score

    def attack_for(self, st: HitState) -> Attack | None:
        return None

    def new_state(self, key: Hashable) -> HitState:
        entity, tenant = key  # type: ignore[misc]
        return HitState(entity, tenant)

    def observe(self, event: Event, ts: int) -> None:
        hit = self.match(event)
        if hit is None:
            return
        st = self.state(ts, (hit.entity, hit.tenant))
        if st is not None:
            st.add(ts, event.id, hit.detail, self.max_ids, self.max_details)

    def late(self, event: Event, ts: int) -> None:
        self.counters["late"] += 1
        if self.late_policy != "alert":
            return
        hit = self.match(event)
        if hit is None:
            return
        st = HitState(hit.entity, hit.tenant)
        st.add(ts, event.id, hit.detail, self.max_ids, self.max_details)
        finding = self._finding(Window(ts, ts + 1), st)
        finding.evidence["late"] = True
        self._late_findings.append(finding)

    def merge(self, into: HitState, other: HitState) -> None:
        into.merge(other, self.max_ids, self.max_details)

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        return [self._finding(window, st) for st in states.values()]

    def _finding(self, window: Window, st: HitState) -> Finding:
        return Finding(
            entity=st.entity,
            tenant=st.tenant,
            window=window,
            score=self.score_for(st),
            summary=self.summarize(st),
            first_seen=st.first,
            last_seen=st.last,
            count=st.count,
            event_ids=list(st.ids),
            evidence={"details": dict(st.details)},
            attack=self.attack_for(st),
        )


class WindowedDetector(Detector, Generic[S]):
    """Stateful over the events of one key (entity) in a window."""

    @abstractmethod
    def key(self, event: Event) -> Hashable | None:
        """The key an event belongs to (None: not for this detector)."""

    @abstractmethod
    def new_state(self, key: Hashable) -> S: ...

    @abstractmethod
    def update(self, state: S, event: Event) -> None: ...

    @abstractmethod
    def finish_key(self, window: Window, key: Hashable, state: S) -> Finding | None: ...

    def observe(self, event: Event, ts: int) -> None:
        key = self.key(event)
        if key is None:
            return
        st = self.state(ts, key)
        if st is not None:
            self.update(st, event)

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        out = []
        for key, st in states.items():
            f = self.finish_key(window, key, st)
            if f is not None:
                out.append(f)
        return out

