"""Cross-tenant leakage (T1530, T1537, T1048) and its look-alikes (peered traffic, registry shares).

Entity: the source VM for network variants, the acting principal for control-plane variants.
Share actions list the receiving tenants in ``extra.grantees`` (as the CloudTrail parser does).
"""

from __future__ import annotations

from typing import Final

from ingest.schema import Event
from ingest.simulator.background import ephemeral_port, lognorm, object_key, peered_flow
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec
from ingest.simulator.topology import TenantInfo

__all__ = ["SCENARIOS", "SHARE_ACTIONS"]

SHARE_ACTIONS: Final = ("snapshot.Share", "image.Share", "snapshot.ModifyAttribute")
_LEAK_PORTS: Final = (22, 3306, 5432, 445, 6379, 9200, 27017)


def _tenant(ctx: Ctx, tid: str) -> TenantInfo:
    return ctx.topo.tenant_by_id[tid]


def _client_ip(ctx: Ctx, t: TenantInfo) -> str:
    return ctx.choice(t.office_ips) if ctx.rng.random() < 0.7 else ctx.choice(t.vms).ip


def unpeered_flow(ctx: Ctx) -> Outcome:
    candidates = [t for t in ctx.topo.tenants if ctx.topo.unpeered_of(t.id)]
    src_t = ctx.choice(candidates)
    victim = _tenant(ctx, ctx.choice(ctx.topo.unpeered_of(src_t.id)))
    src = ctx.choice(src_t.vms)
    targets = ctx.rng.sample(victim.vms, min(len(victim.vms), ctx.rng.randrange(1, 4)))
    n = ctx.rng.randrange(8, 41)
    events: list[Event] = []
    for ts in ctx.stamps(n, ctx.duration()):
        dst = ctx.choice(targets)
        ok = ctx.rng.random() < 0.6
        out = lognorm(ctx.rng, 900, 0.8) if ok else 60
        inn = lognorm(ctx.rng, 250_000, 1.5) if ok else 0
        events.append(
            ctx.make.flow(
                ts, src.ip, dst.ip, src_port=ephemeral_port(ctx.rng), dst_port=ctx.choice(_LEAK_PORTS),
                bytes_out=out, bytes_in=inn, packets_out=out // 900 + 1,
                packets_in=inn // 1300 + (1 if ok else 0),
                duration_ms=ctx.rng.randrange(1, 20_000), action="accept" if ok else "reject",
                tenant=src.tenant, host=src.host, vm=src.id,
            )
        )  # fmt: skip
    return Outcome(
        src.tenant, "vm", src.id, events, {"victim_tenant": victim.id, "dst_ips": [v.ip for v in targets]}
    )


def foreign_resource_access(ctx: Ctx) -> Outcome:
    actor = ctx.choice(ctx.topo.tenants)
    victim = ctx.choice([t for t in ctx.topo.tenants if t.id != actor.id])
    user = ctx.choice(actor.users)
    principal = actor.principal(user)
    src_ip = _client_ip(ctx, actor)
    reg = ctx.topo.registry
    bucket = ctx.choice(victim.buckets[:3])  # the "-shared" bucket may be granted; the others never are
    calls = [("storage.ListBucket", f"storage/{victim.id}/{bucket}")]
    calls += [
        ("storage.GetObject", f"storage/{victim.id}/{bucket}/{object_key(ctx.rng)}")
        for _ in range(ctx.rng.randrange(4, 30))
    ]
    if ctx.rng.random() < 0.4:
        calls.append(("snapshot.Copy", f"snapshot/{victim.id}/{ctx.choice(victim.snapshots[1:])}"))
    calls = [c for c in calls if not reg.has_share(victim.id, actor.id, c[1])]
    events: list[Event] = [
        ctx.make.audit(
            ts, principal, action, res, principal_tenant=actor.id, resource_tenant=victim.id, src_ip=src_ip,
            failed=ctx.rng.random() < 0.3,
        )
        for ts, (action, res) in zip(ctx.stamps(len(calls), ctx.duration()), calls, strict=True)
    ]  # fmt: skip
    return Outcome(actor.id, "principal", principal, events, {"victim_tenant": victim.id, "bucket": bucket})


def share_to_foreign(ctx: Ctx) -> Outcome:
    owner = ctx.choice(ctx.topo.tenants)
    principal = owner.principal(ctx.choice(owner.users))
    action = ctx.choice(SHARE_ACTIONS)
    if action == "image.Share":
        resource = f"image/{owner.id}/{ctx.choice(owner.images)}"
    else:
        resource = f"snapshot/{owner.id}/{ctx.choice(owner.snapshots)}"
    reg = ctx.topo.registry
    grantees = [
        t.id for t in ctx.topo.tenants if t.id != owner.id and not reg.has_share(owner.id, t.id, resource)
    ]
    grantee = ctx.choice(grantees)
    stamps = ctx.stamps(2, ctx.duration())
    src_ip = _client_ip(ctx, owner)
    kind = resource.split("/", 1)[0]
    events: list[Event] = [
        ctx.make.audit(
            stamps[0], principal, f"{kind}.Describe", resource, principal_tenant=owner.id,
            resource_tenant=owner.id, src_ip=src_ip,
        ),
        ctx.make.audit(
            stamps[1], principal, action, resource, principal_tenant=owner.id, resource_tenant=owner.id,
            src_ip=src_ip, extra={"grantees": [grantee]},
        ),
    ]  # fmt: skip
    return Outcome(owner.id, "principal", principal, events, {"grantee": grantee, "resource": resource})


