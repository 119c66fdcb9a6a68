"""Anomaly models: fitted-tail ECOD/COPOD equal PyOD's own scoring, every family separates seeded
outliers, scores are batch-independent and calibrated, models persist and reload, and the engine's
anomaly detectors, seeded from offline-fitted models, raise explained alerts on windows unlike the
baseline (the stream-learned path: ``test_anomaly_online``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors.anomaly.detectors import FlowAnomaly, ProcessAnomaly
from detectors.anomaly.models import FAMILIES, AnomalyModel
from detectors.anomaly.store import GLOBAL, ModelSet
from detectors.anomaly.tails import TailScorer
from detectors.config import ConfigError
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.samples import SAMPLE_START_MS, samples_registry
from detectors.testing import anomaly_config, fit_small_models, synthetic_stream
from ingest.schema import FlowEvent

RNG = np.random.default_rng(7)
TRAIN = np.column_stack([RNG.lognormal(2, 1, 3000), RNG.normal(0, 1, 3000), -RNG.exponential(1, 3000)])
NAMES = ["a", "b", "c"]


def _labelled(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = np.column_stack([rng.lognormal(2, 1, 950), rng.normal(0, 1, 950), -rng.exponential(1, 950)])
    outl = np.column_stack([rng.lognormal(5, 0.5, 50), rng.normal(4, 1, 50), -rng.exponential(6, 50)])
    return np.vstack([normal, outl]), np.r_[np.zeros(950), np.ones(50)]


def test_ecod_tails_equal_pyod_scoring_one_row_at_a_time() -> None:
    from pyod.models.ecod import ECOD

    ref = ECOD().fit(TRAIN)
    x, _ = _labelled(1)
    ours = TailScorer("ecod", TRAIN).score(x[:40])
    theirs = np.array([ref.decision_function(x[i : i + 1])[0] for i in range(40)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_copod_tails_equal_pyod_scoring_when_skew_signs_are_clear() -> None:
    from pyod.models.copod import COPOD

    ref = COPOD().fit(TRAIN)
    x, _ = _labelled(2)
    ours = TailScorer("copod", TRAIN).score(x[:40])
    theirs = np.array([ref.decision_function(x[i : i + 1])[0] for i in range(40)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_separates_seeded_outliers(family: str) -> None:
    model = AnomalyModel(family, NAMES, random_state=0).fit(TRAIN)
    x, y = _labelled(3)
    assert roc_auc_score(y, model.score(x).raw) >= 0.95


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_do_not_depend_on_the_batch(family: str) -> None:
    model = AnomalyModel(family, NAMES, random_state=0).fit(TRAIN)
    x, _ = _labelled(4)
    whole = model.raw_scores(x)
    parts = np.concatenate([model.raw_scores(x[i : i + 7]) for i in range(0, len(x), 7)])
    np.testing.assert_allclose(whole, parts, rtol=1e-12)
    with pytest.raises(ValueError, match="2-D"):
        model.raw_scores(x[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_fit_is_deterministic(family: str) -> None:
    a = AnomalyModel(family, NAMES, random_state=3).fit(TRAIN)
    b = AnomalyModel(family, NAMES, random_state=3).fit(TRAIN)
    x, _ = _labelled(5)
    np.testing.assert_array_equal(a.raw_scores(x), b.raw_scores(x))


def test_calibration_means_the_same_across_tenants_of_different_scale() -> None:
    rng = np.random.default_rng(11)
    small = rng.lognormal(1, 0.5, (4000, 3))
    large = rng.lognormal(6, 1.5, (4000, 3))
    for base in (small, large):
        model = AnomalyModel("hbos", NAMES).fit(base[:2000])
        fresh = model.score(base[2000:]).calibrated
        assert fresh.min() >= 0.0 and fresh.max() <= 1.0
        assert abs(np.mean(fresh >= 0.99) - 0.01) < 0.01  # ~1 % of new normal rows above q=0.99


def test_model_set_persists_and_reloads_with_global_fallback(tmp_path) -> None:
    rows = {"t-a": TRAIN[:1500], "t-b": TRAIN[1500:1520]}
    ms = ModelSet.fit("flow", "ecod", NAMES, rows, window_ms=300_000, min_rows=100)
    assert set(ms.models) == {GLOBAL, "t-a"}
    path = ms.save(tmp_path)
    back = ModelSet.load(tmp_path, "flow")
    x, _ = _labelled(6)
    np.testing.assert_array_equal(ms.for_tenant("t-a").raw_scores(x), back.for_tenant("t-a").raw_scores(x))
    assert back.for_tenant("t-b") is back.models[GLOBAL]
    assert back.for_tenant("t-new") is back.models[GLOBAL]
    assert path.name == "flow_models.joblib"
    with pytest.raises(ValueError, match="not a process model set"):
        path.rename(tmp_path / "process_models.joblib")
        ModelSet.load(tmp_path, "process")


def test_anomaly_detectors_raise_explained_alerts(tmp_path) -> None:
    reg = samples_registry()
    fitted = fit_small_models(reg, tmp_path, family="ecod", minutes=90)
    # 90 minutes of background give t-beta 36 fitted rows: a conformal threshold of 0.97 needs 32
    cfg = fitted.merged({"detectors": {"anomaly.flow_features": {"params": {"threshold": 0.97}}}})
    start = SAMPLE_START_MS - SAMPLE_START_MS % 300_000
    normal = synthetic_stream(reg, 10, start, seed=9)
    burst = [
        FlowEvent(
            id=f"x{i}",
            ts=start + 400_000 + i * 50,
            source="t",
            tenant="t-beta",
            vm="vm-beta-02",
            src_ip="10.2.1.11",
            dst_ip=f"185.220.{i % 200}.{i % 250 + 1}",
            dst_port=9000 + i % 500,
            bytes_out=5_000_000,
            packets_out=4000,
            action="reject",
        )
        for i in range(2000)
    ]
    events = sorted([*normal, *burst], key=lambda e: (e.ts, e.id))
    engine = DetectionEngine([FlowAnomaly(cfg), ProcessAnomaly(cfg)], DetectionContext(reg, cfg), strict=True)
    alerts = [a for a in engine.run(events) if a.category == "anomaly"]
    flagged = {(a.detector, a.entity.id) for a in alerts}
    assert ("anomaly.flow_features", "vm-beta-02") in flagged
    hit = next(a for a in alerts if a.entity.id == "vm-beta-02")
    assert hit.evidence["model"] == "ecod" and hit.evidence["p_value"] <= 0.03
    assert hit.evidence["model_scope"] == "t-beta"  # seeded from its fitted rows: warm at once
    assert len(hit.evidence["top_features"]) == 3
    for t in hit.evidence["top_features"]:
        assert set(t) == {
            "feature",
            "value",
            "baseline_median",
            "baseline_p99",
            "baseline_quantile",
            "contribution",
        }
    out = {t["feature"]: t for t in hit.evidence["top_features"]}
    if "bytes_out" in out:  # natural units, far above what the baseline ever saw
        assert out["bytes_out"]["value"] > 1e8 > out["bytes_out"]["baseline_p99"]
    assert {t["feature"] for t in hit.evidence["top_features"]} & {
        "bytes_out",
        "fan_out_hosts",
        "dst_ports",
        "rejected_out",
        "packets_out",
        "flows_out",
    }
    quiet = {a.entity.id for a in alerts} - {"vm-beta-02"}
    assert len(quiet) <= 2, f"too many anomalies on plain background: {quiet}"


def test_configured_family_must_match_the_fitted_one(tmp_path) -> None:
    reg = samples_registry()
    fit_small_models(reg, tmp_path, family="ecod", minutes=20)
    with pytest.raises(ConfigError, match="fitted with ecod"):
        FlowAnomaly(anomaly_config(tmp_path, family="hbos"))
