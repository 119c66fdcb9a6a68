"""A VM's emulator runs another program: the classic first step after a guest-to-host escape.

QEMU never forks shells or tools in normal operation: under libvirt it runs only the helpers a
site configures (``shared.emulator_helpers``: bridge and persistent-reservation helpers), and with
``-sandbox on,spawn=deny`` (libvirt's default where seccomp is available, QEMU's ``-sandbox``
documentation) it cannot even ``fork``/``execve``. So every process below an emulator that is not
a helper is the escape's payload: the shell a compromised qemu spawns, and everything that shell
runs (``cat`` of another VM's disk, ``curl``, ``nc``).

The emulator is known from a ``detectors.proctable.ProcTable`` learned from every process event
of the host, not only from ``execve``: an emulator started days before the log is recognised by
any record naming its pid and exe (or by libvirt's ``VIRT_CONTROL vm-pid=``), so its children
are caught whenever they appear, and the VM and tenant are the emulator's (from ``-name guest=``,
libvirt's records or the sVirt label), never those of whatever file the child touched.

Signals: ``child_process`` (direct child), ``descendant_process`` (deeper), ``emulator_exec``
(the emulator's own pid ``execve``'d something else: shellcode calling ``execve`` in place).
Descendants of an allowed helper (``allowed_children``, ``shared.emulator_helpers``) are allowed.
"""

from __future__ import annotations

from typing import ClassVar

from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.proctable import BRANCH, EMU, EXE, PPID, VM
from detectors.rule import Hit, Rule
from detectors.rules.common import vm_or_host
from detectors.rules.vm_escape import EmulatorTable, attribute, escape_labels
from ingest.schema import Event, ProcessEvent

__all__ = ["EmulatorChildProcess"]


class EmulatorChildProcess(Rule):
    meta = DetectorMeta(
        id="vm_escape.emulator_child_process",
        version="2.0.0",
        title="Emulator spawned a process",
        category="vm_escape",
        score=92,
        severity="critical",
        attack=(technique("Privilege Escalation", "T1611", "Escape to Host"),),
        kinds=frozenset({"process"}),
        description="A process descending from a VM emulator (qemu) that is not itself an emulator or a "
        "known emulator helper, or an emulator that execs another program: qemu never forks shells or "
        "tools in normal operation. Emulators are recognised from every record naming their pid, so a "
        "child is caught even when the emulator started before the log.",
        false_positives=(
            "qemu helpers a site uses (bridge/PR helpers, -netdev script=) not yet in shared.emulator_helpers",
            "a debugging session attached by an operator",
        ),
        note="Isolate the host from tenant scheduling, snapshot the VM, capture the process tree "
        "(pid/ppid in evidence events) and the emulator's memory; the alert's VM is the emulator's own.",
        maturity="stable",
    )
    learned: ClassVar[tuple[str, ...]] = ("emu",)
    param_spec: ClassVar[ParamSpec] = {"allowed_children": list}

    def configure(self, config: DetectorConfig) -> None:
        self.emu = EmulatorTable(config)
        hv = self.emu.hv
        self.helpers = frozenset(config.shared_value("emulator_helpers", list))
        self.allowed = frozenset(self.params["allowed_children"]) | self.helpers | hv.emulators

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        table = self.emu.table
        e = table.learn(ev)
        if e is None:  # no pid (or a libvirt record): only what the event itself says
            if ev.pid > 0 or ev.parent_exe not in self.emu.emulators or ev.exe in self.allowed:
                return None
            vm, tenant = attribute(self.reg, None, ev)
            labels = escape_labels(self.reg, ev.host, vm, "child_process", ev.parent_exe)
            return Hit(vm_or_host(vm, ev.host), tenant, f"{ev.syscall} {ev.exe}", labels)
        emu = e[EMU]
        if not emu:
            return None
        allowed = self.allowed
        exe = ev.exe or e[EXE]
        if not exe or exe in allowed:
            return None
        if emu == ev.pid:
            signal = "emulator_exec"
            emulator = e[BRANCH] or "unknown"
        else:
            if (e[BRANCH] or exe) in allowed:
                return None
            signal = "child_process" if e[PPID] == emu else "descendant_process"
            h = table.host(ev.host)
            parent = h.get(emu) if h is not None else None
            emulator = (parent[EXE] if parent is not None else "") or (
                ev.parent_exe if e[PPID] == emu else ""
            )
        vm, tenant = attribute(self.reg, e[VM], ev)
        labels = escape_labels(self.reg, ev.host, vm, signal, emulator or "unknown")
        return Hit(vm_or_host(vm, ev.host), tenant, f"{ev.syscall} {exe}", labels)
