"""Elastic Common Schema (ECS) fields for alert and incident documents.

Kibana Security, Elastic's detection views and other ECS readers (SIEM connectors, Sigma
back-ends) find our alerts by ECS names. ``alert_ecs`` and ``incident_ecs`` are pure functions of
one document (plus, optionally, the tenant registry): same input, same output, event time only,
no clock. ``with_ecs`` adds them to the document beside our own fields, which stay as they are
(the dashboards read them). The fields are ECS ``ECS_VERSION`` (9.4.0); ``tests/test_ecs_fields.py``
checks every field written here against ECS's own published definitions (``infra/ecs_spec.py``:
existence, type, value type, allowed values) and against the alerts template's mapping.

Top-level names: our documents' own top-level fields (``alert_id``, ``ts``, ``tenant``, ``entity``,
``attack``, ``evidence``, ``summary``, ``status`` ... and the incident's ``incident_id``, ``title``,
``stage``, ``tactics`` ...) take no ECS field set's name except ``entity``: ECS 9 has an ``entity``
field set, and our ``entity.type``/``entity.id`` are keywords there too (ECS types them keyword), so
the mapping agrees and their meaning is close (the subject of the alert). ECS fields are added as
nested objects (``event: {...}``, ``rule: {...}``); ``with_ecs`` refuses a document that already has
one of the top-level names it adds.

Alert -> ECS (every field written only when its value is known and valid for its ECS type; an
address that does not parse as an IP is never written to an ``ip`` field, since Elasticsearch would
refuse the whole document):

- ``@timestamp`` = ``ts`` (window end, epoch ms); ``message`` = ``summary``; ``ecs.version``.
- ``event.kind`` = ``alert`` (ECS: "an alert or notable event, triggered by a detection rule
  executing externally to the Elastic Stack"; ``signal`` is reserved for Kibana's own rules).
- ``event.category``: from the detector's telemetry kinds (``flow`` -> ``network``, ``process`` ->
  ``process``, ``audit`` (cloud control-plane calls) -> ``api``, ``auth`` -> ``authentication``), plus
  ``intrusion_detection`` (the category ECS names for IDS/EDR detections); a detector this code
  does not know falls back to ``CATEGORY_ECS`` of the alert's category. ``event.type`` =
  ``["info"]``: one of ECS's expected types for every category above (the test checks it).
- ``event.severity`` = 21/47/73/99 for low/medium/high/critical (``SEVERITY_NUMBER``: the numbers
  Elastic's detection rules and integrations give those four severities, so our alerts sort with
  theirs); ``event.risk_score`` and ``event.risk_score_norm`` = ``score`` (already 0-100).
- ``event.start``/``event.end`` = ``first_seen``/``last_seen``; ``event.duration`` = their
  difference in nanoseconds (ECS's unit); ``event.id`` = ``alert_id``; ``event.module`` = ``ssa``;
  ``event.dataset`` = ``ssa.alerts``.
- ``rule.id`` = detector id, ``rule.name`` = the detector's title (its id when unknown),
  ``rule.version`` = ``detector_version``, ``rule.category`` = our category, ``rule.ruleset`` = ``ssa``.
- ``threat.framework`` = ``MITRE ATT&CK``; ``threat.tactic.name/id/reference`` from
  ``attack.tactic`` (``TACTIC_IDS``: every ATT&CK Enterprise tactic, ``detectors.meta.TACTICS``);
  ``threat.technique.id/name/reference`` the technique, and for a sub-technique (``T1110.001``)
  the parent in ``threat.technique.*`` (``PARENT_TECHNIQUES`` names every parent our detectors'
  sub-techniques have) and the sub-technique in ``threat.technique.subtechnique.*``, as Elastic's
  detection rules write them. References are attack.mitre.org URLs. Threat fields are arrays
  (ECS normalizes them so), one element per tactic or technique.
- ``source.ip``, ``destination.ip``, ``destination.port``: from the evidence keys the detectors
  write: destination = ``victim`` / ``top_target`` / ``destination`` / ``top_destination`` (first
  present), source = ``sources`` when it holds exactly one address, port = ``port``, or ``ports``
  with exactly one. The entity's address fills the side ``ENTITY_SIDE`` gives for its detector
  (the scanner, guesser, flooder, reflecting service, beaconing host or spam bot is the source; the
  distributed flood's entity is its victim); other detectors' entities (an anomaly's subject, a VM probed)
  take no side. ``source.port`` is never written: no detector keeps the ephemeral port.
- ``related.ip`` (every address above, plus the evidence's ``sources``/``destinations`` lists),
  ``related.hosts`` (hypervisor hosts and VMs, ``evidence.victim_vm`` included), ``related.user`` (the principal or user and the
  evidence's ``users``); each capped at ``RELATED_MAX`` values, in order of appearance.
- ``organization.id`` = tenant (absent for a provider alert without tenant), ``organization.name``
  = the registry's tenant name; ``cloud.account.id`` = the tenant's cloud account when the
  registry lists exactly one (with several, none: ECS's field holds one account, and the alert
  does not say which).
- ``host.id`` = ``host.name`` = the hypervisor host: a ``host`` entity, else ``evidence.host``
  (not ``unknown``), else the registry's host of the VM. ``cloud.instance.id`` = the VM: a ``vm``
  entity, else ``evidence.vm``. ``user.name`` = a ``user`` or ``principal`` entity.

Incident -> ECS (shape: ``incident_id, tenant, status, title, severity, score, stage, tactics,
categories, first_seen, last_seen, entities, alert_ids``): ``@timestamp`` = ``last_seen`` (the
incident's latest evidence; the document is rewritten as it grows), ``message`` = ``title``,
``event.kind`` = ``alert`` (ECS has no incident kind; an incident is a notable finding of
detection logic outside the Elastic Stack; ``event.dataset`` = ``ssa.incidents`` tells it from
the alerts it groups), ``event.category`` = ``intrusion_detection`` plus ``CATEGORY_ECS`` of its
categories, the same severity, score, start/end/duration and id fields, ``threat.tactic.*`` for
its tactics in order, organization and account as for alerts, and from ``entities``: the
single-valued fields (``host.*``, ``cloud.instance.id``, ``user.name``) only when exactly one
entity of that type is present, the ``related.*`` arrays from all of them. No ``rule.*``: an
incident is made by the correlation of several detectors' alerts, not by one rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

from ingest.tenants import TenantRegistry

__all__ = [
    "CATEGORY_ECS",
    "ECS_VERSION",
    "ENTITY_SIDE",
    "KIND_ECS",
    "PARENT_TECHNIQUES",
    "RELATED_MAX",
    "SEVERITY_NUMBER",
    "TACTIC_IDS",
    "EcsCollisionError",
    "alert_ecs",
    "flatten",
    "incident_ecs",
    "with_ecs",
]

ECS_VERSION: Final = "9.4.0"
FRAMEWORK: Final = "MITRE ATT&CK"
RELATED_MAX: Final = 32  # related.* values per document: the evidence lists are short already

# ATT&CK Enterprise tactic ids (https://attack.mitre.org/tactics/enterprise/), one per name in
# detectors.meta.TACTICS.
TACTIC_IDS: Final[Mapping[str, str]] = {
    "Reconnaissance": "TA0043",
    "Resource Development": "TA0042",
    "Initial Access": "TA0001",
    "Execution": "TA0002",
    "Persistence": "TA0003",
    "Privilege Escalation": "TA0004",
    "Defense Evasion": "TA0005",
    "Credential Access": "TA0006",
    "Discovery": "TA0007",
    "Lateral Movement": "TA0008",
    "Collection": "TA0009",
    "Exfiltration": "TA0010",
    "Command and Control": "TA0011",
    "Impact": "TA0040",
}

# Parent technique names of the sub-techniques our detectors map to (ECS writes the parent in
# threat.technique.* and the sub-technique in threat.technique.subtechnique.*).
PARENT_TECHNIQUES: Final[Mapping[str, str]] = {
    "T1055": "Process Injection",
    "T1110": "Brute Force",
    "T1498": "Network Denial of Service",
    "T1499": "Endpoint Denial of Service",
    "T1547": "Boot or Logon Autostart Execution",
    "T1552": "Unsecured Credentials",
    "T1595": "Active Scanning",
}

SEVERITY_NUMBER: Final[Mapping[str, int]] = {"low": 21, "medium": 47, "high": 73, "critical": 99}

KIND_ECS: Final[Mapping[str, str]] = {
    "flow": "network",
    "process": "process",
    "audit": "api",
    "auth": "authentication",
}

# Our alert categories -> ECS event.category values (incidents; alerts of an unknown detector).
CATEGORY_ECS: Final[Mapping[str, tuple[str, ...]]] = {
    "vm_escape": ("process",),
    "cross_tenant_leak": ("network", "api"),
    "port_scan": ("network",),
    "brute_force": ("authentication", "network"),
    "exfiltration": ("network",),
    "cryptomining": ("process", "network"),
    "dos": ("network",),
    "command_and_control": ("network",),
    "spam": ("network", "email"),
    "anomaly": ("network", "process"),
}

# Which side of the traffic an ``ip`` entity is, per detector; absent: neither.
ENTITY_SIDE: Final[Mapping[str, str]] = {
    "brute_force.auth_failures": "source",
    "brute_force.flow_guessing": "source",
    "c2.beacon": "source",
    "dos.app_flood": "source",
    "dos.slow_connections": "source",
    "dos.source_flood": "source",
    "dos.reflector": "source",  # its answers are the flood; the forged requests' address is the victim
    "port_scan.failed_probe_scan": "source",
    "spam.smtp_spam": "source",
    "dos.distributed_flood": "destination",
}

_DESTINATION_KEYS: Final = ("victim", "top_target", "destination", "top_destination")
_LIST_IP_KEYS: Final = ("sources", "destinations")
_ATTACK_URL: Final = "https://attack.mitre.org"


class EcsCollisionError(ValueError):
    """The document already has a top-level field that an ECS field set would replace."""


@lru_cache(maxsize=1)
def _detector_index() -> Mapping[str, tuple[str, tuple[str, ...]]]:
    """detector id -> (title, ECS categories of its telemetry kinds), built on first use."""
    from detectors.registry import anomaly_detector_classes, detector_classes

    index: dict[str, tuple[str, tuple[str, ...]]] = {}
    for cls in [*detector_classes(), *anomaly_detector_classes()]:
        meta = cls.meta
        cats = tuple(dict.fromkeys(KIND_ECS[k] for k in sorted(meta.kinds) if k in KIND_ECS))
        index[meta.id] = (meta.title, cats)
    return index


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _ip(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _epoch_ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Related:
    """Ordered, de-duplicated, capped ``related.*`` values."""

    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {"ip": [], "hosts": [], "user": []}

    def add(self, kind: str, value: str | None) -> None:
        bucket = self.values[kind]
        if value is not None and value not in bucket and len(bucket) < RELATED_MAX:
            bucket.append(value)

    def add_all(self, kind: str, values: Iterable[str | None]) -> None:
        for v in values:
            self.add(kind, v)

    def fields(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.values.items() if v}


def _threat(tactics: Iterable[str], techniques: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    tactic_names = list(dict.fromkeys(t for t in tactics if t))
    threat: dict[str, Any] = {"framework": FRAMEWORK}
    if tactic_names:
        tactic: dict[str, Any] = {"name": tactic_names}
        ids = [TACTIC_IDS.get(t) for t in tactic_names]
        if all(ids):  # parallel arrays: only when every tactic is known
            tactic["id"] = ids
            tactic["reference"] = [f"{_ATTACK_URL}/tactics/{i}/" for i in ids]
        threat["tactic"] = tactic
    tech_ids: list[str] = []
    tech_names: list[str] = []
    sub_ids: list[str] = []
    sub_names: list[str] = []
    for tid, name in techniques:
        parent, _, sub = tid.partition(".")
        parent_name = PARENT_TECHNIQUES.get(parent) if sub else name
        if parent not in tech_ids:
            tech_ids.append(parent)
            tech_names.append(parent_name or "")
        if sub and tid not in sub_ids:
            sub_ids.append(tid)
            sub_names.append(name.split(": ", 1)[-1])
    if tech_ids:
        technique: dict[str, Any] = {
            "id": tech_ids,
            "reference": [f"{_ATTACK_URL}/techniques/{t}/" for t in tech_ids],
        }
        if all(tech_names):
            technique["name"] = tech_names
        if sub_ids:
            technique["subtechnique"] = {
                "id": sub_ids,
                "name": sub_names,
                "reference": [f"{_ATTACK_URL}/techniques/{t.replace('.', '/')}/" for t in sub_ids],
            }
        threat["technique"] = technique
    return threat


def _event(doc: Mapping[str, Any], categories: Iterable[str], doc_id: Any, dataset: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "alert",
        "category": [
            "intrusion_detection",
            *dict.fromkeys(c for c in categories if c != "intrusion_detection"),
        ],
        "type": ["info"],
        "module": "ssa",
        "dataset": dataset,
    }
    if _text(doc_id):
        event["id"] = doc_id
    severity = SEVERITY_NUMBER.get(doc.get("severity"))  # type: ignore[arg-type]
    if severity is not None:
        event["severity"] = severity
    score = doc.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        event["risk_score"] = float(score)
        event["risk_score_norm"] = float(min(100.0, max(0.0, score)))
    start, end = _epoch_ms(doc.get("first_seen")), _epoch_ms(doc.get("last_seen"))
    if start is not None:
        event["start"] = start
    if end is not None:
        event["end"] = end
    if start is not None and end is not None and end >= start:
        event["duration"] = (end - start) * 1_000_000
    return event


def _tenant_fields(tenant: Any, registry: TenantRegistry | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not _text(tenant):
        return out
    org: dict[str, Any] = {"id": tenant}
    record = registry.tenants.get(tenant) if registry is not None else None
    if record is not None:
        if record.name:
            org["name"] = record.name
        if len(record.accounts) == 1:
            out["cloud"] = {"account": {"id": record.accounts[0]}}
    out["organization"] = org
    return out


def _host_of_vm(vm: str | None, registry: TenantRegistry | None) -> str | None:
    if vm is None or registry is None:
        return None
    record = registry.vms.get(vm)
    return record.host if record is not None else None


def _put(out: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def alert_ecs(doc: Mapping[str, Any], registry: TenantRegistry | None = None) -> dict[str, Any]:
    """The ECS fields of one alert document (``msgspec.to_builtins`` of an ``Alert``, or the
    indexed document), nested by field set."""
    detector = str(doc.get("detector") or "")
    category = str(doc.get("category") or "")
    entity = _mapping(doc.get("entity"))
    ent_type, ent_id = entity.get("type"), _text(entity.get("id"))
    evidence = _mapping(doc.get("evidence"))
    attack = _mapping(doc.get("attack"))

    known = _detector_index().get(detector)
    categories = known[1] if known and known[1] else CATEGORY_ECS.get(category, ())
    out: dict[str, Any] = {}
    ts = _epoch_ms(doc.get("ts"))
    if ts is not None:
        out["@timestamp"] = ts
    out["ecs"] = {"version": ECS_VERSION}
    if _text(doc.get("summary")):
        out["message"] = doc["summary"]
    out["event"] = _event(doc, categories, doc.get("alert_id"), "ssa.alerts")
    rule: dict[str, Any] = {"id": detector, "name": known[0] if known else detector, "ruleset": "ssa"}
    if _text(doc.get("detector_version")):
        rule["version"] = doc["detector_version"]
    if category:
        rule["category"] = category
    if detector:
        out["rule"] = rule
    techniques = (
        [(attack["technique_id"], str(attack.get("technique") or ""))]
        if _text(attack.get("technique_id"))
        else []
    )
    out["threat"] = _threat([str(attack.get("tactic") or "")], techniques)

    related = _Related()
    # Addresses: destination first (named by the evidence), then the source, then the entity.
    destination = next((ip for ip in (_ip(evidence.get(k)) for k in _DESTINATION_KEYS) if ip), None)
    sources = [_ip(s) for s in _list(evidence.get("sources"))]
    source = sources[0] if len(sources) == 1 else None
    entity_ip = _ip(ent_id) if ent_type == "ip" else None
    side = ENTITY_SIDE.get(detector)
    if entity_ip is not None and side == "source" and source is None and entity_ip != destination:
        source = entity_ip
    elif entity_ip is not None and side == "destination" and destination is None and entity_ip != source:
        destination = entity_ip
    port = _port(evidence.get("port"))
    ports = _list(evidence.get("ports"))
    if port is None and len(ports) == 1:
        port = _port(ports[0])
    if source is not None:
        _put(out, "source.ip", source)
    if destination is not None:
        _put(out, "destination.ip", destination)
        if port is not None:
            _put(out, "destination.port", port)
    related.add_all("ip", [entity_ip, source, destination])
    for key in _LIST_IP_KEYS:
        related.add_all("ip", (_ip(v) for v in _list(evidence.get(key))))

    # Hosts, VMs, users.
    vm = ent_id if ent_type == "vm" else _text(evidence.get("vm"))
    host = ent_id if ent_type == "host" else None
    if host is None:
        ev_host = _text(evidence.get("host"))
        host = ev_host if ev_host and ev_host != "unknown" else _host_of_vm(vm, registry)
    if host is not None:
        out["host"] = {"id": host, "name": host}
    if vm is not None:
        _put(out, "cloud.instance.id", vm)
    related.add_all("hosts", [host, vm, _text(evidence.get("victim_vm"))])
    user = ent_id if ent_type in ("user", "principal") else None
    if user is not None:
        out["user"] = {"name": user}
    related.add("user", user)
    related.add_all("user", (_text(u) for u in _list(evidence.get("users"))))

    return _finish(out, doc, related, registry)


def _finish(
    out: dict[str, Any], doc: Mapping[str, Any], related: _Related, registry: TenantRegistry | None
) -> dict[str, Any]:
    """Add the tenant's fields (``cloud`` merged with what is there) and ``related``."""
    for path, value in _tenant_fields(doc.get("tenant"), registry).items():
        if path == "cloud":
            out.setdefault("cloud", {}).update(value)
        else:
            out[path] = value
    if rel := related.fields():
        out["related"] = rel
    return out


