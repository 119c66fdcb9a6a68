"""Flows the tenant registry says nothing about (detectors.addrscope): a capture scanned without a
registry still has an inside, its private addresses, for the rules that watch hosts talking out."""

from __future__ import annotations

import pytest

from detectors.addrscope import is_private, unowned_outbound
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors
from ingest.schema import FlowEvent
from ingest.tenants import TenantRegistry

T0_MS = 1_700_000_000_000 - 1_700_000_000_000 % 21_600_000  # a 6-hour window's start


@pytest.mark.parametrize(
    ("address", "private"),
    [("10.1.2.3", True), ("172.16.0.1", True), ("172.32.0.1", False), ("192.168.10.50", True),
     ("100.64.1.1", True), ("fd12::1", True), ("8.8.8.8", False), ("127.0.0.1", False), ("bogus", False)],
)  # fmt: skip
def test_private_ranges(address: str, private: bool) -> None:
    assert is_private(address) is private


def test_outbound_needs_a_private_source_and_a_global_destination() -> None:
    assert unowned_outbound("192.168.10.5", "205.174.165.73")
    assert not unowned_outbound("192.168.10.5", "192.168.10.9")  # inside to inside
    assert not unowned_outbound("8.8.4.4", "205.174.165.73")  # outside to outside
    assert not unowned_outbound("192.168.10.5", "224.0.0.251")  # multicast: not on the internet
    assert not unowned_outbound("192.168.10.5", "198.51.100.7")  # documentation space


def _flow(i: int, src: str, dst: str, dport: int, ts: int, nbytes: int = 310) -> FlowEvent:
    return FlowEvent(
        id=f"f{i}", ts=ts, source="sim", src_ip=src, dst_ip=dst, src_port=40000 + i, dst_port=dport,
        proto="tcp", bytes_out=nbytes, bytes_in=1200, packets_out=5, packets_in=4, duration_ms=120,
    )  # fmt: skip


def _alerts(events: list[FlowEvent], registry: TenantRegistry) -> list:
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg, include_anomaly=False), DetectionContext(registry, cfg))
    return engine.process(sorted(events, key=lambda e: e.ts)) + engine.flush()


@pytest.mark.parametrize("src", ["192.168.10.5", "8.8.4.4"])
def test_beacon_of_a_private_host_is_found_without_a_registry(src: str) -> None:
    """An HTTP check-in every 5 minutes for 3 hours to one internet address: outbound from a
    private address, a beacon; the same between two internet addresses has no inside, no alert."""
    events = [_flow(i, src, "205.174.165.73", 8080, T0_MS + i * 300_000) for i in range(36)]
    beacons = [
        a
        for a in _alerts(events, TenantRegistry.from_dict({"tenants": []}))
        if a.category == "command_and_control"
    ]
    if src.startswith("192.168."):
        assert [(a.entity.id, a.tenant) for a in beacons] == [(src, None)]
        assert beacons[0].summary.startswith(f"Host {src} beacons to 205.174.165.73:8080")
    else:
        assert beacons == []


def test_spam_run_of_a_private_host_is_found_without_a_registry() -> None:
    servers = [f"{a}.{b}.7.25" for a in (23, 45, 64, 91) for b in range(10, 17)]  # 28 internet MX hosts
    events = [_flow(i, "192.168.10.5", mx, 25, T0_MS + i * 5_000) for i, mx in enumerate(servers)]
    spam = [a for a in _alerts(events, TenantRegistry.from_dict({"tenants": []})) if a.category == "spam"]
    assert [(a.entity.id, a.tenant) for a in spam] == [("192.168.10.5", None)]
    # a registered tenant's own hosts are judged as before
    registry = TenantRegistry.from_dict({"tenants": [{"id": "acme", "cidrs": ["192.168.10.0/24"]}]})
    spam = [a for a in _alerts(events, registry) if a.category == "spam"]
    assert [(a.entity.id, a.tenant) for a in spam] == [("192.168.10.5", "acme")]


def test_upload_and_pool_connection_of_a_private_host_are_found_without_a_registry() -> None:
    empty = TenantRegistry.from_dict({"tenants": []})
    upload = [
        _flow(i, "192.168.10.5", "205.174.165.73", 443, T0_MS + i * 10_000, nbytes=20_000_000)
        for i in range(8)
    ]
    pool = [_flow(99, "192.168.10.5", "205.174.165.74", 3333, T0_MS + 1_000)]
    alerts = _alerts(upload + pool, empty)
    assert sorted(
        (a.category, a.entity.id, a.tenant) for a in alerts if a.category != "command_and_control"
    ) == [
        ("cryptomining", "192.168.10.5", None),
        ("exfiltration", "192.168.10.5", None),
    ]
    # the same from an internet address to another: nothing is inside
    outside = [
        e.__class__(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "src_ip": "8.8.4.4"})
        for e in upload + pool
    ]
    assert [a for a in _alerts(outside, empty) if a.category in ("cryptomining", "exfiltration")] == []
