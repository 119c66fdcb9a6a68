"""Flow parsers on samples in the exact export formats: VPC Flow Logs, NetFlow/IPFIX, nProbe CSV,
Zeek conn.log and CICFlowMeter CSV."""

from __future__ import annotations

import struct
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from ingest.parsers import ListOutput, ParseContext, get_format, parse_bytes
from ingest.parsers.base import FastPathParser
from ingest.parsers.flowutil import number_or_text
from ingest.parsers.netflow import NetflowParser, TemplateCache
from ingest.parsers.netflow_capture import UdpCollector
from ingest.schema import Event, FlowEvent, decode_event, encode_event, event_id
from ingest.tenants import TenantRegistry
from tests.samples.netflow_gen import ipfix_packet, pcap_file, v5_packet, v9_packet

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def parse(fmt: str, data: bytes, registry: TenantRegistry | None = None, **ctx) -> ListOutput:
    out = parse_bytes(fmt, data, ParseContext(registry=registry, **ctx))
    for event in out.events:  # every event survives the wire format unchanged
        assert decode_event(encode_event(event)) == event
    return out


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _flow(event: Event) -> FlowEvent:
    assert isinstance(event, FlowEvent), event
    return event


def _flows(events: list[Event]) -> list[FlowEvent]:
    return [_flow(e) for e in events]


# --- VPC Flow Logs -------------------------------------------------------------------------------
def test_vpcflow_default_v2(registry):
    out = parse("vpcflow", sample("vpcflow_v2.log"), registry)
    assert [type(e) for e in out.events] == [FlowEvent] * 3
    first = _flow(out.events[0])
    line = sample("vpcflow_v2.log").splitlines()[0]
    assert first.id == event_id("vpcflow", line)
    assert (first.ts, first.src_ip, first.dst_ip, first.src_port, first.dst_port) == (
        1700000060000,  # end 1700000060 (start 1700000000 + the 60 s duration)
        "10.1.0.5",
        "10.2.0.7",
        49761,
        3389,
    )
    assert (first.proto, first.packets_out, first.bytes_out, first.bytes_in, first.duration_ms) == (
        "tcp",
        20,
        4249,
        0,
        60000,
    )
    assert first.action == "reject"
    assert (first.tenant, first.vm, first.host, first.source) == ("t-acme", "vm-acme-01", "hv-01", "vpcflow")
    assert first.extra == {
        "version": 2,
        "account-id": "111122223333",
        "interface-id": "eni-0a1b2c3d4e5f60718",
        "log-status": "OK",
    }
    icmp = _flow(out.events[1])
    assert (icmp.proto, icmp.src_ip, icmp.tenant, icmp.action) == ("icmp", "203.0.113.12", "t-acme", "accept")
    assert out.dlqs == []
    assert out.skipped == {"vpcflow NODATA": 1, "vpcflow SKIPDATA": 1}


def test_vpcflow_custom_fields_from_header(registry):
    out = parse("vpcflow", sample("vpcflow_custom.log"), registry)
    assert len(out.events) == 2
    ev = _flow(out.events[0])
    assert (ev.src_ip, ev.dst_ip, ev.dst_port, ev.bytes_out, ev.packets_out) == (
        "10.2.0.7",
        "10.1.0.5",
        22,
        2400,
        12,
    )
    assert (ev.tenant, ev.vm) == ("t-beta", "vm-beta-01")
    assert ev.extra["instance-id"] == "i-0123456789abcdef0"
    assert ev.extra["tcp-flags"] == 19
    assert ev.extra["flow-direction"] == "egress"
    assert ev.extra["traffic-path"] == 1
    assert "pkt-srcaddr" not in _flow(out.events[1]).extra  # "-" means no value
    assert out.skipped == {"header line": 1, "vpcflow NODATA": 1}


def test_vpcflow_reordered_custom_format_without_registry():
    data = b"srcaddr dstaddr action bytes start end account-id\n10.9.0.1 10.9.0.2 ACCEPT 77 1700000000 1700000010 999\n"
    (ev,) = _flows(parse("vpcflow", data).events)
    assert (ev.src_ip, ev.dst_ip, ev.bytes_out, ev.duration_ms, ev.proto, ev.src_port) == (
        "10.9.0.1",
        "10.9.0.2",
        77,
        10000,
        "0",
        0,
    )
    assert ev.tenant == "999"  # the account id, as no registry maps it


def test_vpcflow_account_maps_to_tenant_and_forced_tenant_wins(registry):
    line = b"2 444455556666 eni-1 203.0.113.1 198.51.100.1 1 2 6 1 40 1700000000 1700000001 ACCEPT OK\n"
    assert parse("vpcflow", line, registry).events[0].tenant == "t-beta"
    assert parse("vpcflow", line, registry, tenant="t-forced").events[0].tenant == "t-forced"


def test_vpcflow_repeated_extra_fields_give_each_event_its_own_dict():
    """The fast path remembers the extra dict per extra-field values; events must not share it,
    and a header with other fields must not reuse it."""
    line = b"2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000000 1700000001 ACCEPT OK\n"
    custom = b"version srcaddr dstaddr srcport dstport protocol packets bytes start end action tcp-flags\n"
    custom += b"2 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000000 1700000001 ACCEPT 19\n"
    first, second, third = _flows(parse("vpcflow", line * 2 + custom).events)
    assert (
        first.extra
        == second.extra
        == {"version": 2, "account-id": "1", "interface-id": "eni-1", "log-status": "OK"}
    )
    assert first.extra is not second.extra
    assert third.extra == {"version": 2, "tcp-flags": 19}


def test_vpcflow_malformed_lines_go_to_dlq():
    bad = (
        b"2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000000 1700000001 ACCEPT\n"  # 13 fields
        b"2 1 eni-1 10.0.0.1 10.0.0.2 99999 2 6 1 40 1700000000 1700000001 ACCEPT OK\n"
        b"2 1 eni-1 10.0.0.999 10.0.0.2 1 2 6 1 40 1700000000 1700000001 ACCEPT OK\n"
        b"2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 forty 1700000000 1700000001 ACCEPT OK\n"
        b"2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000000 1700000001 DROP OK\n"
        b"2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 1700000000 1700000001 ACCEPT \xff\xfe\n"
    )
    out = parse("vpcflow", bad)
    assert out.events == []
    reasons = [d.reason for d in out.dlqs]
    assert reasons == [
        "expected 14 fields, got 13",
        "srcport out of range: '99999'",
        "bad address '10.0.0.999' -> '10.0.0.2'",
        "bytes is not an integer: 'forty'",
        "unknown action 'DROP'",
        "invalid UTF-8 at byte 68",
    ]
    assert [d.line for d in out.dlqs] == [1, 2, 3, 4, 5, 6]
    assert out.dlqs[5].encoding == "base64"


