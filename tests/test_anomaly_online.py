"""Anomaly detectors learned from the stream: on by default with no models, silent while warming up,
an alert on a window unlike the learned baseline with its explanation, windows scored before they
are learned and alerting rows never learned, bounded reservoirs and tenants, conformal p-values
calibrated on fresh rows, leave-one-out baseline scores, and a pickled engine (fitted models
dropped) that resumes exactly like the uninterrupted one."""

from __future__ import annotations

import pickle

import msgspec
import numpy as np
import pytest

from detectors.anomaly.detectors import AnomalyDetector, FlowAnomaly, ProcessAnomaly
from detectors.anomaly.online import POOLED, Fitted, OnlineBaselines
from detectors.anomaly.tails import TailScorer
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import ANOMALY_IDS, all_detectors
from detectors.samples import SAMPLE_START_MS, samples_registry
from detectors.testing import synthetic_stream
from ingest.schema import Event, FlowEvent

REG = samples_registry()
START = SAMPLE_START_MS - SAMPLE_START_MS % 300_000
# Smaller than the defaults so a test stream of a few hours warms up (0.98 needs 49 baseline rows;
# no diurnal span: the synthetic stream has no time of day).
SMALL = {
    "threshold": 0.98, "min_baseline_rows": 60, "warmup_windows": 3, "warmup_span_ms": 0, "reservoir_rows": 256,
    "refit_every_rows": 32, "refit_every_windows": 2,
}  # fmt: skip


def _cfg(**params: object) -> DetectorConfig:
    p = {**SMALL, **params}
    return DetectorConfig.default().merged(
        {"detectors": {"anomaly.flow_features": {"params": p}, "anomaly.process_activity": {"params": p}}}
    )


def _burst(ts0: int, n: int = 2000) -> list[Event]:
    return [
        FlowEvent(
            id=f"x{i}", ts=ts0 + i * 50, source="t", tenant="t-beta", vm="vm-beta-02", src_ip="10.2.1.11",
            dst_ip=f"185.220.{i % 200}.{i % 250 + 1}", dst_port=9000 + i % 500, bytes_out=5_000_000,
            packets_out=4000, action="reject",
        )
        for i in range(n)
    ]  # fmt: skip


def _anomaly(cfg: DetectorConfig) -> list[AnomalyDetector]:
    return [FlowAnomaly(cfg), ProcessAnomaly(cfg)]


def _flow_detector(engine: DetectionEngine) -> FlowAnomaly:
    return next(d for d in engine.detectors if isinstance(d, FlowAnomaly))


def test_on_by_default_without_models() -> None:
    cfg = DetectorConfig.default()
    assert cfg.shared.get("models_dir") is None
    ids = {d.meta.id for d in all_detectors(cfg)}
    assert set(ANOMALY_IDS) <= ids
    assert not set(ANOMALY_IDS) & {d.meta.id for d in all_detectors(cfg, include_anomaly=False)}


def test_default_thresholds_keep_the_conformal_promise() -> None:
    for det in _anomaly(DetectorConfig.default()):
        if isinstance(det, AnomalyDetector):
            need = 1 / det.alpha - 1  # rows below which no p-value reaches alpha
            assert det.online.min_rows >= need - 1e-9 and det.online.cap >= det.online.min_rows


