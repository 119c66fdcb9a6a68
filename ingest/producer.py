"""Where parsed telemetry goes: Kafka (``TelemetryProducer``) or JSON lines (``JsonLinesSink``).

Both are ``Sink``s: ``send_event``, ``send_dlq``, ``flush``, ``close`` and ``counters``. Events go
to the target's topic for their kind keyed by tenant (by host for process events, DESIGN.md) with
the event time as the record timestamp (``record_timestamp``), DLQ records to the DLQ topic keyed
by source. The producer is idempotent with ``acks=all``; connection and security options
(SASL_SSL, ...) come in a ``KafkaTarget`` that the caller builds from its settings
(``streams.kafka_target``).

If Kafka cannot be reached, connecting is retried with exponential backoff and then
``KafkaUnavailable`` is raised with one clear sentence (the CLI prints it and exits non-zero).
Messages that Kafka finally refuses are counted and make ``flush`` raise ``DeliveryFailed``:
nothing is dropped silently. ``DEFAULT_CLIENT`` is the faster client in ``tests/bench``.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol

from ingest.dlq import DlqRecord, encode_dlq
from ingest.schema import Event, encode_event

__all__ = [
    "DEFAULT_CLIENT",
    "DeliveryFailed",
    "JsonLinesSink",
    "KafkaTarget",
    "KafkaUnavailable",
    "NullSink",
    "Sink",
    "SinkCounters",
    "TelemetryProducer",
    "event_key",
    "record_timestamp",
]

Client = Literal["kafka-python", "confluent"]
_LOG: Final = logging.getLogger("ingest.kafka")
_LOG.addHandler(logging.NullHandler())  # the caller configures logging; failures surface as exceptions
DEFAULT_CLIENT: Final[Client] = "confluent"
# Kafka 4 refuses a record stamped more than an hour after the broker's clock
# (log.message.timestamp.after.max.ms); a later event time is stamped at this much after now.
FUTURE_SLACK_MS: Final = 50 * 60_000
# A broker deletes a segment once its newest record timestamp is older than retention.ms (7 days
# by default), so telemetry replayed from further back may go before the job has read it.
STALE_AFTER_MS: Final = 7 * 24 * 3600_000


def record_timestamp(ts: int, now_ms: int) -> int:
    """The Kafka record timestamp for an event at ``ts``: the event time itself (the detection job
    reads its event time there, with no header to decode), kept within what a broker accepts.
    Past 1970 (0 would mean "now" to the client) and at most ``FUTURE_SLACK_MS`` ahead; the
    payload keeps the true ``ts``."""
    return min(max(ts, 1), now_ms + FUTURE_SLACK_MS)


class KafkaUnavailable(RuntimeError):
    """Kafka could not be reached after the configured retries."""


class DeliveryFailed(RuntimeError):
    """Kafka refused some messages; the message says how many and the first error."""


@dataclass
class SinkCounters:
    events: int = 0
    dlq: int = 0
    bytes: int = 0
    failed: int = 0
    # Events stamped more than STALE_AFTER_MS before they were sent (see there).
    stale: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None


class Sink(Protocol):
    counters: SinkCounters

    def send_event(self, event: Event) -> None: ...

    def send_dlq(self, record: DlqRecord) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def event_key(event: Event) -> str | None:
    """Partition key: the host for process events, the tenant for the others."""
    if event.__struct_config__.tag == "process":
        return event.host or event.tenant
    return event.tenant


class NullSink:
    """Counts and discards (``ssa ingest`` dry runs, parser benchmarks)."""

    def __init__(self) -> None:
        self.counters = SinkCounters()

    def send_event(self, event: Event) -> None:
        self.counters.events += 1

    def send_dlq(self, record: DlqRecord) -> None:
        self.counters.dlq += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLinesSink:
    """Events as JSON lines to ``path`` (``-`` for stdout); DLQ records to ``path + ".dlq.jsonl"``,
    created only when there is one (for stdout: to ``dlq_path`` if given, else stderr)."""

    def __init__(self, path: str | Path, dlq_path: str | Path | None = None) -> None:
        self.path = str(path)
        self.counters = SinkCounters()
        if self.path == "-":
            self._out: IO[bytes] = sys.stdout.buffer
            self.dlq_path = str(dlq_path) if dlq_path else None
        else:
            self._out = open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self.dlq_path = str(dlq_path) if dlq_path else self.path + ".dlq.jsonl"
        self._dlq: IO[bytes] | None = None

    def send_event(self, event: Event) -> None:
        data = encode_event(event)
        self._out.write(data + b"\n")
        self.counters.events += 1
        self.counters.bytes += len(data) + 1

    def send_dlq(self, record: DlqRecord) -> None:
        if self._dlq is None:
            self._dlq = open(self.dlq_path, "wb") if self.dlq_path else sys.stderr.buffer  # noqa: SIM115
        self._dlq.write(encode_dlq(record) + b"\n")
        self.counters.dlq += 1

    def flush(self) -> None:
        self._out.flush()
        if self._dlq is not None:
            self._dlq.flush()

    def close(self) -> None:
        self.flush()
        if self._out is not sys.stdout.buffer:
            self._out.close()
        if self._dlq is not None and self._dlq is not sys.stderr.buffer:
            self._dlq.close()


@dataclass(frozen=True)
class KafkaTarget:
    """Where and how to reach Kafka, built by the caller from its settings (ingest reads no
    settings itself): connection and security options in each client's own naming, the topic
    of each event kind, and the DLQ topic."""

    confluent: Mapping[str, Any]
    kafka_python: Mapping[str, Any]
    telemetry_topics: Mapping[str, str]
    dlq_topic: str
    describe: str = "Kafka"


def confluent_config(target: KafkaTarget) -> dict[str, Any]:
    """librdkafka options: the target's connection, plus an idempotent, batched producer."""
    return {
        **target.confluent,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500000,
        "socket.timeout.ms": 10000,
        "message.timeout.ms": 120000,
    }


