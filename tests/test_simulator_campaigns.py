"""Multi-stage campaigns and quiet weeks of the simulator (``ingest.simulator.campaign``)."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import msgspec
import pytest

from detectors.config import DetectorConfig
from detectors.evaluation.evaluate import run_detectors
from detectors.registry import all_detectors
from ingest.schema import AuditEvent, AuthEvent, FlowEvent
from ingest.simulator import SimConfig, simulate
from ingest.simulator.campaign import (
    STAGE_VARIANTS,
    STAGES,
    WEEKDAY_FACTORS,
    CampaignRun,
    CampaignSettings,
    _ramp_counts,
    _retarget,
    _thin,
    campaign_length_bound_ms,
    campaign_run,
    minute_signals,
    quiet_signals,
    quiet_week,
    weekday_factor,
)
from ingest.simulator.factory import EventMaker
from ingest.simulator.truth import TruthEntity, TruthRecord, decode_truth, encode_truth

_H = 3_600_000
_MIN = 60_000
_DUR = 5 * _H


def _camp(seed: int, campaigns: int = 2, ramping_share: float = 0.5) -> CampaignRun:
    return campaign_run(
        seed, campaigns=campaigns, ramping_share=ramping_share, duration_ms=_DUR, events_per_s=1.0
    )


@pytest.fixture(scope="module")
def run() -> CampaignRun:
    return _camp(11)


def _stages(run: CampaignRun, cid: str) -> list[TruthRecord]:
    return sorted((r for r in run.truth if r.campaign == cid), key=lambda r: r.stage or 0)


def test_same_seed_same_run_other_seed_other_run(run: CampaignRun) -> None:
    again = _camp(11)
    assert [encode_truth(r) for r in again.truth] == [encode_truth(r) for r in run.truth]
    assert [e.id for e in again.injected] == [e.id for e in run.injected]
    assert again.campaigns == run.campaigns
    first = [msgspec.json.encode(e) for _, e in zip(range(5000), run.events(), strict=False)]
    assert first == [msgspec.json.encode(e) for _, e in zip(range(5000), again.events(), strict=False)]
    other = _camp(12)
    assert {e.id for e in other.injected}.isdisjoint(e.id for e in run.injected)
    assert [c.vm for c in other.campaigns] != [c.vm for c in run.campaigns] or [
        c.attacker_ip for c in other.campaigns
    ] != [c.attacker_ip for c in run.campaigns]


def test_every_campaign_tells_the_story_in_order(run: CampaignRun) -> None:
    st = CampaignSettings()
    assert len(run.campaigns) == 2
    assert sorted(c.ramping for c in run.campaigns) == [False, True]
    assert len({r.campaign for r in run.truth}) == 2
    for c in run.campaigns:
        recs = _stages(run, c.id)
        assert [r.stage for r in recs] == list(range(len(STAGES)))
        assert [r.detail["campaign_stage"] for r in recs] == list(STAGES)
        assert tuple(r.scenario for r in recs) == c.scenarios
        for r, variants in zip(recs, STAGE_VARIANTS, strict=True):
            assert r.scenario in variants and not r.benign and r.tenant == c.tenant
        for prev, nxt in itertools.pairwise(recs):
            gap = nxt.start - prev.end
            assert st.min_gap_ms <= gap <= st.max_gap_ms < 30 * _MIN  # one incident's inactivity gap
        # the story's entities: the attacker's address, then the victim VM (or its tenant's principal)
        assert recs[0].entity == recs[1].entity == TruthEntity("ip", c.attacker_ip)
        assert recs[2].entity == recs[4].entity == TruthEntity("vm", c.vm)
        assert recs[3].entity.type in ("vm", "principal") and c.neighbour_tenant not in ("", c.tenant)
        assert c.critical_ms == recs[2].start and c.start == recs[0].start and c.end == recs[-1].end
        by_id = {e.id: e for e in run.injected}
        for r in recs:
            evs = [by_id[i] for i in r.event_ids]
            assert min(e.ts for e in evs) == r.start and max(e.ts for e in evs) == r.end
        for e in (by_id[i] for r in recs[:2] for i in r.event_ids):  # every attempt comes from the attacker
            assert isinstance(e, FlowEvent | AuthEvent)
            assert e.src_ip == c.attacker_ip
            assert e.vm == c.vm
        if recs[3].scenario == "cross_tenant_leak.foreign_resource_access":
            audits = [by_id[i] for i in recs[3].event_ids]
            assert all(isinstance(e, AuditEvent) and e.src_ip == c.vm_ip for e in audits)
            assert {e.resource_tenant for e in audits if isinstance(e, AuditEvent)} == {c.neighbour_tenant}


def test_ramping_campaign_grows_geometrically_abrupt_one_does_not(run: CampaignRun) -> None:
    for c in run.campaigns:
        recon, guess = _stages(run, c.id)[:2]
        if not c.ramping:
            assert "ramp" not in guess.detail and "ramp" not in recon.detail
            continue
        ramp = guess.detail["ramp"]
        assert 30 <= ramp["minutes"] <= 90 and 15 <= ramp["rate_end_per_min"] <= 30
        # the events carry exactly the planned per-minute counts of failed logins
        by_id = {e.id: e for e in run.injected}
        fails = [by_id[i] for i in guess.event_ids if isinstance(by_id[i], AuthEvent)]
        assert all(isinstance(e, AuthEvent) and e.result == "failure" for e in fails)
        assert recon.end < ramp["start_ms"] <= guess.start
        per_min = Counter((e.ts - ramp["start_ms"]) // _MIN for e in fails)
        assert [per_min[m] for m in range(ramp["minutes"])] == ramp["per_minute"]
        assert len(fails) == sum(ramp["per_minute"])
        early = sum(ramp["per_minute"][:10])
        late = sum(ramp["per_minute"][-10:])
        assert late > 10 * max(early, 1)
        first_min = ramp["start_ms"] // _MIN * _MIN  # minute_signals keys are epoch minutes
        # the recon ramp too: probes per minute rise
        probes = recon.detail["ramp"]["per_minute"]
        assert sum(probes[-5:]) > 5 * max(sum(probes[:5]), 1)
        # the signal the forecaster sees rises before the critical stage
        sig = minute_signals(run.events(), run.topology)
        before = [sig.get((m, c.tenant)) for m in range(first_min, guess.end + 1, _MIN)]
        counts = [s.failed_logins if s else 0 for s in before]
        assert sum(counts[-10:]) > 5 * max(sum(counts[:10]), 1)


def test_ramp_counts_edges() -> None:
    counts = _ramp_counts(60, 0.2, 30.0)
    total = 0.2 * 60 / math.log(150) * (150 - 1)
    assert sum(counts) == math.floor(total)
    assert counts[0] <= 1 and 26 <= counts[-1] <= 30  # the last minute's mean rate is ~28.8
    assert all(b >= a - 1 for a, b in itertools.pairwise(counts))  # rises (floors may wobble)
    assert _ramp_counts(1, 1.0, 2.0) == [1]


def test_thin_and_retarget_edges() -> None:
    m = EventMaker("t")
    flow = m.flow(1, "1.2.3.4", "10.1.1.10", src_port=40000, dst_port=22, tenant="t-a")
    fail = m.auth(1, "root", "1.2.3.4", failed=True, tenant="t-a", host="hv-01", vm="vm-a-01")
    ok = m.auth(2, "root", "1.2.3.4", failed=False, tenant="t-a", host="hv-01", vm="vm-a-01")
    fail2 = m.auth(3, "root", "1.2.3.4", failed=True, tenant="t-a", host="hv-01", vm="vm-a-01")
    assert _thin([flow, fail, ok, fail2], 0) == []
    assert _thin([flow, fail, ok, fail2], 1) == [flow, fail]  # the flow rides with its login
    assert _thin([flow, fail, ok, fail2], 5) == [flow, fail, fail2]  # a success never stays in a ramp
    flows = [m.flow(t, "1.2.3.4", "10.1.1.10", src_port=1, dst_port=t) for t in range(1, 5)]
    assert _thin(flows, 2) == flows[:2]  # flow-only scenarios: each flow is an attempt
    moved = _retarget([flow, fail, flows[0]], "1.2.3.4", "9.9.9.9")
    assert [getattr(e, "src_ip", None) for e in moved] == ["9.9.9.9", "9.9.9.9", "9.9.9.9"]
    assert [e.id for e in moved] == [flow.id, fail.id, flows[0].id]
    assert _retarget([flow], "5.5.5.5", "9.9.9.9") == [flow]


def test_settings_and_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="duration_ms must exceed"):
        campaign_run(1, duration_ms=campaign_length_bound_ms())
    with pytest.raises(ValueError, match="ramping_share"):
        _camp(1, ramping_share=1.5)
    with pytest.raises(ValueError, match="weekday_factors"):
        campaign_run(1, duration_ms=_DUR, weekday_factors=(1.0,) * 6)
    with pytest.raises(ValueError, match="max_gap_ms"):
        CampaignSettings(min_gap_ms=10, max_gap_ms=5)
    with pytest.raises(ValueError, match="rising"):
        CampaignSettings(probe_rate_per_min=(5.0, 1.0))
    none = campaign_run(1, campaigns=0, duration_ms=_H, events_per_s=0.0)
    assert none.truth == [] and none.injected == [] and list(none.events()) == []


def test_ramping_share_edges() -> None:
    allr = campaign_run(5, campaigns=2, ramping_share=1.0, events_per_s=0.0, duration_ms=6 * _H)
    assert [c.ramping for c in allr.campaigns] == [True, True]
    none = campaign_run(5, campaigns=2, ramping_share=0.0, events_per_s=0.0, duration_ms=6 * _H)
    assert [c.ramping for c in none.campaigns] == [False, False]
    # concurrent campaigns in a short run never share a host while one of them is running
    many = campaign_run(6, campaigns=4, events_per_s=0.0, duration_ms=6 * _H)
    for a in many.campaigns:
        for b in many.campaigns:
            overlap = a.index < b.index and b.start < a.end + 50 * _MIN
            if overlap and not b.shared_host:
                assert a.host != b.host and a.tenant != b.tenant


def test_truth_field_is_optional_and_round_trips() -> None:
    plain = simulate(SimConfig(seed=3, duration_s=600, events_per_s=0.0, scenarios={"vm_escape": 1}))
    line = encode_truth(plain.truth[0])
    assert b"campaign" not in line and b"stage" not in line
    assert decode_truth(line).campaign is None and decode_truth(line).stage is None
    old = (
        b'{"scenario":"x.y","category":"x","tenant":null,"entity":{"type":"ip","id":"1.2.3.4"},'
        b'"start":1,"end":2,"event_ids":[],"benign":false,"detail":{"a":1}}'
    )
    assert decode_truth(old).campaign is None
    rec = campaign_run(2, campaigns=1, events_per_s=0.0, duration_ms=5 * _H).truth[3]
    assert decode_truth(encode_truth(rec)) == rec and rec.campaign == "2-c0" and rec.stage == 3


def test_detectors_raise_every_stage_category(run: CampaignRun) -> None:
    """The project's rule engine (its 27 rules, not the learning anomaly detectors), offline, over
    the whole run: each stage draws an alert of its scenario's category about its entity or events."""
    cfg = DetectorConfig.default()
    rules = [d for d in all_detectors(cfg) if type(d).__module__.startswith("detectors.rules.")]
    assert len(rules) >= 26  # the rule engine; the learning anomaly detectors cost 30 s here
    alerts, _, stats = run_detectors(run.events(), run.registry, cfg, rules)
    assert stats["failures"] == 0

    def hit(rec: TruthRecord) -> list[str]:
        out = []
        for a in alerts:
            if a.category != rec.category or a.first_seen > rec.end or a.last_seen < rec.start:
                continue
            if (a.entity.type, a.entity.id) == (rec.entity.type, rec.entity.id) or set(
                a.evidence.get("event_ids") or ()
            ) & set(rec.event_ids):
                out.append(a.detector)
        return out

    fired = {(r.campaign, r.stage): hit(r) for r in run.truth}
    assert all(fired.values()), {k: v for k, v in fired.items() if not v}
    critical = [a for a in alerts if a.severity == "critical"]
    for c in run.campaigns:  # the first critical alert about a campaign's VM is its escape, not before
        mine = [a for a in critical if (a.entity.type, a.entity.id) == ("vm", c.vm)]
        assert mine and min(a.first_seen for a in mine) >= c.critical_ms


