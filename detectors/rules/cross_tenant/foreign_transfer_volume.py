"""A source sends a foreign tenant far more than its baseline (peered or not)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import ClassVar, cast

from detectors.base import MANAGEMENT, Batch, Finding
from detectors.baselines import Baselines
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rules.common import fmt_bytes, source_entity
from detectors.rules.cross_tenant import flow_labels
from detectors.state import Span, TopCounts
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["ForeignTransferVolume", "TransferState"]


class TransferState:
    __slots__ = ("by_tenant", "span")

    def __init__(self, cap: int) -> None:
        self.span = Span()
        self.by_tenant = TopCounts(cap)  # bytes per destination tenant

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.by_tenant)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.by_tenant = s  # type: ignore[assignment]


class ForeignTransferVolume(WindowedDetector[TransferState]):
    meta = DetectorMeta(
        id="cross_tenant.foreign_transfer_volume",
        version="1.0.0",
        title="Transfer to a foreign tenant far above baseline",
        category="cross_tenant_leak",
        score=72,
        severity="high",
        attack=(
            technique("Exfiltration", "T1048", "Exfiltration Over Alternative Protocol"),
            technique("Exfiltration", "T1537", "Transfer Data to Cloud Account"),
        ),
        kinds=frozenset({"flow"}),
        description="Bytes one source sends to another tenant in a window exceed params.baseline_factor "
        "times the fitted per-window baseline of that tenant pair (baselines.json in shared.models_dir), "
        "and at least params.min_bytes; params.fallback_bytes applies to pairs without a baseline.",
        false_positives=(
            "a planned migration or replication between peered tenants",
            "a baseline fitted on too short or unrepresentative a period",
        ),
        note="Confirm with both tenants whether the transfer was planned; evidence.ratio gives how far "
        "above the baseline it was. Unplanned: cut the peering and preserve the flow records.",
        maturity="incubating",
    )
    param_spec: ClassVar[ParamSpec] = {"baseline_factor": float, "min_bytes": int, "fallback_bytes": int}

    def configure(self, config: DetectorConfig) -> None:
        self.factor = float(self.params["baseline_factor"])
        self.min_bytes = int(self.params["min_bytes"])
        self.fallback = int(self.params["fallback_bytes"])
        models_dir = config.shared.get("models_dir")
        self.baselines = Baselines.load(models_dir) if models_dir else None
        self._cap = 64

    def new_state(self, key: Hashable) -> TransferState:
        return TransferState(self._cap)

    def observe_batch(self, batch: Batch) -> None:
        batch = batch.initiated()  # a response record is never the subject
        max_ids, state = self.max_ids, self.state
        events = batch.flows
        for ev, src_t, dst_t in zip(events, batch.src_tenants, batch.dst_tenants, strict=True):
            try:
                if src_t is None or dst_t is None or dst_t in (src_t, MANAGEMENT):
                    continue
                sent = ev.bytes_out
                if sent <= 0:
                    continue
                st: TransferState | None = state(ev.ts, (ev.tenant or src_t, ev.src_ip, src_t))
                if st is None:
                    continue
                st.by_tenant.add(dst_t, sent)
                st.span.add(ev.ts, ev.id, max_ids)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: TransferState, other: TransferState) -> None:
        into.span.merge(other.span, self.max_ids)
        into.by_tenant.merge(other.by_tenant)

    def threshold(self, src_tenant: str, dst_tenant: str) -> tuple[float, float | None]:
        base = self.baselines.pair(src_tenant, dst_tenant) if self.baselines else None
        if base is None:
            return float(self.fallback), None
        return max(float(self.min_bytes), self.factor * base), base

    def finish_key(self, window: Window, key: Hashable, state: TransferState) -> Finding | None:
        tenant, src, src_t = cast(tuple[str | None, str, str], key)
        best: tuple[float, str, int, float, float | None] | None = None
        for key, sent in state.by_tenant.counts.items():
            dst_t = str(key)
            limit, base = self.threshold(src_t, dst_t)
            if sent >= limit:
                ratio = sent / limit
                if best is None or ratio > best[0]:
                    best = (ratio, dst_t, sent, limit, base)
        if best is None:
            return None
        _ratio, dst_t, sent, limit, base = best
        entity = source_entity(self.reg, src)
        vs = f"{sent / base:.0f}x its baseline of {fmt_bytes(base)}" if base else f"over {fmt_bytes(limit)}"
        return Finding(
            entity=entity,
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=f"{entity.type} {entity.id} ({src_t}) sent {fmt_bytes(sent)} to tenant {dst_t}, {vs}",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                **flow_labels(src_t, dst_t),
                "bytes": sent,
                "threshold_bytes": limit,
                "baseline_bytes": base,
                "ratio": round(sent / base, 1) if base else None,
                "peered": self.reg.is_peered(src_t, dst_t),
            },
        )
