"""Falco JSON alerts (``json_output: true``) -> process events.

One JSON object per line: ``time`` (RFC 3339 with nanoseconds), ``rule``, ``priority``,
``output``, ``source``, ``tags``, ``hostname`` and ``output_fields``. From ``output_fields``:
``proc.exepath`` (else ``proc.exe``/``proc.name``) -> ``exe``, ``proc.cmdline``, ``proc.pid``,
``proc.ppid``, ``proc.pexepath`` (else ``proc.pname``) -> ``parent_exe``, ``user.uid``,
``evt.type`` -> ``syscall``, ``fd.name`` -> ``path`` when it is a file (a socket tuple such as
``10.0.0.5:4242->1.2.3.4:443`` is kept in ``extra``), ``evt.res`` other than ``SUCCESS`` ->
``result: failure``. The host is ``hostname``; a ``container.id`` other than ``host`` and all
other fields are kept in ``extra``. Non-JSON lines (text output) go to the DLQ.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from ingest.parsers.base import Output, ParseContext, Parser, ms_from_iso
from ingest.reader import JsonRejected, load_json
from ingest.schema import ProcessEvent, event_id

__all__ = ["FalcoParser"]

_MAPPED: Final = frozenset(
    {"proc.exepath", "proc.exe", "proc.cmdline", "proc.pid", "proc.ppid", "proc.pexepath", "user.uid",
     "evt.type", "fd.name", "evt.res"}
)  # fmt: skip


class FalcoParser(Parser):
    source: ClassVar[str] = "falco"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)

    def feed(self, line: bytes, lineno: int, offset: int) -> None:
        if not line.strip():
            self.skip("blank line")
            return
        try:
            rec = load_json(line)
        except JsonRejected as exc:
            self.reject(str(exc), line, lineno, offset)
            return
        if not isinstance(rec, dict) or not isinstance(rec.get("output_fields"), dict):
            self.reject("not a Falco JSON alert (no output_fields object)", line, lineno, offset)
            return
        try:
            event = self._event(rec, line)
        except (ValueError, TypeError, KeyError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            self.reject(reason, line, lineno, offset)
            return
        self.out.event(event)

    def _event(self, rec: dict[str, Any], line: bytes) -> ProcessEvent:
        f: dict[str, Any] = rec["output_fields"]
        ts = ms_from_iso(rec["time"]) if rec.get("time") else int(f["evt.time"]) // 1_000_000
        exe = f.get("proc.exepath") or f.get("proc.exe") or f.get("proc.name") or ""
        fd = f.get("fd.name")
        path = fd if isinstance(fd, str) and fd.startswith("/") else None
        res = f.get("evt.res")
        extra: dict[str, Any] = {
            k: rec[k] for k in ("rule", "priority", "source", "tags", "output") if k in rec
        }
        extra.update({k: v for k, v in f.items() if k not in _MAPPED and v is not None})
        if fd is not None and path is None:
            extra["fd.name"] = fd
        if res is not None:
            extra["evt.res"] = res
        host_name = rec.get("hostname")
        tenant, vm, host = self.node_owner(host_name if isinstance(host_name, str) else None, path)
        return ProcessEvent(
            id=event_id("falco", line), ts=ts, source="falco", tenant=tenant, host=host, vm=vm,
            exe=str(exe), syscall=str(f.get("evt.type") or rec.get("rule") or "unknown"),
            pid=_int(f.get("proc.pid")), ppid=_int(f.get("proc.ppid")),
            parent_exe=str(f.get("proc.pexepath") or f.get("proc.pname") or ""),
            cmdline=str(f.get("proc.cmdline") or ""), uid=_int(f.get("user.uid")), path=path,
            result="failure" if res not in (None, "SUCCESS", "<NA>") else "success", extra=extra,
        )  # fmt: skip


def _int(value: Any) -> int:
    if value is None or value == "<NA>":
        return 0
    return int(value)
