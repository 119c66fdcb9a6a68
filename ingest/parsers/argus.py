"""Argus bidirectional flow records as ``ra -c ,`` prints them (the Stratosphere and CTU-13
``.binetflow`` files) -> flow events.

The first line names the columns with ra's labels (``StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,
Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label`` in the Stratosphere captures; a user picks
them with ``ra -s``). Known labels are mapped in any order and case; the others go to ``extra``
under their own names, numbers as numbers, blank cells left out.

Mapping: Argus's source (``SrcAddr``/``Sport``: the side that sent the first packet it saw, the
SYN's sender when it saw one) is the event's source. Byte counters: ``bytes_out`` = ``SrcBytes``,
``bytes_in`` = ``DstBytes`` or ``TotBytes - SrcBytes``; packets likewise from ``SrcPkts``/
``DstPkts``/``TotPkts``. A total with no split (the Stratosphere files have ``TotPkts`` only) is all
``*_out`` and ``extra`` says so (``packets_split_unknown``/``bytes_split_unknown``), unless the
bytes show that one side sent nothing (then it sent no packets either). ``Dur`` is seconds (else
``LastTime`` minus ``StartTime``). Unlike the exporters that write a record when a flow ends, the
event's ``ts`` is the flow's start, ``StartTime``: Argus reports each flow in status records of at
most its status interval (``ARGUS_FLOW_STATUS_INTERVAL``, seconds), and ra and racluster files such
as the CTU-13 captures are sorted by ``StartTime`` with aggregated flows up to an hour long, so
windowing them by their end would put most records behind the flows' watermark (92 % of CTU-13
scenario 6 at the 6-minute allowance). ``StartTime`` is ``YYYY/MM/DD HH:MM:SS[.ffffff]`` (or with ``-``) in local time
without an offset, read in ``ParseContext.timezone`` (``ssa ingest --tz``; UTC by default; the
repeated hour where DST ends as its first pass, a ``LastTime`` before its ``StartTime`` there as its
second), or
epoch seconds (``ra -u``); a time of day without a date (ra's default format) cannot be placed and
goes to the DLQ. Ports are decimal, or hex for ICMP (``0x0303``); the ``Dport`` of an ESP flow is
its SPI, kept as ``extra.spi``. Protocols are ra's names (``tcp``, ``ipv6-icmp``...) or numbers
(``ra -nn``); ``rtp``, ``rtcp`` and ``udt`` are UDP flows Argus recognised, so ``udp`` with the
name in ``extra.argus_proto``.

``Dir`` and ``State`` are kept as ``extra.dir`` and ``extra.state`` (``Label`` as ``extra.label``):
in ``Dir`` a ``<`` says the destination sent packets, a ``>`` that the source did, and a ``?`` that
no TCP SYN was seen, so who opened the connection is unknown. ``State`` is, for TCP, the flags each
side sent (``S_RA``: a SYN answered by a reset; ``S_``: never answered; with ``ra -Z b``), for
other protocols a summary (``CON`` answered, ``INT``/``REQ`` not answered, ``ECO``/``ECR`` ICMP echo
and reply, ``URP`` port unreachable...). A TCP attempt the destination answered with a reset and
no SYN (source flags with ``S``, destination flags with ``R`` and no ``S``) is ``action: reject``,
like Zeek's ``REJ``.

ARP records (``arp``/``rarp``, ``Dir`` ``who``), Argus management records (``man``) and layer-2
flows without IP addresses (MAC addresses, ``ipx/spx``) are counted skips. Every value is read
strictly: anything else sends the record to the DLQ naming the column and its value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo

from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, ParseContext
from ingest.parsers.cicflow import cic_time_reader
from ingest.parsers.flowutil import (
    COUNT_MAX,
    BadField,
    clip,
    count_cell,
    csv_cells,
    decimal_cell,
    event_time,
    number_or_text,
    picker,
    proto_name,
    second_reading,
    valid_ip,
)
from ingest.schema import TS_MAX_MS, FlowEvent, event_id, event_id_of

__all__ = ["ArgusParser", "refused_attempt"]

# ra's column labels -> what they are here
_LABELS: Final = {
    "StartTime": "start", "LastTime": "last", "Dur": "dur", "Proto": "proto", "SrcAddr": "src",
    "Sport": "sport", "Dir": "dir", "DstAddr": "dst", "Dport": "dport", "State": "state",
    "TotPkts": "pkts", "SrcPkts": "spkts", "DstPkts": "dpkts", "TotBytes": "bytes", "SrcBytes": "sbytes",
    "DstBytes": "dbytes", "Label": "label",
}  # fmt: skip
_COLUMNS: Final = {label.lower(): key for label, key in _LABELS.items()}  # matched in any case
_REQUIRED: Final = ("start", "proto", "src", "dst")
_TEXT_EXTRA: Final = {"dir": "dir", "state": "state", "label": "label"}  # kept as text, under these keys
_TEXT_KEYS: Final = frozenset(_TEXT_EXTRA.values())
_COUNTERS: Final[tuple[str, ...]] = ("pkts", "spkts", "dpkts", "bytes", "sbytes", "dbytes")
# IANA protocol keywords as ra prints them (from its own table), by number.
_IANA: Final = (
    "0 ip 1 icmp 2 igmp 3 ggp 4 ipnip 5 st2 6 tcp 7 cbt 8 egp 9 igp 10 bbn-rcc 11 nvp 12 pup 13 argus "
    "14 emcon 15 xnet 16 chaos 17 udp 18 mux 19 dcn 20 hmp 21 prm 22 xns-idp 23 trunk-1 24 trunk-2 "
    "25 leaf-1 26 leaf-2 27 rdp 28 irtp 29 iso-tp4 30 netblt 31 mfe-nsp 32 merit-inp 33 sep 34 3pc "
    "35 idpr 36 xtp 37 ddp 38 idpr-cmtp 39 tp++ 40 il 41 ipv6 42 sdrp 43 ipv6-route 44 ipv6-frag "
    "45 idrp 46 rsvp 47 gre 48 mhrp 49 bna 50 esp 51 ah 52 i-nlsp 53 swipe 54 narp 55 mobile 56 tlsp "
    "57 skip 58 ipv6-icmp 59 ipv6-no 60 ipv6-opts 62 cftp 64 sat-expak 65 kryptolan 66 rvd 67 ippc "
    "69 sat-mon 70 visa 71 ipcv 72 cpnx 73 cphb 74 wsn 75 pvp 76 br-sat-mon 77 sun-nd 78 wb-mon "
    "79 wb-expak 80 iso-ip 81 vmtp 82 secure-vmtp 83 vines 84 ttp 85 nsfnet-igp 86 dgp 87 tcf 88 eigrp "
    "89 ospf 90 sprite-rpc 91 larp 92 mtp 93 ax.25 94 ipip 95 micp 96 aes-sp3-d 97 etherip 98 encap "
    "99 pri-enc 100 gmtp 101 ifmp 102 pnni 103 pim 104 aris 105 scps 106 qnx 107 a/n 108 ipcomp "
    "109 snp 110 compaq-peer 111 ipx-n-ip 112 vrrp 113 pgm 114 zero 115 l2tp 116 ddx 117 iatp 118 stp "
    "119 srp 120 uti 121 smp 122 sm 123 ptp 124 isis 125 fire 126 crtp 127 crudp 128 sccopmce "
    "129 iplt 130 sps 131 pipe 132 sctp 133 fc 253 ib"
)
_UDP_KINDS: Final = frozenset({"rtp", "rtcp", "udt"})  # UDP flows Argus recognised the payload of
_PROTOS: Final[dict[str, str]] = {
    **{name: proto_name(int(num)) for num, name in zip(_IANA.split()[::2], _IANA.split()[1::2], strict=True)},
    **{str(n): proto_name(n) for n in range(256)},
    **dict.fromkeys(_UDP_KINDS, "udp"),
}
_ARP: Final = frozenset({"arp", "rarp", "2054", "32821"})  # names, or ethertypes with ra -nn
_MANAGEMENT: Final = frozenset({"man", "evt"})
_FAST_PROTOS: Final = {"tcp": "tcp", "udp": "udp", "6": "tcp", "17": "udp"}
_MAC: Final = re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}", re.ASCII)
_DATE_TIME: Final = re.compile(r"(\d{4})([/-])(\d\d)\2(\d\d)[ T](\d\d:\d\d:\d\d)", re.ASCII)
_TIME_OF_DAY: Final = re.compile(r"\d\d:\d\d:\d\d", re.ASCII)
_HEX_PORT: Final = re.compile(r"0x[0-9A-Fa-f]{1,8}", re.ASCII)
_CACHE_MAX: Final = 65536
_event_id: Final = event_id_of("argus")


def _millis(fraction: str) -> int:
    """Milliseconds of a fraction of a second's digits (cut, not rounded, as ISO times are)."""
    return int((fraction + "00")[:3]) if fraction else 0


