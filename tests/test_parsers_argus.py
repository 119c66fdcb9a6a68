"""The Argus parser (``ssa ingest --format argus``) on a hand-made sample in the CSV ``ra -c ,``
prints, on hostile rows, and (marked slow) on the real CTU-13 scenario 6 capture."""

from __future__ import annotations

import gzip
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.parsers import FORMATS, ListOutput, ParseContext, get_format
from ingest.parsers.argus import ArgusParser, refused_attempt
from ingest.parsers.flowutil import BadField
from ingest.schema import Event, FlowEvent, event_id
from ingest.tenants import TenantRegistry
from tests.fuzz.invariants import check_output, check_parse

SAMPLES = Path(__file__).parent / "samples"
SAMPLE = SAMPLES / "argus.binetflow"
HEADER = (
    b"StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label"
)
ROW = b"2024/03/05 10:00:00.125000,2.504112,tcp,10.1.0.5,52344,   ->,10.2.0.7,5432,FSPA_FSPA,0,0,113,95549,3644,x"
ROW_DUR_MS = 2504  # the row's Dur (an Argus event's ts is its StartTime)
CTU13 = "ctu13_scenario6_menti/capture20110816.binetflow.gz"


def ms(text: str, zone: str = "UTC") -> int:
    """Epoch ms of an ISO local time in ``zone``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def parse(data: bytes, **ctx) -> ListOutput:
    return check_parse("argus", data, ParseContext(**ctx))  # accounting, bounds, round trip, wording


def _flow(event: Event) -> FlowEvent:
    assert isinstance(event, FlowEvent), event
    return event


def _flows(events: list[Event]) -> list[FlowEvent]:
    return [_flow(e) for e in events]


def by_label(out: ListOutput) -> dict[str, FlowEvent]:
    return {e.extra["label"]: e for e in _flows(out.events) if "label" in e.extra}


# --- the sample ----------------------------------------------------------------------------------
def test_sample_every_line_is_an_event_a_dlq_record_or_a_counted_skip():
    data = SAMPLE.read_bytes()
    out = parse(data, registry=TenantRegistry.load(SAMPLES / "tenants.yaml"))
    assert len(out.events) + len(out.dlqs) + sum(out.skipped.values()) == len(data.splitlines())
    assert len(out.events) == 13
    assert out.skipped == Counter(
        {
            "header line": 1,
            "ARP record (address resolution, not an IP flow)": 1,
            "layer-2 record without IP addresses": 1,
        }
    )
    assert sorted(d.reason for d in out.dlqs) == [
        "Dport is not a port number: 'http' (print numbers with ra -n)",
        "Dur is negative: '-1.000000'",
        "SrcBytes 90 is more than TotBytes 60",
        "expected 15 columns, got 4",
    ]
    assert [d.line for d in out.dlqs] == [17, 18, 19, 20]


def test_sample_tcp_row_maps_to_the_canonical_flow():
    out = parse(SAMPLE.read_bytes(), registry=TenantRegistry.load(SAMPLES / "tenants.yaml"))
    db = by_label(out)["flow=Normal-DB"]
    line = SAMPLE.read_bytes().splitlines()[1]
    assert db.id == event_id("argus", line)
    assert (db.source, db.tenant, db.vm, db.host) == ("argus", "t-acme", "vm-acme-01", "hv-01")
    assert (db.ts, db.duration_ms) == (ms("2024-03-05T10:00:00.125"), 2504)  # Argus: the start
    assert (db.src_ip, db.src_port, db.dst_ip, db.dst_port, db.proto) == (
        "10.1.0.5",
        52344,
        "10.2.0.7",
        5432,
        "tcp",
    )
    assert (db.bytes_out, db.bytes_in) == (3644, 95549 - 3644)
    # TotPkts only, and both sides sent bytes: the split is not known and extra says so
    assert (db.packets_out, db.packets_in) == (113, 0)
    assert db.duration_ms == 2504
    assert db.action == "accept"
    assert db.extra == {
        "dir": "->",
        "state": "FSPA_FSPA",
        "sTos": 0,
        "dTos": 0,
        "label": "flow=Normal-DB",
        "packets_split_unknown": True,
    }


def test_sample_answered_unanswered_and_refused_attempts():
    flows = by_label(parse(SAMPLE.read_bytes()))
    unanswered = flows["flow=Attempt-Telnet"]
    assert (unanswered.extra["state"], unanswered.action, unanswered.bytes_in) == ("S_", "accept", 0)
    # the destination sent no bytes, so it sent no packets: the split is known
    assert (unanswered.packets_out, unanswered.packets_in) == (1, 0)
    assert "packets_split_unknown" not in unanswered.extra
    refused = flows["flow=Attempt-SMTP-Refused"]
    assert (refused.extra["state"], refused.action, refused.bytes_in) == ("S_RA", "reject", 54)
    midstream = flows["flow=Background-Midstream"]  # no SYN seen: Argus cannot tell who opened it
    assert (midstream.extra["dir"], midstream.src_port, midstream.action) == ("<?>", 443, "accept")


def test_sample_icmp_ipv6_esp_and_argus_udp_kinds():
    events = _flows(parse(SAMPLE.read_bytes()).events)
    icmp = [e for e in events if e.proto == "icmp"]
    # hex ports as ra prints them for ICMP
    assert [(e.src_port, e.dst_port) for e in icmp] == [(0x0800, 0x1A2B), (0x0303, 0x4C01), (0, 0x0D0E)]
    echo_reply = icmp[2]  # "<-": only the destination sent
    assert (echo_reply.extra["dir"], echo_reply.packets_out, echo_reply.packets_in) == ("<-", 0, 1)
    assert (echo_reply.bytes_out, echo_reply.bytes_in) == (0, 98)
    (nd,) = [e for e in events if e.proto == "58"]  # ipv6-icmp, no Dport
    assert (nd.src_ip, nd.dst_ip, nd.src_port, nd.dst_port) == ("2001:db8:1::5", "ff02::1:ff00:7", 135, 0)
    (tcp6,) = [e for e in events if e.dst_ip == "2001:db8:ffff::10"]
    assert (tcp6.proto, tcp6.dst_port, tcp6.bytes_out, tcp6.bytes_in) == ("tcp", 443, 400, 800)
    (esp,) = [e for e in events if e.proto == "50"]  # its Dport is the SPI, not a port
    assert (esp.dst_port, esp.extra["spi"]) == (0, "0x1f2e3d4c")
    (rtp,) = [e for e in events if e.extra.get("argus_proto") == "rtp"]
    assert (rtp.proto, rtp.src_port, rtp.dst_port) == ("udp", 16384, 16386)


def test_registered_under_its_name_and_alias():
    assert get_format("argus") is FORMATS["argus"]
    assert get_format("binetflow") is FORMATS["argus"]
    assert (FORMATS["argus"].kind, FORMATS["argus"].binary) == ("flow", False)


# --- times and zones -----------------------------------------------------------------------------
def test_start_time_is_read_in_the_given_zone():
    data = HEADER + b"\n" + ROW + b"\n" + ROW.replace(b"2024/03/05", b"2024/07/05") + b"\n"
    utc = parse(data).events
    prague = parse(data, timezone="Europe/Prague").events
    assert [e.ts for e in utc] == [ms("2024-03-05T10:00:00.125"), ms("2024-07-05T10:00:00.125")]
    assert [e.ts for e in prague] == [
        ms("2024-03-05T10:00:00.125", "Europe/Prague"),  # CET, UTC+1
        ms("2024-07-05T10:00:00.125", "Europe/Prague"),  # CEST, UTC+2
    ]
    assert [u.ts - p.ts for u, p in zip(utc, prague, strict=True)] == [3_600_000, 7_200_000]


def test_a_flow_across_the_hour_dst_ends_ends_after_it_began():
    # Prague, 2024-10-27: at 03:00 CEST the clocks go back to 02:00 CET. A flow from 02:50 CEST
    # (00:50 UTC) to 02:20 CET (01:20 UTC) was refused as ending before it began.
    header = b"StartTime,LastTime,Proto,SrcAddr,DstAddr"
    row = b"2024/10/27 02:50:00.250,2024/10/27 02:20:00.500,udp,10.1.0.5,10.2.0.7"
    (ev,) = _flows(parse(header + b"\n" + row + b"\n", timezone="Europe/Prague").events)
    assert (ev.ts, ev.duration_ms) == (ms("2024-10-27T00:50:00.250"), 1_800_250)
    out = parse(header + b"\n" + row.replace(b"10/27", b"11/27") + b"\n", timezone="Europe/Prague")
    assert not out.events and "LastTime '2024/11/27 02:20:00.500' is before StartTime" in out.dlqs[0].reason


def test_epoch_seconds_and_dashed_dates():
    epoch = int(datetime(2024, 3, 5, 10, tzinfo=UTC).timestamp())
    rows = [ROW.replace(b"2024/03/05 10:00:00.125000", f"{epoch}.5".encode()),
            ROW.replace(b"2024/03/05", b"2024-03-05")]  # fmt: skip
    out = parse(HEADER + b"\n" + b"\n".join(rows) + b"\n", timezone="Europe/Prague")
    # epoch seconds (ra -u) are in no zone; a date is local time
    starts = [e.ts for e in out.events]
    assert starts == [epoch * 1000 + 500, ms("2024-03-05T10:00:00.125", "Europe/Prague")]


def test_ts_is_the_flow_start_on_both_paths():
    """StartTime, with Dur (else LastTime - StartTime) as the duration: the fast path, which takes a row once the checked path has
    read its StartTime's second, and the checked path agree; so do they on an end past 2100."""
    start = ms("2024-03-05T10:00:00.125")
    fast, checked = ArgusParser(ListOutput()), ArgusParser(ListOutput())
    for parser in (fast, checked):
        parser.feed(HEADER, 1, 0)
    expected = _checked(checked, ROW, 2)
    assert _checked(fast, ROW, 2) == expected  # teaches the fast path the second
    assert expected is not None and (expected.ts, expected.duration_ms) == (start, ROW_DUR_MS)
    assert fast._fast_event(ROW) == expected
    past_2100 = ROW.replace(b",2.504112,", b",2400000000,")  # 76 years
    assert fast._fast_event(past_2100) is None and _checked(checked, past_2100, 3) is None
    header = b"StartTime,LastTime,Proto,SrcAddr,DstAddr"
    (ev,) = _flows(
        parse(header + b"\n2024/03/05 10:00:00.125,2024/03/05 10:00:01.750,udp,10.1.0.5,10.2.0.7\n").events
    )
    assert (ev.ts, ev.duration_ms) == (ms("2024-03-05T10:00:00.125"), 1625)  # from LastTime


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        (
            b"10:00:00.125000",
            "StartTime has no date: '10:00:00.125000' (print dates with ra's RA_TIME_FORMAT)",
        ),
        (b"1970/01/01 00:00:00.0", "StartTime is not a valid time: '1970/01/01 00:00:00.0'"),
        (b"2024/13/05 10:00:00", "StartTime is not a valid time: '2024/13/05 10:00:00'"),
        (b"2024/03/05 10:00:00.12x", "StartTime is not a time: '2024/03/05 10:00:00.12x'"),
        (b"yesterday", "StartTime is not a time: 'yesterday'"),
        (b"0", "StartTime out of range: '0'"),
    ],
)
def test_bad_start_times_go_to_the_dlq(start, reason):
    out = parse(HEADER + b"\n" + ROW.replace(b"2024/03/05 10:00:00.125000", start) + b"\n" + ROW + b"\n")
    assert [d.reason for d in out.dlqs] == [reason]
    assert len(out.events) == 1  # the next record is read as usual


