"""The syslog receiver (ingest/syslog_receiver.py) over real local sockets: UDP, TCP with both
RFC 6587 framings, TLS, hostile senders, backpressure, shutdown, and the ``ssa receive syslog``
command under SIGTERM. No Kafka: records land in a ``ListRawSink`` (the Kafka sink is checked
against a stand-in producer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest.dlq import raw_bytes
from ingest.parsers import parse_bytes
from ingest.producer import DeliveryFailed, KafkaTarget
from ingest.raw import RawHeaders, RawRejected, read_headers
from ingest.syslog_receiver import (
    DLQ_SOURCE,
    Item,
    KafkaRawSink,
    Limits,
    ListRawSink,
    RawRecord,
    RawTopicMissing,
    SyslogCodec,
    SyslogReceiver,
    server_ssl_context,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "samples"
LOCAL = ("127.0.0.1", 0)
NOW_MS = 1_796_000_000_000


def _auth_lines() -> list[bytes]:
    """Lines of the sshd sample that are auth events (so ids can be compared)."""
    lines = (SAMPLES / "auth.log").read_bytes().splitlines()
    auth = [ln for ln in lines if b"Failed password" in ln or b"Accepted" in ln]
    real = [ln for ln in auth if not ln.startswith(b"<")]  # RFC 3164 lines (no PRI yet)
    more = [b"Dec 10 11:00:%02d LabSZ sshd[%d]: Failed password for root from 10.9.0.%d port 22 ssh2"
            % (i, 3000 + i, i) for i in range(15)]  # fmt: skip
    return real + more


def _ids(fmt: str, lines: list[bytes]) -> list[str]:
    out = parse_bytes(fmt, b"\n".join(lines) + b"\n")
    return [e.id for e in out.events]


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


async def _started(sink: Any = None, *, tls: ssl.SSLContext | None = None, **kw: Any) -> SyslogReceiver:
    rx = SyslogReceiver(sink if sink is not None else ListRawSink(), ssl_context=tls, **kw)
    await rx.start(udp=[LOCAL], tcp=[LOCAL], tls=[LOCAL] if tls else [])
    return rx


def _port(rx: SyslogReceiver, scheme: str) -> int:
    return next(port for s, _host, port in rx.bound if s == scheme)


def _sink(rx: SyslogReceiver) -> ListRawSink:
    assert isinstance(rx.sink, ListRawSink)
    return rx.sink


async def _tcp(
    rx: SyslogReceiver, scheme: str = "tcp", **kw: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(rx, scheme), **kw)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
    return reader, writer


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


# --- message shapes ---------------------------------------------------------------------------
def test_rfc3164_forwarded_line_loses_only_its_pri_and_keeps_the_file_event_ids() -> None:
    codec = SyslogCodec("syslog", "ssa.raw.")
    lines = _auth_lines()
    assert len(lines) >= 5
    values = []
    for line in lines:
        rec = codec.convert(b"<38>" + line + b"\n", "10.1.1.1", NOW_MS)
        assert isinstance(rec, RawRecord)
        values.append(rec.value)
    assert values == lines  # what rsyslog writes to auth.log
    assert _ids("syslog", values) == _ids("syslog", lines) != []
    rec = codec.convert(b"<38>" + lines[0], "10.1.1.1", NOW_MS)
    assert isinstance(rec, RawRecord)
    assert rec.topic == "ssa.raw.syslog" and rec.key == b"syslog:LabSZ" and rec.timestamp_ms == NOW_MS
    assert read_headers(rec.headers, "syslog", rec.key, rec.topic) == RawHeaders(
        "syslog", "syslog:LabSZ", None, NOW_MS
    )  # what the parse stage reads (ingest/raw.py)
    assert dict(rec.headers) == {"ssa-format": b"syslog", "ssa-source": b"syslog:LabSZ",
                                 "ssa-received-ms": str(NOW_MS).encode()}  # fmt: skip


def test_rfc5424_and_rfc3339_messages() -> None:
    codec = SyslogCodec("syslog", "ssa.raw.", tenant="t-acme")
    msg = (b'<38>1 2026-11-30T10:00:00.5+01:00 web-1 sshd 4242 - [origin ip="10.0.0.1"] '
           b"Failed password for root from 203.0.113.9 port 5022 ssh2")  # fmt: skip
    rec = codec.convert(msg, "10.1.1.1", NOW_MS)
    assert isinstance(rec, RawRecord)
    assert rec.value == msg and rec.key == b"syslog:web-1"  # kept whole: the parser reads RFC 5424
    assert dict(rec.headers)["ssa-tenant"] == b"t-acme"
    (event,) = parse_bytes("syslog", rec.value).events
    ts = int(datetime(2026, 11, 30, 9, 0, 0, 500_000, tzinfo=UTC).timestamp() * 1000)
    assert (event.ts, event.user, event.src_ip) == (ts, "root", "203.0.113.9")  # type: ignore[union-attr]
    nil_host = codec.convert(b"<38>1 - - sshd - - - hello", "10.1.1.1", NOW_MS)
    assert isinstance(nil_host, RawRecord) and nil_host.key == b"syslog:10.1.1.1"
    odd_host = codec.convert("<38>1 - hôst sshd - - - hello".encode(), "10.1.1.1", NOW_MS)
    assert isinstance(odd_host, RawRecord) and odd_host.key == b"syslog:10.1.1.1"
    assert read_headers(odd_host.headers, "syslog", odd_host.key).tenant == "t-acme"
    with pytest.raises(RawRejected):
        SyslogCodec("syslog", "ssa.raw.", tenant="bad tenant!")
    assert SyslogCodec("sshd", "ssa.raw.").topic == "ssa.raw.syslog"  # aliases resolved
    iso = (
        b"2026-11-30T10:00:00.123456+00:00 web-2 sshd[7]: Accepted publickey for a from 10.0.0.2 port 1 ssh2"
    )
    rec = codec.convert(b"<86>" + iso, "10.1.1.1", NOW_MS)
    assert isinstance(rec, RawRecord) and rec.value == iso and rec.key == b"syslog:web-2"


def test_headerless_text_is_completed_as_a_relay_would_and_junk_is_refused() -> None:
    codec = SyslogCodec("syslog", "ssa.raw.")
    rec = codec.convert(b"<13>hello world", "192.0.2.7", NOW_MS)
    assert isinstance(rec, RawRecord)
    assert re.fullmatch(rb"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d 192\.0\.2\.7 hello world", rec.value)
    out = parse_bytes("syslog", rec.value)
    assert (len(out.events), len(out.dlqs), sum(out.skipped.values())) == (0, 0, 1)  # valid, not auth
    assert "not text" in str(codec.convert(b"\x00\x01\xff\xfebinary", "192.0.2.7", NOW_MS))
    assert "UTF-8" in str(codec.convert(b"<13>\xff\xfe\xfd", "192.0.2.7", NOW_MS))
    assert "bad PRI 999" in str(codec.convert(b"<999>Jan 12 10:00:00 h x: y", "h", NOW_MS))
    assert "bad PRI" in str(codec.convert(b"<abc>x", "h", NOW_MS))
    assert codec.convert(b"\r\n", "h", NOW_MS) is None
    assert codec.convert(b"<13>1 - h a - - -", "h", NOW_MS) is not None  # empty MSG, still a line


def test_auditd_format_carries_the_audit_line_itself() -> None:
    lines = (SAMPLES / "audit.log").read_bytes().splitlines()[:40]
    codec = SyslogCodec("auditd", "ssa.raw.")
    values = []
    for i, line in enumerate(lines):
        if i % 2:  # rsyslog imfile with Tag "audit:", forwarded in RFC 3164 shape
            msg = b"<133>Mar  5 10:00:00 hv-01 audit: " + line
        else:  # or RFC 5424 with structured data and a BOM
            msg = b'<133>1 2024-03-05T10:00:00Z hv-01 audit - - [x@1 a="b\\]c"] \xef\xbb\xbf' + line
        rec = codec.convert(msg, "10.0.0.1", NOW_MS)
        assert isinstance(rec, RawRecord), rec
        assert rec.topic == "ssa.raw.auditd"
        values.append(rec.value)
    assert values == lines
    assert _ids("auditd", values) == _ids("auditd", lines) != []
    assert "structured data" in str(codec.convert(b"<133>1 - h a - - [broken", "h", NOW_MS))


# --- transports -------------------------------------------------------------------------------
def test_udp_one_message_per_datagram() -> None:
    async def test() -> None:
        rx = await _started()
        lines = _auth_lines()[:5]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for line in lines:
                s.sendto(b"<38>" + line + b"\n", ("127.0.0.1", _port(rx, "udp")))
            s.sendto(b"\x00\xffjunk\x01", ("127.0.0.1", _port(rx, "udp")))
        await _until(lambda: rx.stats.datagrams == 6)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for line in lines * 20:  # in the kernel's buffer, unread, when stop() begins
                s.sendto(b"<38>" + line, ("127.0.0.1", _port(rx, "udp")))
        await rx.stop()
        sink = _sink(rx)
        assert [r.value for r in sink.records] == lines * 21
        (dlq,) = sink.dlq
        assert dlq.source == DLQ_SOURCE and dlq.encoding == "base64" and dlq.file
        assert dlq.file.startswith("udp://127.0.0.1:") and raw_bytes(dlq) == b"\x00\xffjunk\x01"
        assert sink.closed and sink.flushed >= 1

    _run(test)


def test_tcp_newline_framing_split_and_several_per_segment() -> None:
    async def test() -> None:
        rx = await _started()
        lines = [b"<38>" + ln for ln in _auth_lines()[:6]]
        _reader, writer = await _tcp(rx)
        writer.write(lines[0] + b"\n" + lines[1] + b"\r\n" + lines[2] + b"\n")  # three in one segment
        await writer.drain()
        for piece in (lines[3][:3], lines[3][3:20], lines[3][20:] + b"\n" + lines[4][:10]):
            writer.write(piece)  # a frame split across segments (inside the PRI too)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(lines[4][10:] + b"\n\n" + lines[5])  # a blank line; the last without LF
        await writer.drain()
        await _until(lambda: rx.stats.frames >= 6)
        writer.close()
        await _until(lambda: rx.stats.frames == 7)  # the unterminated last line, at EOF
        await rx.stop()
        sink = _sink(rx)
        assert [b"<38>" + r.value for r in sink.records] == lines
        assert (rx.stats.skipped, sink.dlq) == (1, [])

    _run(test)


def test_tcp_octet_counting_split_inside_the_length_and_the_body() -> None:
    async def test() -> None:
        rx = await _started()
        msgs = [b"<38>" + ln for ln in _auth_lines()[:4]]
        multi = b"<38>Jan 12 10:00:00 h1 app: first line\nsecond line"  # LF inside a counted frame
        frames = [b"%d %s" % (len(m), m) for m in [*msgs, multi]]
        _reader, writer = await _tcp(rx)
        writer.write(frames[0] + frames[1])
        await writer.drain()
        await asyncio.sleep(0.05)
        for piece in (frames[2][:1], frames[2][1:2], frames[2][2:30], frames[2][30:] + frames[3][:2]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(frames[3][2:] + frames[4])
        await writer.drain()
        await _until(lambda: rx.stats.frames == 5)
        writer.close()
        await rx.stop()
        sink = _sink(rx)
        assert [b"<38>" + r.value for r in sink.records] == [*msgs, multi]
        assert sink.dlq == []

    _run(test)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed server certificate for 127.0.0.1 and a self-signed client certificate, made
    with the openssl CLI (``cryptography`` is not in requirements.lock)."""
    if shutil.which("openssl") is None:
        pytest.skip("TLS tests need the openssl command (cryptography is not in requirements.lock)")
    d = tmp_path_factory.mktemp("certs")
    for name, cn in (("server", "127.0.0.1"), ("client", "feeder-1")):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={cn}",
                 "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / f"{name}.key"),
                 "-out", str(d / f"{name}.pem"))  # fmt: skip
    return d


