"""Flow direction and answer (detectors.flowdir) on records in real exporters' shapes, made by the
project's own parsers from hand-written lines, and the flow detectors built on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from msgspec.structs import replace

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
    ROLE_MASK,
    UNANSWERED,
    UNKNOWN,
    argus_status_record,
    flow_view,
    holds_syn,
    ip_bytes,
    is_failed_probe,
    is_response,
    opened_and_closed,
    port_class,
    reply_refuses,
    sent_payload,
    whole_connection,
)
from detectors.registry import all_detectors
from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.parsers.netflow import NetflowParser
from ingest.schema import FlowEvent
from ingest.tenants import TenantRegistry
from tests.samples.netflow_gen import v5_packet, v9_packet

SAMPLES = Path(__file__).parent / "samples"
T0 = 1_700_000_000


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def flows(fmt: str, text: str, registry: TenantRegistry | None = None) -> list[FlowEvent]:
    out = parse_bytes(fmt, text.encode(), ParseContext(registry=registry))
    assert not out.dlqs
    return [e for e in out.events if isinstance(e, FlowEvent)]


def role(ev: FlowEvent) -> int:
    return flow_view(ev) & ROLE_MASK


def answer(ev: FlowEvent) -> int:
    return flow_view(ev) & ANSWER_MASK


def vpc(src: str, dst: str, sport: int, dport: int, packets: int, nbytes: int, start: int = T0) -> str:
    return f"2 111122223333 eni-0a1b2c3d4e5f60718 {src} {dst} {sport} {dport} 6 {packets} {nbytes} {start} {start + 60} ACCEPT OK\n"


def test_port_classes():
    assert [port_class(p) for p in (22, 1023, 1024, 32767, 32768, 49152, 60999, 65535)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        2,
        2,
    ]


# --- VPC Flow Logs v2 default format: one record per direction, no flags, no reverse counters ----


def test_vpc_v2_web_request_both_directions():
    request, response = flows(
        "vpcflow",
        vpc("203.0.113.50", "10.1.0.5", 51000, 443, 10, 1200)
        + vpc("10.1.0.5", "203.0.113.50", 443, 51000, 12, 15000),
    )
    assert flow_view(request) == ONE_WAY | INITIATOR  # answered or not: its reverse record tells
    assert flow_view(response) == ONE_WAY | RESPONDER
    assert is_response(flow_view(response)) and not is_failed_probe(flow_view(response))
    assert not reply_refuses(response)


def test_vpc_v2_refused_probe_both_directions():
    probe, reset = flows(
        "vpcflow",
        vpc("198.51.100.7", "10.1.0.5", 40000, 23, 1, 44) + vpc("10.1.0.5", "198.51.100.7", 23, 40000, 1, 40),
    )
    assert role(probe) == INITIATOR and role(reset) == RESPONDER
    assert reply_refuses(reset)  # one packet without TCP options: a reset, not a SYN-ACK


def test_vpc_reject_is_refused():
    (ev,) = flows("vpcflow", vpc("198.51.100.7", "10.1.0.5", 40000, 3389, 2, 88).replace("ACCEPT", "REJECT"))
    assert answer(ev) == REFUSED and is_failed_probe(flow_view(ev))


def test_vpc_custom_format_tcp_flags():
    head = "version srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status tcp-flags\n"
    rows = [
        f"5 10.1.0.5 10.2.0.7 50000 50001 6 1 60 {T0} {T0} ACCEPT OK 2",  # SYN: opens, ports say nothing
        f"5 10.2.0.7 10.1.0.5 50001 50000 6 1 60 {T0} {T0} ACCEPT OK 18",  # SYN-ACK: answers
        f"5 10.1.0.5 10.2.0.7 50002 50003 6 8 900 {T0} {T0} ACCEPT OK 3",  # SYN and FIN: opened and closed
        f"5 10.1.0.5 10.2.0.7 50004 50005 6 2 120 {T0} {T0} ACCEPT OK 6",  # SYN and its own RST: its reverse decides
    ]
    syn, syn_ack, syn_fin, syn_rst = flows("vpcflow", head + "\n".join(rows) + "\n")
    assert flow_view(syn) == ONE_WAY | INITIATOR
    assert flow_view(syn_ack) == ONE_WAY | RESPONDER
    assert flow_view(syn_fin) == ONE_WAY | INITIATOR | ANSWERED
    assert flow_view(syn_rst) == ONE_WAY | INITIATOR


def test_project_vpc_samples():
    v2 = flows("vpcflow", (SAMPLES / "vpcflow_v2.log").read_text())
    custom = flows("vpcflow", (SAMPLES / "vpcflow_custom.log").read_text())
    assert all(flow_view(ev) & ONE_WAY for ev in v2 + custom)
    assert not any(is_response(flow_view(ev)) for ev in v2)
    (upload,) = [ev for ev in v2 if ev.dst_port == 443]
    assert role(upload) == INITIATOR
    ssh, dns = custom
    # tcp-flags 19 is SYN-ACK and FIN: AWS reports ACK only within SYN-ACK, so this record's source
    # answered, whatever its ports (51514 -> 22) suggest; the flags are measured, ports a guess
    assert ssh.extra["tcp-flags"] == 19 and role(ssh) == RESPONDER
    assert role(dns) == INITIATOR


# --- NetFlow v5 / v9: one direction, tcp_flags the OR of the packets' flags ----------------------

_FLOWS = [
    ("198.51.100.7", "10.1.0.5", 40000, 23, 6, 44, 1, 1000, 1000),  # a SYN to a closed port
    ("10.1.0.5", "198.51.100.7", 23, 40000, 6, 40, 1, 1001, 1001),  # its reset
    ("10.1.0.5", "10.2.0.7", 50000, 50001, 6, 60, 1, 1000, 1000),  # a SYN, ports say nothing
    ("10.1.0.5", "10.2.0.7", 50010, 50011, 6, 900, 8, 1000, 2000),  # handshake done, data, FIN
]
_FLAGS = [0x02, 0x14, 0x02, 0x1B]


def _v5_with_flags() -> bytes:
    packet = bytearray(v5_packet(_FLOWS, T0, 10_000))
    for i, flags in enumerate(_FLAGS):
        packet[24 + 48 * i + 37] = flags  # the v5 record's tcp_flags byte
    return bytes(packet)


def _v9_with_flags() -> bytes:
    packet = bytearray(v9_packet(_FLOWS, T0, 10_000))
    start = 20 + 52 + 4  # header, template set, data set header; records are 34 bytes, flags last
    for i, flags in enumerate(_FLAGS):
        rec = start + 34 * i
        packet[rec + 29 : rec + 33] = bytes(4)  # OUT_BYTES 0: a plain one-way exporter
        packet[rec + 33] = flags
    return bytes(packet)


@pytest.mark.parametrize("make", [_v5_with_flags, _v9_with_flags], ids=["v5", "v9"])
def test_netflow_flags(make):
    out = ListOutput()
    NetflowParser(out, ParseContext()).feed_packet(make(), "192.0.2.1")
    events = [e for e in out.events if isinstance(e, FlowEvent)]
    assert [e.extra["tcp_flags"] for e in events] == _FLAGS
    probe, reset, syn, done = (flow_view(e) for e in events)
    assert probe == ONE_WAY | INITIATOR
    assert reset & ROLE_MASK == RESPONDER and reply_refuses(events[1])
    assert syn == ONE_WAY | INITIATOR  # a SYN without ACK opens, whatever the ports
    assert done == ONE_WAY | UNKNOWN  # both sides of a completed connection show SYN and ACK


# --- Zeek conn: bidirectional, state says it all ---------------------------------------------------

_ZEEK_HEAD = (
    "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state\thistory\t"
    "orig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\n"
)


def zeek(rows: list[str]) -> list[FlowEvent]:
    return flows("zeek", _ZEEK_HEAD + "".join(f"{T0}.5\tC{i}\t{r}\n" for i, r in enumerate(rows)))


def test_zeek_states():
    s0, sf, rej, oth, flipped, unreach = zeek(
        [
            "198.51.100.7\t40000\t10.1.0.5\t23\ttcp\tS0\tS\t1\t44\t0\t0",
            "203.0.113.50\t51000\t10.1.0.5\t443\ttcp\tSF\tShADadFf\t10\t1200\t12\t15000",
            "198.51.100.7\t40001\t10.1.0.5\t25\ttcp\tREJ\tSr\t1\t44\t1\t40",
            "10.1.0.5\t443\t203.0.113.50\t51000\ttcp\tOTH\tDa\t3\t4000\t0\t0",  # midstream reply seen alone
            "203.0.113.50\t51001\t10.1.0.5\t443\ttcp\tSF\t^hADadFf\t5\t900\t6\t7000",
            "10.1.0.5\t3\t198.51.100.7\t3\ticmp\tOTH\t-\t1\t56\t0\t0",  # port unreachable back to a prober
        ]
    )
    assert flow_view(s0) == INITIATOR | UNANSWERED and is_failed_probe(flow_view(s0))
    assert flow_view(sf) == INITIATOR | ANSWERED and not is_failed_probe(flow_view(sf))
    assert flow_view(rej) == INITIATOR | REFUSED and is_failed_probe(flow_view(rej))
    assert role(oth) == RESPONDER
    assert flow_view(flipped) == INITIATOR | ANSWERED
    assert role(unreach) == RESPONDER


# --- Argus (ra -c ,): bidirectional totals; Dir and State tell who opened and who answered ------

_ARGUS_HEAD = (
    "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label\n"
)


def test_argus_rows():
    rows = [
        "2024/03/05 10:00:00.1,2.5,tcp,10.1.0.5,52344,   ->,10.2.0.7,5432,FSPA_FSPA,0,0,113,95549,3644,x",
        "2024/03/05 10:00:00.2,0,tcp,198.51.100.9,41822,   ->,10.1.0.5,23,S_,0,,1,60,60,x",
        "2024/03/05 10:00:00.3,0,tcp,198.51.100.9,41823,   ->,10.1.0.5,25,S_RA,0,0,2,100,60,x",
        "2024/03/05 10:00:00.4,1,tcp,10.1.0.5,443,  <?>,203.0.113.50,51000,PA_PA,0,0,20,9000,8000,x",
        "2024/03/05 10:00:00.5,0,tcp,10.1.0.5,80,   ->,198.51.100.9,6000,SA_,0,0,1,60,60,x",
        "2024/03/05 10:00:00.6,0,udp,10.1.0.5,53000,  <->,192.0.2.53,53,CON,0,0,2,150,60,x",
        "2024/03/05 10:00:00.7,0,icmp,198.51.100.9,0x0008,   ->,10.1.0.5,0x0000,ECO,0,,1,98,98,x",
        "2024/03/05 10:00:00.8,0,icmp,10.1.0.5,0x0003,   ->,198.51.100.9,0x0003,URP,0,,1,70,70,x",
        "2024/03/05 10:00:00.9,0,tcp,10.1.0.5,50000,   ->,203.0.113.50,443,SPA_,0,,6,900,900,x",
    ]
    answered, unanswered, refused, midstream, syn_ack, udp, ping, unreach, asymmetric = flows(
        "argus", _ARGUS_HEAD + "\n".join(rows) + "\n"
    )
    # totals only: packets_in is 0 on every row, yet the state tells the answer
    assert answered.packets_in == 0 and flow_view(answered) == INITIATOR | ANSWERED
    assert flow_view(unanswered) == INITIATOR | UNANSWERED
    assert flow_view(refused) == INITIATOR | REFUSED
    assert role(midstream) == RESPONDER  # no SYN seen: the service port answers
    assert role(syn_ack) == RESPONDER  # a SYN-ACK to a side that never sent a SYN
    assert flow_view(udp) == INITIATOR | ANSWERED
    assert flow_view(ping) == INITIATOR | UNANSWERED  # an echo request nobody answered
    assert role(unreach) == RESPONDER  # a port unreachable sent back
    # SYN and ACK from a client whose answers took another path: it got a SYN-ACK
    assert flow_view(asymmetric) == INITIATOR | ANSWERED


# --- the detectors --------------------------------------------------------------------------------


def run(events: list[FlowEvent], registry: TenantRegistry) -> list:
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
    events = sorted(events, key=lambda e: (e.ts, e.id))
    return engine.process(events) + engine.flush()


def test_web_server_answering_many_clients_is_no_scanner(registry):
    """VPC v2: a web server's replies to 40 clients (src 443 -> ephemeral port, no reverse count)."""
    text = "".join(
        vpc(f"203.0.113.{i}", "10.1.0.5", 50000 + i, 443, 6, 900, T0 + i)
        + vpc("10.1.0.5", f"203.0.113.{i}", 443, 50000 + i, 8, 12000, T0 + i)
        for i in range(1, 41)
    )
    alerts = run(flows("vpcflow", text, registry), registry)
    assert [a for a in alerts if a.category == "port_scan"] == []


