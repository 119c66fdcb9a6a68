"""Elasticsearch documents made from what the job writes to Kafka: alerts (enriched with the
tenant's industry and time to detect), posture metrics, the awareness stage's documents, and one
counting document per DLQ record.

Every document id is deterministic, so re-shipping the same Kafka records never adds a document.

**Where each goes** (``infra.tenant_indices``): a document with a tenant to that tenant's daily
index (``<prefix>t-<tenant>.<day>``), one without (the cloud's threat level ``_cloud``, DLQ and
lag counts, posture of no tenant ``-``, alerts and incidents of the provider's own hosts) to
``<prefix>soc.<day>``. The day is the document's own time (an incident's ``first_seen``).

**Alerts involving several tenants.** An alert that names another tenant (``awareness.entities``:
``src_tenant``/``dst_tenant``, the owner of a victim VM, address or resource) is written
(``alert_copies``):

- in full to the ``soc`` index: the document the SOC reads and counts (the SOC alias leaves the
  copies out), with the alert's status workflow;
- to the alerting tenant's index, a copy (``copy: tenant``) with every string naming another
  tenant's side replaced by ``another tenant``: that tenant's id, name and accounts, its VMs,
  their addresses and disks, and every entity of the alert the registry places on its side
  (principals, resources, addresses, VMs); addresses in free text are looked up in the registry;
- to each other tenant's index, a copy (``copy: shared``, ``shared_copy: true``) built from an
  allow-list: the alert's id, times, category, severity, score, detector, ATT&CK technique and
  status; ``entity`` = that tenant's own entity (its VM, address, principal or user), else the
  alert's entity type with the id ``another tenant`` (the copy stays a valid alert document);
  evidence reduced to ``src_tenant``, ``dst_tenant``, ``channel``, ``signal``, the window, the
  count and that tenant's own ``resource`` when one was reached (tenant names redacted as above);
  a summary of our own; its own industry; the ECS fields recomputed from that copy. No ``owner_tenant``: the other tenant's id
  is exactly what the copy hides.

Every copy has the alert's ``alert_id`` (and ``_id``). Each copy has its own status: a tenant's
analyst acknowledges its copy, the SOC its full document.

**Incidents involving several tenants.** The awareness stage keeps one incident per tenant side
(``awareness.entities.tenant_views``), holding only that side's entities, but it names the other
tenant: ``other_tenants``, a ``tenant:<id>`` entity (the only handle on the actor, which links the
incident), and the title ("... then read of tenant B's storage"). An incident document naming
other tenants is written (``incident_copies``) in full to the ``soc`` index (what the SOC reads,
through the incidents alias, which leaves copies out as the alerts alias does) and to its tenant's
index as a copy (``copy: tenant``) with ``tenant <id>`` phrases reading ``another tenant`` and every
string of the other tenants (id, name, accounts, VMs, their addresses and disks) redacted as in an
alert's copy; a list keeps one ``another tenant`` entry however many tenants it named, and the
title each phrase once (the copy does not tell how many). An incident becomes cross-tenant when
such an alert joins it: from then on its SOC document is the ``soc`` one, which takes the
analyst's fields written before on the tenant's index (``adopt_from``), and the tenant's copy
keeps them too. A merged incident id of a tenant's index is retired in the ``soc`` index too
(``_retired_in_soc``).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import msgspec

from awareness.entities import OUTSIDE, PROVIDER, UNKNOWN, mentions, view_entities
from awareness.incidents import phrases_once
from detectors.alert import Alert, decode_alert
from detectors.ecs import alert_ecs, incident_ecs, with_ecs
from infra.tenant_indices import (
    COPY_FIELD,
    SHARED_COPY_FIELD,
    document_index,
    is_index_tenant,
    soc_index,
)
from ingest.tenants import TenantRegistry

__all__ = [
    "ANOTHER_TENANT",
    "Action",
    "alert_action",
    "alert_actions",
    "alert_copies",
    "awareness_action",
    "awareness_actions",
    "daily_index",
    "dlq_action",
    "incident_copies",
    "lag_action",
    "metrics_action",
    "private_strings",
    "redact",
]

ANOTHER_TENANT: Final = "another tenant"
"""What replaces another tenant's id, name or entity in a tenant's copy of an alert."""


@dataclass(frozen=True)
class Action:
    index: str
    id: str
    source: dict[str, Any]
    # "create" keeps the first copy: an analyst's acknowledgement is never reset by a replay.
    op_type: str = "index"
    # Elasticsearch's external_gte version: a write with a lower version than the stored one is
    # refused (409). None: no version check.
    version: int | None = None
    # An incident's ``soc`` document: the index of its tenant's document, whose analyst fields
    # (``awareness.incidents.ANALYST_FIELDS``) the first write here takes (``streams.indexer``).
    adopt_from: str | None = None
    # An update written only over a stored document (``_retired_in_soc``), else left out.
    only_if_stored: bool = False


def daily_index(prefix: str, ts_ms: int) -> str:
    """The shared daily index of earlier versions (``<prefix>YYYY.MM.DD``); documents now go to
    ``infra.tenant_indices.document_index``. Kept for readers of old indices and for tests."""
    return prefix + time.strftime("%Y.%m.%d", time.gmtime(ts_ms / 1000))


def alert_actions(
    value: bytes,
    prefix: str,
    industry_of: Callable[[str | None], str | None],
    registry: TenantRegistry | None = None,
) -> list[Action]:
    """The alert's documents (module docstring): one in its tenant's index (the ``soc`` one
    without a tenant); for an alert naming other tenants, the full document in the ``soc`` index
    first, then each tenant's reduced copy. Each: our fields, then the ECS fields
    (``detectors.ecs``; ``registry``, when given, adds the tenant's name and cloud account and a
    VM's host)."""
    alert: Alert = decode_alert(value)
    doc: dict[str, Any] = msgspec.to_builtins(alert)
    doc["industry"] = industry_of(alert.tenant)
    doc["ttd_ms"] = max(0, alert.ts - alert.first_seen)
    doc["indexed_at"] = int(time.time() * 1000)
    out = []
    for tenant, body in alert_copies(doc, registry, industry_of):
        full = with_ecs(body, alert_ecs(body, registry))
        if tenant is None:
            index = soc_index(prefix, alert.ts)
        else:
            index = document_index(prefix, tenant, alert.ts)
            if COPY_FIELD in body:  # the ECS fields of a copy, checked as the copy was
                full = redact(full, private_strings(doc, tenant, registry), tenant, registry)
        out.append(Action(index, alert.alert_id, full, op_type="create"))
    return out


def alert_action(
    value: bytes,
    prefix: str,
    industry_of: Callable[[str | None], str | None],
    registry: TenantRegistry | None = None,
) -> Action:
    """The alert's document the SOC counts (the first of ``alert_actions``)."""
    return alert_actions(value, prefix, industry_of, registry)[0]


# --- alerts that involve several tenants ---------------------------------------------------------
# Fields a shared copy keeps as they are (none of them names an entity).
_SHARED_FIELDS: Final = (
    "alert_id", "ts", "first_seen", "last_seen", "category", "severity", "score", "detector",
    "detector_version", "attack", "status", "ttd_ms", "indexed_at",
)  # fmt: skip
_SUBJECT_TYPES: Final = ("vm", "ip", "principal", "user")  # detectors.alert.EntityType, but hosts
_SHARED_EVIDENCE: Final = (
    "src_tenant",
    "dst_tenant",
    "channel",
    "signal",
    "window_start",
    "window_end",
    "count",
)
_MIN_SUBSTRING: Final = 4  # shorter private strings are matched as whole words only
_WORD: Final = r"A-Za-z0-9_\-"
_NON_SPACE: Final = re.compile(r"\S+")
_TRAILING: Final = ",;:.)]}'\""
_LEADING: Final = "([{'\""
_IPV4: Final = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])")
_IPV6: Final = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")


