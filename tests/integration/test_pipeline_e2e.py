"""End to end on the real stack: simulated telemetry with known attacks into Kafka, the PyFlink
detection job, the indexer, and the expected alerts (category and entity) found in Elasticsearch."""

from __future__ import annotations

import pytest

from infra.settings import Settings

pytestmark = pytest.mark.integration


def test_known_attacks_are_found_in_elasticsearch(stack: Settings) -> None:
    from streams.demo import run_demo

    result = run_demo(stack, seed=11, tenants=5, minutes=3, events_per_s=300, say=print)
    assert result.events > 40_000
    found = {(a.category, a.entity.type, a.entity.id) for a in result.alerts}
    attacks = [r for r in result.truth if not r.benign]
    assert attacks, "the simulation injected no attack"
    missing = [
        (r.scenario, r.category, r.entity.type, r.entity.id)
        for r in attacks
        if (r.category, r.entity.type, r.entity.id) not in found
    ]
    # Every injected attack of the VM-escape and cross-tenant families is found by entity.
    critical_missing = [m for m in missing if m[1] in ("vm_escape", "cross_tenant_leak")]
    assert not critical_missing, critical_missing
    card = result.scorecard
    for category in (
        "vm_escape",
        "cross_tenant_leak",
        "port_scan",
        "brute_force",
        "exfiltration",
        "cryptomining",
        "dos",
    ):
        row = card.categories[category]
        assert row.instances > 0
        assert row.recall is not None and row.recall >= 0.9, (category, row)
        assert row.precision is not None and row.precision >= 0.9, (category, row)
    # Alerts are stored under their deterministic id, once.
    ids = [a.alert_id for a in result.alerts]
    assert len(ids) == len(set(ids))
    # The streaming job finds exactly what the offline engine finds over the same events.
    from detectors.config import DetectorConfig
    from detectors.evaluation.evaluate import run_detectors
    from ingest.simulator import simulate
    from ingest.tenants import TenantRegistry

    sim = simulate(result.sim_config)
    registry = TenantRegistry.load(result.settings.tenants_file)
    offline, _n, _stats = run_detectors(sim.events(), registry, DetectorConfig.default())
    assert {a.alert_id for a in offline} == set(ids)
