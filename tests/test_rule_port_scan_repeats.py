"""port_scan.failed_probe_scan: a scan moves on, a poller comes back. A source failing on the same
host/port pairs window after window (an SNMP station polling devices that do not answer) is raised
once; one sweeping new hosts every window is raised every window."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.port_scan.failed_probe_scan import FailedProbeScan
from detectors.samples import samples_registry
from ingest.schema import Event, FlowEvent

T0 = 1_736_143_200_000  # a multiple of the 5-minute window
MIN = 60_000
STATION = "10.1.1.10"


def _poll(n: int, ts: int, host: str) -> FlowEvent:
    """One unanswered SNMP get (Zeek ``S0``-like for UDP: a request, nothing back)."""
    return FlowEvent(
        id=f"p{n}", ts=ts, source="zeek", tenant="t-acme", src_ip=STATION, dst_ip=host, src_port=50000 + n % 9000,
        dst_port=161, proto="udp", bytes_out=80, bytes_in=0, packets_out=1, packets_in=0, duration_ms=0,
        extra={"conn_state": "S0", "history": "D"},
    )  # fmt: skip


def _rounds(every_min: int, rounds: int, hosts_of: object = None) -> list[FlowEvent]:
    out = []
    for r in range(rounds):
        hosts = [f"10.9.{r if hosts_of == 'new' else 0}.{h}" for h in range(1, 29)]
        out += [_poll(r * 100 + i, T0 + r * every_min * MIN + 1000 * i, h) for i, h in enumerate(hosts)]
    return out


def _run(events: Sequence[Event], **params: object) -> tuple[list[Alert], FailedProbeScan]:
    cfg = DetectorConfig.default().merged({"detectors": {"port_scan.failed_probe_scan": {"params": params}}})
    det = FailedProbeScan(cfg)
    return DetectionEngine([det], DetectionContext(samples_registry(), cfg), strict=True).run(events), det


def test_a_station_polling_the_same_silent_devices_is_raised_once() -> None:
    alerts, det = _run(_rounds(5, 12))  # an hour of polls every 5 minutes
    assert len(alerts) == 1 and alerts[0].evidence["failed_pairs"] == 28
    assert det.counters["repeated_sweep"] == 11
    assert len(_run(_rounds(15, 4))[0]) == 1  # every quarter of an hour: within the hour
    assert len(_run(_rounds(90, 3))[0]) == 3  # 90 minutes apart: each sweep is new again
    assert len(_run(_rounds(5, 12), repeat_overlap=0.0)[0]) == 12


def test_a_sweep_of_new_hosts_every_window_is_raised_every_window() -> None:
    alerts, det = _run(_rounds(5, 12, "new"))
    assert len(alerts) == 12 and det.counters.get("repeated_sweep", 0) == 0


def test_a_port_scan_of_one_host_run_again_is_raised_every_time() -> None:
    # nmap against the same 100 ports of one host, once every 5 minutes with another technique
    scans = [FlowEvent(id=f"v{r}-{p}", ts=T0 + r * 5 * MIN + 100 * p, source="zeek", tenant="t-acme",
                       src_ip=STATION, dst_ip="10.1.1.11", src_port=40000 + r, dst_port=p, proto="tcp",
                       bytes_out=0, bytes_in=0, packets_out=1, packets_in=1, duration_ms=0,
                       extra={"conn_state": "REJ", "history": "Sr"})
             for r in range(6) for p in range(1, 101)]  # fmt: skip
    alerts, det = _run(scans)
    assert len(alerts) == 6 and det.counters.get("repeated_sweep", 0) == 0


def test_the_last_sweep_survives_a_restore() -> None:
    cfg = DetectorConfig.default()
    engine = DetectionEngine([FailedProbeScan(cfg)], DetectionContext(samples_registry(), cfg), strict=True)
    events = _rounds(5, 6)
    first = engine.process(events[: 28 * 3])
    restored = pickle.loads(pickle.dumps(engine))
    rest = restored.process(events[28 * 3 :]) + restored.flush()
    assert len(first + rest) == 1
