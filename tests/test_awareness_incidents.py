"""Incidents (awareness/incidents.py, entities.py, killchain.py): grouping, kill chain, views, state."""

from __future__ import annotations

import itertools
import json
import pickle
import random
from pathlib import Path
from typing import Any

import pytest

from awareness.entities import mentions
from awareness.incidents import IncidentSettings, IncidentTracker, incident_id, phrases_once, tenant_views
from awareness.killchain import CATEGORY_STAGE, STAGES, stage_index, stage_of
from detectors.alert import CATEGORIES, Entity, make_alert_id
from detectors.config import ConfigError, DetectorConfig
from ingest.tenants import RegistryError, TenantRegistry

MIN = 60_000
T0 = 1_736_150_400_000  # a Monday, 08:00 UTC

REGISTRY = TenantRegistry.from_dict(
    {
        "management_cidrs": ["172.31.0.0/16"],
        "hosts": [{"id": "hv-01", "mgmt_ip": "172.31.0.1"}],
        "tenants": [
            {
                "id": "t-a",
                "cidrs": ["10.1.0.0/16"],
                "criticality": "high",
                "vms": [
                    {"id": "vm-x", "host": "hv-01", "ip": "10.1.0.5", "disk": "/img/vm-x.qcow2"},
                    {"id": "vm-z", "host": "hv-01", "ip": "10.1.0.7", "disk": "/img/vm-z.qcow2"},
                ],
            },
            {
                "id": "t-b",
                "cidrs": ["10.2.0.0/16"],
                "vms": [{"id": "vm-y", "host": "hv-01", "ip": "10.2.0.5", "disk": "/img/vm-y.qcow2"}],
            },
        ],
    }
)


def alert(
    detector: str,
    category: str,
    tactic: str,
    entity: tuple[str, str],
    start: int,
    *,
    tenant: str | None = "t-a",
    window: int = 5 * MIN,
    score: int = 60,
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An alert document shaped like the rules' (window aligned, evidence with the window)."""
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
        "severity": "medium",
        "score": score,
        "detector": detector,
        "detector_version": "1.0.0",
        "attack": {"tactic": tactic, "technique_id": "T0000", "technique": "test"},
        "summary": f"{detector} on {entity[1]}",
        "evidence": {
            "count": 3,
            "event_ids": [],
            "window_start": start,
            "window_end": end,
            **(evidence or {}),
        },
        "status": "open",
    }


def campaign() -> list[dict[str, Any]]:
    """vm-x of t-a: scan, password guessing, escape reading t-b's disk, traffic into t-b, upload out."""
    return [
        alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("ip", "10.1.0.5"), T0, score=60,
              evidence={"failed_pairs": 50, "shape": "horizontal", "source_internal": True}),
        alert("brute_force.flow_guessing", "brute_force", "Credential Access", ("vm", "vm-x"), T0 + 10 * MIN,
              window=10 * MIN, score=50, evidence={"top_target": "10.1.0.9", "sources": ["10.1.0.5"]}),
        alert("vm_escape.emulator_foreign_file", "vm_escape", "Privilege Escalation", ("vm", "vm-x"),
              T0 + 25 * MIN, window=MIN, score=90,
              evidence={"host": "hv-01", "vm": "vm-x", "signal": "foreign_vm_disk",
                        "details": {"disk of vm-y: openat /img/vm-y.qcow2": 1}}),
        alert("cross_tenant.unpeered_flow", "cross_tenant_leak", "Exfiltration", ("vm", "vm-x"), T0 + 35 * MIN,
              window=MIN, score=82,
              evidence={"src_tenant": "t-a", "dst_tenant": "t-b", "channel": "flow",
                        "details": {"accept t-a->t-b": 1}}),
        alert("exfiltration.external_upload", "exfiltration", "Exfiltration", ("vm", "vm-x"), T0 + 45 * MIN,
              score=85, evidence={"top_destination": "99.11.119.109"}),
    ]  # fmt: skip


def run(alerts: list[dict[str, Any]], tracker: IncidentTracker, registry: TenantRegistry | None = REGISTRY):
    """Feed ``alerts`` (only ``tracker``'s views), then close everything; final doc per incident id."""
    final: dict[str, dict[str, Any]] = {}
    for a in alerts:
        for tenant, view in tenant_views(a, registry, tracker.settings):
            if tenant == tracker.tenant:
                for doc in tracker.observe(view):
                    final[doc["incident_id"]] = doc
    for doc in tracker.expire(T0 + 10**9):
        final[doc["incident_id"]] = doc
    return final


def live(final: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in final.values() if d["close_reason"] != "merged"]


# --- kill chain ------------------------------------------------------------------------------------
def test_every_category_has_a_stage_and_stages_are_ordered() -> None:
    assert set(CATEGORY_STAGE) == set(CATEGORIES)
    assert [stage_index(s) for s in STAGES] == list(range(7))
    with pytest.raises(ValueError, match="unknown kill-chain stage"):
        stage_index("weaponization")


@pytest.mark.parametrize(
    ("detector", "category", "tactic", "stage"),
    [
        ("port_scan.internet_probes", "port_scan", "Reconnaissance", "reconnaissance"),
        ("c2.beacon", "command_and_control", "Command and Control", "lateral_movement"),
        ("spam.smtp_spam", "spam", "Impact", "impact"),
        ("anomaly.flow_features", "anomaly", "Exfiltration", "reconnaissance"),  # tactic ignored
        ("cross_tenant.foreign_resource_access", "cross_tenant_leak", "Collection", "collection"),
        (
            "cross_tenant.foreign_resource_access",
            "cross_tenant_leak",
            "Credential Access",
            "credential_access",
        ),
        ("cross_tenant.foreign_transfer_volume", "cross_tenant_leak", "Exfiltration", "exfiltration"),
        ("cross_tenant.unpeered_flow", "cross_tenant_leak", "Exfiltration", "lateral_movement"),
        ("cross_tenant.some_new_rule", "cross_tenant_leak", "", "collection"),
        ("x.new", "brand_new", "Impact", "impact"),
        ("x.new", "brand_new", "", "reconnaissance"),
    ],
)
def test_stage_of(detector: str, category: str, tactic: str, stage: str) -> None:
    assert stage_of({"detector": detector, "category": category, "attack": {"tactic": tactic}}) == stage


