"""Suricata EVE JSON (ingest.parsers.suricata): flow and netflow records in Suricata 7's exact shapes,
every field's mapping, strict reading (a bad record to the DLQ naming the field, the rest read),
how detectors.flowdir reads each record (answered, refused, unanswered, one-way), and the same
connections as Zeek conn.log JSON lines."""

from __future__ import annotations

import copy
import json
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.flowdir import (
    ANSWER_MASK,
    ANSWERED,
    INITIATOR,
    ONE_WAY,
    REFUSED,
    RESPONDER,
    UNANSWERED,
    UNKNOWN,
    continues_connection,
    flow_view,
    flow_views,
    is_failed_probe,
    reply_refuses,
)
from detectors.registry import all_detectors
from ingest.parsers import ListOutput, ParseContext, get_format, parse_bytes
from ingest.schema import FlowEvent, decode_event, encode_event
from ingest.tenants import TenantRegistry
from tests.fuzz.invariants import check_parse

SAMPLES = Path(__file__).parent / "samples"
SAMPLE = SAMPLES / "suricata_eve.json"
DROP = object()  # a member left out of a record
HUGE = 10**300

# A TCP flow as Suricata 7 writes it: client 10.1.0.5:51000 to 203.0.113.9:443, both sides' flags.
BASE: dict[str, Any] = {
    "timestamp": "2024-03-05T10:02:00.000100+0000", "flow_id": 1234567890123, "in_iface": "eth0",
    "event_type": "flow", "src_ip": "10.1.0.5", "src_port": 51000, "dest_ip": "203.0.113.9", "dest_port": 443,
    "proto": "TCP", "app_proto": "tls",
    "flow": {"pkts_toserver": 10, "pkts_toclient": 12, "bytes_toserver": 1500, "bytes_toclient": 9000,
             "start": "2024-03-05T10:00:00.000000+0000", "end": "2024-03-05T10:00:01.500000+0000", "age": 1,
             "state": "closed", "reason": "timeout", "alerted": False},
    "tcp": {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "1b", "syn": True, "fin": True, "psh": True,
            "ack": True, "state": "closed"},
}  # fmt: skip
NETFLOW: dict[str, Any] = {
    "timestamp": "2024-03-05T10:01:00.000000+0000", "flow_id": 1730511214006625, "in_iface": "eth0",
    "event_type": "netflow", "src_ip": "10.1.0.5", "src_port": 52350, "dest_ip": "10.2.0.7", "dest_port": 443,
    "proto": "TCP", "app_proto": "tls",
    "netflow": {"pkts": 10, "bytes": 1692, "start": "2024-03-05T10:00:15.100000+0000",
                "end": "2024-03-05T10:00:16.300000+0000", "age": 1, "min_ttl": 64, "max_ttl": 64},
    "tcp": {"tcp_flags": "1b", "syn": True, "fin": True, "psh": True, "ack": True},
}  # fmt: skip


def record(base: dict[str, Any] = BASE, **members: Any) -> dict[str, Any]:
    """``base`` with members replaced: a dict value is merged into the object of that name, a
    ``DROP`` leaves the member out (also inside a merged object)."""
    rec = copy.deepcopy(base)
    for name, value in members.items():
        if value is DROP:
            rec.pop(name, None)
        elif isinstance(value, dict) and isinstance(rec.get(name), dict):
            for key, inner in value.items():
                if inner is DROP:
                    rec[name].pop(key, None)
                else:
                    rec[name][key] = inner
        else:
            rec[name] = value
    return rec


def eve(base: dict[str, Any] = BASE, **members: Any) -> bytes:
    """One EVE line, spelt as Suricata writes it (no spaces)."""
    return json.dumps(record(base, **members), separators=(",", ":")).encode()


def parse(lines: list[bytes], registry: TenantRegistry | None = None) -> ListOutput:
    """Parse the lines; assert every line is accounted for and every event is canonical."""
    out = parse_bytes("suricata", b"\n".join(lines) + b"\n", ParseContext(registry=registry))
    assert len(out.events) + len(out.dlqs) + sum(out.skipped.values()) == len(lines)
    for event in out.events:
        assert decode_event(encode_event(event)) == event
    return out