# --- columns in any order ------------------------------------------------------------------------
def test_header_in_any_order_with_per_direction_counters():
    header = b"srcaddr,DstAddr,Proto,StartTime,LastTime,SrcPkts,DstPkts,SrcBytes,DstBytes,sTtl,Dir,Flgs"
    row = b"10.1.0.5,10.2.0.7,udp,2024/03/05 10:00:00,2024/03/05 10:00:01.750,3,2,300,200,64,  <->, e"
    (ev,) = _flows(parse(header + b"\n" + row + b"\n").events)
    assert (ev.packets_out, ev.packets_in, ev.bytes_out, ev.bytes_in) == (3, 2, 300, 200)
    assert (ev.src_port, ev.dst_port, ev.duration_ms) == (0, 0, 1750)  # no port columns; LastTime - StartTime
    assert ev.extra == {"sTtl": 64, "dir": "<->", "Flgs": "e"}  # no split flags: both sides are known


def test_totals_without_a_split_say_so():
    header = b"StartTime,Proto,SrcAddr,Sport,DstAddr,Dport,TotPkts,TotBytes"
    (ev,) = _flows(parse(header + b"\n2024/03/05 10:00:00,tcp,10.1.0.5,1,10.2.0.7,2,4,240\n").events)
    assert (ev.packets_out, ev.packets_in, ev.bytes_out, ev.bytes_in) == (4, 0, 240, 0)
    assert ev.extra == {"packets_split_unknown": True, "bytes_split_unknown": True}


