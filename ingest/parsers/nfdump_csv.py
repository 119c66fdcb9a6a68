"""nfdump's CSV output (``nfdump -r FILE -o csv``; also ``-o csv-fast`` and ``-o "csv:%..."``) -> flow
events.

nfdump (github.com/phaag/nfdump) keeps the NetFlow v5/v9, IPFIX, sFlow and Cisco NSEL records that
nfcapd collects, one record per flow direction; ``-o csv`` prints them one per line, unquoted. The
events' source is ``netflow``: the detectors read them as they read NetFlow (``detectors.flowdir``:
one-way records, unless the record carries reverse counters). What nfdump prints, read from its
source (file, tag and commit):

* **Classic layout**, 1.6.x and 1.7.0 to 1.7.4 (``bin/nf_common.c`` ``flow_record_to_csv`` up to
  v1.6.18 bef82c09cee2, ``bin/output_csv.c`` v1.6.19 f86fbfcaad06 to v1.6.25 ed6d8757e8fe,
  ``src/output/output_csv.c`` v.1.7.0 bef1a1673c54 to v1.7.4 4f409e984ad0): the 48 columns of
  ``CLASSIC_COLUMNS``. ``ts``/``te``, the first and last packet, are local time in whole seconds
  (``2024-03-05 10:00:00``); ``td`` the duration in seconds with three decimals, from the
  millisecond times; ``pr`` nfdump's protocol name (``TCP``, ``UDP``, ``ICMP``, ``ICMP6``, ``GRE``...;
  from 138 up the number, padded to five characters); ``flg`` the TCP flags as ``CEUAPRSF`` letters
  or dots (``...AP.SF``; up to v1.6.17 ec91b397c336 six, ``UAPRSF``, or ``0x..`` above 63); ``dp``
  of ICMP is ``type * 256 + code``; ``ipkt``/``ibyt`` the record's counters, ``opkt``/``obyt`` the
  output counters (0 for plain NetFlow; nfcapd fills them from NetFlow v9 OUT_BYTES/OUT_PKTS, IPFIX
  post and responder counters, NSEL's reverse counters); ``fwd`` the forwarding status byte; ``nh``,
  ``nhb`` and ``ra`` (the exporter's address) print ``0.0.0.0`` when absent, MACs
  ``00:00:00:00:00:00``, the ten MPLS labels ``0-0-0``, the latencies ``cl``/``sl``/``al``
  milliseconds as ``%9.3f``; ``eng`` is ``type/id``, ``exid`` the exporter's id, ``tr`` the time
  nfcapd received the record, local with milliseconds. Up to v1.6.18 protocol 0 is an empty cell;
  v1.6.19 and v1.6.20 print the header without its newline, so it runs into the first record; 1.7.0
  to 1.7.4 print a tunnelled flow's outer line before it, addresses ``0.0.0.0`` (or ``::``) and no
  counters.
* **1.7.5 and later** (v1.7.5 79d251c89b40 to v1.7.8 e198c8b38a39, ``src/output/output.c``
  ``FORMAT_CSV`` and ``src/output/output_csv.c``): ``-o csv`` is ``firstSeen,duration,proto,srcAddr,
  srcPort,dstAddr,dstPort,packets,bytes,flows``: ``firstSeen`` local time with milliseconds
  (``0000-00-00 00:00:00.000`` when unset), ``proto`` a number, ``dstPort`` of ICMP and ICMPv6
  ``type.code``, no end time. ``-o "csv:%ts,%te,..."`` prints any columns under the same camel-case
  names (``lastSeen``, ``inBytes``, ``outBytes``, ``flags``, ``input``, ``routerIP``...; ``%tsg``
  prints ``firstSeen`` in UTC, ``%tsr`` as epoch seconds with milliseconds), and ``-o csv-fast``
  (``output_csv_fast.c``) ``cnt,af,firstSeen,lastSeen,proto,srcAddr,srcPort,dstAddr,dstPort,srcAS,
  dstAS,input,output,flags,srcTos,packets,bytes`` with times in epoch milliseconds. A tunnelled
  flow's outer line carries the tunnel's addresses and the inner flow's counters: nothing tells it
  from a record, and it is read as one.
* **Other lines** (``src/nfdump/nfdump.c``): after the records ``Summary``,
  ``flows,bytes,packets,avg_bps,avg_pps,avg_bpp`` and a line of those six numbers (classic layout
  only: 1.7.5 prints none); ``No matched flows`` (1.6: no flow data read at all, then nothing else)
  or ``No matching flows`` (1.7: no record passed the filter). ``-q`` leaves out the header and the
  summary (up to 1.7.4).

Reading: the header line names the layout (any header with ``sa`` and ``da``, or ``srcAddr`` and
``dstAddr``, and a time column), and a later header replaces it (files written one after another);
a line of 48 cells before any header is read as the classic layout (``-q``). The header, the summary
and no-match lines are skipped with their reason, and so is a record without addresses
(``0.0.0.0`` or ``::`` on both sides: a tunnel's outer line, or no IP at all).

Mapping (1.7's names are read as their classic column; a column the layout lacks is 0):

* ``sa``/``da``/``sp``/``dp`` -> ``src_ip``/``dst_ip``/``src_port``/``dst_port``; ICMP's
  ``type.code`` -> ``type * 256 + code``, as the classic layout and NetFlow v5 write it (the
  detectors read the type from the high byte).
* ``ts`` is the flow's end: ``te``, or ``ts + td`` when that is later (whole seconds both, where
  ``td`` keeps the milliseconds; they must agree within that second), ``ts + td`` with no ``te``, or
  ``te`` with no ``td``; ``duration_ms`` is ``td`` (else ``te - ts``).
* ``ipkt``/``ibyt`` (``packets``, ``bytes``) are the source's ``packets_out``/``bytes_out``,
  ``opkt``/``obyt`` ``packets_in``/``bytes_in``, as the NetFlow parser reads the same fields.
* ``pr``: names and numbers -> ``tcp``/``udp``/``icmp`` or the protocol number (ICMPv6 ``58``).
* ``flg`` -> ``extra["tcp_flags"]``, the flags byte, where ``detectors.flowdir`` reads NetFlow's.
* ``fwd`` stays in ``extra``; a status whose top two bits say dropped makes ``action`` ``reject``.
* The other columns go to ``extra`` under their classic names (``ra``, ``in``, ``out``, ``exid``,
  ``eng``, ``sas``...; 1.7's ``routerIP``, ``input``, ``output``, ``exporterID``... renamed): integers
  as integers, latencies as float milliseconds, the rest as text. The placeholders of absent values
  above are left out; columns this module does not know keep their header name.

Times without an offset (``ts``, ``te``, ``firstSeen``, ``lastSeen``) are the local time of the host
that ran nfdump: they are read in ``ParseContext.timezone`` (``ssa ingest --tz``; UTC by default,
right for ``TZ=UTC nfdump ...`` and ``%tsg``), as CICFlowMeter's: a wall time that happens twice
(the hour DST ends) is read as the first, unless reading a flow's end (or start) as the second is
what makes its times agree (a flow that began before the clocks went back and ended after). Epoch times need no zone; ``tr`` is kept as written.

Strict like the other CSV parsers: an address that is not one, a counter that is not a
non-negative integer within the canonical bounds, a time that is not one or falls outside the
event times, an end before the start, an unknown protocol name or flags string sends the record to
the DLQ with the column, as the header names it, and its value.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar, Final, Literal
from zoneinfo import ZoneInfo

from msgspec.structs import replace

from ingest.parsers.base import FastPathParser, Output, Owner, ParseContext
from ingest.parsers.flowutil import (
    COUNT_MAX,
    BadField,
    clip,
    count_cell,
    decimal_cell,
    event_time,
    number_or_text,
    picker,
    proto_name,
    second_reading,
    valid_ip,
)
from ingest.schema import TS_MAX_MS, FlowEvent, event_id_of

__all__ = ["CLASSIC_COLUMNS", "NfdumpCsvParser"]

_CLASSIC_HEADER: Final = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,"
    "svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,"
    "al,ra,eng,exid,tr"
)
CLASSIC_COLUMNS: Final = tuple(_CLASSIC_HEADER.split(","))
"""The columns of ``nfdump -o csv`` from 1.6 to 1.7.4, in order."""

# 1.7's csv names (output_csv.c) of the classic columns; the names of the fields the event is made
# of, and of the extra columns whose values print alike in both (same type, same placeholder).
_CLASSIC_NAME: Final = {
    "firstSeen": "ts", "lastSeen": "te", "duration": "td", "srcAddr": "sa", "dstAddr": "da",
    "srcPort": "sp", "dstPort": "dp", "proto": "pr", "flags": "flg", "packets": "ipkt",
    "inPackets": "ipkt", "bytes": "ibyt", "inBytes": "ibyt", "outPackets": "opkt", "outBytes": "obyt",
    "fwdStatus": "fwd", "srcTos": "stos", "input": "in", "output": "out", "srcAS": "sas", "dstAS": "das",
    "srcMask": "smk", "dstMask": "dmk", "nextIP": "nh", "routerIP": "ra", "engine": "eng",
    "exporterID": "exid", "received": "tr",
}  # fmt: skip
_FIELD_COLUMNS: Final = ("ts", "te", "td", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt", "opkt",
                         "obyt")  # fmt: skip
_COUNTER_COLUMNS: Final = ("sp", "dp", "ipkt", "ibyt", "opkt", "obyt")
# flows: 1.7's count of the flows a record aggregates; cnt, af: csv-fast's line count, address family
_INTEGER_COLUMNS: Final = frozenset(
    ("fwd", "stos", "in", "out", "sas", "das", "smk", "dmk", "dtos", "dir", "svln", "dvln", "exid", "flows",
     "cnt", "af")
)  # fmt: skip
_ADDRESS_COLUMNS: Final = frozenset(("nh", "nhb", "ra"))
_LATENCY_COLUMNS: Final = frozenset(("cl", "sl", "al"))
_TEXT_COLUMNS: Final = frozenset(("eng", "tr"))
# Columns nfdump fills with a placeholder when the record has no such extension: MACs, MPLS labels.
_PLACEHOLDER: Final = {
    **dict.fromkeys(("ismc", "odmc", "idmc", "osmc"), "00:00:00:00:00:00"),
    **{f"mpls{n}": "0-0-0" for n in range(1, 11)},
}
# What nfdump prints for a value the record does not have.
_ABSENT: Final = frozenset(("0.0.0.0", "::", "00:00:00:00:00:00", "0-0-0", "0000-00-00 00:00:00.000"))  # noqa: S104
_NO_ADDRESS: Final = frozenset(("0.0.0.0", "::"))  # noqa: S104
_NO_LATENCY: Final = "0.000"
_SUMMARY_COLUMNS: Final = "flows,bytes,packets,avg_bps,avg_pps,avg_bpp"
_NOT_RECORDS: Final = {
    "Summary": "nfdump summary",
    _SUMMARY_COLUMNS: "nfdump summary",
    "No matched flows": "nfdump found no matching flows",
    "No matching flows": "nfdump found no matching flows",
}
_TUNNEL_OR_NON_IP: Final = "record without addresses (a tunnel's outer line, or no IP)"
_DROPPED: Final = 2  # forwarding status, top two bits (RFC 7270 forwardingStatus): 2 is dropped

# nfdump's protocol names by number, 0 to 137 (protoList in bin/output_util.c, 1.6.19 to 1.6.25, and
# src/lib/userio.c, 1.7; up to 1.6.18 the same names padded with spaces). 1.7 names 94 ``OS``. A
# name printed for two numbers (IPIP 4 and 94 up to 1.6.25, IDPR 35 and 38) is read as the lower, as
# nfdump's own ProtoNum reads it.
_PROTOCOL_NAMES: Final = """
0 ICMP IGMP GGP IPIP ST TCP CBT EGP IGP BBN NVPII PUP ARGUS ENCOM XNET CHAOS UDP MUX DCN
HMP PRM XNS Trnk1 Trnk2 Leaf1 Leaf2 RDP IRTP ISO-4 NETBK MFESP MEINP DCCP 3PC IDPR XTP DDP
IDPR TP++ IL IPv6 SDRP Rte6 Frag6 IDRP RSVP GRE MHRP BNA ESP AH INLSP SWIPE NARP MOBIL TLSP
SKIP ICMP6 NOHE6 OPTS6 HOST CFTP NET SATNT KLAN RVD IPPC FS SATM VISA IPCV CPNX CPHB WSN
PVP BSATM SUNND WBMON WBEXP ISOIP VMTP SVMTP VINES TTP NSIGP DGP TCF EIGRP OSPF S-RPC LARP
MTP AX.25 IPIP MICP SCCSP ETHIP ENCAP 99 GMTP IFMP PNNI PIM ARIS SCPS QNX A/N IPcmp SNP
CpqPP IPXIP VRRP PGM 0hop L2TP DDX IATP STP SRP UTI SMP SM PTP ISIS4 FIRE CRTP CRUDP 128
IPLT SPS PIPE SCTP FC 134 MHEAD UDP-L MPLS
"""


def _protocol_numbers() -> dict[str, int]:
    numbers = {str(n): n for n in range(256)}
    for number, name in enumerate(_PROTOCOL_NAMES.split()):
        numbers.setdefault(name, number)
    numbers["OS"] = 94
    numbers[""] = 0  # protocol 0 up to 1.6.18
    return numbers


def _flag_strings() -> dict[str, int]:
    """Every way nfdump prints a TCP flags byte, right-aligned letters: 8 (from 1.6.18), 6 (before)."""

    def letters(value: int, names: str) -> str:
        width = len(names)
        return "".join(name if value >> (width - 1 - i) & 1 else "." for i, name in enumerate(names))

    table: dict[str, int] = {}
    for value in range(256):
        table[letters(value, "CEUAPRSF")] = value
        if value < 64:
            table[letters(value, "UAPRSF")] = value
        else:
            table[f"0x{value:2x}"] = value  # up to 1.6.17: flags above 63 in hex
    return table


_PROTOCOL: Final = _protocol_numbers()
_TCP_FLAGS: Final = _flag_strings()
_PROTO: Final = [proto_name(n) for n in range(256)]
_ICMP: Final = (1, 58)
_event_id: Final = event_id_of("netflow")

_LOCAL_TIME: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?", re.ASCII)
_EPOCH_SECONDS: Final = re.compile(r"(\d{1,11})\.(\d{3})", re.ASCII)  # %tsr
_CACHE_MAX: Final = 65536


class _Clock:
    """Epoch ms of a time cell: local ``YYYY-MM-DD HH:MM:SS[.mmm]`` in the zone given (None: UTC),
    epoch milliseconds (csv-fast) or epoch seconds with milliseconds (``%tsr``). The seconds of a
    local time are cached: a file's records share them."""

    def __init__(self, zone: str | None) -> None:
        self.zone = None if zone is None or zone == "UTC" else ZoneInfo(zone)
        self.seconds: dict[str, int] = {}  # "YYYY-MM-DD HH:MM:SS" -> epoch seconds, in range

    def __call__(self, name: str, text: str) -> int:
        second = self.seconds.get(text[:19])
        if second is not None:
            tail = text[19:]
            if not tail:
                return second * 1000
            if len(tail) == 4 and tail[0] == "." and tail[1:].isdigit() and tail[1:].isascii():
                return second * 1000 + int(tail[1:])
        return self._read(name, text)

    def _read(self, name: str, text: str) -> int:
        s = text.strip()
        if s.isdigit() and s.isascii() and len(s) <= 15:
            return event_time(name, int(s), text)
        epoch = _EPOCH_SECONDS.fullmatch(s)
        if epoch is not None:
            return event_time(name, int(epoch[1]) * 1000 + int(epoch[2]), text)
        local = _LOCAL_TIME.fullmatch(s)
        if local is None:
            raise BadField(f"{name} is not a time: {clip(text)}")
        second = self.seconds.get(s[:19])
        if second is None:
            second = self._wall_seconds(name, local, text)
        return second * 1000 + int(local[7] or 0)

    def _wall_seconds(self, name: str, local: re.Match[str], text: str) -> int:
        try:
            year, month, day, hour, minute, second = map(int, local.groups()[:6])
            wall = datetime(year, month, day, hour, minute, second)
        except ValueError:  # month 13, 0000-00-00 (unset), 23:59:60...
            raise BadField(f"{name} is not a time: {clip(text)}") from None
        if self.zone is None:
            epoch = calendar.timegm(wall.timetuple())
        else:  # fold 0: the first of a wall time that happens twice
            epoch = int(wall.replace(tzinfo=self.zone).timestamp())
        event_time(name, epoch * 1000, text)
        if len(self.seconds) >= _CACHE_MAX:
            self.seconds.clear()
        self.seconds[local[0][:19]] = epoch
        return epoch


