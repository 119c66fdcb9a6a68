"""Suricata EVE JSON (``eve.json``, or the same lines through Kafka, Redis or syslog) -> flow events.

EVE is one JSON object per line, of many event types: ``alert``, ``anomaly``, ``dns``, ``http``,
``tls``, ``fileinfo``, ``stats``... and two that describe flows. Those two are read here; every
other event type is a counted skip that names it (``suricata dns event``). What follows was
established from Suricata 7.0.17 (tag ``suricata-7.0.17``, commit f707f3208de8): the writers in
``src/output-json-flow.c`` and ``src/output-json-netflow.c``, the flow engine in ``src/flow.c``
(``FlowSwap``, ``FlowHandlePacketUpdate``, ``FlowUpdateSeenFlag``), ``src/flow-hash.c`` (ICMP
errors), ``src/stream-tcp.c`` (per-side flags, the SYN-ACK pickup), ``src/app-layer.c``,
``src/util-time.c`` (``CreateIsoTimeString``), ``src/util-proto-name.c``, ``src/output-json.c``
(``EveTcpFlags``, ``OutputJsonBuilderBuffer``), the capture sources (``source-af-packet.c``,
``source-pcap-file-helper.c``), ``suricata.yaml.in`` and ``doc/userguide/output/eve/
eve-json-format.rst``; the 8.0 writer only adds members (``ip_v``, ``flow.tx_cnt``...), kept as
the others.

``event_type: "flow"``: one bidirectional record per flow, written when the flow ends (TCP
closed) or times out, or at shutdown (``flow.reason``: ``timeout``, ``forced``, ``shutdown``).
Its source is the client: a flow's source is the sender of the first packet Suricata saw, and
when that packet was the server's (a SYN-ACK picked up midstream, or an application protocol
detected the other way round) Suricata swaps the flow (``FlowSwap``: its counters and per-side
state) and writes its addresses the other way round, so the record's ``src_ip``/``src_port`` are
always the client's and its ``*_toserver`` counters what the client sent. Members:
``src_ip``, ``dest_ip``, ``src_port``/``dest_port`` (TCP, UDP and SCTP only: none for ICMP),
``proto`` (a name from Suricata's IANA table: ``TCP``, ``UDP``, ``ICMP``, ``IPv6-ICMP``,
``GRE``..., the number as text past it), ``icmp_type``/``icmp_code`` (the first packet's) and
``response_icmp_type``/``response_icmp_code`` (once the other side answered), ``flow_id`` (an
integer of 51 bits), ``in_iface``, ``vlan`` (up to three ids), ``app_proto``, ``timestamp`` (when
the record was written, not a time of the flow), and objects ``flow`` (``pkts_toserver``,
``pkts_toclient``, ``bytes_toserver``, ``bytes_toclient``, ``start``, ``end``: the last packet,
``age``: whole seconds from start to end, ``state``: ``new``/``established``/``closed``/
``bypassed``, ``reason``, ``alerted``, optional ``action``, ``bypassed``, ``exception_policy``...)
and, for TCP, ``tcp`` (``tcp_flags``: the OR of every packet's flags as two hex digits,
``tcp_flags_ts``/``tcp_flags_tc``: the client's and the server's, the same bits again as
``syn``/``fin``/``rst``/``psh``/``ack``/``urg``/``ecn``/``cwr`` set true, and ``state``, the TCP
state). Times are local time with their UTC offset, ``2024-03-01T10:00:01.625000+0000``.

``event_type: "netflow"`` (optional, ``eve-log.types: [netflow]``): the same flow as one record
per direction, the client's first (``src_ip`` the client) and the server's only when it sent
packets (``src_ip`` the server); ``netflow`` holds that direction's ``pkts``, ``bytes``, the
flow's ``start``, ``end`` and ``age``, ``min_ttl``/``max_ttl``; ``tcp.tcp_flags`` is that side's
flags. Nothing in a record says which direction it is.

Two facts of the counters. Packets and bytes count every packet of the flow as captured, link
layer included (the frame from its MAC header, ``GET_PKT_LEN``): 14 bytes of Ethernet header a
packet, 4 more a VLAN tag, over the IP bytes Zeek, NetFlow and VPC Flow Logs count. And an IPv4
ICMP error (port or host unreachable, a firewall's administratively prohibited) creates no flow:
Suricata counts it as a packet to the client of the flow it answers (the one its quoted header
names), without marking that side seen, so a UDP flow whose only answer was such an error ends
in state ``new`` with ``pkts_toclient`` > 0, and a TCP one has packets to the client with no
flags from the server. IPv6 ICMP errors are flows of their own.

Mapping (both event types): ``src_ip``/``dest_ip``/``src_port``/``dest_port`` as the event's
source and destination (ports 0 where Suricata writes none: ICMP); ``proto`` ``tcp``/``udp``/
``icmp`` or the IANA number as text, as ``ingest.parsers.flowutil.proto_name`` gives it
(``IPv6-ICMP`` is ``58``; the ambiguous ``Any`` of five numbers is ``0`` with ``proto_name`` in
``extra``); the flow's ``start`` and ``end`` to milliseconds (the nearest), ``ts`` the end
(start + duration, as Zeek's ``ts + duration``), ``duration_ms`` end - start. A ``flow`` record's
``pkts_toserver``/``bytes_toserver`` are ``packets_out``/``bytes_out``, the toclient ones
``packets_in``/``bytes_in``; a ``netflow`` record's ``pkts``/``bytes`` are ``*_out`` (nothing
``*_in``: the other direction is a record of its own). Bytes are made IP bytes by taking off an
Ethernet header per packet (and 4 bytes per tag in ``vlan``), so they compare with the other
exporters' and the detectors' header sizes (a capture without a link layer, NFQ or a raw-IP pcap,
is counted 14 bytes short a packet; Ethernet pads frames to 60 bytes, so a bare reset shows 46);
the counts as Suricata wrote them stay in ``extra`` (``flow_bytes_toserver``,
``flow_bytes_toclient``, ``netflow_bytes``). ``action`` is ``reject`` for a TCP flow whose
client sent a SYN and whose server answered with nothing but resets (flags RST, ACK), as Zeek's
``REJ``; else ``accept``.

``extra`` keeps every other member: top-level ones under their own names (``event_type``,
``flow_id``, ``in_iface``, ``vlan``, ``app_proto``, ``icmp_type``, ``timestamp``, ``community_id``,
``ether``, ``host``...), the ``flow``/``netflow`` object's as ``flow_<name>``/``netflow_<name>``
(``flow_state``, ``flow_reason``, ``flow_alerted``, ``flow_age``, ``flow_bytes_toserver``...), the
``tcp`` object's flags as integers under their names (``tcp_flags``, and for a ``flow`` record
``tcp_flags_ts``/``tcp_flags_tc``) and its other members as ``tcp_<name>`` (``tcp_state``); the
per-flag booleans are the bits of ``tcp_flags`` and are not repeated. ``detectors.flowdir`` reads
``event_type`` (``netflow`` records are one-way, as NetFlow's), the per-side flags,
``flow_state`` and ``icmp_type``.

Lines may carry the ``@cee:`` cookie of eve-log's ``prefix`` option before the object. The fast path
takes the lines that spell ``"event_type":"flow"`` (or ``netflow``) as Suricata does; the rest, and
any line it cannot take plainly, the checked path reads, skips or names. Values are
read strictly: ports and counters are JSON integers within the canonical bounds (``true``,
``80.9`` or ``"80"`` are not), times ISO 8601 with a UTC offset and plausible event times, the end
not before the start, flags two hex digits, ``vlan`` a list of at most three ids, integers kept in
``extra`` within 64 bits (also nested); anything else sends the record to the DLQ naming the field
and its value. JSON goes through ``ingest.reader.load_json`` (its depth guard).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Owner
from ingest.parsers.flowutil import (
    COUNT_MAX,
    INT64_MIN,
    BadField,
    clip,
    event_time,
    proto_name,
    valid_ip,
)
from ingest.reader import load_json
from ingest.schema import FlowEvent, event_id_of

__all__ = ["SuricataEveParser"]

OwnerOf = Callable[[str, str], Owner | None]
"""(tenant, vm, host) of a flow's two addresses, or None when either is not an address."""
BaseOf = Callable[[Owner], FlowEvent]
"""An empty flow event of the parser's source and an owner (``Parser.flow_base``)."""

