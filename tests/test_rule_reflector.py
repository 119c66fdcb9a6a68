"""dos.reflector beyond its samples: answers with no request in the records, long records, the
bound on remotes, and a window carried through a checkpoint."""

from __future__ import annotations

import pickle

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.dos.reflector import _MAX_REMOTES, Reflector
from detectors.samples import samples_registry
from ingest.schema import FlowEvent

T0 = 1_736_143_200_000
VM, VICTIM = "10.1.1.10", "198.51.100.9"


def _flow(i: int, src: str, dst: str, sport: int, dport: int, size: int, packets: int) -> FlowEvent:
    return FlowEvent(id=f"f{i}-{src}-{dst}", ts=T0 + 1000 * i, source="netflow", tenant="t-acme", src_ip=src,
                     dst_ip=dst, src_port=sport, dst_port=dport, proto="udp", bytes_out=size,
                     packets_out=packets, duration_ms=900)  # fmt: skip


def _ntp_minute(*, requests: bool = True, victim: str = VICTIM) -> list[FlowEvent]:
    """A minute of NTP monlist through VM as one-way records: 20 requests a second, 2,000 answers."""
    out = []
    for i in range(60):
        if requests:
            out.append(_flow(i, victim, VM, 50123, 123, 4_680, 20))
        out.append(_flow(i, VM, victim, 123, 50123, 936_000, 2_000))
    return out


def _engine() -> DetectionEngine:
    cfg = DetectorConfig.default()
    return DetectionEngine([Reflector(cfg)], DetectionContext(samples_registry(), cfg), strict=True)


def _alerts(flows: list[FlowEvent]) -> list[Alert]:
    return _engine().run(sorted(flows, key=lambda e: (e.ts, e.id)))


def test_answers_to_requests_in_the_records_are_raised_with_the_victim_and_the_factor() -> None:
    (alert,) = _alerts(_ntp_minute())
    assert alert.entity.id == VM and alert.evidence["victim"] == VICTIM
    assert alert.evidence["service_port"] == 123 and alert.evidence["amplification"] == 200.0
    assert alert.evidence["destinations"] == [VICTIM]


def test_answers_without_requests_are_not_a_reflection() -> None:
    # what the service sent unasked is a flood of its own (dos.source_flood), not amplification
    assert not _alerts(_ntp_minute(requests=False))


def test_a_record_longer_than_the_window_counts_at_its_rate() -> None:
    # one biflow of an hour: 1,000 answers a second overall, 60,000 in a minute's share
    hour = FlowEvent(id="hour", ts=T0, source="argus", tenant="t-acme", src_ip=VICTIM, dst_ip=VM,
                     src_port=40000, dst_port=11211, proto="udp", bytes_out=36_000 * 43,
                     packets_out=36_000, bytes_in=3_600_000 * 1_428, packets_in=3_600_000,
                     duration_ms=3_600_000)  # fmt: skip
    later = _flow(7200, "10.1.1.11", "10.1.1.12", 5000, 5001, 100, 1)
    (alert,) = _alerts([hour, later])
    assert alert.evidence["response_packets"] == 60_000
    slow = FlowEvent(id="slow", ts=T0, source="argus", tenant="t-acme", src_ip=VICTIM, dst_ip=VM,
                     src_port=40000, dst_port=11211, proto="udp", bytes_out=3_000 * 43, packets_out=3_000,
                     bytes_in=300_000 * 1_428, packets_in=300_000, duration_ms=3_600_000)  # fmt: skip
    assert not _alerts([slow, later])  # 5,000 answers a minute over the hour, below the bar of 6,000
    assert Reflector(DetectorConfig.default()).min_packets == 6_000


def test_remotes_past_the_bound_are_pooled_and_the_busiest_still_raised() -> None:
    noise = [_flow(0, f"203.0.{n // 256}.{n % 256}", VM, 40000, 53, 80, 1) for n in range(_MAX_REMOTES + 50)]
    (alert,) = _alerts(noise + _ntp_minute())
    assert alert.evidence["victim"] == VICTIM


def test_a_window_carried_through_a_checkpoint_is_raised_once() -> None:
    flows = sorted(_ntp_minute(), key=lambda e: (e.ts, e.id))
    engine = _engine()
    engine.process(flows[:60])
    engine.context = None  # type: ignore[assignment]  # as the job's keyed state pickles it
    restored: DetectionEngine = pickle.loads(pickle.dumps(engine))
    restored.context = DetectionContext(samples_registry(), DetectorConfig.default())
    alerts = restored.process(flows[60:]) + restored.flush()
    assert len(alerts) == 1 and alerts[0].evidence["response_packets"] == 120_000
