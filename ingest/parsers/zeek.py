"""Zeek ``conn.log`` -> flow events, in both of Zeek's writers' formats.

TSV (the default ASCII writer): ``#separator \\x09`` first, then ``#set_separator``,
``#empty_field``, ``#unset_field``, ``#path``, ``#open``, ``#fields``, ``#types``; records; ``#close``.
A new header block (log rotation, ``cat`` of several files) resets the layout. JSON lines (the
``LogAscii::use_json`` writer): one object per line.

JSON as it reaches Kafka. The Kafka log writer (the zeek-kafka plugin, formerly Apache Metron's
``metron-bro-plugin-kafka``) writes the same objects with the settings a sensor picks, and RockNSM's
sensors, for one, set all three below (``Kafka::tag_json = T``, ``Kafka::json_timestamps =
JSON::TS_ISO8601``, ``Log::default_scope_sep = "_"``):

- ``tag_json``: each record wrapped in an object named after its log path, ``{"conn": {...}}``
  (a second filter on one stream gets ``conn-2``), beside the plugin's
  ``additional_message_values`` at the root, which are kept in ``extra``;
- ``json_timestamps`` (also ``LogAscii::json_timestamps``): ``ts`` as epoch seconds (``TS_EPOCH``,
  the default), ISO 8601 (``TS_ISO8601``), or an integer of epoch milliseconds (``TS_MILLIS``;
  Zeek's ``init-bare.zeek``: "unsigned integers that represent the number of milliseconds since
  the UNIX epoch"); an integer ``ts`` of 10^11 or more is read as milliseconds, as no plausible
  time in seconds is that large. ``duration`` is an interval, seconds in every setting;
- ``Log::default_scope_sep``: the separator of a record's nested names, ``id.orig_h`` by default,
  ``id_orig_h`` with ``"_"``; the connection's ``id`` fields are read with whichever separator the
  log uses, in TSV headers as in JSON, and an ``id`` written as a nested object is read too.

Mapping: originator (``id.orig_h``/``id.orig_p``) is the source. Byte counters are the IP-layer
ones (``orig_ip_bytes``/``resp_ip_bytes``, comparable with NetFlow and VPC Flow Logs) when present,
else the payload ones; ``conn_state`` ``REJ`` (attempt answered by a reset) is ``action: reject``.
All other columns (``uid``, ``service``, ``conn_state``, ``history``, payload bytes...) go to
``extra``. Records from other Zeek logs (dns, http...) are counted as skipped. Zeek's ``ts`` is
the connection's first packet: the event's ``ts`` is its end, ``ts + duration``.

Values are read strictly: a port or counter is an integer within the canonical bounds (JSON
``true`` or ``80.9`` is not a port), ``ts`` and ``ts + duration`` plausible event times,
``duration`` not negative, ``proto`` tcp/udp/icmp/unknown_transport or a number 0-255; anything
else sends the record to the DLQ with the field and its value. A ``#separator`` that cannot be
read is refused and the previous separator kept, so the rest of the file is still read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from itertools import product
from typing import Annotated, Any, ClassVar, Final

import msgspec
from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext, ms_from_iso
from ingest.parsers.flowutil import (
    COUNT_MAX,
    INT64,
    INT64_MIN,
    PORT,
    PROTO_NUMBERS,
    BadField,
    clip,
    count_cell,
    decimal_cell,
    event_time,
    int64_cell,
    picker,
    valid_ip,
)
from ingest.schema import TS_MAX_MS, TS_MIN_MS, FlowEvent, event_id, event_id_of

__all__ = ["ZeekConnParser"]

_CORE: Final = frozenset(
    {"ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration", "orig_ip_bytes",
     "resp_ip_bytes", "orig_pkts", "resp_pkts"}
)  # fmt: skip


class ZeekConnParser(FastPathParser):
    source: ClassVar[str] = "zeek"
    record_name = "Zeek conn.log"

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

    def _checked_event(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        """The event of one line, or None when it was a directive, skipped or rejected here."""
        if line[:1] == b"{":
            return self._json(line, lineno, offset)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.reject(f"invalid UTF-8 at byte {exc.start}", line, lineno, offset)
            return None
        if text[:1] == "#":
            self._directive(text, line, lineno, offset)
            return None
        if not text.strip():
            self.skip("blank line")
            return None
        if self.fields is None:
            self.reject("record before a #fields header", line, lineno, offset)
            return None
        if self.path != "conn":
            self.skip(f"zeek {self.path} log (not conn)")
            return None
        parts = text.split(self.sep)
        if len(parts) != len(self.fields):
            self.reject(f"expected {len(self.fields)} fields, got {len(parts)}", line, lineno, offset)
            return None
        unset, empty = self.unset, self.empty
        rec: dict[str, Any] = {
            name: ("" if value == empty else value)
            for name, value in zip(self.fields, parts, strict=True)
            if value != unset
        }
        return self._event(rec, line)

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
                for kind, fast in ((_int, _int), (_float, _float), (_bool, _BOOLS.__getitem__))
                if kind in kinds
            ]
            self._plan_json([pos[n] for n in _FAST])

    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """A conn.log TSV record with the standard columns, plain: no per-field checks; None = take
        the checked path (directives, JSON, other logs, anything odd or unforeseen), which names
        the problem."""
        if line[:1] in b"#{":  # also b"": a blank line
            return None
        try:
            parts = line.decode("utf-8").split(self.sep)
            if len(parts) != self.fast_nfields or self.path != "conn":
                return None
            src, dst, proto, state = self.head(parts)
            if proto not in _PROTOS:
                return None
            owner = self.checked_flow_owner(src, dst)
            if owner is None:
                return None
            try:
                numbers, extra = self._json_columns(parts)
            except ValueError:  # a cell that is not a JSON number: unset, (empty), "+1", "inf"...
                numbers, extra = self._text_columns(parts)
            seconds, duration_s, sport, dport, bytes_out, bytes_in, packets_out, packets_in = numbers
            start = round(seconds * 1000)
            duration = round(duration_s * 1000)  # not negative: decoded or read as such
            ts = start + duration  # the flow's end (ingest.schema.FlowEvent)
            if not TS_MIN_MS <= start <= ts < TS_MAX_MS:  # also bounds the duration
                return None
            return replace(
                self.flow_base(owner), id=_event_id(line), ts=ts, src_ip=src, dst_ip=dst, src_port=sport,
                dst_port=dport, proto=proto, bytes_out=bytes_out, bytes_in=bytes_in, packets_out=packets_out,
                packets_in=packets_in, duration_ms=duration, action="reject" if state == "REJ" else "accept",
                extra=extra,
            )  # fmt: skip
        except Exception:
            return None

    def _plan_json(self, fast_columns: list[int]) -> None:
        """The numeric columns (the core ones, then the extra ones typed as numbers) as one JSON
        array, decoded in one C call into ints and floats; the bools through a table of their
        combinations; then all extra values put in column order by one picker."""
        numeric = [(n, i, conv) for n, i, conv in self.extra_spec if conv in _JSON_KINDS]
        flags = [(n, i) for n, i, conv in self.extra_spec if conv is _bool]
        # the cells are picked before decode_numbers is called, also when it always refuses
        self.numbers = picker([*fast_columns[:1], *fast_columns[4:], *(i for _, i, _ in numeric)])
        self.decode_numbers = self.decode_unset_numbers = _no_json_way
        unset, empty = self.unset, self.empty
        if not self.extra_unique or len(flags) > 4 or _json_number(unset) or _json_number(empty):
            return  # a duplicate name, a big table, or a marker that would pass for a number
        kinds = (float, _Seconds, PORT, PORT, *(_Count,) * 4, *(_JSON_KINDS[conv] for _, _, conv in numeric))
        self.decode_numbers = msgspec.json.Decoder(tuple[kinds]).decode  # type: ignore[valid-type]
        # unset cells read as null: where _text_columns takes them (the duration, the counters and
        # the extra numbers); the time and the ports stay required, as there
        nullable = (float, _Seconds | None, PORT, PORT, *(_Count | None,) * 4, *(k | None for k in kinds[8:]))
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
        duration = 0.0 if dur == unset else decimal_cell("duration", dur)
        counters = self.counters(parts)
        if unset in counters:  # an unset counter is 0 (an unset port is not plain)
            counters = (*counters[:2], *("0" if v == unset else v for v in counters[2:]))
        digits = "".join(counters)  # int() would also take "-5", "+5", "1_000", non-ASCII digits
        if not (digits.isdigit() and digits.isascii()):
            raise ValueError("not a plain port or counter")
        numbers = tuple(map(int, counters))
        if numbers[0] > 65535 or numbers[1] > 65535 or max(numbers) > COUNT_MAX or duration < 0:
            raise ValueError("not a plain port or counter")  # as PORT, _Count and _Seconds check
        return (decimal_cell("ts", ts_text), duration, *numbers), self._fast_extra(parts)

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
        if key == "separator":  # a new header block: the layout is read anew
            self.fields = None
            self.forget_header()
            self._plan()
            self.sep = _separator(value)
        elif key == "unset_field":
            self.unset = value
            self._plan()
        elif key == "empty_field":
            self.empty = value
            self._plan()
        elif key == "path":
            self.path = value
        elif key == "fields":
            self.fields = _dotted_names(value.split(self.sep))
            self._plan()
        elif key == "types":
            if self.fields is None or len(value.split(self.sep)) != len(self.fields):
                raise BadField("#types does not match #fields")
            self.types = dict(zip(self.fields, value.split(self.sep), strict=True))
            self._plan()
        elif key not in ("set_separator", "open", "close"):
            self.skip("unknown zeek directive")
            return
        if key not in ("open", "close"):  # what the layout depends on (see Parser.prime)
            self.keep_header(key, line)
        self.skip("header line")

    def _json(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        rec = self.json_object(line, line, lineno, offset)
        if rec is None:
            return None
        tagged = _untagged(rec) if "ts" not in rec else None
        if tagged is not None:
            path, rec = tagged
        else:
            path = rec.pop("_path", "conn")
        if "id.orig_h" not in rec:
            rec = _dotted_id(rec)
        if not _is_conn_path(path) or ("conn_state" not in rec and "orig_pkts" not in rec):
            self.skip(f"zeek {path if not _is_conn_path(path) else 'non-conn'} record")
            return None
        return self._event(rec, line)

    def _event(self, rec: dict[str, Any], line: bytes) -> FlowEvent:
        """The event of one record (TSV cells as text, or JSON values); BadField names what is wrong."""
        src, dst = _required(rec, "id.orig_h"), _required(rec, "id.resp_h")
        if not isinstance(src, str) or not isinstance(dst, str) or not valid_ip(src) or not valid_ip(dst):
            raise BadField(f"bad address {clip(src, 60)} -> {clip(dst, 60)}")
        start = _event_ms(_required(rec, "ts"))
        duration = _duration_ms(rec.get("duration"))
        ts = start + duration  # the flow's end (ingest.schema.FlowEvent)
        if ts >= TS_MAX_MS:  # a long flow can end past the event times it started within
            raise BadField(f"ts + duration out of range: {clip(rec['ts'])} + {clip(rec.get('duration'))}")
        proto = _proto(rec.get("proto"))
        sport, dport = _count(rec, "id.orig_p", 65535), _count(rec, "id.resp_p", 65535)
        bytes_out = _count(rec, "orig_ip_bytes") if "orig_ip_bytes" in rec else _count(rec, "orig_bytes")
        bytes_in = _count(rec, "resp_ip_bytes") if "resp_ip_bytes" in rec else _count(rec, "resp_bytes")
        types = self.types
        extra = {k: _typed(k, v, types.get(k)) for k, v in rec.items() if k not in _CORE}
        tenant, vm, host = self.flow_owner(src, dst)
        return FlowEvent(
            id=event_id("zeek", line), ts=ts, source="zeek", tenant=tenant, host=host, vm=vm,
            src_ip=src, dst_ip=dst, src_port=sport, dst_port=dport, proto=proto,
            bytes_out=bytes_out, bytes_in=bytes_in, packets_out=_count(rec, "orig_pkts"),
            packets_in=_count(rec, "resp_pkts"), duration_ms=duration,
            action="reject" if rec.get("conn_state") == "REJ" else "accept", extra=extra,
        )  # fmt: skip


def _bool(text: str) -> bool:
    if text not in ("T", "F"):
        raise ValueError(f"bad bool {text!r}")
    return text == "T"


def _int(text: str) -> int:
    """A TSV integer cell, strictly (ValueError for "+5", "1_000", 2^64...)."""
    return int64_cell("", text)


def _float(text: str) -> float:
    """A TSV decimal cell, strictly (ValueError for "inf", "nan", "1_0.5"...)."""
    return decimal_cell("", text)


_CONVERTERS: Final[dict[str, Callable[[str], Any]]] = {
    "count": _int, "int": _int, "port": _int, "double": _float, "interval": _float, "time": _float, "bool": _bool,
}  # fmt: skip
_JSON_KINDS: Final[dict[Callable[[str], Any], Any]] = {
    _int: INT64,
    _float: float,
}  # how the JSON way decodes them
_PROTOS: Final = frozenset({"tcp", "udp", "icmp"})
_BOOLS: Final = {"T": True, "F": False}
_FAST: Final = ("ts", "id.orig_h", "id.resp_h", "proto", "duration", "id.orig_p", "id.resp_p", "orig_ip_bytes",
                "resp_ip_bytes", "orig_pkts", "resp_pkts")  # fmt: skip
_event_id: Final = event_id_of("zeek")
_Count = Annotated[int, msgspec.Meta(ge=0, le=COUNT_MAX)]
_Seconds = Annotated[float, msgspec.Meta(ge=0)]  # a duration
_UNKNOWN_PROTO: Final = ("", "unknown_transport")  # Zeek's name for a transport it does not know
_ESCAPE: Final = re.compile(r"\\x([0-9A-Fa-f]{2})")
_CONN_PATH: Final = re.compile(r"conn-[0-9]+")
_ID_PARTS: Final = ("orig_h", "orig_p", "resp_h", "resp_p")
_SCOPED_ORIG_H: Final = re.compile(r"id(.{1,8})orig_h")
# An integer ts from here on is milliseconds (TS_MILLIS): as seconds it would be past the year 5000.
_MILLIS_FROM: Final = 10**11
_SEPARATOR: Final = re.compile(r"(?:\\x[0-9A-Fa-f]{2}|[^\\])+")


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


def _separator(value: str) -> str:
    """The separator a ``#separator`` directive names (``\\x09``: a tab); BadField for one that
    cannot be read (``\\x0``, empty)."""
    if _SEPARATOR.fullmatch(value) is None:
        raise BadField(f"bad #separator {clip(value)}, the previous one kept")
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def _is_conn_path(path: object) -> bool:
    """The conn log's path: ``conn``, or ``conn-2``... for a second filter of the stream."""
    return path == "conn" or (isinstance(path, str) and _CONN_PATH.fullmatch(path) is not None)


