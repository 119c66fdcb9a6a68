"""One flow recorded at two network interfaces counts once.

AWS VPC Flow Logs record traffic per network interface: a record is one 5-tuple's packets in one
capture window of one interface, named by ``interface-id``
(https://docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html). A connection between two
logged interfaces (two instances of a VPC, a load balancer and its target) is recorded at each end,
with the same 5-tuple, packets and bytes, in capture windows each interface cuts for itself: a
published sample of one exchange between a load balancer's and an instance's interfaces shows
their records with equal counts and starts 95 s apart
(https://gist.github.com/bysnupy/1e96d77a48f330bca85b496239ac6031). Taken as they come, every
connection inside a tenant's network counts twice: a rule's count threshold is met at half the
connections, and an alert reports twice the connections and bytes there were. (An intermediate
interface, a NAT or transit gateway's, writes its own address in ``srcaddr`` or ``dstaddr``, AWS's
"Flow log record examples": its records are other 5-tuples, not copies.)

``InterfaceCopies`` keeps, per tenant and 5-tuple, the interface that reported it first (its
*observer*) and the end of the 5-tuple's latest record. A record of another interface for that
tenant and 5-tuple is a *copy*, not handed to the detectors, while its window starts within
``horizon_ms`` of that end: one maximum aggregation interval (600 s by default; 60 s on Nitro
instances) plus a minute for the interfaces' own window cuts. A later start is a new exchange,
and its first interface its observer. A copy extends the 5-tuple's end too, so a long connection
stays one however the two interfaces' records interleave. A ``REJECT`` record is never a copy:
the refusing interface's record is the only one saying the connection was refused (the sender's
interface logged it accepted). The engine keys the table by tenant, so a tenant's record of a flow
from another tenant's VM and that tenant's own record are each their tenant's. Records without
``interface-id`` (every other exporter; a custom VPC format without the field) are never copies,
and neither are records with an address on the internet: only a connection between two inside
addresses (private, ``detectors.addrscope``, or the tenant registry's) has two logged ends in a
tenant's network, since a load balancer or NAT gateway writes its own address in its records, so
only those are remembered.

The table is bounded: at ``capacity`` pairs, those whose last record ended more than the horizon
before the newest record are dropped, then the oldest until a quarter is free (counted in
``forgotten``; a later copy of a forgotten pair is taken as a new observation).
"""

from __future__ import annotations

from typing import Final

from detectors.addrscope import is_private
from detectors.config import EngineSettings
from ingest.schema import FlowEvent
from ingest.tenants import TenantRegistry

__all__ = ["InterfaceCopies"]

INTERFACE_FIELD: Final = "interface-id"
_MIN_SWEEP: Final = 4096


class InterfaceCopies:
    """Which VPC flow records repeat another interface's record of the same flow (module docstring).
    Pickles with the engine's state, so a restored job still knows each 5-tuple's observer."""

    def __init__(self, horizon_ms: int, capacity: int) -> None:
        self.horizon_ms = horizon_ms
        self.capacity = capacity
        self.copies = 0
        self.forgotten = 0
        # (tenant, proto, src, sport, dst, dport) -> [observer interface, end of the latest record]
        self._pairs: dict[tuple[str | None, str, str, int, str, int], list[object]] = {}
        self._newest = -(2**62)
        self._next_sweep = min(capacity, _MIN_SWEEP)

    @classmethod
    def for_settings(cls, settings: EngineSettings) -> InterfaceCopies:
        return cls(settings.interface_copy_horizon_ms, settings.interface_copy_pairs)

    def configure(self, settings: EngineSettings) -> None:
        """Take ``settings``' horizon and capacity, keeping what the table holds."""
        self.horizon_ms = settings.interface_copy_horizon_ms
        self.capacity = settings.interface_copy_pairs

    def __len__(self) -> int:
        return len(self._pairs)

    def keep(
        self, flows: list[FlowEvent], registry: TenantRegistry, copied: list[str] | None = None
    ) -> list[FlowEvent]:
        """``flows`` without the copies, in their order (the list itself when none is a copy); the
        copies' ids are appended to ``copied`` if given."""
        out: list[FlowEvent] | None = None
        for i, ev in enumerate(flows):
            if ev.source == "vpcflow" and self.is_copy(ev, registry):
                if copied is not None:
                    copied.append(ev.id)
                if out is None:
                    out = flows[:i]
            elif out is not None:
                out.append(ev)
        return flows if out is None else out

    def is_copy(self, ev: FlowEvent, registry: TenantRegistry) -> bool:
        """Whether ``ev`` repeats another interface's record; remembers it either way."""
        extra = ev.extra
        interface = extra.get(INTERFACE_FIELD) if extra else None
        if interface is None or not (_inside(ev.src_ip, registry) and _inside(ev.dst_ip, registry)):
            return False
        end = ev.ts
        if end > self._newest:
            self._newest = end
        key = (ev.tenant, ev.proto, ev.src_ip, ev.src_port, ev.dst_ip, ev.dst_port)
        seen = self._pairs.get(key)
        if seen is None or end - ev.duration_ms > seen[1] + self.horizon_ms:  # type: ignore[operator]
            if seen is None and len(self._pairs) >= self._next_sweep:
                self._sweep()
            self._pairs[key] = [interface, end]
            return False
        if end > seen[1]:  # type: ignore[operator]
            seen[1] = end
        if seen[0] == interface or ev.action == "reject":
            return False
        self.copies += 1
        return True

    def _sweep(self) -> None:
        """Drop the pairs past the horizon, then, if still at capacity, the oldest."""
        oldest_kept = self._newest - self.horizon_ms
        pairs = {k: v for k, v in self._pairs.items() if v[1] >= oldest_kept}  # type: ignore[operator]
        excess = len(pairs) - (self.capacity - self.capacity // 4)
        if excess > 0 and len(self._pairs) >= self.capacity:  # a quarter free until the next sweep
            for key in list(pairs)[:excess]:
                del pairs[key]
            self.forgotten += excess
        self._pairs = pairs
        self._next_sweep = min(self.capacity, max(_MIN_SWEEP, 2 * len(pairs)))


def _inside(address: str, registry: TenantRegistry) -> bool:
    return is_private(address) or registry.tenant_of_ip(address) is not None