def test_learns_from_the_stream_then_flags_and_explains_a_burst() -> None:
    cfg = _cfg()
    hours = 5
    normal = synthetic_stream(REG, hours * 60, START, seed=9)
    attack_at = START + (hours - 1) * 3_600_000 + 10_000
    events = sorted(normal + _burst(attack_at), key=lambda e: (e.ts, e.id))
    engine = DetectionEngine(list(_anomaly(cfg)), DetectionContext(REG, cfg), strict=True)
    alerts = [a for a in engine.run(events) if a.category == "anomaly"]
    warm_end = START + 3 * 300_000
    assert not [a for a in alerts if a.ts <= warm_end], "alerted while warming up"
    hits = [a for a in alerts if a.entity.id == "vm-beta-02" and a.first_seen <= attack_at + 100_000 <= a.ts]
    assert hits, f"burst not flagged; anomaly alerts: {[(a.entity.id, a.ts) for a in alerts]}"
    hit = hits[0]
    assert hit.detector == "anomaly.flow_features" and hit.evidence["p_value"] <= 0.02
    assert hit.evidence["model_scope"] in ("t-beta", POOLED)
    top = {t["feature"]: t for t in hit.evidence["top_features"]}
    assert len(top) == 3 and set(top) & {
        "bytes_out",
        "packets_out",
        "fan_out_hosts",
        "dst_ports",
        "rejected_out",
    }
    for t in top.values():
        assert t["baseline_quantile"] in (0.0, 1.0) or t["contribution"] >= 0
    # plain background: false alerts near alpha (0.02) of the scored rows, not more than twice that
    det = _flow_detector(engine)
    scored_rows = sum(r for r in det.online.info()["rows"].values())
    false = [a for a in alerts if a not in hits and a.detector == "anomaly.flow_features"]
    assert len(false) <= max(3, 0.04 * scored_rows), (len(false), scored_rows)


def test_a_window_is_scored_before_it_is_learned_and_alerting_rows_are_not_learned() -> None:
    cfg = _cfg()
    det = FlowAnomaly(cfg)
    engine = DetectionEngine([det], DetectionContext(REG, cfg), strict=True)
    engine.run(synthetic_stream(REG, 180, START, seed=3))
    before = det.online.tenants["t-beta"].seen + det.online.tenants["t-beta"].pending.shape[0]
    t0 = START + 200 * 60_000
    alerts = DetectionEngine([det], DetectionContext(REG, cfg), strict=True).run(_burst(t0, 3000))
    assert [a.entity.id for a in alerts] == ["vm-beta-02"]
    tb = det.online.tenants["t-beta"]
    assert tb.seen + tb.pending.shape[0] == before  # the alerting row went nowhere


def test_pickled_engine_resumes_exactly_and_stays_small() -> None:
    cfg = _cfg()
    events = sorted(
        synthetic_stream(REG, 240, START, seed=4) + _burst(START + 200 * 60_000), key=lambda e: e.ts
    )
    cut = next(i for i, e in enumerate(events) if e.ts >= START + 150 * 60_000)
    a = DetectionEngine(list(_anomaly(cfg)), DetectionContext(REG, cfg), strict=True)
    first = a.process(events[:cut])
    det = _flow_detector(a)
    assert any(tb._fit is not None for tb in det.online.tenants.values()) or det.online._pooled is not None
    blob = pickle.dumps(det)
    assert b"TailScorer" not in blob and b"Fitted" not in blob  # models are rebuilt, not pickled
    assert len(blob) < det.online.nbytes() + 64_000  # the reservoirs plus the open windows
    a.context = None  # type: ignore[assignment]
    b: DetectionEngine = pickle.loads(pickle.dumps(a))
    a.context = b.context = DetectionContext(REG, cfg)
    rest_a = a.process(events[cut:]) + a.flush()
    rest_b = b.process(events[cut:]) + b.flush()
    assert msgspec.to_builtins(rest_a) == msgspec.to_builtins(rest_b)
    assert any(x.category == "anomaly" for x in first + rest_a)


def test_reservoir_and_tenants_are_bounded() -> None:
    ob = OnlineBaselines("ecod", width=3, cap=50, min_rows=20, warmup_windows=2, refit_rows=10,
                         refit_windows=3, max_tenants=4)  # fmt: skip
    rng = np.random.default_rng(0)
    for w in range(40):
        for t in ("a", "b", "c"):
            ob.learn(t, rng.normal(size=(9, 3)), window_end=w)
        ob.end_window()
    assert {t: tb.rows.shape[0] for t, tb in ob.tenants.items()} == {"a": 50, "b": 50, "c": 50}
    assert all(tb.seen + tb.pending.shape[0] == 360 for tb in ob.tenants.values())
    scope, fit = ob.model_for("a")  # type: ignore[misc]
    assert scope == "a" and fit.n == 50
    assert ob.model_for("new")[0] == POOLED  # type: ignore[index]
    for w in range(40, 44):
        ob.learn(f"n{w}", rng.normal(size=(9, 3)), window_end=w + (w == 40) * 100)
        ob.end_window()
    assert len(ob.tenants) == 4 and ob.evicted == 3
    assert "n40" in ob.tenants  # the one updated last survives; a, b, c went first
    for tb in ob.tenants.values():
        assert tb.rows.shape[0] <= 50 and tb.pending.shape[0] < 10 + 9 and tb.rows.dtype == np.float16


