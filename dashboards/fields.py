"""Field names and the types the dashboards, alert workflow and report rely on.

``INDEX_FIELDS.md`` beside this file is the human version. The mappings here
(:data:`ALERTS_MAPPING`, :data:`METRICS_MAPPING`, and the awareness stage's
:data:`INCIDENTS_MAPPING`, :data:`THREAT_MAPPING` and :data:`WARNINGS_MAPPING`) are what these
readers *need*, not what is installed: the one definition of the installed mappings is
``infra.bootstrap``'s index templates, which the tests' and demos' indices use too
(``dashboards.sample.put_templates``). :func:`unmet_fields` says which needed fields a template
lacks or types otherwise; a unit test runs it on ``infra.bootstrap``'s templates and a live test on
the template a node resolves for each family.

``ttd_ms`` (time to detect) is defined as ``ts - first_seen``: from the first event of the
evidence to the moment the detector raised the alert.

Each family's datasource has its own time field (:data:`TIME_FIELDS`): incidents are filtered by
``last_seen`` (the latest evidence; an incident document is rewritten as it grows and has no
``ts``), threat levels and warnings by ``ts`` (the minute they describe).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from detectors.alert import Alert

__all__ = [
    "ALERTS_MAPPING",
    "ALERT_KEYWORDS",
    "EVIDENCE_KEYWORDS",
    "INCIDENTS_MAPPING",
    "INCIDENT_TIME_FIELD",
    "METRICS_MAPPING",
    "METRIC_LONGS",
    "NEEDED_MAPPINGS",
    "THREAT_MAPPING",
    "TIME_FIELD",
    "TIME_FIELDS",
    "WARNINGS_MAPPING",
    "alert_to_doc",
    "daily_index",
    "unmet_fields",
]

TIME_FIELD: Final = "ts"
INCIDENT_TIME_FIELD: Final = "last_seen"
# Datasource family -> its time field.
TIME_FIELDS: Final[dict[str, str]] = {
    "alerts": TIME_FIELD,
    "metrics": TIME_FIELD,
    "incidents": INCIDENT_TIME_FIELD,
    "threat": TIME_FIELD,
    "warnings": TIME_FIELD,
}

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
    "detector_errors",
    "overflow",
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
        "detector": dict(_KW),
        "events_per_s": {"type": "float"},
        "anomaly_p95": {"type": "float"},
        "anomaly_p99": {"type": "float"},
        **{name: {"type": "long"} for name in METRIC_LONGS},
    },
}


_FLOAT: Final = {"type": "float"}

# ``ssa-incidents-*``: one document per incident (``_id`` = ``incident_id``), rewritten as it grows.
INCIDENTS_MAPPING: Final[dict[str, Any]] = {
    "dynamic": True,
    "properties": {
        **{
            name: dict(_KW)
            for name in (
                "incident_id",
                "tenant",
                "status",
                "close_reason",
                "merged_into",
                "severity",
                "stage",
            )
        },
        "tactics": dict(_KW),
        "categories": dict(_KW),
        "other_tenants": dict(_KW),
        "title": {"type": "text", "fields": {"raw": dict(_KW)}},
        "score": {"type": "integer"},
        "alert_count": {"type": "long"},
        "first_seen": dict(_DATE),
        "last_seen": dict(_DATE),
        "updated": dict(_DATE),
        "closed_at": dict(_DATE),
        "kill_chain": {
            "properties": {"tactic": dict(_KW), "first_seen": dict(_DATE), "alert_count": {"type": "long"}}
        },
        "entities": {"properties": {"type": dict(_KW), "id": dict(_KW)}},
    },
}

# ``ssa-threat-*``: one document per tenant (and ``_cloud``) and minute.
THREAT_MAPPING: Final[dict[str, Any]] = {
    "dynamic": True,
    "properties": {
        "ts": dict(_DATE),
        "kind": dict(_KW),
        "tenant": dict(_KW),
        "level": dict(_KW),
        "level_rank": {"type": "integer"},
        "index": dict(_FLOAT),
        "reasons": {"type": "text", "fields": {"raw": dict(_KW)}},
    },
}

# ``ssa-warnings-*``: one document per early warning.
WARNINGS_MAPPING: Final[dict[str, Any]] = {
    "dynamic": True,
    "properties": {
        "ts": dict(_DATE),
        "kind": dict(_KW),
        "warning_id": dict(_KW),
        "tenant": dict(_KW),
        "signal": dict(_KW),
        "level": dict(_KW),
        "current_level": dict(_KW),
        **{name: dict(_FLOAT) for name in ("observed", "forecast", "lower", "upper", "projected")},
        "horizon_ms": {"type": "long"},
        "reason": {"type": "text", "fields": {"raw": dict(_KW)}},
    },
}


# Each document family's needs, by the family names of ``infra.bootstrap.installed_mappings``.
NEEDED_MAPPINGS: Final[dict[str, dict[str, Any]]] = {
    "alerts": ALERTS_MAPPING,
    "metrics": METRICS_MAPPING,
    "incidents": INCIDENTS_MAPPING,
    "threat": THREAT_MAPPING,
    "warnings": WARNINGS_MAPPING,
}


def _flat_types(props: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, spec in props.items():
        if "properties" in spec:
            out.update(_flat_types(spec["properties"], f"{prefix}{name}."))
        if "type" in spec and spec["type"] != "object":
            out[f"{prefix}{name}"] = spec["type"]
    return out


def unmet_fields(need: Mapping[str, Any], have: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """The fields of mapping ``need`` that mapping ``have`` (an index template's ``mappings``) does
    not give the same type, as ``field: (needed type, type in have or None)``. A needed keyword
    that ``have`` leaves to a dynamic template mapping strings as keywords is met."""
    have_types = _flat_types(have.get("properties", {}))
    strings_to_keyword = any(
        rule.get("match_mapping_type") == "string" and rule.get("mapping", {}).get("type") == "keyword"
        for item in have.get("dynamic_templates", [])
        for rule in item.values()
    )

    def dynamic_keyword(field: str) -> bool:
        parent: Mapping[str, Any] = have
        for part in field.split(".")[:-1]:
            parent = parent.get("properties", {}).get(part, {})
        return strings_to_keyword and str(parent.get("dynamic", have.get("dynamic", True))).lower() == "true"

    return {
        field: (typ, have_types.get(field))
        for field, typ in _flat_types(need.get("properties", {})).items()
        if have_types.get(field) != typ
        and not (field not in have_types and typ == "keyword" and dynamic_keyword(field))
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