# --- grouping --------------------------------------------------------------------------------------
def settings(**kw: Any) -> IncidentSettings:
    return IncidentSettings(**kw)


def test_campaign_is_one_incident_with_the_chain_in_order_even_shuffled() -> None:
    titles = set()
    for seed in range(6):
        alerts = campaign()
        random.Random(seed).shuffle(alerts)
        docs = live(run(alerts, IncidentTracker("t-a", settings(), "high")))
        assert len(docs) == 1, [d["title"] for d in docs]
        doc = docs[0]
        assert [k["tactic"] for k in doc["kill_chain"]] == [
            "reconnaissance",
            "credential_access",
            "privilege_escalation",
            "lateral_movement",
            "exfiltration",
        ]
        assert doc["stage"] == "exfiltration"
        assert doc["alert_count"] == 5 and sorted(doc["alert_ids"]) == sorted(
            a["alert_id"] for a in campaign()
        )
        assert (
            doc["first_seen"] == T0 + 1000 and doc["status"] == "closed" and doc["close_reason"] == "inactive"
        )
        assert doc["severity"] == "critical" and doc["score"] == 100
        assert doc["other_tenants"] == ["t-b"]
        # Named after its earliest alert whatever the arrival order (the job's two event-time
        # paths interleave their alerts in no fixed order).
        earliest = min(campaign(), key=lambda a: (a["first_seen"], a["alert_id"]))
        assert doc["incident_id"] == incident_id("t-a", earliest["alert_id"])
        ids = {(e["type"], e["id"]) for e in doc["entities"]}
        assert {("vm", "vm-x"), ("ip", "10.1.0.5"), ("host", "hv-01")} <= ids
        assert not ids & {("vm", "vm-y"), ("ip", "10.2.0.5"), ("resource", "/img/vm-y.qcow2")}
        titles.add(doc["title"])
    assert titles == {
        "VM vm-x of tenant t-a: port scan, password guessing, emulator escape and read of tenant t-b's disk, "
        "traffic to tenant t-b, then upload out of the cloud"
    }


def test_two_unrelated_vms_make_two_incidents() -> None:
    a = alert("dos.source_flood", "dos", "Impact", ("ip", "34.1.1.1"), T0, evidence={"victim": "10.1.0.5"})
    b = alert("cryptomining.miner_process", "cryptomining", "Impact", ("vm", "vm-z"), T0 + MIN)
    docs = live(run([a, b], IncidentTracker("t-a", settings())))
    assert len(docs) == 2
    assert sorted(d["alert_count"] for d in docs) == [1, 1]


def test_without_registry_the_address_and_the_vm_do_not_meet() -> None:
    # The registry is what says 10.1.0.5 is vm-x: without it, two incidents.
    scan, escape = campaign()[0], campaign()[2]
    docs = live(run([scan, escape], IncidentTracker("t-a", settings()), registry=None))
    assert len(docs) == 2
    docs = live(run([scan, escape], IncidentTracker("t-a", settings())))
    assert len(docs) == 1


def test_the_gap_splits_and_its_edge() -> None:
    gap = 30 * MIN
    first = alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-x"), T0, window=MIN)
    last_seen = first["last_seen"]
    # The next alert's first_seen exactly gap after: same incident; 1 ms later: a new one.
    for offset, expected in ((gap, 1), (gap + 1, 2)):
        nxt = alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-x"), T0 + 60 * MIN)
        nxt["first_seen"] = last_seen + offset
        nxt["alert_id"] = f"next-{offset}"
        assert len(live(run([first, nxt], IncidentTracker("t-a", settings(gap_ms=gap))))) == expected


@pytest.mark.parametrize("reopen_ms", [0, 60 * MIN])
def test_expire_closes_after_gap_and_grace_once_and_drops_state(reopen_ms: int) -> None:
    s = settings(gap_ms=30 * MIN, grace_ms=10 * MIN, reopen_ms=reopen_ms)
    tr = IncidentTracker("t-a", s)
    a = campaign()[2]
    (doc,) = tr.observe(tenant_views(a, REGISTRY, s)[0][1])
    assert doc["status"] == "open" and doc["version"] == 1
    limit = a["last_seen"] + 40 * MIN
    assert tr.expire(limit) == []  # exactly gap + grace idle: still open
    assert len(tr.open_incidents()) == 1
    (closed,) = tr.expire(limit + 1)
    assert closed["status"] == "closed" and closed["close_reason"] == "inactive" and closed["version"] == 2
    assert closed["closed_at"] == limit + 1 and closed["incident_id"] == doc["incident_id"]
    assert tr.expire(limit + 2) == [] and tr.open_incidents() == []
    # Found closed by a watermark far later (a backlog, a restore): closed as of the same time.
    late = IncidentTracker("t-a", s)
    late.observe(tenant_views(a, REGISTRY, s)[0][1])
    (closed_late,) = late.expire(limit + 5 * 3_600_000)
    assert closed_late == closed
    # Kept (indexed) for re-opening until reopen_ms after the close, then forgotten.
    assert tr.stats()["closed_kept"] == (1 if reopen_ms else 0)
    assert (tr.stats()["index_keys"] > 0) == bool(reopen_ms)
    assert tr.expire(limit + 1 + reopen_ms) == []
    assert tr.stats()["closed_kept"] == 0 and tr.stats()["index_keys"] == 0


