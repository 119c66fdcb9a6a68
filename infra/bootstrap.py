"""Create the Kafka topics and Elasticsearch index templates of DESIGN.md (idempotent).

Used by ``ssa up`` on the local stack and by ``ssa detect`` against any cluster.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Final

from infra.clients import es_client, kafka_config
from infra.ecs_spec import ecs_properties
from infra.settings import Settings
from infra.tenant_indices import alias_existing_indices, soc_template_aliases

log = logging.getLogger(__name__)

__all__ = [
    "APPEND_TIME",
    "alerts_template",
    "ensure_index_templates",
    "ensure_topics",
    "installed_mappings",
    "metrics_template",
    "output_topics",
    "stamp_on_append",
    "topic_configs",
]

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_DATE = {"type": "date", "format": "epoch_millis||strict_date_optional_time"}
_EVIDENCE = {"type": "flattened", "ignore_above": 1024}


def _priority(pattern: str) -> int:
    # A longer (more specific) pattern wins where two deployments' prefixes overlap, e.g.
    # "ssa-alerts-*" and "ssa-alerts-lab-*": Elasticsearch refuses equal priorities there.
    return 200 + len(pattern)


def alerts_template(settings: Settings) -> dict[str, Any]:
    return {
        "index_patterns": [settings.index_alerts_pattern],
        "priority": _priority(settings.index_alerts_pattern),
        "template": {
            # The SOC alias, without the per-tenant copies of multi-tenant alerts (infra.tenant_indices).
            "aliases": soc_template_aliases(settings.index_alerts_prefix, filtered=True),
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {
                "dynamic_templates": [
                    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": _KEYWORD}}
                ],
                "properties": {
                    "alert_id": _KEYWORD,
                    "ts": _DATE,
                    "first_seen": _DATE,
                    "last_seen": _DATE,
                    "indexed_at": _DATE,
                    "ttd_ms": {"type": "long"},
                    "tenant": _KEYWORD,
                    "industry": _KEYWORD,
                    "entity": {"properties": {"type": _KEYWORD, "id": _KEYWORD}},
                    "category": _KEYWORD,
                    "severity": _KEYWORD,
                    "score": {"type": "integer"},
                    "detector": _KEYWORD,
                    "detector_version": _KEYWORD,
                    "attack": {
                        "properties": {"tactic": _KEYWORD, "technique_id": _KEYWORD, "technique": _KEYWORD}
                    },
                    "summary": {"type": "text", "fields": {"raw": _KEYWORD}},
                    # Keys differ per detector. Mapped one by one, every new key on a new daily
                    # index is a cluster-state update (1.4-2 s for a first batch under load,
                    # paid by the day's first alerts); flattened maps them once, as keywords.
                    "evidence": _EVIDENCE,
                    "status": _KEYWORD,
                    "copy": _KEYWORD,
                    "shared_copy": {"type": "boolean"},
                    "status_updated_at": _DATE,
                    "status_history": {
                        "properties": {
                            "status": _KEYWORD,
                            "by": _KEYWORD,
                            "at": _DATE,
                            "reason": {"type": "text"},
                        }
                    },
                    # ECS fields (detectors/ecs.py) with ECS's types, checked against ECS's own
                    # definitions by tests/test_ecs_fields.py.
                    **ecs_properties(),
                },
            },
        },
    }


def metrics_template(settings: Settings) -> dict[str, Any]:
    longs = (
        "events",
        "bytes",
        "flows",
        "distinct_peers",
        "distinct_dst_ports",
        "alerts",
        "failures",
        "dlq",
        "consumer_lag",
        "detector_errors",
        "overflow",
    )
    floats = ("anomaly_p50", "anomaly_p95", "anomaly_p99", "events_per_s")
    props: dict[str, Any] = {
        "ts": _DATE,
        "tenant": _KEYWORD,
        "topic": _KEYWORD,
        "kind": _KEYWORD,
        "detector": _KEYWORD,
        "key": _KEYWORD,
        "source": _KEYWORD,
    }
    props |= {name: {"type": "long"} for name in longs}
    props |= {name: {"type": "float"} for name in floats}
    return {
        "index_patterns": [settings.index_metrics_pattern],
        "priority": _priority(settings.index_metrics_pattern),
        "template": {
            "aliases": soc_template_aliases(settings.index_metrics_prefix),
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {
                "dynamic_templates": [
                    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": _KEYWORD}}
                ],
                "properties": props,
            },
        },
    }


def awareness_templates(settings: Settings) -> dict[str, dict[str, Any]]:
    """Index templates of the awareness stage's three document families, by template name:
    incidents (one document per incident, rewritten as it grows), threat levels (per tenant and
    the cloud, per minute) and early warnings."""
    dates = {name: _DATE for name in ("ts", "first_seen", "last_seen", "updated", "closed_at", "detected_at")}
    families: dict[str, dict[str, Any]] = {
        settings.index_incidents_prefix: {
            **ecs_properties(),
            "incident_id": _KEYWORD,
            "copy": _KEYWORD,
            "title": {"type": "text", "fields": {"raw": _KEYWORD}},
            "score": {"type": "integer"},
            "alert_count": {"type": "long"},
            "version": {"type": "long"},
            "ttd_ms": {"type": "long"},
            "ttc_ms": {"type": "long"},
            "inactive_ttc_ms": {"type": "long"},
            "entities": {"properties": {"type": _KEYWORD, "id": _KEYWORD}},
            "kill_chain": {
                "properties": {"tactic": _KEYWORD, "first_seen": _DATE, "alert_count": {"type": "long"}}
            },
        },
        settings.index_threat_prefix: {
            "index": {"type": "float"},
            "level_rank": {"type": "integer"},
            "reasons": {"type": "text", "fields": {"raw": _KEYWORD}},
        },
        settings.index_warnings_prefix: {
            "observed": {"type": "float"},
            "forecast": {"type": "float"},
            "lower": {"type": "float"},
            "upper": {"type": "float"},
            "projected": {"type": "float"},
            "horizon_ms": {"type": "long"},
            "reason": {"type": "text", "fields": {"raw": _KEYWORD}},
        },
    }
    templates: dict[str, dict[str, Any]] = {}
    for prefix, props in families.items():
        pattern = prefix + "*"
        templates[prefix.rstrip("-_.")] = {
            "index_patterns": [pattern],
            "priority": _priority(pattern),
            "template": {
                # Incidents, like alerts, have per-tenant copies the SOC alias leaves out.
                "aliases": soc_template_aliases(prefix, filtered=prefix == settings.index_incidents_prefix),
                "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
                "mappings": {
                    "dynamic_templates": [
                        {"strings_as_keywords": {"match_mapping_type": "string", "mapping": _KEYWORD}}
                    ],
                    "properties": {"tenant": _KEYWORD, "kind": _KEYWORD, **dates, **props},
                },
            },
        }
    return templates


def installed_mappings(settings: Settings) -> dict[str, dict[str, Any]]:
    """The ``mappings`` of each document family's template (``alerts``, ``metrics``,
    ``incidents``, ``threat``, ``warnings``), as ``ensure_index_templates`` installs them."""
    awareness = {
        t["index_patterns"][0]: t["template"]["mappings"] for t in awareness_templates(settings).values()
    }
    return {
        "alerts": alerts_template(settings)["template"]["mappings"],
        "metrics": metrics_template(settings)["template"]["mappings"],
        "incidents": awareness[settings.index_incidents_prefix + "*"],
        "threat": awareness[settings.index_threat_prefix + "*"],
        "warnings": awareness[settings.index_warnings_prefix + "*"],
    }


def ensure_index_templates(settings: Settings) -> None:
    es = es_client(settings)
    try:
        es.indices.put_index_template(name=settings.index_alerts_prefix.rstrip("-_.") or "ssa-alerts",
                                      **alerts_template(settings))  # fmt: skip
        es.indices.put_index_template(name=settings.index_metrics_prefix.rstrip("-_.") or "ssa-metrics",
                                      **metrics_template(settings))  # fmt: skip
        for name, template in awareness_templates(settings).items():
            es.indices.put_index_template(name=name, **template)
        alias_existing_indices(es, settings)  # indices made before the templates had the aliases
    finally:
        es.close()


# A tenant's (or the provider's) telemetry topic in secure mode (infra.secure.tenant_prefix), and
# its DLQ topic (infra.secure.tenant_dlq).
_TENANT_TELEMETRY = re.compile(r"ssa\.[^.]+\.telemetry\.[^.]+")
_TENANT_DLQ = re.compile(r"ssa\.[^.]+\.dlq")
# The job's sinks stamp a record with its element's event time (an alert's window, a late event's
# time), and a broker deletes a segment once its newest record time is older than retention.ms: on
# a replay of last month's capture, its alerts and incidents were gone before the indexer read them.
# Stamped by the broker on append, an output record is kept retention.ms after it was written.
APPEND_TIME: Final = {"message.timestamp.type": "LogAppendTime"}


def output_topics(settings: Settings) -> list[str]:
    """The topics the job and the parsers write and the indexer reads: alerts, DLQ, metrics and the
    awareness stage's."""
    return [settings.topic_alerts, settings.topic_dlq, settings.topic_metrics, *settings.awareness_topics]