def test_scanner_refused_by_resets_is_found_and_answered_probes_do_not_count(registry):
    refused = "".join(
        vpc("198.51.100.7", "10.1.0.5", 40000 + p, p, 1, 44, T0 + p % 50)
        + vpc("10.1.0.5", "198.51.100.7", p, 40000 + p, 1, 40, T0 + p % 50)
        for p in range(1000, 1030)
    )
    alerts = run(flows("vpcflow", refused, registry), registry)
    scans = [a for a in alerts if a.category == "port_scan"]
    assert [a.entity.id for a in scans] == ["198.51.100.7"]  # never the victim that sent the resets
    assert scans[0].evidence["failed_pairs"] == 30
    # the same probes answered by SYN-ACKs and data (more than one packet back): nothing failed
    answered = "".join(
        vpc("198.51.100.7", "10.1.0.5", 40000 + p, p, 3, 180, T0 + p % 50)
        + vpc("10.1.0.5", "198.51.100.7", p, 40000 + p, 2, 120, T0 + p % 50)
        for p in range(1000, 1030)
    )
    assert [a for a in run(flows("vpcflow", answered, registry), registry) if a.category == "port_scan"] == []


def test_unanswered_one_way_probes_are_a_scan(registry):
    text = "".join(vpc("198.51.100.7", "10.1.0.5", 40000 + p, p, 1, 44, T0) for p in range(2000, 2025))
    scans = [a for a in run(flows("vpcflow", text, registry), registry) if a.category == "port_scan"]
    assert [a.entity.id for a in scans] == ["198.51.100.7"]