def test_a_late_alert_of_a_long_window_reopens_the_closed_incident() -> None:
    s = settings()
    tr = IncidentTracker("t-a", s)
    escape = campaign()[2]
    (opened,) = tr.observe(tenant_views(escape, REGISTRY, s)[0][1])
    # c2.beacon: 6 h windows, so its alert comes hours after its evidence began.
    beacon = alert("c2.beacon", "command_and_control", "Command and Control", ("ip", "10.1.0.5"), T0,
                   window=360 * MIN, evidence={"destination": "116.1.1.1"})  # fmt: skip
    beacon["first_seen"] = escape["last_seen"] + 20 * MIN
    (closed,) = tr.expire(escape["last_seen"] + 47 * MIN)
    assert closed["status"] == "closed"
    snoozed = dict(beacon, alert_id="snoozed-one")
    tr.snooze("c2.beacon", "10.1.0.5", beacon["ts"] + 1, "lab", "ana")
    assert tr.observe(tenant_views(snoozed, REGISTRY, s)[0][1]) == []  # a quiet alert re-opens nothing
    tr.snooze("c2.beacon", "10.1.0.5", T0, "lab", "ana")  # lifted
    superseded, doc = tr.observe(tenant_views(beacon, REGISTRY, s)[0][1])
    assert superseded["incident_id"] == incident_id("t-a", beacon["alert_id"])
    assert superseded["merged_into"] == opened["incident_id"]
    assert doc["incident_id"] == opened["incident_id"] and doc["status"] == "open"
    assert doc["version"] == closed["version"] + 1 and doc["alert_count"] == 2
    assert {"action": "reopened", "at": beacon["ts"]} in doc["audit"] and tr.stats()["reopened"] == 1
    assert [k["tactic"] for k in doc["kill_chain"]] == ["privilege_escalation", "lateral_movement"]
    # Past the re-open window a late alert starts anew.
    tr2 = IncidentTracker("t-a", settings(reopen_ms=60 * MIN))
    tr2.observe(tenant_views(escape, REGISTRY, s)[0][1])
    tr2.expire(escape["last_seen"] + 47 * MIN)
    tr2.expire(escape["last_seen"] + 107 * MIN)
    (doc2,) = tr2.observe(tenant_views(beacon, REGISTRY, s)[0][1])
    assert doc2["incident_id"] != opened["incident_id"] and doc2["alert_count"] == 1


def test_a_bridging_alert_merges_into_the_older_incident() -> None:
    s = settings()
    tr = IncidentTracker("t-a", s)
    x = alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-x"), T0 + 5 * MIN)
    z = alert("cryptomining.miner_process", "cryptomining", "Impact", ("vm", "vm-z"), T0)
    (dx,) = tr.observe(tenant_views(x, REGISTRY, s)[0][1])
    (dz,) = tr.observe(tenant_views(z, REGISTRY, s)[0][1])
    assert dx["incident_id"] != dz["incident_id"]
    # vm-x's address scanning vm-z's: both entities in one alert.
    bridge = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("ip", "10.1.0.5"), T0 + 10 * MIN,
                   evidence={"top_target": "10.1.0.7"})  # fmt: skip
    merged, superseded, kept = tr.observe(tenant_views(bridge, REGISTRY, s)[0][1])
    assert superseded["incident_id"] == incident_id("t-a", bridge["alert_id"])
    # vm-z's incident began first (its first_seen is earlier): it keeps its id.
    assert kept["incident_id"] == dz["incident_id"] and kept["status"] == "open"
    assert merged["incident_id"] == dx["incident_id"] and merged["status"] == "closed"
    assert merged["close_reason"] == "merged" and merged["merged_into"] == dz["incident_id"]
    assert merged["version"] == dx["version"] + 1
    assert kept["alert_count"] == 3 and set(kept["alert_ids"]) == {
        x["alert_id"],
        z["alert_id"],
        bridge["alert_id"],
    }
    assert {"action": "merged", "incident_id": dx["incident_id"], "at": bridge["ts"]} in kept["audit"]
    assert len(tr.open_incidents()) == 1
    # A later alert on vm-x lands in the surviving incident.
    later = alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-x"), T0 + 20 * MIN)
    _superseded, doc = tr.observe(tenant_views(later, REGISTRY, s)[0][1])
    assert doc["incident_id"] == dz["incident_id"] and doc["alert_count"] == 4


def test_an_alert_that_joins_another_alerts_incident_closes_its_own_id() -> None:
    """Arrived in the other order, the later alert would have opened an incident of its own (a
    killed attempt of the job may have written it): that id is closed, merged into the incident
    the alert joined, and a replay in either order leaves the same standing incidents."""
    s = settings()
    early = alert("cryptomining.miner_process", "cryptomining", "Impact", ("vm", "vm-x"), T0)
    late = alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-x"), T0 + 5 * MIN)
    tr = IncidentTracker("t-a", s)
    (opened,) = tr.observe(tenant_views(early, REGISTRY, s)[0][1])
    superseded, joined = tr.observe(tenant_views(late, REGISTRY, s)[0][1])
    assert joined["incident_id"] == opened["incident_id"] == incident_id("t-a", early["alert_id"])
    assert superseded == {
        "incident_id": incident_id("t-a", late["alert_id"]),
        "tenant": "t-a",
        "status": "closed",
        "close_reason": "merged",
        "merged_into": opened["incident_id"],
        "closed_at": late["ts"],
        "title": f"merged into incident {opened['incident_id']}",
        "first_seen": late["first_seen"],
        "last_seen": late["last_seen"],
        "updated": late["ts"],
        "alert_ids": [late["alert_id"]],
        "alert_count": 1,
        "version": 0,
    }
    assert tr.stats()["superseded"] == 1
    # The other order (the killed attempt's): the late alert's incident opened, then renamed.
    other = IncidentTracker("t-a", s)
    written: dict[str, dict[str, Any]] = {}
    for a in (late, early):
        written |= {d["incident_id"]: d for d in other.observe(tenant_views(a, REGISTRY, s)[0][1])}
    assert written[superseded["incident_id"]]["merged_into"] == opened["incident_id"]
    # Both orders' documents together (the attempt's first, the replay's over them by version):
    # one standing incident.
    final = dict(written)
    for d in (opened, superseded, joined):
        if d["version"] >= final.get(d["incident_id"], {"version": -1})["version"]:
            final[d["incident_id"]] = d
    assert [d["incident_id"] for d in live(final)] == [opened["incident_id"]]


def test_context_and_snoozed_alerts_close_no_id_of_their_own() -> None:
    s = settings()
    tr = IncidentTracker("t-a", s)
    scan = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("vm", "vm-x"), T0, score=40)
    tr.observe(tenant_views(scan, REGISTRY, s)[0][1])
    tr.snooze("c2.beacon", "vm-x", T0 + 10**8, "known updater", "bo")
    quiet = alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-x"), T0 + 5 * MIN)
    (doc,) = tr.observe(tenant_views(quiet, REGISTRY, s)[0][1])
    assert doc["suppressed"] == 1 and tr.stats()["superseded"] == 0


