"""dos.source_flood's second bar: TCP packets to one address and port that never answered, counted
only where the record itself says nothing came back (the Mirai burst and its look-alikes are in the
rule's samples)."""

from __future__ import annotations

import pickle

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.dos.source_flood import FloodState, SourceFlood
from detectors.samples import samples_registry
from detectors.state import TopCounts
from ingest.schema import FlowEvent

T0 = 1_736_143_200_000
VICTIM = "198.51.100.80"


def _syn_record(source: str, i: int, extra: dict[str, object], dst_port: int, packets_in: int) -> FlowEvent:
    return FlowEvent(
        id=f"{source}-{i}", ts=T0 + 1000 * i, source=source, tenant="t-acme", src_ip="10.1.1.10",
        dst_ip=VICTIM, src_port=40000 + i, dst_port=dst_port, proto="tcp", bytes_out=40_000,
        bytes_in=40 * packets_in, packets_out=1000, packets_in=packets_in, duration_ms=900, extra=extra,
    )  # fmt: skip


def _syns(
    source: str, extra: dict[str, object], *, dst_port: int = 63798, packets_in: int = 0
) -> list[FlowEvent]:
    """20 records of 1,000 SYNs, one a second, from a tenant VM to one address and port."""
    return [_syn_record(source, i, extra, dst_port, packets_in) for i in range(20)]


def _alerts(flows: list[FlowEvent], params: dict[str, object] | None = None) -> list[Alert]:
    cfg = DetectorConfig.default().merged({"detectors": {"dos.source_flood": {"params": params or {}}}})
    det = SourceFlood(cfg)
    return DetectionEngine([det], DetectionContext(samples_registry(), cfg), strict=True).run(flows)


def test_unanswered_syns_to_one_port_raise_below_the_packet_bar() -> None:
    alerts = _alerts(_syns("zeek", {"conn_state": "S0", "history": "S"}))
    assert len(alerts) == 1
    evidence = alerts[0].evidence
    assert (evidence["victim"], evidence["victim_port"], evidence["unanswered_tcp_packets"]) == (
        VICTIM,
        63798,
        20_000,
    )
    assert "never answered" in alerts[0].summary
    assert not _alerts(_syns("zeek", {"conn_state": "S0", "history": "S"}), {"min_unanswered_tcp_packets": 0})


def test_netflow_records_with_a_syn_and_no_ack_count_as_unanswered() -> None:
    # NetFlow's flags are the OR of every packet's: no ACK means no SYN-ACK was ever acknowledged
    assert len(_alerts(_syns("netflow", {"tcp_flags": 0x02}))) == 1
    assert len(_alerts(_syns("netflow", {"tcp_flags": 0x06}))) == 1  # SYN and a raw tool's kernel RST
    assert not _alerts(_syns("netflow", {"tcp_flags": 0x1A}))  # SYN, PSH, ACK: an established connection


def test_answered_or_one_way_records_keep_the_packet_bar() -> None:
    # the service answered: a busy connection's small packets, not a flood below 50,000
    assert not _alerts(_syns("zeek", {"conn_state": "SF", "history": "ShADadFf"}, packets_in=900))
    # VPC Flow Logs never report a bare ACK: their SYN-only flags cannot say the attempt failed
    assert not _alerts(_syns("vpcflow", {"tcp_flags": 2}))


def test_the_silent_ports_merge_and_a_1_3_state_restores_without_them() -> None:
    det = SourceFlood(DetectorConfig.default())
    into, other = FloodState(64), FloodState(64)
    other.silent = TopCounts(64)
    other.silent.add((VICTIM, 80), 7)
    det.merge(into, other)
    assert into.silent is not None and into.silent.counts == {(VICTIM, 80): 7}
    old = FloodState(64)
    old.__setstate__(into.__getstate__()[:4])  # a snapshot written by version 1.3.0
    assert old.silent is None
    assert pickle.loads(pickle.dumps(into)).silent.counts == {(VICTIM, 80): 7}


