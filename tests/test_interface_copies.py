"""A VPC flow log that holds both ends of a connection (two instances of one tenant, or a load
balancer and its target: AWS records traffic per network interface) counts each connection once
(``detectors.interface_copies``). Records are AWS's default format, read by the ``vpcflow`` parser;
the second interface's records are stamped later, as in a published sample of one exchange between
a load balancer's and an instance's interfaces (equal counts, starts 95 s apart)."""

from __future__ import annotations

import pickle
from typing import Any

import msgspec
import pytest

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, Lateness
from detectors.interface_copies import InterfaceCopies
from detectors.job_order import OrderedFeed
from detectors.registry import all_detectors
from ingest.parsers import parse_bytes
from ingest.parsers.base import ParseContext
from ingest.schema import FlowEvent, encode_event
from ingest.tenants import TenantRegistry
from streams.detect_fn import DetectionJobConfig, MicroBatchDetector

ACCOUNT = "123456789012"
ATTACKER, VICTIM = "10.0.1.10", "10.0.2.20"  # two VMs of one tenant
T0 = 1_733_000_400  # a whole 10 minutes
REGISTRY = TenantRegistry.from_dict(
    {"tenants": [{"id": "acme", "cidrs": ["10.0.0.0/16"], "accounts": [ACCOUNT]}]}
)
LATENESS = Lateness.for_flows(2_000, 900_000)  # the README's allowance for VPC Flow Logs


def _line(eni: str, src: str, dst: str, sport: int, dport: int, packets: int, size: int, start: int,
          end: int, action: str = "ACCEPT") -> str:  # fmt: skip
    return f"2 {ACCOUNT} {eni} {src} {dst} {sport} {dport} 6 {packets} {size} {start} {end} {action} OK"


def _ssh_guesses(n: int, *, both_ends: bool, lag_s: int = 95, refused_at_victim: bool = False) -> list[str]:
    """``n`` SSH password attempts from ATTACKER to VICTIM, one every 12 s, each a short session of
    similar size in both directions: the attacker's interface's records, and with ``both_ends``
    the victim's too, stamped ``lag_s`` later (``refused_at_victim``: its security group refuses
    them, so the victim's interface logs REJECT and nothing comes back)."""
    lines = []
    for i in range(n):
        start, sport = T0 + 12 * i, 40_000 + i
        if refused_at_victim:
            lines.append(_line("eni-attacker", ATTACKER, VICTIM, sport, 22, 1, 60, start, start))
            if both_ends:
                lines.append(_line("eni-victim", ATTACKER, VICTIM, sport, 22, 1, 60, start + lag_s,
                                   start + lag_s, "REJECT"))  # fmt: skip
            continue
        ends = [("eni-attacker", 0)] + ([("eni-victim", lag_s)] if both_ends else [])
        for eni, lag in ends:
            lines.append(_line(eni, ATTACKER, VICTIM, sport, 22, 14, 2_900 + i % 5 * 16, start + lag,
                               start + 3 + lag))  # fmt: skip
            lines.append(_line(eni, VICTIM, ATTACKER, 22, sport, 12, 3_400 + i % 3 * 24, start + lag,
                               start + 3 + lag))  # fmt: skip
    return lines


def _events(lines: list[str]) -> list[FlowEvent]:
    out = parse_bytes("vpcflow", ("\n".join(lines) + "\n").encode(), ParseContext(registry=REGISTRY))
    assert not out.dlqs
    return out.events  # type: ignore[return-value]


def _scan(
    lines: list[str], config: DetectorConfig | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    cfg = config or DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(REGISTRY, cfg), lateness=LATENESS)
    events = sorted(_events(lines), key=lambda e: (e.ts, e.id))
    alerts = OrderedFeed(engine).run(events)
    found = [
        {"detector": a.detector, "entity": a.entity.id, "count": a.evidence["count"],
         "sessions": a.evidence.get("sessions")}
        for a in alerts
    ]  # fmt: skip
    return found, engine.stats()


def _guessing(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in found if a["detector"] == "brute_force.flow_guessing"]


def test_both_ends_of_a_guessing_run_count_each_session_once() -> None:
    one, one_stats = _scan(_ssh_guesses(45, both_ends=False))
    both, both_stats = _scan(_ssh_guesses(45, both_ends=True))
    assert _guessing(one) and _guessing(one)[0]["sessions"] == 45
    assert both == one  # the same alerts with the same counts
    assert one_stats["interface_copies"] == 0 and both_stats["interface_copies"] == 90


