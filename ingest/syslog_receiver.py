"""Syslog receiver: RFC 5424 / RFC 3164 messages over UDP, TCP and TLS, into the raw topics.

``ssa receive syslog`` runs it: hosts point the syslog daemon they already run (rsyslog's
``omfwd``, syslog-ng's ``network()``/``syslog()`` destinations, journald forwarders, network
devices) at it, and every message becomes one record on the raw topic of its format
(``ssa.raw.<format>``), where the parse stage runs the same parsers as ``ssa ingest``.

Transports
    * UDP (RFC 5426): one message per datagram; a datagram over ``max_message`` bytes is a DLQ
      record. UDP has no flow control: when the queue to Kafka is full a datagram is dropped and
      counted (``udp_dropped``); the socket asks for a 4 MiB receive buffer (like rsyslog's
      ``imudp`` ``RcvBufSize``) to ride out bursts.
    * TCP (RFC 6587) with the framing detected per connection from its first bytes: ``MSG-LEN SP``
      (a non-zero digit, at most 10 digits, then a space) is octet-counting (§3.4.1, rsyslog
      ``TCP_Framing="octet-counted"``, syslog-ng ``syslog()``); anything else is non-transparent
      framing with LF as the trailer (§3.4.2, the traditional default; a CR before the LF is
      dropped). Once chosen a connection keeps its framing. In octet-counting a length that is not
      a number closes the connection (the stream cannot be resynchronised), a length over
      ``max_message`` is a DLQ record and its octets are skipped; in LF framing a frame growing
      past ``max_message`` is a DLQ record and the rest is skipped up to the next LF.
    * TLS (RFC 5425) through the standard ``ssl`` module: TLS 1.2 or later (RFC 9662 updates the
      cipher suites of RFC 5425 to TLS 1.2), server certificate and key from files, client
      certificates required when a CA file is given (RFC 5425 §5.2, certificate-based
      authentication). The framing inside TLS is octet-counting by RFC 5425 §4.3; LF framing is
      accepted too, detected as for TCP (rsyslog sends either).

Limits (``Limits``; every one guards a resource an unauthenticated sender could otherwise hold)
    * ``max_message`` 64 KiB per message. RFC 5424 §6.1: receivers MUST accept 480 octets and
      SHOULD accept 2048; RFC 5425 §4.3.1: SHOULD accept 8192 (rsyslog's ``maxMessageSize``
      default is 8k). Linux audit records reach MAX_AUDIT_MESSAGE_LENGTH (8970 bytes) before the
      syslog header, so 8k would cut them; 64 KiB is also the DLQ's raw cap (``DLQ_RAW_CAP``)
      and fits one UDP datagram.
    * Per connection, at most one incomplete frame is held (``max_message`` plus its 11-byte
      length prefix): that is the per-connection memory bound.
    * ``max_connections`` 1000 open TCP/TLS connections (rsyslog's ``imtcp`` ``MaxSessions``
      defaults to 200; a fleet forwarding directly needs more; each costs a file descriptor, so
      ``ssa receive`` warns when the process limit is lower); a connection over the limit is
      closed at once and counted.
    * ``idle_timeout_s`` 900 s without a byte closes a connection (dead peers, half-open
      sockets); rsyslog and syslog-ng reconnect on their next message.
    * ``frame_timeout_s`` 30 s: a frame begun must be complete within this time, else its bytes
      go to the DLQ and the connection is closed (slow-loris senders, which send a byte now and
      then to stay under the idle timeout). Also the TLS handshake timeout.
    * The queue to the sink holds at most ``queue_records`` records and ``queue_bytes`` bytes.
      When it is full, TCP and TLS connections stop being read (``pause_reading``), so TCP flow
      control slows the senders down: nothing is dropped; UDP datagrams are dropped and counted.

The record (the raw-topic contract of ``ingest/raw.py``, built with its ``raw_topic`` and
``make_headers``)
    topic ``<topic_prefix><format>``; key ``syslog:<host>`` (the message's HOSTNAME, else the
    sender's address), so one host's lines stay in order in one partition (the sshd parser pairs
    "Invalid user" with the "Failed" line of the same pid, the auditd parser groups records by
    serial); headers ``ssa-format``, ``ssa-source`` (= the key), ``ssa-tenant`` (when given) and
    ``ssa-received-ms``; record timestamp = the time received. The value depends on the format:

    * ``syslog`` (the sshd/auth parser, which reads RFC 3164, RFC 3339-stamped and RFC 5424
      lines): an RFC 3164 or RFC 3339-stamped message loses only its ``<PRI>``, which makes it
      byte for byte the line rsyslog writes to ``/var/log/auth.log``: rsyslog's forwarding
      templates are its file templates with ``<%PRI%>`` in front (``RSYSLOG_TraditionalForward
      Format`` / ``RSYSLOG_TraditionalFileFormat``, ``RSYSLOG_ForwardFormat`` /
      ``RSYSLOG_FileFormat``), so a forwarded line gets the same event id as ``ssa ingest`` of the
      file. An RFC 5424 message is kept whole: the parser reads it as it is, and a conversion to
      the BSD shape would lose its year, zone, fraction and structured data.
    * any other text format (``auditd`` lines forwarded by rsyslog's ``imfile`` or the audisp
      syslog plugin, ``falco`` JSON through syslog, ...): the MSG part alone (after the RFC 3164
      TAG or the RFC 5424 structured data and BOM), which is the line as the tool wrote it in its
      own file. Binary formats (NetFlow) are not carried by syslog.
    * A message with no timestamp and hostname is completed as RFC 3164 §4.3.2-4.3.3 asks of a
      relay: the time received (UTC, which the parsers assume unless told ``--tz``) and the
      sender's address are put in front of its content. Such a message that is not text (binary
      junk) is a DLQ record instead.

    A frame is one message even when it holds LFs (octet-counting allows them); the parse stage
    reads such a value as its lines, in order (``ingest/raw.py``). A HOSTNAME that is not
    printable US-ASCII (RFC 5424 6.2.4) is replaced by the sender's address in the key.
    Blank messages are counted as skipped. DLQ records (``ingest/dlq.py``) have source
    ``syslog-receiver``, the connection as ``file`` (``tcp://ADDR:PORT``, ``tls://...``,
    ``udp://...``), the frame's number on the connection as ``line`` and its stream offset as
    ``offset``; they go through the same queue to the DLQ topic.

Shutdown (``stop``, or SIGTERM/SIGINT in ``serve``): stop listening, hand over the frames complete
in each connection's buffer (an incomplete one is a DLQ record, not a guess), close the
connections, then wait until the queue is empty and the sink has flushed. Bytes still in the
kernel's socket buffers are not read: plain syslog has no acknowledgement (RELP, RFC-less, does),
so a sender cannot know which of its last messages arrived.

Sinks (``RawSink``): ``KafkaRawSink`` (the project's producer settings, ``confluent_config``),
``JsonLinesRawSink`` (a file, for trials) and ``ListRawSink`` (tests). A sink is called from one
worker thread, with batches, so the event loop never waits on Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple, Protocol

import msgspec

from ingest.dlq import DlqRecord, encode_dlq, make_dlq
from ingest.parsers import get_format
from ingest.producer import (
    Client,
    DeliveryFailed,
    KafkaTarget,
    KafkaUnavailable,
    confluent_config,
    kafka_python_config,
)
from ingest.raw import HEADER_RECEIVED_MS, HEADER_SOURCE, make_headers, raw_topic

__all__ = [
    "DLQ_SOURCE",
    "JsonLinesRawSink",
    "KafkaRawSink",
    "Limits",
    "ListRawSink",
    "RawRecord",
    "RawSink",
    "RawTopicMissing",
    "ReceiverStats",
    "SyslogCodec",
    "SyslogReceiver",
    "server_ssl_context",
]

_LOG: Final = logging.getLogger("ingest.syslog")
_LOG.addHandler(logging.NullHandler())

DLQ_SOURCE: Final = "syslog-receiver"
_UDP_BURST: Final = 256
Transport = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True)
class Limits:
    """Resource bounds; the module docstring gives each default's source."""

    max_message: int = 64 * 1024
    max_connections: int = 1000
    idle_timeout_s: float = 900.0
    frame_timeout_s: float = 30.0
    queue_records: int = 20_000
    queue_bytes: int = 64 * 1024 * 1024
    batch_records: int = 2_000
    udp_rcvbuf: int = 4 * 1024 * 1024


