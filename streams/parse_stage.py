"""The parse stage: raw records from the ``ssa.raw.<format>`` topics -> canonical events.

Feeders write raw input records to the raw topics (the contract is ``ingest.raw``); this stage
reads them all (one regular-expression subscription, so a new raw topic is picked up within
``topic.metadata.refresh.interval.ms``), parses each with the parsers of ``ssa ingest`` (built by
``ingest.pipeline.open_parser`` with the same output, ``CountingOutput``: bounds, DLQ reasons,
the ahead-of-clock check, records in = events + DLQ + skips) and produces the events to the
telemetry topics and the rejects to ``ssa.dlq`` through the same ``TelemetryProducer`` as ``ssa
ingest`` (key, record timestamp and partitioning as there). ``ssa parse`` runs it.

**Tenant raw topics** (``Settings.tenant_topics``, on in secure mode: ``ssa-parse.yaml`` of ``ssa
tenants provision``). Each tenant's feeder may write only its own ``ssa.<tenant>.raw.<format>``
(PREFIXED ACLs; the provider's hypervisor logs: ``ssa.provider.raw.auditd`` and ``.syslog``), and
the stage reads them all by one pattern (``tenant_raw_topic_pattern``) and takes each record's
tenant from its topic, as the job does for telemetry: a record whose ``ssa-tenant`` header names
another tenant (on the provider's topics: any) goes to the DLQ unparsed (``header_tenant_mismatch``),
and each parsed event passes ``streams.detect_fn.check_tenant`` against the topic's tenant (none:
the topic's; another: DLQ, ``tenant mismatch: topic of tenant A, payload says B (event <id>, topic
<raw topic>)``, but a flow with an address of the topic's tenant is that tenant's; the topic's
tenant, as a header gives it to every event of its record: held to the registry, ``verify``; the
provider's: the registry's owner of its VM) before it is produced, in the same
transaction, to that tenant's ``ssa.<tenant>.telemetry.<kind>`` (``TelemetryProducer.with_topics``),
which the job in secure mode reads. A record is parsed as in plain mode (the header as ``--tenant``,
else the registry), so event ids do not depend on the mode. Off, the shared ``ssa.raw.<format>``
and ``ssa.telemetry.<kind>`` as before.

**A consumer group, not a Flink job.** The parsers are plain Python, record by record, with no
keyed state worth checkpointing but their small per-source state (a Zeek header, auditd lines
waiting for their event's EOE); a Flink job would add a JVM-to-Python hop per record (the job
already pays it for detection) and a checkpoint for nothing it needs. A Kafka consumer group
scales by partitions: start more ``ssa parse`` processes, up to the raw topics' partition count,
and Kafka shares the partitions among them; the unit of restart is the record, and its output
(events with deterministic ids) is idempotent downstream.

**Exactly once: one Kafka transaction per commit.** The stage's producer is transactional
(``transactional.id``: the setting ``parse_transactional_id``, ``ssa parse --transactional-id``,
default ``<group>-<host name>``; ``transaction.timeout.ms`` 120 s). Every second (and at a
rebalance's revocation and at stop) ONE transaction commits the events and DLQ records produced
since the last one, the state records below, and the consumer offsets (``send_offsets_to_transaction``
with the consumer's group metadata, KIP-447). Readers with ``isolation.level=read_committed`` (the
detection job's Flink source; the stage itself, for the state topic) never see the output of an
aborted or unfinished transaction, so a kill -9 at any point, followed by a restart, gives every
event exactly once: measured by ``tests/integration/test_parse_stage.py`` (three kills -9
mid-stream, every id as often as ``ssa ingest`` gives it). The offsets committed are not simply
"what was read": a parser may hold lines (auditd holds an event's lines until its EOE; syslog
holds an sshd "Invalid user" notice until its "Failed" line, to fold the two), and those lines
must be read again after a restart. Per raw partition the transaction commits:

- the offset ``q``: the last quiescent point, where no parser of the partition held anything
  (checked after each batch; a fresh assignment's first offset is one);
- a ``PartitionState`` in the compacted state topic, key ``<raw topic>\0<partition>\0``: ``q``,
  ``p`` (the offset after the last record read: every record before it has its output in this or
  an earlier transaction) and ``closes``, the forced finishes (below) of the partition's sources
  between ``q`` and ``p``, each as (source, tenant, offset of the source's last record before it).

A stage that gets the partition (restart, rebalance, or the same process after an abort) reads
from ``q`` and parses ``q``..``p`` again with ALL output discarded (not counted either:
``ParseStats.replayed``), finishing each source where ``closes`` says, then produces from ``p``
on. Parsing is deterministic from empty parsers at a quiescent point, so the replay leaves the
parsers holding exactly what the writer held at ``p``; a source's parse depends only on its own
records and finishes, not on how records were batched. What could make a replay differ is kept
out of it: the clock's finishes are recorded (``closes``) and never taken while a partition
replays; the ``max_parsers`` cache drops only parsers that hold nothing (a parser holding lines
stays, over the bound, until the clock finishes it). Event content that depends on more than the
source's records since ``q`` (a tenant registry reloaded in between, auditd's sVirt labels learnt
before ``q``, NetFlow v9/IPFIX templates received before ``q``) is as for any restart of a reader:
ids do not change (``event_id`` hashes the parser's source and the raw bytes only).

Errors: a delivery failure or an abortable transaction error aborts the open transaction; the
stage then rewinds every partition to its last commit (``ParseStage.rewind``: parsers dropped,
consumer seeked to ``q``, replay to ``p``) and goes on. A partition revoked in a rebalance is
committed with all the others first (a transaction holds every partition's output), a partition
lost (session timeout) aborts the transaction. Fencing: a restarted process with the same
``transactional.id`` aborts its killed predecessor's open transaction at ``init_transactions``
(at once, rather than after the transaction timeout, during which ``read_committed`` readers of
the telemetry topics would wait) and fences it; the consumer uses static membership
(``group.instance.id`` = the transactional id, KIP-345), so a restarted process gets its partitions
back without waiting for the killed one's session to expire (a process that stops for good keeps
its partitions unread for ``session.timeout.ms``, 45 s, before the group moves them), and a stale
member's offset commits are refused. Two ``ssa parse`` processes given the same transactional id
fence each other: the fenced one stops with one line saying so (``TransactionFenced``); give each
its own. Secure mode: a transactional producer's principal needs WRITE and DESCRIBE on the
transactional id (``infra.secure.parse_plan``). Interrupted (SIGINT) mid-batch, the stage aborts;
stopped by SIGTERM (``ssa down``), it commits between batches.

A held parse is finished by the clock (``Parser.close``, which leaves the parser usable) once its
source has been silent for ``IDLE_FLUSH_S[format]``, has held something for ``MAX_HOLD_S`` (60 s)
of continuous input, or its partition has had no quiescent point for ``MAX_HOLD_S`` (auditd keeps
a kernel record that has no EOE, such as a lone ``AVC`` or ``ANOM_ABEND``, until 64 newer events
are open, so a busy host is seldom without one), so the partition's ``q`` is not held back for
ever (its replay after a restart is at most about a minute of records); a forced finish can cut an
event whose lines are being written at that moment (one event, once a minute at most): auditd 15 s
(the kernel writes an event's records together at syscall exit, but shippers poll: Filebeat's log
input waits up to ``max_backoff`` 10 s after EOF before reading a file again, rsyslog imfile's
polling mode every ``PollingInterval`` 10 s); syslog 120 s (sshd_config(5) ``LoginGraceTime``,
default 120 s: the "Failed" line of a connection comes within it).

**Records sent again.** Shippers deliver at least once, so a record may come twice with the same
bytes (its events the same ids). Each output (a format's; with tenant topics, each raw topic's
gate's) remembers the ids it produced lately (``ingest.recent``: the last half to all of
``recent_ids``, 65,536 by default, about 4.5 MB) and skips a copy (counted,
``ingest.recent.DUPLICATE``). Ids join at the commit of their transaction; an abort forgets the
open transaction's, whose records are read and produced again. Nothing is remembered across a
restart.

**Headers of column formats.** Zeek TSV (``#separator`` ... ``#types``), CSV (nProbe,
CICFlowMeter, Argus) and VPC flow logs with a header line read their rows by a header met once per
file. Each parser keeps the header lines in force (``Parser.header_lines``, one per Zeek
directive, the CSV header line). A source whose header lines changed is noted at its partition's
next quiescent point, and the transaction that commits that point as ``q`` writes the lines to the
compacted topic ``Settings.topic_parse_state`` (``ssa.parse.state``, ``cleanup.policy=compact``;
created by ``ssa parse`` and ``ssa up``), key ``<raw topic>\0<partition>\0<tenant>\0<source>``,
value ``HeaderState``: the lines in force at offset ``at`` = ``q``. On a partition assignment
(start, restart, rebalance to another ``ssa parse``) the stage reads that topic to its end
(``read_committed``; a partition's end counts once nothing more came for ``STATE_SETTLE_S``: a
transaction's records become readable only once its commit markers are written, after the commit
returns, so a read right after a commit, its own at a rebalance or the previous owner's, could end
before that commit's header), keeping the assigned partitions' keys, and primes each source's new
parser (``Parser.prime``: the header lines fed with no output, nothing counted, event ids
unchanged) with the lines in force at ``q``, where the read begins (none if not known: then the rows go to the DLQ
until the next header; records written by the stage before transactions may also hold ``prev_at``
and ``prev``, used the same way). A parser dropped from the ``max_parsers`` cache hands its header
to the next one of its source. Bounds: a state record over ``MAX_HEADER_BYTES`` (64 KiB; the
parsers' line cap bounds each line) is written as a deletion instead (never a stale header); states
in memory are at most ``MAX_STATE_BYTES`` (64 MiB) and 4 x ``max_parsers`` sources, the oldest
dropped. Zeek JSON logs and VPC flow logs in the default format have no header.

Parser instances are per (topic, partition, source, tenant): at most ``max_parsers`` (4,096; the
least recently used that holds nothing is dropped; see above), dropped for revoked partitions. A
record's DLQ record names ``<source> via <topic>/<partition>`` as its ``file`` and the record's Kafka
offset as its ``offset`` (``line``: the line within the record); CloudTrail documents and NetFlow
datagrams keep the parser's own offsets inside the record. A record the stage cannot read (its
topic names no format, a bad header: ``ingest.raw.read_headers``) goes to the DLQ with source
``parse``.

**Metrics.** Per format and minute (wall clock: these are processing rates), a record on
``ssa.metrics``: ``kind: parse``, ``tenant: "-"``, ``key: <format>@<instance>`` (one document per
stage process: the sum over keys is the format's total), ``source`` (the format), ``topic``,
``records`` (raw records read), ``bytes``, ``events``, ``dlq``, ``skipped``, ``records_per_s``,
``events_per_s``, and ``consumer_lag`` (records of the format's topic not yet read by this
process, at the minute's end), written at the minute's end and at stop. They are produced outside
the transactions (another producer): records replayed are not counted, records of an aborted
transaction are counted each time they are read.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from infra.clients import kafka_config
from infra.secure import (
    PROVIDER,
    PROVIDER_KINDS,
    PROVIDER_RAW_FORMATS,
    TENANT_ID_RE,
    tenant_raw_prefix,
    tenant_telemetry_topics,
)
from infra.settings import Settings
from ingest.dlq import DlqRecord, make_dlq
from ingest.follow import IDLE_FLUSH_S, MAX_HOLD_S
from ingest.parsers import FORMAT_NAMES, Parser
from ingest.parsers.base import BoundedOutput, Output
from ingest.parsers.netflow import NetflowParser
from ingest.pipeline import MAX_AHEAD_MS, CountingOutput, open_parser
from ingest.producer import DeliveryFailed, Sink
from ingest.raw import RawHeaders, RawRejected, format_of_topic, raw_topic_pattern, read_headers
from ingest.recent import DEFAULT_CAPACITY, RecentIds
from ingest.schema import Event, encode_event
from ingest.tenants import RegistryWatcher, TenantRegistry
from streams.detect_fn import check_tenant

__all__ = [
    "IDLE_FLUSH_S",
    "HeaderState",
    "ParseStage",
    "ParseStats",
    "PartitionState",
    "RawMessage",
    "TransactionFenced",
    "header_tenant_mismatch",
    "parse_transactional_id",
    "raw_topics",
    "read_states",
    "run_parse_stage",
    "tenant_raw_format",
    "tenant_raw_topic_pattern",
]

log = logging.getLogger(__name__)

MAX_PARSERS: Final = 4096
MAX_HEADER_BYTES: Final = 64 * 1024  # a source's saved header state (its record's value) at most
MAX_STATE_BYTES: Final = 64 * 1024 * 1024  # the header states held in memory, all sources
TXN_TIMEOUT_MS: Final = 120_000  # at least the producer's message.timeout.ms (ingest.producer)
STATE_READ_S: Final = 15.0  # reading the state topic at a partition assignment, at most
STATE_SETTLE_S: Final = 1.0  # ... each partition at its end this long with nothing more (module docstring)
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
    tenant: str | None = None
    last_seen: float = 0.0
    busy: bool = False
    held_since: float = 0.0
    seen_seq: int = 0  # the parser's header_seq when its header lines were last noted
    last_offset: int = -1  # the Kafka offset of the last record fed to it


@dataclass(frozen=True)
class HeaderState:
    """A source's saved header: ``lines`` in force from offset ``at`` of its partition (a commit
    point). ``prev``/``prev_at`` are read for records written before transactions (never written
    now: a state record and its commit are one transaction)."""

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


Close = tuple[str, str | None, int]  # source, tenant, the offset of its last record before the finish


@dataclass(frozen=True)
class PartitionState:
    """Where a raw partition stands at a commit: the offsets committed with it are ``q`` (a
    quiescent point: no parser of the partition held anything before it), every record before
    ``p`` has its output in this or an earlier transaction, and ``closes`` are the forced finishes
    (``flush_idle``) of sources of the partition between ``q`` and ``p``, each after the record at
    its offset. A reader starting at ``q`` replays ``q``..``p`` with no output, finishing those
    sources where listed, and holds what the writer held at ``p``."""

    q: int
    p: int
    closes: tuple[Close, ...] = ()

    def encode(self) -> bytes:
        return json.dumps(
            {"q": self.q, "p": self.p, "closes": [[s, t, o] for s, t, o in self.closes]},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, value: bytes) -> PartitionState | None:
        try:
            doc = json.loads(value)
            q, p = int(doc["q"]), int(doc["p"])
            closes = []
            for source, tenant, offset in doc.get("closes", ()):
                if not isinstance(source, str) or not (tenant is None or isinstance(tenant, str)):
                    raise TypeError("not a close")
                closes.append((source, tenant, int(offset)))
            if not 0 <= q <= p:
                return None
            return cls(q, p, tuple(closes))
        except (ValueError, TypeError, KeyError, AttributeError):
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


def position_key(tp: TopicPartition) -> bytes:
    """The state topic's key of a partition's ``PartitionState``: ``<raw topic>\\0<partition>\\0``."""
    return f"{tp[0]}\0{tp[1]}\0".encode("utf-8", "surrogateescape")


def slot_of_state_key(raw: bytes) -> SlotKey | None:
    try:
        topic, partition, tenant, source = raw.decode("utf-8", "surrogateescape").split("\0", 3)
        return topic, int(partition), source, tenant or None
    except ValueError:
        return None


def partition_of_state_key(raw: bytes) -> TopicPartition | None:
    parts = raw.decode("utf-8", "surrogateescape").split("\0")
    if len(parts) != 3 or parts[2] or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


@dataclass
class _Partition:
    next: int = -1  # offset after the last record fed
    safe: int = -1  # offset a commit may name: no parser of the partition held anything before it
    start: int = -1  # the first offset read since the partition was assigned (where the read began)
    committed: int = -1  # q of the last commit (made or read at the assignment)
    committed_p: int = -1  # p of that commit
    replay_until: int = -1  # records before it are replayed: parsed with no output, not counted
    safe_at: float = 0.0  # clock of the last quiescent point
    busy: set[SlotKey] = field(default_factory=set)
    closes: list[Close] = field(default_factory=list)  # forced finishes since `committed`
    committed_closes: tuple[Close, ...] = ()  # those of the last commit
    moved: bool = False  # read, made quiescent or finished since the last commit
    dirty: dict[SlotKey, tuple[bytes, ...]] = field(default_factory=dict)  # headers since `safe`
    headers: dict[SlotKey, tuple[bytes, ...]] = field(default_factory=dict)  # at `safe`, unsaved


class _Discard:
    """A replay's output: parsed again only to hold what the parsers held."""

    def event(self, event: Any) -> None:
        pass

    def event_batch(self, events: Any) -> None:
        pass

    def dlq(self, record: Any) -> None:
        pass

    def skip(self, reason: str) -> None:
        pass