def _tenant_of(doc: Mapping[str, Any]) -> str:
    t = doc.get("tenant")
    return t if is_index_tenant(t) else PROVIDER  # type: ignore[return-value]


def _tenant_strings(tenant: str, registry: TenantRegistry | None) -> set[str]:
    """A tenant's id, and from the registry its name, accounts, VMs and their addresses and disks."""
    out = {tenant}
    record = registry.tenants.get(tenant) if registry is not None else None
    if record is not None:
        out.update(x for x in (record.name, *record.accounts) if x)
        for vm_id in record.vms:
            vm = registry.vms.get(vm_id)  # type: ignore[union-attr]
            out.add(vm_id)
            if vm is not None:
                out.update(x for x in (vm.ip, vm.disk) if x)
    return out


def private_strings(doc: Mapping[str, Any], view: str, registry: TenantRegistry | None = None) -> set[str]:
    """The strings tenant ``view``'s copy of ``doc`` must not contain: every entity of the alert
    that ``view`` does not see (``awareness.entities.view_entities``: other tenants' VMs,
    addresses, principals, resources, provider addresses), and every other tenant's id, name,
    accounts, VM ids, addresses and disks the registry knows; minus what ``view`` sees itself."""
    own = _tenant_of(doc)
    visible_entities, others = view_entities(doc, view, registry)
    visible = {str(e["id"]) for e in visible_entities if e["type"] != "tenant"}
    visible |= _tenant_strings(view, registry)
    if registry is not None and view in registry.tenants:  # the hypervisors of its own VMs
        visible |= {vm.host for vm in registry.vms.values() if vm.tenant == view and vm.host}
    hidden: set[str] = set()
    for etype, eid, owner, _subject in mentions(doc, registry):
        if etype == "tenant":
            if eid != view:
                hidden |= _tenant_strings(eid, registry)
        elif owner != view and not (view == own and owner == OUTSIDE):
            hidden.add(eid)
    for other in {*others, own} - {view, PROVIDER, UNKNOWN, OUTSIDE}:
        hidden |= _tenant_strings(other, registry)
    return {h for h in hidden - visible if h and h != ANOTHER_TENANT}


