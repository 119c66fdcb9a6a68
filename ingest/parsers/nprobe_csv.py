"""nProbe-style NetFlow text/CSV (nProbe ``-P`` dumps, the NF-* datasets) -> flow events.

The first line names the columns with NetFlow template names (``IPV4_SRC_ADDR``, ``L4_SRC_PORT``,
``IPV4_DST_ADDR``, ``L4_DST_PORT``, ``PROTOCOL``, ``IN_BYTES``, ``IN_PKTS``, ``OUT_BYTES``,
``OUT_PKTS``, ``FLOW_START_MILLISECONDS``, ``FLOW_END_MILLISECONDS``, ...); the separator is
whichever of ``|`` (nProbe's default), ``,``, tab or ``;`` the header uses. IN_* counters are the
client's (source's) ``bytes_out``/``packets_out``, OUT_* the server's answer (``bytes_in``).
Times: *_MILLISECONDS as epoch ms, else FIRST_SWITCHED/LAST_SWITCHED or FLOW_START_SEC as epoch
seconds. The event's ``ts`` is the flow's end: its start plus FLOW_DURATION_MILLISECONDS, or the
end column (LAST_SWITCHED...); with no start, the end column, and with no time at all the ingest
reference time (``extra.ts_missing``). Other columns (L7_PROTO, TCP_FLAGS, Label, Attack, ...) go
to ``extra`` under their header names, numbers as numbers.
Numbers are read strictly (ASCII digits within the canonical bounds, times within the plausible
event times, an end no earlier than the start): anything else sends the record to the DLQ with the
column and its value.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Final

from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext
from ingest.parsers.flowutil import (
    COUNT_MAX,
    INT64_MIN,
    BadField,
    clip,
    count_cell,
    csv_cells,
    decimal_cell,
    event_time,
    number_or_text,
    picker,
    proto_name,
    valid_ip,
)
from ingest.schema import TS_MAX_MS, TS_MIN_MS, FlowEvent, event_id, event_id_of

__all__ = ["TIME_COLUMNS", "NprobeCsvParser", "has_flow_times"]

_PROTO: Final = [proto_name(n) for n in range(256)]

_SRC: Final = ("IPV4_SRC_ADDR", "IPV6_SRC_ADDR", "SRC_ADDR")
_DST: Final = ("IPV4_DST_ADDR", "IPV6_DST_ADDR", "DST_ADDR")
_COUNTERS: Final = {
    "L4_SRC_PORT": "src_port", "L4_DST_PORT": "dst_port", "IN_BYTES": "bytes_out", "IN_PKTS": "packets_out",
    "OUT_BYTES": "bytes_in", "OUT_PKTS": "packets_in",
}  # fmt: skip
_START: Final = (("FLOW_START_MILLISECONDS", 1), ("FIRST_SWITCHED", 1000), ("FLOW_START_SEC", 1000))
_END: Final = (("FLOW_END_MILLISECONDS", 1), ("LAST_SWITCHED", 1000), ("FLOW_END_SEC", 1000))
_SEPARATORS: Final = ("|", ",", "\t", ";")
_ANY_SEPARATOR: Final = re.compile("|".join(re.escape(sep) for sep in _SEPARATORS))
TIME_COLUMNS: Final = tuple(name for name, _scale in (*_START, *_END))
"""The columns a record's time is read from; a layout with none (the NF-*-v2 datasets) has no time."""


def has_flow_times(header: list[str]) -> bool:
    """Whether a header (its column names, or cells still joined by another separator) holds a
    column a flow's time is read from."""
    names = {name.strip() for cell in header for name in _ANY_SEPARATOR.split(cell)}
    return not names.isdisjoint(TIME_COLUMNS)


_INF: Final = math.inf
_event_id: Final = event_id_of("netflow")


