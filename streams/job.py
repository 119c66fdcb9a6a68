"""The detection job: ``build(env, t_env, source, sinks)`` wires the topology; only ``main``-level
code (``streams.runner``) knows Kafka addresses, from settings.

  Kafka telemetry topics --(SQL: key, event-time header, 1 s micro-batches per key)-->
  keyed Python detection (engine + posture state in Flink keyed state) -->
  alerts -> ssa.alerts, posture metrics -> ssa.metrics, in-job failures -> ssa.dlq
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.detect_fn import DetectionJobConfig, make_keyed_function
from streams.sql import batches_query

__all__ = ["JobSinks", "build", "kafka_sink"]


@dataclass(frozen=True)
class JobSinks:
    """Where each output goes: a DataStream sink per output (Kafka in production and tests)."""

    alerts: Any
    metrics: Any
    dlq: Any


def build(env: Any, t_env: Any, source_table: str, sinks: JobSinks, config: DetectionJobConfig) -> None:
    """Add the detection topology reading ``source_table`` (columns pkey, payload, rowtime)."""
    from pyflink.common import Types

    # One aggregation phase: a local pre-aggregate cannot shrink an array of every payload, it
    # only copies them once more before the shuffle.
    t_env.get_config().set("table.optimizer.agg-phase-strategy", "ONE_PHASE")
    batches = t_env.sql_query(batches_query(source_table, config.tick_ms))
    stream = t_env.to_data_stream(batches)
    function, metrics_tag, dlq_tag = make_keyed_function(config)
    detected = (
        stream.key_by(lambda row: row[0], key_type=Types.STRING())
        .process(function, output_type=Types.STRING())
        .name("detect")
        .uid("ssa-detect")
    )
    detected.sink_to(sinks.alerts).name("alerts").uid("ssa-alerts-sink")
    detected.get_side_output(metrics_tag).sink_to(sinks.metrics).name("metrics").uid("ssa-metrics-sink")
    detected.get_side_output(dlq_tag).sink_to(sinks.dlq).name("dlq").uid("ssa-dlq-sink")
    del env


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
