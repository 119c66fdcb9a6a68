"""The tenant registry of DESIGN.md: who owns which addresses, VMs and hosts, and who may talk to whom.

YAML layout (loaded with ``yaml.safe_load``)::

    management_cidrs: [172.31.0.0/16]      # hypervisor management plane (guests must never reach it)
    hosts:
      - {id: hv-01, mgmt_ip: 172.31.0.1}
    tenants:
      - id: t-acme
        name: Acme Telecom
        industry: telecom
        cidrs: [10.1.0.0/16]
        hosts: [hv-01, hv-02]
        vms:
          - {id: vm-acme-01, host: hv-01, ip: 10.1.0.5, disk: /var/lib/libvirt/images/vm-acme-01.qcow2}
        peerings: [t-beta]                 # symmetric: either side may list it
        shares:                            # this tenant's resources granted to another tenant
          - {resource: "snapshot/snap-1", grantee: t-beta}   # trailing * matches a prefix

        accounts: ["123456789012"]         # optional: cloud account ids this tenant owns
        criticality: high                  # optional: low|medium|high|critical (default medium)
    provider_services:                     # optional: the provider's own service endpoints
      - {name: object-storage, cidrs: [52.216.0.0/15, 3.5.0.0/19]}
      - {name: instance-metadata, cidrs: [169.254.169.254/32, "fd00:ec2::254/128"], ports: [80]}
      - {name: dns, cidrs: [169.254.169.253/32, 10.1.0.2/32], ports: [53]}
      - {name: ntp, cidrs: [169.254.169.123/32], ports: [123]}

``provider_services`` lists the address ranges of the provider's own services that tenant VMs talk
to as a matter of course: object storage, the container registry, instance metadata, DNS
resolvers, NTP, package and update mirrors, the interface endpoints of these services inside a
tenant's subnet. Each entry has a unique ``name``, a non-empty list of ``cidrs`` (IPv4 or IPv6)
and optionally ``ports`` (destination ports 0-65535; absent means every port). Flows *to* them
are not exfiltration and not floods: a VM writing 10 GB of backups to object storage, a fleet of
VMs resolving through the VPC resolver (``exfiltration.external_upload``, ``dos.source_flood``
and ``dos.distributed_flood`` skip them and count the skips under ``provider_service``). The
ranges live in their own table, so a service address may sit inside a tenant's CIDR (AWS's VPC
resolver is the VPC base + 2, an interface endpoint has an address of the tenant's subnet); two
services may not overlap (ranges of one service are merged). ``service_of_ip(ip)`` gives the
service an address belongs to, ``provider_service(ip, port)`` the service when the port is one
it serves too.

Filling the entry for AWS (no network fetch in this code): AWS publishes its ranges at
https://ip-ranges.amazonaws.com/ip-ranges.json (documented in "AWS IP address ranges", AWS
General Reference), ``prefixes[]`` with ``ip_prefix``, ``region``, ``service`` and
``ipv6_prefixes[]`` with ``ipv6_prefix``. An operator downloads it, checks its ``syncToken`` /
``createDate`` and copies the service's prefixes for the regions the tenants run in, e.g.
``jq -r '.prefixes[] | select(.service=="S3" and .region=="eu-west-1") | .ip_prefix'`` (and the
same over ``ipv6_prefixes``), then re-runs it when AWS's SNS topic ``AmazonIpSpaceChanged``
announces a change; the watcher reloads the file. List the service-specific entries only: never
``AMAZON`` (the superset of every range), ``EC2`` (every customer's instances, an attacker's
included) or ``CLOUDFRONT`` (any customer's distribution): their traffic is not the provider's.
S3 ranges also serve ECR image layers and the Amazon Linux repositories. The link-local
endpoints are fixed by the EC2 documentation: instance metadata 169.254.169.254 and fd00:ec2::254
(port 80), the Amazon DNS server 169.254.169.253 / fd00:ec2::253 and the VPC base + 2 (port 53),
the Amazon Time Sync Service 169.254.169.123 / fd00:ec2::123 (port 123). Caveat: storage is
shared by every customer of the provider, so an upload to an attacker's own bucket in the same
ranges is excused on the flow side too; the control plane sees it (a ``PutObject`` to a bucket of
an account outside the registry: ``cross_tenant.foreign_resource_access``).

IP lookup is a binary search over sorted, non-overlapping integer ranges (IPv4 and IPv6). IPv4 text
is converted with ``socket.inet_pton`` (strict dotted quad, no leading zeros) instead of the slow
``ipaddress`` module, and results are memoised in a bounded per-registry cache (the registry is
immutable once built; a reload builds a new one, so the cache never goes stale). IPv4-mapped IPv6
addresses (``::ffff:10.1.0.5``) are looked up as their IPv4 address.
``RegistryWatcher`` reloads the file when its modification time changes, so a running job
picks up new tenants, peerings and shares without a restart.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import os
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = [
    "CRITICALITIES",
    "DEFAULT_CRITICALITY",
    "MAX_REGISTRY_BYTES",
    "VM",
    "Host",
    "ProviderService",
    "RegistryError",
    "RegistryWatcher",
    "Share",
    "Tenant",
    "TenantRegistry",
]

MAX_REGISTRY_BYTES: Final = 16 * 1024 * 1024
CRITICALITIES: Final = ("low", "medium", "high", "critical")
"""How much a tenant's assets matter to the provider (``criticality`` in the YAML); the incident
stage weighs an incident's severity by it."""
DEFAULT_CRITICALITY: Final = "medium"
_CACHE_MAX: Final = 65536
_MISS: Final = object()
_V6_OFFSET: Final = 1 << 32


