"""``evaluate``: run the detectors over labelled events and score the alerts (see ``scorecard``).

Library face of ``ssa evaluate EVENTS GROUND_TRUTH [--tenants FILE] [--json FILE]``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from detectors.alert import Alert
from detectors.base import Detector
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.evaluation.scorecard import Scorecard, Truth, load_truth, score
from detectors.io import ReadStats, iter_events
from detectors.job_order import OrderedFeed
from detectors.registry import all_detectors
from ingest.schema import Event
from ingest.tenants import TenantRegistry

__all__ = ["evaluate", "run_detectors"]

PathLike = str | os.PathLike[str]


def run_detectors(
    events: PathLike | Iterable[Event],
    registry: TenantRegistry,
    config: DetectorConfig,
    detectors: Sequence[Detector] | None = None,
) -> tuple[list[Alert], int, dict[str, object]]:
    """All alerts of the events (path or iterable), the number of events, and the engine stats."""
    read = ReadStats()
    stream = iter_events(events, read) if isinstance(events, str | os.PathLike) else events
    counted = _Counted(stream)
    dets = list(detectors) if detectors is not None else all_detectors(config)
    engine = DetectionEngine(dets, DetectionContext(registry, config))
    alerts = OrderedFeed(engine).run(counted)
    stats = engine.stats()
    stats["rejected_lines"] = read.rejected
    return alerts, counted.n, stats


class _Counted:
    def __init__(self, it: Iterable[Event]) -> None:
        self.it = it
        self.n = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for ev in self.it:
            self.n += 1
            yield ev


def evaluate(
    events: PathLike | Iterable[Event],
    ground_truth: PathLike | Iterable[Truth],
    tenants: PathLike | TenantRegistry | None,
    *,
    config: DetectorConfig | None = None,
    detectors: Sequence[Detector] | None = None,
    slack_ms: int = 0,
) -> Scorecard:
    """Run the detectors on ``events`` and score them against ``ground_truth`` (matching rules in
    ``detectors.evaluation.scorecard``)."""
    cfg = config or DetectorConfig.default()
    if isinstance(tenants, TenantRegistry):
        registry = tenants
    elif tenants is not None:
        registry = TenantRegistry.load(tenants)
    else:
        registry = TenantRegistry()
    truth = load_truth(ground_truth) if isinstance(ground_truth, str | os.PathLike) else list(ground_truth)
    t0 = time.perf_counter()
    alerts, n_events, stats = run_detectors(events, registry, cfg, detectors)
    elapsed = time.perf_counter() - t0
    card = score(alerts, truth, n_events, slack_ms=slack_ms)
    card.meta.update(
        {
            "events_source": str(events) if isinstance(events, str | Path) else "<iterable>",
            "engine_seconds": round(elapsed, 3),
            "late_events": stats["late"],
            "detector_failures": stats["failures"],
            "config": cfg.source,
        }
    )
    return card
