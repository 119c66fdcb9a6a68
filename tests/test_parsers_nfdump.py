"""nfdump's CSV output (``ingest.parsers.nfdump_csv``): the layouts of both release lines as nfdump
prints them (``tests/samples/nfdump.csv``: 1.6 to 1.7.4; ``nfdump17.csv``: 1.7.5 on), the mapping of
every field, ``--tz``, strictness, the lines that are not records, agreement with nProbe CSV on the
same flows, how the detectors read the records, and the hostile-input checks every flow format
gets (``tests/test_hostile_flow.py``, ``tests/test_parse_state.py``, ``tests.fuzz``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detectors.flowdir import ACK, ANSWERED, INITIATOR, ONE_WAY, REFUSED, SYN, flow_view, tcp_flags
from ingest.parsers import ListOutput, ParseContext, get_format, parse_bytes
from ingest.parsers.base import FastPathParser
from ingest.parsers.nfdump_csv import CLASSIC_COLUMNS
from ingest.schema import FlowEvent, decode_event, encode_event, event_id
from ingest.tenants import TenantRegistry
from tests.fuzz.invariants import check_parse
from tests.parsed import flows

SAMPLES = Path(__file__).parent / "samples"
FMT = "nfdump"
HUGE = "1" + "0" * 300
T0 = 1_709_632_800_000  # 2024-03-05 10:00:00 UTC, the samples' first second
HEADER_16 = ",".join(CLASSIC_COLUMNS).encode()
HEADER_175 = b"firstSeen,duration,proto,srcAddr,srcPort,dstAddr,dstPort,packets,bytes,flows"
HEADER_FAST = (
    b"cnt,af,firstSeen,lastSeen,proto,srcAddr,srcPort,dstAddr,dstPort,srcAS,dstAS,input,output,flags,srcTos,"
    b"packets,bytes"
)


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def lines_of(name: str) -> list[bytes]:
    return (SAMPLES / name).read_bytes().splitlines()


def parse(lines: list[bytes], **ctx: Any) -> ListOutput:
    """Parse ``lines`` as nfdump CSV; every line accounted for, every event a valid canonical one."""
    out = parse_bytes(FMT, b"\n".join(lines) + b"\n", ParseContext(**ctx))
    assert len(out.events) + len(out.dlqs) + sum(out.skipped.values()) == len([x for x in lines if x.strip()])
    for event in out.events:
        assert decode_event(encode_event(event)) == event
    return out


def classic_row(**cells: str) -> bytes:
    """A record in the classic layout: the sample's first record with ``cells`` replaced."""
    return replaced(lines_of("nfdump.csv")[1], CLASSIC_COLUMNS, cells)


def replaced(line: bytes, names: tuple[str, ...] | list[str], cells: dict[str, str]) -> bytes:
    parts = line.split(b",")
    for name, value in cells.items():
        parts[list(names).index(name)] = value.encode()
    return b",".join(parts)


def core(ev: FlowEvent) -> tuple[Any, ...]:
    return (ev.src_ip, ev.dst_ip, ev.src_port, ev.dst_port, ev.proto, ev.ts, ev.duration_ms,
            ev.packets_out, ev.bytes_out, ev.packets_in, ev.bytes_in, ev.action)  # fmt: skip


