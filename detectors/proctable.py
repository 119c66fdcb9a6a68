"""A per-host process table learned from every process event, for the VM-escape rules.

Why: on a real KVM host the emulator (qemu) starts days before the audit log an analyst has, so
its ``execve`` is never seen and a parser can only fill ``parent_exe`` for parents whose own
``execve`` is in the log. The shell a compromised emulator spawns then looks like any shell. This
table remembers, per host (``ProcessEvent.host``; the job keys process events by host), each pid
that any record names with its ``exe`` (``SYSCALL`` of every syscall, ``SECCOMP``,
``ANOM_ABEND``, ...), its parent, and the VM it works for, so a child or any descendant of an
emulator is known as such whenever it appears.

What it learns, and from where (record formats as auditd and libvirt write them):

- every event with a pid: the pid's ``exe`` and ``ppid``; a new pid inherits from its parent's
  entry the emulator it descends from, that emulator's VM, the executable of the emulator's
  direct child on the way down (the *branch*: a helper such as ``qemu-bridge-helper`` and its own
  children are not suspicious), and whether a management daemon (``shared.manager_exes``:
  libvirtd, virtqemud) is an ancestor with no emulator in between (operator jobs that libvirt
  runs: ``qemu-img`` snapshots, ``dd``/``virsh`` backups);
- an emulator's VM from its command line, ``-name guest=NAME,...`` (libvirt) or ``-name NAME``
  (QEMU ``-name`` option, qemu-options.hx), else from libvirt's records, else from the emulator
  event's own ``vm``;
- libvirt's audit records (``src/conf/domain_audit.c``, record types of the Linux audit
  ``VIRT_*`` family): ``VIRT_CONTROL op=start ... vm="NAME" uuid=... vm-pid=PID`` names the
  emulator pid of a VM (``op=stop`` forgets it); ``VIRT_MACHINE_ID ... vm-ctx=LABEL
  img-ctx=LABEL model=selinux`` gives the sVirt MCS category pair of the VM's process and images
  (``system_u:system_r:svirt_t:s0:c12,c345``: SELinux sVirt, one random category pair per VM), so
  any later record whose ``subj`` carries that pair is the VM's; ``VIRT_RESOURCE resrc=disk
  new-disk=PATH`` (reasons start, attach, snapshot...) names the VM's own disks, overlays
  included; ``resrc=net`` records mark a guest interface being set up (``attach_ts``).

Bounds: at most ``max_pids`` pids per host (two generations, ``HostProcs``: a pid not seen
while ``max_pids / 2`` new pids arrived is dropped, so a long-lived emulator that keeps producing
records stays), ``max_hosts`` hosts (oldest evicted),
``max_vms`` sVirt pairs and VMs with learned disks per host, ``max_disks`` disks per VM. A pid is
forgotten when it exits (``exit_group``/``exit``) and an emulator when libvirt stops its VM.
Entries are plain lists in dicts, so the table pickles with the engine's keyed state.
"""

from __future__ import annotations

from typing import Any, Final

from ingest.schema import ProcessEvent

__all__ = [
    "BRANCH",
    "EMU",
    "EXE",
    "MGR",
    "PPID",
    "VM",
    "HostProcs",
    "ProcTable",
    "context_type",
    "guest_name",
    "mcs_categories",
    "text_field",
]

# Fields of a table entry (a list, so it pickles small and updates in place).
EXE: Final = 0  # the pid's executable as last seen ("" when no record named it yet)
PPID: Final = 1  # its parent pid (0 unknown)
EMU: Final = 2  # pid of the emulator it is or descends from (0: none known)
VM: Final = 3  # the VM of that emulator (None unknown)
BRANCH: Final = 4  # exe of the emulator's direct child on its lineage ("" for that child itself);
#                   for an emulator that exec'd another program in place, the emulator's exe
MGR: Final = 5  # a management daemon is an ancestor, with no emulator in between

_EXEC: Final = frozenset({"execve", "execveat"})
_EXIT: Final = frozenset({"exit_group", "exit"})
_SPECIAL: Final = _EXEC | _EXIT
_VIRT_CONTROL: Final = "virt_control"
_VIRT_MACHINE_ID: Final = "virt_machine_id"
_VIRT_RESOURCE: Final = "virt_resource"
_ATTACH_REASONS: Final = frozenset({"start", "attach", "open"})
_CMDLINE_CACHE: Final = 256


def text_field(extra: Any, name: str) -> str | None:
    """A text field of ``extra`` as auditd writes it, without the quotes libvirt's encoder adds."""
    if not isinstance(extra, dict):
        return None
    value = extra.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        return None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value if value not in ("?", "(null)") else None


