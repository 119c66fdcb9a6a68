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
``LoginGraceTime``, default 120 s: the "Failed" line of a connection comes within it).

**Headers of column formats.** Zeek TSV (``#separator`` ... ``#types``), CSV (nProbe,
CICFlowMeter, Argus) and VPC flow logs with a header line read their rows by a header met once per
file. Each parser keeps the header lines in force (``Parser.header_lines``, one per Zeek
directive, the CSV header line); at each commit, the sources of the committed partitions whose
header changed since their last commit are written to the compacted topic
``Settings.topic_parse_state`` (``ssa.parse.state``, ``cleanup.policy=compact``; created by
``ssa parse`` and ``ssa up``), key ``<raw topic>\\0<partition>\\0<tenant>\\0<source>``, value
``HeaderState``: the lines in force at the commit offset ``at`` and those in force at the
partition's previous commit (``prev_at``, ``prev``). The state records are acknowledged (``acks=all``)
before the offsets are committed, with the events. On a partition assignment (start, restart,
rebalance to another ``ssa parse``) the stage reads that topic to its end, keeping the assigned
partitions' keys, and primes each source's new parser (``Parser.prime``: the header lines fed
with no output, nothing counted, event ids unchanged) with the lines in force where the read of
the partition begins: ``lines`` if ``at`` is at or before it, ``prev`` if the crash came between
the state write and its commit, none if neither is known (then, as before this state, the rows go
to the DLQ until the next header). A parser dropped from the ``max_parsers`` cache hands its header
to the next one of its source the same way. Bounds: a state record over ``MAX_HEADER_BYTES`` (64
KiB; the parsers' line cap bounds each line) is written as a deletion instead (never a stale
header); states in memory are at most ``MAX_STATE_BYTES`` (64 MiB) and 4 x ``max_parsers``
sources, the oldest dropped. The state is exact for partitions committed where they were read to
(``safe == next``), which holds for the column formats (they hold nothing back); a commit short of
the read writes no state. Zeek JSON logs and VPC flow logs in the default format have no header.

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
from ingest.producer import DeliveryFailed, Sink
from ingest.raw import RawHeaders, RawRejected, format_of_topic, raw_topic_pattern, read_headers
from ingest.tenants import RegistryWatcher, TenantRegistry

__all__ = [
    "IDLE_FLUSH_S",
    "HeaderState",
    "ParseStage",
    "ParseStats",
    "RawMessage",
    "raw_topics",
    "read_states",
    "run_parse_stage",
]

log = logging.getLogger(__name__)

MAX_PARSERS: Final = 4096
MAX_HEADER_BYTES: Final = 64 * 1024  # a source's saved header state (its record's value) at most
MAX_STATE_BYTES: Final = 64 * 1024 * 1024  # the header states held in memory, all sources
STATE_READ_S: Final = 15.0  # reading the state topic at a partition assignment, at most
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
    saved_seq: int = 0  # the parser's header_seq when its header state was last saved (or primed)
    committed_lines: tuple[bytes, ...] = ()  # its header lines at the partition's last commit


@dataclass(frozen=True)
class HeaderState:
    """A source's saved header: ``lines`` in force from offset ``at`` of its partition (a commit
    point), ``prev`` in force at ``prev_at`` (the commit before, where its writer last committed)."""

    at: int
    lines: tuple[bytes, ...]
    prev_at: int = -1
    prev: tuple[bytes, ...] = ()

    def lines_at(self, offset: int) -> tuple[bytes, ...] | None:
        """The header lines in force at ``offset`` (where a reader starts), None if not known."""
        if self.at <= offset:
            return self.lines
        if 0 <= self.prev_at <= offset:
            return self.prev
        return None

    def encode(self) -> bytes:
        return json.dumps(
            {"at": self.at, "lines": [_text(x) for x in self.lines], "prev_at": self.prev_at,
             "prev": [_text(x) for x in self.prev]}, separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def decode(cls, value: bytes) -> HeaderState | None:
        """The state of a record value, None if it is not one (a record this stage did not write)."""
        try:
            doc = json.loads(value)
            return cls(
                int(doc["at"]), tuple(_bytes(x) for x in doc["lines"]),
                int(doc.get("prev_at", -1)), tuple(_bytes(x) for x in doc.get("prev", ())),
            )  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeError):
            return None


def _text(line: bytes) -> str:
    return line.decode("utf-8", "surrogateescape")