class _Redactor:
    def __init__(
        self, hidden: Iterable[str], view: str, registry: TenantRegistry | None, tenants: Iterable[str] = ()
    ) -> None:
        names = "|".join(
            re.escape(t) for t in sorted(set(tenants), key=lambda t: (-len(t), t))
        )  # longest first
        self.phrase = re.compile(f"(?<![{_WORD}])[Tt]enant (?:{names})('s)?(?![{_WORD}])") if names else None
        self.hidden = sorted(set(hidden), key=lambda h: (-len(h), h))
        self.long = [h for h in self.hidden if len(h) >= _MIN_SUBSTRING]
        alternatives = "|".join(re.escape(h) for h in self.hidden)
        self.pattern = (
            re.compile(f"(?<![{_WORD}])(?<![0-9]\\.)(?:{alternatives})(?![{_WORD}])(?!\\.[0-9])")
            if self.hidden
            else None
        )
        self.view = view
        self.registry = registry

    def _address(self, found: re.Match[str]) -> str:
        text = found.group(0)
        try:
            ip = str(ipaddress.ip_address(text))
        except ValueError:
            return text
        reg = self.registry
        assert reg is not None
        owner = reg.tenant_of_ip(ip)
        if (owner is not None and owner != self.view) or (owner is None and reg.is_management_ip(ip)):
            return ANOTHER_TENANT
        return text

    def _word(self, found: re.Match[str]) -> str:
        """A word (no white space) naming something hidden goes whole: ``iam::B:user/x`` must
        not keep ``x``; punctuation after it stays."""
        word = found.group(0)
        core = word.rstrip(_TRAILING)
        lead = core[: len(core) - len(core.lstrip(_LEADING))]
        core = core[len(lead) :]
        hit = self.pattern is not None and self.pattern.search(core) is not None
        if not hit and self.registry is not None:
            hit = any(self._address(m) != m.group(0) for m in (*_IPV4.finditer(core), *_IPV6.finditer(core)))
        return lead + ANOTHER_TENANT + word[len(lead) + len(core) :] if hit else word

    def text(self, value: str) -> str:
        if self.phrase is not None:  # "tenant B's disk" reads "another tenant's disk"
            value = self.phrase.sub(lambda m: ANOTHER_TENANT + (m.group(1) or ""), value)
        if value == ANOTHER_TENANT:
            return value
        value = _NON_SPACE.sub(self._word, value)
        if any(h in value for h in self.long):  # joined to a longer word: the whole string goes
            return ANOTHER_TENANT
        return value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


