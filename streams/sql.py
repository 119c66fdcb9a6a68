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

The event time used to travel in a ``ts`` header: reading it cost the source task 2.5 us per
record (the connector builds a map of every record's headers), more than half of that task's
time (over a 3.0 M-event backlog, 13.4 and 13.6 s of source CPU against 6.3 and 5.8 s without).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.clients import kafka_config
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
]

SOURCE_TABLE = "telemetry"
FLOW_SOURCE_TABLE = "telemetry_flow"
ALIGNMENT_GROUP = "ssa-telemetry"


@dataclass(frozen=True)
class EventTimePath:
    """Telemetry kinds read by one source table, with one watermark and one keyed detection
    operator of their own (``streams.job.build``)."""

    table: str
    kinds: tuple[str, ...]
    allowance_ms: int
    allowance_setting: str  # the setting that sets ``allowance_ms``, named in late events' reason
    uid_suffix: str  # of the path's operator uids; "" keeps the uids the job had before the split

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
    return [
        EventTimePath(SOURCE_TABLE, others, settings.out_of_orderness_ms, "out_of_orderness_ms", ""),
        EventTimePath(
            FLOW_SOURCE_TABLE, ("flow",), settings.flow_export_delay_ms, "flow_export_delay_ms", "-flow"
        ),
    ]


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
        module = (
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
) -> str:
    _check_identifier(table)
    topic_list = ";".join(topics if topics is not None else list(settings.telemetry_topics.values()))
    options = {
        "connector": "kafka",
        "topic": topic_list,
        "properties.group.id": group_id,
        "properties.auto.offset.reset": "earliest",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": startup_mode,
        "key.format": "raw",
        "key.fields": "pkey",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        # Split-level watermark alignment (see Settings.watermark_max_drift_ms). The short update
        # interval matters on a backlog: event time then advances ~10 s per wall second, so a
        # split paused at one update must be resumed well before the drift is used up.
        "scan.watermark.alignment.group": alignment_group,
        "scan.watermark.alignment.max-drift": f"{int(settings.watermark_max_drift_ms)} ms",
        "scan.watermark.alignment.update-interval": "100 ms",
        **kafka_properties(settings),
    }
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    with_clause = ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())
    return f"""
CREATE TEMPORARY TABLE {table} (
  pkey STRING,
  payload BYTES,
  rowtime TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  WATERMARK FOR rowtime AS rowtime - {_day_to_second(out_of_orderness_ms)}
) WITH (
  {with_clause}
)"""


# At or behind the watermark of the rows' stream: late (NULL, before the first watermark: not).
_LATE = "rowtime <= CURRENT_WATERMARK(rowtime)"


def batches_query(source: str = SOURCE_TABLE, batch_ms: int = 1000) -> str:
    """Events per partition key per ``batch_ms`` tumbling window as an array of the raw Kafka
    values, emitted when the watermark passes the window end. The values stay bytes all the way
    to Python (no UTF-8 to UTF-16 and back on the JVM), where msgspec decodes them.

    A window drops the events that reach it after the watermark passed their window, and counts
    them nowhere; so late events (``late_query``) are taken out before it. A watermark downstream
    is never ahead of the one upstream, so what is left is never dropped.

    Rows are shaped ``(key, (key, payloads), window_time)`` so the JVM can key the stream by the
    first field and the Python function receives only the nested batch (``streams.job``)."""
    _check_identifier(source)
    return f"""
WITH on_time AS (SELECT * FROM {source} WHERE ({_LATE}) IS NOT TRUE)
SELECT COALESCE(pkey, '-') AS pkey, ROW(COALESCE(pkey, '-'), ARRAY_AGG(payload)) AS batch, window_time
FROM TABLE(TUMBLE(TABLE on_time, DESCRIPTOR(rowtime), INTERVAL '{_seconds(batch_ms)}' SECOND))
GROUP BY COALESCE(pkey, '-'), window_start, window_end, window_time"""  # noqa: S608 - identifier checked


def late_query(source: str = SOURCE_TABLE) -> str:
    """The events ``batches_query`` leaves out as late: the raw value and its time."""
    _check_identifier(source)
    return f"SELECT payload, rowtime FROM {source} WHERE {_LATE}"  # noqa: S608 - identifier checked


def path_ddl(settings: Settings, path: EventTimePath, *, group_id: str, bounded: bool = False) -> str:
    """The source table of one event-time path: its topics, its allowance, its alignment group."""
    return source_ddl(
        settings,
        group_id=group_id,
        topics=path.topics(settings),
        out_of_orderness_ms=path.allowance_ms,
        bounded=bounded,
        table=path.table,
        alignment_group=path.alignment_group,
    )


def _check_identifier(source: str) -> None:
    if not source.isidentifier():
        raise ValueError(f"source table name must be an identifier, got {source!r}")