def _local(text: str) -> bool:
    """Whether a time cell is a local wall time (not epoch seconds or milliseconds, in no zone)."""
    return _LOCAL_TIME.fullmatch(text.strip()) is not None


def _agree(start: int, end: int, duration: int | None) -> bool:
    """Whether a flow's times are consistent: its end not before its start and, with a duration,
    within the end's second of the start plus it (classic ``ts`` and ``te`` are whole seconds)."""
    return end >= start and (duration is None or abs(start + duration - end) < 1000)


def _duration_ms(name: str, text: str) -> int:
    """``td``: seconds with up to three decimals (nfdump prints ``%.3f``), in whole milliseconds."""
    whole, dot, fraction = text.partition(".")
    if (
        whole.isdigit()
        and whole.isascii()
        and (not dot or (fraction.isdigit() and fraction.isascii() and len(fraction) <= 3))
    ):
        if len(whole) > 12:  # beyond 30,000 years: no flow lasts that long
            raise BadField(f"{name} out of range: {clip(text)}")
        return int(whole) * 1000 + (int(fraction.ljust(3, "0")) if dot else 0)
    s = text.strip()
    if s != text:
        return _duration_ms(name, s)
    if s[:1] == "-" and s[1:2].isdigit():
        raise BadField(f"{name} is negative: {clip(s)}")
    raise BadField(f"{name} is not a duration in seconds: {clip(text)}")


