"""Detector throughput: rule evaluation through the ``DetectionEngine`` and batch scoring of each
PyOD model family. Rates are per CPU second of this process (``time.process_time``), so they are
per core and less sensitive to other work on a shared machine. Reports figures, asserts nothing.

The anomaly models' cost is ``anomaly_on_to_off_ratio``: the median of 5 back-to-back pairs of runs
(rules alone, then rules and models), since the machine's load drifts between blocks of runs; the
ratio of the two best rates is kept beside it (``anomaly_on_to_off_ratio_of_best_rates``).

Event mix: the simulator's (62 % flows, 22 % process, 10 % audit, 6 % auth) with every scenario
injected; warmed up once (registry caches) before timing; input events are frozen out of the
garbage collector's generations (they are input, not engine allocations).

The garbage collector runs with the job worker's thresholds: ``gc.set_threshold(GC_YOUNG_THRESHOLD,
20, 20)``, the constant imported from ``streams.detect_fn``, which sets them in its ``open``. The
bench mirrors the job's settings, for the engine and the PyOD models alike, so a figure here is what
a worker does; the process's previous thresholds are restored when ``run`` returns.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors
from detectors.rule import Rule
from detectors.windowed import WindowedDetector
from streams.detect_fn import GC_YOUNG_THRESHOLD

__all__ = ["run"]


def _events() -> tuple[list[Any], Any]:
    from ingest.simulator import SimConfig, simulate

    sim = simulate(SimConfig(seed=7, duration_s=1800, events_per_s=150))
    return list(sim.events()), sim.registry


def _seconds(make_engine: Any, events: list[Any]) -> float:
    engine = make_engine()
    t0 = time.process_time()
    engine.process(events)
    engine.flush()
    return time.process_time() - t0


def _rate(make_engine: Any, events: list[Any], repeats: int = 3) -> float:
    return len(events) / min(_seconds(make_engine, events) for _ in range(repeats))


def _paired_ratio(on: Any, off: Any, events: list[Any], pairs: int = 5) -> tuple[float, list[float]]:
    """Median of ``pairs`` ratios off-time / on-time, each of one run of ``off`` then one of ``on``
    back to back: a shared machine's load drifts over minutes, so two configurations compared in
    separate blocks of runs differ by the drift (0.84 to 0.94 for the same code), while a pair
    shares it."""
    ratios = sorted(_seconds(off, events) / _seconds(on, events) for _ in range(pairs))
    return ratios[len(ratios) // 2], ratios


def _model_rate(family: str, dims: int, n_train: int = 20_000, n_score: int = 200_000) -> float:
    from detectors.anomaly.models import AnomalyModel

    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 1, (n_train + n_score, dims))
    model = AnomalyModel(family, [f"f{i}" for i in range(dims)], random_state=0).fit(x[:n_train])
    batch = x[n_train:]
    model.score(batch[:1000])  # warm-up
    t0 = time.process_time()
    scored = model.score(batch)
    dt = time.process_time() - t0
    assert scored.raw.shape == (n_score,)
    return n_score / dt


def run(ctx: Any) -> dict[str, Any]:
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)  # as the job's worker (streams.detect_fn)
    try:
        return _run()
    finally:
        gc.set_threshold(*thresholds)


def _run() -> dict[str, Any]:
    events, registry = _events()
    gc.collect()
    gc.freeze()
    try:
        cfg = DetectorConfig.default()
        ctx_ = DetectionContext(registry, cfg)
        DetectionEngine(all_detectors(cfg), ctx_).run(events[:50_000])  # warm registry caches

        def everything() -> DetectionEngine:
            return DetectionEngine(all_detectors(cfg, include_anomaly=False), ctx_)

        def with_anomaly() -> DetectionEngine:
            return DetectionEngine(all_detectors(cfg), ctx_)

        def stateless() -> DetectionEngine:
            return DetectionEngine([d for d in all_detectors(cfg) if isinstance(d, Rule)], ctx_)

        def windowed() -> DetectionEngine:
            return DetectionEngine([d for d in all_detectors(cfg) if isinstance(d, WindowedDetector)], ctx_)

        out: dict[str, Any] = {
            "bench_events": len(events),
            "engine_all_rules_events_per_s_per_core": round(_rate(everything, events)),
            "engine_rules_and_anomaly_models_events_per_s_per_core": round(_rate(with_anomaly, events)),
            "engine_stateless_rules_events_per_s_per_core": round(_rate(stateless, events)),
            "engine_windowed_rules_events_per_s_per_core": round(_rate(windowed, events)),
            "rule_detectors_count": len(all_detectors(cfg, include_anomaly=False)),
        }
        ratio, ratios = _paired_ratio(with_anomaly, everything, events)
        out["anomaly_on_to_off_ratio"] = round(ratio, 3)
        out["anomaly_on_to_off_ratio_pairs"] = [round(r, 3) for r in ratios]
    finally:
        gc.unfreeze()
    for family in ("ecod", "hbos", "iforest", "copod"):
        out[f"{family}_flow_vectors_per_s_per_core"] = round(_model_rate(family, 14))
        out[f"{family}_process_vectors_per_s_per_core"] = round(_model_rate(family, 39, n_score=100_000))
    rules = out["engine_all_rules_events_per_s_per_core"]
    out["anomaly_on_to_off_ratio_of_best_rates"] = round(
        out["engine_rules_and_anomaly_models_events_per_s_per_core"] / rules, 3
    )
    out["target_engine_events_per_s_per_core"] = 500_000
    out["target_anomaly_on_to_off_ratio"] = 0.9
    out["target_ecod_hbos_vectors_per_s_per_core"] = 50_000
    return out


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    result = run(None)
    text = json.dumps(result, indent=1)
    print(text)
    if len(sys.argv) > 2 and sys.argv[1] == "--out":
        command = "python tests/bench/bench_detectors.py " + " ".join(sys.argv[1:])
        Path(sys.argv[2]).write_text(json.dumps({**result, "command": command}, indent=1) + "\n")
