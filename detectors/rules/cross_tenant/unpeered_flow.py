"""Traffic between two tenants' address spaces that the registry does not peer."""

from __future__ import annotations

from typing import ClassVar

from detectors.base import MANAGEMENT, Batch
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import flow_view, is_response
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, HitState, Rule
from detectors.rules.common import source_entity
from detectors.rules.cross_tenant import flow_labels
from ingest.schema import Event, FlowEvent

__all__ = ["UnpeeredFlow"]


class UnpeeredFlow(Rule):
    meta = DetectorMeta(
        id="cross_tenant.unpeered_flow",
        version="1.0.0",
        title="Flow between unpeered tenants",
        category="cross_tenant_leak",
        score=62,
        severity="medium",
        attack=(
            technique("Exfiltration", "T1048", "Exfiltration Over Alternative Protocol"),
            technique("Lateral Movement", "T1021", "Remote Services"),
        ),
        kinds=frozenset({"flow"}),
        description="A flow whose source and destination addresses belong to two different tenants that "
        "have no peering in the tenant registry. Accepted flows mean tenant isolation failed.",
        false_positives=(
            "a peering agreed but not yet in the registry (the registry reloads without restart)",
            "re-used address space after a tenant was deleted and the registry not updated",
        ),
        note="Check whether the flow was accepted (isolation broken: escalate to network engineering) or "
        "rejected (intent only). The source VM is the entity; the victim tenant is in the details.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {"include_rejected": bool, "accepted_score": int}

    def configure(self, config: DetectorConfig) -> None:
        self.include_rejected = bool(self.params["include_rejected"])
        self.accepted_score = int(self.params["accepted_score"])

    def match(self, event: Event) -> Hit | None:
        ev: FlowEvent = event  # type: ignore[assignment]
        if is_response(flow_view(ev)):  # the victim answering
            return None
        return self._match(ev)

    def _match(self, ev: FlowEvent) -> Hit | None:
        """``match`` of a record known not to be a response."""
        reg = self.reg
        src_t = reg.tenant_of_ip(ev.src_ip)
        if src_t is None:
            return None
        dst_t = reg.tenant_of_ip(ev.dst_ip)
        if dst_t is None or dst_t == src_t or reg.is_peered(src_t, dst_t):
            return None
        if ev.action == "reject" and not self.include_rejected:
            return None
        labels = flow_labels(src_t, dst_t)
        return Hit(source_entity(reg, ev.src_ip), ev.tenant or src_t, f"{ev.action} {src_t}->{dst_t}", labels)

    def observe_batch(self, batch: Batch) -> None:
        """Fast path of ``match``: only flows between two different tenants go further."""
        batch = batch.initiated()  # the same test as match's, once per batch
        events = batch.flows
        for ev, src_t, dst_t in zip(events, batch.src_tenants, batch.dst_tenants, strict=True):
            if src_t is not None and dst_t is not None and src_t != dst_t and dst_t != MANAGEMENT:
                try:
                    hit = self._match(ev)
                    if hit is not None:
                        self.record(ev, hit)
                except Exception as exc:
                    self.error(ev, exc)

    def score_for(self, st: HitState) -> int:
        if any(d.startswith("accept") for d in st.details):
            return self.accepted_score
        return self.meta.score
