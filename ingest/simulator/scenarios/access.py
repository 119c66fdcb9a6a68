"""Brute force (T1110) against guests' sshd, and a user mistyping a password as its look-alike.

Entity: the source ip of the attempts. Each burst of attempts also leaves the TCP flows to port 22.
"""

from __future__ import annotations

from typing import Final

from ingest.schema import Event
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec
from ingest.simulator.topology import VmInfo, random_public_ip

__all__ = ["GUESSED_USERS", "SCENARIOS"]

GUESSED_USERS: Final = ("root", "admin", "ubuntu", "test", "oracle", "postgres", "user", "git", "ftp", "pi")


def _ssh_flow(ctx: Ctx, ts: int, src: str, vm: VmInfo, tries: int) -> Event:
    return ctx.make.flow(
        ts, src, vm.ip, src_port=ctx.rng.randrange(32768, 61000), dst_port=22,
        bytes_out=1800 + 700 * tries, bytes_in=2600 + 300 * tries, packets_out=12 + 4 * tries,
        packets_in=10 + 4 * tries, duration_ms=ctx.rng.randrange(1500, 9000), tenant=vm.tenant,
        host=vm.host, vm=vm.id,
    )  # fmt: skip


def _attempts(ctx: Ctx, src: str, vm: VmInfo, stamps: list[int], succeed_last: bool) -> list[Event]:
    events: list[Event] = []
    for i, ts in enumerate(stamps):
        if i % 3 == 0:  # sshd allows a few tries per connection
            events.append(_ssh_flow(ctx, ts, src, vm, min(3, len(stamps) - i)))
        last = i == len(stamps) - 1
        user = ctx.choice(GUESSED_USERS)
        events.append(
            ctx.make.auth(
                ts, user, src, failed=not (last and succeed_last), tenant=vm.tenant, host=vm.host, vm=vm.id
            )
        )
    return events


def ssh_password(ctx: Ctx) -> Outcome:
    attacker = random_public_ip(ctx.rng)
    vm = ctx.vm()
    success = ctx.rng.random() < 0.5
    stamps = ctx.stamps(ctx.rng.randrange(30, 200), ctx.duration())
    events = _attempts(ctx, attacker, vm, stamps, success)
    return Outcome(vm.tenant, "ip", attacker, events, {"target_vm": vm.id, "success": success})


def password_spray(ctx: Ctx) -> Outcome:
    attacker = random_public_ip(ctx.rng)
    t = ctx.choice(ctx.topo.tenants)
    plan = [v for v in t.vms for _ in range(ctx.rng.randrange(3, 7))]
    ctx.rng.shuffle(plan)
    events: list[Event] = []
    stamps = ctx.stamps(len(plan), ctx.duration())
    for i, (ts, vm) in enumerate(zip(stamps, plan, strict=True)):
        if i % 3 == 0:
            events.append(_ssh_flow(ctx, ts, attacker, vm, 3))
        events.append(
            ctx.make.auth(
                ts, ctx.choice(GUESSED_USERS), attacker, failed=True, tenant=vm.tenant, host=vm.host, vm=vm.id
            )
        )
    return Outcome(t.id, "ip", attacker, events, {"target_vms": [v.id for v in t.vms]})


def benign_typo(ctx: Ctx) -> Outcome:
    t = ctx.choice(ctx.topo.tenants)
    vm = ctx.choice(t.vms)
    user = ctx.choice(t.users)
    src = ctx.choice(t.office_ips)
    stamps = ctx.stamps(3, ctx.duration())
    events: list[Event] = [_ssh_flow(ctx, stamps[0], src, vm, 3)]
    events += [
        ctx.make.auth(ts, user, src, failed=i < 2, tenant=vm.tenant, host=vm.host, vm=vm.id)
        for i, ts in enumerate(stamps)
    ]
    return Outcome(vm.tenant, "ip", src, events, {"target_vm": vm.id, "user": user})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("brute_force.ssh_password", ssh_password, technique="T1110", span_s=(60, 600),
             summary="one address fails tens to hundreds of ssh logins on a VM, sometimes then succeeds"),
        spec("brute_force.password_spray", password_spray, technique="T1110", span_s=(120, 900),
             summary="one address tries a few common users on every VM of a tenant"),
        spec("brute_force.benign_typo", benign_typo, technique="T1110", span_s=(5, 40),
             summary="a user mistypes the password twice, then logs in"),
    )
}  # fmt: skip