def test_tls_octet_counting_and_client_certificates(certs: Path) -> None:
    async def test() -> None:
        server = server_ssl_context(certs / "server.pem", certs / "server.key", certs / "client.pem")
        rx = await _started(tls=server)
        client = ssl.create_default_context(cafile=str(certs / "server.pem"))
        client.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        msgs = [b"<38>" + ln for ln in _auth_lines()[:3]]
        _reader, writer = await _tcp(rx, "tls", ssl=client, server_hostname="127.0.0.1")
        blob = b"".join(b"%d %s" % (len(m), m) for m in msgs)
        writer.write(blob[:25])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(blob[25:])
        await writer.drain()
        await _until(lambda: rx.stats.frames == 3)
        writer.close()
        # Without a client certificate the handshake is refused (RFC 5425 5.2 with a CA given):
        # with TLS 1.3 the client learns it on its first read, as an alert or a closed stream.
        anonymous = ssl.create_default_context(cafile=str(certs / "server.pem"))
        r2, w2 = await _tcp(rx, "tls", ssl=anonymous, server_hostname="127.0.0.1")
        w2.write(b"%d %s" % (len(msgs[0]), msgs[0]))
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await w2.drain()
            assert await asyncio.wait_for(r2.read(), 5) == b""
        await rx.stop()
        assert [b"<38>" + r.value for r in _sink(rx).records] == msgs
        assert rx.stats.connections == 1

    _run(test)


