"""Hostile input to the flow parsers (VPC Flow Logs, nProbe CSV, Zeek conn.log, CICFlowMeter CSV):
each example of issue 18 is a record between two good ones. The bad record goes to the DLQ with a
reason in our words that names the field and its value, the rest of the file is parsed, every
input line is accounted for (events + DLQ + skips), and every event passes the canonical decoder,
bounds included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ingest.parsers import ListOutput, ParseContext, get_format, parse_bytes
from ingest.schema import FlowEvent, decode_event, encode_event

SAMPLES = Path(__file__).parent / "samples"
HUGE = "1" + "0" * 300  # 1e300 written out: 301 digits, far beyond 64 bits
YEAR_1 = -62135596800  # 0001-01-01T00:00:00Z in epoch seconds


def lines_of(name: str) -> list[bytes]:
    return (SAMPLES / name).read_bytes().splitlines()


def parse_checked(fmt: str, lines: list[bytes], **ctx: Any) -> ListOutput:
    """Parse ``lines``; assert the accounting and that every event is a valid canonical event."""
    out = parse_bytes(fmt, b"\n".join(lines) + b"\n", ParseContext(**ctx))
    assert len(out.events) + len(out.dlqs) + sum(out.skipped.values()) == len(lines)
    for event in out.events:  # raises on any bound or type the schema declares
        assert decode_event(encode_event(event)) == event
    return out


def replaced(line: bytes, sep: bytes, names: list[bytes], cells: dict[str, str]) -> bytes:
    """``line`` with the cells of the columns ``names`` given in ``cells`` replaced."""
    parts = line.split(sep)
    for name, value in cells.items():
        parts[names.index(name.encode())] = value.encode()
    return sep.join(parts)


def assert_one_bad(out: ListOutput, good: int, lineno: int, reason: str) -> None:
    """The one bad line in the DLQ with ``reason``; the ``good`` others became events."""
    assert [(d.line, d.reason) for d in out.dlqs] == [(lineno, reason)]
    assert len(out.events) == good


# --- VPC Flow Logs -------------------------------------------------------------------------------
VPC_NAMES = [b"version", b"account-id", b"interface-id", b"srcaddr", b"dstaddr", b"srcport", b"dstport",
             b"protocol", b"packets", b"bytes", b"start", b"end", b"action", b"log-status"]  # fmt: skip


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"bytes": HUGE}, "bytes out of range: '1000"),
        ({"packets": HUGE}, "packets out of range: '1000"),
        ({"start": "0", "end": "60"}, "start out of range: '0'"),
        ({"start": str(YEAR_1)}, f"start is negative: '{YEAR_1}'"),
        ({"end": HUGE}, "end out of range: '1000"),
        ({"start": "4102444799", "end": "4102444800"}, "end out of range: '4102444800'"),  # 2100-01-01
        ({"srcport": "80.9"}, "srcport is not an integer: '80.9'"),
        ({"protocol": "999"}, "protocol out of range: '999'"),
        ({"version": HUGE}, "version out of range: '1000"),
        ({"account-id": "{x}"}, "bad account-id '{x}'"),
    ],
)
def test_vpcflow_hostile_record(cells: dict[str, str], reason: str) -> None:
    good = lines_of("vpcflow_v2.log")[0]
    out = parse_checked("vpcflow", [good, replaced(good, b" ", VPC_NAMES, cells), good])
    assert [d.line for d in out.dlqs] == [2] and len(out.events) == 2
    assert out.dlqs[0].reason.startswith(reason)


# --- nProbe CSV ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"FLOW_DURATION_MILLISECONDS": "-5"}, "FLOW_DURATION_MILLISECONDS is negative: '-5'"),
        ({"IN_BYTES": HUGE}, "IN_BYTES out of range: '1000"),
        ({"OUT_PKTS": HUGE}, "OUT_PKTS out of range: '1000"),
        ({"FLOW_START_MILLISECONDS": "0"}, "FLOW_START_MILLISECONDS out of range: '0'"),
        ({"FLOW_START_MILLISECONDS": str(YEAR_1 * 1000)}, f"FLOW_START_MILLISECONDS is negative: '{YEAR_1 * 1000}'"),
        # the start within the event times, its end (start + duration) not
        ({"FLOW_START_MILLISECONDS": "4102444799999", "FLOW_DURATION_MILLISECONDS": "1"},
         "FLOW_START_MILLISECONDS + FLOW_DURATION_MILLISECONDS out of range: '4102444799999' + '1'"),
        ({"L4_DST_PORT": "80.9"}, "L4_DST_PORT is not an integer: '80.9'"),
        ({"TCP_FLAGS": HUGE}, "TCP_FLAGS out of range: '1000"),
    ],
)  # fmt: skip
def test_nprobe_hostile_record(cells: dict[str, str], reason: str) -> None:
    header, good, other = lines_of("nprobe.csv")
    out = parse_checked("nprobe-csv", [header, good, replaced(good, b",", header.split(b","), cells), other])
    assert [d.line for d in out.dlqs] == [3] and len(out.events) == 2
    assert out.dlqs[0].reason.startswith(reason)


def test_nprobe_flow_that_ends_past_the_event_times() -> None:
    header = b"IPV4_SRC_ADDR,IPV4_DST_ADDR,IN_BYTES,FLOW_START_MILLISECONDS,FLOW_END_MILLISECONDS"
    rows = [
        b"10.0.0.1,10.0.0.2,5,4102444799000,4102444799999",  # ends 1 ms before 2100
        b"10.0.0.1,10.0.0.2,5,4102444799000,4102444800000",
    ]
    out = parse_checked("nprobe-csv", [header, *rows, rows[0]])
    assert_one_bad(out, 2, 3, "FLOW_END_MILLISECONDS out of range: '4102444800000'")
    assert [e.ts for e in out.events] == [4102444799999] * 2


def test_zeek_flow_that_ends_just_before_the_event_times_end_is_kept() -> None:
    head, records, names = zeek_tsv()
    last = replaced(records[0], b"\t", names, {"ts": "4102444799.5", "duration": "0.499"})
    out = parse_checked("zeek", [*head, last])
    assert out.dlqs == [] and [e.ts for e in out.events] == [4102444799999]


def test_nprobe_flow_that_ends_before_it_starts() -> None:
    header = b"IPV4_SRC_ADDR,IPV4_DST_ADDR,IN_BYTES,FLOW_START_MILLISECONDS,FLOW_END_MILLISECONDS"
    rows = [
        b"10.0.0.1,10.0.0.2,5,1700000000000,1700000000005",
        b"10.0.0.1,10.0.0.2,5,1700000000005,1700000000000",
    ]
    out = parse_checked("nprobe-csv", [header, *rows, rows[0]])
    assert_one_bad(
        out, 2, 3, "FLOW_END_MILLISECONDS '1700000000000' is before FLOW_START_MILLISECONDS '1700000000005'"
    )


# --- Zeek conn.log, TSV --------------------------------------------------------------------------
def zeek_tsv() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """The sample's header lines, its records and its column names."""
    lines = lines_of("zeek_conn.log")
    head = [line for line in lines if line.startswith(b"#") and not line.startswith(b"#close")]
    names = next(line for line in head if line.startswith(b"#fields")).split(b"\t")[1:]
    records = [line for line in lines if not line.startswith(b"#")]
    return head, records, names


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"duration": "-1.5"}, "duration is negative: '-1.5'"),
        ({"proto": "999"}, "bad proto '999'"),
        ({"proto": "18446744073709551616"}, "bad proto '18446744073709551616'"),
        ({"orig_ip_bytes": HUGE}, "orig_ip_bytes out of range: '1000"),
        ({"resp_pkts": HUGE}, "resp_pkts out of range: '1000"),
        ({"missed_bytes": HUGE}, "missed_bytes out of range: '1000"),
        ({"id.orig_p": "80.9"}, "id.orig_p is not an integer: '80.9'"),
        ({"id.resp_p": "true"}, "id.resp_p is not an integer: 'true'"),
        ({"ts": "0"}, "ts out of range: '0'"),
        ({"ts": str(YEAR_1)}, f"ts out of range: '{YEAR_1}'"),
        ({"ts": "nan"}, "ts is not a number: 'nan'"),
        # the start within the event times, its end (ts + duration) not
        ({"ts": "4102444799.5", "duration": "0.5"}, "ts + duration out of range: '4102444799.5' + '0.5'"),
        ({"duration": "4000000000"}, "ts + duration out of range: '1709632800.123456' + '4000000000'"),
        ({"local_orig": "yes"}, "local_orig is not a bool: 'yes'"),
    ],
)
def test_zeek_tsv_hostile_record(cells: dict[str, str], reason: str) -> None:
    head, records, names = zeek_tsv()
    bad = replaced(records[0], b"\t", names, cells)
    out = parse_checked("zeek", [*head, records[1], bad, records[2]])
    assert [d.line for d in out.dlqs] == [len(head) + 2] and len(out.events) == 2
    assert out.dlqs[0].reason.startswith(reason)