def _int_field(extra: Any, name: str) -> int:
    text = text_field(extra, name)
    return int(text) if text is not None and text.isdigit() and len(text) < 12 else 0


def context_type(ctx: str | None) -> str | None:
    """The type of an SELinux context ``user:role:type:level`` (``svirt_t``), else None."""
    if not ctx:
        return None
    parts = ctx.split(":", 3)
    return parts[2] if len(parts) >= 3 else None


def mcs_categories(ctx: str | None) -> frozenset[int] | None:
    """The MCS categories of a context's level: ``...:s0:c12,c345`` -> {12, 345}; ranges
    (``c0.c1023``) expanded (capped at 1024 categories); ``...:s0`` -> empty set; None when the
    context has no level or a category is malformed."""
    if not ctx:
        return None
    parts = ctx.split(":", 3)
    if len(parts) < 4:
        return None
    _, _, cats = parts[3].partition(":")
    if not cats:
        return frozenset()
    out: set[int] = set()
    for token in cats.split(","):
        low, dot, high = token.partition(".")
        if low[:1] != "c" or not low[1:].isdigit():
            return None
        a = int(low[1:])
        if dot:
            if high[:1] != "c" or not high[1:].isdigit():
                return None
            b = int(high[1:])
            if b < a or b - a > 1024:
                return None
            out.update(range(a, b + 1))
        else:
            out.add(a)
    return frozenset(out)


def _mcs_key(ctx: str | None) -> str | None:
    cats = mcs_categories(ctx)
    if not cats:
        return None
    return ",".join(str(c) for c in sorted(cats))


def guest_name(cmdline: str) -> str | None:
    """The guest name of a QEMU command line: ``-name guest=NAME,debug-threads=on`` or ``-name NAME``."""
    at = cmdline.find("-name ")
    if at < 0:
        return None
    rest = cmdline[at + 6 :].lstrip()
    token = rest.split(" ", 1)[0] if rest else ""
    if token.startswith("guest="):
        token = token[6:]
    elif "=" in token.split(",", 1)[0]:
        return None  # another sub-option first and no guest= (not a name)
    name = token.split(",", 1)[0]
    return name or None


def _drive_paths(cmdline: str) -> list[str]:
    """Disk images on an emulator command line: ``-drive file=PATH,...`` and libvirt's JSON
    ``-blockdev {"driver":"file","filename":"PATH",...}``."""
    out = []
    for mark, stops in (("file=", ", \t"), ('"filename":"', '"')):
        start = cmdline.find(mark)
        while start >= 0:
            start += len(mark)
            end = min((i for i in (cmdline.find(c, start) for c in stops) if i >= 0), default=len(cmdline))
            if end > start:
                out.append(cmdline[start:end])
            start = cmdline.find(mark, end)
    return out