def _bytes(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError("not a line")
    return text.encode("utf-8", "surrogateescape")


def state_key(key: SlotKey) -> bytes:
    """The state topic's key of a parser: ``<raw topic>\\0<partition>\\0<tenant>\\0<source>``."""
    topic, partition, source, tenant = key
    return f"{topic}\0{partition}\0{tenant or ''}\0{source}".encode("utf-8", "surrogateescape")


def slot_of_state_key(raw: bytes) -> SlotKey | None:
    try:
        topic, partition, tenant, source = raw.decode("utf-8", "surrogateescape").split("\0", 3)
        return topic, int(partition), source, tenant or None
    except ValueError:
        return None


@dataclass
class _Partition:
    next: int = -1  # offset after the last record fed
    safe: int = -1  # offset a commit may name: no parser of the partition held anything before it
    start: int = -1  # the first offset read since the partition was assigned (where the read began)
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
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_state_bytes: int = MAX_STATE_BYTES,
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
        self.max_header_bytes = max_header_bytes
        self.max_state_bytes = max_state_bytes
        self.states: OrderedDict[SlotKey, HeaderState] = OrderedDict()  # saved headers (state topic)
        self._evicted: OrderedDict[SlotKey, tuple[tuple[bytes, ...], tuple[bytes, ...]]] = OrderedDict()
        self._state_bytes = 0
        self._evicted_bytes = 0
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
                part = self.parts[tp] = _Partition(start=offset)
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
            if old.parser.header_lines:  # its next parser reads on where this one stopped
                self._keep_evicted(old_key, tuple(old.parser.header_lines.values()), old.committed_lines)
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
        self._prime(key, slot)
        return slot

    # --- header state --------------------------------------------------------------------------
    def _prime(self, key: SlotKey, slot: _Slot) -> None:
        """Give a new parser the header lines in force where its partition's read began (the state
        topic's, or those of the parser of the source this process dropped)."""
        evicted = self._evicted.pop(key, None)
        if evicted is not None:
            lines, slot.committed_lines = evicted
            self._evicted_bytes -= sum(map(len, lines)) + sum(map(len, slot.committed_lines))
            slot.parser.prime(lines)
            slot.saved_seq = -1  # saved again at the next commit
            return
        state = self.states.get(key)
        part = self.parts.get(slot.tp)
        if state is None or part is None:
            return
        saved = state.lines_at(part.start)  # nothing of this source was read since: still in force
        if saved:
            slot.parser.prime(saved)
            slot.committed_lines = saved
            slot.saved_seq = slot.parser.header_seq

    def _keep_evicted(self, key: SlotKey, lines: tuple[bytes, ...], committed: tuple[bytes, ...]) -> None:
        size = sum(map(len, lines)) + sum(map(len, committed))
        if size > self.max_header_bytes:
            return  # as a restart would: read on without priming
        self._evicted[key] = (lines, committed)
        self._evicted_bytes += size
        while self._evicted_bytes > self.max_state_bytes or len(self._evicted) > 4 * self.max_parsers:
            _, (a, b) = self._evicted.popitem(last=False)
            self._evicted_bytes -= sum(map(len, a)) + sum(map(len, b))

    def load_states(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Take the state topic's records (key, value; a None value deletes), in order; the number
        of sources with a header state afterwards."""
        for raw_key, value in records:
            key = slot_of_state_key(raw_key)
            if key is None:
                continue
            state = HeaderState.decode(value) if value is not None else None
            self._set_state(key, state)
        return len(self.states)

    def _set_state(self, key: SlotKey, state: HeaderState | None) -> None:
        old = self.states.pop(key, None)
        if old is not None:
            self._state_bytes -= _state_size(old)
        if state is None:
            return
        self.states[key] = state
        self._state_bytes += _state_size(state)
        while self._state_bytes > self.max_state_bytes or len(self.states) > 4 * self.max_parsers:
            _, gone = self.states.popitem(last=False)
            self._state_bytes -= _state_size(gone)

    def take_states(self, offsets: Mapping[TopicPartition, int]) -> list[tuple[bytes, bytes | None]]:
        """The state topic's records to write before ``offsets`` (``take_commits``) are committed:
        the sources of those partitions whose header changed since their last commit, with the
        header in force at the commit (no record is parsed between this call and the commit).
        A header state over ``max_header_bytes`` is written as a deletion: that source is read
        without priming after a restart, as before this state existed, never with an older header."""
        out: list[tuple[bytes, bytes | None]] = []
        for key, slot in self.slots.items():
            at = offsets.get(slot.tp)
            parser = slot.parser
            if at is None or parser.header_seq == slot.saved_seq:
                continue
            part = self.parts[slot.tp]
            if part.next != at:  # a commit short of what was read: the header may be a later one
                continue
            base = part.committed if part.committed >= 0 else part.start
            state: HeaderState | None = HeaderState(
                at, tuple(parser.header_lines.values()), base, slot.committed_lines
            )
            value = state.encode() if state is not None else None
            if value is not None and len(value) > self.max_header_bytes:
                log.warning("parse stage: header of %s over %d bytes, not saved", slot.source,
                            self.max_header_bytes)  # fmt: skip
                value = state = None
            self._set_state(key, state)
            slot.saved_seq = parser.header_seq
            out.append((state_key(key), value))
        return out

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
        for slot in self.slots.values():
            if offsets.get(slot.tp, -2) == self.parts[slot.tp].next:  # the header at the commit
                slot.committed_lines = tuple(slot.parser.header_lines.values())
        self.stats.commits += 1

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the parsers and positions of partitions this process no longer reads."""
        gone = set(partitions)
        for key in [k for k, s in self.slots.items() if s.tp in gone]:
            del self.slots[key]
        for tp in gone:
            self.parts.pop(tp, None)
        for key in [k for k in self.states if (k[0], k[1]) in gone]:
            self._set_state(key, None)
        for key in [k for k in self._evicted if (k[0], k[1]) in gone]:
            lines, committed = self._evicted.pop(key)
            self._evicted_bytes -= sum(map(len, lines)) + sum(map(len, committed))

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


def _state_size(state: HeaderState) -> int:
    return 200 + sum(map(len, state.lines)) + sum(map(len, state.prev))


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

    from infra.bootstrap import ensure_topics
    from streams.kafka_target import telemetry_producer

    stop = stop or threading.Event()
    ensure_topics(settings, [settings.topic_parse_state])  # compacted (bootstrap.topic_configs)
    sink = sink if sink is not None else telemetry_producer(settings)
    stage = ParseStage(sink, settings.topic_raw_prefix, registry=registry, timezone=timezone)
    conn = kafka_config(settings, "confluent")
    metrics_out = confluent_kafka.Producer({**conn, "linger.ms": 200, "logger": log})
    state_errors: list[str] = []
    state_out = confluent_kafka.Producer(
        {**conn, "acks": "all", "enable.idempotence": True, "linger.ms": 0, "logger": log}
    )

    def state_delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            state_errors.append(str(err))

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
        offsets = stage.take_commits()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        for key, value in stage.take_states(offsets):  # acknowledged before the offsets past them
            state_out.produce(settings.topic_parse_state, value, key, on_delivery=state_delivered)
        sink.flush()  # raises DeliveryFailed: then nothing is committed and the records are re-read
        if state_out.flush(30) or state_errors:
            raise DeliveryFailed(f"parse state not written to {settings.topic_parse_state}: "
                                 f"{state_errors[0] if state_errors else 'timed out'}")  # fmt: skip
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

    def on_assign(_consumer: Any, partitions: list[Any]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        if tps:
            n = stage.load_states(read_states(settings, tps))
            log.info("parse stage: %d partitions assigned, %d header states", len(tps), n)

    def publish_metrics(final: bool = False) -> None:
        docs = stage.metrics(final=final, lag=_lag(consumer, stage) if final or stage._minute >= 0 else None)
        for doc in docs:
            metrics_out.produce(settings.topic_metrics, json.dumps(doc).encode(), timestamp=doc["ts"])
        metrics_out.poll(0)

    consumer.subscribe(
        [raw_topic_pattern(settings.topic_raw_prefix)],
        on_assign=on_assign,
        on_revoke=on_revoke,
        on_lost=on_lost,
    )
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
        state_out.flush(10)
        consumer.close()
        sink.close()
    return stage.stats


def read_states(
    settings: Settings, partitions: set[TopicPartition], timeout_s: float = STATE_READ_S
) -> list[tuple[bytes, bytes | None]]:
    """The state topic's records (key, value) of the raw ``partitions``, read to its end. A topic
    that is missing or cannot be read in ``timeout_s`` gives what was read (logged): its sources are
    then read without priming, their rows to the DLQ until their next header."""
    import confluent_kafka

    topic = settings.topic_parse_state
    conn = kafka_config(settings, "confluent")
    reader = confluent_kafka.Consumer(
        {**conn, "group.id": f"{settings.parse_group_id}-state", "enable.auto.commit": False,
         "enable.partition.eof": True, "logger": log}
    )  # fmt: skip
    out: list[tuple[bytes, bytes | None]] = []
    try:
        meta = reader.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            log.warning("parse stage: no state topic %s: sources read without their saved headers", topic)
            return out
        left = set()
        assign = []
        for p in meta.partitions:
            low, high = reader.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, p), timeout=timeout_s
            )
            if high > low:
                left.add(p)
                assign.append(confluent_kafka.TopicPartition(topic, p, low))
        if not assign:
            return out
        reader.assign(assign)
        wanted = {f"{t}\0{p}\0".encode() for t, p in partitions}
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                        left.discard(msg.partition())
                    continue
                key = msg.key() or b""
                head = key[: key.find(b"\0", key.find(b"\0") + 1) + 1]
                if head in wanted:
                    out.append((key, msg.value()))
        if left:
            log.warning("parse stage: state topic %s not read to its end in %.0f s", topic, timeout_s)
    except confluent_kafka.KafkaException as exc:
        log.warning("parse stage: state topic %s not read: %s", topic, exc)
    finally:
        reader.close()
    return out


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
