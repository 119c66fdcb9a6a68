"""Exfiltration (T1048) and cryptomining (T1496), with a nightly backup and an in-tenant service on
a "mining" port as look-alikes. Entity: the VM.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ingest.schema import Event, FlowEvent
from ingest.simulator.background import ephemeral_port
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec
from ingest.simulator.topology import VmInfo, random_public_ip

__all__ = ["MINER_EXE", "MINING_PORTS", "SCENARIOS"]

_BASE58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

MINING_PORTS: Final = (3333, 4444, 5555, 14444, 45700)
MINER_EXE: Final = ("/tmp/.cache/xmrig", "/var/tmp/.x/xmrig", "/dev/shm/kworkerd")  # noqa: S108


class _Volume(NamedTuple):
    ts: int
    bytes_out: int
    bytes_in: int
    duration_ms: int


def _bulk(ctx: Ctx, n: tuple[int, int]) -> list[_Volume]:
    return [
        _Volume(ts, b, b // ctx.rng.randrange(40, 90), ctx.rng.randrange(60_000, 600_000))
        for ts in ctx.stamps(ctx.rng.randrange(*n), ctx.duration())
        for b in (ctx.rng.randrange(100_000_000, 2_000_000_000),)
    ]


def _bulk_flows(ctx: Ctx, vm: VmInfo, dst: str, port: int, n: tuple[int, int]) -> list[Event]:
    return [
        ctx.make.flow(
            v.ts, vm.ip, dst, src_port=ephemeral_port(ctx.rng), dst_port=port, bytes_out=v.bytes_out,
            bytes_in=v.bytes_in, packets_out=v.bytes_out // 1400, packets_in=v.bytes_in // 1400,
            duration_ms=v.duration_ms, tenant=vm.tenant, host=vm.host, vm=vm.id,
        )
        for v in _bulk(ctx, n)
    ]  # fmt: skip


def bulk_upload(ctx: Ctx) -> Outcome:
    vm = ctx.vm(exclude_role="backup")
    dst = random_public_ip(ctx.rng)
    port = ctx.choice((443, 22, 8443))
    events = _bulk_flows(ctx, vm, dst, port, (5, 31))
    total = sum(e.bytes_out for e in events if isinstance(e, FlowEvent))
    return Outcome(vm.tenant, "vm", vm.id, events, {"dst_ip": dst, "dst_port": port, "bytes_out": total})


def benign_backup(ctx: Ctx) -> Outcome:
    vm = ctx.vm(exclude_role="backup")
    target = ctx.topo.backup_target(vm.tenant)
    if target.id == vm.id:  # a tenant with one VM backs up to its first one
        target = ctx.topo.tenant_by_id[vm.tenant].vms[0]
    events = _bulk_flows(ctx, vm, target.ip, ctx.choice((873, 22)), (3, 13))
    return Outcome(vm.tenant, "vm", vm.id, events, {"dst_ip": target.ip, "dst_vm": target.id})


def _periodic(ctx: Ctx, src_vm_ip: str, dst: str, port: int, tenant: str, host: str, vm: str) -> list[Event]:
    length = ctx.duration()
    step = max(1, min(ctx.rng.randrange(30_000, 60_001), length // 4))
    stamps = ctx.every(step, length, jitter_ms=min(2000, step // 4))
    stamps += [ctx.start + length] * (5 - len(stamps))  # a short window still shows the heartbeat
    return [
        ctx.make.flow(
            ts, src_vm_ip, dst, src_port=ephemeral_port(ctx.rng), dst_port=port,
            bytes_out=ctx.rng.randrange(600, 4000), bytes_in=ctx.rng.randrange(1500, 9000),
            packets_out=ctx.rng.randrange(8, 40), packets_in=ctx.rng.randrange(8, 40), duration_ms=step,
            tenant=tenant, host=host, vm=vm,
        )
        for ts in stamps
    ]  # fmt: skip


def pool_mining(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    pool, port = ctx.choice(ctx.topo.mining_pools), ctx.choice(MINING_PORTS)
    exe = ctx.choice(MINER_EXE)
    wallet = "4" + "".join(ctx.choice(_BASE58) for _ in range(94))
    flows = _periodic(ctx, vm.ip, pool, port, vm.tenant, vm.host, vm.id)
    miner = ctx.make.process(
        flows[0].ts, exe, "execve", host=vm.host, pid=ctx.rng.randrange(1000, 60000), ppid=1,
        parent_exe="/bin/bash",
        cmdline=f"{exe} -o stratum+tcp://{pool}:{port} -u {wallet} -k --cpu-max-threads-hint=100",
        uid=1000, tenant=vm.tenant, vm=vm.id, extra={"scope": "guest"},
    )  # fmt: skip
    return Outcome(vm.tenant, "vm", vm.id, [miner, *flows], {"pool": pool, "dst_port": port, "exe": exe})


def benign_dev_port(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    peers = [v for v in ctx.topo.tenant_by_id[vm.tenant].vms if v.id != vm.id] or [vm]
    dst, port = ctx.choice(peers), ctx.choice((4444, 5555))
    flows = _periodic(ctx, vm.ip, dst.ip, port, vm.tenant, vm.host, vm.id)
    return Outcome(vm.tenant, "vm", vm.id, list(flows), {"dst_ip": dst.ip, "dst_port": port})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("exfiltration.bulk_upload", bulk_upload, technique="T1048", span_s=(300, 1800),
             summary="a VM sends gigabytes to one external address"),
        spec("exfiltration.benign_backup", benign_backup, technique="T1048", span_s=(300, 1800),
             summary="a nightly backup sends gigabytes to the tenant's own backup VM"),
        spec("cryptomining.pool_mining", pool_mining, technique="T1496", span_s=(600, 1800),
             summary="a miner (xmrig, guest process event) keeps a stratum connection to a pool port"),
        spec("cryptomining.benign_dev_port", benign_dev_port, technique="T1496", span_s=(600, 1800),
             summary="a VM polls an in-tenant service on port 4444/5555"),
    )
}  # fmt: skip
