"""``simulate``: topology, scenario plan and ground truth up front; events streamed per time slice.

Injected scenario events are few (thousands) and are built when ``simulate`` is called, so the
ground truth is known before a single event is streamed. Background events are regenerated slice
by slice each time ``SimResult.events()`` is iterated, so memory is bounded by one slice however
long the run, and iterating twice yields the same events.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter

from ingest.schema import Event
from ingest.simulator.background import Background, background_truth, diurnal_factor
from ingest.simulator.config import SimConfig, resolve_scenarios
from ingest.simulator.factory import EventMaker
from ingest.simulator.scenarios import SCENARIOS, Ctx
from ingest.simulator.topology import Topology, build_topology
from ingest.simulator.truth import TruthEntity, TruthRecord
from ingest.tenants import TenantRegistry

__all__ = ["SimResult", "simulate"]

_by_ts = attrgetter("ts")


@dataclass
class SimResult:
    config: SimConfig
    topology: Topology
    truth: list[TruthRecord]  # sorted by start, then scenario name
    injected: list[Event] = field(repr=False)  # every scenario event, sorted by ts

    @property
    def registry(self) -> TenantRegistry:
        return self.topology.registry

    def context_truth(self) -> list[TruthRecord]:
        """What the background carries that a detector may rightly report (``truth``: context)."""
        cfg = self.config
        return background_truth(self.topology, cfg.start_ms, cfg.end_ms, cfg.events_per_s)

    def slices(self) -> Iterator[tuple[int, int]]:
        cfg = self.config
        step = max(1, int(cfg.slice_s * 1000))
        start, end = cfg.start_ms, cfg.end_ms
        while start < end:
            yield start, min(end, start + step)
            start += step

    def events(self) -> Iterator[Event]:
        """All events (background and injected) sorted by ts; a fresh, identical pass each call."""
        background = Background(self.topology, self.config.seed, self.config.diurnal_shift_ms)
        injected = self.injected
        j = 0
        for index, (lo, hi) in enumerate(self.slices()):
            batch = background.slice(index, lo, hi, self.config.events_per_s)
            k = j
            while k < len(injected) and injected[k].ts < hi:
                k += 1
            if k > j:
                batch.extend(injected[j:k])
                batch.sort(key=_by_ts)
                j = k
            yield from batch

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def expected_background(self) -> float:
        """Mean number of background events the config asks for (diurnal curve included)."""
        rate, shift = self.config.events_per_s, self.config.diurnal_shift_ms
        return sum(
            rate * (hi - lo) / 1000 * diurnal_factor((lo + hi) // 2 + shift) for lo, hi in self.slices()
        )

    def estimated_events(self) -> int:
        return round(self.expected_background()) + len(self.injected)


def simulate(config: SimConfig) -> SimResult:
    """Build the tenants, plan and inject every selected scenario, and return a replayable result."""
    topo = build_topology(config.seed, config.tenants, config.hosts, config.vms_per_tenant)
    counts = resolve_scenarios(config.scenarios, config.lookalikes)
    instances = [(name, i) for name, count in counts.items() for i in range(count)]
    plan_rng = random.Random(f"{config.seed}:plan")
    plan_rng.shuffle(instances)
    total = config.end_ms - config.start_ms
    truth: list[TruthRecord] = []
    injected: list[Event] = []
    for k, (name, i) in enumerate(instances):
        spec = SCENARIOS[name]
        longest = min(spec.span_s[1] * 1000, total / 2)
        # Spread instances evenly over the run, each in its own slot, leaving room for its duration.
        slot = (k + plan_rng.uniform(0.1, 0.9)) / len(instances)
        start = config.start_ms + int(slot * max(0.0, total - longest - 1))
        stream = f"{config.seed}:sc:{name}:{i}"
        ctx = Ctx(
            rng=random.Random(stream),
            topo=topo,
            make=EventMaker(stream),
            start=start,
            span=config.end_ms - 1 - start,
            lo_s=spec.span_s[0],
            hi_s=spec.span_s[1],
        )
        out = spec.build(ctx)
        if not out.events:
            raise RuntimeError(f"scenario {name} injected no events")
        stamps = [e.ts for e in out.events]
        if min(stamps) < config.start_ms or max(stamps) >= config.end_ms:
            raise RuntimeError(f"scenario {name} put events outside the run")
        truth.append(
            TruthRecord(
                scenario=name,
                category=spec.category,
                tenant=out.tenant,
                entity=TruthEntity(type=out.entity_type, id=out.entity_id),
                start=min(stamps),
                end=max(stamps),
                event_ids=[e.id for e in out.events],
                benign=spec.benign,
                detail=out.detail,
            )
        )
        injected.extend(out.events)
    truth.sort(key=lambda r: (r.start, r.scenario))
    injected.sort(key=_by_ts)
    return SimResult(config=config, topology=topo, truth=truth, injected=injected)
