"""Novel behaviour that none of the rules describes, for the anomaly models (category ``anomaly``).

``anomaly.internal_data_staging`` (MITRE ATT&CK T1074.002 Remote Data Staging, with T1213 Data from
Information Repositories and T1039 Data from Network Shared Drive): a compromised VM pulls the
contents of its tenant's other VMs onto itself before exfiltrating them ("adversaries may stage
data collected from multiple systems in a central location or directory on one system prior to
Exfiltration", https://attack.mitre.org/techniques/T1074/002/), the collection step of data-theft
and double-extortion intrusions.
First the VM looks for the services worth pulling: five connects per peer among SSH, SMB, NFS,
rsyncd, databases and search stores, a closed port refused (a handful of refusals, under the scan
rule's 20 failed pairs of TRW). Then per peer one bulk session on the service it exposes: a database dump (``pg_dump``/``mysqldump``
over 5432/3306, ``redis-cli --rdb`` over 6379), an ``scp``/``rsync`` pull over SSH (22) or rsyncd
(873), at 20-80 MB/s (a cloud VM's disk and network allow 100+ MB/s; dumps are CPU-bound well
below), 0.4-2.5 GB each. The data flows *to* the compromised VM: a few requests out, gigabytes in,
the bytes and packets of the connection's answer (``bytes_in``, ``packets_in``; the puller's ACKs,
one per two segments under delayed ACK, RFC 1122 4.2.3.2, in ``packets_out``).

Why no rule sees it: every peer is in the VM's own tenant (no cross-tenant rule), nothing leaves
the cloud (no exfiltration rule), every session is answered and long (no scan, guessing or flood
rule: the flood rule leaves downloads out), there is no periodicity (no beacon) and no mining or
mail port. What stands out is the VM's window of flow features against its baseline: gigabytes
received where its windows of the baseline hold hundreds of megabytes, and the packets that carry
them, and the refused connects and new ports of the discovery. Entity: the staging VM.

``anomaly.benign_log_collection``, the look-alike: the same shape at the size of routine work (a VM
collecting logs and configuration from each peer, 5-80 MB a peer, no discovery).
"""

from __future__ import annotations

from typing import Final

from ingest.schema import Event
from ingest.simulator.background import ephemeral_port
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec

__all__ = ["SCENARIOS"]

# The service each role exposes to a puller, the tools' usual ports.
_PULL_PORTS: Final = {"db": (5432, 3306, 6379), "web": (22,), "app": (22,), "backup": (873, 22)}
# Services a collector looks for on a peer (SSH, SMB, NFS, rsyncd, databases, search and document
# stores); five a peer keeps the refusals of a three-peer tenant under the scan rule's 20 pairs.
_DISCOVERY_PORTS: Final = (22, 445, 2049, 873, 3306, 5432, 6379, 9200, 27017)
_DISCOVERY_PER_PEER: Final = 5
_MSS: Final = 1448  # TCP payload per full segment on a 1500-byte MTU with timestamps


def internal_data_staging(ctx: Ctx) -> Outcome:
    vm = ctx.vm(exclude_role="db")
    peers = [v for v in ctx.topo.tenant_by_id[vm.tenant].vms if v.id != vm.id]
    length = ctx.duration()
    events: list[Event] = []
    # Discovery first: which of the services worth pulling each peer runs (a connect per port, a
    # closed one answered by a reset), a handful of ports per peer.
    for peer in peers:
        open_ports = set(_PULL_PORTS.get(peer.role, (22,)))
        for port in ctx.rng.sample(_DISCOVERY_PORTS, _DISCOVERY_PER_PEER):
            ok = port in open_ports
            events.append(
                ctx.make.flow(
                    ctx.start + ctx.rng.randrange(0, 5_000), vm.ip, peer.ip, src_port=ephemeral_port(ctx.rng),
                    dst_port=port, bytes_out=60 if not ok else 400, bytes_in=40 if not ok else 600,
                    packets_out=1 if not ok else 5, packets_in=1 if not ok else 4, duration_ms=0 if not ok else 30,
                    action="accept" if ok else "reject", tenant=vm.tenant, host=vm.host, vm=vm.id,
                )
            )  # fmt: skip
    pulled = 0
    for peer in peers:
        port = ctx.choice(_PULL_PORTS.get(peer.role, (22,)))
        size = ctx.rng.randrange(400_000_000, 2_500_000_000)
        rate = ctx.rng.uniform(20e6, 80e6)  # bytes per second
        duration = min(length, int(size / rate * 1000))
        end = ctx.start + ctx.rng.randrange(duration, length + 1) if length > duration else ctx.start + length
        segments = size // _MSS + 1
        requests = ctx.rng.randrange(2_000, 20_000)  # the dump's commands and the protocol's acks
        events.append(
            ctx.make.flow(
                end, vm.ip, peer.ip, src_port=ephemeral_port(ctx.rng), dst_port=port,
                bytes_out=requests + 52 * (segments // 2), bytes_in=size + 52 * segments,
                packets_out=segments // 2 + 10, packets_in=segments + 10, duration_ms=duration,
                tenant=vm.tenant, host=vm.host, vm=vm.id,
            )
        )  # fmt: skip
        pulled += size
    events.sort(key=lambda e: e.ts)
    return Outcome(vm.tenant, "vm", vm.id, events, {"peers": [p.id for p in peers], "bytes_pulled": pulled})


def benign_log_collection(ctx: Ctx) -> Outcome:
    """The look-alike: the same shape at the size of routine work, a VM collecting the day's logs
    and configuration from each peer (``rsync -e ssh`` or rsyncd), 5-80 MB a peer."""
    vm = ctx.vm(exclude_role="db")
    peers = [v for v in ctx.topo.tenant_by_id[vm.tenant].vms if v.id != vm.id]
    length = ctx.duration()
    events: list[Event] = []
    for peer in peers:
        size = ctx.rng.randrange(5_000_000, 80_000_000)
        duration = min(length, int(size / ctx.rng.uniform(5e6, 40e6) * 1000))
        end = ctx.start + ctx.rng.randrange(duration, length + 1) if length > duration else ctx.start + length
        segments = size // _MSS + 1
        events.append(
            ctx.make.flow(
                end, vm.ip, peer.ip, src_port=ephemeral_port(ctx.rng), dst_port=ctx.choice((22, 873)),
                bytes_out=ctx.rng.randrange(2_000, 40_000) + 52 * (segments // 2), bytes_in=size + 52 * segments,
                packets_out=segments // 2 + 10, packets_in=segments + 10, duration_ms=duration,
                tenant=vm.tenant, host=vm.host, vm=vm.id,
            )
        )  # fmt: skip
    events.sort(key=lambda e: e.ts)
    return Outcome(vm.tenant, "vm", vm.id, events, {"peers": [p.id for p in peers]})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("anomaly.internal_data_staging", internal_data_staging, technique="T1074.002", span_s=(60, 200),
             summary="a VM pulls gigabytes from each of its tenant's other VMs (dumps, scp, rsync) onto itself"),
        spec("anomaly.benign_log_collection", benign_log_collection, technique="T1074.002", span_s=(30, 200),
             summary="a VM collects logs and configuration from its tenant's other VMs, megabytes each"),
    )
}  # fmt: skip
