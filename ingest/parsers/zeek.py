"""Zeek ``conn.log`` -> flow events, in both of Zeek's writers' formats.

TSV (the default ASCII writer): ``#separator \\x09`` first, then ``#set_separator``,
``#empty_field``, ``#unset_field``, ``#path``, ``#open``, ``#fields``, ``#types``; records; ``#close``.
A new header block (log rotation, ``cat`` of several files) resets the layout. JSON lines (the
``LogAscii::use_json`` writer): one object per line; ``ts`` is epoch seconds or ISO 8601.

Mapping: originator (``id.orig_h``/``id.orig_p``) is the source. Byte counters are the IP-layer
ones (``orig_ip_bytes``/``resp_ip_bytes``, comparable with NetFlow and VPC Flow Logs) when present,
else the payload ones; ``conn_state`` ``REJ`` (attempt answered by a reset) is ``action: reject``.
All other columns (``uid``, ``service``, ``conn_state``, ``history``, payload bytes...) go to
``extra``. Records from other Zeek logs (dns, http...) are counted as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product
from typing import Annotated, Any, ClassVar, Final

import msgspec
from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext, ms_from_iso
from ingest.parsers.flowutil import PORT, PROTO_NUMBERS, picker, valid_ip
from ingest.reader import JsonRejected, load_json
from ingest.schema import FlowEvent, event_id, event_id_of

__all__ = ["ZeekConnParser"]

_CORE: Final = frozenset(
    {"ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration", "orig_ip_bytes",
     "resp_ip_bytes", "orig_pkts", "resp_pkts"}
)  # fmt: skip


class ZeekConnParser(FastPathParser):
    source: ClassVar[str] = "zeek"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self.sep = "\t"
        self.unset = "-"
        self.empty = "(empty)"
        self.path = "conn"
        self.fields: list[str] | None = None
        self.types: dict[str, str] = {}
        self.fast_nfields = -1  # fields of a record the fast path takes; -1: none
        self.decode_numbers: Callable[[str], Any] = _no_json_way  # see _plan_json
        self.decode_unset_numbers: Callable[[str], Any] = _no_json_way

    def _feed_checked(self, line: bytes, lineno: int, offset: int) -> None:
        """One line, every field checked: a directive, a DLQ reason, a skip, or an event."""
        if line[:1] == b"{":
            self._json(line, lineno, offset)
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(f"invalid UTF-8 at byte {exc.start}", line, lineno, offset)
            return
        if text[:1] == "#":
            self._directive(text, line, lineno, offset)
            return
        if not text.strip():
            self.skip("blank line")
            return
        if self.fields is None:
            self.reject("record before a #fields header", line, lineno, offset)
            return
        if self.path != "conn":
            self.skip(f"zeek {self.path} log (not conn)")
            return
        parts = text.split(self.sep)
        if len(parts) != len(self.fields):
            self.reject(f"expected {len(self.fields)} fields, got {len(parts)}", line, lineno, offset)
            return
        unset, empty = self.unset, self.empty
        rec: dict[str, Any] = {
            name: ("" if value == empty else value)
            for name, value in zip(self.fields, parts, strict=True)
            if value != unset
        }
        self._emit(rec, line, lineno, offset)

    def _plan(self) -> None:
        """Column indexes and per-column converters for the fast path (standard conn.log columns)."""
        self.fast_nfields = -1
        if self.fields is None:
            return
        pos = {n: i for i, n in enumerate(self.fields)}
        if all(n in pos for n in _FAST):
            self.fast_nfields = len(self.fields)
            head = picker([pos[n] for n in (*_FAST[1:4], "conn_state") if n in pos])
            self.head = head if "conn_state" in pos else lambda parts: (*head(parts), "")
            self.time_cells = picker([pos["ts"], pos["duration"]])
            self.counters = picker([pos[n] for n in _FAST[-6:]])
            self.extra_spec = [
                (n, i, _CONVERTERS.get(self.types.get(n, ""), str))
                for i, n in enumerate(self.fields)
                if n not in _CORE
            ]
            self.extra_names = tuple(n for n, _, _ in self.extra_spec)
            self.extra_values = picker([i for _, i, _ in self.extra_spec])
            self.extra_unique = len(set(self.extra_names)) == len(self.extra_names)
            kinds = [conv for _, _, conv in self.extra_spec]
            self.extra_groups: list[tuple[tuple[int, ...], Callable[[str], Any]]] = [
                (tuple(j for j, conv in enumerate(kinds) if conv is kind), fast)
                for kind, fast in ((int, int), (float, float), (_bool, _BOOLS.__getitem__))
                if kind in kinds
            ]
            self._plan_json([pos[n] for n in _FAST])

    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """A conn.log TSV record with the standard columns, plain: no per-field checks; None = take
        the checked path (directives, JSON, other logs, anything odd), which names the problem."""
        if line[:1] in b"#{":  # also b"": a blank line
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return None
        parts = text.split(self.sep)
        if len(parts) != self.fast_nfields or self.path != "conn":
            return None
        src, dst, proto, state = self.head(parts)
        if proto not in _PROTOS:
            return None
        owner = self.checked_flow_owner(src, dst)
        if owner is None:
            return None
        try:
            try:
                numbers, extra = self._json_columns(parts)
            except ValueError:  # a cell that is not a JSON number: unset, (empty), "+1", "inf"...
                numbers, extra = self._text_columns(parts)
            seconds, duration_s, sport, dport, bytes_out, bytes_in, packets_out, packets_in = numbers
            ts = round(seconds * 1000)
            duration = round(duration_s * 1000)
        except (ValueError, OverflowError, KeyError):  # an infinite time, a bool that is not T/F
            return None
        return replace(
            self.flow_base(owner), id=_event_id(line), ts=ts, src_ip=src, dst_ip=dst, src_port=sport,
            dst_port=dport, proto=proto, bytes_out=bytes_out, bytes_in=bytes_in, packets_out=packets_out,
            packets_in=packets_in, duration_ms=duration, action="reject" if state == "REJ" else "accept", extra=extra,
        )  # fmt: skip

    def _plan_json(self, fast_columns: list[int]) -> None:
        """The numeric columns (the core ones, then the extra ones typed as numbers) as one JSON
        array, decoded in one C call into ints and floats; the bools through a table of their
        combinations; then all extra values put in column order by one picker."""
        numeric = [(n, i, conv) for n, i, conv in self.extra_spec if conv in (int, float)]
        flags = [(n, i) for n, i, conv in self.extra_spec if conv is _bool]
        # the cells are picked before decode_numbers is called, also when it always refuses
        self.numbers = picker([*fast_columns[:1], *fast_columns[4:], *(i for _, i, _ in numeric)])
        self.decode_numbers = self.decode_unset_numbers = _no_json_way
        unset, empty = self.unset, self.empty
        if not self.extra_unique or len(flags) > 4 or _json_number(unset) or _json_number(empty):
            return  # a duplicate name, a big table, or a marker that would pass for a number
        kinds = (float, float, PORT, PORT, *(_Count,) * 4, *(conv for _, _, conv in numeric))
        self.decode_numbers = msgspec.json.Decoder(tuple[kinds]).decode  # type: ignore[valid-type]
        # unset cells read as null: where _text_columns takes them (the duration, the counters and
        # the extra numbers); the time and the ports stay required, as there
        nullable = (float, float | None, PORT, PORT, *(_Count | None,) * 4, *(k | None for k in kinds[8:]))
        self.decode_unset_numbers = msgspec.json.Decoder(tuple[nullable]).decode  # type: ignore[valid-type]
        self.bool_values = picker([i for _, i in flags])
        # unset and (empty) ones are fixed up by name afterwards, as in ``_fast_extra``
        cells = {**_BOOLS, unset: None, empty: ""}
        self.bool_table = {c: tuple(map(cells.__getitem__, c)) for c in product(cells, repeat=len(flags))}
        # the picker's input: the extra columns' text, the decoded numbers, the bools
        where = {n: j for j, (n, _, _) in enumerate(self.extra_spec)}
        start = len(where) + len(kinds) - len(numeric)
        where.update((n, start + k) for k, (n, _, _) in enumerate(numeric))
        where.update((n, start + len(numeric) + k) for k, (n, _) in enumerate(flags))
        self.extra_in_order = picker(list(where.values()))

    def _json_columns(self, parts: list[str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """(ts, duration, ports and counters) and ``extra``; ValueError when a numeric cell is not a
        plain JSON number or unset (then ``_text_columns`` decides), KeyError for a bool that is not
        T/F."""
        cells = self.numbers(parts)
        unset, empty = self.unset, self.empty
        numbers = self._decode_unset(cells) if unset in cells else self.decode_numbers(f"[{','.join(cells)}]")
        values = self.extra_values(parts)
        typed = self.extra_in_order(values + numbers + self.bool_table[self.bool_values(parts)])
        names = self.extra_names
        # Same lengths by construction; ``strict=`` would cost a keyword call per record.
        if empty in values:
            extra = dict(zip(names, typed))  # noqa: B905
            _unset_and_empty(extra, names, values, unset, empty)
        else:  # unset columns left out (names are unique on this way, see _plan_json)
            extra = {name: value for name, value, text in zip(names, typed, values) if text != unset}  # noqa: B905
        return numbers[:8], extra

    def _decode_unset(self, cells: tuple[str, ...]) -> tuple[Any, ...]:
        """``decode_numbers`` of cells some of which are unset (the ``-`` duration and byte counts of
        a lone SYN): unset as null, then an unset duration or counter as 0, as ``_text_columns`` has
        them. ValueError for anything else."""
        unset = self.unset
        row = ",".join(["null" if c == unset else c for c in cells])
        if row.count("null") != cells.count(unset):  # a "null" in a cell is text, not unset
            raise ValueError("not a row of numbers and unset cells")
        numbers = self.decode_unset_numbers(f"[{row}]")
        head = numbers[:8]
        if None not in head:  # only extra numbers unset
            return numbers
        ts, duration, sport, dport, *counters = head
        return (ts, duration or 0.0, sport, dport, *(c or 0 for c in counters), *numbers[8:])

    def _text_columns(self, parts: list[str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """What ``_json_columns`` returns, cell by cell with ``int``/``float``: an unset duration or
        counter is 0; ValueError for anything else that is not a number."""
        ts_text, dur = self.time_cells(parts)
        unset = self.unset
        duration = 0.0 if dur == unset else float(dur)
        counters = self.counters(parts)
        if unset in counters:  # an unset counter is 0 (an unset port is not plain)
            counters = (*counters[:2], *("0" if v == unset else v for v in counters[2:]))
        numbers = tuple(map(int, counters))
        if min(numbers) < 0 or numbers[0] > 65535 or numbers[1] > 65535:
            raise ValueError("not a plain port or counter")  # as PORT and _Count check
        return (float(ts_text), duration, *numbers), self._fast_extra(parts)

    def _fast_extra(self, parts: list[str]) -> dict[str, Any]:
        """The other columns, typed by ``#types``; unset ones left out, ``(empty)`` as ""."""
        values = self.extra_values(parts)
        unset, empty = self.unset, self.empty
        typed: list[Any] = list(values)
        unsets, empties = values.count(unset), values.count(empty)
        if (unsets or empties) and not self.extra_unique:
            return {
                n: ("" if v == empty else conv(v))
                for (n, _, conv), v in zip(self.extra_spec, values, strict=True)
                if v != unset
            }
        for group, convert in self.extra_groups:
            for j in group:
                value = typed[j]
                if value != unset and value != empty:
                    typed[j] = convert(value)
        # Same lengths by construction; ``strict=`` would cost a keyword call per record.
        extra = dict(zip(self.extra_names, typed))  # noqa: B905
        _unset_and_empty(extra, self.extra_names, values, unset, empty)
        return extra

    def _directive(self, text: str, line: bytes, lineno: int, offset: int) -> None:
        key, _, value = text[1:].partition(" " if text.startswith("#separator") else self.sep)
        if key == "separator":
            self.sep = value.encode("ascii", "backslashreplace").decode("unicode_escape")
            self.fields = None
            self._plan()
        elif key == "unset_field":
            self.unset = value
            self._plan()
        elif key == "empty_field":
            self.empty = value
            self._plan()
        elif key == "path":
            self.path = value
        elif key == "fields":
            self.fields = value.split(self.sep)
            self._plan()
        elif key == "types":
            if self.fields is None or len(value.split(self.sep)) != len(self.fields):
                self.reject("#types does not match #fields", line, lineno, offset)
                return
            self.types = dict(zip(self.fields, value.split(self.sep), strict=True))
            self._plan()
        elif key not in ("set_separator", "open", "close"):
            self.skip("unknown zeek directive")
            return
        self.skip("header line")

    def _json(self, line: bytes, lineno: int, offset: int) -> None:
        try:
            rec = load_json(line)
        except JsonRejected as exc:
            self.reject(str(exc), line, lineno, offset)
            return
        if not isinstance(rec, dict):
            self.reject("JSON line is not an object", line, lineno, offset)
            return
        path = rec.pop("_path", "conn")
        if path != "conn" or ("conn_state" not in rec and "orig_pkts" not in rec):
            self.skip(f"zeek {path if path != 'conn' else 'non-conn'} record")
            return
        self._emit(rec, line, lineno, offset)

    def _emit(self, rec: dict[str, Any], line: bytes, lineno: int, offset: int) -> None:
        try:
            event = self._event(rec, line)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            self.reject(reason, line, lineno, offset)
            return
        self.out.event(event)

    def _event(self, rec: dict[str, Any], line: bytes) -> FlowEvent:
        src, dst = rec["id.orig_h"], rec["id.resp_h"]
        if not isinstance(src, str) or not isinstance(dst, str) or not valid_ip(src) or not valid_ip(dst):
            raise ValueError(f"bad address {str(src)[:60]!r} -> {str(dst)[:60]!r}")
        ts_raw = rec["ts"]
        ts = ms_from_iso(ts_raw) if isinstance(ts_raw, str) and "T" in ts_raw else round(float(ts_raw) * 1000)
        proto = str(rec.get("proto") or "0")
        if proto not in PROTO_NUMBERS and not proto.isdigit():
            proto = "0"  # Zeek's unknown_transport
        sport, dport = _count(rec, "id.orig_p"), _count(rec, "id.resp_p")
        if sport > 65535 or dport > 65535:
            raise ValueError(f"port out of range: {sport} / {dport}")
        duration = rec.get("duration")
        bytes_out = _count(rec, "orig_ip_bytes") if "orig_ip_bytes" in rec else _count(rec, "orig_bytes")
        bytes_in = _count(rec, "resp_ip_bytes") if "resp_ip_bytes" in rec else _count(rec, "resp_bytes")
        types = self.types
        extra = {k: _typed(v, types.get(k)) for k, v in rec.items() if k not in _CORE}
        tenant, vm, host = self.flow_owner(src, dst)
        return FlowEvent(
            id=event_id("zeek", line), ts=ts, source="zeek", tenant=tenant, host=host, vm=vm,
            src_ip=src, dst_ip=dst, src_port=sport, dst_port=dport, proto=proto,
            bytes_out=bytes_out, bytes_in=bytes_in, packets_out=_count(rec, "orig_pkts"),
            packets_in=_count(rec, "resp_pkts"),
            duration_ms=round(float(duration) * 1000) if duration not in (None, "") else 0,
            action="reject" if rec.get("conn_state") == "REJ" else "accept", extra=extra,
        )  # fmt: skip


