"""The detection job: ``build(env, t_env, paths, sinks, config)`` wires the topology; only
``main``-level code (``streams.runner``) knows Kafka addresses, from settings.

  per event-time path (``streams.sql.event_time_paths``: process/audit/auth, then flow):
    Kafka topics of the path --(SQL: key, event time, its own watermark, 1 s micro-batches per key)-->
    keyed Python detection (engine + posture state in Flink keyed state)
    late events (behind the path's watermark, which the windows would drop)
  all paths: alerts -> ssa.alerts, posture metrics -> ssa.metrics, failures and late events -> ssa.dlq
  awareness (``streams.awareness_fn``): alerts and metrics, keyed by tenant -> incidents
    -> ssa.incidents, threat levels per tenant and (one key) for the cloud -> ssa.threat,
    early warnings -> ssa.warnings

Each path has its own watermark, so flow records, which exporters write minutes after newer
ones, never hold back the alerts of process, audit and auth events. No detector reads kinds of
two paths (``DetectionEngine`` refuses one whose kinds have different allowances).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streams.awareness_fn import (
    CLOUD_KEY,
    AlertViews,
    AwarenessConfig,
    make_awareness_function,
    make_cloud_function,
)
from streams.detect_fn import DetectionJobConfig, make_keyed_function, make_late_function
from streams.sql import EventTimePath, batches_query, late_query

__all__ = ["JobSinks", "build", "kafka_sink"]


@dataclass(frozen=True)
class JobSinks:
    """Where each output goes: a DataStream sink per output (Kafka in production and tests)."""

    alerts: Any
    metrics: Any
    dlq: Any
    # The awareness stage's outputs; without them the job runs the detectors only.
    incidents: Any = None
    threat: Any = None
    warnings: Any = None


def build(
    env: Any, t_env: Any, paths: Sequence[EventTimePath], sinks: JobSinks, config: DetectionJobConfig
) -> None:
    """Add the detection topology: one detection path per source table (columns pkey, payload,
    rowtime, and topic for a path with tenant topics) of ``paths``, their outputs merged into the
    three sinks."""
    # One aggregation phase: a local pre-aggregate cannot shrink an array of every payload, it
    # only copies them once more before the shuffle.
    t_env.get_config().set("table.optimizer.agg-phase-strategy", "ONE_PHASE")
    alerts: list[Any] = []
    metrics: list[Any] = []
    dlq: list[Any] = []
    for path in paths:
        detected, metrics_out, dlq_out, late = _detection_path(t_env, path, config)
        alerts.append(detected)
        metrics.append(metrics_out)
        dlq.extend((dlq_out, late))
    all_alerts, all_metrics = _union(alerts), _union(metrics)
    all_alerts.sink_to(sinks.alerts).name("alerts").uid("ssa-alerts-sink")
    all_metrics.sink_to(sinks.metrics).name("metrics").uid("ssa-metrics-sink")
    _union(dlq).sink_to(sinks.dlq).name("dlq").uid("ssa-dlq-sink")
    if sinks.incidents is not None:
        _awareness(all_alerts, all_metrics, sinks, config)
    del env


def _awareness(alerts: Any, metrics: Any, sinks: JobSinks, config: DetectionJobConfig) -> None:
    """Incidents, threat levels and warnings from the detectors' outputs (few records: alerts and
    one posture record per tenant, kind and minute), keyed by tenant in Python."""
    from pyflink.common import Types

    aware_config = AwarenessConfig(config.tenants_file, config.detector_config_file, config.snooze_file)
    row = Types.TUPLE([Types.STRING(), Types.STRING(), Types.STRING()])
    inputs = (
        alerts.flat_map(AlertViews(aware_config, True), output_type=row)
        .name("alert-views")
        .union(metrics.flat_map(AlertViews(aware_config, False), output_type=row).name("tenant-signals"))
    )
    function, threat_tag, warnings_tag = make_awareness_function(aware_config)
    incidents = (
        inputs.key_by(lambda r: r[0], key_type=Types.STRING())
        .process(function, output_type=Types.STRING())
        .name("awareness")
        .uid("ssa-awareness")
    )
    tenant_threat = incidents.get_side_output(threat_tag)
    cloud_threat = (
        tenant_threat.key_by(lambda _: CLOUD_KEY, key_type=Types.STRING())
        .process(make_cloud_function(aware_config), output_type=Types.STRING())
        .name("cloud-threat")
        .uid("ssa-cloud-threat")
    )
    incidents.sink_to(sinks.incidents).name("incidents").uid("ssa-incidents-sink")
    tenant_threat.union(cloud_threat).sink_to(sinks.threat).name("threat").uid("ssa-threat-sink")
    incidents.get_side_output(warnings_tag).sink_to(sinks.warnings).name("warnings").uid("ssa-warnings-sink")


def _detection_path(t_env: Any, path: EventTimePath, config: DetectionJobConfig) -> tuple[Any, Any, Any, Any]:
    """Batches, keyed detection and late events of one path: (alerts, metrics, DLQ, late DLQ)."""
    from pyflink.common import Types

    shared = _shared_source(t_env, path.table, with_topic=path.tenant_topics)
    batches = t_env.sql_query(batches_query(shared, config.tick_ms, with_topics=path.tenant_topics))
    batch_fields = [Types.STRING(), Types.OBJECT_ARRAY(Types.PRIMITIVE_ARRAY(Types.BYTE()))]
    if path.tenant_topics:  # (key, payloads, topics): the tenant comes from each payload's topic
        batch_fields.append(Types.OBJECT_ARRAY(Types.STRING()))
    stream = t_env.to_append_stream(
        batches, Types.ROW([Types.STRING(), Types.ROW(batch_fields), Types.INSTANT()])
    )
    path_config = dataclasses.replace(
        config,
        posture_key_suffix=path.posture_key_suffix,
        tenant_topic_regex=path.topic_pattern if path.tenant_topics else "",
    )
    function, metrics_tag, dlq_tag = make_keyed_function(path_config)
    suffix = path.uid_suffix
    detected = (
        _keyed_by_first_field(stream)
        .process(function, output_type=Types.STRING())
        .name("detect" + suffix)
        .uid("ssa-detect" + suffix)
    )
    # Late events reach the DLQ by a way of their own: joined to the batches, their watermark
    # could run ahead of windows not yet emitted and close them early.
    late = t_env.to_append_stream(
        t_env.sql_query(late_query(shared)), Types.ROW([Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.INSTANT()])
    )
    late_records = (
        late.process(
            make_late_function(path.allowance_ms, path.allowance_setting), output_type=Types.STRING()
        )
        .name("late" + suffix)
        .uid("ssa-late" + suffix)
    )
    return detected, detected.get_side_output(metrics_tag), detected.get_side_output(dlq_tag), late_records


def _union(streams: list[Any]) -> Any:
    first, *rest = streams
    return first.union(*rest) if rest else first


def _shared_source(t_env: Any, source_table: str, *, with_topic: bool = False) -> str:
    """A view of ``source_table`` that the batches and the late events both read: through a
    DataStream, so the Kafka source is one operator, read once (two queries on the table itself
    are planned apart, each with a source of its own). Its watermarks are the source's."""
    from pyflink.table import DataTypes, Schema

    view = f"{source_table}_shared"
    rows = t_env.to_data_stream(t_env.from_path(source_table))
    builder = (
        Schema.new_builder()
        .column("pkey", DataTypes.STRING())
        .column("payload", DataTypes.BYTES())
        .column("rowtime", DataTypes.TIMESTAMP_LTZ(3))
    )
    if with_topic:
        builder = builder.column("topic", DataTypes.STRING())
    schema = builder.watermark("rowtime", "SOURCE_WATERMARK()").build()
    t_env.create_temporary_view(view, rows, schema)
    return view