def redact(
    value: Any,
    hidden: Iterable[str],
    view: str,
    registry: TenantRegistry | None = None,
    *,
    tenants: Iterable[str] = (),
) -> Any:
    """``value`` (any JSON value) with every ``tenant <id>`` phrase of ``tenants`` (``'s`` kept)
    and then every ``hidden`` string replaced by ``another tenant``:
    a word (text between white space) holding one (as a whole word: ``-`` and ``_`` count as
    letters, an address is not a prefix of a longer one) is replaced whole, so ``iam::B:user/x``
    keeps neither ``B`` nor ``x``; a string that still holds a hidden string of 4 or more
    characters anywhere is replaced whole. With a registry, every address in the text that belongs to a tenant other
    than ``view`` or to the management network is replaced too. Dictionary keys included."""
    return _Redactor(hidden, view, registry, tenants)(value)


def _shared_summary(doc: Mapping[str, Any], entity: Mapping[str, Any], resource: str | None) -> str:
    what = str(doc.get("category") or "alert").replace("_", " ").capitalize()
    if resource is not None:
        return f"{what} involving {resource} of this tenant and {ANOTHER_TENANT}"
    if entity.get("id") == ANOTHER_TENANT:
        return f"{what} involving this tenant and {ANOTHER_TENANT}"
    return f"{what} involving {entity.get('type')} {entity.get('id')} of this tenant and {ANOTHER_TENANT}"


def _shared_copy(doc: Mapping[str, Any], view: str, registry: TenantRegistry | None) -> dict[str, Any]:
    out = {k: copy.deepcopy(doc[k]) for k in _SHARED_FIELDS if k in doc}
    ents, _others = view_entities(doc, view, registry)
    # The tenant's own subject, of a type an alert's entity can have (the copy stays an alert
    # document ``detectors.alert.decode_alert`` reads); else the alert's subject, unnamed.
    entity = doc.get("entity")
    entity = entity if isinstance(entity, Mapping) else {}
    subject = next(
        ({"type": e["type"], "id": e["id"]} for etype in _SUBJECT_TYPES for e in ents if e["type"] == etype),
        {"type": entity.get("type") or "host", "id": ANOTHER_TENANT},
    )
    evidence = doc.get("evidence")
    evidence = evidence if isinstance(evidence, Mapping) else {}
    out["entity"] = subject
    out["evidence"] = {k: evidence[k] for k in _SHARED_EVIDENCE if k in evidence}
    own_resource = next((e["id"] for e in ents if e["type"] == "resource"), None)
    if own_resource is not None:  # its own snapshot, bucket or disk that was reached
        out["evidence"]["resource"] = own_resource
    out["summary"] = _shared_summary(doc, subject, own_resource)
    return out


def alert_copies(
    doc: Mapping[str, Any],
    registry: TenantRegistry | None = None,
    industry_of: Callable[[str | None], str | None] = lambda _t: None,
) -> list[tuple[str | None, dict[str, Any]]]:
    """(tenant whose index, document) of each document of an alert (without its ECS fields);
    ``None``: the ``soc`` index. See the module docstring."""
    own = _tenant_of(doc)
    _entities, named = view_entities(doc, own, registry)
    others = [t for t in named if is_index_tenant(t) and t != own]
    if not others:
        return [(own if own != PROVIDER else None, dict(doc))]
    out: list[tuple[str | None, dict[str, Any]]] = [(None, dict(doc))]
    for view in ([own] if own != PROVIDER else []) + others:
        if view == own:
            body = {k: copy.deepcopy(v) for k, v in doc.items()}
            body[COPY_FIELD] = "tenant"
        else:
            body = _shared_copy(doc, view, registry)
            body[COPY_FIELD] = "shared"
            body[SHARED_COPY_FIELD] = True
        hidden = private_strings(doc, view, registry)
        body = redact(body, hidden, view, registry)
        body["tenant"] = view
        body["industry"] = industry_of(view)
        out.append((view, body))
    return out


_metrics_decoder = msgspec.json.Decoder(dict[str, Any])


