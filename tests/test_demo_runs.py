"""Each demo run's own names: a unique run id, indices of its own inside the shared patterns, and
the test session's cleanup recognising them. No services needed."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from infra.bootstrap import alerts_template, metrics_template
from infra.settings import Settings
from streams import demo
from streams.demo import demo_settings, new_run_id
from streams.documents import daily_index
from tests.leftovers import is_throwaway_index, run_ids

DAY_MS = 1_796_256_000_000  # 2026-12-03 00:00 UTC


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings().with_overrides(data_dir=str(tmp_path))


def test_runs_started_in_the_same_second_get_different_ids(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb"])  # the second run draws the first's suffix again
    monkeypatch.setattr(demo.time, "strftime", lambda _fmt, _t: "20261203074500")
    monkeypatch.setattr(demo.secrets, "token_hex", lambda _n: next(suffixes))
    first, second = new_run_id(settings), new_run_id(settings)
    assert (first, second) == ("20261203074500-aaaaaa", "20261203074500-bbbbbb")
    assert (settings.data_path / "runs" / first).is_dir() and (settings.data_path / "runs" / second).is_dir()


def test_a_run_id_is_valid_in_topic_group_and_index_names(settings: Settings) -> None:
    run = new_run_id(settings)
    s = demo_settings(settings, run)
    for topic in s.all_topics:
        assert re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", topic)
    assert run_ids(s.all_topics) == {run}  # no dot in the id: the cleanup finds the run again
    for prefix in (s.index_alerts_prefix, s.index_metrics_prefix):
        assert prefix == prefix.lower() and not re.search(r'[\\/*?"<>| ,#:]', prefix)


def test_a_runs_indices_are_its_own_and_inside_the_shared_patterns(settings: Settings) -> None:
    one, two = (
        demo_settings(settings, "20261203074500-aaaaaa"),
        demo_settings(settings, "20261203074500-bbbbbb"),
    )
    for shared_template, own_template in (
        (alerts_template(settings), alerts_template(one)),
        (metrics_template(settings), metrics_template(one)),
    ):
        (shared,) = shared_template["index_patterns"]
        (own,) = own_template["index_patterns"]
        assert own_template["priority"] > shared_template["priority"]  # never equal where they overlap
        index = daily_index(own.removesuffix("*"), DAY_MS)
        assert fnmatchcase(index, shared) and fnmatchcase(index, own)
    alerts_of_one = daily_index(one.index_alerts_prefix, DAY_MS)
    assert alerts_of_one == "ssa-alerts-run-20261203074500-aaaaaa-2026.12.03"
    assert not fnmatchcase(alerts_of_one, two.index_alerts_pattern)
    assert not fnmatchcase(daily_index(two.index_alerts_prefix, DAY_MS), one.index_alerts_pattern)
    assert not fnmatchcase(daily_index(settings.index_alerts_prefix, DAY_MS), one.index_alerts_pattern)


def test_the_cleanup_removes_the_sessions_run_indices_and_keeps_others(settings: Settings) -> None:
    session_run, developer_run = "20261203074500-aaaaaa", "20261203074501-bbbbbb"
    for prefix in (settings.index_alerts_prefix, settings.index_metrics_prefix):
        ours = daily_index(demo.run_index_prefix(prefix, session_run), DAY_MS)
        theirs = daily_index(demo.run_index_prefix(prefix, developer_run), DAY_MS)
        assert is_throwaway_index(ours, {session_run})
        assert not is_throwaway_index(theirs, {session_run})
        assert not is_throwaway_index(daily_index(prefix, DAY_MS), {session_run})
    assert is_throwaway_index("ssa-test-e2e-alerts-2026.12.03", set())


def test_a_repeatable_slice_is_the_same_simulation_translated_in_time() -> None:
    from ingest.simulator import SimConfig, repeatable_slice, simulate

    now = DAY_MS + 15 * 3_600_000 + 123_456  # 15:02 UTC, the diurnal peak
    shapes = []
    for clock in (now, now + 3_700_000, now + 3 * 86_400_000 + 9 * 3_600_000):  # later, another hour
        start, shift = repeatable_slice(clock, 60_000)
        assert start % 600_000 == 0 and clock - 660_000 <= start <= clock - 60_000
        sim = simulate(
            SimConfig(
                seed=3, tenants=3, duration_s=60, start_ms=start, events_per_s=200, diurnal_shift_ms=shift
            )
        )
        shapes.append(
            [(e.ts - start, e.kind_name(), getattr(e, "src_ip", None)) for e in sim.events()]
            + [(t.start - start, t.scenario, t.entity) for t in sim.truth]
        )
    assert shapes[0] == shapes[1] == shapes[2] and len(shapes[0]) > 8_000


def _novel_events(name: str, seed: int = 5) -> tuple[Any, list[Any]]:
    from ingest.simulator import SimConfig, simulate

    sim = simulate(SimConfig(seed=seed, tenants=4, duration_s=300, events_per_s=0, scenarios={name: 3}))
    return sim, list(sim.injected)


def test_the_novel_scenario_is_internal_staging_that_no_rule_alerts_on() -> None:
    """The anomaly category's attack: gigabytes pulled from the VM's own tenant's peers after a few
    refused connects, which every rule leaves alone (they are for the anomaly models)."""
    from detectors.config import DetectorConfig
    from detectors.context import DetectionContext
    from detectors.engine import DetectionEngine
    from detectors.registry import all_detectors

    sim, events = _novel_events("anomaly.internal_data_staging")
    for rec in sim.truth:
        assert rec.category == "anomaly" and rec.entity.type == "vm" and not rec.benign
        flows = [e for e in events if e.id in set(rec.event_ids)]
        vm = next(v for v in sim.topology.vms if v.id == rec.entity.id)
        peers = {v.ip for v in sim.topology.tenant_by_id[vm.tenant].vms if v.id != vm.id}
        assert {e.src_ip for e in flows} == {vm.ip} and {e.dst_ip for e in flows} == peers
        assert sum(e.action == "reject" for e in flows) < 20  # under the scan rule's failed pairs
        assert sum(e.bytes_in for e in flows) >= 400_000_000 * len(peers)
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(sim.registry, cfg))
    assert [a.detector for a in engine.run(events)] == []


def test_the_demo_baseline_is_benign_before_the_run_cached_and_seeds_the_job_config(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from detectors.anomaly.store import ModelSet
    from detectors.config import DetectorConfig
    from ingest.simulator import SimConfig, simulate

    small = {"min_baseline_rows": 40, "reservoir_rows": 64}
    config = DetectorConfig.default().merged(
        {
            "detectors": {
                "anomaly.flow_features": {"params": small},
                "anomaly.process_activity": {"params": small},
            }
        }
    )
    sim = simulate(SimConfig(seed=3, tenants=3, duration_s=240, start_ms=DAY_MS, events_per_s=30))
    models, info = demo.anomaly_baseline(settings, sim, config, say=lambda _m: None)
    assert not info["cached"] and info["rows"]["flow"] >= 45 and info["windows"] >= 1
    assert info["before_run_ms"] - info["windows"] * 300_000 > 0  # a period before the run, not in it
    flow = ModelSet.load(models, "flow")
    assert flow.feature_names == list(demo_feature_names()) and flow.family == "ecod"
    again, info2 = demo.anomaly_baseline(settings, sim, config, say=lambda _m: None)
    assert again == models and info2["cached"]
    # the same cloud in another data dir: the same rows (the fit is a function of its key)
    other = settings.with_overrides(data_dir=str(settings.data_path / "elsewhere"))
    models2, _ = demo.anomaly_baseline(other, sim, config, say=lambda _m: None)
    assert np.array_equal(ModelSet.load(models2, "flow").models["*"].rows_, flow.models["*"].rows_)
    # another rate is another baseline
    faster = simulate(SimConfig(seed=3, tenants=3, duration_s=240, start_ms=DAY_MS, events_per_s=60))
    assert demo.anomaly_baseline(settings, faster, config, say=lambda _m: None)[0] != models
    # a run starting later in the same window of the day (the end-to-end test's mean-rate slice
    # beside the demo's grid-aligned one) shares it; the next window of the day does not
    later = simulate(SimConfig(seed=3, tenants=3, duration_s=240, start_ms=DAY_MS + 165_423, events_per_s=30))
    same, info3 = demo.anomaly_baseline(settings, later, config, say=lambda _m: None)
    assert same == models and info3["cached"]
    next_window = simulate(
        SimConfig(seed=3, tenants=3, duration_s=240, start_ms=DAY_MS + 300_000, events_per_s=30)
    )
    assert demo.anomaly_baseline(settings, next_window, config, say=lambda _m: None)[0] != models
    run = demo_settings(settings, new_run_id(settings))
    loaded = DetectorConfig.load(demo.seeded_config_file(run, models))
    assert loaded.shared["models_dir"] == str(models)
    assert (
        loaded.detectors["anomaly.flow_features"]
        == DetectorConfig.default().detectors["anomaly.flow_features"]
    )


def demo_feature_names() -> tuple[str, ...]:
    from detectors.anomaly.features import FLOW_FEATURES

    return tuple(FLOW_FEATURES)
