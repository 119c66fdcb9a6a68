"""How far Kafka consumers are behind their topics: committed offsets or a consumer's positions
against end offsets.

One place for what the indexer reports as the job's consumer lag, what it drains to at the end of
a bounded run, what the fault tests wait on (the job has checkpointed all its input) and what the
benchmark samples (offsets over time)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from infra.clients import kafka_config
from infra.settings import Settings

__all__ = ["committed_offsets", "end_offsets", "group_lag", "lag_per_topic", "records_behind"]

log = logging.getLogger(__name__)


def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The next offset to be written, per (topic, partition) of ``topics`` that exist."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    probe = KafkaConsumer(**kafka_config(settings), enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (probe.partitions_for_topic(t) or ())]
        return {(tp.topic, tp.partition): end for tp, end in probe.end_offsets(parts).items()}
    finally:
        probe.close()


def committed_offsets(settings: Settings, group_id: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets (empty when it has committed nothing yet)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_config(settings), request_timeout_ms=5000)
    try:
        done = admin.list_group_offsets({group_id: None}).get(group_id, {})
        return {(tp.topic, tp.partition): o.offset for tp, o in done.items() if o.offset >= 0}
    finally:
        admin.close()


def group_lag(
    settings: Settings, group_id: str, ends: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Records not yet committed by ``group_id``, per partition of ``ends`` (``end_offsets``)."""
    done = committed_offsets(settings, group_id)
    return {tp: max(0, end - done.get(tp, 0)) for tp, end in ends.items()}


def lag_per_topic(lags: dict[tuple[str, int], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (topic, _partition), lag in lags.items():
        out[topic] = out.get(topic, 0) + lag
    return out


def records_behind(consumer: Any) -> int | None:
    """Records between a live consumer's positions and its partitions' end offsets (None: unknown,
    e.g. no partitions assigned yet or Kafka unreachable)."""
    try:
        parts = list(consumer.assignment())
        if not parts:
            return None
        ends = consumer.end_offsets(parts, timeout_ms=5000)
        return sum(max(0, end - consumer.position(tp, timeout_ms=5000)) for tp, end in ends.items())
    except Exception as exc:  # unknown for now; the caller waits and asks again
        log.info("cannot compare positions with end offsets yet: %s", exc)
        return None
