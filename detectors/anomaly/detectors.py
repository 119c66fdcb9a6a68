"""Anomaly detectors in the engine, on by default: windowed features per tenant address (flows) and
per VM (host-side process activity), scored per closed window against baselines the detector learns
from the stream itself (``detectors.anomaly.online``). No fit step is needed.

Per event the work is one state lookup and a few counter updates (``features``); the vector work
(feature rows, scoring, learning) happens once per closed window, for all its keys at once.

Each closed window, per tenant: the rows (keys with at least ``min_activity`` events) are scored by
the tenant's own model, or the pooled model while the tenant has fewer than ``min_baseline_rows``
rows over ``warmup_windows`` windows, or not at all while both warm up; a row alerts when its
conformal p-value is at most ``1 - threshold``. Then the rows that did not alert join the tenant's
reservoir (``reservoir_rows``, folded every ``refit_every_rows`` rows or ``refit_every_windows``
windows; the model is refitted lazily from it). So a window never scores against itself and an
anomaly is never learned as normal.

Thresholds (``detectors/config/default.yaml``, ``anomaly.*``):

- ``threshold`` 0.999: alpha = 0.001 per scored window of an address. With 5-minute windows that is
  at most 288 x 0.001 = 0.29 expected false alerts per always-active address and day for rows from
  the baseline's distribution (conformal guarantee, see ``online``), under the issue's target of
  <= 1 false alert per benign host per day. The guarantee also sets the warm-up: no alert before
  the baseline holds 1 / alpha - 1 = 999 rows.
- ``min_baseline_rows`` 1000: a tenant's own model takes over from the pooled one at the first size
  at which it can reach the threshold (999 rows, above).
- ``reservoir_rows`` 2048 (flows) / 1024 (process): at least ``min_baseline_rows``; 2048 x 14 flow
  features x 2 bytes = 56 KiB per tenant, 1024 x 39 process features x 2 bytes = 78 KiB, pickled with
  the job's keyed state. Memory of the biased reservoir: about ``reservoir_rows`` rows (Aggarwal 2006).
- ``warmup_windows`` 12: the baseline must span one hour of 5-minute windows.
- ``warmup_span_ms`` 86,400,000: and one diurnal cycle of event time, since a tenant's rates follow
  the time of day (about 20x between night and midday on the CTU-50 normal hosts) and a baseline of
  the night makes every morning window extreme (``online``: measured, and the sources).
- ``refit_every_rows`` 256 / ``refit_every_windows`` 12: refit after 256 new rows or hourly,
  whichever first; an ECOD refit on 2,048 rows costs about a millisecond.
- ``max_tenants`` 64: tenants per engine (the job keys flows by tenant: one per engine).
- ``min_activity``: flows (process events) of a key in a window before it is scored, so idle
  addresses with a flow or two do not fill the baseline with noise.

Offline fitting stays available: with ``shared.models_dir`` holding ``python -m
detectors.anomaly.fit`` models, a tenant with a fitted model of its own has its reservoir seeded from
its rows when first seen, warm at once, and keeps learning from the stream; the fitted global rows
seed the pooled model once per engine (not once per tenant: a pool holding each row several times
gives each baseline row a leave-one-out score against its own copies, too low, and so p-values too
small), which scores the other tenants until they have a day and ``min_baseline_rows`` of their own.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any, ClassVar, Final, cast

import numpy as np

from detectors.alert import Entity
from detectors.anomaly.features import (
    FLOW_FEATURES,
    FlowStats,
    ProcessStats,
    process_feature_names,
    process_vectors,
)
from detectors.anomaly.models import FAMILIES, AnomalyModel
from detectors.anomaly.online import POOLED, OnlineBaselines
from detectors.anomaly.store import GLOBAL, ModelSet, model_path
from detectors.base import MANAGEMENT, Batch, Finding
from detectors.config import ConfigError, DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["AnomalyDetector", "FlowAnomaly", "ProcessAnomaly", "seed_rows"]

_SEEDS: dict[tuple[str, str], tuple[float, ModelSet]] = {}


def _seed_set(models_dir: str, kind: str) -> ModelSet:
    """The fitted model set of a models directory, loaded once per file version (every engine of
    the job builds its detectors from the same directory)."""
    path = model_path(models_dir, kind)
    mtime = os.stat(path).st_mtime
    hit = _SEEDS.get((str(path), kind))
    if hit is None or hit[0] != mtime:
        hit = _SEEDS[(str(path), kind)] = (mtime, ModelSet.load(models_dir, kind))
    return hit[1]


def seed_rows(model: AnomalyModel) -> np.ndarray | None:
    """Baseline rows of an offline-fitted model: the rows kept at fit time; for an older file of an
    ECOD/COPOD model, its sorted training columns (these families score each feature's marginal
    alone, so the columns side by side score exactly as the rows did)."""
    if model.rows_ is not None:
        return np.asarray(model.rows_)
    if model.tails_ is not None:
        return np.asarray(model.tails_.sorted_)
    return None


_MAX_NOTED: Final = 4096  # window score summaries kept until the job drains them


class AnomalyDetector(WindowedDetector[Any]):
    """Shared scoring: features of every key of a closed window, scored per tenant in one batch."""

    kind: ClassVar[str] = ""
    learned: ClassVar[tuple[str, ...]] = ("online", "_window_scores")  # the scores not yet drained
    param_spec: ClassVar[ParamSpec] = {
        "model": str,
        "threshold": float,
        "min_activity": int,
        "top_features": int,
        "min_baseline_rows": int,
        "random_state": int,
        "reservoir_rows": int,
        "warmup_windows": int,
        "warmup_span_ms": int,
        "refit_every_rows": int,
        "refit_every_windows": int,
        "max_tenants": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        p = self.params
        where = f"{config.source}: detectors.{self.meta.id}.params"
        self.family = str(p["model"])
        if self.family not in FAMILIES:
            raise ConfigError(f"{where}.model: one of {FAMILIES}")
        self.threshold = float(p["threshold"])
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"{where}.threshold: a quantile in (0, 1)")
        self.alpha = 1.0 - self.threshold
        self.min_activity = int(p["min_activity"])
        self.top_k = int(p["top_features"])
        cap = int(p["reservoir_rows"])
        if cap < 2 or int(p["refit_every_rows"]) < 1 or int(p["max_tenants"]) < 1:
            raise ConfigError(f"{where}: reservoir_rows >= 2, refit_every_rows >= 1, max_tenants >= 1")
        self.online = OnlineBaselines(
            family=self.family, width=len(self.feature_names()), cap=cap,
            min_rows=max(2, min(int(p["min_baseline_rows"]), cap)), warmup_windows=int(p["warmup_windows"]),
            refit_rows=int(p["refit_every_rows"]), refit_windows=max(1, int(p["refit_every_windows"])),
            max_tenants=int(p["max_tenants"]), random_state=int(p["random_state"]),
            warmup_span_ms=int(p["warmup_span_ms"]),
        )  # fmt: skip
        self.seed_dir: str | None = None
        models_dir = config.shared.get("models_dir")
        if self.enabled and models_dir:
            path = model_path(models_dir, self.kind)
            if not path.exists():
                raise ConfigError(
                    f"{path}: no fitted {self.kind} models (run python -m detectors.anomaly.fit, or unset "
                    "shared.models_dir: the anomaly detectors learn from the stream without it)"
                )
            seeds = _seed_set(str(models_dir), self.kind)
            if seeds.family != self.family:
                raise ConfigError(
                    f"{path}: fitted with {seeds.family}, configured model is {self.family}: refit"
                )
            if seeds.feature_names != self.feature_names():
                raise ConfigError(f"{path}: fitted on other features than {self.meta.id} computes: refit")
            self.seed_dir = str(models_dir)

    # --- features ------------------------------------------------------------------------------
    def activity(self, state: Any) -> int:
        raise NotImplementedError

    def vectors(self, states: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def entity(self, key: Hashable) -> Entity:
        raise NotImplementedError

    def feature_names(self) -> list[str]:
        raise NotImplementedError

    def natural(self, j: int, v: float) -> float:
        """Feature ``j``'s value ``v`` in the units an analyst reads (counts, not log1p)."""
        return v

    def feature_rows(self, states: dict[Hashable, Any]) -> tuple[list[Hashable], np.ndarray]:
        keys = [k for k, st in states.items() if self.activity(st) >= self.min_activity]
        return keys, self.vectors([states[k] for k in keys])

    # --- scoring -------------------------------------------------------------------------------
    def _seed(self, tenant: str) -> None:
        """A tenant with a fitted model of its own starts from its rows; the fitted global rows
        seed the pooled model once, which scores every other tenant until it has its own history."""
        if self.seed_dir is None or tenant in self.online.tenants:
            return
        seeds = _seed_set(self.seed_dir, self.kind)
        own = seeds.models.get(tenant) if tenant != GLOBAL else None
        rows = seed_rows(own) if own is not None else None
        if rows is not None:
            self.online.seed(tenant, rows)
        elif self.online.pool_rows is None and not self.__dict__.get("_pool_seeded", False):
            self._pool_seeded = True
            glob = seeds.models.get(GLOBAL)
            pool = seed_rows(glob) if glob is not None else None
            if pool is not None:
                self.online.seed_pool(pool)

    def explain(self, fit: Any, row: np.ndarray, exact: np.ndarray) -> list[dict[str, Any]]:
        """The ``top_features`` features with the largest contribution to ``row``'s score: the value
        (``exact``: before the float16 rounding the scoring uses), the baseline's median and p99 (kept
        as float16: 4 significant digits), the share of baseline rows at or below the value."""
        contrib = fit.contributions(row)
        order = np.argsort(-contrib, kind="stable")[: self.top_k]
        names, nat = self.feature_names(), self.natural

        def sig(v: float) -> float:
            return float(f"{v:.4g}")

        return [
            {
                "feature": names[j],
                "value": round(nat(j, float(exact[j])), 4),
                "baseline_median": sig(nat(j, float(fit.median[j]))),
                "baseline_p99": sig(nat(j, float(fit.p99[j]))),
                "baseline_quantile": round(fit.value_quantile(j, float(row[j])), 4),
                "contribution": round(float(contrib[j]), 3),
            }
            for j in (int(i) for i in order)
        ]

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        keys, x = self.feature_rows(states)
        if not keys:
            return []
        x16 = np.asarray(x, dtype=np.float16)  # the precision the baselines keep
        xs = x16.astype(np.float64)
        by_tenant: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            by_tenant.setdefault(cast(tuple[Any, ...], key)[0] or "", []).append(i)
        online = self.online
        out: list[Finding] = []
        for tenant in sorted(by_tenant):
            rows = by_tenant[tenant]
            self._seed(tenant)
            chosen = online.model_for(tenant)
            keep = np.ones(len(rows), dtype=bool)
            if chosen is not None:
                scope, fit = chosen
                raw = fit.raw_scores(xs[rows])
                pv = fit.p_values(raw)
                t_raw = fit.raw_at(self.threshold)
                for j in np.flatnonzero(pv <= self.alpha + 1e-12):
                    keep[j] = False
                    out.append(self._finding(window, keys[rows[j]], states, tenant, scope, fit,
                                             float(raw[j]), float(pv[j]), t_raw, xs[rows[j]], x[rows[j]]))  # fmt: skip
                self._note_scores(window, tenant, 1.0 - pv)
            online.learn(tenant, x16[rows][keep], window.end, window.start)
        online.end_window()
        return out

    def _note_scores(self, window: Window, tenant: str, scores: np.ndarray) -> None:
        """The window's score distribution for the tenant (1 - p-value: how far above its baseline),
        for the job's metrics (``drain_window_scores``); at most ``_MAX_NOTED`` wait to be drained."""
        noted = self.__dict__.setdefault("_window_scores", [])
        if len(noted) >= _MAX_NOTED:
            del noted[0]
        p50, p95, p99 = np.quantile(scores, (0.5, 0.95, 0.99))
        noted.append({"tenant": tenant or None, "ts": window.start, "window_ms": window.end - window.start,
                      "detector": self.meta.id, "scored": int(scores.size), "anomaly_p50": round(float(p50), 4),
                      "anomaly_p95": round(float(p95), 4), "anomaly_p99": round(float(p99), 4)})  # fmt: skip

    def drain_window_scores(self) -> list[dict[str, Any]]:
        """Score summaries of the windows closed since the last call (then forgotten)."""
        noted: list[dict[str, Any]] = self.__dict__.pop("_window_scores", [])
        return noted

    def _finding(self, window: Window, key: Hashable, states: dict[Hashable, Any], tenant: str, scope: str,
                 fit: Any, raw: float, pv: float, t_raw: float, row: np.ndarray,
                 exact: np.ndarray) -> Finding:  # fmt: skip
        st = states[key]
        entity = self.entity(key)
        score = round(min(90.0, max(40.0, 45.0 + 15.0 * (raw - t_raw) / fit.score_spread)))
        top = self.explain(fit, row, exact)
        drivers = ", ".join(
            f"{t['feature']}={t['value']:g} (baseline median {t['baseline_median']:g}, p99 {t['baseline_p99']:g})"
            for t in top
        )
        base = "its tenant's" if scope != POOLED else "the pooled"
        return Finding(
            entity=entity,
            tenant=tenant or None,
            window=window,
            score=score,
            summary=f"{self.meta.title}: {entity.type} {entity.id} scored above every window but "
            f"{pv:.2%} of {base} baseline ({self.family}, {fit.n} entity-windows); stood out: {drivers}",
            first_seen=st.first,
            last_seen=st.last,
            count=self.activity(st),
            event_ids=list(st.ids),
            evidence={
                "model": self.family,
                "model_scope": tenant if scope != POOLED else POOLED,
                "baseline_rows": fit.n,
                "raw_score": round(raw, 4),
                "p_value": round(pv, 6),
                "calibrated": round(1.0 - pv, 6),
                "threshold": self.threshold,
                "top_features": top,
            },
        )

    def finish_key(self, window: Window, key: Hashable, state: Any) -> Finding | None:
        raise NotImplementedError("anomaly detectors score whole windows (finish)")


