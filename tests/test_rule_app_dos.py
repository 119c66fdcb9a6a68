"""dos.app_flood and dos.slow_connections: application-layer floods of short connections and slow
denial of service by held connections, on records shaped as each exporter writes them."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import pytest
from msgspec.structs import replace

from detectors.base import Batch, Detector, Finding
from detectors.config import DetectorConfig
from detectors.rules.dos.app_flood import AppFlood
from detectors.rules.dos.slow_connections import SlowConnections
from detectors.rules.dos.source_flood import SourceFlood
from detectors.samples import samples_registry
from ingest.parsers import ParseContext, parse_bytes
from ingest.schema import FlowEvent

REG = samples_registry()
T0 = 1_736_150_400_000  # a 10-minute boundary: every window below starts here
VICTIM = "10.1.1.10"  # a tenant VM of the samples registry


def flow(n: int, **kw: Any) -> FlowEvent:
    base: dict[str, Any] = {
        "id": f"f{n}", "ts": T0 + 1000, "source": "test", "tenant": "t-acme", "src_ip": "203.0.113.80",
        "dst_ip": VICTIM, "src_port": 40000 + n % 20000, "dst_port": 80, "proto": "tcp", "bytes_out": 400,
        "bytes_in": 5000, "packets_out": 5, "packets_in": 5, "duration_ms": 150,
    }  # fmt: skip
    base.update(kw)
    return FlowEvent(**base)


def run(det: Detector, events: Sequence[FlowEvent], chunk: int = 0) -> list[Finding]:
    det.bind(REG)
    events = sorted(events, key=lambda e: (e.ts, e.id))
    step = chunk or len(events) or 1
    for i in range(0, len(events), step):
        det.observe_batch(Batch(list(events[i : i + step]), REG))
    return det.close_all()


def app(cfg: DetectorConfig | None = None) -> AppFlood:
    return AppFlood(cfg or DetectorConfig.default())


def slow(cfg: DetectorConfig | None = None) -> SlowConnections:
    return SlowConnections(cfg or DetectorConfig.default())


def spread(n: int, seconds: float, **kw: Any) -> list[FlowEvent]:
    """n connection records spread evenly over ``seconds`` of the first minute."""
    return [flow(i, ts=T0 + 500 + int(i * seconds * 1000 / n), **kw) for i in range(n)]


# --- dos.app_flood ---------------------------------------------------------------------------------

_ZEEK_HEAD = (
    "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\t"
    "orig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory\torig_pkts\t"
    "orig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n"
)


def test_iot23_mirai_records_through_the_zeek_parser() -> None:
    """The IoT-23 capture 34-1 flood as Zeek wrote it: OTH, history C (bad checksums), no packet
    counted, no duration, one source port. dos.source_flood counts packets, so it sees nothing."""
    t = T0 / 1000
    rows = "".join(
        f"{t + 0.5 + i * 0.08:.6f}\tC{i}\t10.1.1.11\t65279\t123.59.209.185\t80\ttcp\t-\t-\t-\t-\tOTH\t-\t-\t0\tC\t0\t0\t0\t0\t-\n"
        for i in range(700)
    )
    out = parse_bytes("zeek", (_ZEEK_HEAD + rows).encode(), ParseContext(registry=REG))
    assert not out.dlqs and len(out.events) == 700
    events = [e for e in out.events if isinstance(e, FlowEvent)]
    assert {(e.packets_out, e.bytes_out, e.duration_ms) for e in events} == {(0, 0, 0)}
    (f,) = run(app(), events)
    assert f.entity.id == "10.1.1.11" and f.tenant == "t-acme"
    assert f.evidence["victim"] == "123.59.209.185" and f.evidence["port"] == 80
    # It names what it accuses (the device's connections to the victim), not the device's other traffic.
    assert f.evidence["destinations"] == ["123.59.209.185"] and f.evidence["sources"] == [f.entity.id]
    assert f.evidence["connections"] == 700 and f.evidence["answered"] == 0 and f.evidence["failed"] == 0
    assert run(SourceFlood(DetectorConfig.default()), events) == []


def test_per_source_threshold_is_min_connections() -> None:
    cfg = DetectorConfig.default()
    need = int(cfg.detectors["dos.app_flood"]["params"]["min_connections"])
    assert run(app(), spread(need - 1, 55)) == []
    (f,) = run(app(), spread(need, 55))
    assert f.entity.id == "203.0.113.80" and f.evidence["connections"] == need
    assert f.evidence["answered"] == need and "application-layer flood" in f.summary
    assert f.first_seen >= T0 and f.last_seen < T0 + 60_000 and len(f.event_ids) == 5


def test_a_window_is_a_minute_and_chunking_does_not_matter() -> None:
    # 600 connections in the first minute, 300 in the second
    events = spread(600, 59) + [flow(600 + i, ts=T0 + 60_500 + i * 100) for i in range(300)]
    whole = run(app(), events)
    assert [f.evidence["connections"] for f in whole] == [600]
    assert [f.evidence for f in run(app(), events, chunk=37)] == [f.evidence for f in whole]


def test_heavy_tailed_byte_counts_are_users_not_a_tool() -> None:
    sizes = [1_200, 3_000, 15_000, 60_000, 250_000, 900_000, 3_000_000]  # CV ~ 1.9
    nat = [
        flow(i, ts=T0 + 500 + i * 80, src_ip="10.1.1.12", dst_ip="93.184.216.34", dst_port=443,
             bytes_out=500, bytes_in=sizes[i % 7], duration_ms=200 + 1000 * (i % 7))
        for i in range(700)
    ]  # fmt: skip
    assert run(app(), nat) == []
    hulk = [flow(i, ts=T0 + 500 + i * 80, bytes_out=300 + 40 * (i % 6)) for i in range(700)]  # random queries
    (f,) = run(app(), hulk)
    assert 0 < f.evidence["bytes_cv"] < 0.1


def test_the_byte_spread_is_over_whole_connections_where_most_are() -> None:
    """siege's keep-alive flood against Apache as Argus wrote it (the tool lab): ~2,000 whole short
    connections a minute, and a few dozen opening records cut by the 5 s status interval, each
    holding 5 s of requests (127 kB). Over all records the bytes spread past a NAT's bar (CV 1.78
    there); over the whole connections they are a tool's."""
    argus = dict(source="argus", duration_ms=400, packets_out=6, packets_in=5)
    whole = [
        flow(i, ts=T0 + 500 + i * 28, bytes_out=300, bytes_in=150 + 20 * (i % 5), extra={"state": "SPA_FSPA"},
             **argus)
        for i in range(2000)
    ]  # fmt: skip
    cut = [
        flow(3000 + i, ts=T0 + 900 + i * 900, bytes_out=12_000, bytes_in=115_000, extra={"state": "SPA_SPA"},
             **dict(argus, duration_ms=4_990))
        for i in range(60)
    ]  # fmt: skip
    (f,) = run(app(), whole + cut)
    assert f.evidence["connections"] == 2060 and f.evidence["whole_connections"] == 2000
    assert f.evidence["bytes_cv"] < 0.1
    # a source whose records are mostly not whole is judged on all of them, as before
    mixed = [
        flow(5000 + i, ts=T0 + 600 + i * 90, bytes_out=300, bytes_in=(150, 115_000)[i % 2],
             extra={"state": "SPA_SPA"}, **argus)
        for i in range(600)
    ]  # fmt: skip
    assert run(app(), whole[:100] + mixed) == []
    assert len(run(app(), whole + mixed)) == 1
    # records without flags (VPC's default format, this test's own source): all records
    assert run(app(), [replace(e, source="test", extra={}) for e in whole + cut]) == []