def test_database_answering_a_foreign_tenant_is_not_the_subject(registry):
    """Un-peered t-acme VM queries t-beta's database: VPC logs the query and the reply."""
    text = vpc("10.1.0.5", "10.2.0.7", 51514, 5432, 12, 2400) + vpc(
        "10.2.0.7", "10.1.0.5", 5432, 51514, 10, 90000
    )
    leaks = [a for a in run(flows("vpcflow", text, registry), registry) if a.category == "cross_tenant_leak"]
    assert [a.entity.id for a in leaks] == ["vm-acme-01"]


def test_pool_port_reply_is_not_mining(registry):
    """A VM's web server answering a client whose ephemeral port happens to be a pool port."""
    text = vpc("198.51.100.7", "10.1.0.5", 45560, 443, 6, 900) + vpc(
        "10.1.0.5", "198.51.100.7", 443, 45560, 8, 9000
    )
    assert [a for a in run(flows("vpcflow", text, registry), registry) if a.category == "cryptomining"] == []


def test_syn_flood_records_counted_as_syn(registry):
    """NetFlow tcp_flags 0x02 on small-packet records: the source flood says SYN flood."""
    events = [
        FlowEvent(
            id=f"f{i}",
            ts=T0 * 1000 + i * 1000,
            source="netflow",
            src_ip="198.51.100.7",
            dst_ip="10.1.0.5",
            src_port=40000 + i,
            dst_port=443,
            bytes_out=44 * 2000,
            packets_out=2000,
            extra={"tcp_flags": 2},
        )
        for i in range(40)
    ]
    floods = [a for a in run(events, registry) if a.detector == "dos.source_flood"]
    assert floods and floods[0].evidence["syn_records"] > 0


