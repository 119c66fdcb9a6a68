"""A resource is shared with another tenant, an account or the public that the registry does not grant.

Share actions (``params.share_actions``) carry their grantees in the event (``extra.grantees``):
the simulator's names, and the real CloudTrail actions whose grantees ``ingest.parsers.cloudtrail_grants``
reads (snapshot, AMI and RDS snapshot attributes, bucket policies and ACLs, KMS key policies and
grants, AWS RAM shares). A grantee is a tenant id, an account id the registry does not know, or
``public``. Of a cross-account call's two trail copies, the owner's counts when the owner is a
registry tenant (see ``foreign_resource_access``). The owner and the grantees are compared as
tenants (``as_tenant``): an account id the registry knows is its tenant, whether or not the parser
had the registry, so a policy naming the owner's own account never alerts and an account the
registry does not know (a 12-digit id, an ARN's account) always does."""

from __future__ import annotations

from typing import ClassVar

from detectors.alert import Entity
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, HitState, Rule
from detectors.rules.cross_tenant import audit_labels
from detectors.rules.cross_tenant.foreign_resource_access import as_tenant, resource_owner
from ingest.schema import AuditEvent, Event

__all__ = ["ResourceSharedOut"]


class ResourceSharedOut(Rule):
    meta = DetectorMeta(
        id="cross_tenant.resource_shared_out",
        version="1.2.0",
        title="Resource shared to a foreign tenant, account or the public",
        category="cross_tenant_leak",
        score=75,
        severity="high",
        attack=(technique("Exfiltration", "T1537", "Transfer Data to Cloud Account"),),
        kinds=frozenset({"audit"}),
        description="A share action (params.share_actions: snapshot, image and database snapshot attributes, "
        "bucket and key policies, bucket ACLs, KMS grants, RAM shares) grants a resource to a tenant, account "
        "or the public that the registry has no share for: the classic snapshot-sharing exfiltration path.",
        false_positives=(
            "a legitimate new share made before the registry was updated",
            "sharing between two tenants of the same customer not modelled as a share",
            "bucket ACL grants to canonical user ids, which the registry cannot map to a tenant",
        ),
        note="Revoke the share if it was not approved (remove the account from the attribute, the statement from "
        "the policy, the grant or the RAM association), then check whether the grantee already copied or read "
        "the resource (CopySnapshot, RunInstances, RestoreDBInstanceFromDBSnapshot, GetObject by its principals).",
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
        owner = (
            as_tenant(reg, ev.resource_tenant)
            or resource_owner(ev.resource, reg.tenants)
            or as_tenant(reg, ev.principal_tenant)
        )
        if ev.extra.get("trail_copy") == "caller" and owner in reg.tenants:
            return None  # a cross-account grant (a KMS CreateGrant): the owner's trail copy counts it
        foreign = []
        for grantee in grantees:
            if grantee.lower() in self.public:
                foreign.append("public")
                continue
            target: str = as_tenant(reg, grantee)  # type: ignore[assignment]
            if target != owner and not reg.has_share(owner, target, ev.resource):
                foreign.append(target)
        if not foreign:
            return None
        to = "public" if "public" in foreign else "to " + ",".join(sorted(foreign))
        # One grantee per alert on the board (public first, as the score does); details list all.
        grantee = "public" if "public" in foreign else min(foreign)
        labels = audit_labels(owner, grantee, ev.action, ev.resource, ev.src_ip)
        return Hit(
            Entity("principal", ev.principal),
            as_tenant(reg, ev.tenant) or owner,
            f"{ev.result} {ev.action} {to}",
            labels,
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
