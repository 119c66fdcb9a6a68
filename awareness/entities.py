"""The entities an alert is about, whose side each is on, and the per-tenant views of an alert.

An incident groups alerts about the same or connected entities, and a tenant sees only its own
side of an incident that spans tenants. This module reads both from one alert document:

**Mentions.** From the alert's ``entity`` and the evidence keys the rules write (read from
``detectors/rules/**``):

| where | entity | rules |
|---|---|---|
| ``entity`` | vm / ip / host / principal / user | every rule |
| ``evidence.vm``, ``evidence.host`` | the guest and its hypervisor host | every ``vm_escape`` rule (``escape_labels``) |
| ``evidence.victim_vm`` | the other VM whose image was touched | ``vm_escape.svirt_cross_vm_access`` |
| ``evidence.details`` ``"disk of <vm>: <syscall> <path>"`` | the neighbour's VM and its disk (a resource) | ``vm_escape.emulator_foreign_file`` (signal ``foreign_vm_disk``) |
| ``evidence.victim``, ``top_target``, ``destination``, ``top_destination``, ``top_source`` | an address | dos, brute force, c2, exfiltration, port scan rules |
| ``evidence.sources``, ``destinations`` (lists) | addresses (at most ``max_list`` of each) | internet probes, flow guessing, app flood, c2 beacon |
| ``evidence.targets`` (list) | the VMs logins failed on (those the registry knows) | ``brute_force.auth_failures`` |
| ``evidence.src_ip`` | the address a control-plane call came from (CloudTrail's ``sourceIPAddress``; with a registry, the VM holding it) | ``cross_tenant.foreign_resource_access``, ``resource_shared_out`` (a label, when the record has it) |
| ``evidence.resource`` | a cloud resource (snapshot, image, bucket, instance) | cross-tenant control-plane rules |
| ``evidence.src_tenant``, ``dst_tenant`` (also ``principal_tenant``, ``resource_tenant`` if present) | the tenants acting and reached | every ``cross_tenant`` rule |

**Sides.** Each mention belongs to a tenant, to nobody (an outside address) or to an unknown
owner. With a ``TenantRegistry`` an address's tenant is ``tenant_of_ip`` (a management address is
the provider's), a VM's ``tenant_of_vm``; an address of a known VM adds that VM (and a VM its
address and host), so an alert about ``ip 10.1.0.5`` and one about ``vm vm-x`` meet. Without a
registry the alert's own entity, ``vm`` and ``host`` are the alert tenant's and every other
address is of unknown owner. A resource ``<service>/<tenant>/...`` belongs to that tenant; else to
the sharer (``src_tenant``) for ``cross_tenant.resource_shared_out`` and to the tenant reached
(``dst_tenant``) for the other rules. A VM named only as a victim without a registry to place it
is dropped (it may be a neighbour's).

**Links.** Alerts join an incident through *link* entities. Not every entity links: a
hypervisor host carries dozens of unrelated VMs of many tenants and a foreign tenant is named by
every cross-tenant alert toward it, so joining on them would fold a busy host's or a busy
neighbour's alerts into one incident. They are kept as descriptive entities unless
``link_types`` (a setting) names them; a host is always a link when it is the alert's own subject
(an alert about the host itself, e.g. an unexpected process opening ``/dev/kvm``), and in a
foreign view the other tenant is the only handle on the actor, so there it links.

**Actors.** An address outside every tenant and the management network (the registry says so;
without a registry nobody is outside) that is the alert's own subject is the acting source of
an attack on the tenant (the scanner, the password guesser, the flooder). Its entity carries
``actor: true``, and the incident stage links two alerts naming the same actor over a longer gap
(``awareness.incidents``, ``actor_gap_ms``). An outside address named only in evidence (an
upload's destination, a flood's victim) is not an actor.

**Views** (``tenant_views``): the alert tenant's *own* view is the alert with its own side's and
outside entities; every other tenant named by the alert (``src_tenant``/``dst_tenant``, the owner
of a victim VM, address or resource) gets a *foreign* view: the alert reduced to that tenant's
side: its own VMs, addresses and resources, the acting tenant by name only (``tenant:<id>``), no
summary, and evidence reduced to the tenant names, channel, signal, window and count. An alert
without a tenant goes to ``_provider``, which sees every entity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ingest.tenants import TenantRegistry

__all__ = [
    "DEFAULT_LINK_TYPES",
    "ENTITY_TYPES",
    "NOT_TENANTS",
    "PROVIDER",
    "Mention",
    "mentions",
    "tenant_views",
    "view_entities",
]

PROVIDER: Final = "_provider"
"""The view of alerts that name no tenant (the provider's own hosts)."""

ENTITY_TYPES: Final = ("vm", "ip", "host", "principal", "user", "resource", "tenant")
DEFAULT_LINK_TYPES: Final = ("vm", "ip", "principal", "user", "resource")
NOT_TENANTS: Final = frozenset({"", "unknown", "public", "-", PROVIDER, "management"})
"""Values of ``src_tenant``/``dst_tenant`` that name no tenant."""

_IP_KEYS: Final = ("victim", "top_target", "destination", "top_destination", "top_source", "src_ip")
_IP_LIST_KEYS: Final = ("sources", "destinations")
_TENANT_KEYS: Final = ("src_tenant", "dst_tenant", "principal_tenant", "resource_tenant")
_FOREIGN_DISK: Final = re.compile(r"^disk of (\S+?): \S+ (\S+)")
_FOREIGN_EVIDENCE: Final = (
    "src_tenant",
    "dst_tenant",
    "channel",
    "signal",
    "window_start",
    "window_end",
    "count",
)

UNKNOWN: Final = "?"
"""Owner of a mention nobody can place (an address without a registry)."""
OUTSIDE: Final = ""
"""Owner of an address outside every tenant and the management plane."""

Mention = tuple[str, str, str, bool]
"""(type, id, owner, subject): owner a tenant id, ``OUTSIDE``, ``UNKNOWN`` or ``PROVIDER``;
subject True for the alert's own entity and what the registry says is the same thing."""


def _tenant(alert: Mapping[str, Any]) -> str:
    t = alert.get("tenant")
    return t if isinstance(t, str) and t else PROVIDER


def _ip_owner(ip: str, registry: TenantRegistry | None) -> str:
    if registry is None:
        return UNKNOWN
    t = registry.tenant_of_ip(ip)
    if t is not None:
        return t
    return PROVIDER if registry.is_management_ip(ip) else OUTSIDE


def _is_tenant(name: object, registry: TenantRegistry | None) -> bool:
    if not isinstance(name, str) or name in NOT_TENANTS:
        return False
    return registry is None or name in registry.tenants


def mentions(
    alert: Mapping[str, Any], registry: TenantRegistry | None = None, max_list: int = 8
) -> list[Mention]:
    """Every entity the alert names, with its owner (see the module's table); deduplicated, in
    the order found, the alert's own entity first."""
    tenant = _tenant(alert)
    ev = alert.get("evidence")
    ev = ev if isinstance(ev, Mapping) else {}
    out: dict[tuple[str, str], Mention] = {}

    def add(etype: str, eid: object, owner: str, subject: bool = False) -> None:
        if not isinstance(eid, str) or not eid or eid == "unknown":
            return
        key = (etype, eid)
        if key not in out:
            out[key] = (etype, eid, owner, subject)

    def add_vm(vm: object, owner_hint: str, subject: bool) -> None:
        if not isinstance(vm, str) or not vm:
            return
        owner = (registry.tenant_of_vm(vm) if registry is not None else None) or owner_hint
        add("vm", vm, owner, subject)
        info = registry.vms.get(vm) if registry is not None else None
        if info is not None:
            if info.ip:
                add("ip", info.ip, owner, subject)
            if info.host:
                add("host", info.host, PROVIDER if owner == UNKNOWN else owner)

    def add_ip(ip: object, subject: bool, owner_hint: str = UNKNOWN) -> None:
        if not isinstance(ip, str) or not ip:
            return
        owner = _ip_owner(ip, registry)
        if owner == UNKNOWN:
            owner = owner_hint
        add("ip", ip, owner, subject)
        vm = registry.vm_of_ip(ip) if registry is not None else None
        if vm:
            add_vm(vm, owner, subject)

    entity = alert.get("entity")
    if isinstance(entity, Mapping):
        etype, eid = entity.get("type"), entity.get("id")
        if etype == "vm":
            add_vm(eid, tenant, True)
        elif etype == "ip":
            add_ip(eid, True, tenant)
        elif isinstance(etype, str):
            add(etype, eid, tenant, True)
    add_vm(ev.get("vm"), tenant, True)
    host = ev.get("host")
    if isinstance(host, str):
        add("host", host, tenant if tenant != PROVIDER else PROVIDER)
    victim_vm = ev.get("victim_vm")
    if isinstance(victim_vm, str) and victim_vm:
        add_vm(victim_vm, UNKNOWN, False)
    details = ev.get("details")
    if ev.get("signal") == "foreign_vm_disk" and isinstance(details, Mapping):
        for text in list(details)[:max_list]:
            found = _FOREIGN_DISK.match(str(text))
            if found is not None:
                other_vm, path = found.group(1), found.group(2)
                owner = (registry.tenant_of_vm(other_vm) if registry is not None else None) or UNKNOWN
                add_vm(other_vm, UNKNOWN, False)
                add("resource", path, owner)
    for key in _IP_KEYS:
        add_ip(ev.get(key), False)
    for key in _IP_LIST_KEYS:
        values = ev.get(key)
        if isinstance(values, list | tuple):
            for value in values[:max_list]:
                add_ip(value, False)
    targets = ev.get("targets")  # brute_force.auth_failures: the VMs (or hosts) logins failed on
    if isinstance(targets, list | tuple):
        for target in targets[:max_list]:
            if registry is not None and isinstance(target, str) and target in registry.vms:
                add_vm(target, UNKNOWN, False)
    resource = ev.get("resource")
    if isinstance(resource, str) and resource:
        src_t, dst_t = ev.get("src_tenant"), ev.get("dst_tenant")
        parts = resource.split("/", 2)
        named = parts[1] if len(parts) >= 2 else None
        if named is not None and (
            named in (src_t, dst_t) or (registry is not None and named in registry.tenants)
        ):
            owner = named
        elif alert.get("detector") == "cross_tenant.resource_shared_out":
            owner = src_t if isinstance(src_t, str) else tenant
        else:
            owner = dst_t if isinstance(dst_t, str) else tenant
        add("resource", resource, owner if _is_tenant(owner, registry) else tenant)
    for key in _TENANT_KEYS:
        name = ev.get(key)
        if _is_tenant(name, registry):
            add("tenant", name, name)  # type: ignore[arg-type]
    return list(out.values())


def _links(etype: str, subject: bool, link_types: Iterable[str]) -> bool:
    return etype in link_types or (subject and etype == "host")


def view_entities(
    alert: Mapping[str, Any],
    view_tenant: str,
    registry: TenantRegistry | None = None,
    *,
    link_types: Iterable[str] = DEFAULT_LINK_TYPES,
    max_list: int = 8,
) -> tuple[list[dict[str, Any]], list[str]]:
    """(entities, other tenants) of one tenant's view of ``alert``: each entity
    ``{type, id, link}`` (plus ``actor: True`` for an outside acting address, see Actors),
    other tenants by name only (sorted)."""
    own = _tenant(alert)
    links = frozenset(link_types)
    found = mentions(alert, registry, max_list)
    named = {m[1] for m in found if m[0] == "tenant"}
    owners = {m[2] for m in found if m[0] != "tenant"}
    others = sorted(
        t for t in (named | owners | {own}) - {view_tenant} if _is_tenant(t, registry) and t != UNKNOWN
    )
    entities: list[dict[str, Any]] = []
    if view_tenant == own:
        for etype, eid, owner, subject in found:
            if etype == "tenant":
                continue
            visible = (
                view_tenant == PROVIDER
                or owner in (view_tenant, OUTSIDE)
                or (owner == UNKNOWN and etype != "vm")  # an address nobody can place: kept
                or (owner == PROVIDER and etype == "host")  # the hypervisor its VM runs on
            )
            if visible:
                entity = {"type": etype, "id": eid, "link": _links(etype, subject, links)}
                if etype == "ip" and subject and owner == OUTSIDE and entity["link"]:
                    entity["actor"] = True  # an outside source acting on the tenant (see Actors)
                entities.append(entity)
    else:
        for etype, eid, owner, _subject in found:
            if etype != "tenant" and owner == view_tenant:
                entities.append({"type": etype, "id": eid, "link": etype in links})
        actor = own if own != PROVIDER else None
        if actor is not None:
            entities.append({"type": "tenant", "id": actor, "link": True})
    return entities, others


def _foreign_subject(entities: list[dict[str, Any]], actor: str) -> dict[str, str]:
    for etype in ("vm", "ip", "resource", "principal", "user"):
        for e in entities:
            if e["type"] == etype:
                return {"type": etype, "id": e["id"]}
    return {"type": "tenant", "id": actor}


def tenant_views(
    alert: Mapping[str, Any],
    registry: TenantRegistry | None = None,
    *,
    link_types: Iterable[str] = DEFAULT_LINK_TYPES,
    max_list: int = 8,
) -> list[tuple[str, dict[str, Any]]]:
    """The (tenant, alert view) pairs an alert belongs to: its own tenant's view first, then one
    foreign view per other tenant it names, in name order (see the module docstring).

    Each view is a new dict: the alert's fields plus ``view`` (``own``/``foreign``),
    ``subject_tenant`` (the alert's tenant, ``_provider`` when it has none),
    ``incident_entities`` and ``other_tenants``. A foreign view's ``entity`` is that tenant's
    own subject (its VM, address or resource, else the acting tenant), it has no ``summary``, and
    its ``evidence`` keeps only ``src_tenant``, ``dst_tenant``, ``channel``, ``signal``, the window
    and the count.
    """
    link_types = tuple(link_types)
    own = _tenant(alert)
    entities, others = view_entities(alert, own, registry, link_types=link_types, max_list=max_list)
    mine = dict(alert)
    mine.update(tenant=own, view="own", subject_tenant=own, incident_entities=entities, other_tenants=others)
    out: list[tuple[str, dict[str, Any]]] = [(own, mine)]
    evidence = alert.get("evidence")
    evidence = evidence if isinstance(evidence, Mapping) else {}
    for other in others:
        ents, their_others = view_entities(alert, other, registry, link_types=link_types, max_list=max_list)
        view = {k: v for k, v in alert.items() if k not in ("summary", "evidence", "entity")}
        view.update(
            tenant=other,
            view="foreign",
            subject_tenant=own,
            entity=_foreign_subject(ents, own),
            evidence={k: evidence[k] for k in _FOREIGN_EVIDENCE if k in evidence},
            incident_entities=ents,
            other_tenants=their_others,
        )
        out.append((other, view))
    return out