# --- the samples: every field ---------------------------------------------------------------------
def test_classic_layout_maps_every_field(registry: TenantRegistry) -> None:
    lines = lines_of("nfdump.csv")
    out = parse(lines, registry=registry)
    assert out.dlqs == [] and dict(out.skipped) == {"header line": 1, "nfdump summary": 3}
    events = flows(out)
    first = events[0]
    assert first == FlowEvent(
        id=event_id("netflow", lines[1]), ts=T0 + 2504, source="netflow", tenant="t-acme", host="hv-01",
        vm="vm-acme-01", src_ip="10.1.0.5", dst_ip="10.2.0.7", src_port=52344, dst_port=5432, proto="tcp",
        bytes_out=3644, packets_out=42, bytes_in=0, packets_in=0, duration_ms=2504, action="accept",
        extra={"fwd": 0, "stos": 0, "in": 2, "out": 3, "sas": 0, "das": 0, "smk": 24, "dmk": 24, "dtos": 0,
               "dir": 0, "svln": 0, "dvln": 0, "exid": 1, "eng": "0/0", "tr": "2024-03-05 10:00:03.117",
               "nh": "10.2.0.1", "ra": "192.0.2.1", "cl": 1.25, "tcp_flags": 27},
    )  # fmt: skip
    # (src, dst, sport, dport, proto, end, duration, packets out, bytes out, packets in, bytes in, action)
    assert [core(ev) for ev in events] == [
        ("10.1.0.5", "10.2.0.7", 52344, 5432, "tcp", T0 + 2504, 2504, 42, 3644, 0, 0, "accept"),
        ("10.2.0.7", "10.1.0.5", 5432, 52344, "tcp", T0 + 2480, 2480, 71, 91905, 0, 0, "accept"),
        ("198.51.100.9", "10.1.0.5", 33211, 53, "udp", T0 + 2000, 0, 1, 63, 0, 0, "accept"),
        ("10.1.0.5", "10.1.0.6", 0, 8 * 256, "icmp", T0 + 3000, 0, 1, 84, 0, 0, "accept"),
        ("10.1.0.6", "10.1.0.5", 0, 0, "icmp", T0 + 3001, 1, 1, 84, 0, 0, "accept"),
        ("2001:db8::5", "2001:db8:1::7", 52000, 443, "tcp", T0 + 5000, 1000, 2, 120, 0, 0, "accept"),
        ("10.1.0.5", "203.0.113.10", 40000, 443, "tcp", T0 + 9250, 4250, 12, 2400, 10, 9000, "accept"),
        ("203.0.113.66", "10.1.0.5", 40001, 23, "tcp", T0 + 6000, 0, 1, 60, 0, 0, "reject"),
    ]
    assert [ev.extra["tcp_flags"] for ev in events] == [27, 27, 0, 0, 0, 2, 27, 2]
    one, two, three = "192.0.2.1", "192.0.2.2", "192.0.2.3"  # the exporters (ra)
    assert [ev.extra["ra"] for ev in events] == [one, one, two, one, one, one, three, one]
    assert [ev.extra["exid"] for ev in events] == [1, 1, 2, 1, 1, 1, 3, 1]
    ipv6 = events[5].extra  # placeholders of absent values are left out, values kept
    assert "nh" not in ipv6 and "nhb" not in ipv6 and "idmc" not in ipv6 and "mpls1" not in ipv6
    assert (ipv6["ismc"], ipv6["odmc"], ipv6["svln"]) == ("52:54:00:12:34:56", "52:54:00:65:43:21", 10)
    assert events[7].extra["mpls1"] == "16-0-1" and events[7].extra["fwd"] == 130
    assert (events[0].tenant, events[5].tenant, events[6].tenant) == ("t-acme", "t-acme", "t-acme")
    assert events[1].tenant == "t-beta"


