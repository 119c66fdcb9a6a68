"""Command-and-control beaconing (T1071.001) and spam bots (T1583/T1071.003) from compromised VMs,
with the periodic and mail traffic that looks like them. Entity: the VM.

Every check-in is its own short connection (a record written when it ends), logged on the VM's
side, bytes at the IP level (payload + 52 B of headers per packet). Intervals follow the tools'
documented defaults, not a detector's thresholds:

``beacon_cobalt_strike``
    HTTP(S) beacon on 443/80/8080 to one address. ``sleep`` 60 s (the default; sometimes an
    operator's 30-300 s), jitter 0-50 %: each sleep is shortened by a uniform 0..jitter share
    (Cobalt Strike's ``sleep <s> <jitter%>``). A check-in is a GET with the metadata cookie and
    an empty answer; now and then a task (larger answer) and its output (larger POST).
``beacon_meterpreter``
    Meterpreter reverse_https on 443/8443: the HTTP transport polls its handler continuously and
    backs off while idle, so an idle session polls every few seconds (modelled 2-10 s, an
    assumption from the transport's behaviour, not a documented default) for as long as it lives
    (``SessionCommunicationTimeout`` 300 s only applies when the handler is gone).
``beacon_sliver``
    Sliver beacon (``generate beacon``: ``--seconds 60`` and ``--jitter 30`` by default, jitter
    added as 0..30 s) over mTLS 8888 (its default listener) or HTTPS 443.
``spam_bot``
    A spam bot on a VM: SMTP 25 to hundreds of distinct mail servers (the CTU-13 scenario 6 bot made
    4,398 attempts in 2 h); many attempts are never answered (outbound 25 filtered, servers down) or
    reset, many are refused after EHLO/RCPT (blocklists), a few deliver.
Look-alikes (``benign_*``)
    ``benign_ntp_polling`` (chrony/ntpd: one server, a fixed poll interval of 2^6-2^10 s, udp 123),
    ``benign_update_agent`` (an updater polling its repository every 5-15 min with +-10 % random
    delay, to a CDN name on 2-4 addresses, sometimes downloading), ``benign_monitoring_agent`` (an
    APM/infrastructure agent reporting every 60 s, its harvest cycle, to one SaaS ingest
    address, 3-40 kB payloads), ``benign_mail_relay`` (the tenant's relay delivering its mail to
    external MX hosts: complete sessions, a few big providers take most, connections reused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ingest.schema import Event
from ingest.simulator.background import ephemeral_port
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec
from ingest.simulator.topology import VmInfo, random_public_ip

__all__ = ["SCENARIOS"]

_HDR: Final = 52


def _out(ctx: Ctx, vm: VmInfo, end: int, dst: str, port: int, out: int, inn: int, p_out: int, p_in: int,
         dur: int, proto: str = "tcp") -> Event:  # fmt: skip
    """A connection from ``vm`` to ``dst`` ending at ``end``; ``out``/``inn`` are payload bytes."""
    hdr = 28 if proto == "udp" else _HDR
    return ctx.make.flow(
        end, vm.ip, dst, src_port=123 if port == 123 else ephemeral_port(ctx.rng), dst_port=port, proto=proto,
        bytes_out=out + hdr * p_out, bytes_in=inn + hdr * p_in if p_in else 0, packets_out=p_out,
        packets_in=p_in, duration_ms=max(0, dur), tenant=vm.tenant, host=vm.host, vm=vm.id,
    )  # fmt: skip


def _series(ctx: Ctx, gap_ms: Callable[[], float]) -> list[int]:
    """Check-in times from the start until the instance's end; ``gap_ms()`` draws each wait."""
    end = ctx.start + ctx.duration()
    out: list[int] = []
    t = ctx.start + ctx.rng.randrange(0, 5000)
    while t < end and len(out) < 5_000:
        out.append(t)
        t += max(1, int(gap_ms()))
    return out or [ctx.start]


def _https_checkin(ctx: Ctx, port: int, task: bool) -> tuple[int, int, int, int, int]:
    tls_c, tls_s = (ctx.rng.randrange(500, 800), ctx.rng.randrange(2500, 4500)) if port != 80 else (0, 0)
    out = tls_c + ctx.rng.randrange(250, 450)  # GET with the metadata cookie
    inn = tls_s + ctx.rng.randrange(120, 260)  # an empty answer
    if task:
        out += ctx.rng.randrange(2_000, 200_000)  # the task's output, POSTed back
        inn += ctx.rng.randrange(500, 60_000)
    return out, inn, 8 + out // 1400, 7 + inn // 1400, ctx.rng.randrange(40, 400) + (2000 if task else 0)