def _web_requests(per_minute: int, *, both_ends: bool) -> list[str]:
    """A minute of one-request connections from ATTACKER to VICTIM's web server, both directions,
    at the attacker's interface and with ``both_ends`` at the victim's too (stamped 20 s later)."""
    lines = []
    for i in range(per_minute):
        start, sport = T0 + 60 * i // per_minute, 30_000 + i
        for eni, lag in [("eni-attacker", 0)] + ([("eni-victim", 20)] if both_ends else []):
            lines.append(_line(eni, ATTACKER, VICTIM, sport, 80, 6, 420, start + lag, start + lag + 1))
            lines.append(_line(eni, VICTIM, ATTACKER, 80, sport, 5, 900, start + lag, start + lag + 1))
    return lines


def _floods(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in found if a["detector"] == "dos.app_flood"]


def test_two_thirds_of_a_flood_seen_at_both_ends_is_no_flood(monkeypatch: pytest.MonkeyPatch) -> None:
    # dos.app_flood needs 600 short connections a minute; 400 were made, 800 records a direction
    found, stats = _scan(_web_requests(400, both_ends=True))
    assert _floods(found) == [] and stats["interface_copies"] == 800
    above, _ = _scan(_web_requests(700, both_ends=True))
    alone, _ = _scan(_web_requests(700, both_ends=False))
    assert _floods(above) == _floods(alone) and _floods(alone)[0]["count"] < 700
    monkeypatch.setattr(
        InterfaceCopies, "is_copy", lambda self, ev, registry: False
    )  # as before copies were known
    doubled, _ = _scan(_web_requests(400, both_ends=True))
    assert _floods(doubled) and _floods(doubled)[0]["count"] > 600


def test_a_refusal_at_the_victims_interface_is_never_a_copy() -> None:
    copies = InterfaceCopies(660_000, 1_000)
    kept = copies.keep(_events(_ssh_guesses(3, both_ends=True, refused_at_victim=True)), REGISTRY)
    assert [(e.extra["interface-id"], e.action) for e in kept] == [
        ("eni-attacker", "accept"), ("eni-victim", "reject")
    ] * 3  # fmt: skip
    # the other way round: the refusal came first, the sender's own record of it is the copy
    reversed_order = sorted(
        _events(_ssh_guesses(3, both_ends=True, refused_at_victim=True, lag_s=-5)), key=lambda e: e.ts
    )
    kept = InterfaceCopies(660_000, 1_000).keep(reversed_order, REGISTRY)
    assert [e.action for e in kept] == ["reject"] * 3


def test_a_5_tuple_reused_after_the_horizon_is_a_new_exchange_at_its_first_interface() -> None:
    copies = InterfaceCopies(660_000, 1_000)
    first = _events([_line("eni-a", ATTACKER, VICTIM, 40_000, 443, 5, 500, T0, T0 + 60)])
    copy = _events([_line("eni-b", ATTACKER, VICTIM, 40_000, 443, 5, 500, T0 + 600, T0 + 660)])
    later = _events([_line("eni-b", ATTACKER, VICTIM, 40_000, 443, 5, 500, T0 + 1400, T0 + 1410)])
    again = _events([_line("eni-a", ATTACKER, VICTIM, 40_000, 443, 5, 500, T0 + 1400, T0 + 1410)])
    assert [copies.is_copy(e, REGISTRY) for e in first + copy + later + again] == [False, True, False, True]
    # another tenant's record of the same 5-tuple is that tenant's own
    other = msgspec.structs.replace(first[0], tenant="globex", extra={"interface-id": "eni-c"})
    assert not copies.is_copy(other, REGISTRY)


def test_records_without_an_interface_are_never_copies() -> None:
    copies = InterfaceCopies(660_000, 1_000)
    ev = _events([_line("eni-a", ATTACKER, VICTIM, 40_000, 443, 5, 500, T0, T0 + 60)])[0]
    bare = msgspec.structs.replace(ev, extra={})
    assert not copies.is_copy(bare, REGISTRY) and not copies.is_copy(bare, REGISTRY) and len(copies) == 0


