"""The JVM side of the job, in Flink SQL: the Kafka source over the telemetry topics and the
one-second micro-batches per partition key that the Python detectors receive.

No JSON is parsed on the JVM: the partition key is the Kafka record key (tenant, or host for
process events) and the event time is the record timestamp, both as the ingest producer writes
them. The payload reaches Python untouched; a payload that does not decode there goes to the DLQ
with the reason.

Flow events have a source table of their own (``event_time_paths``): an exporter writes a flow
record when the flow ends or times out, minutes after newer records of other flows, so their
watermark allows ``flow_export_delay_ms``; process, audit and auth events keep the small
``out_of_orderness_ms``, and their alerts never wait for the flows' watermark.

Tenant topics (``Settings.tenant_topics``, on in secure mode): each path's table reads every
tenant's ``ssa.<tenant>.telemetry.<kind>`` of its kinds by ``topic-pattern``
(``tenant_topic_pattern``: the tenant segment is a tenant id, which has no dot, so tenant ``a``
never matches ``ab``'s or ``a.b``'s topics), finds new tenants' topics every
``TOPIC_DISCOVERY_INTERVAL``, and adds the record's topic (``topic STRING METADATA``); each batch
then carries the topics beside the payloads, one per payload, and the Python function takes the
tenant from the topic (``streams.detect_fn``). Off (the plain demo), none of this is in the SQL:
the shared topics, no metadata column, the batch rows as before, and the tenant is the payload's.

The event time used to travel in a ``ts`` header: reading it cost the source task 2.5 us per
record (the connector builds a map of every record's headers), more than half of that task's
time (over a 3.0 M-event backlog, 13.4 and 13.6 s of source CPU against 6.3 and 5.8 s without).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from infra.clients import kafka_config
from infra.secure import TENANT_ID_RE, tenant_prefix
from infra.settings import Settings

__all__ = [
    "FLOW_SOURCE_TABLE",
    "MAX_ALLOWANCE_MS",
    "SOURCE_TABLE",
    "EventTimePath",
    "batches_query",
    "event_time_paths",
    "kafka_properties",
    "late_query",
    "path_ddl",
    "source_ddl",
    "tenant_topic_pattern",
]

SOURCE_TABLE = "telemetry"
FLOW_SOURCE_TABLE = "telemetry_flow"
ALIGNMENT_GROUP = "ssa-telemetry"
# Package prefix of the Kafka client inside flink-sql-connector-kafka (its shading relocation).
SHADED_KAFKA = "org.apache.flink.kafka.shaded."
# How often a tenant-topics source looks for new topics (a tenant provisioned while the job runs).
TOPIC_DISCOVERY_INTERVAL = "30 s"


def tenant_topic_pattern(kinds: Iterable[str]) -> str:
    """The regular expression of every tenant's (and the provider's) telemetry topics of ``kinds``,
    ``ssa.<tenant>.telemetry.<kind>``, with the tenant as group 1. Java and Python read it alike;
    the connector matches it against the whole topic name (``Matcher.matches``), Python must use
    ``re.fullmatch``."""
    head, tail = tenant_prefix("\0").split("\0")
    kinds_re = "|".join(re.escape(kind) for kind in kinds)
    return f"{re.escape(head)}({TENANT_ID_RE}){re.escape(tail)}(?:{kinds_re})"


@dataclass(frozen=True)
class EventTimePath:
    """Telemetry kinds read by one source table, with one watermark and one keyed detection
    operator of their own (``streams.job.build``)."""

    table: str
    kinds: tuple[str, ...]
    allowance_ms: int
    allowance_setting: str  # the setting that sets ``allowance_ms``, named in late events' reason
    uid_suffix: str  # of the path's operator uids; "" keeps the uids the job had before the split
    tenant_topics: bool = False  # every tenant's topics by pattern, the topic in each batch

    @property
    def topic_pattern(self) -> str:
        return tenant_topic_pattern(self.kinds)

    def topics(self, settings: Settings) -> list[str]:
        return [settings.telemetry_topics[kind] for kind in self.kinds]

    @property
    def posture_key_suffix(self) -> str:
        """Keeps this path's posture rows apart from the other's when both are keyed by tenant."""
        return self.uid_suffix.replace("-", "#")

    @property
    def alignment_group(self) -> str:
        # One group per path: aligned together, every other partition would be paused while the
        # flows' watermark sits its whole allowance behind theirs.
        return ALIGNMENT_GROUP + self.uid_suffix


def event_time_paths(settings: Settings) -> list[EventTimePath]:
    """Host and control-plane events (small allowance), then flows (the exporters' delay)."""
    others = tuple(kind for kind in settings.telemetry_topics if kind != "flow")
    tenant_topics = settings.tenant_topics
    return [
        EventTimePath(
            SOURCE_TABLE, others, settings.out_of_orderness_ms, "out_of_orderness_ms", "", tenant_topics
        ),
        EventTimePath(
            FLOW_SOURCE_TABLE, ("flow",), settings.flow_export_delay_ms, "flow_export_delay_ms", "-flow",
            tenant_topics,
        ),
    ]  # fmt: skip


# The watermark's allowance is a DAY TO SECOND interval: ``INTERVAL 'n' SECOND`` holds 2 digits
# (99 s, less than a flow exporter's delay), and Flink's planner refuses wider seconds. Days
# have 2 digits by default.
MAX_ALLOWANCE_MS = 100 * 86_400_000 - 1


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _seconds(ms: int) -> str:
    """Flink SQL interval literals have no MILLISECOND unit: fractional seconds instead."""
    return f"{int(ms) / 1000:.3f}"


def _day_to_second(ms: int) -> str:
    seconds, millis = divmod(int(ms), 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"INTERVAL '{days} {hours:02}:{minutes:02}:{seconds:02}.{millis:03}' DAY TO SECOND(3)"


def kafka_properties(settings: Settings) -> dict[str, str]:
    """Connector ``properties.*`` for the client security settings (SASL_SSL, CA file)."""
    conf = kafka_config(settings, "confluent")
    props = {"properties.bootstrap.servers": settings.kafka_bootstrap}
    proto = conf["security.protocol"]
    if proto != "PLAINTEXT":
        props["properties.security.protocol"] = proto
    if proto.startswith("SASL"):
        mech = conf["sasl.mechanism"]
        # The SQL connector jar (infra/jars/flink) relocates the Kafka client under its own
        # package: JAAS looks the login module up by class name, so it must be the relocated one
        # ("No LoginModule found for org.apache.kafka...ScramLoginModule" otherwise).
        module = SHADED_KAFKA + (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if mech == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user = conf["sasl.username"].replace('"', '\\"')
        password = conf["sasl.password"].replace('"', '\\"')
        props["properties.sasl.mechanism"] = mech
        props["properties.sasl.jaas.config"] = f'{module} required username="{user}" password="{password}";'
    if "ssl.ca.location" in conf:
        props["properties.ssl.truststore.type"] = "PEM"
        props["properties.ssl.truststore.location"] = conf["ssl.ca.location"]
    return props


def source_ddl(
    settings: Settings,
    *,
    group_id: str,
    topics: list[str] | None = None,
    out_of_orderness_ms: int = 2000,
    bounded: bool = False,
    startup_mode: str = "group-offsets",
    table: str = SOURCE_TABLE,
    alignment_group: str = ALIGNMENT_GROUP,
    topic_pattern: str | None = None,
) -> str:
    """The Kafka source table: ``topics`` (default: the shared telemetry topics), or with
    ``topic_pattern`` every topic it matches, found again every ``TOPIC_DISCOVERY_INTERVAL``
    (unbounded only: a bounded source that kept discovering would never finish), and a ``topic``
    column."""
    _check_identifier(table)
    topic_list = ";".join(topics if topics is not None else list(settings.telemetry_topics.values()))
    subscription = {"topic": topic_list} if topic_pattern is None else {"topic-pattern": topic_pattern}
    if topic_pattern is not None and not bounded:
        subscription["scan.topic-partition-discovery.interval"] = TOPIC_DISCOVERY_INTERVAL
    options = {
        "connector": "kafka",
        **subscription,
        "properties.group.id": group_id,
        "properties.auto.offset.reset": "earliest",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": startup_mode,
        "key.format": "raw",
        "key.fields": "pkey",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        **kafka_properties(settings),
    }
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    else:
        options.update(_alignment(settings, alignment_group))
    with_clause = ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())
    topic_column = "\n  topic STRING METADATA FROM 'topic' VIRTUAL," if topic_pattern is not None else ""
    return f"""
CREATE TEMPORARY TABLE {table} (
  pkey STRING,
  payload BYTES,
  rowtime TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,{topic_column}
  WATERMARK FOR rowtime AS rowtime - {_day_to_second(out_of_orderness_ms)}
) WITH (
  {with_clause}
)"""


# At or behind the watermark of the rows' stream: late (NULL, before the first watermark: not).
_LATE = "rowtime <= CURRENT_WATERMARK(rowtime)"


def batches_query(source: str = SOURCE_TABLE, batch_ms: int = 1000, *, with_topics: bool = False) -> str:
    """Events per partition key per ``batch_ms`` tumbling window as an array of the raw Kafka
    values, emitted when the watermark passes the window end. The values stay bytes all the way
    to Python (no UTF-8 to UTF-16 and back on the JVM), where msgspec decodes them.

    A window drops the events that reach it after the watermark passed their window, and counts
    them nowhere; so late events (``late_query``) are taken out before it. A watermark downstream
    is never ahead of the one upstream, so what is left is never dropped.

    Rows are shaped ``(key, (key, payloads), window_time)`` so the JVM can key the stream by the
    first field and the Python function receives only the nested batch (``streams.job``).

    ``with_topics`` (tenant topics): the batch is ``(key, payloads, topics)``, the topic of each
    payload at the same index. Both arrays are aggregated over the same rows in the same order,
    NULL payloads included (ARRAY_AGG keeps NULLs unless told IGNORE NULLS)."""
    _check_identifier(source)
    topics = ", ARRAY_AGG(topic)" if with_topics else ""
    # With tenant topics the feeder's record key is scoped by the topic's tenant (``ssa.<tenant>.``):
    # a feeder chooses its keys, and unscoped, one could put its own (checked) events into another
    # tenant's key, where they would share that tenant's engine and its bounded state.
    key = (
        "CONCAT(SPLIT_INDEX(topic, '.', 1), '/', COALESCE(pkey, '-'))"
        if with_topics
        else "COALESCE(pkey, '-')"
    )
    return f"""
WITH on_time AS (SELECT * FROM {source} WHERE ({_LATE}) IS NOT TRUE)
SELECT {key} AS pkey, ROW({key}, ARRAY_AGG(payload){topics}) AS batch, window_time
FROM TABLE(TUMBLE(TABLE on_time, DESCRIPTOR(rowtime), INTERVAL '{_seconds(batch_ms)}' SECOND))
GROUP BY {key}, window_start, window_end, window_time"""  # noqa: S608 - identifier checked


def _alignment(settings: Settings, group: str) -> dict[str, str]:
    """Split-level watermark alignment (see Settings.watermark_max_drift_ms). The short update
    interval matters on a backlog: event time then advances ~10 s per wall second, so a split
    paused at one update must be resumed well before the drift is used up.

    Unbounded sources only. In a bounded one a split that reaches its stopping offset while an
    alignment pause for it is on its way fails the source: the connector pauses a partition its
    consumer no longer has ("No current assignment for partition", FLINK-39728, fixed after the
    5.0.0-2.2 connector we run). A bounded job restarted from a checkpoint never finishes
    (FLINK-31006), so that race hung a replay of RITA's capture. Without alignment a bounded
    replay's sparse partitions may read ahead of its dense ones, and windows wait in state
    meanwhile: more memory on a large replay, the same alerts."""
    return {
        "scan.watermark.alignment.group": group,
        "scan.watermark.alignment.max-drift": f"{int(settings.watermark_max_drift_ms)} ms",
        "scan.watermark.alignment.update-interval": "100 ms",
    }


def late_query(source: str = SOURCE_TABLE) -> str:
    """The events ``batches_query`` leaves out as late: the raw value and its time."""
    _check_identifier(source)
    return f"SELECT payload, rowtime FROM {source} WHERE {_LATE}"  # noqa: S608 - identifier checked


def path_ddl(settings: Settings, path: EventTimePath, *, group_id: str, bounded: bool = False) -> str:
    """The source table of one event-time path: its topics (or with tenant topics, its pattern),
    its allowance, its alignment group."""
    return source_ddl(
        settings,
        group_id=group_id,
        topics=path.topics(settings),
        topic_pattern=path.topic_pattern if path.tenant_topics else None,
        out_of_orderness_ms=path.allowance_ms,
        bounded=bounded,
        table=path.table,
        alignment_group=path.alignment_group,
    )


def _check_identifier(source: str) -> None:
    if not source.isidentifier():
        raise ValueError(f"source table name must be an identifier, got {source!r}")
