"""The offline replay of the job's awareness stage and its measures (streams/awareness_eval.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detectors.alert import Alert, Attack, Entity
from detectors.config import DetectorConfig
from ingest.schema import AuthEvent, FlowEvent, ProcessEvent
from ingest.simulator.campaign import campaign_run
from ingest.simulator.truth import TruthEntity, TruthRecord
from ingest.tenants import TenantRegistry
from streams.awareness_eval import (
    AwarenessStage,
    JobReplay,
    ReplayResult,
    _Path,
    _warmup_segments,
    covers,
    final_incidents,
    main,
    measure_campaigns,
    measure_quiet,
    replay_run,
    restage,
    summarize,
    warning_diagnostics,
)

MIN = 60_000
T0 = 1_736_150_400_000
CFG = DetectorConfig.default()


def _alert(category: str = "port_scan", entity: tuple[str, str] = ("ip", "203.0.113.9"), first: int = T0,
           last: int = T0 + MIN, event_ids: list[str] | None = None) -> Alert:  # fmt: skip
    return Alert(
        alert_id="a1", ts=last, first_seen=first, last_seen=last, tenant="t-a",
        entity=Entity(entity[0], entity[1]),  # type: ignore[arg-type]
        category=category, severity="medium", score=50, detector="x.y", detector_version="1",  # type: ignore[arg-type]
        attack=Attack("Discovery", "T1046", "scan"), summary="s",
        evidence={"event_ids": event_ids or []},
    )  # fmt: skip


def _record(start: int = T0, end: int = T0 + MIN, ids: tuple[str, ...] = ("e1",)) -> TruthRecord:
    return TruthRecord(
        scenario="port_scan.vertical", category="port_scan", tenant="t-a",
        entity=TruthEntity(type="ip", id="203.0.113.9"), start=start, end=end, event_ids=list(ids),
        benign=False, detail={}, campaign="c", stage=0,
    )  # fmt: skip


# --- alert to truth ------------------------------------------------------------------------------
def test_covers_needs_the_category_or_an_anomaly() -> None:
    assert covers(_alert(), _record())
    assert not covers(_alert(category="dos"), _record())
    assert covers(_alert(category="anomaly"), _record())


def test_covers_needs_overlapping_spans_edges_included() -> None:
    rec = _record(T0, T0 + MIN)
    assert covers(_alert(first=T0 + MIN, last=T0 + 2 * MIN), rec)  # touches the end
    assert not covers(_alert(first=T0 + MIN + 1, last=T0 + 2 * MIN), rec)
    assert covers(_alert(first=T0 - MIN, last=T0), rec)  # touches the start
    assert not covers(_alert(first=T0 - MIN, last=T0 - 1), rec)


def test_covers_by_entity_or_by_a_shared_event_id() -> None:
    other = ("ip", "198.51.100.1")
    assert not covers(_alert(entity=other), _record())
    assert covers(_alert(entity=other, event_ids=["zz", "e1"]), _record())
    assert not covers(_alert(entity=other, event_ids=["zz"]), _record())


# --- the job's paths --------------------------------------------------------------------------------
def _flow(ts: int, n: int) -> FlowEvent:
    return FlowEvent(id=f"f{n}", ts=ts, source="sim", tenant="t-a", src_ip="10.1.0.5", dst_ip="10.1.0.6")


def test_a_window_is_emitted_once_the_watermark_passes_its_end() -> None:
    path = _Path("other", 2000, None, "")
    ev = AuthEvent(id="a", ts=T0 + 500, source="sim", tenant="t-a", user="u", result="failure")
    path.add(ev)
    assert path.advance(T0 + 998) == ([], []) and path.pending  # window [T0, T0+1000) still open
    path.advance(T0 + 999)
    assert not path.pending and path.advanced == {"t-a": T0 + 1000}
    path.add(AuthEvent(id="b", ts=T0 + 999, source="sim", tenant="t-a", user="u", result="failure"))
    assert path.late == 1 and path.events == 1  # at or behind the watermark: late, not detected


def test_events_are_keyed_as_the_producer_keys_them() -> None:
    path = _Path("other", 2000, None, "")
    path.add(
        ProcessEvent(id="p", ts=T0, source="sim", tenant="t-a", host="hv-01", exe="/bin/x", syscall="execve")
    )
    path.add(AuthEvent(id="a", ts=T0, source="sim", tenant="t-a", user="u", result="failure"))
    path.add(AuthEvent(id="n", ts=T0, source="sim", tenant=None, user="u", result="failure"))
    assert sorted(path.pending[T0 + 1000]) == ["-", "hv-01", "t-a"]


def test_a_keys_batches_before_the_watermark_go_before_its_timer() -> None:
    """As in Flink, the windows that end by a watermark reach the keyed function before the
    watermark fires its timers. A timer step closes up to the watermark: fired first, it made the
    key's next batch late in its engine (a sparse capture's watermark jumps seconds at a time)."""
    from streams.detect_fn import DetectionJobConfig

    replay = JobReplay(TenantRegistry(), CFG, job=DetectionJobConfig(flow_export_delay_ms=2000))
    # batch [10 s, 11 s) stepped when the watermark reaches 12.5 s, leaving a timer at 12 s; the
    # event at 13.7 s waits in batch [13 s, 14 s); at 16.9 s the watermark (14.9 s) passes both.
    replay.feed([_flow(T0 + ms, n) for n, ms in enumerate((10_200, 14_500, 13_700, 16_900))])
    engine = replay.flows.states["t-a"].engine
    assert replay.flows.late == 0
    assert engine.stats()["late_events"] == 0 and engine.stats()["events"] == 2  # 14.5 s, 16.9 s pending


def test_posture_records_of_a_minute_come_when_the_paths_watermark_closes_it() -> None:
    replay = JobReplay(TenantRegistry(), CFG, detect=False)
    replay.feed([_flow(T0 + 1000 * i, i) for i in range(70)])  # 70 s of flows
    # the flow path's watermark is 6 min behind: nothing closed yet, so the stage has no minute
    assert replay.stage.threat == []
    replay.finish()
    threat = [d for d in replay.stage.threat if d["tenant"] == "t-a"]
    assert threat and threat[0]["ts"] == T0
    assert replay.flows.late == 0 and replay.stats()["events"] == 70


def test_stage_timers_fire_at_minute_ends_per_tenant() -> None:
    stage = AwarenessStage(None, CFG)
    rec = {"ts": T0, "tenant": "t-a", "kind": "auth", "events": 1, "failures": 0}
    stage.on_metrics(rec)
    stage.on_metrics({**rec, "tenant": "-"})  # nobody's
    assert stage.timers == {"t-a": T0 + MIN}
    stage.advance(T0 + MIN - 1)
    assert stage.threat == []
    stage.advance(T0 + MIN)
    assert [(d["tenant"], d["ts"]) for d in stage.threat] == [("t-a", T0)]
    assert [d["tenant"] for d in stage.cloud_threat] == ["_cloud"]
    assert stage.timers == {"t-a": T0 + 2 * MIN}


def test_final_incidents_keep_the_highest_version() -> None:
    docs = [
        {"tenant": "t", "incident_id": "i", "version": 1, "x": 1},
        {"tenant": "t", "incident_id": "i", "version": 3, "x": 3},
        {"tenant": "t", "incident_id": "i", "version": 2, "x": 2},
        {"tenant": "u", "incident_id": "i", "version": 0, "x": 0},
    ]
    latest = final_incidents(docs)
    assert latest[("t", "i")]["x"] == 3 and latest[("u", "i")]["x"] == 0


# --- end to end on one campaign without background ---------------------------------------------------
@pytest.fixture(scope="module")
def lone() -> tuple[ReplayResult, dict[str, Any]]:
    run = campaign_run(321, duration_ms=5 * 3_600_000, campaigns=1, ramping_share=0.0, events_per_s=0.0)
    result = replay_run(run, CFG, warmup_days=0)
    return result, measure_campaigns(result)


def test_replay_is_deterministic(lone: tuple[ReplayResult, dict[str, Any]]) -> None:
    result, measured = lone
    again = replay_run(result.run, CFG, warmup_days=0)
    assert [a.alert_id for a in again.alerts] == [a.alert_id for a in result.alerts]
    for name in ("incidents", "threat", "warnings", "cloud_threat"):
        assert json.dumps(getattr(again.stage, name), sort_keys=True) == json.dumps(
            getattr(result.stage, name), sort_keys=True
        )
    assert measure_campaigns(again)["campaigns"] == measured["campaigns"]


def test_quiet_measures_count_the_alerts_of_the_counted_days_by_detector(
    lone: tuple[ReplayResult, dict[str, Any]],
) -> None:
    result, _ = lone
    assert result.alerts
    cut = sorted(a.ts for a in result.alerts)[len(result.alerts) // 2]
    measured = measure_quiet(result, cut)
    later = [a.detector for a in result.alerts if a.ts >= cut]
    assert measured["alerts_counted_by_detector"] == {d: later.count(d) for d in set(later)}
    assert sum(measured["alerts_counted_by_detector"].values()) == len(later) < len(result.alerts)
    assert measured["vms"] == sum(len(t.vms) for t in result.run.topology.tenants) > 0


def test_restage_of_a_recorded_input_reproduces_the_run_and_sees_new_settings(
    lone: tuple[ReplayResult, dict[str, Any]],
) -> None:
    result, measured = lone
    recorded = replay_run(result.run, CFG, warmup_days=0, record=True)
    assert recorded.stage.log is not None and any(kind == "a" for kind, _ in recorded.stage.log)
    again = restage(result.run, recorded.stage.log, recorded.stats, CFG)
    assert [a.alert_id for a in again.alerts] == [a.alert_id for a in result.alerts]
    for name in ("incidents", "threat", "warnings", "cloud_threat"):
        assert json.dumps(getattr(again.stage, name), sort_keys=True) == json.dumps(
            getattr(result.stage, name), sort_keys=True
        )
    assert measure_campaigns(again)["campaigns"] == measured["campaigns"]
    # another incident setting is applied: a zero gap leaves every alert its own incident or more
    apart = CFG.merged({"awareness": {"incidents": {"gap_ms": 0, "actor_gap_ms": 0}}})
    split = measure_campaigns(restage(result.run, recorded.stage.log, recorded.stats, apart))
    assert split["incidents"] > measured["incidents"]


def test_cli_restage_of_a_missing_record_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--seeds",
        "321",
        "--quiet-seeds",
        "--hours",
        "0.1",
        "--campaigns",
        "0",
        "--restage",
        str(tmp_path),
    ]
    assert main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cannot read the recorded input of seed 321")


def test_campaign_measures_are_consistent(lone: tuple[ReplayResult, dict[str, Any]]) -> None:
    result, measured = lone
    (c,) = measured["campaigns"]
    assert measured["alerts"] == len(result.alerts) > 0
    held = {i for s in c["stages"] for i in s["incidents"]}
    assert c["incident_count"] == len(held) == len(c["incidents"]) >= 1
    assert c["split"] == (len(held) > 1)
    assert c["stages_detected"] >= 3  # scan, escape and upload raise alerts of their own
    assert all(s["unattached_alerts"] == 0 for s in c["stages"])
    # the escape's alert lifts the victim tenant to orange in its own minute (category floor)
    assert c["orange"]["escape_alert"] is not None and c["orange"]["delay_min"] == 0
    assert result.stats["late_events"] == 0


# --- summary and command line --------------------------------------------------------------------
def _camp(cid: str, ramping: bool, lead: float | None, orange: float | None, n: int = 1) -> dict[str, Any]:
    return {
        "campaign": cid, "ramping": ramping, "incident_count": n, "split": n > 1, "merged_with_campaigns": [],
        "kill_chain_ok": True if n == 1 else None, "lead_min": lead, "lead_vs_escape_event_min": lead,
        "orange": {"escape_alert": {"ts": 0}, "delay_min": orange},
    }  # fmt: skip


def test_summary_targets_at_their_edges() -> None:
    runs = [{"campaigns": [_camp("a", True, 10.0, 2.0), _camp("b", False, None, 0.0)],
             "compression": 10.0, "compression_attached": 9.0}]  # fmt: skip
    quiet = [{"warnings_per_tenant_week": 1.0}]
    s = summarize(runs, quiet)
    assert s["warning_lead_min"]["met"] and s["orange_after_escape_min"]["met"]
    assert s["compression"]["met"] and s["false_warnings_per_tenant_week"]["met"]
    assert s["incidents_per_campaign"]["met"] and s["kill_chain_order"]["met"]
    runs[0]["campaigns"] = [_camp("a", True, 9.9, 2.1), _camp("b", False, None, 0.0, n=2)]
    runs[0]["compression"] = 9.99
    s = summarize(runs, [{"warnings_per_tenant_week": 1.01}])
    assert not s["warning_lead_min"]["met"] and not s["orange_after_escape_min"]["met"]
    assert not s["compression"]["met"] and not s["false_warnings_per_tenant_week"]["met"]
    assert s["incidents_per_campaign"]["split"] == 1 and not s["incidents_per_campaign"]["met"]
    runs[0]["campaigns"] = [_camp("a", True, None, 1.0)]  # no warning at all is a miss
    assert not summarize(runs, [])["warning_lead_min"]["met"]


def test_cli_help_and_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--quiet-mode" in capsys.readouterr().out
    part = {"command": "x", "config": "c", "params": {}, "wall_s": 1.0,
            "runs": [{"campaigns": [_camp("a", True, 12.0, 1.0)], "compression": 20.0,
                      "compression_attached": 15.0}],
            "quiet": [{"warnings_per_tenant_week": 0.5}]}  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(part))
    (tmp_path / "b.json").write_text(json.dumps({**part, "quiet": [{"warnings_per_tenant_week": 2.0}]}))
    out = tmp_path / "m.json"
    assert main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert len(doc["runs"]) == 2 and doc["summary"]["false_warnings_per_tenant_week"]["per_seed"] == [
        0.5,
        2.0,
    ]
    assert not doc["summary"]["false_warnings_per_tenant_week"]["met"]


def test_warmup_covers_the_runs_hours_of_previous_days_and_never_the_run() -> None:
    run = campaign_run(321, duration_ms=5 * 3_600_000, campaigns=1, events_per_s=0.0)
    start, hour, day = run.config.start_ms, 3_600_000, 86_400_000
    segs = _warmup_segments(run, 2)
    spans = [(s.config.start_ms, s.config.end_ms) for s in segs]
    assert spans == [
        (start - 2 * day - hour, start - 2 * day + 6 * hour),
        (start - day - hour, start - day + 6 * hour),
    ]
    assert len({s.config.seed for s in segs} | {run.config.seed}) == 3  # other draws each day
    assert all(s.topology == run.topology for s in segs)
    long = campaign_run(321, duration_ms=24 * hour, campaigns=1, events_per_s=0.0)
    (seg,) = _warmup_segments(long, 1)
    assert seg.config.end_ms <= long.config.start_ms


def test_warning_diagnostics_tell_cold_from_warm_forecasters() -> None:
    stage = AwarenessStage(None, CFG)
    minutes = 25 * 60
    for m in range(minutes):
        stage.on_metrics(
            {"ts": T0 + m * MIN, "tenant": "t-a", "kind": "auth", "events": 3, "failures": m % 2}
        )
        stage.advance(T0 + (m + 1) * MIN)
        if m == 120:  # two hours in: no hour-of-day bucket ahead has been learnt yet
            assert warning_diagnostics(stage, T0 + (m + 1) * MIN)["t-a"]["warm_signals"] == []
    diag = warning_diagnostics(stage, T0 + minutes * MIN)["t-a"]
    assert "failed_logins" in diag["warm_signals"] and diag["raised"] == 0 and diag["evicted"] == 0