def test_a_connection_with_an_address_on_the_internet_is_never_remembered() -> None:
    # one logged end only: an internet client's records at the instance, a NAT or load balancer's own
    copies = InterfaceCopies(660_000, 1_000)
    inbound = _line("eni-a", "198.51.100.7", VICTIM, 40_000, 443, 5, 500, T0, T0 + 60)
    again = _line("eni-b", "198.51.100.7", VICTIM, 40_000, 443, 5, 500, T0 + 30, T0 + 60)
    assert [copies.is_copy(e, REGISTRY) for e in _events([inbound, again])] == [False, False]
    assert len(copies) == 0
    # an address of the tenant's registry outside the private ranges is inside (a public VPC range)
    public_vpc = TenantRegistry.from_dict(
        {"tenants": [{"id": "acme", "cidrs": ["10.0.0.0/16", "198.51.100.0/24"]}]}
    )
    assert [copies.is_copy(e, public_vpc) for e in _events([inbound, again])] == [False, True]


def test_the_table_is_bounded_and_forgets_the_oldest_first() -> None:
    copies = InterfaceCopies(660_000, 8)
    lines = [_line("eni-a", ATTACKER, VICTIM, 40_000 + i, 443, 5, 500, T0 + i, T0 + i) for i in range(20)]
    events = _events(lines)
    assert copies.keep(events, REGISTRY) == events and len(copies) <= 8 and copies.forgotten > 0
    newest = _events([_line("eni-b", ATTACKER, VICTIM, 40_019, 443, 5, 500, T0 + 19, T0 + 19)])[0]
    oldest = _events([_line("eni-b", ATTACKER, VICTIM, 40_000, 443, 5, 500, T0, T0)])[0]
    assert copies.is_copy(newest, REGISTRY) and not copies.is_copy(
        oldest, REGISTRY
    )  # the oldest was forgotten


def test_pairs_past_the_horizon_are_dropped_before_any_is_forgotten() -> None:
    copies = InterfaceCopies(60_000, 8)
    early = [_line("eni-a", ATTACKER, VICTIM, 40_000 + i, 443, 5, 500, T0, T0) for i in range(7)]
    late = [_line("eni-a", ATTACKER, VICTIM, 50_000 + i, 443, 5, 500, T0 + 600, T0 + 600) for i in range(7)]
    copies.keep(_events(early + late), REGISTRY)
    assert copies.forgotten == 0 and len(copies) == 7 + 7 - 7  # the early ones aged out


def test_an_engine_restored_from_a_checkpoint_still_knows_each_observer() -> None:
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(REGISTRY, cfg), lateness=LATENESS)
    events = sorted(_events(_ssh_guesses(10, both_ends=True)), key=lambda e: (e.ts, e.id))
    half = len(events) // 2
    engine.process(events[:half])
    engine.context = None  # type: ignore[assignment]  # as the job's keyed state pickles it
    restored: DetectionEngine = pickle.loads(pickle.dumps(engine))
    restored.context = DetectionContext(REGISTRY, cfg)
    restored.process(events[half:])
    assert restored.stats()["interface_copies"] == 20
    # an engine of a changed configuration adopts the table
    fresh = DetectionEngine(all_detectors(cfg), DetectionContext(REGISTRY, cfg), lateness=LATENESS)
    fresh.adopt(restored)
    assert len(fresh.copies) == len(restored.copies) and fresh.copies.copies == 20


def test_the_jobs_posture_metrics_count_a_connection_seen_at_two_interfaces_once() -> None:
    logic = MicroBatchDetector(DetectionJobConfig())
    events = sorted(_events(_ssh_guesses(10, both_ends=True)), key=lambda e: (e.ts, e.id))
    state = logic.new_state()
    logic.on_batch(state, "acme", [encode_event(ev) for ev in events])
    at_victim = {ev.id for ev in events if ev.extra and ev.extra.get("interface-id") == "eni-victim"}
    assert len(at_victim) == 20 and set(state.engine.copied) == at_victim
    flows = sum(acc.flows for minute in state.posture.minutes.values() for acc in minute.values())
    sent = sum(acc.bytes for minute in state.posture.minutes.values() for acc in minute.values())
    assert flows == len(events) - 20 == 20
    assert sent == sum(ev.bytes_out + ev.bytes_in for ev in events if ev.id not in at_victim)