def test_long_records_are_not_flood_connections() -> None:
    assert run(app(), spread(800, 55, duration_ms=20_000)) == []


def _goldeneye_rows(workers: int, sockets: int, round_s: int, rounds: int, request: int) -> str:
    """GoldenEye's loop (Striker.run): each worker opens ``sockets`` connections, sends one request
    of about ``request`` bytes on each, reads every response and closes them all, so against a
    server it saturates each connection is held about as long as the round. Zeek conn rows: 6
    packets from the client (handshake, request, ACKs, FIN), a 4 kB page back."""
    t, rows, port = T0 / 1000 + 1, [], 1024
    for w in range(workers):
        for r in range(rounds):
            start = t + w * 0.05 + r * round_s
            for i in range(sockets):
                port += 1
                held = round_s - i * 0.002
                data = request + i % 7 * 40
                rows.append(f"{start + i * 0.002:.6f}\tG{port}\t198.51.100.9\t{port}\t{VICTIM}\t80\ttcp\thttp\t"
                            f"{held:.6f}\t{data}\t4000\tSF\t-\t-\t0\tShADadFf\t6\t{data + 6 * 52}\t6\t"
                            f"{4000 + 6 * 52}\t-\n")  # fmt: skip
    return "".join(rows)


def test_a_saturated_servers_queue_of_one_request_connections_is_a_flood() -> None:
    """A flood that works makes its own connections long: GoldenEye's 500 a round wait for the
    round's last answer (here 30 s rounds, 2,000 connections a minute). Held beyond max_duration_ms
    they were no connection of a flood, and no rule raised it; a whole connection (Zeek writes
    them once they end) that carried one request's data still is one."""
    zeek = _ZEEK_HEAD + _goldeneye_rows(workers=2, sockets=500, round_s=30, rounds=4, request=600)
    events = [e for e in parse_bytes("zeek", zeek.encode(), ParseContext(registry=REG)).events
              if isinstance(e, FlowEvent)]  # fmt: skip
    assert min(e.duration_ms for e in events) > 28_000
    found = run(app(), events)
    assert found and {f.entity.id for f in found} == {"198.51.100.9"}
    assert max(f.evidence["connections"] for f in found) >= 1_000
    # keep-alive sessions held as long, each five requests: clients served, not a flood's connections
    sessions = _ZEEK_HEAD + _goldeneye_rows(workers=2, sockets=500, round_s=30, rounds=4, request=3_000)
    kept_alive = [e for e in parse_bytes("zeek", sessions.encode(), ParseContext(registry=REG)).events
                  if isinstance(e, FlowEvent)]  # fmt: skip
    assert run(app(), kept_alive) == []


