"""Who opened a flow's connection, and whether it was answered, from what the record carries.

Exporters disagree on what a record's source is. Zeek, Argus, nProbe and CICFlowMeter write one
bidirectional record per connection with the initiator as source (Zeek and Argus say when they
could not tell). AWS VPC Flow Logs, NetFlow v5/v9 and plain IPFIX write one record per direction
(VPC: per interface crossed too), with no reverse counters, so the server's replies are records
of their own whose source is the server and whose ``packets_in`` is 0.

``flow_view(event)`` packs three facts about one record into an int (cheap to compute once per
batch and to compare in hot loops):

- the record's source is the ``INITIATOR``, the ``RESPONDER`` (a response record) or unknown;
- the connection was ``ANSWERED`` (the responder took it), ``REFUSED`` (a reset, an ICMP error or
  a firewall reject: a failed probe), ``UNANSWERED`` (nothing came back), or unknown;
- ``ONE_WAY``: the format has no reverse counters, so the answer, if any, is another record with
  the reversed 5-tuple (``reverse_key``), which only a detector holding the window can match.

What decides, strongest first:

1. The exporter's connection state. Zeek ``conn_state``: a SYN from the originator was seen in
   every state but ``OTH`` (``^`` in ``history`` means Zeek flipped the record so that this holds);
   ``S0``/``SH``/``RSTOS0`` unanswered, ``REJ`` refused, the others answered. Argus ``State`` is
   each side's TCP flags (``S_RA``: a SYN reset; ``S_``: never answered); a ``?`` in ``Dir`` means
   no SYN was seen. ``Dir`` ``->`` on TCP says the SYN's sender is the source, not that traffic
   was one-way.
2. TCP flags, where the record has them. A SYN without ACK opens a connection; a SYN with ACK
   answers one. VPC Flow Logs report only FIN, SYN, RST and SYN-ACK, so their ACK bit means a
   SYN-ACK; NetFlow's ``tcp_flags`` is the OR of every packet's flags, so both sides of a
   completed connection show SYN and ACK and only a SYN without any ACK decides there.
   CICFlowMeter's flag counts tell whether the record saw a SYN at all: one that did not is the
   rest of an earlier record's connection, no attempt (``_cic``).
3. ICMP types: replies and errors (echo reply, unreachable, time exceeded...) are responses.
4. Ports: the side on a service port answers the side on an ephemeral one. Port classes:
   well-known 0-1023, registered 1024-49151, ephemeral 49152-65535 by IANA (RFC 6335 section 6)
   and 32768-60999 by Linux's default ``ip_local_port_range``; so below 1024 < 1024-32767 <
   32768 and up, and the lower class is the service. Equal classes decide nothing.
5. Otherwise a bidirectional format's source is the initiator (the exporter's own convention);
   a one-way record stays unknown until its reverse record is matched.
"""

from __future__ import annotations

from typing import Final

from ingest.schema import FlowEvent

__all__ = [
    "ACK",
    "ANSWERED",
    "ANSWER_MASK",
    "CIC_FLOW_TIMEOUT_MS",
    "FIN",
    "INITIATOR",
    "ONE_WAY",
    "REFUSED",
    "RESPONDER",
    "ROLE_MASK",
    "RST",
    "SYN",
    "UNANSWERED",
    "UNKNOWN",
    "WRITES_WHOLE",
    "FlowKey",
    "argus_status_record",
    "bare_syn_bytes",
    "client_spoke",
    "continues_connection",
    "data_bytes",
    "flow_key",
    "flow_view",
    "flow_views",
    "headers_only",
    "holds_syn",
    "ip_bytes",
    "is_failed_probe",
    "is_response",
    "opened_and_closed",
    "port_class",
    "record_start",
    "reply_refuses",
    "reverse_key",
    "sent_payload",
    "tcp_flags",
    "took_connection",
    "whole_connection",
]

