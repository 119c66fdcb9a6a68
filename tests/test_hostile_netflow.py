"""Hostile NetFlow v5/v9, IPFIX and pcap input (issue 18): every record ends as an event, a DLQ
record in our words, or a counted skip; a bad record never ends its packet or file; no value
outside the canonical bounds leaves the parser."""

from __future__ import annotations

import random
import struct
from collections import Counter

import pytest

from ingest.bounds import violations
from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.parsers.netflow import NetflowParser
from ingest.parsers.netflow_capture import _udp_payload
from ingest.schema import decode_event, encode_event
from tests.parsed import flows
from tests.samples.netflow_gen import (
    data_set,
    ipfix_message,
    ipfix_packet,
    pcap_header,
    pcap_record,
    template_set,
    v5_packet,
    v9_message,
    v9_packet,
)

EXPORT_S = 1709632800
FLOW = ("10.1.0.5", "10.2.0.7", 40000, 22, 6, 1500, 10, 1000, 3000)  # v5/v9: sysUptime ms
ABS_FLOW = ("10.1.0.5", "10.2.0.7", 40000, 22, 6, 1500, 10, 1709632791000, 1709632793000)
# src(8,4) dst(12,4) sport(7,4: wider than a port) dport(11,2) proto(4,1) octets(1,8) packets(2,8)
# flowStartMilliseconds(152,8) flowEndMilliseconds(153,8)
WIDE = ((8, 4), (12, 4), (7, 4), (11, 2), (4, 1), (1, 8), (2, 8), (152, 8), (153, 8))
WIDE_RECORD = struct.Struct("!4s4sIHBQQQQ")


def parse(data: bytes) -> ListOutput:
    out = parse_bytes("netflow", data, ParseContext())
    assert violations(out.events) == []
    for event in out.events:
        assert decode_event(encode_event(event)) == event
    return out


def wide_record(src: str, sport: int, start_ms: int, end_ms: int, octets: int = 100) -> bytes:
    addr = bytes(int(x) for x in src.split("."))
    return WIDE_RECORD.pack(addr, bytes([10, 2, 0, 7]), sport, 443, 6, octets, 1, start_ms, end_ms)


def reasons(out: ListOutput) -> list[str]:
    return [d.reason for d in out.dlqs]


# --- the examples -------------------------------------------------------------------------
def test_v9_template_with_zero_fields_then_a_data_set_is_rejected_not_a_crash():
    empty = struct.pack("!HH", 0, 8) + struct.pack("!HH", 256, 0)
    bad = v9_message([empty, data_set(256, b"\x01" * 12)], EXPORT_S, 10000)
    out = parse(bad + v9_packet([FLOW], EXPORT_S, 10000))
    assert reasons(out) == [
        "bad NetFlow template record: template 256 has no fields",
        "no template 256 from exporter file domain 1 (yet)",
    ]
    assert len(out.events) == 1 and out.skipped == {"netflow template record": 1}


@pytest.mark.parametrize("ipfix", [False, True])
def test_data_set_shorter_than_one_record_goes_to_the_dlq(ipfix: bool) -> None:
    tid = 300 if ipfix else 256
    fields = ((8, 4), (12, 4), (1, 4), (152, 8))  # 20-byte records
    sets = [template_set(tid, fields, ipfix=ipfix), data_set(tid, b"\x0a" * 12)]
    msg = ipfix_message(sets, EXPORT_S) if ipfix else v9_message(sets, EXPORT_S, 10000)
    good = ipfix_packet([ABS_FLOW], EXPORT_S) if ipfix else v9_packet([FLOW], EXPORT_S, 10000)
    out = parse(msg + good)
    assert reasons(out) == [f"data set {tid} of 12 bytes holds no whole record of its template"]
    assert out.dlqs[0].raw_len == 16  # the set, header included
    assert len(out.events) == 1


def test_bytes_after_the_last_whole_record_go_to_the_dlq_and_the_records_before_are_kept():
    rec = wide_record("10.1.0.5", 40000, 1709632791000, 1709632792000)
    msg = ipfix_message([template_set(300, WIDE, ipfix=True), data_set(300, rec + rec[:7])], EXPORT_S)
    out = parse(msg)
    assert len(out.events) == 1
    assert reasons(out) == ["7 bytes after the last whole record of data set 300"]
    # zero padding after the last record is padding, not a record
    out = parse(ipfix_message([template_set(300, WIDE, ipfix=True), data_set(300, rec + bytes(7))], EXPORT_S))
    assert (len(out.events), out.dlqs) == (1, [])


