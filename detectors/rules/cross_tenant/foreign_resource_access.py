"""A principal of one tenant acts on another tenant's resource without a registry share."""

from __future__ import annotations

from typing import ClassVar

from detectors.alert import Entity
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, HitState, Rule
from detectors.rules.cross_tenant import audit_labels
from ingest.schema import AuditEvent, Event

__all__ = ["ForeignResourceAccess", "resource_owner"]


def resource_owner(resource: str, known: object) -> str | None:
    """Owner tenant from a ``<service>/<tenant>/...`` resource path, if that tenant is known."""
    parts = resource.split("/", 2)
    if len(parts) >= 2 and parts[1] in known:  # type: ignore[operator]
        return parts[1]
    return None


class ForeignResourceAccess(Rule):
    meta = DetectorMeta(
        id="cross_tenant.foreign_resource_access",
        version="1.0.0",
        title="Access to another tenant's resource without a share",
        category="cross_tenant_leak",
        score=80,
        severity="high",
        attack=(technique("Collection", "T1530", "Data from Cloud Storage"),),
        kinds=frozenset({"audit"}),
        description="A control-plane call by a principal of tenant A on a resource owned by tenant B, "
        "where the registry holds no share of that resource from B to A.",
        false_positives=(
            "a share granted in the cloud but not yet recorded in the registry",
            "provider support staff principals acting for a tenant (add them to params.allowed_principals)",
        ),
        note="Successful reads are a data exposure: list the objects in evidence, notify the owner tenant, "
        "revoke the principal's credentials if the access was not expected. Failed calls show probing.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {"share_actions": list, "allowed_principals": list, "failed_score": int}

    def configure(self, config: DetectorConfig) -> None:
        self.share_actions = frozenset(self.params["share_actions"])
        self.allowed = frozenset(self.params["allowed_principals"])
        self.failed_score = int(self.params["failed_score"])

    def match(self, event: Event) -> Hit | None:
        ev: AuditEvent = event  # type: ignore[assignment]
        actor = ev.principal_tenant
        if actor is None or ev.action in self.share_actions or ev.principal in self.allowed:
            return None
        reg = self.reg
        owner = ev.resource_tenant or resource_owner(ev.resource, reg.tenants)
        if owner is None or owner == actor or reg.has_share(owner, actor, ev.resource):
            return None
        labels = audit_labels(actor, owner, ev.action, ev.resource)
        return Hit(
            Entity("principal", ev.principal), ev.tenant or actor, f"{ev.result} {ev.action} {owner}", labels
        )

    def score_for(self, st: HitState) -> int:
        if any(d.startswith("success") for d in st.details):
            return self.meta.score
        return self.failed_score