UNKNOWN: Final = 0
INITIATOR: Final = 1
RESPONDER: Final = 2
ROLE_MASK: Final = 3
ANSWERED: Final = 4
REFUSED: Final = 8
UNANSWERED: Final = 12
ANSWER_MASK: Final = 12
ONE_WAY: Final = 16

# Sources that write a connection once, whole, when it ends (Zeek's conn.log, Suricata's EVE flow
# records): a short record of theirs is a short connection, never a piece of a longer one.
WRITES_WHOLE: Final = frozenset({"zeek", "suricata"})
CIC_FLOW_TIMEOUT_MS: Final = 120_000
"""CICFlowMeter's flow timeout (its 2017-2018 releases): a record is cut there at the latest."""
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10

FlowKey = tuple[str, int, str, int, str]
"""(src ip, src port, dst ip, dst port, protocol) of one record."""

_ZEEK_UNANSWERED: Final = frozenset({"S0", "SH", "RSTOS0"})
_ZEEK_ANSWERED: Final = frozenset({"S1", "SF", "S2", "S3", "RSTO", "RSTR", "RSTRH", "SHR"})
# ICMP types that only ever answer something (RFC 792, RFC 4443): replies and errors.
_ICMP_ANSWERS: Final = frozenset({0, 3, 4, 5, 11, 12, 14, 16, 18})
_ICMP6_ANSWERS: Final = frozenset({1, 2, 3, 4, 129})
# Argus ICMP and UDP states written by the side that answers (ra(1): echo reply, unreachables,
# redirect, time exceeded).
_ARGUS_ANSWER_STATES: Final = ("ECR", "UR", "RED", "TXD")
_EPHEMERAL_MIN: Final = 32768  # Linux's default lower bound; IANA's dynamic range starts at 49152
_BARE_TCP_V4: Final = 40  # IPv4 + TCP headers with no options: what a reset is
_BARE_TCP_V6: Final = 60
_BARE_UDP_V4: Final = 28  # IPv4 + UDP headers
_BARE_UDP_V6: Final = 48
_MAX_SYN_PACKETS: Final = 7  # 1 + Linux's default tcp_syn_retries (6): all an unanswered client sends
_BARE_SYN_V4: Final = 60  # IPv4 + TCP header with the SYN options Linux sends (MSS, SACK, TS, WS)
_BARE_SYN_V6: Final = 80


def port_class(port: int) -> int:
    """0 well-known, 1 registered below every ephemeral range, 2 ephemeral-looking (see module)."""
    return 0 if port < 1024 else 1 if port < _EPHEMERAL_MIN else 2


# Port class of every port, and the role of a record's source by (its class, the destination's).
_PORT_CLASS: Final = bytes(port_class(p) for p in range(65536))
_ROLE_BY_CLASSES: Final = tuple(
    RESPONDER if s < d else INITIATOR if s > d else UNKNOWN for s in range(3) for d in range(3)
)


def _ports_role(src_port: int, dst_port: int) -> int:
    if src_port == 0 or dst_port == 0:
        return UNKNOWN
    return _ROLE_BY_CLASSES[_PORT_CLASS[src_port] * 3 + _PORT_CLASS[dst_port]]


def _icmp_role(ev: FlowEvent) -> int:
    """ICMP type: Zeek puts it in the source port, NetFlow in the destination port's high byte
    (type * 256 + code), Suricata in ``extra["icmp_type"]`` (the type its source sent first); VPC
    Flow Logs and CICFlowMeter write ports 0, which tell nothing."""
    if ev.source == "netflow":
        icmp_type = ev.dst_port >> 8
    elif ev.source == "zeek":
        icmp_type = ev.src_port
    elif ev.source == "suricata" and ev.extra and isinstance(ev.extra.get("icmp_type"), int):
        icmp_type = ev.extra["icmp_type"]
    else:
        return UNKNOWN
    answers = _ICMP6_ANSWERS if ":" in ev.src_ip else _ICMP_ANSWERS
    return RESPONDER if icmp_type in answers else INITIATOR if icmp_type in (8, 13, 15, 17, 128) else UNKNOWN


