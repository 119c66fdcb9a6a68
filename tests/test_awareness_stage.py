"""The awareness stage's per-tenant state (awareness/stage.py): TenantAwareness and CloudAwareness."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from awareness import stage
from awareness.snooze import Snooze
from awareness.stage import (
    MAX_PENDING_ALERTS,
    MAX_RECORDS_PER_MINUTE,
    QUIET_AFTER_MS,
    CloudAwareness,
    TenantAwareness,
)
from detectors.alert import Entity, make_alert_id
from detectors.config import DetectorConfig

MIN = 60_000
T0 = 1_736_150_400_000  # Monday 2025-01-06 08:00 UTC, a minute boundary
CFG = DetectorConfig.default()


def alert(
    detector: str,
    category: str,
    tactic: str,
    entity: tuple[str, str],
    start: int,
    *,
    tenant: str = "t-a",
    window: int = MIN,
    score: int = 60,
    severity: str = "medium",
) -> dict[str, Any]:
    end = start + window
    ent = Entity(entity[0], entity[1])  # type: ignore[arg-type]
    return {
        "alert_id": make_alert_id(detector, ent, start, end, tenant),
        "ts": end,
        "first_seen": start + 1000,
        "last_seen": end - 1000,
        "tenant": tenant,
        "entity": {"type": entity[0], "id": entity[1]},
        "category": category,
        "severity": severity,
        "score": score,
        "detector": detector,
        "detector_version": "1.0.0",
        "attack": {"tactic": tactic, "technique_id": "T0000", "technique": "test"},
        "summary": f"{detector} on {entity[1]}",
        "evidence": {"count": 1, "event_ids": [], "window_start": start, "window_end": end},
        "status": "open",
    }


def escape(start: int, vm: str = "vm-x", tenant: str = "t-a") -> dict[str, Any]:
    return alert(
        "vm_escape.emulator_child_process", "vm_escape", "Privilege Escalation", ("vm", vm), start,
        tenant=tenant, score=92, severity="critical",
    )  # fmt: skip


def scan(start: int, ip: str = "203.0.113.9") -> dict[str, Any]:
    return alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("ip", ip), start, score=50)


def auth(minute: int, failures: int, events: int | None = None, tenant: str = "t-a") -> dict[str, Any]:
    return {
        "ts": minute, "tenant": tenant, "kind": "auth", "key": tenant, "events": events or failures,
        "events_per_s": 0.0, "bytes": 0, "flows": 0, "alerts": 0, "failures": failures,
        "distinct_peers": 0, "distinct_dst_ports": 0,
    }  # fmt: skip


def test_an_escape_alert_opens_an_incident_and_lifts_the_level_in_its_own_minute() -> None:
    ta = TenantAwareness("t-a", CFG)
    a = escape(T0 + 5 * MIN)
    out = ta.on_alert(a)
    assert [d["status"] for d in out.incidents] == ["open"]
    assert len(out.threat) == 1
    doc = out.threat[0]
    assert doc["ts"] == T0 + 6 * MIN  # the minute of the alert's ts (its window end)
    assert doc["level"] in ("orange", "red")
    assert doc["index"] >= 50


def test_minutes_closed_after_a_later_alert_arrived_do_not_count_its_incident() -> None:
    # The process path runs ahead of the flow path: an escape alert of minute 31 reaches the
    # stage while minutes 0-9 are still open; those minutes stay at the level they had.
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 0, events=1))
    ta.on_alert(escape(T0 + 30 * MIN))
    out = ta.on_watermark(T0 + 10 * MIN)
    assert [d["ts"] for d in out.threat] == [T0 + m * MIN for m in range(10)]
    assert {d["level"] for d in out.threat} == {"blue"}
    later = ta.on_watermark(T0 + 32 * MIN)
    assert later.threat[-1]["ts"] == T0 + 31 * MIN and later.threat[-1]["level"] in ("orange", "red")


def test_a_duplicate_alert_changes_nothing_and_emits_no_level() -> None:
    ta = TenantAwareness("t-a", CFG)
    a = escape(T0)
    ta.on_alert(a)
    again = ta.on_alert(a)
    assert again.incidents == [] and again.threat == []


def test_a_minute_closes_only_when_the_watermark_reaches_its_end() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 2))
    assert ta.next_timer() == T0 + MIN
    assert ta.on_watermark(T0 + MIN - 1).threat == []
    out = ta.on_watermark(T0 + MIN)
    assert [d["ts"] for d in out.threat] == [T0]
    assert ta.next_timer() == T0 + 2 * MIN
    # minutes without input still close while the clock runs (quiet minutes count as such)
    out = ta.on_watermark(T0 + 4 * MIN)
    assert [d["ts"] for d in out.threat] == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]


def test_posture_of_a_closed_minute_raises_the_level_of_that_minute() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 0, events=5))
    ta.on_metrics(auth(T0 + MIN, 20))  # twice the failed-login reference: 50 points, capped at 60
    out = ta.on_watermark(T0 + 2 * MIN)
    quiet, loud = out.threat
    assert quiet["level"] == "blue" and quiet["index"] == 0
    assert loud["level"] == "orange" and loud["index"] == 50
    assert loud["contributors"]["signals"]["failed_logins"] == 50


def test_a_late_record_counts_in_the_first_open_minute() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 0, events=1))
    ta.on_watermark(T0 + 2 * MIN)  # minutes T0 and T0+1 closed
    ta.on_metrics(auth(T0, 20))  # belongs to a closed minute
    out = ta.on_watermark(T0 + 3 * MIN)
    assert [(d["ts"], d["level"]) for d in out.threat] == [(T0 + 2 * MIN, "orange")]


def test_records_beyond_the_per_minute_cap_are_not_kept() -> None:
    ta = TenantAwareness("t-a", CFG)
    for _ in range(MAX_RECORDS_PER_MINUTE):
        ta.on_metrics(auth(T0, 0, events=1))
    ta.on_metrics(auth(T0, 20))  # one record too many: dropped
    assert len(ta.minutes[T0]) == MAX_RECORDS_PER_MINUTE
    (doc,) = ta.on_watermark(T0 + MIN).threat
    assert doc["level"] == "blue"


def test_the_clock_stops_after_an_hour_of_quiet_and_restarts_at_the_next_input() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 1))
    out = ta.on_watermark(T0 + 3 * QUIET_AFTER_MS)
    # minutes up to last input + QUIET_AFTER_MS close, then the clock stops
    assert out.threat[-1]["ts"] == T0 + QUIET_AFTER_MS
    assert len(out.threat) == QUIET_AFTER_MS // MIN + 1
    assert ta.stopped and ta.next_timer() is None
    later = T0 + 5 * QUIET_AFTER_MS + 7 * MIN
    ta.on_metrics(auth(later, 1))
    assert not ta.stopped and ta.next_timer() == later + MIN
    out = ta.on_watermark(later + MIN)
    assert [d["ts"] for d in out.threat] == [later]  # no back-fill of the quiet hours


def test_an_open_incident_keeps_the_clock_running_until_it_expires() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_alert(escape(T0))
    gap = ta.incidents.settings.gap_ms + ta.incidents.settings.grace_ms
    last_seen = T0 + MIN - 1000
    out = ta.on_watermark(last_seen + gap)  # not idle long enough yet
    assert [d for d in out.incidents if d["status"] == "closed"] == []
    assert all(d["level"] in ("orange", "red") for d in out.threat)  # the escape floor holds
    out = ta.on_watermark(last_seen + gap + 1)
    closed = [d for d in out.incidents if d["status"] == "closed"]
    assert [d["close_reason"] for d in closed] == ["inactive"]
    assert ta.incidents.open_incidents() == []


def test_the_level_decays_while_the_incident_stays_silent() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 0, events=1))
    ta.on_alert(scan(T0))
    out = ta.on_watermark(T0 + 40 * MIN)
    indices = [d["index"] for d in out.threat if d["ts"] >= T0 + 2 * MIN]
    assert indices == sorted(indices, reverse=True) and indices[0] > indices[-1]


def test_an_alert_as_first_input_starts_the_minute_clock() -> None:
    """Found by this suite (no timer for an alert-only tenant, its incidents never expired);
    fixed in stage._minute_of."""
    ta = TenantAwareness("t-a", CFG)
    ta.on_alert(scan(T0))
    assert ta.next_timer() == T0 + 2 * MIN  # the alert's minute (ts = T0 + 1 min) closes then
    out = ta.on_watermark(T0 + 3 * 60 * MIN)
    assert out.threat and [d["close_reason"] for d in out.incidents] == ["inactive"]


def test_snoozes_apply_once_and_only_the_tenants_own() -> None:
    ta = TenantAwareness("t-a", CFG)
    a = scan(T0)
    ta.on_alert(a)
    mine = Snooze("t-a", a["detector"], "203.0.113.9", T0 + 10 * 60 * MIN, "known scanner", "ana", T0)
    other = Snooze("t-b", a["detector"], "203.0.113.9", T0 + 10 * 60 * MIN, "x", "bob", T0)
    out = ta.on_snoozes([mine, other])
    assert len(out.incidents) == 1
    assert out.incidents[0]["audit"][-1]["by"] == "ana"
    assert ta.on_snoozes([mine, other]).incidents == []


def test_state_pickles_and_resumes_with_identical_output() -> None:
    a, b = TenantAwareness("t-a", CFG), None
    a.on_metrics(auth(T0, 3))
    a.on_alert(scan(T0))
    b = pickle.loads(pickle.dumps(a))
    steps = [(escape(T0 + 3 * MIN), T0 + 5 * MIN), (None, T0 + 90 * MIN)]
    outs: list[list[Any]] = [[], []]
    for i, ta in enumerate((a, b)):
        for al, wm in steps:
            if al is not None:
                outs[i].append(ta.on_alert(al).__dict__)
            outs[i].append(ta.on_watermark(wm).__dict__)
    assert outs[0] == outs[1]


def test_cloud_level_is_the_worst_tenant_and_forgets_tenants_quiet_for_an_hour() -> None:
    cloud = CloudAwareness(CFG)
    ta, tb = TenantAwareness("t-a", CFG), TenantAwareness("t-b", CFG)
    ta.on_metrics(auth(T0, 0, events=1))
    (blue,) = ta.on_watermark(T0 + MIN).threat
    red = tb.on_alert(escape(T0, "vm-y", "t-b")).threat[0]
    assert cloud.on_tenant_threat(blue)["level"] == "blue"
    doc = cloud.on_tenant_threat(red)
    assert doc["level"] == red["level"] and doc["index"] >= red["index"]
    assert doc["contributors"]["max_tenant"] == "t-b"
    # an hour and a minute later only t-a reports: t-b's old document no longer counts
    later = dict(blue, ts=red["ts"] + QUIET_AFTER_MS + MIN)
    assert cloud.on_tenant_threat(later)["level"] == "blue"
    assert set(cloud.latest) == {"t-a"}


def test_a_ramp_of_failed_logins_after_a_quiet_day_warns_before_it_crosses_the_level() -> None:
    ta = TenantAwareness("t-a", CFG)
    start = T0 - 26 * 60 * MIN  # a quiet day and two hours of 0-2 failed logins a minute
    wm = start
    for m in range(26 * 60):
        ta.on_metrics(auth(start + m * MIN, m % 3, events=5))
        wm = start + (m + 1) * MIN
        assert ta.on_watermark(wm).warnings == []  # no false warning on the quiet day
    warned, crossed = None, None
    for m in range(90):  # 2 -> 30 failed logins a minute, linearly
        minute = wm + m * MIN
        value = 2 + round(28 * m / 89)
        ta.on_metrics(auth(minute, value, events=value))
        out = ta.on_watermark(minute + MIN)
        if out.warnings and warned is None:
            warned = minute
            assert out.warnings[0]["signal"] == "failed_logins"
        if crossed is None and value >= 10:  # 10 a minute alone is yellow (threat.py)
            crossed = minute
    assert warned is not None and crossed is not None
    assert warned < crossed


def guessing(start: int, vm: str = "vm-x") -> dict[str, Any]:
    return alert(
        "brute_force.auth_failures", "brute_force", "Credential Access", ("vm", vm), start,
        window=10 * MIN, score=60,
    )  # fmt: skip


def _campaign_minutes(start: int) -> list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]]:
    """90 minutes: failed logins ramping 2 -> 30 a minute, a password-guessing alert on vm-x every
    10 minutes from minute 5 (its incident: yellow), the VM's escape (critical) at minute 80."""
    out = []
    for m in range(90):
        minute = start + m * MIN
        value = 2 + round(28 * m / 89)
        alerts = [guessing(minute - 10 * MIN)] if m >= 5 and m % 10 == 5 else []
        if m == 80:
            alerts.append(escape(minute - MIN))
        out.append((minute, [auth(minute, value, events=value)], alerts))
    return out