# --- NetFlow v5 / v9 / IPFIX ---------------------------------------------------------------------
FLOWS = [
    ("10.1.0.5", "10.2.0.7", 40000, 22, 6, 1500, 10, 1000, 3000),
    ("198.51.100.9", "10.1.0.5", 5353, 53, 17, 80, 1, 2000, 2000),
]
# IPFIX carries absolute flowStart/EndMilliseconds.
IPFIX_FLOWS = [("10.1.0.5", "10.2.0.7", 40000, 22, 6, 1500, 10, 1709632791000, 1709632793000)]


def test_netflow_v5_packet(registry):
    out = ListOutput()
    NetflowParser(out, ParseContext(registry=registry)).feed_packet(
        v5_packet(FLOWS, 1709632800, 10000, seq=5), "192.0.2.1"
    )
    a, b = _flows(out.events)
    # boot time = 1709632800000 - 10000; last switched 3000 ms after boot (first 1000): the end
    assert (a.ts, a.duration_ms, a.src_ip, a.dst_ip, a.src_port, a.dst_port, a.proto) == (
        1709632793000,
        2000,
        "10.1.0.5",
        "10.2.0.7",
        40000,
        22,
        "tcp",
    )
    assert (a.bytes_out, a.packets_out, a.bytes_in, a.tenant, a.vm) == (1500, 10, 0, "t-acme", "vm-acme-01")
    assert a.extra["exporter"] == "192.0.2.1"
    assert a.extra["flow_sequence"] == 5
    assert (a.extra["src_as"], a.extra["dst_mask"], a.extra["tcp_flags"]) == (64512, 16, 0x1B)
    assert (b.proto, b.ts, b.duration_ms) == ("udp", 1709632792000, 0)
    assert a.id != b.id


def test_netflow_v9_template_then_data_with_cache_per_exporter_and_domain(registry):
    cache = TemplateCache()
    out = ListOutput()
    parser = NetflowParser(out, ParseContext(registry=registry), cache)
    parser.feed_packet(v9_packet(FLOWS, 1709632800, 10000, source_id=1), "192.0.2.1")
    assert len(out.events) == 2 and len(cache) == 1
    ev = _flow(out.events[0])
    assert (ev.ts, ev.duration_ms, ev.bytes_out, ev.bytes_in, ev.packets_out) == (
        1709632793000,  # the end: boot time + last switched
        2000,
        1500,
        750,
        10,
    )
    assert ev.extra == {"exporter": "192.0.2.1", "domain": 1, "sequence": 0, "tcp_flags": 0x12}
    # data-only packet from the same exporter and domain decodes with the cached template
    parser.feed_packet(v9_packet(FLOWS[:1], 1709632860, 70000, with_template=False, seq=1), "192.0.2.1")
    assert len(out.events) == 3
    assert _flow(out.events[2]).ts == 1709632793000  # same boot time, same last switched
    # the same template id from another exporter or domain is unknown: DLQ, not a guess
    parser.feed_packet(v9_packet(FLOWS[:1], 1709632860, 70000, with_template=False), "192.0.2.99")
    parser.feed_packet(v9_packet(FLOWS[:1], 1709632860, 70000, with_template=False, source_id=2), "192.0.2.1")
    assert len(out.events) == 3
    assert [d.reason for d in out.dlqs] == [
        "no template 256 from exporter 192.0.2.99 domain 1 (yet)",
        "no template 256 from exporter 192.0.2.1 domain 2 (yet)",
    ]
    assert out.dlqs[0].encoding == "base64"


def test_ipfix_with_absolute_times_and_options_template(registry):
    # options template set (id 3): template 400 with one scope field (observationDomainId 149, 4 bytes)
    # and samplingInterval (34, 4 bytes); then one options data record: counted as skipped
    opt_tmpl = struct.pack("!HHH", 400, 2, 1) + struct.pack("!HHHH", 149, 4, 34, 4)
    opt_set = struct.pack("!HH", 3, 4 + len(opt_tmpl)) + opt_tmpl
    opt_data = struct.pack("!HH", 400, 12) + struct.pack("!II", 7, 100)
    flows = [("10.2.0.7", "203.0.113.5", 443, 51000, 6, 10**10, 7_000_000, 1709632800000, 1709632801500)]
    out = parse("netflow", ipfix_packet(flows, 1709632802, extra_sets=[opt_set, opt_data]), registry)
    (ev,) = _flows(out.events)
    assert (ev.ts, ev.duration_ms, ev.bytes_out, ev.packets_out) == (1709632801500, 1500, 10**10, 7_000_000)
    assert (ev.src_ip, ev.dst_ip, ev.src_port, ev.dst_port, ev.tenant) == (
        "10.2.0.7",
        "203.0.113.5",
        443,
        51000,
        "t-beta",
    )
    assert ev.extra["domain"] == 7
    # every template record is a counted skip too (accounting: nothing vanishes)
    assert out.skipped == {
        "netflow options record": 1,
        "netflow options template record": 1,
        "netflow template record": 1,
    }


def test_ipfix_variable_length_and_enterprise_fields():
    # template: src(8,4) dst(12,4) octets(1,4) interfaceName(82, variable) + enterprise field 29305/1 (reverse octets)
    fields = struct.pack("!HHHHHHHH", 8, 4, 12, 4, 1, 4, 82, 0xFFFF) + struct.pack(
        "!HHI", 0x8000 | 1, 4, 29305
    )
    tmpl = struct.pack("!HH", 310, 5) + fields
    tset = struct.pack("!HH", 2, 4 + len(tmpl)) + tmpl
    rec = (
        bytes([10, 1, 0, 5])
        + bytes([10, 2, 0, 7])
        + struct.pack("!I", 500)
        + b"\x04eth0"
        + struct.pack("!I", 900)
    )
    dset = struct.pack("!HH", 310, 4 + len(rec)) + rec
    msg = struct.pack("!HHIII", 10, 16 + len(tset) + len(dset), 1709632802, 0, 1) + tset + dset
    (ev,) = _flows(parse("netflow", msg).events)
    assert (ev.bytes_out, ev.bytes_in, ev.ts) == (500, 900, 1709632802000)
    assert ev.extra["interface_name"] == "eth0"


def test_netflow_capture_file_of_concatenated_packets_and_pcap(registry):
    data = (
        v5_packet(FLOWS, 1709632800, 10000)
        + v9_packet(FLOWS, 1709632800, 10000)
        + ipfix_packet(IPFIX_FLOWS, 1709632802)
    )
    out = parse("netflow", data, registry)
    assert len(out.events) == 5 and out.dlqs == []
    pcap = pcap_file(
        [("192.0.2.1", v9_packet(FLOWS, 1709632800, 10000)), ("192.0.2.2", v5_packet(FLOWS, 1709632900, 1))]
    )
    out = parse("netflow", pcap, registry)
    assert len(out.events) == 4
    assert [e.extra["exporter"] for e in out.events] == ["192.0.2.1"] * 2 + ["192.0.2.2"] * 2


