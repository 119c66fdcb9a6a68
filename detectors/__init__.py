"""Detectors: pure Python over canonical events. Never imports PyFlink, Kafka or Elasticsearch.

The public surface::

    from detectors import DetectionContext, DetectionEngine, DetectorConfig, all_detectors

    ctx = DetectionContext(registry, DetectorConfig.default())      # registry: TenantRegistry or RegistryWatcher
    engine = DetectionEngine(all_detectors(ctx.config), ctx)
    alerts = engine.process(events)     # any kinds, roughly ts-ordered; alerts of windows that closed
    alerts += engine.advance(watermark) # optional: close windows of a quiet key
    alerts += engine.flush()            # end of input: close everything

Offline tools: ``detectors.scan.scan`` and ``detectors.evaluation.evaluate.evaluate``; they feed the
engine through ``detectors.job_order.OrderedFeed(engine)``, which gives it a file's events in the
job's order (its one-second micro-batches), so a file gives the job's alerts.
"""

from __future__ import annotations

from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors

__all__ = ["DetectionContext", "DetectionEngine", "DetectorConfig", "all_detectors"]
