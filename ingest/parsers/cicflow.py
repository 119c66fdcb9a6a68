"""CICFlowMeter CSV (CIC-IDS2017 / CSE-CIC-IDS2018 and the tool's own output) -> flow events.

Header names vary between releases and carry leading spaces in CIC-IDS2017 (`` Source IP``); they
are matched through aliases, whatever their case, spaces and underscores: CIC-IDS2017's ``Total Fwd
Packets`` and ``Total Length of Fwd Packets``, CSE-CIC-IDS2018's ``Tot Fwd Pkts`` and ``TotLen Fwd
Pkts``, the current CICFlowMeter's (4.0, ``FlowFeature.java``: also the improved CIC-IDS2017 and
CSE-CIC-IDS2018 of Engelen et al.) ``Total Fwd Packet``, ``Total Bwd packets`` and ``Total Length of
Fwd Packet``, and the Python ``cicflowmeter``'s ``tot_fwd_pkts``, ``totlen_fwd_pkts``, ``src_ip``...
A header without one of the columns a flow is made of (its addresses, ports, protocol, start,
duration, packet and byte counts) is refused with the columns it lacks: read as 0, a counter of
another name made every flow empty. ``Timestamp`` is day-first: ``dd/mm/yyyy HH:MM[:SS]`` with an
optional ``AM``/``PM``, or ``yyyy-mm-dd HH:MM:SS``, seconds with a fraction kept to the
millisecond, in the capture's local time with no offset: read in ``ParseContext.timezone``
(``ssa ingest --tz``; CIC-IDS2017 was captured in New Brunswick, ``America/Moncton``), UTC by
default. ``Flow Duration`` is microseconds (a fraction, as the Python ``cicflowmeter`` writes
``1e6 * seconds``, is rounded).
The ``Timestamp`` is the flow's first packet: the event's ``ts`` is its end, ``Timestamp`` plus
the duration in whole milliseconds.
The forward direction (the flow's initiator) is the source: ``Fwd`` counters are ``*_out``,
``Bwd`` counters ``*_in``. ``Flow ID`` and ``Label`` (the datasets' ground truth) are kept in
``extra``. The ~72 statistical features are kept too, as numbers, only when asked
(``ParseContext.cic_features``, ``ssa ingest --cic-features``): no detector reads them, and
building and encoding them costs more than all the rest of the row. ``Infinity``/``NaN``
(``Flow Bytes/s`` of zero-length flows) become null, since JSON has no such numbers. Files
without address columns (the "MachineLearningCVE" variant) cannot become flows: the header goes
to the DLQ with the columns it lacks, and every row after it as under an unusable header. Numbers
are read strictly (integers, or integral decimals such as ``12.0``, within the canonical bounds; a
``Timestamp`` and its end from 2000 to 2099): anything else sends the row to the DLQ with the
column and its value. A negative ``Flow Duration`` (some CICFlowMeter output has
them) is read as a duration of 0.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final
from zoneinfo import ZoneInfo

import msgspec
from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext
from ingest.parsers.flowutil import (
    COUNT_MAX,
    INT64,
    PORT,
    BadField,
    clip,
    count_cell,
    csv_cells,
    decimal_cell,
    event_time,
    int64_cell,
    number_or_text,
    picker,
    proto_name,
    valid_ip,
)
from ingest.schema import TS_MAX_MS, TS_MIN_MS, FlowEvent, event_id, event_id_of

__all__ = [
    "CicFlowParser",
    "MeridiemlessClock",
    "cic_time_reader",
    "column_key",
    "missing_count_columns",
    "missing_flow_columns",
    "parse_cic_time",
]

_ALIASES: Final = {
    "src": ("Source IP", "Src IP"), "dst": ("Destination IP", "Dst IP"),
    "src_port": ("Source Port", "Src Port"), "dst_port": ("Destination Port", "Dst Port"),
    "proto": ("Protocol",), "ts": ("Timestamp",), "duration": ("Flow Duration",),
    "packets_out": ("Total Fwd Packets", "Tot Fwd Pkts", "Total Fwd Packet"),
    "packets_in": ("Total Backward Packets", "Tot Bwd Pkts", "Total Bwd Packets"),
    "bytes_out": ("Total Length of Fwd Packets", "TotLen Fwd Pkts", "Total Length of Fwd Packet"),
    "bytes_in": ("Total Length of Bwd Packets", "TotLen Bwd Pkts", "Total Length of Bwd Packet"),
}  # fmt: skip
_LOCATING: Final = ("src", "dst", "ts")  # what feature-only layouts lack


def column_key(name: str) -> str:
    """A header name as it is matched: case, spaces and underscores left out (``Tot Fwd Pkts``,
    ``tot_fwd_pkts`` and `` Tot Fwd Pkts`` are one column)."""
    return _NOT_MATCHED.sub("", name).lower()


_NOT_MATCHED: Final = re.compile(r"[\s_]+")
_ALIAS_KEYS: Final = {key: tuple(column_key(a) for a in aliases) for key, aliases in _ALIASES.items()}


def missing_flow_columns(names: list[str]) -> list[str]:
    """The columns that locate a flow (its addresses, its start) that a header lacks, by their
    CIC-IDS2017 names: feature-only layouts (CIC-IDS2017's MachineLearningCVE CSVs, most
    CSE-CIC-IDS2018 day files) have none of them."""
    return _missing(names, _LOCATING)


def missing_count_columns(names: list[str]) -> list[str]:
    """The other columns a flow is made of (ports, protocol, duration, packet and byte counts) that
    a header lacks, by their CIC-IDS2017 names."""
    return _missing(names, tuple(k for k in _ALIASES if k not in _LOCATING))


def _missing(names: list[str], keys: tuple[str, ...]) -> list[str]:
    present = {column_key(name) for name in names}
    return [_ALIASES[k][0] for k in keys if present.isdisjoint(_ALIAS_KEYS[k])]


# The flag-count columns (CIC-IDS2017's names, then CSE-CIC-IDS2018's) and the TCP flag bit each
# stands for. ``cic_flags`` (in every event's extra, features or not) is the OR of the flags counted
# at least once: CICFlowMeter's 2017-2018 releases count only the first packet's flags (their
# ``BasicFlow.addPacket`` leaves ``checkFlags`` out), later ones every packet's; whether the record
# saw a SYN means the same in both, and tells a connection attempt from the rest of a connection
# (the packets after the FIN that ended the previous record, or after the 120 s flow timeout).
_FLAG_COLUMNS: Final = (
    (0x01, ("FIN Flag Count", "FIN Flag Cnt")), (0x02, ("SYN Flag Count", "SYN Flag Cnt")),
    (0x04, ("RST Flag Count", "RST Flag Cnt")), (0x08, ("PSH Flag Count", "PSH Flag Cnt")),
    (0x10, ("ACK Flag Count", "ACK Flag Cnt")), (0x20, ("URG Flag Count", "URG Flag Cnt")),
    (0x40, ("ECE Flag Count", "ECE Flag Cnt")), (0x80, ("CWE Flag Count", "CWR Flag Count")),
)  # fmt: skip
# Always text (a class name, a flow's id), so a file whose labels look like numbers does not
# give Elasticsearch a number where other files gave text; the feature columns are numbers.
_TEXT_COLUMNS: Final = frozenset({"Flow ID", "Label"})
_COUNTERS: Final = ("src_port", "dst_port", "packets_out", "packets_in", "bytes_out", "bytes_in")
_SPACE: Final = re.compile(r"\s")  # exactly what str.strip() removes
_EXACT: Final = 2**53  # larger counters go the slow way (int(float(x)) rounds them)
_CELLS_MAX: Final = 65536
_PROTO: Final = [proto_name(n) for n in range(256)]
_event_id: Final = event_id_of("cicflowmeter")
# what the fast path takes as plain (as its checks on int() of the cells do)
_Count = Annotated[int, msgspec.Meta(ge=0, lt=_EXACT)]
_ProtoNumber = Annotated[int, msgspec.Meta(ge=0, le=255)]
_Duration = Annotated[int, msgspec.Meta(lt=_EXACT)]
_time_cache: dict[str, int] = {}


def parse_cic_time(text: str) -> int:
    """``dd/mm/yyyy HH:MM[:SS][ AM|PM]`` (or ISO ``yyyy-mm-dd HH:MM:SS``) -> epoch ms, as UTC.
    BadField ("bad timestamp ...") for anything else, or a year outside 2000-2099."""
    hit = _time_cache.get(text)
    if hit is not None:
        return hit
    try:
        value = _cic_time(text)
    except (ValueError, OverflowError):  # their messages are int()'s and float()'s wording
        value = None
    if value is None:
        raise BadField(f"bad timestamp {text[:40]!r}")
    if len(_time_cache) > 65536:
        _time_cache.clear()
    _time_cache[text] = value
    return value


def _cic_time(text: str) -> int | None:
    """``parse_cic_time`` without the cache; None (or ValueError) for a time it cannot read."""
    parts = text.strip().split()
    if len(parts) not in (2, 3):
        return None
    date = parts[0].split("-") if "-" in parts[0] else parts[0].split("/")[::-1]
    clock = parts[1].split(":")
    if len(date) != 3 or len(clock) not in (2, 3):
        return None
    year, month, day = map(int, date)
    hour, minute = int(clock[0]), int(clock[1])
    seconds = float(clock[2]) if len(clock) > 2 else 0.0  # may carry a fraction
    second = int(seconds)
    millis = min(999, round((seconds - second) * 1000))
    if len(parts) == 3:
        ampm = parts[2].upper()
        if ampm not in ("AM", "PM") or not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "PM" else 0)
    if not (
        1 <= month <= 12
        and 1 <= day <= 31
        and 0 <= hour < 24
        and 0 <= minute < 60
        and 0 <= second < 61
        and 2000 <= year < 2100  # the plausible event times (ingest.schema)
    ):
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * 1000 + millis


def cic_time_reader(zone: str | None) -> Callable[[str], int]:
    """``parse_cic_time`` for timestamps in local time of the IANA ``zone`` (None: UTC). A wall
    time that happens twice (the hour DST ends) is read as the first; one that never happens (the
    hour it starts) as if the clock had not moved yet."""
    if zone is None or zone == "UTC":
        return parse_cic_time
    local = ZoneInfo(zone)
    cache: dict[str, int] = {}

    def read(text: str) -> int:
        hit = cache.get(text)
        if hit is not None:
            return hit
        utc_ms = parse_cic_time(text)
        wall = datetime.fromtimestamp(utc_ms // 1000, UTC)  # whole seconds, then the fraction again
        value = int(wall.replace(tzinfo=local).timestamp()) * 1000 + utc_ms % 1000
        if len(cache) > 65536:
            cache.clear()
        cache[text] = value
        return value

    return read


_HALF_DAY_MS: Final = 12 * 3_600_000
_BARE_CLOCK: Final = re.compile(r"\s(\d{1,2}):\d")  # the hour of a time with no AM/PM after it


class MeridiemlessClock:
    """``read`` with CIC-IDS2017's clock repaired: its CSVs were written with a 12-hour clock and no
    AM/PM (``hh:mm``), so ``1:00`` there follows ``12:59`` (13:00) and ``5:02`` is 17:02. A time
    written so is ambiguous by 12 hours; exporters write records in nearly the order of their
    times, so it is read as whichever of the two readings is nearer the latest time read so far
    (``12:xx`` as noon or just after midnight, ``1:xx``-``11:xx`` in the morning or the afternoon).
    The first time of a file has nothing to go by and is read as written. Every time of a file is
    read as written once it shows that it writes the meridiem (AM/PM) or a 24-hour clock (ISO
    dates, an hour of ``0`` or ``13``-``23``); before that, a 24-hour file's records do not follow
    one another by more than six hours back or forth, so the rule changes none of its readings."""

    def __init__(self, read: Callable[[str], int]) -> None:
        self.read = read
        self.twelve_hour = True  # until the file shows an hour no 12-hour clock writes
        self.latest: int | None = None
        self._bare_hours: dict[str, int] = {}  # text -> its hour (-1: with AM/PM, or ISO)

    def __call__(self, text: str) -> int:
        ms = self.read(text)  # BadField for an unreadable time, before anything is learnt from it
        if not self.twelve_hour:
            return ms
        hour = self._bare_hours.get(text)
        if hour is None:
            hour = _bare_hour(text)
            if len(self._bare_hours) > 65536:
                self._bare_hours.clear()
            self._bare_hours[text] = hour
        if not 0 < hour <= 12:  # AM/PM, ISO or an hour of 0 or 13-23: the file shows its clock
            self.twelve_hour = False
            return ms
        latest = self.latest
        if latest is not None:
            other = ms - _HALF_DAY_MS if hour == 12 else ms + _HALF_DAY_MS
            if abs(other - latest) < abs(ms - latest):
                ms = other
        if latest is None or ms > latest:
            self.latest = ms
        return ms


def _bare_hour(text: str) -> int:
    """The hour of a ``dd/mm/yyyy HH:MM`` time written without AM/PM, or -1 (with AM/PM, ISO)."""
    stripped = text.strip()
    if "-" in stripped or stripped[-1:].isalpha():
        return -1
    match = _BARE_CLOCK.search(stripped)
    return int(match.group(1)) if match else -1


def _padded(text: str) -> bool:
    """Whether a cell of ``text`` split at commas starts or ends with whitespace (what
    ``str.strip`` removes): whitespace at either end of the line or next to a comma."""
    if text[:1].isspace() or text[-1:].isspace():
        return True
    inner = " ".join(text.split())  # every inner run of whitespace as one space
    return ", " in inner or " ," in inner


def _longest_run(flags: list[bool]) -> tuple[int, int]:
    """``(start, end)`` of the longest run of true flags (the first of equal ones)."""
    best, start = (0, 0), None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


class CicFlowParser(FastPathParser):
    source: ClassVar[str] = "cicflowmeter"
    record_name = "CICFlowMeter CSV"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self.header: list[str] | None = None
        self.bad_header: str | None = None  # why the first line was not a usable header
        self.read_time = MeridiemlessClock(cic_time_reader(self.ctx.timezone))
        self.fast_nfields = -1  # columns of a record the fast path takes; -1: none (no usable header)
        self.decode_row: Callable[[str], tuple[Any, ...]] | None = None  # see _plan_run
        self._cells: dict[str, Any] = {}  # cell text -> number_or_text(cell), for the feature
        # cells read one by one (outside the run, and every one of a line the JSON way does not take)

    def _set_header(self, names: list[str], line: bytes, lineno: int, offset: int) -> None:
        seen: dict[str, int] = {}
        unique = []
        for name in names:  # CIC-IDS2017 repeats "Fwd Header Length"
            n = seen.get(name, 0)
            seen[name] = n + 1
            unique.append(name if n == 0 else f"{name}.{n}")
        pos: dict[str, int] = {}
        for i, column in enumerate(unique):
            pos.setdefault(column_key(column), i)
        cols = {key: next((pos[a] for a in keys if a in pos), None) for key, keys in _ALIAS_KEYS.items()}
        locating, counts = missing_flow_columns(unique), missing_count_columns(unique)
        if locating or counts:
            if self.bad_header is None:
                self.bad_header = f"header has no {', '.join(locating or counts)} column"
                why = (
                    "files of flow features only, like CIC-IDS2017's MachineLearningCVE CSVs, cannot become flows"
                    if locating
                    else "a flow's counts would be read as 0"
                )
                self.reject(f"{self.bad_header} ({why})", line, lineno, offset)
            else:  # every later row is tried as the header: the first one's record says why
                self.reject("row under an unusable header", line, lineno, offset)
            return
        self.header = unique
        self.cols = cols
        self.flag_pos = [
            (bit, pos[key])
            for bit, names in _FLAG_COLUMNS
            for key in map(column_key, names[:2])
            if key in pos
        ]
        self.flags_end = max((i for _, i in self.flag_pos), default=-1) + 1  # cells to split for them
        self.flag_cells = picker([i for _, i in self.flag_pos])
        self._flag_masks: dict[tuple[str, ...], int] = {}  # flag-count cells -> cic_flags
        used = {i for i in cols.values() if i is not None}
        features = self.ctx.cic_features
        self.extra_pos = [
            (n, i) for i, n in enumerate(unique) if i not in used and (features or n in _TEXT_COLUMNS)
        ]
        self.extra_template = dict.fromkeys(n for n, _ in self.extra_pos)  # the key order of every extra
        self.text_pos = [(n, i) for n, i in self.extra_pos if n in _TEXT_COLUMNS]
        self.feature_pos = [(n, i) for n, i in self.extra_pos if n not in _TEXT_COLUMNS]
        self.text_names = tuple(n for n, _ in self.text_pos)
        self.text_values = picker([i for _, i in self.text_pos])
        self.feature_names = tuple(n for n, _ in self.feature_pos)
        self.feature_values = picker([i for _, i in self.feature_pos])
        fast = all(i is not None for i in cols.values())
        self.fast_nfields = len(unique) if fast else -1
        if fast:
            self.src_i: int = cols["src"]  # type: ignore[assignment]  # the three are checked above
            self.dst_i: int = cols["dst"]  # type: ignore[assignment]
            self.ts_i: int = cols["ts"]  # type: ignore[assignment]
            self.numbers = picker([cols[k] for k in (*_COUNTERS, "proto", "duration")])  # type: ignore[misc]
            self._plan_run(used, features)
        self.keep_header("columns", line)
        self.skip("header line")

    def _plan_run(self, core: set[int], features: bool) -> None:
        """Plan the fast path's main way. The longest run of feature columns (12..83 of
        CIC-IDS2017) is taken as one piece of the line: decoded as a JSON array, with the numeric
        core columns appended, in one C call when the features are kept, or only counted when they
        are not. Cells around the run are split one by one; in the split line the run is one cell,
        so the columns after it move left."""
        names = self.header
        assert names is not None
        width = len(names)
        start, end = _longest_run([i not in core and names[i] not in _TEXT_COLUMNS for i in range(width)])
        if start == end:
            self.decode_row = None  # no feature columns at all
            return
        shift = end - start - 1  # where a column after the run is in the split line

        def at(i: int) -> int:
            return i if i < start else i - shift

        self.run_start, self.after_run, self.run_commas = start, width - end, end - start - 1
        self.run_names = tuple(names[start:end]) if features else ()
        loose = [(n, i) for n, i in self.feature_pos if not start <= i < end]
        self.loose_names = tuple(n for n, _ in loose)
        self.loose_values = picker([at(i) for _, i in loose])
        self.split_text_values = picker([at(i) for _, i in self.text_pos])
        self.split_src, self.split_dst, self.split_ts = at(self.src_i), at(self.dst_i), at(self.ts_i)
        numbers = [self.cols[k] for k in (*_COUNTERS, "proto", "duration")]
        self.split_numbers = picker([at(i) for i in numbers])  # type: ignore[arg-type]
        core_kinds = (PORT, PORT, *(_Count,) * 4, _ProtoNumber, _Duration)
        run_kinds = (INT64 | float,) * len(self.run_names)
        kinds = (*run_kinds, *core_kinds)
        self.decode_row = msgspec.json.Decoder(tuple[kinds]).decode  # type: ignore[valid-type]
        nullable = (*(INT64 | float | None,) * len(run_kinds), *core_kinds)
        self.decode_nullable_row = msgspec.json.Decoder(tuple[nullable]).decode  # type: ignore[valid-type]

    def text_of(self, line: bytes, lineno: int, offset: int) -> str | None:
        """The line as text; bytes that are not UTF-8 become U+FFFD instead of costing the row.
        CIC-IDS2017's web-attack labels hold a Windows-1252 dash (``Web Attack \x96 Brute
        Force``): only a free-text cell (``Label``, ``Flow ID``) keeps such a byte, since an address
        or a number with one fails its own check and the row goes to the DLQ by that name."""
        if not line.isascii():
            line = line.decode("utf-8", "replace").encode()
        return super().text_of(line, lineno, offset)

    def _checked_event(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        """The event of one line, or None when it was skipped, rejected or was the header."""
        text = self.text_of(line, lineno, offset)
        if text is None:
            return None
        if not text.replace(",", "").strip():  # CIC-IDS2017's files end in rows of commas only
            self.skip("empty row")
            return None
        parts = csv_cells(text)
        if _SPACE.search(text) is not None:
            parts = [p.strip() for p in parts]
        if self.header is None:
            self._set_header([p.lstrip("\ufeff") for p in parts], line, lineno, offset)
            return None
        if len(parts) != len(self.header):
            if parts[: len(self.header)] == self.header[: len(parts)]:
                self.skip("header line")
                return None
            self.reject(f"expected {len(self.header)} columns, got {len(parts)}", line, lineno, offset)
            return None
        return self._event(parts, line)

    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """Every standard column present and plain (integer counters): no per-field checks;
        None = take the slow path. The run of feature columns is read as JSON (``_run_event``);
        a line that way does not take (a quote, ``Infinity``...) is split cell by cell."""
        if self.fast_nfields < 0:  # no header yet
            return None
        try:  # anything unforeseen too: the slow path reads the row again and names the problem
            text = line.decode("utf-8")
            if '"' not in text and self.decode_row is not None:
                event = self._run_event(text, line)
                if event is not None:
                    return event
            return self._cells_event(text, line)
        except Exception:
            return None

    def _run_event(self, text: str, line: bytes) -> FlowEvent | None:
        """The event of a line whose feature run is a JSON array of numbers and whose core numbers
        are plain; None for anything else, which ``_cells_event`` then decides."""
        cells = text.split(",", self.run_start)
        tail = cells.pop().rsplit(",", self.after_run)
        if len(cells) != self.run_start or len(tail) != self.after_run + 1:
            return None  # too few columns
        cells += tail  # the run is one cell now
        src, dst = cells[self.split_src], cells[self.split_dst]
        owner = self.checked_flow_owner(src, dst)
        if owner is None:
            return None
        # JSON allows the same spaces around a number that int() and number_or_text strip
        core = ",".join(self.split_numbers(cells))
        if self.run_names:
            row = "[" + tail[0] + "," + core + "]"
        elif tail[0].count(",") == self.run_commas:  # the features, left out, are only counted
            row = "[" + core + "]"
        else:
            return None
        try:
            try:
                numbers = self.decode_row(row)  # type: ignore[misc]  # not None here
            except ValueError:
                numbers = self._decode_infinite(row)
            start = self.read_time(cells[self.split_ts])
        except ValueError:  # msgspec.DecodeError too: a cell that is not a plain number, a count
            return None  # of cells that is not the header's, a number out of its range
        sport, dport, packets_out, packets_in, bytes_out, bytes_in, proto, duration_us = numbers[-8:]
        duration = max(0, duration_us) // 1000
        ts = start + duration  # the flow's end (ingest.schema.FlowEvent)
        if not TS_MIN_MS <= start <= ts < TS_MAX_MS:  # a zone's offset past either end, a long flow
            return None
        texts = zip(self.text_names, map(str.strip, self.split_text_values(cells)))  # noqa: B905
        if self.run_names or self.loose_names:
            extra = self.extra_template.copy()
            extra.update(zip(self.run_names, numbers))  # noqa: B905  # stops at the run's end
            extra.update(zip(self.loose_names, map(self._cell, self.loose_values(cells))))  # noqa: B905
            extra.update(texts)
        else:  # the features left out: only the text columns, in the header's order
            extra = dict(texts)
        if self.flags_end:  # TCP's flags only: the split costs a fifth of the row's time
            extra["cic_flags"] = self._flags(text.split(",", self.flags_end)) if proto == 6 else 0
        return replace(
            self.flow_base(owner), id=_event_id(line), ts=ts, src_ip=src, dst_ip=dst, proto=_PROTO[proto],
            duration_ms=duration, extra=extra, src_port=sport, dst_port=dport,
            packets_out=packets_out, packets_in=packets_in, bytes_out=bytes_out, bytes_in=bytes_in,
        )  # fmt: skip

    def _decode_infinite(self, row: str) -> tuple[Any, ...]:
        """``decode_row`` of a row with ``Infinity``/``NaN`` features (``Flow Bytes/s`` of a flow
        with no duration): those are null, as number_or_text has them. ValueError for any other."""
        if "null" in row or ("Infinity" not in row and "NaN" not in row):
            raise ValueError("not a row of numbers")  # a "null" cell is text, not None
        row = row.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null")
        return self.decode_nullable_row(row)

    def _cells_event(self, text: str, line: bytes) -> FlowEvent | None:
        """``_fast_event`` by splitting every cell, the feature cells converted through the cell
        cache; None = take the slow path."""
        if '"' in text:
            try:
                parts = csv_cells(text)
            except ValueError:
                return None
            if _SPACE.search(text) is not None:
                parts = [p.strip() for p in parts]
        else:
            parts = text.split(",")
            if _padded(text):  # else stripping changes nothing (the Timestamp has a space)
                parts = [p.strip() for p in parts]
        if len(parts) != self.fast_nfields:
            return None
        src, dst = parts[self.src_i], parts[self.dst_i]
        owner = self.checked_flow_owner(src, dst)
        if owner is None:
            return None
        cells = self.numbers(parts)
        digits = "".join(cells[:7]) + cells[7].removeprefix("-")  # int() would take "1_000", "+5"...
        if not (digits.isdigit() and digits.isascii()):
            return None
        numbers = tuple(map(int, cells))
        start = self.read_time(parts[self.ts_i])
        sport, dport, packets_out, packets_in, bytes_out, bytes_in, proto, duration_us = numbers
        if max(numbers) >= _EXACT or sport > 65535 or dport > 65535 or proto > 255:
            return None
        duration = max(0, duration_us) // 1000
        ts = start + duration  # the flow's end (ingest.schema.FlowEvent)
        if not TS_MIN_MS <= start <= ts < TS_MAX_MS:  # a zone's offset past either end, a long flow
            return None
        extra = self.extra_template.copy()
        features = self.feature_values(parts)
        # Same lengths by construction; ``strict=`` would cost a keyword call per record.
        try:
            extra.update(zip(self.feature_names, map(self._cells.__getitem__, features)))  # noqa: B905
        except KeyError:
            extra.update(zip(self.feature_names, map(self._cell, features)))  # noqa: B905
        extra.update(zip(self.text_names, self.text_values(parts)))  # noqa: B905
        if self.flags_end:
            extra["cic_flags"] = self._flags(parts) if proto == 6 else 0
        return replace(
            self.flow_base(owner), id=_event_id(line), ts=ts, src_ip=src, dst_ip=dst, proto=_PROTO[proto],
            duration_ms=duration, extra=extra, src_port=sport, dst_port=dport,
            packets_out=packets_out, packets_in=packets_in, bytes_out=bytes_out, bytes_in=bytes_in,
        )  # fmt: skip

    def _flags(self, parts: list[str]) -> int:
        """``cic_flags`` of a row split at least up to its last flag-count column."""
        cells = self.flag_cells(parts)
        mask = self._flag_masks.get(cells)
        if mask is None:
            mask = _flag_mask(cells, self.flag_pos)
            if len(self._flag_masks) >= _CELLS_MAX:
                self._flag_masks.clear()
            self._flag_masks[cells] = mask
        return mask

    def _cell(self, text: str) -> Any:
        cells = self._cells
        value = cells.get(text, cells)
        if value is cells:
            value = number_or_text(text)
            if len(cells) >= _CELLS_MAX:
                cells.clear()
            cells[text] = value
        return value

    def _event(self, parts: list[str], line: bytes) -> FlowEvent:
        cols, names = self.cols, self.header
        assert names is not None
        src, dst = parts[cols["src"]], parts[cols["dst"]]  # type: ignore[index]
        if not valid_ip(src) or not valid_ip(dst):
            raise BadField(f"bad address {clip(src, 60)} -> {clip(dst, 60)}")
        counts: dict[str, Any] = {}
        for key in _COUNTERS:
            i = cols[key]
            if i is not None and parts[i]:
                high = 65535 if key.endswith("_port") else COUNT_MAX
                counts[key] = count_cell(names[i], _integral(names[i], parts[i]), high)
        proto_i, dur_i, ts_i = cols["proto"], cols["duration"], cols["ts"]
        proto = (
            0
            if proto_i is None
            else count_cell(names[proto_i], _integral(names[proto_i], parts[proto_i]), 255)
        )
        duration_us = 0
        if dur_i is not None and parts[dur_i]:
            duration_us = max(0, _duration_us(names[dur_i], parts[dur_i]))
        extra = {
            name: parts[i] if name in _TEXT_COLUMNS else number_or_text(parts[i], name)
            for name, i in self.extra_pos
        }
        if self.flags_end:
            extra["cic_flags"] = self._flags(parts) if proto == 6 else 0
        assert ts_i is not None  # the header has one (_set_header)
        start = event_time(names[ts_i], self.read_time(parts[ts_i]), parts[ts_i])
        duration = duration_us // 1000
        ts = start + duration  # the flow's end (ingest.schema.FlowEvent)
        if ts >= TS_MAX_MS:  # a long flow can end past the event times it started within
            assert dur_i is not None  # a duration was read from it
            cells = f"{clip(parts[ts_i])} + {clip(parts[dur_i])}"
            raise BadField(f"{names[ts_i]} + {names[dur_i]} out of range: {cells}")
        tenant, vm, host = self.flow_owner(src, dst)
        return FlowEvent(
            id=event_id("cicflowmeter", line), ts=ts, source="cicflowmeter", tenant=tenant, host=host, vm=vm,
            src_ip=src, dst_ip=dst, proto=proto_name(proto), duration_ms=duration, extra=extra,
            **counts,
        )  # fmt: skip


def _flag_mask(cells: tuple[str, ...], flag_pos: list[tuple[int, int]]) -> int:
    """The OR of the flags whose count cell holds a number above 0 (anything else counts as 0)."""
    mask = 0
    for (bit, _), cell in zip(flag_pos, cells, strict=True):
        if cell != "0":
            try:
                if float(cell) > 0:
                    mask |= bit
            except ValueError:
                pass
    return mask


def _duration_us(name: str, text: str) -> int:
    """``Flow Duration``: integral microseconds, or a decimal of them rounded (the Python
    ``cicflowmeter`` writes ``1e6 * seconds``); BadField for anything else."""
    whole, dot, fraction = text.strip().partition(".")
    if not dot or not fraction.strip("0"):
        return int64_cell(name, whole)
    return int64_cell(name, str(round(decimal_cell(name, text))))


def _integral(name: str, text: str) -> str:
    """An integer cell written as a decimal with a zero fraction (``12.0``, as some exports write
    counters) without it; BadField for a fraction that is not zero (``80.9`` is not a port)."""
    whole, dot, fraction = text.strip().partition(".")
    if dot and fraction.strip("0"):
        raise BadField(f"{name} is not an integer: {clip(text)}")
    return whole