def _bool(text: str) -> bool:
    if text not in ("T", "F"):
        raise ValueError(f"bad bool {text!r}")
    return text == "T"


_CONVERTERS: Final[dict[str, Callable[[str], Any]]] = {
    "count": int, "int": int, "port": int, "double": float, "interval": float, "time": float, "bool": _bool,
}  # fmt: skip
_PROTOS: Final = frozenset({"tcp", "udp", "icmp"})
_BOOLS: Final = {"T": True, "F": False}
_FAST: Final = ("ts", "id.orig_h", "id.resp_h", "proto", "duration", "id.orig_p", "id.resp_p", "orig_ip_bytes",
                "resp_ip_bytes", "orig_pkts", "resp_pkts")  # fmt: skip
_event_id: Final = event_id_of("zeek")
_Count = Annotated[int, msgspec.Meta(ge=0)]


def _no_json_way(text: str) -> Any:
    """``decode_numbers`` of a layout ``_plan_json`` leaves to ``_text_columns``."""
    raise ValueError("no JSON way for this layout")


def _unset_and_empty(
    extra: dict[str, Any], names: tuple[str, ...], values: tuple[str, ...], unset: str, empty: str
) -> None:
    """Leave the unset columns out of ``extra`` and give the (empty) ones as ""."""
    j = -1
    for _ in range(values.count(unset)):
        j = values.index(unset, j + 1)
        del extra[names[j]]
    j = -1
    for _ in range(values.count(empty)):
        j = values.index(empty, j + 1)
        extra[names[j]] = ""


def _json_number(text: str) -> bool:
    """Whether ``text`` reads as JSON numbers: an unset marker of "7" would, and an unset counter
    or duration is 0, not 7, so such a marker leaves the numbers to ``_text_columns``."""
    try:
        msgspec.json.decode(f"[{text}]", type=list[float])
    except ValueError:
        return False
    return True


def _count(rec: dict[str, Any], name: str) -> int:
    value = rec.get(name)
    if value is None or value == "":
        return 0
    number = int(value)
    if number < 0:
        raise ValueError(f"{name} is negative")
    return number


def _typed(value: Any, zeek_type: str | None) -> Any:
    """TSV text as the JSON writer would give it: counts as ints, bools as bools, doubles as floats."""
    if not isinstance(value, str):
        return value
    if zeek_type == "bool":
        return value == "T"
    if value.isdigit():
        return int(value)
    if zeek_type in ("double", "interval", "time"):
        try:
            return float(value)
        except ValueError:
            return value
    return value
