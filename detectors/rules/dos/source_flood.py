"""One source sends a flood of packets to one destination (SYN, UDP or ICMP flood).

Small-packet records (at most ``params.max_bytes_per_packet`` IP bytes a packet, headers included:
CICFlowMeter's payload-only counts get their headers, ``flowdir.ip_bytes``) initiated by one
source are summed per destination over the window; the busiest destination at or above
``params.min_packets_to_one_destination`` is reported.

Datagrams (UDP, ICMP, GRE: every protocol but TCP) are held to
``params.max_datagram_bytes_per_packet`` (600) instead: a flood tool sends datagrams of the size it
is told, and Mirai's UDP, "udpplain" and GRE floods send 512 bytes of payload unless told otherwise
(its ``ATK_OPT_PAYLOAD_SIZE`` default: 540-byte packets), as ``hping3 --udp -d 512`` does. Measured
in the tool lab: hping3's UDP flood of 512-byte datagrams (2,000 a second) was raised by no rule,
in Argus's records or in softflowd's. The bulk streams of UDP sit above 600 bytes a packet: QUIC
pads every datagram carrying its Initial to 1,200 bytes (RFC 9000 section 14.1) and sends its data
in datagrams near the path MTU; video over RTP, and VPN tunnels carrying a transfer, fill packets
too. Their small packets (QUIC's or a tunnel's acknowledgements) go the other way, answered by more
bytes than they carry: a download's, below. A one-way stream of 200-600 byte datagrams at the bar's
rate (UDP syslog or StatsD at over 830 messages a second to one collector) is raised: list its
source in ``params.allowed_sources``.

Records towards the provider's own services (the registry's ``provider_services``, at their
ports: the DNS resolver, NTP, instance metadata, object storage) are skipped and counted in
``counters["provider_service"]``: a resolver-heavy VM sending tens of thousands of DNS queries a
minute to the VPC resolver is load on the provider's service, which shapes it itself, not a flood
the tenant needs to hear of. AWS caps the traffic of one network interface to its link-local
services (Amazon DNS, instance metadata, Time Sync) at 1,024 packets per second ("Amazon VPC
quotas", DNS; the ENA driver's ``linklocal_allowance_exceeded`` counter), which is above this
rule's default of 50,000 packets a minute (~830/s): without the skip a VM at that cap would raise
it.

A TCP flood at a service that never answers is held to a lower bar,
``params.min_unanswered_tcp_packets`` to one address and port. It counts the records whose
exporter says nothing came back (``flowdir``: Zeek ``S0``, Argus ``S_``, a biflow with no reverse
packet) and NetFlow/IPFIX records whose flags, the OR of every packet's, hold a SYN and no ACK (the
initiator never acknowledged a SYN-ACK). VPC Flow Logs never report a bare ACK, so their flags
cannot say it, and they keep the first bar. A TCP stack cannot send that many: it retransmits an
unanswered SYN ``tcp_syn_retries`` times (Linux: 6, at 1, 3, 7, 15, 31 and 63 s, RFC 6298's
doubling backoff; Windows: 2), so at most 6 packets an attempt in a minute, and 10,000 packets
mean ~1,700 attempts a minute at one silent port, where a client pool retrying a dead database or
a health checker makes tens. Raw-socket tools do not wait: hping3 ``-S --flood``, Mirai's
``attack_tcp_syn`` (one port chosen for the attack, a burst as long as its C&C orders). Counted
per port, a vertical scan (a probe or two per port, ``nmap(1)`` ``--max-retries``) never reaches
it: scans are the port-scan rules'.

A TCP connection the service took and in which the client sent data (its packets average more
than a bare header with a SYN's options, ``flowdir.sent_payload``) is not counted
(``counters["served_connection"]``). The receiver paces an accepted connection with its window
and acknowledgements (RFC 9293 section 3.8.6), so its small packets are an application's chatty
stream, not a flood of the network layer: an app server's pooled connection to Redis or MySQL
carrying a thousand commands a second (60,000 packets a minute each way, ~100 bytes each), a log
shipper writing with ``TCP_NODELAY``, a remote-desktop session. The floods this rule is for are
sent raw, outside any connection the service took: bare SYN, ACK or RST headers (hping3 ``-S``,
``-A``, ``-R``; Mirai's ``attack_tcp_syn``), or packets to 5-tuples the service never accepted; a
SYN flood at an open port is answered by SYN-ACKs and still counted, since its SYNs carry nothing.
Abuse of accepted connections is ``dos.app_flood``'s and ``dos.slow_connections``' business.

Long records count at their rate: a record longer than the window (Argus status records of up to an
hour in the CTU-13 files, NetFlow's 30-minute active timeout) adds its packets times window over
duration, so an hour-long download of 65,000 packets (18 a second) is no minute's flood. A record
whose destination sent more than twice the bytes it received is a download or a reply stream, not
a flood when those bytes came in full packets (``_BULK_PACKET_BYTES`` = 1,000 a packet on average,
near the 1,500-byte Ethernet MTU; a record with no reverse packet count, as Argus's total-only
files, counts one): a DNS query flood's answers are small packets and still count.

Formats with one record per direction (VPC Flow Logs, NetFlow v5/v9, plain IPFIX) have no reverse
counters, so a download's acknowledgements are a record of their own: a VM downloading at 100
Mbit/s sends ~4,000 bare ACKs a second (a receiver acknowledges every second full segment, RFC
9293 section 3.8.6.3; QUIC's default ack frequency is the same, RFC 9000 section 13.2.2), 250,000
packets of 52 bytes a minute, on the shape of an ACK flood. A one-way small-packet record of at
least ``_HELD_MIN_PACKETS`` is therefore held until the window closes and counted only if the
reverse 5-tuple did not carry at least twice its bytes in full packets in the window (the same
test as the bidirectional one above); a flood's victim sends nothing of the kind back.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, Final, cast

from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import (
    ACK,
    ANSWER_MASK,
    ONE_WAY,
    SYN,
    UNANSWERED,
    ip_bytes,
    sent_payload,
    tcp_flags,
    took_connection,
)
from detectors.meta import DetectorMeta, technique
from detectors.state import Span, TopCounts
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["FloodState", "SourceFlood"]


_BULK_PACKET_BYTES: Final = 1000
_HELD_MIN_PACKETS: Final = 100  # one-way records held for their reverse: an ACK stream of a 300 kB download
_HELD_CAP: Final = 256  # held records and bulk reverses kept per source and pane; beyond: counted at once


# A one-way record's connection from its source's side: (source port, destination, its port, protocol).
Leg = tuple[int, str, int, str]


def _one_way_bulk(ev: Any, view: int) -> bool:
    """A one-way record of at least ``_HELD_MIN_PACKETS`` full packets: a download's data, whose
    receiver's acknowledgements are held records of its own state."""
    packets = ev.packets_out
    return (
        bool(view & ONE_WAY) and packets >= _HELD_MIN_PACKETS and ev.bytes_out >= _BULK_PACKET_BYTES * packets
    )


