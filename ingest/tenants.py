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
    "MAX_REGISTRY_BYTES",
    "VM",
    "Host",
    "RegistryError",
    "RegistryWatcher",
    "Share",
    "Tenant",
    "TenantRegistry",
]

MAX_REGISTRY_BYTES: Final = 16 * 1024 * 1024
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


def _network_range(cidr: str, where: str) -> tuple[int, int]:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise RegistryError(f"{where}: {cidr!r} is not a CIDR") from None
    offset = 0 if net.version == 4 else 1 << 32
    return int(net.network_address) + offset, int(net.broadcast_address) + offset


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

    # --- lookups -------------------------------------------------------------------------------
    def tenant_of_ip(self, ip: str | None) -> str | None:
        cache = self._tenant_cache
        hit = cache.get(ip, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        if not ip:
            return None
        key = _ip_key(ip)
        value = None if key is None else self._tenant_ranges.get(key)
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[ip] = value
        return value

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
            )
        mgmt = tuple(str(c) for c in _as_list(data.get("management_cidrs"), f"{source}: management_cidrs"))
        return cls(tenants=tenants, vms=vms, hosts=hosts, management_cidrs=mgmt, source=source)

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
                }
                for t in self.tenants.values()
            ],
        }

    def dump(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


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
