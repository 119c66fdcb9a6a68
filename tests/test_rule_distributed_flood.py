"""dos.distributed_flood and the records of one direction: a server's data to a VM that opened the
connection is a download, never a flood; reflected answers and bare SYN-ACKs still are."""

from __future__ import annotations

import msgspec

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.dos.distributed_flood import DistributedFlood
from detectors.samples import samples_registry
from ingest.schema import FlowEvent

T0 = 1_736_143_200_000
VM = "10.1.1.10"


def _into_the_vm(proto: str, sport: int, packet_bytes: int, flags: int | None) -> list[FlowEvent]:
    """25 outside addresses each send 6,000 packets in a minute to the VM (150,000 in all), written
    by VPC Flow Logs: one record per direction, this one the outside side's."""
    return [
        FlowEvent(
            id=f"r{i}",
            ts=T0 + 59_000,
            source="vpcflow",
            tenant="t-acme",
            src_ip=f"198.51.100.{i + 1}",
            dst_ip=VM,
            src_port=sport,
            dst_port=40000 + i,
            proto=proto,
            bytes_out=6_000 * packet_bytes,
            packets_out=6_000,
            duration_ms=58_000,
            extra={} if flags is None else {"tcp_flags": flags},
        )
        for i in range(25)
    ]


def _run(flows: list[FlowEvent]) -> tuple[list[Alert], DistributedFlood]:
    cfg = DetectorConfig.default()
    det = DistributedFlood(cfg)
    alerts = DetectionEngine([det], DetectionContext(samples_registry(), cfg), strict=True).run(flows)
    return alerts, det


def test_a_download_from_many_servers_is_no_distributed_flood() -> None:
    # the servers' data on connections the VM opened (VPC: their records carry the SYN-ACK)
    alerts, det = _run(_into_the_vm("tcp", 443, 1500, 0x12))
    assert not alerts
    assert det.counters["requested_data"] == 25


def test_reflected_answers_and_bare_syn_acks_are_still_a_distributed_flood() -> None:
    ntp, _ = _run(_into_the_vm("udp", 123, 468, None))  # monlist answers to spoofed requests
    syn_acks, _ = _run(_into_the_vm("tcp", 80, 60, 0x12))  # SYN-ACK reflection: headers only
    for alerts in (ntp, syn_acks):
        assert len(alerts) == 1
        assert alerts[0].entity.id == VM and alerts[0].evidence["distinct_sources"] == 25


def test_a_long_record_counts_at_its_rate() -> None:
    # 25 clients' hour-long connections written once by Zeek at their end, 50 packets a second
    # each: 75,000 packets a minute in all, not the 4.5 million of their whole hour
    hour = [
        msgspec.structs.replace(
            ev,
            source="zeek",
            src_port=ev.dst_port,
            dst_port=5432,
            packets_out=180_000,
            bytes_out=180_000 * 40,
            packets_in=180_000,
            bytes_in=180_000 * 40,
            duration_ms=3_600_000,
            extra={"conn_state": "SF", "history": "ShADadFf"},
        )
        for ev in _into_the_vm("tcp", 40000, 40, None)
    ]
    assert not _run(hour)[0]
    # written every minute instead (NetFlow's active timeout of 60 s), the same traffic is the same
    assert not _run([msgspec.structs.replace(ev, packets_out=3_000, duration_ms=60_000) for ev in hour])[0]
    # and a minute's real flood of those connections still is one
    (alert,), _ = _run(
        [msgspec.structs.replace(ev, packets_out=3_000 * 20, duration_ms=60_000) for ev in hour]
    )
    assert alert.evidence["packets"] == 25 * 60_000