def test_repeats_in_consecutive_windows_extend_one_entry() -> None:
    s = settings()
    tr = IncidentTracker("t-a", s)
    docs = []
    for i in (0, 1, 2, 4):  # windows 0,1,2 consecutive; 4 leaves a gap of one window
        a = alert("dos.source_flood", "dos", "Impact", ("ip", "34.1.1.1"), T0 + i * MIN, window=MIN,
                  evidence={"victim": "10.1.0.5"})  # fmt: skip
        docs += tr.observe(tenant_views(a, REGISTRY, s)[0][1])
    doc = docs[-1]
    assert doc["alert_count"] == 4 and doc["repeats"] == 2
    assert [e["count"] for e in doc["series"]] == [3, 1]
    assert doc["series"][0]["window_start"] == T0 and doc["series"][0]["window_end"] == T0 + 3 * MIN
    assert doc["title"] == "VM vm-x of tenant t-a: denial of service"  # one phrase, not four


def test_a_replayed_alert_is_counted_once() -> None:
    s = settings()
    tr = IncidentTracker("t-a", s)
    a = campaign()[1]
    view = tenant_views(a, REGISTRY, s)[0][1]
    assert len(tr.observe(view)) == 1
    assert tr.observe(view) == []
    assert tr.open_incidents()[0]["alert_count"] == 1 and tr.stats()["duplicates"] == 1


def test_snooze_suppresses_and_is_audited() -> None:
    s = settings()
    tr = IncidentTracker("t-a", s)
    scan = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("vm", "vm-x"), T0, score=40)
    (first,) = tr.observe(tenant_views(scan, REGISTRY, s)[0][1])
    until = T0 + 15 * MIN
    (audited,) = tr.snooze("port_scan.failed_probe_scan", "vm-x", until, "nightly inventory scan", "ana")
    assert audited["version"] == first["version"] + 1
    record = audited["audit"][0]
    assert record == {
        "action": "snooze",
        "detector": "port_scan.failed_probe_scan",
        "entity_id": "vm-x",
        "until": until,
        "reason": "nightly inventory scan",
        "by": "ana",
        "at": scan["ts"],
    }
    # A snoozed alert (ts < until) of a higher score: attached and counted, severity and span unchanged.
    loud = alert(
        "port_scan.failed_probe_scan", "port_scan", "Discovery", ("vm", "vm-x"), T0 + 5 * MIN, score=95
    )
    assert loud["ts"] == until - 5 * MIN
    (doc,) = tr.observe(tenant_views(loud, REGISTRY, s)[0][1])
    assert doc["suppressed"] == 1 and doc["alert_count"] == 2 and loud["alert_id"] in doc["alert_ids"]
    assert (doc["score"], doc["severity"], doc["last_seen"]) == (
        first["score"],
        first["severity"],
        first["last_seen"],
    )
    assert doc["series"][0]["count"] == 1 and doc["audit"] == [record]
    # From ``until`` on (ts == until) the same alert counts again, in the same incident.
    after = alert(
        "port_scan.failed_probe_scan", "port_scan", "Discovery", ("vm", "vm-x"), T0 + 10 * MIN, score=95
    )
    assert after["ts"] == until
    _superseded, doc = tr.observe(tenant_views(after, REGISTRY, s)[0][1])
    assert doc["incident_id"] == first["incident_id"] and doc["score"] == 95 and doc["severity"] == "critical"
    # The snoozed window in between extended nothing: the scan's entry is not consecutive any more.
    assert [e["count"] for e in doc["series"]] == [1, 1] and doc["repeats"] == 0
    # A snoozed alert that links to no open incident opens none.
    tr.snooze("c2.beacon", "vm-z", T0 + 10**8, "known updater", "bo")
    quiet = alert("c2.beacon", "command_and_control", "Command and Control", ("vm", "vm-z"), T0 + 70 * MIN)
    assert tr.observe(tenant_views(quiet, REGISTRY, s)[0][1]) == []
    assert tr.stats()["suppressed_unattached"] == 1 and len(tr.open_incidents()) == 1


def test_context_detectors_attach_but_never_open_or_keep_alive() -> None:
    s = settings()
    tr = IncidentTracker("t-a", s)
    probe = alert("port_scan.internet_probes", "port_scan", "Reconnaissance", ("vm", "vm-x"), T0, window=60 * MIN,
                  score=20, evidence={"victim": "10.1.0.5", "sources": ["1.2.3.4"]})  # fmt: skip
    assert tr.observe(tenant_views(probe, REGISTRY, s)[0][1]) == []
    flood = alert("dos.source_flood", "dos", "Impact", ("ip", "34.1.1.1"), T0 + 10 * MIN, window=MIN,
                  evidence={"victim": "10.1.0.5"})  # fmt: skip
    tr.observe(tenant_views(flood, REGISTRY, s)[0][1])
    probe2 = dict(probe, alert_id="probe-2", first_seen=T0 + 11 * MIN, last_seen=T0 + 90 * MIN)
    (doc,) = tr.observe(tenant_views(probe2, REGISTRY, s)[0][1])
    assert doc["context"] == 1 and doc["alert_count"] == 2 and doc["last_seen"] == flood["last_seen"]
    assert [k["tactic"] for k in doc["kill_chain"]] == ["impact"]
    assert tr.stats()["context_unattached"] == 1
    assert not any(e["id"] == "1.2.3.4" for e in doc["entities"])  # context adds no links


# --- views -----------------------------------------------------------------------------------------
def test_cross_tenant_alert_yields_both_views_each_with_its_own_side() -> None:
    escape = campaign()[2]
    views = dict(tenant_views(escape, REGISTRY))
    assert list(views) == ["t-a", "t-b"]
    a, b = views["t-a"], views["t-b"]
    a_ids = {(e["type"], e["id"]) for e in a["incident_entities"]}
    b_ids = {(e["type"], e["id"]) for e in b["incident_entities"]}
    assert ("vm", "vm-x") in a_ids and ("vm", "vm-y") not in a_ids and ("ip", "10.2.0.5") not in a_ids
    assert b_ids == {("vm", "vm-y"), ("ip", "10.2.0.5"), ("resource", "/img/vm-y.qcow2"), ("tenant", "t-a")}
    assert a["other_tenants"] == ["t-b"] and b["other_tenants"] == ["t-a"]
    assert (
        b["view"] == "foreign"
        and b["subject_tenant"] == "t-a"
        and b["entity"] == {"type": "vm", "id": "vm-y"}
    )
    assert "summary" not in b and "vm-x" not in json.dumps(b) and "10.1.0.5" not in json.dumps(b)
    assert b["evidence"] == {
        k: escape["evidence"][k] for k in ("signal", "window_start", "window_end", "count")
    }
    # Each tenant's tracker takes its view; t-b's incident names t-a only as a tenant.
    doc_b = live(run([escape], IncidentTracker("t-b", settings())))[0]
    assert doc_b["tenant"] == "t-b" and doc_b["other_tenants"] == ["t-a"]
    assert doc_b["title"] == "VM vm-y of tenant t-b: emulator escape by a VM of tenant t-a reaching its VM"
    assert "vm-x" not in json.dumps(doc_b) and "10.1.0.5" not in json.dumps(doc_b)
    assert doc_b["incident_id"] == incident_id("t-b", escape["alert_id"])