def metrics_action(value: bytes, prefix: str) -> Action:
    doc = _metrics_decoder.decode(value)
    ts = doc.get("ts")
    if not isinstance(ts, int):
        raise ValueError("metrics record without an integer ts")
    key = f"{doc.get('tenant')}|{doc.get('kind')}|{doc.get('key')}|{doc.get('detector')}|{ts}"
    return Action(
        document_index(prefix, doc.get("tenant"), ts),
        "m-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest(),
        doc,
    )


# The id field and the time field (naming the daily index) of each awareness document family.
_AWARENESS_IDS = {
    "incidents": ("incident_id", "first_seen"),
    "threat": ("doc_id", "ts"),
    "warnings": ("warning_id", "ts"),
}


def awareness_action(
    value: bytes, family: str, prefix: str, registry: TenantRegistry | None = None
) -> Action:
    """The document the SOC reads of an incident, threat-level or warning record (the first of
    ``awareness_actions``)."""
    return awareness_actions(value, family, prefix, registry)[0]


def awareness_actions(
    value: bytes, family: str, prefix: str, registry: TenantRegistry | None = None
) -> list[Action]:
    """An incident's, threat level's or warning's documents. An incident (with its ECS fields) is
    rewritten as it grows, always in the index of the day it began; as a partial update, so the
    analyst's fields (which the job never writes) survive the job's rewrites and replays. An
    incident naming other tenants: the full document in the ``soc`` index, then its tenant's copy
    (``incident_copies``)."""
    doc = _metrics_decoder.decode(value)
    id_field, time_field = _AWARENESS_IDS[family]
    doc_id, ts = doc.get(id_field), doc.get(time_field)
    if not isinstance(doc_id, str) or not doc_id or not isinstance(ts, int):
        raise ValueError(f"{family} record without a string {id_field} and an integer {time_field}")
    if family == "incidents":
        out = []
        for tenant, body in incident_copies(doc, registry):
            index = document_index(prefix, tenant, ts)
            full = with_ecs(body, incident_ecs(body, registry))
            out.append(Action(index, doc_id, {"doc": full, "doc_as_upsert": True}, op_type="update"))
        if len(out) == 2:  # the soc document and the tenant's copy, the incident's earlier home
            out[0] = replace(out[0], adopt_from=out[1].index)
        elif doc.get("merged_into") and out[0].index != soc_index(prefix, ts):
            out.append(_retired_in_soc(out[0], soc_index(prefix, ts)))
        return out
    index = document_index(prefix, doc.get("tenant"), ts)
    if family == "threat":
        # A minute's level is sent provisional with an alert and final when the minute closes, under
        # one id; the topic has no key, so the two may come in either order: a provisional level
        # never replaces the final one.
        return [Action(index, doc_id, doc, version=1 if doc.get("provisional") else 2)]
    return [Action(index, doc_id, doc)]


def _retired_in_soc(tenant_action: Action, index: str) -> Action:
    """A merged (retired) incident id of a tenant's index, retired in the ``soc`` index too where
    a document of it is stored there (``only_if_stored``).

    Retired ids are those a story was named after in another order of its alerts (``awareness.
    incidents``): in that order the incident may have named another tenant, and its full document
    lives in the ``soc`` index. The job's Kafka sinks are at-least-once, so a killed attempt's
    document there stays after a restore, whose retirement (the alert's own id, joining an
    incident named after an earlier alert) names no other tenant and so reaches only the tenant's
    index: the SOC would see an open incident nobody closes. (A stale ``soc`` document read after
    the retirement is refused by its tenant document's newer version:
    ``streams.indexer.newest_incident_updates``.)"""
    return Action(index, tenant_action.id, {"doc": tenant_action.source["doc"]}, op_type="update",
                  only_if_stored=True)  # fmt: skip


_TOKEN_SPLIT: Final = re.compile(r"[^A-Za-z0-9_.\-]+")
_owner_index: dict[int, tuple[TenantRegistry, dict[str, str]]] = {}


def _string_owners(registry: TenantRegistry) -> dict[str, str]:
    """Each tenant's strings (``_tenant_strings``) -> the tenant, built once per registry."""
    cached = _owner_index.get(id(registry))
    if cached is not None and cached[0] is registry:
        return cached[1]
    owners: dict[str, str] = {}
    for tenant in sorted(registry.tenants):
        for text in _tenant_strings(tenant, registry):
            owners.setdefault(text, tenant)
    _owner_index.clear()  # the registry is replaced when reloaded: keep the current one's only
    _owner_index[id(registry)] = (registry, owners)
    return owners