def test_a_held_one_request_connection_needs_its_whole_record() -> None:
    held = {"duration_ms": 20_000, "bytes_out": 600 + 6 * 52, "packets_out": 6}
    # NetFlow with its OR of flags (SYN, ACK, PSH, FIN): the whole connection, one request
    (f,) = run(
        app(), spread(800, 55, source="netflow", packets_in=0, bytes_in=0, extra={"tcp_flags": 27}, **held)
    )
    assert f.evidence["connections"] == 800
    # no FIN yet (an active timeout cut it), or no flags at all (VPC's default format): not known whole
    assert run(app(), spread(800, 55, source="netflow", extra={"tcp_flags": 26}, **held)) == []
    assert run(app(), spread(800, 55, source="vpcflow", packets_in=0, bytes_in=0, extra={}, **held)) == []
    # CICFlowMeter counts the first packet's flags only (a SYN) and ends a record at the first FIN or
    # its 120 s flow timeout: shorter, the record ran to the close; payload bytes, one request
    cic = {"source": "cicflowmeter", "bytes_out": 600, "packets_out": 6, "extra": {"cic_flags": 2}}
    (f,) = run(app(), spread(800, 55, **{**cic, "duration_ms": 20_000}))
    assert f.evidence["connections"] == 800
    assert run(app(), spread(800, 55, **{**cic, "duration_ms": 120_000})) == []


def test_a_handful_of_sources_names_the_victim_and_the_sources() -> None:
    sources = ["198.51.100.21", "198.51.100.22", "198.51.100.23"]
    events = [flow(i, ts=T0 + 500 + i * 70, src_ip=sources[i % 3], dst_port=8080) for i in range(750)]
    (f,) = run(app(), events)
    assert f.entity.id == VICTIM and sorted(f.evidence["sources"]) == sources
    assert f.evidence["destinations"] == [VICTIM]
    assert f.evidence["connections"] == 750 and f.evidence["top_share"] == 1.0
    # the same three among 2,000 users of the service: no longer "most of them"
    users = [flow(10_000 + i, ts=T0 + 700 + i * 25, src_ip=f"100.64.{i // 250}.{i % 250 + 1}", dst_port=8080)
             for i in range(2000)]  # fmt: skip
    assert run(app(), events + users) == []