# --- tenant raw topics (secure mode) -----------------------------------------------------------
def tenant_raw_topic_pattern() -> str:
    """The regular expression of every tenant's (and the provider's) raw topics,
    ``ssa.<tenant>.raw.<format>``, the tenant as group 1 and the format as group 2 (``re.fullmatch``;
    the consumer's subscription is it between ``^`` and ``$``). The tenant part allows no dot, so
    tenant ``a`` never matches ``ab``'s or ``a.b``'s topics, nor the shared ``ssa.raw.<format>``."""
    head, tail = tenant_raw_prefix("\0").split("\0")
    return f"{re.escape(head)}({TENANT_ID_RE}){re.escape(tail)}([A-Za-z0-9._-]+)"


_TENANT_RAW: Final = re.compile(tenant_raw_topic_pattern())


def tenant_raw_format(topic: str) -> tuple[str, str]:
    """(tenant, format) of a tenant's raw topic; ``RawRejected`` when it is not one, names no
    format, or is a provider topic of a format the provider does not feed."""
    match = _TENANT_RAW.fullmatch(topic)
    if match is None:
        shown = topic if len(topic) <= 60 else topic[:57] + "..."
        raise RawRejected(f"topic {shown!r} is not a tenant's raw topic (ssa.<tenant>.raw.<format>)")
    tenant = match.group(1)
    fmt = format_of_topic(tenant_raw_prefix(tenant), topic)
    if tenant == PROVIDER and fmt not in PROVIDER_RAW_FORMATS:
        raise RawRejected(
            f"raw topic {topic} of the provider: its raw topics carry {', '.join(PROVIDER_RAW_FORMATS)} only"
        )
    return tenant, fmt