_FLAG_KEYS: Final = ("tcp_flags", "tcp-flags", "TCP_FLAGS")  # NetFlow/IPFIX, VPC Flow Logs, nProbe CSV


def tcp_flags(ev: FlowEvent) -> int:
    """The record's TCP flags as its exporter wrote them (0: none, or not TCP)."""
    extra = ev.extra
    if not extra or ev.proto != "tcp":
        return 0
    for key in _FLAG_KEYS:
        value = extra.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _zeek(ev: FlowEvent, extra: dict[str, object]) -> int:
    state = extra.get("conn_state")
    if ev.proto == "tcp" and state != "OTH" and isinstance(state, str) and state:
        if state == "REJ":
            return INITIATOR | REFUSED
        if state in _ZEEK_UNANSWERED:
            return INITIATOR | UNANSWERED
        if state in _ZEEK_ANSWERED:
            return INITIATOR | ANSWERED
    role = _icmp_role(ev) if ev.proto == "icmp" else _ports_role(ev.src_port, ev.dst_port)
    if role == UNKNOWN:
        role = INITIATOR if ev.proto != "tcp" else UNKNOWN  # OTH: no SYN seen, midstream
    if ev.packets_in > 0:
        return role | ANSWERED
    # TCP with no SYN seen and nothing back is no connection attempt; UDP/ICMP left alone is.
    return role | (UNANSWERED if ev.proto != "tcp" else UNKNOWN)


def _argus_tcp(ev: FlowEvent, state: str, direction: str) -> int:
    src_flags, sep, dst_flags = state.partition("_")
    if not sep:
        return UNKNOWN
    ports = _ports_role(ev.src_port, ev.dst_port)
    if "S" in src_flags and "A" in src_flags and "S" not in dst_flags and "R" not in src_flags:
        # a SYN with an ACK to a side that never sent a SYN: a SYN-ACK, unless the ports say this
        # is a client whose answers took another path (asymmetric routing)
        role = INITIATOR if ports == INITIATOR else RESPONDER
    elif "S" in src_flags and "?" not in direction:
        role = INITIATOR
    else:
        role = ports
    if not dst_flags:
        if "S" not in src_flags or role == RESPONDER:
            answer = UNKNOWN  # no attempt seen
        elif "A" in src_flags:
            answer = ANSWERED  # it acknowledged a SYN-ACK that reached it by another path
        else:
            answer = UNANSWERED
    elif "R" in dst_flags and "S" not in dst_flags and "S" in src_flags:
        answer = REFUSED
    else:
        answer = ANSWERED
    return role | answer


def _argus(ev: FlowEvent, extra: dict[str, object]) -> int:
    state = extra.get("state")
    direction = extra.get("dir")
    state = state if isinstance(state, str) else ""
    direction = direction.strip() if isinstance(direction, str) else ""
    if ev.proto == "tcp" and state:
        view = _argus_tcp(ev, state, direction)
        if view & ROLE_MASK == UNKNOWN:
            view |= INITIATOR  # Argus's source sent the first packet it saw
        return view
    if state.startswith(_ARGUS_ANSWER_STATES) and direction.startswith("-"):
        return RESPONDER if ev.proto == "icmp" else INITIATOR | REFUSED  # UDP met an ICMP error
    role = _ports_role(ev.src_port, ev.dst_port) if ev.proto != "icmp" else UNKNOWN
    role = role or INITIATOR
    if state == "CON" or ("<" in direction and ">" in direction) or ev.packets_in > 0:
        return role | ANSWERED
    if state in ("INT", "REQ") or direction == "->":  # only the source sent (an echo unanswered)
        return role | UNANSWERED
    return role