_FLOW_MARK: Final = b'"event_type":"flow"'  # as Suricata writes it: the fast path's cheap test
_NETFLOW_MARK: Final = b'"event_type":"netflow"'
_CEE: Final = b"@cee:"  # the cookie of eve-log's ``prefix`` example (suricata.yaml)
_ETHERNET: Final = 14  # bytes of an Ethernet header, without tags
_VLAN_TAG: Final = 4
_MAX_VLANS: Final = 3  # Suricata records up to three stacked tags
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10
_HEX_BYTE: Final = {f"{n:02x}": n for n in range(256)} | {f"{n:02X}": n for n in range(256)}
# The members each record type maps to event fields (not repeated in ``extra``).
_TUPLE: Final = frozenset({"src_ip", "src_port", "dest_ip", "dest_port", "proto"})
_FLOW_READ: Final = frozenset({"pkts_toserver", "pkts_toclient", "start", "end"})
_NETFLOW_READ: Final = frozenset({"pkts", "start", "end"})
_TCP_HEX: Final = ("tcp_flags", "tcp_flags_ts", "tcp_flags_tc")
_TCP_BITS: Final = frozenset({"syn", "fin", "rst", "psh", "ack", "urg", "ecn", "cwr"})
_TCP_KNOWN: Final = _TCP_BITS.union(_TCP_HEX)
_READ_AT_TOP: Final = {own: _TUPLE | {own, "tcp"} for own in ("flow", "netflow")}
# A line with 19 digits in a row may hold an integer beyond 64 bits (no shorter one can be):
# found by mapping digits to "1" and the rest to "0" (C calls, 10x quicker than a regex search).
_DIGITS_AS_ONES: Final = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_WIDE_INTEGER: Final = b"1" * 19
_EVENT_TYPE: Final = re.compile(r"[a-z0-9_.-]{1,32}")  # a name fit to be a skip reason
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_event_id: Final = event_id_of("suricata")