class FlowAnomaly(AnomalyDetector):
    kind = "flow"
    meta = DetectorMeta(
        id="anomaly.flow_features",
        version="2.0.0",
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
        "durations, scored by a PyOD model (ECOD by default) learned from the tenant's own recent windows "
        "(pooled over the engine's tenants while the tenant warms up); alerts when the window's conformal "
        "p-value against that baseline is below 1 - threshold. No fit step; learned state pickles with "
        "the engine.",
        false_positives=(
            "new workloads or traffic peaks unlike the tenant's recent windows (first backup, migration)",
            "a tenant whose baseline was learned during an attack (the rows that alerted are never learned, "
            "but a long attack below the threshold is)",
        ),
        note="Read evidence.top_features: each feature that stood out with its value, the baseline's "
        "median and p99 and the share of baseline windows below it: bytes_out points to exfiltration, "
        "fan_out_hosts/dst_ports/rejected_out to scanning, flows_in/packets_received to a flood.",
        maturity="incubating",
    )

    def new_state(self, key: Hashable) -> FlowStats:
        return FlowStats()

    def observe_batch(self, batch: Batch) -> None:
        # The hot loop, inlined (one dict lookup and a few slot updates per side of a flow): this
        # detector sees every flow, so its per-event cost is the job's (``FlowStats.add_out``/``add_in``
        # hold the same updates for the fitting code and tests).
        cap, max_ids, state, pane = self.max_distinct, self.max_ids, self.state, self._pane
        cur, bucket = -1, None
        for ev, src_t, dst_t in zip(batch.flows, batch.src_tenants, batch.dst_tenants, strict=True):
            try:
                if src_t is None and (dst_t is None or dst_t == MANAGEMENT):
                    continue
                ts = ev.ts
                start = ts - ts % pane
                if start != cur:
                    cur, bucket = start, self.bucket(ts)
                owner = ev.tenant  # the telemetry's tenant keys the state, so tenant partitions never mix
                if src_t is not None:
                    key = (owner or src_t, ev.src_ip)
                    st: FlowStats | None = bucket.get(key)  # type: ignore[union-attr]
                    if st is None:
                        st = state(ts, key)
                        if st is not None:
                            st.first = st.last = ts
                    if st is not None:
                        if ts > st.last:
                            st.last = ts
                        elif ts < st.first:
                            st.first = ts
                        ids = st.ids
                        if len(ids) < max_ids:
                            ids.append(ev.id)
                        st.flows_out += 1
                        st.bytes_out += ev.bytes_out
                        st.bytes_in += ev.bytes_in
                        st.packets_out += ev.packets_out
                        st.packets_in += ev.packets_in
                        dur = ev.duration_ms
                        st.dur_sum += dur
                        if dur > st.dur_max:
                            st.dur_max = dur
                        if ev.action == "reject":
                            st.rejected += 1
                        hosts = st.dst_hosts
                        if len(hosts) < cap:
                            hosts.add(ev.dst_ip)
                        ports = st.dst_ports
                        if len(ports) < cap:
                            ports.add(ev.dst_port)
                if dst_t is not None and dst_t != MANAGEMENT:
                    key = (owner or dst_t, ev.dst_ip)
                    dt: FlowStats | None = bucket.get(key)  # type: ignore[union-attr]
                    if dt is None:
                        dt = state(ts, key)
                        if dt is not None:
                            dt.first = dt.last = ts
                    if dt is not None:
                        if ts > dt.last:
                            dt.last = ts
                        elif ts < dt.first:
                            dt.first = ts
                        ids = dt.ids
                        if len(ids) < max_ids:
                            ids.append(ev.id)
                        dt.flows_in += 1
                        dt.bytes_recv += ev.bytes_out
                        dt.packets_recv += ev.packets_out
                        srcs = dt.src_hosts
                        if len(srcs) < cap:
                            srcs.add(ev.src_ip)
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

    def natural(self, j: int, v: float) -> float:
        return float(np.expm1(v))  # every flow feature is log1p of a count, a byte total or a duration


class ProcessAnomaly(AnomalyDetector):
    kind = "process"
    meta = DetectorMeta(
        id="anomaly.process_activity",
        version="2.0.0",
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
        "children), scored against the baseline learned from the tenant's own recent windows (pooled over "
        "the host's tenants while it warms up).",
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

    def natural(self, j: int, v: float) -> float:
        return float(np.expm1(v)) if j == 0 else v  # log_events is log1p; the rest are shares