class RawRecord(NamedTuple):
    """One record for a raw topic (``ingest/raw.py``)."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


Item = RawRecord | DlqRecord
_new_tuple: Final = tuple.__new__  # RawRecord(...) without NamedTuple's Python-level __new__


@dataclass
class ReceiverStats:
    datagrams: int = 0
    connections: int = 0
    frames: int = 0
    records: int = 0
    dlq: int = 0
    skipped: int = 0
    udp_dropped: int = 0
    refused: int = 0
    pauses: int = 0
    bytes: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    dlq_reasons: Counter[str] = field(default_factory=Counter)


# --- sinks -------------------------------------------------------------------------------------
class RawSink(Protocol):
    """Where records go. Called from one thread only, never from the event loop."""

    def send(self, batch: list[Item]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class ListRawSink:
    """Keeps everything in memory (tests)."""

    def __init__(self) -> None:
        self.records: list[RawRecord] = []
        self.dlq: list[DlqRecord] = []
        self.flushed = 0
        self.closed = False

    def send(self, batch: list[Item]) -> None:
        for item in batch:
            if isinstance(item, RawRecord):
                self.records.append(item)
            else:
                self.dlq.append(item)

    def flush(self) -> None:
        self.flushed += 1

    def close(self) -> None:
        self.closed = True


class JsonLinesRawSink:
    """Raw records as JSON lines (``{"topic", "key", "value", "encoding", "headers",
    "timestamp_ms"}``, value as text or base64) to ``path`` (``-``: stdout); DLQ records to
    ``path + ".dlq.jsonl"`` (stderr for stdout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._out: IO[bytes] = sys.stdout.buffer if self.path == "-" else open(self.path, "ab")  # noqa: SIM115
        self._dlq: IO[bytes] | None = None
        self._encoder = msgspec.json.Encoder()

    def send(self, batch: list[Item]) -> None:
        lines = []
        for item in batch:
            if isinstance(item, RawRecord):
                try:
                    value, encoding = item.value.decode("utf-8"), "utf-8"
                except UnicodeDecodeError:
                    value, encoding = base64.b64encode(item.value).decode("ascii"), "base64"
                doc = {
                    "topic": item.topic,
                    "key": item.key.decode("utf-8", "replace"),
                    "value": value,
                    "encoding": encoding,
                    "headers": {k: v.decode("utf-8", "replace") for k, v in item.headers},
                    "timestamp_ms": item.timestamp_ms,
                }
                lines.append(self._encoder.encode(doc) + b"\n")
            else:
                if self._dlq is None:
                    self._dlq = (
                        sys.stderr.buffer if self.path == "-" else open(self.path + ".dlq.jsonl", "ab")  # noqa: SIM115
                    )
                self._dlq.write(encode_dlq(item) + b"\n")
        self._out.write(b"".join(lines))

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


class RawTopicMissing(RuntimeError):
    """A topic the receiver writes to does not exist; ``topics`` names them."""

    def __init__(self, topics: list[str], where: str) -> None:
        super().__init__(f"topic(s) {', '.join(topics)} do not exist at {where}")
        self.topics = topics


class KafkaRawSink:
    """Raw records and DLQ records to Kafka, with the producer options of ``TelemetryProducer``
    (idempotent, ``acks=all``, lz4; the connection and security options of the ``KafkaTarget``).
    Checks at start that Kafka answers (``KafkaUnavailable``) and that ``topics`` exist
    (``RawTopicMissing``); refused messages are counted and make ``flush`` raise
    ``DeliveryFailed``."""

    def __init__(
        self,
        target: KafkaTarget,
        topics: Sequence[str],
        client: Client | None = None,
        *,
        connect_timeout_s: float = 5.0,
        flush_timeout_s: float = 120.0,
    ) -> None:
        self.target = target
        self.client: Client = client or "confluent"
        self.flush_timeout_s = flush_timeout_s
        self.failed = 0
        self.first_error: str | None = None
        self.sent = 0
        self._lock = threading.Lock()  # kafka-python calls errbacks from its own thread
        wanted = [*topics, target.dlq_topic]
        try:
            if self.client == "confluent":
                import confluent_kafka

                conf = confluent_config(target)
                conf["on_delivery"] = self._on_delivery
                conf["delivery.report.only.error"] = True
                conf["logger"] = _LOG
                self._producer: Any = confluent_kafka.Producer(conf)
                existing = set(self._producer.list_topics(timeout=connect_timeout_s).topics)
            else:
                import kafka

                self._producer = kafka.KafkaProducer(
                    **kafka_python_config(target), bootstrap_timeout_ms=int(connect_timeout_s * 1000)
                )
                existing = {t for t in wanted if self._producer.partitions_for(t)}
        except Exception as exc:  # client libraries raise many types; all mean "not reachable"
            raise KafkaUnavailable(f"{target.describe} is unreachable: {type(exc).__name__}: {exc}") from exc
        missing = [t for t in wanted if t not in existing]
        if missing:
            self._close_client()
            raise RawTopicMissing(missing, target.describe)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed(str(err))

    def _failed(self, error: str) -> None:
        with self._lock:
            self.failed += 1
            if self.first_error is None:
                self.first_error = error
            failed = self.failed
        if failed == 1 or failed % 10_000 == 0:  # a long-running receiver says so before it stops
            _LOG.error("%d messages not delivered to %s so far: %s", failed, self.target.describe, error)

    def send(self, batch: list[Item]) -> None:
        producer, dlq_topic = self._producer, self.target.dlq_topic
        if self.client == "confluent":
            produce = producer.produce
            for item in batch:
                if isinstance(item, RawRecord):
                    topic, key, value = item.topic, item.key, item.value
                    headers: Any = list(item.headers)
                    stamp = item.timestamp_ms
                else:
                    topic, key, value, headers, stamp = (
                        dlq_topic,
                        item.source.encode(),
                        encode_dlq(item),
                        None,
                        0,
                    )
                while True:
                    try:
                        produce(topic, value, key, headers=headers, timestamp=stamp)
                        break
                    except BufferError:  # librdkafka's queue is full: let it drain
                        producer.poll(0.05)
            producer.poll(0)
        else:
            for item in batch:
                if isinstance(item, RawRecord):
                    future = producer.send(item.topic, value=item.value, key=item.key,
                                           headers=list(item.headers), timestamp_ms=item.timestamp_ms)  # fmt: skip
                else:
                    future = producer.send(dlq_topic, value=encode_dlq(item), key=item.source.encode())
                future.add_errback(lambda exc: self._failed(f"{type(exc).__name__}: {exc}"))
        self.sent += len(batch)

    def flush(self) -> None:
        if self.client == "confluent":
            left = self._producer.flush(self.flush_timeout_s)
            if left:
                self._failed(f"{left} messages still queued after {self.flush_timeout_s:.0f} s")
                self.failed += left - 1
        else:
            try:
                self._producer.flush(timeout=self.flush_timeout_s)
            except Exception as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
        if self.failed:
            raise DeliveryFailed(
                f"{self.failed} messages were not delivered to {self.target.describe}: {self.first_error}"
            )

    def _close_client(self) -> None:
        if self.client == "kafka-python":
            self._producer.close(timeout=10)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._close_client()


# --- messages ----------------------------------------------------------------------------------
_MONTHS: Final = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# RFC 5424: VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP (then SD)
_HEAD_5424: Final = re.compile(
    rb"[1-9]\d? (?:-|\d{4}-\d\d-\d\dT\S+) (?P<host>\S{1,255}) \S{1,48} \S{1,128} \S{1,32} "
)
_SD: Final = re.compile(rb'(?:-|(?:\[[^\]"\s=]+(?: [^=\s\]"]+="(?:[^"\\]|\\.)*")*\])+)(?: |$)', re.S)
# RFC 3164 TIMESTAMP ("Jan  2 03:04:05", a fraction as some daemons write) or RFC 3339, HOSTNAME
_HEAD_LEGACY: Final = re.compile(
    rb"(?:" + _MONTHS + rb" {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d{1,9})?|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*)"
    rb" +(?P<host>[^\s\x00-\x1f]{1,255})(?: |$)"
)
_HOSTNAME: Final = re.compile(rb"[\x21-\x7e]{1,255}")
_TAG: Final = re.compile(rb"[^:\[\s]{1,48}(?:\[\d{1,10}\])?: ?")
_NOT_TEXT: Final = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_TRAILER: Final = b"\r\n\x00"
_BOM: Final = b"\xef\xbb\xbf"


class SyslogCodec:
    """Turns one syslog message into the raw record of its format (see the module docstring), a
    reason (str) for the DLQ, or None for a blank message."""

    def __init__(self, fmt: str, topic_prefix: str, tenant: str | None = None) -> None:
        """``KeyError`` for an unknown format, ``RawRejected`` for a tenant that is no tenant id."""
        self.fmt = get_format(fmt).name
        self.whole_line = self.fmt == "syslog"
        self.topic = raw_topic(topic_prefix, self.fmt)
        checked = make_headers(self.fmt, "syslog:-", tenant or None)  # refused now, not per record
        self._fixed = tuple(h for h in checked if h[0] != HEADER_SOURCE)
        self._sources: dict[bytes, tuple[bytes, tuple[tuple[str, bytes], ...]]] = {}
        self._stamp_s = -1
        self._stamp = b""
        self._last: tuple[bytes, tuple[tuple[str, bytes], ...]] = (b"", ())
        self._last_host: bytes | None = None
        self._last_ms = -1

    def _source(self, host: bytes, peer: str) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
        cached = self._sources.get(host)
        if cached is None:
            if _HOSTNAME.fullmatch(host) is None:  # RFC 5424 6.2.4: PRINTUSASCII, 1-255
                host = peer.encode()
                cached = self._sources.get(host)
                if cached is not None:
                    return cached
            if len(self._sources) >= 65_536:
                self._sources.clear()
            key = b"syslog:" + host
            cached = self._sources[host] = (key, (*self._fixed, (HEADER_SOURCE, key)))
        return cached

    def _relay_stamp(self, now_ms: int) -> bytes:
        """RFC 3164 TIMESTAMP of ``now_ms`` in UTC ("Jan  2 03:04:05"), cached per second."""
        second = now_ms // 1000
        if second != self._stamp_s:
            t = time.gmtime(second)
            month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
            self._stamp = (
                f"{month[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}".encode()
            )
            self._stamp_s = second
        return self._stamp

    def convert(self, msg: bytes, peer: str, now_ms: int) -> RawRecord | str | None:
        msg = msg.rstrip(_TRAILER)
        if not msg or msg.isspace():
            return None
        at = 0
        if msg[:1] == b"<":
            close = msg.find(b">", 2, 5)
            digits = msg[1:close]
            if close < 0 or not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1):
                return "bad PRI: '<' not followed by 1-3 digits and '>' (RFC 5424 6.2.1)"
            if int(digits) > 191:
                return f"bad PRI {int(digits)}: more than 191 (RFC 5424 6.2.1)"
            at = close + 1
            # VERSION is a non-zero digit (RFC 5424 6.2.2): the only way to tell it from a BSD date
            version = msg[at] if at < len(msg) else 0
            head = _HEAD_5424.match(msg, at) if 0x31 <= version <= 0x39 else None
            if head is not None:
                host = head["host"]
                if self.whole_line:
                    value = msg
                else:
                    sd = _SD.match(msg, head.end())
                    if sd is None:
                        return "bad RFC 5424 structured data"
                    value = msg[sd.end() :].removeprefix(_BOM)
                return self._record(peer.encode() if host == b"-" else host, peer, value, now_ms)
        head = _HEAD_LEGACY.match(msg, at)
        if head is not None:
            if self.whole_line:
                value = msg[at:] if at else msg
            else:
                body = head.end()
                tag = _TAG.match(msg, body)
                value = msg[tag.end() if tag is not None else body :]
            return self._record(head["host"], peer, value, now_ms)
        # No TIMESTAMP and HOSTNAME: complete them as a relay would (RFC 3164 4.3.2, 4.3.3).
        content = msg[at:]
        if _NOT_TEXT.search(content) is not None:
            return "not syslog: no RFC 3164/5424 header and not text (control bytes)"
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not syslog: no RFC 3164/5424 header and not UTF-8 text (byte {at + exc.start})"
        host = peer.encode()
        if self.whole_line:
            return self._record(host, peer, b"%s %s %s" % (self._relay_stamp(now_ms), host, content), now_ms)
        return self._record(host, peer, content, now_ms)

    def _record(self, host: bytes, peer: str, value: bytes, now_ms: int) -> RawRecord | None:
        if not value or value.isspace():
            return None
        if now_ms == self._last_ms and host == self._last_host:  # the common case: one sender's burst
            key, headers = self._last
        else:
            key, fixed = self._source(host, peer)
            headers = (*fixed, (HEADER_RECEIVED_MS, b"%d" % now_ms))
            self._last, self._last_host, self._last_ms = (key, headers), host, now_ms
        return _new_tuple(RawRecord, (self.topic, key, value, headers, now_ms))


