"""Field names and mappings the dashboards, alert workflow and report rely on.

``INDEX_FIELDS.md`` beside this file is the human version; the index templates in ``infra/`` must
map at least these fields with these types. Tests create their own indices from
:data:`ALERTS_MAPPING` and :data:`METRICS_MAPPING`, and a live test compares them with the
template installed for ``ssa-alerts-*`` / ``ssa-metrics-*`` when there is one.

``ttd_ms`` (time to detect) is defined as ``ts - first_seen``: from the first event of the
evidence to the moment the detector raised the alert.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Final

import msgspec

from detectors.alert import Alert

__all__ = [
    "ALERTS_MAPPING",
    "ALERT_KEYWORDS",
    "EVIDENCE_KEYWORDS",
    "METRICS_MAPPING",
    "METRIC_LONGS",
    "TIME_FIELD",
    "alert_to_doc",
    "daily_index",
]

TIME_FIELD: Final = "ts"

ALERT_KEYWORDS: Final[tuple[str, ...]] = (
    "alert_id",
    "tenant",
    "industry",
    "category",
    "severity",
    "status",
    "detector",
    "detector_version",
    "entity.type",
    "entity.id",
    "attack.tactic",
    "attack.technique_id",
    "attack.technique",
)

# Evidence fields the dashboards read, each written by real detectors (tests/test_dashboards_sample.py
# checks it): VM escape: host, emulator, vm, signal; cross-tenant: src_tenant, dst_tenant, channel,
# resource.
EVIDENCE_KEYWORDS: Final[tuple[str, ...]] = (
    "host",
    "emulator",
    "vm",
    "signal",
    "src_tenant",
    "dst_tenant",
    "channel",
    "resource",
)

METRIC_LONGS: Final[tuple[str, ...]] = (
    "events",
    "bytes",
    "flows",
    "distinct_peers",
    "distinct_dst_ports",
    "alerts",
    "dlq",
    "consumer_lag",
)

_DATE: Final = {"type": "date", "format": "epoch_millis"}
_KW: Final = {"type": "keyword"}


def _nest(dotted: tuple[str, ...]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name in dotted:
        head, _, tail = name.partition(".")
        if tail:
            props.setdefault(head, {"properties": {}})["properties"][tail] = dict(_KW)
        else:
            props[head] = dict(_KW)
    return props


ALERTS_MAPPING: Final[dict[str, Any]] = {
    "dynamic": True,
    "properties": {
        **_nest(ALERT_KEYWORDS),
        "ts": dict(_DATE),
        "first_seen": dict(_DATE),
        "last_seen": dict(_DATE),
        "ttd_ms": {"type": "long"},
        "score": {"type": "integer"},
        "summary": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 512}}},
        # Every evidence key is a keyword of one flattened field (EVIDENCE_KEYWORDS are those
        # the dashboards read); numbers in it compare as strings.
        "evidence": {"type": "flattened", "ignore_above": 1024},
        "status_updated_at": dict(_DATE),
        "status_history": {
            "type": "object",
            "properties": {
                "status": dict(_KW),
                "by": dict(_KW),
                "at": dict(_DATE),
                "reason": {"type": "text"},
            },
        },
    },
}

METRICS_MAPPING: Final[dict[str, Any]] = {
    "dynamic": False,
    "properties": {
        "ts": dict(_DATE),
        "tenant": dict(_KW),
        "topic": dict(_KW),
        "kind": dict(_KW),
        "source": dict(_KW),
        "events_per_s": {"type": "float"},
        "anomaly_p95": {"type": "float"},
        "anomaly_p99": {"type": "float"},
        **{name: {"type": "long"} for name in METRIC_LONGS},
    },
}


def daily_index(prefix: str, ts_ms: int) -> str:
    """``<prefix>YYYY.MM.DD`` of the UTC day of ``ts_ms``."""
    day = _dt.datetime.fromtimestamp(ts_ms / 1000, tz=_dt.UTC)
    return f"{prefix}{day:%Y.%m.%d}"


def alert_to_doc(alert: Alert, industry: str | None = None) -> dict[str, Any]:
    """The ``ssa-alerts-*`` document of an alert: its fields plus ``ttd_ms`` and ``industry``."""
    doc: dict[str, Any] = msgspec.to_builtins(alert)
    doc["ttd_ms"] = max(0, alert.ts - alert.first_seen)
    doc["industry"] = industry or ""
    doc.setdefault("status_history", [])
    doc.setdefault("status_updated_at", alert.ts)
    return doc
