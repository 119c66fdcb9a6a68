"""A VM's emulator crashed: how many guest-to-host exploits' failed attempts show.

Source record: the kernel's ``type=ANOM_ABEND`` (``kernel/auditsc.c`` ``audit_core_dumps``,
written when a process ends on a signal that dumps core; fields ``auid uid gid ses subj pid comm
exe sig res``, Linux audit field dictionary). It comes without a ``SYSCALL`` record; the parser
makes it a process event with ``syscall="anom_abend"`` and ``sig`` in ``extra``.

Device-emulation exploits (VENOM CVE-2015-3456 in the floppy controller, the virtio/e1000/
vmxnet3 and USB heap overflows of QEMU's security advisories) corrupt qemu's heap: an attempt that
does not land ends in SIGSEGV or SIGABRT (glibc's heap checks, QEMU's assertions). A crash is not
proof, QEMU has ordinary bugs, so it scores below a seccomp kill (``crash_score``); the same VM
crashing again within the window (``repeat_crashes``, the attacker retrying after libvirt or the
tenant restarts it) scores ``repeat_score``; SIGSYS (31) is a seccomp kill whose own SECCOMP
record was not logged (``sigsys_score``).

``crash_signals`` are the fault signals (SIGILL 4, SIGTRAP 5, SIGABRT 6, SIGBUS 7, SIGFPE 8,
SIGSEGV 11, SIGSYS 31; signal(7)); SIGQUIT, SIGXCPU and SIGXFSZ also dump core but are sent by an
operator or a resource limit, not by a fault, and are left out. A clean stop (``virsh shutdown``,
``destroy``: SIGTERM/SIGKILL) writes no ANOM_ABEND at all.
"""

from __future__ import annotations

from typing import ClassVar, Final

from detectors.base import Batch
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.proctable import context_type, text_field
from detectors.rule import Hit, HitState, Rule
from detectors.rules.common import vm_or_host
from detectors.rules.vm_escape import EmulatorTable, attribute, escape_labels
from ingest.schema import Event, ProcessEvent

__all__ = ["EmulatorCrash"]

_SIGNAL_NAMES: Final = {
    3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV",
    24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS",
}  # fmt: skip


class EmulatorCrash(Rule):
    meta = DetectorMeta(
        id="vm_escape.emulator_crash",
        version="1.0.0",
        title="Emulator crashed",
        category="vm_escape",
        score=70,
        severity="high",
        attack=(
            technique("Privilege Escalation", "T1611", "Escape to Host"),
            technique("Privilege Escalation", "T1068", "Exploitation for Privilege Escalation"),
        ),
        kinds=frozenset({"process"}),
        description="An ANOM_ABEND audit record of a VM emulator (qemu-kvm, qemu-system-*) ending on a fault "
        "signal (SIGSEGV, SIGABRT, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS): a failed guest-to-host "
        "exploit's usual trace. Repeated crashes of one VM score higher.",
        false_positives=(
            "an ordinary QEMU bug or a host memory error (look for the same crash across VMs and tenants, "
            "and for MCE/EDAC messages on the host)",
        ),
        note="Keep the core dump (systemd-coredump or abrt) and the guest's disk; check the QEMU version "
        "against its security advisories and which virtual device the faulting thread was emulating.",
        maturity="incubating",
    )
    learned: ClassVar[tuple[str, ...]] = ("emu",)
    param_spec: ClassVar[ParamSpec] = {
        "crash_signals": list,
        "crash_score": int,
        "repeat_crashes": int,
        "repeat_score": int,
        "sigsys_score": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.emu = EmulatorTable(config)
        self.svirt_types = frozenset(config.shared_value("svirt_domain_types", list))
        self.signals = frozenset(int(s) for s in self.params["crash_signals"])
        self.crash_score = self.params["crash_score"]
        self.repeat_crashes = self.params["repeat_crashes"]
        self.repeat_score = self.params["repeat_score"]
        self.sigsys_score = self.params["sigsys_score"]

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        entry = self.emu.learn_light(ev)
        if ev.syscall != "anom_abend":
            return None
        sig_text = text_field(ev.extra, "sig")
        sig = int(sig_text) if sig_text is not None and sig_text.isdigit() and len(sig_text) < 4 else -1
        if sig not in self.signals:
            return None
        is_emulator, table_vm = self.emu.emulator_vm(ev, entry)
        if not is_emulator and context_type(text_field(ev.extra, "subj")) not in self.svirt_types:
            return None
        vm, tenant = attribute(self.reg, table_vm, ev)
        name = _SIGNAL_NAMES.get(sig, f"signal {sig}")
        labels = escape_labels(self.reg, ev.host, vm, "emulator_crash", ev.exe)
        return Hit(vm_or_host(vm, ev.host), tenant, f"{name} in {ev.exe or 'emulator'}", labels)

    def observe_batch(self, batch: Batch) -> None:
        """Fast path of ``match``: learn libvirt's records; only ``anom_abend`` records go further."""
        self.emu.observe_virt(self, batch, "anom_abend")

    def score_for(self, st: HitState) -> int:
        if any(d.startswith("SIGSYS ") for d in st.details):
            return self.sigsys_score
        if st.count >= self.repeat_crashes:
            return self.repeat_score
        return self.crash_score
