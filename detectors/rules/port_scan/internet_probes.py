"""Many internet sources probe one tenant address, each a few times: the victim's view of scanning.

Internet-wide scanning is mostly spread thin: each scanner sends one or a few probes to an address
and moves on (ZMap and masscan send one SYN per target and port; Mirai-style bots walk random
addresses on telnet 23/2323, SMB 445, SSH 22). Durumeric, Bailey and Halderman, "An Internet-Wide
View of Internet-Wide Scanning" (USENIX Security 2014), saw most scans from a darknet's view as
single probes per address; Stratosphere's CTU-50 normal-host days show the same from one host's
side (about 1,500 distinct sources a day, most with one probe). No single source reaches
``port_scan.failed_probe_scan``'s bar, so that rule sees none of them.

This rule takes the victim's side: per (tenant, destination address) in a window, the external
sources whose attempts to the tenant all failed (refused or unanswered, decided exactly as the
per-source rule does, including the reverse-record match of one-way formats) and that were answered
nowhere in the tenant in that window. ``min_sources`` such sources make one low-severity alert
about the destination that names them (the busiest ``max_named_sources`` in ``evidence.sources``)
so a blocklist or a threat-intelligence lookup can use them. It is posture (how exposed an address
is), not an incident: the score stays low, and an address scanned all day raises one alert per
window (one hour by default, so at most 24 a day). A source that also reaches the per-source
threshold is alerted by ``failed_probe_scan`` as well.

Thresholds: ``min_sources`` 5 distinct failed sources in the hour. Below that an address's
unanswered inbound attempts are as likely a client's stale retries or a misrouted packet as
scanning; a public address usually receives far more (the CTU-50 hosts: about 60 an hour).
Sources are counted, not probes, so one noisy retrying client never makes it alone.
``max_packets_per_attempt`` 8: an unanswered TCP attempt is the SYN and its retransmissions
(Linux ``net.ipv4.tcp_syn_retries`` defaults to 6, so 7 SYNs; Windows sends 3), a UDP or ICMP probe
one or two packets; a source sending more per attempt is flooding (``dos.*``), not probing.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import ONE_WAY
from detectors.meta import DetectorMeta, technique
from detectors.rules.common import is_external, source_entity
from detectors.rules.port_scan.failed_probe_scan import FLOWS_PANE, FailedProbeScan, ScanState
from detectors.windows import Window

__all__ = ["InternetProbes"]


class _Victim:
    __slots__ = ("first", "ids", "last", "ports", "probes")

    def __init__(self) -> None:
        self.probes: dict[str, int] = {}  # source -> failed (host, port) pairs on this victim
        self.ports: dict[int, int] = {}
        self.first = 0
        self.last = 0
        self.ids: list[str] = []


class InternetProbes(FailedProbeScan):
    meta = DetectorMeta(
        id="port_scan.internet_probes",
        version="1.0.0",
        title="Internet sources probing an address",
        category="port_scan",
        score=20,
        severity="low",
        attack=(
            technique("Reconnaissance", "T1595.001", "Active Scanning: Scanning IP Blocks"),
            technique("Discovery", "T1046", "Network Service Discovery"),
        ),
        kinds=frozenset({"flow"}),
        description="Within a window, at least params.min_sources external addresses made only failed "
        "connection attempts (refused or unanswered) to one tenant address and were answered nowhere "
        "in the tenant: the destination's view of thinly spread internet scanning.",
        false_positives=(
            "an address that was just renumbered still receives its predecessor's clients",
            "a service that went down: its clients' retries fail (they are usually answered elsewhere)",
        ),
        note="Posture, not an incident: check that only intended ports are exposed (evidence.ports); "
        "feed evidence.sources to the blocklist or a reputation lookup. Answered probes mean a "
        "service is reachable: check that it should be.",
        maturity="incubating",
    )
    param_spec: ClassVar[ParamSpec] = {
        "min_sources": int,
        "max_named_sources": int,
        "max_packets_per_attempt": int,
        "allowed_sources": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.min_sources = int(self.params["min_sources"])
        self.max_named = int(self.params["max_named_sources"])
        self.max_packets = int(self.params["max_packets_per_attempt"])
        self.allowed = frozenset(self.params["allowed_sources"])

    def observe_batch(self, batch: Batch) -> None:
        """The per-source rule's work on the records this rule can use: those from addresses outside
        every tenant, and every one-way record (a probe's answer is its reverse record, whose source is
        the tenant's)."""
        src_t, views = batch.src_tenants, batch.flow_views
        keep = [i for i, t in enumerate(src_t) if t is None or views[i] & ONE_WAY]
        if len(keep) < len(src_t):
            sub = Batch([batch.events[i] for i in keep], batch.registry)
            sub.preset(src_tenants=[src_t[i] for i in keep], flow_views=[views[i] for i in keep])
            batch = sub
        super().observe_batch(batch)

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        table = states.get(FLOWS_PANE)
        victims: dict[tuple[Any, str], _Victim] = {}
        for key, st in states.items():
            if key == FLOWS_PANE:
                continue
            if st.pending:
                self._resolve(st, table)
            tenant, src = cast(tuple[Any, str], key)
            if st.answered or not st.pairs or src in self.allowed or not is_external(self.reg, src):
                continue  # answered somewhere, or a tenant's own address: not this rule's subject
            if st.packets > self.max_packets * max(st.attempts, 1):
                continue  # a flood's source, not a probe's (dos.* rules)
            self._add_source(victims, tenant, src, st)
        out = []
        for (tenant, dst), v in victims.items():
            if len(v.probes) >= self.min_sources:
                out.append(self._finding(window, tenant, dst, v))
        return out

    def _add_source(
        self, victims: dict[tuple[Any, str], _Victim], tenant: Any, src: str, st: ScanState
    ) -> None:
        for dst, port in st.pairs:
            v = victims.get((tenant, dst))
            if v is None:
                if len(victims) >= self.max_keys:
                    self.counters["overflow"] += 1
                    continue
                v = victims[(tenant, dst)] = _Victim()
                v.first, v.last = st.span.first, st.span.last
            v.probes[src] = v.probes.get(src, 0) + 1
            v.ports[port] = v.ports.get(port, 0) + 1
            v.first = min(v.first, st.span.first)
            v.last = max(v.last, st.span.last)
            if len(v.ids) < self.max_ids and st.span.ids:
                v.ids.append(st.span.ids[0])

    def _finding(self, window: Window, tenant: Any, dst: str, v: _Victim) -> Finding:
        busiest = sorted(v.probes.items(), key=lambda kv: (-kv[1], kv[0]))
        named = [src for src, _ in busiest[: self.max_named]]
        ports = [p for p, _ in sorted(v.ports.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]
        entity = source_entity(self.reg, dst)
        label = f"{entity.id} ({dst})" if entity.type == "vm" else dst
        return Finding(
            entity=entity if entity.type == "vm" else Entity("ip", dst),
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=f"{len(v.probes)} internet addresses probed {label} without an answer "
            f"(ports {', '.join(map(str, ports[:5]))})",
            first_seen=v.first,
            last_seen=v.last,
            count=sum(v.probes.values()),
            event_ids=v.ids,
            evidence={
                "victim": dst,
                "distinct_sources": len(v.probes),
                "sources": named,
                "sources_named": len(named),
                "ports": ports,
            },
        )
