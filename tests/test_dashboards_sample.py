"""The dashboards' sample documents say only what the pipeline says.

Alerts: every detector id, category and ATT&CK mapping is one the detector registry defines, and
every evidence field a board reads, and every sample evidence key, is one the detectors write when
their rule samples run through the engine.
Metrics: every field a metrics panel reads, and every field of a sample metrics document, is one
the job (streams.posture) or the indexer (streams.documents) writes for that document kind, so no
panel is tested on data that nothing produces.
Awareness (incidents, threat levels, warnings): the same for the fields the panels and alert rules
read and the sample documents carry, against documents the awareness code itself makes; the
sample ids, levels, cloud index and warning thresholds against the awareness functions.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from awareness import killchain
from awareness.incidents import IncidentSettings, IncidentTracker, incident_id, tenant_views
from awareness.threat import (
    CLOUD,
    LEVELS,
    ThreatSettings,
    cloud_threat,
    level_for_index,
    signal_threshold,
    tenant_threat,
    threat_doc_id,
)
from awareness.warnings import EarlyWarning, WarningSettings, warning_id
from dashboards import alerting, board_soc, build, panels
from dashboards.panels import DS_FAMILY, METRICS_DS_UID
from dashboards.sample import CLOUD as SAMPLE_CLOUD
from dashboards.sample import (
    KILL_CHAIN_STAGES,
    sample_alerts,
    sample_incidents,
    sample_metrics,
    sample_threat,
    sample_warnings,
)
from detectors.alert import severity_for_score
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.meta import DetectorMeta
from detectors.registry import all_detectors, anomaly_detector_classes, detector_classes
from detectors.samples import load_cases, sample_files, samples_registry
from streams.detector_health import DetectorHealth
from streams.documents import dlq_action, lag_action
from streams.posture import PostureState, anomaly_records

BASE = 1_736_935_200_000  # 2025-01-15T10:00:00Z


def _registry_metas() -> dict[str, DetectorMeta]:
    return {cls.meta.id: cls.meta for cls in [*detector_classes(), *anomaly_detector_classes()]}


def test_sample_alerts_use_the_detector_registrys_vocabulary():
    metas = _registry_metas()
    assert len(sample_alerts(BASE)) == 15  # what the report and workflow tests count
    docs = sample_alerts(BASE, newer=True)
    assert len(docs) == 17
    assert [d for d in docs if d["alert_id"] in {a["alert_id"] for a in sample_alerts(BASE)}] == [
        d for d in sample_alerts(BASE)
    ]
    ids = {d["detector"] for d in docs}
    categories = {d["category"] for d in docs}
    tactics = {d["attack"]["tactic"] for d in docs}
    assert ids <= set(metas), sorted(ids - set(metas))
    assert categories <= {m.category for m in metas.values()}
    assert tactics <= {a.tactic for m in metas.values() for a in m.attack}
    for doc in docs:
        meta = metas[doc["detector"]]
        attack = doc["attack"]
        assert doc["category"] == meta.category, doc["detector"]
        assert doc["detector_version"] == meta.version, doc["detector"]
        assert (attack["tactic"], attack["technique_id"], attack["technique"]) in {
            (a.tactic, a.technique_id, a.technique) for a in meta.attack
        }, doc["detector"]
        assert doc["severity"] == severity_for_score(doc["score"]), doc["alert_id"]


# Categories without a sample alert (none: command_and_control and spam are sampled with
# ``newer=True``, which the live board test indexes; the report and workflow tests still count the
# first 15).
NOT_SAMPLED_YET: set[str] = set()


def test_sample_alerts_cover_every_category_the_detectors_raise():
    """Each category's board and filters have something to show in the live test."""
    raised = {m.category for m in _registry_metas().values()}
    assert {d["category"] for d in sample_alerts(BASE, newer=True)} == raised - NOT_SAMPLED_YET
    assert {d["category"] for d in sample_alerts(BASE)} == raised - {"command_and_control", "spam"}