def test_a_fleet_of_health_checkers_is_no_flood() -> None:
    events = [flow(i, ts=T0 + 500 + i * 75, src_ip=f"35.191.{i // 200}.{i % 200 + 1}", bytes_out=160, bytes_in=420)
              for i in range(720)]  # fmt: skip
    assert run(app(), events) == []


def test_one_way_records_responses_and_continuations() -> None:
    """VPC/NetFlow: the client's records count, the server's response records never do, and a record
    whose flags hold no SYN continues a connection cut by a timeout."""
    clients = [flow(i, ts=T0 + 500 + i * 80, source="netflow", packets_in=0, bytes_in=0, extra={"tcp_flags": 27})
               for i in range(700)]  # fmt: skip
    (f,) = run(app(), clients)
    assert f.evidence["connections"] == 700
    responses = [
        flow(i, ts=T0 + 500 + i * 80, source="vpcflow", src_ip=VICTIM, dst_ip="203.0.113.80", src_port=80,
             dst_port=40000 + i, packets_in=0, bytes_in=0)
        for i in range(700)
    ]  # fmt: skip
    assert run(app(), responses) == []
    continuations = [flow(i, ts=c.ts, source="netflow", packets_in=0, bytes_in=0, packets_out=1, bytes_out=64,
                          extra={"tcp_flags": 24}) for i, c in enumerate(clients)]  # fmt: skip
    assert run(app(), continuations) == []


def test_argus_status_records_of_held_connections_are_not_new_connections() -> None:
    """slowhttptest's slow POST bodies as Argus writes them (5 s status interval, the tool lab):
    each of 60 connections an opening record with the SYN, then a status record every 5 s without
    one. Counted as connections they were 660 a minute, a flood; the 60 openings are none."""
    argus = dict(source="argus", duration_ms=1_000, bytes_out=300, bytes_in=120, packets_out=3, packets_in=2)
    opened = [
        flow(c, ts=T0 + 500 + c * 100, extra={"state": "SPA_SA", "dir": "->"}, **argus) for c in range(60)
    ]
    status = [
        flow(c, id=f"s{c}-{k}", ts=T0 + 500 + c * 100 + k * 5_000, extra={"state": "PA_A", "dir": "->"}, **argus)
        for c in range(60) for k in range(1, 11)
    ]  # fmt: skip
    assert run(app(), opened + status) == []
    # the same records each with its SYN are new connections: a flood of 660
    (f,) = run(app(), [replace(e, extra={"state": "SPA_SA", "dir": "->"}, src_port=1024 + i)
                       for i, e in enumerate(opened + status)])  # fmt: skip
    assert f.evidence["connections"] == 660


def test_other_ports_allowlists_and_provider_services() -> None:
    assert run(app(), spread(700, 55, dst_port=22)) == []
    assert run(app(), spread(700, 55, proto="udp")) == []
    site = DetectorConfig.default().merged(
        {"detectors": {"dos.app_flood": {"params": {"allowed_sources": ["203.0.113.80"]}}}}
    )
    assert run(app(site), spread(700, 55)) == []
    imds = app()
    assert run(imds, spread(700, 55, src_ip=VICTIM, dst_ip="169.254.169.254", dst_port=80)) == []
    assert imds.counters["provider_service"] == 700


def test_app_flood_sliding_windows_and_pickling() -> None:
    sliding = DetectorConfig.default().merged(
        {"detectors": {"dos.app_flood": {"window_ms": 60000, "slide_ms": 30000}}}
    )
    events = spread(700, 55)
    found = run(app(sliding), events)
    assert len(found) == 1 and found[0].evidence["connections"] == 700
    det = app()
    det.bind(REG)
    det.observe_batch(Batch(list(events[:350]), REG))
    clone: AppFlood = pickle.loads(pickle.dumps(det))
    clone.bind(REG)
    for d in (det, clone):
        d.observe_batch(Batch(list(events[350:]), REG))
    assert [f.evidence for f in det.close_all()] == [f.evidence for f in clone.close_all()]


