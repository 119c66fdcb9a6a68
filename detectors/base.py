"""The detector interface.

A detector declares its metadata (``meta``), the event kinds it reads (``meta.kinds``) and the
configuration parameters it needs (``param_spec``). It keeps per-key state in event-time windows
(``detectors.windows``): panes of one window size (tumbling) or one slide (sliding), each a dict
key -> state capped at ``engine.max_keys_per_window`` keys. The ``DetectionEngine`` drives it:

- ``observe_batch(batch)``: events of one kind, in stream order, none of them late for it;
- ``late(event, ts)``: an event whose windows already closed (counted, never silently lost);
- ``close(watermark)``: findings of windows whose end <= watermark, which are then freed;
- ``close_all()``: end of input.

Hot loops work on a whole ``Batch`` so per-event work is a few local lookups; enrichment that
several detectors need (tenant of a flow's source and destination) is computed once per batch.
An exception while handling one event is recorded with that event's id (``errors``) and the loop
goes on; the engine counts, logs and (strict mode) raises it.

Two flavours live in ``detectors.rule`` (stateless, one event at a time, hits suppressed per
window) and ``detectors.windowed`` (stateful over an entity's events). Detectors never mutate
events (frozen structs; ``extra`` dicts are only read) and hold only picklable state. What a
detector learns beyond its windows (a process table, a baseline, what it reported) is named in
``learned``, so that the detector built from a changed configuration takes it over (``adopt``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, cast

from detectors.alert import Attack, Entity
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import ANSWER_MASK, ONE_WAY, RESPONDER, ROLE_MASK, flow_views
from detectors.meta import DetectorMeta
from detectors.windows import Window, WindowSpec
from ingest.schema import AuditEvent, AuthEvent, Event, FlowEvent, ProcessEvent
from ingest.tenants import TenantRegistry

__all__ = ["EMPTY_REGISTRY", "MANAGEMENT", "Batch", "Detector", "Finding"]

MANAGEMENT: Final = "@management"
"""``Batch.dst_tenants`` value for a management-plane address (never a tenant id)."""

EMPTY_REGISTRY: Final = TenantRegistry()
_FAR_PAST: Final = -(2**62)
_MAX_ERRORS_KEPT: Final = 100
_RESPONSE_VIEWS: Final = frozenset(
    v for v in range(ROLE_MASK + ANSWER_MASK + ONE_WAY + 1) if v & ROLE_MASK == RESPONDER
)


class Batch:
    """Events of one kind for one detector call, with flow enrichment computed at most once."""

    __slots__ = ("_dst", "_initiated", "_responses", "_src", "_views", "events", "registry")

    def __init__(self, events: list[Event], registry: TenantRegistry) -> None:
        self.events = events
        self.registry = registry
        self._src: list[str | None] | None = None
        self._dst: list[str | None] | None = None
        self._views: list[int] | None = None
        self._initiated: Batch | None = None
        self._responses: list[tuple[FlowEvent, int]] | None = None

    # Typed views: the engine only puts events of one kind in a batch (the detector's kinds).
    @property
    def flows(self) -> list[FlowEvent]:
        return cast(list[FlowEvent], self.events)

    @property
    def processes(self) -> list[ProcessEvent]:
        return cast(list[ProcessEvent], self.events)

    @property
    def audits(self) -> list[AuditEvent]:
        return cast(list[AuditEvent], self.events)

    @property
    def auths(self) -> list[AuthEvent]:
        return cast(list[AuthEvent], self.events)

    @property
    def src_tenants(self) -> list[str | None]:
        """Tenant owning each flow's source address (None outside every tenant)."""
        if self._src is None:
            # One registry lookup per distinct address of the batch (a batch repeats its addresses).
            ips = [ev.src_ip for ev in self.flows]
            tof = self.registry.tenant_of_ip
            of = {ip: tof(ip) for ip in set(ips)}
            self._src = [of[ip] for ip in ips]
        return self._src

    @property
    def flow_views(self) -> list[int]:
        """``detectors.flowdir.flow_view`` of each flow: who initiated it, whether it was answered."""
        if self._views is None:
            self._views = flow_views(self.flows)
        return self._views

    def preset(self, *, src_tenants: list[str | None], flow_views: list[int]) -> None:
        """Enrichment already computed for these events (a detector's sub-batch of a batch)."""
        self._src = src_tenants
        self._views = flow_views

    def initiated(self) -> Batch:
        """The flows without the response records (``flowdir``), which are never an alert's subject;
        the batch itself when it has none. Computed once and shared by the detectors."""
        if self._initiated is None:
            views = self.flow_views
            if _RESPONSE_VIEWS.isdisjoint(views):
                self._initiated = self
            else:
                keep = [i for i, v in enumerate(views) if v & ROLE_MASK != RESPONDER]
                sub = Batch([self.events[i] for i in keep], self.registry)
                sub._views = [views[i] for i in keep]
                if self._src is not None:
                    sub._src = [self._src[i] for i in keep]
                if self._dst is not None:
                    sub._dst = [self._dst[i] for i in keep]
                sub._initiated = sub
                self._initiated = sub
        return self._initiated

    def responses(self) -> list[tuple[FlowEvent, int]]:
        """The response records with their views: what ``initiated`` leaves out (a server's data
        to its client, read beside the client's records by a rule). Computed once and shared."""
        if self._responses is None:
            views = self.flow_views
            if _RESPONSE_VIEWS.isdisjoint(views):
                self._responses = []
            else:
                flows = self.flows
                self._responses = [(flows[i], v) for i, v in enumerate(views) if v & ROLE_MASK == RESPONDER]
        return self._responses

    @property
    def dst_tenants(self) -> list[str | None]:
        """Tenant owning each flow's destination, ``MANAGEMENT`` for the management plane, else None."""
        if self._dst is None:
            reg = self.registry
            tof, mgmt = reg.tenant_of_ip, reg.is_management_ip
            ips = [ev.dst_ip for ev in self.flows]
            of: dict[str, str | None] = {}  # one registry lookup per distinct address of the batch
            for dst in set(ips):
                t = tof(dst)
                of[dst] = t if t is not None else (MANAGEMENT if mgmt(dst) else None)
            self._dst = [of[ip] for ip in ips]
        return self._dst


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


