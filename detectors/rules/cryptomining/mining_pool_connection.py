"""A VM connects to a mining-pool port on an external address.

Pool ports are TCP ports. Stratum, the protocol of the mining pools and of XMRig, cpuminer and the
other miners, is line-based JSON-RPC over a plain TCP socket (its URLs are ``stratum+tcp://`` and,
with TLS, ``stratum+ssl://``); Stratum V2 runs over TCP too. So ``params.pool_ports`` match only
the protocols of ``params.pool_protocols`` (tcp). Before, any record on those ports matched: on
CTU-13's campus network all 11 alerts were UDP (peer-to-peer traffic to residential addresses on
3333, 4444, 7777 and 14444) or an ICMP echo whose identifier an Argus record carries in the
destination port field (0xb1f8 = 45560). A known pool address (``params.pool_addresses``) matches
on any protocol.

A one-way record (VPC Flow Logs, NetFlow) of bare headers only (``flowdir.headers_only``: resets)
opens no connection. A public server's resets to the scanners that probe it carry the scanner's
source port as their destination, and scanners pick 3333, 4444 or 7777 as often as any other; where
the server's port is no lower in class than the scanner's (3306 against 4444), the ports cannot
say which side answered. As VPC Flow Logs, RITA's server resetting two scanners (source ports 4444
and 7777) was "connecting to a mining pool" twice.
"""

from __future__ import annotations

from typing import ClassVar

from detectors.addrscope import unowned_outbound
from detectors.base import Batch
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import flow_view, headers_only, is_response
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, Rule
from detectors.rules.common import is_external, source_entity
from ingest.schema import Event, FlowEvent

__all__ = ["MiningPoolConnection"]


class MiningPoolConnection(Rule):
    meta = DetectorMeta(
        id="cryptomining.mining_pool_connection",
        version="1.2.0",
        title="Connection to a mining-pool port",
        category="cryptomining",
        score=60,
        severity="medium",
        attack=(technique("Impact", "T1496", "Resource Hijacking"),),
        kinds=frozenset({"flow"}),
        description="A tenant VM opens a TCP connection to an external address on a port that stratum "
        "mining pools use (params.pool_ports, params.pool_protocols), or any connection to a known pool "
        "address (params.pool_addresses).",
        false_positives=(
            "unrelated services on the same ports (4444 and 5555 are also development defaults)",
            "a tenant that mines on purpose (params.allowed_sources)",
        ),
        note="Look for a miner process on the VM (cryptomining.miner_process) and sustained CPU; "
        "the pool address in the evidence can be blocked at the edge.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "pool_ports": list,
        "pool_protocols": list,
        "pool_addresses": list,
        "allowed_sources": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.ports = frozenset(int(p) for p in self.params["pool_ports"])
        self.protocols = frozenset(str(p).lower() for p in self.params["pool_protocols"])
        self.addresses = frozenset(self.params["pool_addresses"])
        self.allowed = frozenset(self.params["allowed_sources"])

    def match(self, event: Event) -> Hit | None:
        ev: FlowEvent = event  # type: ignore[assignment]
        view = flow_view(ev)
        if is_response(view) or headers_only(ev, view):  # a VM's server answering a client
            return None
        return self._match(ev)

    def _match(self, ev: FlowEvent) -> Hit | None:
        """``match`` of a record known not to be a response."""
        if ev.dst_ip not in self.addresses and (
            ev.dst_port not in self.ports or ev.proto not in self.protocols
        ):
            return None  # a pool port carries stratum, over TCP; a pool address, anything
        reg = self.reg
        if ev.src_ip in self.allowed or not is_external(reg, ev.dst_ip):
            return None
        if reg.tenant_of_ip(ev.src_ip) is None and not unowned_outbound(ev.src_ip, ev.dst_ip):
            return None  # a private address no tenant owns, going out, is an inside host (addrscope)
        return Hit(source_entity(reg, ev.src_ip), ev.tenant, f"{ev.dst_ip}:{ev.dst_port}")

    def observe_batch(self, batch: Batch) -> None:
        """Fast path of ``match``: a set lookup on the port or address first."""
        batch = batch.initiated()  # the same test as match's, once per batch
        ports, addresses = self.ports, self.addresses
        views = batch.flow_views
        for i, ev in enumerate(batch.flows):
            if ev.dst_port in ports or ev.dst_ip in addresses:
                try:
                    if headers_only(ev, views[i]):
                        continue
                    hit = self._match(ev)
                    if hit is not None:
                        self.record(ev, hit)
                except Exception as exc:
                    self.error(ev, exc)
