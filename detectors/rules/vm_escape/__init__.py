"""vm escape rules.

Every VM-escape alert names where it happened in the same evidence keys, which the VM-escape
board groups on: ``host`` (the hypervisor host, ``unknown`` when neither the event nor the
registry says), ``vm`` (the guest, when one is involved), ``emulator`` (the emulator process, or
for an unexpected process opening a KVM device that process) and ``signal`` (which behaviour).
"""

from __future__ import annotations

from ingest.tenants import TenantRegistry

__all__ = ["escape_labels"]


def escape_labels(
    reg: TenantRegistry, host: str | None, vm: str | None, signal: str, emulator: str | None = None
) -> dict[str, str]:
    """Evidence labels of one VM-escape hit; the registry supplies the host of a known VM."""
    if not host and vm:
        info = reg.vms.get(vm)
        host = info.host if info is not None else None
    labels = {"host": host or "unknown", "signal": signal}
    if vm:
        labels["vm"] = vm
    if emulator is not None:
        labels["emulator"] = emulator or "unknown"
    return labels