class FloodState:
    __slots__ = ("bulk_in", "by_dst", "bytes", "held", "silent", "span", "syn")

    def __init__(self, cap: int) -> None:
        self.span = Span()
        self.bytes = 0
        self.syn = 0
        self.by_dst = TopCounts(cap)  # packets per destination, heaviest kept
        # Unanswered TCP packets per (destination, port); made at the first such record.
        self.silent: TopCounts | None = None
        # One-way small-packet records awaiting their reverse: leg -> [packets, bytes].
        self.held: dict[Leg, list[int]] | None = None
        # Bytes of one-way full-packet records *to* this source, by the source's leg of them.
        self.bulk_in: dict[Leg, int] | None = None

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.bytes, self.syn, self.by_dst, self.silent, self.held, self.bulk_in)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.bytes, self.syn, self.by_dst = s[:4]  # type: ignore[assignment]
        self.silent = s[4] if len(s) > 4 else None  # type: ignore[assignment]  # 1.3.0's state had none
        self.held, self.bulk_in = s[5:7] if len(s) > 5 else (None, None)  # type: ignore[assignment]  # 1.4.0's


class SourceFlood(WindowedDetector[FloodState]):
    meta = DetectorMeta(
        id="dos.source_flood",
        version="1.8.0",
        title="Packet flood from one source",
        category="dos",
        score=65,
        severity="medium",
        attack=(
            technique("Impact", "T1498.001", "Direct Network Flood"),
            technique("Impact", "T1499.002", "Service Exhaustion Flood"),
        ),
        kinds=frozenset({"flow"}),
        description="Packets from one source address to a single destination reach "
        "params.min_packets_to_one_destination within a window, or TCP packets to one address and "
        "port that never answered reach params.min_unanswered_tcp_packets.",
        false_positives=(
            "load tests run by the tenant (params.allowed_sources)",
            "bulk transfers with many packets (large average packet size; see evidence)",
            "heavy use of the provider's DNS, NTP or metadata service (list it in the registry's "
            "provider_services)",
        ),
        note="Small packets with SYN flags (evidence.syn_records) mean a SYN flood; block the source "
        "upstream and check the victim's connection table. A tenant VM as source means it is abused.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "min_packets_to_one_destination": int,
        "min_unanswered_tcp_packets": int,
        "max_bytes_per_packet": int,
        "max_datagram_bytes_per_packet": int,
        "allowed_sources": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.min_packets = int(self.params["min_packets_to_one_destination"])
        self.min_silent = int(self.params["min_unanswered_tcp_packets"])  # 0: off
        self.max_bpp = int(self.params["max_bytes_per_packet"])
        self.max_datagram_bpp = int(self.params["max_datagram_bytes_per_packet"])
        self.allowed = frozenset(self.params["allowed_sources"])
        self._cap = 64

    def new_state(self, key: Hashable) -> FloodState:
        return FloodState(self._cap)

    def observe_batch(self, batch: Batch) -> None:
        for ev, view in batch.responses():  # a server's one-way data: its client's ACKs are no flood
            if _one_way_bulk(ev, view):
                self._note_bulk(ev)
        batch = batch.initiated()  # a response record is never the subject
        allowed, max_ids = self.allowed, self.max_ids
        max_bpp, max_datagram_bpp = self.max_bpp, self.max_datagram_bpp
        max_keys, cap = self.max_keys, self._cap
        reg = batch.registry
        service = reg.provider_service if reg.has_provider_services else None
        skipped = served = 0
        window = self._size
        # The pane of the current event time, cached locally: a batch spans seconds, a pane minutes.
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        views = batch.flow_views
        silent_bar = self.min_silent > 0
        for i, ev in enumerate(batch.flows):
            try:
                packets = ev.packets_out
                sent = ev.bytes_out if ev.source != "cicflowmeter" else ip_bytes(ev)  # bytes with headers
                # only small-packet traffic can flood here
                if packets <= 0 or sent > (max_bpp if ev.proto == "tcp" else max_datagram_bpp) * packets:
                    if _one_way_bulk(ev, views[i]):
                        self._note_bulk(ev)  # a one-way download's data: its receiver's ACKs are no flood
                    continue
                if ev.bytes_in > 2 * sent and ev.bytes_in >= _BULK_PACKET_BYTES * max(ev.packets_in, 1):
                    continue  # the destination sent most bytes, in full packets: a download
                if ev.proto == "tcp" and sent_payload(ev) and took_connection(views[i], ev):
                    served += 1  # a connection the service took and paces: not a network-layer flood
                    continue
                if ev.duration_ms > window:  # a long record (Argus, NetFlow active timeout): its rate
                    packets = packets * window // ev.duration_ms
                    sent = sent * window // ev.duration_ms  # the same share: bytes a packet stay as sent
                src = ev.src_ip
                if src in allowed:
                    continue
                if service is not None and service(ev.dst_ip, ev.dst_port) is not None:
                    skipped += 1  # the provider's resolver, NTP, metadata: not a flood
                    continue
                ts = ev.ts
                key = (ev.tenant, src)
                if ts - ts % pane != cur:
                    bucket, cur = self.bucket(ts), ts - ts % pane
                st: FloodState | None = bucket.get(key)
                if st is None:  # Detector.state, inlined: created, or counted when the pane is full
                    if len(bucket) >= max_keys:
                        self.counters["overflow"] += 1
                        continue
                    st = bucket[key] = FloodState(cap)
                opening = bool(ev.extra) and tcp_flags(ev) & (SYN | ACK) == SYN
                dst = ev.dst_ip
                if (
                    packets >= _HELD_MIN_PACKETS
                    and views[i] & ONE_WAY
                    and not (opening and ev.source == "netflow")
                ):
                    held = st.held
                    if held is None:
                        held = st.held = {}
                    leg = (ev.src_port, dst, ev.dst_port, ev.proto)
                    seen = held.get(leg)
                    if seen is not None:
                        seen[0] += packets
                        seen[1] += sent
                        packets = 0  # held: counted at the window's close unless its reverse was a download
                    elif len(held) < _HELD_CAP:
                        held[leg] = [packets, sent]
                        packets = 0
                if packets:
                    st.bytes += sent
                    by_dst = st.by_dst
                    counts = by_dst.counts
                    if dst in counts:  # TopCounts.add, its common case inlined
                        counts[dst] += packets
                    else:
                        by_dst.add(dst, packets)
                if opening:  # openings (NetFlow/IPFIX, VPC, nProbe)
                    st.syn += 1
                if (
                    silent_bar
                    and ev.proto == "tcp"
                    and (
                        views[i] & (ANSWER_MASK | ONE_WAY) == UNANSWERED
                        or (opening and ev.source == "netflow")
                    )
                ):
                    silent = st.silent
                    if silent is None:
                        silent = st.silent = TopCounts(cap)
                    silent.add((dst, ev.dst_port), packets)
                span = st.span  # Span.add, inlined
                if span.count == 0:
                    span.first = span.last = ts
                elif ts < span.first:
                    span.first = ts
                elif ts > span.last:
                    span.last = ts
                span.count += 1
                if len(span.ids) < max_ids:
                    span.ids.append(ev.id)
            except Exception as exc:
                self.error(ev, exc)
        if skipped:
            self.counters["provider_service"] = self.counters.get("provider_service", 0) + skipped
        if served:
            self.counters["served_connection"] = self.counters.get("served_connection", 0) + served

    def _note_bulk(self, ev: Any) -> None:
        """A one-way record of full packets: the bytes its destination received on that connection,
        kept in the destination's state under the destination's leg of it."""
        bucket = self.bucket(ev.ts)
        key = (ev.tenant, ev.dst_ip)
        st: FloodState | None = bucket.get(key)
        if st is None:
            if len(bucket) >= self.max_keys:
                self.counters["overflow"] += 1
                return
            st = bucket[key] = FloodState(self._cap)
        bulk = st.bulk_in
        if bulk is None:
            bulk = st.bulk_in = {}
        leg = (ev.dst_port, ev.src_ip, ev.src_port, ev.proto)
        if leg in bulk or len(bulk) < _HELD_CAP:
            bulk[leg] = bulk.get(leg, 0) + ev.bytes_out

    def merge(self, into: FloodState, other: FloodState) -> None:
        into.span.merge(other.span, self.max_ids)
        into.bytes += other.bytes
        into.syn += other.syn
        into.by_dst.merge(other.by_dst)
        if other.silent is not None:
            if into.silent is None:
                into.silent = TopCounts(self._cap)
            into.silent.merge(other.silent)
        if other.held:
            held = into.held = into.held if into.held is not None else {}
            for leg, (packets, sent) in other.held.items():
                mine = held.get(leg)
                if mine is not None:
                    mine[0] += packets
                    mine[1] += sent
                else:
                    held[leg] = [packets, sent]
        if other.bulk_in:
            bulk = into.bulk_in = into.bulk_in if into.bulk_in is not None else {}
            for leg, received in other.bulk_in.items():
                bulk[leg] = bulk.get(leg, 0) + received

    def _counted(self, state: FloodState) -> tuple[TopCounts, int]:
        """Packets per destination and bytes, with the held records whose reverse was no download."""
        if not state.held:
            return state.by_dst, state.bytes
        by_dst, sent_total = TopCounts(self._cap), state.bytes
        by_dst.merge(state.by_dst)
        bulk = state.bulk_in or {}
        for leg, (packets, sent) in state.held.items():
            if bulk.get(leg, 0) >= 2 * sent:
                self.counters["download_acks"] = self.counters.get("download_acks", 0) + 1
                continue  # the acknowledgements of a download (one-way records)
            by_dst.add(leg[1], packets)
            sent_total += sent
        return by_dst, sent_total

    def finish_key(self, window: Window, key: Hashable, state: FloodState) -> Finding | None:
        by_dst, sent_total = self._counted(state)
        best = by_dst.top()
        if best is None:
            return None
        victim, top_packets = best
        port: int | None = None
        silent_packets = 0
        if top_packets < self.min_packets:
            quiet = state.silent.top() if state.silent is not None and self.min_silent else None
            if quiet is None or quiet[1] < self.min_silent:
                return None
            pair, silent_packets = quiet
            victim, port = cast(tuple[str, int], pair)
            top_packets = by_dst.counts.get(victim, silent_packets)
        total_packets = by_dst.total()
        bpp = sent_total / total_packets if total_packets else 0.0
        if bpp > max(self.max_bpp, self.max_datagram_bpp):  # each record counted was within its own bar
            return None
        tenant, src = cast(tuple[Any, str], key)
        seconds = max(1.0, (window.end - window.start) / 1000)
        kind = "SYN flood" if state.syn or port is not None else "packet flood"
        at = f"{victim}:{port}" if port is not None else victim
        quiet_note = f", {silent_packets} of them to a port that never answered" if port is not None else ""
        evidence: dict[str, Any] = {
            "victim": victim,
            "packets_to_victim": top_packets,
            "bytes_per_packet": round(bpp, 1),
            "syn_records": state.syn,
            "sources": [src],  # what the alert is about: this source's packets to the victim
            "destinations": [victim],
        }
        if port is not None:
            evidence["victim_port"] = port
            evidence["unanswered_tcp_packets"] = silent_packets
        return Finding(
            entity=Entity("ip", src),
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=f"{src} sent {top_packets} packets to {at} ({top_packets / seconds:.0f} pkt/s "
            f"averaged over the window, {bpp:.0f} B/packet{quiet_note}): {kind}",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence=evidence,
        )