def test_netflow_times_before_2000_go_to_the_dlq(registry):
    # IPFIX flowStartMilliseconds of 1000 (1970) and a v5 header one second after the epoch.
    out = parse("netflow", ipfix_packet(FLOWS[:1], 1709632802) + v5_packet(FLOWS, 1, 1), registry)
    assert out.events == []
    assert [d.reason for d in out.dlqs] == [
        f"bad NetFlow {what}: bad flow start {ts} (ms since 1970, outside the years 2000-2100)"
        for what, ts in (("flow record in set 300", 1000), ("v5 record", 1999), ("v5 record", 2999))
    ]


def test_netflow_garbage_is_resynchronised_and_rejected():
    good = v5_packet(FLOWS, 1709632800, 10000)
    out = parse("netflow", b"garbage!" * 100 + good + b"\x00\x09junk")
    assert len(out.events) == 2
    assert [(d.reason, d.offset, d.raw_len) for d in out.dlqs] == [
        ("800 bytes that are not a NetFlow/IPFIX packet", 0, 800),
        ("6 bytes that are not a NetFlow/IPFIX packet", 800 + len(good), 6),
    ]


def test_netflow_malformed_packets():
    out = ListOutput()
    parser = NetflowParser(out)
    parser.feed_packet(b"\x00\x05", "x")
    parser.feed_packet(struct.pack("!HH", 7, 1) + b"\x00" * 20, "x")
    parser.feed_packet(v5_packet(FLOWS, 1, 1)[:-10], "x")
    parser.feed_packet(struct.pack("!HHIII", 10, 24, 1, 0, 1) + struct.pack("!HH", 2, 200) + b"\x00" * 4, "x")
    assert out.events == []
    assert [d.reason for d in out.dlqs] == [
        "packet shorter than a NetFlow header",
        "unsupported NetFlow version 7",
        "malformed NetFlow v5 packet: header says 2 records, packet has 110 bytes",
        "set 2 at byte 16 of a NetFlow v10 packet has bad length 200: the 8 bytes from there are unreadable",
    ]


def test_udp_collector_bound_to_address(registry):
    out = ListOutput()
    collector = UdpCollector(NetflowParser(out, ParseContext(registry=registry)), "127.0.0.1", 0)
    host, port = collector.open()
    stop = threading.Event()
    thread = threading.Thread(target=collector.serve, args=(stop, 2))
    thread.start()
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(v9_packet(FLOWS, 1709632800, 10000), (host, port))
        sender.sendto(ipfix_packet(IPFIX_FLOWS, 1709632802), (host, port))
    thread.join(timeout=10)
    stop.set()
    collector.close()
    assert collector.packets == 2
    assert len(out.events) == 3
    assert {e.extra["exporter"] for e in out.events} == {"127.0.0.1"}


# --- nProbe CSV ----------------------------------------------------------------------------------
def test_nprobe_csv(registry):
    out = parse("nprobe-csv", sample("nprobe.csv"), registry)
    a, b = _flows(out.events)
    assert a.source == "netflow"
    assert (a.src_ip, a.src_port, a.dst_ip, a.dst_port, a.proto) == (
        "10.1.0.5",
        52344,
        "10.2.0.7",
        5432,
        "tcp",
    )
    assert (a.bytes_out, a.packets_out, a.bytes_in, a.packets_in) == (3644, 42, 91905, 71)
    assert (a.ts, a.duration_ms, a.tenant) == (1709632800123 + 2504, 2504, "t-acme")  # the end
    assert a.extra == {
        "L7_PROTO": 0.0,
        "TCP_FLAGS": 27,
        "CLIENT_TCP_FLAGS": 27,
        "SERVER_TCP_FLAGS": 27,
        "Label": 0,
        "Attack": "Benign",
    }
    assert (b.proto, b.extra["Attack"], b.extra["L7_PROTO"]) == ("udp", "Reconnaissance", 5.0)
    assert out.skipped == {"header line": 1}


def test_nprobe_pipe_dump_with_first_switched_seconds(registry):
    (ev,) = _flows(parse("nprobe-csv", sample("nprobe_dump.txt"), registry).events)
    assert (ev.ts, ev.duration_ms, ev.bytes_out, ev.bytes_in, ev.packets_in) == (
        1709632905000,  # LAST_SWITCHED
        5000,
        1200,
        6400,
        8,
    )
    assert (ev.tenant, ev.vm) == ("t-beta", "vm-beta-01")


def test_nprobe_malformed():
    data = b"IPV4_SRC_ADDR,IPV4_DST_ADDR,IN_BYTES\n10.0.0.1,10.0.0.2\n10.0.0.1,10.0.0.2,-5\nx,10.0.0.2,1\n"
    out = parse("nprobe-csv", data, reference_ms=1_700_000_000_000)
    assert [d.reason for d in out.dlqs] == [
        "expected 3 columns, got 2",
        "IN_BYTES is negative: '-5'",
        "bad address 'x' -> '10.0.0.2'",
    ]
    out = parse("nprobe-csv", b"FOO,BAR\n1,2\n")
    assert out.dlqs[0].reason == "header has no IPV4_SRC_ADDR/IPV4_DST_ADDR columns"
    (ev,) = parse(
        "nprobe-csv", b"IPV4_SRC_ADDR,IPV4_DST_ADDR\n10.0.0.1,10.0.0.2\n", reference_ms=1_700_000_000_005
    ).events
    assert (ev.ts, ev.extra) == (1_700_000_000_005, {"ts_missing": True})


# --- Zeek ----------------------------------------------------------------------------------------
def test_zeek_tsv(registry):
    out = parse("zeek", sample("zeek_conn.log"), registry)
    assert len(out.events) == 4 and out.dlqs == []
    assert out.skipped == {"header line": 9}
    a, rej, dns, v6 = _flows(out.events)
    assert (a.ts, a.src_ip, a.src_port, a.dst_ip, a.dst_port, a.proto) == (
        1709632800123 + 2504,  # ts + duration: the end
        "10.1.0.5",
        52344,
        "10.2.0.7",
        5432,
        "tcp",
    )
    assert (a.bytes_out, a.bytes_in, a.packets_out, a.packets_in, a.duration_ms) == (
        3644,
        91905,
        42,
        71,
        2504,
    )
    assert a.extra == {
        "uid": "Ck3Tq12ZbA8yq5lVr4",
        "orig_bytes": 1460,
        "resp_bytes": 88213,
        "conn_state": "SF",
        "local_orig": True,
        "local_resp": True,
        "missed_bytes": 0,
        "history": "ShADadFf",
    }
    assert rej.action == "reject" and rej.extra["tunnel_parents"] == ""
    assert (dns.proto, dns.extra["service"], dns.tenant) == ("udp", "dns", "t-acme")
    assert (v6.src_ip, v6.dst_ip, v6.tenant, v6.duration_ms, v6.bytes_in) == (
        "2001:db8:1::10",
        "ff02::fb",
        "t-acme",
        0,
        0,
    )