def _beacon(
    ctx: Ctx, tool: str, ports: tuple[int, ...], gap: Callable[[], float], detail: dict[str, Any]
) -> Outcome:
    vm = ctx.vm()
    dst, port = random_public_ip(ctx.rng), ctx.choice(ports)
    events: list[Event] = []
    for t in _series(ctx, gap):
        out, inn, p_out, p_in, dur = _https_checkin(ctx, port, ctx.rng.random() < 0.03)
        events.append(
            _out(ctx, vm, min(ctx.start + ctx.span, t + dur), dst, port, out, inn, p_out, p_in, dur)
        )
    return Outcome(vm.tenant, "vm", vm.id, events, {"c2": dst, "dst_port": port, "tool": tool, **detail})


def beacon_cobalt_strike(ctx: Ctx) -> Outcome:
    sleep_s = 60 if ctx.rng.random() < 0.6 else ctx.choice((30, 45, 120, 300))
    jitter = ctx.choice((0, 0, 10, 20, 30, 50))
    return _beacon(ctx, "cobalt_strike", (443, 443, 80, 8080),
                   lambda: sleep_s * 1000 * (1 - ctx.rng.uniform(0, jitter / 100)),
                   {"sleep_s": sleep_s, "jitter_pct": jitter})  # fmt: skip


def beacon_meterpreter(ctx: Ctx) -> Outcome:
    cap = ctx.rng.uniform(2, 10)
    return _beacon(ctx, "meterpreter", (443, 8443), lambda: cap * 1000 * ctx.rng.uniform(0.9, 1.1),
                   {"poll_s": round(cap, 1)})  # fmt: skip


def beacon_sliver(ctx: Ctx) -> Outcome:
    return _beacon(ctx, "sliver", (8888, 443), lambda: 60_000 + ctx.rng.uniform(0, 30_000),
                   {"interval_s": 60, "jitter_s": 30})  # fmt: skip