def header_tenant_mismatch(claimed: str | None, topic_tenant: str) -> str | None:
    """Why a record on ``topic_tenant``'s raw topic whose ``ssa-tenant`` header says ``claimed``
    goes to the DLQ (``check_tenant``'s words), None when the header may stand (absent, or the
    topic's own tenant). The provider's records take their tenants from the registry: any is refused."""
    if claimed is None or (claimed == topic_tenant and topic_tenant != PROVIDER):
        return None
    if topic_tenant == PROVIDER:
        return f"tenant mismatch: provider topic, header ssa-tenant says {claimed} (the registry gives its events their tenants)"
    return f"tenant mismatch: topic of tenant {topic_tenant}, header ssa-tenant says {claimed}"


class _TenantGate:
    """The output of the parsers of one tenant's raw topic (secure mode): each event as the job
    takes it from that tenant's telemetry topic (``streams.detect_fn.check_tenant``: no tenant gets
    the topic's; another tenant, or on the provider's topic one the registry does not give the
    event's VM, goes to the DLQ with the reason, source ``parse``), and one of the topic's tenant
    held to the registry as well (``verify``). ``out`` counts and sends on to
    the sink of the tenant's telemetry topics, so a refused event is counted as DLQ, not as an event."""

    def __init__(
        self,
        out: CountingOutput,
        tenant: str,
        topic: str,
        fmt: str,
        registry: Callable[[], TenantRegistry | None],
    ) -> None:
        self.out = out
        self.tenant = tenant
        self.topic = topic
        self.fmt = fmt
        self.registry = registry
        self.provider = tenant == PROVIDER
        self.dlq = out.dlq
        self.skip = out.skip

    def event(self, event: Event) -> None:
        checked = self._check(event)
        if checked is not None:
            self.out.event(checked)

    def event_batch(self, events: list[Event]) -> None:
        events = [e for e in map(self._check, events) if e is not None]
        if events:
            self.out.event_batch(events)

    def _check(self, event: Event) -> Event | None:
        # Every event, its topic's tenant's too: a header naming that tenant gave it to every event
        # of the record, a line of another tenant's VM among them (``check_tenant``'s ``verify``).
        checked = check_tenant(event, self.tenant, self.registry(), verify=True)
        if self.provider and not isinstance(checked, str):
            kind = event.__struct_config__.tag
            if kind not in PROVIDER_KINDS:  # the provider has no topic for it (flows)
                checked = f"provider topic: no {kind} events (the provider feeds {', '.join(PROVIDER_KINDS)})"
        if isinstance(checked, str):
            self.out.dlq(self._dlq(f"{checked} (event {event.id}, topic {self.topic})", event))
            return None
        return checked

    @staticmethod
    def _dlq(reason: str, event: Event) -> DlqRecord:
        return make_dlq("parse", reason, encode_event(event))