def test_zeek_json_matches_tsv(registry):
    tsv = parse("zeek", sample("zeek_conn.log"), registry).events
    out = parse("zeek", sample("zeek_conn.json"), registry)
    a, b = _flows(out.events)
    assert msgspec.structs.replace(a, id="", extra={}) == msgspec.structs.replace(tsv[0], id="", extra={})
    assert a.extra == tsv[0].extra
    assert (b.ts, b.src_ip, b.duration_ms) == (1709632802500 + 10, "198.51.100.9", 10)  # ISO 8601 ts
    assert out.skipped == {"zeek non-conn record": 1}


def test_zeek_malformed():
    head = b"#separator \\x09\n#fields\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n"
    data = (
        b"1.0\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\n"  # before any header
        + head
        + b"1.0\t10.0.0.1\t1\t10.0.0.2\n"
        + b"x\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\n"
        + b"1700000000.0\t10.0.0.1\t70000\t10.0.0.2\t2\ttcp\n"
        + b'{"ts": 1, "id.orig_h": "10.0.0.1", "conn_state": "SF"}\n'
        + b'{"a": '
        + b"[" * 100
        + b"]" * 100
        + b"}\n"
    )
    out = parse("zeek", data)
    assert [d.reason for d in out.dlqs] == [
        "record before a #fields header",
        "expected 6 fields, got 4",
        "ts is not a number: 'x'",
        "id.orig_p out of range: '70000'",
        "missing field 'id.resp_h'",
        "JSON nested deeper than 64 levels",
    ]


# --- CICFlowMeter --------------------------------------------------------------------------------
def test_cicids2017_csv(registry):
    out = parse("cicflowmeter", sample("cicids2017.csv"), registry, cic_features=True)
    assert len(out.events) == 3 and out.dlqs == []
    a, inf, nan = _flows(out.events)
    assert a.source == "cicflowmeter"
    assert (a.ts, a.src_ip, a.src_port, a.dst_ip, a.dst_port, a.proto) == (
        1499417940000 + 3008,  # the end: Timestamp + Flow Duration
        "10.2.0.7",
        54865,
        "10.1.0.5",
        22,
        "tcp",
    )  # 7/7/2017 8:59, day first
    assert (a.packets_out, a.packets_in, a.bytes_out, a.bytes_in, a.duration_ms) == (12, 10, 1440, 2880, 3008)
    assert (a.tenant, a.extra["Label"], a.extra["Flow Bytes/s"]) == ("t-beta", "SSH-Patator", 1436.17)
    assert a.extra["Fwd Header Length.1"] == 0  # the repeated column is kept, renamed
    assert "Source IP" not in a.extra and " Source IP" not in a.extra
    assert (inf.ts, inf.extra["Flow Bytes/s"]) == (1499435758000, None)  # 01:55:58 PM
    assert (nan.ts, nan.extra["Flow Bytes/s"]) == (1499398200000, None)
    # By default the statistical features are left out; everything else is the same.
    labels_only = parse("cicflowmeter", sample("cicids2017.csv"), registry)
    assert labels_only.events == [
        msgspec.structs.replace(ev, extra={k: ev.extra[k] for k in ("Flow ID", "Label", "cic_flags")})
        for ev in out.events
    ]
    assert list(labels_only.events[0].extra) == ["Flow ID", "Label", "cic_flags"]


def test_cicids2018_csv():
    (ev,) = _flows(parse("cicflowmeter", sample("cicids2018.csv"), cic_features=True).events)
    assert (ev.ts, ev.src_ip, ev.dst_ip, ev.dst_port, ev.bytes_out, ev.bytes_in) == (
        1519115647000 + 5010,  # the end: Timestamp + Flow Duration
        "18.219.211.138",
        "172.31.69.25",
        80,
        20,
        964,
    )
    assert (ev.extra["Label"], ev.extra["Flow Byts/s"], ev.duration_ms) == (
        "DDoS attacks-LOIC-HTTP",
        196.4,
        5010,
    )


def test_cic_timestamps_read_in_the_capture_zone_on_every_path(registry):
    """CIC-IDS2017 was captured in New Brunswick: 8:59 on 7 July 2017 there (ADT, UTC-3) is 11:59
    UTC. The row as it is takes the JSON way; quoted, the cell-by-cell way; with a byte count past
    2**53, the checked way."""
    header, row = sample("cicids2017.csv").splitlines()[:2]
    quoted = row.replace(b",SSH-Patator", b',"SSH-Patator"')
    huge = row.replace(b",1440,2880,", b",1440,9007199254740993,")
    data = b"\n".join([header, row, quoted, huge]) + b"\n"
    for features in (False, True):
        utc = parse("cicflowmeter", data, registry, cic_features=features).events
        local = parse(
            "cicflowmeter", data, registry, cic_features=features, timezone="America/Moncton"
        ).events
        end = 1499428740000 + 3008  # 2017-07-07T11:59:00Z + Flow Duration
        assert [ev.ts for ev in local] == [end] * 3
        assert [ev.ts for ev in utc] == [end - 3 * 3_600_000] * 3
    broken = row.replace(b"7/7/2017 8:59", b"7/7/2017 25:00")
    out = parse("cicflowmeter", header + b"\n" + broken + b"\n", timezone="America/Moncton")
    assert [d.reason for d in out.dlqs] == ["bad timestamp '7/7/2017 25:00'"]


def test_cic_zone_reader_at_the_dst_changes():
    from ingest.parsers.cicflow import cic_time_reader, parse_cic_time

    read = cic_time_reader("America/Moncton")
    hour = 3_600_000
    assert read("5/11/2017 1:30") == parse_cic_time("5/11/2017 1:30") + 3 * hour  # twice: the first (ADT)
    assert read("12/3/2017 2:30") == parse_cic_time("12/3/2017 2:30") + 4 * hour  # never: still AST
    assert read("1/1/2017 0:00") == parse_cic_time("1/1/2017 0:00") + 4 * hour
    assert cic_time_reader(None) is parse_cic_time and cic_time_reader("UTC") is parse_cic_time


def _cic_rows(*stamps: bytes, label: bytes = b"SSH-Patator") -> bytes:
    header, row = sample("cicids2017.csv").splitlines()[:2]
    rows = [row.replace(b"7/7/2017 8:59", s).replace(b"SSH-Patator", label) for s in stamps]
    return header + b"\n" + b"\n".join(rows) + b"\n"


def _clock(events: list) -> list[str]:
    return [datetime.fromtimestamp((e.ts - e.duration_ms) / 1000, UTC).strftime("%d %H:%M") for e in events]


def test_cic_twelve_hour_clock_without_am_pm_reads_on_through_noon():
    """CIC-IDS2017's CSVs write the hour on a 12-hour clock with no AM/PM: 1:00 after 12:59 is
    13:00, not 12 hours before the flows around it (which would all be late in the job)."""
    stamps = (b"4/7/2017 11:59", b"4/7/2017 12:59", b"4/7/2017 1:00", b"4/7/2017 12:58", b"4/7/2017 5:02")
    out = parse("cicflowmeter", _cic_rows(*stamps))
    assert _clock(out.events) == ["04 11:59", "04 12:59", "04 13:00", "04 12:58", "04 17:02"]
    # the next morning after an afternoon: the morning, not that evening
    out = parse("cicflowmeter", _cic_rows(b"4/7/2017 4:50", b"4/7/2017 5:10", b"5/7/2017 8:01"))
    assert _clock(out.events) == ["04 04:50", "04 05:10", "05 08:01"]  # the first is read as written
    out = parse("cicflowmeter", _cic_rows(b"4/7/2017 12:40", b"4/7/2017 1:10", b"5/7/2017 9:00"))
    assert _clock(out.events) == ["04 12:40", "04 13:10", "05 09:00"]


