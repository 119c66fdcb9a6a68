"""Where NetFlow/IPFIX packets come from: capture files and a UDP collector.

A capture file is either a libpcap file (the exporter is the packet's IP source address) or
export packets simply concatenated (as a collector dumps them). Packet boundaries in the latter:
v5 from its record count, IPFIX from its message length, v9 by walking its flowsets until the next
packet header (flowset ids 5, 9 and 10 are reserved, so a version number cannot be a flowset).
Bytes that do not start a plausible packet go to the DLQ as one record per garbage run, and
reading resumes at the next plausible header. A pcap record header that cannot be right (over
262,144 bytes, or more captured than the frame held) is handled the same way: its bytes up to the
next plausible record header are one DLQ record. Memory stays bounded: a packet is at most 64 KiB,
a pcap record 256 KiB.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from typing import IO, Final

from ingest.parsers.netflow import NetflowParser

__all__ = ["MAX_PACKET", "UdpCollector", "read_capture", "read_pcap", "split_packets"]

MAX_PACKET: Final = 65535
_READ: Final = 1024 * 1024
_HEADER_START: Final = re.compile(rb"\x00[\x05\x09\x0a]")
_PCAP_MAGICS: Final = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}  # fmt: skip


def _packet_length(buf: bytes | bytearray, pos: int) -> int | None:
    """Length of the plausible packet starting at ``pos`` (``buf`` holds >= 64 KiB or to EOF)."""
    avail = len(buf) - pos
    if avail < 4:
        return None
    version, second = struct.unpack_from("!HH", buf, pos)
    if version == 5:
        size = 24 + 48 * second
        return size if 0 < second <= 30 and size <= avail else None  # v5 carries at most 30
    if version == 10:
        return second if 16 <= second <= avail else None
    if version == 9:
        if avail < 24 or second == 0:
            return None
        end = pos + 20
        while end + 4 <= len(buf):
            set_id, set_len = struct.unpack_from("!HH", buf, end)
            if set_id in (5, 9, 10) and end > pos + 20:
                break  # next packet
            if (
                (1 < set_id < 256)
                or set_len < 4
                or end + set_len > len(buf)
                or end + set_len - pos > MAX_PACKET
            ):
                return None if end == pos + 20 else end - pos
            end += set_len
        return end - pos if end > pos + 20 else None
    return None


def split_packets(stream: IO[bytes], parser: NetflowParser) -> None:
    """Feed each packet of a concatenated-packets file; garbage runs go to the DLQ."""
    buf = bytearray()
    base = 0  # file offset of buf[0]
    pos = 0
    eof = False
    garbage_at: int | None = None  # file offset where the current garbage run began
    garbage_head = b""
    exporter = parser.ctx.file or "file"
    while True:
        if not eof and len(buf) - pos < 2 * MAX_PACKET:
            del buf[:pos]
            base += pos
            pos = 0
            while not eof and len(buf) < 2 * MAX_PACKET:
                chunk = stream.read(_READ)
                if chunk:
                    buf += chunk
                else:
                    eof = True
        if pos >= len(buf):
            break
        size = _packet_length(buf, pos)
        if size is None:
            if garbage_at is None:
                garbage_at, garbage_head = base + pos, bytes(buf[pos : pos + 4096])
            found = _HEADER_START.search(buf, pos + 1)
            pos = found.start() if found else len(buf)
            continue
        if garbage_at is not None:
            _reject_garbage(parser, garbage_head, garbage_at, base + pos)
            garbage_at = None
        parser.feed_packet(bytes(buf[pos : pos + size]), exporter, base + pos)
        pos += size
    if garbage_at is not None:
        _reject_garbage(parser, garbage_head, garbage_at, base + pos)


def _reject_garbage(parser: NetflowParser, head: bytes, start: int, end: int) -> None:
    size = end - start
    parser.reject(
        f"{size} bytes that are not a NetFlow/IPFIX packet", head[:size], offset=start, raw_len=size
    )


_PCAP_MAX_RECORD: Final = 262144  # libpcap's largest snapshot length
_PCAP_KEEP: Final = 2 * (16 + _PCAP_MAX_RECORD)  # a record and the header after it, to check both
_DAY_S: Final = 86400
_YEAR_2000_S: Final = 946684800
# Where a record header may start, found at C speed before any Python check: seconds between 2000
# and 2100 (high byte 0x38-0xf4) and a captured length under 2^18 (its two high bytes <= 4, 0).
_PCAP_CANDIDATE: Final = {
    "<": re.compile(rb"(?s)(?=.{3}[\x38-\xf4].{6}[\x00-\x04]\x00)"),
    ">": re.compile(rb"(?s)(?=[\x38-\xf4].{7}\x00[\x00-\x04])"),
}


class _PcapRecords:
    """The records of a libpcap file read through a bounded buffer. A record header claiming more
    than 262,144 bytes (or a record cut short by the end of the file) makes its bytes a DLQ record;
    reading resumes at the next plausible record header: a time within a day of the last good
    record's (years 2000-2100 before any), sub-second ticks in range, a captured length that fits
    its original length (neither 0), and a record that ends at the end of the file or at another header."""

    def __init__(self, stream: IO[bytes], parser: NetflowParser, head: bytes) -> None:
        self.stream, self.parser = stream, parser
        self.endian, self.ticks = _PCAP_MAGICS[head[:4]]
        self.linktype = struct.unpack(self.endian + "I", head[20:24])[0]
        self.header = struct.Struct(self.endian + "IIII")
        self.buf = bytearray()
        self.base = 24  # file offset of buf[0]
        self.eof = False
        self.last_sec: int | None = None

    def fill(self, pos: int) -> int:
        """Keep at least ``_PCAP_KEEP`` bytes after ``pos`` in the buffer (or all up to EOF)."""
        if self.eof or len(self.buf) - pos >= _PCAP_KEEP:
            return pos
        del self.buf[:pos]
        self.base += pos
        while not self.eof and len(self.buf) < 2 * _PCAP_KEEP:
            chunk = self.stream.read(_READ)
            if chunk:
                self.buf += chunk
            else:
                self.eof = True
        return 0

    def read(self) -> None:
        parser, buf, unpack = self.parser, self.buf, self.header.unpack_from
        pos = self.fill(0)
        if not buf:
            parser.skip("pcap file without records")  # a header alone: still counted
            return
        while True:
            pos = self.fill(pos)
            avail = len(buf) - pos
            if avail == 0:
                return
            if avail < 16:
                parser.reject("pcap record header cut short", bytes(buf[pos:]), offset=self.base + pos)
                return
            sec, _frac, caplen, origlen = unpack(buf, pos)
            if caplen > _PCAP_MAX_RECORD:
                pos = self.resync(pos, f"pcap record header claims {caplen} bytes, over {_PCAP_MAX_RECORD}")
                continue
            if caplen > origlen:
                pos = self.resync(pos, f"pcap record header claims {caplen} bytes of a {origlen} byte frame")
                continue
            if caplen > avail - 16:
                parser.reject(
                    f"pcap record of {caplen} bytes cut short by the end of the file",
                    bytes(buf[pos : pos + 4096]),
                    offset=self.base + pos,
                    raw_len=avail,
                )
                return
            self.last_sec = sec
            self.frame(bytes(buf[pos + 16 : pos + 16 + caplen]), self.base + pos + 16)
            pos += 16 + caplen

    def frame(self, frame: bytes, offset: int) -> None:
        found = _udp_payload(frame, self.linktype)
        if found is None:
            self.parser.skip("pcap frame that is not UDP")
        else:
            exporter, payload, start = found
            self.parser.feed_packet(payload, exporter, offset + start)

    def resync(self, bad: int, reason: str) -> int:
        """Reject the bytes from ``bad`` to the next plausible record header; return where it is."""
        buf, candidates = self.buf, _PCAP_CANDIDATE[self.endian]
        start = self.base + bad
        head = bytes(buf[bad : bad + 4096])
        pos = bad + 1
        while True:
            pos = self.fill(pos)  # may move the buffer: ``bad`` is kept as the file offset ``start``
            found = candidates.search(buf, pos)
            if found is None:
                if self.eof:
                    pos = len(buf)
                    break
                pos = max(pos, len(buf) - 15)
                continue
            pos = found.start()
            if not self.eof and len(buf) - pos < _PCAP_KEEP:
                continue  # read on first: the candidate and the header after it must both be here
            if self.plausible(pos):
                break
            pos += 1
        self.parser.reject(f"{reason}; {self.base + pos - start} bytes skipped to the next record header",
                           head, offset=start, raw_len=self.base + pos - start)  # fmt: skip
        return pos

    def plausible(self, pos: int) -> bool:
        buf = self.buf
        if len(buf) - pos < 16:
            return False
        sec, frac, caplen, origlen = self.header.unpack_from(buf, pos)
        near = sec >= _YEAR_2000_S if self.last_sec is None else abs(sec - self.last_sec) <= _DAY_S
        if not (near and frac < self.ticks and 0 < caplen <= origlen <= _PCAP_MAX_RECORD):
            return False
        after = pos + 16 + caplen
        if after == len(buf) and self.eof:
            return True
        if len(buf) - after < 16:
            return False
        _sec, frac, caplen, origlen = self.header.unpack_from(buf, after)
        return frac < self.ticks and 0 < caplen <= origlen and caplen <= _PCAP_MAX_RECORD


def read_pcap(stream: IO[bytes], parser: NetflowParser, head: bytes) -> None:
    """UDP payloads of a libpcap file (Ethernet, Linux cooked or raw IP links) as packets."""
    _PcapRecords(stream, parser, head).read()


def _udp_payload(frame: bytes, linktype: int) -> tuple[str, bytes, int] | None:
    """(source address, UDP payload, where the payload starts in ``frame``), or None."""
    if linktype == 1:  # Ethernet, with optional 802.1Q tags
        pos, ethertype = 14, frame[12:14]
        while ethertype == b"\x81\x00" and len(frame) >= pos + 4:
            ethertype, pos = frame[pos + 2 : pos + 4], pos + 4
    elif linktype == 113:  # Linux cooked capture
        pos, ethertype = 16, frame[14:16]
    elif linktype in (101, 12):  # raw IP
        pos, ethertype = 0, b"\x86\xdd" if frame[:1] and frame[0] >> 4 == 6 else b"\x08\x00"
    else:
        return None
    if ethertype == b"\x08\x00" and len(frame) >= pos + 20 and frame[pos + 9] == 17:
        ihl = (frame[pos] & 0x0F) * 4
        if ihl < 20:
            return None
        src = socket.inet_ntop(socket.AF_INET, frame[pos + 12 : pos + 16])
        udp = pos + ihl
    elif ethertype == b"\x86\xdd" and len(frame) >= pos + 40 and frame[pos + 6] == 17:
        src = socket.inet_ntop(socket.AF_INET6, frame[pos + 8 : pos + 24])
        udp = pos + 40
    else:
        return None
    if len(frame) < udp + 8:
        return None
    # The UDP length ends the payload: an Ethernet frame may be padded after it. A frame captured
    # short of it keeps what was captured (the decoder rejects what is cut).
    end = udp + max(8, int.from_bytes(frame[udp + 4 : udp + 6], "big"))
    return src, frame[udp + 8 : end], udp + 8


def read_capture(stream: IO[bytes], parser: NetflowParser) -> None:
    """A pcap file or concatenated export packets, told apart by the first four bytes."""
    head = stream.read(24)
    if head[:4] in _PCAP_MAGICS and len(head) == 24:
        read_pcap(stream, parser, head)
        return

    class _Prefixed:
        def __init__(self) -> None:
            self.head = head

        def read(self, n: int) -> bytes:
            if self.head:
                out, self.head = self.head, b""
                return out
            return stream.read(n)

    split_packets(_Prefixed(), parser)  # type: ignore[arg-type]


class UdpCollector:
    """Receives export packets on a UDP address and feeds them to a ``NetflowParser``.

    ``open()`` binds (port 0 picks a free port; ``address`` tells which), ``serve()`` loops until
    ``stop`` is set or ``max_packets`` arrived. The exporter of each packet is its source address.
    """

    def __init__(self, parser: NetflowParser, host: str = "127.0.0.1", port: int = 2055) -> None:
        self.parser = parser
        self.host = host
        self.port = port
        self.packets = 0
        self._sock: socket.socket | None = None

    def open(self) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        sock.bind((self.host, self.port))
        sock.settimeout(0.2)
        self._sock = sock
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("collector is not open")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def serve(self, stop: threading.Event | None = None, max_packets: int | None = None) -> int:
        sock = self._sock or (self.open() and self._sock)
        assert sock is not None
        while not (stop is not None and stop.is_set()) and (
            max_packets is None or self.packets < max_packets
        ):
            try:
                data, addr = sock.recvfrom(MAX_PACKET)
            except TimeoutError:
                continue
            self.packets += 1
            self.parser.feed_packet(data, addr[0])
        return self.packets

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