def _one_way(ev: FlowEvent) -> int:
    """VPC Flow Logs, NetFlow v5/v9, IPFIX without reverse counters."""
    view = ONE_WAY
    if ev.action == "reject":
        view |= REFUSED
    flags = tcp_flags(ev)
    if flags:
        if flags & SYN and not flags & ACK:
            if view & ANSWER_MASK == UNKNOWN and flags & FIN and ev.source == "vpcflow":
                view |= ANSWERED  # VPC reports no bare ACK: a FIN closed a connection it had opened
            # Else the reverse record (a SYN-ACK, a reset, or none) decides. In NetFlow's OR of every
            # packet's flags, a SYN without ACK was never acknowledged, whatever came after it; and
            # an initiator's reset is no answer in either format: nmap's SYN scan resets an open
            # port's SYN-ACK, and scanners reset after a closed port's reset too (Zeek history
            # ``SrR`` on RITA's server, which as NetFlow had been answered probes).
            return view | INITIATOR
        if flags & SYN and ev.source == "vpcflow":
            return view | RESPONDER  # VPC reports ACK only as part of SYN-ACK
    role = _icmp_role(ev) if ev.proto in ("icmp", "ipv6-icmp") else _ports_role(ev.src_port, ev.dst_port)
    return view | role


def _two_way(ev: FlowEvent) -> int:
    """Bidirectional records without connection state (nProbe, CICFlowMeter, the simulator)."""
    if ev.proto == "icmp":
        role = _icmp_role(ev) or INITIATOR
    else:
        sp, dp = ev.src_port, ev.dst_port
        role = (sp and dp and _ROLE_BY_CLASSES[_PORT_CLASS[sp] * 3 + _PORT_CLASS[dp]]) or INITIATOR
    if ev.action == "reject":
        return role | REFUSED
    return role | (ANSWERED if ev.packets_in > 0 else UNANSWERED)


def _cic(ev: FlowEvent) -> int:
    """CICFlowMeter: bidirectional, the first packet's sender is the source, bytes are payload
    only, and ``cic_flags`` holds the flags it counted (``ingest.parsers.cicflow``). A record that
    saw no SYN is the rest of a connection, not an attempt: CICFlowMeter ends a record at the first
    FIN (the 2017-2018 releases) or at its 120 s flow timeout and starts another with the packets
    after, so every closed connection leaves a tail of an ACK or two. A SYN whose one answer
    carried nothing and drew nothing more from the initiator was reset: a SYN-ACK would have drawn
    its ACK or, from a half-open scan, its RST; both count as a second packet of the initiator.
    Records that saw neither SYN nor ACK are stealth probes (below); nmap's ACK and Maimon scans
    (``-sA``, ``-sM``) carry an ACK and pass for tails."""
    flags = ev.extra.get("cic_flags") if ev.extra else None
    if ev.proto != "tcp" or not isinstance(flags, int):
        return _two_way(ev)
    role = _ports_role(ev.src_port, ev.dst_port)
    if not flags & (SYN | ACK):
        # Neither SYN nor ACK: no TCP stack sends that in or out of a connection, nmap's FIN, Xmas
        # and null scans do (nmap(1)); a closed port resets it, an open or filtered one stays silent.
        if ev.packets_in == 0:
            return INITIATOR | UNANSWERED
        return INITIATOR | (REFUSED if ev.bytes_in == 0 and ev.packets_in == 1 else ANSWERED)
    if not flags & SYN:
        return (role or INITIATOR) | (ANSWERED if ev.packets_in > 0 else UNKNOWN)
    if not flags & ACK or role == UNKNOWN:
        role = INITIATOR  # a lone SYN opened it (the first packet's flags), or nothing says otherwise
    if ev.action == "reject":
        return role | REFUSED
    if ev.packets_in == 0:
        return role | UNANSWERED
    if ev.packets_in == 1 and ev.packets_out == 1 and ev.bytes_in == 0 and ev.bytes_out == 0:
        return role | REFUSED
    return role | ANSWERED