def _job_fields_by_kind() -> dict[str, set[str]]:
    """Fields of the metrics documents the pipeline writes, by ``kind``, from its own writers."""
    events = [e for path in sample_files() for case in load_cases(path) for e in case.events]
    posture = PostureState()
    posture.add_all(sorted(events, key=lambda e: (e.ts, e.id)))
    posture.count_alert("t-acme", BASE)
    records = posture.close(2**62, "key")
    records.append(dlq_action("m-", "ssa.dlq", 0, 7, BASE, b'{"source": "zeek", "reason": "r"}').source)
    records.append(lag_action("m-", "ssa.telemetry.flow", 12, BASE).source)
    summary = {"tenant": "t-acme", "ts": BASE, "window_ms": 300_000, "detector": "anomaly.flow_features",
               "scored": 9, "anomaly_p50": 0.4, "anomaly_p95": 0.9, "anomaly_p99": 0.99}  # fmt: skip
    records += anomaly_records([summary], "t-acme#flow")
    health = DetectorHealth()
    health.observe({"dos.source_flood": (2, 5)}, BASE)
    records += health.close(2**62, "t-acme/vm-acme-01")
    fields: dict[str, set[str]] = {}
    for record in records:
        fields.setdefault(record["kind"], set()).update(record)
    return fields


JOB_FIELDS = _job_fields_by_kind()


def test_the_job_writes_every_posture_kind():
    """Guards the field check below: it compares against all the kinds, not a partial run."""
    assert set(JOB_FIELDS) == {
        "flow",
        "process",
        "audit",
        "auth",
        "alert",
        "dlq",
        "lag",
        "anomaly",
        "detector",
    }


def _kinds_of(query: str) -> set[str]:
    """Document kinds a Lucene query selects (``kind:x`` or ``kind:(x OR y)``); all without one."""
    match = re.search(r"kind:(\w+|\([^)]*\))", query)
    if not match:
        return set(JOB_FIELDS)
    return {k.strip() for k in match.group(1).strip("()").split(" OR ")}


def _fields_read(target: dict[str, Any]) -> set[str]:
    fields = {m["field"] for m in target["metrics"] if m.get("field")}
    fields |= {b["field"] for b in target["bucketAggs"] if b.get("field")}
    fields |= set(re.findall(r"(\w+):", target["query"]))
    return fields


METRIC_TARGETS = [
    (uid, panel["title"], target)
    for uid, model in build.dashboards().items()
    for panel in model["panels"]
    if panel["datasource"]["uid"] == METRICS_DS_UID
    for target in panel["targets"]
]


@pytest.mark.parametrize(("uid", "title", "target"), METRIC_TARGETS, ids=[t for _, t, _ in METRIC_TARGETS])
def test_metrics_panels_read_only_what_the_pipeline_writes(uid, title, target):
    kinds = _kinds_of(target["query"])
    assert kinds <= set(JOB_FIELDS), (uid, title, sorted(kinds - set(JOB_FIELDS)))
    written = set().union(*(JOB_FIELDS[k] for k in kinds))
    missing = _fields_read(target) - written
    assert not missing, (uid, title, sorted(missing))


def test_sample_metrics_carry_only_fields_the_pipeline_writes():
    docs = sample_metrics(BASE)
    assert {d["kind"] for d in docs} == {"flow", "audit", "alert", "dlq", "lag", "anomaly", "detector"}
    for doc in docs:
        assert doc["kind"] in JOB_FIELDS, doc
        extra = set(doc) - JOB_FIELDS[doc["kind"]]
        assert not extra, (doc["kind"], sorted(extra))