@pytest.mark.parametrize(
    ("header", "row", "reason"),
    [
        (b"StartTime,Proto,SrcAddr,DstAddr,TotBytes,SrcBytes,DstBytes",
         b"2024/03/05 10:00:00,udp,10.1.0.5,10.2.0.7,10,6,5", "TotBytes 10 is not SrcBytes 6 + DstBytes 5"),
        (b"StartTime,Proto,SrcAddr,DstAddr,TotPkts,DstPkts",
         b"2024/03/05 10:00:00,udp,10.1.0.5,10.2.0.7,1,2", "DstPkts 2 is more than TotPkts 1"),
        (b"StartTime,LastTime,Proto,SrcAddr,DstAddr",
         b"2024/03/05 10:00:01,2024/03/05 10:00:00,udp,10.1.0.5,10.2.0.7",
         "LastTime '2024/03/05 10:00:00' is before StartTime"),
    ],
)  # fmt: skip
def test_counters_and_times_that_contradict_each_other_go_to_the_dlq(header, row, reason):
    out = parse(header + b"\n" + row + b"\n")
    assert [d.reason for d in out.dlqs] == [reason]


def test_header_without_the_required_columns_is_refused_line_by_line():
    out = parse(b"Proto,SrcAddr,DstAddr\ntcp,10.1.0.5,10.2.0.7\n")
    assert [d.reason for d in out.dlqs] == [
        "header has no StartTime column (ra -c , with its labels)",
        "header has no StartTime, Proto, SrcAddr, DstAddr column (ra -c , with its labels)",  # not one
    ]
    assert not out.events


