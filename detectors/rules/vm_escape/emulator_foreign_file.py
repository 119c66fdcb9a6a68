"""A VM's emulator, or a process descending from it, touches files outside that VM: another VM's
image, an unregistered image, host memory, raw block devices, or another process's memory.

Attribution: the actor is the emulator, known from a ``detectors.proctable.ProcTable`` learned
from every process event of the host (see its docstring), so the alert names the emulator's VM
and tenant: the one whose ``-name guest=`` / libvirt ``VIRT_*`` records / sVirt label it carries.
A parser that attributes an event by its path (the disk's owner) would make a VM look as if it
opened "its own" disk; the event's ``vm`` is only used when it is not merely the owner of the
path and the table knows nothing better. A descendant of an emulator (the shell a compromised
qemu spawned, then ``cat`` or ``dd`` of another VM's disk) is judged as the emulator would be.

Not an escape:

- the VM's own disks: the registry's ``disk``, the emulator's ``-drive file=`` / ``-blockdev
  "filename":`` paths, and the disks libvirt audits for it (``VIRT_RESOURCE resrc=disk
  new-disk=``, written at start, hot-plug and external snapshot; libvirt
  ``src/conf/domain_audit.c``);
- the VM's own snapshot overlays and backups in an image directory, named after the VM or its
  disk: ``<vm>-snap1.qcow2``, ``<vm>.qcow2.backup``, and libvirt's external snapshots, which
  replace the disk's suffix with the snapshot name (``<disk stem>.<snapshot>``, the default name
  being a Unix timestamp: libvirt ``formatsnapshot`` documentation). A name that is also the
  prefix of a longer VM name of the registry belongs to that VM, not to this one;
- operator jobs: processes whose ancestor is a management daemon (``shared.manager_exes``,
  libvirtd/virtqemud running ``qemu-img``, ``dd``, ``virsh``) and not an emulator are never
  subjects of this rule.
"""

from __future__ import annotations

from typing import ClassVar, Final

from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.proctable import EMU, EXE, VM, guest_name
from detectors.rule import Hit, Rule
from detectors.rules.common import drive_paths, vm_or_host
from detectors.rules.vm_escape import EmulatorTable, attribute, escape_labels
from ingest.schema import Event, ProcessEvent

__all__ = ["EmulatorForeignFile"]

_NAME_SEPARATORS: Final = ".-_"


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.split(".", 1)[0]


def _named_after(name: str, stem: str) -> bool:
    """``name`` is ``stem`` followed by a separator (``vm-01-snap1.qcow2``, ``vm-01.1700000000``)."""
    return len(name) > len(stem) and name.startswith(stem) and name[len(stem)] in _NAME_SEPARATORS


