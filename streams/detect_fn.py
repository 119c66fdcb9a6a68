"""The Python side of the job: a keyed function that runs the detection engine over one-second
micro-batches of one partition key (a tenant, or a host for process events).

Per key, the engine (its open windows and suppression state) and the posture accumulators live
in Flink keyed state, so a checkpoint captures them together with the Kafka offsets and a
restart resumes exactly where the checkpoint was: the same alerts, with the same ``alert_id``s.
Event-time timers close windows of keys that went quiet.

Outputs: alerts (JSON) on the main output, posture metrics and DLQ records on side outputs.

Whose event is it (``DetectionJobConfig.tenant_topic_regex``, ``check_tenant``)? In the plain mode
the payload's ``tenant`` is trusted as it is, and nothing here costs a thing per event. With
tenant topics (secure mode: a feeder may write only its own tenant's ``ssa.<tenant>.telemetry.*``)
each batch carries the topic of every payload, and the tenant is the topic's:

- on a tenant's topic, an event without a tenant gets the topic's; one naming another tenant goes
  to the DLQ (``tenant mismatch: topic of tenant A, payload says B``) and is never detected, but
  for a flow one of whose addresses the registry gives the topic's tenant: the tenant's own record
  of a connection with another tenant's VM, named by its own side (``_flow_of_tenant``). A
  payload naming the topic's tenant is trusted here; the parse stage also holds those to the
  registry (``verify``).
- on the provider's topics (``ssa.provider.telemetry.*``: the hypervisors' auditd, which serves
  every tenant) the provider cannot claim a tenant either: an event's tenant is the one the job's
  registry gives its ``vm``, filled in when the payload has none; a payload naming any other
  tenant, or a tenant for an event whose VM the registry does not know (or with no VM: host
  telemetry is the provider's own), goes to the DLQ with the reason. So the provider's payload
  may carry a tenant only as the registry maps its VM, which is what ``ssa ingest`` writes with
  the same registry. Control-plane audit logs that name tenants by account belong on each
  tenant's topics, not the provider's.

Other fields that name tenants (an audit event's ``principal_tenant``, ``resource_tenant``) are
the feeder's record of who touched its resources and are kept as sent.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import operator
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec

from detectors.alert import Alert, encode_alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, Lateness
from detectors.job_order import MICRO_BATCH_MS
from detectors.registry import all_detectors
from infra.clients import read_secret
from infra.secure import PROVIDER
from ingest.dlq import make_dlq
from ingest.schema import Event, FlowEvent, decode_event
from ingest.tenants import RegistryWatcher, TenantRegistry
from streams.detector_health import DetectorHealth
from streams.posture import PostureState, anomaly_records

__all__ = [
    "DLQ_TAG_NAME",
    "METRICS_TAG_NAME",
    "DetectionJobConfig",
    "KeyState",
    "MicroBatchDetector",
    "StepOutput",
    "alert_id_secret",
    "check_tenant",
    "closed_batches_end",
    "late_dlq",
    "make_keyed_function",
    "make_late_function",
]

log = logging.getLogger(__name__)

DLQ_TAG_NAME = "dlq"
METRICS_TAG_NAME = "metrics"
MAX_PAYLOAD_BYTES = 1 << 20
END_OF_TIME = 2**63 - 1  # Flink's final watermark
# The worker allocates a few objects per event (decoded events, detector updates), nearly all
# freed by reference counting; at CPython's default (a young collection every 700 allocations)
# the cyclic collector cost 0.7 us per event, a tenth at this threshold.
GC_YOUNG_THRESHOLD = 50_000


@dataclass(frozen=True)
class DetectionJobConfig:
    """What the Python workers need; plain values so it pickles into the job graph."""

    tenants_file: str | None = None
    detector_config_file: str | None = None
    # Analysts' snoozes, read by the awareness stage (``awareness.snooze``).
    snooze_file: str | None = None
    # Event time per micro-batch (the SQL's tumbling window per key). 250 ms was measured against
    # 1 s back to back on the 2-core bench host (12-05): 29 % less sustained throughput (22.8k and
    # 22.7k against 31.7k and 32.5k events/s over the bench's backlog, more and smaller steps) and
    # no shorter latency beyond the window at 80 % load (job part p99 1.40 s against 1.29 s).
    tick_ms: int = MICRO_BATCH_MS  # 1000; offline, ssa scan and ssa evaluate cut theirs the same
    # Deserialized key states kept between batches (a host's or a tenant's host-event engine is
    # tens of KB pickled, a tenant's flow engine megabytes).
    state_cache_keys: int = 512
    # A key's whole state is written at most every this many steps; the steps between are logged
    # (``streams.keyed_state``). The price is a longer log in each checkpoint (raw payloads,
    # cheap to copy) and the logged steps replayed per key on a restore.
    snapshot_every_steps: int = 30
    # ... and only once the log holds this many times the last snapshot's bytes. A tenant's flow
    # engine grows to megabytes (its hours of beacon panes): pickled every 30 steps it took 17.5 of
    # the 37.4 us the Python side spent per event (the bench's backlog replayed offline: 16
    # tenants, 20 minutes, 3.06 M events; 2.6 of 25.0 with this ratio), and in the job the flow
    # path's thread spent 119-121 s of CPU on that backlog, 52-59 s with this ratio. The price:
    # Flink holds the logs beside the snapshots (up to 4x their bytes: 132 MB beside 55 MB at the
    # end of that backlog) and a restore replays them (a flow key's in about a second).
    snapshot_log_ratio: float = 4.0
    # Bounds of the log all the same: steps replayed after a restore, and bytes per key.
    max_log_steps: int = 600
    max_log_bytes: int = 16 << 20
    # The watermarks' allowances for disorder (settings.out_of_orderness_ms, and
    # settings.flow_export_delay_ms for flows), given to the engine so that it judges lateness
    # as ``ssa scan`` does.
    out_of_orderness_ms: int = 2000
    flow_export_delay_ms: int = 360_000

    # Appended to the partition key in posture rows. Both paths count alerts per tenant and minute
    # in a row of kind ``alert`` whose document id hashes tenant, kind, key and minute; a tenant
    # is the key of both paths, so the flow path's rows need a key of their own.
    posture_key_suffix: str = ""
    # Tenant topics (``streams.sql.tenant_topic_pattern``, group 1 the tenant): each batch is
    # (payloads, topics) and the tenant is the topic's. "" = the plain mode, the payload's tenant.
    tenant_topic_regex: str = ""
    # settings.alert_id_key_file: the alert ids are keyed hashes with its secret ("" = unkeyed).
    alert_id_key_file: str = ""

    def lateness(self) -> Lateness:
        return Lateness.for_flows(self.out_of_orderness_ms, self.flow_export_delay_ms)

    def make_engine_context(self) -> DetectionContext:
        config = DetectorConfig.load_or_default(self.detector_config_file)
        registry: TenantRegistry | RegistryWatcher | None = (
            RegistryWatcher(self.tenants_file) if self.tenants_file else TenantRegistry()
        )
        secret = alert_id_secret(self.alert_id_key_file) if self.alert_id_key_file else None
        return DetectionContext(registry=registry, config=config, alert_id_secret=secret)


def alert_id_secret(path: str) -> bytes:
    """The alert ids' hash key from the file at ``path`` (any text; its SHA-256, the 32 bytes
    BLAKE2b takes as a key). SettingsError, one line, when the file cannot be read or is empty."""
    return hashlib.sha256(read_secret(path, "alert_id_key_file").encode()).digest()


@dataclass
class KeyState:
    engine: DetectionEngine
    posture: PostureState = field(default_factory=PostureState)
    # The detectors' failures and overflows, reported per minute (``streams.detector_health``).
    health: DetectorHealth = field(default_factory=DetectorHealth)
    # How far the last step advanced the key: a timer up to there has nothing left to close.
    advanced_to: int = 0
    # Steps logged since this state was last written whole to Flink state (``streams.keyed_state``).
    logged_steps: int = 0
    # Bytes of that snapshot's pickle and of the steps logged since (``streams.keyed_state``).
    snapshot_bytes: int = 0
    log_bytes: int = 0
    # ``DetectorConfig.digest`` of the configuration the engine's detectors were built with.
    config_digest: str = ""

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.pop("reported_failures", None)  # a field of earlier versions, never used
        state.pop("snapshot_version", None)  # the step count of the snapshot, when Flink kept one
        self.__dict__.update(state)
        if "health" not in state:  # a checkpoint of a version before detector health
            self.health = DetectorHealth()
        if "config_digest" not in state:  # before restores moved keys to a changed configuration
            self.config_digest = ""


@dataclass
class StepOutput:
    alerts: list[Alert]
    metrics: list[dict[str, Any]]
    dlq: list[dict[str, Any]]


class MicroBatchDetector:
    """Pure logic of the keyed function, usable without Flink (tests, offline replay)."""

    def __init__(self, config: DetectionJobConfig) -> None:
        self.config = config
        self.context = config.make_engine_context()
        self.config_digest = self.context.config.digest()
        self.topic_tenants = TopicTenants(config.tenant_topic_regex) if config.tenant_topic_regex else None
        self.reconfigured_keys = 0
        self._restarted: set[str] = set()

    def new_engine(self) -> DetectionEngine:
        return DetectionEngine(
            all_detectors(self.context.config), self.context, lateness=self.config.lateness()
        )

    def new_state(self) -> KeyState:
        return KeyState(engine=self.new_engine(), config_digest=self.config_digest)

    def attach(self, state: KeyState) -> None:
        state.engine.context = self.context
        if state.config_digest != self.config_digest:
            self._reconfigure(state)

    def _reconfigure(self, state: KeyState) -> None:
        """A key restored from a checkpoint written under another detector configuration: its
        engine is rebuilt with this one and adopts the old engine's state (``DetectionEngine.adopt``),
        so the new settings apply to it at once and what its detectors learned is kept."""
        engine = self.new_engine()
        dropped = engine.adopt(state.engine)
        state.engine, state.config_digest = engine, self.config_digest
        self.reconfigured_keys += 1
        fresh = sorted(set(dropped) - self._restarted)
        if self.reconfigured_keys == 1 or fresh:  # once per worker, and per detector that restarts
            self._restarted.update(fresh)
            restarted = (
                f"; open windows start over (their window changed): {', '.join(fresh)}" if fresh else ""
            )
            log.warning(
                "detect: keys restored under an earlier detector configuration move to the current "
                "one as they load, keeping what their detectors learned%s", restarted,
            )  # fmt: skip

    @staticmethod
    def detach(state: KeyState) -> None:
        # The registry and configuration are shared by all keys: not part of keyed state.
        state.engine.context = None  # type: ignore[assignment]

    def on_batch(
        self, state: KeyState, key: str, payloads: Batch
    ) -> tuple[list[Alert], list[dict[str, Any]]]:
        """Decode, order and detect one micro-batch (the raw Kafka values of one key and window;
        with tenant topics, the pair of those values and their topics). Returns alerts and DLQ records."""
        if self.topic_tenants is None:
            events, dlq = _decode_batch(payloads)  # type: ignore[arg-type]
        else:
            values, topics = payloads
            events, dlq = self.topic_tenants.decode(values, topics, self.context.current_registry())  # type: ignore[arg-type]
        events.sort(key=_ORDER)
        if events and events[-1].ts > state.health.last_ts:
            state.health.last_ts = events[-1].ts
        alerts = state.engine.process(events)
        copied = state.engine.copied  # another interface's record of a flow: one flow here too
        state.posture.add_all(events if not copied else _without(events, set(copied)))
        for alert in alerts:
            state.posture.count_alert(alert.tenant, alert.ts)
        return alerts, dlq

    def on_watermark(
        self, state: KeyState, key: str, watermark: int
    ) -> tuple[list[Alert], list[dict[str, Any]]]:
        alerts = state.engine.advance(watermark)
        for alert in alerts:
            state.posture.count_alert(alert.tenant, alert.ts)
        return alerts, state.posture.close(watermark, key + self.config.posture_key_suffix)

    def step(self, state: KeyState, key: str, payloads: Batch | None, advance_to: int) -> StepOutput:
        """One step of a key: detect a micro-batch (if any), then close what ends by ``advance_to``.
        Deterministic, so replaying logged steps on a restored snapshot rebuilds the same state."""
        state.advanced_to = advance_to
        alerts, dlq = self.on_batch(state, key, payloads) if payloads is not None else ([], [])
        closed, metrics = self.on_watermark(state, key, advance_to)
        scores = state.engine.drain_window_scores()
        if scores:
            metrics += anomaly_records(scores, key + self.config.posture_key_suffix)
        health = state.health
        health.observe(
            state.engine.health_counts(), advance_to - 1 if advance_to < END_OF_TIME else health.last_ts
        )
        if health:
            metrics += health.close(advance_to, key + self.config.posture_key_suffix)
        return StepOutput(alerts + closed, metrics, dlq)

    @staticmethod
    def has_open_work(state: KeyState) -> bool:
        return bool(state.posture) or bool(state.health) or state.engine.state_size() > 0


def _without(events: list[Event], ids: set[str]) -> list[Event]:
    return [ev for ev in events if ev.id not in ids]


# Events of a batch in event-time order (ties by id, so the order never depends on arrival).
_ORDER = operator.attrgetter("ts", "id")

# A step's input: the raw Kafka values of one key and window, or with tenant topics the pair
# (values, topics), one topic per value. Either is what ``streams.keyed_state`` logs and replays.
Batch = Sequence[bytes | str] | tuple[Sequence[bytes | str], Sequence[str]]


def check_tenant(
    event: Event, topic_tenant: str, registry: TenantRegistry | None, *, verify: bool = False
) -> Event | str:
    """The event as the job takes it from a topic of ``topic_tenant`` (``PROVIDER`` for the
    provider's topics), or why it goes to the DLQ instead (module docstring). ``verify``: an event
    claimed by the topic's tenant is held to the registry too (the parse stage, where a header may
    have named the tenant of every event of its record)."""
    claimed = event.tenant
    if topic_tenant != PROVIDER:
        if registry is not None and event.__class__ is FlowEvent and (claimed != topic_tenant or verify):
            return _flow_of_tenant(cast(FlowEvent, event), topic_tenant, registry)
        if claimed == topic_tenant:
            if verify and registry is not None and (event.vm or event.host):
                return _machine_of_tenant(event, topic_tenant, registry)
            return event
        if claimed is None:
            return msgspec.structs.replace(event, tenant=topic_tenant)
        return f"tenant mismatch: topic of tenant {topic_tenant}, payload says {claimed}"
    vm = event.vm
    owner = registry.tenant_of_vm(vm) if registry is not None and vm else None
    if claimed == owner:
        return event
    if claimed is None:
        return msgspec.structs.replace(event, tenant=owner)
    if owner is not None:
        return (
            f"tenant mismatch: provider topic, the registry maps VM {vm} to {owner}, payload says {claimed}"
        )
    where = (
        f"its VM {vm} is not in the tenant registry"
        if vm
        else "it names no VM (host telemetry is the provider's)"
    )
    return f"tenant mismatch: provider topic, payload says {claimed} but {where}"


def _machine_of_tenant(event: Event, tenant: str, registry: TenantRegistry) -> Event | str:
    """An event the payload gives to ``tenant`` whose machine the registry gives to another: its VM,
    or with none the address it was named by (``Parser.node_owner``: a tenant's address with no VM
    of the registry)."""
    vm = event.vm
    owner = registry.tenant_of_vm(vm) if vm else registry.tenant_of_ip(event.host)
    if owner is None or owner == tenant:
        return event
    machine = f"VM {vm}" if vm else f"{event.host}"
    return f"tenant mismatch: topic of tenant {tenant}, the registry gives {machine} to {owner}"


def _flow_of_tenant(event: FlowEvent, tenant: str, registry: TenantRegistry) -> FlowEvent | str:
    """A flow on ``tenant``'s topic is the tenant's when either of its addresses is: a victim's own
    record of a connection from another tenant's VM is the victim's (the parser, reading the
    addresses alone, gives a flow to its source's tenant), and it names the victim's side (VM and
    host). One whose addresses are no tenant's is the topic's, as an event without a tenant; one
    whose addresses are only other tenants' goes to the DLQ, whatever the payload claims."""
    src, dst = event.src_ip, event.dst_ip
    src_owner, dst_owner = registry.tenant_of_ip(src), registry.tenant_of_ip(dst)
    if src_owner == tenant or dst_owner == tenant:
        ip = src if src_owner == tenant else dst
        vm = registry.vm_of_ip(ip)
        host = registry.vms[vm].host if vm is not None else None
        if event.tenant == tenant and event.vm == vm and event.host == host:
            return event
        return msgspec.structs.replace(event, tenant=tenant, vm=vm, host=host)
    claimed = event.tenant
    if claimed is not None and claimed != tenant:
        return f"tenant mismatch: topic of tenant {tenant}, payload says {claimed}"
    if src_owner is None and dst_owner is None:
        return event if claimed == tenant else msgspec.structs.replace(event, tenant=tenant)
    ip, owner = (src, src_owner) if src_owner is not None else (dst, dst_owner)
    return f"tenant mismatch: topic of tenant {tenant}, the registry gives {ip} to {owner} and neither address to {tenant}"


class TopicTenants:
    """Decodes tenant-topic batches: each event checked against its topic's tenant (``check_tenant``)."""

    def __init__(self, regex: str) -> None:
        self.pattern = re.compile(regex)
        self._tenants: dict[str, str | None] = {}

    def tenant_of(self, topic: str) -> str | None:
        """The tenant of a telemetry topic, None for a topic the pattern does not match."""
        try:
            return self._tenants[topic]
        except KeyError:
            match = self.pattern.fullmatch(topic)
            tenant = self._tenants[topic] = match.group(1) if match else None
            return tenant

    def decode(
        self, payloads: Sequence[bytes | str], topics: Sequence[str], registry: TenantRegistry | None
    ) -> tuple[list[Event], list[dict[str, Any]]]:
        if len(payloads) != len(topics):  # a topology bug, not bad data: the SQL pairs them
            raise RuntimeError(f"batch of {len(payloads)} payloads with {len(topics)} topics")
        events: list[Event] = []
        dlq: list[dict[str, Any]] = []
        decoded = _decode_all(payloads)  # None: some payload is bad, each is decoded alone
        known = self._tenants
        for i, topic in enumerate(topics):
            raw = payloads[i]
            event = decoded[i] if decoded is not None else _decode_one(raw, dlq)
            if event is None:
                continue
            tenant = known[topic] if topic in known else self.tenant_of(topic)
            if event.tenant == tenant and tenant != PROVIDER:  # nearly every event: its own tenant's
                events.append(event)
                continue
            checked = (
                check_tenant(event, tenant, registry)
                if tenant is not None
                else f"topic {topic} is not a tenant's telemetry topic"
            )
            if isinstance(checked, str):
                dlq.append(_dlq(raw, f"{checked} (event {event.id}, topic {topic})"))
            else:
                events.append(checked)
        return events, dlq


def _decode_all(payloads: Sequence[bytes | str]) -> list[Event] | None:
    """Every payload's event by one ``map`` (C loops), or None if any is empty, too big or bad."""
    try:
        if payloads and all(payloads) and max(map(len, payloads)) <= MAX_PAYLOAD_BYTES:
            return list(map(decode_event, payloads))
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    return None


def _decode_one(line: bytes | str, dlq: list[dict[str, Any]]) -> Event | None:
    """One payload's event, or None (an empty value, or a DLQ record added to ``dlq``)."""
    if not line:
        return None
    if len(line) > MAX_PAYLOAD_BYTES:
        dlq.append(_dlq(line, f"payload over {MAX_PAYLOAD_BYTES} bytes in the detection job"))
        return None
    try:
        return decode_event(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        dlq.append(_dlq(line, f"not a canonical event in the detection job: {exc}"))
        return None


def _decode_batch(payloads: Sequence[bytes | str]) -> tuple[list[Event], list[dict[str, Any]]]:
    """The batch's events and DLQ records. Nearly every batch is all good: it is decoded by one
    ``map`` (C loops, no Python per payload); any bad payload sends the batch the careful way."""
    try:
        if payloads and all(payloads) and max(map(len, payloads)) <= MAX_PAYLOAD_BYTES:
            return list(map(decode_event, payloads)), []
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    dlq: list[dict[str, Any]] = []
    events = [event for line in payloads if (event := _decode_one(line, dlq)) is not None]
    return events, dlq


def late_dlq(
    payload: bytes | str, event_time_ms: int, allowance_ms: int, setting: str = "out_of_orderness_ms"
) -> dict[str, Any]:
    """The DLQ record of an event that reached the job after the watermark had passed its time,
    so after its window had closed: detecting it then would run its key's detectors backwards in
    time. ``setting`` names the allowance of the event's path (``streams.sql.event_time_paths``).
    The raw payload is kept, to send again once the cause is fixed. Its source is ``late``,
    so the pipeline-health board counts late events apart from input the job could not read."""
    try:
        event = decode_event(payload)
        what = f"late {event.source} event {event.id}"
    except (msgspec.DecodeError, msgspec.ValidationError):
        what = "late record (not a canonical event)"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event_time_ms // 1000))
    return _dlq(payload, (
        f"{what}: its time {when} was behind the watermark when it arrived (more than "
        f"{setting}, {allowance_ms} ms, behind newer events of its Kafka partition), so "
        f"its window had closed; for a source that delivers this late, raise SSA_{setting.upper()}"
    ), source="late")  # fmt: skip


def _dlq(raw: bytes | str, reason: str, source: str = "detect") -> dict[str, Any]:
    """The ingest DLQ record (text, or base64 when not UTF-8; capped), plus ``ts`` for indexing."""
    record = msgspec.structs.asdict(make_dlq(source, reason, raw))
    record["ts"] = record["time_ms"]
    return record


def make_keyed_function(config: DetectionJobConfig) -> Any:
    """The PyFlink ``KeyedProcessFunction`` (built lazily: detectors never import PyFlink).

    Per key and micro-batch there is one step (``streams.keyed_state``): the batch of the window ending at W is
    detected and the key's engine advanced to W in the same call (the SQL window emits a key's
    batch only once the watermark has passed W, and drops later events, so nothing older than W
    can still arrive for this key). The event-time timer then only serves keys that went quiet
    with windows still open, and at the end of input, when the watermark jumps to its maximum.
    """
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction, OutputTag
    from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

    from streams.keyed_state import KeyStateStore

    metrics_tag = OutputTag(METRICS_TAG_NAME, Types.STRING())
    dlq_tag = OutputTag(DLQ_TAG_NAME, Types.STRING())

    class DetectFunction(KeyedProcessFunction):
        def open(self, runtime_context: Any) -> None:
            gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
            self.store = KeyStateStore(
                MicroBatchDetector(config),
                snapshot=runtime_context.get_state(
                    ValueStateDescriptor("ssa-key-state", Types.PICKLED_BYTE_ARRAY())
                ),
                log=runtime_context.get_list_state(
                    ListStateDescriptor("ssa-key-steps", Types.PICKLED_BYTE_ARRAY())
                ),
                cache_keys=config.state_cache_keys,
                snapshot_every=config.snapshot_every_steps,
                log_ratio=config.snapshot_log_ratio,
                max_log_steps=config.max_log_steps,
                max_log_bytes=config.max_log_bytes,
            )

        def process_element(self, row: Any, ctx: Any) -> Iterator[Any]:
            # With tenant topics a batch is (key, payloads, topics): the step gets both.
            key, payloads = row[0], (row[1] if not config.tenant_topic_regex else (row[1], row[2]))
            window_time = ctx.timestamp()
            if window_time is None:  # a topology bug, not bad data: every batch carries its window
                raise RuntimeError("micro-batch without an event-time timestamp")
            window_end = _next_tick(window_time, config.tick_ms)
            out, open_work = self.store.step(key, payloads, window_end)
            if open_work:
                ctx.timer_service().register_event_time_timer(window_end + config.tick_ms)
            yield from _emit(out)

        def on_timer(self, timestamp: int, ctx: Any) -> Iterator[Any]:
            key = ctx.get_current_key()
            if self.store.state(key).advanced_to >= timestamp:
                return  # a later batch of this key already advanced it (and set its own timer)
            # Close up to the stream's watermark, not just this timer: at the end of input (or
            # a drain) the watermark jumps to Long.MAX_VALUE, and a timer registered after that
            # jump would never fire. Only to the end of the last batch window it closed, though.
            watermark = max(timestamp, ctx.timer_service().current_watermark())
            advance_to = closed_batches_end(watermark, config.tick_ms)
            out, open_work = self.store.step(key, None, advance_to)
            if open_work and advance_to < END_OF_TIME - config.tick_ms:
                ctx.timer_service().register_event_time_timer(_next_tick(advance_to, config.tick_ms))
            yield from _emit(out)

    def _emit(out: StepOutput) -> Iterator[Any]:
        for alert in out.alerts:
            yield encode_alert(alert).decode()
        for record in out.metrics:
            yield metrics_tag, json.dumps(record)
        for record in out.dlq:
            yield dlq_tag, json.dumps(record)

    return DetectFunction(), metrics_tag, dlq_tag


def make_late_function(allowance_ms: int, setting: str) -> Any:
    """The PyFlink ``ProcessFunction`` turning late events (rows of the raw payload, stamped with
    the event's time) into DLQ records (JSON) naming the path's allowance and its setting."""
    from pyflink.datastream import ProcessFunction

    class LateFunction(ProcessFunction):
        def process_element(self, row: Any, ctx: Any) -> Iterator[str]:
            yield json.dumps(late_dlq(row[0], ctx.timestamp(), allowance_ms, setting))

    return LateFunction()


def _next_tick(ts: int, tick_ms: int) -> int:
    return ts - ts % tick_ms + tick_ms


def closed_batches_end(watermark: int, tick_ms: int) -> int:
    """How far a quiet key's engine may advance at ``watermark``: the end of the last micro-batch
    window the watermark has closed (a window ``[E - tick, E)`` fires once the watermark reaches
    ``E - 1``), not the watermark itself. A window still open may hold this key's events older
    than the watermark; advanced past them, the engine would judge them late when their batch
    comes, so a key's alerts would depend on when the watermark happened to reach its timer,
    which differs between runs and after every restore (found by the campaign's kill -9 test:
    a password-guessing alert of 40 failures instead of 52, its incident another). At the end of
    input (Long.MAX_VALUE) everything closes."""
    if watermark >= END_OF_TIME - tick_ms:
        return watermark
    return (watermark + 1) - (watermark + 1) % tick_ms