# --- hostile values ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b",52344,", b",70000,", "Sport out of range: '70000'"),
        (b",5432,", b",0x10000,", "Dport out of range: '0x10000'"),
        (b",52344,", b",true,", "Sport is not a port number: 'true' (print numbers with ra -n)"),
        (b",52344,", b",80.9,", "Sport is not a port number: '80.9' (print numbers with ra -n)"),
        (b",52344,", b",-5,", "Sport is negative: '-5'"),
        (b",2.504112,", b",nan,", "Dur is not a number: 'nan'"),
        (b",2.504112,", b",1e300,", "Dur out of range: '1e300'"),
        (
            b",2.504112,",
            b",4000000000,",
            "StartTime + Dur out of range: '2024/03/05 10:00:00.125000' + '4000000000'",
        ),  # ends after 2100
        (b",113,", b"," + b"9" * 30 + b",", "TotPkts out of range: '" + "9" * 30 + "'"),
        (b",tcp,", b",xyz,", "Proto is not a protocol name or number: 'xyz'"),
        (b",tcp,", b",300,", "Proto is not a protocol name or number: '300'"),
        (b",10.2.0.7,", b",10.2.0.999,", "bad address '10.1.0.5' -> '10.2.0.999'"),
        (b",10.2.0.7,", b",00:16:3e:11:22:33,", "bad address '10.1.0.5' -> '00:16:3e:11:22:33'"),
        (b",0,0,", b",0," + b"1" * 25 + b",", "dTos out of range: '" + "1" * 25 + "'"),
        (b",tcp,", b",\xff,", f"invalid UTF-8 at byte {ROW.index(b'tcp')}"),
    ],
)
def test_hostile_values_go_to_the_dlq_naming_field_and_value(old, new, reason):
    bad = ROW.replace(old, new, 1)
    assert bad != ROW
    out = parse(HEADER + b"\n" + bad + b"\n" + ROW + b"\n")
    assert [d.reason for d in out.dlqs] == [reason]
    assert len(out.events) == 1


