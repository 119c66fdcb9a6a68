"""cryptomining.mining_pool_connection: pool ports are stratum's, over TCP; pool addresses match on any
protocol (the peer-to-peer and ICMP look-alikes are in the rule's samples)."""

from __future__ import annotations

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.cryptomining.mining_pool_connection import MiningPoolConnection
from detectors.samples import samples_registry
from ingest.schema import FlowEvent

T0 = 1_736_143_200_000
POOL = "45.9.148.21"


def _flow(proto: str, dst_port: int, dst_ip: str = "198.51.100.40") -> FlowEvent:
    return FlowEvent(
        id=f"f-{proto}-{dst_port}", ts=T0, source="zeek", tenant="t-acme", src_ip="10.1.1.11", dst_ip=dst_ip,
        src_port=40000, dst_port=dst_port, proto=proto, bytes_out=1200, bytes_in=3400, packets_out=6,
        packets_in=5, duration_ms=600_000, extra={"conn_state": "SF", "history": "ShADadFf"},
    )  # fmt: skip


def _alerts(flows: list[FlowEvent], params: dict[str, object] | None = None) -> list[Alert]:
    cfg = DetectorConfig.default().merged(
        {"detectors": {"cryptomining.mining_pool_connection": {"params": params or {}}}}
    )
    det = MiningPoolConnection(cfg)
    return DetectionEngine([det], DetectionContext(samples_registry(), cfg), strict=True).run(flows)


def test_a_pool_port_matches_tcp_only_and_a_pool_address_any_protocol() -> None:
    assert len(_alerts([_flow("tcp", 3333)])) == 1
    assert not _alerts([_flow("udp", 3333), _flow("icmp", 45560)])
    listed: dict[str, object] = {"pool_addresses": [POOL]}
    assert len(_alerts([_flow("udp", 9000, POOL)], listed)) == 1  # a known pool, whatever the port
    assert len(_alerts([_flow("udp", 3333)], {"pool_protocols": ["tcp", "udp"]})) == 1
