"""Linux auditd raw ``audit.log`` -> process events (and auth events for USER_AUTH/USER_LOGIN).

A kernel audit event is several lines sharing ``msg=audit(SECONDS.MILLIS:SERIAL)``: SYSCALL, then
EXECVE, CWD, PATH (one per item), SOCKADDR, PROCTITLE, closed by EOE. Lines are grouped by
(node, timestamp, serial), and a group is finished (its events are below) when EOE arrives, when
more than ``max_pending`` groups are open (records of an event are written together, so the
oldest is done), or at the end of input; a user-space record (libaudit's ``msg='...'``: PAM, libvirt) is an
event alone and is finished at once. ``node=`` (multi-host logging) names the host or VM.

Values that contain spaces or unprintable bytes are hex-encoded by auditd (``a1=2D2D636F6C6F72``,
``proctitle=...`` with NUL-separated argv); quoted values are literal; long EXECVE arguments come
as ``a1_len=N a1[0]=.. a1[1]=..``. Syscall numbers are named for x86_64 (``arch=c000003e``);
the ENRICHED log format's ``SYSCALL=`` name is used when present, and its other upper-case fields
(``AUID="alice" UID="root"``) are kept in ``extra``. ``success=yes/no`` is the result.

Every record becomes an event or is folded into one; none is dropped (issue 20, VM escape
signals). A group with a SYSCALL record is one process event, into which its companions (EXECVE,
CWD, PATH, SOCKADDR, PROCTITLE, EOE and the other per-syscall records) are folded, with two
exceptions. An ``AVC`` of the group is kept as ``extra["avc"]`` (every field of the record, with
``perms`` as a list from ``{ read write }``, ``decision`` ``denied``/``granted`` and ``denied`` as a
boolean; ``extra["avcs"]`` lists them all when there are several, at most 8): it is no event of its
own, since the syscall event already is the access and carries the labels. ``SECCOMP``, ``ANOM_*``
and ``VIRT_*`` records are events of their own beside the syscall event (an ``ANOM_PROMISCUOUS``
is logged in the context of the ``ioctl`` that changed the flag): ``exe``, ``pid``, ``uid`` and the
command line come from the SYSCALL record when the record has none. A group without a SYSCALL record
(most ``SECCOMP``, ``ANOM_ABEND``, standalone ``AVC``, libvirt's ``VIRT_*``, PAM and service
records) gives one event per record: USER_AUTH / USER_LOGIN an auth event, any other type a
process event whose ``syscall`` is the record type lower-cased (``seccomp``, ``anom_abend``,
``anom_promiscuous``, ``avc``, ``virt_control``, ``virt_machine_id``, ``virt_resource``,
``service_start``...), ``exe`` the record's ``exe=`` (``""`` when absent), ``pid``, ``uid``,
``path`` from ``path=``/``name=`` (libvirt's ``new-disk=`` for a disk), ``result`` ``failure``
for an AVC ``denied``, a SECCOMP whose action is kill, trap or errno, or a user-space ``res=failed``
(kernel ``res=0``), and ``extra`` holding every field of the record (``ingest.parsers.auditd_records``
says how, and its bounds) with ``record_type`` and ``serial``; a SECCOMP record adds ``action``
(``kill_process``...) and ``syscall_name``. A group of companions alone (its SYSCALL record lost)
is an event named after its first record; a lone EOE is a counted skip. Every line of a group that
is not an outcome of its own (event, DLQ record or skip) is counted as a skip folded into its
group, so lines in = events + DLQ + skips.

The VM of an emulator: a process whose exe is ``qemu-kvm`` or ``qemu-system-*`` belongs to the VM
named by ``-name guest=NAME`` (or ``-name NAME``) on its command line (EXECVE or PROCTITLE), and
to that VM's tenant, whatever file it touches: a path that is another VM's disk no longer makes it
that VM's event. ``VIRT_*`` records name their VM in ``vm=``. The parser remembers, per node and
bounded (65,536 entries each, cleared when full), the VM of each emulator pid (from its command line
and from ``VIRT_CONTROL op=start vm-pid=``, kept after ``op=stop``, as the crash record of the
emulator may be read after it; only a record whose exe is an emulator, or that has no exe, is
matched by pid) and of each sVirt label (from
``VIRT_MACHINE_ID vm-ctx=``/``img-ctx=``), so a standalone SECCOMP, ANOM_ABEND or AVC of an
emulator, which carries no command line, gets its VM too; an AVC whose ``tcontext`` is a known VM's
image label names that VM in ``target_vm``. The sVirt label itself stays in ``extra["subj"]``
(``scontext``/``tcontext`` for an AVC), for rules that compare category pairs. When the VM name is
not in the registry but the emulator's ``-uuid`` (or the record's ``uuid=``) is, the uuid is the VM.

Ids are read as the kernel writes them, decimal: ``uid=4294967295`` (and ``-1``) is auditd's
"unset" and becomes None, never 0, which is root; a uid, pid or syscall number that is not a
decimal integer in range (``uid=abc``) sends the group to the DLQ naming the field, since the
kernel never writes one and an event with a guessed owner would be worse than none. A USER_AUTH
``addr`` that is not an address is kept in ``extra`` with ``src_ip`` unset. Numbers beyond 64 bits
in other fields stay text.
"""