@pytest.mark.parametrize("separator", [b"#separator \\x0", b"#separator ", b"#separator \\"])
def test_zeek_unreadable_separator_is_refused_and_the_file_still_read(separator: bytes) -> None:
    head, records, _ = zeek_tsv()
    assert head[0] == b"#separator \\x09"
    out = parse_checked("zeek", [separator, *head[1:], *records])
    assert [(d.line, d.reason.split(",")[0]) for d in out.dlqs] == [
        (1, f"bad #separator {separator[11:].decode()!r}")
    ]
    assert len(out.events) == len(records)  # the previous separator (a tab) was kept


# --- Zeek conn.log, JSON lines -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"id.orig_p": True}, "id.orig_p is not an integer: True"),
        ({"id.resp_p": 80.9}, "id.resp_p is not an integer: 80.9"),
        ({"id.resp_p": "80"}, None),  # text of an integer is an integer
        ({"proto": 999}, "bad proto 999"),
        ({"proto": "999"}, "bad proto '999'"),
        ({"proto": 18446744073709551616}, "bad proto 18446744073709551616"),
        ({"proto": True}, "bad proto True"),
        ({"duration": -1.5}, "duration is negative: -1.5"),
        ({"orig_ip_bytes": 10**300}, "orig_ip_bytes out of range: 1000"),
        ({"missed_bytes": 10**300}, "missed_bytes out of range: 1000"),
        ({"ts": 0}, "ts out of range: 0"),
        ({"ts": YEAR_1}, f"ts out of range: {YEAR_1}"),
        ({"ts": "0001-01-01T00:00:00Z"}, "ts out of range: '0001-01-01T00:00:00Z'"),
        ({"ts": "2024-13-45T00:00:00Z"}, "ts is not a time: '2024-13-45T00:00:00Z'"),
        ({"ts": True}, "ts is not a number: True"),
        ({"ts": [1]}, "ts is not a number: [1]"),
        ({"ts": 4102444799.5, "duration": 0.5}, "ts + duration out of range: 4102444799.5 + 0.5"),
        (
            {"ts": "2099-12-31T23:59:59Z", "duration": 1},
            "ts + duration out of range: '2099-12-31T23:59:59Z' + 1",
        ),
    ],
)
def test_zeek_json_hostile_record(fields: dict[str, Any], reason: str | None) -> None:
    good, other = lines_of("zeek_conn.json")[:2]
    bad = json.dumps({**json.loads(good), **fields}).encode()
    out = parse_checked("zeek", [good, bad, other])
    if reason is None:
        assert out.dlqs == [] and len(out.events) == 3
        return
    assert [d.line for d in out.dlqs] == [2] and len(out.events) == 2
    assert out.dlqs[0].reason.startswith(reason)