def test_repeated_header_bom_quotes_blank_lines_and_management_records():
    man = b"2024/03/05 10:00:00.000000,0.0,man,10.9.9.9,0,,10.9.9.9,0,STA,,,0,0,0,"
    quoted = ROW.replace(b",x", b',"flow=a,b"')
    data = b"\xef\xbb\xbf" + HEADER + b"\n\n" + HEADER + b"\n" + man + b"\n" + quoted + b"\n"
    out = parse(data)
    assert out.skipped == Counter(
        {"header line": 2, "blank line": 1, "argus management record (not a flow)": 1}
    )
    (ev,) = out.events
    assert ev.extra["label"] == "flow=a,b"


def test_fast_path_and_checked_path_agree():
    """Every record the fast path takes gives the event the checked path would."""
    lines = SAMPLE.read_bytes().splitlines()
    lines += [ROW.replace(b"tcp", b"6"), ROW.replace(b",->,", b",<?>,").replace(b"FSPA_FSPA", b"S_RA")]
    fast, checked = ArgusParser(ListOutput()), ArgusParser(ListOutput())
    fast.feed(lines[0], 1, 0)
    checked.feed(lines[0], 1, 0)
    taken = 0
    for n, line in enumerate(lines[1:], 2):
        expected = _checked(checked, line, n)  # also teaches both the second of StartTime
        _checked(fast, line, n)
        event = fast._fast_event(line)
        if event is not None:
            taken += 1
            assert event == expected
    assert taken == 9  # the plain TCP/UDP rows: 7 of the sample and the 2 added


def _checked(parser: ArgusParser, line: bytes, lineno: int) -> FlowEvent | None:
    try:
        return parser._checked_event(line, lineno, 0)
    except BadField:
        return None


@pytest.mark.parametrize(
    ("state", "refused"),
    [("S_RA", True), ("S_R", True), ("S_", False), ("S_SA", False), ("SR_SA", False), ("_RA", False),
     ("FSPA_FSPA", False), ("CON", False), ("RST", False)],
)  # fmt: skip
def test_refused_attempts(state, refused):
    assert refused_attempt(state) is refused


# --- the real capture ----------------------------------------------------------------------------
@pytest.mark.slow
def test_ctu13_scenario6_every_row_becomes_an_event_or_a_counted_skip(shared_data):
    path = shared_data / CTU13
    if not path.is_file():
        pytest.skip(f"{path} not found")
    data = gzip.decompress(path.read_bytes())
    out = ListOutput()
    ArgusParser(out, ParseContext(timezone="Europe/Prague")).feed_stream(io.BytesIO(data))
    check_output("argus", data, out)
    rows = data.count(b"\n") - 1
    assert rows == 558_919  # the published flow count of the scenario
    assert out.dlqs == []
    arp, layer2 = "ARP record (address resolution, not an IP flow)", "layer-2 record without IP addresses"
    assert set(out.skipped) == {"header line", arp, layer2}
    assert out.skipped["header line"] == 1
    assert len(out.events) + out.skipped[arp] + out.skipped[layer2] == rows
    labels = Counter(e.extra["label"] for e in out.events)
    assert sum(n for label, n in labels.items() if "Botnet" in label and "CC" in label) == 199  # as published
    first = min(e.ts for e in out.events)  # the earliest start
    assert first == ms("2011-08-16T10:01:46.972", "Europe/Prague")
