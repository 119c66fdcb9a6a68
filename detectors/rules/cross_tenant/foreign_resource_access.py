"""A principal of one tenant acts on another tenant's resource without a registry share, or an
instance's role credentials are used from another tenant's address or account.

CloudTrail delivers a cross-account call to both accounts' trails (same ``sharedEventID``); the
parser marks the caller's copy ``extra.trail_copy = "caller"``. When the resource's owner is a
registry tenant, its own trail holds the owner's copy, so the caller's copy is not a second
accusation; when the owner is outside the registry, the caller's copy is all there is.

An EC2 instance's role session is named after the instance (``assumed-role/<role>/i-...``). Its
credentials belong inside the instance's tenant: a call made with them from an address of another
tenant, through another tenant's (or an unknown account's) VPC endpoint (``vpcEndpointAccountId``),
or, when ``params.flag_unowned_addresses``, from an address no tenant owns and no
``params.allowed_cidrs`` range holds, is the credential theft that follows an SSRF or a
compromised neighbour. Such a hit belongs to the instance's tenant, whichever trail holds the
record: the same call may also reach the other account's trail as a network activity event
(``eventType`` ``AwsVpceEvent``, delivered to the VPC endpoint's owner), and both copies then give
the same alert id.

Accounts are compared as tenants: a ``principal_tenant``, ``resource_tenant`` or grantee that is
still an account id (the parser ran without the registry, or before the account was added to it)
is mapped through the registry's ``accounts`` here (``as_tenant``), so a tenant's own account is
never foreign to it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar, Final

from detectors.alert import Attack, Entity
from detectors.config import ConfigError, DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, HitState, Rule
from detectors.rules.cross_tenant import audit_labels
from ingest.schema import AuditEvent, Event
from ingest.tenants import TenantRegistry

__all__ = ["ForeignResourceAccess", "as_tenant", "instance_session", "resource_owner"]

_INSTANCE_SESSION: Final = re.compile(r":assumed-role/[^/]+/(i-[0-9a-f]{8}(?:[0-9a-f]{9})?)$")
_CREDENTIALS: Final = " credentials from "
_UNOWNED: Final = "an address no tenant owns"
_STOLEN_CREDENTIALS: Final = technique("Credential Access", "T1552.005", "Cloud Instance Metadata API")


def resource_owner(resource: str, known: object) -> str | None:
    """Owner tenant from a ``<service>/<tenant>/...`` resource path, if that tenant is known."""
    parts = resource.split("/", 2)
    if len(parts) >= 2 and parts[1] in known:  # type: ignore[operator]
        return parts[1]
    return None


def as_tenant(reg: TenantRegistry, value: str | None) -> str | None:
    """A tenant id, or an account id the registry maps to its tenant, as that tenant; else itself."""
    if value is None or value in reg.tenants:
        return value
    return reg.tenant_of_account(value) or value


def _network(cidr: object, det_id: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        raise ConfigError(f"{det_id}.params.allowed_cidrs: {cidr!r} is not a network") from None


def instance_session(principal: str) -> str | None:
    """The EC2 instance id of an instance profile's role session ARN, else None."""
    found = _INSTANCE_SESSION.search(principal)
    return found.group(1) if found else None