class NprobeCsvParser(FastPathParser):
    source: ClassVar[str] = "netflow"
    record_name = "nProbe CSV"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self.header: list[str] | None = None
        self.sep = ","
        self.fast_nfields = -1  # columns of a record the fast path takes; -1: none (no usable header)
        self.undated = 0  # records with no time column, stamped with the time they were read

    def _set_header(self, text: str, line: bytes, lineno: int, offset: int) -> None:
        self.sep = max(_SEPARATORS, key=text.count)
        names = [n.strip().strip('"') for n in text.split(self.sep)]
        pos = {n: i for i, n in enumerate(names)}
        src = next((pos[n] for n in _SRC if n in pos), None)
        dst = next((pos[n] for n in _DST if n in pos), None)
        if src is None or dst is None:
            self.reject("header has no IPV4_SRC_ADDR/IPV4_DST_ADDR columns", line, lineno, offset)
            return
        self.header = names
        self.src_i, self.dst_i = src, dst
        self.proto_i = pos.get("PROTOCOL")
        self.counters = [(field, pos[col]) for col, field in _COUNTERS.items() if col in pos]
        self.start = next(((pos[c], m) for c, m in _START if c in pos), None)
        self.end = next(((pos[c], m) for c, m in _END if c in pos), None)
        self.duration_i = pos.get("FLOW_DURATION_MILLISECONDS")
        used = {src, dst, *(i for _, i in self.counters)}
        used.update(i for i in (self.proto_i, self.duration_i) if i is not None)
        used.update(t[0] for t in (self.start, self.end) if t is not None)
        self.extra_pos = [(n, i) for i, n in enumerate(names) if i not in used]
        self.kinds: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # inferred from the first record
        complete = (
            len(self.counters) == len(_COUNTERS) and self.proto_i is not None and self.start is not None
        )
        fast = complete and (self.duration_i is not None or self.end is not None)
        self.fast_nfields = len(names) if fast else -1
        if fast:
            by_field = dict(self.counters)
            order = ("src_port", "dst_port", "bytes_out", "packets_out", "bytes_in", "packets_in")
            start_i, self.start_scale = self.start  # type: ignore[misc]
            if self.duration_i is not None:
                last, self.end_scale = self.duration_i, 0  # 0: the last number is the duration
            else:
                last, self.end_scale = self.end  # type: ignore[misc]
            self.numbers = picker([*(by_field[f] for f in order), self.proto_i, start_i, last])  # type: ignore[list-item]
            self.extra_names = tuple(n for n, _ in self.extra_pos)
            self.extra_values = picker([i for _, i in self.extra_pos])
        self.keep_header("columns", line)
        self.skip("header line")

    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """All standard columns present and plain: no per-field checks; None = take the slow path,
        which finds and names the problem (also of anything unforeseen here)."""
        if self.fast_nfields < 0:  # no header yet
            return None
        try:
            parts = csv_cells(line.decode("utf-8"), self.sep)
            if len(parts) != self.fast_nfields:
                return None
            src, dst = parts[self.src_i], parts[self.dst_i]
            owner = self.checked_flow_owner(src, dst)
            if owner is None:
                return None
            values = self.extra_values(parts)
            kinds = self.kinds
            if kinds is None:
                kinds = self.kinds = _kinds(values)
            ints, floats = kinds
            numbers = self.numbers(parts)
            digits = "".join(numbers)  # int() would also take "-5", "+5", "1_000", non-ASCII digits
            if not (digits.isdigit() and digits.isascii()):
                return None
            sport, dport, bytes_out, packets_out, bytes_in, packets_in, proto, ts, last = map(int, numbers)
            if ints or floats:
                values = list(values)  # type: ignore[assignment]
                for j in ints:
                    number = int(values[j])
                    if not INT64_MIN <= number <= COUNT_MAX:
                        return None
                    values[j] = number  # type: ignore[index]
                for j in floats:
                    real = float(values[j])
                    values[j] = real if -_INF < real < _INF else None  # type: ignore[index]
            start = ts * self.start_scale
            duration = last if not self.end_scale else last * self.end_scale - start
            ts = start + duration  # the flow's end (ingest.schema.FlowEvent)
            if (
                sport > 65535
                or dport > 65535
                or proto > 255
                or not TS_MIN_MS <= start <= ts < TS_MAX_MS  # also: the duration is not negative
                # all non-negative: the OR exceeds the bound iff one of them does
                or (bytes_out | packets_out | bytes_in | packets_in) > COUNT_MAX
            ):
                return None
            # Same lengths by construction; ``strict=`` would cost a keyword call per record.
            return replace(
                self.flow_base(owner), id=_event_id(line), ts=ts, src_ip=src, dst_ip=dst, src_port=sport,
                dst_port=dport, proto=_PROTO[proto], bytes_out=bytes_out, packets_out=packets_out,
                bytes_in=bytes_in, packets_in=packets_in, duration_ms=duration,
                extra=dict(zip(self.extra_names, values)),  # noqa: B905
            )  # fmt: skip
        except Exception:
            return None

    def _checked_event(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        """The event of one line, or None when it was skipped, rejected or was the header."""
        text = self.text_of(line, lineno, offset)
        if text is None:
            return None
        if self.header is None:
            self._set_header(text, line, lineno, offset)
            return None
        parts = csv_cells(text, self.sep)
        if len(parts) != len(self.header):
            if parts == self.header:
                self.skip("header line")
                return None
            self.reject(f"expected {len(self.header)} columns, got {len(parts)}", line, lineno, offset)
            return None
        return self._event(parts, line)

    def _event(self, parts: list[str], line: bytes) -> FlowEvent:
        src, dst = parts[self.src_i].strip(), parts[self.dst_i].strip()
        if not valid_ip(src) or not valid_ip(dst):
            raise BadField(f"bad address {clip(src, 60)} -> {clip(dst, 60)}")
        names = self.header
        assert names is not None
        counts: dict[str, Any] = {}
        for field, i in self.counters:
            high = 65535 if field.endswith("_port") else COUNT_MAX
            counts[field] = count_cell(names[i], parts[i], high) if parts[i] else 0
        extra: dict[str, Any] = {name: number_or_text(parts[i], name) for name, i in self.extra_pos}
        ts, duration = self._end_and_duration(parts, extra)
        proto_i = self.proto_i
        proto = proto_name(count_cell(names[proto_i], parts[proto_i], 255)) if proto_i is not None else "0"
        tenant, vm, host = self.flow_owner(src, dst)
        return FlowEvent(
            id=event_id("netflow", line), ts=ts, source="netflow", tenant=tenant, host=host, vm=vm,
            src_ip=src, dst_ip=dst, proto=proto, duration_ms=duration, extra=extra, **counts,
        )  # fmt: skip

    def _end_and_duration(self, parts: list[str], extra: dict[str, Any]) -> tuple[int, int]:
        """(the flow's end, its duration) in ms: the start plus the duration column or up to the end
        column; the end column alone; or, with no time at all, the reference time."""
        names = self.header
        assert names is not None
        duration_i = self.duration_i
        duration = 0
        if duration_i is not None and parts[duration_i]:
            duration = count_cell(names[duration_i], parts[duration_i])
        if self.start is None:
            if self.end is not None:
                return self._time(parts, *self.end), duration
            extra["ts_missing"] = True
            self.undated += 1
            return self.ctx.now_ms(), duration
        start = self._time(parts, *self.start)
        if duration_i is not None and parts[duration_i]:
            if start + duration >= TS_MAX_MS:  # a long flow can end past the event times it started within
                s, d = self.start[0], duration_i
                raise BadField(f"{names[s]} + {names[d]} out of range: {clip(parts[s])} + {clip(parts[d])}")
            return start + duration, duration
        if self.end is None:
            return start, 0
        end = self._time(parts, *self.end)
        if end < start:
            e, s = self.end[0], self.start[0]
            raise BadField(f"{names[e]} {clip(parts[e])} is before {names[s]} {clip(parts[s])}")
        return end, end - start

    def _time(self, parts: list[str], i: int, scale: int) -> int:
        """Epoch ms of the time column ``i``: whole milliseconds, or seconds (``scale`` 1000), which
        may carry a fraction."""
        name, cell = self.header[i], parts[i]  # type: ignore[index]
        ms = count_cell(name, cell) if scale == 1 else int(decimal_cell(name, cell) * scale)
        return event_time(name, ms, cell)


def _kinds(sample: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Which extra columns are ints and which floats (the rest is text), judged on the first
    record; a later value that does not fit raises ValueError and the record takes the slow path,
    which converts cell by cell."""
    kinds = [number_or_text(cell) for cell in sample]
    ints = tuple(j for j, v in enumerate(kinds) if isinstance(v, int))
    floats = tuple(j for j, v in enumerate(kinds) if isinstance(v, float) or v is None)
    return ints, floats