# The protocol names Suricata 7 writes (its IANA keyword table, read case-insensitively), by number;
# 61, 63, 68, 99 and 114 are all "Any" and 144 up are written as numbers.
_NAMES: Final = (
    "0 hopopt 1 icmp 2 igmp 3 ggp 4 ip-in-ip 5 st 6 tcp 7 cbt 8 egp 9 igp 10 bbn-rcc-mon 11 nvp-ii "
    "12 pup 13 argus 14 emcon 15 xnet 16 chaos 17 udp 18 mux 19 dcn-meas 20 hmp 21 prm 22 xns-idp "
    "23 trunk-1 24 trunk-2 25 leaf-1 26 leaf-2 27 rdp 28 irtp 29 iso-tp4 30 netblt 31 mfe-nsp "
    "32 merit-inp 33 dccp 34 3pc 35 idpr 36 xtp 37 ddp 38 idpr-cmtp 39 tp++ 40 il 41 ipv6 42 sdrp "
    "43 ipv6-route 44 ipv6-frag 45 idrp 46 rsvp 47 gre 48 dsr 49 bna 50 esp 51 ah 52 i-nlsp 53 swipe "
    "54 narp 55 mobile 56 tlsp 57 skip 58 ipv6-icmp 59 ipv6-nonxt 60 ipv6-opts 62 cftp 64 sat-expak "
    "65 kryptolan 66 rvd 67 ippc 69 sat-mon 70 visa 71 ipcu 72 cpnx 73 cphb 74 wsn 75 pvp "
    "76 br-sat-mon 77 sun-nd 78 wb-mon 79 wb-expak 80 iso-ip 81 vmtp 82 secure-vmtp 83 vines 84 ttp "
    "85 nsfnet-igp 86 dgp 87 tcf 88 eigrp 89 ospf 90 sprite-rpc 91 larp 92 mtp 93 ax.25 94 os 95 micp "
    "96 scc-sp 97 etherip 98 encap 100 gmtp 101 ifmp 102 pnni 103 pim 104 aris 105 scps 106 qnx 107 a/n "
    "108 ipcomp 109 snp 110 compaq-peer 111 ipx-in-ip 112 vrrp 113 pgm 115 l2tp 116 ddx 117 iatp "
    "118 stp 119 srp 120 uti 121 smp 122 sm 123 ptp 124 is-is 125 fire 126 crtp 127 crudp 128 sscopmce "
    "129 iplt 130 sps 131 pipe 132 sctp 133 fc 134 rsvp-e2e-ignore 135 mobility 136 udplite "
    "137 mpls-in-ip 138 manet 139 hip 140 shim6 141 wesp 142 rohc 143 ethernet"
)
_PROTOS: Final[dict[str, str]] = {
    **{
        name: proto_name(int(num))
        for num, name in zip(_NAMES.split()[::2], _NAMES.split()[1::2], strict=True)
    },
    **{str(n): proto_name(n) for n in range(256)},
}
_AMBIGUOUS_PROTO: Final = "any"
# The cased names as Suricata writes them, looked up before lower-casing (the common case).
_WRITTEN_PROTOS: Final = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "IPv6-ICMP": "58"}


