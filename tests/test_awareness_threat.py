"""Threat index and levels (awareness/threat.py): the formula's edges, the escape rule, the cloud."""

from __future__ import annotations

import pytest

from awareness.threat import (
    CLOUD,
    LEVELS,
    ThreatSettings,
    cloud_threat,
    level_for_index,
    posture_signals,
    signal_threshold,
    tenant_threat,
)
from detectors.config import ConfigError, DetectorConfig

S = ThreatSettings()
T = 1_767_571_200_000  # a minute start
HL = S.half_life_ms


def inc(iid: str = "i1", severity: str = "medium", stage: str = "reconnaissance", last_seen: int = T, **kw):
    doc = {
        "incident_id": iid,
        "tenant": "t1",
        "status": "open",
        "severity": severity,
        "score": 50,
        "stage": stage,
        "first_seen": last_seen - 60_000,
        "last_seen": last_seen,
        "updated": last_seen,
        "categories": ["port_scan"],
        "alert_count": 3,
    }
    doc.update(kw)
    return doc


def test_quiet_tenant_is_blue_with_index_zero() -> None:
    quiet = {
        "alerts": 0.0,
        "failed_logins": 0.0,
        "probes": 12.0,
        "cross_tenant_flows": 0.0,
        "anomaly_p99": 0.99,
    }
    doc = tenant_threat("t1", T, [], quiet, "medium", S)
    assert (doc["index"], doc["level"], doc["level_rank"]) == (0.0, "blue", 0)
    assert doc["kind"] == "threat" and doc["tenant"] == "t1" and doc["ts"] == T
    assert doc["reasons"] == ["no open incident and no posture signal above normal"]


def test_index_saturates_at_100() -> None:
    many = [inc(f"i{k}", "critical", "impact", categories=["exfiltration"]) for k in range(5)]
    loud = {"alerts": 500.0, "failed_logins": 500.0, "probes": 5000.0, "cross_tenant_flows": 99.0}
    doc = tenant_threat("t1", T, many, loud, "critical", S)
    assert doc["index"] == 100.0 and doc["level"] == "red"
    # the reasons name the largest contributors first, at most max_reasons of them plus criticality
    assert doc["reasons"][0].startswith("open critical incident i0 at stage impact")
    assert len(doc["reasons"]) == S.max_reasons + 1 and "criticality critical" in doc["reasons"][-1]


@pytest.mark.parametrize(
    ("index", "level"),
    [
        (0, "blue"),
        (24.9, "blue"),
        (25, "yellow"),
        (49.9, "yellow"),
        (50, "orange"),
        (74.9, "orange"),
        (75, "red"),
        (100, "red"),
    ],
)
def test_level_boundaries(index: float, level: str) -> None:
    assert level_for_index(index, S) == level


def test_posture_signal_at_its_threshold_reaches_the_level_exactly() -> None:
    th = signal_threshold("failed_logins", "yellow", S)
    assert th is not None and th == pytest.approx(10.0)
    at = tenant_threat("t1", T, [], {"failed_logins": th}, None, S)
    # 9.96 failed logins: 24.9 points (the level is read from the index as shown, rounded to 0.1)
    below = tenant_threat("t1", T, [], {"failed_logins": th - 0.04}, None, S)
    assert (at["index"], at["level"]) == (25.0, "yellow")
    assert below["level"] == "blue"
    assert "failed logins 10 this minute" in at["reasons"][0]
    # posture alone is capped below red; a score cannot pass its ceiling
    assert signal_threshold("failed_logins", "red", S) is None
    assert signal_threshold("anomaly_p99", "yellow", S) is None
    assert signal_threshold("no_such_signal", "yellow", S) is None
    cap = tenant_threat("t1", T, [], {"failed_logins": 1e6, "probes": 1e6}, None, S)
    assert cap["index"] == S.posture_cap and cap["level"] == "orange"