def spam_bot(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    length = ctx.duration()
    n = max(20, int(length / 1000 * ctx.rng.uniform(0.1, 0.8)))  # 360-2,900 attempts an hour
    servers = [random_public_ip(ctx.rng) for _ in range(max(10, n // ctx.rng.randrange(2, 6)))]
    outcomes = {"unanswered": 0, "reset": 0, "refused": 0, "delivered": 0}
    events: list[Event] = []
    for t in ctx.stamps(n, length):
        dst = ctx.choice(servers)
        r = ctx.rng.random()
        if r < 0.45:  # SYNs never answered (3 tries over ~21 s)
            outcomes["unanswered"] += 1
            events.append(_out(ctx, vm, t, dst, 25, 0, 0, 3, 0, ctx.rng.randrange(3000, 21000)))
        elif r < 0.6:
            outcomes["reset"] += 1
            events.append(_out(ctx, vm, t, dst, 25, 0, 0, 1, 1, ctx.rng.randrange(20, 300)))
        elif r < 0.92:  # banner, EHLO, MAIL, RCPT refused (blocklisted sender or unknown user)
            outcomes["refused"] += 1
            events.append(_out(ctx, vm, t, dst, 25, ctx.rng.randrange(80, 260), ctx.rng.randrange(200, 700), 7, 6,
                               ctx.rng.randrange(300, 4000)))  # fmt: skip
        else:
            outcomes["delivered"] += 1
            out = ctx.rng.randrange(1500, 12_000)
            events.append(_out(ctx, vm, t, dst, 25, out, ctx.rng.randrange(300, 800), 8 + out // 1400, 8,
                               ctx.rng.randrange(500, 6000)))  # fmt: skip
    return Outcome(vm.tenant, "vm", vm.id, events, {"attempts": n, "servers": len(servers), **outcomes})


def benign_ntp_polling(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    server = ctx.choice(ctx.topo.ntp_servers)
    poll = 2 ** ctx.rng.randrange(6, 11) * 1000
    events = [
        _out(ctx, vm, t + d, server, 123, 48, 48, 1, 1, d, proto="udp")
        for t in _series(ctx, lambda: poll)
        for d in (ctx.rng.randrange(5, 60),)
    ]
    return Outcome(vm.tenant, "vm", vm.id, events, {"server": server, "poll_s": poll // 1000})


def benign_update_agent(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    cdn = [random_public_ip(ctx.rng) for _ in range(ctx.rng.randrange(2, 5))]
    every = ctx.rng.randrange(300, 901) * 1000
    events: list[Event] = []
    for t in _series(ctx, lambda: every * ctx.rng.uniform(0.9, 1.1)):
        download = ctx.rng.random() < 0.1
        out = ctx.rng.randrange(900, 2500)
        inn = ctx.rng.randrange(5_000_000, 60_000_000) if download else ctx.rng.randrange(3_500, 30_000)
        dur = ctx.rng.randrange(5_000, 90_000) if download else ctx.rng.randrange(80, 900)
        events.append(_out(ctx, vm, min(ctx.start + ctx.span, t + dur), ctx.choice(cdn), 443, out, inn,
                           10 + out // 1400, 8 + inn // 1400, dur))  # fmt: skip
    return Outcome(vm.tenant, "vm", vm.id, events, {"cdn": cdn, "every_s": every // 1000})


def benign_monitoring_agent(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    saas = random_public_ip(ctx.rng)
    events: list[Event] = []
    for t in _series(ctx, lambda: 60_000 + ctx.rng.uniform(-300, 300)):
        out, inn = ctx.rng.randrange(3_000, 40_000) + 700, ctx.rng.randrange(200, 800) + 3_200
        dur = ctx.rng.randrange(60, 600)
        events.append(_out(ctx, vm, min(ctx.start + ctx.span, t + dur), saas, 443, out, inn, 8 + out // 1400,
                           7 + inn // 1400, dur))  # fmt: skip
    return Outcome(vm.tenant, "vm", vm.id, events, {"saas": saas, "every_s": 60})


def benign_mail_relay(ctx: Ctx) -> Outcome:
    vm = ctx.vm(role="app")
    length = ctx.duration()
    big = [random_public_ip(ctx.rng) for _ in range(ctx.rng.randrange(3, 6))]  # the big providers' MX
    small = [random_public_ip(ctx.rng) for _ in range(ctx.rng.randrange(10, 60))]
    n = max(5, int(length / 3_600_000 * ctx.rng.randrange(20, 200)))
    events: list[Event] = []
    for t in ctx.stamps(n, length):
        dst = ctx.choice(big) if ctx.rng.random() < 0.6 else ctx.choice(small)
        messages = ctx.rng.randrange(1, 6) if dst in big else 1  # one session, several messages
        out = sum(ctx.rng.randrange(3_000, 80_000) for _ in range(messages)) + 4_000  # STARTTLS
        inn = 3_500 + messages * ctx.rng.randrange(200, 500)
        dur = ctx.rng.randrange(400, 5000) * messages
        events.append(_out(ctx, vm, t, dst, 25, out, inn, 12 + out // 1400, 10 + messages * 4, dur))
    return Outcome(vm.tenant, "vm", vm.id, events, {"messages_sessions": n, "servers": len(big) + len(small)})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("command_and_control.beacon_cobalt_strike", beacon_cobalt_strike, technique="T1071.001",
             span_s=(1800, 7200), summary="a VM checks in with one address every sleep (60 s), 0-50 % jitter"),
        spec("command_and_control.beacon_meterpreter", beacon_meterpreter, technique="T1071.001",
             span_s=(1800, 7200), summary="a Meterpreter reverse_https session polls its handler every few s"),
        spec("command_and_control.beacon_sliver", beacon_sliver, technique="T1071.001", span_s=(1800, 7200),
             summary="a Sliver beacon: 60 s plus 0-30 s jitter, mTLS 8888 or HTTPS"),
        spec("command_and_control.benign_ntp_polling", benign_ntp_polling, technique="T1071.001",
             span_s=(1800, 7200), summary="chrony/ntpd polls one server every 64-1024 s"),
        spec("command_and_control.benign_update_agent", benign_update_agent, technique="T1071.001",
             span_s=(1800, 7200), summary="an updater polls a CDN every 5-15 min, sometimes downloads"),
        spec("command_and_control.benign_monitoring_agent", benign_monitoring_agent, technique="T1071.001",
             span_s=(1800, 7200), summary="a monitoring agent reports to its SaaS every 60 s"),
        spec("spam.spam_bot", spam_bot, technique="T1071.003", span_s=(600, 3600),
             summary="a VM tries SMTP 25 on hundreds of mail servers, mostly unanswered or refused"),
        spec("spam.benign_mail_relay", benign_mail_relay, technique="T1071.003", span_s=(1800, 7200),
             summary="the tenant's mail relay delivers to external MX hosts, complete sessions"),
    )
}  # fmt: skip