def _probes_and_resets(registry: TenantRegistry, n: int = 30) -> list[FlowEvent]:
    return flows(
        "vpcflow",
        "".join(
            vpc("198.51.100.7", "10.1.0.5", 40000 + p, p, 1, 44, T0 + p % 50)
            + vpc("10.1.0.5", "198.51.100.7", p, 40000 + p, 1, 40, T0 + p % 50)
            for p in range(1000, 1000 + n)
        ),
        registry,
    )


def _scan_detector(engine: DetectionEngine):
    return next(d for d in engine.detectors if d.meta.id == "port_scan.failed_probe_scan")


def test_reverse_record_table_is_bounded_and_overflow_counted(registry):
    cfg = DetectorConfig.default().merged({"engine": {"max_keys_per_window": 10}})
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
    probes = [e for e in _probes_and_resets(registry) if e.src_ip == "198.51.100.7"]  # no answer yet
    engine.process(sorted(probes, key=lambda e: (e.ts, e.id)))
    scan = _scan_detector(engine)
    table = scan._panes[max(scan._panes)]["@one-way flows"]
    assert len(table.seen) == 10
    assert scan.counters["overflow"] >= 20  # 30 one-way records, 10 kept
    engine.flush()
    assert engine.state_size() == 0


def test_a_record_matched_with_its_reverse_leaves_the_table(registry):
    # 30 probes and their resets: each pair is decided when its second record comes, and the table
    # keeps none of them (a busy window's answered connections no longer fill it)
    cfg = DetectorConfig.default().merged({"engine": {"max_keys_per_window": 10}})
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
    engine.process(sorted(_probes_and_resets(registry), key=lambda e: (e.ts, e.id)))
    scan = _scan_detector(engine)
    assert scan._panes[max(scan._panes)]["@one-way flows"].seen == {} and scan.counters["overflow"] == 0
    scans = [a for a in engine.flush() if a.category == "port_scan"]
    assert [(a.entity.id, a.evidence["failed_pairs"]) for a in scans] == [("198.51.100.7", 30)]


def test_a_full_reverse_record_table_leaves_probes_undecided_not_failed(registry):
    # The table (room for 10) is full of a server's replies whose requests were never seen; then a
    # VM's 40 short UDP exchanges (one packet out, one back): neither side finds room, and the
    # requests' answers are unknown, not failed.
    cfg = DetectorConfig.default().merged({"engine": {"max_keys_per_window": 10}})
    orphans = "".join(vpc("198.51.100.9", "10.1.0.9", 443, 50000 + i, 8, 9000, T0) for i in range(15))
    requests = "".join(
        vpc("10.1.0.5", f"203.0.113.{i}", 40000 + i, 8000 + i, 1, 70, T0 + 1) for i in range(1, 41)
    )
    replies = "".join(
        vpc(f"203.0.113.{i}", "10.1.0.5", 8000 + i, 40000 + i, 1, 120, T0 + 2) for i in range(1, 41)
    )
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
    alerts = engine.process(flows("vpcflow", orphans + requests + replies, registry)) + engine.flush()
    assert [a for a in alerts if a.category == "port_scan"] == []  # 1.2.0: a scan of 40 hosts
    assert _scan_detector(engine).counters["undecided"] == 40


