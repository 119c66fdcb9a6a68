"""The engine's shared and cached per-batch work gives what the straightforward computation gives.

- ``Batch.src_tenants`` / ``dst_tenants`` (one registry lookup per distinct address of a batch)
  equal a per-flow lookup, also on the ``initiated()`` sub-batch.
- The flow rules whose hot loops keep the current pane in local variables (instead of calling
  ``Detector.state`` per event) reach the same findings and counters whether the events come as
  one batch per several panes, in shuffled order within the lateness allowance (so the pane
  cursor moves back and forth), or one event per batch (a fresh cursor every event), and also when
  the pane's key cap overflows.
"""

from __future__ import annotations

import dataclasses
import random
from functools import cache
from typing import Any

import pytest

from detectors.base import MANAGEMENT, Batch, Detector
from detectors.config import DetectorConfig
from detectors.flowdir import RESPONDER, ROLE_MASK, flow_view
from detectors.registry import all_detectors
from detectors.samples import load_cases, sample_files, samples_registry
from ingest.schema import Event, FlowEvent
from ingest.tenants import TenantRegistry

OPTIMISED = (
    "brute_force.flow_guessing",
    "dos.app_flood",
    "dos.distributed_flood",
    "dos.source_flood",
    "exfiltration.external_upload",
    "port_scan.failed_probe_scan",
    "port_scan.internet_probes",
)


@cache
def _simulated() -> tuple[tuple[FlowEvent, ...], TenantRegistry]:
    from ingest.simulator import SimConfig, simulate

    sim = simulate(SimConfig(seed=11, duration_s=900, events_per_s=40, scenarios={"all": 1}))
    return tuple(e for e in sim.events() if isinstance(e, FlowEvent)), sim.registry


def _sample_flows() -> list[FlowEvent]:
    return [e for p in sample_files() for c in load_cases(p) for e in c.events if isinstance(e, FlowEvent)]


def _straight_dst(reg: TenantRegistry, ev: FlowEvent) -> str | None:
    t = reg.tenant_of_ip(ev.dst_ip)
    return t if t is not None else (MANAGEMENT if reg.is_management_ip(ev.dst_ip) else None)


@pytest.mark.parametrize("which", ["samples", "simulated"])
def test_tenant_columns_equal_per_flow_lookups(which: str) -> None:
    if which == "samples":
        flows, reg = _sample_flows(), samples_registry()
    else:
        flows, reg = list(_simulated()[0][:6000]), _simulated()[1]
    assert flows
    batch = Batch(list(flows), reg)
    assert batch.src_tenants == [reg.tenant_of_ip(ev.src_ip) for ev in flows]
    assert batch.dst_tenants == [_straight_dst(reg, ev) for ev in flows]
    assert any(t is not None for t in batch.dst_tenants) and any(t is None for t in batch.src_tenants)
    sub = batch.initiated()
    kept = [ev for ev in flows if flow_view(ev) & ROLE_MASK != RESPONDER]
    assert sub.flows == kept
    assert sub.flow_views == [flow_view(ev) for ev in kept]
    assert sub.src_tenants == [reg.tenant_of_ip(ev.src_ip) for ev in kept]
    assert sub.dst_tenants == [_straight_dst(reg, ev) for ev in kept]


def _run(
    det: Detector, reg: TenantRegistry, flows: list[FlowEvent], size: int
) -> tuple[list[Any], dict[str, int]]:
    det.bind(reg)
    for i in range(0, len(flows), size):
        det.observe_batch(Batch(list[Event](flows[i : i + size]), reg))
    findings = [dataclasses.astuple(f) for f in det.close_all()]
    assert not det.errors
    return sorted(findings, key=repr), dict(det.counters)


def _shuffled(flows: tuple[FlowEvent, ...], spread_ms: int) -> list[FlowEvent]:
    """Events moved up to ``spread_ms`` from their place in time: batches cross pane boundaries both ways."""
    rng = random.Random(5)
    return [ev for _, ev in sorted(((ev.ts + rng.randrange(spread_ms), n), ev) for n, ev in enumerate(flows))]


@pytest.mark.parametrize("max_keys", [100_000, 12])
@pytest.mark.parametrize("detector_id", OPTIMISED)
def test_pane_cursor_gives_the_per_event_result(detector_id: str, max_keys: int) -> None:
    flows, reg = _simulated()
    stream = _shuffled(flows, 90_000)
    assert len({ev.ts // 60_000 for ev in stream[:2048]}) > 1  # a batch spans panes, back and forth
    cfg = DetectorConfig.default()
    cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, max_keys_per_window=max_keys))

    def fresh() -> Detector:
        (det,) = [d for d in all_detectors(cfg, include_anomaly=False) if d.meta.id == detector_id]
        return det

    batched = _run(fresh(), reg, stream, 2048)
    single = _run(fresh(), reg, stream, 1)
    assert batched == single
    if max_keys == 12:
        assert batched[1]["overflow"] > 0
    elif detector_id != "port_scan.internet_probes":  # the simulator's probes come from few sources
        assert batched[0], f"{detector_id} found nothing on the simulated attacks: the test would be empty"