def test_flow_into_another_tenant_gives_it_the_acting_tenant_as_subject() -> None:
    flow = campaign()[3]
    (own, a), (other, b) = tenant_views(flow, REGISTRY)
    assert (own, other) == ("t-a", "t-b") and a["other_tenants"] == ["t-b"]
    assert b["entity"] == {"type": "tenant", "id": "t-a"}
    assert b["incident_entities"] == [{"type": "tenant", "id": "t-a", "link": True}]
    doc = live(run([flow], IncidentTracker("t-b", settings())))[0]
    assert doc["title"] == "Tenant t-b, from tenant t-a: traffic from tenant t-a"
    assert doc["stage"] == "lateral_movement"


def test_a_title_keeps_each_phrase_once_and_its_subject_as_it_is() -> None:
    redacted = (
        "Tenant t-b, from another tenant: traffic from another tenant, then traffic from another tenant"
    )
    assert phrases_once(redacted) == "Tenant t-b, from another tenant: traffic from another tenant"
    three = "VM vm-x of tenant t-a: port scan, traffic to another tenant, traffic to another tenant, then port scan"
    assert phrases_once(three) == "VM vm-x of tenant t-a: port scan, then traffic to another tenant"
    capped = "VM vm-x of tenant t-a: a, a, b, c, then a (and 2 more)"
    assert phrases_once(capped) == "VM vm-x of tenant t-a: a, b, then c (and 2 more)"
    for unchanged in ("VM vm-x of tenant t-a", "VM vm-x of tenant t-a: port scan, then password guessing"):
        assert phrases_once(unchanged) == unchanged


def test_provider_alert_and_tenant_names_that_are_no_tenant() -> None:
    host_alert = alert("vm_escape.kvm_device_access", "vm_escape", "Privilege Escalation", ("host", "hv-01"), T0,
                       tenant=None, evidence={"host": "hv-01", "signal": "kvm_device_open"})  # fmt: skip
    (only,) = tenant_views(host_alert, REGISTRY)
    assert only[0] == "_provider" and only[1]["incident_entities"] == [
        {"type": "host", "id": "hv-01", "link": True}
    ]
    shared = alert("cross_tenant.resource_shared_out", "cross_tenant_leak", "Exfiltration",
                   ("principal", "iam::t-a:user/ivan"), T0,
                   evidence={"src_tenant": "t-a", "dst_tenant": "public", "channel": "image",
                             "resource": "image/t-a/img-1"})  # fmt: skip
    ((tenant, view),) = tenant_views(shared, REGISTRY)
    assert tenant == "t-a" and view["other_tenants"] == []
    assert {"type": "resource", "id": "image/t-a/img-1", "link": True} in view["incident_entities"]
    doc = live(run([shared], IncidentTracker("t-a", settings())))[0]
    assert doc["title"] == "Principal iam::t-a:user/ivan of tenant t-a: image shared to the public"


def test_resource_sides() -> None:
    read = alert("cross_tenant.foreign_resource_access", "cross_tenant_leak", "Collection",
                 ("principal", "iam::t-a:role/app"), T0,
                 evidence={"src_tenant": "t-a", "dst_tenant": "t-b", "channel": "snapshot", "resource": "snap-9"})  # fmt: skip
    owners = {(m[0], m[1]): m[2] for m in mentions(read, REGISTRY)}
    assert owners[("resource", "snap-9")] == "t-b" and owners[("principal", "iam::t-a:role/app")] == "t-a"
    views = dict(tenant_views(read, REGISTRY))
    assert not any(e["type"] == "resource" for e in views["t-a"]["incident_entities"])
    assert {"type": "resource", "id": "snap-9", "link": True} in views["t-b"]["incident_entities"]
    doc = live(run([read], IncidentTracker("t-a", settings())))[0]
    assert doc["title"].endswith("read of tenant t-b's snapshot") and doc["stage"] == "collection"


def test_a_view_of_another_tenant_is_refused() -> None:
    tr = IncidentTracker("t-b", settings())
    with pytest.raises(ValueError, match="not 't-b'"):
        tr.observe(campaign()[0])
    with pytest.raises(ValueError, match="criticality"):
        IncidentTracker("t-a", settings(), "extreme")


# --- determinism, state, bounds --------------------------------------------------------------------
def test_ids_and_documents_are_deterministic_across_runs() -> None:
    def docs() -> list[dict[str, Any]]:
        miner = alert("cryptomining.miner_process", "cryptomining", "Impact", ("vm", "vm-z"), T0)
        alerts = [*campaign(), miner]
        random.Random(3).shuffle(alerts)
        tr = IncidentTracker("t-a", settings())
        out = []
        for a in alerts:
            for _t, v in tenant_views(a, REGISTRY):
                if _t == "t-a":
                    out += tr.observe(v)
        return out + tr.expire(T0 + 10**9)

    one, two = docs(), docs()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    first_ids = {d["incident_id"] for d in one}
    assert incident_id("t-a", campaign()[0]["alert_id"]) != incident_id("t-b", campaign()[0]["alert_id"])
    assert all(len(i) == 32 for i in first_ids)


def test_pickle_round_trip_mid_stream_gives_identical_output() -> None:
    s = settings()
    alerts = campaign() + [
        alert("dos.source_flood", "dos", "Impact", ("ip", "34.1.1.1"), T0 + i * MIN, window=MIN,
              evidence={"victim": "10.1.0.7"})
        for i in range(4)
    ]  # fmt: skip
    random.Random(5).shuffle(alerts)
    views = [v for a in alerts for t, v in tenant_views(a, REGISTRY, s) if t == "t-a"]

    def rest(tr: IncidentTracker) -> str:
        out = []
        for v in views[4:]:
            out += tr.observe(v)
        tr.snooze("dos.source_flood", "34.1.1.1", T0 + 10**6, "r", "me")
        return json.dumps(out + tr.expire(T0 + 10**9), sort_keys=True)

    tr = IncidentTracker("t-a", s, "critical")
    for v in views[:4]:
        tr.observe(v)
    copy = pickle.loads(pickle.dumps(tr))
    assert rest(copy) == rest(tr)
    assert copy.stats() == tr.stats()