class Detector(ABC):
    """Base of every detector; see the module docstring for the protocol."""

    meta: ClassVar[DetectorMeta]
    param_spec: ClassVar[ParamSpec] = {}
    # Attributes holding what the detector learned beyond its windows (process tables, baselines,
    # what it reported), taken over by the same detector under a new configuration (``adopt``).
    learned: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: DetectorConfig) -> None:
        settings = config.settings_for(self.meta.id, self.param_spec)
        self.enabled = settings.enabled
        self.window: WindowSpec = settings.window
        self.params: Mapping[str, Any] = settings.params
        self.max_keys = config.engine.max_keys_per_window
        self.max_distinct = config.engine.max_distinct_per_key
        self.max_ids = config.engine.evidence_event_ids
        self.late_policy = config.engine.late_rule_hits
        self.reg: TenantRegistry = EMPTY_REGISTRY
        self.counters: dict[str, int] = {"late": 0, "overflow": 0, "findings": 0, "suppressed": 0}
        self.errors: list[tuple[str, Exception]] = []
        self._size = self.window.size_ms
        self._pane = self.window.pane_ms
        self._panes: dict[int, dict[Hashable, Any]] = {}
        self._cur_start = -1
        self._cur_bucket: dict[Hashable, Any] = {}
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
    def observe_batch(self, batch: Batch) -> None:
        """Add events of one kind (stream order), none late for this detector."""

    @abstractmethod
    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        """Findings of one closed window (all its keys at once, so models can score a batch)."""

    def new_state(self, key: Hashable) -> Any:
        raise NotImplementedError(f"{self.meta.id} keeps no per-key state")

    def merge(self, into: Any, other: Any) -> None:
        """Fold ``other`` state into ``into`` (needed for sliding windows)."""
        raise NotImplementedError(f"{self.meta.id} does not support sliding windows")

    def window_keys(self, panes: list[dict[Hashable, Any]]) -> Iterable[Hashable]:
        """The keys a sliding window (its panes, in time order) is finished with, in first-seen
        order: all of them. A detector may leave out keys that cannot reach a finding, so a window's
        close merges fewer states."""
        return dict.fromkeys(key for pane in panes for key in pane)

    def late(self, event: Event, ts: int) -> None:
        """An event whose windows already closed: counted; subclasses may do more."""
        self.counters["late"] += 1

    # --- helpers -------------------------------------------------------------------------------
    def observe(self, event: Event) -> None:
        """One event (tests and the engine's slow path): a batch of one."""
        self.observe_batch(Batch([event], self.reg))

    def error(self, event: Event, exc: Exception) -> None:
        """Record a failure on one event; the engine counts and logs it."""
        self.counters["failures"] = self.counters.get("failures", 0) + 1
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append((getattr(event, "id", "?"), exc))

    def open_pane(self, ts: int) -> dict[Hashable, Any] | None:
        """The pane dict for event time ``ts`` if one is open (None: nothing was kept there yet)."""
        return self._panes.get(ts - ts % self._pane)

    def bucket(self, ts: int) -> dict[Hashable, Any]:
        """The pane dict for event time ``ts`` (created on first use)."""
        start = ts - ts % self._pane
        if start == self._cur_start:
            return self._cur_bucket
        bucket = self._panes.get(start)
        if bucket is None:
            bucket = self._panes[start] = {}
        self._cur_start = start
        self._cur_bucket = bucket
        return bucket

    def state(self, ts: int, key: Hashable) -> Any:
        """The state of ``key`` in the pane of ``ts``, created if room; None when the pane is full."""
        start = ts - ts % self._pane
        bucket = self._cur_bucket if start == self._cur_start else self.bucket(ts)
        st = bucket.get(key)
        if st is None:
            if len(bucket) >= self.max_keys:
                self.counters["overflow"] += 1
                return None
            st = bucket[key] = self.new_state(key)
        return st

    # --- closing -------------------------------------------------------------------------------
    def is_closed(self, ts: int, watermark: int) -> bool:
        """True when every window containing ``ts`` has closed."""
        return ts - ts % self._pane + self._size <= watermark

    def next_close(self) -> int | None:
        """Event time at which the earliest open window closes (None: nothing open)."""
        if self._late_findings:
            return _FAR_PAST
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
            return self.close(_FAR_PAST)
        return self.close(max(self._panes) + self._size)

    def open_until(self) -> int | None:
        """End of the last open window (None: nothing open)."""
        return max(self._panes) + self._size if self._panes else None

    def state_size(self) -> int:
        """Keys held across all open panes (the bounded-state check)."""
        return sum(len(b) for b in self._panes.values())

    def adopt(self, old: Detector) -> bool:
        """Take over the state of ``old``, this detector under the configuration this one replaces
        (a job restored after its settings changed). The attributes named in ``learned`` carry over:
        one whose object has an ``adopt`` method takes the old one's learning into its new settings,
        any other is taken as it is. Counters add up. Open windows carry over when the window layout
        is the same (True); else they are dropped (False), since their panes cannot be cut into the
        new windows, and those windows start over. A detector of another class under the same id
        takes nothing."""
        if type(old) is not type(self):  # another implementation under the same id: start over
            return not old._panes
        for name in self.learned:
            theirs = getattr(old, name, None)
            if theirs is None:
                continue
            adopt = getattr(getattr(self, name, None), "adopt", None)
            if adopt is not None:
                adopt(theirs)
            else:
                setattr(self, name, theirs)
        for key, n in old.counters.items():
            self.counters[key] = self.counters.get(key, 0) + n
        self._last_alert_end = old._last_alert_end
        self._late_findings = old._late_findings  # findings made, not yet raised
        if (old._size, old._pane, old.window.sliding) != (self._size, self._pane, self.window.sliding):
            return not old._panes
        self._panes = old._panes
        self._closed_through = old._closed_through
        self._reset_cursor()
        return True

    def reset(self) -> None:
        self._panes.clear()
        self._late_findings.clear()
        self._last_alert_end.clear()
        self.errors.clear()
        self._closed_through = None
        self._reset_cursor()
        for k in self.counters:
            self.counters[k] = 0

    def _reset_cursor(self) -> None:
        self._cur_start = -1
        self._cur_bucket = {}

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
            panes = [self._panes[p] for p in range(start, end, slide) if p in self._panes]
            merged: dict[Hashable, Any] = {}
            for key in self.window_keys(panes):
                acc = merged[key] = self.new_state(key)
                for pane in panes:
                    st = pane.get(key)
                    if st is not None:
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
                self.counters["suppressed"] += 1
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
        state["_cur_bucket"] = {}
        state["errors"] = []
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.reg is None:
            self.reg = EMPTY_REGISTRY