# --- dos.slow_connections --------------------------------------------------------------------------


def held(n: int, dur_ms: int, **kw: Any) -> FlowEvent:
    kw.setdefault("bytes_out", 300)
    kw.setdefault("bytes_in", 0)
    kw.setdefault("duration_ms", dur_ms)
    kw.setdefault("source", "zeek")
    kw.setdefault("extra", {"conn_state": "RSTR", "history": "ShADadR"})
    return flow(n, **kw)


def test_slowloris_against_apache_reqtimeout_steady_state() -> None:
    """150 sockets, each cut by mod_reqtimeout after ~21.5 s and reopened at once, over 300 s:
    about 2,090 records of 21.5 s; Little's law gives back the 150 sockets."""
    events = []
    n = 0
    for sock in range(150):
        end = T0 + 21_500 + sock * 130
        while end < T0 + 300_000:
            events.append(held(n, 21_500, ts=end, src_port=30000 + n % 30000, src_ip="203.0.113.90"))
            n += 1
            end += 21_500
    (f,) = run(slow(), events)
    assert f.entity.id == "203.0.113.90" and f.evidence["victim"] == VICTIM and f.evidence["port"] == 80
    assert 135 <= f.evidence["held"] <= 150
    assert f.evidence["bytes_per_s_per_connection"] < 20


def test_held_threshold_uses_time_clipped_to_the_window() -> None:
    # records ending in the window, each covering more than the whole window: one connection each
    assert run(slow(), [held(i, 900_000, ts=T0 + 250_000 + i * 100) for i in range(49)]) == []
    (f,) = run(slow(), [held(i, 900_000, ts=T0 + 250_000 + i * 100) for i in range(50)])
    assert f.evidence["held"] == 50.0 and f.evidence["records"] == 50


def test_busy_and_short_connections_are_not_held() -> None:
    busy = [
        held(i, 280_000, ts=T0 + 290_000, bytes_out=5_000, bytes_in=60_000) for i in range(200)
    ]  # 232 B/s
    assert run(slow(), busy) == []
    short = [held(i, 10_000, ts=T0 + 10_000 + i * 100) for i in range(2_500)]  # under min_held_ms
    assert run(slow(), short) == []


def test_never_established_connections_are_not_held() -> None:
    s0 = [held(i, 63_000, ts=T0 + 100_000 + i * 100, extra={"conn_state": "S0", "history": "S"}, packets_in=0)
          for i in range(300)]  # fmt: skip
    assert run(slow(), s0) == []
    rej = [
        held(i, 63_000, ts=T0 + 100_000 + i * 100, extra={"conn_state": "REJ", "history": "Sr"})
        for i in range(300)
    ]
    assert run(slow(), rej) == []


def _netflow_fragments(conns: int, lines: int, **kw: Any) -> list[FlowEvent]:
    """slowloris seen through a 15 s inactive timeout: one 1-packet record per line per socket."""
    kw.setdefault("extra", {"tcp_flags": 24})
    return [
        flow(k * conns + c, ts=T0 + 1_000 + k * 15_000 + c * 10, source=kw.get("source", "netflow"),
             src_ip="198.51.100.91", src_port=51000 + c, dst_port=443, bytes_out=64, bytes_in=0, packets_out=1,
             packets_in=0, duration_ms=0, extra=kw["extra"])
        for k in range(lines) for c in range(conns)
    ]  # fmt: skip


def test_netflow_fragments_of_one_connection_are_joined() -> None:
    (f,) = run(slow(), _netflow_fragments(150, 12), chunk=200)
    assert f.entity.id == "198.51.100.91" and f.evidence["records"] == 150  # one joined piece per socket
    assert f.evidence["held"] == pytest.approx(150 * 165 / 300, abs=0.5)
    # Zeek writes whole connections: its short records are never fragments
    assert run(slow(), _netflow_fragments(150, 12, source="zeek", extra={"conn_state": "SF"})) == []
    # and so does Suricata's EVE flow record (one per flow, at its end or timeout)
    assert run(slow(), _netflow_fragments(150, 12, source="suricata", extra={"tcp_flags": 24})) == []
    # only SYNs in the flags: connection attempts retried, never held
    assert run(slow(), _netflow_fragments(150, 12, extra={"tcp_flags": 2})) == []
    # a single line per socket spans nothing
    assert run(slow(), _netflow_fragments(600, 1)) == []