def test_pending_probes_survive_pickling(registry):
    import pickle

    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
    events = sorted(_probes_and_resets(registry), key=lambda e: (e.ts, e.id))
    engine.process(events[:31])
    engine.context = None  # type: ignore[assignment]
    restored = pickle.loads(pickle.dumps(engine))
    restored.context = DetectionContext(registry, cfg)
    alerts = restored.process(events[31:]) + restored.flush()
    scans = [a for a in alerts if a.category == "port_scan"]
    assert [(a.entity.id, a.evidence["failed_pairs"]) for a in scans] == [("198.51.100.7", 30)]


def test_sliding_windows_merge_the_reverse_record_tables(registry):
    cfg = DetectorConfig.default().merged(
        {"detectors": {"port_scan.failed_probe_scan": {"window_ms": 300_000, "slide_ms": 60_000}}}
    )

    def scans(back_packets: int, back_bytes: int) -> list:
        # 30 probes over two minutes, each answered within its own minute (VPC logs both directions
        # of one aggregation interval together)
        text = "".join(
            vpc("198.51.100.7", "10.1.0.5", 40000 + p, p, 1, 44, T0 + 60 * (p % 2))
            + vpc("10.1.0.5", "198.51.100.7", p, 40000 + p, back_packets, back_bytes, T0 + 60 * (p % 2))
            for p in range(1000, 1030)
        )
        engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg))
        events = sorted(flows("vpcflow", text, registry), key=lambda e: (e.ts, e.id))
        return [a for a in engine.process(events) + engine.flush() if a.category == "port_scan"]

    assert scans(2, 120) == []  # SYN-ACK and more: answered
    refused = scans(1, 40)  # resets
    assert [a.entity.id for a in refused] == ["198.51.100.7"]
    assert max(a.evidence["failed_pairs"] for a in refused) == 30  # both minutes' panes merged


def test_reflection_flood_of_responses_still_names_the_victim(registry):
    """DNS answers to spoofed queries: responses (source port 53) the victim never asked for."""
    text = "".join(
        f"2 111122223333 eni-0a1b2c3d4e5f60718 192.0.2.{i} 10.1.0.5 53 {40000 + i} 17 4000 2048000 {T0} {T0 + 30} ACCEPT OK\n"
        for i in range(1, 31)
    )
    events = flows("vpcflow", text, registry)
    assert all(is_response(flow_view(ev)) for ev in events)
    floods = [a for a in run(events, registry) if a.category == "dos"]
    assert [(a.detector, a.entity.id) for a in floods] == [("dos.distributed_flood", "10.1.0.5")]


def test_server_acking_an_upload_is_no_flooder(registry):
    """A VM's HTTPS server acknowledging a client's upload: 60,000 small packets, all a response."""
    text = vpc("203.0.113.50", "10.1.0.5", 51000, 443, 60000, 90_000_000) + vpc(
        "10.1.0.5", "203.0.113.50", 443, 51000, 60000, 3_120_000
    )
    assert [a for a in run(flows("vpcflow", text, registry), registry) if a.category == "dos"] == []


def test_reverse_record_that_started_first_makes_a_response(registry):
    """Ports that tell nothing (both ephemeral): 25 clients reach a VM's service on port 55555; the
    VM's records to them started a second later, so they are its answers, not 25 probes."""
    text = "".join(
        vpc(f"203.0.113.{i}", "10.1.0.5", 50000 + i, 55555, 5, 700, T0)
        + vpc("10.1.0.5", f"203.0.113.{i}", 55555, 50000 + i, 4, 900, T0 + 1)
        for i in range(1, 26)
    )
    events = flows("vpcflow", text, registry)
    assert {flow_view(ev) & ROLE_MASK for ev in events} == {UNKNOWN}
    assert [a for a in run(events, registry) if a.category == "port_scan"] == []


def test_batch_views_agree_with_flow_view():
    """``flow_views`` inlines the bidirectional case: it must say what ``flow_view`` says."""
    from detectors.flowdir import flow_views

    rows: list[tuple[str, int, int, str, int, Literal["accept", "reject"]]] = [
        ("sim", 443, 51000, "tcp", 0, "accept"), ("sim", 51000, 443, "tcp", 3, "accept"),
        ("cicflowmeter", 0, 0, "icmp", 0, "accept"), ("sim", 40000, 23, "tcp", 0, "reject"),
        ("netflow", 53, 40000, "udp", 1, "accept"), ("zeek", 3, 3, "icmp", 0, "accept"),
    ]  # fmt: skip
    events = [
        FlowEvent(id=f"e{i}", ts=T0 * 1000, source=source, src_ip="10.1.0.5", dst_ip="198.51.100.7",
                  src_port=sport, dst_port=dport, proto=proto, packets_in=back, bytes_in=back * 60, action=action)
        for i, (source, sport, dport, proto, back, action) in enumerate(rows)
    ]  # fmt: skip
    assert flow_views(events) == [flow_view(ev) for ev in events]
    assert [v & ROLE_MASK for v in flow_views(events)] == [
        RESPONDER,
        INITIATOR,
        INITIATOR,
        INITIATOR,
        RESPONDER,
        RESPONDER,
    ]