def _run_campaign(ahead: bool) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """A quiet day, then ``_campaign_minutes``: each minute's input then its close (``ahead``
    false: paths in step, as the offline replay), or every record and alert of the campaign
    first, then the closes (``ahead``: the live job, whose process/audit/auth path ran ahead of
    the flow path that holds the stage's watermark back). Levels and warnings of the campaign."""
    ta = TenantAwareness("t-a", CFG)
    start = T0 - 26 * 60 * MIN
    for m in range(26 * 60):
        ta.on_metrics(auth(start + m * MIN, m % 3, events=5))
        ta.on_watermark(start + (m + 1) * MIN)
    campaign = _campaign_minutes(start + 26 * 60 * MIN)
    outs = []
    for minute, records, alerts in campaign:
        for r in records:
            ta.on_metrics(r)
        for a in alerts:
            ta.on_alert(a)
        if not ahead:
            outs.append(ta.on_watermark(minute + MIN))
    if ahead:
        outs += [ta.on_watermark(minute + MIN) for minute, _, _ in campaign]
    levels = [(d["ts"], d["level"]) for o in outs for d in o.threat]
    warnings = [(w["ts"], w["signal"], w["current_level"]) for o in outs for w in o.warnings]
    return levels, warnings


def test_levels_and_warnings_do_not_depend_on_how_far_alerts_run_ahead_of_the_clock() -> None:
    """Found by the live campaign test (tests/integration/test_campaign.py): the continuous job
    wrote no warning where the offline replay warned 16.4 min before the first critical alert.
    Reading its backlog, the job's process/audit/auth path ran far ahead of the flow path, so the
    escape alert reached the stage while the ramp's minutes were open, joined the incident the
    scan had opened, and those minutes closed at red (index 90), where nothing can be warned of."""
    in_step, ahead = _run_campaign(ahead=False), _run_campaign(ahead=True)
    assert ahead == in_step
    levels, warnings = in_step
    escape_minute = levels[80][0]
    assert {lv for ts, lv in levels if ts < escape_minute} == {"blue", "yellow", "orange"}
    assert [lv for ts, lv in levels if ts == escape_minute] == ["red"]
    assert warnings and warnings[0][1] == "failed_logins" and warnings[0][0] < escape_minute


