"""The ingest producer's ``KafkaTarget`` built from settings (ingest itself reads no settings)."""

from __future__ import annotations

from infra.clients import kafka_config
from infra.settings import Settings
from ingest.producer import Client, KafkaTarget, TelemetryProducer

__all__ = ["kafka_target", "telemetry_producer"]


def kafka_target(settings: Settings) -> KafkaTarget:
    return KafkaTarget(
        confluent=kafka_config(settings, "confluent"),
        kafka_python=kafka_config(settings),
        telemetry_topics=settings.telemetry_topics,
        dlq_topic=settings.topic_dlq,
        describe=f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol})",
    )


def telemetry_producer(settings: Settings, client: Client | None = None) -> TelemetryProducer:
    return TelemetryProducer(kafka_target(settings), client)
