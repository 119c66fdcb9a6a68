"""Attacks on the services tenants expose, as flow records show them, with their look-alikes.

Flows only (no sshd log): what a cloud provider sees of its tenants' VMs. Every record is one
connection, written when it ends (``ts`` = end, ``duration_ms`` its length), bytes and packets at
the IP level (payload + 52 B of IPv4/TCP headers per packet) and logged on the VM's side. Shapes
follow the tools' documented defaults, never a detector's thresholds.

Flow-level password guessing (brute_force, T1110.001/.003; entity: the attacker's ip)
    ``flow_guessing``: hydra (``-t`` 16 parallel tasks by default, 4 as its manual advises for
    SSH), medusa (``-t`` 1-5 concurrent logins), ncrack (timing template ``-T3``: a handful of
    parallel connections) against SSH 22, RDP 3389, FTP 21 or MySQL 3306 of one VM. Each task
    reconnects as soon as the server drops it: sshd allows ``MaxAuthTries`` 6 per connection and
    refuses 30 % of new unauthenticated connections beyond ``MaxStartups`` 10 (10:30:100),
    vsftpd/proftpd 3 (``max_login_fails``, ``MaxLoginAttempts``) with a 1 s ``delay_failed_login``,
    RDP (CredSSP) and MySQL one login per connection; a failed password costs ~2 s in sshd (PAM's
    fail delay). Sometimes the last login works: a longer, bigger session.
    ``flow_spray``: one address, one service (SSH or RDP), 1-3 connections to each VM of a tenant,
    spread thinly over the run (low and slow).
    Look-alikes: ``benign_ansible_run`` (a control node opens 1-4 SSH sessions per VM,
    ControlPersist 60 s, uploading 20-500 kB of modules), ``benign_nagios_check_ssh`` (a monitoring
    VM's check_ssh reads each VM's banner every 60 s), ``benign_rsync_backup`` (the backup VM pulls
    each VM over one SSH session, megabytes to gigabytes).
HTTP floods (dos, T1499.002)
    ``http_flood_hulk`` (one source; entity its ip): HULK opens a new connection per request
    (Python urllib, no keep-alive) with a unique query string, 50-200 per second.
    ``http_flood_goldeneye`` (one source; entity its ip): GoldenEye holds keep-alive sockets
    (``-w`` 10 workers x ``-s`` 500 sockets by default; the server caps concurrency) and pipelines
    requests on each until the server closes it (Apache ``MaxKeepAliveRequests`` 100,
    ``KeepAliveTimeout`` 5 s).
    ``http_flood_loic`` (3-10 sources; entity the victim ip, as ``dos.udp_flood``): LOIC's HTTP
    mode from a few hosts, one short ``GET /`` per connection, 10-60 per second each.
    Look-alikes: ``benign_load_balancer`` (2-4 load-balancer nodes in the tenant's network:
    health checks every 5-30 s, the GCP/AWS defaults, plus the proxied traffic, half of the
    instances over upstream keep-alive connections and half one connection per request, and the
    internet clients' keep-alive HTTPS sessions at the nodes' front, ~6 requests each; entity
    the web VM's ip) and the existing ``benign_web_peak`` (a flash crowd).
Slow denial of service (dos, T1499.001; one source, entity its ip)
    ``slowloris`` (default 150 sockets, one header line every 15 s), ``slowhttptest``
    (``-c 1000 -i 10 -r 200``, slow headers ``-H`` or slow body ``-B``, test length 240 s) and
    ``rudy`` (R.U.D.Y.: a POST with a large Content-Length, one body byte every 5-10 s, 50-500
    connections). Against Apache 2.4's default ``mod_reqtimeout`` (header=20-40, MinRate=500)
    the server answers 408 and closes header-dribbling sockets after 20-40 s and the tool
    reopens them; without it they live to the attack's end. The exporter writes a record when
    the connection ends (Zeek, Argus, CICFlowMeter) or every 60 s of an open one (an active
    timeout, as NetFlow/IPFIX or 1-minute VPC flow logs): ``detail.export`` says which.
    Look-alikes: ``benign_websockets`` (web clients holding websockets/long polls for minutes,
    socket.io pings every 25 s, a few of them behind one office NAT with 10-40 sockets each;
    entity the web VM's ip) and ``benign_idle_ssh`` (2-8 idle SSH sessions of a tenant's admins,
    a keepalive per minute; entity the office ip). Both are exported like the attacks.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Final

from ingest.schema import Event
from ingest.simulator.background import ephemeral_port
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec
from ingest.simulator.topology import VmInfo, random_public_ip

__all__ = ["GUESS_SERVICES", "SCENARIOS"]

_HDR: Final = 52  # IPv4 + TCP (with timestamps) header bytes per packet
GUESS_SERVICES: Final = {"ssh": 22, "rdp": 3389, "ftp": 21, "mysql": 3306}
_MAX_FLOWS: Final = 5_000
"""Records per instance at most: a flood keeps its rate and is cut short in time (``_cap``), so a
run's injected events stay few enough to hold in memory and build quickly."""
_ACTIVE_TIMEOUT_MS: Final = 60_000


