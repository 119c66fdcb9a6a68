"""Anomaly detectors in the engine: windowed features per tenant address (flows) and per VM
(host-side process activity), scored per window in one batch per tenant model.

Both need a fitted ``ModelSet`` in ``shared.models_dir`` (``python -m detectors.anomaly.fit``); the
configured ``model`` family must be the one the models were fitted with.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

import numpy as np

from detectors.alert import Entity
from detectors.anomaly.features import (
    FLOW_FEATURES,
    FlowStats,
    ProcessStats,
    process_feature_names,
    process_vectors,
)
from detectors.anomaly.models import FAMILIES
from detectors.anomaly.store import ModelSet, model_path
from detectors.base import MANAGEMENT, Batch, Finding
from detectors.config import ConfigError, DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["AnomalyDetector", "FlowAnomaly", "ProcessAnomaly"]


class AnomalyDetector(WindowedDetector[Any]):
    """Shared scoring: features of every key of a closed window, scored per tenant in one batch."""

    kind: ClassVar[str] = ""
    param_spec: ClassVar[ParamSpec] = {
        "model": str,
        "threshold": float,
        "min_activity": int,
        "top_features": int,
        "min_baseline_rows": int,
        "random_state": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        p = self.params
        self.family = str(p["model"])
        if self.family not in FAMILIES:
            raise ConfigError(f"{config.source}: detectors.{self.meta.id}.params.model: one of {FAMILIES}")
        self.threshold = float(p["threshold"])
        self.min_activity = int(p["min_activity"])
        self.top_k = int(p["top_features"])
        self.models: ModelSet | None = None
        models_dir = config.shared.get("models_dir")
        if self.enabled:
            if not models_dir:
                raise ConfigError(
                    f"{config.source}: {self.meta.id} is enabled but shared.models_dir is not set"
                )
            path = model_path(models_dir, self.kind)
            if not path.exists():
                raise ConfigError(
                    f"{path}: no fitted {self.kind} models (run python -m detectors.anomaly.fit)"
                )
            self.models = ModelSet.load(models_dir, self.kind)
            if self.models.family != self.family:
                raise ConfigError(
                    f"{path}: fitted with {self.models.family}, configured model is {self.family}: refit"
                )

    # --- features ------------------------------------------------------------------------------
    def activity(self, state: Any) -> int:
        raise NotImplementedError

    def vectors(self, states: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def entity(self, key: Hashable) -> Entity:
        raise NotImplementedError

    def feature_names(self) -> list[str]:
        raise NotImplementedError

    def feature_rows(self, states: dict[Hashable, Any]) -> tuple[list[Hashable], np.ndarray]:
        keys = [k for k, st in states.items() if self.activity(st) >= self.min_activity]
        return keys, self.vectors([states[k] for k in keys])

    # --- scoring -------------------------------------------------------------------------------
    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        if self.models is None:
            return []
        keys, x = self.feature_rows(states)
        by_tenant: dict[str | None, list[int]] = {}
        for i, key in enumerate(keys):
            by_tenant.setdefault(key[0], []).append(i)  # type: ignore[index]
        out: list[Finding] = []
        for tenant in sorted(by_tenant, key=lambda t: t or ""):
            rows = by_tenant[tenant]
            model = self.models.for_tenant(tenant)
            scored = model.score(x[rows])
            t_raw = model.threshold_raw(self.threshold)
            base = model.baseline_scores_
            spread = float(np.subtract(*np.percentile(base, [75, 25]))) or float(np.std(base)) or 1.0
            for j, i in enumerate(rows):
                q = float(scored.calibrated[j])
                if q < self.threshold:
                    continue
                raw = float(scored.raw[j])
                key = keys[i]
                st = states[key]
                entity = self.entity(key)
                score = round(min(90.0, max(40.0, 45.0 + 15.0 * (raw - t_raw) / spread)))
                top = model.top_features(x[i], self.top_k)
                drivers = ", ".join(f"{t['feature']}={t['value']}" for t in top)
                out.append(
                    Finding(
                        entity=entity,
                        tenant=tenant,
                        window=window,
                        score=score,
                        summary=f"{self.meta.title}: {entity.type} {entity.id} scored above "
                        f"{q:.1%} of its tenant's baseline windows ({self.family}); driven by {drivers}",
                        first_seen=st.first,
                        last_seen=st.last,
                        count=self.activity(st),
                        event_ids=list(st.ids),
                        evidence={
                            "model": self.family,
                            "model_scope": tenant if tenant in self.models.models else "*",
                            "raw_score": round(raw, 4),
                            "calibrated": round(q, 5),
                            "threshold": self.threshold,
                            "top_features": top,
                        },
                    )
                )
        return out

    def finish_key(self, window: Window, key: Hashable, state: Any) -> Finding | None:
        raise NotImplementedError("anomaly detectors score whole windows (finish)")


class FlowAnomaly(AnomalyDetector):
    kind = "flow"
    meta = DetectorMeta(
        id="anomaly.flow_features",
        version="1.0.0",
        title="Anomalous flow activity",
        category="anomaly",
        score=50,
        severity="medium",
        attack=(
            technique("Exfiltration", "T1048", "Exfiltration Over Alternative Protocol"),
            technique("Discovery", "T1046", "Network Service Discovery"),
            technique("Impact", "T1498", "Network Denial of Service"),
        ),
        kinds=frozenset({"flow"}),
        description="Per tenant address and window: volumes, packets, fan-out/fan-in, ports, rejects and "
        "durations, scored by a PyOD model fitted on that tenant's baseline period; alerts above the "
        "configured quantile of the baseline's scores.",
        false_positives=(
            "new workloads or traffic peaks not present in the baseline period",
            "a baseline period that was itself anomalous (refit on clean data)",
        ),
        note="Read evidence.top_features: which features are far from the tenant's baseline tells "
        "exfiltration (bytes_out), scanning (fan_out_hosts, rejected_out) or flooding (packets_received).",
        maturity="incubating",
    )

    def new_state(self, key: Hashable) -> FlowStats:
        return FlowStats()

    def observe_batch(self, batch: Batch) -> None:
        cap, max_ids, state = self.max_distinct, self.max_ids, self.state
        for ev, src_t, dst_t in zip(batch.flows, batch.src_tenants, batch.dst_tenants, strict=True):
            try:
                ts = ev.ts
                owner = ev.tenant  # the telemetry's tenant keys the state, so tenant partitions never mix
                if src_t is not None:
                    st: FlowStats | None = state(ts, (owner or src_t, ev.src_ip))
                    if st is not None:
                        st.touch(ts, ev.id, max_ids)
                        st.add_out(
                            ev.dst_ip, ev.dst_port, ev.bytes_out, ev.bytes_in, ev.packets_out,
                            ev.packets_in, ev.duration_ms, ev.action == "reject", cap,
                        )  # fmt: skip
                if dst_t is not None and dst_t != MANAGEMENT:
                    dt: FlowStats | None = state(ts, (owner or dst_t, ev.dst_ip))
                    if dt is not None:
                        dt.touch(ts, ev.id, max_ids)
                        dt.add_in(ev.src_ip, ev.bytes_out, ev.packets_out, cap)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: FlowStats, other: FlowStats) -> None:
        into.merge(other, self.max_distinct, self.max_ids)

    def activity(self, state: FlowStats) -> int:
        return state.activity

    def vectors(self, states: list[FlowStats]) -> np.ndarray:
        if not states:
            return np.zeros((0, len(FLOW_FEATURES)))
        return np.asarray([s.vector() for s in states], dtype=np.float64)

    def entity(self, key: Hashable) -> Entity:
        _tenant, ip = cast(tuple[Any, str], key)
        vm = self.reg.vm_of_ip(ip)
        return Entity("vm", vm) if vm else Entity("ip", ip)

    def feature_names(self) -> list[str]:
        return list(FLOW_FEATURES)


class ProcessAnomaly(AnomalyDetector):
    kind = "process"
    meta = DetectorMeta(
        id="anomaly.process_activity",
        version="1.0.0",
        title="Anomalous emulator activity",
        category="anomaly",
        score=55,
        severity="medium",
        attack=(
            technique("Privilege Escalation", "T1611", "Escape to Host"),
            technique("Execution", "T1059", "Command and Scripting Interpreter"),
        ),
        kinds=frozenset({"process"}),
        description="Per VM and window: the mix of syscalls (shares over params.syscall_vocab) and of "
        "executables (hashed) of the host-side processes attributed to the VM (its emulator and any "
        "children), scored against the tenant's baseline.",
        false_positives=(
            "VM lifecycle operations (start, migrate, snapshot) rare in the baseline period",
            "an emulator upgrade that changes its syscall mix",
        ),
        note="Look at evidence.top_features: a new executable bucket or syscalls outside the emulator's "
        "usual mix point to code running in the emulator's context; correlate with vm_escape rules.",
        maturity="incubating",
    )
    param_spec: ClassVar[ParamSpec] = {
        **AnomalyDetector.param_spec,
        "syscall_vocab": list,
        "exe_buckets": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.vocab = [str(s) for s in self.params["syscall_vocab"]]
        self.exe_buckets = int(self.params["exe_buckets"])
        super().configure(config)

    def new_state(self, key: Hashable) -> ProcessStats:
        return ProcessStats()

    def observe_batch(self, batch: Batch) -> None:
        cap, max_ids, state = self.max_distinct, self.max_ids, self.state
        for ev in batch.processes:
            try:
                if not ev.vm:
                    continue
                st: ProcessStats | None = state(ev.ts, (ev.tenant, ev.vm))
                if st is not None:
                    st.add(ev.ts, ev.id, ev.syscall, ev.exe, cap, max_ids)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: ProcessStats, other: ProcessStats) -> None:
        into.merge(other, self.max_distinct, self.max_ids)

    def activity(self, state: ProcessStats) -> int:
        return state.total

    def vectors(self, states: list[ProcessStats]) -> np.ndarray:
        rows = [(s.total, s.syscalls, s.exes) for s in states]
        return process_vectors(rows, self.vocab, self.exe_buckets)

    def entity(self, key: Hashable) -> Entity:
        _tenant, vm = cast(tuple[Any, str], key)
        return Entity("vm", vm)

    def feature_names(self) -> list[str]:
        return process_feature_names(self.vocab, self.exe_buckets)