def _icmp_port(name: str, text: str) -> int:
    """1.7.5's ICMP ``type.code`` as NetFlow's ``type * 256 + code``."""
    icmp_type, _dot, code = text.strip().partition(".")
    return count_cell(name, icmp_type, 255) * 256 + count_cell(name, code, 255)


def _icmp_dotted_as_number(parts: list[str], i: int) -> None:
    """1.7.5's ICMP ``type.code`` in cell ``i`` rewritten as NetFlow's ``type * 256 + code`` where
    both are plain numbers below 256; anything else is left to the cell-by-cell reading."""
    if i < len(parts):
        icmp_type, dot, code = parts[i].partition(".")
        digits = icmp_type + code
        if (
            dot
            and 0 < len(icmp_type) <= 3
            and 0 < len(code) <= 3
            and digits.isdigit()
            and digits.isascii()
            and int(icmp_type) < 256
            and int(code) < 256
        ):
            parts[i] = str(int(icmp_type) * 256 + int(code))


def _names_a_header(cells: list[str]) -> bool:
    names = {cell.strip() for cell in cells}
    return {"sa", "da"} <= names or {"srcAddr", "dstAddr"} <= names


class _Layout:
    """Where a header puts the event's fields, and how its other columns become ``extra``."""

    def __init__(self, written: Sequence[str]) -> None:
        self.written = tuple(written)  # DLQ reasons name the columns as the file does
        self.width = width = len(written)
        names: list[str] = []
        taken: set[str] = set()
        for cell in written:
            name = _CLASSIC_NAME.get(cell, cell)
            name = cell if name in taken else name  # a column printed twice keeps its own name
            names.append(name)
            taken.add(name)
        where = {name: i for i, name in reversed(list(enumerate(names)))}
        self.src, self.dst = where.get("sa", -1), where.get("da", -1)
        self.start, self.end, self.duration = where.get("ts"), where.get("te"), where.get("td")
        self.proto, self.flags = where.get("pr"), where.get("flg")
        # A counter the layout lacks reads the "0" appended to each record's cells (index width).
        self.counter_columns = tuple(where.get(name, width) for name in _COUNTER_COLUMNS)
        self.counters = picker(self.counter_columns)
        fields = {where[name] for name in _FIELD_COLUMNS if name in where}
        rest = [(name, i) for i, name in enumerate(names) if i not in fields]
        self.integers = [(name, i) for name, i in rest if name in _INTEGER_COLUMNS]
        self.integer_names = tuple(name for name, _ in self.integers)
        self.integer_cells = picker([i for _, i in self.integers])
        texts = [(name, i) for name, i in rest if name in _TEXT_COLUMNS]
        self.text_names = tuple(name for name, _ in texts)
        self.text_cells = picker([i for _, i in texts])
        optional = [(name, i) for name, i in rest if name in _PLACEHOLDER]
        self.optional_names = tuple(name for name, _ in optional)
        self.optional_cells = picker([i for _, i in optional])
        self.none_present = tuple(_PLACEHOLDER[name] for name in self.optional_names)  # the usual record
        self.addresses = [(name, i) for name, i in rest if name in _ADDRESS_COLUMNS]
        latencies = [(name, i) for name, i in rest if name in _LATENCY_COLUMNS]
        self.latencies = latencies
        self.latency_cells = picker([i for _, i in latencies])
        self.no_latency = ("    0.000",) * len(latencies)  # nfdump's %9.3f of 0
        known = _INTEGER_COLUMNS | _TEXT_COLUMNS | _PLACEHOLDER.keys() | _ADDRESS_COLUMNS | _LATENCY_COLUMNS
        self.others = [(name, i) for name, i in rest if name not in known]

    def has_time(self) -> bool:
        return self.start is not None or self.end is not None