def test_tls_sender_that_closes_without_reading_loses_nothing(certs: Path) -> None:
    """A one-way sender closes while we are still reading (backpressure). If we had sent it
    anything (TLS 1.3 session tickets), its close would be a RST and the unread tail lost."""

    async def test() -> None:
        server = server_ssl_context(certs / "server.pem", certs / "server.key")
        rx = await _started(SlowSink(0.002), tls=server, limits=Limits(queue_records=200, batch_records=100))
        line = b"<38>" + _auth_lines()[0]
        frame = b"%d %s" % (len(line), line)

        def send() -> None:
            client = ssl.create_default_context(cafile=str(certs / "server.pem"))
            with socket.create_connection(("127.0.0.1", _port(rx, "tls"))) as raw:
                tls = client.wrap_socket(raw, server_hostname="127.0.0.1")
                tls.sendall(frame * 20_000)
                tls.close()  # never reads, never unwraps

        await asyncio.get_running_loop().run_in_executor(None, send)
        await _until(lambda: sum(rx.stats.closed.values()) > 0, 30)
        await rx.stop()
        assert len(_sink(rx).records) == 20_000 and rx.stats.pauses > 0

    _run(test)


# --- hostile senders --------------------------------------------------------------------------
SMALL = Limits(max_message=1024, frame_timeout_s=0.3, idle_timeout_s=0.6)