def _stream(
    source: str, extra: dict[str, object], *, bytes_per_packet: int, packets_in: int
) -> list[FlowEvent]:
    """An app server's pooled connection to a cache at 1,200 packets/s: six records of one 5-tuple
    in one minute, 12,000 packets each (72,000, above the 50,000 bar)."""
    return [
        FlowEvent(
            id=f"{source}-{i}",
            ts=T0 + 5_000 + 9_000 * i,
            source=source,
            tenant="t-acme",
            src_ip="10.1.1.10",
            dst_ip="10.1.1.20",
            src_port=51000,
            dst_port=6379,
            proto="tcp",
            bytes_out=12_000 * bytes_per_packet,
            bytes_in=packets_in * 140,
            packets_out=12_000,
            packets_in=packets_in,
            duration_ms=10_000,
            extra=extra,
        )
        for i in range(6)
    ]


def test_a_connection_the_service_took_and_the_client_sent_data_in_is_no_flood() -> None:
    # Redis commands and their replies, ~100 bytes a packet both ways (Zeek: established, data each way)
    served: dict[str, object] = {"conn_state": "S1", "history": "ShADad"}
    assert not _alerts(_stream("zeek", served, bytes_per_packet=100, packets_in=12_000))
    # NetFlow's client record alone (flags SYN, ACK, PSH; its replies a record of their own)
    assert not _alerts(_stream("netflow", {"tcp_flags": 0x1A}, bytes_per_packet=100, packets_in=0))
    cfg = DetectorConfig.default()
    det = SourceFlood(cfg)
    engine = DetectionEngine([det], DetectionContext(samples_registry(), cfg), strict=True)
    engine.run(_stream("zeek", served, bytes_per_packet=100, packets_in=12_000))
    assert det.counters["served_connection"] == 6


def test_headers_only_are_counted_even_when_the_service_answered() -> None:
    # a SYN or ACK flood at an open port reusing one 5-tuple: SYN-ACKs come back, nothing is carried
    answered: dict[str, object] = {"conn_state": "S1", "history": "ShA"}
    alerts = _alerts(_stream("zeek", answered, bytes_per_packet=40, packets_in=12_000))
    assert len(alerts) == 1 and alerts[0].evidence["packets_to_victim"] == 72_000
    # data the service never took (no handshake seen: Zeek OTH) is counted at the packet bar too
    assert (
        len(
            _alerts(
                _stream("zeek", {"conn_state": "OTH", "history": "D"}, bytes_per_packet=100, packets_in=0)
            )
        )
        == 1
    )


def _one_way(
    source: str, src: str, dst: str, sport: int, dport: int, packets: int, size: int, flags: int
) -> FlowEvent:
    return FlowEvent(
        id=f"{source}-{src}-{sport}", ts=T0 + 59_000, source=source, tenant="t-acme", src_ip=src, dst_ip=dst,
        src_port=sport, dst_port=dport, proto="tcp", bytes_out=packets * size, packets_out=packets,
        duration_ms=58_000, extra={"tcp_flags": flags},
    )  # fmt: skip


def _download(
    source: str, client_flags: int, server_flags: int, data_packet_bytes: int = 1500
) -> list[FlowEvent]:
    """A VM's 100 Mbit/s download as one-way records: its 250,000 bare ACKs in a minute (52 B), and
    the server's 500,000 data packets, a record of their own."""
    return [
        _one_way(source, "10.1.1.10", "151.101.1.1", 40000, 443, 250_000, 52, client_flags),
        _one_way(source, "151.101.1.1", "10.1.1.10", 443, 40000, 500_000, data_packet_bytes, server_flags),
    ]


def test_a_downloads_acknowledgements_in_one_way_records_are_no_flood() -> None:
    # VPC Flow Logs report SYN for the client and SYN-ACK for the server; NetFlow ORs every flag
    for source, client, server in (("vpcflow", 0x02, 0x12), ("netflow", 0x1A, 0x1A)):
        flows = _download(source, client, server)
        assert not _alerts(flows), source
        assert not _alerts(flows[::-1]), source  # the server's record first
    cfg = DetectorConfig.default()
    det = SourceFlood(cfg)
    DetectionEngine([det], DetectionContext(samples_registry(), cfg), strict=True).run(
        _download("vpcflow", 2, 18)
    )
    assert det.counters["download_acks"] == 1