def _argus_slow_headers(conns: int) -> bytes:
    """slowhttptest -H against nginx as Argus writes it with its shipped 5 s status interval (``ra
    -u -n -Z b -c ,``, the tool lab's records): the opening record holds the handshake and the
    partial request (3 client packets), then one header line a record every 10 s, and nginx's
    close at its 60 s ``client_header_timeout``."""
    head = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,SrcPkts,DstPkts,SrcBytes,DstBytes\n"
    pieces = [(0.0, "SPA_SA", 3, 2, 481, 140)] + [(5.0 + 10 * k, "PA_A", 1, 1, 110, 66) for k in range(6)]
    pieces.append((60.0, "FA_FA", 1, 2, 66, 132))
    lines = [
        f"{T0 / 1000 + 1 + c * 0.02 + at:.6f},0.000300,tcp,203.0.113.21,{40000 + c},   ->,{VICTIM},80,"
        f"{state},{sp},{dp},{sb},{db}\n"
        for c in range(conns) for at, state, sp, dp, sb, db in pieces
    ]  # fmt: skip
    return (head + "".join(sorted(lines))).encode()


def _argus_events(conns: int) -> list[FlowEvent]:
    parsed = parse_bytes("argus", _argus_slow_headers(conns), ParseContext(registry=REG)).events
    return [e for e in parsed if isinstance(e, FlowEvent)]


def test_argus_status_records_of_a_held_connection_count_from_its_opening() -> None:
    """52 connections held 60 s each, at once. Joined from the first one-packet record only, each
    was held 55 s (the tool lab's 300 sockets: 49.2 on average over the window, before 1.3.0)."""
    events = _argus_events(52)
    (f,) = run(slow(), events)
    assert f.entity.id == "203.0.113.21" and f.evidence["held_at_once"] == pytest.approx(52.0, abs=0.5)
    assert f.evidence["held"] == pytest.approx(52 * 60 / 300, abs=0.1)
    # an opening record with more than the handshake besides a fragment's packets is no fragment
    chatty = [replace(e, packets_out=5) if e.extra["state"].startswith("S") else e for e in events]
    (g,) = run(slow(), chatty)
    assert g.evidence["held"] == pytest.approx(52 * 55 / 300, abs=0.1)
    assert run(slow(), _argus_events(48)) == []  # under the bar, at once as on average


def test_argus_held_pieces_lie_after_their_stamp() -> None:
    """Argus stamps a record with its start (every other exporter with its end): 60 connections
    opened in the window's first 6 s and held 40 s each count the same in Argus's records as in
    Zeek's. Taken as ending at their stamp (before 1.4.1), Argus's pieces began before the window
    and were cut at its start: the first connection's had no length left, 59 at once."""
    events = [
        held(i, 40_000, ts=T0 + i * 100, source="argus", src_ip="203.0.113.25", src_port=36000 + i,
             extra={"state": "SPA_SA", "dir": "->"})
        for i in range(60)
    ]  # fmt: skip
    (f,) = run(slow(), events)
    assert f.entity.id == "203.0.113.25" and f.evidence["held_at_once"] == 60
    # the same connections as end-stamped records: held at once as much
    ended = [replace(e, ts=e.ts + e.duration_ms, source="zeek", extra={"conn_state": "RSTR"}) for e in events]
    (g,) = run(slow(), ended)
    assert g.evidence["held_at_once"] == 60


def test_a_burst_held_at_once_is_found_though_it_is_short_of_the_window() -> None:
    """slowhttptest -H -c 300 against Apache with Debian's mod_reqtimeout (header=20-40): 300 sockets
    opened in 6 s, the 150 that got a worker cut after 20 s, the others after 38 s, none reopened
    (the tool lab, NetFlow): 29 held on average over the 5-minute window, 300 at once."""
    events = [
        held(i, dur, ts=T0 + 60_000 + i * 20 + dur, src_ip="203.0.113.24", src_port=35000 + i)
        for i in range(300)
        for dur in ((20_000 if i < 150 else 38_000),)
    ]
    (f,) = run(slow(), events)
    assert f.entity.id == "203.0.113.24" and f.evidence["held"] == pytest.approx(29.0, abs=0.1)
    assert f.evidence["held_at_once"] >= 280
    # 45 held 20 s at once are under the bar however the bins fall
    assert run(slow(), events[:45]) == []