def test_bounds_evict_oldest_first_and_count() -> None:
    s = settings(max_open=2, max_alerts_per_incident=3, max_entities=4, max_series=2, max_snoozes=1)
    tr = IncidentTracker("t-a", s)
    docs = []
    for i in range(5):  # five flood windows from distinct outside sources on vm-x
        a = alert("dos.source_flood", "dos", "Impact", ("ip", f"34.1.1.{i}"), T0 + i * MIN, window=MIN,
                  evidence={"victim": "10.1.0.5"})  # fmt: skip
        docs += tr.observe(tenant_views(a, REGISTRY, s)[0][1])
    doc = docs[-1]
    assert doc["alert_count"] == 5 and len(doc["alert_ids"]) == 3 and doc["alert_ids_dropped"] == 2
    assert len(doc["entities"]) == 4 and doc["entities_dropped"] > 0
    assert len(doc["series"]) == 2 and doc["series_dropped"] == 3
    assert [e["entity"]["id"] for e in doc["series"]] == ["34.1.1.3", "34.1.1.4"]  # the newest kept
    # Open incidents: a third one closes the least recently active.
    for vm, start in (("vm-z", T0 + 10 * MIN), ("vm-q", T0 + 20 * MIN)):
        a = alert("cryptomining.miner_process", "cryptomining", "Impact", ("vm", vm), start)
        out = tr.observe(tenant_views(a, REGISTRY, s)[0][1])
    evicted, opened = out
    assert evicted["close_reason"] == "evicted" and evicted["incident_id"] == doc["incident_id"]
    assert (
        opened["status"] == "open" and tr.stats()["evicted_incidents"] == 1 and len(tr.open_incidents()) == 2
    )
    tr.snooze("a", "1", T0, "r", "me")
    tr.snooze("b", "2", T0, "r", "me")
    assert tr.stats()["snoozes"] == 1 and tr.stats()["evicted_snoozes"] == 1
    assert len(pickle.dumps(tr)) < 20_000


def test_score_formula_and_criticality() -> None:
    lone = [alert("dos.source_flood", "dos", "Impact", ("ip", "34.1.1.1"), T0, score=65,
                  evidence={"victim": "10.1.0.5"})]  # fmt: skip
    scores = {
        c: live(run(lone, IncidentTracker("t-a", settings(), c)))[0] for c in ("low", "medium", "critical")
    }
    # 65 + 2 * 6 (impact) + 6 * 0
    assert scores["medium"]["score"] == 77 and scores["medium"]["severity"] == "high"
    assert scores["low"]["score"] == round(77 * 0.85) and scores["low"]["severity"] == "medium"
    assert scores["critical"]["score"] == 96 and scores["critical"]["severity"] == "critical"
    assert {(d["base_score"], d["base_severity"]) for d in scores.values()} == {(77, "high")}
    # Anomalies do not lengthen the chain.
    anomaly = alert("anomaly.flow_features", "anomaly", "Exfiltration", ("vm", "vm-x"), T0, score=40)
    scan = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("vm", "vm-x"), T0 + MIN, score=40)
    doc = live(run([anomaly, scan], IncidentTracker("t-a", settings())))[0]
    assert doc["score"] == 40 and doc["stage"] == "reconnaissance"
    assert doc["kill_chain"] == [
        {
            "tactic": "reconnaissance",
            "first_seen": T0 + 1000,
            "categories": ["anomaly", "port_scan"],
            "alert_count": 2,
        }
    ]


# --- settings --------------------------------------------------------------------------------------
def test_settings_from_the_shipped_configuration_equal_the_defaults() -> None:
    assert IncidentSettings.from_config(DetectorConfig.default()) == IncidentSettings()


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"gap": 5}, "awareness.incidents.gap: unknown setting"),
        ({"gap_ms": "30m"}, "gap_ms: expected an integer"),
        ({"max_open": 0}, "max_open: must be at least 1"),
        ({"gap_ms": -1}, "gap_ms: must not be negative"),
        ({"actor_gap_ms": -1}, "actor_gap_ms: must not be negative"),
        ({"link_types": ["vm", "disk"]}, "link_types: unknown entity types"),
        ({"criticality_factors": {"severe": 2}}, "criticality_factors: unknown levels"),
        ({"criticality_factors": {"high": 0}}, "criticality_factors.high"),
        ({"stage_weight": True}, "stage_weight: expected float"),
    ],
)
def test_bad_settings_are_refused_by_name(over: dict[str, Any], message: str) -> None:
    cfg = DetectorConfig.default().merged({"awareness": {"incidents": over}})
    with pytest.raises(ConfigError, match=message):
        IncidentSettings.from_config(cfg)


def test_partial_settings_merge_over_the_defaults() -> None:
    cfg = DetectorConfig.default().merged(
        {"awareness": {"incidents": {"gap_ms": 60_000, "link_types": ["vm"]}}}
    )
    s = IncidentSettings.from_config(cfg)
    assert s.gap_ms == 60_000 and s.link_types == ("vm",) and s.max_open == IncidentSettings().max_open


def test_registry_criticality() -> None:
    assert REGISTRY.criticality_of("t-a") == "high"
    assert REGISTRY.criticality_of("t-b") == "medium" and REGISTRY.criticality_of("nobody") == "medium"
    assert REGISTRY.to_dict()["tenants"][0]["criticality"] == "high"
    assert "criticality" not in REGISTRY.to_dict()["tenants"][1]
    assert TenantRegistry.from_dict(REGISTRY.to_dict()).criticality_of("t-a") == "high"
    with pytest.raises(RegistryError, match=r"tenants\[0\].criticality: expected one of"):
        TenantRegistry.from_dict({"tenants": [{"id": "t", "criticality": "urgent"}]})