def test_layout_of_1_7_5_maps_every_field(registry: TenantRegistry) -> None:
    lines = lines_of("nfdump17.csv")
    out = parse(lines, registry=registry)
    assert out.dlqs == [] and dict(out.skipped) == {"header line": 1}
    events = flows(out)
    assert events[0] == FlowEvent(
        id=event_id("netflow", lines[1]), ts=T0 + 123 + 2504, source="netflow", tenant="t-acme", host="hv-01",
        vm="vm-acme-01", src_ip="10.1.0.5", dst_ip="10.2.0.7", src_port=52344, dst_port=5432, proto="tcp",
        bytes_out=3644, packets_out=42, duration_ms=2504, extra={"flows": 1},
    )  # fmt: skip
    assert [core(ev) for ev in events] == [
        ("10.1.0.5", "10.2.0.7", 52344, 5432, "tcp", T0 + 2627, 2504, 42, 3644, 0, 0, "accept"),
        ("10.2.0.7", "10.1.0.5", 5432, 52344, "tcp", T0 + 2620, 2480, 71, 91905, 0, 0, "accept"),
        ("198.51.100.9", "10.1.0.5", 33211, 53, "udp", T0 + 2500, 0, 1, 63, 0, 0, "accept"),
        ("10.1.0.5", "10.1.0.6", 0, 8 * 256, "icmp", T0 + 3000, 0, 1, 84, 0, 0, "accept"),  # 8.0
        ("10.1.0.6", "10.1.0.5", 0, 0, "icmp", T0 + 3002, 1, 1, 84, 0, 0, "accept"),  # 0.0
        ("2001:db8::5", "2001:db8:1::7", 52000, 443, "tcp", T0 + 5250, 1000, 2, 120, 0, 0, "accept"),
        ("2001:db8::5", "2001:db8:1::7", 0, 128 * 256, "58", T0 + 5000, 0, 1, 104, 0, 0, "accept"),  # 128.0
        ("10.1.0.5", "203.0.113.10", 40002, 443, "tcp", T0 + 65998, 59998, 1200, 1048576, 0, 0, "accept"),
    ]
    assert [ev.extra for ev in events][-1] == {"flows": 3}  # an aggregated record: three flows


def test_csv_fast_and_csv_formats_of_1_7() -> None:
    """``-o csv-fast``: epoch milliseconds, protocol numbers; ``-o "csv:%..."``: any columns, those
    of the classic layout read under its names."""
    fast = parse([HEADER_FAST, b"1,2,1709632800123,1709632802627,6,10.1.0.5,52344,10.2.0.7,5432,0,64501,2,3,"
                  b"...AP.SF,0,42,3644"])  # fmt: skip
    (ev,) = flows(fast)
    assert core(ev) == ("10.1.0.5", "10.2.0.7", 52344, 5432, "tcp", T0 + 2627, 2504, 42, 3644, 0, 0, "accept")
    assert ev.extra == {"cnt": 1, "af": 2, "sas": 0, "das": 64501, "in": 2, "out": 3, "stos": 0,
                        "tcp_flags": 27}  # fmt: skip
    header = (b"firstSeen,lastSeen,duration,srcAddr,dstAddr,srcPort,dstPort,proto,flags,inPackets,inBytes,"
              b"outPackets,outBytes,routerIP,input,output,exporterID,fwdStatus,received,sniName")  # fmt: skip
    row = (b"2024-03-05 10:00:05.250,2024-03-05 10:00:09.500,4.250,10.1.0.5,203.0.113.10,40000,443,6,...AP.SF,"
           b"12,2400,10,9000,192.0.2.3,1,2,3,0,2024-03-05 10:00:10.001,example.org")  # fmt: skip
    (ev,) = flows(parse([header, row]))
    assert core(ev) == ("10.1.0.5", "203.0.113.10", 40000, 443, "tcp", T0 + 9500, 4250, 12, 2400, 10, 9000,
                        "accept")  # fmt: skip
    assert ev.extra == {"ra": "192.0.2.3", "in": 1, "out": 2, "exid": 3, "fwd": 0,
                        "tr": "2024-03-05 10:00:10.001", "sniName": "example.org", "tcp_flags": 27}  # fmt: skip
    raw = parse([b"firstSeen,duration,srcAddr,dstAddr", b"1709632800.123,1.000,10.1.0.5,10.2.0.7"])  # %tsr
    assert [(e.ts, e.proto, e.src_port) for e in flows(raw)] == [(T0 + 1123, "0", 0)]