# --- CICFlowMeter CSV ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cells", "reason", "features"),
    [
        ({"Total Length of Fwd Packets": HUGE}, "Total Length of Fwd Packets out of range: '1000", False),
        ({"Total Fwd Packets": HUGE}, "Total Fwd Packets out of range: '1000", False),
        ({"Flow Bytes/s": HUGE}, "Flow Bytes/s out of range: '1000", True),
        ({"Timestamp": "1/1/1970 0:00"}, "bad timestamp '1/1/1970 0:00'", False),
        ({"Timestamp": "1/1/0001 0:00"}, "bad timestamp '1/1/0001 0:00'", False),
        ({"Timestamp": "1/1/2100 0:00"}, "bad timestamp '1/1/2100 0:00'", False),
        ({"Timestamp": "7-7"}, "bad timestamp '7-7'", False),
        (
            {"Timestamp": "31/12/2099 23:59", "Flow Duration": "60000000"},
            "Timestamp + Flow Duration out of range: '31/12/2099 23:59' + '60000000'",
            False,
        ),
        (
            {"Timestamp": "31/12/2099 23:59", "Flow Duration": "60000000"},
            "Timestamp + Flow Duration out of range: '31/12/2099 23:59' + '60000000'",
            True,
        ),
        ({"Destination Port": "80.9"}, "Destination Port is not an integer: '80.9'", False),
        ({"Protocol": "999"}, "Protocol out of range: '999'", False),
    ],
)
def test_cicflow_hostile_record(cells: dict[str, str], reason: str, features: bool) -> None:
    header, *rows = lines_of("cicids2017.csv")
    names = [name.strip() for name in header.split(b",")]
    out = parse_checked("cicflowmeter", [header, rows[0], replaced(rows[0], b",", names, cells), rows[1]],
                        cic_features=features)  # fmt: skip
    assert [d.line for d in out.dlqs] == [3] and len(out.events) == 2
    assert out.dlqs[0].reason.startswith(reason)