class EmulatorForeignFile(Rule):
    meta = DetectorMeta(
        id="vm_escape.emulator_foreign_file",
        version="2.0.0",
        title="Emulator touched a file outside its VM",
        category="vm_escape",
        score=90,
        severity="critical",
        attack=(technique("Privilege Escalation", "T1611", "Escape to Host"),),
        kinds=frozenset({"process"}),
        description="The emulator of a VM, or a process descending from it, opens or reads another VM's "
        "disk image, an unregistered image, host memory (/dev/mem, /dev/kmem, /proc/kcore), a raw block "
        "device or another process's /proc/<pid>/mem. The VM and tenant are the emulator's.",
        false_positives=(
            "a disk deliberately attached to two VMs (shared/multi-attach volume) but missing from the "
            "registry, the -drive list and libvirt's VIRT_RESOURCE records",
            "live migration or block-copy jobs reading images under the image directory",
        ),
        note="Compare the path with the VM's registered disk and its -drive list; if another tenant's "
        "image was read, treat as cross-tenant data exposure too. Preserve the emulator process.",
        maturity="stable",
    )
    learned: ClassVar[tuple[str, ...]] = ("emu",)
    param_spec: ClassVar[ParamSpec] = {
        "sensitive_paths": list,
        "raw_device_prefixes": list,
        "image_dirs": list,
        "allowed_paths": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.emu = EmulatorTable(config)
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

    def _own(self, ev: ProcessEvent, vm: str | None, path: str, is_emulator: bool) -> bool:
        """The path is one of the VM's disks (registry, command line, libvirt's records)."""
        info = self.reg.vms.get(vm) if vm else None
        if info is not None and info.disk == path:
            return True
        if is_emulator and ev.cmdline and path in self._own_drives(ev.cmdline):
            return True
        return path in self.emu.table.vm_disks(ev.host, vm)

    def _learned_owner(self, host: str | None, path: str) -> str | None:
        """The VM whose disks libvirt's records or its command line named ``path`` (None when none)."""
        h = self.emu.table.host(host)
        return h.disk_vm.get(path) if h is not None else None

    def _overlay_of(self, vm: str | None, host: str | None, path: str) -> bool:
        """``path`` is named after the VM or one of its disks (a snapshot overlay or a backup), and
        not after a longer VM name that shares the prefix."""
        if not vm:
            return False
        name = path.rsplit("/", 1)[-1]
        info = self.reg.vms.get(vm)
        stems = {vm}
        if info is not None and info.disk:
            stems.add(_stem(info.disk))
        stems.update(_stem(d) for d in self.emu.table.vm_disks(host, vm))
        mine = max((s for s in stems if s and _named_after(name, s)), key=len, default=None)
        if mine is None:
            return False
        for other_id, other in self.reg.vms.items():
            if other_id == vm:
                continue
            for s in (other_id, _stem(other.disk) if other.disk else ""):
                if len(s) > len(mine) and (name == s or _named_after(name, s) or name.startswith(s + ".")):
                    return False
        return True

    def _named_vm(self, path: str) -> str | None:
        """The registry VM whose name or disk stem ``path``'s file is named after (longest wins)."""
        name = path.rsplit("/", 1)[-1]
        best: tuple[int, str] | None = None
        for vm_id, info in self.reg.vms.items():
            for s in (vm_id, _stem(info.disk) if info.disk else ""):
                if s and _named_after(name, s) and (best is None or len(s) > best[0]):
                    best = (len(s), vm_id)
        return best[1] if best is not None else None

    def _reason(
        self, ev: ProcessEvent, vm: str | None, path: str, is_emulator: bool
    ) -> tuple[str, str] | None:
        """(signal, reason) when ``path`` is outside the VM ``vm``."""
        if self._own(ev, vm, path, is_emulator):
            return None
        if path in self.sensitive:
            return "host_memory", "host memory"
        if path.startswith(self.raw_prefixes):
            return "raw_block_device", "raw block device"
        other = self.reg.vm_of_disk(path) or self._learned_owner(ev.host, path)
        if other is not None:
            return None if other == vm else ("foreign_vm_disk", f"disk of {other}")
        if path.startswith(self.image_dirs):
            if self._overlay_of(vm, ev.host, path):
                return None
            named = self._named_vm(path)
            if named is not None and named != vm:
                return "foreign_vm_disk", f"snapshot or copy of {named}'s disk"
            return "unregistered_image", "unregistered image"
        if path.startswith("/proc/") and path.endswith("/mem"):
            pid = path[6:-4]
            return None if pid in ("self", str(ev.pid)) else ("process_memory", "another process's memory")
        return None

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        e = self.emu.table.learn(ev)
        path = ev.path
        if path is None or path in self.allowed:
            return None
        emulators = self.emu.emulators
        if e is None:  # no pid: the event alone
            if ev.pid > 0 or ev.exe not in emulators:
                return None
            is_emulator, table_vm, emulator = True, None, ev.exe
        else:
            emu = e[EMU]
            if not emu:
                return None  # not an emulator nor below one (operator jobs under libvirtd included)
            is_emulator = emu == ev.pid and (ev.exe or e[EXE]) in emulators
            table_vm = e[VM]
            if is_emulator:
                emulator = ev.exe or e[EXE]
            else:
                h = self.emu.table.host(ev.host)
                parent = h.get(emu) if h is not None else None
                emulator = parent[EXE] if parent is not None and parent[EXE] else "unknown"
        if table_vm is None and is_emulator and ev.cmdline:
            table_vm = guest_name(ev.cmdline)
        vm, tenant = attribute(self.reg, table_vm, ev)
        found = self._reason(ev, vm, path, is_emulator)
        if found is None:
            return None
        signal, reason = found
        labels = escape_labels(self.reg, ev.host, vm, signal, emulator)
        actor = "" if is_emulator else f" by {ev.exe or 'a descendant'}"
        return Hit(vm_or_host(vm, ev.host), tenant, f"{reason}: {ev.syscall} {path}{actor}", labels)

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_drives"] = {}
        return state