class SuricataEveParser(FastPathParser):
    """EVE JSON lines: ``flow`` and ``netflow`` records to flow events, other event types skipped."""

    source: ClassVar[str] = "suricata"
    record_name = "Suricata EVE"

    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """A flow or netflow line as Suricata writes it; None for anything else (other event
        types, other spellings, anything wrong), which the checked path reads, skips or names."""
        if _FLOW_MARK not in line and _NETFLOW_MARK not in line:
            return None
        try:
            rec = load_json(_json_body(line))
            reader = _reader_of(rec.get("event_type")) if type(rec) is dict else None
            return None if reader is None else reader(rec, line, self.checked_flow_owner, self.flow_base)
        except Exception:
            return None

    def _checked_event(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        body = _json_body(line)
        if not body.strip():
            if line.strip():  # a cookie with no record after it: a line that held something
                self.reject("@cee: cookie with no JSON object after it", line, lineno, offset)
            else:
                self.skip("blank line")
            return None
        rec = self.json_object(body, line, lineno, offset)
        if rec is None:
            return None
        kind = rec.get("event_type")
        if kind is None or kind == "":
            raise BadField("missing field 'event_type'")
        if type(kind) is not str:
            raise BadField(f"event_type is not text: {clip(kind)}")
        if kind in _READERS:
            return self._event(rec, line)
        self.skip(
            f"suricata {kind} event" if _EVENT_TYPE.fullmatch(kind) else "suricata event of another type"
        )
        return None

    def _event(self, rec: dict[str, Any], line: bytes) -> FlowEvent:
        """The event of one flow or netflow record; BadField names what is wrong."""
        return _READERS[rec["event_type"]](rec, line, self._owner_of_addresses, self.flow_base)

    def _owner_of_addresses(self, src: str, dst: str) -> Owner | None:
        if not (valid_ip(src) and valid_ip(dst)):
            return None
        return self.flow_owner(src, dst)


def _json_body(line: bytes) -> bytes:
    """The JSON object of a line: after the ``@cee:`` cookie and spaces, if any."""
    if line[:1] == b"{":
        return line
    body = line.lstrip()
    return body[len(_CEE) :].lstrip() if body.startswith(_CEE) else body


# --- the two record types -------------------------------------------------------------------------
def _flow_record(rec: dict[str, Any], line: bytes, owner_of: OwnerOf, base: BaseOf) -> FlowEvent:
    """A bidirectional ``flow`` record: the client is the source."""
    src, dst, owner = _addresses(rec, owner_of)
    proto, extra = _proto(rec.get("proto")), _top_extra(rec, "flow")
    flow = _object(rec, "flow")
    start, duration = _span(flow, "flow")
    link = _link_bytes(rec.get("vlan"))
    packets_out, packets_in = _count(flow, "flow", "pkts_toserver"), _count(flow, "flow", "pkts_toclient")
    bytes_out = _ip_bytes(_count(flow, "flow", "bytes_toserver"), packets_out, link)
    bytes_in = _ip_bytes(_count(flow, "flow", "bytes_toclient"), packets_in, link)
    _flatten(extra, "flow", flow, _FLOW_READ)
    flags = _tcp_extra(extra, _object(rec, "tcp")) if rec.get("tcp") is not None else {}
    client, server = flags.get("tcp_flags_ts", 0), flags.get("tcp_flags_tc", 0)
    refused = proto == "tcp" and bool(client & _SYN) and server & ~_ACK == _RST  # resets only
    if _WIDE_INTEGER in line.translate(_DIGITS_AS_ONES):
        _check_integers(rec, "")
    return replace(
        base(owner), id=_event_id(line), ts=start + duration, src_ip=src, dst_ip=dst,
        src_port=_port(rec, "src_port"), dst_port=_port(rec, "dest_port"), proto=proto,
        bytes_out=bytes_out, bytes_in=bytes_in, packets_out=packets_out, packets_in=packets_in,
        duration_ms=duration, action="reject" if refused else "accept", extra=extra,
    )  # fmt: skip


def _netflow_record(rec: dict[str, Any], line: bytes, owner_of: OwnerOf, base: BaseOf) -> FlowEvent:
    """A one-direction ``netflow`` record: its sender is the source, nothing comes back in it."""
    src, dst, owner = _addresses(rec, owner_of)
    proto, extra = _proto(rec.get("proto")), _top_extra(rec, "netflow")
    netflow = _object(rec, "netflow")
    start, duration = _span(netflow, "netflow")
    packets = _count(netflow, "netflow", "pkts")
    bytes_out = _ip_bytes(_count(netflow, "netflow", "bytes"), packets, _link_bytes(rec.get("vlan")))
    _flatten(extra, "netflow", netflow, _NETFLOW_READ)
    if rec.get("tcp") is not None:
        _tcp_extra(extra, _object(rec, "tcp"))
    if _WIDE_INTEGER in line.translate(_DIGITS_AS_ONES):
        _check_integers(rec, "")
    return replace(
        base(owner), id=_event_id(line), ts=start + duration, src_ip=src, dst_ip=dst,
        src_port=_port(rec, "src_port"), dst_port=_port(rec, "dest_port"), proto=proto,
        bytes_out=bytes_out, packets_out=packets, duration_ms=duration, extra=extra,
    )  # fmt: skip


Reader = Callable[[dict[str, Any], bytes, OwnerOf, BaseOf], FlowEvent]
_READERS: Final[dict[str, Reader]] = {"flow": _flow_record, "netflow": _netflow_record}


def _reader_of(kind: Any) -> Reader | None:
    return _READERS.get(kind) if type(kind) is str else None


# --- fields ------------------------------------------------------------------------------------------
def _addresses(rec: dict[str, Any], owner_of: OwnerOf) -> tuple[str, str, Owner]:
    """Source and destination, and the flow's owner; BadField unless both are IP addresses."""
    src, dst = rec.get("src_ip"), rec.get("dest_ip")
    for name, value in (("src_ip", src), ("dest_ip", dst)):
        if value is None or value == "":
            raise BadField(f"missing field {name!r}")
    if type(src) is str and type(dst) is str:
        owner = owner_of(src, dst)
        if owner is not None:
            return src, dst, owner
    raise BadField(f"bad address {clip(src, 60)} -> {clip(dst, 60)}")


def _proto(value: Any) -> str:
    """``tcp``/``udp``/``icmp`` or the IANA number as text, from Suricata's name or number."""
    known = _WRITTEN_PROTOS.get(value) if type(value) is str else None
    if known is not None:
        return known
    if type(value) is str and len(value) <= 32:
        name = value.lower()
        if name == _AMBIGUOUS_PROTO:
            return "0"
        proto = _PROTOS.get(name)
        if proto is not None:
            return proto
    raise BadField(f"bad proto {clip(value)}")


def _object(rec: dict[str, Any], name: str) -> dict[str, Any]:
    value = rec.get(name)
    if type(value) is not dict:
        raise BadField(
            f"missing field {name!r}" if value is None else f"{name} is not an object: {clip(value)}"
        )
    return value


def _port(rec: dict[str, Any], name: str) -> int:
    """A port Suricata wrote (TCP, UDP, SCTP), else 0 (ICMP and the others have none)."""
    value = rec.get(name)
    if value is None:
        return 0
    if type(value) is int and 0 <= value <= 65535:
        return value
    raise BadField(_not_a_count(name, value))


def _count(obj: dict[str, Any], where: str, name: str) -> int:
    value = obj.get(name)
    if type(value) is int and 0 <= value <= COUNT_MAX:
        return value
    if value is None:
        raise BadField(f"missing field '{where}.{name}'")
    raise BadField(_not_a_count(f"{where}.{name}", value))


def _not_a_count(name: str, value: Any) -> str:
    if type(value) is not int:
        return f"{name} is not an integer: {clip(value)}"
    return f"{name} is negative: {value}" if value < 0 else f"{name} out of range: {clip(value)}"


def _span(obj: dict[str, Any], where: str) -> tuple[int, int]:
    """(start, duration) in milliseconds, each rounded to the nearest, of ``start`` and ``end``."""
    start_text, end_text = obj.get("start"), obj.get("end")
    start_us = _time_us(f"{where}.start", start_text)
    end_us = _time_us(f"{where}.end", end_text)
    if end_us < start_us:
        raise BadField(f"{where}.end {clip(end_text)} is before {where}.start {clip(start_text)}")
    start = event_time(f"{where}.start", (start_us + 500) // 1000, start_text)
    duration = (end_us - start_us + 500) // 1000
    event_time(f"{where}.end", start + duration, end_text)  # a long flow can end past the bounds
    return start, duration


def _time_us(name: str, value: Any) -> int:
    """Epoch microseconds of an ISO 8601 time with its UTC offset (Suricata writes local time)."""
    if value is None:
        raise BadField(f"missing field {name!r}")
    if type(value) is not str:
        raise BadField(f"{name} is not a time: {clip(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError):  # their messages are datetime's wording
        raise BadField(f"{name} is not a time: {clip(value)}") from None
    if moment.tzinfo is None:
        raise BadField(f"{name} has no UTC offset: {clip(value)}")
    return (moment - _EPOCH) // _MICROSECOND


def _link_bytes(vlan: Any) -> int:
    """The link-layer bytes of each packet: an Ethernet header and the record's VLAN tags."""
    if vlan is None:
        return _ETHERNET
    if (
        type(vlan) is not list
        or len(vlan) > _MAX_VLANS
        or not all(type(tag) is int and 0 <= tag <= 4095 for tag in vlan)
    ):
        raise BadField(f"vlan is not a list of up to {_MAX_VLANS} VLAN ids: {clip(vlan)}")
    return _ETHERNET + _VLAN_TAG * len(vlan)


def _ip_bytes(frames: int, packets: int, link: int) -> int:
    """Bytes of ``packets`` captured with their link layer, without it (0 at the least: a capture
    with no link layer at all)."""
    return max(0, frames - link * packets)


def _hex_flags(name: str, value: Any) -> int:
    flags = _HEX_BYTE.get(value) if type(value) is str else None
    if flags is None:
        raise BadField(f"{name} is not two hex digits: {clip(value)}")
    return flags


# --- extra ------------------------------------------------------------------------------------------
def _top_extra(rec: dict[str, Any], own: str) -> dict[str, Any]:
    """The record's top-level members but the tuple and the objects read on their own."""
    read = _READ_AT_TOP[own]
    extra = {name: value for name, value in rec.items() if name not in read}
    proto = rec.get("proto")
    if type(proto) is str and proto.lower() == _AMBIGUOUS_PROTO:
        extra["proto_name"] = proto
    return extra


def _flatten(extra: dict[str, Any], where: str, obj: dict[str, Any], read: frozenset[str]) -> None:
    """The members of ``obj`` but those ``read`` into ``extra`` as ``<where>_<name>``."""
    prefix = where + "_"
    extra.update({prefix + name: value for name, value in obj.items() if name not in read})


def _tcp_extra(extra: dict[str, Any], tcp: dict[str, Any]) -> dict[str, int]:
    """The flags as integers under their names, the other members as ``tcp_<name>``; the booleans
    of each flag are the bits of ``tcp_flags`` (checked, not repeated). Returns the flags."""
    flags: dict[str, int] = {}
    for name in _TCP_HEX:
        value = tcp.get(name)
        if value is not None:
            flags[name] = _hex_flags(f"tcp.{name}", value)
    for name in _TCP_BITS.intersection(tcp):
        if type(tcp[name]) is not bool:
            raise BadField(f"tcp.{name} is not a bool: {clip(tcp[name])}")
    extra.update(flags)
    extra.update({"tcp_" + name: value for name, value in tcp.items() if name not in _TCP_KNOWN})
    return flags


def _check_integers(value: Any, name: str) -> None:
    """Every integer of a record, nested ones too, must fit a signed 64-bit integer (an
    Elasticsearch long); only called for a line with 19 digits in a row (``_WIDE_INTEGER``)."""
    kind = type(value)
    if kind is int:
        if not INT64_MIN <= value <= COUNT_MAX:
            raise BadField(f"{name} out of range: {clip(value)}")
    elif kind is dict:
        for key, child in value.items():
            _check_integers(child, f"{name}.{key}" if name else key)
    elif kind is list:
        for child in value:
            _check_integers(child, name)
