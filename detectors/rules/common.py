"""Helpers shared by rules: hypervisor definitions from config, entity resolution, address classes."""

from __future__ import annotations

from typing import Final

from detectors.alert import Entity
from detectors.config import DetectorConfig
from ingest.tenants import TenantRegistry

__all__ = [
    "Hypervisor",
    "drive_paths",
    "fmt_bytes",
    "is_external",
    "source_entity",
    "vm_or_host",
]

_DRIVE_MARK: Final = "file="


class Hypervisor:
    """The hypervisor vocabulary (``shared`` section of the config): which executables are
    emulators, which are the management daemons, which syscalls open files."""

    __slots__ = ("emulators", "managers", "open_syscalls")

    def __init__(self, config: DetectorConfig) -> None:
        self.emulators = frozenset(config.shared_value("emulator_exes", list))
        self.managers = frozenset(config.shared_value("manager_exes", list))
        self.open_syscalls = frozenset(config.shared_value("open_syscalls", list))


def drive_paths(cmdline: str) -> frozenset[str]:
    """Disk images named on an emulator command line (``-drive file=<path>,...``)."""
    out = set()
    start = cmdline.find(_DRIVE_MARK)
    while start >= 0:
        start += len(_DRIVE_MARK)
        end = start
        while end < len(cmdline) and cmdline[end] not in ", \t":
            end += 1
        if end > start:
            out.add(cmdline[start:end])
        start = cmdline.find(_DRIVE_MARK, end)
    return frozenset(out)


def vm_or_host(vm: str | None, host: str | None) -> Entity:
    if vm:
        return Entity("vm", vm)
    return Entity("host", host or "unknown")


def source_entity(reg: TenantRegistry, src_ip: str) -> Entity:
    """The VM behind a source address, else the address itself."""
    vm = reg.vm_of_ip(src_ip)
    return Entity("vm", vm) if vm else Entity("ip", src_ip)


def is_external(reg: TenantRegistry, ip: str | None) -> bool:
    """An address outside every tenant and the management plane."""
    if not ip:
        return False
    return reg.tenant_of_ip(ip) is None and not reg.is_management_ip(ip)


def fmt_bytes(n: float) -> str:
    """Human-readable byte count for summaries (decimal units)."""
    if abs(n) < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if abs(n) < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"
