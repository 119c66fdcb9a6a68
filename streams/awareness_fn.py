"""The awareness stage of the job (``awareness.stage`` keeps the logic): after the detectors,
keyed by tenant, alerts and posture metrics become incidents, per-minute threat levels and early
warnings.

  alerts (both paths) --AlertViews--> (tenant, "alert", view)   one view per tenant it involves
  posture metrics ----------------->  (tenant, "metrics", record)
      keyed by tenant: awareness.stage.TenantAwareness in Flink keyed state, an event-time timer
      at the end of each open minute; the analysts' snooze file is read as it changes
      keyed by one key: the cloud's threat level from every tenant's latest

Everything is decided on event time (the alerts' times and the watermark), so a restore that
replays alerts after a checkpoint rewrites the same documents with the same ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from awareness.incidents import IncidentSettings, tenant_views
from awareness.snooze import SnoozeWatcher
from awareness.stage import CLOUD_KEY, AwarenessOutput, CloudAwareness, TenantAwareness
from awareness.threat import ThreatSettings
from detectors.config import DetectorConfig
from ingest.tenants import RegistryWatcher, TenantRegistry

__all__ = [
    "ATTEMPT_VERSIONS",
    "CLOUD_KEY",
    "AlertViews",
    "AwarenessConfig",
    "attempt_version_base",
    "make_awareness_function",
    "make_cloud_function",
]


@dataclass(frozen=True)
class AwarenessConfig:
    """What the Python workers need (plain values: it pickles into the job graph)."""

    tenants_file: str | None = None
    detector_config_file: str | None = None
    snooze_file: str | None = None

    def detector_config(self) -> DetectorConfig:
        if self.detector_config_file:
            return DetectorConfig.load(self.detector_config_file)
        return DetectorConfig.default()

    def registry(self) -> RegistryWatcher | None:
        return RegistryWatcher(self.tenants_file) if self.tenants_file else None


class AlertViews:
    """The keyed inputs of one job output: ``(tenant, "alert"|"metrics", JSON)``. An alert gives
    one view per tenant it involves (the registry places addresses and VMs on their tenant's side);
    a metrics record goes to its tenant (pipeline-wide records, tenant ``-``, are nobody's)."""

    def __init__(self, config: AwarenessConfig, is_alert: bool) -> None:
        self.config = config
        self.is_alert = is_alert
        self._registry: RegistryWatcher | None = None
        self._settings: IncidentSettings | None = None

    def __getstate__(self) -> dict[str, Any]:  # the registry is re-read by each worker
        return {"config": self.config, "is_alert": self.is_alert}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["is_alert"])  # type: ignore[misc]

    def __call__(self, value: str) -> list[tuple[str, str, str]]:
        record = json.loads(value)
        if not self.is_alert:
            tenant = record.get("tenant")
            return [] if not tenant or tenant == "-" else [(tenant, "metrics", value)]
        if self._settings is None:
            self._settings = IncidentSettings.from_config(self.config.detector_config())
            self._registry = self.config.registry()
        registry: TenantRegistry | None = self._registry.current() if self._registry else None
        return [(t, "alert", json.dumps(view)) for t, view in tenant_views(record, registry, self._settings)]


# An incident's versions within one attempt of the job stay below this.
ATTEMPT_VERSIONS: Final = 1 << 31


def attempt_version_base(now_s: float | None = None) -> int:
    """What this attempt of the stage adds to every incident version it writes: its start second
    times ``ATTEMPT_VERSIONS``. The Kafka sinks are at-least-once, so a killed attempt's documents
    written after its last checkpoint stay in Elasticsearch; the restored attempt replays the same
    alerts, in another order when the two paths interleave otherwise, and an incident's versions
    there need not reach the killed attempt's (closes and re-opens follow the watermark). The
    indexer keeps the highest version, so a later attempt's documents must outrank an earlier
    one's: a later start second does (the process is restarted, or Flink waits its restart delay)."""
    return int(time.time() if now_s is None else now_s) * ATTEMPT_VERSIONS


def make_awareness_function(config: AwarenessConfig) -> Any:
    """The PyFlink ``KeyedProcessFunction`` of the tenant stage: input rows ``(tenant, kind, JSON)``,
    main output incident documents, side outputs threat and warning documents (all JSON)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, OutputTag
    from pyflink.datastream.state import ValueStateDescriptor

    threat_tag = OutputTag("threat", Types.STRING())
    warnings_tag = OutputTag("warnings", Types.STRING())

    class AwarenessFunction(KeyedProcessFunction):
        def open(self, runtime_context: Any) -> None:
            self.detector_config = config.detector_config()
            self.config_digest = self.detector_config.digest()
            self.version_base = attempt_version_base()
            self.registry = config.registry()
            self.snoozes = SnoozeWatcher(config.snooze_file) if config.snooze_file else None
            self.state = runtime_context.get_state(
                ValueStateDescriptor("ssa-awareness", Types.PICKLED_BYTE_ARRAY())
            )
            self.timer_at = runtime_context.get_state(
                ValueStateDescriptor("ssa-awareness-timer", Types.LONG())
            )

        def _load(self, tenant: str) -> TenantAwareness:
            current = self.state.value()
            if current is None:
                registry = self.registry.current() if self.registry else TenantRegistry()
                current = TenantAwareness(tenant, self.detector_config, registry.criticality_of(tenant))
            elif current.config_digest != self.config_digest:  # restored under another configuration
                current.reconfigure(self.detector_config)
            return current

        def process_element(self, row: Any, ctx: Any) -> Iterator[Any]:
            tenant, kind, value = row[0], row[1], row[2]
            current = self._load(tenant)
            out = AwarenessOutput()
            if self.snoozes is not None:
                out.extend(current.on_snoozes(self.snoozes.current()))
            record = json.loads(value)
            if kind == "alert":
                out.extend(current.on_alert(record))
            else:
                current.on_metrics(record)
            self._schedule(ctx, current)
            self.state.update(current)
            yield from _emit(out, self.version_base)

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
            current = self.state.value()
            if current is None:
                return
            if current.config_digest != self.config_digest:  # restored under another configuration
                current.reconfigure(self.detector_config)
            # Up to the stream's watermark: at the end of input it jumps to Long.MAX_VALUE.
            watermark = max(timestamp, ctx.timer_service().current_watermark())
            out = current.on_watermark(watermark)
            self.timer_at.clear()
            self._schedule(ctx, current)
            self.state.update(current)
            yield from _emit(out, self.version_base)

        def _schedule(self, ctx: Any, current: TenantAwareness) -> None:
            """One timer at the end of the next open minute, while the tenant's clock runs."""
            if self.timer_at.value() is not None:
                return
            at = current.next_timer()
            if at is not None:
                self.timer_at.update(at)
                ctx.timer_service().register_event_time_timer(at)

    def _emit(out: AwarenessOutput, version_base: int) -> Iterator[Any]:
        for doc in out.incidents:
            yield json.dumps({**doc, "version": version_base + int(doc["version"])}, sort_keys=True)
        for doc in out.threat:
            yield threat_tag, json.dumps(doc, sort_keys=True)
        for doc in out.warnings:
            yield warnings_tag, json.dumps(doc, sort_keys=True)

    return AwarenessFunction(), threat_tag, warnings_tag


def make_cloud_function(config: AwarenessConfig) -> Any:
    """The PyFlink ``KeyedProcessFunction`` of the cloud stage (one key): tenant threat documents
    in, the cloud's threat document for the same minute out."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    class CloudFunction(KeyedProcessFunction):
        def open(self, runtime_context: Any) -> None:
            self.detector_config = config.detector_config()
            self.threat_settings = ThreatSettings.from_config(self.detector_config)
            self.state = runtime_context.get_state(
                ValueStateDescriptor("ssa-cloud", Types.PICKLED_BYTE_ARRAY())
            )

        def process_element(self, value: str, ctx: Any) -> Iterator[str]:
            current = self.state.value()
            if current is None:
                current = CloudAwareness(self.detector_config)
            else:  # the current configuration's parameters, also for a state restored under another
                current.settings = self.threat_settings
            doc = current.on_tenant_threat(json.loads(value))
            self.state.update(current)
            yield json.dumps(doc, sort_keys=True)

    return CloudFunction()