def refused_attempt(state: str) -> bool:
    """Whether a TCP record's state is an attempt the destination refused: the flags each side
    sent (``ra -Z b``), the source's with a SYN, the destination's with a reset and no SYN."""
    src, sep, dst = state.partition("_")
    return bool(sep) and "S" in src and "R" in dst and "S" not in dst


class ArgusParser(FastPathParser):
    source: ClassVar[str] = "argus"
    record_name = "Argus CSV"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self.header: list[str] | None = None
        self.read_time: Callable[[str], int] = cic_time_reader(self.ctx.timezone)
        tz = self.ctx.timezone
        self.zone = None if tz is None or tz == "UTC" else ZoneInfo(tz)
        self.fast_nfields = -1  # columns of a record the fast path takes; -1: none (no usable header)
        self._seconds: dict[str, int] = {}  # a StartTime's text up to the fraction -> epoch ms
        self._cells: dict[str, Any] = {}  # an extra cell's text -> its value

    # --- header ---------------------------------------------------------------------------------
    def _set_header(self, cells: list[str], line: bytes, lineno: int, offset: int) -> None:
        cols: dict[str, int] = {}
        for i, name in enumerate(cells):
            key = _COLUMNS.get(name.lower())
            if key is not None and key not in cols:
                cols[key] = i
        missing = [k for k in _REQUIRED if k not in cols]
        if missing:
            need = ", ".join(n for n, k in _LABELS.items() if k in missing)
            self.reject(f"header has no {need} column (ra -c , with its labels)", line, lineno, offset)
            return
        self.header = cells
        self.cols = cols
        names = _unique(cells)
        self.names = names
        keys = {i: k for k, i in cols.items()}
        # extra: Dir, State and Label as text under our names, the columns we do not know under theirs
        self.extra_pos: list[tuple[str, int]] = []
        for i, name in enumerate(names):
            if i not in keys:
                self.extra_pos.append((name, i))
            elif keys[i] in _TEXT_EXTRA:
                self.extra_pos.append((_TEXT_EXTRA[keys[i]], i))
        fast = all(k in cols for k in ("sport", "dport", "dur"))
        self.fast_nfields = len(names) if fast else -1
        if fast:
            self.proto_i, self.start_i, self.dur_i = cols["proto"], cols["start"], cols["dur"]
            self.src_i, self.dst_i, self.state_i = cols["src"], cols["dst"], cols.get("state")
            counters = [k for k in _COUNTERS if k in cols]
            self.numbers = picker([cols["sport"], cols["dport"], *(cols[k] for k in counters)])
            at = {k: j for j, k in enumerate(counters)}
            self.packets_of = _fast_split(at.get("pkts"), at.get("spkts"), at.get("dpkts"))
            self.bytes_of = _fast_split(at.get("bytes"), at.get("sbytes"), at.get("dbytes"))
            self.infer_packets, self.split_extra = _fast_split_flags(counters)
            self.extra_names = tuple(n for n, _ in self.extra_pos)
            self.extra_cells = picker([i for _, i in self.extra_pos])
            self._extras: dict[tuple[str, ...], tuple[dict[str, Any], bool]] = {}  # see _fast_extra
        self.keep_header("columns", line)
        self.skip("header line")

    # --- fast path ------------------------------------------------------------------------------
    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """A plain TCP/UDP record (decimal ports and counters, a StartTime whose second was read
        before): no per-field checks; None = the checked path, which finds and names any problem."""
        if self.fast_nfields < 0:
            return None
        try:
            parts = line.decode("utf-8").split(",")
            if len(parts) != self.fast_nfields:
                return None
            proto = _FAST_PROTOS.get(parts[self.proto_i])
            if proto is None:
                return None
            whole, _, fraction = parts[self.start_i].partition(".")
            ts = self._seconds.get(whole)
            if ts is None:
                return None
            src, dst = parts[self.src_i], parts[self.dst_i]
            owner = self.checked_flow_owner(src, dst)
            if owner is None:
                return None
            numbers = self.numbers(parts)
            dur = parts[self.dur_i]
            digits = "".join(numbers) + dur.replace(".", "", 1) + fraction
            if not (digits.isdigit() and digits.isascii()):  # int() would take "-5", "1_000", " 5"
                return None
            sport, dport, *counters = map(int, numbers)
            duration = round(float(dur) * 1000)
            start = ts + _millis(fraction)  # ts: the flow's start, for Argus (see the module's docstring)
            if (
                sport > 65535
                or dport > 65535
                or max(counters, default=0) > COUNT_MAX
                or start + duration >= TS_MAX_MS
            ):
                return None  # (the start is in the bounds: its second was read on the checked path)
            packets_out, packets_in = self.packets_of(counters)
            bytes_out, bytes_in = self.bytes_of(counters)
            if min(packets_in, bytes_out, bytes_in, packets_out) < 0:  # the columns contradict
                return None
            cells = self.extra_cells(parts)
            known = self._extras.get(cells)
            extra, refused = self._fast_extra(cells, parts) if known is None else (known[0].copy(), known[1])
            if self.infer_packets and bytes_in:  # as _directions has it
                if bytes_out:
                    extra["packets_split_unknown"] = True
                else:
                    packets_out, packets_in = 0, packets_out
            return replace(
                self.flow_base(owner), id=_event_id(line), src_ip=src, dst_ip=dst, src_port=sport,
                dst_port=dport, ts=start, proto=proto,
                duration_ms=duration, action="reject" if refused and proto == "tcp" else "accept", extra=extra,
                packets_out=packets_out, packets_in=packets_in, bytes_out=bytes_out, bytes_in=bytes_in,
            )  # fmt: skip
        except Exception:  # anything unforeseen: the checked path reads the record again
            return None

    def _fast_extra(self, texts: tuple[str, ...], parts: list[str]) -> tuple[dict[str, Any], bool]:
        """``_extra`` of the fast path's extra cells (split, not stripped) with what it knows of the
        counters' split, and whether the State is a refused attempt if the record is TCP: both
        remembered by the cells (records repeat Dir, State, Label...), a copy of extra returned."""
        cells = self._cells
        extra: dict[str, Any] = {}
        # Same lengths by construction; ``strict=`` would cost a keyword call per record.
        for name, text in zip(self.extra_names, texts):  # noqa: B905
            cell = text.strip()
            if not cell:
                continue
            if name in _TEXT_KEYS:
                extra[name] = cell
                continue
            value = cells.get(cell, cells)
            if value is cells:
                value = number_or_text(cell, name)
                if len(cells) >= _CACHE_MAX:
                    cells.clear()
                cells[cell] = value
            extra[name] = value
        extra.update(self.split_extra)
        refused = self.state_i is not None and refused_attempt(parts[self.state_i].strip())
        if len(self._extras) >= _CACHE_MAX:
            self._extras.clear()
        self._extras[texts] = (extra, refused)
        return extra.copy(), refused

    # --- checked path ---------------------------------------------------------------------------
    def _checked_event(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        """The event of one line, or None when it was skipped, rejected or was the header."""
        text = self.text_of(line, lineno, offset)
        if text is None:
            return None
        parts = [p.strip() for p in csv_cells(text)]
        if self.header is None:
            self._set_header([parts[0].lstrip("\ufeff"), *parts[1:]], line, lineno, offset)
            return None
        if parts == self.header:  # files joined with cat repeat it
            self.skip("header line")
            return None
        if len(parts) != len(self.header):
            self.reject(f"expected {len(self.header)} columns, got {len(parts)}", line, lineno, offset)
            return None
        return self._event(parts, line)

    def _event(self, parts: list[str], line: bytes) -> FlowEvent | None:
        cols = self.cols
        proto_text = parts[cols["proto"]]
        if proto_text.lower() in _MANAGEMENT:
            self.skip("argus management record (not a flow)")
            return None
        if proto_text.lower() in _ARP:
            self.skip("ARP record (address resolution, not an IP flow)")
            return None
        src, dst = parts[cols["src"]], parts[cols["dst"]]
        if not valid_ip(src) or not valid_ip(dst):
            if all(not a or _MAC.fullmatch(a) for a in (src, dst)):
                self.skip("layer-2 record without IP addresses")
                return None
            raise BadField(f"bad address {clip(src, 60)} -> {clip(dst, 60)}")
        proto = _PROTOS.get(proto_text.lower())
        if proto is None:
            raise BadField(f"Proto is not a protocol name or number: {clip(proto_text)}")
        extra = self._extra(parts)
        if proto_text.lower() in _UDP_KINDS:
            extra["argus_proto"] = proto_text.lower()
        sport = self._port("Sport", parts, "sport")
        if proto == "50" and "dport" in cols and parts[cols["dport"]]:  # ESP: the Dport column is the SPI
            extra["spi"] = _spi(parts[cols["dport"]])
            dport = 0
        else:
            dport = self._port("Dport", parts, "dport")
        end, duration = self._end_and_duration(parts, self._time("StartTime", parts[cols["start"]]))
        ts = end - duration  # the start (see the module's docstring)
        counts = {k: count_cell(self.names[cols[k]], parts[cols[k]])
                  for k in _COUNTERS if k in cols and parts[cols[k]]}  # fmt: skip
        packets_out, packets_in, bytes_out, bytes_in = self._directions(counts, extra)
        refused = proto == "tcp" and "state" in cols and refused_attempt(parts[cols["state"]])
        tenant, vm, host = self.flow_owner(src, dst)
        return FlowEvent(
            id=event_id("argus", line), ts=ts, source="argus", tenant=tenant, host=host, vm=vm,
            src_ip=src, dst_ip=dst, src_port=sport, dst_port=dport, proto=proto, duration_ms=duration,
            packets_out=packets_out, packets_in=packets_in, bytes_out=bytes_out, bytes_in=bytes_in,
            action="reject" if refused else "accept", extra=extra,
        )  # fmt: skip

    def _extra(self, parts: list[str]) -> dict[str, Any]:
        """Dir, State and Label as text, the other columns as numbers or text; blank cells left out."""
        return {
            name: parts[i] if name in _TEXT_KEYS else number_or_text(parts[i], name)
            for name, i in self.extra_pos
            if parts[i]
        }

    def _port(self, name: str, parts: list[str], key: str) -> int:
        """A port: decimal, or ``0x`` hex (ra prints ICMP's so); blank is 0. A service name (ra
        without ``-n``) is not read as a number it does not spell."""
        i = self.cols.get(key)
        cell = parts[i] if i is not None else ""
        if not cell:
            return 0
        if _HEX_PORT.fullmatch(cell):
            value = int(cell, 16)
            if value > 65535:
                raise BadField(f"{name} out of range: {clip(cell)}")
            return value
        if not (cell.isascii() and cell.isdigit()) and cell[:1] != "-":
            raise BadField(f"{name} is not a port number: {clip(cell)} (print numbers with ra -n)")
        return count_cell(name, cell, 65535)

    def _time(self, name: str, cell: str) -> int:
        """Epoch ms of a StartTime/LastTime cell; its whole second is remembered for the fast path."""
        whole, dot, fraction = cell.partition(".")
        if dot and not (fraction.isascii() and fraction.isdigit()):
            raise BadField(f"{name} is not a time: {clip(cell)}")
        base = self._seconds.get(whole)
        if base is None:
            base = self._whole_seconds(name, whole, cell)
            if len(self._seconds) >= _CACHE_MAX:
                self._seconds.clear()
            self._seconds[whole] = base
        return event_time(name, base + _millis(fraction), cell)

    def _whole_seconds(self, name: str, whole: str, cell: str) -> int:
        """Epoch ms of a time up to its fraction of a second (``cell`` is the whole, for reasons)."""
        if whole.isascii() and whole.isdigit() and len(whole) <= 10:  # ra -u: epoch seconds, in no zone
            return event_time(name, int(whole) * 1000, cell)
        stamp = _DATE_TIME.fullmatch(whole)
        if stamp is None:
            if _TIME_OF_DAY.fullmatch(whole):
                raise BadField(f"{name} has no date: {clip(cell)} (print dates with ra's RA_TIME_FORMAT)")
            raise BadField(f"{name} is not a time: {clip(cell)}")
        year, _, month, day, clock = stamp.groups()
        try:
            ms = self.read_time(f"{year}-{month}-{day} {clock}")
        except BadField:  # its reason names no column
            raise BadField(f"{name} is not a valid time: {clip(cell)}") from None
        return event_time(name, ms, cell)

    def _end_and_duration(self, parts: list[str], start: int) -> tuple[int, int]:
        """(the flow's end, its duration) in ms: ``start`` plus ``Dur``, else ``LastTime``."""
        cols = self.cols
        if "dur" in cols and parts[cols["dur"]]:
            cell = parts[cols["dur"]]
            seconds = decimal_cell("Dur", cell)
            if seconds < 0:
                raise BadField(f"Dur is negative: {clip(cell)}")
            if seconds > COUNT_MAX / 1000:
                raise BadField(f"Dur out of range: {clip(cell)}")
            duration = round(seconds * 1000)
            if start + duration >= TS_MAX_MS:  # a long flow can end past the event times it started within
                raise BadField(f"StartTime + Dur out of range: {clip(parts[cols['start']])} + {clip(cell)}")
            return start + duration, duration
        if "last" in cols and parts[cols["last"]]:
            last = self._time("LastTime", parts[cols["last"]])
            local = _DATE_TIME.fullmatch(parts[cols["last"]].partition(".")[0])  # not epoch seconds
            if last < start and local and self.zone is not None:  # across the hour DST ends: its second pass?
                last = second_reading(self.zone, last) or last
            if last < start:
                raise BadField(f"LastTime {clip(parts[cols['last']])} is before StartTime")
            return last, last - start
        return start, 0

    def _directions(self, counts: dict[str, int], extra: dict[str, Any]) -> tuple[int, int, int, int]:
        """(packets_out, packets_in, bytes_out, bytes_in) from whichever of the total, source and
        destination counters the record has. A total without a split is all outbound, said in
        ``extra``, unless the bytes show that one side sent nothing."""
        packets = _split("Pkts", counts.get("pkts"), counts.get("spkts"), counts.get("dpkts"))
        octets = _split("Bytes", counts.get("bytes"), counts.get("sbytes"), counts.get("dbytes"))
        if _total_only(counts, "pkts") and not octets[2]:  # a side that sent no bytes sent no packets
            if octets[1] == 0:
                packets = (packets[0], 0, False)
            elif octets[0] == 0:
                packets = (0, packets[0], False)
        if packets[2]:
            extra["packets_split_unknown"] = True
        if octets[2]:
            extra["bytes_split_unknown"] = True
        return packets[0], packets[1], octets[0], octets[1]


def _total_only(counts: dict[str, int], total: str) -> bool:
    """Whether the ``total`` counter (``pkts``/``bytes``) is there without either side's."""
    return total in counts and f"s{total}" not in counts and f"d{total}" not in counts


def _fast_split_flags(counters: list[str]) -> tuple[bool, dict[str, Any]]:
    """What the fast path's records (no counter blank) say of their split, given the counters
    the header has: whether a record's bytes tell its packets' split (``_directions``), and the
    ``extra`` flags that are the same for every record."""
    present = dict.fromkeys(counters, 0)
    packets = _split("Pkts", present.get("pkts"), present.get("spkts"), present.get("dpkts"))
    octets = _split("Bytes", present.get("bytes"), present.get("sbytes"), present.get("dbytes"))
    infer_packets = _total_only(present, "pkts") and not octets[2]
    flags: dict[str, Any] = {}
    if packets[2] and not infer_packets:
        flags["packets_split_unknown"] = True
    if octets[2]:
        flags["bytes_split_unknown"] = True
    return infer_packets, flags


def _fast_split(
    total: int | None, src: int | None, dst: int | None
) -> Callable[[list[int]], tuple[int, int]]:
    """``_split`` for the fast path, given where each counter is in its list of counters: a
    function of the list to (out, in), negative when the counters contradict each other."""
    if src is not None and dst is not None:
        if total is None:
            return lambda c: (c[src], c[dst])
        return lambda c: (c[src], c[dst]) if c[total] == c[src] + c[dst] else (-1, -1)
    if total is not None and src is not None:
        return lambda c: (c[src], c[total] - c[src])
    if total is not None and dst is not None:
        return lambda c: (c[total] - c[dst], c[dst])
    if total is not None:
        return lambda c: (c[total], 0)
    if src is not None:
        return lambda c: (c[src], 0)
    if dst is not None:
        return lambda c: (0, c[dst])
    return lambda c: (0, 0)


def _unique(names: list[str]) -> list[str]:
    """Column names with repeats numbered (``a``, ``a.1``), so no ``extra`` value hides another."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        n = seen.get(name, 0)
        seen[name] = n + 1
        unique.append(name if n == 0 else f"{name}.{n}")
    return unique


def _split(unit: str, total: int | None, src: int | None, dst: int | None) -> tuple[int, int, bool]:
    """(out, in, split unknown) of one counter; BadField when the columns contradict each other."""
    if src is not None and dst is not None:
        if total is not None and total != src + dst:
            raise BadField(f"Tot{unit} {total} is not Src{unit} {src} + Dst{unit} {dst}")
        return src, dst, False
    if total is not None and src is not None:
        if src > total:
            raise BadField(f"Src{unit} {src} is more than Tot{unit} {total}")
        return src, total - src, False
    if total is not None and dst is not None:
        if dst > total:
            raise BadField(f"Dst{unit} {dst} is more than Tot{unit} {total}")
        return total - dst, dst, False
    if total is not None:
        return total, 0, True
    return src or 0, dst or 0, src is not None or dst is not None


def _spi(cell: str) -> str:
    """An ESP flow's SPI, as ra prints it (hex)."""
    if _HEX_PORT.fullmatch(cell) is None and not (cell.isascii() and cell.isdigit() and len(cell) <= 10):
        raise BadField(f"Dport of an ESP flow is not an SPI: {clip(cell)}")
    return cell