def test_oversized_frames_go_to_the_dlq_and_the_connection_goes_on() -> None:
    async def test() -> None:
        rx = await _started(limits=SMALL)
        good = b"<38>" + _auth_lines()[0]
        _r, lf = await _tcp(rx)
        lf.write(b"<13>" + b"A" * 3000)  # over the limit before any LF arrives
        await lf.drain()
        await asyncio.sleep(0.05)
        lf.write(b"B" * 500 + b"\n" + good + b"\n" + b"C" * 2000 + b"\n" + good + b"\n")
        await lf.drain()
        _r2, octet = await _tcp(rx)
        octet.write(b"5000 " + b"D" * 2000)
        await octet.drain()
        await asyncio.sleep(0.05)
        octet.write(b"E" * 3000 + b"%d %s" % (len(good), good))
        await octet.drain()
        await _until(lambda: rx.stats.records == 3 and rx.stats.dlq == 3)
        assert not rx.stats.closed  # both connections still open
        lf.close()
        octet.close()
        await rx.stop()
        sink = _sink(rx)
        assert [r.value for r in sink.records] == [good[4:]] * 3
        reasons = [d.reason for d in sink.dlq]
        assert len(reasons) == 3 and all("1024-byte limit" in r for r in reasons), reasons
        skipped_octets = next(d for d in sink.dlq if "octet count 5000" in d.reason)
        assert skipped_octets.raw_len == 5000 and skipped_octets.truncated
        assert skipped_octets.file and skipped_octets.file.startswith("tcp://127.0.0.1:")

    _run(test)


def test_bad_octet_count_closes_the_connection_with_a_dlq_record() -> None:
    async def test() -> None:
        rx = await _started(limits=SMALL)
        good = b"<38>" + _auth_lines()[0]
        reader, writer = await _tcp(rx)
        writer.write(b"%d %s" % (len(good), good) + b"12x3 garbage")
        await writer.drain()
        assert await _closed_by_server(reader)
        await rx.stop()
        sink = _sink(rx)
        assert [r.value for r in sink.records] == [good[4:]]
        (dlq,) = sink.dlq
        assert "bad octet count" in dlq.reason and raw_bytes(dlq) == b"12x3 garbage"
        assert (dlq.line, dlq.offset) == (2, len(good) + len(str(len(good))) + 1)
        assert rx.stats.closed["bad octet count"] == 1

    _run(test)


