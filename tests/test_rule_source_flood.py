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
