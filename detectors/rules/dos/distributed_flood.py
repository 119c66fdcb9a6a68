"""Many sources flood one destination (distributed denial of service); the entity is the victim.

Packets into one tenant or management address are summed per window with the packets of each
source; at least ``params.min_packets`` from at least ``params.min_sources`` sources, none above
``params.max_top_source_share`` of them, is a distributed flood. A provider service address is
never a victim here (the registry's ``provider_services``, at their ports): such an address may
sit inside a tenant's CIDR (AWS's VPC resolver at the VPC base + 2, an object storage interface
endpoint with an address of the tenant's subnet), and a tenant's whole fleet writing backups to
it or resolving through it has exactly a distributed flood's shape. Those records are skipped and
counted in ``counters["provider_service"]``; the provider protects its services itself.

Long records count at their rate, as in ``dos.source_flood``: a record longer than the window adds
its packets times window over duration. Zeek writes a connection once, when it ends, so an hour-long
database connection's 3.6 million packets all landed in its last minute's count.

A TCP response record that carried data (packets above a bare header, ``flowdir.sent_payload``)
is not counted (``counters["requested_data"]``): TCP sends no data before the handshake, so it
is a download the receiver asked for on a connection it opened, and a spoofed request cannot
reflect one. Formats with one record per direction (VPC Flow Logs, NetFlow v5/v9) write a
server's data as a record of its own, so a VM downloading from 20 servers at 20 Mbit/s (1,700
full packets a second) was a distributed flood there. Reflection floods still count: UDP answers
(DNS, NTP, SSDP, memcached) to spoofed requests, and TCP SYN-ACKs, which carry nothing.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import RESPONDER, ROLE_MASK, sent_payload
from detectors.meta import DetectorMeta, technique
from detectors.state import Span, bump_capped
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["DistributedFlood", "VictimState"]


class VictimState:
    __slots__ = ("bytes", "packets", "sources", "span")

    def __init__(self) -> None:
        self.span = Span()
        self.packets = 0
        self.bytes = 0
        self.sources: dict[str | None, int] = {}  # packets per source (capped; overflow under None)

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.packets, self.bytes, self.sources)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.packets, self.bytes, self.sources = s  # type: ignore[assignment]


class DistributedFlood(WindowedDetector[VictimState]):
    meta = DetectorMeta(
        id="dos.distributed_flood",
        version="1.4.0",
        title="Distributed flood against one address",
        category="dos",
        score=70,
        severity="high",
        attack=(technique("Impact", "T1498", "Network Denial of Service"),),
        kinds=frozenset({"flow"}),
        description="Packets sent to one tenant (or management) address reach params.min_packets within a "
        "window, from at least params.min_sources sources, none of which sends more than "
        "params.max_top_source_share of them. The entity is the victim address: no single source is to "
        "blame.",
        false_positives=(
            "a legitimate traffic peak (launch, news) on a busy service: packet volume per source stays low",
            "a CDN or load balancer in front of the destination (many sources by design)",
            "a provider service endpoint inside a tenant's range used by the tenant's fleet (list it in the "
            "registry's provider_services)",
        ),
        note="Engage upstream scrubbing / rate limits for the victim; the top sources and the port tell "
        "reflection (53, 123, 1900, 19) from direct floods.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "min_packets": int,
        "min_sources": int,
        "max_top_source_share": float,
        "allowed_destinations": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.min_packets = int(self.params["min_packets"])
        self.min_sources = int(self.params["min_sources"])
        self.max_top_share = float(self.params["max_top_source_share"])
        self.allowed = frozenset(self.params["allowed_destinations"])

    def new_state(self, key: Hashable) -> VictimState:
        return VictimState()

    def observe_batch(self, batch: Batch) -> None:
        # Response records count too (``detectors.flowdir``): the entity is the receiver, never a
        # response's source, and a reflection flood (DNS, NTP, SSDP answers to spoofed requests)
        # is made of responses the victim never asked for.
        allowed, cap, max_ids, state = self.allowed, self.max_distinct, self.max_ids, self.state
        reg = batch.registry
        service = reg.provider_service if reg.has_provider_services else None
        skipped = asked = 0
        window = self._size
        # The pane of the current event time, cached locally: a batch spans seconds, a pane minutes.
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        for ev, dst_t, view in zip(batch.flows, batch.dst_tenants, batch.flow_views, strict=True):
            try:
                packets = ev.packets_out
                if dst_t is None or packets <= 0:  # victims are tenant or management addresses
                    continue
                if view & ROLE_MASK == RESPONDER and ev.proto == "tcp" and sent_payload(ev):
                    asked += 1  # data on a connection the receiver opened: a download
                    continue
                sent = ev.bytes_out
                if ev.duration_ms > window:  # a long record (Zeek, Argus, NetFlow active timeout): its rate
                    packets = packets * window // ev.duration_ms
                    sent = sent * window // ev.duration_ms
                dst = ev.dst_ip
                if dst in allowed:
                    continue
                if service is not None and service(dst, ev.dst_port) is not None:
                    skipped += 1  # a provider endpoint inside the tenant's range: not a victim
                    continue
                ts = ev.ts
                key = (ev.tenant, dst)
                if ts - ts % pane != cur:
                    bucket, cur = self.bucket(ts), ts - ts % pane
                st: VictimState | None = bucket.get(key)
                if st is None:
                    st = state(ts, key)  # created, or None when the pane is full (counted)
                    if st is None:
                        continue
                st.packets += packets
                st.bytes += sent
                sources, src = st.sources, ev.src_ip  # bump_capped, inlined
                if src in sources:
                    sources[src] += packets
                elif len(sources) < cap:
                    sources[src] = packets
                else:
                    sources[None] = sources.get(None, 0) + packets
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
        if asked:
            self.counters["requested_data"] = self.counters.get("requested_data", 0) + asked

    def merge(self, into: VictimState, other: VictimState) -> None:
        into.span.merge(other.span, self.max_ids)
        into.packets += other.packets
        into.bytes += other.bytes
        for src, n in other.sources.items():
            bump_capped(into.sources, src, n, self.max_distinct)

    def finish_key(self, window: Window, key: Hashable, state: VictimState) -> Finding | None:
        n_sources = len(state.sources) - (None in state.sources)
        if state.packets < self.min_packets or n_sources < self.min_sources:
            return None
        top_src, top = max(((n, s) for s, n in state.sources.items() if s is not None), default=(0, None))
        if top_src > self.max_top_share * state.packets:
            return None
        tenant, victim = cast(tuple[Any, str], key)
        seconds = max(1.0, (window.end - window.start) / 1000)
        return Finding(
            entity=Entity("ip", victim),
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=f"{victim} received {state.packets} packets ({state.packets / seconds:.0f} pkt/s) from "
            f"{n_sources} sources (largest {top_src / state.packets:.0%}): distributed flood",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                "packets": state.packets,
                "bytes": state.bytes,
                "distinct_sources": n_sources,
                "top_source": top,
                "top_source_share": round(top_src / state.packets, 3),
            },
        )
