"""Offline scan: run every enabled detector over an events file and write alerts as JSON lines.

Library face of ``ssa scan EVENTS [--tenants FILE] [--output FILE|-]``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, Lateness
from detectors.io import ReadStats, iter_events, open_output, write_alerts
from detectors.job_order import OrderedFeed
from detectors.registry import all_detectors
from ingest.tenants import TenantRegistry

__all__ = ["ScanResult", "scan"]


@dataclass
class ScanResult:
    events: int
    rejected_lines: int
    alerts: int
    by_detector: dict[str, int] = field(default_factory=dict)
    # Events late for at least one of their kind's detectors (the job sends such events to the DLQ).
    late_events: int = 0
    detector_failures: int = 0
    # VPC flow records that repeat another interface's record of a flow (detectors.interface_copies)
    interface_copies: int = 0
    output: str = "-"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scan(
    events_path: str | os.PathLike[str],
    tenants_path: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = "-",
    *,
    config_path: str | os.PathLike[str] | None = None,
    config: DetectorConfig | None = None,
    lateness: Lateness | None = None,
    chunk: int = 50_000,
) -> ScanResult:
    """Scan ``events_path`` (JSON lines, ``.gz`` or ``-`` for stdin) and write alerts to ``output``
    (a path, or ``-``/None for stdout) as they close. Without a tenant registry, tenant-aware
    detectors see every address as external (cross-tenant rules stay silent).

    ``lateness`` is the per-kind allowance for disorder; ``ssa scan`` passes the job's own
    (``Settings.out_of_orderness_ms`` and ``flow_export_delay_ms``), so a file is late offline
    where the job would send it to the DLQ. Without it every kind gets the detector
    configuration's ``engine.max_out_of_orderness_ms``."""
    cfg = config or DetectorConfig.load_or_default(config_path)
    registry = TenantRegistry.load(tenants_path) if tenants_path else TenantRegistry()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg), lateness=lateness)
    feed = OrderedFeed(engine)  # the job's order, so a file gives the job's alerts
    stats = ReadStats()
    counts: dict[str, int] = {}
    n_alerts = 0
    with open_output(output) as sink:
        batch = []
        for ev in iter_events(events_path, stats):
            batch.append(ev)
            if len(batch) >= chunk:
                n_alerts += _emit(feed.process(batch), sink, counts)
                batch = []
        n_alerts += _emit(feed.process(batch), sink, counts)
        n_alerts += _emit(feed.flush(), sink, counts)
    st = engine.stats()
    return ScanResult(
        events=stats.events,
        rejected_lines=stats.rejected,
        alerts=n_alerts,
        by_detector=dict(sorted(counts.items())),
        late_events=int(st["late_events"]),
        detector_failures=int(st["failures"]),
        interface_copies=int(st["interface_copies"]),
        output=str(output) if output is not None else "-",
    )


def _emit(alerts: list[Any], sink: Any, counts: dict[str, int]) -> int:
    for a in alerts:
        counts[a.detector] = counts.get(a.detector, 0) + 1
    return write_alerts(alerts, sink)