def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    """A topic's own configs: the parse stage's state topic keeps the newest record per key; the
    telemetry topics keep records by size, not by their (event) time (``Settings.telemetry_retention_bytes``);
    the output topics are stamped on append (``APPEND_TIME``)."""
    if topic == settings.topic_parse_state:
        return {"cleanup.policy": "compact"}
    if topic in settings.telemetry_topics.values() or _TENANT_TELEMETRY.fullmatch(topic):
        return {"retention.ms": str(settings.telemetry_retention_ms),
                "retention.bytes": str(settings.telemetry_retention_bytes)}  # fmt: skip
    if topic in output_topics(settings) or _TENANT_DLQ.fullmatch(topic):
        return dict(APPEND_TIME)
    return {}


def stamp_on_append(settings: Settings, topics: list[str]) -> list[str]:
    """Set ``APPEND_TIME`` on those of ``topics`` (existing output topics) that lack it: topics made
    before their records were stamped on append. Returns the names changed. A broker that cannot be
    asked or refuses (no ALTER_CONFIGS right) gets a warning with the command, never an error: the
    pipeline runs, and only a replay of old events is at risk."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    if not topics:
        return []
    key, value = next(iter(APPEND_TIME.items()))
    try:
        admin = AdminClient(kafka_config(settings, "confluent"))
        described = admin.describe_configs([ConfigResource("topic", t) for t in topics], request_timeout=15)
        stale = sorted(r.name for r, f in described.items() if f.result(timeout=20)[key].value != value)
        entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        changes = [ConfigResource("topic", t, incremental_configs=[entry]) for t in stale]
        for future in (admin.incremental_alter_configs(changes) if changes else {}).values():
            future.result(timeout=20)
    except (KafkaException, KeyError, TimeoutError) as exc:
        log.warning(
            "topics %s: could not check or set %s=%s (%s); on a replay of old events their records may "
            "be deleted before the indexer reads them: kafka-configs --alter --add-config %s=%s",
            ", ".join(topics), key, value, exc, key, value,
        )  # fmt: skip
        return []
    if stale:
        log.info("topics %s: records now stamped on append (%s=%s)", ", ".join(stale), key, value)
    return stale


def time_limited_topics(settings: Settings, topics: list[str]) -> dict[str, int] | None:
    """The topics among ``topics`` whose ``retention.ms`` deletes by time, with that limit; None
    when the broker cannot be asked (the caller warns without knowing)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource

    try:
        admin = AdminClient(kafka_config(settings, "confluent"))
        futures = admin.describe_configs([ConfigResource("topic", t) for t in topics], request_timeout=10)
        out = {}
        for resource, future in futures.items():
            entry = future.result(timeout=15).get("retention.ms")
            if entry is not None and entry.value is not None and int(entry.value) >= 0:
                out[resource.name] = int(entry.value)
        return out
    except (KafkaException, ValueError, TimeoutError):
        return None


def ensure_topics(
    settings: Settings,
    topics: list[str] | None = None,
    partitions: int | None = None,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create missing topics (with topic ``configs`` if given); returns the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = topics if topics is not None else settings.all_topics
    admin = KafkaAdminClient(**kafka_config(settings), request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            new = [
                NewTopic(
                    t,
                    partitions or settings.kafka_partitions,
                    settings.kafka_replication_factor,
                    topic_configs={**topic_configs(settings, t), **(configs or {})},
                )
                for t in missing
            ]
            # Created concurrently by another client: the goal is met.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new, timeout_ms=15000)
    finally:
        admin.close()
    if not settings.tenant_topics:  # secure mode: `ssa tenants provision` makes and keeps the topics
        outputs = set(output_topics(settings))
        stamp_on_append(settings, [t for t in wanted if t in existing and t in outputs])
    return missing