from __future__ import annotations

import re
import socket
from collections import OrderedDict
from typing import Any, ClassVar, Final, Literal

from ingest.parsers.auditd_records import (
    COMPANIONS,
    MAX_AVCS,
    MAX_VALUE,
    SECCOMP_BLOCKED,
    avc_head,
    emulator_vm,
    is_emulator,
    is_signal,
    label_key,
    record_extra,
    seccomp_action,
)
from ingest.parsers.base import Output, ParseContext, Parser
from ingest.parsers.flowutil import BadField, clip, unexpected, valid_ip
from ingest.parsers.syscalls import syscall_name
from ingest.schema import AuthEvent, ProcessEvent, event_id

__all__ = ["AuditdParser", "decode_value", "parse_fields"]

_HEADER: Final = re.compile(r"^(?:node=(\S+) )?type=(\w+) msg=audit\((\d+)\.(\d+):(\d+)\)\s?:\s?(.*)$", re.S)
_FIELD: Final = re.compile(r"([\w\[\]-]+)=(\"[^\"]*\"|'[^']*'|\S*)")
_HEX: Final = re.compile(r"^(?:[0-9A-F]{2})+$")
_ENCODED: Final = frozenset({"exe", "comm", "cwd", "name", "proctitle", "acct", "key", "cmd"})
_MAX_GROUP_LINES: Final = 4096
_HEX_ARGS: Final = frozenset({"a0", "a1", "a2", "a3", "arch"})
_UNSET_ID: Final = 2**32 - 1
_FOLDED: Final = "auditd record folded into its event's group"
_SKIP_FIELDS: Final = frozenset({"type", "msg", "syscall", "success", "pid", "ppid", "uid", "exe", "items"})
_LONE_EOE: Final = "auditd EOE record without its event's records"
_MAX_LEARNED: Final = 65536
_AUTH_TYPES: Final = frozenset({"USER_AUTH", "USER_LOGIN"})
_PLAIN: Final = COMPANIONS | {"SYSCALL", "AVC"}  # never events of their own in a syscall group
_FAILED: Final = frozenset({"failed", "failure", "fail", 0})


def decode_value(value: str, encoded: bool = True) -> str | None:
    """Unquote a field; decode auditd's hex form; ``(null)``/``?`` -> None."""
    if value[:1] in ('"', "'"):
        return value[1:-1]
    if value in ("(null)", "?", ""):
        return None
    if encoded and _HEX.match(value):
        return bytes.fromhex(value).decode("utf-8", "backslashreplace")
    return value


def parse_fields(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _FIELD.finditer(text)}