# --- CICFlowMeter: payload bytes, flag counts, the tail after a FIN -------------------------------
def cic(rows: list[dict[str, str]]) -> str:
    """CICFlowMeter CSV (CIC-IDS2017's header) of the sample's first row with cells replaced."""
    header, template = (SAMPLES / "cicids2017.csv").read_text().splitlines()[:2]
    names = [n.strip() for n in header.split(",")]
    lines = [header]
    for row in rows:
        cells = template.split(",")
        for key, value in {name: "0" for name in names if name.endswith(("Flag Count", "Flags"))}.items():
            cells[names.index(key)] = value
        for key, value in row.items():
            cells[names.index(key)] = value
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def cic_flow(src: str, dst: str, sport: int, dport: int, out: tuple[int, int], back: tuple[int, int],
             first_flag: str, minute: int = 0) -> dict[str, str]:  # fmt: skip
    """A CIC-IDS2017 record: (packets, payload bytes) each way; flags of its first packet only, as
    CICFlowMeter's 2017 release counts them."""
    return {
        "Source IP": src, "Destination IP": dst, "Source Port": str(sport), "Destination Port": str(dport),
        "Protocol": "6", "Timestamp": f"7/7/2017 9:{minute:02d}", "Flow Duration": "85",
        "Total Fwd Packets": str(out[0]), "Total Length of Fwd Packets": str(out[1]),
        "Total Backward Packets": str(back[0]), "Total Length of Bwd Packets": str(back[1]),
        f"{first_flag} Flag Count": "1",
    }  # fmt: skip


def test_cic_views_of_probes_and_tails():
    rows = [
        cic_flow("198.51.100.7", "10.1.0.5", 40001, 1001, (1, 0), (1, 0), "SYN"),  # reset (closed port)
        cic_flow("198.51.100.7", "10.1.0.5", 40001, 22, (2, 0), (1, 0), "SYN"),  # SYN-ACK, then its RST
        cic_flow("198.51.100.7", "10.1.0.5", 40001, 1002, (2, 0), (0, 0), "SYN"),  # filtered: no answer
        {**cic_flow("10.1.0.5", "203.0.113.9", 51000, 443, (1, 0), (1, 0), "FIN"), "ACK Flag Count": "1"},
        cic_flow("10.1.0.5", "203.0.113.9", 51001, 443, (9, 700), (8, 9000), "SYN"),  # a whole connection
    ]
    views = [flow_view(ev) for ev in flows("cicflowmeter", cic(rows))]
    assert views == [
        INITIATOR | REFUSED, INITIATOR | ANSWERED, INITIATOR | UNANSWERED, INITIATOR | ANSWERED,
        INITIATOR | ANSWERED,
    ]  # fmt: skip
    tail = cic([cic_flow("10.1.0.5", "203.0.113.9", 51000, 443, (1, 0), (0, 0), "ACK")])
    assert [answer(ev) for ev in flows("cicflowmeter", tail)] == [UNKNOWN]  # no attempt: no probe
    # nmap -sF / -sX / -sN: a FIN, FIN|PSH|URG or no flag at all, reset by a closed port or unanswered
    stealth = [
        cic_flow("198.51.100.7", "10.1.0.5", 40001, 1001, (1, 0), (1, 0), "FIN"),
        {**cic_flow("198.51.100.7", "10.1.0.5", 40001, 1002, (1, 0), (1, 0), "PSH"), "URG Flag Count": "1"},
        {**cic_flow("198.51.100.7", "10.1.0.5", 40001, 1003, (2, 0), (0, 0), "FIN"), "FIN Flag Count": "0"},
    ]
    assert [flow_view(ev) for ev in flows("cicflowmeter", cic(stealth))] == [
        INITIATOR | REFUSED, INITIATOR | REFUSED, INITIATOR | UNANSWERED,
    ]  # fmt: skip


def test_cic_syn_scan_refused_by_resets_is_found_and_closed_connections_are_no_scan(registry):
    """nmap -sS over 1,000 ports of one host as CIC-IDS2017 writes it: a closed port's record is the
    SYN and its reset, one packet each way and no payload, which the record's bidirectional counters
    alone would call answered. A client's 40 closed connections leave 40 tails of the same shape,
    but none saw a SYN."""
    scan = [
        cic_flow("198.51.100.7", "10.1.0.5", 40001, port, (1, 0), (1, 0), "SYN", minute=port % 3)
        for port in range(1, 1001)
    ]
    scans = [
        a for a in run(flows("cicflowmeter", cic(scan), registry), registry) if a.category == "port_scan"
    ]
    assert [a.entity.id for a in scans] == ["198.51.100.7"]
    assert scans[0].evidence["failed_pairs"] == 1000
    browsing = [
        row
        for i in range(40)
        for row in (
            cic_flow("10.1.0.5", f"203.0.113.{i}", 50000 + i, 443, (9, 700), (8, 9000), "SYN", minute=i % 4),
            {
                **cic_flow("10.1.0.5", f"203.0.113.{i}", 50000 + i, 443, (1, 0), (1, 0), "FIN", minute=i % 4),
                "ACK Flag Count": "1",
            },  # the tail: the first FIN's ACK ended the record before
        )
    ]
    alerts = run(flows("cicflowmeter", cic(browsing), registry), registry)
    assert [a for a in alerts if a.category == "port_scan"] == []