def test_alerts_ahead_of_the_clock_give_a_provisional_level_at_once() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 0, events=1))
    ta.on_alert(guessing(T0))  # ts T0 + 10 min: opens the incident
    (now,) = ta.on_alert(escape(T0 + 40 * MIN)).threat  # 31 minutes ahead of it
    assert now["ts"] == T0 + 41 * MIN and now["level"] == "red"  # at once, as known now
    assert now["provisional"] is True  # the indexer never lets it replace the minute's final level
    final = ta.on_watermark(T0 + 42 * MIN).threat
    assert not any("provisional" in d for d in final)
    closed = {d["ts"]: d["level"] for d in final}
    assert closed[T0 + 10 * MIN] == "yellow"  # the guessing incident alone, decaying after
    assert {closed[T0 + m * MIN] for m in range(11, 41)} <= {"blue", "yellow"}
    assert closed[T0 + 41 * MIN] == "red"  # the minute's own document, rewritten at its close


def test_state_pickled_before_the_level_tracker_resumes() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 0, events=1))
    ta.on_alert(guessing(T0))
    ta.on_watermark(T0 + 11 * MIN)
    old = pickle.loads(pickle.dumps(ta))
    del old.__dict__["levels"], old.__dict__["pending"]  # what a checkpoint of the older code holds
    resumed = pickle.loads(pickle.dumps(old))
    assert [i["incident_id"] for i in resumed.levels.open_incidents()] == [
        i["incident_id"] for i in ta.incidents.open_incidents()
    ]
    assert resumed.on_watermark(T0 + 20 * MIN).__dict__ == ta.on_watermark(T0 + 20 * MIN).__dict__