def kafka_python_config(target: KafkaTarget) -> dict[str, Any]:
    return {
        **target.kafka_python,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
    }


class TelemetryProducer:
    """Kafka sink for canonical events and DLQ records (see the module docstring)."""

    def __init__(
        self,
        target: KafkaTarget,
        client: Client | None = None,
        *,
        connect_attempts: int = 4,
        backoff_s: float = 0.5,
        connect_timeout_s: float = 5.0,
        flush_timeout_s: float = 120.0,
    ) -> None:
        self.target = target
        self.client: Client = client or DEFAULT_CLIENT
        if self.client not in ("kafka-python", "confluent"):
            raise ValueError(f"unknown Kafka client {client!r}: use 'kafka-python' or 'confluent'")
        self.topics = target.telemetry_topics
        self.counters = SinkCounters()
        self.flush_timeout_s = flush_timeout_s
        self._producer: Any = None
        self._produce: Any = None  # confluent's bound Producer.produce
        self._unpolled = 0
        last = "no attempt made"
        for attempt in range(max(1, connect_attempts)):
            try:
                self._producer = self._connect(connect_timeout_s)
                break
            except KafkaUnavailable:
                raise
            except Exception as exc:  # client libraries raise many types; all mean "not reachable"
                last = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < connect_attempts:
                time.sleep(backoff_s * 2**attempt)
        if self._producer is None:
            raise KafkaUnavailable(
                f"{target.describe} is unreachable after {connect_attempts} attempts: {last}"
            )

    def _connect(self, timeout_s: float) -> Any:
        if self.client == "confluent":
            import confluent_kafka

            conf = confluent_config(self.target)
            conf["error_cb"] = self._on_client_error
            conf["on_delivery"] = self._on_delivery
            conf["logger"] = _LOG  # librdkafka's retries would otherwise print to stderr
            conf["delivery.report.only.error"] = True  # successes need no Python callback
            producer = confluent_kafka.Producer(conf)
            producer.list_topics(timeout=timeout_s)  # raises KafkaException when no broker answers
            self._produce = producer.produce
            return producer
        import kafka

        return kafka.KafkaProducer(
            **kafka_python_config(self.target), bootstrap_timeout_ms=int(timeout_s * 1000)
        )

    # --- callbacks -----------------------------------------------------------------------------
    def _on_client_error(self, err: Any) -> None:
        # librdkafka reports transient broker errors here and retries itself; only remember them.
        if self.counters.first_error is None and getattr(err, "fatal", lambda: False)():
            self.counters.first_error = str(err)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed(str(err))

    def _failed(self, error: str) -> None:
        self.counters.failed += 1
        if self.counters.first_error is None:
            self.counters.first_error = error

    # --- sending -------------------------------------------------------------------------------
    def _send(self, topic: str, key: str | None, value: bytes, timestamp_ms: int) -> None:
        """Produce one message; ``timestamp_ms`` 0 stamps it with the current time."""
        if self._produce is not None:  # confluent: takes the key as text and copies everything
            try:
                # All positional (topic, value, key, partition, callback, on_delivery, timestamp):
                # keywords are matched by name on every call, which costs more than the rest of
                # the call. Partition -1: chosen by the key; callback None: the configured
                # on_delivery. Same message as produce(topic, value, key, timestamp=timestamp_ms).
                self._produce(topic, value, key, -1, None, None, timestamp_ms)
            except BufferError:  # local queue full: let librdkafka drain it
                self._produce_when_room(topic, value, key, timestamp_ms)
            self._unpolled += 1
            if self._unpolled >= 1000:  # serve delivery reports (failures only) in batches
                self._producer.poll(0)
                self._unpolled = 0
        else:
            kbytes = key.encode() if key is not None else None
            future = self._producer.send(topic, value=value, key=kbytes, timestamp_ms=timestamp_ms or None)
            future.add_errback(lambda exc: self._failed(f"{type(exc).__name__}: {exc}"))
        counters = self.counters
        counters.by_topic[topic] += 1
        counters.bytes += len(value)

    def _produce_when_room(self, topic: str, value: bytes, key: str | None, timestamp_ms: int) -> None:
        producer = self._producer
        while True:
            producer.poll(0.05)
            try:
                producer.produce(topic, value, key, -1, None, None, timestamp_ms)
                return
            except BufferError:
                continue

    def send_event(self, event: Event) -> None:
        tag = event.__struct_config__.tag
        now_ms = int(time.time() * 1000)
        if event.ts < now_ms - STALE_AFTER_MS:
            self.counters.stale += 1
        stamp = record_timestamp(event.ts, now_ms)
        self._send(self.topics[tag], event_key(event), encode_event(event), stamp)  # type: ignore[index]
        self.counters.events += 1

    def send_events(self, events: list[Event]) -> None:
        """``send_event`` for each of ``events``, in order. For confluent, ``_send`` and
        ``event_key`` are inlined and the counters updated once: the per-event Python calls cost
        about as much as encoding and producing the event."""
        produce = self._produce
        if produce is None:  # kafka-python
            for event in events:
                self.send_event(event)
            return
        topics, nbytes, stale = self.topics, 0, 0
        now_ms = int(time.time() * 1000)
        fresh_after, latest = now_ms - STALE_AFTER_MS, now_ms + FUTURE_SLACK_MS
        for event in events:
            tag = event.__struct_config__.tag
            stamp = event.ts
            if not fresh_after <= stamp <= latest:  # record_timestamp, inlined for the common case
                stale += stamp < fresh_after
                stamp = record_timestamp(stamp, now_ms)
            topic = topics[tag]  # type: ignore[index]
            key = event.tenant if tag != "process" else event.host or event.tenant  # event_key
            value = encode_event(event)
            try:
                produce(topic, value, key, -1, None, None, stamp)  # positional: see _send
            except BufferError:
                self._produce_when_room(topic, value, key, stamp)
            nbytes += len(value)
        counters = self.counters
        counters.stale += stale
        counters.events += len(events)
        counters.bytes += nbytes
        for cls, n in Counter(map(type, events)).items():
            counters.by_topic[topics[cls.__struct_config__.tag]] += n  # type: ignore[attr-defined]
        self._unpolled += len(events)
        if self._unpolled >= 1000:  # serve delivery reports (failures only) once per batch
            self._producer.poll(0)
            self._unpolled = 0

    def send_dlq(self, record: DlqRecord) -> None:
        self._send(self.target.dlq_topic, record.source, encode_dlq(record), 0)
        self.counters.dlq += 1

    def with_topics(self, topics: Mapping[str, str]) -> TelemetryProducer:
        """This producer writing events to ``topics`` (kind -> topic) instead: the same client, so
        the same transaction, and the same counters. The parse stage's per-tenant outputs in secure
        mode; flush and close the original."""
        view = copy.copy(self)  # shallow: one client, one SinkCounters
        view.topics = topics
        return view

    def flush(self) -> None:
        if self.client == "confluent":
            left = self._producer.flush(self.flush_timeout_s)
            if left:
                self._failed(f"{left} messages still queued after {self.flush_timeout_s:.0f} s")
                self.counters.failed += left - 1
        else:
            try:
                self._producer.flush(timeout=self.flush_timeout_s)
            except Exception as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
        if self.counters.failed:
            raise DeliveryFailed(
                f"{self.counters.failed} messages were not delivered to {self.target.describe}: "
                f"{self.counters.first_error}"
            )

    def close(self) -> None:
        if self._producer is None:
            return
        try:
            self.flush()
        finally:
            if self.client == "kafka-python":
                self._producer.close(timeout=10)
            self._producer = None
            self._produce = None
