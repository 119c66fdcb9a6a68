"""The scorecard's matching rules and metrics, on hand-made alerts and truth, and ``evaluate`` end
to end on a short simulation."""

from __future__ import annotations

import json

import pytest

from detectors.alert import Alert, Attack, Entity, make_alert_id
from detectors.evaluation.evaluate import evaluate
from detectors.evaluation.scorecard import Truth, TruthEntity, load_truth, score


def _alert(cat: str, etype: str, eid: str, first: int, last: int, ids=(), ts: int | None = None) -> Alert:
    entity = Entity(etype, eid)  # type: ignore[arg-type]
    return Alert(
        alert_id=make_alert_id("d", entity, first, last), ts=ts if ts is not None else last, first_seen=first,
        last_seen=last, tenant="t", entity=entity, category=cat, severity="high", score=80, detector="d.x",  # type: ignore[arg-type]
        detector_version="1.0.0", attack=Attack("Impact", "T1498", "x"), summary="s",
        evidence={"event_ids": list(ids)},
    )  # fmt: skip


def _truth(
    scenario: str, etype: str, eid: str, start: int, end: int, ids=(), benign=False, context=False
) -> Truth:
    return Truth(
        scenario=scenario, category=scenario.split(".")[0], tenant="t", entity=TruthEntity(etype, eid),
        start=start, end=end, event_ids=list(ids), benign=benign, context=context,
    )  # fmt: skip


def test_matching_needs_category_time_overlap_and_entity_or_shared_event() -> None:
    truth = [_truth("dos.syn_flood", "ip", "1.2.3.4", 1000, 5000, ids=["e1", "e2"])]
    cases = {
        "same entity, overlapping": (_alert("dos", "ip", "1.2.3.4", 4000, 9000), True),
        "other entity but shares an event": (_alert("dos", "ip", "9.9.9.9", 1000, 2000, ids=["e2"]), True),
        "other entity, no shared event": (_alert("dos", "ip", "9.9.9.9", 1000, 2000, ids=["zz"]), False),
        "other category": (_alert("port_scan", "ip", "1.2.3.4", 1000, 2000), False),
        "no time overlap": (_alert("dos", "ip", "1.2.3.4", 5001, 9000), False),
        "anomaly of any category": (_alert("anomaly", "ip", "1.2.3.4", 2000, 3000), True),
    }
    for name, (alert, matched) in cases.items():
        card = score([alert], truth, events=1000)
        tp = sum(r.true_alerts for r in card.categories.values())
        assert tp == int(matched), name


def test_metrics_per_category_and_scenario() -> None:
    truth = [
        _truth("dos.syn_flood", "ip", "a", 0, 10_000),
        _truth("dos.syn_flood", "ip", "b", 0, 10_000),
        _truth("dos.benign_web_peak", "ip", "c", 0, 10_000, benign=True),
        _truth("port_scan.vertical", "ip", "d", 0, 10_000),
    ]
    alerts = [
        _alert("dos", "ip", "a", 1000, 2000, ts=60_000),
        _alert("dos", "ip", "a", 3000, 4000, ts=120_000),  # second alert on the same instance: still TP
        _alert("dos", "ip", "c", 1000, 2000),  # on a look-alike: FP
        _alert("dos", "ip", "z", 1000, 2000),  # matches nothing: FP
    ]
    card = score(alerts, truth, events=2000)
    dos = card.categories["dos"]
    assert (dos.alerts, dos.true_alerts, dos.false_alerts_on_benign, dos.false_alerts_unmatched) == (
        4,
        2,
        1,
        1,
    )
    assert dos.precision == pytest.approx(0.5) and dos.recall == pytest.approx(0.5)
    assert dos.f1 == pytest.approx(0.5)
    assert dos.ttd_median_s == pytest.approx(60.0)  # first matching alert's ts - start
    assert dos.alerts_per_1k_events == pytest.approx(2.0)
    assert dos.benign_instances == 1 and dos.benign_alerted == 1
    scan = card.categories["port_scan"]
    assert scan.recall == 0.0 and scan.precision is None
    syn = card.scenarios["dos.syn_flood"]
    assert (syn.instances, syn.detected, syn.alerts) == (2, 1, 2)
    assert syn.precision == pytest.approx(2 / 4)  # its alerts against its category's false alerts
    assert card.scenarios["dos.benign_web_peak"].alerts == 1
    assert card.scenarios["dos.(unmatched)"].alerts == 1
    assert card.scenarios["port_scan.vertical"].missed[0]["entity"] == "ip:d"
    assert "dos" in card.table() and json.dumps(card.to_json())