def flows(lines: list[bytes], registry: TenantRegistry | None = None) -> list[FlowEvent]:
    out = parse(lines, registry)
    assert out.dlqs == []
    return flow_events(out)


def flow_events(out: ListOutput) -> list[FlowEvent]:
    return [e for e in out.events if isinstance(e, FlowEvent)]


def one(line: bytes) -> FlowEvent:
    (event,) = flows([line])
    return event


def sample_lines() -> list[bytes]:
    return SAMPLE.read_bytes().splitlines()


CORE = attrgetter("src_ip", "src_port", "dst_ip", "dst_port", "proto", "ts", "duration_ms", "packets_out",
                  "bytes_out", "packets_in", "bytes_in", "action")  # fmt: skip


# --- the sample: every record type and field -------------------------------------------------------
def test_sample_flows_and_skips():
    out = parse(sample_lines())
    assert out.dlqs == []
    assert out.skipped == {"suricata alert event": 1, "suricata dns event": 1, "suricata stats event": 1}
    assert {e.source for e in out.events} == {"suricata"}
    assert [CORE(e) for e in out.events] == [
        # completed TCP, written in local time +0100; IP bytes: frames less 14 bytes a packet
        ("10.1.0.5", 52344, "10.2.0.7", 5432, "tcp", 1709632802627, 2504, 42, 3644, 71, 91905, "accept"),
        # a SYN answered by RST|ACK (the reset's frame padded to 60 bytes: 46 as IP bytes)
        ("198.51.100.7", 40001, "10.1.0.5", 25, "tcp", 1709632803120, 0, 1, 60, 1, 46, "reject"),
        # a SYN and its retransmission, never answered
        ("198.51.100.7", 40000, "10.1.0.5", 23, "tcp", 1709632804118, 1008, 2, 120, 0, 0, "accept"),
        ("198.51.100.9", 33211, "10.1.0.5", 53, "udp", 1709632802510, 10, 1, 63, 1, 79, "accept"),
        # ICMP: no ports; type and code in extra
        ("10.1.0.5", 0, "198.51.100.9", 0, "icmp", 1709632808004, 3004, 4, 392, 4, 392, "accept"),
        # IPv6 behind one VLAN tag: 18 link bytes a packet
        ("2001:db8:1::5", 51000, "2001:db8:20::7", 443, "tcp", 1709632811002, 1752, 14, 2954, 16, 23892, "accept"),
        ("2001:db8:1::5", 0, "2001:db8:20::7", 0, "58", 1709632812001, 0, 1, 104, 1, 104, "accept"),
        # netflow: one record per direction, nothing in the reverse counters
        ("10.1.0.5", 52350, "10.2.0.7", 443, "tcp", 1709632816300, 1200, 10, 1552, 0, 0, "accept"),
        ("10.2.0.7", 443, "10.1.0.5", 52350, "tcp", 1709632816300, 1200, 9, 7222, 0, 0, "accept"),
    ]  # fmt: skip


def test_flow_record_extra_keeps_every_other_member():
    first = flows(sample_lines())[0]
    assert first.extra == {
        "timestamp": "2024-03-05T11:01:03.301200+0100", "flow_id": 1209488105392218, "in_iface": "eth1",
        "event_type": "flow", "app_proto": "pgsql", "community_id": "1:mHd0e1bV9QFsfYHmPKo2Q3mE0uI=",
        "host": "sensor-1", "flow_bytes_toserver": 4232, "flow_bytes_toclient": 92899, "flow_age": 2,
        "flow_state": "closed", "flow_reason": "timeout", "flow_alerted": False,
        "tcp_flags": 0x1B, "tcp_flags_ts": 0x1B, "tcp_flags_tc": 0x1B, "tcp_state": "closed",
        "tcp_ts_max_regions": 1, "tcp_tc_max_regions": 1,
    }  # fmt: skip


