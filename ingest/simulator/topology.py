"""The simulated cloud: tenants, VMs on shared hypervisors, peerings, shares and address pools.

``build_topology`` is a pure function of its arguments and seed. The ``TenantRegistry`` it carries
is built with ``TenantRegistry.from_dict`` from the same dict that ``registry.dump`` writes, so the
file on disk and the registry used to generate events cannot disagree.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any, Final

from ingest.tenants import TenantRegistry

__all__ = [
    "BASTION_IP",
    "DISK_DIR",
    "EMULATOR_EXE",
    "INDUSTRIES",
    "MANAGEMENT_CIDR",
    "MONITOR_IP",
    "HostInfo",
    "TenantInfo",
    "Topology",
    "VmInfo",
    "build_topology",
    "qemu_cmdline",
    "random_public_ip",
]

MANAGEMENT_CIDR: Final = "172.31.0.0/16"
BASTION_IP: Final = "172.31.255.10"  # operators' jump host on the management plane
MONITOR_IP: Final = "172.31.255.20"  # metrics scraper on the management plane
DISK_DIR: Final = "/var/lib/libvirt/images"
EMULATOR_EXE: Final = "/usr/bin/qemu-system-x86_64"
INDUSTRIES: Final = (
    "telecom",
    "internet",
    "finance",
    "retail",
    "health",
    "gov",
    "media",
    "energy",
    "logistics",
    "education",
)
_SUFFIX: Final = {
    "telecom": "Telecom",
    "internet": "Networks",
    "finance": "Bank",
    "retail": "Retail",
    "health": "Health",
    "gov": "Agency",
    "media": "Media",
    "energy": "Energy",
    "logistics": "Logistics",
    "education": "University",
}
_STEMS: Final = (
    "Nordwave", "Kitefish", "Bluepine", "Crestline", "Halcyon", "Ironbark", "Juniper", "Lumen",
    "Meridian", "Northgate", "Orchid", "Pelican", "Quarry", "Redfern", "Silverleaf", "Tidewater",
    "Umber", "Vantage", "Westmark", "Yarrow", "Zephyr", "Amberly", "Brightwater", "Cobalt",
)  # fmt: skip
_PEOPLE: Final = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "nia", "oscar", "peggy", "rupert", "sybil", "trent", "ursula", "victor", "wendy",
)  # fmt: skip
_DAEMONS: Final = ("/usr/sbin/libvirtd", "/usr/sbin/virtqemud")
_PRIVATE_FIRST: Final = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203})


@dataclass(frozen=True)
class VmInfo:
    id: str
    tenant: str
    host: str
    ip: str
    disk: str
    role: str  # web, db, app, backup (simulator-only; not in the registry)
    qemu_pid: int


@dataclass(frozen=True)
class HostInfo:
    id: str
    mgmt_ip: str
    daemon: str  # /usr/sbin/libvirtd or /usr/sbin/virtqemud
    daemon_pid: int


@dataclass(frozen=True)
class TenantInfo:
    id: str
    slug: str
    name: str
    industry: str
    net: str  # "10.N": the first two octets of the tenant's /16
    vms: tuple[VmInfo, ...]
    users: tuple[str, ...]
    buckets: tuple[str, ...]
    snapshots: tuple[str, ...]
    images: tuple[str, ...]
    office_ips: tuple[str, ...]

    @property
    def cidr(self) -> str:
        return f"{self.net}.0.0/16"

    @property
    def resolver(self) -> str:
        return f"{self.net}.0.2"

    def principal(self, user: str) -> str:
        return f"iam::{self.id}:user/{user}"


@dataclass
class Topology:
    registry: TenantRegistry
    tenants: list[TenantInfo]
    hosts: list[HostInfo]
    vms: list[VmInfo]
    peerings: list[tuple[str, str]]
    shares: list[tuple[str, str, str]]  # (owner, grantee, resource pattern)
    web_services: tuple[str, ...]
    ntp_servers: tuple[str, ...]
    dns_servers: tuple[str, ...]
    clients: tuple[str, ...]
    mining_pools: tuple[str, ...]
    tenant_by_id: dict[str, TenantInfo] = field(init=False)
    vm_by_id: dict[str, VmInfo] = field(init=False)
    host_by_id: dict[str, HostInfo] = field(init=False)

    def __post_init__(self) -> None:
        self.tenant_by_id = {t.id: t for t in self.tenants}
        self.vm_by_id = {v.id: v for v in self.vms}
        self.host_by_id = {h.id: h for h in self.hosts}

    def peers_of(self, tenant: str) -> list[str]:
        return [b if a == tenant else a for a, b in self.peerings if tenant in (a, b)]

    def unpeered_of(self, tenant: str) -> list[str]:
        peers = self.peers_of(tenant)
        return [t.id for t in self.tenants if t.id != tenant and t.id not in peers]

    def vms_on_host(self, host: str) -> list[VmInfo]:
        return [v for v in self.vms if v.host == host]

    def backup_target(self, tenant: str) -> VmInfo:
        vms = self.tenant_by_id[tenant].vms
        return next((v for v in vms if v.role == "backup"), vms[-1])


def qemu_cmdline(vm: VmInfo) -> str:
    """The emulator command line libvirt would start for ``vm``: names the guest and its own disk."""
    return (
        f"{EMULATOR_EXE} -name guest={vm.id},debug-threads=on -S -machine pc-q35-8.2,accel=kvm"
        f" -cpu host -m 4096 -smp 2 -uuid {vm.qemu_pid:08x}-5a1d-4c3e-9f00-{vm.id.encode().hex()[:12]}"
        f" -drive file={vm.disk},format=qcow2,if=none,id=drive-virtio-disk0"
        " -device virtio-blk-pci,drive=drive-virtio-disk0"
        " -netdev tap,fd=33,vhost=on,vhostfd=35,id=hostnet0 -device virtio-net-pci,netdev=hostnet0"
        " -chardev socket,id=charmonitor,fd=30,server=on,wait=off"
    )


def random_public_ip(rng: random.Random) -> str:
    """A globally routable-looking IPv4 address (never private, management or tenant space)."""
    while True:
        a = rng.randrange(1, 224)
        if a in _PRIVATE_FIRST:
            continue
        addr = f"{a}.{rng.randrange(0, 256)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
        if ipaddress.ip_address(addr).is_global:
            return addr


def _ip_pool(rng: random.Random, n: int, taken: set[str]) -> tuple[str, ...]:
    out: list[str] = []
    while len(out) < n:
        ip = random_public_ip(rng)
        if ip not in taken:
            taken.add(ip)
            out.append(ip)
    return tuple(out)


def _tenant_names(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """(slug, display name, industry) for n tenants; industries cycle so that all appear."""
    stems = list(_STEMS)
    rng.shuffle(stems)
    industries = list(INDUSTRIES[2:])
    rng.shuffle(industries)
    order = [*INDUSTRIES[:2], *industries]  # telecom and internet firms are the main users
    out = []
    for i in range(n):
        stem = stems[i % len(stems)]
        rnd = i // len(stems)
        slug = stem.lower() + (str(rnd + 1) if rnd else "")
        industry = order[i % len(order)]
        out.append((slug, f"{stem} {_SUFFIX[industry]}" + (f" {rnd + 1}" if rnd else ""), industry))
    return out


def build_topology(seed: int, tenants: int, hosts: int, vms_per_tenant: int) -> Topology:
    if not 1 <= tenants <= 250:
        raise ValueError(f"tenants must be within 1..250 (one 10.N.0.0/16 each), got {tenants}")
    if hosts < 1 or vms_per_tenant < 1:
        raise ValueError("hosts and vms_per_tenant must be at least 1")
    rng = random.Random(f"{seed}:topology")
    mgmt_base = int(ipaddress.ip_address("172.31.0.10"))
    host_infos = [
        HostInfo(
            id=f"hv-{i + 1:02d}",
            mgmt_ip=str(ipaddress.ip_address(mgmt_base + i)),
            daemon=_DAEMONS[rng.randrange(len(_DAEMONS))],
            daemon_pid=rng.randrange(800, 1900),
        )
        for i in range(hosts)
    ]
    load = dict.fromkeys((h.id for h in host_infos), 0)
    per_tenant_hosts = min(hosts, 2)
    taken: set[str] = set()
    pids = rng.sample(range(2000, 60000), tenants * vms_per_tenant)
    infos: list[TenantInfo] = []
    all_vms: list[VmInfo] = []
    for i, (slug, name, industry) in enumerate(_tenant_names(rng, tenants)):
        tid = f"t-{slug}"
        chosen = sorted(load, key=lambda h: (load[h], rng.random()))[:per_tenant_hosts]
        chosen.sort()
        vms = []
        for k in range(vms_per_tenant):
            host = chosen[k % len(chosen)]
            load[host] += 1
            vm_id = f"vm-{slug}-{k + 1:02d}"
            role = "web" if k == 0 else "db" if k == 1 else "backup" if k == vms_per_tenant - 1 else "app"
            vms.append(
                VmInfo(
                    id=vm_id,
                    tenant=tid,
                    host=host,
                    ip=f"10.{i + 1}.{1 + k // 200}.{10 + k % 200}",
                    disk=f"{DISK_DIR}/{vm_id}.qcow2",
                    role=role,
                    qemu_pid=pids[len(all_vms) + k],
                )
            )
        all_vms.extend(vms)
        people = rng.sample(_PEOPLE, 3)
        infos.append(
            TenantInfo(
                id=tid,
                slug=slug,
                name=name,
                industry=industry,
                net=f"10.{i + 1}",
                vms=tuple(vms),
                users=tuple(people),
                buckets=(f"{slug}-data", f"{slug}-logs", f"{slug}-backup", f"{slug}-shared"),
                snapshots=tuple(f"snap-{rng.getrandbits(32):08x}" for _ in range(4)),
                images=tuple(f"img-{rng.getrandbits(32):08x}" for _ in range(2)),
                office_ips=_ip_pool(rng, 2, taken),
            )
        )
    ids = [t.id for t in infos]
    pairs = [(a, b) for j, a in enumerate(ids) for b in ids[j + 1 :]]
    rng.shuffle(pairs)
    # Peer about a third of the tenants, but always leave unpeered pairs for cross-tenant scenarios.
    n_peer = min(max(1, tenants // 3), max(0, len(pairs) - 1))
    peerings = sorted(pairs[:n_peer])
    shares: list[tuple[str, str, str]] = []
    for j, (owner, grantee) in enumerate(pairs[n_peer : n_peer + max(1, tenants // 3)]):
        if j % 2:
            owner, grantee = grantee, owner
        o = infos[ids.index(owner)]
        shares.append((owner, grantee, f"storage/{owner}/{o.buckets[3]}/*"))
        shares.append((owner, grantee, f"snapshot/{owner}/{o.snapshots[0]}"))
    registry = TenantRegistry.from_dict(
        _registry_dict(infos, host_infos, peerings, shares), source="<simulator>"
    )
    return Topology(
        registry=registry,
        tenants=infos,
        hosts=host_infos,
        vms=all_vms,
        peerings=peerings,
        shares=shares,
        web_services=_ip_pool(rng, 300, taken),
        ntp_servers=_ip_pool(rng, 4, taken),
        dns_servers=("8.8.8.8", "1.1.1.1", "9.9.9.9"),
        clients=_ip_pool(rng, 3000, taken),
        mining_pools=_ip_pool(rng, 6, taken),
    )


def _registry_dict(
    tenants: list[TenantInfo],
    hosts: list[HostInfo],
    peerings: list[tuple[str, str]],
    shares: list[tuple[str, str, str]],
) -> dict[str, Any]:
    return {
        "management_cidrs": [MANAGEMENT_CIDR],
        "hosts": [{"id": h.id, "mgmt_ip": h.mgmt_ip} for h in hosts],
        "tenants": [
            {
                "id": t.id,
                "name": t.name,
                "industry": t.industry,
                "cidrs": [t.cidr],
                "hosts": sorted({v.host for v in t.vms}),
                "vms": [{"id": v.id, "host": v.host, "ip": v.ip, "disk": v.disk} for v in t.vms],
                "peerings": [b for a, b in peerings if a == t.id],
                "shares": [{"resource": r, "grantee": g} for o, g, r in shares if o == t.id],
            }
            for t in tenants
        ],
    }