def test_quiet_week_has_no_attack_and_a_weekend() -> None:
    week = quiet_week(5, days=7, events_per_s=0.05)
    assert week.truth == [] and week.injected == [] and week.campaigns == []
    per_day = Counter((e.ts - week.config.start_ms) // 86_400_000 for e in week.events())
    weekday = sum(per_day[d] for d in range(5)) / 5  # the default start is a Monday
    for d in (5, 6):  # Saturday and Sunday 08:00 onwards
        ratio = per_day[d] / weekday
        assert abs(ratio - WEEKDAY_FACTORS[d]) < 0.08, (d, ratio)
    assert abs(week.expected_background() - sum(per_day.values())) < 5 * math.sqrt(sum(per_day.values()))
    assert weekday_factor(week.config.start_ms) == 1.0
    assert weekday_factor(week.config.start_ms + 5 * 86_400_000) == WEEKDAY_FACTORS[5]


def test_quiet_signals_match_the_events_they_stand_for() -> None:
    day = quiet_week(8, days=1, events_per_s=0.5, slice_s=10.0)
    counted = minute_signals(day.events(), day.topology)
    drawn = list(quiet_signals(8, minutes=1440, events_per_s=0.5))
    assert drawn == list(quiet_signals(8, minutes=1440, events_per_s=0.5))
    assert len(drawn) == 1440 * 8 and len({(s.ts, s.tenant) for s in drawn}) == len(drawn)
    fields = ("events", "flows", "probes", "cross_tenant_flows", "failed_logins", "auth", "process", "audit")
    a: dict[str, int] = defaultdict(int)
    b: dict[str, int] = defaultdict(int)
    for s in counted.values():
        for f in fields:
            a[f] += getattr(s, f)
    for s in drawn:
        for f in fields:
            b[f] += getattr(s, f)
    for f in fields:
        assert abs(a[f] - b[f]) <= 5 * math.sqrt(a[f] + b[f] + 1), (f, a[f], b[f])
    assert a["failed_logins"] > 0 and a["probes"] > 0 and a["cross_tenant_flows"] > 0
    unpeered = {t.id for t in day.topology.tenants if not day.topology.peers_of(t.id)}
    assert unpeered and all(s.cross_tenant_flows == 0 for s in drawn if s.tenant in unpeered)
    # the hour of day shows: the busiest hour holds several times the quietest
    hours = Counter((s.ts // _H) % 24 for s in drawn for _ in range(s.events))
    assert max(hours.values()) > 5 * min(hours.values())
