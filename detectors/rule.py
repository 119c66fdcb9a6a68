"""Stateless rules: one event in, a hit or nothing out; hits suppressed per (tenant, entity, window).

A hit may carry ``labels``, the evidence keys an analyst filters and groups on (the host, the VM,
the tenants involved, the kind of behaviour); the alert's evidence holds each label's most frequent
value among the window's hits, so dashboards read one value per alert.

``match(event)`` is the rule's definition and is what late events go through. A rule may
override ``observe_batch`` with a faster loop (using the batch's enrichment); the conformance
tests check that the fast loop and ``match`` agree on every sample.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar, NamedTuple, cast

from detectors.alert import Attack, Entity
from detectors.base import Batch, Detector, Finding
from detectors.windows import Window
from ingest.schema import Event

__all__ = ["Hit", "HitState", "Rule"]


class Hit(NamedTuple):
    """One event matching a rule: the entity it is about, the tenant whose telemetry it is, and a
    short detail (``"execve /bin/sh"``) that the alert counts, and optional evidence labels."""

    entity: Entity
    tenant: str | None
    detail: str
    labels: Mapping[str, str] | None = None


def _most_frequent(counts: dict[str, int]) -> str:
    """The value seen most often; ties go to the greatest value, so the choice never depends on order."""
    return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]


def _count_into(into: dict[str, int], value: str, n: int, cap: int) -> None:
    if value in into:
        into[value] += n
    elif len(into) < cap:
        into[value] = n


class HitState:
    """Suppression state of a rule for one (tenant, entity) in one window."""

    __slots__ = ("count", "details", "entity", "first", "ids", "labels", "last", "tenant")

    def __init__(self, entity: Entity, tenant: str | None) -> None:
        self.entity = entity
        self.tenant = tenant
        self.count = 0
        self.first = 0
        self.last = 0
        self.ids: list[str] = []
        self.details: dict[str, int] = {}
        self.labels: dict[str, dict[str, int]] = {}  # label -> value -> hits

    def add(
        self,
        ts: int,
        event_id: str,
        detail: str,
        max_ids: int,
        max_details: int,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if self.count == 0:
            self.first = self.last = ts
        elif ts < self.first:
            self.first = ts
        elif ts > self.last:
            self.last = ts
        self.count += 1
        if len(self.ids) < max_ids:
            self.ids.append(event_id)
        _count_into(self.details, detail, 1, max_details)
        if labels:
            for name, value in labels.items():
                _count_into(self.labels.setdefault(name, {}), value, 1, max_details)

    def merge(self, other: HitState, max_ids: int, max_details: int) -> None:
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
        for detail, n in other.details.items():
            _count_into(self.details, detail, n, max_details)
        for name, values in other.labels.items():
            mine = self.labels.setdefault(name, {})
            for value, n in values.items():
                _count_into(mine, value, n, max_details)

    def top_labels(self) -> dict[str, str]:
        """Each label's most frequent value: the evidence keys of the alert."""
        return {name: _most_frequent(values) for name, values in self.labels.items() if values}

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self.entity,
            self.tenant,
            self.count,
            self.first,
            self.last,
            self.ids,
            self.details,
            self.labels,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        # Keyed state written before labels existed holds seven fields.
        self.entity, self.tenant, self.count, self.first, self.last, self.ids, self.details = state[:7]
        self.labels = state[7] if len(state) > 7 else {}


class Rule(Detector):
    """A stateless rule over one event."""

    max_details: ClassVar[int] = 8

    @abstractmethod
    def match(self, event: Event) -> Hit | None:
        """A hit when the event is a signal; never mutates the event."""

    # --- presentation hooks --------------------------------------------------------------------
    def summarize(self, st: HitState) -> str:
        top = max(st.details.items(), key=lambda kv: (kv[1], kv[0]))[0] if st.details else ""
        times = "once" if st.count == 1 else f"{st.count} times"
        where = f" in tenant {st.tenant}" if st.tenant else ""
        more = f" (+{len(st.details) - 1} other)" if len(st.details) > 1 else ""
        return f"{self.meta.title}: {st.entity.type} {st.entity.id}{where}, {times}: {top}{more}"

    def score_for(self, st: HitState) -> int:
        return self.meta.score

    def attack_for(self, st: HitState) -> Attack | None:
        return None

    # --- engine protocol -----------------------------------------------------------------------
    def observe_batch(self, batch: Batch) -> None:
        match = self.match
        record = self.record
        for ev in batch.events:
            try:
                hit = match(ev)
                if hit is not None:
                    record(ev, hit)
            except Exception as exc:
                self.error(ev, exc)

    def record(self, ev: Event, hit: Hit) -> None:
        ts = ev.ts
        start = ts - ts % self._pane
        bucket = self._cur_bucket if start == self._cur_start else self.bucket(ts)
        key = (hit.entity, hit.tenant)
        st = bucket.get(key)
        if st is None:
            if len(bucket) >= self.max_keys:
                self.counters["overflow"] += 1
                return
            st = bucket[key] = HitState(hit.entity, hit.tenant)
        st.add(ts, ev.id, hit.detail, self.max_ids, self.max_details, hit.labels)

    def new_state(self, key: Hashable) -> HitState:
        entity, tenant = cast(tuple[Entity, str | None], key)
        return HitState(entity, tenant)

    def late(self, event: Event, ts: int) -> None:
        self.counters["late"] += 1
        if self.late_policy != "alert":
            return
        hit = self.match(event)
        if hit is None:
            return
        st = HitState(hit.entity, hit.tenant)
        st.add(ts, event.id, hit.detail, self.max_ids, self.max_details, hit.labels)
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
            evidence={**st.top_labels(), "details": dict(st.details)},
            attack=self.attack_for(st),
        )