def test_the_same_acks_without_a_download_back_are_a_flood() -> None:
    # an ACK flood on one 5-tuple: nothing comes back, or only bare resets
    ack_flood = _download("vpcflow", 0x02, 0x12)[:1]
    assert len(_alerts(ack_flood)) == 1
    answered_by_resets = _download("netflow", 0x10, 0x04, data_packet_bytes=40)
    alerts = _alerts(answered_by_resets)
    assert len(alerts) == 1 and alerts[0].evidence["packets_to_victim"] == 250_000


def test_held_records_and_downloads_merge_and_a_1_5_state_restores_without_them() -> None:
    det = SourceFlood(DetectorConfig.default())
    into, other = FloodState(64), FloodState(64)
    other.held = {(40000, "151.101.1.1", 443, "tcp"): [100, 5200]}
    other.bulk_in = {(40000, "151.101.1.1", 443, "tcp"): 150_000}
    det.merge(into, other)
    det.merge(into, other)
    assert into.held == {(40000, "151.101.1.1", 443, "tcp"): [200, 10_400]}
    assert into.bulk_in == {(40000, "151.101.1.1", 443, "tcp"): 300_000}
    old = FloodState(64)
    old.__setstate__(into.__getstate__()[:5])  # a snapshot written by version 1.5.0
    assert old.held is None and old.bulk_in is None
    assert pickle.loads(pickle.dumps(into)).held == into.held


def _icmp_hour(packets_per_s: int, size: int) -> list[FlowEvent]:
    """One ICMP echo flood as the CTU-13 Argus files write it: a record an hour long (its time is
    its start), then one to close the window after it."""
    hour = 3_600_000
    flood = FlowEvent(
        id="argus-icmp", ts=T0, source="argus", tenant="t-acme", src_ip="10.1.1.10", dst_ip=VICTIM,
        proto="icmp", bytes_out=packets_per_s * 3600 * size, packets_out=packets_per_s * 3600,
        duration_ms=hour,
    )  # fmt: skip
    later = FlowEvent(id="later", ts=T0 + 2 * hour, source="argus", tenant="t-acme", src_ip="10.1.1.11",
                      dst_ip="10.1.1.12", proto="udp", bytes_out=100, packets_out=1)  # fmt: skip
    return [flood, later]


def test_a_record_longer_than_the_window_counts_its_packets_and_bytes_at_its_rate() -> None:
    # 1,000 echo requests of 84 bytes a second for an hour: 60,000 a minute, above the 50,000 bar.
    # Its packets were taken at the window's share and its bytes whole, so the window's bytes a
    # packet (84 x 60) was above the bar and the flood was dropped.
    alerts = _alerts(_icmp_hour(1000, 84))
    assert len(alerts) == 1 and alerts[0].evidence["bytes_per_packet"] == 84.0
    assert not _alerts(_icmp_hour(700, 84))  # 42,000 a minute
    assert not _alerts(_icmp_hour(1000, 1400))  # full packets: a transfer's


def test_datagrams_are_held_to_their_own_bar() -> None:
    def one_second(i: int, size: int) -> FlowEvent:
        return FlowEvent(
            id=f"udp-{i}", ts=T0 + 1000 * i, source="zeek", tenant="t-acme", src_ip="10.1.1.10",
            dst_ip=VICTIM, src_port=40000 + i, dst_port=9, proto="udp", bytes_out=2000 * size,
            packets_out=2000, duration_ms=900, extra={"conn_state": "S0"},
        )  # fmt: skip

    def udp(size: int) -> list[FlowEvent]:
        return [one_second(i, size) for i in range(60)]

    assert len(_alerts(udp(540))) == 1  # Mirai's default 512-byte payload
    assert not _alerts(udp(540), {"max_datagram_bytes_per_packet": 200})  # the bar TCP keeps
    assert not _alerts(udp(1250))  # QUIC-sized datagrams