def test_a_flood_source_whose_few_records_look_held_is_no_holder() -> None:
    """softflowd keeps a finished flow in its cache, so two of ab's connections on a reused source
    port 15-19 s apart are one record (10 packets, ~700 B over 17 s): in the tool lab's NetFlow,
    4,019 such records among 13,169 whole short connections of ab's flood against Apache."""
    flood = dict(source="netflow", extra={"tcp_flags": 0x1B}, src_ip="203.0.113.36", bytes_in=0, packets_in=0)
    merged = [
        held(i, 17_000, ts=T0 + 30_000 + i * 40, bytes_out=692, packets_out=10, src_port=20000 + i, **flood)
        for i in range(1_000)
    ]
    whole = [flow(5_000 + i, ts=T0 + 30_000 + i * 10, src_port=30000 + i, **flood) for i in range(3_000)]
    (f,) = run(slow(), merged)  # alone, they would be held connections
    assert f.entity.id == "203.0.113.36" and f.evidence["whole_connections_not_held"] == 0
    assert run(slow(), merged + whole) == []
    # a holder's few whole connections (slowhttptest's probe of the service) do not matter
    (g,) = run(slow(), merged + whole[:50])
    assert g.evidence["whole_connections_not_held"] == 50


def test_slow_handful_and_many_single_holders() -> None:
    sources = ["198.51.100.31", "198.51.100.32", "198.51.100.33"]
    hand = [held(i, 300_000, ts=T0 + 299_000, src_ip=sources[i % 3], src_port=40000 + i) for i in range(60)]
    (f,) = run(slow(), hand)
    assert f.entity.id == VICTIM and sorted(f.evidence["sources"]) == sources and f.evidence["held"] == 60.0
    # 200 browsers holding a websocket each: many holders, none with a share
    users = [held(1000 + i, 300_000, ts=T0 + 299_000, src_ip=f"100.64.0.{i + 1}", bytes_out=900, bytes_in=1500)
             for i in range(200)]  # fmt: skip
    assert run(slow(), users) == []
    assert run(slow(), hand + users) == []


def test_slow_ports_allowlists_sliding_and_pickling() -> None:
    events = [held(i, 300_000, ts=T0 + 299_000, src_port=40000 + i) for i in range(80)]
    assert len(run(slow(), events)) == 1
    assert (
        run(slow(), [held(i, 300_000, ts=T0 + 299_000, dst_port=22, src_port=40000 + i) for i in range(80)])
        == []
    )
    site = DetectorConfig.default().merged(
        {"detectors": {"dos.slow_connections": {"params": {"allowed_destinations": [VICTIM]}}}}
    )
    assert run(slow(site), events) == []
    sliding = DetectorConfig.default().merged(
        {"detectors": {"dos.slow_connections": {"window_ms": 300000, "slide_ms": 60000}}}
    )
    frags = _netflow_fragments(150, 12)
    # 150 held at once from T0 + 1 s to T0 + 166 s: raised by the first window to close with them in
    # it (a minute in), and again by the first one after its span (one alert per window span)
    assert [f.window.start - T0 for f in run(slow(sliding), frags)] == [-240_000, 60_000]
    det = slow()
    det.bind(REG)
    det.observe_batch(Batch(list(frags[:900]), REG))
    clone: SlowConnections = pickle.loads(pickle.dumps(det))
    clone.bind(REG)
    for d in (det, clone):
        d.observe_batch(Batch(list(frags[900:]), REG))
    assert [f.evidence for f in det.close_all()] == [f.evidence for f in clone.close_all()]


# --- dos.app_flood: reverse proxies and load balancers --------------------------------------------

PROXY = "10.1.1.5"  # a tenant VM running nginx in front of VICTIM


