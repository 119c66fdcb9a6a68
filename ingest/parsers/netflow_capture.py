"""Where NetFlow/IPFIX packets come from: capture files and a UDP collector.

A capture file is either a libpcap file (the exporter is the packet's IP source address) or
export packets simply concatenated (as a collector dumps them). Packet boundaries in the latter:
v5 from its record count, IPFIX from its message length, v9 by walking its flowsets until the next
packet header (flowset ids 5, 9 and 10 are reserved, so a version number cannot be a flowset).
Bytes that do not start a plausible packet go to the DLQ as one record per garbage run, and
reading resumes at the next plausible header. Memory stays bounded: a packet is at most 64 KiB.
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


def read_pcap(stream: IO[bytes], parser: NetflowParser, head: bytes) -> None:
    """UDP payloads of a libpcap file (Ethernet, Linux cooked or raw IP links) as packets."""
    endian, _ticks = _PCAP_MAGICS[head[:4]]
    linktype = struct.unpack(endian + "I", head[20:24])[0]
    rec = struct.Struct(endian + "IIII")
    offset = 24
    while True:
        hdr = stream.read(16)
        if len(hdr) < 16:
            if hdr:
                parser.reject("pcap record header cut short", hdr, offset=offset)
            return
        _sec, _frac, caplen, _origlen = rec.unpack(hdr)
        if caplen > 262144:
            parser.reject(f"pcap record of {caplen} bytes", hdr, offset=offset)
            return
        frame = stream.read(caplen)
        offset += 16
        payload = _udp_payload(frame, linktype)
        if payload is None:
            parser.skip("pcap frame that is not UDP")
        else:
            parser.feed_packet(payload[1], payload[0], offset)
        offset += caplen


def _udp_payload(frame: bytes, linktype: int) -> tuple[str, bytes] | None:
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
        src = socket.inet_ntop(socket.AF_INET, frame[pos + 12 : pos + 16])
        udp = pos + ihl
    elif ethertype == b"\x86\xdd" and len(frame) >= pos + 40 and frame[pos + 6] == 17:
        src = socket.inet_ntop(socket.AF_INET6, frame[pos + 8 : pos + 24])
        udp = pos + 40
    else:
        return None
    if len(frame) < udp + 8:
        return None
    return src, frame[udp + 8 :]


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