def test_chain_follows_evidence_time_not_stage_or_arrival() -> None:
    # An escape first, a scan from the same VM 14 minutes after it, arriving first.
    escape = campaign()[2]
    scan = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("vm", "vm-x"), T0 + 40 * MIN)
    doc = live(run([scan, escape], IncidentTracker("t-a", settings())))[0]
    assert [k["tactic"] for k in doc["kill_chain"]] == ["privilege_escalation", "reconnaissance"]
    assert doc["stage"] == "privilege_escalation"
    assert doc["title"].endswith("emulator escape and read of tenant t-b's disk, then port scan")


def test_a_provider_alert_about_a_tenant_vm_reaches_that_tenant_in_plain_words() -> None:
    crash = alert("vm_escape.emulator_crash", "vm_escape", "Privilege Escalation", ("vm", "vm-y"), T0, tenant=None,
                  evidence={"host": "hv-01", "vm": "vm-y", "signal": "emulator_crash"})  # fmt: skip
    views = dict(tenant_views(crash, REGISTRY))
    assert list(views) == ["_provider", "t-b"]
    assert views["t-b"]["other_tenants"] == [] and views["t-b"]["entity"] == {"type": "vm", "id": "vm-y"}
    doc = live(run([crash], IncidentTracker("t-b", settings())))[0]
    assert doc["title"] == "VM vm-y of tenant t-b: emulator escape"
    # A raw alert (no view) is read for its own tenant without a registry.
    tr = IncidentTracker("_provider", settings())
    (raw,) = tr.observe(crash)
    assert {"type": "vm", "id": "vm-y"} in raw["entities"] and raw["title"] == "VM vm-y: emulator escape"


def test_output_does_not_depend_on_the_process_hash_seed() -> None:
    """A replay after a restart runs in another process: no set order may reach a document."""
    import os
    import subprocess
    import sys

    script = (
        "import json, random, tests.test_awareness_incidents as t\n"
        "alerts = t.campaign() + [t.alert('dos.source_flood', 'dos', 'Impact', ('ip', f'34.1.1.{i}'), t.T0 + i * t.MIN,"
        " evidence={'victim': '10.1.0.7', 'sources': ['5.5.5.5', '6.6.6.6', '10.2.0.5']}) for i in range(3)]\n"
        "random.Random(1).shuffle(alerts)\n"
        "out = []\n"
        "trs = {}\n"
        "for a in alerts:\n"
        "    for ten, v in t.tenant_views(a, t.REGISTRY):\n"
        "        out += trs.setdefault(ten, t.IncidentTracker(ten, t.IncidentSettings())).observe(v)\n"
        "for ten in sorted(trs):\n"
        "    out += trs[ten].expire(t.T0 + 10**9)\n"
        "print(json.dumps(out, sort_keys=True))\n"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1 and '"incident_id"' in outputs.pop()


def test_password_guessing_links_to_the_vm_its_logins_failed_on() -> None:
    """``brute_force.auth_failures`` names the attacker's address as its entity; its evidence's
    ``targets`` (the VMs the logins failed on) tie it to the escape from that VM."""
    guess = alert(
        "brute_force.auth_failures", "brute_force", "Credential Access", ("ip", "198.51.100.9"), T0,
        evidence={"targets": ["vm-x"]},
    )  # fmt: skip
    escape = alert(
        "vm_escape.shell_spawn", "vm_escape", "Privilege Escalation", ("vm", "vm-x"), T0 + 10 * MIN
    )
    docs = live(run([guess, escape], IncidentTracker("t-a", settings())))
    assert len(docs) == 1 and docs[0]["alert_count"] == 2
    apart = alert(
        "brute_force.auth_failures", "brute_force", "Credential Access", ("ip", "198.51.100.9"), T0,
        evidence={"targets": []},
    )  # fmt: skip
    assert len(live(run([apart, escape], IncidentTracker("t-a", settings())))) == 2


def test_grouping_links_alert_to_alert_so_arrival_order_cannot_change_it() -> None:
    """Two alerts join when they share a link entity and their own spans are within the gap, not
    when one falls within the gap of an incident's whole span: otherwise an alert that arrives
    after a bridging alert joins, and one that arrives before it does not (the job's event-time
    paths interleave in no fixed order, so a restore would regroup)."""
    a = alert(
        "dos.source_flood", "dos", "Impact", ("ip", "198.51.100.1"), T0, evidence={"victim": "198.51.100.9"}
    )
    d = alert("dos.source_flood", "dos", "Impact", ("ip", "198.51.100.3"), T0 + 20 * MIN,
              evidence={"victim": "198.51.100.9"})  # fmt: skip
    e = alert("port_scan.vertical", "port_scan", "Reconnaissance", ("ip", "198.51.100.1"), T0 + 45 * MIN)
    groupings = set()
    for order in ([a, d, e], [a, e, d], [e, d, a], [d, e, a]):
        # actor_gap_ms 0: the outside source 198.51.100.1 of a and e joins only within gap_ms here
        docs = live(run(order, IncidentTracker("t-a", settings(gap_ms=30 * MIN, actor_gap_ms=0))))
        groupings.add(frozenset((d["incident_id"], frozenset(d["alert_ids"])) for d in docs))
    assert len(groupings) == 1
    (grouping,) = groupings
    assert {alerts for _iid, alerts in grouping} == {
        frozenset({a["alert_id"], d["alert_id"]}),
        frozenset({e["alert_id"]}),
    }


@pytest.mark.parametrize("actor_gap_ms", [0, 90 * MIN])
def test_random_streams_group_the_same_in_every_arrival_order(actor_gap_ms: int) -> None:
    """Random alerts over a few shared addresses: every shuffle gives the same incidents (ids and
    alert sets), the property a restore from a checkpoint relies on; with the actor link too
    (outside sources as subjects, inside and outside victims)."""
    rng = random.Random(11)
    ips = [f"198.51.100.{i}" for i in range(6)] + ["10.1.0.5", "10.1.0.7"]
    for trial in range(20):
        alerts = [
            alert(
                "dos.source_flood",
                "dos",
                "Impact",
                ("ip", rng.choice(ips)),
                T0 + rng.randrange(0, 300) * MIN,
                evidence={"victim": rng.choice(ips)},
            )
            for _ in range(12)
        ]
        seen = set()
        for order_seed in range(5):
            shuffled = list(alerts)
            random.Random(order_seed).shuffle(shuffled)
            tracker = IncidentTracker("t-a", settings(gap_ms=30 * MIN, actor_gap_ms=actor_gap_ms))
            docs = live(run(shuffled, tracker))
            seen.add(frozenset((d["incident_id"], frozenset(d["alert_ids"])) for d in docs))
        assert len(seen) == 1, f"trial {trial}: {len(seen)} different groupings"


def test_an_outside_actor_links_its_alerts_over_the_actor_gap_in_any_order() -> None:
    """A ramp: the outside address scans vm-x, guesses its passwords 50 min later (over gap_ms,
    within actor_gap_ms), then vm-x escapes. One incident in every arrival order; with
    ``actor_gap_ms`` 0 the scan stays apart."""
    attacker = ("ip", "198.51.100.9")
    scan = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", attacker, T0)
    guess = alert("brute_force.auth_failures", "brute_force", "Credential Access", attacker, T0 + 55 * MIN,
                  window=10 * MIN, evidence={"targets": ["vm-x"]})  # fmt: skip
    escape = alert(
        "vm_escape.shell_spawn", "vm_escape", "Privilege Escalation", ("vm", "vm-x"), T0 + 70 * MIN
    )
    groupings = set()
    for order in itertools.permutations([scan, guess, escape]):
        docs = live(run(list(order), IncidentTracker("t-a", settings(gap_ms=30 * MIN))))
        groupings.add(frozenset((d["incident_id"], frozenset(d["alert_ids"])) for d in docs))
    assert len(groupings) == 1
    ((_iid, alerts),) = next(iter(groupings))
    assert alerts == {scan["alert_id"], guess["alert_id"], escape["alert_id"]}
    apart = live(
        run([scan, guess, escape], IncidentTracker("t-a", settings(gap_ms=30 * MIN, actor_gap_ms=0)))
    )
    assert sorted(d["alert_count"] for d in apart) == [1, 2]
    # beyond the actor gap: apart again
    late = dict(guess, first_seen=T0 + 6 * 60 * MIN, last_seen=T0 + 6 * 60 * MIN + MIN,
                ts=T0 + 6 * 60 * MIN + MIN, alert_id="late")  # fmt: skip
    assert len(live(run([scan, late], IncidentTracker("t-a", settings(gap_ms=30 * MIN))))) == 2


def test_only_an_outside_subject_is_an_actor() -> None:
    """An outside address named only in evidence (an upload's destination) is no actor, nor is a
    tenant's own address, nor any address without a registry (nobody can say it is outside)."""
    upload = alert("exfiltration.external_upload", "exfiltration", "Exfiltration", ("vm", "vm-x"), T0,
                   evidence={"top_destination": "198.51.100.20"})  # fmt: skip
    upload2 = alert("exfiltration.external_upload", "exfiltration", "Exfiltration", ("vm", "vm-z"),
                    T0 + 90 * MIN, evidence={"top_destination": "198.51.100.20"})  # fmt: skip
    assert len(live(run([upload, upload2], IncidentTracker("t-a", settings(gap_ms=30 * MIN))))) == 2
    own = tenant_views(upload, REGISTRY)[0][1]["incident_entities"]
    assert not any(e.get("actor") for e in own)
    scan = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("ip", "198.51.100.9"), T0)
    assert [e for e in tenant_views(scan, REGISTRY)[0][1]["incident_entities"] if e.get("actor")] == [
        {"type": "ip", "id": "198.51.100.9", "link": True, "actor": True}
    ]
    assert not any(e.get("actor") for e in tenant_views(scan, None)[0][1]["incident_entities"])
    inside = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", ("ip", "10.1.0.5"), T0)
    assert not any(e.get("actor") for e in tenant_views(inside, REGISTRY)[0][1]["incident_entities"])


