"""A small, fixed set of alerts, metrics, incident, threat and warning documents (tests, demos of
the dashboards).

Everything is derived from ``base_ms`` so the same call always gives the same documents; the
alerts follow :class:`detectors.alert.Alert` and go through :func:`dashboards.fields.alert_to_doc`.
Each alert names a real detector and takes its category, version and ATT&CK mapping from that
detector's metadata in :mod:`detectors.registry`, so the samples speak the detectors' vocabulary.

The awareness documents (``sample_incidents``, ``sample_threat``, ``sample_warnings``) have the
shape ``awareness/`` writes (this package may not import it; tests/test_dashboards_sample.py
checks every field against documents the awareness code makes, the ids against its id functions,
the cloud's index against ``awareness.threat.cloud_threat`` of the sample tenants, each level
against its index and each warning's threshold against ``awareness.threat.signal_threshold``).
Incidents group sample alerts (``sample_alerts(base_ms, newer=True)``) and take their span,
tactics and categories from them; their titles, scores and the tenants' indices are chosen to show
every level and stage on the boards, not computed by the awareness formulas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Final

from elasticsearch import Elasticsearch, helpers

from dashboards.fields import alert_to_doc, daily_index
from dashboards.panels import LEVEL_INDEX_THRESHOLDS, LEVELS
from detectors.alert import Alert, Entity, make_alert_id, severity_for_score
from detectors.meta import DetectorMeta
from detectors.registry import anomaly_detector_classes, detector_classes
from infra.bootstrap import installed_mappings
from infra.settings import Settings

__all__ = [
    "CLOUD",
    "INDUSTRIES",
    "KILL_CHAIN_STAGES",
    "QEMU",
    "SAMPLE_TENANTS",
    "detector_metas",
    "index_docs",
    "put_awareness_templates",
    "put_templates",
    "sample_alerts",
    "sample_incidents",
    "sample_metrics",
    "sample_threat",
    "sample_warnings",
]

MINUTE: Final = 60_000
SAMPLE_TENANTS: Final = ("t-acme", "t-beta", "t-gamma")
INDUSTRIES: Final = {"t-acme": "telecom", "t-beta": "internet", "t-gamma": "finance"}
QEMU: Final = "/usr/bin/qemu-system-x86_64"
# minute offset, tenant, detector id, severity, status, ttd seconds, entity, evidence. The evidence
# uses only keys (and, for the vocabulary keys signal, channel and emulator, only values) that the
# named detector writes on its rule samples (tests/test_dashboards_sample.py checks it).
_ROWS: Final[tuple[tuple[int, str, str, str, str, int, str, dict[str, object]], ...]] = (
    (
        2,
        "t-acme",
        "vm_escape.emulator_privileged_syscall",
        "critical",
        "open",
        30,
        "vm-acme-01",
        {"host": "hv-01", "emulator": QEMU, "vm": "vm-acme-01", "signal": "ptrace"},
    ),
    (
        5,
        "t-acme",
        "vm_escape.emulator_foreign_file",
        "high",
        "acknowledged",
        90,
        "vm-acme-02",
        {"host": "hv-01", "emulator": QEMU, "vm": "vm-acme-02", "signal": "host_memory"},
    ),
    (
        7,
        "t-beta",
        "vm_escape.guest_to_management",
        "critical",
        "open",
        60,
        "vm-beta-01",
        {"host": "hv-02", "vm": "vm-beta-01", "signal": "management_plane_accept"},
    ),
    (
        11,
        "t-acme",
        "vm_escape.emulator_privileged_syscall",
        "critical",
        "closed",
        120,
        "vm-acme-01",
        {"host": "hv-01", "emulator": QEMU, "vm": "vm-acme-01", "signal": "ptrace"},
    ),
    (
        14,
        "t-beta",
        "cross_tenant.unpeered_flow",
        "critical",
        "open",
        45,
        "vm-beta-02",
        {"src_tenant": "t-beta", "dst_tenant": "t-gamma", "channel": "flow"},
    ),
    (
        18,
        "t-gamma",
        "cross_tenant.foreign_resource_access",
        "high",
        "closed",
        300,
        "svc-gamma",
        {
            "src_tenant": "t-gamma",
            "dst_tenant": "t-acme",
            "channel": "storage",
            "resource": "storage/t-acme/acme-private/db-dumps/1.sql.gz",
        },
    ),
    (
        21,
        "t-gamma",
        "cross_tenant.resource_shared_out",
        "medium",
        "open",
        240,
        "svc-gamma",
        {
            "src_tenant": "t-gamma",
            "dst_tenant": "t-beta",
            "channel": "snapshot",
            "resource": "snapshot/t-gamma/snap-0007",
        },
    ),
    (
        23,
        "t-beta",
        "cross_tenant.foreign_transfer_volume",
        "high",
        "open",
        15,
        "vm-beta-02",
        {"src_tenant": "t-beta", "dst_tenant": "t-acme", "channel": "flow", "bytes": 3_000_000_000},
    ),
    (26, "t-acme", "port_scan.failed_probe_scan", "low", "open", 20, "10.1.0.7", {"shape": "horizontal"}),
    (29, "t-acme", "brute_force.auth_failures", "medium", "closed", 180, "10.1.0.9", {"distinct_users": 4}),
    (
        33,
        "t-beta",
        "exfiltration.external_upload",
        "high",
        "open",
        600,
        "vm-beta-03",
        {"top_destination": "203.0.113.5"},
    ),
    (37, "t-gamma", "cryptomining.miner_process", "medium", "acknowledged", 900, "vm-gamma-01", {}),
    (41, "t-acme", "dos.distributed_flood", "critical", "closed", 10, "10.1.0.20", {"distinct_sources": 250}),
    (44, "t-beta", "anomaly.flow_features", "low", "open", 50, "vm-beta-01", {}),
    (52, "t-acme", "port_scan.failed_probe_scan", "medium", "open", 25, "10.1.0.8", {"shape": "vertical"}),
)
# Alerts of the categories added after the first 15 (command_and_control, spam): only with
# ``newer=True``, since the report and workflow tests count the first 15.
_NEWER_ROWS: Final[tuple[tuple[int, str, str, str, str, int, str, dict[str, object]], ...]] = (
    (
        46,
        "t-gamma",
        "c2.beacon",
        "high",
        "open",
        1800,
        "10.3.0.5",
        {"sources": ["10.3.0.5"], "destination": "198.51.100.23", "port": 443, "direction": "outbound"},
    ),
    (
        49,
        "t-beta",
        "spam.smtp_spam",
        "medium",
        "open",
        120,
        "10.2.0.9",
        {"distinct_servers": 40, "smtp_connections": 300},
    ),
)
_ENTITY_TYPE: Final = {"vm": "vm", "10": "ip", "svc": "principal"}
# A score in each severity's band (detectors.alert.severity_for_score).
_SCORE: Final = {"low": 30, "medium": 55, "high": 80, "critical": 95}


def detector_metas() -> dict[str, DetectorMeta]:
    """Metadata of every detector the registry defines (rules and anomaly models), by id."""
    return {cls.meta.id: cls.meta for cls in [*detector_classes(), *anomaly_detector_classes()]}


def sample_alerts(base_ms: int, *, newer: bool = False) -> list[dict[str, Any]]:
    """15 alert documents between ``base_ms + 2 min`` and ``base_ms + 52 min``; with ``newer``
    also a ``command_and_control`` (minute 46) and a ``spam`` alert (minute 49), 17 in all.

    Category, version and ATT&CK mapping come from the named detector's metadata; the mapping is
    its first technique, which the engine gives every alert whose finding names no other."""
    metas = detector_metas()
    docs = []
    rows = sorted(_ROWS + _NEWER_ROWS, key=lambda r: r[0]) if newer else _ROWS
    for minute, tenant, detector, severity, status, ttd_s, entity_id, evidence in rows:
        meta = metas[detector]
        ts = base_ms + minute * MINUTE
        entity = Entity(_ENTITY_TYPE[entity_id.split("-")[0].split(".")[0]], entity_id)  # type: ignore[arg-type]
        first_seen = ts - ttd_s * 1000
        alert = Alert(
            alert_id=make_alert_id(detector, entity, first_seen, ts, tenant),
            ts=ts,
            first_seen=first_seen,
            last_seen=ts - 1000,
            tenant=tenant,
            entity=entity,
            category=meta.category,
            severity=severity,  # type: ignore[arg-type]
            score=_SCORE[severity],
            detector=detector,
            detector_version=meta.version,
            attack=meta.attack[0],
            summary=f"{meta.title} on {entity_id} ({tenant})",
            evidence=dict(evidence),
            status=status,  # type: ignore[arg-type]
        )
        docs.append(alert_to_doc(alert, INDUSTRIES[tenant]))
    return docs


def sample_metrics(base_ms: int, minutes: int = 10) -> list[dict[str, Any]]:
    """Metrics documents shaped as streams/ writes them, every value a simple function of the minute.

    Per tenant, telemetry kind and minute a posture document (``kind`` flow/audit, ``events``,
    ``events_per_s``, ``bytes``, ...); per tenant and minute a ``kind: alert`` document; DLQ records
    (``kind: dlq``, ``dlq: 1``, ``source``), consumer lag samples (``kind: lag``), per tenant and
    5-minute window, the anomaly detectors' score percentiles (``kind: anomaly``) and, in some
    minutes, detectors' failures and overflows (``kind: detector``, ``streams.detector_health``).
    """
    docs: list[dict[str, Any]] = []
    kinds = {"t-acme": "flow", "t-beta": "flow", "t-gamma": "audit"}
    for t_index, tenant in enumerate(SAMPLE_TENANTS, start=1):
        for m in range(minutes):
            ts = base_ms + m * MINUTE
            events = 600 * t_index + 60 * m
            docs.append(
                {
                    "ts": ts,
                    "tenant": tenant,
                    "kind": kinds[tenant],
                    "events": events,
                    "events_per_s": events / 60,
                    "bytes": 1_000_000 * t_index + m,
                    "flows": 100 * t_index + m,
                    "distinct_peers": 5 * t_index + m,
                    "distinct_dst_ports": 3 * t_index + (m % 4),
                }
            )
            docs.append(
                {"ts": ts, "tenant": tenant, "kind": "alert", "alerts": (m + t_index) % 3, "events": 0}
            )
            if m % 5 == 0:  # the anomaly detectors' 5-minute windows
                docs.append(
                    {"ts": ts, "tenant": tenant, "kind": "anomaly", "detector": "anomaly.flow_features",
                     "window_ms": 300_000, "scored": 10 * t_index, "anomaly_p50": 0.5,
                     "anomaly_p95": round(0.9 + 0.01 * t_index, 4), "anomaly_p99": round(0.99 + 0.002 * m, 4)}
                )  # fmt: skip
    for m in range(minutes):
        ts = base_ms + m * MINUTE
        for n in range(m % 3):  # 0, 1 or 2 DLQ records a minute
            docs.append(
                {"ts": ts, "topic": "ssa.dlq", "kind": "dlq", "dlq": 1, "source": ("vpcflow", "zeek")[n]}
            )
        if m % 4 == 1:  # a failing rule on two keys, and a full pane now and then
            for key in ("t-acme/vm-acme-01", "t-beta/vm-beta-01"):
                docs.append({"ts": ts, "tenant": "-", "kind": "detector", "key": key, "detector": "dos.source_flood",
                             "detector_errors": m, "overflow": 0})  # fmt: skip
            docs.append({"ts": ts, "tenant": "-", "kind": "detector", "key": "t-acme/vm-acme-01",
                         "detector": "c2.beacon", "detector_errors": 0, "overflow": 100 * m})  # fmt: skip
        for quarter in range(4):
            for topic, scale in (("ssa.telemetry.flow", 10), ("ssa.telemetry.audit", 1)):
                lag = scale * (m * 4 + quarter)
                docs.append({"ts": ts + quarter * 15_000, "topic": topic, "kind": "lag", "consumer_lag": lag})
    return docs


CLOUD: Final = "_cloud"
KILL_CHAIN_STAGES: Final[tuple[str, ...]] = (
    "reconnaissance",
    "credential_access",
    "privilege_escalation",
    "lateral_movement",
    "collection",
    "exfiltration",
    "impact",
)
_GAP_PLUS_GRACE_MS: Final = (
    30 + 16
) * MINUTE  # awareness.incidents defaults: closed this long after last_seen

# Incidents: key, tenant, {alert minute: stage}, status, close reason, merged into (key), score,
# criticality, title, entities, other tenants.
_INCIDENTS: Final[
    tuple[tuple[str, str, dict[int, str], str, str | None, str | None, int, str, str, tuple[str, ...], tuple[str, ...]], ...]
] = (
    ("acme-escape", "t-acme", {2: "privilege_escalation", 5: "privilege_escalation", 11: "privilege_escalation"},
     "open", None, None, 97, "high", "VM vm-acme-01 of tenant t-acme: emulator escape",
     ("vm:vm-acme-01", "vm:vm-acme-02", "host:hv-01"), ()),
    ("acme-scan", "t-acme", {26: "reconnaissance"}, "closed", "inactive", None, 32, "high",
     "Address 10.1.0.7 of tenant t-acme: port scan", ("ip:10.1.0.7",), ()),
    ("acme-guess", "t-acme", {29: "credential_access"}, "open", None, None, 60, "high",
     "Address 10.1.0.9 of tenant t-acme: password guessing", ("ip:10.1.0.9",), ()),
    ("acme-flood", "t-acme", {41: "impact"}, "open", None, None, 77, "high",
     "Address 10.1.0.20 of tenant t-acme: denial of service", ("ip:10.1.0.20",), ()),
    ("acme-scan-2", "t-acme", {52: "reconnaissance"}, "open", None, None, 40, "high",
     "Address 10.1.0.8 of tenant t-acme: port scan", ("ip:10.1.0.8",), ()),
    ("beta-breakout", "t-beta",
     {7: "privilege_escalation", 14: "lateral_movement", 23: "exfiltration", 33: "exfiltration", 44: "reconnaissance"},
     "open", None, None, 100, "medium",
     "VM vm-beta-01 of tenant t-beta: emulator escape, cross-tenant access, then upload out of the cloud",
     ("vm:vm-beta-01", "vm:vm-beta-02", "vm:vm-beta-03", "host:hv-02"), ("t-acme", "t-gamma")),
    ("beta-unusual", "t-beta", {44: "reconnaissance"}, "closed", "merged", "beta-breakout", 44, "medium",
     "VM vm-beta-01 of tenant t-beta: unusual activity", ("vm:vm-beta-01",), ()),
    ("beta-spam", "t-beta", {49: "impact"}, "open", None, None, 62, "medium",
     "Address 10.2.0.9 of tenant t-beta: spam", ("ip:10.2.0.9",), ()),
    ("gamma-leak", "t-gamma", {18: "collection", 21: "exfiltration"}, "open", None, None, 84, "low",
     "Principal svc-gamma of tenant t-gamma: cross-tenant access", ("principal:svc-gamma",), ("t-acme", "t-beta")),
    ("gamma-miner", "t-gamma", {37: "impact"}, "open", None, None, 57, "low",
     "VM vm-gamma-01 of tenant t-gamma: cryptomining", ("vm:vm-gamma-01",), ()),
    ("gamma-beacon", "t-gamma", {46: "lateral_movement"}, "open", None, None, 82, "low",
     "Address 10.3.0.5 of tenant t-gamma: beaconing to a control server", ("ip:10.3.0.5",), ()),
)  # fmt: skip


def _incident_id(tenant: str, alert_id: str) -> str:
    """As ``awareness.incidents.incident_id``: blake2b-128 of the tenant and the opening alert's id."""
    return hashlib.blake2b(f"{tenant}\x00{alert_id}".encode(), digest_size=16).hexdigest()