def _front(clients: int, proxy: str = PROXY) -> list[FlowEvent]:
    """Internet clients' answered HTTPS sessions at the proxy, keep-alive ones among them (30 s)."""
    return [
        flow(50_000 + i, ts=T0 + 2000 + i * 100, src_ip=f"198.51.100.{1 + i}", dst_ip=proxy, dst_port=443,
             duration_ms=30_000 if i % 2 else 400, packets_out=12, packets_in=14, bytes_out=1800, bytes_in=24_000)
        for i in range(clients)
    ]  # fmt: skip


def _upstream(n: int, dst: str = VICTIM, proxy: str = PROXY) -> list[FlowEvent]:
    """nginx's default upstream: one short connection per request, alike sizes (a JSON API)."""
    return [
        flow(i, ts=T0 + 500 + i * 50_000 // n, src_ip=proxy, dst_ip=dst, dst_port=8080, bytes_in=5000 + i % 7)
        for i in range(n)
    ]


def test_a_tenant_reverse_proxy_that_serves_clients_is_no_flood_of_its_backend() -> None:
    det = app()
    assert not run(det, _front(30) + _upstream(900))
    assert det.counters.get("forwarder") == 1
    # the same upstream traffic from a source that serves no one is a tool's flood
    assert len(run(app(), _upstream(900))) == 1
    # too few clients served, or the bar off: raised
    assert len(run(app(), _front(9) + _upstream(900))) == 1
    off = DetectorConfig.default().merged(
        {"detectors": {"dos.app_flood": {"params": {"forwarder_min_clients": 0}}}}
    )
    assert len(run(app(off), _front(30) + _upstream(900))) == 1
    # a flood of the backend beside the proxy's traffic is judged on its own and raised
    tool = [flow(10_000 + i, ts=T0 + 500 + i * 80, dst_port=8080) for i in range(700)]
    (found,) = run(app(), _front(30) + _upstream(900) + tool)
    assert found.evidence["sources"] == ["203.0.113.80"] and found.evidence["service_connections"] == 700


def test_a_busy_web_server_flooding_outside_its_tenant_is_raised() -> None:
    outside = "198.51.100.200"  # a compromised site's flood script hitting an outside victim
    findings = run(app(), _front(30) + _upstream(900, dst=outside))
    assert [f.evidence["victim"] for f in findings] == [outside]


def test_load_balancer_nodes_together_are_forwarders() -> None:
    nodes = ["10.1.0.20", "10.1.0.21", "10.1.0.22"]
    events: list[FlowEvent] = []
    for k, node in enumerate(nodes):
        events += [
            flow(k * 10_000 + e_i, ts=e.ts, src_ip=f"203.0.{113 - k}.{1 + e_i}", dst_ip=node, dst_port=443,
                 duration_ms=e.duration_ms)
            for e_i, e in enumerate(_front(12, node))
        ]  # fmt: skip
        events += [flow(100_000 * (k + 1) + i, ts=e.ts, src_ip=node, dst_ip=VICTIM, dst_port=80)
                   for i, e in enumerate(spread(300, 50))]  # fmt: skip
    det = app()
    assert not run(det, events)
    assert det.counters.get("forwarder") == 1
    # without their front records (a managed balancer the feed does not see): raised, allowed_sources is the remedy
    assert len(run(app(), [e for e in events if e.src_ip in nodes])) == 1


def test_the_clients_served_survive_a_pickle_and_a_1_1_state() -> None:
    det = app()
    det.bind(REG)
    det.observe_batch(Batch(list(_front(12)), REG))
    restored = pickle.loads(pickle.dumps(det))
    restored.bind(REG)  # as the engine does on a restore: the registry is not pickled
    restored.observe_batch(Batch(list(_upstream(900)), REG))
    assert not restored.close_all()
    from detectors.rules.dos.app_flood import ServiceState

    old = ServiceState()
    old.__setstate__((3, {}))  # a 1.1.0 snapshot
    assert (old.total, old.clients) == (3, None)
    older = ServiceState()
    older.__setstate__((3, {"203.0.113.80": [3, 3, 0, 900, 270_000, T0, T0, ["f1"]]}, None))  # 1.3.0's
    assert older.by_src["203.0.113.80"][8:] == [0, 0, 0]  # no whole connections known: all records