class _Group:
    __slots__ = ("lines", "node", "records", "serial", "ts")

    def __init__(self, node: str | None, ts: int, serial: int) -> None:
        self.node, self.ts, self.serial = node, ts, serial
        self.lines: list[tuple[bytes, int, int]] = []
        self.records: list[tuple[str, dict[str, str], str, str]] = []  # type, fields, enriched, text


class AuditdParser(Parser):
    source: ClassVar[str] = "auditd"

    def __init__(self, out: Output, ctx: ParseContext | None = None, max_pending: int = 64) -> None:
        super().__init__(out, ctx)
        self.max_pending = max_pending
        self.pending: OrderedDict[tuple[str | None, int, int], _Group] = OrderedDict()
        self._emulator_pids: dict[tuple[str | None, int], str] = {}  # (node, pid) -> VM
        self._label_vms: dict[tuple[str | None, str], str] = {}  # (node, label key) -> VM

    def feed(self, line: bytes, lineno: int, offset: int) -> None:
        try:
            self._feed(line, lineno, offset)
        except Exception as exc:  # one record never ends a file
            self.reject(unexpected(exc, "auditd"), line, lineno, offset)

    def _feed(self, line: bytes, lineno: int, offset: int) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(f"invalid UTF-8 at byte {exc.start}", line, lineno, offset)
            return
        if not text.strip():
            self.skip("blank line")
            return
        m = _HEADER.match(text)
        if m is None:
            self.reject("not an audit record (no type=... msg=audit(...))", line, lineno, offset)
            return
        node, rtype, secs, millis, serial, rest = m.groups()
        if len(secs) > 12 or len(serial) > 20:  # beyond any event time or serial auditd writes
            self.reject(f"bad audit timestamp or serial {clip(secs + '.' + millis + ':' + serial)}",
                        line, lineno, offset)  # fmt: skip
            return
        key = (node, int(secs) * 1000 + int(millis[:3].ljust(3, "0")), int(serial))
        group = self.pending.get(key)
        if group is None:
            group = self.pending[key] = _Group(*key)
            while len(self.pending) > self.max_pending:
                self._finish(self.pending.popitem(last=False)[1])
        raw, _, enriched = rest.partition("\x1d")
        group.lines.append((line, lineno, offset))
        fields = parse_fields(raw)
        group.records.append((rtype, fields, enriched, raw))
        # EOE closes a kernel event; a user-space record (libaudit: ``msg='...'``) is an event alone
        if rtype == "EOE" or fields.get("msg", "")[:1] == "'" or len(group.lines) >= _MAX_GROUP_LINES:
            self._finish(self.pending.pop(key))

    def close(self) -> None:
        while self.pending:
            self._finish(self.pending.popitem(last=False)[1])

    def _finish(self, group: _Group) -> None:
        types = [r[0] for r in group.records]
        if "SYSCALL" in types:
            outcomes = self._syscall_group(group, types)
        else:
            outcomes = self._record_group(group, types)
        for _ in range(len(group.lines) - outcomes):
            self.skip(_FOLDED)

    def _syscall_group(self, group: _Group, types: list[str]) -> int:
        """One event of the SYSCALL and its companions, and one per SECCOMP/ANOM_*/VIRT_* record
        beside it; the number of outcomes."""
        raw = b"\n".join(line for line, _, _ in group.lines)
        try:
            event = self._process(group, raw)
        except BadField as exc:
            self._reject_group(group, types, str(exc), raw)
            return 1
        except Exception as exc:  # one group never ends a file
            self._reject_group(group, types, unexpected(exc, "auditd"), raw)
            return 1
        self.out.event(event)
        outcomes = 1
        for i, rtype in enumerate(types):
            if rtype not in _PLAIN and is_signal(rtype):
                outcomes += self._emit_record(group, i, event)
        return outcomes

    def _record_group(self, group: _Group, types: list[str]) -> int:
        """One event per record of a group without a SYSCALL record; the number of outcomes."""
        mains = [i for i, rtype in enumerate(types) if rtype not in COMPANIONS]
        if not mains:
            firsts = [i for i, rtype in enumerate(types) if rtype != "EOE"]
            if not firsts:
                self.skip(_LONE_EOE)
                return 1
            mains = firsts[:1]
        for i in mains:
            self._emit_record(group, i, None)
        return len(mains)

    def _reject_group(self, group: _Group, types: list[str], reason: str, raw: bytes) -> None:
        _, lineno, offset = group.lines[0]
        self.reject(f"auditd {'/'.join(types[:4])}: {reason}", raw, lineno, offset)

    def _emit_record(self, group: _Group, i: int, base: ProcessEvent | None) -> int:
        """The event of record ``i`` (or its DLQ record): one outcome."""
        rtype = group.records[i][0]
        line, lineno, offset = group.lines[i]
        try:
            if base is None and rtype in _AUTH_TYPES:
                self.out.event(self._auth(group, i, line))
            else:
                self.out.event(self._record_event(group, i, line, base))
        except BadField as exc:
            self.reject(f"auditd {rtype}: {exc}", line, lineno, offset)
        except Exception as exc:  # one record never ends a file
            self.reject(f"auditd {rtype}: {unexpected(exc, 'auditd')}", line, lineno, offset)
        return 1

    def _process(self, group: _Group, raw: bytes) -> ProcessEvent:
        by_type: dict[str, list[dict[str, str]]] = {}
        enriched: dict[str, str] = {}
        avcs: list[dict[str, Any]] = []
        for rtype, fields, interp, text in group.records:
            by_type.setdefault(rtype, []).append(fields)
            if rtype == "SYSCALL" and interp:
                enriched = parse_fields(interp)
            elif rtype == "AVC" and len(avcs) < MAX_AVCS:
                avcs.append(self._avc(group.node, fields, text))
        sc = by_type["SYSCALL"][0]
        arch = sc.get("arch", "c000003e")
        syscall = enriched.get("SYSCALL") or syscall_name(_number(sc, "syscall", 0, 2**31), arch)
        exe = decode_value(sc.get("exe", "")) or ""
        extra: dict[str, Any] = {"serial": group.serial}
        for name, value in sc.items():
            if name not in _SKIP_FIELDS:
                decoded = decode_value(value, name in _ENCODED)
                if decoded is not None:
                    numeric = decoded[-1:].isdigit() and name not in _HEX_ARGS  # cheap test first
                    extra[name] = _int64_or_text(decoded) if numeric else decoded
        if enriched:
            for name, value in enriched.items():
                if name.isupper() and name != "SADDR":
                    extra[name] = (value[1:-1] if value[:1] == '"' else value)[:MAX_VALUE]
        cwd = decode_value(by_type["CWD"][0].get("cwd", "")) if "CWD" in by_type else None
        if cwd:
            extra["cwd"] = cwd
        paths = [_join(cwd, decode_value(p.get("name", ""))) for p in by_type.get("PATH", [])]
        kinds = [p.get("nametype", "") for p in by_type.get("PATH", [])]
        path = next((p for p, k in zip(paths, kinds, strict=True) if p and k != "PARENT"), None)
        path = path or next((p for p in paths if p), None)
        if len(paths) > 1:
            extra["paths"] = [p for p in paths if p]
        cmdline = _cmdline(by_type)
        if "SOCKADDR" in by_type:
            extra.update(_sockaddr(by_type["SOCKADDR"][0].get("saddr", "")))
        if avcs:
            extra["avc"] = avcs[0]
            if len(avcs) > 1:
                extra["avcs"] = avcs
        pid = _id(sc, "pid") or 0
        emulator = self._emulator_vm(group.node, pid, exe, cmdline, sc.get("subj")) if "qemu" in exe else None
        tenant, vm, host = self._owner(group.node, path, emulator)
        return ProcessEvent(
            id=event_id("auditd", raw), ts=group.ts, source="auditd", tenant=tenant, host=host, vm=vm,
            pid=pid, ppid=_id(sc, "ppid") or 0, exe=exe, cmdline=cmdline,
            uid=_uid(sc), syscall=syscall, path=path,
            result="failure" if sc.get("success") == "no" else "success", extra=extra,
        )  # fmt: skip

    def _record_event(self, group: _Group, i: int, raw: bytes, base: ProcessEvent | None) -> ProcessEvent:
        """The process event of one record that is not a SYSCALL record (see the module docstring);
        ``base`` is the event of the SYSCALL record beside it, if any."""
        rtype, fields, enriched, text = group.records[i]
        extra = record_extra(fields, enriched)
        extra["record_type"] = rtype
        extra["serial"] = group.serial
        node = group.node
        exe = _text(extra.get("exe")) or ""
        pid = _id(fields, "pid")
        uid = _uid(fields)
        ppid = _id(fields, "ppid") or 0
        if base is not None:  # a SECCOMP/ANOM_*/VIRT_* record beside its SYSCALL record
            exe = exe or base.exe
            pid = base.pid if pid is None else pid
            uid = base.uid if "uid" not in fields else uid
            ppid = ppid or base.ppid
            cmdline, path = base.cmdline, base.path
        else:
            cmdline, path = self._companions(group)
        result: Literal["success", "failure"] = "success"
        if rtype == "AVC":
            extra.update(self._avc_head(node, extra, text))
            result = "failure" if extra.get("denied") else "success"
        elif rtype == "SECCOMP":
            action = seccomp_action(extra.get("code"))
            extra["action"] = action
            number = extra.get("syscall")
            if isinstance(number, int) and 0 <= number < 2**31:
                extra["syscall_name"] = syscall_name(number, _text(extra.get("arch")) or "c000003e")
            result = "failure" if action in SECCOMP_BLOCKED else "success"
        elif extra.get("res") in _FAILED:
            result = "failure"
        own_path = _text(extra.get("path")) or _text(extra.get("name")) or _text(extra.get("new-disk"))
        path = own_path or path
        vm = None
        if rtype.startswith("VIRT_"):
            vm = self._virt_record(node, rtype, extra)
        if vm is None:
            label = extra.get("subj") or extra.get("scontext")
            vm = self._emulator_vm(node, pid or 0, exe, cmdline, label if isinstance(label, str) else None)
        tenant, vm, host = self._owner(node, path, vm)
        return ProcessEvent(
            id=event_id("auditd", raw), ts=group.ts, source="auditd", tenant=tenant, host=host, vm=vm,
            pid=pid or 0, ppid=ppid, exe=exe, cmdline=cmdline, uid=uid, syscall=rtype.lower(),
            path=path, result=result, extra=extra,
        )  # fmt: skip

    def _companions(self, group: _Group) -> tuple[str, str | None]:
        """(command line, path) from the EXECVE/PROCTITLE/CWD/PATH records of a group without SYSCALL."""
        by_type: dict[str, list[dict[str, str]]] = {}
        for rtype, fields, _, _ in group.records:
            if rtype in COMPANIONS:
                by_type.setdefault(rtype, []).append(fields)
        if not by_type:
            return "", None
        cwd = decode_value(by_type["CWD"][0].get("cwd", "")) if "CWD" in by_type else None
        paths = [_join(cwd, decode_value(p.get("name", ""))) for p in by_type.get("PATH", [])]
        return _cmdline(by_type), next((p for p in paths if p), None)

    def _avc(self, node: str | None, fields: dict[str, str], text: str) -> dict[str, Any]:
        """An AVC record as ``extra["avc"]`` of its syscall event."""
        avc = record_extra(fields, "")
        avc.update(self._avc_head(node, avc, text))
        return avc

    def _avc_head(self, node: str | None, avc: dict[str, Any], text: str) -> dict[str, Any]:
        head = avc_head(text)
        out: dict[str, Any] = {}
        if head is not None:
            out["decision"], out["perms"] = head
            out["denied"] = head[0] == "denied"
        target = label_key(_text(avc.get("tcontext")))
        target_vm = self._label_vms.get((node, target)) if target else None
        if target_vm is not None:
            out["target_vm"] = target_vm
        return out

    def _virt_record(self, node: str | None, rtype: str, extra: dict[str, Any]) -> str | None:
        """The VM a libvirt record names; learns emulator pids and sVirt labels from it."""
        name = _text(extra.get("vm"))
        if name is None:
            return None
        vm = self._vm_id(name, _text(extra.get("uuid")))
        if rtype == "VIRT_CONTROL":
            vm_pid = extra.get("vm-pid")
            op = extra.get("op")
            # kept after op=stop: the crash record of the emulator may be read after the stop
            started = op in ("start", "init", "resume") and extra.get("res") not in _FAILED
            if started and isinstance(vm_pid, int) and vm_pid > 0:
                _learn(self._emulator_pids, (node, vm_pid), vm)
        elif rtype == "VIRT_MACHINE_ID":
            for name in ("vm-ctx", "img-ctx"):
                key = label_key(_text(extra.get(name)))
                if key is not None:
                    _learn(self._label_vms, (node, key), vm)
        return vm

    def _emulator_vm(
        self, node: str | None, pid: int, exe: str, cmdline: str, label: str | None
    ) -> str | None:
        """The VM of an emulator process (None for any other process): from its command line,
        else from what the parser learned of its pid or its sVirt label."""
        if exe:
            if not is_emulator(exe):
                return None
            if cmdline:
                name, uuid = emulator_vm(cmdline)
                if name:
                    named = self._vm_id(name, uuid)
                    if pid:
                        _learn(self._emulator_pids, (node, pid), named)
                    return named
        vm = self._emulator_pids.get((node, pid)) if pid else None
        if vm is None and label:
            key = label_key(label)
            vm = self._label_vms.get((node, key)) if key else None
        return vm

    def _vm_id(self, name: str, uuid: str | None) -> str:
        reg = self.registry
        if reg is not None and name not in reg.vms and uuid and uuid in reg.vms:
            return uuid
        return name

    def _owner(
        self, node: str | None, path: str | None, vm: str | None
    ) -> tuple[str | None, str | None, str | None]:
        """``node_owner``, except that an emulator's (or a libvirt record's) VM wins over a path:
        the process belongs to its own VM whatever disk it touches."""
        if vm is None:
            return self.node_owner(node, path)
        tenant, node_vm, host = self.node_owner(node)
        if node_vm is not None:  # the record comes from inside a VM: that VM's
            return tenant, node_vm, host
        reg = self.registry
        info = reg.vms.get(vm) if reg is not None else None
        if info is not None:
            tenant, host = info.tenant, host or info.host
        return self.forced_tenant or tenant, vm, host

    def _auth(self, group: _Group, i: int, raw: bytes) -> AuthEvent:
        rtype, fields, _, _ = group.records[i]
        inner = parse_fields((fields.get("msg") or "")[1:-1])
        user = decode_value(inner.get("acct", "")) or decode_value(fields.get("acct", "")) or "?"
        exe = decode_value(inner.get("exe", "")) or ""
        addr = decode_value(inner.get("addr", ""), encoded=False)
        tenant, vm, host = self.node_owner(group.node)
        extra = {"type": rtype, "op": decode_value(inner.get("op", "")), "exe": exe, "serial": group.serial}
        if addr is not None and not valid_ip(addr):
            extra["addr"] = addr
            addr = None
        return AuthEvent(
            id=event_id("auditd", raw), ts=group.ts, source="auditd", tenant=tenant, host=host, vm=vm,
            user=user, src_ip=addr,
            service=exe.rsplit("/", 1)[-1] or "unknown", method="pam",
            result="success" if inner.get("res") == "success" else "failure", extra=extra,
        )  # fmt: skip