def test_icmp_ipv6_vlan_and_netflow_extra():
    events = flows(sample_lines())
    icmp, ipv6, icmp6, client, server = events[4], events[5], events[6], events[7], events[8]
    assert (icmp.extra["icmp_type"], icmp.extra["icmp_code"]) == (8, 0)
    assert (icmp.extra["response_icmp_type"], icmp.extra["response_icmp_code"]) == (0, 0)
    assert (icmp6.extra["icmp_type"], icmp6.extra["response_icmp_type"]) == (128, 129)
    assert ipv6.extra["vlan"] == [120] and ipv6.extra["flow_bytes_toserver"] == 3206
    assert (ipv6.extra["tcp_flags_ts"], ipv6.extra["tcp_flags_tc"]) == (0x1F, 0x1B)
    assert client.extra == {
        "timestamp": "2024-03-05T10:01:20.500000+0000", "flow_id": 1730511214006625, "in_iface": "eth1",
        "event_type": "netflow", "app_proto": "tls", "host": "sensor-1", "netflow_bytes": 1692, "netflow_age": 1,
        "netflow_min_ttl": 64, "netflow_max_ttl": 64, "tcp_flags": 0x1B,
    }  # fmt: skip
    assert server.extra["flow_id"] == client.extra["flow_id"] and server.extra["netflow_min_ttl"] == 63


def test_event_time_is_the_flows_end_not_the_records_timestamp():
    """``timestamp`` is when Suricata wrote the record (a timeout later); ``ts`` is ``flow.end``, the
    start is ``ts - duration_ms``; times to the nearest millisecond."""
    ev = one(eve(flow={"start": "2024-03-05T10:00:00.000500+0000", "end": "2024-03-05T10:00:01.501499+0000"}))
    assert ev.ts - ev.duration_ms == 1709632800001  # 0.5 ms rounds up
    assert ev.duration_ms == 1501  # 1500.999 ms
    assert ev.extra["timestamp"] == "2024-03-05T10:02:00.000100+0000"


@pytest.mark.parametrize("offset", ["+0000", "+0100", "-0530", "+05:45", "Z"])
def test_local_times_with_any_offset_are_the_same_instant(offset):
    utc = one(eve())
    shift = {"+0000": 0, "+0100": 60, "-0530": -330, "+05:45": 345, "Z": 0}[offset]
    hour, minute = divmod(10 * 60 + shift, 60)
    local = f"2024-03-05T{hour:02d}:{minute:02d}:00.000000{offset}"
    end = f"2024-03-05T{hour:02d}:{minute:02d}:01.500000{offset}"
    ev = one(eve(flow={"start": local, "end": end}))
    assert (ev.ts, ev.duration_ms) == (utc.ts, utc.duration_ms) == (1709632801500, 1500)


def test_link_layer_bytes_per_vlan_tag():
    plain = one(eve())
    assert (plain.bytes_out, plain.bytes_in) == (1500 - 14 * 10, 9000 - 14 * 12)
    tagged = one(eve(vlan=[10, 20]))  # QinQ: 22 bytes a packet
    assert (tagged.bytes_out, tagged.bytes_in) == (1500 - 22 * 10, 9000 - 22 * 12)
    short = one(eve(flow={"bytes_toserver": 100}))  # a capture without a link layer: never below 0
    assert short.bytes_out == 0 and short.extra["flow_bytes_toserver"] == 100


@pytest.mark.parametrize(
    ("written", "proto"),
    [("TCP", "tcp"), ("UDP", "udp"), ("ICMP", "icmp"), ("IPv6-ICMP", "58"), ("SCTP", "132"), ("GRE", "47"),
     ("ESP", "50"), ("tcp", "tcp"), ("ipv6-icmp", "58"), ("253", "253"), ("0", "0"), ("HOPOPT", "0"),
     ("Any", "0")],
)  # fmt: skip
def test_protocol_names(written, proto):
    ev = one(eve(proto=written, src_port=DROP, dest_port=DROP, tcp=DROP))
    assert ev.proto == proto and (ev.src_port, ev.dst_port) == (0, 0)
    assert ev.extra.get("proto_name") == ("Any" if written == "Any" else None)