def _netflow(ev: FlowEvent) -> int:
    if ev.packets_in == 0 and ev.bytes_in == 0:
        return _one_way(ev)
    view = _two_way(ev)  # nProbe's bidirectional counters, RFC 5103 biflows
    answer = view & ANSWER_MASK
    if answer == UNANSWERED:  # reverse bytes in a template without a reverse packet count
        view = view - UNANSWERED + ANSWERED
    elif answer == ANSWERED and ev.proto == "tcp" and _reset_biflow(ev):
        view = view - ANSWERED + REFUSED
    return view


def _reset_biflow(ev: FlowEvent) -> bool:
    """A TCP biflow whose responder only reset the attempt: nProbe's ``SERVER_TCP_FLAGS`` (the
    NF-* datasets' column) with RST and no SYN on at most two packets back; without it, one bare
    packet (40 bytes over IPv4, 60 over IPv6: a reset; a SYN-ACK carries the MSS option) answering
    one packet."""
    server = ev.extra.get("SERVER_TCP_FLAGS") if ev.extra else None
    if isinstance(server, int) and not isinstance(server, bool) and server:
        return bool(server & RST) and not server & SYN and ev.packets_in <= 2
    if ev.packets_in != 1 or ev.packets_out != 1:
        return False
    return ev.bytes_in <= _bare_tcp_bytes(ev.src_ip)


def _zeek_view(ev: FlowEvent) -> int:
    return _zeek(ev, ev.extra) if ev.extra else _two_way(ev)


def _argus_view(ev: FlowEvent) -> int:
    return _argus(ev, ev.extra) if ev.extra else _two_way(ev)


def _suricata_view(ev: FlowEvent) -> int:
    """Suricata EVE (``ingest.parsers.suricata``). A ``flow`` record is bidirectional with the client
    as source (Suricata turns round a flow it picked up from the server's SYN-ACK) and each side's
    TCP flags: ``tcp_flags_ts`` the client's, ``tcp_flags_tc`` the server's. A ``netflow`` record is
    one direction, its flags that side's OR, so it is read as NetFlow's. An IPv4 ICMP error is
    counted as a packet to the client of the flow it answers without making that side seen: a UDP
    flow answered by nothing else ends in state ``new``, a TCP one has packets back and no flags
    from the server; both are refused."""
    extra = ev.extra
    if not extra:
        return _two_way(ev)
    if extra.get("event_type") == "netflow":
        view = _one_way(ev)
        if view & ROLE_MASK == UNKNOWN and ev.proto in _SURICATA_ICMP:
            view |= _icmp_role(ev)
        return view
    if ev.packets_out == 0:  # a flow turned round whose client sent nothing seen: no attempt
        return _ports_role(ev.src_port, ev.dst_port)
    if ev.proto == "tcp":
        return _suricata_tcp(ev, extra)
    if ev.proto in _SURICATA_ICMP:
        role = _icmp_role(ev) or INITIATOR
        if role == RESPONDER:
            return role  # an ICMPv6 error or an echo reply seen alone
        return role | (ANSWERED if ev.packets_in > 0 else UNANSWERED)
    role = _ports_role(ev.src_port, ev.dst_port) or INITIATOR
    if ev.packets_in == 0:
        return role | UNANSWERED
    return role | (REFUSED if extra.get("flow_state") == "new" else ANSWERED)


def _suricata_tcp(ev: FlowEvent, extra: dict[str, object]) -> int:
    client, server = extra.get("tcp_flags_ts"), extra.get("tcp_flags_tc")
    client = client if isinstance(client, int) else 0
    server = server if isinstance(server, int) else 0
    if ev.action == "reject":  # the server's answers were resets only
        return INITIATOR | REFUSED
    if not (client | server) & SYN:  # no opening seen (midstream), as Zeek's OTH
        return _ports_role(ev.src_port, ev.dst_port) | (ANSWERED if ev.packets_in > 0 else UNKNOWN)
    if server & SYN:
        return INITIATOR | ANSWERED
    if ev.packets_in == 0:
        return INITIATOR | UNANSWERED
    if not server:
        return INITIATOR | REFUSED  # what came back was an ICMP error, no TCP
    return INITIATOR | ANSWERED  # the server acknowledged; its SYN-ACK was not seen


