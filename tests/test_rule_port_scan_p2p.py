"""port_scan.failed_probe_scan: a peer-to-peer client's overlay is not a scan. UDP from its one
listening port to peers each on a random port of its own, many offline, the online ones answering,
is not raised; UDP scans (service ports, or random ports that no one answers) and the same shape
over TCP or from many source ports are."""

from __future__ import annotations

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.port_scan.failed_probe_scan import FailedProbeScan
from detectors.samples import samples_registry
from ingest.schema import FlowEvent

T0 = 1_736_143_200_000  # a multiple of the 5-minute window
CLIENT = "10.1.1.10"
SERVICE_PORTS = (53, 123, 161, 1900, 11211, 5353, 137, 500)


def _contact(n: int, port: int, *, answered: bool, proto: str = "udp", sport: int = 7103) -> FlowEvent:
    """One contact of a peer (Zeek: ``SF`` with a reply, ``S0`` without), 84-byte packets as a DHT ping."""
    return FlowEvent(
        id=f"c{n}", ts=T0 + 1000 + 900 * n, source="zeek", tenant="t-acme", src_ip=CLIENT,
        dst_ip=f"198.51.{100 + n // 250}.{n % 250 + 1}", src_port=sport, dst_port=port, proto=proto,
        bytes_out=84, bytes_in=84 if answered else 0, packets_out=1, packets_in=1 if answered else 0,
        duration_ms=200, extra={"conn_state": "SF" if answered else "S0", "history": "Dd" if answered else "D"},
    )  # fmt: skip


def _peers(n: int, answered_every: int, **kw: object) -> list[FlowEvent]:
    """``n`` peers, each on its own random-looking port >= 1024; every ``answered_every``-th answers."""
    return [
        _contact(i, 1024 + (i * 7919) % 64000, answered=answered_every > 0 and i % answered_every == 0, **kw)  # type: ignore[arg-type]
        for i in range(n)
    ]


def _run(events: list[FlowEvent]) -> tuple[list[Alert], FailedProbeScan]:
    cfg = DetectorConfig.default()
    det = FailedProbeScan(cfg)
    alerts = DetectionEngine([det], DetectionContext(samples_registry(), cfg), strict=True).run(events)
    return alerts, det


def test_a_udp_peer_overlay_is_counted_not_raised() -> None:
    alerts, det = _run(_peers(300, answered_every=4))  # a quarter answer, as CTU-13's client
    assert alerts == [] and det.counters["peer_to_peer"] == 1


def test_udp_scans_and_other_shapes_are_raised() -> None:
    # service ports across hosts: scanners aim at what answers a payload
    service = [_contact(i, SERVICE_PORTS[i % 8], answered=i % 4 == 0) for i in range(300)]
    assert len(_run(service)[0]) == 1
    # random high ports that nobody answers: an empty-payload sweep
    assert len(_run(_peers(300, answered_every=0))[0]) == 1
    # the same shape over TCP, or from a source port per probe (a scanner's, not a listener's)
    assert len(_run(_peers(300, answered_every=4, proto="tcp"))[0]) == 1
    varied = [
        _contact(i, 1024 + (i * 7919) % 64000, answered=i % 4 == 0, sport=40000 + i) for i in range(300)
    ]
    assert len(_run(varied)[0]) == 1