def test_counter_field_over_8_bytes_is_rejected_not_kept_as_a_byte_string():
    # octets (1) of 9 bytes: each record to the DLQ naming the field; 3 bytes (reduced size) is a number
    for length, expect_events in ((9, 0), (16, 0), (3, 1)):
        fields = ((8, 4), (12, 4), (1, length))
        rec = bytes([10, 1, 0, 5, 10, 2, 0, 7]) + (7).to_bytes(length, "big")
        out = parse(ipfix_message([template_set(300, fields, ipfix=True), data_set(300, rec)], EXPORT_S))
        assert len(out.events) == expect_events
        if expect_events:
            assert flows(out)[0].bytes_out == 7
        else:
            assert reasons(out) == [
                f"bad NetFlow flow record in set 300: template field in_bytes of {length} bytes"
                " (a number of at most 8)"
            ]
            assert out.dlqs[0].raw_len == len(rec)


def test_port_70000_is_rejected_and_the_rest_of_the_set_parsed():
    recs = [wide_record("10.1.0.5", port, 1709632791000, 1709632792000) for port in (40000, 70000, 40001)]
    out = parse(ipfix_message([template_set(300, WIDE, ipfix=True), data_set(300, b"".join(recs))], EXPORT_S))
    assert [e.src_port for e in flows(out)] == [40000, 40001]
    assert reasons(out) == ["bad NetFlow flow record in set 300: bad src_port 70000"]
    assert out.dlqs[0].offset == 16 + 4 + 4 * len(WIDE) + 4 + 4 + len(recs[0])  # the record's own bytes


def test_times_of_zero_are_rejected_in_every_version():
    v5 = v5_packet([FLOW], 0, 0)  # export time 0 (1970)
    ipfix = ipfix_message(
        [template_set(300, WIDE, ipfix=True), data_set(300, wide_record("10.1.0.5", 1, 0, 0))], EXPORT_S
    )
    v9 = v9_packet([FLOW], 0, 0)  # boot time 0: first switched at 1000 ms after 1970
    out = parse(v5 + ipfix + v9 + v5_packet([FLOW], EXPORT_S, 10000))
    assert reasons(out) == [
        "bad NetFlow v5 record: bad flow start 1000 (ms since 1970, outside the years 2000-2100)",
        "bad NetFlow flow record in set 300: bad flow start 0 (ms since 1970, outside the years 2000-2100)",
        "bad NetFlow flow record in set 256: bad flow start 1000 (ms since 1970, outside the years 2000-2100)",
    ]
    assert len(out.events) == 1


def test_a_flow_that_ends_before_it_starts_is_rejected():
    rec = wide_record("10.1.0.5", 1, 1709632792000, 1709632791000)
    out = parse(ipfix_message([template_set(300, WIDE, ipfix=True), data_set(300, rec)], EXPORT_S))
    assert reasons(out) == [
        "bad NetFlow flow record in set 300: flow ends at 1709632791000 ms, before it starts at 1709632792000"
    ]


def test_a_flow_that_ends_after_2100_is_rejected_not_given_an_impossible_duration():
    rec = wide_record("10.1.0.5", 1, 1709632792000, 2**63 + 1)
    out = parse(ipfix_message([template_set(300, WIDE, ipfix=True), data_set(300, rec)], EXPORT_S))
    assert reasons(out) == [
        f"bad NetFlow flow record in set 300: bad flow end {2**63 + 1} (ms since 1970, outside the years 2000-2100)"
    ]


def test_reverse_counter_of_reduced_size_is_a_number():
    # src(8,4) dst(12,4) and RFC 5103 reverse octets (enterprise 29305, type 1) in 3 bytes
    fields = struct.pack("!HHHH", 8, 4, 12, 4) + struct.pack("!HHI", 0x8000 | 1, 3, 29305)
    tmpl = struct.pack("!HH", 300, 3) + fields
    rec = bytes([10, 1, 0, 5, 10, 2, 0, 7]) + (70000).to_bytes(3, "big")
    out = parse(ipfix_message([struct.pack("!HH", 2, 4 + len(tmpl)) + tmpl, data_set(300, rec)], EXPORT_S))
    assert [e.bytes_in for e in flows(out)] == [70000]


