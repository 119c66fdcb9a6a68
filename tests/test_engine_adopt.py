"""An engine built with a new detector configuration adopts the state of the engine it replaces
(``DetectionEngine.adopt``, what the job does for a key restored after its settings changed): under
the same configuration nothing changes, under a new one its settings apply to what the old engine
had seen, and what the detectors learned (process tables, baselines, reports) is kept."""

from __future__ import annotations

import pickle
from functools import cache
from pathlib import Path

from detectors.alert import Alert
from detectors.anomaly.detectors import FlowAnomaly
from detectors.base import Detector
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, Lateness
from detectors.registry import all_detectors
from detectors.rules.c2.beacon import C2Beacon
from detectors.samples import load_cases, samples_registry
from ingest.schema import Event
from ingest.tenants import TenantRegistry

RULES = Path(__file__).resolve().parents[1] / "detectors" / "rules"
LATENESS = Lateness.for_flows(2000, 360_000)  # the job's allowances


@cache
def _simulated() -> tuple[tuple[Event, ...], TenantRegistry]:
    from ingest.simulator import SimConfig, simulate

    sim = simulate(SimConfig(seed=12, duration_s=2400, events_per_s=30, scenarios={"all": 1}))
    return tuple(sorted(sim.events(), key=lambda e: (e.ts, e.id))), sim.registry


def _engine(
    cfg: DetectorConfig, reg: TenantRegistry, detectors: list[Detector] | None = None
) -> DetectionEngine:
    return DetectionEngine(
        detectors if detectors is not None else all_detectors(cfg),
        DetectionContext(reg, cfg),
        lateness=LATENESS,
    )


def _restored(engine: DetectionEngine) -> DetectionEngine:
    """The engine as a checkpoint gives it back: pickled without its shared context."""
    context, engine.context = engine.context, None  # type: ignore[assignment]
    try:
        old: DetectionEngine = pickle.loads(pickle.dumps(engine))
    finally:
        engine.context = context
    old.context = context
    return old


def _ids(alerts: list[Alert]) -> list[tuple[str, str, int]]:
    return sorted((a.alert_id, a.detector, a.score) for a in alerts)


def _beacon_case() -> list[Event]:
    cases = load_cases(RULES / "c2" / "beacon.events.json")
    return next(c for c in cases if c.description.startswith("an Ares agent")).events


def test_adopting_under_the_same_configuration_changes_nothing() -> None:
    events, reg = _simulated()
    cfg = DetectorConfig.default()
    whole = _engine(cfg, reg).run(events)
    first = _engine(cfg, reg)
    half = len(events) // 2
    out = first.process(events[:half])
    second = _engine(cfg, reg)
    assert second.adopt(_restored(first)) == []
    out += second.run(events[half:])
    assert whole and _ids(out) == _ids(whole)
    once, twice = _engine(cfg, reg), second
    once.run(events)
    for key in ("events", "alerts", "late_events", "watermark"):
        assert twice.stats()[key] == once.stats()[key], key
    # what the anomaly detectors learned came along: the same tenants' reservoirs, row for row
    learned = {d.meta.id: d for d in once.detectors if d.learned}
    for d in twice.detectors:
        if isinstance(d, FlowAnomaly):
            mine, theirs = d.online.tenants, learned[d.meta.id].online.tenants  # type: ignore[attr-defined]
            assert mine and sorted(mine) == sorted(theirs)
            assert all((mine[t].rows == theirs[t].rows).all() for t in mine)


def test_new_settings_apply_to_what_the_old_engine_saw() -> None:
    events, reg = _beacon_case(), samples_registry()
    half = len(events) // 2
    default = DetectorConfig.default()
    strict = default.merged({"detectors": {"c2.beacon": {"params": {"min_connections": 100_000}}}})
    alone = _engine(default, reg, [C2Beacon(default)]).run(events)
    assert len(alone) == 1 and alone[0].evidence["connections"] == len(events)

    # seen under the strict settings, finished under the default ones: the alert counts every
    # connection, the first half's included (the open window came along)
    first = _engine(strict, reg, [C2Beacon(strict)])
    assert first.process(events[:half]) == []
    second = _engine(default, reg, [C2Beacon(default)])
    assert second.adopt(_restored(first)) == []
    got = second.run(events[half:])
    assert _ids(got) == _ids(alone) and got[0].evidence["connections"] == len(events)

    # and the other way round: the strict settings hold for a key that began under the default
    first = _engine(default, reg, [C2Beacon(default)])
    first.process(events[:half])
    second = _engine(strict, reg, [C2Beacon(strict)])
    second.adopt(_restored(first))
    assert second.run(events[half:]) == []


def test_a_changed_window_starts_over_and_says_so() -> None:
    events, reg = _beacon_case(), samples_registry()
    half = len(events) // 2
    default = DetectorConfig.default()
    shorter = default.merged({"detectors": {"c2.beacon": {"window_ms": 14_400_000, "slide_ms": 7_200_000}}})
    first = _engine(default, reg, [C2Beacon(default)])
    first.process(events[:half])
    second = _engine(shorter, reg, [C2Beacon(shorter)])
    assert second.adopt(_restored(first)) == ["c2.beacon"]
    assert second.stats()["watermark"] == first.stats()["watermark"]  # the clock came along all the same
    # the second half alone, 37 minutes, is short of the hour the rule asks: the first half's
    # connections started over with the window; an engine with that window all along alerts
    assert second.run(events[half:]) == []
    assert len(_engine(shorter, reg, [C2Beacon(shorter)]).run(events)) == 1


def test_learned_state_follows_into_the_new_settings() -> None:
    events, reg = _simulated()
    default = DetectorConfig.default()
    other = default.merged(
        {
            "detectors": {
                "anomaly.flow_features": {"params": {"model": "hbos", "reservoir_rows": 64}},
                "c2.beacon": {"params": {"repeat_quiet_s": 86_400}},
            }
        }
    )
    first = _engine(default, reg)
    first.process(events)
    old = _restored(first)
    second = _engine(other, reg)
    second.adopt(old)
    before = {d.meta.id: d for d in old.detectors}
    for d in second.detectors:
        if isinstance(d, FlowAnomaly):
            was = before[d.meta.id].online  # type: ignore[attr-defined]
            assert d.online.family == "hbos" and d.online.cap == 64
            assert was.tenants and set(d.online.tenants) == set(was.tenants)
            assert all(tb.rows.shape[0] <= 64 and tb._fit is None for tb in d.online.tenants.values())
            assert d.online.windows == was.windows
        elif isinstance(d, C2Beacon):
            assert d._reported is before[d.meta.id]._reported  # type: ignore[attr-defined]
            assert d.quiet_ms == 86_400_000
        elif "emu" in d.learned:
            assert d.emu.table._hosts is before[d.meta.id].emu.table._hosts  # type: ignore[attr-defined]
    assert any(len(d.emu.table._hosts) for d in second.detectors if "emu" in d.learned)  # type: ignore[attr-defined]


def test_another_implementation_under_the_same_id_takes_nothing() -> None:
    events, reg = _beacon_case(), samples_registry()
    cfg = DetectorConfig.default()

    class Rewritten(C2Beacon):
        pass

    first = _engine(cfg, reg, [C2Beacon(cfg)])
    first.process(events[: len(events) // 2])
    old = _restored(first).detectors[0]
    new = Rewritten(cfg)
    assert not new.adopt(old) and new.state_size() == 0 and new._reported is not old._reported  # type: ignore[attr-defined]
