"""Normal multi-tenant background traffic, generated one time slice at a time.

Each slice has its own RNG (seeded from the run seed and the slice index) and its own id stream,
so any slice can be regenerated alone, and memory stays bounded by one slice. The event count
of a slice follows ``events_per_s * diurnal_factor``; within a slice the mix is fixed by
``KIND_WEIGHTS``. Background never contains what a scenario labels as an attack: guests never
reach the management plane, cross-tenant flows only go between peered tenants, cross-tenant API
calls only touch resources covered by a registry share, and emulators only open their own disk.

Real rhythm (``ingest/simulator/rhythm.json``, made by ``python -m ingest.simulator.rhythm``): the
hour-of-day curve is the flow starts per UTC hour of the CTU-50 normal hosts (linear between hour
centres, mean 1 over a day), and the bytes, packets and duration of the outbound web, DNS, NTP,
east-west and inbound web flows are drawn from the quantiles of real benign flows of their
service class (CTU-13 scenario 6 background and CTU-50 normal hosts), with their real coupling.
Hand-made still: peered cross-tenant flows (the cross-tenant volume baseline the
``peer_volume_spike`` scenario multiplies), the metrics scraper (a fixed-size scrape), rejected
internet probes, and every non-flow kind.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

from ingest.schema import Event
from ingest.simulator.factory import EventMaker
from ingest.simulator.rhythm import load_rhythm
from ingest.simulator.topology import (
    BASTION_IP,
    EMULATOR_EXE,
    MONITOR_IP,
    Topology,
    VmInfo,
    qemu_cmdline,
    random_public_ip,
)
from ingest.simulator.truth import TruthEntity, TruthRecord

__all__ = [
    "BACKGROUND_PROBES",
    "DEMO_GRID_MS",
    "HOURLY_WEIGHTS",
    "KIND_WEIGHTS",
    "RHYTHM",
    "Background",
    "Picker",
    "daemon_event",
    "diurnal_factor",
    "ephemeral_port",
    "lognorm",
    "mean_rate_centre_ms",
    "mean_rate_slice_start_ms",
    "object_key",
    "peered_flow",
    "qemu_event",
    "repeatable_slice",
    "web_flow",
]

RHYTHM: Final = load_rhythm()
HOURLY_WEIGHTS: Final = RHYTHM.hourly  # UTC hours 0..23, mean 1
KIND_WEIGHTS: Final = (("flow", 0.62), ("process", 0.22), ("audit", 0.10), ("auth", 0.06))
_DAY_MS: Final = 86_400_000
_HOUR_MS: Final = 3_600_000
_WEB_DRAW: Final = RHYTHM.draws["web"]
_DNS_DRAW: Final = RHYTHM.draws["dns"]
_NTP_DRAW: Final = RHYTHM.draws["ntp"]
_TCP_DRAW: Final = RHYTHM.draws["other_tcp"]
_T = TypeVar("_T")
Gen = Callable[[random.Random, int, EventMaker], Event]


def diurnal_factor(ts_ms: int) -> float:
    """Rate multiplier at ``ts_ms``: the real hour-of-day curve (``HOURLY_WEIGHTS``, linear between
    hour centres), 1 on average over a day."""
    return RHYTHM.factor((ts_ms % _DAY_MS) / 3_600_000)


@functools.lru_cache(maxsize=64)
def mean_rate_centre_ms(duration_ms: int) -> int:
    """Time of day (ms after 00:00 UTC) on which a window of ``duration_ms`` centred there holds
    the day's mean volume (``Rhythm.mean_window_centre``)."""
    return round(RHYTHM.mean_window_centre(duration_ms / _HOUR_MS) * _HOUR_MS) % _DAY_MS


def mean_rate_slice_start_ms(now_ms: int, duration_ms: int) -> int:
    """Start of the last slice of ``duration_ms`` centred on ``mean_rate_centre_ms(duration_ms)``
    that has ended by ``now_ms``.

    Such a slice holds the day's mean number
    of events whatever the hour it is simulated at: tests and benchmarks that need a known volume
    use it instead of "the last N minutes", whose volume follows the clock (up to ~25x apart)."""
    start = now_ms // _DAY_MS * _DAY_MS + mean_rate_centre_ms(duration_ms) - duration_ms // 2
    if start + duration_ms > now_ms:
        start -= _DAY_MS
    return start


DEMO_GRID_MS: Final = 3_600_000
"""The longest detector window a demo can fill (an hour, ``port_scan.internet_probes``): a run
shifted by a multiple of it meets the same windows. ``c2.beacon``'s 6-hour windows never alert in
a demo of minutes: a beacon must span an hour of its window before it is scored."""


