"""One source probes many ports or hosts and most probes fail (Zeek-style scan detection)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.state import Span, add_capped
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["FailedProbeScan", "ScanState"]


class ScanState:
    __slots__ = ("hosts", "pairs", "ports", "span", "succeeded")

    def __init__(self) -> None:
        self.span = Span()
        self.pairs: set[tuple[str, int]] = set()
        self.hosts: set[str] = set()
        self.ports: set[int] = set()
        self.succeeded = 0

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.pairs, self.hosts, self.ports, self.succeeded)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.pairs, self.hosts, self.ports, self.succeeded = s  # type: ignore[assignment]


class FailedProbeScan(WindowedDetector[ScanState]):
    meta = DetectorMeta(
        id="port_scan.failed_probe_scan",
        version="1.0.0",
        title="Port scan",
        category="port_scan",
        score=45,
        severity="medium",
        attack=(technique("Discovery", "T1046", "Network Service Discovery"),),
        kinds=frozenset({"flow"}),
        description="A source whose failed connection attempts (rejected, or no packet back) reach many "
        "distinct (host, port) pairs in one window: vertical (ports of one host) or horizontal (hosts).",
        false_positives=(
            "vulnerability scanners and asset inventory run by the tenant or the provider "
            "(params.allowed_sources)",
            "a client retrying a dead service on many hosts",
        ),
        note="An internet source scanning one VM is common background; a tenant VM sweeping its own or "
        "other subnets suggests a compromised guest: check the VM's processes and recent logins.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "min_failed_pairs": int,
        "allowed_sources": list,
        "internal_score": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.min_pairs = int(self.params["min_failed_pairs"])
        self.allowed = frozenset(self.params["allowed_sources"])
        self.internal_score = int(self.params["internal_score"])

    def new_state(self, key: Hashable) -> ScanState:
        return ScanState()

    def observe_batch(self, batch: Batch) -> None:
        allowed, cap, max_ids, state = self.allowed, self.max_distinct, self.max_ids, self.state
        for ev in batch.flows:
            try:
                src = ev.src_ip
                if src in allowed:
                    continue
                if ev.action == "accept" and ev.packets_in > 0:
                    seen: ScanState | None = self.bucket(ev.ts).get((ev.tenant, src))
                    if seen is not None:  # answered probes count once the source has failed some
                        seen.succeeded += 1
                    continue
                st: ScanState | None = state(ev.ts, (ev.tenant, src))
                if st is None:
                    continue
                dst = ev.dst_ip
                port = ev.dst_port
                pairs = st.pairs
                pair = (dst, port)
                if pair not in pairs and len(pairs) < cap:
                    pairs.add(pair)
                    st.span.add(ev.ts, ev.id, max_ids)
                    add_capped(st.hosts, dst, cap)
                    add_capped(st.ports, port, cap)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: ScanState, other: ScanState) -> None:
        cap = self.max_distinct
        into.span.merge(other.span, self.max_ids)
        for p in other.pairs:
            add_capped(into.pairs, p, cap)
        for h in other.hosts:
            add_capped(into.hosts, h, cap)
        for port in other.ports:
            add_capped(into.ports, port, cap)
        into.succeeded += other.succeeded

    def finish_key(self, window: Window, key: Hashable, state: ScanState) -> Finding | None:
        failed = len(state.pairs)
        if failed < self.min_pairs:
            return None
        tenant, src = cast(tuple[Any, str], key)
        shape = "vertical" if len(state.hosts) <= 2 else "horizontal" if len(state.ports) <= 8 else "mixed"
        internal = self.reg.tenant_of_ip(src) is not None
        target = next(iter(state.hosts)) if len(state.hosts) == 1 else f"{len(state.hosts)} hosts"
        return Finding(
            entity=Entity("ip", src),
            tenant=tenant,
            window=window,
            score=self.internal_score if internal else self.meta.score,
            summary=f"{'Tenant VM' if internal else 'External address'} {src} probed {failed} host/port "
            f"pairs ({shape}: {len(state.ports)} ports on {target}), "
            f"{state.succeeded} answered",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                "failed_pairs": failed,
                "distinct_hosts": len(state.hosts),
                "distinct_ports": len(state.ports),
                "answered": state.succeeded,
                "shape": shape,
                "source_internal": internal,
            },
        )