# --- nProbe biflows (NF-* datasets): one record per connection, both directions' counters --------
_NPROBE_HEADER = (
    "IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,IN_BYTES,IN_PKTS,OUT_BYTES,OUT_PKTS,"
    "TCP_FLAGS,CLIENT_TCP_FLAGS,SERVER_TCP_FLAGS,FLOW_DURATION_MILLISECONDS,FLOW_START_MILLISECONDS\n"
)


def nprobe_row(port: int, out: tuple[int, int], back: tuple[int, int], flags: tuple[int, int] | None) -> str:
    client, server = flags if flags else ("", "")
    both = (client | server) if flags else ""  # type: ignore[operator]
    return (
        f"198.51.100.7,40001,10.1.0.5,{port},6,{out[1]},{out[0]},{back[1]},{back[0]},"
        f"{both},{client},{server},0,{T0 * 1000 + port}\n"
    )


@pytest.mark.parametrize("with_flags", [True, False])
def test_nprobe_biflow_scan_reset_by_closed_ports_is_found(registry, with_flags):
    """nmap -sS against closed ports: SYN (44 bytes with MSS) and the server's RST|ACK (40 bytes) in
    one biflow record, which the reverse counters alone would call answered; the same probes
    answered by SYN-ACKs (open ports, then the scanner's RST) are no failures."""
    syn, rst_ack, syn_ack, rst = 0x02, 0x14, 0x12, 0x04
    refused = "".join(
        nprobe_row(p, (1, 44), (1, 40), (syn, rst_ack) if with_flags else None) for p in range(1000, 1030)
    )
    views = [flow_view(ev) for ev in flows("nprobe-csv", _NPROBE_HEADER + refused, registry)]
    assert set(views) == {INITIATOR | REFUSED}
    scans = [
        a
        for a in run(flows("nprobe-csv", _NPROBE_HEADER + refused, registry), registry)
        if a.category == "port_scan"
    ]
    assert [a.entity.id for a in scans] == ["198.51.100.7"]
    answered = "".join(
        nprobe_row(p, (2, 84), (1, 44), (syn | rst, syn_ack) if with_flags else None)
        for p in range(1000, 1030)
    )
    views = [flow_view(ev) for ev in flows("nprobe-csv", _NPROBE_HEADER + answered, registry)]
    assert set(views) == {INITIATOR | ANSWERED}


def test_cic_http_flood_with_its_tails_is_found(registry):
    """Hulk as CIC-IDS2017 records it: one connection per request (urllib2's ``Connection: close``),
    each a record opened by a SYN and a tail after its FIN (an ACK each way, no payload). The
    tails are no connections: counted, they would double the count and spread the byte counts."""
    rows = []
    for i in range(900):
        sport, second = 30000 + i, i // 15
        minute, sec = divmod(second, 60)
        stamp = {"Timestamp": f"7/7/2017 9:{minute:02d}:{sec:02d}"}
        rows.append(
            {**cic_flow("172.16.0.1", "10.1.0.5", sport, 80, (5, 340 + i % 40), (4, 11_900), "SYN"), **stamp}
        )
        tail = cic_flow("172.16.0.1", "10.1.0.5", sport, 80, (1, 0), (1, 0), "FIN")
        rows.append({**tail, **stamp, "ACK Flag Count": "1"})
    alerts = run(flows("cicflowmeter", cic(rows), registry), registry)
    floods = [a for a in alerts if a.detector == "dos.app_flood"]
    assert [a.entity.id for a in floods] == ["172.16.0.1"]
    assert floods[0].evidence["connections"] == 900


def test_ip_bytes_gives_payload_only_counts_their_headers() -> None:
    """CICFlowMeter counts payload only; Zeek's ``orig_ip_bytes``, NetFlow and VPC count IP bytes.
    The same 1,222-byte request in 4 or 9 packets is 1,382 or 1,582 IP bytes over IPv4 TCP."""
    base: dict[str, Any] = dict(
        id="x", ts=T0 * 1000, src_ip="10.1.0.5", dst_ip="3.80.138.201", src_port=50_000, dst_port=443
    )
    cic = [
        FlowEvent(source="cicflowmeter", proto="tcp", bytes_out=1222, packets_out=n, **base) for n in (4, 9)
    ]
    assert [ip_bytes(e) for e in cic] == [1382, 1582]
    udp6 = FlowEvent(source="cicflowmeter", proto="udp", bytes_out=100, packets_out=2,
                     **{**base, "src_ip": "2001:db8::5"})  # fmt: skip
    assert ip_bytes(udp6) == 196
    zeek = FlowEvent(source="zeek", proto="tcp", bytes_out=1382, packets_out=4, **base)
    assert ip_bytes(zeek) == 1382  # already IP bytes