_SURICATA_ICMP: Final = ("icmp", "58")  # ICMP and IPv6-ICMP as the parser gives them
_BY_SOURCE: Final = {
    "zeek": _zeek_view, "argus": _argus_view, "vpcflow": _one_way, "netflow": _netflow, "cicflowmeter": _cic,
    "suricata": _suricata_view,
}  # fmt: skip


def flow_view(ev: FlowEvent) -> int:
    """Role, answer and ``ONE_WAY`` of one flow record (see the module docstring)."""
    special = _BY_SOURCE.get(ev.source)
    return _two_way(ev) if special is None else special(ev)


def flow_views(events: list[FlowEvent]) -> list[int]:
    """``flow_view`` of each record; the bidirectional case inlined (the detectors' hot path)."""
    out: list[int] = []
    append = out.append
    special_of, roles, classes = _BY_SOURCE.get, _ROLE_BY_CLASSES, _PORT_CLASS
    for ev in events:
        special = special_of(ev.source)
        if special is not None or ev.proto == "icmp":
            append(flow_view(ev))
            continue
        sp, dp = ev.src_port, ev.dst_port
        role = (sp and dp and roles[classes[sp] * 3 + classes[dp]]) or INITIATOR
        if ev.action == "reject":
            append(role | REFUSED)
        else:
            append(role | (ANSWERED if ev.packets_in > 0 else UNANSWERED))
    return out


def record_start(ev: FlowEvent) -> int:
    """When the record's span begins: Argus stamps a record with its start, every other exporter
    with its end (``ingest.schema.FlowEvent``)."""
    return ev.ts if ev.source == "argus" else ev.ts - ev.duration_ms


def holds_syn(ev: FlowEvent) -> bool:
    """The record holds its initiator's SYN, by the flags its exporter wrote: Argus's source flags
    (``S`` before the ``_`` of ``State``), CICFlowMeter's flag counts, NetFlow/IPFIX/VPC/nProbe
    ``tcp_flags``. False when the exporter writes no flags (Zeek and Suricata write a connection
    once, whole, and say nothing of its pieces)."""
    extra = ev.extra
    if not extra or ev.proto != "tcp":
        return False
    if ev.source == "argus":
        state = extra.get("state")
        return isinstance(state, str) and "S" in state.partition("_")[0]
    if ev.source == "cicflowmeter":
        counted = extra.get("cic_flags")
        return isinstance(counted, int) and bool(counted & SYN)
    return bool(tcp_flags(ev) & SYN)


def whole_connection(ev: FlowEvent) -> bool:
    """The record holds a whole TCP connection, its opening and its end: every Zeek or Suricata
    record (written once a connection ends); an Argus record whose source flags show the SYN and
    whose ``State`` a FIN or reset; a NetFlow/IPFIX/VPC/nProbe record whose flags hold SYN and FIN
    or RST; a CICFlowMeter record that counted both. False when the exporter wrote no flags."""
    if ev.source in WRITES_WHOLE:
        return ev.proto == "tcp"
    extra = ev.extra
    if not extra or ev.proto != "tcp":
        return False
    if ev.source == "argus":
        state = extra.get("state")
        return isinstance(state, str) and "S" in state.partition("_")[0] and ("F" in state or "R" in state)
    if ev.source == "cicflowmeter":
        counted = extra.get("cic_flags")
        return isinstance(counted, int) and bool(counted & SYN) and bool(counted & (FIN | RST))
    flags = tcp_flags(ev)
    return bool(flags & SYN) and bool(flags & (FIN | RST))


def opened_and_closed(ev: FlowEvent) -> bool:
    """The record holds a connection from its opening to its close: ``whole_connection``, or a
    CICFlowMeter record that saw the SYN and lasted less than the flow timeout of its 2017-2018
    releases (``CIC_FLOW_TIMEOUT_MS``), so it ended at the connection's first FIN (or at its last
    packet after a reset). Its flag counts hold the first packet's flags only, so no FIN is counted
    and ``whole_connection`` cannot tell."""
    if whole_connection(ev):
        return True
    if ev.source != "cicflowmeter" or ev.proto != "tcp" or not ev.extra:
        return False
    counted = ev.extra.get("cic_flags")
    return isinstance(counted, int) and bool(counted & SYN) and ev.duration_ms < CIC_FLOW_TIMEOUT_MS