def test_nothing_scores_while_warming_up() -> None:
    ob = OnlineBaselines("ecod", width=2, cap=100, min_rows=30, warmup_windows=5, refit_rows=10,
                         refit_windows=3, max_tenants=4)  # fmt: skip
    for w in range(4):
        ob.learn("t", np.ones((20, 2)) * w, window_end=w)
        ob.end_window()
        assert ob.model_for("t") is None  # 4 windows < warmup_windows
    ob.learn("t", np.ones((20, 2)), window_end=5)
    ob.end_window()
    assert ob.model_for("t") is not None


def _diurnal_rows(rng: np.random.Generator, hour: float, n: int) -> np.ndarray:
    """Rows of an address in a window at ``hour``: counts that follow a day/night rate (about 20x
    apart, as the CTU-50 hosts' hourly weights of the simulator's rhythm) and a rate-free share."""
    level = np.log(20.0) * max(0.0, np.sin(np.pi * (hour - 6) / 12))  # 0 at night, peak at 12:00
    return np.column_stack([
        rng.normal(3 + level, 0.5, n), rng.normal(8 + level, 0.8, n), rng.beta(2, 5, n),
    ])  # fmt: skip


def test_no_score_before_a_diurnal_cycle_and_calibrated_across_the_day_after() -> None:
    """The simulated day's false alerts: a baseline learned over the night (enough rows and windows)
    made the morning's rows extreme (not exchangeable with it). Scoring waits for a baseline that
    spans ``warmup_span_ms`` (a day); then fresh rows of every hour are calibrated."""
    hour_ms = 3_600_000
    rng = np.random.default_rng(11)
    ob = OnlineBaselines("ecod", width=3, cap=4096, min_rows=400, warmup_windows=12, refit_rows=64,
                         refit_windows=12, max_tenants=4, warmup_span_ms=24 * hour_ms)  # fmt: skip
    night_only = OnlineBaselines("ecod", width=3, cap=4096, min_rows=400, warmup_windows=12, refit_rows=64,
                                 refit_windows=12, max_tenants=4)  # fmt: skip
    for w in range(288):  # one day of 5-minute windows, 12 rows each
        start = w * 300_000
        rows = _diurnal_rows(rng, (start / hour_ms) % 24, 12)
        for o in (ob, night_only):
            o.learn("t", rows, start + 300_000, start)
            o.end_window()
        if w == 71:  # 06:00: 864 rows over 72 windows, all of the night
            chosen = night_only.model_for("t")
            assert chosen is not None and ob.model_for("t") is None
            morning = np.vstack([_diurnal_rows(rng, h, 400) for h in (9, 12, 15)])
            fit = chosen[1]
            assert float(np.mean(fit.p_values(fit.raw_scores(morning)) <= 0.01)) > 0.5
        elif w < 287:
            assert ob.model_for("t") is None, w
    chosen = ob.model_for("t")
    assert chosen is not None and chosen[0] == "t"
    fit = chosen[1]
    fresh = np.vstack([_diurnal_rows(rng, h + 0.5, 200) for h in range(24)])
    p = fit.p_values(fit.raw_scores(fresh))
    for alpha in (0.01, 0.05):
        assert float(np.mean(p <= alpha)) <= alpha * 1.5, alpha


