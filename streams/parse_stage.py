"""The parse stage: raw records from the ``ssa.raw.<format>`` topics -> canonical events.

Feeders write raw input records to the raw topics (the contract is ``ingest.raw``); this stage
reads them all (one regular-expression subscription, so a new raw topic is picked up within
``topic.metadata.refresh.interval.ms``), parses each with the parsers of ``ssa ingest`` (built by
``ingest.pipeline.open_parser`` with the same output, ``CountingOutput``: bounds, DLQ reasons,
the ahead-of-clock check, records in = events + DLQ + skips) and produces the events to the
telemetry topics and the rejects to ``ssa.dlq`` through the same ``TelemetryProducer`` as ``ssa
ingest`` (key, record timestamp and partitioning as there). ``ssa parse`` runs it.

**A consumer group, not a Flink job.** The parsers are plain Python, record by record, with no
keyed state worth checkpointing but their small per-source state (a Zeek header, auditd lines
waiting for their event's EOE); a Flink job would add a JVM-to-Python hop per record (the job
already pays it for detection) and a checkpoint for nothing it needs. A Kafka consumer group
scales by partitions: start more ``ssa parse`` processes, up to the raw topics' partition count,
and Kafka shares the partitions among them; the unit of restart is the record, and its output
(events with deterministic ids) is idempotent downstream.

**Offsets and restarts.** Offsets are committed only after ``TelemetryProducer.flush`` returned
(every produced record acknowledged by ``acks=all``), so nothing read is lost: a kill -9 re-reads
from the last commit. A record whose parse is not finished (auditd holds an event's lines until its
EOE; syslog holds an sshd "Invalid user" notice until its "Failed" line, to fold the two) must be
re-read after a restart, and so must every record of its partition read after it: the stage
commits a partition only up to a point where no parser of that partition held anything (checked
after each batch), so a replay starts with empty parsers at a record boundary and reproduces the
same events. Records between that point and the crash are parsed again into the same events with
the same ids (``event_id`` hashes the parser's source and the raw bytes only): duplicates, never
different events. Kafka transactions (``send_offsets_to_transaction``, which confluent-kafka 2.16
supports) would not remove them: the offset a transaction may commit is the same quiescent point,
so the records after it would be produced again unless the parsers' held lines were stored in the
transaction too. How duplicates end: the detection job does not de-duplicate event ids (a
duplicate counts twice in its window's counts); alert ids are the detector, entity and window
(``make_alert_id``), so an alert raised again is the same document, written with op ``create`` by
the indexer (409 ignored); posture metrics of a replayed minute are rewritten under the same
``_id``. A duplicate can only add to a count in the windows of the replayed span.

A held parse is finished (``Parser.close``, which leaves the parser usable) once its source has
been silent for ``IDLE_FLUSH_S[format]``, or has held something for ``MAX_HOLD_S`` (60 s) of
continuous input (auditd keeps a kernel record that has no EOE, such as a lone ``AVC`` or
``ANOM_ABEND``, until 64 newer events are open, so a busy host is seldom without one), so its
partition's commits are not held back for ever; a forced finish can cut an event whose lines are
being written at that moment (one event, once a minute at most): auditd 15 s (the kernel writes an event's records together at syscall exit, but
shippers poll: Filebeat's log input waits up to ``max_backoff`` 10 s after EOF before reading a file
again, rsyslog imfile's polling mode every ``PollingInterval`` 10 s); syslog 120 s (sshd_config(5)
``LoginGraceTime``, default 120 s: the "Failed" line of a connection comes within it). Column
formats keep their header (``#fields``, a CSV or flow-log header line) per source in memory; it is
not committed with the offsets, so a stage restarted after the header line was committed reads
that source's rows without it (DLQ), until the file's next header. Known gap: the header lines
should travel with the commit (offset metadata, or a compacted state topic). Zeek JSON logs and
VPC flow logs in the default format have no header and are not affected.

Parser instances are per (topic, partition, source, tenant): at most ``max_parsers`` (4,096; the
least recently used is closed and dropped), dropped for revoked partitions. A record's DLQ record
names ``<source> via <topic>/<partition>`` as its ``file`` and the record's Kafka offset as its
``offset`` (``line``: the line within the record); CloudTrail documents and NetFlow datagrams keep
the parser's own offsets inside the record. A record the stage cannot read (its topic names no
format, a bad header: ``ingest.raw.read_headers``) goes to the DLQ with source ``parse``.

**Metrics.** Per format and minute (wall clock: these are processing rates), a record on
``ssa.metrics``: ``kind: parse``, ``tenant: "-"``, ``key: <format>@<instance>`` (one document per
stage process: the sum over keys is the format's total), ``source`` (the format), ``topic``,
``records`` (raw records read), ``bytes``, ``events``, ``dlq``, ``skipped``, ``records_per_s``,
``events_per_s``, and ``consumer_lag`` (records of the format's topic not yet read by this
process, at the minute's end), written at the minute's end and at stop.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from infra.clients import kafka_config
from infra.settings import Settings
from ingest.dlq import make_dlq
from ingest.follow import IDLE_FLUSH_S, MAX_HOLD_S
from ingest.parsers import FORMAT_NAMES, Parser
from ingest.parsers.netflow import NetflowParser
from ingest.pipeline import MAX_AHEAD_MS, CountingOutput, open_parser
from ingest.producer import Sink
from ingest.raw import RawHeaders, RawRejected, format_of_topic, raw_topic_pattern, read_headers
from ingest.tenants import RegistryWatcher, TenantRegistry

__all__ = [
    "IDLE_FLUSH_S",
    "ParseStage",
    "ParseStats",
    "RawMessage",
    "raw_topics",
    "run_parse_stage",
]

log = logging.getLogger(__name__)

MAX_PARSERS: Final = 4096
_DATAGRAM_MAX: Final = 65_535  # a UDP payload cannot be larger
_STREAMED: Final = frozenset({"cloudaudit"})  # a record may be a whole (pretty-printed) document


class RawMessage(Protocol):
    """What the stage reads of a Kafka record (confluent-kafka's ``Message`` has these)."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> list[tuple[str, bytes]] | None: ...


TopicPartition = tuple[str, int]
SlotKey = tuple[str, int, str, str | None]  # topic, partition, source, tenant


@dataclass
class _Slot:
    parser: Parser
    fmt: str
    tp: TopicPartition
    source: str
    last_seen: float = 0.0
    busy: bool = False
    held_since: float = 0.0


@dataclass
class _Partition:
    next: int = -1  # offset after the last record fed
    safe: int = -1  # offset a commit may name: no parser of the partition held anything before it
    committed: int = -1
    busy: set[SlotKey] = field(default_factory=set)


@dataclass
class ParseStats:
    records: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # bad raw records (DLQ, source "parse")
    commits: int = 0
    idle_flushes: int = 0


class ParseStage:
    """The Kafka-free core: feed it batches of raw messages (``process``), ask it what may be
    committed (``take_commits``) after the sink was flushed, finish idle sources (``flush_idle``)
    and collect its metrics records (``metrics``)."""

    def __init__(
        self,
        sink: Sink,
        raw_prefix: str = "ssa.raw.",
        *,
        registry: TenantRegistry | RegistryWatcher | None = None,
        timezone: str | None = None,
        instance: str | None = None,
        max_parsers: int = MAX_PARSERS,
        idle_flush_s: Mapping[str, float] = IDLE_FLUSH_S,
        max_hold_s: float = MAX_HOLD_S,
        max_ahead_ms: int = MAX_AHEAD_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.prefix = raw_prefix
        self.watcher = registry if isinstance(registry, RegistryWatcher) else None
        self.registry = registry.current() if isinstance(registry, RegistryWatcher) else registry
        self.timezone = timezone
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.max_parsers = max_parsers
        self.idle_flush_s = dict(idle_flush_s)
        self.max_hold_s = max_hold_s
        self.clock = clock
        self.stats = ParseStats()
        self.outputs = {fmt: CountingOutput(sink, None, 3600.0, max_ahead_ms) for fmt in FORMAT_NAMES}
        self.slots: OrderedDict[SlotKey, _Slot] = OrderedDict()
        self.parts: dict[TopicPartition, _Partition] = {}
        self._topic_formats: dict[str, str | RawRejected] = {}
        self._minute = -1
        self._base: dict[str, tuple[int, int, int, int, int, int]] = {}
        self._minute_started = 0.0

    # --- input ---------------------------------------------------------------------------------
    def process(self, messages: Iterable[RawMessage]) -> None:
        """Parse one batch of raw messages (in partition order), then note which partitions may be
        committed up to the batch's end."""
        if self.watcher is not None:
            current = self.watcher.current()
            if current is not self.registry:
                self._set_registry(current)
        groups: dict[SlotKey, list[tuple[int, bytes]]] = {}
        heads: dict[SlotKey, RawHeaders] = {}
        touched: set[TopicPartition] = set()
        stats = self.stats
        for msg in messages:
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            value = msg.value() or b""
            tp = (topic, partition)
            part = self.parts.get(tp)
            if part is None:
                part = self.parts[tp] = _Partition()
            part.next = offset + 1
            touched.add(tp)
            fmt = self._topic_formats.get(topic)
            if fmt is None:
                fmt = self._topic_formats[topic] = self._format_of(topic)
            try:
                if isinstance(fmt, RawRejected):
                    raise fmt
                head = read_headers(msg.headers(), fmt, msg.key(), topic)
            except RawRejected as exc:
                self._reject(str(exc), value, tp, offset, fmt if isinstance(fmt, str) else "unknown")
                continue
            stats.records[fmt] += 1
            stats.bytes[fmt] += len(value)
            key = (topic, partition, head.source, head.tenant)
            batch = groups.get(key)
            if batch is None:
                batch = groups[key] = []
                heads[key] = head
            batch.append((offset, value))
        now = self.clock()
        for key, batch in groups.items():
            slot = self._slot(key, heads[key])
            slot.last_seen = now
            self._feed(slot, batch)
            self._note_busy(key, slot)
        for tp in touched:
            part = self.parts[tp]
            if not part.busy:
                part.safe = part.next

    def _format_of(self, topic: str) -> str | RawRejected:
        try:
            return format_of_topic(self.prefix, topic)
        except RawRejected as exc:
            return exc

    def _reject(self, reason: str, value: bytes, tp: TopicPartition, offset: int, fmt: str) -> None:
        self.stats.rejected[fmt] += 1
        self.stats.records[fmt] += 1
        self.stats.bytes[fmt] += len(value)
        self.sink.send_dlq(make_dlq("parse", reason, value, offset=offset, file=f"{tp[0]}/{tp[1]}"))

    def _slot(self, key: SlotKey, head: RawHeaders) -> _Slot:
        slot = self.slots.get(key)
        if slot is not None:
            self.slots.move_to_end(key)
            return slot
        while len(self.slots) >= self.max_parsers:
            old_key, old = self.slots.popitem(last=False)
            old.parser.close()  # its held parse is finished, not lost
            self._note_busy(old_key, old, gone=True)
        topic, partition, source, tenant = key
        parser = open_parser(
            head.format,
            self.outputs[head.format],
            tenant=tenant,
            registry=self.registry,
            file=f"{source} via {topic}/{partition}",
            timezone=self.timezone,
        )
        slot = self.slots[key] = _Slot(parser, head.format, (topic, partition), source)
        return slot

    def _feed(self, slot: _Slot, batch: list[tuple[int, bytes]]) -> None:
        parser = slot.parser
        try:
            if isinstance(parser, NetflowParser):
                for offset, value in batch:
                    if len(value) > _DATAGRAM_MAX:
                        parser.reject(f"record of {len(value)} bytes is no datagram", value, offset=offset)
                    else:
                        parser.feed_packet(value, slot.source, offset)
            elif slot.fmt in _STREAMED:
                self._feed_documents(parser, batch)
            else:
                cap = parser.ctx.max_line_bytes or parser.max_line_bytes
                parser.feed_batch(_line_items(batch), cap)
        except Exception as exc:  # parsers do not raise; if one does, its records are named
            reason = f"unexpected {type(exc).__name__} in the {slot.fmt} parser"
            log.exception("parse stage: %s", reason)
            for offset, value in batch:
                parser.reject(reason, value, offset=offset)

    @staticmethod
    def _feed_documents(parser: Parser, batch: list[tuple[int, bytes]]) -> None:
        for offset, value in batch:
            body = value.rstrip(b"\r\n")
            if b"\n" in body:  # a pretty-printed document: the parser's own streaming reader
                parser.feed_stream(io.BytesIO(body))
            elif len(body) > parser.max_line_bytes:
                parser.reject_long(body[: 64 * 1024], 1, offset, len(body), parser.max_line_bytes)
            else:
                parser.feed(body, 1, offset)

    def _note_busy(self, key: SlotKey, slot: _Slot, gone: bool = False) -> None:
        busy = not gone and bool(getattr(slot.parser, "pending", None))
        if busy and not slot.busy:
            slot.held_since = slot.last_seen
        slot.busy = busy
        part = self.parts.get(slot.tp)
        if part is None:
            return
        if busy:
            part.busy.add(key)
        else:
            part.busy.discard(key)

    def _set_registry(self, registry: TenantRegistry) -> None:
        """A reloaded tenant registry: every parser resolves owners afresh (its caches emptied)."""
        self.registry = registry
        for slot in self.slots.values():
            parser = slot.parser
            parser.registry = parser.ctx.registry = registry
            parser._owners.clear()
            parser._addresses.clear()
            parser._flow_bases.clear()

    # --- held parses, commits ------------------------------------------------------------------
    def flush_idle(self, now: float | None = None, everything: bool = False) -> int:
        """Finish the held parses of sources silent for their format's ``IDLE_FLUSH_S`` (all of
        them with ``everything``); the number of parsers flushed."""
        now = self.clock() if now is None else now
        flushed = 0
        for key, slot in list(self.slots.items()):
            if not slot.busy:
                continue
            wait = self.idle_flush_s.get(slot.fmt, 0.0)
            if everything or now - slot.last_seen >= wait or now - slot.held_since >= self.max_hold_s:
                slot.parser.close()
                self._note_busy(key, slot)
                flushed += 1
        if flushed:
            self.stats.idle_flushes += flushed
            for part in self.parts.values():
                if not part.busy:
                    part.safe = part.next
        return flushed

    def take_commits(self) -> dict[TopicPartition, int]:
        """Offsets to commit now (only those that moved). Call after the sink's ``flush``
        returned; then ``committed`` once Kafka took them."""
        return {tp: p.safe for tp, p in self.parts.items() if p.safe > p.committed and p.safe >= 0}

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            part = self.parts.get(tp)
            if part is not None:
                part.committed = max(part.committed, offset)
        self.stats.commits += 1

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the parsers and positions of partitions this process no longer reads."""
        gone = set(partitions)
        for key in [k for k, s in self.slots.items() if s.tp in gone]:
            del self.slots[key]
        for tp in gone:
            self.parts.pop(tp, None)

    # --- metrics -------------------------------------------------------------------------------
    def _totals(self, fmt: str) -> tuple[int, int, int, int, int, int]:
        out = self.outputs[fmt]
        st = self.stats
        skipped = sum(out.skipped.values())
        return st.records[fmt], st.bytes[fmt], out.parsed, out.dlqs + st.rejected[fmt], skipped, 0

    def metrics(
        self, now_ms: int | None = None, final: bool = False, lag: Mapping[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """The ``kind: parse`` records of the minute that ended (or, with ``final``, of the minute so
        far); empty while the minute runs."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        minute = now_ms - now_ms % 60_000
        if self._minute < 0:
            self._minute = minute
            self._base = {fmt: self._totals(fmt) for fmt in self.outputs}
            self._base |= {fmt: self._totals(fmt) for fmt in self.stats.rejected if fmt not in self.outputs}
            return []
        if minute == self._minute and not final:
            return []
        span_s = 60.0 if minute != self._minute else max((now_ms - self._minute) / 1000, 1.0)
        docs = []
        for fmt in sorted(set(self.outputs) | set(self.stats.rejected)):
            now = self._totals(fmt) if fmt in self.outputs else self._rejected_only(fmt)
            base = self._base.get(fmt, (0, 0, 0, 0, 0, 0))
            records, nbytes, events, dlq, skipped, _ = (a - b for a, b in zip(now, base, strict=True))
            self._base[fmt] = now
            if not (records or events or dlq or skipped):
                continue
            doc: dict[str, Any] = {
                "ts": self._minute, "tenant": "-", "kind": "parse", "key": f"{fmt}@{self.instance}",
                "source": fmt, "topic": self.prefix + fmt, "records": records, "bytes": nbytes,
                "events": events, "dlq": dlq, "skipped": skipped,
                "records_per_s": round(records / span_s, 3), "events_per_s": round(events / span_s, 3),
            }  # fmt: skip
            if lag is not None and fmt in lag:
                doc["consumer_lag"] = lag[fmt]
            docs.append(doc)
        self._minute = minute
        return docs

    def _rejected_only(self, fmt: str) -> tuple[int, int, int, int, int, int]:
        st = self.stats
        return st.records[fmt], st.bytes[fmt], 0, st.rejected[fmt], 0, 0


def _line_items(batch: list[tuple[int, bytes]]) -> list[tuple[int, int, bytes, int]]:
    """The reader's ``LineItem``s of raw line records: (line within the record, Kafka offset, line,
    length). A trailing newline is dropped; a value holding several lines gives each of them."""
    items: list[tuple[int, int, bytes, int]] = []
    append = items.append
    for offset, value in batch:
        if value[-1:] == b"\n":
            value = value[:-1]
        if b"\n" in value:
            for n, line in enumerate(value.split(b"\n"), 1):
                line = line[:-1] if line[-1:] == b"\r" else line
                append((n, offset, line, len(line)))
            continue
        if value[-1:] == b"\r":
            value = value[:-1]
        append((1, offset, value, len(value)))
    return items


def raw_topics(settings: Settings) -> list[str]:
    """Every format's raw topic (``ssa parse`` creates the missing ones)."""
    return [settings.topic_raw_prefix + fmt for fmt in FORMAT_NAMES]


# --- the Kafka service ------------------------------------------------------------------------
def run_parse_stage(
    settings: Settings,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
    *,
    registry: TenantRegistry | RegistryWatcher | None = None,
    timezone: str | None = None,
    commit_every_s: float = 1.0,
    max_batch: int = 5000,
    group_id: str | None = None,
    sink: Sink | None = None,
) -> ParseStats:
    """Consume every raw topic until ``stop`` is set (or SIGINT), as ``ssa parse`` does."""
    import confluent_kafka

    from streams.kafka_target import telemetry_producer

    stop = stop or threading.Event()
    sink = sink if sink is not None else telemetry_producer(settings)
    stage = ParseStage(sink, settings.topic_raw_prefix, registry=registry, timezone=timezone)
    conn = kafka_config(settings, "confluent")
    metrics_out = confluent_kafka.Producer({**conn, "linger.ms": 200, "logger": log})
    consumer = confluent_kafka.Consumer(
        {
            **conn,
            "group.id": group_id or settings.parse_group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "topic.metadata.refresh.interval.ms": 10_000,
            "logger": log,
        }
    )

    def commit(only: set[TopicPartition] | None = None) -> None:
        sink.flush()  # raises DeliveryFailed: then nothing is committed and the records are re-read
        offsets = stage.take_commits()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if offsets:
            consumer.commit(
                offsets=[confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
            stage.committed(offsets)

    def on_revoke(_consumer: Any, partitions: list[Any]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        try:
            commit(tps)
        finally:
            stage.forget(tps)

    def on_lost(_consumer: Any, partitions: list[Any]) -> None:
        stage.forget({(tp.topic, tp.partition) for tp in partitions})

    def publish_metrics(final: bool = False) -> None:
        docs = stage.metrics(final=final, lag=_lag(consumer, stage) if final or stage._minute >= 0 else None)
        for doc in docs:
            metrics_out.produce(settings.topic_metrics, json.dumps(doc).encode(), timestamp=doc["ts"])
        metrics_out.poll(0)

    consumer.subscribe([raw_topic_pattern(settings.topic_raw_prefix)], on_revoke=on_revoke, on_lost=on_lost)
    say(f"parse: reading {settings.topic_raw_prefix}* as group {group_id or settings.parse_group_id}")
    next_commit = time.monotonic() + commit_every_s
    stage.metrics()
    try:
        while not stop.is_set():
            messages = consumer.consume(max_batch, 0.2)
            good: list[Any] = []
            for msg in messages:
                err = msg.error()
                if err is None:
                    good.append(msg)
                elif err.fatal():
                    raise confluent_kafka.KafkaException(err)
                else:
                    log.warning("parse stage: %s", err)
            if good:
                stage.process(good)
            now = time.monotonic()
            if now >= next_commit:
                stage.flush_idle(now)
                commit()
                publish_metrics()
                next_commit = now + commit_every_s
        commit()
        publish_metrics(final=True)
    except KeyboardInterrupt:
        commit()
        publish_metrics(final=True)
    finally:
        metrics_out.flush(10)
        consumer.close()
        sink.close()
    return stage.stats


def _lag(consumer: Any, stage: ParseStage) -> dict[str, int]:
    """Records not yet read, per format, over the partitions this process holds (cached offsets:
    no broker round trip)."""
    import confluent_kafka

    lag: Counter[str] = Counter()
    for (topic, partition), part in list(stage.parts.items()):
        try:
            _low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, partition), cached=True
            )
        except Exception:  # noqa: S112 - a partition being revoked: no figure this minute
            continue
        if high >= 0 and part.next >= 0:
            fmt = stage._topic_formats.get(topic)
            if isinstance(fmt, str):
                lag[fmt] += max(high - part.next, 0)
    return dict(lag)
