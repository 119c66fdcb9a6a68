"""Linux auditd raw ``audit.log`` -> process events (and auth events for USER_AUTH/USER_LOGIN).

A kernel audit event is several lines sharing ``msg=audit(SECONDS.MILLIS:SERIAL)``: SYSCALL, then
EXECVE, CWD, PATH (one per item), SOCKADDR, PROCTITLE, closed by EOE. Lines are grouped by
(node, timestamp, serial) and one event is emitted per group when EOE arrives, when more than
``max_pending`` groups are open (records of an event are written together, so the oldest is
done), or at the end of input. ``node=`` (multi-host logging) names the host or VM.

Values that contain spaces or unprintable bytes are hex-encoded by auditd (``a1=2D2D636F6C6F72``,
``proctitle=...`` with NUL-separated argv); quoted values are literal; long EXECVE arguments come
as ``a1_len=N a1[0]=.. a1[1]=..``. Syscall numbers are named for x86_64 (``arch=c000003e``);
the ENRICHED log format's ``SYSCALL=`` name is used when present. ``success=yes/no`` is the result.
Groups without a SYSCALL record (service, config and credential records) are counted as skipped,
except USER_AUTH / USER_LOGIN which become auth events. Every line of a group past its first is
counted as a skip folded into the group's outcome (event, DLQ record or skip), so lines in =
events + DLQ + skips.

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
from typing import Any, ClassVar, Final

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
        self.records: list[tuple[str, dict[str, str], str]] = []


class AuditdParser(Parser):
    source: ClassVar[str] = "auditd"

    def __init__(self, out: Output, ctx: ParseContext | None = None, max_pending: int = 64) -> None:
        super().__init__(out, ctx)
        self.max_pending = max_pending
        self.pending: OrderedDict[tuple[str | None, int, int], _Group] = OrderedDict()

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
        group.records.append((rtype, parse_fields(raw), enriched))
        if rtype == "EOE" or len(group.lines) >= _MAX_GROUP_LINES:
            self._finish(self.pending.pop(key))

    def close(self) -> None:
        while self.pending:
            self._finish(self.pending.popitem(last=False)[1])

    def _finish(self, group: _Group) -> None:
        raw = b"\n".join(line for line, _, _ in group.lines)
        lineno, offset = group.lines[0][1], group.lines[0][2]
        types = [r[0] for r in group.records]
        try:
            if "SYSCALL" in types:
                self.out.event(self._process(group, raw))
            elif types[0] in ("USER_AUTH", "USER_LOGIN"):
                self.out.event(self._auth(group, raw))
            else:
                self.skip(f"auditd {types[0]} record (no syscall)")
        except BadField as exc:
            self.reject(f"auditd {'/'.join(types[:4])}: {exc}", raw, lineno, offset)
        except Exception as exc:  # one group never ends a file
            self.reject(f"auditd {'/'.join(types[:4])}: {unexpected(exc, 'auditd')}", raw, lineno, offset)
        for _ in range(len(group.lines) - 1):
            self.skip(_FOLDED)

    def _process(self, group: _Group, raw: bytes) -> ProcessEvent:
        by_type: dict[str, list[dict[str, str]]] = {}
        enriched: dict[str, str] = {}
        for rtype, fields, interp in group.records:
            by_type.setdefault(rtype, []).append(fields)
            if rtype == "SYSCALL" and interp:
                enriched = parse_fields(interp)
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
        cwd = decode_value(by_type["CWD"][0].get("cwd", "")) if "CWD" in by_type else None
        if cwd:
            extra["cwd"] = cwd
        paths = [_join(cwd, decode_value(p.get("name", ""))) for p in by_type.get("PATH", [])]
        kinds = [p.get("nametype", "") for p in by_type.get("PATH", [])]
        path = next((p for p, k in zip(paths, kinds, strict=True) if p and k != "PARENT"), None)
        path = path or next((p for p in paths if p), None)
        if len(paths) > 1:
            extra["paths"] = [p for p in paths if p]
        cmdline = _execve_args(by_type["EXECVE"][0]) if "EXECVE" in by_type else ""
        if not cmdline and "PROCTITLE" in by_type:
            title = by_type["PROCTITLE"][0].get("proctitle", "")
            decoded = decode_value(title)
            cmdline = (decoded or "").replace("\x00", " ").strip()
        if "SOCKADDR" in by_type:
            extra.update(_sockaddr(by_type["SOCKADDR"][0].get("saddr", "")))
        tenant, vm, host = self.node_owner(group.node, path)
        return ProcessEvent(
            id=event_id("auditd", raw), ts=group.ts, source="auditd", tenant=tenant, host=host, vm=vm,
            pid=_id(sc, "pid") or 0, ppid=_id(sc, "ppid") or 0, exe=exe, cmdline=cmdline,
            uid=_uid(sc), syscall=syscall, path=path,
            result="failure" if sc.get("success") == "no" else "success", extra=extra,
        )  # fmt: skip

    def _auth(self, group: _Group, raw: bytes) -> AuthEvent:
        rtype, fields, _ = group.records[0]
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