# --- what nfdump prints besides records -----------------------------------------------------------
def test_summary_and_no_match_lines_are_skipped_not_rejected() -> None:
    summary = [b"Summary", b"flows,bytes,packets,avg_bps,avg_pps,avg_bpp", b"0,0,0,0,0,0"]
    none_16 = parse([HEADER_16, b"No matched flows"])  # 1.6: stops there
    none_174 = parse([HEADER_16, b"No matching flows", *summary])  # 1.7.0-1.7.4: a summary of zeros
    assert none_16.events == none_16.dlqs == [] == none_174.events == none_174.dlqs
    assert dict(none_16.skipped) == {"header line": 1, "nfdump found no matching flows": 1}
    assert dict(none_174.skipped) == {
        "header line": 1,
        "nfdump found no matching flows": 1,
        "nfdump summary": 3,
    }
    # the files of two nfdump runs one after the other: the second header starts again
    two = parse([*lines_of("nfdump.csv"), *lines_of("nfdump17.csv")])
    assert len(two.events) == 16 and two.dlqs == [] and two.skipped["header line"] == 2


def test_a_record_before_any_header_and_a_short_record_go_to_the_dlq() -> None:
    short = b",".join(classic_row().split(b",")[:47])
    out = parse([b"10.1.0.5,10.2.0.7,6", HEADER_16, short, classic_row()])
    assert [(d.line, d.reason) for d in out.dlqs] == [
        (1, "no nfdump CSV header (ts,te,td,sa,da,... or firstSeen,...,srcAddr,...) before this line"),
        (3, "expected 48 columns, got 47"),
    ]
    assert len(out.events) == 1
    timeless = parse([b"srcAddr,dstAddr,bytes", b"10.1.0.5,10.2.0.7,1"])
    assert [d.reason for d in timeless.dlqs] == [
        "nfdump CSV header without a time column (ts, te, firstSeen or lastSeen)",
        "no nfdump CSV header (ts,te,td,sa,da,... or firstSeen,...,srcAddr,...) before this line",
    ]


def test_what_older_releases_print() -> None:
    """``-q`` (no header), the header of 1.6.19/1.6.20 that runs into the first record, flags as six
    letters or hex up to 1.6.17, protocol 0 as an empty cell up to 1.6.18, numbers from 138 up
    padded, 1.7's names, the outer line of a tunnel up to 1.7.4."""
    quiet = parse([classic_row(), classic_row(sp="52345")])
    assert [e.src_port for e in flows(quiet)] == [52344, 52345] and not quiet.skipped

    glued = parse([HEADER_16 + classic_row(), classic_row(sp="52345")])
    assert [e.src_port for e in flows(glued)] == [52344, 52345] and not glued.skipped
    assert flows(glued)[0].id == event_id("netflow", classic_row())  # the id of the record alone
    assert flows(parse([HEADER_16 + b"No matched flows"])) == []

    cells = [
        ({"flg": ".AP.SF"}, "tcp", 27), ({"flg": "  0xd2", "pr": "TCP"}, "tcp", 0xD2),
        ({"flg": "....S.", "pr": ""}, "0", 2), ({"pr": "200  "}, "200", 27), ({"pr": "ICMP6"}, "58", 27),
        ({"pr": "GRE"}, "47", 27), ({"pr": "OS"}, "94", 27), ({"pr": "IPIP"}, "4", 27),
        ({"flg": "CE.AP.SF"}, "tcp", 0xDB),
    ]  # fmt: skip
    out = parse([HEADER_16, *(classic_row(**c) for c, _proto, _flags in cells)])
    assert [(e.proto, e.extra["tcp_flags"]) for e in flows(out)] == [(p, f) for _c, p, f in cells]

    tunnel = classic_row(sa="0.0.0.0", da="0.0.0.0", sp="0", dp="0", ipkt="0", ibyt="0", pr="GRE")
    out = parse([HEADER_16, tunnel, classic_row()])
    assert (
        len(out.events) == 1
        and out.skipped["record without addresses (a tunnel's outer line, or no IP)"] == 1
    )


def test_crlf_lines_read_as_lf_lines() -> None:
    lf = flows(parse(lines_of("nfdump.csv")))
    crlf = flows(parse([line + b"\r" for line in lines_of("nfdump.csv")]))
    assert [core(e) for e in crlf] == [core(e) for e in lf]
    assert [e.extra for e in crlf] == [e.extra for e in lf]