def test_uptime_that_wrapped_gives_the_duration_across_the_wrap():
    # v5 sysUptime is 32-bit milliseconds: a flow from 2^32 - 500 to 500 lasted 1000 ms
    flow = ("10.1.0.5", "10.2.0.7", 1, 2, 6, 1, 1, 2**32 - 500, 500)
    (event,) = flows(parse(v5_packet([flow], EXPORT_S, 2**32 - 1)))
    assert event.duration_ms == 1000


# --- pcap -----------------------------------------------------------------------------------------
def v5_capture_records(n: int) -> list[bytes]:
    return [
        pcap_record("192.0.2.1", v5_packet([FLOW], EXPORT_S + i, 10000, seq=i), EXPORT_S + i)
        for i in range(n)
    ]


def test_pcap_record_claiming_over_262144_bytes_is_rejected_and_the_capture_read_on():
    records = v5_capture_records(4)
    bad = bytearray(records[1])
    struct.pack_into("<I", bad, 8, 300_000)  # captured length
    out = parse(pcap_header() + records[0] + bytes(bad) + records[2] + records[3])
    assert reasons(out) == [
        f"pcap record header claims 300000 bytes, over 262144; {len(bad)} bytes skipped to the next record header"
    ]
    assert (out.dlqs[0].offset, out.dlqs[0].raw_len) == (24 + len(records[0]), len(bad))
    assert [e.extra["flow_sequence"] for e in flows(out)] == [0, 2, 3]


def test_pcap_garbage_between_records_and_a_record_cut_short_at_the_end():
    records = v5_capture_records(3)
    bad = bytearray(records[1])
    struct.pack_into("<II", bad, 8, 90, 60)  # captured more than the frame's length
    data = pcap_header() + records[0] + bytes(bad) + b"\xff" * 1000 + records[2] + records[2][:50]
    out = parse(data)
    assert [e.extra["flow_sequence"] for e in flows(out)] == [0, 2]
    assert reasons(out) == [
        f"pcap record header claims 90 bytes of a 60 byte frame; {len(bad) + 1000} bytes skipped to the next"
        " record header",
        f"pcap record of {len(records[2]) - 16} bytes cut short by the end of the file",
    ]


def test_pcap_of_only_bad_headers_gives_one_dlq_record_for_the_run():
    out = parse(pcap_header() + struct.pack("<IIII", EXPORT_S, 0, 2**31, 2**31) + b"\x00" * 5000)
    assert (out.events, [d.raw_len for d in out.dlqs]) == ([], [5016])


def test_udp_payload_ends_at_the_udp_length_not_at_the_ethernet_padding():
    record = pcap_record("192.0.2.1", b"\x00\x0a\x00\x04")  # a 4-byte payload: a 46-byte frame
    frame = record[16:] + bytes(14)  # padded to Ethernet's 60-byte minimum
    assert _udp_payload(frame, 1) == ("192.0.2.1", b"\x00\x0a\x00\x04", 14 + 20 + 8)


