"""Anomaly detectors on the simulator: learned from the stream (the default), and seeded by models
fitted offline on a baseline period.

One seed is simulated for ``2 * hours`` starting at 13:00 UTC (so both halves sit on the same side
of the diurnal peak); every scenario is injected, in both halves (the baseline is not clean, as in
production). ``online``: the whole run goes through all detectors with the default configuration
(anomaly detectors learning from the stream, no fit), and the anomaly alerts of the second half are
scored against its ground truth. ``families``: models and transfer baselines are fitted on the first
half with ``detectors.anomaly.fit.fit_models`` into a models directory that seeds the detectors,
and the second half runs through all detectors, per family. Anomaly alerts are scored like any
other (an ``anomaly`` alert matches a record of any category).
"""

from __future__ import annotations

import tempfile
from typing import Any

from detectors.alert import Alert
from detectors.anomaly.fit import fit_models
from detectors.config import DetectorConfig
from detectors.evaluation.evaluate import run_detectors
from detectors.evaluation.scorecard import Truth, TruthEntity, score
from detectors.testing import anomaly_config

__all__ = ["evaluate_anomaly"]

_HOUR_MS = 3_600_000


def evaluate_anomaly(
    seed: int = 301, hours: float = 2.0, families: tuple[str, ...] = ("ecod", "hbos")
) -> dict[str, Any]:
    from ingest.simulator import DEFAULT_START_MS, SimConfig, simulate

    start = DEFAULT_START_MS - DEFAULT_START_MS % (24 * _HOUR_MS) + 13 * _HOUR_MS
    sim = simulate(SimConfig(seed=seed, duration_s=2 * hours * 3600, start_ms=start, scenarios={"all": 2}))
    split = start + int(hours * _HOUR_MS)
    events = list(sim.events())
    baseline = [e for e in events if e.ts < split]
    test = [e for e in events if e.ts >= split]
    truth = [
        Truth(
            scenario=r.scenario, category=r.category, tenant=r.tenant, entity=TruthEntity(r.entity.type, r.entity.id),
            start=r.start, end=r.end, event_ids=list(r.event_ids), benign=r.benign,
        )
        for r in sim.truth
        if r.start >= split
    ]  # fmt: skip
    out: dict[str, Any] = {
        "seed": seed,
        "baseline_events": len(baseline),
        "test_events": len(test),
        "families": {},
    }
    online_alerts, _n, _stats = run_detectors(events, sim.registry, DetectorConfig.default())
    out["online"] = _row(
        [a for a in online_alerts if a.category == "anomaly" and a.ts >= split], truth, len(test)
    )
    for family in families:
        with tempfile.TemporaryDirectory(prefix="ssa-anomaly-") as models:
            cfg: DetectorConfig = anomaly_config(models, family)
            fit = fit_models(baseline, sim.registry, cfg, models, family=family)
            alerts, _n, _stats = run_detectors(test, sim.registry, cfg)
        out["families"][family] = {
            "fitted": {k: v for k, v in fit.items() if k in ("flow", "process")},
            **_row([a for a in alerts if a.category == "anomaly"], truth, len(test)),
        }
    return out


def _row(anomaly: list[Alert], truth: list[Truth], n: int) -> dict[str, Any]:
    card = score(anomaly, truth, n)
    row = card.categories.get("anomaly")  # absent when no anomaly alert was raised
    covered = sorted({s for s, sc in card.scenarios.items() if sc.alerts and not sc.benign})
    return {
        "anomaly_alerts": row.alerts if row else 0,
        "true_alerts": row.true_alerts if row else 0,
        "precision": row.precision if row else None,
        "alerts_per_1k_events": round(row.alerts_per_1k_events, 4) if row else 0.0,
        "by_detector": {
            d: sum(1 for a in anomaly if a.detector == d) for d in sorted({a.detector for a in anomaly})
        },
        "attack_scenarios_with_an_anomaly_alert": covered,
        "false_alerts_sample": card.false_alerts[:10],
    }