# --- --tz ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nfdump.csv", "nfdump17.csv"])
def test_local_times_are_read_in_the_zone_given(name: str) -> None:
    utc = flows(parse(lines_of(name)))
    berlin = flows(parse(lines_of(name), timezone="Europe/Berlin"))  # CET in March: UTC+1
    assert [e.ts for e in berlin] == [e.ts - 3_600_000 for e in utc]
    assert [e.duration_ms for e in berlin] == [e.duration_ms for e in utc]
    assert [e.extra for e in berlin] == [e.extra for e in utc]  # tr stays as nfdump wrote it


def test_an_hour_that_happens_twice_is_read_as_the_first_and_epoch_times_need_no_zone() -> None:
    # 2024-10-27 02:30 happens twice in Berlin (DST ends at 03:00 CEST): read as CEST, 00:30 UTC
    row = classic_row(ts="2024-10-27 02:30:00", te="2024-10-27 02:30:02")
    (ev,) = flows(parse([HEADER_16, row], timezone="Europe/Berlin"))
    assert ev.ts == 1_729_989_000_000 + 2504
    fast = [HEADER_FAST, b"1,2,1709632800123,1709632802627,6,10.1.0.5,1,10.2.0.7,2,0,0,0,0,........,0,1,1"]
    assert flows(parse(fast, timezone="Asia/Tokyo"))[0].ts == T0 + 2627


def test_a_flow_across_the_hour_dst_ends_is_read_with_its_end_in_the_second_pass() -> None:
    # Berlin, 2024-10-27: 02:50 CEST (00:50 UTC), then at 03:00 CEST the clocks go back to 02:00
    # CET; a 30-minute flow from 02:50 CEST ends at 02:20 CET (01:20 UTC). Read as the first pass
    # its end was 30 minutes before its start, and the record went to the DLQ.
    start_ms = 1_729_990_200_000  # 00:50 UTC
    row = classic_row(ts="2024-10-27 02:50:00", te="2024-10-27 02:20:00", td="1800.000")
    (ev,) = flows(parse([HEADER_16, row], timezone="Europe/Berlin"))
    assert (ev.ts, ev.duration_ms) == (start_ms + 1_800_000, 1_800_000)
    # A flow that starts in the second pass and ends after it: only the duration tells.
    row = classic_row(ts="2024-10-27 02:50:00", te="2024-10-27 03:10:00", td="1200.000")
    (ev,) = flows(parse([HEADER_16, row], timezone="Europe/Berlin"))
    assert (ev.ts, ev.duration_ms) == (start_ms + 3_600_000 + 1_200_000, 1_200_000)
    # Times that no reading makes agree are still refused, naming the columns.
    row = classic_row(ts="2024-10-27 02:10:00", te="2024-10-27 02:40:00", td="600.000")
    out = parse([HEADER_16, row], timezone="Europe/Berlin")
    assert not out.events and "td '600.000' disagrees with ts '2024-10-27 02:10:00'" in out.dlqs[0].reason
    # Outside such an hour nothing changes: an end before the start is a fault.
    row = classic_row(ts="2024-10-27 05:50:00", te="2024-10-27 05:20:00", td="1800.000")
    assert (
        "te '2024-10-27 05:20:00' is before ts"
        in parse([HEADER_16, row], timezone="Europe/Berlin").dlqs[0].reason
    )