_CLASSIC: Final = _Layout(CLASSIC_COLUMNS)


class NfdumpCsvParser(FastPathParser):
    source: ClassVar[str] = "netflow"
    record_name = "nfdump CSV"

    def __init__(self, out: Output, ctx: ParseContext | None = None) -> None:
        super().__init__(out, ctx)
        self.layout: _Layout | None = None
        self.clock = _Clock(self.ctx.timezone)
        self.summary_counts_due = False  # the line after the summary's column names

    # --- lines ---------------------------------------------------------------------------------
    def _fast_event(self, line: bytes) -> FlowEvent | None:
        """A record of the layout in force whose addresses are plain; None: the checked path."""
        layout = self.layout
        if layout is None:
            return None
        try:
            text = line.decode("utf-8")
            if text[-1:] == "\r":
                text = text[:-1]
            parts = text.split(",")  # nfdump never quotes (1.7 prints a comma in a name as ';')
            if len(parts) != layout.width:
                return None
            src, dst = parts[layout.src], parts[layout.dst]
            if src in _NO_ADDRESS and dst in _NO_ADDRESS:
                return None
            owner = self.checked_flow_owner(src, dst)
            if owner is None:
                return None
            return self._build(parts, line, src, dst, owner)
        except Exception:
            return None

    def _checked_event(self, line: bytes, lineno: int, offset: int) -> FlowEvent | None:
        text = self.text_of(line, lineno, offset)
        if text is None:
            return None
        return self._read_line(text.removesuffix("\r"), line, lineno, offset)

    def _read_line(
        self, text: str, raw: bytes, lineno: int, offset: int, after_header: bool = False
    ) -> FlowEvent | None:
        """The event of one line, or None once it was skipped, rejected or read as the header
        (``after_header``: the rest of a line the classic header ran into)."""
        counts_due, self.summary_counts_due = self.summary_counts_due, False
        trimmed = text.strip()
        reason = _NOT_RECORDS.get(trimmed)
        if reason is not None:
            self.summary_counts_due = trimmed == _SUMMARY_COLUMNS
            self.skip(reason)
            return None
        cells = text.split(",")
        if self._summary_counts(cells, counts_due):
            self.skip("nfdump summary")
            return None
        cut = len(_CLASSIC_HEADER)
        if not after_header and text.startswith(_CLASSIC_HEADER) and text[cut : cut + 1] not in ("", ","):
            # 1.6.19 and 1.6.20: the header runs into the first record (ASCII: bytes = characters)
            self._use(_CLASSIC, raw[:cut])
            return self._read_line(text[cut:], raw[cut:], lineno, offset, after_header=True)
        if _names_a_header(cells):
            self._set_header(cells, raw, lineno, offset)
            return None
        layout = self.layout
        if layout is None:
            if len(cells) != len(CLASSIC_COLUMNS):
                self.reject("no nfdump CSV header (ts,te,td,sa,da,... or firstSeen,...,srcAddr,...) "
                            "before this line", raw, lineno, offset)  # fmt: skip
                return None
            layout = self.layout = _CLASSIC  # nfdump -q: the classic records without their header
        if len(cells) != layout.width:
            self.reject(f"expected {layout.width} columns, got {len(cells)}", raw, lineno, offset)
            return None
        if cells[layout.src].strip() in _NO_ADDRESS and cells[layout.dst].strip() in _NO_ADDRESS:
            self.skip(_TUNNEL_OR_NON_IP)
            return None
        return self._event(cells, raw)

    def _summary_counts(self, cells: list[str], due: bool) -> bool:
        """The line of six numbers after ``flows,bytes,...``; also when a parser that did not see
        that line (one primed with the header) meets it, unless the layout has six columns too."""
        if len(cells) != 6 or not all(cell.isdigit() and cell.isascii() for cell in cells):
            return False
        return due or self.layout is None or self.layout.width != 6

    def _set_header(self, cells: list[str], raw: bytes, lineno: int, offset: int) -> None:
        layout = _Layout([cell.strip() for cell in cells])
        if not layout.has_time():
            self.reject("nfdump CSV header without a time column (ts, te, firstSeen or lastSeen)", raw,
                        lineno, offset)  # fmt: skip
            return
        self._use(layout, raw)
        self.skip("header line")

    def _use(self, layout: _Layout, header: bytes) -> None:
        self.layout = layout
        self.keep_header("columns", header)

    # --- one record ----------------------------------------------------------------------------
    def _event(self, parts: list[str], raw: bytes) -> FlowEvent:
        layout = self._in_force()
        src, dst = parts[layout.src].strip(), parts[layout.dst].strip()
        for i, address in ((layout.src, src), (layout.dst, dst)):
            if not valid_ip(address):
                raise BadField(f"{layout.written[i]} is not an IP address: {clip(address, 60)}")
        return self._build(parts, raw, src, dst, self.flow_owner(src, dst))

    def _build(self, parts: list[str], raw: bytes, src: str, dst: str, owner: Owner) -> FlowEvent:
        """The event of a record whose addresses were checked; every other cell is checked here,
        in bulk where it is plain and cell by cell (naming the column) where not."""
        layout = self._in_force()
        proto = self._protocol(parts)
        if proto in _ICMP:
            _icmp_dotted_as_number(parts, layout.counter_columns[1])
        parts.append("0")  # the cell of a counter the layout lacks
        cells = layout.counters(parts)
        digits = "".join(cells)  # int() would also take "-5", "+5", "1_000", non-ASCII digits
        counters: Sequence[int] | None = None
        if digits.isdigit() and digits.isascii() and len(digits) <= 120:
            counters = list(map(int, cells))
            sport, dport, packets_out, bytes_out, packets_in, bytes_in = counters
            # all non-negative: the OR exceeds the bound iff one of them does
            if (
                sport > 65535
                or dport > 65535
                or (packets_out | bytes_out | packets_in | bytes_in) > COUNT_MAX
            ):
                counters = None
        if counters is None:
            counters = self._named_counters(parts, proto)
        sport, dport, packets_out, bytes_out, packets_in, bytes_in = counters
        end, duration = self._span(parts)
        extra = self._extra(parts)
        flags = self._tcp_flags(parts)
        if flags is not None:
            extra["tcp_flags"] = flags
        status = extra.get("fwd")
        action: Literal["accept", "reject"] = "accept"
        if status is not None and status >> 6 == _DROPPED:
            action = "reject"
        # Same lengths by construction; 14 keywords keep the call off CPython's dict path.
        return replace(
            self.flow_base(owner), id=_event_id(raw), ts=end, src_ip=src, dst_ip=dst, src_port=sport,
            dst_port=dport, proto=_PROTO[proto], bytes_out=bytes_out, packets_out=packets_out,
            bytes_in=bytes_in, packets_in=packets_in, duration_ms=duration, action=action, extra=extra,
        )  # fmt: skip

    def _named_counters(self, parts: list[str], proto: int) -> list[int]:
        """Ports and counters cell by cell: the first that is not one raises, naming its column."""
        layout = self._in_force()
        values = []
        for column, i in zip(_COUNTER_COLUMNS, layout.counter_columns, strict=True):
            if i == layout.width:
                values.append(0)
                continue
            name, cell = layout.written[i], parts[i]
            if column == "dp" and proto in _ICMP and "." in cell:
                values.append(_icmp_port(name, cell))
            else:
                values.append(count_cell(name, cell, 65535 if column in ("sp", "dp") else COUNT_MAX))
        return values

    def _protocol(self, parts: list[str]) -> int:
        layout = self._in_force()
        i = layout.proto
        if i is None:
            return 0
        number = _PROTOCOL.get(parts[i])
        if number is None:
            number = _PROTOCOL.get(parts[i].strip())  # from 138 up, padded: "200  "
            if number is None:
                raise BadField(f"{layout.written[i]} is not a protocol: {clip(parts[i])}")
        return number

    def _tcp_flags(self, parts: list[str]) -> int | None:
        layout = self._in_force()
        i = layout.flags
        if i is None:
            return None
        value = _TCP_FLAGS.get(parts[i])
        if value is None:
            value = _TCP_FLAGS.get(parts[i].strip())  # up to 1.6.17, above 63: "  0xc2"
            if value is None:
                raise BadField(f"{layout.written[i]} is not TCP flags: {clip(parts[i])}")
        return value

    def _span(self, parts: list[str]) -> tuple[int, int]:
        """(the flow's end, its duration) in ms, from whichever of ``ts``, ``te`` and ``td`` the
        layout has (see the module docstring)."""
        layout, clock = self._in_force(), self.clock
        s, e, d = layout.start, layout.end, layout.duration
        start = None if s is None else clock(layout.written[s], parts[s])
        end = None if e is None else clock(layout.written[e], parts[e])
        duration = None if d is None else _duration_ms(layout.written[d], parts[d])
        if start is not None and end is not None and not _agree(start, end, duration):
            start, end = self._refold(parts, start, end, duration)
        if start is not None and end is not None and end < start:
            raise BadField(f"{self._cell(parts, layout.end)} is before {self._cell(parts, layout.start)}")
        if duration is None:
            if start is not None and end is not None:
                return end, end - start
            only = end if start is None else start
            assert only is not None  # a layout has a time column (_set_header)
            return only, 0
        if start is None:
            assert end is not None
            return end, duration
        last = start + duration
        if end is not None:
            if abs(last - end) >= 1000:  # classic ts and te are whole seconds: within te's second
                raise BadField(f"{self._cell(parts, d)} disagrees with {self._cell(parts, layout.start)} "
                               f"and {self._cell(parts, layout.end)}")  # fmt: skip
            last = max(last, end)
        if last >= TS_MAX_MS:
            raise BadField(f"{self._cell(parts, layout.start)} + {self._cell(parts, d)} is out of range")
        return last, duration

    def _refold(self, parts: list[str], start: int, end: int, duration: int | None) -> tuple[int, int]:
        """A flow across the hour DST ends: its end (or its start) read as that hour's second
        pass when that makes the times agree; else as they were (the caller names the fault)."""
        layout, zone = self._in_force(), self.clock.zone
        assert layout.start is not None and layout.end is not None  # both times were read
        if zone is None:  # UTC: no hour happens twice
            return start, end
        if (
            _local(parts[layout.end])
            and (again := second_reading(zone, end))
            and _agree(start, again, duration)
        ):
            return start, again
        if (
            _local(parts[layout.start])
            and (again := second_reading(zone, start))
            and _agree(again, end, duration)
        ):
            return again, end
        return start, end

    def _cell(self, parts: list[str], i: int | None) -> str:
        """A column and its value, for a DLQ reason."""
        return "" if i is None else f"{self._in_force().written[i]} {clip(parts[i])}"

    def _in_force(self) -> _Layout:
        layout = self.layout
        assert layout is not None  # records are read once a layout is known
        return layout

    def _extra(self, parts: list[str]) -> dict[str, Any]:
        """The other columns (see the module docstring); a group whose cells all hold nfdump's
        placeholders, as most records' MACs, MPLS labels and latencies do, is passed over at once."""
        layout = self._in_force()
        extra = self._integers(parts, layout) if layout.integers else {}
        if layout.text_names:
            texts = zip(layout.text_names, layout.text_cells(parts), strict=True)
            extra.update({name: value for name, value in texts if value not in _ABSENT})
        if layout.optional_names:
            cells = layout.optional_cells(parts)
            if cells != layout.none_present:
                optional = zip(layout.optional_names, cells, strict=True)
                extra.update({name: value for name, value in optional if value not in _ABSENT})
        for name, i in layout.addresses:
            address = parts[i].strip()
            if address not in _ABSENT:
                if not valid_ip(address):
                    raise BadField(f"{layout.written[i]} is not an IP address: {clip(address)}")
                extra[name] = address
        if layout.latencies and layout.latency_cells(parts) != layout.no_latency:
            for name, i in layout.latencies:
                latency = parts[i].strip()
                if latency != _NO_LATENCY:
                    extra[name] = decimal_cell(layout.written[i], latency)
        for name, i in layout.others:
            extra[name] = number_or_text(parts[i], layout.written[i])
        return extra

    @staticmethod
    def _integers(parts: list[str], layout: _Layout) -> dict[str, Any]:
        cells = layout.integer_cells(parts)
        digits = "".join(cells)
        if digits.isdigit() and digits.isascii() and max(map(len, cells)) <= 18:  # below 2^63
            return dict(zip(layout.integer_names, map(int, cells), strict=True))
        return {name: count_cell(layout.written[i], parts[i]) for name, i in layout.integers}