def test_decay_halves_an_incident_per_half_life() -> None:
    fresh = tenant_threat("t1", T, [inc(last_seen=T)], {}, "medium", S)
    old = tenant_threat("t1", T, [inc(last_seen=T - HL)], {}, "medium", S)
    older = tenant_threat("t1", T, [inc(last_seen=T - 2 * HL)], {}, "medium", S)
    assert (fresh["index"], fresh["level"]) == (25.0, "yellow")
    assert (old["index"], old["level"]) == (12.5, "blue")
    assert older["index"] == 6.2  # 6.25 rounded half to even
    # evidence newer than the minute does not count more than fresh evidence
    assert tenant_threat("t1", T, [inc(last_seen=T + HL)], {}, "medium", S)["index"] == 25.0
    assert "30 min ago" in old["reasons"][0]


def test_criticality_scales_incident_points() -> None:
    i = [inc(severity="high", stage="credential_access")]  # 45 + 5 = 50 points at medium
    got = {
        c: tenant_threat("t1", T, i, {}, c, S)["index"]
        for c in ("low", "medium", "high", "critical", None, "bogus")
    }
    assert got == {"low": 40.0, "medium": 50.0, "high": 57.5, "critical": 65.0, None: 50.0, "bogus": 50.0}
    assert tenant_threat("t1", T, i, {}, "low", S)["level"] == "yellow"
    assert tenant_threat("t1", T, i, {}, "medium", S)["level"] == "orange"


def test_closed_incidents_do_not_count_and_incidents_combine_below_100() -> None:
    closed = inc(status="closed", severity="critical", stage="impact")
    assert tenant_threat("t1", T, [closed], {}, "medium", S)["index"] == 0.0
    two = tenant_threat("t1", T, [inc("a"), inc("b")], {}, "medium", S)
    assert two["index"] == pytest.approx(
        100 * (1 - 0.75 * 0.75), abs=0.05
    )  # 43.75: more than one, less than the sum
    assert two["contributors"]["open_incidents"] == 2


def test_escape_puts_the_tenant_at_orange_at_once_and_holds_it() -> None:
    escape = inc(severity="critical", stage="privilege_escalation", categories=["port_scan", "vm_escape"])
    now = tenant_threat("t1", T, [escape], {}, "medium", S)
    assert now["level"] == "red"  # 70 + 20 points
    # a low-criticality tenant whose escape evidence is hours old: the floor holds it at orange
    stale = dict(escape, last_seen=T - 6 * HL)
    held = tenant_threat("t1", T, [stale], {}, "low", S)
    assert (held["index"], held["level"]) == (50.0, "orange")
    assert held["reasons"][0].startswith("open vm_escape incident i1 holds the level at orange")
    assert held["contributors"]["floor"] == "orange"
    # even a medium-severity escape incident (the escape detector's own score) is orange
    mild = inc(severity="medium", stage="privilege_escalation", categories=["vm_escape"])
    assert tenant_threat("t1", T, [mild], {}, "low", S)["level"] == "orange"
    # once closed, the floor goes
    assert tenant_threat("t1", T, [dict(stale, status="closed")], {}, "low", S)["level"] == "blue"


def test_one_red_tenant_shows_at_cloud_level() -> None:
    red = tenant_threat("bad", T, [inc(severity="critical", stage="exfiltration")], {}, "medium", S)
    assert red["level"] == "red"
    quiet = [tenant_threat(f"q{k:02d}", T, [], {}, "medium", S) for k in range(49)]
    cloud = cloud_threat(T, [*quiet, red], S)
    mean = sum(d["index"] for d in [*quiet, red]) / 50
    assert level_for_index(mean, S) == "blue"  # a plain mean would hide it
    assert cloud["tenant"] == CLOUD and cloud["level"] == "red" and cloud["index"] >= red["index"]
    assert cloud["contributors"]["max_tenant"] == "bad"
    assert cloud["reasons"][0].startswith("tenant bad at red")
    assert cloud["contributors"]["tenants_by_level"] == {"blue": 49, "yellow": 0, "orange": 0, "red": 1}


def test_cloud_breadth_raises_above_the_worst_tenant() -> None:
    yellow = [tenant_threat(f"y{k}", T, [inc()], {}, "medium", S) for k in range(4)]
    assert {d["level"] for d in yellow} == {"yellow"}
    cloud = cloud_threat(T, yellow, S)
    assert cloud["index"] == 62.5 and cloud["level"] == "orange"  # 25 + 75 * 0.5 * 1
    half = cloud_threat(T, yellow[:2] + [tenant_threat("q", T, [], {}, None, S)] * 2, S)
    assert half["index"] == pytest.approx(25 + 75 * 0.5 * 0.5, abs=0.05)
    empty = cloud_threat(T, [], S)
    assert (empty["index"], empty["level"], empty["reasons"]) == (
        0.0,
        "blue",
        ["no tenant reported this minute"],
    )
    # a cloud document handed back in is ignored, not counted as a tenant
    assert cloud_threat(T, [*yellow, cloud], S)["index"] == 62.5


