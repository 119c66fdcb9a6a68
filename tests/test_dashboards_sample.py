"""The dashboards' sample documents say only what the pipeline says.

Alerts: every detector id, category and ATT&CK mapping is one the detector registry defines, and
every evidence field a board reads, and every sample evidence key, is one the detectors write when
their rule samples run through the engine.
Metrics: every field a metrics panel reads, and every field of a sample metrics document, is one
the job (streams.posture) or the indexer (streams.documents) writes for that document kind, so no
panel is tested on data that nothing produces.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dashboards import build
from dashboards.panels import METRICS_DS_UID
from dashboards.sample import sample_alerts, sample_metrics
from detectors.alert import severity_for_score
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.meta import DetectorMeta
from detectors.registry import all_detectors, anomaly_detector_classes, detector_classes
from detectors.samples import load_cases, sample_files, samples_registry
from streams.documents import dlq_action, lag_action
from streams.posture import PostureState, anomaly_records

BASE = 1_736_935_200_000  # 2025-01-15T10:00:00Z


def _registry_metas() -> dict[str, DetectorMeta]:
    return {cls.meta.id: cls.meta for cls in [*detector_classes(), *anomaly_detector_classes()]}


def test_sample_alerts_use_the_detector_registrys_vocabulary():
    metas = _registry_metas()
    docs = sample_alerts(BASE)
    assert len(docs) == 15
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


# Categories newer than the sample set: the live board, report and workflow tests assert figures of
# the sample alerts (counts per tenant, severity, category), which adding them would change.
NOT_SAMPLED_YET = {"command_and_control", "spam"}


def test_sample_alerts_cover_every_category_the_detectors_raise():
    """Each category's board and filters have something to show in the live test."""
    raised = {m.category for m in _registry_metas().values()}
    assert {d["category"] for d in sample_alerts(BASE)} == raised - NOT_SAMPLED_YET


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
    fields: dict[str, set[str]] = {}
    for record in records:
        fields.setdefault(record["kind"], set()).update(record)
    return fields


JOB_FIELDS = _job_fields_by_kind()


def test_the_job_writes_every_posture_kind():
    """Guards the field check below: it compares against all the kinds, not a partial run."""
    assert set(JOB_FIELDS) == {"flow", "process", "audit", "auth", "alert", "dlq", "lag", "anomaly"}


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
    assert {d["kind"] for d in docs} == {"flow", "audit", "alert", "dlq", "lag", "anomaly"}
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
    for doc in sample_alerts(BASE):
        detector, evidence = doc["detector"], doc["evidence"]
        extra = set(evidence) - EVIDENCE_KEYS.get(detector, set())
        assert not extra, (detector, sorted(extra))
        for key in set(VOCABULARY_KEYS) & set(evidence):
            assert evidence[key] in EVIDENCE_VALUES[detector][key], (detector, key, evidence[key])