def _untagged(rec: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(path, record) of a ``tag_json`` message, ``{"conn": {...}}`` with any
    ``additional_message_values`` beside it (kept, under the record's own fields); None when
    ``rec`` is not one: no single member that is a record with a ``ts``."""
    inner = [(name, value) for name, value in rec.items() if isinstance(value, dict)]
    if len(inner) != 1 or "ts" not in inner[0][1]:
        return None
    path, record = inner[0]
    return path, {**{k: v for k, v in rec.items() if k != path}, **record}


def _dotted_names(names: list[str]) -> list[str]:
    """Field names with the connection's ``id`` fields in Zeek's default spelling (``id.orig_h``),
    whatever ``Log::default_scope_sep`` the log was written with (``id_orig_h`` with "_")."""
    if "id.orig_h" in names:
        return names
    seps = {m.group(1) for m in map(_SCOPED_ORIG_H.fullmatch, names) if m is not None}
    if len(seps) != 1:
        return names
    sep = seps.pop()
    scoped = {f"id{sep}{part}": f"id.{part}" for part in _ID_PARTS}
    return [scoped.get(name, name) for name in names]


def _dotted_id(rec: dict[str, Any]) -> dict[str, Any]:
    """A JSON record's ``id`` fields as ``id.orig_h``...: from another scope separator, or from an
    ``id`` written as a nested object."""
    nested = rec.get("id")
    if isinstance(nested, dict):
        flat = {k: v for k, v in rec.items() if k != "id"}
        flat.update((f"id.{part}", nested[part]) for part in _ID_PARTS if part in nested)
        return flat
    names = _dotted_names(list(rec))
    return dict(zip(names, rec.values(), strict=True)) if "id.orig_h" in names else rec


def _required(rec: dict[str, Any], name: str) -> Any:
    value = rec.get(name)
    if value is None or value == "":
        raise BadField(f"missing field {name!r}")
    return value


def _number(name: str, value: Any) -> float:
    """A JSON number (not a bool) or TSV text of a finite decimal number."""
    if isinstance(value, str):
        return decimal_cell(name, value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadField(f"{name} is not a number: {clip(value)}")
    return value


def _event_ms(value: Any) -> int:
    """``ts``: epoch seconds (a number or its text), ISO 8601, or a JSON integer of epoch
    milliseconds (``TS_MILLIS``), as a plausible event time."""
    if isinstance(value, str) and "T" in value:
        try:
            ms = ms_from_iso(value)
        except (ValueError, OverflowError):  # their messages are datetime's wording
            raise BadField(f"ts is not a time: {clip(value)}") from None
    elif isinstance(value, int) and not isinstance(value, bool) and value >= _MILLIS_FROM:
        ms = value  # JSON::TS_MILLIS: integer epoch milliseconds
    else:
        seconds = _number("ts", value)
        if abs(seconds) > 1e12:  # far outside any event time; round() of 1e300 is slow
            raise BadField(f"ts out of range: {clip(value)}")
        ms = round(seconds * 1000)
    return event_time("ts", ms, value)


def _duration_ms(value: Any) -> int:
    if value is None or value == "":
        return 0
    seconds = _number("duration", value)
    if seconds < 0:
        raise BadField(f"duration is negative: {clip(value)}")
    if seconds > COUNT_MAX / 1000:
        raise BadField(f"duration out of range: {clip(value)}")
    return round(seconds * 1000)


def _proto(value: Any) -> str:
    """tcp/udp/icmp, a number 0-255 as text, or "0" for Zeek's unknown_transport (or none)."""
    if value is None or value in _UNKNOWN_PROTO:
        return "0"
    if isinstance(value, str) and value in PROTO_NUMBERS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return str(value)
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= 3
        and int(value) <= 255
    ):
        return str(int(value))
    raise BadField(f"bad proto {clip(value)}")


def _count(rec: dict[str, Any], name: str, high: int = COUNT_MAX) -> int:
    """A port or counter: an integer 0 to ``high`` (TSV digits or a JSON integer, never a bool or
    a float); unset is 0."""
    value = rec.get(name)
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        return count_cell(name, value, high)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(f"{name} is not an integer: {clip(value)}")
    if value < 0:
        raise BadField(f"{name} is negative: {value}")
    if value > high:
        raise BadField(f"{name} out of range: {clip(value)}")
    return value


def _typed(name: str, value: Any, zeek_type: str | None) -> Any:
    """An ``extra`` value as the JSON writer would give it: counts as ints, bools as bools,
    doubles as floats (TSV text converted by its ``#types``, strictly); BadField for one that
    does not fit its type or a 64-bit integer."""
    if not isinstance(value, str):
        if isinstance(value, int) and not INT64_MIN <= value <= COUNT_MAX:
            raise BadField(f"{name} out of range: {clip(value)}")
        return value
    if value == "":  # (empty)
        return value
    if zeek_type == "bool":
        if value not in _BOOLS:
            raise BadField(f"{name} is not a bool: {clip(value)}")
        return _BOOLS[value]
    if zeek_type in ("count", "int", "port") or (value.isascii() and value.isdigit()):
        return int64_cell(name, value)
    if zeek_type in ("double", "interval", "time"):
        return decimal_cell(name, value)
    return value