def _evidence_written() -> tuple[dict[str, set[str]], dict[str, dict[str, set[Any]]]]:
    """Evidence keys, and each key's values, of the alerts every detector raises when every rule
    sample (``*.events.json`` beside each rule) runs through the real engine, case by case as
    tests/test_detectors_rules.py replays them."""
    registry = samples_registry()
    keys: dict[str, set[str]] = {}
    values: dict[str, dict[str, set[Any]]] = {}
    for path in sample_files():
        for case in load_cases(path):
            context = DetectionContext(registry)
            engine = DetectionEngine(all_detectors(context.config), context, strict=True)
            for alert in engine.run(case.events):
                keys.setdefault(alert.detector, set()).update(alert.evidence)
                for key, value in alert.evidence.items():
                    if isinstance(value, str | int | float | bool):
                        values.setdefault(alert.detector, {}).setdefault(key, set()).add(value)
    return keys, values


EVIDENCE_KEYS, EVIDENCE_VALUES = _evidence_written()
CATEGORY_OF = {cls.meta.id: cls.meta.category for cls in detector_classes()}
# Evidence keys whose values are a vocabulary the detectors define (not data such as a host name).
VOCABULARY_KEYS = ("signal", "channel", "emulator", "shape")


def test_every_rule_detector_raises_on_its_samples():
    """Guards the checks below: they compare against every detector's evidence, not a few."""
    assert set(EVIDENCE_KEYS) == set(CATEGORY_OF)


def _evidence_read(node: Any) -> set[str]:
    """Evidence keys a dashboard part names anywhere: queries, buckets, columns, links, variables."""
    return set(re.findall(r"evidence\.(\w+)", json.dumps(node)))


BOARD_PARTS = [
    (uid, part.get("title") or part.get("name"), part)
    for uid, model in build.dashboards().items()
    for part in [*model["panels"], *model.get("templating", {}).get("list", [])]
    if _evidence_read(part)
]


def test_the_boards_read_evidence():
    """Guards the parametrised check: the scan finds the evidence the two boards are made of."""
    assert {uid for uid, _, _ in BOARD_PARTS} >= {"ssa-vm-escape", "ssa-cross-tenant"}


@pytest.mark.parametrize(("uid", "title", "part"), BOARD_PARTS, ids=[f"{u}:{t}" for u, t, _ in BOARD_PARTS])
def test_every_evidence_field_a_board_reads_is_written_by_a_detector(uid, title, part):
    """Each evidence key a panel or variable reads comes from a detector of the category it selects
    (any detector when it selects none); a key it filters on (``evidence.k:$v``) from every
    detector of that category, since a filter drops the alerts that lack the key."""
    text = json.dumps(part)
    categories = set(re.findall(r"category:(\w+)", text))
    writers = [d for d, c in CATEGORY_OF.items() if not categories or c in categories]
    assert writers, (uid, title, sorted(categories))
    written = set().union(*(EVIDENCE_KEYS[d] for d in writers))
    read = _evidence_read(part)
    assert read <= written, (uid, title, sorted(read - written))
    for key in re.findall(r"evidence\.(\w+):\$", text):
        lacking = [d for d in writers if key not in EVIDENCE_KEYS[d]]
        assert not lacking, (uid, title, key, lacking)


def test_sample_alert_evidence_is_what_its_detector_writes():
    """Keys as the named detector writes them on its samples; vocabulary values among its own."""
    for doc in sample_alerts(BASE, newer=True):
        detector, evidence = doc["detector"], doc["evidence"]
        extra = set(evidence) - EVIDENCE_KEYS.get(detector, set())
        assert not extra, (detector, sorted(extra))
        for key in set(VOCABULARY_KEYS) & set(evidence):
            assert evidence[key] in EVIDENCE_VALUES[detector][key], (detector, key, evidence[key])


# --- awareness documents -------------------------------------------------------------------------