def _learn(table: dict[Any, str], key: Any, vm: str) -> None:
    if len(table) >= _MAX_LEARNED and key not in table:
        table.clear()
    table[key] = vm


def _text(value: Any) -> str | None:
    """A text value of ``extra``, None for auditd's unset markers."""
    return value if isinstance(value, str) and value not in ("", "?", "(null)") else None


def _cmdline(by_type: dict[str, list[dict[str, str]]]) -> str:
    cmdline = _execve_args(by_type["EXECVE"][0]) if "EXECVE" in by_type else ""
    if not cmdline and "PROCTITLE" in by_type:
        decoded = decode_value(by_type["PROCTITLE"][0].get("proctitle", ""))
        cmdline = (decoded or "").replace("\x00", " ").strip()
    return cmdline


def _number(fields: dict[str, str], name: str, low: int, high: int) -> int:
    """A decimal field from ``low`` to ``high``; anything else is a bad field."""
    text = fields.get(name)
    if text is None:
        raise BadField(f"missing field {name!r}")
    value = _int64_or_text(text)
    if isinstance(value, str) or not low <= value <= high:
        raise BadField(f"bad {name} {clip(text)}")
    return value


def _id(fields: dict[str, str], name: str) -> int | None:
    """A pid or ppid (None when absent)."""
    return _number(fields, name, 0, _UNSET_ID) if name in fields else None


