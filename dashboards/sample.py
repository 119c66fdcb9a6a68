"""A small, fixed set of alerts and metrics documents (tests, demos of the dashboards).

Everything is derived from ``base_ms`` so the same call always gives the same documents; the
alerts follow :class:`detectors.alert.Alert` and go through :func:`dashboards.fields.alert_to_doc`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from elasticsearch import Elasticsearch, helpers

from dashboards.fields import ALERTS_MAPPING, METRICS_MAPPING, alert_to_doc, daily_index
from detectors.alert import Alert, Attack, Entity, make_alert_id
from infra.settings import Settings

__all__ = ["INDUSTRIES", "SAMPLE_TENANTS", "index_docs", "put_templates", "sample_alerts", "sample_metrics"]

MINUTE: Final = 60_000
SAMPLE_TENANTS: Final = ("t-acme", "t-beta", "t-gamma")
INDUSTRIES: Final = {"t-acme": "telecom", "t-beta": "internet", "t-gamma": "finance"}
ATTACK: Final = {
    "vm_escape": Attack("privilege-escalation", "T1611", "Escape to Host"),
    "cross_tenant_leak": Attack("collection", "T1530", "Data from Cloud Storage"),
    "port_scan": Attack("discovery", "T1046", "Network Service Discovery"),
    "brute_force": Attack("credential-access", "T1110", "Brute Force"),
    "exfiltration": Attack("exfiltration", "T1048", "Exfiltration Over Alternative Protocol"),
    "cryptomining": Attack("impact", "T1496", "Resource Hijacking"),
    "dos": Attack("impact", "T1498", "Network Denial of Service"),
    "anomaly": Attack("discovery", "T1046", "Network Service Discovery"),
}
# minute offset, tenant, category, severity, status, ttd seconds, entity, evidence
_ROWS: Final[tuple[tuple[int, str, str, str, str, int, str, dict[str, str]], ...]] = (
    (
        2,
        "t-acme",
        "vm_escape",
        "critical",
        "open",
        30,
        "vm-acme-01",
        {"host": "hv-01", "emulator": "qemu", "vm": "vm-acme-01", "signal": "ptrace_emulator"},
    ),
    (
        5,
        "t-acme",
        "vm_escape",
        "high",
        "acknowledged",
        90,
        "vm-acme-02",
        {"host": "hv-01", "emulator": "qemu", "vm": "vm-acme-02", "signal": "dev_mem_open"},
    ),
    (
        7,
        "t-beta",
        "vm_escape",
        "critical",
        "open",
        60,
        "vm-beta-01",
        {"host": "hv-02", "emulator": "firecracker", "vm": "vm-beta-01", "signal": "mgmt_net_connect"},
    ),
    (
        11,
        "t-acme",
        "vm_escape",
        "critical",
        "closed",
        120,
        "vm-acme-01",
        {"host": "hv-01", "emulator": "qemu", "vm": "vm-acme-01", "signal": "ptrace_emulator"},
    ),
    (
        14,
        "t-beta",
        "cross_tenant_leak",
        "critical",
        "open",
        45,
        "vm-beta-02",
        {"src_tenant": "t-beta", "dst_tenant": "t-acme", "channel": "network"},
    ),
    (
        18,
        "t-gamma",
        "cross_tenant_leak",
        "high",
        "closed",
        300,
        "svc-gamma",
        {"src_tenant": "t-gamma", "dst_tenant": "t-acme", "channel": "storage"},
    ),
    (
        21,
        "t-gamma",
        "cross_tenant_leak",
        "medium",
        "open",
        240,
        "svc-gamma",
        {"src_tenant": "t-gamma", "dst_tenant": "t-beta", "channel": "api"},
    ),
    (
        23,
        "t-beta",
        "cross_tenant_leak",
        "high",
        "open",
        15,
        "vm-beta-02",
        {"src_tenant": "t-beta", "dst_tenant": "t-acme", "channel": "network"},
    ),
    (26, "t-acme", "port_scan", "low", "open", 20, "10.1.0.7", {"src_ip": "10.1.0.7"}),
    (29, "t-acme", "brute_force", "medium", "closed", 180, "10.1.0.9", {"src_ip": "10.1.0.9"}),
    (33, "t-beta", "exfiltration", "high", "open", 600, "vm-beta-03", {"dst_ip": "203.0.113.5"}),
    (37, "t-gamma", "cryptomining", "medium", "acknowledged", 900, "vm-gamma-01", {}),
    (41, "t-acme", "dos", "critical", "closed", 10, "10.1.0.20", {"dst_ip": "10.1.0.20"}),
    (44, "t-beta", "anomaly", "low", "open", 50, "vm-beta-01", {}),
    (52, "t-acme", "port_scan", "medium", "open", 25, "10.1.0.8", {"src_ip": "10.1.0.8"}),
)
_ENTITY_TYPE: Final = {"vm": "vm", "10": "ip", "svc": "principal"}


def sample_alerts(base_ms: int) -> list[dict[str, Any]]:
    """15 alert documents between ``base_ms + 2 min`` and ``base_ms + 52 min``."""
    docs = []
    for minute, tenant, category, severity, status, ttd_s, entity_id, evidence in _ROWS:
        ts = base_ms + minute * MINUTE
        entity = Entity(_ENTITY_TYPE[entity_id.split("-")[0].split(".")[0]], entity_id)  # type: ignore[arg-type]
        first_seen = ts - ttd_s * 1000
        alert = Alert(
            alert_id=make_alert_id(f"sample.{category}", entity, first_seen, ts),
            ts=ts,
            first_seen=first_seen,
            last_seen=ts - 1000,
            tenant=tenant,
            entity=entity,
            category=category,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            score={"low": 30, "medium": 55, "high": 80, "critical": 95}[severity],
            detector=f"sample.{category}",
            detector_version="1",
            attack=ATTACK[category],
            summary=f"{category.replace('_', ' ')} on {entity_id} ({tenant})",
            evidence=dict(evidence),
            status=status,  # type: ignore[arg-type]
        )
        docs.append(alert_to_doc(alert, INDUSTRIES[tenant]))
    return docs


def sample_metrics(base_ms: int, minutes: int = 10) -> list[dict[str, Any]]:
    """Metrics documents shaped as streams/ writes them, every value a simple function of the minute.

    Per tenant, telemetry kind and minute a posture document (``kind`` flow/audit, ``events``,
    ``events_per_s``, ``bytes``, ...); per tenant and minute a ``kind: alert`` document; DLQ records
    (``kind: dlq``, ``dlq: 1``, ``source``), consumer lag samples (``kind: lag``) and detector error
    counts (``kind: detector_errors``, ``detector``).
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
                    "anomaly_p50": 0.1 * t_index,
                    "anomaly_p95": 0.5 + 0.01 * m,
                    "anomaly_p99": 0.9 + 0.001 * m,
                }
            )
            docs.append(
                {"ts": ts, "tenant": tenant, "kind": "alert", "alerts": (m + t_index) % 3, "events": 0}
            )
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
        if m in (3, 4):
            docs.append(
                {"ts": ts, "kind": "detector_errors", "detector": "vm_escape.ptrace", "detector_errors": m}
            )
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
