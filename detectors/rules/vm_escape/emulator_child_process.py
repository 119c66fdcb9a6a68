"""A VM's emulator runs a child process: the classic first step after a guest-to-host escape."""

from __future__ import annotations

from typing import ClassVar

from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, Rule
from detectors.rules.common import Hypervisor, vm_or_host
from detectors.rules.vm_escape import escape_labels
from ingest.schema import Event, ProcessEvent

__all__ = ["EmulatorChildProcess"]


class EmulatorChildProcess(Rule):
    meta = DetectorMeta(
        id="vm_escape.emulator_child_process",
        version="1.0.0",
        title="Emulator spawned a process",
        category="vm_escape",
        score=92,
        severity="critical",
        attack=(technique("Privilege Escalation", "T1611", "Escape to Host"),),
        kinds=frozenset({"process"}),
        description="A process whose parent is a VM emulator (qemu) and which is not itself an emulator "
        "or a known emulator helper: qemu never forks shells or tools in normal operation.",
        false_positives=(
            "qemu helpers a site uses (bridge/PR helpers) not yet in shared.emulator_helpers",
            "a debugging session attached by an operator",
        ),
        note="Isolate the host from tenant scheduling, snapshot the VM, capture the process tree "
        "(pid/ppid in evidence events) and the emulator's memory; check which guest owns the emulator.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {"allowed_children": list}

    def configure(self, config: DetectorConfig) -> None:
        self.hv = Hypervisor(config)
        self.helpers = frozenset(config.shared_value("emulator_helpers", list))
        self.allowed = frozenset(self.params["allowed_children"]) | self.helpers | self.hv.emulators

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        if ev.parent_exe not in self.hv.emulators or ev.exe in self.allowed:
            return None
        labels = escape_labels(self.reg, ev.host, ev.vm, "child_process", ev.parent_exe)
        return Hit(vm_or_host(ev.vm, ev.host), ev.tenant, f"{ev.syscall} {ev.exe}", labels)
