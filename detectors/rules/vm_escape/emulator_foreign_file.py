"""A VM's emulator touches files outside its own disk set: another VM's image, host memory,
raw block devices, or another process's memory."""

from __future__ import annotations

from typing import ClassVar

from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, Rule
from detectors.rules.common import Hypervisor, drive_paths, vm_or_host
from detectors.rules.vm_escape import escape_labels
from ingest.schema import Event, ProcessEvent

__all__ = ["EmulatorForeignFile"]


class EmulatorForeignFile(Rule):
    meta = DetectorMeta(
        id="vm_escape.emulator_foreign_file",
        version="1.0.0",
        title="Emulator touched a file outside its VM",
        category="vm_escape",
        score=90,
        severity="critical",
        attack=(technique("Privilege Escalation", "T1611", "Escape to Host"),),
        kinds=frozenset({"process"}),
        description="The emulator of a VM opens or reads another VM's disk image, an unregistered image, "
        "host memory (/dev/mem, /dev/kmem, /proc/kcore), a raw block device or another process's "
        "/proc/<pid>/mem.",
        false_positives=(
            "a disk deliberately attached to two VMs (shared/multi-attach volume) but missing from the "
            "registry and from the -drive list",
            "live migration or block-copy jobs reading images under the image directory",
        ),
        note="Compare the path with the VM's registered disk and its -drive list; if another tenant's "
        "image was read, treat as cross-tenant data exposure too. Preserve the emulator process.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "sensitive_paths": list,
        "raw_device_prefixes": list,
        "image_dirs": list,
        "allowed_paths": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.hv = Hypervisor(config)
        self.sensitive = frozenset(self.params["sensitive_paths"])
        self.raw_prefixes = tuple(self.params["raw_device_prefixes"])
        self.image_dirs = tuple(self.params["image_dirs"])
        self.allowed = frozenset(self.params["allowed_paths"])
        self._drives: dict[str, frozenset[str]] = {}

    def _own_drives(self, cmdline: str) -> frozenset[str]:
        drives = self._drives.get(cmdline)
        if drives is None:
            if len(self._drives) >= 4096:
                self._drives.clear()
            drives = self._drives[cmdline] = drive_paths(cmdline)
        return drives

    def _reason(self, ev: ProcessEvent, path: str) -> tuple[str, str] | None:
        """(signal, reason) when ``path`` is outside the emulator's own VM."""
        reg = self.reg
        info = reg.vms.get(ev.vm) if ev.vm else None
        if info is not None and info.disk == path:
            return None
        if path in self.sensitive:
            return "host_memory", "host memory"
        if path.startswith(self.raw_prefixes):
            return "raw_block_device", "raw block device"
        other = reg.vm_of_disk(path)
        if other is not None:
            if other == ev.vm or path in self._own_drives(ev.cmdline):
                return None
            return "foreign_vm_disk", f"disk of {other}"
        if path.startswith(self.image_dirs):
            return (
                None if path in self._own_drives(ev.cmdline) else ("unregistered_image", "unregistered image")
            )
        if path.startswith("/proc/") and path.endswith("/mem"):
            pid = path[6:-4]
            return None if pid in ("self", str(ev.pid)) else ("process_memory", "another process's memory")
        return None

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        path = ev.path
        if path is None or ev.exe not in self.hv.emulators or path in self.allowed:
            return None
        found = self._reason(ev, path)
        if found is None:
            return None
        signal, reason = found
        labels = escape_labels(self.reg, ev.host, ev.vm, signal, ev.exe)
        return Hit(vm_or_host(ev.vm, ev.host), ev.tenant, f"{reason}: {ev.syscall} {path}", labels)

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_drives"] = {}
        return state