def _peered_pair(ctx: Ctx) -> tuple[str, str]:
    a, b = ctx.choice(ctx.topo.peerings)
    return (a, b) if ctx.rng.random() < 0.5 else (b, a)


def _peer_burst(ctx: Ctx, scale: tuple[float, float], n: tuple[int, int]) -> Outcome:
    a, b = _peered_pair(ctx)
    src, dst = ctx.choice(_tenant(ctx, a).vms), ctx.choice(_tenant(ctx, b).vms)
    events = [
        peered_flow(ctx.rng, ts, ctx.make, src, dst, scale=ctx.rng.uniform(*scale))
        for ts in ctx.stamps(ctx.rng.randrange(*n), ctx.duration())
    ]
    return Outcome(src.tenant, "vm", src.id, events, {"peer_tenant": b, "dst_ip": dst.ip})


def peer_volume_spike(ctx: Ctx) -> Outcome:
    return _peer_burst(ctx, (2_000.0, 20_000.0), (10, 31))


def benign_peered_flow(ctx: Ctx) -> Outcome:
    return _peer_burst(ctx, (0.7, 1.5), (10, 31))


def benign_shared_access(ctx: Ctx) -> Outcome:
    owner, grantee, pattern = ctx.choice(ctx.topo.shares)
    g = _tenant(ctx, grantee)
    principal = g.principal(ctx.choice(g.users))
    src_ip = _client_ip(ctx, g)
    events: list[Event] = []
    for ts in ctx.stamps(ctx.rng.randrange(5, 21), ctx.duration()):
        if pattern.endswith("*"):
            action, res = (
                ctx.choice(("storage.GetObject", "storage.GetObject", "storage.PutObject")),
                pattern[:-1],
            )
            res += object_key(ctx.rng)
        else:
            action, res = ctx.choice(("snapshot.Describe", "snapshot.Copy")), pattern
        events.append(
            ctx.make.audit(
                ts, principal, action, res, principal_tenant=grantee, resource_tenant=owner, src_ip=src_ip
            )
        )
    return Outcome(grantee, "principal", principal, events, {"owner_tenant": owner, "share": pattern})


def benign_registered_share(ctx: Ctx) -> Outcome:
    owner, grantee, pattern = ctx.choice([s for s in ctx.topo.shares if s[2].startswith("snapshot/")])
    o = _tenant(ctx, owner)
    principal = o.principal(ctx.choice(o.users))
    action = ctx.choice(("snapshot.Share", "snapshot.ModifyAttribute"))
    event = ctx.make.audit(
        ctx.start, principal, action, pattern, principal_tenant=owner, resource_tenant=owner,
        src_ip=_client_ip(ctx, o), extra={"grantees": [grantee]},
    )  # fmt: skip
    return Outcome(owner, "principal", principal, [event], {"grantee": grantee, "resource": pattern})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("cross_tenant_leak.unpeered_flow", unpeered_flow, technique="T1048", span_s=(30, 600),
             summary="a VM connects into another tenant's CIDR with no peering between the tenants"),
        spec("cross_tenant_leak.foreign_resource_access", foreign_resource_access, technique="T1530",
             span_s=(30, 600), summary="a principal reads another tenant's storage/snapshots, no share"),
        spec("cross_tenant_leak.share_to_foreign", share_to_foreign, technique="T1537", span_s=(5, 120),
             summary="snapshot.Share/image.Share/snapshot.ModifyAttribute to a tenant with no share"),
        spec("cross_tenant_leak.peer_volume_spike", peer_volume_spike, technique="T1048", span_s=(120, 900),
             summary="flows to a peered tenant at thousands of times the baseline volume"),
        spec("cross_tenant_leak.benign_peered_flow", benign_peered_flow, technique="T1048", span_s=(60, 600),
             summary="a burst of flows between peered tenants at normal volume"),
        spec("cross_tenant_leak.benign_shared_access", benign_shared_access, technique="T1530",
             span_s=(30, 600), summary="a grantee principal uses a resource its registry share covers"),
        spec("cross_tenant_leak.benign_registered_share", benign_registered_share, technique="T1537",
             span_s=(1, 5), summary="an owner shares a snapshot with the tenant the registry grants"),
    )
}  # fmt: skip