# --- the queue to the sink ---------------------------------------------------------------------
class _Pipe:
    """Bounded queue from the event loop to the sink's worker thread. TCP connections pause
    while it is full (``paused``) and resume once it is at half."""

    def __init__(self, sink: RawSink, limits: Limits, stats: ReceiverStats) -> None:
        self.sink = sink
        self.limits = limits
        self.stats = stats
        self.items: deque[tuple[Item, int]] = deque()
        self.nbytes = 0
        self.paused: set[_Conn] = set()
        self.wakeup = asyncio.Event()
        self.closing = False
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="syslog-sink")
        self.error: BaseException | None = None

    def full(self) -> bool:
        return len(self.items) >= self.limits.queue_records or self.nbytes >= self.limits.queue_bytes

    def put(self, item: Item, size: int) -> None:
        self.items.append((item, size))
        self.nbytes += size
        if isinstance(item, DlqRecord):
            self.stats.dlq += 1
            self.stats.dlq_reasons[item.reason[:120]] += 1
        else:
            self.stats.records += 1
        if not self.wakeup.is_set():
            self.wakeup.set()

    def _resume(self) -> None:
        limits = self.limits
        if len(self.items) * 2 <= limits.queue_records and self.nbytes * 2 <= limits.queue_bytes:
            for conn in list(self.paused):
                conn.resume()
            self.paused.clear()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        items, limit = self.items, self.limits.batch_records
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while items:
                n = min(len(items), limit)
                batch = []
                for _ in range(n):
                    item, size = items.popleft()
                    batch.append(item)
                    self.nbytes -= size
                self._resume()
                try:
                    await loop.run_in_executor(self.executor, self.sink.send, batch)
                except Exception as exc:  # the sink failed: keep the loop alive, report at stop
                    if self.error is None:
                        self.error = exc
                    _LOG.error("syslog sink failed: %s: %s", type(exc).__name__, exc)
            if self.closing:
                return