def test_alerts_held_for_the_level_tracker_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_PENDING_ALERTS >= 1000
    monkeypatch.setattr(stage, "MAX_PENDING_ALERTS", 5)  # the same code path, faster
    ta = TenantAwareness("t-a", CFG)
    ta.on_metrics(auth(T0, 0, events=1))
    for i in range(6):  # all far ahead of the clock, each its own incident
        ta.on_alert(scan(T0 + 60 * MIN + i * 1000, ip=f"198.51.100.{i}"))
    assert len(ta.pending) == 5
    assert ta.levels.stats()["alerts"] == 1  # the earliest went in at once


def test_a_tenant_restored_under_another_configuration_takes_its_settings_and_keeps_its_incidents() -> None:
    ta = TenantAwareness("t-a", CFG)
    ta.on_alert(scan(T0))
    restored: TenantAwareness = pickle.loads(pickle.dumps(ta))
    assert restored.config_digest == CFG.digest()
    other = CFG.merged(
        {"awareness": {"incidents": {"gap_ms": 5 * MIN}, "threat": {"severity_points": {"medium": 40}}}}
    )
    restored.reconfigure(other)
    assert restored.config_digest == other.digest() != CFG.digest()
    assert restored.incidents.settings.gap_ms == 5 * MIN and restored.levels.settings.gap_ms == 5 * MIN
    assert restored.threat_settings.severity_points["medium"] == 40
    assert restored.warning.settings == stage.WarningSettings.from_config(other)
    # the incident it had stays; the shorter gap applies from now on: the same scan 20 minutes later
    # opens an incident of its own, where the old settings (30 minutes) join it to the first
    assert [d["status"] for d in restored.on_alert(scan(T0 + 20 * MIN)).incidents] == ["open"]
    assert len(restored.incidents._open) == 2
    assert ta.on_alert(scan(T0 + 20 * MIN)).incidents and len(ta.incidents._open) == 1
    # a state pickled before the digest was kept asks for the current settings
    old = pickle.loads(pickle.dumps(ta))
    del old.__dict__["config_digest"]
    assert pickle.loads(pickle.dumps(old)).config_digest == ""
