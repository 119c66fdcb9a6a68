"""A small, fixed set of alerts and metrics documents (tests, demos of the dashboards).

Everything is derived from ``base_ms`` so the same call always gives the same documents; the
alerts follow :class:`detectors.alert.Alert` and go through :func:`dashboards.fields.alert_to_doc`.
Each alert names a real detector and takes its category, version and ATT&CK mapping from that
detector's metadata in :mod:`detectors.registry`, so the samples speak the detectors' vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from elasticsearch import Elasticsearch, helpers

from dashboards.fields import ALERTS_MAPPING, METRICS_MAPPING, alert_to_doc, daily_index
from detectors.alert import Alert, Entity, make_alert_id
from detectors.meta import DetectorMeta
from detectors.registry import anomaly_detector_classes, detector_classes
from infra.settings import Settings

__all__ = [
    "INDUSTRIES",
    "QEMU",
    "SAMPLE_TENANTS",
    "detector_metas",
    "index_docs",
    "put_templates",
    "sample_alerts",
    "sample_metrics",
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
_ENTITY_TYPE: Final = {"vm": "vm", "10": "ip", "svc": "principal"}
# A score in each severity's band (detectors.alert.severity_for_score).
_SCORE: Final = {"low": 30, "medium": 55, "high": 80, "critical": 95}


def detector_metas() -> dict[str, DetectorMeta]:
    """Metadata of every detector the registry defines (rules and anomaly models), by id."""
    return {cls.meta.id: cls.meta for cls in [*detector_classes(), *anomaly_detector_classes()]}


def sample_alerts(base_ms: int) -> list[dict[str, Any]]:
    """15 alert documents between ``base_ms + 2 min`` and ``base_ms + 52 min``.

    Category, version and ATT&CK mapping come from the named detector's metadata; the mapping is
    its first technique, which the engine gives every alert whose finding names no other."""
    metas = detector_metas()
    docs = []
    for minute, tenant, detector, severity, status, ttd_s, entity_id, evidence in _ROWS:
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
    (``kind: dlq``, ``dlq: 1``, ``source``), consumer lag samples (``kind: lag``) and, per tenant and
    5-minute window, the anomaly detectors' score percentiles (``kind: anomaly``).
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
        for quarter in range(4):
            for topic, scale in (("ssa.telemetry.flow", 10), ("ssa.telemetry.audit", 1)):
                lag = scale * (m * 4 + quarter)
                docs.append({"ts": ts + quarter * 15_000, "topic": topic, "kind": "lag", "consumer_lag": lag})
    return docs


def put_templates(es: Elasticsearch, settings: Settings, name: str) -> None:
    """Index templates ``<name>-alerts``/``<name>-metrics`` for the settings' prefixes (tests, demos)."""
    for suffix, prefix, mapping in (
        ("alerts", settings.index_alerts_prefix, ALERTS_MAPPING),
        ("metrics", settings.index_metrics_prefix, METRICS_MAPPING),
    ):
        es.indices.put_index_template(
            name=f"{name}-{suffix}",
            index_patterns=[prefix + "*"],
            priority=500,
            template={"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mapping},
        )


def index_docs(
    es: Elasticsearch, prefix: str, docs: Iterable[dict[str, Any]], id_field: str | None = None
) -> int:
    """Bulk-index into daily indices ``<prefix>YYYY.MM.DD`` by ``ts``; refreshes before returning."""
    actions = []
    for doc in docs:
        action: dict[str, Any] = {"_index": daily_index(prefix, doc["ts"]), "_source": doc}
        if id_field:
            action["_id"] = doc[id_field]
        actions.append(action)
    ok, _ = helpers.bulk(es, actions, refresh="wait_for")
    return ok