class RegistryError(ValueError):
    """The registry file is malformed; the message names the file and the offending entry."""


@dataclass(frozen=True)
class VM:
    id: str
    tenant: str
    host: str | None = None
    ip: str | None = None
    disk: str | None = None


@dataclass(frozen=True)
class Host:
    id: str
    mgmt_ip: str | None = None


@dataclass(frozen=True)
class Share:
    owner: str
    grantee: str
    resource: str

    def covers(self, resource: str) -> bool:
        if self.resource.endswith("*"):
            return resource.startswith(self.resource[:-1])
        return resource == self.resource


@dataclass(frozen=True)
class ProviderService:
    """An endpoint range of the provider's own services (``provider_services`` in the YAML)."""

    name: str
    cidrs: tuple[str, ...]
    ports: tuple[int, ...] = ()  # empty: every port


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str = ""
    industry: str = ""
    cidrs: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    vms: tuple[str, ...] = ()
    peerings: tuple[str, ...] = ()
    shares: tuple[Share, ...] = ()
    accounts: tuple[str, ...] = ()
    criticality: str = DEFAULT_CRITICALITY


class _RangeTable:
    """Sorted non-overlapping [start, end] integer ranges mapped to a value."""

    def __init__(self, ranges: Iterable[tuple[int, int, str]]) -> None:
        ordered = sorted(ranges)
        for (_s1, e1, v1), (s2, _e2, v2) in itertools.pairwise(ordered):
            if s2 <= e1:
                raise RegistryError(f"address ranges overlap: {v1} and {v2}")
        self._starts = [r[0] for r in ordered]
        self._ends = [r[1] for r in ordered]
        self._values = [r[2] for r in ordered]

    def get(self, key: int) -> str | None:
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and key <= self._ends[i]:
            return self._values[i]
        return None


def _ip_key(ip: str, _pton: Any = socket.inet_pton, _af: int = socket.AF_INET) -> int | None:
    """IPv4 as its integer; IPv6 offset above the IPv4 space so both share one table."""
    if ":" not in ip:
        try:
            return int.from_bytes(_pton(_af, ip), "big")
        except (OSError, ValueError, TypeError):
            return None
    try:
        addr = ipaddress.IPv6Address(ip)
    except ValueError:
        return None
    mapped = addr.ipv4_mapped
    return int(mapped) if mapped is not None else int(addr) + _V6_OFFSET