def _uid(fields: dict[str, str]) -> int | None:
    """auditd writes an unset id as 4294967295 (-1 as unsigned); older tools print -1."""
    if fields.get("uid") in (None, "", "?"):
        return None
    uid = _number(fields, "uid", -1, _UNSET_ID)
    return None if uid in (-1, _UNSET_ID) else uid


def _int64_or_text(text: str) -> int | str:
    """Decimal text (ASCII digits, an optional minus) within 64 bits as its integer, else the text."""
    digits = text[1:] if text[:1] == "-" else text
    if not (digits.isascii() and digits.isdigit()):
        return text
    if len(digits) < 19:
        return int(text)
    value = int(text) if len(digits) < 25 else None
    return value if value is not None and -(2**63) <= value < 2**63 else text


def _join(cwd: str | None, path: str | None) -> str | None:
    if path and cwd and not path.startswith("/"):
        return cwd.rstrip("/") + "/" + path
    return path


def _execve_args(fields: dict[str, str]) -> str:
    argc = _number(fields, "argc", 0, 2**31) if "argc" in fields else 0
    args = []
    for i in range(min(argc, 4096)):
        name = f"a{i}"
        if name in fields:
            args.append(decode_value(fields[name]) or "")
        elif f"{name}_len" in fields:  # a1_len=N a1[0]=.. a1[1]=..: quoted text or hex chunks
            chunks, k = bytearray(), 0
            while f"{name}[{k}]" in fields:
                chunk = fields[f"{name}[{k}]"]
                if chunk[:1] == '"':
                    chunks += chunk[1:-1].encode()
                elif _HEX.match(chunk):
                    chunks += bytes.fromhex(chunk)
                else:
                    raise BadField(f"bad EXECVE {name}[{k}] {clip(chunk)}: not hex")
                k += 1
            args.append(chunks.decode("utf-8", "backslashreplace"))
    return " ".join(args)


def _sockaddr(saddr: str) -> dict[str, Any]:
    """The remote end of connect/bind from SOCKADDR's hex ``saddr`` (AF_INET, AF_INET6, AF_UNIX)."""
    try:
        data = bytes.fromhex(saddr)
    except ValueError:
        return {"saddr": saddr}
    family = int.from_bytes(data[:2], "little")
    if family == 2 and len(data) >= 8:
        return {
            "remote_ip": socket.inet_ntop(socket.AF_INET, data[4:8]),
            "remote_port": int.from_bytes(data[2:4]),
        }
    if family == 10 and len(data) >= 24:
        ip = socket.inet_ntop(socket.AF_INET6, data[8:24])
        return {"remote_ip": ip, "remote_port": int.from_bytes(data[2:4])}
    if family == 1:
        return {"unix_path": data[2:].split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")}
    return {"saddr": saddr}
