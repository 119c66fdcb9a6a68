"""One source sends a flood of packets to one destination (SYN, UDP or ICMP flood)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import ACK, SYN, tcp_flags
from detectors.meta import DetectorMeta, technique
from detectors.state import Span, TopCounts
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["FloodState", "SourceFlood"]


class FloodState:
    __slots__ = ("by_dst", "bytes", "span", "syn")

    def __init__(self, cap: int) -> None:
        self.span = Span()
        self.bytes = 0
        self.syn = 0
        self.by_dst = TopCounts(cap)  # packets per destination, heaviest kept

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.bytes, self.syn, self.by_dst)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.bytes, self.syn, self.by_dst = s  # type: ignore[assignment]


class SourceFlood(WindowedDetector[FloodState]):
    meta = DetectorMeta(
        id="dos.source_flood",
        version="1.0.0",
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
        "params.min_packets_to_one_destination within a window.",
        false_positives=(
            "load tests run by the tenant (params.allowed_sources)",
            "bulk transfers with many packets (large average packet size; see evidence)",
        ),
        note="Small packets with SYN flags (evidence.syn_records) mean a SYN flood; block the source "
        "upstream and check the victim's connection table. A tenant VM as source means it is abused.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "min_packets_to_one_destination": int,
        "max_bytes_per_packet": int,
        "allowed_sources": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.min_packets = int(self.params["min_packets_to_one_destination"])
        self.max_bpp = int(self.params["max_bytes_per_packet"])
        self.allowed = frozenset(self.params["allowed_sources"])
        self._cap = 64

    def new_state(self, key: Hashable) -> FloodState:
        return FloodState(self._cap)

    def observe_batch(self, batch: Batch) -> None:
        batch = batch.initiated()  # a response record is never the subject
        allowed, max_ids, state, max_bpp = self.allowed, self.max_ids, self.state, self.max_bpp
        for ev in batch.flows:
            try:
                packets = ev.packets_out
                sent = ev.bytes_out
                if packets <= 0 or sent > max_bpp * packets:  # only small-packet traffic can flood here
                    continue
                src = ev.src_ip
                if src in allowed:
                    continue
                st: FloodState | None = state(ev.ts, (ev.tenant, src))
                if st is None:
                    continue
                st.bytes += sent
                st.by_dst.add(ev.dst_ip, packets)
                if ev.extra and tcp_flags(ev) & (SYN | ACK) == SYN:  # openings (NetFlow/IPFIX, VPC, nProbe)
                    st.syn += 1
                st.span.add(ev.ts, ev.id, max_ids)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: FloodState, other: FloodState) -> None:
        into.span.merge(other.span, self.max_ids)
        into.bytes += other.bytes
        into.syn += other.syn
        into.by_dst.merge(other.by_dst)

    def finish_key(self, window: Window, key: Hashable, state: FloodState) -> Finding | None:
        best = state.by_dst.top()
        if best is None:
            return None
        victim, top_packets = best
        if top_packets < self.min_packets:
            return None
        total_packets = state.by_dst.total()
        bpp = state.bytes / total_packets if total_packets else 0.0
        if bpp > self.max_bpp:
            return None
        tenant, src = cast(tuple[Any, str], key)
        seconds = max(1.0, (window.end - window.start) / 1000)
        kind = "SYN flood" if state.syn else "packet flood"
        return Finding(
            entity=Entity("ip", src),
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=f"{src} sent {top_packets} packets to {victim} ({top_packets / seconds:.0f} pkt/s "
            f"averaged over the window, {bpp:.0f} B/packet): {kind}",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                "victim": victim,
                "packets_to_victim": top_packets,
                "bytes_per_packet": round(bpp, 1),
                "syn_records": state.syn,
            },
        )
