"""A tenant's UDP service reflects an amplification flood: it answers requests that name one outside
address with many times their bytes (the tenant's address is the abused reflector; the address it
answers is the flood's victim, whose address the requests forged).

What is counted
    UDP between a tenant address serving one of ``params.ports`` and an address outside that tenant,
    per window and (tenant, reflector, service port, remote address): the bytes and packets the remote
    sent to the service (requests) and the service sent back (responses). A record holds the
    requests, the responses or both, whichever way the exporter writes it: a biflow (Argus, Zeek,
    IPFIX biflows, CICFlowMeter) from the remote to the service carries both, and one-way formats
    (VPC Flow Logs, NetFlow v5/v9) write each direction as a record of its own, both at the
    reflector's interface. A record longer than the window counts at its rate, as in
    ``dos.source_flood``.

When it fires
    The service sent the remote at least ``params.min_response_packets`` packets in the window, with
    at least ``params.min_amplification`` times the bytes the remote sent it, and the remote's
    requests are in the records (without them, what the service sent is unsolicited:
    ``dos.source_flood``'s). One alert per reflector and window: the remote that got most, the others
    counted. The entity is the reflector, the victim in ``destinations``: it is the tenant's service
    that must be closed or limited.

Thresholds and what they rest on
    - ``ports``: the UDP services whose answers amplify, with the bandwidth amplification factors
      of US-CERT's alert TA14-017A ("UDP-Based Amplification Attacks", memcached added in 2018):
      QOTD 17 (140), CharGEN 19 (359), DNS 53 (28-54), TFTP 69 (60), Portmap 111 (7-28), NTP 123
      (557, ``monlist``), CLDAP 389 (56-70), RIPv1 520 (131), SSDP 1900 (31), memcached 11211
      (10,000-51,000), Quake 27960 (64); and four that DDoS mitigation vendors reported abused as
      amplifiers since (WS-Discovery 3702, Apple Remote Management 3283, CoAP 5683, Ubiquiti
      discovery 10001), held to the same factor bar. The 2018 memcached floods (1.35 Tbit/s at
      GitHub) came from servers answering UDP on 11211 to the internet; memcached 1.5.6 turned UDP
      off by default for that reason. NetBIOS (3.8), SNMPv2 (6.3), mDNS (2-10) and Steam (5.5)
      amplify less than the bar below and are left to ``dos.distributed_flood`` at their victims.
    - ``min_amplification`` 10: a request answered with the same bytes is a service at work (an NTP
      server's 48-byte answer to a 48-byte query, a DNS answer of a few hundred bytes to a query of
      ~80: 2-5x), while the abuse picks what amplifies most (DNS ``ANY`` with EDNS0, NTP ``monlist``,
      memcached ``get`` of a large value: the factors above).
    - ``min_response_packets`` 6,000 a minute to one remote (100 a second): a reflector abused in a
      campaign answers at the rate the requests are forged, and each request of the large factors
      brings many datagrams (the tool lab's memcached: 10 requests a second, 730 answers), while a
      client of a public service asks a handful of times a minute. The look-alike at this rate is an
      authoritative DNS server of DNSSEC-signed zones (answers of 1-2 kB to ~80-byte queries, over 10
      times) queried by one resolver address at over 100 a second: list the server in
      ``params.allowed_reflectors``.
    - Within one tenant it never fires: a forged source is a victim outside the tenant, and a
      tenant's own resolver serves its own fleet.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.alert import Entity
from detectors.base import MANAGEMENT, Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.state import Span
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["Reflector", "ReflectorState"]

# Per remote address: [request bytes, request packets, response bytes, response packets]
_REQ_BYTES, _REQ_PACKETS, _RESP_BYTES, _RESP_PACKETS = 0, 1, 2, 3
_MAX_REMOTES = 256  # per reflector, service and window: the busiest are what matter; the rest pooled


def _counts_of(remotes: dict[str | None, list[int]], remote: str | None) -> list[int]:
    """``remote``'s counts, made when new; past ``_MAX_REMOTES`` remotes a new one's go to the pooled
    counts under None (``detectors.state.bump_capped``'s rule, for a row of counts)."""
    counts = remotes.get(remote)
    if counts is None:
        if len(remotes) >= _MAX_REMOTES:
            remote = None
            counts = remotes.get(None)
        if counts is None:
            counts = remotes[remote] = [0, 0, 0, 0]
    return counts


class ReflectorState:
    __slots__ = ("remotes", "span")

    def __init__(self) -> None:
        self.span = Span()
        self.remotes: dict[str | None, list[int]] = {}  # remote -> counts (overflow under None)

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.remotes)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.remotes = s  # type: ignore[assignment]


