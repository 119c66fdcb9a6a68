"""``detectors.job_order.OrderedFeed``: a file's events reach the engine in the job's order, so the
alerts offline do not depend on the order the exporter wrote its records in, and an event is late
exactly where the engine fed the file directly finds it late."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import pytest

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, Lateness
from detectors.job_order import MICRO_BATCH_MS, OrderedFeed
from detectors.registry import all_detectors
from ingest.schema import Event, FlowEvent
from ingest.simulator import SimConfig, simulate
from ingest.tenants import TenantRegistry

_LATENESS = Lateness.for_flows(2_000, 360_000)  # the job's settings' defaults


@cache
def _sim() -> tuple[tuple[Event, ...], TenantRegistry]:
    sim = simulate(SimConfig(seed=31, tenants=3, duration_s=1800, events_per_s=60))
    return tuple(sim.events()), sim.registry


def _engine(registry: TenantRegistry) -> DetectionEngine:
    cfg = DetectorConfig.default()
    rules = all_detectors(cfg, include_anomaly=False)
    return DetectionEngine(rules, DetectionContext(registry, cfg), strict=True, lateness=_LATENESS)


def _ids(alerts: list[Any]) -> dict[str, tuple[Any, ...]]:
    return {
        a.alert_id: (a.evidence.get("count"), a.first_seen, a.last_seen, a.score, a.summary) for a in alerts
    }


def _shuffled(events: tuple[Event, ...], seed: int) -> list[Event]:
    """The events as an exporter may write them: each moved by up to a minute (flows) or a second
    (the rest), well inside the allowances."""
    rng = random.Random(seed)
    keyed = [(ev.ts + rng.randrange(60_000 if isinstance(ev, FlowEvent) else 1_000), ev) for ev in events]
    return [ev for _, ev in sorted(keyed, key=lambda k: k[0])]


def test_the_alerts_do_not_depend_on_the_order_within_the_allowance() -> None:
    events, registry = _sim()
    in_time = OrderedFeed(_engine(registry)).run(events)
    assert len(in_time) > 10
    for seed in (1, 2):
        engine = _engine(registry)
        assert _ids(OrderedFeed(engine).run(_shuffled(events, seed))) == _ids(in_time)
        assert engine.stats()["late_events"] == 0


def test_the_engine_gets_the_jobs_micro_batches_in_order() -> None:
    """Fed directly, in the job's order (batch ends, then time and id), the engine gives the same."""
    events, registry = _sim()
    job_order = sorted(events, key=lambda e: (e.ts - e.ts % MICRO_BATCH_MS, e.ts, e.id))
    direct = _engine(registry).run(job_order)
    assert _ids(OrderedFeed(_engine(registry)).run(_shuffled(events, 3))) == _ids(direct)


def test_late_events_are_the_engines_late_events() -> None:
    """Events moved behind their kind's watermark are late through the feed exactly as fed directly:
    counted, never in a window, and a single-event rule still raises them (the offline policy)."""
    sim_events, registry = _sim()
    # In the job's order, so that the on-time events reach both engines in the same order.
    events = sorted(sim_events, key=lambda e: (e.ts - e.ts % MICRO_BATCH_MS, e.ts, e.id))
    rng = random.Random(4)
    # Host events, each arriving 4,000 events (about a minute) on: far behind their 2 s allowance.
    hosts = [i for i in range(len(events) // 2, len(events)) if not isinstance(events[i], FlowEvent)]
    delayed = set(rng.sample(hosts, 200))
    arrival: list[Event] = []
    for i, ev in enumerate(events):
        if i not in delayed:
            arrival.append(ev)
        if i - 4000 in delayed:
            arrival.append(events[i - 4000])
    arrival += [events[i] for i in sorted(delayed) if i + 4000 >= len(events)]
    direct_engine, fed_engine = _engine(registry), _engine(registry)
    direct = direct_engine.run(arrival)
    fed = OrderedFeed(fed_engine).run(arrival)
    late = direct_engine.stats()["late_events"]
    assert late > 0
    assert fed_engine.stats()["late_events"] == late
    assert fed_engine.stats()["late"] == direct_engine.stats()["late"]
    assert fed_engine.stats()["events"] == direct_engine.stats()["events"] == len(events)
    # Each detector saw the same on-time events: the windows' alerts are the same; the late ones too.
    assert _ids(fed) == _ids(direct)


def test_a_busy_beacon_out_of_time_order_is_scored_as_in_time_order() -> None:
    """The beacon rule keeps every other connection of a busy pair as they come: fed in the order an
    exporter wrote them (a record at its connection's end, the ends out of order), that sample was
    not every other one in time, and the score depended on the order."""
    registry = TenantRegistry.from_dict({"tenants": [{"id": "t", "cidrs": ["10.0.0.0/24"]}]})
    rng = random.Random(5)
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % 21_600_000
    flows = []
    for n in range(700):  # every 30 s for 5 h 50 min, past the rule's 256 kept connections
        start = t0 + n * 30_000 + rng.randrange(-1_500, 1_500)
        duration = rng.randrange(100, 240_000)  # some held minutes, so the ends come out of order
        flows.append(FlowEvent(
            id=f"b{n}", ts=start + duration, tenant="t", src_ip="10.0.0.5", dst_ip="93.184.216.34",
            src_port=40_000 + n, dst_port=443, proto="tcp", bytes_out=620 + rng.randrange(40),
            bytes_in=4_000, packets_out=8, packets_in=7, duration_ms=duration, action="accept", source="zeek",
        ))  # fmt: skip
    in_time = sorted(flows, key=lambda e: (e.ts - e.ts % MICRO_BATCH_MS, e.ts, e.id))
    by_start = sorted(flows, key=lambda e: e.ts - e.duration_ms)  # as a log of connection starts
    expected = OrderedFeed(_engine(registry)).run(in_time)
    assert {a.detector for a in expected} == {"c2.beacon"}
    assert _ids(OrderedFeed(_engine(registry)).run(by_start)) == _ids(expected)


def test_a_batch_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        OrderedFeed(_engine(TenantRegistry()), 0)
