"""The Python side of the job: a keyed function that runs the detection engine over one-second
micro-batches of one partition key (a tenant, or a host for process events).

Per key, the engine (its open windows and suppression state) and the posture accumulators live
in Flink keyed state, so a checkpoint captures them together with the Kafka offsets and a
restart resumes exactly where the checkpoint was: the same alerts, with the same ``alert_id``s.
Event-time timers close windows of keys that went quiet.

Outputs: alerts (JSON) on the main output, posture metrics and DLQ records on side outputs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from detectors.alert import Alert, encode_alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors
from ingest.schema import Event, decode_event
from ingest.tenants import RegistryWatcher, TenantRegistry
from streams.posture import PostureState

__all__ = ["DLQ_TAG_NAME", "METRICS_TAG_NAME", "DetectionJobConfig", "KeyState", "MicroBatchDetector"]

log = logging.getLogger(__name__)

DLQ_TAG_NAME = "dlq"
METRICS_TAG_NAME = "metrics"
MAX_PAYLOAD_BYTES = 1 << 20
END_OF_TIME = 2**63 - 1  # Flink's final watermark


@dataclass(frozen=True)
class DetectionJobConfig:
    """What the Python workers need; plain values so it pickles into the job graph."""

    tenants_file: str | None = None
    detector_config_file: str | None = None
    tick_ms: int = 1000

    def make_engine_context(self) -> DetectionContext:
        config = (
            DetectorConfig.load(self.detector_config_file)
            if self.detector_config_file
            else DetectorConfig.default()
        )
        registry: TenantRegistry | RegistryWatcher | None = (
            RegistryWatcher(self.tenants_file) if self.tenants_file else TenantRegistry()
        )
        return DetectionContext(registry=registry, config=config)


@dataclass
class KeyState:
    engine: DetectionEngine
    posture: PostureState = field(default_factory=PostureState)
    # Detector failures already reported, per detector id (the engine counts them all).
    reported_failures: dict[str, int] = field(default_factory=dict)


class MicroBatchDetector:
    """Pure logic of the keyed function, usable without Flink (tests, offline replay)."""

    def __init__(self, config: DetectionJobConfig) -> None:
        self.config = config
        self.context = config.make_engine_context()

    def new_state(self) -> KeyState:
        return KeyState(engine=DetectionEngine(all_detectors(self.context.config), self.context))

    def attach(self, state: KeyState) -> None:
        state.engine.context = self.context

    @staticmethod
    def detach(state: KeyState) -> None:
        # The registry and configuration are shared by all keys: not part of keyed state.
        state.engine.context = None  # type: ignore[assignment]

    def on_batch(
        self, state: KeyState, key: str, payloads: Sequence[str] | str
    ) -> tuple[list[Alert], list[dict[str, Any]]]:
        """Decode, order and detect one micro-batch (payloads as a list, or newline-joined).
        Returns alerts and DLQ records."""
        events: list[Event] = []
        dlq: list[dict[str, Any]] = []
        lines = payloads.split("\n") if isinstance(payloads, str) else payloads
        for line in lines:
            if not line:
                continue
            if len(line) > MAX_PAYLOAD_BYTES:
                dlq.append(_dlq(line[:4096], f"payload over {MAX_PAYLOAD_BYTES} bytes in the detection job"))
                continue
            try:
                events.append(decode_event(line))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                dlq.append(_dlq(line, f"not a canonical event in the detection job: {exc}"))
        events.sort(key=_order)
        for ev in events:
            state.posture.add(ev)
        alerts = state.engine.process(events)
        for alert in alerts:
            state.posture.count_alert(alert.tenant, alert.ts)
        return alerts, dlq

    def on_watermark(
        self, state: KeyState, key: str, watermark: int
    ) -> tuple[list[Alert], list[dict[str, Any]]]:
        alerts = state.engine.advance(watermark)
        for alert in alerts:
            state.posture.count_alert(alert.tenant, alert.ts)
        return alerts, state.posture.close(watermark, key)

    @staticmethod
    def has_open_work(state: KeyState) -> bool:
        return bool(state.posture) or state.engine.state_size() > 0


def _order(ev: Event) -> tuple[int, str]:
    return ev.ts, ev.id


def _dlq(raw: str, reason: str) -> dict[str, Any]:
    return {"raw": raw, "source": "detect", "reason": reason, "ts": int(time.time() * 1000)}


def make_keyed_function(config: DetectionJobConfig) -> Any:
    """The PyFlink ``KeyedProcessFunction`` (built lazily: detectors never import PyFlink)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, OutputTag
    from pyflink.datastream.state import ValueStateDescriptor

    metrics_tag = OutputTag(METRICS_TAG_NAME, Types.STRING())
    dlq_tag = OutputTag(DLQ_TAG_NAME, Types.STRING())

    class DetectFunction(KeyedProcessFunction):
        def open(self, runtime_context: Any) -> None:
            self.logic = MicroBatchDetector(config)
            self.state = runtime_context.get_state(
                ValueStateDescriptor("ssa-key-state", Types.PICKLED_BYTE_ARRAY())
            )

        def _load(self) -> KeyState:
            st = self.state.value()
            if st is None:
                st = self.logic.new_state()
            self.logic.attach(st)
            return st

        def _save(self, st: KeyState) -> None:
            self.logic.detach(st)
            self.state.update(st)

        def process_element(self, row: Any, ctx: Any) -> Iterator[Any]:
            key, payloads = row[0], row[2]
            st = self._load()
            alerts, dlq = self.logic.on_batch(st, key, payloads)
            self._save(st)
            ctx.timer_service().register_event_time_timer(_next_tick(ctx.timestamp(), config.tick_ms))
            for alert in alerts:
                yield encode_alert(alert).decode()
            for record in dlq:
                yield dlq_tag, json.dumps(record)

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
            # Close up to the stream's watermark, not just this timer: at the end of input (or
            # a drain) the watermark jumps to Long.MAX_VALUE, and a timer registered after that
            # jump would never fire.
            watermark = max(timestamp, ctx.timer_service().current_watermark())
            st = self._load()
            alerts, metrics = self.logic.on_watermark(st, ctx.get_current_key(), watermark)
            open_work = self.logic.has_open_work(st)
            self._save(st)
            if open_work and watermark < END_OF_TIME - config.tick_ms:
                ctx.timer_service().register_event_time_timer(_next_tick(watermark, config.tick_ms))
            for alert in alerts:
                yield encode_alert(alert).decode()
            for record in metrics:
                yield metrics_tag, json.dumps(record)

    return DetectFunction(), metrics_tag, dlq_tag


def _next_tick(ts: int | None, tick_ms: int) -> int:
    now = ts if ts is not None else int(time.time() * 1000)
    return now - now % tick_ms + tick_ms