def test_cic_twenty_four_hour_and_am_pm_times_are_read_as_written():
    out = parse("cicflowmeter", _cic_rows(b"4/7/2017 13:00", b"4/7/2017 1:00", b"4/7/2017 12:59"))
    assert _clock(out.events) == ["04 13:00", "04 01:00", "04 12:59"]  # 13:00: a 24-hour file
    stamps = (b"04/07/2017 12:59:00 PM", b"04/07/2017 01:00:00 AM", b"2017-07-04 01:30:00")
    out = parse("cicflowmeter", _cic_rows(*stamps))
    assert _clock(out.events) == ["04 12:59", "04 01:00", "04 01:30"]


def test_cic_label_in_windows_1252_keeps_its_row():
    """CIC-IDS2017's web-attack labels hold the byte 0x96 (a Windows-1252 dash): not UTF-8, but
    only the label's text is lost, not the flow; such a byte in an address still sends the row to
    the DLQ, by the address's own check."""
    data = _cic_rows(b"7/7/2017 8:59", label=b"Web Attack \x96 Brute Force")
    (event,) = parse("cicflowmeter", data).events
    assert event.extra["Label"] == "Web Attack \ufffd Brute Force"
    assert event.id == event_id("cicflowmeter", data.splitlines()[1])  # of the bytes as read
    bad = _cic_rows(b"7/7/2017 8:59").replace(b",10.1.0.5,", b",10.1.0.\x965,")
    out = parse("cicflowmeter", bad)
    assert not out.events and [d.reason for d in out.dlqs] == ["bad address '10.2.0.7' -> '10.1.0.\ufffd5'"]


def test_cic_rows_of_commas_only_are_skipped():
    header = sample("cicids2017.csv").splitlines()[0]
    empty = b"," * header.count(b",")
    out = parse("cicflowmeter", _cic_rows(b"7/7/2017 8:59") + empty + b"\n" + empty + b"\n")
    assert len(out.events) == 1 and not out.dlqs and out.skipped["empty row"] == 2


def test_cicflow_malformed():
    header = sample("cicids2017.csv").splitlines()[0]
    row = sample("cicids2017.csv").splitlines()[1]
    bad_time = row.replace(b"7/7/2017 8:59", b"32/13/2017 8:59")
    out = parse("cicflowmeter", header + b"\n" + bad_time + b"\n" + b"1,2,3\n")
    assert [d.reason for d in out.dlqs] == ["bad timestamp '32/13/2017 8:59'", "expected 85 columns, got 3"]
    out = parse("cicflowmeter", b" Destination Port, Flow Duration, Label\n80,1,BENIGN\n81,2,BENIGN\n")
    assert [d.reason for d in out.dlqs] == [
        "header has no Source IP, Destination IP, Timestamp column (files of flow features only, like "
        "CIC-IDS2017's MachineLearningCVE CSVs, cannot become flows)",
        "row under an unusable header",
        "row under an unusable header",
    ]
    out = parse("cicflowmeter", b"Src IP,Dst IP,Dst Port,Label\n10.0.0.1,10.0.0.2,80,BENIGN\n")
    assert out.dlqs[0].reason.startswith("header has no Timestamp column (")


@pytest.mark.parametrize(
    "stamp", [b"7/7/2017 8", b"7/7/2017 8:1:2:3", b"7/7/2017 8:inf", b"7/7/2017 8:1e400", b"7/7/2017 -1:05",
              b"7/7/2017 8:-5", b"7/7/99999 8:59"],
)  # fmt: skip
def test_cicflow_hostile_timestamps_go_to_the_dlq(stamp: bytes) -> None:
    header, row = sample("cicids2017.csv").splitlines()[:2]
    out = parse("cicflowmeter", header + b"\n" + row.replace(b"7/7/2017 8:59", stamp) + b"\n" + row + b"\n")
    assert [d.reason for d in out.dlqs] == [f"bad timestamp {stamp.decode()!r}"]
    assert len(out.events) == 1


def test_format_table_lists_every_format():
    from ingest.parsers import FORMAT_NAMES

    assert set(FORMAT_NAMES) == {
        "vpcflow",
        "netflow",
        "nprobe-csv",
        "nfdump",
        "zeek",
        "suricata",
        "cicflowmeter",
        "argus",
        "auditd",
        "falco",
        "syslog",
        "cloudaudit",
    }
    assert get_format("sshd").name == "syslog" and get_format("CloudTrail").name == "cloudaudit"
    with pytest.raises(KeyError, match="choose one of"):
        get_format("pcapng")


def test_time_is_not_wasted_on_idle_collector():
    collector = UdpCollector(NetflowParser(ListOutput()), "127.0.0.1", 0)
    collector.open()
    stop = threading.Event()
    stop.set()
    start = time.monotonic()
    assert collector.serve(stop) == 0
    assert time.monotonic() - start < 1
    collector.close()


# --- fast paths agree with the field-by-field paths ----------------------------------------------
def test_event_id_of_is_event_id():
    from ingest.schema import event_id_of

    assert event_id_of("vpcflow")(b"2 1 eni x") == event_id("vpcflow", b"2 1 eni x")


def test_infinite_or_negative_numbers_are_rejected_not_crashing():
    nprobe = (
        b"IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,IN_BYTES,IN_PKTS,OUT_BYTES,OUT_PKTS,"
        b"FLOW_START_MILLISECONDS,FLOW_END_MILLISECONDS\n"
        b"10.0.0.1,1,10.0.0.2,2,6,1,1,1,1,Infinity,1700000000005\n"
        b"10.0.0.1,1,10.0.0.2,2,-5,1,1,1,1,1700000000001,1700000000005\n"
        b"10.0.0.1,1,10.0.0.2,2,6,1,1,1,1,1700000000001,1700000000005\n"
    )
    out = parse("nprobe-csv", nprobe)
    assert [d.reason for d in out.dlqs] == [
        "FLOW_START_MILLISECONDS is not an integer: 'Infinity'",
        "PROTOCOL is negative: '-5'",
    ]
    assert len(out.events) == 1
    header, row = sample("cicids2017.csv").splitlines()[:2]
    out = parse("cicflowmeter", header + b"\n" + row.replace(b",3008000,", b",Infinity,") + b"\n")
    assert (len(out.events), [d.reason for d in out.dlqs]) == (
        0,
        ["Flow Duration is not an integer: 'Infinity'"],
    )
    zeek = sample("zeek_conn.log").splitlines()
    first = next(i for i, line in enumerate(zeek) if not line.startswith(b"#"))
    zeek[first] = b"inf" + zeek[first][zeek[first].index(b"\t") :]
    out = parse("zeek", b"\n".join(zeek) + b"\n")
    assert [d.reason for d in out.dlqs] == ["ts is not a number: 'inf'"]