def _ip_bytes(payload: int, packets: int) -> int:
    return payload + _HDR * packets


def _conn(
    ctx: Ctx,
    end: int,
    src: str,
    dst: str,
    vm: VmInfo,
    port: int,
    out: int,
    inn: int,
    p_out: int,
    p_in: int,
    dur: int,
    *,
    src_port: int | None = None,
    action: str = "accept",
    on_vm: bool = True,
) -> Event:
    """One TCP connection record; ``out``/``inn`` are payload bytes. ``on_vm=False``: traffic of
    ``vm``'s tenant seen at an interface that is no VM of the registry (a load balancer's)."""
    return ctx.make.flow(
        end, src, dst, src_port=src_port or ephemeral_port(ctx.rng), dst_port=port,
        bytes_out=_ip_bytes(out, p_out), bytes_in=_ip_bytes(inn, p_in) if p_in else 0,
        packets_out=p_out, packets_in=p_in, duration_ms=max(0, dur), action=action,
        tenant=vm.tenant, host=vm.host if on_vm else None, vm=vm.id if on_vm else None,
    )  # fmt: skip


def _cap(events: list[Event]) -> list[Event]:
    """The first ``_MAX_FLOWS`` records by time: the same attack, ended earlier."""
    if len(events) <= _MAX_FLOWS:
        return events
    return sorted(events, key=lambda e: e.ts)[:_MAX_FLOWS]


def _lanes(starts: list[int], end: int, step: Callable[[int], tuple[list[Event], int | None]]) -> list[Event]:
    """Parallel lanes (tasks, sockets) run in time order: ``step(t)`` makes the records of the
    connection a lane opens at ``t`` and says when the lane opens its next one (None: done). Stops
    at ``end`` or ``_MAX_FLOWS`` records, so a capped attack is the same attack, ended earlier."""
    heap = [(t, k) for k, t in enumerate(starts)]
    heapq.heapify(heap)
    events: list[Event] = []
    while heap and len(events) < _MAX_FLOWS:
        t, k = heapq.heappop(heap)
        if t >= end:
            continue
        made, nxt = step(t)
        events += made
        if nxt is not None:
            heapq.heappush(heap, (nxt, k))
    return events


def _end(ctx: Ctx) -> int:
    """The last time an event of this instance may carry."""
    return ctx.start + ctx.span


# --- flow-level password guessing --------------------------------------------------------------------
_TOOLS: Final = ("hydra", "medusa", "ncrack")


def _guess_conn(ctx: Ctx, service: str, tries: int) -> tuple[int, int, int, int, int]:
    """(payload out, payload in, packets out, packets in, duration ms) of one login connection."""
    r = ctx.rng
    if service == "ssh":  # version exchange, key exchange (~2-3 kB each way), then the tries
        out = r.randrange(1400, 2200) + tries * r.randrange(90, 160)
        inn = r.randrange(1800, 3000) + tries * r.randrange(40, 90)
        return (
            out,
            inn,
            10 + 2 * tries,
            8 + 2 * tries,
            r.randrange(150, 600) + tries * r.randrange(1900, 2600),
        )
    if service == "rdp":  # X.224, TLS, CredSSP/NTLM, then the server's refusal
        return (
            r.randrange(1800, 3200),
            r.randrange(2600, 5200),
            r.randrange(10, 16),
            r.randrange(9, 14),
            r.randrange(200, 1500),
        )
    if service == "ftp":  # banner, USER/PASS pairs, 530 replies, 1 s delay_failed_login each
        out = tries * r.randrange(28, 60)
        inn = r.randrange(40, 90) + tries * r.randrange(60, 80)
        return out, inn, 3 + 2 * tries, 3 + 2 * tries, r.randrange(40, 200) + tries * r.randrange(1000, 1150)
    # mysql: greeting, login request, "Access denied" error
    return (
        r.randrange(180, 320),
        r.randrange(160, 260),
        r.randrange(5, 8),
        r.randrange(4, 7),
        r.randrange(3, 60),
    )