# --- strictness --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"sa": "10.1.0.500"}, "sa is not an IP address: '10.1.0.500'"),
        ({"da": "evil.example"}, "da is not an IP address: 'evil.example'"),
        ({"ibyt": "-5"}, "ibyt is negative: '-5'"),
        ({"ipkt": "many"}, "ipkt is not an integer: 'many'"),
        ({"obyt": HUGE}, f"obyt out of range: '1{'0' * 35}..."),
        ({"opkt": "1.5"}, "opkt is not an integer: '1.5'"),
        ({"sp": "65536"}, "sp out of range: '65536'"),
        ({"dp": "8.0"}, "dp is not an integer: '8.0'"),  # type.code is 1.7.5's, and only for ICMP
        ({"ts": "2024-13-05 10:00:00"}, "ts is not a time: '2024-13-05 10:00:00'"),
        ({"te": "yesterday"}, "te is not a time: 'yesterday'"),
        (
            {"ts": "1970-01-01 00:00:00", "te": "1970-01-01 00:00:02"},
            "ts out of range: '1970-01-01 00:00:00'",
        ),
        ({"te": "2024-03-05 09:59:59"}, "te '2024-03-05 09:59:59' is before ts '2024-03-05 10:00:00'"),
        ({"td": "-2.504"}, "td is negative: '-2.504'"),
        ({"td": "2.5041"}, "td is not a duration in seconds: '2.5041'"),
        ({"td": "9.000"}, "td '9.000' disagrees with ts '2024-03-05 10:00:00' and te '2024-03-05 10:00:02'"),
        ({"pr": "XTCP"}, "pr is not a protocol: 'XTCP'"),
        ({"pr": "256"}, "pr is not a protocol: '256'"),
        ({"flg": "..AP.SF"}, "flg is not TCP flags: '..AP.SF'"),
        ({"in": "-1"}, "in is negative: '-1'"),
        ({"exid": "one"}, "exid is not an integer: 'one'"),
        ({"ra": "router-7"}, "ra is not an IP address: 'router-7'"),
        ({"cl": "nan"}, "cl is not a number: 'nan'"),
    ],
)
def test_a_bad_cell_sends_its_record_to_the_dlq_naming_the_column(cells: dict[str, str], reason: str) -> None:
    header, first, second = lines_of("nfdump.csv")[:3]
    out = parse([header, first, replaced(first, CLASSIC_COLUMNS, cells), second])
    assert [(d.line, d.reason) for d in out.dlqs] == [(3, reason)]
    assert [e.src_port for e in flows(out)] == [52344, 5432]


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"firstSeen": "0000-00-00 00:00:00.000"}, "firstSeen is not a time: '0000-00-00 00:00:00.000'"),
        ({"firstSeen": "2024-03-05 10:00:00.12"}, "firstSeen is not a time: '2024-03-05 10:00:00.12'"),
        ({"duration": "abc"}, "duration is not a duration in seconds: 'abc'"),
        ({"duration": "99999999999999.000"}, "duration out of range: '99999999999999.000'"),
        ({"proto": "300"}, "proto is not a protocol: '300'"),
        ({"dstPort": "256.0", "proto": "1"}, "dstPort out of range: '256'"),
        ({"dstPort": "8.x", "proto": "1"}, "dstPort is not an integer: 'x'"),
        ({"packets": "1e3"}, "packets is not an integer: '1e3'"),
        ({"flows": "-1"}, "flows is negative: '-1'"),
        ({"srcAddr": "::g"}, "srcAddr is not an IP address: '::g'"),
    ],
)
def test_a_bad_cell_of_1_7_5_names_its_column(cells: dict[str, str], reason: str) -> None:
    header, first, second = lines_of("nfdump17.csv")[:3]
    names = header.decode().split(",")
    out = parse([header, first, replaced(first, names, cells), second])
    assert [(d.line, d.reason) for d in out.dlqs] == [(3, reason)]
    assert len(out.events) == 2


def test_a_flow_that_ends_past_the_event_times() -> None:
    last = b"2099-12-31 23:59:59.500,0.499,6,10.1.0.5,1,10.2.0.7,2,1,1,1"
    out = parse([HEADER_175, last, last.replace(b",0.499,", b",0.500,")])
    assert [d.reason for d in out.dlqs] == [
        "firstSeen '2099-12-31 23:59:59.500' + duration '0.500' is out of range"
    ]
    assert [e.ts for e in flows(out)] == [4_102_444_799_999]


