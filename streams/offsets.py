"""How far Kafka consumers are behind their topics: committed offsets or a consumer's positions
against end offsets.

One place for what the indexer reports as the job's consumer lag, what it drains to at the end of
a bounded run, what the fault tests wait on (the job has checkpointed all its input) and what the
benchmark samples (offsets over time)."""

from __future__ import annotations

import logging
import time
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


MARKER_CHECK_MAX = 64  # offset gaps up to this are read to tell records from transaction markers


def group_lag(
    settings: Settings, group_id: str, ends: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Records not yet committed by ``group_id``, per partition of ``ends`` (``end_offsets``).

    A transactional producer (the parse stage) ends each transaction with a commit marker that
    takes an offset but is no record: a consumer that read everything commits the offset after
    the last record, one short of the end. Small gaps are therefore read (read_committed) and
    count 0 when they hold no record; larger ones count as their offset difference."""
    done = committed_offsets(settings, group_id)
    lag = {tp: max(0, end - done.get(tp, 0)) for tp, end in ends.items()}
    small = {tp: done.get(tp, 0) for tp, n in lag.items() if 0 < n <= MARKER_CHECK_MAX}
    if small:
        lag.update(_records_between(settings, small, ends))
    return lag


def _records_between(
    settings: Settings, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Committed records from ``starts`` up to ``ends`` per partition; partitions whose read did not
    reach the end within a few seconds keep their offset difference."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(
        **kafka_config(settings), enable_auto_commit=False, group_id=None,
        isolation_level="read_committed", request_timeout_ms=10_000,
    )  # fmt: skip
    counts = dict.fromkeys(starts, 0)
    try:
        parts = {TopicPartition(*tp): tp for tp in starts}
        consumer.assign(list(parts))
        for part, tp in parts.items():
            consumer.seek(part, starts[tp])
        pending = set(parts)
        deadline = time.monotonic() + 5
        while pending and time.monotonic() < deadline:
            for part, batch in consumer.poll(timeout_ms=500).items():
                counts[parts[part]] += sum(1 for r in batch if r.offset < ends[parts[part]])
            pending = {p for p in pending if consumer.position(p) < ends[parts[p]]}
        for part in pending:  # unread in time: the offsets say how many at most
            counts[parts[part]] = ends[parts[part]] - starts[parts[part]]
        return counts
    finally:
        consumer.close()


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