def test_binary_junk_over_tcp_is_a_dlq_record_per_frame() -> None:
    async def test() -> None:
        rx = await _started(limits=SMALL)
        _r, writer = await _tcp(rx)
        writer.write(
            b"<13>\xff\xfe\x00\x01\n" + bytes(range(1, 10)) + b"\n" + b"<38>" + _auth_lines()[0] + b"\n"
        )
        await writer.drain()
        await _until(lambda: rx.stats.frames == 3)
        writer.close()
        await rx.stop()
        sink = _sink(rx)
        assert len(sink.records) == 1 and len(sink.dlq) == 2
        assert all(d.reason.startswith("not syslog") for d in sink.dlq)
        assert [d.line for d in sink.dlq] == [1, 2]

    _run(test)


def test_slow_loris_and_idle_connections_are_closed() -> None:
    async def test() -> None:
        rx = await _started(limits=SMALL)
        slow_r, slow = await _tcp(rx)
        idle_r, _idle = await _tcp(rx)
        started = time.monotonic()
        for byte in b"<13>Jan 12 10:00:00 h x":  # a byte every 0.1 s: never idle, never done
            if slow.is_closing() or slow_r.at_eof():
                break
            try:
                slow.write(bytes([byte]))
                await slow.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.1)
        assert await _closed_by_server(slow_r)
        assert time.monotonic() - started < 2.0
        assert await _closed_by_server(idle_r)
        await rx.stop()
        (dlq,) = _sink(rx).dlq
        assert "slow sender" in dlq.reason and b"<1" in raw_bytes(dlq)
        assert rx.stats.closed["frame incomplete after 0.3 s (slow sender)"] == 1
        assert rx.stats.closed["idle for 0.6 s"] == 1

    _run(test)


def test_connection_limit() -> None:
    async def test() -> None:
        rx = await _started(limits=Limits(max_connections=1))
        line = b"<38>" + _auth_lines()[0] + b"\n"
        _r1, first = await _tcp(rx)
        first.write(line)
        await first.drain()
        await _until(lambda: rx.stats.records == 1)
        second_r, _second = await _tcp(rx)
        assert await _closed_by_server(second_r)
        first.write(line)
        await first.drain()
        await _until(lambda: rx.stats.records == 2)
        await rx.stop()
        assert (rx.stats.connections, rx.stats.refused) == (1, 1)

    _run(test)


# --- backpressure and shutdown ----------------------------------------------------------------
class SlowSink(ListRawSink):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def send(self, batch: list[Item]) -> None:
        time.sleep(self.delay)
        super().send(batch)


def test_tcp_backpressure_loses_nothing_and_udp_drops_are_counted() -> None:
    async def test() -> None:
        limits = Limits(queue_records=50, batch_records=10)
        rx = await _started(SlowSink(0.005), limits=limits)
        line = b"<38>" + _auth_lines()[0] + b"\n"
        _r, writer = await _tcp(rx)
        writer.write(line * 3000)
        await writer.drain()
        writer.close()
        await _until(lambda: len(_sink(rx).records) == 3000, timeout=30)
        assert rx.stats.pauses > 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(2000):
                s.sendto(line, ("127.0.0.1", _port(rx, "udp")))
        await asyncio.sleep(0.5)
        await rx.stop()
        st = rx.stats
        assert st.udp_dropped > 0
        assert st.datagrams == (len(_sink(rx).records) - 3000) + st.udp_dropped
        assert len(rx.pipe.items) == 0

    _run(test)


def test_stop_flushes_everything_queued_and_dlqs_a_partial_frame() -> None:
    async def test() -> None:
        sink = SlowSink(0.02)
        rx = await _started(sink, limits=Limits(batch_records=50))
        line = b"<38>" + _auth_lines()[0] + b"\n"
        _r, writer = await _tcp(rx)
        writer.write(line * 500 + b"<38>Jan 12 10:00:00 h sshd[1]: Failed passw")
        await writer.drain()
        await _until(lambda: rx.stats.frames == 500)
        assert len(sink.records) < 500  # the sink is behind: stop must drain the queue
        await rx.stop()
        assert len(sink.records) == 500 and sink.closed and sink.flushed == 1
        (dlq,) = sink.dlq
        assert dlq.reason == "incomplete frame: receiver stopping"

    _run(test)