# --- the same flow as nProbe CSV ---------------------------------------------------------------------
@dataclass(frozen=True)
class Flow:
    src: str
    sport: int
    dst: str
    dport: int
    proto: int
    start_ms: int
    duration_ms: int
    packets: tuple[int, int]
    octets: tuple[int, int]
    flags: int

    def nprobe(self) -> bytes:
        return (f"{self.src},{self.sport},{self.dst},{self.dport},{self.proto},{self.octets[0]},{self.packets[0]},"
                f"{self.octets[1]},{self.packets[1]},{self.flags},{self.duration_ms},{self.start_ms}").encode()  # fmt: skip

    def classic(self) -> bytes:
        start, end = _local(self.start_ms), _local(self.start_ms + self.duration_ms)
        flags = "".join(c if self.flags >> (7 - i) & 1 else "." for i, c in enumerate("CEUAPRSF"))
        names = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMP6", 47: "GRE"}
        return replaced(lines_of("nfdump.csv")[1], CLASSIC_COLUMNS, {
            "ts": start[:19], "te": end[:19], "td": f"{self.duration_ms / 1000:.3f}", "sa": self.src,
            "da": self.dst, "sp": str(self.sport), "dp": str(self.dport), "pr": names[self.proto],
            "flg": flags, "ipkt": str(self.packets[0]), "ibyt": str(self.octets[0]),
            "opkt": str(self.packets[1]), "obyt": str(self.octets[1]),
        })  # fmt: skip

    def recent(self) -> bytes:
        """The layout of 1.7.5 on: no flags, no reverse counters, ICMP as type.code."""
        dport = f"{self.dport >> 8}.{self.dport & 255}" if self.proto in (1, 58) else str(self.dport)
        return (f"{_local(self.start_ms)},{self.duration_ms / 1000:.3f},{self.proto},{self.src},{self.sport},"
                f"{self.dst},{dport},{self.packets[0]},{self.octets[0]},1").encode()  # fmt: skip