def argus_status_record(ev: FlowEvent) -> bool:
    """An Argus record of a TCP connection with no SYN on either side of its ``State``: a status
    record of a connection that an earlier record opened (Argus writes one per status interval, 5 s
    as shipped, so a connection held a minute is a dozen records), or one seen from its middle."""
    if ev.source != "argus" or ev.proto != "tcp" or not ev.extra:
        return False
    state = ev.extra.get("state")
    return isinstance(state, str) and "_" in state and "S" not in state


def continues_connection(ev: FlowEvent, view: int) -> bool:
    """The record is a later piece of a connection an earlier record opened, by the flags its
    exporter wrote: a one-way record whose flags hold no SYN (an inactive or active timeout cut
    the connection), or a CICFlowMeter record with an ACK and no SYN (the tail after the FIN that
    ended the record before, or what followed its 120 s flow timeout). Zeek's records without a
    SYN are left alone: Zeek writes a connection once, and its ``OTH`` records are traffic of their
    own (crafted floods among them)."""
    extra = ev.extra
    if not extra or ev.proto != "tcp":
        return False
    if view & ONE_WAY:
        flags = tcp_flags(ev)
        return bool(flags) and not flags & SYN
    if ev.source == "cicflowmeter":
        counted = extra.get("cic_flags")
        return isinstance(counted, int) and counted & (SYN | ACK) == ACK
    return False


def _bare_tcp_bytes(src_ip: str) -> int:
    """The bytes of a TCP packet with no options and no data: a reset, a bare acknowledgement."""
    return _BARE_TCP_V6 if ":" in src_ip else _BARE_TCP_V4


def bare_syn_bytes(src_ip: str) -> int:
    """The bytes of a packet that carries no data: an IP and TCP header with a SYN's options."""
    return _BARE_SYN_V6 if ":" in src_ip else _BARE_SYN_V4


def client_spoke(packets_out: int, bytes_out: int, src_ip: str) -> bool:
    """A one-way initiator record whose answer is unknown: did the server take the connection?
    More packets than an unanswered connect sends, or packets larger than bare SYNs."""
    if packets_out > _MAX_SYN_PACKETS:
        return True
    bare = bare_syn_bytes(src_ip)
    return packets_out >= 2 and bytes_out > bare * packets_out


def headers_only(ev: FlowEvent, view: int) -> bool:
    """A one-way TCP record whose every packet is a bare header with no options (40 bytes over IPv4,
    60 over IPv6): resets, or acknowledgements without timestamps. Such a record opens no
    connection, since a SYN carries options (the MSS at least, RFC 9293 section 3.7.1: 60 bytes from
    Linux, 52 from Windows, 44 from masscan and ZMap): it answers one (a closed port resetting a
    probe) or is the idle tail of one. Where both ports look alike (a scanner's source port 4444 or
    51000 against a service on 3306 or 40000) the port classes cannot tell its direction."""
    if not view & ONE_WAY or ev.proto != "tcp":
        return False
    return ev.bytes_out <= _bare_tcp_bytes(ev.src_ip) * ev.packets_out


def sent_payload(ev: FlowEvent) -> bool:
    """The source's packets average more than a bare TCP header (with a SYN's options): they carried
    data. A SYN, ACK or RST flood's packets are headers only. CICFlowMeter's payload-only counts are
    given their headers first (``ip_bytes``): held to the IP bar as they are, a database client's
    pooled connection (58 bytes of commands a packet, 98 as IP bytes) was "no data" and its 70,000
    packets a minute a flood. Zeek without ``orig_ip_bytes`` is still held to it as it is."""
    return ip_bytes(ev) > bare_syn_bytes(ev.src_ip) * ev.packets_out


