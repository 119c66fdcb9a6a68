"""The auditd records that come without a SYSCALL record, and what VM-escape signals need from them.

``ingest.parsers.auditd`` groups a raw ``audit.log`` by event; this module reads the records the
kernel, the SELinux/AppArmor LSM and libvirt write on their own (or beside a SYSCALL record), in
the formats their sources print:

- ``SECCOMP`` (kernel ``audit_seccomp``): ``auid uid gid ses subj pid comm exe sig arch syscall
  compat ip code``; ``code`` is the filter's return value, whose top 16 bits are the action
  (``SECCOMP_RET_*`` in ``include/uapi/linux/seccomp.h``: ``0x80000000`` kill_process,
  ``0x00000000`` kill_thread, ``0x00030000`` trap, ``0x0005....`` errno, ``0x7fc00000``
  user_notif, ``0x7ff00000`` trace, ``0x7ffc0000`` log, ``0x7fff0000`` allow). QEMU's sandbox
  (``-sandbox on,...``, ``qemu-seccomp.c``) kills the process (``SCMP_ACT_KILL_PROCESS``, hence
  ``sig=31``, SIGSYS) or fails the call with an errno (resource control syscalls).
- ``ANOM_ABEND`` (kernel ``audit_core_dumps``): ``auid uid gid ses subj pid comm exe sig res=1``.
- ``ANOM_PROMISCUOUS`` (``net/core/dev.c``): ``dev prom old_prom auid uid gid ses``, no pid and no
  exe; logged in the context of the syscall that changed the flag, so a SYSCALL record (``ioctl``,
  ``setsockopt``, ``sendmsg`` of the process) usually shares its serial: that one names the process.
- ``AVC`` (SELinux): ``avc:  denied  { read write } for  pid= comm= path=|name= dev= ino=
  scontext= tcontext= tclass= permissive=``; the decision and the braced permission list are not
  ``key=value`` text and are read apart.
- libvirt's ``VIRT_CONTROL`` / ``VIRT_MACHINE_ID`` / ``VIRT_RESOURCE`` (``src/conf/domain_audit.c``,
  sent through libaudit as user-space records, so their fields sit inside ``msg='...'``):
  ``virt=kvm op=start reason=booted vm="NAME" uuid=U vm-pid=P``, ``virt=kvm vm="NAME" uuid=U
  vm-ctx=LABEL img-ctx=LABEL model=selinux|apparmor``, ``virt=kvm resrc=disk|net|mem|vcpu|dev|
  cgroup|... reason=start vm="NAME" uuid=U old-disk="?" new-disk="/path"``; libaudit appends
  ``exe= hostname= addr= terminal= res=success|failed``. ``vm=`` and paths are written by
  ``virAuditEncode`` (``audit_encode_nv_string``): quoted, or hex when the text needs encoding.
- ENRICHED logs (``log_format = ENRICHED`` in ``auditd.conf``, the default since audit 2.8 upstream)
  append, after a 0x1D byte, the interpreted values under upper-case names (``AUID="alice"
  UID="root" ARCH=x86_64 SYSCALL=execve``).

Field names are kept as written; values are unquoted, hex-decoded for the fields auditd or libvirt
encode, decimal text within 64 bits becomes an integer (as the SYSCALL path does), anything else
stays text, ``?`` and ``(null)`` included. Bounded, since the input may be hostile: at most
``MAX_FIELDS`` (64) fields per record (the rest are counted in ``fields_dropped``), values clipped
to ``MAX_VALUE`` (1024) characters (counted in ``values_clipped``), at most ``MAX_PERMS`` (32) AVC
permissions and ``MAX_AVCS`` (8) AVC records kept per syscall event.

The emulator's VM: ``emulator_vm`` reads QEMU's ``-name guest=NAME,...`` (or ``-name NAME``, with
``,,`` as an escaped comma, QEMU's option syntax) from a command line; ``label_key`` turns an
SELinux context into its type and MLS level (``svirt_t:s0:c12,c345``: sVirt gives each VM a
category pair, and containers draw pairs from the same space, so the type is part of the key) or an
AppArmor label into itself (``libvirt-UUID``).
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = [
    "COMPANIONS",
    "MAX_AVCS",
    "MAX_FIELDS",
    "MAX_PERMS",
    "MAX_VALUE",
    "avc_head",
    "emulator_vm",
    "is_emulator",
    "is_signal",
    "label_key",
    "record_extra",
    "seccomp_action",
]

MAX_FIELDS: Final = 64
MAX_VALUE: Final = 1024
MAX_PERMS: Final = 32
MAX_AVCS: Final = 8

COMPANIONS: Final = frozenset({"EXECVE", "CWD", "PATH", "SOCKADDR", "PROCTITLE", "EOE"})
"""Records that only describe the event they belong to: folded into it, never events of their own."""

_HEX: Final = re.compile(r"^(?:[0-9A-F]{2})+$")
_FIELD: Final = re.compile(r"([\w\[\]-]+)=(\"[^\"]*\"|'[^']*'|\S*)")
_AVC: Final = re.compile(r"avc:\s+(denied|granted)\s+\{([^}]*)\}")
# Fields auditd (``audit_log_untrustedstring``) or libvirt (``virAuditEncode``) hex-encode when
# their text needs it; anything else unquoted is taken as written.
_ENCODED: Final = frozenset(
    {"exe", "comm", "cwd", "name", "path", "proctitle", "acct", "key", "cmd", "vm", "new-disk",
     "old-disk", "new-fs", "old-fs", "new-chardev", "old-chardev", "new-net", "old-net", "device",
     "disk", "chardev", "cgroup", "ocomm", "data", "unit", "grantors"}
)  # fmt: skip
_TEXT: Final = frozenset({"a0", "a1", "a2", "a3", "arch", "code", "ip", "dev", "uuid", "old_prom"})
_SECCOMP_ACTIONS: Final = {
    0x80000000: "kill_process",
    0x00000000: "kill_thread",
    0x00030000: "trap",
    0x00050000: "errno",
    0x7FC00000: "user_notif",
    0x7FF00000: "trace",
    0x7FFC0000: "log",
    0x7FFF0000: "allow",
}
SECCOMP_BLOCKED: Final = frozenset({"kill_process", "kill_thread", "trap", "errno"})


def is_signal(rtype: str) -> bool:
    """Records that are events of their own even beside a SYSCALL record of the same serial."""
    return rtype.startswith(("ANOM_", "VIRT_")) or rtype == "SECCOMP"


def is_emulator(exe: str) -> bool:
    """QEMU's KVM emulator binary: ``qemu-kvm`` (RHEL: /usr/libexec/qemu-kvm) or ``qemu-system-*``."""
    if "qemu" not in exe:
        return False
    base = exe.rpartition("/")[2]
    return base == "qemu-kvm" or base.startswith("qemu-system-")