def test_alias_eve_and_cee_prefix():
    assert get_format("eve").name == get_format("SURICATA").name == "suricata"
    line = eve()
    plain = parse_bytes("eve", line + b"\n").events
    prefixed = parse_bytes("suricata", b"@cee: " + line + b"\n").events
    assert len(plain) == len(prefixed) == 1
    assert CORE(plain[0]) == CORE(prefixed[0]) and plain[0].extra == prefixed[0].extra


def test_a_cookie_with_nothing_after_it_goes_to_the_dlq() -> None:
    """Found by the fuzzer: ``@cee:`` alone was skipped as a blank line, a record lost uncounted."""
    out = check_parse("suricata", b"@cee: \n" + eve() + b"\n\n")
    assert len(out.events) == 1 and out.skipped == {"blank line": 1}
    assert [d.reason for d in out.dlqs] == ["@cee: cookie with no JSON object after it"]


def test_other_spellings_take_the_checked_path_with_the_same_events():
    """JSON re-written with spaces (a shipper's re-encoding) misses the fast path's test; the checked
    path gives the same events (ids aside: they hash the line as received)."""
    spaced = [json.dumps(json.loads(line)).encode() for line in sample_lines()]
    fast, checked = parse(sample_lines()), parse(spaced)
    assert [CORE(e) for e in checked.events] == [CORE(e) for e in fast.events]
    assert [e.extra for e in checked.events] == [e.extra for e in fast.events]
    assert checked.skipped == fast.skipped


def test_fast_and_checked_paths_agree_on_the_sample():
    lines = sample_lines()
    out = ListOutput()
    parser: Any = get_format("suricata").factory(out, ParseContext())
    parser._fast_event = lambda line: None
    parser.feed_lines(lines)
    parser.close()
    assert out.events == parse(lines).events and out.dlqs == []


def test_tenant_of_the_flow(registry):
    events = flows(sample_lines(), registry)
    assert (events[0].tenant, events[0].vm) == ("t-acme", "vm-acme-01")
    assert events[5].tenant == "t-acme"  # IPv6: 2001:db8:1::/48
    assert [e.tenant for e in events[7:]] == ["t-acme", "t-beta"]  # netflow: each record's sender


