"""Falco JSON alerts (``json_output: true``) -> process events.

One JSON object per line: ``time`` (RFC 3339 with nanoseconds), ``rule``, ``priority``,
``output``, ``source``, ``tags``, ``hostname`` and ``output_fields``. From ``output_fields``:
``proc.exepath`` (else ``proc.exe``/``proc.name``) -> ``exe``, ``proc.cmdline``, ``proc.pid``,
``proc.ppid``, ``proc.pexepath`` (else ``proc.pname``) -> ``parent_exe``, ``user.uid``,
``evt.type`` -> ``syscall``, ``fd.name`` -> ``path`` when it is a file (a socket tuple such as
``10.0.0.5:4242->1.2.3.4:443`` is kept in ``extra``), ``evt.res`` other than ``SUCCESS`` ->
``result: failure``. The host is ``hostname``; a ``container.id`` other than ``host`` and all
other fields are kept in ``extra``. Non-JSON lines (text output) go to the DLQ.

Values are read as what they must be, never coerced: a ``time`` that is not RFC 3339 text, a
pid that is not a non-negative integer (``true``, ``80.9``, ``-5``) send the alert to the DLQ
naming the field. Falco prints an unknown uid as ``-1`` or ``4294967295``: the uid is then unset
(None), never 0, which is root.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from ingest.parsers.base import Output, ParseContext, Parser, ms_from_iso
from ingest.parsers.flowutil import BadField, clip, unexpected
from ingest.reader import JsonRejected, load_json
from ingest.schema import ProcessEvent, event_id

__all__ = ["FalcoParser"]

_PID_MAX: Final = 2**32 - 1
_UNSET_UIDS: Final = frozenset({-1, 2**32 - 1})
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
        except BadField as exc:
            self.reject(str(exc), line, lineno, offset)
            return
        except Exception as exc:  # one alert never ends a file
            self.reject(unexpected(exc, "Falco"), line, lineno, offset)
            return
        self.out.event(event)

    def _event(self, rec: dict[str, Any], line: bytes) -> ProcessEvent:
        f: dict[str, Any] = rec["output_fields"]
        ts = _event_ms(rec, f)
        exe = f.get("proc.exepath") or f.get("proc.exe") or f.get("proc.name") or ""
        fd = f.get("fd.name")
        path = fd if isinstance(fd, str) and fd.startswith("/") else None
        res = f.get("evt.res")
        extra: dict[str, Any] = {
            k: rec[k] for k in ("rule", "priority", "source", "tags", "output") if k in rec
        }
        extra.update({k: _in_64_bits(k, v) for k, v in f.items() if k not in _MAPPED and v is not None})
        if fd is not None and path is None:
            extra["fd.name"] = fd
        if res is not None:
            extra["evt.res"] = res
        host_name = rec.get("hostname")
        tenant, vm, host = self.node_owner(host_name if isinstance(host_name, str) else None, path)
        return ProcessEvent(
            id=event_id("falco", line), ts=ts, source="falco", tenant=tenant, host=host, vm=vm,
            exe=str(exe), syscall=str(f.get("evt.type") or rec.get("rule") or "unknown"),
            pid=_id(f, "proc.pid") or 0, ppid=_id(f, "proc.ppid") or 0,
            parent_exe=str(f.get("proc.pexepath") or f.get("proc.pname") or ""),
            cmdline=str(f.get("proc.cmdline") or ""), uid=_uid(f), path=path,
            result="failure" if res not in (None, "SUCCESS", "<NA>") else "success", extra=extra,
        )  # fmt: skip


def _event_ms(rec: dict[str, Any], fields: dict[str, Any]) -> int:
    """``time`` (RFC 3339 text), else ``evt.time`` (integer nanoseconds)."""
    if "time" in rec and rec["time"] not in (None, ""):
        try:
            return ms_from_iso(rec["time"])
        except ValueError:
            raise BadField(f"bad time {clip(rec['time'])}") from None
    if "evt.time" not in fields:
        raise BadField("missing field 'time'")
    ns = _integer(fields, "evt.time")
    if ns is None or ns < 0:
        raise BadField(f"bad evt.time {clip(fields['evt.time'])}")
    return ns // 1_000_000


def _in_64_bits(name: str, value: Any) -> Any:
    """Numbers beyond 64 bits have no place in an index (Elasticsearch refuses them)."""
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise BadField(f"bad {name} {clip(value)}: beyond 64 bits")
    return value


def _integer(fields: dict[str, Any], name: str) -> int | None:
    """An integer field as a JSON number or its decimal text; None when absent or ``<NA>``."""
    value = fields.get(name)
    if value is None or value == "<NA>":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    digits = value[1:] if isinstance(value, str) and value[:1] == "-" else value
    if isinstance(digits, str) and digits.isascii() and digits.isdigit() and len(digits) <= 19:
        return int(value)
    raise BadField(f"bad {name} {clip(value)}: not an integer")


def _id(fields: dict[str, Any], name: str) -> int | None:
    value = _integer(fields, name)
    if value is not None and not 0 <= value <= _PID_MAX:
        raise BadField(f"bad {name} {value}: out of range")
    return value


def _uid(fields: dict[str, Any]) -> int | None:
    value = _integer(fields, "user.uid")
    if value is None or value in _UNSET_UIDS:
        return None
    if not 0 <= value < _PID_MAX:
        raise BadField(f"bad user.uid {value}: out of range")
    return value