def incident_ecs(doc: Mapping[str, Any], registry: TenantRegistry | None = None) -> dict[str, Any]:
    """The ECS fields of one incident document, nested by field set."""
    out: dict[str, Any] = {}
    ts = _epoch_ms(doc.get("last_seen"))
    if ts is not None:
        out["@timestamp"] = ts
    out["ecs"] = {"version": ECS_VERSION}
    if _text(doc.get("title")):
        out["message"] = doc["title"]
    ecs_cats = [c for cat in _list(doc.get("categories")) for c in CATEGORY_ECS.get(str(cat), ())]
    out["event"] = _event(doc, ecs_cats, doc.get("incident_id"), "ssa.incidents")
    out["threat"] = _threat(str(t) for t in _list(doc.get("tactics")))

    entities = [e for e in _list(doc.get("entities")) if isinstance(e, Mapping) and _text(e.get("id"))]
    by_type: dict[str, list[str]] = {}
    for e in entities:
        bucket = by_type.setdefault(str(e.get("type")), [])
        if e["id"] not in bucket:
            bucket.append(e["id"])
    related = _Related()
    hosts, vms = by_type.get("host", []), by_type.get("vm", [])
    users = by_type.get("user", []) + by_type.get("principal", [])
    if len(hosts) == 1:
        out["host"] = {"id": hosts[0], "name": hosts[0]}
    if len(vms) == 1:
        _put(out, "cloud.instance.id", vms[0])
    if len(users) == 1:
        out["user"] = {"name": users[0]}
    related.add_all("ip", (_ip(v) for v in by_type.get("ip", [])))
    related.add_all("hosts", [*hosts, *vms])
    related.add_all("user", users)
    return _finish(out, doc, related, registry)


def with_ecs(doc: Mapping[str, Any], ecs: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` with the ECS fields added; refuses to replace a field of ours."""
    clash = sorted(set(doc) & set(ecs))
    if clash:
        raise EcsCollisionError(f"document already has top-level field(s) {clash}; ECS would replace them")
    return {**doc, **ecs}


def flatten(ecs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested ECS fields as dotted names -> values (lists kept as values)."""
    flat: dict[str, Any] = {}
    for key, value in ecs.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