class HostProcs:
    """What the table knows about one host. Pids live in two generations: ``procs`` (seen since the
    last turn) and ``older``; a pid seen again moves back to ``procs``, and when ``procs`` holds
    half the cap the generations turn and the older one is dropped. So the table keeps at most
    ``max_pids`` pids, every pid seen within the last half-cap of new pids survives, and each
    step is a dict operation or two (an LRU's exact order would cost more per event)."""

    __slots__ = ("attach_ts", "disk_vm", "mcs_vm", "older", "procs", "vm_disks")

    def __init__(self) -> None:
        self.procs: dict[int, list[Any]] = {}
        self.older: dict[int, list[Any]] = {}
        self.mcs_vm: dict[str, str] = {}  # sorted categories "12,345" -> VM
        self.vm_disks: dict[str, set[str]] = {}  # VM -> disks libvirt or its -drive list named
        self.disk_vm: dict[str, str] = {}  # the reverse of vm_disks
        self.attach_ts = -1  # event time of the last guest interface set-up (libvirt net records)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.procs, self.older, self.mcs_vm, self.vm_disks, self.attach_ts)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.procs, self.older, self.mcs_vm, self.vm_disks, self.attach_ts = state
        self.disk_vm = {d: vm for vm, disks in self.vm_disks.items() for d in disks}

    def __len__(self) -> int:
        return len(self.procs) + len(self.older)

    def __contains__(self, pid: int) -> bool:
        return pid in self.procs or pid in self.older

    def get(self, pid: int) -> list[Any] | None:
        """A pid's entry (no change of generation: for reading)."""
        e = self.procs.get(pid)
        return e if e is not None else self.older.get(pid)

    def put(self, pid: int, e: list[Any], max_pids: int) -> None:
        procs = self.procs
        procs[pid] = e
        if len(procs) >= max(1, max_pids // 2):
            self.older = procs
            self.procs = {}

    def pop(self, pid: int) -> list[Any] | None:
        e = self.procs.pop(pid, None)
        old = self.older.pop(pid, None)
        return e if e is not None else old

    def vm_of_label(self, subj: str | None) -> str | None:
        """The VM whose sVirt category pair the label carries (learned from VIRT_MACHINE_ID)."""
        if not subj or not self.mcs_vm:
            return None
        key = _mcs_key(subj)
        return self.mcs_vm.get(key) if key else None


class ProcTable:
    """Per-host process table; ``learn(ev)`` returns the entry of ``ev.pid`` after the event."""

    __slots__ = (
        "_cmdlines",
        "_hosts",
        "_last",
        "emulators",
        "managers",
        "max_disks",
        "max_hosts",
        "max_pids",
        "max_vms",
    )

    def __init__(
        self,
        emulators: frozenset[str],
        managers: frozenset[str],
        *,
        max_pids: int,
        max_hosts: int,
        max_vms: int = 4096,
        max_disks: int = 64,
    ) -> None:
        self.emulators = emulators
        self.managers = managers
        self.max_pids = max(1, max_pids)
        self.max_hosts = max(1, max_hosts)
        self.max_vms = max_vms
        self.max_disks = max_disks
        self._hosts: dict[str, HostProcs] = {}
        self._cmdlines: dict[str, tuple[str | None, list[str]]] = {}  # a cache, not state: not pickled
        self._last: tuple[str | None, HostProcs | None] = (None, None)  # the last host looked up

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self._hosts, self.emulators, self.managers, self.max_pids, self.max_hosts, self.max_vms,
            self.max_disks,
        )  # fmt: skip

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self._hosts, self.emulators, self.managers, self.max_pids, self.max_hosts, self.max_vms,
         self.max_disks) = state  # fmt: skip
        self._cmdlines = {}
        self._last = (None, None)

    def adopt(self, old: ProcTable) -> None:
        """Take over what ``old`` learned (its hosts' processes, VMs, disks and sVirt pairs); this
        table's vocabulary and bounds stay."""
        self._hosts = old._hosts
        self._last = (None, None)

    # --- reading -------------------------------------------------------------------------------
    def host(self, host: str | None) -> HostProcs | None:
        return self._hosts.get(host or "")

    def size(self) -> int:
        """Pids held over all hosts."""
        return sum(len(h) for h in self._hosts.values())

    def vm_disks(self, host: str | None, vm: str | None) -> set[str]:
        h = self._hosts.get(host or "")
        if h is None or not vm:
            return set()
        return h.vm_disks.get(vm) or set()

    # --- learning ------------------------------------------------------------------------------
    def _host(self, key: str) -> HostProcs:
        h = self._hosts.get(key)
        if h is None:
            if len(self._hosts) >= self.max_hosts:
                del self._hosts[next(iter(self._hosts))]
            h = self._hosts[key] = HostProcs()
        self._last = (key, h)
        return h

    def learn(self, ev: ProcessEvent) -> list[Any] | None:
        """Fold one process event into its host's table; the pid's entry (None for libvirt's own
        records and events without a pid). An exiting pid's entry is returned and forgotten."""
        key = ev.host or ""
        last_key, last_h = self._last
        h = last_h if last_h is not None and last_key == key else self._host(key)
        syscall = ev.syscall
        pid = ev.pid
        if pid > 0 and syscall not in _SPECIAL:
            e = h.procs.get(pid)
            if e is not None:  # the common case: a known pid, no exec, no exit
                exe = ev.exe
                if (not exe or exe == e[EXE]) and e[PPID]:
                    return e
        if syscall[:5] == "virt_":
            self._virt(h, ev, syscall)
            return None
        if pid <= 0:
            return None
        e = h.procs.get(pid)
        if e is None:
            e = h.older.pop(pid, None)
            if e is not None:
                h.put(pid, e, self.max_pids)  # seen again: back to the young generation
        exe = ev.exe
        ppid = ev.ppid
        if e is not None and syscall in _EXEC and ppid and e[PPID] and ppid != e[PPID] and ppid != 1:
            e = None  # a new process under a reused pid
        if e is None:
            e = self._new(h, ev, pid, exe, ppid)
            h.pop(pid)
            h.put(pid, e, self.max_pids)
        else:
            if ppid and not e[PPID]:
                e[PPID] = ppid
            if exe and exe != e[EXE]:
                if e[EMU] == pid and e[EXE] in self.emulators:
                    e[BRANCH] = e[EXE]  # the emulator exec'd another program in place: keep what it was
                e[EXE] = exe
                if exe in self.emulators and e[EMU] != pid:
                    self._make_emulator(h, ev, e, pid)
            elif e[EMU] == pid and e[VM] is None:
                e[VM] = self._emulator_vm(h, ev)
        if syscall in _EXIT:
            h.pop(pid)
        return e

    def _new(self, h: HostProcs, ev: ProcessEvent, pid: int, exe: str, ppid: int) -> list[Any]:
        e: list[Any] = [exe, ppid, 0, None, "", False]
        if exe in self.emulators:
            self._make_emulator(h, ev, e, pid)
            return e
        parent = h.get(ppid) if ppid else None
        if parent is not None:
            if parent[EMU]:
                e[EMU] = parent[EMU]
                e[VM] = parent[VM]
                # a direct child of the emulator is its own branch; deeper ones keep it
                e[BRANCH] = "" if parent[EMU] == ppid else (parent[BRANCH] or parent[EXE])
            else:
                e[MGR] = parent[MGR] or parent[EXE] in self.managers
        elif ev.parent_exe in self.emulators:
            e[EMU] = ppid  # the parser named the parent: an emulator this table has not seen
        elif ev.parent_exe in self.managers:
            e[MGR] = True
        if not e[EMU] and h.mcs_vm:
            vm = h.vm_of_label(text_field(ev.extra, "subj"))
            if vm is not None:  # runs under a VM's sVirt label: that VM's emulator (or its child)
                e[VM] = vm
        return e

    def _make_emulator(self, h: HostProcs, ev: ProcessEvent, e: list[Any], pid: int) -> None:
        e[EMU] = pid
        e[BRANCH] = ""
        e[MGR] = False
        e[VM] = self._emulator_vm(h, ev) or e[VM]

    def _emulator_vm(self, h: HostProcs, ev: ProcessEvent) -> str | None:
        cmdline = ev.cmdline
        parsed = self._parse_cmdline(cmdline) if cmdline else None
        vm = parsed[0] if parsed is not None else None
        if vm is None:
            vm = h.vm_of_label(text_field(ev.extra, "subj")) or ev.vm
        if vm is not None and parsed is not None and parsed[1]:
            self._add_disks(h, vm, parsed[1])
        return vm

    def _parse_cmdline(self, cmdline: str) -> tuple[str | None, list[str]]:
        """(guest name, disks) of an emulator command line, cached: one VM's records repeat it."""
        cache = self._cmdlines
        hit = cache.get(cmdline)
        if hit is None:
            if len(cache) >= _CMDLINE_CACHE:
                cache.clear()
            hit = cache[cmdline] = (guest_name(cmdline), _drive_paths(cmdline) if "file" in cmdline else [])
        return hit

    def _add_disks(self, h: HostProcs, vm: str, paths: list[str]) -> None:
        disks = h.vm_disks.get(vm)
        if disks is None:
            if len(h.vm_disks) >= self.max_vms:
                for d in h.vm_disks.pop(next(iter(h.vm_disks))):
                    h.disk_vm.pop(d, None)
            disks = h.vm_disks[vm] = set()
        for p in paths:
            if p not in disks and len(disks) < self.max_disks:
                disks.add(p)
                h.disk_vm[p] = vm

    def _virt(self, h: HostProcs, ev: ProcessEvent, syscall: str) -> None:
        extra = ev.extra
        vm = text_field(extra, "vm")
        if not vm:
            return
        if syscall == _VIRT_CONTROL:
            vm_pid = _int_field(extra, "vm-pid")
            if vm_pid <= 0:
                return
            op = text_field(extra, "op")
            if op == "stop":
                h.pop(vm_pid)
                return
            e = h.pop(vm_pid) or ["", 0, 0, None, "", False]
            e[EMU], e[VM], e[BRANCH], e[MGR] = vm_pid, vm, "", False
            h.put(vm_pid, e, self.max_pids)
            if op == "start":
                h.attach_ts = ev.ts
        elif syscall == _VIRT_MACHINE_ID:
            for name in ("vm-ctx", "img-ctx"):
                key = _mcs_key(text_field(extra, name))
                if key is not None:
                    if key not in h.mcs_vm and len(h.mcs_vm) >= self.max_vms:
                        del h.mcs_vm[next(iter(h.mcs_vm))]
                    h.mcs_vm[key] = vm
        elif syscall == _VIRT_RESOURCE:
            resrc = text_field(extra, "resrc")
            if resrc == "disk":
                new = text_field(extra, "new-disk")
                if new:
                    self._add_disks(h, vm, [new])
            elif resrc == "net" and text_field(extra, "reason") in _ATTACH_REASONS:
                h.attach_ts = ev.ts