# --- isolation -----------------------------------------------------------------------------------
def test_an_unexpected_exception_in_one_record_is_rejected_in_our_words(monkeypatch):
    calls = Counter[str]()
    real = NetflowParser._flow

    def flaky(self, plan, values, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(self, plan, values, *args)

    monkeypatch.setattr(NetflowParser, "_flow", flaky)
    specs = [(*ABS_FLOW[:2], 40000 + i, *ABS_FLOW[3:]) for i in range(3)]
    out = parse(ipfix_packet(specs, EXPORT_S))
    assert [e.src_port for e in flows(out)] == [40000, 40002]
    assert reasons(out) == ["unexpected RuntimeError while reading a NetFlow flow record in set 300"]


def test_a_template_record_cut_short_rejects_the_rest_of_its_set_only():
    good = struct.pack("!HH", 300, 2) + struct.pack("!HHHH", 8, 4, 12, 4)
    cut = struct.pack("!HH", 301, 5) + struct.pack("!HH", 8, 4)
    tset = struct.pack("!HH", 2, 4 + len(good) + len(cut)) + good + cut
    rec = bytes([10, 1, 0, 5, 10, 2, 0, 7])
    out = parse(ipfix_message([tset, data_set(300, rec)], EXPORT_S))
    assert len(out.events) == 1
    assert reasons(out) == ["bad NetFlow template record: template 301 cut short"]
    assert out.skipped == {"netflow template record": 1}


def test_ipfix_withdrawal_and_v9_options_template_are_counted():
    withdraw = struct.pack("!HH", 2, 8) + struct.pack("!HH", 300, 0)
    out = parse(
        ipfix_packet([ABS_FLOW], EXPORT_S) + ipfix_message([withdraw, data_set(300, bytes(48))], EXPORT_S)
    )
    assert out.skipped == {"netflow template record": 1, "netflow template withdrawal": 1}
    assert reasons(out) == ["no template 300 from exporter file domain 7 (yet)"]
    # v9 options template: scope length 4 (one field), option length 4, then one options record
    opt = struct.pack("!HHH", 260, 4, 4) + struct.pack("!HHHH", 1, 4, 34, 4)
    out = parse(
        v9_message(
            [struct.pack("!HH", 1, 4 + len(opt) + 2) + opt + bytes(2), data_set(260, bytes(8))], EXPORT_S, 1
        )
    )
    assert out.skipped == {"netflow options template record": 1, "netflow options record": 1}
    assert out.dlqs == []


# --- accounting -----------------------------------------------------------------------------------
def _hostile_packets(seed: int) -> tuple[list[bytes], Counter[str]]:
    """Packets with good and bad flow records, and runs of bytes that hold no record; ``expect``
    counts what each must become."""
    rnd = random.Random(seed)
    expect = Counter[str]()
    packets: list[bytes] = []
    for n in range(60):
        version = rnd.choice((5, 9, 10))
        count = rnd.randrange(1, 8)
        expect["records"] += count
        if version == 5:
            secs = rnd.choice((EXPORT_S,) * 4 + (0,))  # 0: every record's time is 1970
            flows = [(*FLOW[:7], rnd.randrange(0, 5000), rnd.randrange(5000, 9000)) for _ in range(count)]
            packets.append(v5_packet(flows, secs, 10000, seq=n))
            expect["good" if secs else "bad"] += count
            continue
        recs = b""
        for _ in range(count):
            start = rnd.choice((1709632791000,) * 6 + (0, 2**63 + 5))
            sport = rnd.choice((40000,) * 6 + (70000,))
            end = start + rnd.choice((5, 5, 5, -5))
            good = start == 1709632791000 and sport == 40000 and end >= start
            expect["good" if good else "bad"] += 1
            recs += wide_record("10.1.0.5", sport, start, max(end, 0) % 2**64)
        tid = 256 + n
        sets = [template_set(tid, WIDE, ipfix=version == 10), data_set(tid, recs)]
        expect["templates"] += 1
        if rnd.random() < 0.3:  # a set too short for one record
            sets.append(data_set(tid, rnd.randbytes(rnd.randrange(1, WIDE_RECORD.size))))
            expect["runs"] += 1
        if version == 9:
            packets.append(v9_message(sets, EXPORT_S, 10000, seq=n))
        else:
            packets.append(ipfix_message(sets, EXPORT_S, seq=n))
    return packets, expect


@pytest.mark.parametrize("container", ["concatenated", "pcap"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_record_ends_as_an_event_a_dlq_record_or_a_skip(container: str, seed: int) -> None:
    packets, expect = _hostile_packets(seed)
    if container == "pcap":
        data = pcap_header() + b"".join(pcap_record("192.0.2.1", p) for p in packets)
    else:
        data = b"".join(packets)
    out = parse(data)
    assert len(out.events) + len(out.dlqs) == expect["records"] + expect["runs"]
    assert (len(out.events), len(out.dlqs)) == (expect["good"], expect["bad"] + expect["runs"])
    assert out.skipped == Counter({"netflow template record": expect["templates"]})


def test_input_without_records_is_still_counted():
    out = ListOutput()
    parser = NetflowParser(out)
    parser.feed_packet(v9_message([], EXPORT_S, 1), "192.0.2.1")  # as the UDP collector gets it
    parser.feed_packet(ipfix_message([struct.pack("!HH", 2, 4)], EXPORT_S), "192.0.2.1")
    assert out.skipped == {"netflow packet without sets": 1, "netflow template set without records": 1}
    assert parse(pcap_header()).skipped == {"pcap file without records": 1}