def data_bytes(ev: FlowEvent) -> int:
    """The bytes a TCP record's source sent beyond a bare header a packet (the bar of
    ``sent_payload``): its data, without its acknowledgements of what it received. A download's
    record carries next to none, where its bytes are the client's ACKs (52 bytes each on Linux,
    ~2 % of what it downloads). Other protocols, payload-only counts (CICFlowMeter) and packet
    counts of both directions (Argus files with ``TotPkts`` only) are taken as they are."""
    sent = ev.bytes_out
    if (
        ev.proto != "tcp"
        or ev.source == "cicflowmeter"
        or (ev.extra and ev.extra.get("packets_split_unknown"))
    ):
        return sent
    return max(0, sent - bare_syn_bytes(ev.src_ip) * ev.packets_out)


def ip_bytes(ev: FlowEvent) -> int:
    """The bytes the source sent as IP packets, headers included, as Zeek's ``orig_ip_bytes``,
    NetFlow, IPFIX and VPC Flow Logs count them. CICFlowMeter counts payload only: its packets
    are given the headers they carried at the least, 40 bytes over IPv4 and 60 over IPv6 (IP and
    TCP without options, RFC 791 and 8200, RFC 9293), 28 and 48 for UDP (RFC 768). So a size
    compared across records (the beacon's data-size score, RITA's ``orig_ip_bytes``) varies with the
    packets a record took, whatever the exporter; requests of one length in a varying number of
    packets are not made more alike by a payload-only count."""
    if ev.source != "cicflowmeter":
        return ev.bytes_out
    if ev.proto == "tcp":
        header = _bare_tcp_bytes(ev.src_ip)
    else:
        header = _BARE_UDP_V6 if ":" in ev.src_ip else _BARE_UDP_V4
    return ev.bytes_out + header * ev.packets_out


def took_connection(view: int, ev: FlowEvent) -> bool:
    """The record is a client's connection that the service took: answered, or for a one-way record
    (its answer another record) one in which the client sent more than a connect's SYNs."""
    if view & ROLE_MASK != INITIATOR:
        return False
    answer = view & ANSWER_MASK
    if answer == ANSWERED:
        return True
    return (
        answer == UNKNOWN and bool(view & ONE_WAY) and client_spoke(ev.packets_out, ev.bytes_out, ev.src_ip)
    )


def is_response(view: int) -> bool:
    """The record's source answered the connection: never the subject of an alert."""
    return view & ROLE_MASK == RESPONDER


def is_failed_probe(view: int) -> bool:
    """An attempt refused or left unanswered (a one-way record's answer is its reverse record)."""
    answer = view & ANSWER_MASK
    return (answer in (REFUSED, UNANSWERED)) and view & ROLE_MASK != RESPONDER


def flow_key(ev: FlowEvent) -> FlowKey:
    return (ev.src_ip, ev.src_port, ev.dst_ip, ev.dst_port, ev.proto)


def reverse_key(ev: FlowEvent) -> FlowKey:
    """The key of the record that answers ``ev`` (same 5-tuple, reversed)."""
    return (ev.dst_ip, ev.dst_port, ev.src_ip, ev.src_port, ev.proto)


def reply_refuses(ev: FlowEvent) -> bool:
    """Whether a record answering a probe refuses it rather than accepting the connection: a
    reset (RST without SYN in its flags), a firewall reject, or, with no flags, TCP of one packet
    with no options (40 bytes over IPv4, 60 over IPv6): a SYN-ACK carries at least the MSS option
    (RFC 9293 section 3.7.1), a reset none."""
    if ev.action == "reject":
        return True
    if ev.proto != "tcp":
        return False
    flags = tcp_flags(ev)
    if flags:
        return bool(flags & RST) and not flags & SYN
    return ev.packets_out == 1 and ev.bytes_out <= _bare_tcp_bytes(ev.src_ip)
