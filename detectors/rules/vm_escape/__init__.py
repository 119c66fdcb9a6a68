"""vm escape rules.

Every VM-escape alert names where it happened in the same evidence keys, which the VM-escape
board groups on: ``host`` (the hypervisor host, ``unknown`` when neither the event nor the
registry says), ``vm`` (the guest, when one is involved), ``emulator`` (the emulator process, or
for an unexpected process opening a KVM device that process) and ``signal`` (which behaviour).

The rules that read a KVM host's audit trail keep a ``detectors.proctable.ProcTable`` (see its
docstring): the emulator rules learn from every process event, the rules of single record types
(SECCOMP, ANOM_ABEND, AVC, ANOM_PROMISCUOUS) only from libvirt's ``VIRT_*`` records and the
emulators' own events, which is all they need to name the VM.
"""

from __future__ import annotations

from typing import Any

from detectors.base import Batch
from detectors.config import DetectorConfig
from detectors.proctable import EMU, VM, ProcTable, guest_name, text_field
from detectors.rule import Rule
from detectors.rules.common import Hypervisor
from ingest.schema import ProcessEvent
from ingest.tenants import TenantRegistry

__all__ = ["EmulatorTable", "attribute", "escape_labels", "observe_with_libvirt"]


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


def attribute(reg: TenantRegistry, table_vm: str | None, ev: ProcessEvent) -> tuple[str | None, str | None]:
    """(VM, tenant) an emulator-side event belongs to: the VM the process table learned from the
    emulator (command line, libvirt records, sVirt label) and that VM's tenant. Without one, the
    event's own ``vm`` unless it is merely the owner of the path the event touched (a parser that
    attributes by path names the victim, not the actor)."""
    if table_vm:
        return table_vm, reg.tenant_of_vm(table_vm) or (ev.tenant if ev.vm == table_vm else None)
    vm = ev.vm
    if vm and ev.path and reg.vm_of_disk(ev.path) == vm:
        return None, None
    return vm, ev.tenant


class EmulatorTable:
    """The process table of one rule, with the hypervisor vocabulary it is built from."""

    __slots__ = ("emulators", "hv", "table")

    def __init__(self, config: DetectorConfig) -> None:
        self.hv = Hypervisor(config)
        self.emulators = self.hv.emulators
        self.table = ProcTable(
            self.hv.emulators,
            self.hv.managers,
            max_pids=config.shared_value("proc_table_max_pids", int),
            max_hosts=config.shared_value("proc_table_max_hosts", int),
        )

    def adopt(self, old: EmulatorTable) -> None:
        """Take over ``old``'s process table (``ProcTable.adopt``), with this table's vocabulary."""
        self.table.adopt(old.table)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.hv, self.emulators, self.table)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.hv, self.emulators, self.table = state

    def learn_light(self, ev: ProcessEvent) -> list[Any] | None:
        """Learn only libvirt's records (which name VMs, their emulator pids and sVirt pairs); the
        event's pid entry when one is known (an emulator libvirt named). The rules of single record
        types need no more: the record names its exe and label, and the parser names an emulator's VM."""
        if ev.syscall[:5] == "virt_":
            return self.table.learn(ev)
        h = self.table.host(ev.host)
        return h.get(ev.pid) if h is not None and ev.pid > 0 else None

    def observe_virt(self, rule: Rule, batch: Batch, syscall: str) -> None:
        """Fast path of a single-record-type rule: learn libvirt's records, match only ``syscall``
        (or, for ``match_extra``, events whose ``extra`` holds that key) and record hits."""
        table = self.table
        match, record = rule.match, rule.record
        for ev in batch.processes:
            sc = ev.syscall
            if sc[:5] == "virt_":
                table.learn(ev)
            elif sc == syscall:
                try:
                    hit = match(ev)
                    if hit is not None:
                        record(ev, hit)
                except Exception as exc:
                    rule.error(ev, exc)

    def emulator_vm(self, ev: ProcessEvent, entry: list[Any] | None) -> tuple[bool, str | None]:
        """(is the event's process an emulator, its VM) from the table (libvirt's vm-pid), the sVirt
        label, and the emulator's own command line (``-name guest=``)."""
        h = self.table.host(ev.host)
        label_vm = h.vm_of_label(text_field(ev.extra, "subj")) if h is not None else None
        if entry is not None and entry[EMU] == ev.pid:
            is_emulator, vm = True, entry[VM] or label_vm
        else:
            is_emulator, vm = ev.exe in self.emulators, label_vm
        if vm is None and ev.cmdline and (is_emulator or ev.exe in self.emulators):
            vm = guest_name(ev.cmdline)
        return is_emulator, vm


def observe_with_libvirt(
    rule: Rule, table: ProcTable, batch: Batch, record_type: str, extra_key: str
) -> None:
    """The fast path of a rule on one audit record type: every libvirt ``VIRT_*`` record teaches the
    host's process table; only the records of ``record_type`` (alone, or carried in ``extra`` under
    ``extra_key``) go through the rule's ``match``."""
    match, record = rule.match, rule.record
    for ev in batch.processes:
        sc = ev.syscall
        if sc[:5] == "virt_":
            table.learn(ev)
        elif sc == record_type or extra_key in ev.extra:
            try:
                hit = match(ev)
                if hit is not None:
                    record(ev, hit)
            except Exception as exc:
                rule.error(ev, exc)