def test_ssa_receive_syslog_stops_on_sigterm_with_everything_written(tmp_path: Path) -> None:
    def free_port(kind: int) -> int:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(LOCAL)
            return int(s.getsockname()[1])

    tcp_port, udp_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    out = tmp_path / "raw.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssa.cli", "receive", "syslog", "--tcp", f"127.0.0.1:{tcp_port}",
         "--udp", f"127.0.0.1:{udp_port}", "--format", "sshd", "--tenant", "t-acme", "--output", str(out)],
        cwd=REPO, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", tcp_port), timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "receiver did not start"
                time.sleep(0.1)
        lines = _auth_lines()
        with conn:
            conn.sendall(b"".join(b"<38>" + ln + b"\n" for ln in lines))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"<38>" + lines[0], ("127.0.0.1", udp_port))
            s.sendto(b"\x00\x01junk", ("127.0.0.1", udp_port))
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _stdout, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    records = [json.loads(x) for x in out.read_text().splitlines()]
    values = [r["value"].encode() for r in records]  # the loop may read the datagram first
    assert sorted(values) == sorted([*lines, lines[0]])
    assert records[0]["headers"]["ssa-tenant"] == "t-acme" and records[0]["topic"] == "ssa.raw.syslog"
    (dlq,) = (json.loads(x) for x in Path(str(out) + ".dlq.jsonl").read_text().splitlines())
    assert dlq["source"] == DLQ_SOURCE
    assert f"{len(lines) + 1} records, 1 to DLQ" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tcp", "127.0.0.1:5514", "--format", "netflow"], "binary"),
        ([], "no listener"),
        (["--tls", "127.0.0.1:6514"], "--tls needs --tls-cert"),
        (["--tcp", "127.0.0.1:5514", "--tls-cert", "c.pem"], "are for a --tls"),
        (["--tcp", "localhost"], "give HOST:PORT"),
        (["--tcp", "127.0.0.1:5514", "--max-message", "100"], "at least 480"),
        (["--tcp", "127.0.0.1:5514", "--tenant", "no tenant"], "--tenant"),
    ],
)
def test_cli_refuses_bad_listener_flags(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ssa.cli import main

    assert main(["receive", "syslog", *argv]) == 1
    assert message in capsys.readouterr().err


# --- the Kafka sink against a stand-in producer -----------------------------------------------
class FakeProducer:
    fail = False

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.sent: list[tuple[Any, ...]] = []

    def list_topics(self, timeout: float) -> Any:
        return type("Meta", (), {"topics": {"ssa.raw.syslog": 1, "ssa.dlq": 1}})()

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any = None, timestamp: int = 0) -> None:
        self.sent.append((topic, value, key, headers, timestamp))
        if self.fail:
            self.conf["on_delivery"]("broker said no", None)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_kafka_raw_sink_produces_records_and_dlq_and_reports_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import confluent_kafka

    from ingest.dlq import make_dlq

    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    target = KafkaTarget(confluent={"bootstrap.servers": "x:1"}, kafka_python={}, telemetry_topics={},
                         dlq_topic="ssa.dlq")  # fmt: skip
    with pytest.raises(RawTopicMissing) as missing:
        KafkaRawSink(target, ["ssa.raw.auditd"])
    assert missing.value.topics == ["ssa.raw.auditd"]
    sink = KafkaRawSink(target, ["ssa.raw.syslog"])
    assert sink._producer.conf["enable.idempotence"] is True and sink._producer.conf["acks"] == "all"
    codec = SyslogCodec("syslog", "ssa.raw.")
    rec = codec.convert(b"<38>" + _auth_lines()[0], "10.0.0.1", NOW_MS)
    assert isinstance(rec, RawRecord)
    sink.send([rec, make_dlq(DLQ_SOURCE, "why", b"junk")])
    (topic, value, key, headers, stamp), dlq = sink._producer.sent
    assert (topic, value, key, stamp) == ("ssa.raw.syslog", rec.value, b"syslog:LabSZ", NOW_MS)
    assert ("ssa-source", b"syslog:LabSZ") in headers
    assert dlq[0] == "ssa.dlq" and dlq[2] == DLQ_SOURCE.encode() and b'"reason":"why"' in dlq[1]
    sink.flush()
    sink._producer.fail = True
    sink.send([rec])
    with pytest.raises(DeliveryFailed, match="broker said no"):
        sink.close()