def test_the_actor_gap_is_bounded_by_what_a_closed_incident_remembers() -> None:
    """With ``reopen_ms`` 0 a closed incident is forgotten at once: the actor gap falls back to
    ``gap_ms`` (a longer one would make grouping depend on arrival order)."""
    attacker = ("ip", "198.51.100.9")
    scan = alert("port_scan.failed_probe_scan", "port_scan", "Discovery", attacker, T0)
    guess = alert("brute_force.auth_failures", "brute_force", "Credential Access", attacker, T0 + 55 * MIN)
    forgetful = settings(gap_ms=30 * MIN, reopen_ms=0)
    assert len(live(run([scan, guess], IncidentTracker("t-a", forgetful)))) == 2
    assert len(live(run([scan, guess], IncidentTracker("t-a", settings(gap_ms=30 * MIN))))) == 1


def test_a_principal_acting_from_a_vms_address_links_to_that_vm() -> None:
    """A control-plane read by a principal whose evidence gives the call's source address: with
    the registry that address is vm-x, so the read bridges vm-x's escape and its upload 40 min
    later (more than gap_ms apart); without ``src_ip`` the read stands alone and the VM's story splits."""
    escape = alert("vm_escape.shell_spawn", "vm_escape", "Privilege Escalation", ("vm", "vm-x"), T0)
    read = alert("cross_tenant.foreign_resource_access", "cross_tenant_leak", "Collection",
                 ("principal", "iam::t-a:user/u"), T0 + 20 * MIN, window=MIN,
                 evidence={"src_tenant": "t-a", "dst_tenant": "t-b", "channel": "storage",
                           "resource": "storage/t-b/bucket", "src_ip": "10.1.0.5"})  # fmt: skip
    upload = alert(
        "exfiltration.external_upload", "exfiltration", "Exfiltration", ("vm", "vm-x"), T0 + 40 * MIN
    )
    for order in itertools.permutations([escape, read, upload]):
        docs = live(run(list(order), IncidentTracker("t-a", settings(gap_ms=20 * MIN))))
        assert len(docs) == 1 and docs[0]["alert_count"] == 3
    own = tenant_views(read, REGISTRY)[0][1]["incident_entities"]
    assert {"type": "vm", "id": "vm-x", "link": True} in own
    bare = dict(read, evidence={k: v for k, v in read["evidence"].items() if k != "src_ip"})
    assert len(live(run([escape, bare, upload], IncidentTracker("t-a", settings(gap_ms=20 * MIN))))) == 3
    # the neighbour's view keeps its own side only: no vm-x
    theirs = dict(tenant_views(read, REGISTRY))["t-b"]["incident_entities"]
    assert not any(e["id"] in ("vm-x", "10.1.0.5") for e in theirs)