def emulator_vm(cmdline: str) -> tuple[str | None, str | None]:
    """(VM name, VM uuid) from a QEMU command line: ``-name guest=NAME,debug-threads=on`` or
    ``-name NAME``; ``-uuid UUID``."""
    args = cmdline.split()
    name = uuid = None
    for i, arg in enumerate(args[:-1]):
        if arg == "-name" and name is None:
            parts = args[i + 1].replace(",,", "\x00").split(",")
            for k, part in enumerate(parts):
                if part.startswith("guest="):
                    name = part[6:]
                    break
                if k == 0 and "=" not in part:
                    name = part
                    break
            name = name.replace("\x00", ",")[:MAX_VALUE] if name else None
        elif arg == "-uuid" and uuid is None:
            uuid = args[i + 1][:64]
    return name, uuid


def label_key(label: str | None) -> str | None:
    """The part of a security label that tells one VM from another: SELinux ``user:role:type:level``
    gives ``type:level``; an AppArmor label (``libvirt-UUID``) is its own key."""
    if not label or label in ("?", "unconfined"):
        return None
    parts = label.split(":", 3)
    if len(parts) == 4:
        return parts[2] + ":" + parts[3]
    return label


def seccomp_action(code: Any) -> str | None:
    """The ``SECCOMP_RET_*`` action of a SECCOMP record's ``code`` (``0x80000000``)."""
    if not isinstance(code, str) or not code.startswith("0x"):
        return None
    try:
        value = int(code, 16)
    except ValueError:
        return None
    return _SECCOMP_ACTIONS.get(value & 0xFFFF0000)


def avc_head(text: str) -> tuple[str, list[str]] | None:
    """(``denied``/``granted``, permissions) of an AVC record's ``avc:  denied  { read write }``."""
    m = _AVC.search(text, 0, 1024)  # the head opens the record; a hostile one is not scanned whole
    if m is None:
        return None
    return m.group(1), m.group(2).split()[:MAX_PERMS]


def _value(name: str, value: str) -> tuple[Any, bool]:
    """A field's value as the module says, and whether it was clipped."""
    if value[:1] in ('"', "'"):
        return value[1:-1][:MAX_VALUE], len(value) - 2 > MAX_VALUE
    if name in _ENCODED and _HEX.match(value):
        text = bytes.fromhex(value[: 2 * MAX_VALUE]).decode("utf-8", "backslashreplace")
        return text, len(value) > 2 * MAX_VALUE
    if value[-1:].isdigit() and name not in _TEXT:
        digits = value[1:] if value[:1] == "-" else value
        if digits.isascii() and digits.isdigit() and len(digits) < 19:
            return int(value), False
    return value[:MAX_VALUE], len(value) > MAX_VALUE


def record_extra(fields: dict[str, str], enriched: str) -> dict[str, Any]:
    """Every field of a record (those inside a user-space record's ``msg='...'`` too; the outer
    one wins a name both have) and its ENRICHED upper-case fields, bounded as the module says."""
    out: dict[str, Any] = {}
    dropped = clipped = 0
    inner = fields.get("msg")
    if inner is not None and inner[:1] == "'":
        items = _pairs(inner[1:-1])
        items.extend(kv for kv in fields.items() if kv[0] != "msg")
    else:
        items = list(fields.items())
    if enriched:
        items.extend(kv for kv in _pairs(enriched) if kv[0].isupper() and kv[0] != "SADDR")
    for name, raw in items:
        if len(out) >= MAX_FIELDS and name not in out:
            dropped += 1
            continue
        if raw:
            out[name], cut = _value(name, raw)
            clipped += cut
        else:
            out[name] = raw
    if dropped:
        out["fields_dropped"] = dropped
    if clipped:
        out["values_clipped"] = clipped
    return out


def _pairs(text: str) -> list[tuple[str, str]]:
    return _FIELD.findall(text)