def test_fitted_global_rows_seed_the_pool_once(tmp_path: object) -> None:
    """Seeded from a models directory whose tenants have no model of their own: the pooled model holds
    the global rows once, not once per tenant (duplicates make leave-one-out scores too low)."""
    from pathlib import Path

    from detectors.anomaly.features import FLOW_FEATURES
    from detectors.anomaly.store import GLOBAL, ModelSet

    rng = np.random.default_rng(3)
    width = len(FLOW_FEATURES)
    fitted = {"t-alpha": rng.normal(5, 1, (300, width)), "t-beta": rng.normal(5, 1, (300, width))}
    models = Path(str(tmp_path))
    ModelSet.fit("flow", "ecod", list(FLOW_FEATURES), fitted, window_ms=300_000, min_rows=1000).save(models)
    cfg = _cfg(min_baseline_rows=500).merged({"shared": {"models_dir": str(models)}})
    det = FlowAnomaly(cfg)
    for tenant in ("t-alpha", "t-beta", "t-gamma"):
        det._seed(tenant)
        det.online.learn(tenant, np.zeros((0, width)), 300_000, 0)
    assert det.online.pool_rows is not None and det.online.pool_rows.shape[0] == 600
    assert not any(tb.seeded for tb in det.online.tenants.values())
    chosen = det.online.model_for("t-gamma")
    assert chosen is not None and chosen[0] == POOLED and chosen[1].n == 600  # once, not 3 x 600
    rows = ModelSet.load(models, "flow").models[GLOBAL].rows_
    assert rows is not None and rows.shape[0] == 600
    fresh = rng.normal(5, 1, (20_000, width))
    p = chosen[1].p_values(chosen[1].raw_scores(fresh))
    assert float(np.mean(p <= 0.05)) <= 0.05 * 1.35


@pytest.mark.parametrize("family", ["ecod", "copod", "hbos"])
def test_conformal_p_values_are_calibrated_on_fresh_rows(family: str) -> None:
    rng = np.random.default_rng(5)
    base = np.column_stack([rng.lognormal(2, 1, 2000), rng.normal(0, 1, 2000), rng.exponential(1, 2000)])
    fresh = np.column_stack([rng.lognormal(2, 1, 20000), rng.normal(0, 1, 20000), rng.exponential(1, 20000)])
    fit = Fitted(family, base)
    p = fit.p_values(fit.raw_scores(fresh))
    for alpha in (0.01, 0.05):
        rate = float(np.mean(p <= alpha))
        assert rate <= alpha * 1.35, (alpha, rate)  # HBOS' in-sample baseline is a little optimistic
        if family != "hbos":
            assert rate >= alpha * 0.65, (alpha, rate)


def test_leave_one_out_scores_equal_scoring_against_the_other_rows() -> None:
    rng = np.random.default_rng(8)
    x = np.round(rng.normal(size=(60, 3)), 1)  # ties included
    for family in ("ecod", "copod"):
        ts = TailScorer(family, x)
        loo = ts.loo_components(x)
        for i in (0, 7, 59):
            other = TailScorer(family, np.delete(x, i, axis=0))
            other.skew_sign_ = ts.skew_sign_  # skew of the whole column, as the fitted model has it
            np.testing.assert_allclose(loo[i], other.components(x[i : i + 1])[0], rtol=1e-12)


def test_scored_windows_leave_score_summaries_for_the_jobs_metrics() -> None:
    """Each scored window leaves, per tenant, the percentiles of its rows' anomaly score (1 - p-value)
    for the tenant board; none while warming up; drained once (``DetectionEngine.drain_window_scores``),
    and turned into ``kind: anomaly`` metrics records by the job (``streams.posture.anomaly_records``)."""
    from streams.posture import anomaly_records

    cfg = _cfg()
    events = sorted(synthetic_stream(REG, 3 * 60, START, seed=9), key=lambda e: (e.ts, e.id))
    engine = DetectionEngine(list(_anomaly(cfg)), DetectionContext(REG, cfg), strict=True)
    engine.run(events)
    scores = engine.drain_window_scores()
    assert scores and engine.drain_window_scores() == []
    warm_end = START + 3 * 300_000
    assert all(s["ts"] >= warm_end - 300_000 for s in scores), "scored while warming up"
    for s in scores:
        assert s["window_ms"] == 300_000 and s["ts"] % 300_000 == 0 and s["scored"] >= 1
        assert 0.0 <= s["anomaly_p50"] <= s["anomaly_p95"] <= s["anomaly_p99"] <= 1.0
    records = anomaly_records(scores, "t-beta#flow")
    assert {r["kind"] for r in records} == {"anomaly"} and all(r["key"] == "t-beta#flow" for r in records)
    assert {r["detector"] for r in records} <= set(ANOMALY_IDS)