def _keyed_by_first_field(stream: Any) -> Any:
    """Key rows ``(key, value, ...)`` by ``key`` on the JVM; the keyed Python function gets ``value``.

    ``DataStream.key_by`` takes only a Python key selector, which runs as an extra Python operator
    that converts every batch (all its payloads) to Python objects and back just to read the key.
    PyFlink's own ``key_by`` ends in exactly this shape (rows of key and value, keyed by the JVM's
    ``KeyByKeySelector``), so the SQL emits that shape and we key it directly. PyFlink internals,
    pinned by the PyFlink version in pyproject.toml; the end-to-end test runs through this path.
    """
    from pyflink.common import Types, typeinfo
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway

    j_stream = stream._j_data_stream
    value_type = typeinfo._from_java_type(j_stream.getTransformation().getOutputType()).get_field_types()[1]
    j_keyed = j_stream.keyBy(
        get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, value_type, stream)


def kafka_sink(bootstrap: str, topic: str, properties: dict[str, str]) -> Any:
    """At-least-once Kafka sink (flushed on checkpoints); duplicates after a restore carry the
    same deterministic ids and are absorbed downstream (Elasticsearch ``_id``)."""
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    builder = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    )
    for key, value in properties.items():
        builder = builder.set_property(key.removeprefix("properties."), value)
    return builder.build()