def test_alerts_on_the_backgrounds_context_are_neither_true_nor_false() -> None:
    """The simulator's background probes every VM from the internet: an alert saying so matches a
    context record, and is left out of precision and recall; one on an attack stays a TP."""
    truth = [
        _truth("port_scan.background_internet_probes", "vm", "vm-1", 0, 10_000, context=True),
        _truth("port_scan.background_internet_probes", "vm", "vm-2", 0, 10_000, context=True),
        _truth("port_scan.vertical", "ip", "6.6.6.6", 0, 10_000),
    ]
    alerts = [
        _alert("port_scan", "vm", "vm-1", 1000, 2000),  # context
        _alert("port_scan", "ip", "6.6.6.6", 1000, 2000),  # the attack: TP
        _alert("port_scan", "vm", "vm-9", 1000, 2000),  # matches nothing: FP
        _alert("port_scan", "vm", "vm-2", 20_000, 30_000),  # after the context's span: FP
        _alert("anomaly", "vm", "vm-2", 1000, 2000),  # the anomaly models' on a probed VM: FP all the same
    ]
    card = score(alerts, truth, events=1000)
    assert (
        card.categories["anomaly"].false_alerts_unmatched == 1
        and not card.categories["anomaly"].context_alerts
    )
    scan = card.categories["port_scan"]
    assert (scan.alerts, scan.true_alerts, scan.context_alerts, scan.false_alerts_unmatched) == (4, 1, 1, 2)
    assert scan.precision == pytest.approx(1 / 3)  # TP / (alerts - context alerts)
    assert (scan.instances, scan.detected, scan.recall) == (1, 1, 1.0)  # context records are no instances
    ctx = card.scenarios["port_scan.background_internet_probes"]
    assert (ctx.instances, ctx.detected, ctx.alerts, ctx.recall, ctx.precision) == (2, 1, 1, 0.5, None)
    assert card.scenarios["port_scan.vertical"].precision == pytest.approx(1 / 3)
    lines = card.table().splitlines()
    row = next(line for line in lines if line.startswith("port_scan "))
    assert lines[2].split()[:5] == ["category", "alerts", "TP", "FP", "ctx"]
    assert row.split()[:5] == ["port_scan", "4", "1", "2", "1"]
    assert any(line.startswith("ctx: ") for line in lines)
    assert not any(line.startswith("ctx: ") for line in score(alerts[1:2], truth, 1000).table().splitlines())


def test_load_truth_names_the_bad_line(tmp_path) -> None:
    p = tmp_path / "gt.jsonl"
    p.write_text('{"scenario": "x"}\n')
    with pytest.raises(ValueError, match=r"gt\.jsonl:1"):
        load_truth(p)


def test_evaluate_end_to_end_on_a_short_simulation(tmp_path) -> None:
    sim = pytest.importorskip("ingest.simulator")
    result = sim.simulate(sim.SimConfig(seed=21, duration_s=900, events_per_s=40))
    files = sim.write_files(result, tmp_path)
    card = evaluate(files.events, files.ground_truth, files.tenants)
    assert card.events == files.event_count
    assert card.meta["detector_failures"] == 0
    for cat in ("vm_escape", "cross_tenant_leak"):
        row = card.categories[cat]
        assert row.instances > 0 and row.recall == 1.0 and row.precision == 1.0, row