class Reflector(WindowedDetector[ReflectorState]):
    meta = DetectorMeta(
        id="dos.reflector",
        version="1.0.0",
        title="Tenant service reflecting an amplification flood",
        category="dos",
        score=60,
        severity="medium",
        attack=(technique("Impact", "T1498.002", "Reflection Amplification"),),
        kinds=frozenset({"flow"}),
        description="A tenant address serving a UDP port of params.ports sent one outside address at least "
        "params.min_response_packets packets within a window, at least params.min_amplification times "
        "the bytes that address sent it: its service answers forged requests and amplifies a flood at "
        "the forged address.",
        false_positives=(
            "an authoritative DNS server of DNSSEC-signed zones queried by one resolver address at over "
            "100 queries a second (params.allowed_reflectors)",
        ),
        note="Close the service to the internet or rate-limit it (memcached: -U 0; NTP: no monlist; DNS: "
        "no open recursion, response rate limiting); the victim is in evidence.destinations.",
        maturity="incubating",
    )
    param_spec: ClassVar[ParamSpec] = {
        "ports": list,
        "min_response_packets": int,
        "min_amplification": float,
        "allowed_reflectors": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.ports = frozenset(int(p) for p in self.params["ports"])
        self.min_packets = int(self.params["min_response_packets"])
        self.min_amplification = float(self.params["min_amplification"])
        self.allowed = frozenset(self.params["allowed_reflectors"])

    def new_state(self, key: Hashable) -> ReflectorState:
        return ReflectorState()

    def observe_batch(self, batch: Batch) -> None:
        ports, allowed, max_ids, state = self.ports, self.allowed, self.max_ids, self.state
        window = self._size
        # The pane of the current event time, cached locally: a batch spans seconds, a pane minutes.
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        for ev, src_t, dst_t in zip(batch.flows, batch.src_tenants, batch.dst_tenants, strict=True):
            try:
                if ev.proto != "udp":
                    continue
                if ev.dst_port in ports and dst_t is not None and dst_t != MANAGEMENT and src_t != dst_t:
                    tenant, reflector, port, remote = dst_t, ev.dst_ip, ev.dst_port, ev.src_ip
                    req_b, req_p, resp_b, resp_p = ev.bytes_out, ev.packets_out, ev.bytes_in, ev.packets_in
                # (a source is a tenant's or None: Batch.src_tenants never names the management plane)
                elif ev.src_port in ports and src_t is not None and dst_t != src_t:
                    tenant, reflector, port, remote = src_t, ev.src_ip, ev.src_port, ev.dst_ip
                    req_b, req_p, resp_b, resp_p = ev.bytes_in, ev.packets_in, ev.bytes_out, ev.packets_out
                else:
                    continue
                if reflector in allowed:
                    continue
                if ev.duration_ms > window:  # a long record: its rate over the window
                    share = window / ev.duration_ms
                    req_b, req_p = int(req_b * share), int(req_p * share)
                    resp_b, resp_p = int(resp_b * share), int(resp_p * share)
                ts = ev.ts
                key = (tenant, reflector, port)
                if ts - ts % pane != cur:
                    bucket, cur = self.bucket(ts), ts - ts % pane
                st: ReflectorState | None = bucket.get(key)
                if st is None:
                    st = state(ts, key)  # created, or None when the pane is full (counted)
                    if st is None:
                        continue
                counts = _counts_of(st.remotes, remote)
                counts[_REQ_BYTES] += req_b
                counts[_REQ_PACKETS] += req_p
                counts[_RESP_BYTES] += resp_b
                counts[_RESP_PACKETS] += resp_p
                st.span.add(ts, ev.id, max_ids)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: ReflectorState, other: ReflectorState) -> None:
        into.span.merge(other.span, self.max_ids)
        for remote, counts in other.remotes.items():
            mine = _counts_of(into.remotes, remote)
            for i, n in enumerate(counts):
                mine[i] += n

    def _amplified(self, counts: list[int]) -> bool:
        return (
            counts[_RESP_PACKETS] >= self.min_packets
            and counts[_REQ_PACKETS] > 0
            and counts[_RESP_BYTES] >= self.min_amplification * max(counts[_REQ_BYTES], 1)
        )

    def finish_key(self, window: Window, key: Hashable, state: ReflectorState) -> Finding | None:
        victims = {r: c for r, c in state.remotes.items() if r is not None and self._amplified(c)}
        if not victims:
            return None
        victim, counts = max(victims.items(), key=lambda rc: rc[1][_RESP_PACKETS])
        tenant, reflector, port = cast(tuple[Any, str, int], key)
        factor = counts[_RESP_BYTES] / max(counts[_REQ_BYTES], 1)
        seconds = max(1.0, (window.end - window.start) / 1000)
        more = f" and {len(victims) - 1} other addresses" if len(victims) > 1 else ""
        return Finding(
            entity=Entity("ip", reflector),
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=f"{reflector} answered {victim}{more} from UDP port {port} with {counts[_RESP_PACKETS]} "
            f"packets ({counts[_RESP_PACKETS] / seconds:.0f} pkt/s), {factor:.0f} times the bytes it was "
            f"sent: its service reflects an amplification flood at {victim}",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                "service_port": port,
                "victim": victim,
                "response_packets": counts[_RESP_PACKETS],
                "response_bytes": counts[_RESP_BYTES],
                "request_packets": counts[_REQ_PACKETS],
                "request_bytes": counts[_REQ_BYTES],
                "amplification": round(factor, 1),
                "victims": len(victims),
                # the flows it is about, both ways: the forged requests and the answers
                "destinations": sorted(victims)[:20],
            },
        )
