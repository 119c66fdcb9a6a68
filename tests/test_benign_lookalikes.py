"""The benign classes behind the real-data scorecard's false alerts, and the evidence scope of the
alerts that accused them (issue 20's false-alert target).

Each look-alike is a case of its rule's ``.events.json``; here each is also run with the one fact
that makes it benign changed, to show that fact is what keeps the rule quiet (the test fails if the
rule stops looking at it, or never fired on it in the first place).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.evaluation.coverage import AlertIndex, alert_span
from detectors.rules.c2.beacon import C2Beacon
from detectors.rules.dos.slow_connections import SlowConnections
from detectors.rules.exfiltration.external_upload import ExternalUpload
from detectors.samples import load_cases, samples_registry
from ingest.schema import Event, FlowEvent

RULES = Path(__file__).resolve().parents[1] / "detectors" / "rules"
REGISTRY = samples_registry()


def _case(rel: str, starts: str) -> list[Event]:
    cases = [c for c in load_cases(RULES / rel) if c.description.startswith(starts)]
    assert len(cases) == 1, starts
    return cases[0].events


def _run(cls: type, events: Sequence[Event], cfg: DetectorConfig | None = None) -> list[Alert]:
    cfg = cfg or DetectorConfig.default()
    engine = DetectionEngine([cls(cfg)], DetectionContext(REGISTRY, cfg), strict=True)
    return engine.run(sorted(events, key=lambda e: (e.ts, e.id)))


def _with(events: Sequence[Event], step: int = 0, **kw: Any) -> list[Event]:
    """The events with fields replaced; ``step`` > 0 gives each its own source port."""
    out: list[Event] = []
    for n, ev in enumerate(events):
        assert isinstance(ev, FlowEvent)
        fields: dict[str, Any] = dict(kw)
        if step:
            fields["src_port"] = 30000 + n * step
        out.append(msgspec.structs.replace(ev, **fields))
    return out


# --- c2.beacon -------------------------------------------------------------------------------------
ESET = "look-alike: an antivirus push channel"
REFUSED = "look-alike: an external address retries a closed port"


def test_push_channel_keepalives_on_one_connection_are_not_a_beacon() -> None:
    events = _case("c2/beacon.events.json", ESET)
    assert len({(e.src_port, e.dst_ip, e.dst_port) for e in events if isinstance(e, FlowEvent)}) == 1
    assert _run(C2Beacon, events) == []
    # the same timing and sizes as new connections (a fresh source port each): a beacon
    alerts = _run(C2Beacon, _with(events, step=7))
    assert [a.entity.id for a in alerts] == ["10.1.1.10"]
    assert alerts[0].evidence["port"] == 8883


def test_udp_on_one_socket_keeps_the_continuation_gap() -> None:
    events = _case("c2/beacon.events.json", "a UDP implant on one socket")
    assert [a.entity.id for a in _run(C2Beacon, events)] == ["10.1.1.11"]


def test_refused_inbound_retries_are_not_a_beacon_but_answered_ones_are() -> None:
    events = _case("c2/beacon.events.json", REFUSED)
    assert _run(C2Beacon, events) == []
    answered = _with(events, extra={"conn_state": "SF", "history": "ShADadFf"}, bytes_in=400, packets_in=4)
    alerts = _run(C2Beacon, answered)
    assert [(a.entity.id, a.evidence["direction"]) for a in alerts] == [("120.245.134.197", "inbound")]


def test_outbound_attempts_to_a_dead_c2_still_beacon() -> None:
    events = _case("c2/beacon.events.json", "an implant keeps calling its C2 server every 60 s after")
    assert [a.entity.id for a in _run(C2Beacon, events)] == ["10.1.1.10"]


ARES = "an Ares agent idling on a tenant VM"
BURSTS = "look-alike: a page or script that opens a fresh connection every 2 s"


def test_a_two_second_agent_is_a_beacon() -> None:
    alerts = _run(C2Beacon, _case("c2/beacon.events.json", ARES))
    assert [a.entity.id for a in alerts] == ["10.1.1.12"]
    assert alerts[0].evidence["median_interval_s"] == pytest.approx(2.05, abs=0.1)


def test_fast_bursts_that_do_not_fill_their_span_are_not_a_beacon() -> None:
    events = _case("c2/beacon.events.json", BURSTS)
    assert _run(C2Beacon, events) == []
    # the same connections with the fill bar off: timing and sizes alone make them a beacon
    cfg = DetectorConfig.default().merged({"detectors": {"c2.beacon": {"params": {"fast_min_fill": 0.0}}}})
    assert [a.entity.id for a in _run(C2Beacon, events, cfg)] == ["10.1.1.10"]


# --- exfiltration.external_upload ----------------------------------------------------------------------
CALL = "look-alike: a one-hour video call"


def test_long_call_counts_at_its_rate() -> None:
    events = _case("exfiltration/external_upload.events.json", CALL)
    assert _run(ExternalUpload, events) == []
    # the same bytes in a record no longer than the window: 437 MB in 5 minutes is an upload
    short = _with(events, duration_ms=240_000)
    alerts = _run(ExternalUpload, short)
    assert len(alerts) == 1
    assert alerts[0].evidence["bytes_to_top_destination"] == 437_313_307


def test_fast_long_upload_still_alerts_at_its_rate() -> None:
    events = _case("exfiltration/external_upload.events.json", "1.5 GB sent in one 20-minute")
    (alert,) = _run(ExternalUpload, events)
    # its data, the bytes beyond a bare 60-byte header a packet, at the window's share of the record
    assert (
        alert.evidence["bytes_to_top_destination"] == (1_500_000_000 - 60 * 1_050_000) * 300_000 // 1_200_000
    )


def test_a_downloads_acknowledgements_are_no_upload() -> None:
    # 10 GB pulled from an outside server in 5 minutes, as Zeek writes it: the client's 3.45 million
    # ACKs (52 bytes each) are 180 MB of its orig_ip_bytes, and no data
    download = _with(
        _case("exfiltration/external_upload.events.json", "1.5 GB sent in one 20-minute"),
        bytes_out=3_450_000 * 52, packets_out=3_450_000, bytes_in=10_000_000_000, packets_in=6_900_000,
        duration_ms=290_000,
    )  # fmt: skip
    assert _run(ExternalUpload, download) == []
    # the same bytes in full packets are an upload
    upload = _with(download, packets_out=3_450_000 * 52 // 1500)
    assert len(_run(ExternalUpload, upload)) == 1


# --- dos.slow_connections ------------------------------------------------------------------------------
IDLE = "look-alike: 60 sockets a browser or proxy client opened ahead of need"


def test_idle_preopened_sockets_are_not_held_by_a_trickle() -> None:
    events = _case("dos/slow_connections.events.json", IDLE)
    assert _run(SlowConnections, events) == []
    lax = DetectorConfig.default().merged(
        {"detectors": {"dos.slow_connections": {"params": {"max_idle_s": 10**6}}}}
    )
    alerts = _run(SlowConnections, events, lax)
    assert [a.entity.id for a in alerts] == ["10.1.2.50"]


def test_long_trickling_records_still_held() -> None:
    events = _case("dos/slow_connections.events.json", "slowloris against a server without timeouts")
    (alert,) = _run(SlowConnections, events)
    assert alert.evidence["held"] >= 50


# --- evidence scope: each alert covers the flows it accuses ----------------------------------------------
def _covers(alert: Alert, ts: int, src: str, dst: str) -> bool:
    index = AlertIndex([alert_span(0, alert, 300_000)])
    return any(True for _ in index.covering(ts, src, dst))


@pytest.mark.parametrize(
    ("rel", "starts", "other_src", "other_dst"),
    [
        ("exfiltration/external_upload.events.json", "VM sends 1.2 GB", "10.1.1.10", "93.184.216.34"),
        ("dos/slow_connections.events.json", "slowloris against IIS", "198.51.100.7", "10.1.1.10"),
        ("dos/slow_connections.events.json", "slowloris against IIS", "203.0.113.90", "10.1.1.99"),
    ],
)
def test_alerts_cover_only_the_flows_they_accuse(
    rel: str, starts: str, other_src: str, other_dst: str
) -> None:
    cls = ExternalUpload if rel.startswith("exfiltration") else SlowConnections
    events = _case(rel, starts)
    (alert,) = _run(cls, events)
    accused = events[0]
    assert isinstance(accused, FlowEvent)
    ts = alert.first_seen
    assert _covers(alert, ts, accused.src_ip, accused.dst_ip)
    assert not _covers(alert, ts, other_src, other_dst)  # the host's or the victim's other traffic