def test_ipfix_address_field_of_odd_length_is_rejected():
    tmpl = struct.pack("!HH", 300, 2) + struct.pack("!HHHH", 8, 8, 12, 4)
    tset = struct.pack("!HH", 2, 4 + len(tmpl)) + tmpl
    rec = struct.pack("!Q", 1 << 40) + bytes([10, 2, 0, 7])
    dset = struct.pack("!HH", 300, 4 + len(rec)) + rec
    msg = struct.pack("!HHIII", 10, 16 + len(tset) + len(dset), 1709632802, 0, 1) + tset + dset
    out = parse("netflow", msg)
    assert out.events == []
    assert [d.reason for d in out.dlqs] == [
        "bad NetFlow flow record in set 300: template field src_ip of 8 bytes (an address of 4)"
    ]


def test_netflow_template_with_repeated_and_converted_fields():
    # src(8,4) dst(12,4) nextHop(15,4) octets(1,3: odd length) octets again(1,4: the last one counts)
    fields = struct.pack("!" + "H" * 10, 8, 4, 12, 4, 15, 4, 1, 3, 1, 4)
    tmpl = struct.pack("!HH", 301, 5) + fields
    tset = struct.pack("!HH", 2, 4 + len(tmpl)) + tmpl
    rec = bytes([10, 1, 0, 5, 10, 2, 0, 7, 192, 0, 2, 1]) + b"\x00\x01\x00" + struct.pack("!I", 77)
    dset = struct.pack("!HH", 301, 4 + len(rec)) + rec
    msg = struct.pack("!HHIII", 10, 16 + len(tset) + len(dset), 1709632802, 0, 1) + tset + dset
    (ev,) = _flows(parse("netflow", msg).events)
    assert (ev.src_ip, ev.dst_ip, ev.bytes_out, ev.extra["next_hop"]) == (
        "10.1.0.5",
        "10.2.0.7",
        77,
        "192.0.2.1",
    )
    assert list(ev.extra) == ["exporter", "domain", "sequence", "next_hop"]


def test_cic_feature_cells_keep_their_own_number_type():
    header, row = sample("cicids2017.csv").splitlines()[:2]
    cells = row.split(b",")
    col = [h.strip() for h in header.split(b",")].index(b"Flow Bytes/s")
    as_int, as_float = list(cells), list(cells)
    as_int[col], as_float[col] = b"0", b"0.5"
    data = (
        header + b"\n" + b",".join(as_int) + b"\n" + b",".join(as_float) + b"\n" + b",".join(as_int) + b"\n"
    )
    out = parse("cicflowmeter", data, cic_features=True)
    values = [ev.extra["Flow Bytes/s"] for ev in out.events]
    assert values == [0, 0.5, 0] and [type(v) for v in values] == [int, float, int]


def test_zeek_layout_without_the_json_way():
    # A repeated column name (and no conn_state): every record is converted cell by cell.
    lines = sample("zeek_conn.log").splitlines()
    added = {b"#fields": b"uid", b"#types": b"string"}
    for i, line in enumerate(lines):
        cells = line.split(b"\t")
        if not line.startswith(b"#") or cells[0] in added:
            del cells[11]  # conn_state
            lines[i] = b"\t".join([*cells, added.get(cells[0], b"x")])
    out = parse("zeek", b"\n".join(lines) + b"\n")
    assert len(out.events) == 4 and out.dlqs == []
    assert (out.events[0].extra["uid"], _flow(out.events[1]).action) == ("x", "accept")


def _cic_with(rows: list[dict[bytes, bytes]], header: bytes | None = None) -> list[FlowEvent]:
    """Events of the first CIC-IDS2017 sample row, once per dict of replaced cells."""
    first, row = sample("cicids2017.csv").splitlines()[:2]
    header = header or first
    names = [h.strip() for h in header.split(b",")]
    lines = [header]
    for cells_by_name in rows:
        cells = row.split(b",")
        for name, value in cells_by_name.items():
            cells[names.index(name)] = value
        lines.append(b",".join(cells))
    out = parse("cicflowmeter", b"\n".join(lines) + b"\n", cic_features=True)
    assert out.dlqs == []
    return _flows(out.events)


def test_cic_feature_run_read_as_json_or_cell_by_cell_gives_the_same_values():
    # The fast path reads the run of feature columns as one JSON array. Infinity/NaN are null as
    # number_or_text has them; what JSON refuses ("01", "1_000") or reads otherwise ("null", text
    # for number_or_text) is converted cell by cell.
    json_way, infinite, null_text, cell_way = _cic_with([
        {b"Fwd Packet Length Max": b" 5", b"Fwd Packet Length Std": b"1e5", b"Bwd Packet Length Max": b"-0",
         b"Flow IAT Std": b"2.50"},
        {b"Flow Bytes/s": b"Infinity", b"Flow Packets/s": b"-Infinity", b"Flow IAT Mean": b"NaN"},
        {b"Bwd Packet Length Min": b"null", b"Flow Bytes/s": b"Infinity"},
        {b"Fwd Packet Length Max": b"01", b"Fwd Packet Length Min": b"1_000"},
    ])  # fmt: skip
    keys = ["Fwd Packet Length Max", "Fwd Packet Length Std", "Bwd Packet Length Max", "Flow IAT Std"]
    assert [json_way.extra[k] for k in keys] == [5, 100000.0, 0, 2.5]
    assert [type(json_way.extra[k]) for k in keys] == [int, float, int, float]
    keys = ["Flow Bytes/s", "Flow Packets/s", "Flow IAT Mean"]
    assert [infinite.extra[k] for k in keys] == [None, None, None]
    assert (null_text.extra["Bwd Packet Length Min"], null_text.extra["Flow Bytes/s"]) == ("null", None)
    assert (cell_way.extra["Fwd Packet Length Max"], cell_way.extra["Fwd Packet Length Min"]) == (1, 1000)
    assert list(json_way.extra) == list(infinite.extra) == list(null_text.extra) == list(cell_way.extra)
    assert (json_way.bytes_out, json_way.src_port, json_way.duration_ms) == (1440, 54865, 3008)


@pytest.mark.parametrize("features", [False, True])
def test_cic_labels_and_flow_ids_stay_text_on_every_path(features):
    # The JSON way, the cell-by-cell way (a quoted cell), and the checked way (a counter written
    # as a float, which only that way takes) with a padded Flow ID.
    header, row = sample("cicids2017.csv").splitlines()[:2]
    cells = row.split(b",")
    cells[0], cells[-1] = b"17", b"0"
    quoted = [*cells[:-1], b'"0"']
    checked = [b" 17 ", *cells[1:8], b"12.0", *cells[9:]]
    lines = [header, b",".join(cells), b",".join(quoted), b",".join(checked)]
    out = parse("cicflowmeter", b"\n".join(lines) + b"\n", cic_features=features)
    assert out.dlqs == []
    assert [(ev.extra["Flow ID"], ev.extra["Label"]) for ev in out.events] == [("17", "0")] * 3
    assert len({tuple(ev.extra) for ev in out.events}) == 1  # the same keys in the same order