# --- skips, and bad records among good ones -------------------------------------------------------
def test_non_flow_event_types_are_counted_skips_naming_them():
    others = [
        b'{"timestamp":"2024-03-05T10:00:00.000000+0000","event_type":"anomaly","anomaly":{"type":"decode"}}',
        b'{"timestamp":"2024-03-05T10:00:00.000000+0000","event_type":"tls","tls":{"sni":"example.com"}}',
        b'{"timestamp":"2024-03-05T10:00:00.000000+0000","event_type":"fileinfo","fileinfo":{"size":5}}',
        b'{"event_type":"' + b"x" * 100 + b'"}',
        b'{"event_type":"Flow"}',
        b"",
    ]
    out = parse([eve(), *others])
    assert len(out.events) == 1 and out.dlqs == []
    assert out.skipped == {
        "suricata anomaly event": 1, "suricata tls event": 1, "suricata fileinfo event": 1,
        "suricata event of another type": 2, "blank line": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ({"src_port": True}, "src_port is not an integer: True"),
        ({"src_port": 80.9}, "src_port is not an integer: 80.9"),
        ({"dest_port": "443"}, "dest_port is not an integer: '443'"),
        ({"dest_port": 65536}, "dest_port out of range: 65536"),
        ({"src_port": -1}, "src_port is negative: -1"),
        ({"src_ip": "999.1.1.1"}, "bad address '999.1.1.1' -> '203.0.113.9'"),
        ({"dest_ip": 5}, "bad address '10.1.0.5' -> 5"),
        ({"src_ip": DROP}, "missing field 'src_ip'"),
        ({"proto": "XYZ"}, "bad proto 'XYZ'"),
        ({"proto": 6}, "bad proto 6"),
        ({"proto": "999"}, "bad proto '999'"),
        ({"proto": DROP}, "bad proto None"),
        ({"flow": {"pkts_toserver": HUGE}}, "flow.pkts_toserver out of range: 1000"),
        ({"flow": {"bytes_toclient": -5}}, "flow.bytes_toclient is negative: -5"),
        ({"flow": {"bytes_toserver": "1500"}}, "flow.bytes_toserver is not an integer: '1500'"),
        ({"flow": {"pkts_toclient": DROP}}, "missing field 'flow.pkts_toclient'"),
        ({"flow": {"start": "2024-13-45T00:00:00+0000"}}, "flow.start is not a time: '2024-13-45T00:00:00+0000'"),
        ({"flow": {"start": "2024-03-05T10:00:00"}}, "flow.start has no UTC offset: '2024-03-05T10:00:00'"),
        ({"flow": {"start": 1709632800}}, "flow.start is not a time: 1709632800"),
        ({"flow": {"end": DROP}}, "missing field 'flow.end'"),
        ({"flow": {"start": "1970-01-01T00:00:00+0000", "end": "1970-01-01T00:00:01+0000"}},
         "flow.start out of range: '1970-01-01T00:00:00+0000'"),
        ({"flow": {"start": "2099-12-31T23:59:59+0000", "end": "2100-01-01T00:00:00+0000"}},
         "flow.end out of range: '2100-01-01T00:00:00+0000'"),
        ({"flow": {"end": "2024-03-05T09:59:59+0000"}},
         "flow.end '2024-03-05T09:59:59+0000' is before flow.start '2024-03-05T10:00:00.000000+0000'"),
        ({"flow": "x"}, "flow is not an object: 'x'"),
        ({"flow": DROP}, "missing field 'flow'"),
        ({"tcp": {"tcp_flags_tc": "zz"}}, "tcp.tcp_flags_tc is not two hex digits: 'zz'"),
        ({"tcp": {"tcp_flags": 27}}, "tcp.tcp_flags is not two hex digits: 27"),
        ({"tcp": {"syn": "yes"}}, "tcp.syn is not a bool: 'yes'"),
        ({"tcp": [1]}, "tcp is not an object: [1]"),
        ({"vlan": [5000]}, "vlan is not a list of up to 3 VLAN ids: [5000]"),
        ({"vlan": "120"}, "vlan is not a list of up to 3 VLAN ids: '120'"),
        ({"flow_id": 10**20}, "flow_id out of range: 100000000000000000000"),
        ({"ether": {"dest_macs": [2**64]}}, "ether.dest_macs out of range: 18446744073709551616"),
        ({"flow": {"age": -(2**63) - 1}}, "flow.age out of range: -9223372036854775809"),
        ({"event_type": 5}, "event_type is not text: 5"),
        ({"event_type": DROP}, "missing field 'event_type'"),
    ],
)  # fmt: skip
def test_bad_record_among_good_ones(members, reason):
    out = parse([eve(), eve(**members), eve()])
    assert [d.line for d in out.dlqs] == [2] and len(out.events) == 2
    assert out.dlqs[0].reason.startswith(reason)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"event_type":"flow",', "invalid JSON: not a well-formed JSON document"),
        (b'[{"event_type":"flow"}]', "JSON line is not an object"),
        (b'{"event_type":"flow","x":' + b"[" * 100 + b"]" * 100 + b"}", "JSON nested deeper than 64 levels"),
        (b'{"event_type":"flow","in_iface":"\xff"}', "invalid UTF-8 in JSON at byte 33"),
        (eve(NETFLOW, netflow={"pkts": True}), "netflow.pkts is not an integer: True"),
        (eve(NETFLOW, netflow=DROP), "missing field 'netflow'"),
    ],
)
def test_undecodable_and_bad_netflow_lines(line, reason):
    out = parse([eve(), line, eve(NETFLOW)])
    assert [(d.line, d.reason) for d in out.dlqs] == [(2, reason)] and len(out.events) == 2