def sample_incidents(base_ms: int) -> list[dict[str, Any]]:
    """11 incident documents over the alerts of ``sample_alerts(base_ms, newer=True)``.

    Open ones reach every stage but collection (reconnaissance 1, credential access 1, privilege
    escalation 1, lateral movement 1, exfiltration 2, impact 3); one is closed as inactive and one
    is merged into t-beta's breakout (``close_reason: merged``)."""
    by_minute = {(a["ts"] - base_ms) // MINUTE: a for a in sample_alerts(base_ms, newer=True)}
    ids: dict[str, str] = {}
    for key, tenant, stages, *_ in _INCIDENTS:
        ids[key] = _incident_id(tenant, by_minute[min(stages)]["alert_id"])
    docs = []
    for (
        key,
        tenant,
        stages,
        status,
        reason,
        merged,
        score,
        criticality,
        title,
        entities,
        others,
    ) in _INCIDENTS:
        alerts = sorted((by_minute[m] for m in stages), key=lambda a: (a["first_seen"], a["alert_id"]))
        chain: dict[str, dict[str, Any]] = {}
        tactics: dict[str, int] = {}
        categories: dict[str, int] = {}
        for alert in alerts:
            minute = (alert["ts"] - base_ms) // MINUTE
            stage = chain.setdefault(
                stages[minute],
                {
                    "tactic": stages[minute],
                    "first_seen": alert["first_seen"],
                    "categories": [],
                    "alert_count": 0,
                },
            )
            stage["alert_count"] += 1
            if alert["category"] not in stage["categories"]:
                stage["categories"] = sorted([*stage["categories"], alert["category"]])
            tactics.setdefault(alert["attack"]["tactic"], alert["first_seen"])
            categories.setdefault(alert["category"], alert["first_seen"])
        first_seen = min(a["first_seen"] for a in alerts)
        last_seen = max(a["last_seen"] for a in alerts)
        closed_at = last_seen + _GAP_PLUS_GRACE_MS if status == "closed" else None
        docs.append(
            {
                "incident_id": ids[key],
                "tenant": tenant,
                "status": status,
                "close_reason": reason,
                "merged_into": ids[merged] if merged else None,
                "closed_at": closed_at,
                "title": title,
                "severity": severity_for_score(score),
                "score": score,
                "criticality": criticality,
                "stage": max(stages.values(), key=KILL_CHAIN_STAGES.index),
                "kill_chain": sorted(
                    chain.values(), key=lambda st: (st["first_seen"], KILL_CHAIN_STAGES.index(st["tactic"]))
                ),
                "tactics": list(tactics),
                "categories": list(categories),
                "first_seen": first_seen,
                "last_seen": last_seen,
                "updated": closed_at or last_seen,
                "alert_ids": [a["alert_id"] for a in alerts],
                "alert_count": len(alerts),
                "entities": [dict(zip(("type", "id"), e.split(":", 1), strict=True)) for e in entities],
                "other_tenants": list(others),
                "version": len(alerts) + (1 if status == "closed" else 0),
            }
        )
    return docs


# Each tenant's threat index from the given minute on (in the order of the list).
_INDEX_STEPS: Final[dict[str, tuple[tuple[int, float], ...]]] = {
    "t-acme": ((0, 4.0), (2, 62.0), (26, 66.5), (41, 72.0)),
    "t-beta": ((0, 0.0), (7, 55.0), (14, 70.0), (33, 88.0)),
    "t-gamma": ((0, 8.0), (18, 40.0), (37, 45.5)),
}
_PLAN_GRADE: Final = {"blue": "IV", "yellow": "III", "orange": "II", "red": "I"}
_BREADTH_WEIGHT: Final = 0.5  # awareness.threat default breadth_weight


def _level(index: float) -> str:
    level = LEVELS[0]
    for name in LEVELS[1:]:
        if index >= LEVEL_INDEX_THRESHOLDS[name]:
            level = name
    return level


def _threat_doc_id(tenant: str, minute_ms: int) -> str:
    return "t-" + hashlib.blake2b(f"threat\x00{tenant}\x00{minute_ms}".encode(), digest_size=12).hexdigest()


def sample_threat(base_ms: int, minutes: int = 60) -> list[dict[str, Any]]:
    """Per minute, a threat document for each sample tenant and one for the cloud (``_cloud``).

    In the last minute t-acme is orange, t-beta red, t-gamma yellow and the cloud red; t-beta
    turns red at minute 33. The cloud's index is ``awareness.threat.cloud_threat`` of the three."""
    docs: list[dict[str, Any]] = []
    for m in range(minutes):
        ts = base_ms + m * MINUTE
        tenant_docs: list[dict[str, Any]] = []
        for tenant in SAMPLE_TENANTS:
            index = [value for start, value in _INDEX_STEPS[tenant] if start <= m][-1]
            level = _level(index)
            tenant_docs.append(
                {
                    "kind": "threat",
                    "doc_id": _threat_doc_id(tenant, ts),
                    "tenant": tenant,
                    "ts": ts,
                    "index": index,
                    "level": level,
                    "level_rank": LEVELS.index(level),
                    "plan_grade": _PLAN_GRADE[level],
                    "reasons": [f"open incidents of {tenant}: {index:.1f} points"]
                    if index > 0
                    else ["no open incident and no posture signal above normal"],
                    "contributors": {
                        "incidents": index,
                        "posture": 0.0,
                        "floor": None,
                        "criticality": "medium",
                        "open_incidents": 1 if index > 0 else 0,
                        "top_incidents": [],
                        "signals": {},
                    },
                }
            )
        ranked = sorted(tenant_docs, key=lambda d: (-d["index"], d["tenant"]))
        top = ranked[0]["index"]
        raised = [d for d in ranked if d["index"] >= LEVEL_INDEX_THRESHOLDS["yellow"]]
        share = len(raised) / len(ranked)
        index = round(min(100.0, top + (100 - top) * _BREADTH_WEIGHT * share), 1)
        level = _level(index)
        docs += tenant_docs
        docs.append(
            {
                "kind": "threat",
                "doc_id": _threat_doc_id(CLOUD, ts),
                "tenant": CLOUD,
                "ts": ts,
                "index": index,
                "level": level,
                "level_rank": LEVELS.index(level),
                "plan_grade": _PLAN_GRADE[level],
                "reasons": [f"tenant {ranked[0]['tenant']} at {ranked[0]['level']} (index {top:.1f})"],
                "contributors": {
                    "max_tenant": ranked[0]["tenant"],
                    "max_index": top,
                    "tenants": len(ranked),
                    "raised_share": round(share, 4),
                    "tenants_by_level": {lv: sum(d["level"] == lv for d in ranked) for lv in LEVELS},
                },
            }
        )
    return docs


# Warnings: minute, tenant, signal, current level, observed, forecast, lower, upper, projected,
# threshold (the signal value that alone lifts the tenant to the next level).
_WARNINGS: Final[tuple[tuple[int, str, str, str, float, float, float, float, float, float], ...]] = (
    (1, "t-acme", "failed_logins", "blue", 7.0, 1.1, 0.0, 3.4, 12.5, 10.0),
    (3, "t-beta", "failed_logins", "blue", 6.0, 1.2, 0.0, 3.1, 14.0, 10.0),
    (5, "t-beta", "probes", "blue", 240.0, 60.0, 20.0, 110.0, 700.0, 612.5),
    (12, "t-gamma", "cross_tenant_flows", "blue", 3.0, 0.2, 0.0, 1.5, 12.0, 10.0),
    (30, "t-gamma", "alerts", "yellow", 6.0, 0.5, 0.0, 2.0, 55.0, 50.0),
)
HORIZON_MS: Final = 3_600_000  # awareness.forecast default horizon_ms


def _warning_id(tenant: str, signal: str, minute_ms: int) -> str:
    key = f"warning\x00{tenant}\x00{signal}\x00{minute_ms}"
    return "w-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def sample_warnings(base_ms: int) -> list[dict[str, Any]]:
    """5 early-warning documents (minutes 1 to 30), each a signal above its interval and projected
    past the value that alone would lift its tenant from its level of that minute to the next."""
    docs = []
    for minute, tenant, signal, current, observed, forecast, lower, upper, projected, threshold in _WARNINGS:
        ts = base_ms + minute * MINUTE
        level = LEVELS[LEVELS.index(current) + 1]
        name = signal.replace("_", " ")
        docs.append(
            {
                "kind": "warning",
                "warning_id": _warning_id(tenant, signal, ts),
                "tenant": tenant,
                "ts": ts,
                "signal": signal,
                "level": level,
                "current_level": current,
                "observed": observed,
                "forecast": forecast,
                "lower": lower,
                "upper": upper,
                "projected": projected,
                "threshold": threshold,
                "horizon_ms": HORIZON_MS,
                "reason": (
                    f"{name} at {observed:.1f} has been above its expected range ({lower:.1f}-{upper:.1f}) "
                    f"for 3 minutes and is projected to reach {projected:.1f} within {HORIZON_MS // MINUTE} "
                    f"minutes, past {threshold:.1f}, which alone would raise tenant {tenant} from {current} "
                    f"to {level}."
                ),
            }
        )
    return docs


def put_awareness_templates(es: Elasticsearch, settings: Settings, name: str) -> None:
    """Index templates ``<name>-incidents``/``-threat``/``-warnings`` for the settings' awareness
    prefixes (tests, demos; point the prefixes at a test's own names first), with the mappings
    ``ssa up`` installs (``infra.bootstrap.installed_mappings``), so a board's query is tried on the
    field types production has."""
    _put_families(es, settings, name, ("incidents", "threat", "warnings"))


def put_templates(es: Elasticsearch, settings: Settings, name: str) -> None:
    """Index templates ``<name>-alerts``/``<name>-metrics`` for the settings' prefixes (tests, demos),
    with the mappings ``ssa up`` installs (``infra.bootstrap.installed_mappings``)."""
    _put_families(es, settings, name, ("alerts", "metrics"))


def _put_families(es: Elasticsearch, settings: Settings, name: str, families: tuple[str, ...]) -> None:
    mappings = installed_mappings(settings)
    for family in families:
        _put_template(es, f"{name}-{family}", getattr(settings, f"index_{family}_prefix"), mappings[family])


def _put_template(es: Elasticsearch, name: str, prefix: str, mappings: dict[str, Any]) -> None:
    # Above the project's own templates (priority 200 + pattern length) where the patterns overlap;
    # no aliases: a test's indices stay out of the SOC's aliases.
    es.indices.put_index_template(
        name=name,
        index_patterns=[prefix + "*"],
        priority=500,
        template={"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mappings},
    )


def index_docs(
    es: Elasticsearch,
    prefix: str,
    docs: Iterable[dict[str, Any]],
    id_field: str | None = None,
    time_field: str = "ts",
) -> int:
    """Bulk-index into daily indices ``<prefix>YYYY.MM.DD`` by ``time_field``; refreshes before returning."""
    actions = []
    for doc in docs:
        action: dict[str, Any] = {"_index": daily_index(prefix, doc[time_field]), "_source": doc}
        if id_field:
            action["_id"] = doc[id_field]
        actions.append(action)
    ok, _ = helpers.bulk(es, actions, refresh="wait_for")
    return ok