def test_cic_header_without_feature_columns():
    header = (
        b"Flow ID,Source IP,Source Port,Destination IP,Destination Port,Protocol,Timestamp,Flow Duration,"
        b"Total Fwd Packets,Total Backward Packets,Total Length of Fwd Packets,Total Length of Bwd Packets,Label"
    )
    out = parse("cicflowmeter", header + b"\nf-1,10.1.0.5,1,10.2.0.7,2,6,7/7/2017 8:59,5000,1,2,3,4,BENIGN\n")
    (ev,) = _flows(out.events)
    assert (ev.extra, ev.bytes_in, ev.duration_ms) == ({"Flow ID": "f-1", "Label": "BENIGN"}, 4, 5)


def test_number_or_text_takes_flow_ids_and_addresses_as_text():
    cells = (" 10.0.0.1-10.0.0.2-1-2-6 ", "fe80::1", "1.2.3", "1.5", "7", "-Infinity", "BENIGN")
    assert [number_or_text(c) for c in cells] == [
        "10.0.0.1-10.0.0.2-1-2-6",
        "fe80::1",
        "1.2.3",
        1.5,
        7,
        None,
        "BENIGN",
    ]


def test_zeek_unset_and_empty_columns_in_the_fast_path():
    lines = sample("zeek_conn.log").splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith(b"#"))
    cells = lines[first].split(b"\t")
    names = next(line for line in lines if line.startswith(b"#fields")).split(b"\t")[1:]
    cells[names.index(b"service")] = b"(empty)"
    cells[names.index(b"local_orig")] = b"-"
    lines[first] = b"\t".join(cells)
    (ev, *_) = parse("zeek", b"\n".join(lines) + b"\n").events
    assert ev.extra["service"] == "" and "local_orig" not in ev.extra
    assert isinstance(ev.extra["local_resp"], bool)


def _zeek_record(cells_by_name: dict[bytes, bytes]) -> tuple[list[bytes], bytes]:
    """The Zeek sample's header lines, and its first record with some cells replaced."""
    lines = sample("zeek_conn.log").splitlines()
    head = [line for line in lines if line.startswith(b"#") and not line.startswith(b"#close")]
    names = next(line for line in head if line.startswith(b"#fields")).split(b"\t")[1:]
    cells = lines[len(head)].split(b"\t")
    for name, value in cells_by_name.items():
        cells[names.index(name)] = value
    return head, b"\t".join(cells)


def _zeek_with(cells_by_name: dict[bytes, bytes], directives: list[bytes] | None = None) -> FlowEvent:
    """The event of the Zeek sample's first record with some cells replaced, after extra directives."""
    head, record = _zeek_record(cells_by_name)
    (ev,) = parse("zeek", b"\n".join([*head, *(directives or []), record]) + b"\n").events
    return _flow(ev)


def test_zeek_numbers_json_refuses_are_converted_cell_by_cell():
    # The fast path reads the numeric columns as one JSON array; a cell JSON refuses ("+5", " 7",
    # "01", unset, (empty)) is converted as int()/float() convert it, as before.
    ev = _zeek_with(
        {b"orig_bytes": b"+5", b"resp_bytes": b"01", b"missed_bytes": b"(empty)", b"duration": b"-"}
    )
    assert (ev.extra["orig_bytes"], ev.extra["resp_bytes"], ev.extra["missed_bytes"]) == (5, 1, "")
    assert ev.duration_ms == 0
    ev = _zeek_with({b"orig_ip_bytes": b" 7", b"ts": b"1709632800.5e0"})
    assert (ev.bytes_out, ev.ts) == (7, 1709632800500 + ev.duration_ms)
    json_way = _zeek_with({b"orig_bytes": b"5"})
    cell_way = _zeek_with({b"orig_bytes": b"5", b"missed_bytes": b"(empty)"})
    assert {**json_way.extra, "missed_bytes": ""} == cell_way.extra
    assert list(json_way.extra) == list(cell_way.extra)


def test_zeek_unset_marker_that_reads_as_a_number_is_still_unset():
    # "#unset_field 7" after #fields: a "7" cell is unset (a counter or duration of 0, an extra left
    # out), not the number 7, in every column.
    ev = _zeek_with({b"orig_pkts": b"7", b"duration": b"7", b"missed_bytes": b"7"}, [b"#unset_field\t7"])
    assert (ev.packets_out, ev.duration_ms) == (0, 0)
    assert "missed_bytes" not in ev.extra and ev.extra["resp_bytes"] == 88213


def test_zeek_lone_syn_in_the_fast_path_equals_the_checked_path():
    # A lone SYN: duration, byte counts, service and locality unset. The fast path reads the unset
    # numbers as null (then 0 or left out); the checked path must give the very same event.
    lone_syn = {b"service": b"-", b"duration": b"-", b"orig_bytes": b"-", b"resp_bytes": b"-",
                b"conn_state": b"S0", b"local_orig": b"-", b"resp_pkts": b"-"}  # fmt: skip
    head, record = _zeek_record(lone_syn)
    out = ListOutput()
    parser = get_format("zeek").factory(out, ParseContext())
    assert isinstance(parser, FastPathParser)
    parser.feed_lines(head)
    fast = parser._fast_event(record)
    parser._feed_checked(record, len(head) + 1, 0)
    assert fast is not None and out.events == [fast]
    fast = _flow(fast)
    assert (fast.duration_ms, fast.packets_in, fast.bytes_out) == (0, 0, 3644)
    assert not {"service", "orig_bytes", "resp_bytes", "local_orig"} & set(fast.extra)
    # "null" text is not unset: as before, the record is refused (not read as 0)
    out = parse("zeek", b"\n".join([*head, record.replace(b"\t3644\t", b"\tnull\t")]) + b"\n")
    assert out.events == [] and "null" in out.dlqs[0].reason


def test_csv_lines_the_csv_module_refuses_go_to_the_dlq():
    # A bare carriage return in a line with quotes: csv.Error, which must not end the ingest.
    bad = b'10.0.0.1\r5,"x",10.0.0.2,2,6,1,1,1,1,1,5'
    nprobe = sample("nprobe.csv").splitlines()
    out = parse("nprobe-csv", b"\n".join([nprobe[0], bad, *nprobe[1:]]) + b"\n")
    assert len(out.events) == 2
    assert [d.reason for d in out.dlqs] == ["not a valid CSV line (a stray quote or carriage return)"]
    header, *rows = sample("cicids2017.csv").splitlines()
    out = parse("cicflowmeter", b"\n".join([header, b'1.2.3.4\r5,"x",' + rows[0], *rows]) + b"\n")
    assert len(out.events) == 3
    assert [d.reason for d in out.dlqs] == ["not a valid CSV line (a stray quote or carriage return)"]


