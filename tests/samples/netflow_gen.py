"""Builds NetFlow v5 / v9 / IPFIX export packets and pcap files with struct, for tests and benchmarks.

Layouts follow Cisco's NetFlow v5 format, RFC 3954 (v9) and RFC 7011 (IPFIX): big-endian headers,
template sets (id 0 for v9, 2 for IPFIX) describing data sets (id >= 256).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence

__all__ = [
    "IPFIX_TEMPLATE_FIELDS",
    "V9_TEMPLATE_FIELDS",
    "FlowSpec",
    "data_set",
    "ipfix_message",
    "ipfix_packet",
    "pcap_file",
    "pcap_header",
    "pcap_record",
    "template_set",
    "v5_packet",
    "v9_message",
    "v9_packet",
]

FlowSpec = tuple[str, str, int, int, int, int, int, int, int]
"""(src, dst, sport, dport, proto, bytes, packets, first_ms_or_uptime, last_ms_or_uptime)."""

# v9: IN_BYTES(1,4) IN_PKTS(2,4) PROTOCOL(4,1) L4_SRC_PORT(7,2) IPV4_SRC_ADDR(8,4) L4_DST_PORT(11,2)
# IPV4_DST_ADDR(12,4) LAST_SWITCHED(21,4) FIRST_SWITCHED(22,4) OUT_BYTES(23,4) TCP_FLAGS(6,1)
V9_TEMPLATE_FIELDS: Sequence[tuple[int, int]] = (
    (1, 4),
    (2, 4),
    (4, 1),
    (7, 2),
    (8, 4),
    (11, 2),
    (12, 4),
    (21, 4),
    (22, 4),
    (23, 4),
    (6, 1),
)
# IPFIX: sourceIPv4Address(8) destinationIPv4Address(12) sourceTransportPort(7) destinationTransportPort(11)
# protocolIdentifier(4) octetDeltaCount(1, 8 bytes) packetDeltaCount(2, 8 bytes)
# flowStartMilliseconds(152) flowEndMilliseconds(153)
IPFIX_TEMPLATE_FIELDS: Sequence[tuple[int, int]] = (
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (1, 8),
    (2, 8),
    (152, 8),
    (153, 8),
)


def _ip(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big")


def v5_packet(flows: Sequence[FlowSpec], unix_secs: int, uptime_ms: int, seq: int = 0) -> bytes:
    """First/last in flows are sysUptime milliseconds, as v5 carries them."""
    header = struct.pack("!HHIIIIBBH", 5, len(flows), uptime_ms, unix_secs, 0, seq, 0, 0, 0)
    body = b"".join(
        struct.pack(
            "!IIIHHIIIIHHBBBBHHBBH",
            _ip(s),
            _ip(d),
            0,
            1,
            2,
            pk,
            by,
            first,
            last,
            sp,
            dp,
            0,
            0x1B,
            pr,
            0,
            64512,
            64513,
            24,
            16,
            0,
        )
        for s, d, sp, dp, pr, by, pk, first, last in flows
    )
    return header + body


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def v9_packet(
    flows: Sequence[FlowSpec],
    unix_secs: int,
    uptime_ms: int,
    *,
    source_id: int = 1,
    template_id: int = 256,
    with_template: bool = True,
    seq: int = 0,
) -> bytes:
    sets = b""
    count = 0
    if with_template:
        tmpl = struct.pack("!HH", template_id, len(V9_TEMPLATE_FIELDS)) + b"".join(
            struct.pack("!HH", t, n) for t, n in V9_TEMPLATE_FIELDS
        )
        sets += struct.pack("!HH", 0, 4 + len(tmpl)) + tmpl
        count += 1
    if flows:
        recs = b"".join(
            struct.pack("!IIBHIHIIIIB", by, pk, pr, sp, _ip(s), dp, _ip(d), last, first, by // 2, 0x12)
            for s, d, sp, dp, pr, by, pk, first, last in flows
        )
        body = _pad4(recs)
        sets += struct.pack("!HH", template_id, 4 + len(body)) + body
        count += len(flows)
    header = struct.pack("!HHIIII", 9, count, uptime_ms, unix_secs, seq, source_id)
    return header + sets


def ipfix_packet(
    flows: Sequence[FlowSpec],
    export_secs: int,
    *,
    domain: int = 7,
    template_id: int = 300,
    with_template: bool = True,
    seq: int = 0,
    extra_sets: Iterable[bytes] = (),
) -> bytes:
    """first/last in flows are absolute epoch milliseconds (flowStart/EndMilliseconds)."""
    sets = b""
    if with_template:
        tmpl = struct.pack("!HH", template_id, len(IPFIX_TEMPLATE_FIELDS)) + b"".join(
            struct.pack("!HH", t, n) for t, n in IPFIX_TEMPLATE_FIELDS
        )
        sets += struct.pack("!HH", 2, 4 + len(tmpl)) + tmpl
    if flows:
        recs = b"".join(
            struct.pack("!IIHHBQQQQ", _ip(s), _ip(d), sp, dp, pr, by, pk, first, last)
            for s, d, sp, dp, pr, by, pk, first, last in flows
        )
        sets += struct.pack("!HH", template_id, 4 + len(recs)) + recs
    for extra in extra_sets:
        sets += extra
    return struct.pack("!HHIII", 10, 16 + len(sets), export_secs, seq, domain) + sets


def template_set(template_id: int, fields: Sequence[tuple[int, int]], *, ipfix: bool) -> bytes:
    """A template set of one template: (field type, length) pairs, no enterprise numbers."""
    record = struct.pack("!HH", template_id, len(fields)) + b"".join(
        struct.pack("!HH", t, n) for t, n in fields
    )
    return struct.pack("!HH", 2 if ipfix else 0, 4 + len(record)) + record


def data_set(template_id: int, records: bytes) -> bytes:
    """A data set holding ``records`` as given (no padding added: callers choose)."""
    return struct.pack("!HH", template_id, 4 + len(records)) + records


def v9_message(
    sets: Iterable[bytes], unix_secs: int, uptime_ms: int, *, source_id: int = 1, seq: int = 0
) -> bytes:
    """A v9 packet of ready-made sets (its record count is left at the number of sets)."""
    body = list(sets)
    return struct.pack("!HHIIII", 9, len(body), uptime_ms, unix_secs, seq, source_id) + b"".join(body)


def ipfix_message(sets: Iterable[bytes], export_secs: int, *, domain: int = 7, seq: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_secs, seq, domain) + body


def pcap_header() -> bytes:
    """A little-endian libpcap global header, microsecond times, Ethernet links."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def pcap_record(exporter: str, payload: bytes, ts: int = 1709632800) -> bytes:
    """One pcap record: an Ethernet/IPv4/UDP frame from ``exporter`` to port 2055 carrying ``payload``."""
    udp = struct.pack("!HHHH", 50000, 2055, 8 + len(payload), 0) + payload
    ip = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            0,
            0,
            64,
            17,
            0,
            socket.inet_aton(exporter),
            socket.inet_aton("192.0.2.200"),
        )
        + udp
    )
    frame = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb" + b"\x08\x00" + ip
    return struct.pack("<IIII", ts, 0, len(frame), len(frame)) + frame


def pcap_file(packets: Sequence[tuple[str, bytes]], ts: int = 1709632800) -> bytes:
    """A little-endian libpcap file of Ethernet/IPv4/UDP frames (exporter ip, payload) to port 2055."""
    return pcap_header() + b"".join(pcap_record(exporter, payload, ts) for exporter, payload in packets)
