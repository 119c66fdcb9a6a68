"""A VM's emulator makes a syscall it never needs: module loading, ptrace or cross-process memory
access, namespace changes or mounts."""

from __future__ import annotations

from typing import ClassVar, Final

from detectors.alert import Attack
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, HitState, Rule
from detectors.rules.common import Hypervisor, vm_or_host
from detectors.rules.vm_escape import escape_labels
from ingest.schema import Event, ProcessEvent

__all__ = ["EmulatorPrivilegedSyscall"]

# The evidence signal of each syscall family; a syscall added to params.syscalls and not listed
# here is its own signal. Module syscalls (params.module_syscalls) are all "kernel_module".
_SIGNAL_OF: Final = {
    "ptrace": "ptrace",
    "process_vm_readv": "process_memory",
    "process_vm_writev": "process_memory",
    "setns": "namespace_change",
    "unshare": "namespace_change",
    "mount": "mount",
    "umount2": "mount",
    "pivot_root": "mount",
    "bpf": "bpf",
}


class EmulatorPrivilegedSyscall(Rule):
    meta = DetectorMeta(
        id="vm_escape.emulator_privileged_syscall",
        version="1.0.0",
        title="Emulator made a privileged syscall",
        category="vm_escape",
        score=88,
        severity="high",
        attack=(
            technique("Privilege Escalation", "T1611", "Escape to Host"),
            technique("Persistence", "T1547.006", "Kernel Modules and Extensions"),
            technique("Privilege Escalation", "T1055.008", "Ptrace System Calls"),
        ),
        kinds=frozenset({"process"}),
        description="The emulator loads a kernel module (init_module/finit_module), traces or reads "
        "another process (ptrace, process_vm_readv/writev), changes namespace (setns/unshare) or mounts.",
        false_positives=("an emulator build that sandboxes itself with unshare at start-up (allowlist it)",),
        note="A module load from the emulator is a host compromise: isolate the host. For ptrace, the "
        "target pid in the evidence names the victim emulator; check its VM's tenant.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {"syscalls": list, "module_syscalls": list, "allowed_syscalls": list}

    def configure(self, config: DetectorConfig) -> None:
        self.hv = Hypervisor(config)
        self.module_calls = frozenset(self.params["module_syscalls"])
        self.calls = (frozenset(self.params["syscalls"]) | self.module_calls) - frozenset(
            self.params["allowed_syscalls"]
        )
        self._module_attack = self.meta.attack[1]
        self._ptrace_attack = self.meta.attack[2]

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        if ev.syscall not in self.calls or ev.exe not in self.hv.emulators:
            return None
        detail = ev.syscall if ev.path is None else f"{ev.syscall} {ev.path}"
        if ev.result == "failure":
            detail += " (failed)"
        signal = (
            "kernel_module" if ev.syscall in self.module_calls else _SIGNAL_OF.get(ev.syscall, ev.syscall)
        )
        labels = escape_labels(self.reg, ev.host, ev.vm, signal, ev.exe)
        return Hit(vm_or_host(ev.vm, ev.host), ev.tenant, detail, labels)

    def score_for(self, st: HitState) -> int:
        if any(d.split(" ", 1)[0] in self.module_calls for d in st.details):
            return 96
        return self.meta.score

    def attack_for(self, st: HitState) -> Attack | None:
        calls = {d.split(" ", 1)[0] for d in st.details}
        if calls & self.module_calls:
            return self._module_attack
        return None