def test_bad_sample_each_line_alone():
    """The fuzzers' second seed: lines the checked path reads (spaced JSON, the ``@cee:`` cookie),
    bad records, an IPv4 ICMP error's UDP flow, an echo reply's netflow record, ``Any``."""
    out = parse((SAMPLES / "suricata_eve_bad.json").read_bytes().splitlines())
    assert [(d.line, d.reason) for d in out.dlqs] == [
        (3, "src_port is not an integer: 80.9"), (4, "missing field 'flow.end'"),
        (5, "tcp.tcp_flags_tc is not two hex digits: 'zz'"), (10, "JSON line is not an object"),
        (11, "invalid JSON: not a well-formed JSON document"),
    ]  # fmt: skip
    assert out.skipped == {"suricata http event": 1}
    views = [flow_view(e) for e in flow_events(out)]
    assert views == [INITIATOR | ANSWERED, INITIATOR | ANSWERED, INITIATOR | REFUSED, ONE_WAY | RESPONDER,
                     INITIATOR | ANSWERED, INITIATOR | ANSWERED]  # fmt: skip


def test_long_digit_runs_in_text_are_no_integers():
    """The 64-bit check of ``extra``'s integers runs for lines with 19 digits in a row; text that
    holds them is kept as it is."""
    ev = one(eve(host="1" * 40, metadata={"flowints": {"n": 2**62}}))
    assert ev.extra["host"] == "1" * 40 and ev.extra["metadata"] == {"flowints": {"n": 2**62}}


# --- how the detectors read the records (detectors.flowdir) --------------------------------------------
def test_flowdir_views_of_the_sample():
    views = [flow_view(e) for e in flows(sample_lines())]
    assert views == [
        INITIATOR | ANSWERED,  # completed TCP
        INITIATOR | REFUSED,  # reset
        INITIATOR | UNANSWERED,  # SYN never answered
        INITIATOR | ANSWERED,  # DNS
        INITIATOR | ANSWERED,  # ping answered
        INITIATOR | ANSWERED,  # IPv6 TLS
        INITIATOR | ANSWERED,  # IPv6 ping answered
        ONE_WAY | INITIATOR,  # netflow, the client's side: the ports say so, the reverse record answers
        ONE_WAY | RESPONDER,  # netflow, the server's side
    ]
    assert [is_failed_probe(v) for v in views[:3]] == [False, True, True]
    assert flow_views(flows(sample_lines())) == views


_SYN_ONLY: dict[str, Any] = {"tcp_flags": "02", "tcp_flags_ts": "02", "tcp_flags_tc": "00", "syn": True, "fin": DROP, "psh": DROP,
             "ack": DROP, "state": "syn_sent"}  # fmt: skip


@pytest.mark.parametrize(
    ("members", "view"),
    [
        # a SYN answered by an IPv4 ICMP error (administratively prohibited): a packet back, no TCP flags
        ({"flow": {"pkts_toserver": 1, "pkts_toclient": 1, "bytes_toclient": 70, "state": "new"}, "tcp": _SYN_ONLY},
         INITIATOR | REFUSED),
        # the server's SYN-ACK seen first: Suricata turned the flow round, the client is the source
        ({"tcp": {"tcp_flags": "1a", "tcp_flags_ts": "18", "tcp_flags_tc": "12", "fin": DROP}}, INITIATOR | ANSWERED),
        # a SYN-ACK alone (backscatter of a spoofed SYN), turned round: its source sent nothing, no attempt
        ({"flow": {"pkts_toserver": 0, "bytes_toserver": 0, "pkts_toclient": 1},
          "tcp": {"tcp_flags": "12", "tcp_flags_ts": "00", "tcp_flags_tc": "12", "fin": DROP, "psh": DROP}},
         INITIATOR | UNKNOWN),
        # midstream, no SYN seen (as Zeek's OTH): the ports decide the role, no attempt without an answer
        ({"src_ip": "203.0.113.9", "src_port": 443, "dest_ip": "10.1.0.5", "dest_port": 51000,
          "tcp": {"tcp_flags": "18", "tcp_flags_ts": "18", "tcp_flags_tc": "10", "syn": DROP, "fin": DROP}},
         RESPONDER | ANSWERED),
        ({"flow": {"pkts_toclient": 0, "bytes_toclient": 0},
          "tcp": {"tcp_flags": "00", "tcp_flags_ts": "00", "tcp_flags_tc": "00", "syn": DROP, "fin": DROP,
                  "psh": DROP, "ack": DROP, "state": DROP}},
         INITIATOR | UNKNOWN),
        # the server acknowledged, its SYN-ACK missed: answered
        ({"tcp": {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "18"}}, INITIATOR | ANSWERED),
        # a reset after data is no refusal
        ({"tcp": {"tcp_flags": "1f", "tcp_flags_ts": "1b", "tcp_flags_tc": "1c"}}, INITIATOR | ANSWERED),
    ],
)  # fmt: skip
def test_flowdir_tcp_cases(members, view):
    ev = one(eve(**members))
    assert flow_view(ev) == view
    assert ev.action == "accept"