class ForeignResourceAccess(Rule):
    meta = DetectorMeta(
        id="cross_tenant.foreign_resource_access",
        version="1.2.0",
        title="Access to another tenant's resource without a share",
        category="cross_tenant_leak",
        score=80,
        severity="high",
        attack=(technique("Collection", "T1530", "Data from Cloud Storage"),),
        kinds=frozenset({"audit"}),
        description="A control-plane call by a principal of tenant A on a resource owned by tenant B, "
        "where the registry holds no share of that resource from B to A; or an instance's role credentials "
        "used from another tenant's address or VPC endpoint account, or from an address no tenant owns.",
        false_positives=(
            "a share granted in the cloud but not yet recorded in the registry",
            "provider support staff principals acting for a tenant (add them to params.allowed_principals)",
            "instances calling AWS from public or NAT addresses the registry does not list (add them to the "
            "tenant's cidrs or params.allowed_cidrs, or set params.flag_unowned_addresses false)",
        ),
        note="Successful reads are a data exposure: list the objects in evidence, notify the owner tenant, "
        "revoke the principal's credentials if the access was not expected. Failed calls show probing. "
        "Instance credentials used elsewhere: revoke the role's sessions (aws:TokenIssueTime condition), "
        "enforce IMDSv2 on the instance and look for the SSRF or the neighbour that read them.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "share_actions": list,
        "allowed_principals": list,
        "failed_score": int,
        "credentials_score": int,
        "flag_unowned_addresses": bool,
        "unowned_score": int,
        "allowed_cidrs": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.share_actions = frozenset(self.params["share_actions"])
        self.allowed = frozenset(self.params["allowed_principals"])
        self.failed_score = int(self.params["failed_score"])
        self.credentials_score = int(self.params["credentials_score"])
        self.flag_unowned = bool(self.params["flag_unowned_addresses"])
        self.unowned_score = int(self.params["unowned_score"])
        self.allowed_nets = tuple(_network(c, self.meta.id) for c in self.params["allowed_cidrs"])

    def match(self, event: Event) -> Hit | None:
        ev: AuditEvent = event  # type: ignore[assignment]
        if ev.principal_tenant is None or ev.principal in self.allowed:
            return None
        reg = self.reg
        actor: str = as_tenant(reg, ev.principal_tenant)  # type: ignore[assignment]
        instance = instance_session(ev.principal) if ev.extra.get("identity_type") == "AssumedRole" else None
        if instance is not None:
            hit = self._credentials_elsewhere(ev, actor, instance)
            if hit is not None:
                return hit
        if ev.action in self.share_actions:
            return None
        owner = as_tenant(reg, ev.resource_tenant) or resource_owner(ev.resource, reg.tenants)
        if owner is None or owner == actor or reg.has_share(owner, actor, ev.resource):
            return None
        if ev.extra.get("trail_copy") == "caller" and owner in reg.tenants:
            return None  # the owner's trail holds this call's other copy: one action, one accusation
        labels = audit_labels(actor, owner, ev.action, ev.resource, ev.src_ip)
        tenant = as_tenant(reg, ev.tenant) or actor
        return Hit(Entity("principal", ev.principal), tenant, f"{ev.result} {ev.action} {owner}", labels)

    def _credentials_elsewhere(self, ev: AuditEvent, owner: str, instance: str) -> Hit | None:
        """Where an instance's credentials were used from, when that is not the instance's tenant."""
        reg = self.reg
        endpoint = ev.extra.get("vpcEndpointAccountId")
        endpoint_tenant = (reg.tenant_of_account(endpoint) or endpoint) if isinstance(endpoint, str) else None
        address_tenant = reg.tenant_of_ip(ev.src_ip)
        if address_tenant is not None and address_tenant != owner:
            user, where = address_tenant, address_tenant
        elif endpoint_tenant and endpoint_tenant != owner:
            user, where = endpoint_tenant, f"{endpoint_tenant} VPC endpoint"
        elif (
            self.flag_unowned
            and ev.src_ip is not None
            and address_tenant is None
            and not endpoint_tenant
            and not self._allowed_address(ev.src_ip)
        ):
            user, where = "unknown", _UNOWNED
        else:
            return None
        labels = audit_labels(user, owner, ev.action, instance, ev.src_ip)
        detail = f"{ev.result} {ev.action} with {instance}{_CREDENTIALS}{where}"
        # The instance's tenant is the victim, whichever account's trail (its own, or the endpoint
        # owner's network activity copy) holds the record.
        tenant = owner if owner in reg.tenants else as_tenant(reg, ev.tenant)
        return Hit(Entity("principal", ev.principal), tenant, detail, labels)

    def _allowed_address(self, ip: str) -> bool:
        if not self.allowed_nets:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.allowed_nets)

    def score_for(self, st: HitState) -> int:
        stolen = [d for d in st.details if _CREDENTIALS in d]
        if stolen:
            elsewhere = any(not d.endswith(_UNOWNED) for d in stolen)
            return self.credentials_score if elsewhere else self.unowned_score
        if any(d.startswith("success") for d in st.details):
            return self.meta.score
        return self.failed_score

    def attack_for(self, st: HitState) -> Attack | None:
        return _STOLEN_CREDENTIALS if any(_CREDENTIALS in d for d in st.details) else None