def test_doc_ids_are_deterministic_and_distinct() -> None:
    a = tenant_threat("t1", T, [inc()], {"alerts": 3.0}, "medium", S)
    b = tenant_threat("t1", T, [inc()], {"alerts": 3.0}, "medium", S)
    assert a == b
    assert a["doc_id"] != tenant_threat("t2", T, [], {}, None, S)["doc_id"]
    assert a["doc_id"] != tenant_threat("t1", T + 60_000, [], {}, None, S)["doc_id"]
    assert cloud_threat(T, [a], S)["doc_id"] not in (a["doc_id"],)
    assert a["level"] in LEVELS and a["level_rank"] == LEVELS.index(a["level"])


def test_posture_signals_from_metrics_records() -> None:
    recs = [
        {
            "kind": "flow",
            "tenant": "t1",
            "events": 100,
            "bytes": 5000,
            "distinct_peers": 7,
            "distinct_dst_ports": 30,
        },
        {
            "kind": "flow",
            "tenant": "t1",
            "events": 50,
            "bytes": 1000,
            "distinct_peers": 3,
            "distinct_dst_ports": 20,
        },
        {"kind": "auth", "tenant": "t1", "events": 9, "failed_logins": 4},
        {"kind": "alert", "tenant": "t1", "alerts": 2},
        {"kind": "anomaly", "tenant": "t1", "anomaly_p99": 0.97},
        {"kind": "anomaly", "tenant": "t1", "anomaly_p99": 0.995},
    ]
    got = posture_signals(recs)
    assert got == {
        "flow_events": 150.0,
        "probes": 50.0,
        "bytes": 6000.0,
        "distinct_peers": 10.0,
        "auth_events": 9.0,
        "failed_logins": 4.0,
        "alerts": 2.0,
        "anomaly_p99": 0.995,
    }
    assert "cross_tenant_flows" not in got  # absent, not a made-up 0


def test_settings_from_config_and_errors() -> None:
    cfg = DetectorConfig.default()
    assert ThreatSettings.from_config(cfg) == ThreatSettings.from_mapping(cfg.awareness_section("threat"))
    s = ThreatSettings.from_mapping(
        {"half_life_ms": 60_000, "severity_points": {"low": 30}, "posture": {"probes": {"ref": 100}}}
    )
    assert s.half_life_ms == 60_000 and s.severity_points["low"] == 30.0 and s.severity_points["high"] == 45.0
    assert s.posture["probes"].ref == 100.0 and s.posture["probes"].floor == 50.0
    with pytest.raises(ConfigError, match="unknown keys"):
        ThreatSettings.from_mapping({"half_lif_ms": 1})
    with pytest.raises(ConfigError, match="unknown names"):
        ThreatSettings.from_mapping({"severity_points": {"severe": 1}})
    with pytest.raises(ConfigError, match="yellow < orange < red"):
        ThreatSettings.from_mapping({"level_thresholds": {"orange": 20}})
    with pytest.raises(ConfigError, match="ref > floor"):
        ThreatSettings.from_mapping({"posture": {"probes": {"ref": 10}}})
    with pytest.raises(ConfigError, match="needs floor, ref and weight"):
        ThreatSettings.from_mapping({"posture": {"new_signal": {"ref": 10}}})
    with pytest.raises(ConfigError, match="not one of"):
        ThreatSettings.from_mapping({"category_floors": {"vm_escape": "purple"}})
    with pytest.raises(ConfigError, match="expected an integer"):
        ThreatSettings.from_mapping({"half_life_ms": "30m"})
    bad = cfg.merged({"awareness": {"threat": {"bogus": 1}}})
    with pytest.raises(ConfigError, match=r"awareness\.threat: unknown keys \['bogus'\]"):
        ThreatSettings.from_config(bad)
