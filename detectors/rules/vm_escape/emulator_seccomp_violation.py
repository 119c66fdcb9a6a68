"""QEMU's seccomp sandbox stopped the emulator making a system call it never makes in normal use.

Source record: the kernel's ``type=SECCOMP`` audit record (``kernel/seccomp.c`` ``seccomp_log``,
``audit_seccomp``; fields in the Linux audit field dictionary, linux-audit/audit-documentation):
``auid uid gid ses subj pid comm exe sig arch syscall compat ip code``. It comes without a
``SYSCALL`` record; the parser makes it a process event with ``syscall="seccomp"`` and the record's
fields in ``extra`` (``syscall`` there is the number of the blocked call, ``code`` the filter's
action).

QEMU's ``-sandbox on`` (libvirt turns it on by default, ``seccomp_sandbox`` in qemu.conf) installs
a deny-list of syscall groups (obsolete, elevateprivileges, spawn, resourcecontrol; QEMU
``-sandbox`` documentation and ``softmmu/qemu-seccomp.c``) whose action is ``SCMP_ACT_TRAP``,
upgraded to ``SECCOMP_RET_KILL_PROCESS`` where the kernel supports it. A guest-triggered exploit
whose payload runs inside qemu (``execve("/bin/sh")``, ``setuid``, ``fork``) is killed there: the
SECCOMP record is often the only trace of a failed escape, and of a successful one's first step.

Scores by the filter's action (``code & 0xffff0000``, ``include/uapi/linux/seccomp.h``):
``kill_score`` for KILL_PROCESS (0x80000000), KILL_THREAD (0) and TRAP (0x00030000, SIGSYS, which
qemu does not handle); ``errno_score`` for ERRNO (0x00050000: the call failed, the process lives);
``log_score`` for LOG/TRACE/USER_NOTIF and unknown codes. ``expected_errno_syscalls`` lists calls
QEMU's filter answers with an errno by design (``clone3`` -> ENOSYS since QEMU 6.2/7.0, so that
glibc falls back to ``clone``, which the filter can inspect): those are not violations.

Subject: an emulator (``shared.emulator_exes``, a pid the process table knows as one, or a process
whose ``subj`` label is an sVirt domain type, ``shared.svirt_domain_types``). Seccomp records of
other programs (systemd's ``SystemCallFilter=``, browsers, containers) are not this rule's.
"""

from __future__ import annotations

from typing import ClassVar, Final

from detectors.base import Batch
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.proctable import EXE, context_type, text_field
from detectors.rule import Hit, HitState, Rule
from detectors.rules.common import vm_or_host
from detectors.rules.vm_escape import EmulatorTable, attribute, escape_labels
from ingest.parsers.syscalls import syscall_name
from ingest.schema import Event, ProcessEvent

__all__ = ["EmulatorSeccompViolation"]

_ACTION_MASK: Final = 0xFFFF0000
_KILL_ACTIONS: Final = {0x80000000: "kill_process", 0x00000000: "kill_thread", 0x00030000: "trap"}
_ERRNO: Final = 0x00050000
_OTHER_ACTIONS: Final = {0x7FF00000: "trace", 0x7FFC0000: "log", 0x7FC00000: "user_notif"}
_SIGSYS: Final = 31


def seccomp_action(extra: object) -> str:
    """The filter action of a SECCOMP record: kill_process, kill_thread, trap, errno, log, ..."""
    code = text_field(extra, "code")
    if code is None:
        sig = text_field(extra, "sig")
        return "kill_thread" if sig == str(_SIGSYS) else "unknown"
    try:
        value = int(code, 16) if code.lower().startswith("0x") else int(code)
    except ValueError:
        return "unknown"
    action = value & _ACTION_MASK
    if action in _KILL_ACTIONS:
        return _KILL_ACTIONS[action]
    if action == _ERRNO:
        return "errno"
    return _OTHER_ACTIONS.get(action, "unknown")


def blocked_call(extra: object) -> str:
    """Name of the blocked syscall (x86_64 numbers are named; the ENRICHED name wins)."""
    name = text_field(extra, "SYSCALL")
    if name:
        return name
    number = text_field(extra, "syscall")
    if number is None or not number.isdigit() or len(number) > 6:
        return number or "?"
    arch = text_field(extra, "arch") or "c000003e"
    return syscall_name(int(number), "c000003e" if arch == "x86_64" else arch)


class EmulatorSeccompViolation(Rule):
    meta = DetectorMeta(
        id="vm_escape.emulator_seccomp_violation",
        version="1.0.0",
        title="Emulator violated its seccomp sandbox",
        category="vm_escape",
        score=95,
        severity="critical",
        attack=(
            technique("Privilege Escalation", "T1611", "Escape to Host"),
            technique("Privilege Escalation", "T1068", "Exploitation for Privilege Escalation"),
        ),
        kinds=frozenset({"process"}),
        description="A SECCOMP audit record of a VM emulator: QEMU's -sandbox filter killed (or refused) a "
        "system call qemu never makes in normal operation, such as execve, fork or setuid from a "
        "guest-triggered exploit's payload.",
        false_positives=(
            "a QEMU build whose filter denies a call a new feature needs (visible as the same syscall on "
            "every VM after an upgrade): add it to expected_errno_syscalls if it is an errno",
        ),
        note="Treat the VM as hostile: keep the guest's disk and memory (virsh dump) before restarting it, "
        "compare the blocked syscall with the exploit's needs (execve/clone: spawning; setuid: privilege), "
        "and check other VMs of the tenant for the same.",
        maturity="incubating",
    )
    learned: ClassVar[tuple[str, ...]] = ("emu",)
    param_spec: ClassVar[ParamSpec] = {
        "kill_score": int,
        "errno_score": int,
        "log_score": int,
        "expected_errno_syscalls": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.emu = EmulatorTable(config)
        self.svirt_types = frozenset(config.shared_value("svirt_domain_types", list))
        self.kill_score = self.params["kill_score"]
        self.errno_score = self.params["errno_score"]
        self.log_score = self.params["log_score"]
        self.expected_errno = frozenset(self.params["expected_errno_syscalls"])

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        entry = self.emu.learn_light(ev)
        if ev.syscall != "seccomp":
            return None
        is_emulator, table_vm = self.emu.emulator_vm(ev, entry)
        if not is_emulator and context_type(text_field(ev.extra, "subj")) not in self.svirt_types:
            return None
        action = seccomp_action(ev.extra)
        call = blocked_call(ev.extra)
        if action == "errno" and call in self.expected_errno:
            return None
        vm, tenant = attribute(self.reg, table_vm, ev)
        labels = escape_labels(
            self.reg, ev.host, vm, f"seccomp_{action}", ev.exe or (entry[EXE] if entry else "")
        )
        return Hit(vm_or_host(vm, ev.host), tenant, f"{action} {call}", labels)

    def observe_batch(self, batch: Batch) -> None:
        """Fast path of ``match``: learn libvirt's records; only ``seccomp`` records go further."""
        self.emu.observe_virt(self, batch, "seccomp")

    def score_for(self, st: HitState) -> int:
        actions = {d.split(" ", 1)[0] for d in st.details}
        if actions & set(_KILL_ACTIONS.values()):
            return self.kill_score
        if "errno" in actions:
            return self.errno_score
        return self.log_score