def test_cic_counter_with_a_zero_fraction_is_an_integer() -> None:
    header, *rows = lines_of("cicids2017.csv")
    names = [name.strip() for name in header.split(b",")]
    out = parse_checked(
        "cicflowmeter", [header, replaced(rows[0], b",", names, {"Total Fwd Packets": "12.0"})]
    )
    (event,) = out.events
    assert out.dlqs == [] and isinstance(event, FlowEvent) and event.packets_out == 12


# --- one record never ends a file ----------------------------------------------------------------
CASES = {
    "vpcflow": ("vpcflow_v2.log", 0, "VPC flow log"),
    "nprobe-csv": ("nprobe.csv", 1, "nProbe CSV"),
    "zeek": ("zeek_conn.log", 8, "Zeek conn.log"),
    "cicflowmeter": ("cicids2017.csv", 1, "CICFlowMeter CSV"),
    "nfdump": ("nfdump.csv", 1, "nfdump CSV"),
    "suricata": ("suricata_eve.json", 0, "Suricata EVE"),
}


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_an_unforeseen_exception_stays_with_its_record(fmt: str) -> None:
    """Something no check foresaw raises while one record is read (here a ZeroDivisionError planted
    in the checked path): that record goes to the DLQ naming the exception's type, and the records
    after it are read as usual."""
    name, first, what = CASES[fmt]
    lines = lines_of(name)
    out = ListOutput()
    parser: Any = get_format(fmt).factory(out, ParseContext())
    normal = parser._event
    bad_line = lines[first]

    def planted(rec: Any, line: bytes) -> Any:
        if line == bad_line:
            raise ZeroDivisionError
        return normal(rec, line)

    parser._fast_event = lambda line: None  # every record the checked way
    parser._event = planted
    parser.feed_lines(lines)
    parser.close()
    expected = parse_bytes(fmt, b"\n".join(lines) + b"\n")
    assert [(d.line, d.reason) for d in out.dlqs] == [
        (first + 1, f"unexpected ZeroDivisionError while reading a {what} record")
    ]
    assert out.events == expected.events[1:]


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_an_exception_in_the_fast_path_leaves_the_record_to_the_checked_path(fmt: str) -> None:
    name = CASES[fmt][0]
    data = (SAMPLES / name).read_bytes()
    out = ListOutput()
    parser: Any = get_format(fmt).factory(out, ParseContext())

    def broken(src: str, dst: str) -> Any:
        raise RuntimeError

    parser.checked_flow_owner = broken
    parser.feed_lines(data.splitlines())
    parser.close()
    assert out.dlqs == [] and out.events == parse_bytes(fmt, data).events