def _paths(doc: Any, prefix: str = "") -> set[str]:
    """Dotted field paths of a document: every object key (nested ones as ``a.b``), objects inside
    lists flattened as Elasticsearch does."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = prefix + key
            out.add(path)
            out |= _paths(value, path + ".")
    elif isinstance(doc, list):
        for item in doc:
            out |= _paths(item, prefix)
    return out


def _awareness_written() -> dict[str, set[str]]:
    """Field paths of the documents the awareness code writes, per index family, from its own
    functions run on the sample alerts (incidents: opened, merged, closed), a minute's threat
    documents with an open incident and posture signals, and a warning of a ramping signal."""
    settings = IncidentSettings()
    incidents: list[dict[str, Any]] = []
    trackers: dict[str, IncidentTracker] = {}
    for alert in sorted(sample_alerts(BASE, newer=True), key=lambda a: (a["ts"], a["alert_id"])):
        for tenant, view in tenant_views(alert):
            tracker = trackers.setdefault(tenant, IncidentTracker(tenant, settings))
            incidents += tracker.observe(view)
    for tracker in trackers.values():
        incidents += tracker.expire(BASE + 10 * 3_600_000)
    assert {d["status"] for d in incidents} == {"open", "closed"}
    threat = ThreatSettings()
    open_one = [d for d in incidents if d["status"] == "open"][:1]
    tenant_doc = tenant_threat("t-acme", BASE, open_one, {"failed_logins": 12.0}, "high", threat)
    threat_docs = [tenant_doc, cloud_threat(BASE, [tenant_doc], threat)]
    warning = EarlyWarning("t-x", WarningSettings())
    warnings: list[dict[str, Any]] = []
    for m in range(2 * 24 * 60 + 120):  # two quiet days (1 or 2 a minute), then a ramp
        value = float(1 + m % 2) if m < 2 * 24 * 60 else 1 + (m - 2 * 24 * 60) * 0.25
        warnings += warning.observe_minute(BASE + m * 60_000, {"failed_logins": value}, "blue")
    assert warnings, "the ramp raised no warning: the field check below would compare against nothing"
    return {
        "incidents": set().union(*(_paths(d) for d in incidents)),
        "threat": set().union(*(_paths(d) for d in threat_docs)),
        "warnings": set().union(*(_paths(d) for d in warnings)),
    }


AWARENESS_FIELDS = _awareness_written()
SAMPLES = {
    "incidents": sample_incidents(BASE),
    "threat": sample_threat(BASE),
    "warnings": sample_warnings(BASE),
}


@pytest.mark.parametrize("family", sorted(SAMPLES))
def test_sample_awareness_documents_carry_only_fields_awareness_writes(family):
    for doc in SAMPLES[family]:
        extra = _paths(doc) - AWARENESS_FIELDS[family]
        assert not extra, (family, sorted(extra))


def _awareness_fields_read(target: dict[str, Any], panel: dict[str, Any] | None) -> set[str]:
    fields = _fields_read(target)
    fields |= {
        f["query"].partition(":")[0]
        for b in target["bucketAggs"]
        for f in b.get("settings", {}).get("filters", [])
    }
    for t in (panel or {}).get("transformations", []):
        if t["id"] == "organize":
            fields |= set(t["options"].get("includeByName", {}))
    return fields


AWARENESS_TARGETS = [
    (f"{uid}:{panel['title']}", DS_FAMILY[panel["datasource"]["uid"]], target, panel)
    for uid, model in build.dashboards().items()
    for panel in model["panels"]
    if DS_FAMILY[panel["datasource"]["uid"]] in SAMPLES
    for target in panel["targets"]
] + [
    (f"rule:{rule['uid']}", "threat", q["model"], None)
    for rule in alerting.rules_doc()["groups"][0]["rules"]
    for q in rule["data"]
    if q["datasourceUid"] != alerting.EXPR_UID
]


def test_the_boards_and_rules_read_every_awareness_family():
    assert {family for _, family, _, _ in AWARENESS_TARGETS} == set(SAMPLES)
    assert sum(1 for name, *_ in AWARENESS_TARGETS if name.startswith("rule:")) == 2


@pytest.mark.parametrize(
    ("name", "family", "target", "panel"), AWARENESS_TARGETS, ids=[n for n, *_ in AWARENESS_TARGETS]
)
def test_awareness_panels_read_only_what_awareness_writes(name, family, target, panel):
    missing = _awareness_fields_read(target, panel) - AWARENESS_FIELDS[family]
    assert not missing, (name, sorted(missing))


def test_board_constants_are_awareness_constants():
    assert panels.LEVELS == LEVELS
    assert dict(ThreatSettings().level_thresholds) == panels.LEVEL_INDEX_THRESHOLDS
    assert board_soc.KILL_CHAIN_STAGES == KILL_CHAIN_STAGES == killchain.STAGES
    assert board_soc.CLOUD == SAMPLE_CLOUD == alerting.CLOUD == CLOUD


def test_sample_incidents_group_sample_alerts():
    alerts = {a["alert_id"]: a for a in sample_alerts(BASE, newer=True)}
    docs = SAMPLES["incidents"]
    ids = {d["incident_id"] for d in docs}
    assert len(ids) == len(docs) == 11
    for doc in docs:
        grouped = [alerts[i] for i in doc["alert_ids"]]
        assert {a["tenant"] for a in grouped} == {doc["tenant"]}
        opener = min(grouped, key=lambda a: (a["first_seen"], a["alert_id"]))
        assert doc["incident_id"] == incident_id(doc["tenant"], opener["alert_id"])
        assert doc["first_seen"] == opener["first_seen"]
        assert doc["last_seen"] == max(a["last_seen"] for a in grouped)
        assert doc["alert_count"] == len(grouped) == sum(s["alert_count"] for s in doc["kill_chain"])
        assert set(doc["categories"]) == {a["category"] for a in grouped}
        assert doc["stage"] == max((s["tactic"] for s in doc["kill_chain"]), key=killchain.stage_index)
        assert doc["severity"] == severity_for_score(doc["score"])
        if doc["close_reason"] == "merged":
            assert doc["status"] == "closed" and doc["merged_into"] in ids
            into = next(d for d in docs if d["incident_id"] == doc["merged_into"])
            assert set(doc["alert_ids"]) <= set(into["alert_ids"])
    open_stages = [d["stage"] for d in docs if d["status"] == "open"]
    assert {s: open_stages.count(s) for s in KILL_CHAIN_STAGES} == {
        "reconnaissance": 1,
        "credential_access": 1,
        "privilege_escalation": 1,
        "lateral_movement": 1,
        "collection": 0,
        "exfiltration": 2,
        "impact": 3,
    }


def test_sample_threat_levels_follow_the_threat_formula():
    settings = ThreatSettings()
    docs = SAMPLES["threat"]
    for doc in docs:
        assert doc["level"] == level_for_index(doc["index"], settings), doc
        assert doc["level_rank"] == LEVELS.index(doc["level"])
        assert doc["doc_id"] == threat_doc_id(doc["tenant"], doc["ts"])
    minutes = sorted({d["ts"] for d in docs})
    assert len(minutes) == 60
    for ts in minutes:
        tenants = [d for d in docs if d["ts"] == ts and d["tenant"] != CLOUD]
        cloud = next(d for d in docs if d["ts"] == ts and d["tenant"] == CLOUD)
        assert cloud["index"] == cloud_threat(ts, tenants, settings)["index"]
    last = {d["tenant"]: d["level"] for d in docs if d["ts"] == minutes[-1]}
    assert last == {"t-acme": "orange", "t-beta": "red", "t-gamma": "yellow", CLOUD: "red"}


def test_sample_warnings_are_what_the_early_warning_raises():
    settings = ThreatSettings()
    levels = {(d["tenant"], d["ts"]): d["level"] for d in SAMPLES["threat"]}
    for doc in SAMPLES["warnings"]:
        assert doc["warning_id"] == warning_id(doc["tenant"], doc["signal"], doc["ts"])
        assert doc["current_level"] == levels[(doc["tenant"], doc["ts"])]
        assert LEVELS.index(doc["level"]) == LEVELS.index(doc["current_level"]) + 1
        assert doc["threshold"] == signal_threshold(doc["signal"], doc["level"], settings)
        assert doc["lower"] <= doc["forecast"] <= doc["upper"] < doc["observed"]
        assert doc["upper"] < doc["threshold"] <= doc["projected"]