# --- a flow's event time is its end (issue 19) ---------------------------------------------------
def _both_paths(fmt: str, head: list[bytes], record: bytes, **ctx) -> FlowEvent:
    """The event of ``record`` (after the ``head`` lines) by the fast path, which must take it, and
    the very same event by the checked path."""
    out = ListOutput()
    parser = get_format(fmt).factory(out, ParseContext(**ctx))
    assert isinstance(parser, FastPathParser)
    parser.feed_lines(head)
    fast = parser._fast_event(record)
    parser._feed_checked(record, len(head) + 1, 0)
    assert fast is not None and out.events == [fast]
    return _flow(fast)


def test_vpcflow_ts_is_the_end_of_the_capture_window():
    line = b"2 111122223333 eni-0a1b2c3d4e5f60718 10.1.0.5 10.2.0.7 49761 443 6 20 4249 %d %s ACCEPT OK"
    ev = _both_paths("vpcflow", [], line % (1700000000, b"1700000042"))
    assert (ev.ts, ev.duration_ms, ev.ts - ev.duration_ms) == (1700000042000, 42000, 1700000000000)
    # an end before the start, or none: a window of no length, at its start
    assert _both_paths("vpcflow", [], line % (1700000000, b"1699999999")).ts == 1700000000000
    (no_end,) = _flows(parse("vpcflow", line % (1700000000, b"-") + b"\n").events)
    assert (no_end.ts, no_end.duration_ms) == (1700000000000, 0)


def test_nprobe_ts_is_the_flow_end_whichever_columns_say_it():
    columns = b"IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,IN_BYTES,IN_PKTS,OUT_BYTES,"
    columns += b"OUT_PKTS,"
    flow = b"10.1.0.5,52344,10.2.0.7,5432,6,1,1,1,1,"
    cases = [  # time columns, their cells, the end and duration expected
        (b"FLOW_START_MILLISECONDS,FLOW_END_MILLISECONDS", b"1709632800123,1709632802627", 1709632802627, 2504),
        (b"FIRST_SWITCHED,LAST_SWITCHED", b"1709632900,1709632905", 1709632905000, 5000),
        (b"FLOW_START_MILLISECONDS,FLOW_DURATION_MILLISECONDS", b"1709632800123,2504", 1709632802627, 2504),
    ]  # fmt: skip
    for times, cells, end, duration in cases:
        ev = _both_paths("nprobe-csv", [columns + times], flow + cells)
        assert (ev.ts, ev.duration_ms) == (end, duration)
    # no start column: the end is the end column (the checked path only)
    (ev,) = _flows(parse("nprobe-csv", columns + b"LAST_SWITCHED\n" + flow + b"1709632905\n").events)
    assert (ev.ts, ev.duration_ms, ev.extra) == (1709632905000, 0, {})


def test_zeek_ts_is_ts_plus_duration():
    head, record = _zeek_record({b"ts": b"1709632800.250", b"duration": b"2.500"})
    ev = _both_paths("zeek", head, record)
    assert (ev.ts, ev.duration_ms) == (1709632802750, 2500)
    # each is rounded to the millisecond, then summed: the start is exactly ts - duration_ms
    head, record = _zeek_record({b"ts": b"1709632800.123456", b"duration": b"2.504301"})
    ev = _both_paths("zeek", head, record)
    assert (ev.ts - ev.duration_ms, ev.duration_ms) == (1709632800123, 2504)
    (json_ev,) = _flows(parse("zeek", sample("zeek_conn.json").splitlines()[0] + b"\n").events)
    assert msgspec.structs.replace(json_ev, id="", extra={}) == msgspec.structs.replace(ev, id="", extra={})


def test_cic_ts_is_timestamp_plus_flow_duration():
    header, row = sample("cicids2017.csv").splitlines()[:2]
    assert b",7/7/2017 8:59,3008000," in row  # a 3.008 s flow from 8:59:00
    for features in (False, True):
        ev = _both_paths("cicflowmeter", [header], row, cic_features=features)
        assert (ev.ts, ev.duration_ms) == (1499417940000 + 3008, 3008)
    quoted = row.replace(b",SSH-Patator", b',"SSH-Patator"')  # the cell-by-cell way
    assert _both_paths("cicflowmeter", [header], quoted).ts == 1499417940000 + 3008


def test_netflow_ts_is_the_flow_end_in_every_version():
    # v5 and v9: the header's sysUptime is 10000 ms at export (1709632800 s), the flow's switched
    # times 1000 (first) and 3000 (last): it ended 7 s before the export
    for packet in (v5_packet(FLOWS[:1], 1709632800, 10000), v9_packet(FLOWS[:1], 1709632800, 10000)):
        (ev,) = _flows(parse("netflow", packet).events)
        assert (ev.ts, ev.duration_ms) == (1709632800000 - 7000, 2000)
    (ev,) = _flows(parse("netflow", ipfix_packet(IPFIX_FLOWS, 1709632802)).events)
    assert (ev.ts, ev.duration_ms) == (1709632793000, 2000)  # flowEndMilliseconds


def test_netflow_uptime_that_wrapped_places_the_end_before_the_export():
    # sysUptime (32-bit ms) wrapped between the flow's first packet and its last (500), and the
    # header's uptime (1000) is after the wrap too: the flow ended 500 ms before the export
    flow = ("10.1.0.5", "10.2.0.7", 1, 2, 6, 1, 1, 2**32 - 500, 500)
    for packet in (v5_packet([flow], 1709632800, 1000), v9_packet([flow], 1709632800, 1000)):
        (ev,) = _flows(parse("netflow", packet).events)
        assert (ev.ts, ev.duration_ms) == (1709632800000 - 500, 1000)
    # the counter wrapped after the flow ended, before the export (uptime 200)
    flow = ("10.1.0.5", "10.2.0.7", 1, 2, 6, 1, 1, 2**32 - 3000, 2**32 - 1000)
    (ev,) = _flows(parse("netflow", v5_packet([flow], 1709632800, 200)).events)
    assert (ev.ts, ev.duration_ms) == (1709632800000 - 1200, 2000)


def test_netflow_end_past_2100_is_refused_where_the_start_is_not():
    # exported at 2100-01-01T00:00:00Z as the flow's last packet was seen; its first was 2 s earlier
    flow = ("10.1.0.5", "10.2.0.7", 1, 2, 6, 1, 1, 1000, 3000)
    out = parse("netflow", v5_packet([flow], 4102444800, 3000) + v9_packet([flow], 4102444800, 3000))
    assert out.events == []
    bad_end = "bad flow end 4102444800000 (ms since 1970, outside the years 2000-2100)"
    assert [d.reason for d in out.dlqs] == [
        f"bad NetFlow v5 record: {bad_end}",
        f"bad NetFlow flow record in set 256: {bad_end}",
    ]
