"""A snapshot or image is shared with another tenant that the registry does not grant."""

from __future__ import annotations

from typing import ClassVar

from detectors.alert import Entity
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, HitState, Rule
from detectors.rules.cross_tenant import audit_labels
from detectors.rules.cross_tenant.foreign_resource_access import resource_owner
from ingest.schema import AuditEvent, Event

__all__ = ["ResourceSharedOut"]


class ResourceSharedOut(Rule):
    meta = DetectorMeta(
        id="cross_tenant.resource_shared_out",
        version="1.0.0",
        title="Snapshot or image shared to a foreign tenant",
        category="cross_tenant_leak",
        score=75,
        severity="high",
        attack=(technique("Exfiltration", "T1537", "Transfer Data to Cloud Account"),),
        kinds=frozenset({"audit"}),
        description="A share action (params.share_actions) grants a resource to a tenant, account or the "
        "public that the registry has no share for: the classic snapshot-sharing exfiltration path.",
        false_positives=(
            "a legitimate new share made before the registry was updated",
            "sharing between two tenants of the same customer not modelled as a share",
        ),
        note="Revoke the share if it was not approved, then check whether the grantee already copied the "
        "snapshot (look for snapshot.Copy by the grantee's principals).",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "share_actions": list,
        "grantee_fields": list,
        "public_grantees": list,
        "public_score": int,
        "failed_score": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.share_actions = frozenset(self.params["share_actions"])
        self.grantee_fields = tuple(self.params["grantee_fields"])
        self.public = frozenset(str(p).lower() for p in self.params["public_grantees"])
        self.public_score = int(self.params["public_score"])
        self.failed_score = int(self.params["failed_score"])

    def match(self, event: Event) -> Hit | None:
        ev: AuditEvent = event  # type: ignore[assignment]
        if ev.action not in self.share_actions:
            return None
        grantees = self._grantees(ev.extra)
        if not grantees:
            return None
        reg = self.reg
        owner = ev.resource_tenant or resource_owner(ev.resource, reg.tenants) or ev.principal_tenant
        foreign = []
        for grantee in grantees:
            if grantee.lower() in self.public:
                foreign.append("public")
                continue
            target = grantee if grantee in reg.tenants else (reg.tenant_of_account(grantee) or grantee)
            if target != owner and not reg.has_share(owner, target, ev.resource):
                foreign.append(target)
        if not foreign:
            return None
        to = "public" if "public" in foreign else "to " + ",".join(sorted(foreign))
        # One grantee per alert on the board (public first, as the score does); details list all.
        grantee = "public" if "public" in foreign else min(foreign)
        labels = audit_labels(owner, grantee, ev.action, ev.resource)
        return Hit(
            Entity("principal", ev.principal), ev.tenant or owner, f"{ev.result} {ev.action} {to}", labels
        )

    def _grantees(self, extra: dict[str, object]) -> list[str]:
        out: list[str] = []
        for name in self.grantee_fields:
            value = extra.get(name)
            if isinstance(value, str) and value:
                out.append(value)
            elif isinstance(value, list | tuple):
                out.extend(v for v in value if isinstance(v, str) and v)
        return out

    def score_for(self, st: HitState) -> int:
        if any(d.endswith(" public") for d in st.details):
            return self.public_score
        if any(d.startswith("success") for d in st.details):
            return self.meta.score
        return self.failed_score