# --- connections -------------------------------------------------------------------------------
class _Conn(asyncio.Protocol):
    """One TCP or TLS connection: framing detection, frames, limits.

    ``pending`` holds the bytes not yet framed, starting at stream offset ``offset``: in LF
    framing the frame in progress; in octet-counting a partial length prefix, or (``need`` > 0)
    the partial body of a frame of ``need`` octets whose prefix began at ``frame_start``."""

    def __init__(self, rx: SyslogReceiver, scheme: Transport) -> None:
        self.rx = rx
        self.scheme = scheme
        self.transport: asyncio.Transport | None = None
        self.name = f"{scheme}://?"
        self.peer = "?"
        self.mode: Literal["octet", "lf"] | None = None
        self.pending = bytearray()
        self.need = 0
        self.discard = 0  # octet: octets still to skip; lf: 1 while skipping to the next LF
        self.offset = 0
        self.frame_start = 0
        self.frame_no = 0
        self.last = 0.0
        self.frame_since: float | None = None
        self.paused = False
        self.closed = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = str(peer[0])
            self.name = f"{self.scheme}://{peer[0]}:{peer[1]}"
        rx = self.rx
        self.last = rx.loop.time()
        if len(rx.conns) >= rx.limits.max_connections or rx.stopping:
            rx.stats.refused += 1
            reason = "receiver stopping" if rx.stopping else f"connection limit {rx.limits.max_connections}"
            _LOG.warning("%s refused: %s", self.name, reason)
            self.closed = True
            transport.abort()
            return
        rx.conns.add(self)
        rx.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        rx = self.rx
        rx.stats.bytes += len(data)
        self.last = now = rx.loop.time()
        if self.mode is None:
            head = self._detect(data)
            if head is None:
                if self.frame_since is None:
                    self.frame_since = now
                return
            data = head
        if self.mode == "lf":
            self._lf(data)
        else:
            self._octets(data)
        if self.closed:
            return
        if self.pending or self.need or self.discard:
            if self.frame_since is None:
                self.frame_since = now
        else:
            self.frame_since = None
        if not self.paused and rx.pipe.full() and self.transport is not None:
            self.paused = True
            rx.stats.pauses += 1
            rx.pipe.paused.add(self)
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._finish(None)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._finish(None if exc is None else f"connection lost ({type(exc).__name__})")
            self.rx.stats.closed["peer closed" if exc is None else f"error: {type(exc).__name__}"] += 1
        self.closed = True
        self.rx.conns.discard(self)
        self.rx.pipe.paused.discard(self)

    def resume(self) -> None:
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.last = self.rx.loop.time()
            if self.frame_since is not None:
                self.frame_since = self.last
            self.transport.resume_reading()

    # framing
    def _detect(self, data: bytes) -> bytes | None:
        """Choose the framing from the first bytes (RFC 6587 3.4): the bytes to frame, or None
        while only digits have arrived."""
        head = bytes(self.pending) + data if self.pending else data
        digits = 0
        while digits < len(head) and digits < 11 and 0x30 <= head[digits] <= 0x39:
            digits += 1
        if digits == len(head) and digits <= 10:
            self.pending = bytearray(head)
            return None
        octet = 0 < digits <= 10 and head[0] != 0x30 and head[digits] == 0x20
        self.mode = "octet" if octet else "lf"
        self.pending = bytearray()
        return head

    def _lf(self, data: bytes) -> None:
        rx = self.rx
        limit = rx.limits.max_message
        if self.discard:  # skipping an oversized frame up to its LF
            cut = data.find(b"\n")
            if cut < 0:
                self.offset += len(data)
                return
            self.discard = 0
            self.offset += cut + 1
            data = data[cut + 1 :]
        if self.pending:
            self.pending += data
            if b"\n" not in data:
                if len(self.pending) > limit:
                    self._oversized_lf()
                return
            chunk = bytes(self.pending)
            self.pending = bytearray()
        else:
            chunk = data
        parts = chunk.split(b"\n")
        tail = parts.pop()
        now_ms = time.time_ns() // 1_000_000
        offset = self.offset
        for part in parts:
            self.frame_no += 1
            if len(part) > limit:
                self._dlq(f"frame of {len(part)} bytes is over the {limit}-byte limit", part, offset)
            else:
                rx.message(part, self, offset, now_ms)
            offset += len(part) + 1
        self.offset = offset
        if tail:
            self.pending = bytearray(tail)
            if len(tail) > limit:
                self._oversized_lf()

    def _oversized_lf(self) -> None:
        self.frame_no += 1
        limit = self.rx.limits.max_message
        self._dlq(f"frame over the {limit}-byte limit without a newline; skipped up to the next newline",
                  bytes(self.pending), self.offset)  # fmt: skip
        self.offset += len(self.pending)
        self.pending = bytearray()
        self.discard = 1

    def _octets(self, data: bytes) -> None:
        if self.discard:
            skip = min(self.discard, len(data))
            self.discard -= skip
            self.offset += skip
            if self.discard:
                return
            data = data[skip:]
        if self.need and len(self.pending) + len(data) < self.need:  # still collecting one frame
            self.pending += data
            return
        buf = bytes(self.pending) + data if self.pending else data
        self.pending = bytearray()
        rx = self.rx
        limit = rx.limits.max_message
        base, pos, end = self.offset, 0, len(buf)  # base: stream offset of buf[0]
        now_ms = time.time_ns() // 1_000_000
        while True:
            if self.need == 0:
                while pos < end and buf[pos] in b"\r\n\x00":  # stray trailers between frames
                    pos += 1
                if pos == end:
                    break
                space = buf.find(b" ", pos, pos + 11)
                if space < 0:
                    if end - pos > 10 or not buf[pos:end].isdigit():
                        self._bad_count(buf[pos:], base + pos)
                        return
                    break  # the length is still arriving
                digits = buf[pos:space]
                if not digits.isdigit() or digits[:1] == b"0":
                    self._bad_count(buf[pos:], base + pos)
                    return
                size = int(digits)
                self.frame_no += 1
                self.frame_start = base + pos
                pos = space + 1
                if size > limit:
                    self._dlq(f"octet count {size} is over the {limit}-byte limit; frame skipped",
                              buf[pos : pos + limit], self.frame_start, raw_len=size)  # fmt: skip
                    have = min(size, end - pos)
                    pos += have
                    self.discard = size - have
                    if self.discard:
                        break
                    continue
                self.need = size
            if end - pos < self.need:
                break
            rx.message(buf[pos : pos + self.need], self, self.frame_start, now_ms)
            pos += self.need
            self.need = 0
        self.offset = base + pos
        if pos < end:
            self.pending = bytearray(buf[pos:])

    def _bad_count(self, junk: bytes, offset: int) -> None:
        self.frame_no += 1
        self._dlq("bad octet count: MSG-LEN SP expected (RFC 6587 3.4.1); connection closed", junk, offset)
        self.close("bad octet count")

    def _dlq(self, reason: str, raw: bytes, offset: int, raw_len: int | None = None) -> None:
        record = make_dlq(DLQ_SOURCE, reason, raw, line=self.frame_no, offset=offset, file=self.name,
                          raw_len=raw_len)  # fmt: skip
        self.rx.pipe.put(record, min(len(raw), 65_536))

    def _finish(self, why: str | None) -> None:
        """Hand over what the buffer holds when the connection ends: ``why`` None at the
        sender's end of stream, else the reason it was cut."""
        if self.mode == "lf" and self.pending and not self.discard:
            self.frame_no += 1
            if why is None:  # the last line of a sender that closed without a trailing LF
                self.rx.message(bytes(self.pending), self, self.offset, time.time_ns() // 1_000_000)
            else:
                self._dlq(f"incomplete frame: {why}", bytes(self.pending), self.offset)
        elif self.mode == "octet" and (self.pending or self.need):
            what = f"{len(self.pending)} of {self.need} octets" if self.need else "a partial octet count"
            start = self.frame_start if self.need else self.offset
            self._dlq(f"incomplete frame ({what}): {why or 'sender closed the connection'}",
                      bytes(self.pending), start)  # fmt: skip
        elif self.mode is None and self.pending:
            self._dlq(f"incomplete frame: {why or 'sender closed the connection'}", bytes(self.pending), 0)
        self.pending = bytearray()
        self.need = 0

    def close(self, reason: str, cut: str | None = None) -> None:
        """Close the connection; ``cut``: hand over the buffer first (DLQ for a partial frame)."""
        if self.closed:
            return
        if cut is not None:
            self._finish(cut)
        self.closed = True
        self.rx.stats.closed[reason] += 1
        _LOG.info("%s closed: %s", self.name, reason)
        self.rx.conns.discard(self)
        self.rx.pipe.paused.discard(self)
        if self.transport is not None:
            if cut == "receiver stopping":
                self.transport.close()
            else:
                self.transport.abort()

    def check(self, now: float) -> None:
        """Idle and slow-frame timeouts (called by the receiver's sweeper)."""
        if self.paused:  # we stopped reading: not the sender's fault
            return
        limits = self.rx.limits
        if self.frame_since is not None and now - self.frame_since > limits.frame_timeout_s:
            why = f"frame incomplete after {limits.frame_timeout_s:g} s (slow sender)"
            self.close(why, cut=why)
        elif now - self.last > limits.idle_timeout_s:
            self.close(f"idle for {limits.idle_timeout_s:g} s")


class _UdpReader:
    """One UDP socket read straight from the loop's selector: up to ``_UDP_BURST`` datagrams per
    wake-up (asyncio's datagram transport reads one per loop iteration, which caps a receiver
    far below what the kernel delivers)."""

    def __init__(self, rx: SyslogReceiver, sock: socket.socket) -> None:
        self.rx = rx
        self.sock = sock
        self.buf = bytearray(65_536)  # the largest UDP payload fits
        self.view = memoryview(self.buf)

    def ready(self) -> None:
        recv, view = self.sock.recvfrom_into, self.view
        for _ in range(_UDP_BURST):
            try:
                size, addr = recv(self.buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors and the like: the socket goes on
                _LOG.warning("UDP receive error: %s", exc)
                return
            self.datagram(bytes(view[:size]), addr)

    def drain(self) -> None:
        """Read what the kernel still holds (at shutdown)."""
        for _ in range(1_000):
            before = self.rx.stats.datagrams
            self.ready()
            if self.rx.stats.datagrams - before < _UDP_BURST:
                return

    def datagram(self, data: bytes, addr: Any) -> None:
        rx = self.rx
        stats = rx.stats
        stats.datagrams += 1
        stats.bytes += len(data)
        pipe = rx.pipe
        if pipe.full():
            stats.udp_dropped += 1
            return
        peer = str(addr[0])
        if len(data) > rx.limits.max_message:
            reason = f"datagram of {len(data)} bytes is over the {rx.limits.max_message}-byte limit"
            pipe.put(
                make_dlq(DLQ_SOURCE, reason, data, file=f"udp://{peer}:{addr[1]}"), min(len(data), 65_536)
            )
            return
        out = rx.codec.convert(data, peer, time.time_ns() // 1_000_000)
        if out is None:
            stats.skipped += 1
        elif type(out) is str:
            pipe.put(make_dlq(DLQ_SOURCE, out, data, file=f"udp://{peer}:{addr[1]}"), len(data))
        else:
            pipe.put(out, len(data))  # type: ignore[arg-type]


# --- the receiver ------------------------------------------------------------------------------
def server_ssl_context(
    cert: str | Path, key: str | Path, client_ca: str | Path | None = None
) -> ssl.SSLContext:
    """TLS server context for RFC 5425: TLS 1.2+, our certificate; client certificates required
    and checked against ``client_ca`` when given."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: they are the only bytes we send, and a sender that never reads
    # them and closes (syslog is one-way) makes its kernel answer with a RST, which throws away
    # whatever of its last messages we had not read yet (seen on localhost: 27,000 of 500,000).
    ctx.num_tickets = 0
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class SyslogReceiver:
    """UDP, TCP and TLS listeners feeding one sink through a bounded queue (module docstring).

    ``await start(udp=..., tcp=..., tls=...)`` binds (port 0 picks a free port: ``bound`` lists
    what was bound), ``await stop()`` shuts down cleanly, ``await serve()`` runs until SIGTERM
    or SIGINT and then stops."""

    def __init__(
        self,
        sink: RawSink,
        *,
        fmt: str = "syslog",
        topic_prefix: str = "ssa.raw.",
        tenant: str | None = None,
        limits: Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.codec = SyslogCodec(fmt, topic_prefix, tenant)
        self.stats = ReceiverStats()
        self.sink = sink
        self.ssl_context = ssl_context
        self.conns: set[_Conn] = set()
        self.bound: list[tuple[Transport, str, int]] = []
        self.stopping = False
        self._servers: list[asyncio.Server] = []
        self._udp: list[_UdpReader] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def start(
        self,
        udp: Iterable[tuple[str, int]] = (),
        tcp: Iterable[tuple[str, int]] = (),
        tls: Iterable[tuple[str, int]] = (),
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.pipe = _Pipe(self.sink, self.limits, self.stats)
        self._tasks = [asyncio.create_task(self.pipe.run()), asyncio.create_task(self._sweep())]
        try:
            for host, port in udp:
                family, kind, proto, _name, addr = (
                    await self._loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                )[0]
                sock = socket.socket(family, kind, proto)
                try:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.limits.udp_rcvbuf)
                    sock.bind(addr)
                    sock.setblocking(False)
                except BaseException:
                    sock.close()
                    raise
                reader = _UdpReader(self, sock)
                self._udp.append(reader)
                self._loop.add_reader(sock.fileno(), reader.ready)
                name = sock.getsockname()
                self.bound.append(("udp", str(name[0]), int(name[1])))
            tls_list = list(tls)
            if tls_list and self.ssl_context is None:
                raise ValueError("a TLS listener needs an ssl_context (server_ssl_context)")
            for scheme, addrs in (("tcp", list(tcp)), ("tls", tls_list)):
                for host, port in addrs:
                    server = await self._loop.create_server(
                        lambda s=scheme: _Conn(self, s),
                        host,
                        port,
                        ssl=self.ssl_context if scheme == "tls" else None,
                        ssl_handshake_timeout=self.limits.frame_timeout_s if scheme == "tls" else None,
                        reuse_address=True,
                    )
                    self._servers.append(server)
                    for sock in server.sockets:
                        name = sock.getsockname()
                        self.bound.append((scheme, str(name[0]), int(name[1])))  # type: ignore[arg-type]
        except BaseException:
            await self.stop()
            raise

    def message(self, frame: bytes, conn: _Conn, offset: int, now_ms: int) -> None:
        """One frame of a connection: a record, a DLQ record or a counted skip."""
        stats = self.stats
        stats.frames += 1
        out = self.codec.convert(frame, conn.peer, now_ms)
        if out is None:
            stats.skipped += 1
        elif type(out) is str:
            conn._dlq(out, frame, offset)
        else:
            self.pipe.put(out, len(frame))  # type: ignore[arg-type]

    async def _sweep(self) -> None:
        tick = max(0.05, min(1.0, self.limits.frame_timeout_s / 4, self.limits.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(tick)
            now = self._loop.time()
            for conn in list(self.conns):
                conn.check(now)

    async def stop(self) -> ReceiverStats:
        """Stop listening, hand over complete frames, drain the queue, flush and close the sink.
        Raises the sink's first error (``DeliveryFailed``...) after everything else is done."""
        if self._stopped:
            return self.stats
        self._stopped = True
        self.stopping = True
        for server in self._servers:
            server.close()
        for reader in self._udp:
            self._loop.remove_reader(reader.sock.fileno())
            reader.drain()
            reader.sock.close()
        for conn in list(self.conns):
            conn.close("receiver stopping", cut="receiver stopping")
        pipe: _Pipe | None = getattr(self, "pipe", None)
        error: BaseException | None = None
        if pipe is not None:
            self._tasks[1].cancel()
            pipe.closing = True
            pipe.wakeup.set()
            await asyncio.gather(self._tasks[0], return_exceptions=True)
            error = pipe.error
            try:
                await self._loop.run_in_executor(pipe.executor, self.sink.flush)
            except Exception as exc:
                error = error or exc
            try:
                await self._loop.run_in_executor(pipe.executor, self.sink.close)
            except Exception as exc:
                error = error or exc
            pipe.executor.shutdown(wait=True)
            await asyncio.gather(self._tasks[1], return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        if error is not None:
            raise error
        return self.stats

    async def serve(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> ReceiverStats:
        """Run until one of ``signals`` arrives, then ``stop``."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        return await self.stop()