@dataclass
class ParseStats:
    records: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)  # bad raw records (DLQ, source "parse")
    commits: int = 0
    idle_flushes: int = 0
    replayed: int = 0  # records parsed again with no output after an assignment or an abort
    aborts: int = 0


class ParseStage:
    """The Kafka-free core: feed it batches of raw messages (``process``), finish idle sources
    (``flush_idle``), ask what a transaction commits (``take_positions``, ``take_states``), say
    it committed (``committed``) or was aborted (``rewind``), and collect its metrics records
    (``metrics``)."""

    def __init__(
        self,
        sink: Sink,
        raw_prefix: str = "ssa.raw.",
        *,
        registry: TenantRegistry | RegistryWatcher | None = None,
        timezone: str | None = None,
        vpc_fields: tuple[str, ...] | None = None,
        instance: str | None = None,
        max_parsers: int = MAX_PARSERS,
        idle_flush_s: Mapping[str, float] = IDLE_FLUSH_S,
        max_hold_s: float = MAX_HOLD_S,
        max_ahead_ms: int = MAX_AHEAD_MS,
        clock: Callable[[], float] = time.monotonic,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_state_bytes: int = MAX_STATE_BYTES,
        tenant_topics: bool = False,
        route: Callable[[str], Sink] | None = None,
        recent_ids: int = DEFAULT_CAPACITY,
    ) -> None:
        """``tenant_topics`` (secure mode): the raw topics are the tenants' ``ssa.<tenant>.raw.*``
        (``raw_prefix`` unused), each record's tenant is its topic's, and ``route(tenant)`` is the
        sink of that tenant's telemetry topics (the DLQ stays ``sink``'s). ``recent_ids``: the event
        ids each output remembers to drop a record sent again (``ingest.recent``; 0 or less: none)."""
        if tenant_topics and route is None:
            raise ValueError("tenant_topics needs route: the sink of each tenant's telemetry topics")
        self.sink = sink
        self.prefix = raw_prefix
        self.tenant_topics = tenant_topics
        self.route = route
        self.max_ahead_ms = max_ahead_ms
        self.watcher = registry if isinstance(registry, RegistryWatcher) else None
        self.registry = registry.current() if isinstance(registry, RegistryWatcher) else registry
        self.timezone = timezone
        self.vpc_fields = vpc_fields  # the layout of VPC records without a header (CloudWatch Logs)
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        self.max_parsers = max_parsers
        self.idle_flush_s = dict(idle_flush_s)
        self.max_hold_s = max_hold_s
        self.clock = clock
        self.stats = ParseStats()
        self.recent_ids = recent_ids
        self.outputs = {
            fmt: CountingOutput(sink, None, 3600.0, max_ahead_ms, recent=self._recent())
            for fmt in FORMAT_NAMES
        }
        self.slots: OrderedDict[SlotKey, _Slot] = OrderedDict()
        self.parts: dict[TopicPartition, _Partition] = {}
        self._topic_formats: dict[str, str | RawRejected] = {}
        self._topic_tenants: dict[str, str] = {}  # tenant_topics: the tenant of each raw topic
        self._gates: dict[str, _TenantGate] = {}  # tenant_topics: the output of each raw topic
        self.max_header_bytes = max_header_bytes
        self.max_state_bytes = max_state_bytes
        self.states: OrderedDict[SlotKey, HeaderState] = OrderedDict()  # saved headers (state topic)
        self.positions: dict[TopicPartition, PartitionState] = {}  # committed, not yet read from
        self._taken: dict[SlotKey, HeaderState | None] = {}  # header states in the open transaction
        self._evicted: OrderedDict[SlotKey, tuple[bytes, ...]] = OrderedDict()
        self._discard = BoundedOutput(_Discard())
        self._state_bytes = 0
        self._evicted_bytes = 0
        self._minute = -1
        self._base: dict[str, tuple[int, int, int, int, int, int]] = {}
        self._minute_started = 0.0

    # --- input ---------------------------------------------------------------------------------
    def process(self, messages: Iterable[RawMessage]) -> None:
        """Parse one batch of raw messages (in partition order), then note which partitions may be
        committed up to the batch's end. Records before a partition's ``replay_until`` are parsed
        with no output and not counted (their output is in a committed transaction)."""
        if self.watcher is not None:
            current = self.watcher.current()
            if current is not self.registry:
                self._set_registry(current)
        groups: dict[SlotKey, list[tuple[int, bytes]]] = {}
        replays: dict[SlotKey, list[tuple[int, bytes]]] = {}
        heads: dict[SlotKey, RawHeaders] = {}
        touched: set[TopicPartition] = set()
        stats = self.stats
        for msg in messages:
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            value = msg.value() or b""
            tp = (topic, partition)
            part = self.parts.get(tp)
            if part is None:
                part = self.parts[tp] = self._open(tp, offset)
            replay = offset < part.replay_until
            part.next = offset + 1
            part.moved = True
            touched.add(tp)
            fmt = self._topic_formats.get(topic)
            if fmt is None:
                fmt = self._topic_formats[topic] = self._format_of(topic)
            try:
                if isinstance(fmt, RawRejected):
                    raise fmt
                head = read_headers(msg.headers(), fmt, msg.key(), topic)
                if self.tenant_topics:
                    mismatch = header_tenant_mismatch(head.tenant, self._topic_tenants[topic])
                    if mismatch is not None:
                        raise RawRejected(f"{mismatch} (topic {topic})")
            except RawRejected as exc:
                if not replay:
                    self._reject(str(exc), value, tp, offset, fmt if isinstance(fmt, str) else "unknown")
                continue
            if replay:
                stats.replayed += 1
            else:
                stats.records[fmt] += 1
                stats.bytes[fmt] += len(value)
            key = (topic, partition, head.source, head.tenant)
            into = replays if replay else groups
            batch = into.get(key)
            if batch is None:
                batch = into[key] = []
                heads[key] = head
            batch.append((offset, value))
        now = self.clock()
        for key, batch in replays.items():  # a partition's replayed records come before its others
            slot = self._slot(key, heads[key])
            slot.last_seen = now
            self._replay(slot, batch)
            self._fed(key, slot, batch)
        for key, batch in groups.items():
            slot = self._slot(key, heads[key])
            slot.last_seen = now
            self._feed(slot, batch)
            self._fed(key, slot, batch)
        for tp in touched:
            part = self.parts[tp]
            if not part.busy:
                self._quiescent(part, now)

    def _open(self, tp: TopicPartition, offset: int) -> _Partition:
        """A partition's first record since its assignment (or a rewind): where it was committed,
        and what to replay from there."""
        part = _Partition(start=offset, safe_at=self.clock())
        saved = self.positions.pop(tp, None)
        if saved is None:
            return part
        if saved.q != offset:  # the group's offsets were moved by hand, or the topic was recreated
            log.warning("parse stage: %s/%d starts at %d, its saved state at %d: read without replay",
                        tp[0], tp[1], offset, saved.q)  # fmt: skip
            return part
        part.committed, part.committed_p = saved.q, saved.p
        part.replay_until = saved.p
        part.closes = list(saved.closes)
        part.committed_closes = saved.closes
        return part

    def _quiescent(self, part: _Partition, now: float) -> None:
        part.safe = part.next
        part.safe_at = now
        if part.dirty:
            part.headers.update(part.dirty)
            part.dirty.clear()

    def _fed(self, key: SlotKey, slot: _Slot, batch: list[tuple[int, bytes]]) -> None:
        slot.last_offset = batch[-1][0]
        parser = slot.parser
        if parser.header_seq != slot.seen_seq:  # saved at the partition's next quiescent point
            slot.seen_seq = parser.header_seq
            part = self.parts.get(slot.tp)
            if part is not None:
                part.dirty[key] = tuple(parser.header_lines.values())
        self._note_busy(key, slot)

    def _replay(self, slot: _Slot, batch: list[tuple[int, bytes]]) -> None:
        """Feed records whose output is already committed, with no output, finishing the source
        where the writer did (``PartitionState.closes``)."""
        part = self.parts[slot.tp]
        key = (slot.source, slot.tenant)
        cuts = {o for s, t, o in part.closes if (s, t) == key}
        parser = slot.parser
        out = parser.out
        parser.out = self._discard
        try:
            run: list[tuple[int, bytes]] = []
            for item in batch:
                run.append(item)
                if item[0] in cuts:
                    self._feed(slot, run)
                    parser.close()
                    run = []
            if run:
                self._feed(slot, run)
        finally:
            parser.out = out

    def _format_of(self, topic: str) -> str | RawRejected:
        try:
            if self.tenant_topics:
                tenant, fmt = tenant_raw_format(topic)
                self._topic_tenants[topic] = tenant
                return fmt
            return format_of_topic(self.prefix, topic)
        except RawRejected as exc:
            return exc

    def _output(self, topic: str, fmt: str) -> Output:
        """The parsers' output for ``topic``: the format's, or with tenant topics the topic's gate
        (``_TenantGate``) into the sink of its tenant's telemetry topics."""
        if not self.tenant_topics:
            return self.outputs[fmt]
        gate = self._gates.get(topic)
        if gate is None:
            assert self.route is not None  # __init__ refuses tenant_topics without it
            tenant = self._topic_tenants[topic]
            out = CountingOutput(self.route(tenant), None, 3600.0, self.max_ahead_ms, recent=self._recent())
            gate = self._gates[topic] = _TenantGate(out, tenant, topic, fmt, lambda: self.registry)
        return gate

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
        if len(self.slots) >= self.max_parsers:
            self._evict()
        topic, partition, source, tenant = key
        parser = open_parser(
            head.format,
            self._output(topic, head.format),
            tenant=tenant,
            registry=self.registry,
            file=f"{source} via {topic}/{partition}",
            timezone=self.timezone,
            vpc_fields=self.vpc_fields,
        )
        slot = self.slots[key] = _Slot(parser, head.format, (topic, partition), source, tenant)
        self._prime(key, slot)
        slot.seen_seq = parser.header_seq
        return slot

    def _evict(self) -> None:
        """Drop the least recently used parsers that hold nothing (their header goes to the next
        parser of their source) down to ``max_parsers``. A parser holding lines is never dropped
        (that would finish its parse at a moment a replay could not know): ``flush_idle`` finishes
        it within ``MAX_HOLD_S``, so the cache exceeds the bound by the sources holding lines."""
        need = len(self.slots) - self.max_parsers + 1
        idle: list[SlotKey] = []
        for key, slot in self.slots.items():  # oldest first; the parsers holding lines are few
            if not slot.busy:
                idle.append(key)
                if len(idle) >= need:
                    break
        for old_key in idle:
            old = self.slots.pop(old_key)
            if old.parser.header_lines:  # its next parser reads on where this one stopped
                self._keep_evicted(old_key, tuple(old.parser.header_lines.values()))

    # --- header state --------------------------------------------------------------------------
    def _prime(self, key: SlotKey, slot: _Slot) -> None:
        """Give a new parser the header lines in force where its partition's read began (the state
        topic's, or those of the parser of the source this process dropped)."""
        evicted = self._evicted.pop(key, None)
        if evicted is not None:
            self._evicted_bytes -= sum(map(len, evicted))
            slot.parser.prime(evicted)
            return
        state = self.states.get(key)
        part = self.parts.get(slot.tp)
        if state is None or part is None:
            return
        saved = state.lines_at(part.start)  # nothing of this source was read since: still in force
        if saved:
            slot.parser.prime(saved)

    def _keep_evicted(self, key: SlotKey, lines: tuple[bytes, ...]) -> None:
        size = sum(map(len, lines))
        if size > self.max_header_bytes:
            return  # as a restart would: read on without priming
        self._evicted[key] = lines
        self._evicted_bytes += size
        while self._evicted_bytes > self.max_state_bytes or len(self._evicted) > 4 * self.max_parsers:
            _, gone = self._evicted.popitem(last=False)
            self._evicted_bytes -= sum(map(len, gone))

    def load_states(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Take the state topic's records (key, value; a None value deletes), in order: header
        states and partition positions (``PartitionState``, used when the partition's first
        record is read); the number of sources with a header state afterwards."""
        for raw_key, value in records:
            tp = partition_of_state_key(raw_key)
            if tp is not None:
                position = PartitionState.decode(value) if value is not None else None
                if position is None:
                    self.positions.pop(tp, None)
                else:
                    self.positions[tp] = position
                continue
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
        """The state topic's header records to write in the transaction that commits ``offsets``
        (each a quiescent point, ``take_commits``/``take_positions``): the sources of those
        partitions whose header lines changed by that point, with the lines in force there. A
        header state over ``max_header_bytes`` is written as a deletion: that source is read
        without priming after a restart, never with an older header. Kept for ``committed``."""
        out: list[tuple[bytes, bytes | None]] = []
        for tp, at in offsets.items():
            part = self.parts.get(tp)
            if part is None or at != part.safe:
                continue
            for key, lines in part.headers.items():
                state: HeaderState | None = HeaderState(at, lines)
                value = state.encode() if state is not None else None
                if value is not None and len(value) > self.max_header_bytes:
                    log.warning("parse stage: header of %s over %d bytes, not saved", key[2],
                                self.max_header_bytes)  # fmt: skip
                    value = state = None
                self._taken[key] = state
                out.append((state_key(key), value))
            part.headers.clear()
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
        """Finish the held parses of sources silent for their format's ``IDLE_FLUSH_S``, holding
        for ``max_hold_s``, or of a partition with no quiescent point for ``max_hold_s`` (all of
        them with ``everything``); the number of parsers finished. Each finish is noted in its
        partition's ``closes`` (a replay repeats it); a replaying partition's are not finished."""
        now = self.clock() if now is None else now
        flushed = 0
        touched: set[TopicPartition] = set()
        for key, slot in list(self.slots.items()):
            if not slot.busy:
                continue
            part = self.parts.get(slot.tp)
            if part is None or part.next < part.replay_until:
                continue
            wait = self.idle_flush_s.get(slot.fmt, 0.0)
            if (everything or now - slot.last_seen >= wait or now - slot.held_since >= self.max_hold_s
                    or now - part.safe_at >= self.max_hold_s):  # fmt: skip
                slot.parser.close()
                part.closes.append((slot.source, slot.tenant, slot.last_offset))
                part.moved = True
                self._note_busy(key, slot)
                touched.add(slot.tp)
                flushed += 1
        if flushed:
            self.stats.idle_flushes += flushed
            for tp in touched:
                part = self.parts[tp]
                if not part.busy:
                    self._quiescent(part, now)
        return flushed

    def take_commits(self) -> dict[TopicPartition, int]:
        """Quiescent points that moved since the last commit."""
        return {tp: p.safe for tp, p in self.parts.items() if p.safe > p.committed and p.safe >= 0}

    def take_positions(self) -> dict[TopicPartition, PartitionState]:
        """The ``PartitionState`` of every partition read past its last commit: what one
        transaction commits with the output produced so far (its offsets are the ``q``s)."""
        out: dict[TopicPartition, PartitionState] = {}
        for tp, part in self.parts.items():
            if not part.moved:
                continue
            q = part.safe if part.safe >= 0 else (part.committed if part.committed >= 0 else part.start)
            closes = tuple(c for c in part.closes if c[2] >= q)
            out[tp] = PartitionState(q, max(part.next, part.committed_p, q), closes)
        return out

    def committed(
        self,
        offsets: Mapping[TopicPartition, int],
        positions: Mapping[TopicPartition, PartitionState] | None = None,
    ) -> None:
        """The transaction with these offsets (and positions, and the header states last taken)
        is committed."""
        for tp, offset in offsets.items():
            part = self.parts.get(tp)
            if part is not None:
                part.committed = max(part.committed, offset)
        for tp, position in (positions or {}).items():
            part = self.parts.get(tp)
            if part is not None:
                part.committed_p = position.p
                part.closes = [c for c in part.closes if c[2] >= position.q]
                part.committed_closes = position.closes
                part.moved = False
        for key, state in self._taken.items():
            if (key[0], key[1]) in self.parts:
                self._set_state(key, state)
        self._taken.clear()
        for out in self._counting():
            if out.recent is not None:
                out.recent.commit()
        self.stats.commits += 1

    def rewind(self) -> dict[TopicPartition, int]:
        """The open transaction was aborted: every partition goes back to its last commit (its
        parsers dropped, its records to be read again from ``q``, replayed up to ``p``); the
        offsets to seek the consumer to."""
        self._taken.clear()
        for out in self._counting():  # the aborted output's records are produced again
            if out.recent is not None:
                out.recent.abort()
        seek: dict[TopicPartition, int] = {}
        for tp, part in list(self.parts.items()):
            if part.committed >= 0:
                p = max(part.committed_p, part.committed)
                self.positions[tp] = PartitionState(part.committed, p, part.committed_closes)
                seek[tp] = part.committed
            else:
                seek[tp] = part.start
        self._drop(set(self.parts))
        self.stats.aborts += 1
        return seek

    def _recent(self) -> RecentIds | None:
        return RecentIds(max(2, self.recent_ids)) if self.recent_ids > 0 else None

    def _counting(self) -> list[CountingOutput]:
        """Every output that produces: the formats' and, with tenant topics, each raw topic's gate's."""
        return [*self.outputs.values(), *(gate.out for gate in self._gates.values())]

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the parsers, positions and saved states of partitions this process no longer reads."""
        gone = set(partitions)
        self._drop(gone)
        for tp in gone:
            self.positions.pop(tp, None)
        for key in [k for k in self.states if (k[0], k[1]) in gone]:
            self._set_state(key, None)

    def _drop(self, gone: set[TopicPartition]) -> None:
        for key in [k for k, s in self.slots.items() if s.tp in gone]:
            del self.slots[key]
        for tp in gone:
            self.parts.pop(tp, None)
        for key in [k for k in self._evicted if (k[0], k[1]) in gone]:
            self._evicted_bytes -= sum(map(len, self._evicted.pop(key)))
        for key in [k for k in self._taken if (k[0], k[1]) in gone]:
            del self._taken[key]

    # --- metrics -------------------------------------------------------------------------------
    def _totals(self, fmt: str) -> tuple[int, int, int, int, int, int]:
        outs = [self.outputs[fmt], *(g.out for g in self._gates.values() if g.fmt == fmt)]
        st = self.stats
        skipped = sum(sum(out.skipped.values()) for out in outs)
        parsed, dlqs = sum(out.parsed for out in outs), sum(out.dlqs for out in outs)
        return st.records[fmt], st.bytes[fmt], parsed, dlqs + st.rejected[fmt], skipped, 0

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
        prefix = tenant_raw_prefix("*") if self.tenant_topics else self.prefix
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
                "source": fmt, "topic": prefix + fmt, "records": records, "bytes": nbytes,
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
class TransactionFenced(DeliveryFailed):
    """Another ``ssa parse`` started with this process's transactional id (one line for the CLI)."""


def parse_transactional_id(settings: Settings, group_id: str | None = None) -> str:
    """This process's ``transactional.id``: the setting ``parse_transactional_id``, else
    ``<group>-<host name>``. Stable across restarts, so a restarted stage aborts its killed
    predecessor's open transaction at once; two processes on one host need their own."""
    return settings.parse_transactional_id or f"{group_id or settings.parse_group_id}-{socket.gethostname()}"


def run_parse_stage(
    settings: Settings,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
    *,
    registry: TenantRegistry | RegistryWatcher | None = None,
    timezone: str | None = None,
    vpc_fields: tuple[str, ...] | None = None,
    commit_every_s: float = 1.0,
    max_batch: int = 5000,
    group_id: str | None = None,
    transactional_id: str | None = None,
) -> ParseStats:
    """Consume every raw topic until ``stop`` is set (or SIGINT), as ``ssa parse`` does: one Kafka
    transaction per commit (see the module docstring). With ``settings.tenant_topics`` (secure
    mode) every tenant's ``ssa.<tenant>.raw.*``, each record's events to its tenant's telemetry."""
    import dataclasses

    import confluent_kafka

    from infra.bootstrap import ensure_topics
    from ingest.producer import TelemetryProducer
    from streams.kafka_target import kafka_target

    stop = stop or threading.Event()
    group = group_id or settings.parse_group_id
    txn_id = transactional_id or parse_transactional_id(settings, group)
    ensure_topics(settings, [settings.topic_parse_state])  # compacted (bootstrap.topic_configs)
    target = kafka_target(settings)
    target = dataclasses.replace(
        target,
        confluent={**target.confluent, "transactional.id": txn_id, "transaction.timeout.ms": TXN_TIMEOUT_MS},
    )
    sink = TelemetryProducer(target, "confluent")
    producer: Any = sink._producer
    try:
        producer.init_transactions(30)  # fences an earlier process of this id, aborting its transaction
    except confluent_kafka.KafkaException as exc:
        sink._producer = None
        raise DeliveryFailed(f"parse: transactions refused for id {txn_id}: {_kafka_error(exc)}") from None
    producer.begin_transaction()
    tenant_topics = settings.tenant_topics

    def route(tenant: str) -> Sink:  # one transactional client: a view writing the tenant's topics
        return sink.with_topics(tenant_telemetry_topics(tenant))

    stage = ParseStage(sink, settings.topic_raw_prefix, registry=registry, timezone=timezone,
                       vpc_fields=vpc_fields, tenant_topics=tenant_topics,
                       route=route if tenant_topics else None,
                       recent_ids=settings.parse_recent_ids)  # fmt: skip
    conn = kafka_config(settings, "confluent")
    metrics_out = confluent_kafka.Producer({**conn, "linger.ms": 200, "logger": log})
    consumer = confluent_kafka.Consumer(
        {
            **conn,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "topic.metadata.refresh.interval.ms": 10_000,
            # Static membership (KIP-345): a restarted process takes its partitions back at once
            # instead of waiting out the killed one's session; a stale one is fenced.
            "group.instance.id": txn_id,
            "logger": log,
        }
    )
    produced = [0]

    def output_count() -> int:
        return sink.counters.events + sink.counters.dlq

    def commit() -> None:
        """Commit the open transaction: the output so far, the state records, the offsets."""
        positions = stage.take_positions()
        if not positions and output_count() == produced[0]:
            return
        offsets = {tp: position.q for tp, position in positions.items()}
        records = stage.take_states(offsets)
        records += [(position_key(tp), position.encode()) for tp, position in positions.items()]
        for key, value in records:
            producer.produce(settings.topic_parse_state, value, key)
        sink.flush()  # raises DeliveryFailed: then the transaction is aborted (abort_and_rewind)
        if offsets:
            producer.send_offsets_to_transaction(
                [confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                consumer.consumer_group_metadata(), 30,
            )  # fmt: skip
        _commit_transaction(producer)
        produced[0] = output_count()
        stage.committed(offsets, positions)
        producer.begin_transaction()

    def abort_and_rewind(exc: BaseException) -> None:
        """An aborted transaction: its output is gone; read again from the last commit."""
        _raise_if_fatal(exc, txn_id)
        log.warning("parse stage: transaction aborted (%s): reading again from the last commit", exc)
        try:
            producer.abort_transaction(60)
        except confluent_kafka.KafkaException as err:
            _raise_if_fatal(err, txn_id)
            raise
        sink.counters.failed = 0
        sink.counters.first_error = None
        produced[0] = output_count()
        for (topic, partition), offset in stage.rewind().items():
            try:
                consumer.seek(confluent_kafka.TopicPartition(topic, partition, offset))
            except confluent_kafka.KafkaException as err:  # reading on would lose the aborted span
                raise DeliveryFailed(
                    f"parse: could not read {topic}/{partition} again from {offset} after an aborted "
                    f"transaction ({_kafka_error(err)}): restart ssa parse"
                ) from None
        producer.begin_transaction()

    def safely(work: Callable[..., object], *args: Any) -> None:
        try:
            work(*args)
        except (confluent_kafka.KafkaException, DeliveryFailed) as exc:
            abort_and_rewind(exc)

    closing = [False]

    def on_revoke(_consumer: Any, partitions: list[Any]) -> None:
        try:
            if not closing[0]:
                safely(commit)  # the transaction holds output of every partition: commit it all
        finally:
            stage.forget({(tp.topic, tp.partition) for tp in partitions})

    def on_lost(_consumer: Any, partitions: list[Any]) -> None:
        stage.forget({(tp.topic, tp.partition) for tp in partitions})
        abort_and_rewind(DeliveryFailed("partitions lost"))  # their output must not be committed

    def on_assign(_consumer: Any, partitions: list[Any]) -> None:
        tps = {(tp.topic, tp.partition) for tp in partitions}
        if tps:
            n = stage.load_states(read_states(settings, tps))
            log.info("parse stage: %d partitions assigned, %d header states, %d positions", len(tps), n,
                     len(stage.positions))  # fmt: skip

    def publish_metrics(final: bool = False) -> None:
        docs = stage.metrics(final=final, lag=_lag(consumer, stage) if final or stage._minute >= 0 else None)
        for doc in docs:
            metrics_out.produce(settings.topic_metrics, json.dumps(doc).encode(), timestamp=doc["ts"])
        metrics_out.poll(0)

    if tenant_topics:
        pattern, reading = f"^{tenant_raw_topic_pattern()}$", f"{tenant_raw_prefix('<tenant>')}*"
    else:
        pattern, reading = raw_topic_pattern(settings.topic_raw_prefix), f"{settings.topic_raw_prefix}*"
    consumer.subscribe([pattern], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    say(f"parse: reading {reading} as group {group}, transactional id {txn_id}")
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
                safely(stage.process, good)
            now = time.monotonic()
            if now >= next_commit:
                safely(stage.flush_idle, now)
                safely(commit)
                publish_metrics()
                next_commit = now + commit_every_s
        safely(commit)
        publish_metrics(final=True)
    except KeyboardInterrupt:  # may have come mid-batch: abort; a restart replays from the last commit
        log.info("parse stage: interrupted, open transaction aborted")
    finally:
        metrics_out.flush(10)
        closing[0] = True
        with contextlib.suppress(Exception):
            producer.abort_transaction(10)  # the uncommitted output, or the empty one begun last
        consumer.close()
    st = stage.stats
    say(f"parse: {st.commits} transactions committed, {st.aborts} aborted, {st.replayed:,} records replayed, "
        f"{st.idle_flushes} held parses finished by the clock")  # fmt: skip
    return stage.stats


def _commit_transaction(producer: Any) -> None:
    """``commit_transaction``, retried while the error says a retry may succeed."""
    import confluent_kafka

    for attempt in range(5):
        try:
            producer.commit_transaction(60)
            return
        except confluent_kafka.KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is None or not err.retriable() or attempt == 4:
                raise
            time.sleep(0.5 * 2**attempt)


def _kafka_error(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if hasattr(err, "str") else str(exc)


def _raise_if_fatal(exc: BaseException, txn_id: str) -> None:
    """A fatal producer error (fenced by another process of the same transactional id, or
    unrecoverable) ends the stage with one line; an abortable one is handled by the caller."""
    import confluent_kafka

    err = exc.args[0] if isinstance(exc, confluent_kafka.KafkaException) and exc.args else None
    if err is None or not hasattr(err, "fatal"):
        return
    if err.code() == confluent_kafka.KafkaError._FENCED or err.name() in (
        "PRODUCER_FENCED",
        "INVALID_PRODUCER_EPOCH",
    ):
        raise TransactionFenced(
            f"parse: another ssa parse took transactional id {txn_id}: give each process its own "
            "(--transactional-id, setting parse_transactional_id)"
        ) from None
    if err.fatal():
        raise DeliveryFailed(f"parse: fatal Kafka producer error: {err.str()}") from None


def read_states(
    settings: Settings,
    partitions: set[TopicPartition],
    timeout_s: float = STATE_READ_S,
    settle_s: float = STATE_SETTLE_S,
) -> list[tuple[bytes, bytes | None]]:
    """The state topic's records (key, value) of the raw ``partitions``, read to its end (each of
    its partitions at its end for ``settle_s`` with nothing more). A topic that is missing or
    cannot be read in ``timeout_s`` gives what was read (logged): its sources are then read without
    priming, their rows to the DLQ until their next header."""
    import confluent_kafka

    topic = settings.topic_parse_state
    conn = kafka_config(settings, "confluent")
    reader = confluent_kafka.Consumer(
        {**conn, "group.id": f"{settings.parse_group_id}-state", "enable.auto.commit": False,
         "enable.partition.eof": True, "isolation.level": "read_committed", "logger": log}
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
        at_end: dict[int, float] = {}  # partition -> when its end was reached, nothing read since
        while left and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.2):
                err, partition = msg.error(), msg.partition() or 0
                if err is not None:
                    if err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                        at_end.setdefault(partition, time.monotonic())
                    continue
                at_end.pop(partition, None)  # a commit's records arrived after its end
                key = msg.key() or b""
                head = key[: key.find(b"\0", key.find(b"\0") + 1) + 1]
                if head in wanted:
                    out.append((key, msg.value()))
            now = time.monotonic()
            left -= {p for p, since in at_end.items() if now - since >= settle_s}
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