def _look_up(cache: dict[str | None, str | None], ranges: _RangeTable, ip: str | None) -> str | None:
    """A cache miss of an address lookup: the range table's answer, remembered (the cache is
    emptied when full)."""
    if not ip:
        return None
    key = _ip_key(ip)
    value = None if key is None else ranges.get(key)
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[ip] = value
    return value


def _network_range(cidr: str, where: str) -> tuple[int, int]:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise RegistryError(f"{where}: {cidr!r} is not a CIDR") from None
    offset = 0 if net.version == 4 else 1 << 32
    return int(net.network_address) + offset, int(net.broadcast_address) + offset


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or adjacent ranges of one owner folded into one."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RegistryError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _as_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RegistryError(f"{where}: expected a non-empty string, got {value!r}")
    return value


@dataclass
class TenantRegistry:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    vms: dict[str, VM] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    management_cidrs: tuple[str, ...] = ()
    source: str = "<memory>"
    provider_services: tuple[ProviderService, ...] = ()

    def __post_init__(self) -> None:
        ranges = []
        for tenant in self.tenants.values():
            for cidr in tenant.cidrs:
                start, end = _network_range(cidr, f"{self.source}: tenant {tenant.id}")
                ranges.append((start, end, tenant.id))
        self._tenant_ranges = _RangeTable(ranges)
        mgmt = [
            (*_network_range(c, f"{self.source}: management_cidrs"), "mgmt") for c in self.management_cidrs
        ]
        for host in self.hosts.values():
            if host.mgmt_ip:
                key = _ip_key(host.mgmt_ip)
                if key is None:
                    raise RegistryError(f"{self.source}: host {host.id}: bad mgmt_ip {host.mgmt_ip!r}")
                if not any(s <= key <= e for s, e, _ in mgmt):
                    mgmt.append((key, key, "mgmt"))
        self._mgmt_ranges = _RangeTable(mgmt)
        self._peerings: set[frozenset[str]] = {
            frozenset((t.id, p)) for t in self.tenants.values() for p in t.peerings
        }
        self._shares: dict[tuple[str, str], list[Share]] = {}
        for tenant in self.tenants.values():
            for share in tenant.shares:
                self._shares.setdefault((share.owner, share.grantee), []).append(share)
        self._vm_by_ip = {vm.ip: vm.id for vm in self.vms.values() if vm.ip}
        self._vm_by_disk = {vm.disk: vm.id for vm in self.vms.values() if vm.disk}
        self._tenant_by_account: dict[str, str] = {}
        for tenant in self.tenants.values():
            for account in tenant.accounts:
                owner = self._tenant_by_account.setdefault(account, tenant.id)
                if owner != tenant.id:
                    raise RegistryError(
                        f"{self.source}: account {account} belongs to {owner} and {tenant.id}"
                    )
        self._tenant_cache: dict[str | None, str | None] = {}
        self._mgmt_cache: dict[str | None, bool] = {}
        self._build_services()

    def _build_services(self) -> None:
        where = f"{self.source}: provider_services"
        ranges: list[tuple[int, int, str]] = []
        ports: dict[str, frozenset[int] | None] = {}
        for svc in self.provider_services:
            if svc.name in ports:
                raise RegistryError(f"{where}: duplicate service name {svc.name!r}")
            ports[svc.name] = frozenset(svc.ports) or None
            own = [_network_range(c, f"{where} {svc.name}") for c in svc.cidrs]
            ranges.extend((start, end, svc.name) for start, end in _merged(own))
        try:
            self._service_ranges = _RangeTable(ranges)
        except RegistryError as exc:
            raise RegistryError(f"{where}: {exc}") from None
        self._service_ports = ports
        self._service_cache: dict[str | None, str | None] = {}
        # Detectors test this first: a registry without services costs them nothing per event.
        self.has_provider_services = bool(ranges)

    # --- lookups -------------------------------------------------------------------------------
    def tenant_of_ip(self, ip: str | None) -> str | None:
        hit = self._tenant_cache.get(ip, _MISS)  # the hit stays inline: every flow asks, most hit
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        return _look_up(self._tenant_cache, self._tenant_ranges, ip)

    def service_of_ip(self, ip: str | None) -> str | None:
        """Name of the provider service whose ranges hold ``ip`` (``provider_services``), or None."""
        hit = self._service_cache.get(ip, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        return _look_up(self._service_cache, self._service_ranges, ip)

    def provider_service(self, ip: str | None, port: int | None = None) -> str | None:
        """The provider service reached at ``ip``:``port``: ``service_of_ip`` when the service serves
        every port or lists ``port``; None otherwise (the metadata address on port 22 is no service)."""
        hit = self._service_cache.get(ip, _MISS)  # the hot path: a cached address, no second call
        name: str | None = self.service_of_ip(ip) if hit is _MISS else hit  # type: ignore[assignment]
        if name is None:
            return None
        ports = self._service_ports[name]
        return name if ports is None or port in ports else None

    def tenant_of_account(self, account: str | None) -> str | None:
        """Tenant owning a cloud account id (``accounts`` in the YAML), or None."""
        return self._tenant_by_account.get(account) if account else None

    def tenant_of_vm(self, vm: str | None) -> str | None:
        info = self.vms.get(vm) if vm else None
        return info.tenant if info else None

    def vm_of_ip(self, ip: str | None) -> str | None:
        return self._vm_by_ip.get(ip) if ip else None

    def vm_of_disk(self, path: str | None) -> str | None:
        return self._vm_by_disk.get(path) if path else None

    def is_management_ip(self, ip: str | None) -> bool:
        cache = self._mgmt_cache
        hit = cache.get(ip)
        if hit is not None:
            return hit
        key = _ip_key(ip) if ip else None
        value = key is not None and self._mgmt_ranges.get(key) is not None
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[ip] = value
        return value

    def is_peered(self, a: str | None, b: str | None) -> bool:
        if a is None or b is None:
            return False
        return a == b or frozenset((a, b)) in self._peerings

    def has_share(self, owner: str | None, grantee: str | None, resource: str) -> bool:
        if owner is None or grantee is None:
            return False
        if owner == grantee:
            return True
        return any(s.covers(resource) for s in self._shares.get((owner, grantee), ()))

    def industry_of(self, tenant: str | None) -> str | None:
        info = self.tenants.get(tenant) if tenant else None
        return info.industry if info else None

    def criticality_of(self, tenant: str | None) -> str:
        """The tenant's ``criticality`` (one of ``CRITICALITIES``); ``medium`` for an unknown tenant."""
        info = self.tenants.get(tenant) if tenant else None
        return info.criticality if info else DEFAULT_CRITICALITY

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<memory>") -> TenantRegistry:
        if not isinstance(data, Mapping):
            raise RegistryError(f"{source}: expected a mapping at top level")
        hosts: dict[str, Host] = {}
        for i, raw in enumerate(_as_list(data.get("hosts"), f"{source}: hosts")):
            where = f"{source}: hosts[{i}]"
            if not isinstance(raw, Mapping):
                raise RegistryError(f"{where}: expected a mapping")
            host = Host(id=_as_str(raw.get("id"), f"{where}.id"), mgmt_ip=raw.get("mgmt_ip"))
            hosts[host.id] = host
        tenants: dict[str, Tenant] = {}
        vms: dict[str, VM] = {}
        for i, raw in enumerate(_as_list(data.get("tenants"), f"{source}: tenants")):
            where = f"{source}: tenants[{i}]"
            if not isinstance(raw, Mapping):
                raise RegistryError(f"{where}: expected a mapping")
            tid = _as_str(raw.get("id"), f"{where}.id")
            if tid in tenants:
                raise RegistryError(f"{where}: duplicate tenant id {tid!r}")
            tenant_vms = []
            for j, vraw in enumerate(_as_list(raw.get("vms"), f"{where}.vms")):
                vwhere = f"{where}.vms[{j}]"
                if not isinstance(vraw, Mapping):
                    raise RegistryError(f"{vwhere}: expected a mapping")
                vm = VM(
                    id=_as_str(vraw.get("id"), f"{vwhere}.id"),
                    tenant=tid,
                    host=vraw.get("host"),
                    ip=vraw.get("ip"),
                    disk=vraw.get("disk"),
                )
                if vm.id in vms:
                    raise RegistryError(f"{vwhere}: VM {vm.id!r} already belongs to {vms[vm.id].tenant}")
                vms[vm.id] = vm
                tenant_vms.append(vm.id)
                if vm.host and vm.host not in hosts:
                    hosts[vm.host] = Host(id=vm.host)
            shares = []
            for j, sraw in enumerate(_as_list(raw.get("shares"), f"{where}.shares")):
                swhere = f"{where}.shares[{j}]"
                if not isinstance(sraw, Mapping):
                    raise RegistryError(f"{swhere}: expected a mapping")
                shares.append(
                    Share(
                        owner=tid,
                        grantee=_as_str(sraw.get("grantee"), f"{swhere}.grantee"),
                        resource=_as_str(sraw.get("resource"), f"{swhere}.resource"),
                    )
                )
            tenants[tid] = Tenant(
                id=tid,
                name=str(raw.get("name") or tid),
                industry=str(raw.get("industry") or ""),
                cidrs=tuple(str(c) for c in _as_list(raw.get("cidrs"), f"{where}.cidrs")),
                hosts=tuple(str(h) for h in _as_list(raw.get("hosts"), f"{where}.hosts")),
                vms=tuple(tenant_vms),
                peerings=tuple(str(p) for p in _as_list(raw.get("peerings"), f"{where}.peerings")),
                shares=tuple(shares),
                accounts=tuple(str(a) for a in _as_list(raw.get("accounts"), f"{where}.accounts")),
                criticality=_criticality(raw.get("criticality"), f"{where}.criticality"),
            )
        mgmt = tuple(str(c) for c in _as_list(data.get("management_cidrs"), f"{source}: management_cidrs"))
        services = _provider_services(data.get("provider_services"), f"{source}: provider_services")
        return cls(
            tenants=tenants,
            vms=vms,
            hosts=hosts,
            management_cidrs=mgmt,
            source=source,
            provider_services=services,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TenantRegistry:
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > MAX_REGISTRY_BYTES:
                raise RegistryError(f"{p}: {size} bytes is over the {MAX_REGISTRY_BYTES} byte limit")
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryError(f"{p}: {exc.strerror or exc}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{p}: not valid YAML ({exc})") from None
        return cls.from_dict(data or {}, source=str(p))

    def to_dict(self) -> dict[str, Any]:
        """Inverse of ``from_dict`` (the simulator writes the registry it used)."""
        return {
            "management_cidrs": list(self.management_cidrs),
            "hosts": [{"id": h.id, "mgmt_ip": h.mgmt_ip} for h in self.hosts.values()],
            "tenants": [
                {
                    "id": t.id,
                    "name": t.name,
                    "industry": t.industry,
                    "cidrs": list(t.cidrs),
                    "hosts": list(t.hosts),
                    "vms": [
                        {k: v for k, v in vars(self.vms[v]).items() if k != "tenant" and v is not None}
                        for v in t.vms
                    ],
                    "peerings": list(t.peerings),
                    "shares": [{"resource": s.resource, "grantee": s.grantee} for s in t.shares],
                    **({"accounts": list(t.accounts)} if t.accounts else {}),
                    **({"criticality": t.criticality} if t.criticality != DEFAULT_CRITICALITY else {}),
                }
                for t in self.tenants.values()
            ],
            **(
                {
                    "provider_services": [
                        {
                            "name": p.name,
                            "cidrs": list(p.cidrs),
                            **({"ports": list(p.ports)} if p.ports else {}),
                        }
                        for p in self.provider_services
                    ]
                }
                if self.provider_services
                else {}
            ),
        }

    def dump(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _criticality(value: Any, where: str) -> str:
    """A tenant's ``criticality``: absent means ``medium``; anything outside ``CRITICALITIES`` is refused."""
    if value is None:
        return DEFAULT_CRITICALITY
    if value not in CRITICALITIES:
        raise RegistryError(f"{where}: expected one of {', '.join(CRITICALITIES)}, got {value!r}")
    return str(value)


def _provider_services(value: Any, where: str) -> tuple[ProviderService, ...]:
    """The ``provider_services`` entries, each checked; errors name the entry and the field."""
    out = []
    for i, raw in enumerate(_as_list(value, where)):
        here = f"{where}[{i}]"
        if not isinstance(raw, Mapping):
            raise RegistryError(f"{here}: expected a mapping")
        unknown = sorted(set(raw) - {"name", "cidrs", "ports"})
        if unknown:
            raise RegistryError(f"{here}: unknown field(s) {', '.join(map(str, unknown))}")
        name = _as_str(raw.get("name"), f"{here}.name")
        cidrs = _as_list(raw.get("cidrs"), f"{here}.cidrs")
        if not cidrs:
            raise RegistryError(f"{here}.cidrs: a service needs at least one CIDR")
        for j, cidr in enumerate(cidrs):
            _network_range(_as_str(cidr, f"{here}.cidrs[{j}]"), f"{here}.cidrs[{j}]")
        ports = _as_list(raw.get("ports"), f"{here}.ports")
        for j, port in enumerate(ports):
            if type(port) is not int or not 0 <= port <= 65535:
                raise RegistryError(f"{here}.ports[{j}]: expected a port 0-65535, got {port!r}")
        out.append(ProviderService(name=name, cidrs=tuple(cidrs), ports=tuple(sorted(set(ports)))))
    return tuple(out)


class RegistryWatcher:
    """Holds the current registry and reloads it when the file's mtime or size changes.

    ``current()`` is cheap: it stats the file at most once per ``check_interval_s``. A reload that
    fails keeps the previous registry and records the error, so a bad edit never blinds detection.
    """

    def __init__(self, path: str | os.PathLike[str], check_interval_s: float = 2.0) -> None:
        self.path = Path(path)
        self.check_interval_s = check_interval_s
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stamp = self._read_stamp()
        self._registry = TenantRegistry.load(self.path)
        self._next_check = 0.0

    def _read_stamp(self) -> tuple[int, int]:
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size

    def current(self, now: float | None = None) -> TenantRegistry:
        import time

        now = time.monotonic() if now is None else now
        if now < self._next_check:
            return self._registry
        with self._lock:
            self._next_check = now + self.check_interval_s
            try:
                stamp = self._read_stamp()
            except OSError as exc:
                self.last_error = f"{self.path}: {exc.strerror}"
                return self._registry
            if stamp != self._stamp:
                try:
                    self._registry = TenantRegistry.load(self.path)
                    self.last_error = None
                except RegistryError as exc:
                    self.last_error = str(exc)
                self._stamp = stamp
        return self._registry

    def __getstate__(self) -> dict[str, Any]:
        # Picklable for Flink: the registry is reloaded from the path on the worker.
        return {"path": str(self.path), "check_interval_s": self.check_interval_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["check_interval_s"])  # type: ignore[misc]