def _named_tenants(doc: Mapping[str, Any], registry: TenantRegistry | None) -> list[str]:
    """The other tenants an incident document names: ``other_tenants``, ``tenant`` entities, and
    with a registry any tenant whose id, name, account, VM, address or disk is a word of its text
    (a principal ``iam::<tenant>:user/x`` of a tenant the stage could not place) or whose range
    holds an address in it."""
    own = doc.get("tenant")
    names = [t for t in doc.get("other_tenants") or () if isinstance(t, str)]
    entities = doc.get("entities")
    for e in entities if isinstance(entities, list) else ():
        if isinstance(e, Mapping) and e.get("type") == "tenant" and isinstance(e.get("id"), str):
            names.append(e["id"])
    if registry is not None:
        owners = _string_owners(registry)
        for text in _strings_of(doc):
            for word in {text, *_TOKEN_SPLIT.split(text)}:
                owner = owners.get(word)
                if owner is None and _IPV4.fullmatch(word):
                    owner = registry.tenant_of_ip(word)
                if owner is not None:
                    names.append(owner)
    return sorted({t for t in names if t != own and t not in (PROVIDER, UNKNOWN, OUTSIDE, ANOTHER_TENANT)})


def _strings_of(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_of(item)


def incident_copies(
    doc: Mapping[str, Any], registry: TenantRegistry | None = None
) -> list[tuple[str | None, dict[str, Any]]]:
    """(tenant whose index, document) of each document of one incident (without its ECS fields);
    ``None``: the ``soc`` index. One document in its tenant's (or the ``soc``) index, unless it
    names other tenants: then the full one in the ``soc`` index and the tenant's redacted copy
    (module docstring)."""
    own = doc.get("tenant")
    home = own if is_index_tenant(own) else None
    others = _named_tenants(doc, registry) if home is not None else []
    if home is None or not others:
        return [(home, dict(doc))]
    hidden: set[str] = set()
    for other in others:
        hidden |= _tenant_strings(other, registry)
    hidden -= _tenant_strings(home, registry)
    body = redact(doc, hidden, home, registry, tenants=others)  # a new document: ``doc`` is left as it is
    body = _once_each(body)
    if isinstance(body.get("title"), str):
        body["title"] = phrases_once(body["title"])
    body["tenant"] = home
    body[COPY_FIELD] = "tenant"
    return [(None, dict(doc)), (home, body)]


def _once_each(value: Any) -> Any:
    """``value`` with each list's redacted entries kept once: two other tenants redacted to
    ``another tenant`` twice (in ``other_tenants``, or as two ``tenant`` entities) would tell a
    tenant how many others its incident names. An entity counts by its type and id."""
    if isinstance(value, Mapping):
        return {k: _once_each(v) for k, v in value.items()}
    if not isinstance(value, list):
        return value
    out, seen = [], []
    for item in value:
        item = _once_each(item)
        if ANOTHER_TENANT in _strings_of(item):
            key = (item.get("type"), item.get("id")) if isinstance(item, Mapping) and "id" in item else item
            if key in seen:
                continue
            seen.append(key)
        out.append(item)
    return out


def dlq_action(
    prefix: str, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes
) -> Action:
    source = "unknown"
    reason = ""
    try:
        body = _metrics_decoder.decode(value)
        source = str(body.get("source", source))
        reason = str(body.get("reason", ""))[:200]
    except msgspec.DecodeError:
        reason = "undecodable DLQ record"
    minute = timestamp_ms - timestamp_ms % 60_000
    doc = {"ts": minute, "topic": topic, "kind": "dlq", "dlq": 1, "source": source, "reason": reason}
    return Action(soc_index(prefix, minute), f"dlq-{topic}-{partition}-{offset}", doc)


def lag_action(prefix: str, topic: str, lag: int, now_ms: int) -> Action:
    bucket = now_ms - now_ms % 15_000
    doc = {"ts": bucket, "topic": topic, "kind": "lag", "consumer_lag": lag}
    return Action(soc_index(prefix, bucket), f"lag-{topic}-{bucket}", doc)