_UDP: dict[str, Any] = {"proto": "UDP", "src_port": 40000, "dest_port": 161, "tcp": DROP, "app_proto": DROP}


def test_flowdir_udp_answered_refused_by_an_icmp_error_and_unanswered():
    answered = one(eve(**_UDP, flow={"state": "established"}))
    # an IPv4 port unreachable counted against the flow leaves it ``new``
    refused = one(eve(**_UDP, flow={"pkts_toserver": 1, "pkts_toclient": 1, "state": "new"}))
    unanswered = one(eve(**_UDP, flow={"pkts_toclient": 0, "bytes_toclient": 0, "state": "new"}))
    assert [flow_view(e) for e in (answered, refused, unanswered)] == [
        INITIATOR | ANSWERED, INITIATOR | REFUSED, INITIATOR | UNANSWERED,
    ]  # fmt: skip


_ICMP: dict[str, Any] = {"proto": "ICMP", "src_port": DROP, "dest_port": DROP, "tcp": DROP, "app_proto": DROP}


def test_flowdir_icmp():
    ping = one(
        eve(**_ICMP, icmp_type=8, icmp_code=0, flow={"pkts_toclient": 0, "bytes_toclient": 0, "state": "new"})
    )
    assert flow_view(ping) == INITIATOR | UNANSWERED
    # ICMPv6 errors are flows of their own, sent by the side that answers
    unreachable = one(
        eve(**{**_ICMP, "proto": "IPv6-ICMP"}, src_ip="2001:db8:20::7", dest_ip="2001:db8:1::5", icmp_type=1,
            icmp_code=4, flow={"pkts_toclient": 0, "bytes_toclient": 0, "state": "new"})
    )  # fmt: skip
    assert unreachable.proto == "58" and flow_view(unreachable) == RESPONDER
    reply = one(eve(NETFLOW, **_ICMP, icmp_type=0, icmp_code=0, src_ip="10.2.0.7", dest_ip="10.1.0.5"))
    assert flow_view(reply) == ONE_WAY | RESPONDER


def test_flowdir_netflow_records_are_one_way_as_netflow():
    syn = one(eve(NETFLOW, tcp={"tcp_flags": "02", "fin": DROP, "psh": DROP, "ack": DROP}))
    reset = one(
        eve(NETFLOW, src_ip="10.2.0.7", src_port=443, dest_ip="10.1.0.5", dest_port=52350,
            tcp={"tcp_flags": "14", "syn": DROP, "fin": DROP, "psh": DROP, "rst": True})
    )  # fmt: skip
    tail = one(eve(NETFLOW, tcp={"tcp_flags": "11", "syn": DROP, "psh": DROP}))
    assert flow_view(syn) == ONE_WAY | INITIATOR  # its answer is another record
    assert flow_view(syn) & ANSWER_MASK == UNKNOWN and reply_refuses(reset)
    assert continues_connection(tail, flow_view(tail))  # no SYN: the rest of a connection
    whole = one(eve())
    assert not flow_view(whole) & ONE_WAY and not continues_connection(whole, flow_view(whole))


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def run(events: list[FlowEvent], registry: TenantRegistry) -> list:
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
    return engine.process(sorted(events, key=lambda e: (e.ts, e.id))) + engine.flush()