def _local(ms: int) -> str:
    """UTC wall time as nfdump prints it with TZ=UTC (1.7.5's milliseconds included)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


_NPROBE_HEADER = (b"IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,IN_BYTES,IN_PKTS,OUT_BYTES,OUT_PKTS,"
                  b"TCP_FLAGS,FLOW_DURATION_MILLISECONDS,FLOW_START_MILLISECONDS")  # fmt: skip
_FLOWS = [  # starts on whole seconds: the classic layout prints seconds (td keeps the milliseconds)
    Flow("10.1.0.5", 52344, "10.2.0.7", 5432, 6, T0, 2504, (42, 0), (3644, 0), SYN | ACK | 0x08 | 0x01),
    Flow("10.2.0.7", 5432, "10.1.0.5", 52344, 6, T0, 2480, (71, 0), (91905, 0), SYN | ACK | 0x08 | 0x01),
    Flow("10.1.0.5", 40123, "10.2.0.7", 22, 6, T0 + 1000, 3000, (3, 0), (180, 0), SYN),  # unanswered
    Flow("10.2.0.7", 22, "10.1.0.5", 40124, 6, T0 + 1000, 0, (1, 0), (40, 0), 0x04 | ACK),  # a reset
    Flow("198.51.100.9", 33211, "10.1.0.5", 53, 17, T0 + 2000, 0, (1, 0), (63, 0), 0),
    Flow("10.1.0.5", 0, "10.1.0.6", 8 * 256, 1, T0 + 3000, 0, (1, 0), (84, 0), 0),
    Flow("10.1.0.6", 0, "10.1.0.5", 0, 1, T0 + 3000, 1, (1, 0), (84, 0), 0),
    Flow("2001:db8::5", 52000, "2001:db8:1::7", 443, 6, T0 + 4000, 1000, (2, 0), (120, 0), SYN),
    Flow("2001:db8::5", 0, "2001:db8:1::7", 128 * 256, 58, T0 + 5000, 0, (1, 0), (104, 0), 0),
    Flow("10.1.0.5", 40000, "203.0.113.10", 443, 6, T0 + 5000, 4250, (12, 10), (2400, 9000), 0x1B),  # biflow
    Flow("10.1.0.9", 0, "10.2.0.8", 0, 47, T0 + 6000, 60000, (500, 0), (700000, 0), 0),
]


def _same_fields(ev: FlowEvent) -> tuple[Any, ...]:
    """Every field both formats carry, and what the detectors read from the flags."""
    return (*core(ev), ev.source, ev.tenant, ev.vm, ev.host, tcp_flags(ev), flow_view(ev))


def test_a_flow_gives_the_same_event_as_nfdump_csv_and_as_nprobe_csv(registry: TenantRegistry) -> None:
    nprobe = parse_bytes("nprobe-csv", b"\n".join([_NPROBE_HEADER, *(f.nprobe() for f in _FLOWS)]) + b"\n",
                         ParseContext(registry=registry))  # fmt: skip
    classic = flows(parse([HEADER_16, *(f.classic() for f in _FLOWS)], registry=registry))
    assert nprobe.dlqs == [] and len(nprobe.events) == len(classic) == len(_FLOWS)
    assert [_same_fields(e) for e in classic] == [_same_fields(e) for e in flows(nprobe)]
    # 1.7.5's layout: milliseconds, but no flags and no reverse counters; those left out of the flows
    shifted = [replace(f, start_ms=f.start_ms + 345, flags=0) for f in _FLOWS if f.packets[1] == 0]
    nprobe = parse_bytes("nprobe-csv", b"\n".join([_NPROBE_HEADER, *(f.nprobe() for f in shifted)]) + b"\n",
                         ParseContext(registry=registry))  # fmt: skip
    recent = flows(parse([HEADER_175, *(f.recent() for f in shifted)], registry=registry))
    assert [_same_fields(e) for e in recent] == [_same_fields(e) for e in flows(nprobe)]


# --- how the detectors read them ---------------------------------------------------------------------
def test_the_detectors_read_the_records_as_netflow() -> None:
    events = flows(parse(lines_of("nfdump.csv")))
    syn_only, biflow, dropped = events[5], events[6], events[7]
    assert tcp_flags(syn_only) == SYN and flow_view(syn_only) & ONE_WAY
    assert flow_view(syn_only) & INITIATOR
    assert not flow_view(biflow) & ONE_WAY and flow_view(biflow) & ANSWERED  # NSEL's reverse counters
    assert dropped.action == "reject" and flow_view(dropped) & REFUSED
    assert all(e.source == "netflow" for e in events)


def test_the_alias_names_the_format() -> None:
    assert get_format("nfdump-csv").name == get_format("NFDUMP").name == "nfdump"


# --- the checks every flow format gets ---------------------------------------------------------------
SAMPLE_NAMES = ["nfdump.csv", "nfdump17.csv"]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_record_takes_the_fast_path_and_the_checked_path_agrees(name: str) -> None:
    lines = lines_of(name)
    out = ListOutput()
    parser = get_format(FMT).factory(out, ParseContext())
    assert isinstance(parser, FastPathParser)
    parser.feed_lines(lines[:1])
    records = [line for line in lines[1:] if line[:1].isdigit() and b"," in line and line.count(b",") > 5]
    for n, line in enumerate(records, 2):
        fast = parser._fast_event(line)
        parser._feed_checked(line, n, 0)
        assert fast is not None and out.events[-1] == fast, line


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_samples_and_their_variants_keep_the_fuzz_invariants(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    for variant in (
        data,
        data.replace(b"\n", b"\r\n"),
        data[: len(data) // 2],
        data * 2,
        data.replace(b",", b";"),
    ):
        check_parse(FMT, variant)


# --- the raw topics and the parse stage --------------------------------------------------------------
def test_the_raw_topic_of_the_format() -> None:
    from ingest.raw import format_of_topic

    assert (
        format_of_topic("ssa.raw.", "ssa.raw.nfdump")
        == format_of_topic("ssa.raw.", "ssa.raw.nfdump-csv")
        == FMT
    )