def repeatable_slice(now_ms: int, duration_ms: int) -> tuple[int, int]:
    """(start_ms, diurnal_shift_ms) of a run that ends shortly before ``now_ms`` and is the same run,
    translated in time, whenever it is made: its start is on the ``DEMO_GRID_MS`` grid, so every
    epoch-aligned detector window cuts it at the same offsets, and its simulated time of day is the
    mean-rate slice (``mean_rate_slice_start_ms``), so the background's volume does not follow the
    clock."""
    start = (now_ms - duration_ms) // DEMO_GRID_MS * DEMO_GRID_MS
    shift = (mean_rate_centre_ms(duration_ms) - duration_ms // 2 - start) % _DAY_MS
    return start, shift


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson count: exact (Knuth) below 30, the normal approximation above (a quiet night's
    slices hold a few events, where a clipped normal would add a fifth)."""
    if mean <= 0:
        return 0
    if mean >= 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, n, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def ephemeral_port(rng: random.Random) -> int:
    return 32768 + int(rng.random() * 28232)


class Picker(Generic[_T]):
    """Weighted choice with one ``random()`` call."""

    __slots__ = ("_cum", "_items", "_total")

    def __init__(self, pairs: Sequence[tuple[_T, float]]) -> None:
        self._items = [p[0] for p in pairs]
        self._cum = list(itertools.accumulate(p[1] for p in pairs))
        self._total = self._cum[-1]

    def pick(self, rng: random.Random) -> _T:
        return self._items[bisect.bisect_right(self._cum, rng.random() * self._total)]


def lognorm(rng: random.Random, median: float, sigma: float) -> int:
    """A positive int drawn log-normally around ``median``."""
    return max(1, int(median * math.exp(sigma * rng.gauss())))


def _pick(rng: random.Random, seq: Sequence[_T]) -> _T:
    return seq[int(rng.random() * len(seq))]


def _between(rng: random.Random, lo: int, hi: int) -> int:
    """Like ``randrange(lo, hi)`` with one ``random()`` call (the hot path calls it per event)."""
    return lo + int(rng.random() * (hi - lo))


_EAST_WEST_PORTS: Final = {
    "web": (443, 8080),
    "db": (5432, 3306, 6379),
    "app": (8080, 9090, 8443),
    "backup": (873, 22),
}
_HTTP_PORTS: Final = frozenset({443, 8080, 8443, 9090})
_QEMU_CALLS: Final = (
    (("ioctl", "/dev/kvm"), 0.30),
    (("futex", None), 0.15),
    (("ppoll", None), 0.10),
    (("pread64", "disk"), 0.12),
    (("pwrite64", "disk"), 0.10),
    (("openat", "disk"), 0.04),
    (("ioctl", "/dev/net/tun"), 0.06),
    (("write", "/dev/net/tun"), 0.04),
    (("mmap", None), 0.05),
    (("ioctl", "/dev/vhost-net"), 0.04),
)
_DAEMON_CALLS: Final = (
    (("openat", "xml"), 0.25),
    (("connect", "sock"), 0.25),
    (("futex", None), 0.25),
    (("ppoll", None), 0.15),
    (("openat", "/dev/kvm"), 0.10),
)
_AUDIT_OWN: Final = (
    ("storage.GetObject", 0.35),
    ("storage.PutObject", 0.20),
    ("storage.ListBucket", 0.10),
    ("compute.DescribeInstances", 0.10),
    ("compute.StartInstance", 0.02),
    ("compute.StopInstance", 0.02),
    ("compute.RebootInstance", 0.01),
    ("snapshot.Create", 0.05),
    ("snapshot.Describe", 0.05),
    ("image.Describe", 0.03),
)
_KEY_DIRS: Final = ("reports", "exports", "logs", "uploads", "db-dumps", "assets")
_KEY_EXT: Final = ("parquet", "json.gz", "csv", "png", "tar.zst")


def object_key(rng: random.Random) -> str:
    d = _pick(rng, _KEY_DIRS)
    return f"{d}/{_between(rng, 0, 1_000_000):06d}.{_pick(rng, _KEY_EXT)}"


class Background:
    def __init__(self, topo: Topology, seed: int, diurnal_shift_ms: int = 0) -> None:
        self.topo = topo
        self.seed = seed
        self.diurnal_shift_ms = diurnal_shift_ms
        self._vms = topo.vms
        self._web = [v for v in topo.vms if v.role == "web"] or topo.vms
        self._cmd = {v.id: qemu_cmdline(v) for v in topo.vms}
        self._others = {
            v.id: [w for w in topo.tenant_by_id[v.tenant].vms if w.id != v.id] or [v] for v in topo.vms
        }
        flows: list[tuple[Gen, float]] = [
            (self._outbound, 0.35),
            (self._dns, 0.15),
            (self._ntp, 0.03),
            (self._east_west, 0.22),
            (self._inbound_web, 0.15),
            (self._mgmt_monitor, 0.02),
            (self._internet_noise, 0.02),
        ]
        if topo.peerings:
            flows.append((self._peered, 0.06))
        self._flow = Picker(flows)
        self._kind = Picker(
            [
                (self._flow_event, KIND_WEIGHTS[0][1]),
                (self._process, KIND_WEIGHTS[1][1]),
                (self._audit, KIND_WEIGHTS[2][1]),
                (self._auth, KIND_WEIGHTS[3][1]),
            ]
        )
        self._qemu = Picker(_QEMU_CALLS)
        self._daemon = Picker(_DAEMON_CALLS)
        self._audit_action = Picker(_AUDIT_OWN)

    def slice(self, index: int, start_ms: int, end_ms: int, events_per_s: float) -> list[Event]:
        """Background events with ``start_ms <= ts < end_ms``, sorted by ts."""
        rng = random.Random(f"{self.seed}:bg:{index}")
        make = EventMaker(f"{self.seed}:bg:{index}")
        mid = (start_ms + end_ms) // 2 + self.diurnal_shift_ms
        mean = events_per_s * (end_ms - start_ms) / 1000 * diurnal_factor(mid)
        n = _poisson(rng, mean)
        width = end_ms - start_ms
        stamps = sorted(start_ms + int(rng.random() * width) for _ in range(n))
        kind = self._kind
        return [kind.pick(rng)(rng, ts, make) for ts in stamps]

    # --- flows ------------------------------------------------------------------------------------
    def _vm(self, rng: random.Random) -> VmInfo:
        return _pick(rng, self._vms)

    def _flow_event(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        return self._flow.pick(rng)(rng, ts, make)

    def _outbound(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        vm = self._vm(rng)
        dst = _pick(rng, self.topo.web_services)
        out, inn, p_out, p_in, dur = _WEB_DRAW(rng)
        return make.flow(
            ts, vm.ip, dst, src_port=ephemeral_port(rng), dst_port=443 if rng.random() < 0.9 else 80,
            bytes_out=out, bytes_in=inn, packets_out=p_out, packets_in=p_in, duration_ms=dur,
            tenant=vm.tenant, host=vm.host, vm=vm.id,
        )  # fmt: skip

    def _dns(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        vm = self._vm(rng)
        if rng.random() < 0.7:
            dst = self.topo.tenant_by_id[vm.tenant].resolver
        else:
            dst = _pick(rng, self.topo.dns_servers)
        out, inn, p_out, p_in, dur = _DNS_DRAW(rng)
        return make.flow(
            ts, vm.ip, dst, src_port=ephemeral_port(rng), dst_port=53, proto="udp",
            bytes_out=out, bytes_in=inn, packets_out=p_out, packets_in=p_in,
            duration_ms=dur, tenant=vm.tenant, host=vm.host, vm=vm.id,
        )  # fmt: skip

    def _ntp(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        vm = self._vm(rng)
        dst = _pick(rng, self.topo.ntp_servers)
        out, inn, p_out, p_in, dur = _NTP_DRAW(rng)
        return make.flow(
            ts, vm.ip, dst, src_port=123, dst_port=123, proto="udp", bytes_out=out, bytes_in=inn,
            packets_out=p_out, packets_in=p_in, duration_ms=dur,
            tenant=vm.tenant, host=vm.host, vm=vm.id,
        )  # fmt: skip

    def _east_west(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        src = self._vm(rng)
        peers = self._others[src.id]
        dst = _pick(rng, peers)
        port = _pick(rng, _EAST_WEST_PORTS[dst.role])
        draw = _WEB_DRAW if port in _HTTP_PORTS else _TCP_DRAW
        out, inn, p_out, p_in, dur = draw(rng)
        return make.flow(
            ts, src.ip, dst.ip, src_port=ephemeral_port(rng), dst_port=port,
            bytes_out=out, bytes_in=inn, packets_out=p_out, packets_in=p_in,
            duration_ms=dur, tenant=src.tenant, host=src.host, vm=src.id,
        )  # fmt: skip

    def _peered(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        a, b = _pick(rng, self.topo.peerings)
        if rng.random() < 0.5:
            a, b = b, a
        src_vms, dst_vms = self.topo.tenant_by_id[a].vms, self.topo.tenant_by_id[b].vms
        src, dst = _pick(rng, src_vms), _pick(rng, dst_vms)
        return peered_flow(rng, ts, make, src, dst)

    def _inbound_web(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        vm = _pick(rng, self._web)
        client = _pick(rng, self.topo.clients)
        return web_flow(rng, ts, make, client, vm)

    def _mgmt_monitor(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        host = _pick(rng, self.topo.hosts)
        return make.flow(
            ts, MONITOR_IP, host.mgmt_ip, src_port=ephemeral_port(rng), dst_port=9100,
            bytes_out=lognorm(rng, 300, 0.3), bytes_in=lognorm(rng, 24000, 0.3), packets_out=4,
            packets_in=20, duration_ms=lognorm(rng, 40, 0.5), host=host.id,
        )  # fmt: skip

    def _internet_noise(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        vm = self._vm(rng)
        return make.flow(
            ts, random_public_ip(rng), vm.ip, src_port=ephemeral_port(rng),
            dst_port=(23, 445, 3389, 22, 5900, 8080)[rng.randrange(6)], bytes_out=60, packets_out=1,
            action="reject", tenant=vm.tenant, host=vm.host, vm=vm.id,
        )  # fmt: skip

    # --- host processes ---------------------------------------------------------------------------
    def _process(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        if rng.random() < 0.88:
            vm = self._vm(rng)
            return qemu_event(self.topo, ts, make, vm, *self._qemu.pick(rng), cmdline=self._cmd[vm.id])
        host = _pick(rng, self.topo.hosts)
        syscall, what = self._daemon.pick(rng)
        path = what
        if what == "xml":
            on_host = self.topo.vms_on_host(host.id)
            path = f"/etc/libvirt/qemu/{_pick(rng, on_host).id}.xml" if on_host else None
        elif what == "sock":
            path = f"/run/libvirt/{host.daemon.rsplit('/', 1)[1].replace('libvirtd', 'libvirt')}-sock"
        return daemon_event(self.topo, ts, make, host.id, syscall, path)

    # --- control plane ----------------------------------------------------------------------------
    def _audit(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        shares = self.topo.shares
        if shares and rng.random() < 0.08:
            owner, grantee, pattern = _pick(rng, shares)
            g = self.topo.tenant_by_id[grantee]
            user = _pick(rng, g.users)
            if pattern.endswith("*"):
                action, resource = "storage.GetObject", pattern[:-1] + object_key(rng)
            else:
                action, resource = ("snapshot.Describe", "snapshot.Copy")[rng.randrange(2)], pattern
            return make.audit(
                ts, g.principal(user), action, resource, principal_tenant=grantee, resource_tenant=owner,
                src_ip=_pick(rng, g.office_ips),
            )  # fmt: skip
        t = _pick(rng, self.topo.tenants)
        user = _pick(rng, t.users)
        action = self._audit_action.pick(rng)
        service = action.split(".", 1)[0]
        if service == "storage":
            bucket = _pick(rng, t.buckets)
            key = "" if action == "storage.ListBucket" else "/" + object_key(rng)
            resource = f"storage/{t.id}/{bucket}{key}"
        elif service == "compute":
            resource = f"compute/{t.id}/{_pick(rng, t.vms).id}"
        elif action == "snapshot.Create":
            resource = f"snapshot/{t.id}/snap-{rng.getrandbits(32):08x}"
        elif service == "snapshot":
            resource = f"snapshot/{t.id}/{_pick(rng, t.snapshots)}"
        else:
            resource = f"image/{t.id}/{_pick(rng, t.images)}"
        src_ip = _pick(rng, t.office_ips) if rng.random() < 0.8 else _pick(rng, t.vms).ip
        return make.audit(
            ts, t.principal(user), action, resource, principal_tenant=t.id, resource_tenant=t.id,
            src_ip=src_ip, failed=rng.random() < 0.02,
        )  # fmt: skip

    # --- logins -----------------------------------------------------------------------------------
    def _auth(self, rng: random.Random, ts: int, make: EventMaker) -> Event:
        r = rng.random()
        if r < 0.005:
            host = _pick(rng, self.topo.hosts)
            return make.auth(
                ts, "ops-admin", BASTION_IP, failed=False, method="publickey", tenant=None,
                host=host.id, vm=None,
            )  # fmt: skip
        vm = self._vm(rng)
        if r < 0.02:  # internet background radiation: one guess from a throwaway address
            return make.auth(
                ts, ("root", "admin", "test", "oracle")[rng.randrange(4)], random_public_ip(rng),
                failed=True, tenant=vm.tenant, host=vm.host, vm=vm.id,
            )  # fmt: skip
        t = self.topo.tenant_by_id[vm.tenant]
        users = ("ubuntu", "deploy", *t.users)
        src = _pick(rng, t.office_ips) if rng.random() < 0.7 else _pick(rng, t.vms).ip
        pubkey = rng.random() < 0.8
        return make.auth(
            ts, _pick(rng, users), src, failed=(not pubkey) and rng.random() < 0.05,
            method="publickey" if pubkey else "password", tenant=vm.tenant, host=vm.host, vm=vm.id,
        )  # fmt: skip


# --- shared builders (also used by scenarios and their look-alikes) --------------------------------
def peered_flow(
    rng: random.Random, ts: int, make: EventMaker, src: VmInfo, dst: VmInfo, scale: float = 1.0
) -> Event:
    """A flow between VMs of two peered tenants; ``scale`` multiplies the baseline volume."""
    out, inn = int(lognorm(rng, 20000, 0.8) * scale), lognorm(rng, 15000, 0.8)
    return make.flow(
        ts, src.ip, dst.ip, src_port=ephemeral_port(rng), dst_port=(443, 8443)[rng.randrange(2)],
        bytes_out=out, bytes_in=inn, packets_out=out // 1300 + 2, packets_in=inn // 1300 + 2,
        duration_ms=lognorm(rng, 300 * max(1.0, scale**0.5), 0.8), tenant=src.tenant, host=src.host,
        vm=src.id,
    )  # fmt: skip


def web_flow(rng: random.Random, ts: int, make: EventMaker, client: str, vm: VmInfo) -> Event:
    """An internet client's HTTPS connection to a tenant web VM (logged on the VM's side), sized
    like real web flows (``rhythm.json``, class web)."""
    out, inn, p_out, p_in, dur = _WEB_DRAW(rng)
    return make.flow(
        ts, client, vm.ip, src_port=ephemeral_port(rng), dst_port=443, bytes_out=out, bytes_in=inn,
        packets_out=p_out, packets_in=p_in, duration_ms=dur, tenant=vm.tenant, host=vm.host, vm=vm.id,
    )  # fmt: skip


def qemu_event(
    topo: Topology,
    ts: int,
    make: EventMaker,
    vm: VmInfo,
    syscall: str,
    path: str | None,
    *,
    cmdline: str | None = None,
    failed: bool = False,
) -> Event:
    """One syscall of ``vm``'s emulator; ``path="disk"`` means the VM's own disk image."""
    host = topo.host_by_id[vm.host]
    return make.process(
        ts, EMULATOR_EXE, syscall, host=vm.host, pid=vm.qemu_pid, ppid=host.daemon_pid,
        parent_exe=host.daemon, cmdline=cmdline or qemu_cmdline(vm), uid=107,
        path=vm.disk if path == "disk" else path, failed=failed, tenant=vm.tenant, vm=vm.id,
    )  # fmt: skip


def daemon_event(
    topo: Topology, ts: int, make: EventMaker, host_id: str, syscall: str, path: str | None
) -> Event:
    """One syscall of the host's libvirt daemon (libvirtd or virtqemud); host-level, no tenant."""
    host = topo.host_by_id[host_id]
    return make.process(
        ts, host.daemon, syscall, host=host.id, pid=host.daemon_pid, ppid=1,
        parent_exe="/usr/lib/systemd/systemd", cmdline=f"{host.daemon} --timeout 120", uid=0, path=path,
    )  # fmt: skip


BACKGROUND_PROBES: Final = "port_scan.background_internet_probes"


def background_truth(topo: Topology, start_ms: int, end_ms: int, events_per_s: float) -> list[TruthRecord]:
    """The background's own labelled behaviour, as context records (``truth``): every VM takes
    ``_internet_noise``'s refused single probes from throwaway internet addresses the whole run."""
    if events_per_s <= 0 or end_ms <= start_ms:
        return []
    return [
        TruthRecord(
            scenario=BACKGROUND_PROBES,
            category="port_scan",
            tenant=vm.tenant,
            entity=TruthEntity(type="vm", id=vm.id),
            start=start_ms,
            end=end_ms - 1,
            event_ids=[],
            benign=False,
            context=True,
            detail={"what": "single refused probes from random internet addresses (background)"},
        )
        for vm in topo.vms
    ]