def _tries_per_conn(ctx: Ctx, service: str, tool: str) -> int:
    if service == "ssh":
        return (
            6 if tool == "hydra" else ctx.rng.randrange(1, 7) if tool == "ncrack" else ctx.rng.randrange(1, 4)
        )
    return 3 if service == "ftp" else 1


def flow_guessing(ctx: Ctx) -> Outcome:
    attacker = random_public_ip(ctx.rng)
    vm = ctx.vm()
    tool = ctx.choice(_TOOLS)
    service = ctx.choice(tuple(GUESS_SERVICES))
    port = GUESS_SERVICES[service]
    if tool == "hydra":
        tasks = 4 if service == "ssh" and ctx.rng.random() < 0.5 else 16
    elif tool == "medusa":
        tasks = ctx.rng.randrange(1, 6)
    else:
        tasks = ctx.rng.randrange(3, 11)
    length = ctx.duration()
    end = ctx.start + length
    success = ctx.rng.random() < 0.3
    # sshd MaxStartups 10:30:100: beyond 10 unauthenticated connections it drops 30 % rising to 100 %
    drop = 0.3 + 0.7 * (tasks - 10) / 90 if service == "ssh" and tasks > 10 else 0.0

    def connect(t: int) -> tuple[list[Event], int | None]:
        if drop and ctx.rng.random() < drop:  # closed right after the banner
            fin = min(end, t + ctx.rng.randrange(2, 40))
            made = _conn(ctx, fin, attacker, vm.ip, vm, port, 21, 0, 3, 2, fin - t)
        else:
            out, inn, p_out, p_in, dur = _guess_conn(ctx, service, _tries_per_conn(ctx, service, tool))
            fin = min(end, t + dur)
            made = _conn(ctx, fin, attacker, vm.ip, vm, port, out, inn, p_out, p_in, fin - t)
        return [made], fin + ctx.rng.randrange(5, 250)

    events = _lanes([ctx.start + ctx.rng.randrange(0, 500) for _ in range(tasks)], end, connect)
    if success:  # the password that worked: a real session follows
        t0 = max(e.ts for e in events)
        fin = min(_end(ctx), t0 + ctx.rng.randrange(20_000, 300_000))
        out, inn = ctx.rng.randrange(8_000, 80_000), ctx.rng.randrange(20_000, 400_000)
        events.append(
            _conn(ctx, fin, attacker, vm.ip, vm, port, out, inn, out // 90 + 10, inn // 1200 + 10, fin - t0)
        )
    detail = {"target_vm": vm.id, "service": service, "dst_port": port, "tool": tool, "tasks": tasks,
              "connections": len(events), "success": success}  # fmt: skip
    return Outcome(vm.tenant, "ip", attacker, _cap(events), detail)


def flow_spray(ctx: Ctx) -> Outcome:
    attacker = random_public_ip(ctx.rng)
    t = ctx.choice(ctx.topo.tenants)
    service = ctx.choice(("ssh", "rdp"))
    port = GUESS_SERVICES[service]
    plan = [v for v in t.vms for _ in range(ctx.rng.randrange(1, 4))]
    events: list[Event] = []
    for start, vm in zip(ctx.stamps(len(plan), ctx.duration()), plan, strict=False):
        out, inn, p_out, p_in, dur = _guess_conn(ctx, service, ctx.rng.randrange(1, 3))
        events.append(
            _conn(ctx, min(_end(ctx), start + dur), attacker, vm.ip, vm, port, out, inn, p_out, p_in, dur)
        )
    return Outcome(
        t.id, "ip", attacker, events, {"service": service, "dst_port": port, "target_vms": len(t.vms)}
    )


def benign_ansible_run(ctx: Ctx) -> Outcome:
    t = ctx.choice(ctx.topo.tenants)
    src = ctx.choice(t.office_ips)
    length = ctx.duration()
    events: list[Event] = []
    for vm in t.vms:
        at = ctx.start + ctx.rng.randrange(0, max(1, length // 4))
        for _ in range(ctx.rng.randrange(1, 5)):  # ControlPersist reuses a session for 60 s
            dur = ctx.rng.randrange(2_000, 90_000)
            fin = min(_end(ctx), at + dur)
            out, inn = ctx.rng.randrange(20_000, 500_000), ctx.rng.randrange(5_000, 120_000)
            events.append(
                _conn(ctx, fin, src, vm.ip, vm, 22, out, inn, out // 1200 + 20, inn // 900 + 20, fin - at)
            )
            at = fin + ctx.rng.randrange(500, 20_000)
    return Outcome(t.id, "ip", src, _cap(events), {"vms": len(t.vms)})


def benign_nagios_check_ssh(ctx: Ctx) -> Outcome:
    monitor = ctx.vm(role="app")
    t = ctx.topo.tenant_by_id[monitor.tenant]
    length = ctx.duration()
    events: list[Event] = []
    for vm in t.vms:
        if vm.id == monitor.id:
            continue
        offset = ctx.rng.randrange(0, 60_000)  # Nagios spreads the checks over the interval
        for at in range(ctx.start + offset, ctx.start + length + 1, 60_000):
            at += ctx.rng.randrange(0, 400)
            if at >= _end(ctx):
                break  # the run ends first
            dur = ctx.rng.randrange(3, 30)
            fin = min(_end(ctx), at + dur)
            out, inn = ctx.rng.randrange(20, 40), ctx.rng.randrange(20, 60) + 21  # version strings
            events.append(
                ctx.make.flow(
                    fin, monitor.ip, vm.ip, src_port=ephemeral_port(ctx.rng), dst_port=22,
                    bytes_out=_ip_bytes(out, 5), bytes_in=_ip_bytes(inn, 4), packets_out=5, packets_in=4,
                    duration_ms=fin - at, tenant=monitor.tenant, host=monitor.host, vm=monitor.id,
                )
            )  # fmt: skip
    if not events:  # the run was shorter than one interval
        vm = t.vms[0] if t.vms[0].id != monitor.id else t.vms[1]
        events.append(_conn(ctx, ctx.start, monitor.ip, vm.ip, monitor, 22, 30, 80, 5, 4, 0))
    return Outcome(monitor.tenant, "ip", monitor.ip, _cap(events), {"vm": monitor.id, "interval_s": 60})


def benign_rsync_backup(ctx: Ctx) -> Outcome:
    t = ctx.choice(ctx.topo.tenants)
    backup = ctx.topo.backup_target(t.id)
    length = ctx.duration()
    events: list[Event] = []
    at = ctx.start
    for vm in t.vms:
        if vm.id == backup.id:
            continue
        if at >= _end(ctx):
            break  # the run ends before this VM's turn
        dur = ctx.rng.randrange(20_000, max(20_001, length // max(1, len(t.vms) - 1)))
        fin = min(_end(ctx), at + dur)
        out, inn = ctx.rng.randrange(50_000, 800_000), ctx.rng.randrange(5_000_000, 400_000_000)
        events.append(
            ctx.make.flow(
                fin, backup.ip, vm.ip, src_port=ephemeral_port(ctx.rng), dst_port=22,
                bytes_out=_ip_bytes(out, inn // 2800 + 20), bytes_in=_ip_bytes(inn, inn // 1400 + 20),
                packets_out=inn // 2800 + 20, packets_in=inn // 1400 + 20, duration_ms=fin - at,
                tenant=backup.tenant, host=backup.host, vm=backup.id,
            )
        )  # fmt: skip
        at = fin + ctx.rng.randrange(1_000, 10_000)
    return Outcome(t.id, "ip", backup.ip, _cap(events), {"vm": backup.id})


# --- HTTP floods -------------------------------------------------------------------------------------
def _web_target(ctx: Ctx) -> tuple[VmInfo, int]:
    return ctx.vm(role="web"), ctx.choice((80, 443))


def _tls(port: int, ctx: Ctx) -> tuple[int, int]:
    """Extra payload of a TLS handshake (client, server) on 443."""
    return (ctx.rng.randrange(500, 800), ctx.rng.randrange(2500, 4500)) if port == 443 else (0, 0)


def _one_request_flood(
    ctx: Ctx,
    sources: list[str],
    vm: VmInfo,
    port: int,
    rate: Callable[[], float],
    req: tuple[int, int],
    resp: tuple[int, int],
) -> list[Event]:
    """Each source opens a new connection per request at ``rate()`` per second."""
    end = ctx.start + ctx.duration()
    events: list[Event] = []
    per_source = _MAX_FLOWS // len(sources)
    for src in sources:
        per_s = rate()
        t = float(ctx.start + ctx.rng.randrange(0, 1000))
        n = 0
        while t < end and n < per_source:
            dur = ctx.rng.randrange(3, 400)
            a, b = _tls(port, ctx)
            out, inn = ctx.rng.randrange(*req) + a, ctx.rng.randrange(*resp) + b
            fin = min(end, int(t) + dur)
            events.append(
                _conn(
                    ctx, fin, src, vm.ip, vm, port, out, inn, 5 + out // 1400, 4 + inn // 1400, fin - int(t)
                )
            )
            n += 1
            t += ctx.rng.expovariate(per_s) * 1000
    return events


def http_flood_hulk(ctx: Ctx) -> Outcome:
    src = random_public_ip(ctx.rng)
    vm, port = _web_target(ctx)
    events = _one_request_flood(
        ctx, [src], vm, port, lambda: ctx.rng.uniform(50, 200), (320, 700), (250, 12_000)
    )  # unique URLs: many 404s and uncached pages
    return Outcome(vm.tenant, "ip", src, _cap(events), {"target_ip": vm.ip, "dst_port": port, "tool": "hulk"})


def http_flood_loic(ctx: Ctx) -> Outcome:
    vm, port = _web_target(ctx)
    sources = [random_public_ip(ctx.rng) for _ in range(ctx.rng.randrange(3, 11))]
    events = _one_request_flood(
        ctx, sources, vm, port, lambda: ctx.rng.uniform(10, 60), (60, 160), (3_000, 40_000)
    )  # the same "GET /" again and again: the home page each time
    return Outcome(
        vm.tenant,
        "ip",
        vm.ip,
        events,
        {"vm": vm.id, "dst_port": port, "sources": len(sources), "tool": "loic"},
    )


def http_flood_goldeneye(ctx: Ctx) -> Outcome:
    src = random_public_ip(ctx.rng)
    vm, port = _web_target(ctx)
    end = ctx.start + ctx.duration()
    sockets = ctx.rng.randrange(100, 400)  # what the server lets it hold of its 10 x 500

    def keepalive(t: int) -> tuple[list[Event], int | None]:
        requests = ctx.rng.randrange(20, 101)  # MaxKeepAliveRequests 100
        fin = min(end, t + requests * ctx.rng.randrange(20, 120))
        a, b = _tls(port, ctx)
        out = a + requests * ctx.rng.randrange(300, 600)
        inn = b + requests * ctx.rng.randrange(300, 5000)
        made = _conn(ctx, fin, src, vm.ip, vm, port, out, inn, requests + out // 1400 + 3,
                     requests + inn // 1400 + 3, fin - t)  # fmt: skip
        return [made], fin + ctx.rng.randrange(1, 50)

    events = _lanes([ctx.start + ctx.rng.randrange(0, 2000) for _ in range(sockets)], end, keepalive)
    return Outcome(
        vm.tenant, "ip", src, _cap(events), {"target_ip": vm.ip, "dst_port": port, "tool": "goldeneye"}
    )


_REQUESTS_PER_SESSION: Final = 6
"""Requests a client's keep-alive HTTPS session carries on average (a page and its objects)."""


def _lb_front(
    ctx: Ctx, node: str, vm: VmInfo, clients: list[str], start: int, end: int, n: int
) -> list[Event]:
    """``n`` client sessions at a load-balancer node's front whose requests it passes on between
    ``start`` and ``end``: keep-alive HTTPS from the internet, a page and its objects each."""
    out: list[Event] = []
    for _ in range(n):
        at = start + ctx.rng.randrange(0, max(1, end - start))
        fin = min(end, at + ctx.rng.randrange(200, 60_000))  # the run's end cuts it, as the upstream's
        sent, got = ctx.rng.randrange(600, 4_000), int(ctx.rng.lognormvariate(10, 1.2))
        out.append(_conn(ctx, fin, ctx.choice(clients), node, vm, 443, sent, got, 8 + sent // 1400,
                         6 + got // 1400, fin - at, on_vm=False))  # fmt: skip
    return out


def benign_load_balancer(ctx: Ctx) -> Outcome:
    vm = ctx.vm(role="web")
    t = ctx.topo.tenant_by_id[vm.tenant]
    nodes = [f"{t.net}.0.{20 + k}" for k in range(ctx.rng.randrange(2, 5))]
    # the internet clients behind the balancer: their sessions at its front are in the flows too
    clients = ctx.rng.sample(ctx.topo.clients, min(len(ctx.topo.clients), ctx.rng.randrange(50, 400)))
    end = ctx.start + ctx.duration()
    keepalive = ctx.rng.random() < 0.5
    interval = ctx.choice((5_000, 10_000, 30_000))
    events: list[Event] = []
    quota = _MAX_FLOWS // len(nodes)
    for node in nodes:
        first = len(events)
        for at in range(ctx.start + ctx.rng.randrange(0, interval), end, interval):  # health checks
            dur = ctx.rng.randrange(1, 20)
            events.append(_conn(ctx, min(end, at + dur), node, vm.ip, vm, 80, ctx.rng.randrange(80, 160),
                                ctx.rng.randrange(150, 400), 5, 4, dur))  # fmt: skip
        per_s = ctx.rng.uniform(2, 15)  # proxied client requests through this node
        tt = float(ctx.start + ctx.rng.randrange(0, 1000))
        if keepalive:  # a few upstream connections, each carrying many requests
            for _ in range(ctx.rng.randrange(2, 9)):
                at = ctx.start + ctx.rng.randrange(0, 5000)
                while at < end and len(events) - first < quota:
                    dur = ctx.rng.randrange(30_000, 300_000)
                    fin = min(end, at + dur)
                    n = max(1, int(per_s / 4 * (fin - at) / 1000))
                    out, inn = n * ctx.rng.randrange(400, 1200), n * ctx.rng.randrange(2_000, 30_000)
                    events.append(_conn(ctx, fin, node, vm.ip, vm, 80, out, inn, n * 2 + out // 1400,
                                        n * 2 + inn // 1400, fin - at))  # fmt: skip
                    events += _lb_front(ctx, node, vm, clients, at, fin, max(1, n // _REQUESTS_PER_SESSION))
                    at = fin + ctx.rng.randrange(1, 1000)
        else:
            while tt < end and len(events) - first < quota:
                dur = ctx.rng.randrange(5, 800)
                out, inn = ctx.rng.randrange(400, 1500), ctx.rng.randrange(500, 60_000)
                fin = min(end, int(tt) + dur)
                events.append(_conn(ctx, fin, node, vm.ip, vm, 80, out, inn, 5 + out // 1400, 4 + inn // 1400,
                                    fin - int(tt)))  # fmt: skip
                if ctx.rng.random() < 1 / _REQUESTS_PER_SESSION:
                    events += _lb_front(ctx, node, vm, clients, int(tt), fin, 1)
                tt += ctx.rng.expovariate(per_s) * 1000
    detail = {
        "vm": vm.id,
        "nodes": nodes,
        "upstream_keepalive": keepalive,
        "check_interval_s": interval // 1000,
    }
    return Outcome(vm.tenant, "ip", vm.ip, _cap(events), detail)


# --- slow denial of service --------------------------------------------------------------------------
def _held(
    ctx: Ctx,
    src: str,
    vm: VmInfo,
    port: int,
    start: int,
    stop: int,
    first: tuple[int, int],
    every_ms: tuple[int, int],
    step: tuple[int, int],
    closing_in: int,
    export: str,
    *,
    src_port: int | None = None,
) -> list[Event]:
    """Records of one connection held open from ``start`` to ``stop``: ``first`` = payload (out, in)
    at the start, then ``step`` = payload (out, in) every ``every_ms``; ``closing_in`` payload bytes
    the server sends when it closes (408 or 0). ``export``: "end" (one record) or "active" (one per
    ``_ACTIVE_TIMEOUT_MS`` of the connection, the last at its end)."""
    sport = src_port or ephemeral_port(ctx.rng)
    marks: list[tuple[int, int, int]] = [(start, first[0], first[1])]
    t = start + ctx.rng.randrange(*every_ms)
    while t < stop:
        marks.append((t, step[0], step[1]))
        t += ctx.rng.randrange(*every_ms)
    records: list[Event] = []
    seg_start, out = start, 0
    inn = p_out = p_in = 0

    def flush(end: int, last: bool) -> None:
        nonlocal out, inn, p_out, p_in, seg_start
        closing = closing_in if last and closing_in else 0
        records.append(
            ctx.make.flow(
                end, src, vm.ip, src_port=sport, dst_port=port, bytes_out=_ip_bytes(out, p_out + (1 if last else 0)),
                bytes_in=_ip_bytes(inn + closing, p_in + (2 if last else 0)), packets_out=p_out + (1 if last else 0),
                packets_in=p_in + (2 if last else 0), duration_ms=end - seg_start, tenant=vm.tenant, host=vm.host,
                vm=vm.id,
            )
        )  # fmt: skip
        out = inn = p_out = p_in = 0
        seg_start = end

    for at, o, i in marks:
        if export == "active":
            while at - seg_start >= _ACTIVE_TIMEOUT_MS:
                flush(seg_start + _ACTIVE_TIMEOUT_MS, False)
        out += o
        inn += i
        p_out += 1 + (2 if at == start else 0)  # the handshake with the first data
        p_in += 1 + (1 if at == start else 0)  # the server's ACKs
    if export == "active":
        while stop - seg_start > _ACTIVE_TIMEOUT_MS:
            flush(seg_start + _ACTIVE_TIMEOUT_MS, False)
    flush(stop, True)
    return records


def _export(ctx: Ctx) -> str:
    return ctx.choice(("end", "active"))


def _slow_attack(
    ctx: Ctx,
    tool: str,
    sockets: int,
    open_per_s: float,
    first: tuple[int, int],
    every_ms: tuple[int, int],
    step: tuple[int, int],
    reqtimeout: bool,
) -> Outcome:
    src = random_public_ip(ctx.rng)
    vm, port = _web_target(ctx)
    export = _export(ctx)
    end = ctx.start + ctx.duration()

    ports = itertools.count(ctx.rng.randrange(0, 28232))  # the client's ephemeral ports, in turn

    def hold(at: int) -> tuple[list[Event], int | None]:
        sport = 32768 + next(ports) % 28232
        if reqtimeout:  # mod_reqtimeout: 408 after 20-40 s, then the tool reopens the socket
            stop = min(end, at + ctx.rng.randrange(20_000, 40_001))
            made = _held(ctx, src, vm, port, at, stop, first, every_ms, step, 480, export, src_port=sport)
            return made, stop + ctx.rng.randrange(100, 15_000)  # reopened at the tool's next round
        return _held(ctx, src, vm, port, at, end, first, every_ms, step, 0, export, src_port=sport), None

    events = _lanes([ctx.start + int(k / open_per_s * 1000) for k in range(sockets)], end, hold)
    detail = {"target_ip": vm.ip, "dst_port": port, "tool": tool, "sockets": sockets, "export": export,
              "server_reqtimeout": reqtimeout}  # fmt: skip
    return Outcome(vm.tenant, "ip", src, _cap(events), detail)


def slowloris(ctx: Ctx) -> Outcome:
    # the initial partial request, then "X-a: <n>\r\n" every 15 s (sleeptime)
    return _slow_attack(ctx, "slowloris", 150, 150.0, (ctx.rng.randrange(120, 260), 0), (14_000, 16_000),
                        (ctx.rng.randrange(10, 16), 0), ctx.rng.random() < 0.5)  # fmt: skip


def slowhttptest(ctx: Ctx) -> Outcome:
    body = ctx.rng.random() < 0.5  # -B slow body (R.U.D.Y.-like) or -H slow headers
    first = (ctx.rng.randrange(250, 500), 0)
    step = (ctx.rng.randrange(1, 30) if body else ctx.rng.randrange(10, 40), 0)
    # -c 1000 -i 10 -r 200; a body-dribbling POST is not cut by the header timeout
    out = _slow_attack(ctx, "slowhttptest", 1000, 200.0, first, (9_500, 10_500), step,
                       (not body) and ctx.rng.random() < 0.5)  # fmt: skip
    out.detail["mode"] = "-B" if body else "-H"
    return out


def rudy(ctx: Ctx) -> Outcome:
    conns = ctx.rng.randrange(50, 501)
    return _slow_attack(
        ctx, "rudy", conns, 50.0, (ctx.rng.randrange(300, 600), 0), (5_000, 10_001), (1, 0), False
    )


def benign_websockets(ctx: Ctx) -> Outcome:
    vm, port = ctx.vm(role="web"), 443
    export = _export(ctx)
    end = ctx.start + ctx.duration()
    clients = ctx.rng.sample(ctx.topo.clients, min(len(ctx.topo.clients), ctx.rng.randrange(50, 300)))
    offices = [ctx.choice(t.office_ips) for t in ctx.rng.sample(ctx.topo.tenants, ctx.rng.randrange(1, 4))]
    plan = [(c, 1) for c in clients] + [(o, ctx.rng.randrange(10, 41)) for o in offices]
    events: list[Event] = []
    for client, n in plan:
        for _ in range(n):
            at = ctx.start + ctx.rng.randrange(0, max(1, (end - ctx.start) // 2))
            if ctx.rng.random() < 0.7:  # a websocket: upgrade, pings every 25 s, some messages
                stop = min(end, at + ctx.rng.randrange(60_000, 3_600_000))
                events += _held(ctx, client, vm, port, at, stop, (ctx.rng.randrange(900, 1500),
                                ctx.rng.randrange(3000, 5000)), (20_000, 30_000),
                                (ctx.rng.randrange(6, 200), ctx.rng.randrange(6, 2000)), 0, export)  # fmt: skip
            else:  # long polling: each poll is held 20-60 s, then answered and reissued
                while at < end and len(events) < 4 * _MAX_FLOWS:
                    dur = ctx.rng.randrange(20_000, 60_000)
                    fin = min(end, at + dur)
                    events.append(_conn(ctx, fin, client, vm.ip, vm, port, ctx.rng.randrange(600, 1200),
                                        ctx.rng.randrange(300, 4000), 6, 6, fin - at))  # fmt: skip
                    at = fin + ctx.rng.randrange(10, 300)
    return Outcome(vm.tenant, "ip", vm.ip, _cap(events), {"vm": vm.id, "clients": len(clients), "offices": offices,
                                                      "export": export})  # fmt: skip


def benign_idle_ssh(ctx: Ctx) -> Outcome:
    t = ctx.choice(ctx.topo.tenants)
    office = ctx.choice(t.office_ips)
    export = _export(ctx)
    end = ctx.start + ctx.duration()
    events: list[Event] = []
    for _ in range(ctx.rng.randrange(2, 9)):
        vm = ctx.choice(t.vms)
        at = ctx.start + ctx.rng.randrange(0, max(1, min(60_000, end - ctx.start)))  # before the run ends
        events += _held(ctx, office, vm, 22, at, end, (ctx.rng.randrange(3000, 6000), ctx.rng.randrange(4000, 9000)),
                        (59_000, 61_000), (ctx.rng.randrange(36, 100), ctx.rng.randrange(36, 100)), 0, export)  # fmt: skip
    return Outcome(t.id, "ip", office, _cap(events), {"export": export})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("brute_force.flow_guessing", flow_guessing, technique="T1110.001", span_s=(120, 900),
             summary="hydra/medusa/ncrack guess logins of one VM's SSH, RDP, FTP or MySQL: flows only"),
        spec("brute_force.flow_spray", flow_spray, technique="T1110.003", span_s=(300, 1800),
             summary="one address tries SSH or RDP logins on every VM of a tenant, a few each: flows only"),
        spec("brute_force.benign_ansible_run", benign_ansible_run, technique="T1110", span_s=(60, 600),
             summary="an Ansible control node opens a few large SSH sessions to each VM of its tenant"),
        spec("brute_force.benign_nagios_check_ssh", benign_nagios_check_ssh, technique="T1110",
             span_s=(600, 3600), summary="a monitoring VM reads every VM's SSH banner each minute"),
        spec("brute_force.benign_rsync_backup", benign_rsync_backup, technique="T1110", span_s=(300, 1800),
             summary="the backup VM pulls each VM over one long rsync-over-SSH session"),
        spec("dos.http_flood_hulk", http_flood_hulk, technique="T1499.002", span_s=(30, 90),
             summary="HULK: one address, a new connection per request, 50-200 per second, to a web VM"),
        spec("dos.http_flood_goldeneye", http_flood_goldeneye, technique="T1499.002", span_s=(30, 90),
             summary="GoldenEye: one address holds hundreds of keep-alive sockets full of requests"),
        spec("dos.http_flood_loic", http_flood_loic, technique="T1499.002", span_s=(30, 120),
             summary="LOIC HTTP from 3-10 addresses, one GET per connection (entity is the victim ip)"),
        spec("dos.benign_load_balancer", benign_load_balancer, technique="T1499.002", span_s=(300, 1800),
             summary="a load balancer's nodes health-check and proxy traffic to a web VM (entity victim ip)"),
        spec("dos.slowloris", slowloris, technique="T1499.001", span_s=(300, 1200),
             summary="slowloris: 150 sockets, a header line every 15 s, long and nearly empty flows"),
        spec("dos.slowhttptest", slowhttptest, technique="T1499.001", span_s=(240, 600),
             summary="slowhttptest -c 1000 -i 10 -r 200: slow headers or slow body"),
        spec("dos.rudy", rudy, technique="T1499.001", span_s=(300, 1200),
             summary="R.U.D.Y.: slow POST bodies, one byte every 5-10 s on 50-500 connections"),
        spec("dos.benign_websockets", benign_websockets, technique="T1499.001", span_s=(600, 3600),
             summary="web clients hold websockets and long polls, some behind one office NAT (entity victim)"),
        spec("dos.benign_idle_ssh", benign_idle_ssh, technique="T1499.001", span_s=(900, 3600),
             summary="a tenant's admins keep idle SSH sessions open from the office"),
    )
}  # fmt: skip