def test_a_payload_only_count_is_held_to_the_ip_bar_with_its_headers() -> None:
    """A database client's pooled connection as CICFlowMeter writes it: 58 bytes of commands a packet
    (98 as IP bytes) carried data; bare headers (payload 0) did not."""
    base: dict[str, Any] = dict(
        id="x", ts=T0 * 1000, src_ip="10.6.1.13", dst_ip="10.6.1.11", src_port=59_388, dst_port=5432
    )
    pooled = FlowEvent(source="cicflowmeter", proto="tcp", bytes_out=415_944, packets_out=7171, **base)
    acks = FlowEvent(source="cicflowmeter", proto="tcp", bytes_out=0, packets_out=7171, **base)
    assert sent_payload(pooled) and not sent_payload(acks)


def test_holds_syn_reads_each_exporters_flags() -> None:
    """Whether a record holds its connection's opening SYN: Argus's source flags, NetFlow's OR-ed
    flags, CICFlowMeter's counted flags; nothing when the exporter writes no flags (Zeek)."""
    base: dict[str, Any] = dict(id="x", ts=T0 * 1000, src_ip="203.0.113.5", dst_ip="10.1.1.10", src_port=40_000,
                                dst_port=80, proto="tcp")  # fmt: skip
    argus = [
        FlowEvent(source="argus", extra={"state": state}, **base) for state in ("SPA_SA", "PA_A", "A_SA")
    ]
    assert [holds_syn(e) for e in argus] == [True, False, False]  # the server's SYN-ACK is not the opening
    assert [argus_status_record(e) for e in argus] == [
        False,
        True,
        False,
    ]  # no SYN either side: a status record
    netflow = [FlowEvent(source="netflow", extra={"tcp_flags": f}, **base) for f in (0x1B, 0x18)]
    assert [holds_syn(e) for e in netflow] == [True, False]
    assert holds_syn(FlowEvent(source="cicflowmeter", extra={"cic_flags": 0x12}, **base))
    assert not holds_syn(FlowEvent(source="zeek", extra={"conn_state": "SF"}, **base))
    assert not holds_syn(FlowEvent(source="netflow", extra={"tcp_flags": 2}, **{**base, "proto": "udp"}))


def test_whole_connection_needs_the_opening_and_the_end_in_one_record() -> None:
    """A record with its connection's SYN and its FIN or reset, by each exporter's flags; every Zeek
    record (written once the connection ended); nothing from an exporter that writes no flags."""
    base: dict[str, Any] = dict(id="x", ts=T0 * 1000, src_ip="203.0.113.5", dst_ip="10.1.1.10", src_port=40_000,
                                dst_port=80, proto="tcp")  # fmt: skip
    argus = [
        FlowEvent(source="argus", extra={"state": s}, **base)
        for s in ("FSPA_FSPA", "SPA_SA", "PA_RA", "RA_SA")
    ]
    assert [whole_connection(e) for e in argus] == [True, False, False, False]
    netflow = [FlowEvent(source="netflow", extra={"tcp_flags": f}, **base) for f in (0x1B, 0x16, 0x18, 0x11)]
    assert [whole_connection(e) for e in netflow] == [
        True,
        True,
        False,
        False,
    ]  # SYN+FIN, SYN+RST, neither, FIN
    cic = [FlowEvent(source="cicflowmeter", extra={"cic_flags": f}, **base) for f in (0x13, 0x12)]
    assert [whole_connection(e) for e in cic] == [True, False]
    assert whole_connection(FlowEvent(source="zeek", extra={"conn_state": "SF"}, **base))
    assert not whole_connection(FlowEvent(source="vpcflow", **base))  # VPC's default format has no flags
    assert not whole_connection(FlowEvent(source="zeek", **{**base, "proto": "udp"}))


def test_opened_and_closed_takes_a_cicflowmeter_record_ended_before_its_flow_timeout() -> None:
    base = FlowEvent(
        id="c1", ts=1_736_150_460_000, source="cicflowmeter", src_ip="203.0.113.5", dst_ip="10.1.1.10",
        src_port=40_000, dst_port=80, proto="tcp", duration_ms=30_000, extra={"cic_flags": 0x02},
    )  # fmt: skip
    assert opened_and_closed(base)  # its SYN, ended at the FIN before 120 s
    assert not opened_and_closed(replace(base, duration_ms=120_000))  # the timeout cut it
    assert not opened_and_closed(replace(base, extra={"cic_flags": 0x10}))  # a tail
    assert opened_and_closed(replace(base, source="zeek", extra={}))  # Zeek: every record
    assert not opened_and_closed(replace(base, source="vpcflow", extra={}))  # no flags
