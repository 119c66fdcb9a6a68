"""Port scans (T1046) and denial of service (T1498/T1499), with an admin scan and a busy web
peak as look-alikes.

Entity: the attacking source ip. A distributed flood has no single source, so it (and the web
peak that imitates it) names the victim ip instead; ``detail.sources`` counts the senders.
"""

from __future__ import annotations

from typing import Final

from ingest.schema import Event
from ingest.simulator.background import ephemeral_port, web_flow
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec
from ingest.simulator.topology import random_public_ip

__all__ = ["SCENARIOS"]

_OPEN_BY_ROLE: Final = {"web": (22, 80, 443), "db": (22, 5432), "app": (22, 8080), "backup": (22, 873)}


def _scan_ports(ctx: Ctx, n: int) -> list[int]:
    low = ctx.rng.sample(range(1, 1025), min(n, 1024) * 3 // 4)
    high = ctx.rng.sample(range(1025, 65536), n - len(low))
    ports = low + high
    ctx.rng.shuffle(ports)
    return ports


def vertical(ctx: Ctx) -> Outcome:
    attacker = random_public_ip(ctx.rng)
    vm = ctx.vm()
    open_ports = _OPEN_BY_ROLE[vm.role]
    ports = _scan_ports(ctx, ctx.rng.randrange(100, 600))
    events: list[Event] = []
    for ts, port in zip(ctx.stamps(len(ports), ctx.duration()), ports, strict=True):
        ok = port in open_ports
        events.append(
            ctx.make.flow(
                ts, attacker, vm.ip, src_port=ctx.rng.randrange(40000, 65000), dst_port=port,
                bytes_out=ctx.rng.choice((40, 44, 60)), bytes_in=44 if ok else 0, packets_out=1,
                packets_in=1 if ok else 0, duration_ms=0, action="accept" if ok else "reject",
                tenant=vm.tenant, host=vm.host, vm=vm.id,
            )
        )  # fmt: skip
    return Outcome(vm.tenant, "ip", attacker, events, {"target_ip": vm.ip, "ports": len(ports)})


def horizontal(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    t = ctx.topo.tenant_by_id[vm.tenant]
    real = {v.ip: v for v in t.vms}
    sweep = [f"{t.net}.1.{i}" for i in range(1, 255)]
    targets = sorted(
        ctx.rng.sample(sweep, ctx.rng.randrange(40, 200)), key=lambda ip: int(ip.rsplit(".", 1)[1])
    )
    ports = ctx.rng.sample((22, 445, 3389, 6379, 5432, 23), ctx.rng.randrange(2, 5))
    probes = [(ip, p) for ip in targets if ip != vm.ip for p in ports]
    events: list[Event] = []
    for ts, (ip, port) in zip(ctx.stamps(len(probes), ctx.duration()), probes, strict=True):
        ok = ip in real and port in _OPEN_BY_ROLE[real[ip].role]
        events.append(
            ctx.make.flow(
                ts, vm.ip, ip, src_port=ephemeral_port(ctx.rng), dst_port=port, bytes_out=60,
                bytes_in=60 if ok else 0, packets_out=1, packets_in=1 if ok else 0,
                action="accept" if ok else "reject", tenant=vm.tenant, host=vm.host, vm=vm.id,
            )
        )  # fmt: skip
    return Outcome(vm.tenant, "ip", vm.ip, events, {"vm": vm.id, "hosts": len(targets), "ports": ports})


def benign_admin_scan(ctx: Ctx) -> Outcome:
    scanner = ctx.vm(role="app") if any(v.role == "app" for v in ctx.topo.vms) else ctx.vm()
    t = ctx.topo.tenant_by_id[scanner.tenant]
    probes = [(v, p) for v in t.vms if v.id != scanner.id for p in (22, 80, 443)]
    events: list[Event] = []
    for ts, (v, port) in zip(ctx.stamps(len(probes), ctx.duration()), probes, strict=True):
        ok = port in _OPEN_BY_ROLE[v.role]
        events.append(
            ctx.make.flow(
                ts, scanner.ip, v.ip, src_port=ephemeral_port(ctx.rng), dst_port=port,
                bytes_out=ctx.rng.randrange(300, 3000) if ok else 60,
                bytes_in=ctx.rng.randrange(300, 9000) if ok else 0,
                packets_out=6 if ok else 1, packets_in=6 if ok else 0, duration_ms=ctx.rng.randrange(5, 400),
                action="accept" if ok else "reject", tenant=scanner.tenant, host=scanner.host, vm=scanner.id,
            )
        )  # fmt: skip
    return Outcome(scanner.tenant, "ip", scanner.ip, events, {"vm": scanner.id, "ports": [22, 80, 443]})


def syn_flood(ctx: Ctx) -> Outcome:
    attacker = random_public_ip(ctx.rng)
    vm = ctx.vm(role="web")
    port = ctx.choice((443, 80))
    events: list[Event] = []
    for ts in ctx.every(1000, ctx.duration(), jitter_ms=200)[:400]:
        pk = ctx.rng.randrange(2_000, 20_000)
        events.append(
            ctx.make.flow(
                ts, attacker, vm.ip, src_port=ctx.rng.randrange(1024, 65536), dst_port=port,
                bytes_out=pk * ctx.rng.choice((40, 44, 60)), bytes_in=0, packets_out=pk, packets_in=0,
                duration_ms=1000, tenant=vm.tenant, host=vm.host, vm=vm.id, extra={"tcp_flags": 2},
            )
        )  # fmt: skip
    return Outcome(vm.tenant, "ip", attacker, events, {"target_ip": vm.ip, "dst_port": port})


def udp_flood(ctx: Ctx) -> Outcome:
    vm = ctx.vm(role="web")
    sources = [random_public_ip(ctx.rng) for _ in range(ctx.rng.randrange(100, 300))]
    port = ctx.choice((53, 123, 443, 19, 1900))
    length = ctx.duration()
    plan = [src for src in sources for _ in range(ctx.rng.randrange(1, 5))]
    events: list[Event] = []
    for ts, src in zip(ctx.stamps(len(plan), length), plan, strict=True):
        pk = ctx.rng.randrange(500, 5000)
        events.append(
            ctx.make.flow(
                ts, src, vm.ip, src_port=ctx.rng.randrange(1024, 65536), dst_port=port, proto="udp",
                bytes_out=pk * ctx.rng.randrange(400, 1400), packets_out=pk, duration_ms=1000,
                tenant=vm.tenant, host=vm.host, vm=vm.id,
            )
        )  # fmt: skip
    return Outcome(vm.tenant, "ip", vm.ip, events, {"vm": vm.id, "sources": len(sources), "dst_port": port})


def benign_web_peak(ctx: Ctx) -> Outcome:
    vm = ctx.vm(role="web")
    clients = ctx.rng.sample(ctx.topo.clients, min(len(ctx.topo.clients), ctx.rng.randrange(150, 400)))
    plan = [c for c in clients for _ in range(ctx.rng.randrange(1, 4))]
    events = [
        web_flow(ctx.rng, ts, ctx.make, c, vm)
        for ts, c in zip(ctx.stamps(len(plan), ctx.duration()), plan, strict=True)
    ]
    return Outcome(vm.tenant, "ip", vm.ip, events, {"vm": vm.id, "sources": len(clients)})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("port_scan.vertical", vertical, technique="T1046", span_s=(20, 180),
             summary="an internet address probes hundreds of ports of one VM, mostly rejected"),
        spec("port_scan.horizontal", horizontal, technique="T1046", span_s=(30, 300),
             summary="a VM sweeps its tenant's subnet on a few ports, mostly rejected"),
        spec("port_scan.benign_admin_scan", benign_admin_scan, technique="T1046", span_s=(10, 120),
             summary="an admin VM checks ports 22/80/443 of its own tenant's VMs"),
        spec("dos.syn_flood", syn_flood, technique="T1498", span_s=(30, 240),
             summary="one address floods a web VM with SYNs: packets_out high, bytes per packet ~40-60"),
        spec("dos.udp_flood", udp_flood, technique="T1498", span_s=(30, 240),
             summary="hundreds of addresses flood a web VM over UDP (entity is the victim ip)"),
        spec("dos.benign_web_peak", benign_web_peak, technique="T1498", span_s=(120, 600),
             summary="many real clients hit a web VM with normal HTTPS requests (entity is the victim ip)"),
    )
}  # fmt: skip