def probe(port: int, answer: dict[str, Any]) -> bytes:
    """A scanner's SYN to 10.1.0.5:``port`` and what came back (``answer``: flow and tcp members)."""
    second = port % 50
    return eve(
        src_ip="198.51.100.7", src_port=40000 + port, dest_ip="10.1.0.5", dest_port=port, app_proto=DROP,
        flow={"pkts_toserver": 1, "bytes_toserver": 74, "start": f"2023-11-14T22:13:{second:02d}.000000+0000",
              "end": f"2023-11-14T22:13:{second:02d}.000300+0000", **answer.get("flow", {})},
        tcp={"syn": True, "fin": DROP, "psh": DROP, **answer.get("tcp", {})},
    )  # fmt: skip


def test_scanner_refused_by_resets_is_found_and_answered_probes_are_not(registry):
    reset = {"flow": {"pkts_toclient": 1, "bytes_toclient": 60},
             "tcp": {"tcp_flags": "16", "tcp_flags_ts": "02", "tcp_flags_tc": "14", "rst": True}}  # fmt: skip
    scans = [a for a in run(flows([probe(p, reset) for p in range(1000, 1030)], registry), registry)
             if a.category == "port_scan"]  # fmt: skip
    assert [a.entity.id for a in scans] == ["198.51.100.7"]
    assert scans[0].evidence["failed_pairs"] == 30
    # SYN-ACKs, then the scanner's reset (nmap -sS on open ports): answered, no failed probe
    open_ports = {"flow": {"pkts_toserver": 2, "bytes_toserver": 128, "pkts_toclient": 1, "bytes_toclient": 74},
                  "tcp": {"tcp_flags": "16", "tcp_flags_ts": "06", "tcp_flags_tc": "12", "rst": True}}  # fmt: skip
    events = flows([probe(p, open_ports) for p in range(1000, 1030)], registry)
    assert {flow_view(e) for e in events} == {INITIATOR | ANSWERED}
    assert [a for a in run(events, registry) if a.category == "port_scan"] == []


# --- the same connections as Zeek conn.log JSON lines --------------------------------------------------
def test_same_connections_as_zeek_conn_json():
    """Zeek's sample connections (a PostgreSQL session, a DNS query) as Suricata writes them: the
    same endpoints, protocol, counters (IP bytes), start, end and duration, and the same reading."""
    zeek = flow_events(
        parse_bytes("zeek", b"\n".join((SAMPLES / "zeek_conn.json").read_bytes().splitlines()[:2]))
    )
    lines = sample_lines()
    suricata = flow_events(parse_bytes("suricata", b"\n".join([lines[0], lines[5]])))
    assert len(zeek) == len(suricata) == 2
    assert [CORE(e) for e in suricata] == [CORE(e) for e in zeek]
    assert [e.ts - e.duration_ms for e in suricata] == [e.ts - e.duration_ms for e in zeek]
    assert [flow_view(e) for e in suricata] == [flow_view(e) for e in zeek]


def test_refused_and_unanswered_probes_read_as_zeek_reads_them():
    zeek = (
        "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tduration\t"
        "conn_state\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\n"
        "1709632803.120001\tC1\t198.51.100.7\t40001\t10.1.0.5\t25\ttcp\t0.000411\tREJ\tSr\t1\t60\t1\t40\n"
        "1709632803.110000\tC2\t198.51.100.7\t40000\t10.1.0.5\t23\ttcp\t1.008000\tS0\tS\t2\t120\t0\t0\n"
    )
    zeek_events = flow_events(parse_bytes("zeek", zeek.encode()))
    suricata = flows(sample_lines()[2:4])
    assert [flow_view(e) for e in suricata] == [flow_view(e) for e in zeek_events]
    assert [e.action for e in suricata] == [e.action for e in zeek_events] == ["reject", "accept"]
    assert [CORE(e)[:9] for e in suricata] == [CORE(e)[:9] for e in zeek_events]
    # Ethernet pads the 54-byte frame of a bare reset to 60: 46 IP bytes where Zeek counts 40
    assert (suricata[0].bytes_in, zeek_events[0].bytes_in) == (46, 40)
