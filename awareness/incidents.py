"""Incidents: the alerts of one attack story grouped into one document, per tenant, in event time.

The Flink job keeps one ``IncidentTracker`` per tenant in keyed state and feeds it the tenant's
alert views (``tenant_views``: an alert goes to its own tenant and, with that tenant's side only,
to every other tenant it names; alerts without a tenant go to ``_provider``). Every call returns
the incident documents it created or changed; the lead indexes them as they are (``_id`` =
``incident_id``, the highest ``version`` wins).

**Grouping.** Each alert names entities (``awareness.entities``: its VM, address, principal,
resource, the addresses in its evidence; with a registry, a VM's address and an address's VM).
An alert joins an open incident holding an alert that names the same *link* entity and whose
activity span ``[first_seen, last_seen]`` is within ``gap_ms`` of the new alert's (either side:
alerts arrive out of order). The test is alert to alert, not against the incident's whole span:
incidents are then the connected groups of alerts, the same whatever order the alerts arrive in
(the job's two event-time paths interleave in no fixed order, and a restore replays them in
another). Against the whole span, an alert that arrived after a bridging alert joined, and one
that arrived before it did not. An alert that joins two or more incidents merges them: the
incident whose story began first (smallest ``first_seen``, then id) keeps its id and absorbs the
others, which are returned once as ``status: closed``, ``close_reason: merged``,
``merged_into: <id>``.

**Outside actors.** An address outside every tenant that is an alert's own subject (the scanner,
the password guesser: ``actor: true`` in ``awareness.entities``) links that alert to another
naming the same actor as its subject when their spans are within ``actor_gap_ms`` (default 5 h)
rather than ``gap_ms``: still alert to alert, so still order-independent. Why: one outside
source attacking a tenant is one adversary, and its steps are paced by the adversary, not by the
telemetry: reconnaissance precedes access attempts (ATT&CK's Reconnaissance tactic), and password
guessing is run slowly on purpose to stay under lockout and detection thresholds (T1110), so the
detectors see it only once its rate passes their bar, often more than 30 min after the scan.
SOC tools group alerts by the attacking address over hours for this reason (Microsoft
Sentinel's analytics rules group alerts into incidents by matching entities within a
configurable ``lookbackDuration`` of hours to days). 5 h is a design choice in that range, not a
fit: the simulator's ramps would need only ~50 min. The gap is capped at
``gap_ms + reopen_ms`` (a closed incident is forgotten ``reopen_ms`` after closing; a later
alert could not re-open it and grouping would depend on arrival order). Addresses inside a
tenant, hosts, principals and outside addresses named only in evidence (an upload's
destination) keep ``gap_ms``: a VM has much unrelated activity, an exfiltration server many
unrelated clients. ``actor_gap_ms: 0`` turns the rule off. The incidents and a map link-entity -> incident ids are a union-find whose
unions are these merges. An alert that joins nothing opens an incident.

**Ids.** ``incident_id`` = blake2b-128 hex of ``tenant \\0 alert_id`` of the incident's earliest alert
(by ``first_seen``, then ``alert_id``), so a replay of the same alerts rewrites the same documents
whatever order they arrive in: an alert earlier than the one an incident is named after renames it
(the old id is returned closed, ``merged_into`` the new one), and of two merged incidents the one
named after the earlier alert keeps its id. An ``alert_id``
already attached to a linked incident is ignored (a replay after a restore counts nothing twice).

**Closing.** ``expire(watermark)`` closes every incident with ``watermark - last_seen > gap_ms +
grace_ms`` (``close_reason: inactive``, ``closed_at = last_seen + gap_ms + grace_ms + 1``: the same
whatever watermark found it) and returns it once; it leaves the open incidents. ``grace_ms``
is how far behind its evidence an alert can still arrive: a detector emits an alert when the
watermark passes its window's end plus the flow allowance, so an alert whose evidence lies
within the gap of an incident arrives up to the longest detector window (10 min in the default
configuration) plus ``flow_export_delay_ms`` (6 min) after it: 16 min by default. Closing earlier
would split a story at every slow window. Some windows are longer still (``c2.beacon``: 6 h, so
its alert can come 6 h 6 min after its evidence began); rather than hold every incident open that
long, a closed incident stays re-openable for ``reopen_ms`` (6 h 6 min) after it closed, at most
``max_closed`` of them (oldest forgotten first): an alert that links to it within the gap of its
span re-opens it (same id, ``status: open``, next ``version``, ``{action: reopened, at}`` in its
audit trail). ``reopen_ms: 0`` forgets an incident when it closes. On the second simulated day
below, a Cobalt Strike beacon's 6 h window made one scenario two incidents without re-opening.

**Kill chain.** Each alert has a stage (``awareness.killchain``); ``kill_chain`` lists the stages
reached, each ``{tactic, first_seen, categories, alert_count}``, in order of ``first_seen`` (the
evidence time, not arrival: flows are exported minutes late), ``stage`` is the furthest.

**Repeats.** An alert of the same detector and entity as an entry of the incident whose window
touches or overlaps that entry's windows (consecutive windows) extends the entry (``series``:
``count``, span) and counts in ``repeats`` instead of adding an entry.

**Snoozes.** ``snooze(detector, entity_id, until_ms, reason, by)``: alerts of that detector and
entity id with ``ts < until_ms`` are still attached to an incident they link to (``alert_ids``,
``alert_count``, ``suppressed``) but change nothing else: no severity, stage, span or entry; one
that links to no open incident opens none (counted in ``stats()["suppressed_unattached"]``). The
snooze (who, why, until, event time it was set) goes into the audit trail of every open incident
holding that detector and entity, and of any incident a snoozed alert later lands in. A snooze
is forgotten once the watermark passes ``until_ms + gap_ms + grace_ms + reopen_ms``. A snoozed
alert neither merges incidents nor re-opens a closed one.

**Context detectors.** Alerts of the detectors in ``context_detectors`` are treated like snoozed
ones, without an audit record: attached to an incident they link to (counted in ``context``),
never opening one nor changing its span, stage, score or entities (unattached ones are counted
in ``stats()["context_unattached"]``). The default is ``port_scan.internet_probes``, which its own
rule documents as "posture, not an incident": internet background probes of a public VM, one
alert per VM and hour. As an ordinary alert it keeps an incident open on every exposed VM all day:
on the simulated day below, 178 incidents with it against 85 without, 89 of them low.

**Measured** (``ssa simulate --seed 7 --duration 86400 --rate 20 --start-ms 1736121600000``,
``ssa scan`` with its registry; every alert through ``tenant_views`` and its tenant's tracker in
file order, ``expire`` at each new alert ``ts``): 4,010 alerts -> 85 incidents (47x; 208 probe
alerts in none). Matching alerts to the simulator's truth by event ids: none of the 59 detected
malicious scenarios is split over two incidents; 6 of the 51 incidents holding one hold two or
more (unrelated attacks on one VM within the gap, bridged by ``anomaly.flow_features``, which
alerted on every 5-minute window of most VMs that day). With the anomaly detectors also as
context: 80 incidents, 2 of 56 mixed (3,423 alerts in none); linking on ``host`` too: 61
incidents, 7 of 45 mixed. Seed 8 (``--start-ms 1736208000000``): 3,355 alerts -> 85 incidents
(39x), none split, 6 of 48 mixed. (Both days measured before the outside-actor link and the
alert-to-alert test; not re-measured since. Campaign runs with both: ``streams.awareness_eval``.)

**Score and severity.** With ``m`` the highest alert score (0-100, the detectors' own; an
``anomaly`` alert's at most ``anomaly_score_cap``, 60) of the incident's unsnoozed alerts, ``s``
the furthest stage's index (0 reconnaissance .. 6 impact), ``k`` the number of distinct stages reached by alerts other than ``anomaly`` (at least 1) and ``f`` the
factor of the tenant's criticality (``criticality_factors``)::

    score    = min(100, round((m + stage_weight * s + chain_weight * (k - 1)) * f))
    severity = critical >= 90, high >= 70, medium >= 40, else low   (the alerts' bands)

``base_score`` and ``base_severity`` are the same with ``f = 1``: for a reader that weighs the
tenant's criticality itself (the threat level does), so it is not counted twice.

Defaults ``stage_weight`` 2, ``chain_weight`` 6, ``f`` low 0.85, medium 1.0, high 1.1, critical
1.25. Their basis is design, not a fit: a one-alert incident keeps about its alert's band (the
stage adds at most 12, so a lone 65 flood becomes 77, a lone 88 escape 92), each further stage of
a chain adds 6, so a chain of three or more stages of medium alerts reaches the next band (bands
are 20-30 wide), and the five-stage breakout of issue 21 is critical from its escape on; a
critical tenant's medium incident (>= 56 before the factor) becomes high, a low tenant's 90
becomes high (76). Anomalies do not lengthen the chain and count at most 60 (medium): they say
something is unusual, not which step happened. Without the cap, on the simulated day below 36 of
85 incidents were critical, most of them a flood joined to an anomaly scored 90 (one-sided
p-value); with it 20.

**Title.** ``<subject>: <what happened, in time order>``: the subject is the incident's
highest-ranked entity of its unsnoozed alerts (a VM before a host, principal, user, address,
resource), the earliest on ties, then the one an alert names first, with its tenant; then one
phrase per kind of entry (``port scan``, ``password guessing``, ``emulator escape and read of tenant t-b's disk``, ...) in order of first seen, the
last one after ``then``, at most ``max_title_phrases`` (then ``(and N more)``).

**Bounds** (all settings; state is pickled at every checkpoint): ``max_open`` incidents per tenant
(at the cap the least recently active is closed, ``close_reason: evicted``), and per incident
``max_alerts_per_incident`` alert ids (oldest dropped, ``alert_ids_dropped``),
``max_series`` entries, ``max_entities`` entities and other tenants, ``max_audit`` audit
records; ``max_closed`` re-openable closed incidents and ``max_snoozes`` snoozes per tenant;
``max_list_entities`` addresses read from one evidence list. Every eviction is counted (document fields ``*_dropped``, ``stats()``).

Configuration (``awareness.incidents`` in the detector configuration; every key optional):
``gap_ms``, ``grace_ms``, ``max_open``, ``max_alerts_per_incident``, ``max_series``,
``max_entities``, ``max_audit``, ``max_snoozes``, ``max_list_entities``, ``reopen_ms``,
``max_closed``, ``actor_gap_ms``, ``link_types`` (entity types that join alerts: ``vm``, ``ip``, ``host``, ``principal``, ``user``, ``resource``,
``tenant``), ``stage_weight``, ``chain_weight``, ``criticality_factors``, ``max_title_phrases``,
``context_detectors``, ``anomaly_score_cap``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from awareness.entities import DEFAULT_LINK_TYPES, ENTITY_TYPES, PROVIDER, view_entities
from awareness.entities import tenant_views as _tenant_views
from awareness.killchain import STAGES, stage_index, stage_of, tactic_of
from detectors.alert import severity_for_score
from detectors.config import ConfigError, DetectorConfig
from ingest.tenants import CRITICALITIES, DEFAULT_CRITICALITY, TenantRegistry

__all__ = [
    "ANALYST_FIELDS",
    "IncidentSettings",
    "IncidentTracker",
    "incident_id",
    "phrases_once",
    "tenant_views",
]

ANALYST_FIELDS: Final = ("workflow", "workflow_updated_at", "workflow_history", "ttc_ms")
"""The fields of an incident document that only an analyst writes (``ssa incidents ack|close``):
the job's partial updates leave them as they are, and an incident that turns cross-tenant takes
them from its tenant's document into the ``soc`` one (``streams.indexer``)."""

_DEFAULT_FACTORS: Final[Mapping[str, float]] = {"low": 0.85, "medium": 1.0, "high": 1.1, "critical": 1.25}
_SUBJECT_RANK: Final[Mapping[str, int]] = {
    "vm": 0,
    "host": 1,
    "principal": 2,
    "user": 3,
    "ip": 4,
    "resource": 5,
    "tenant": 6,
}
_PHRASES: Final[Mapping[str, str]] = {
    "port_scan": "port scan",
    "brute_force": "password guessing",
    "vm_escape": "emulator escape",
    "cross_tenant_leak": "cross-tenant access",
    "exfiltration": "upload out of the cloud",
    "cryptomining": "cryptomining",
    "dos": "denial of service",
    "command_and_control": "beaconing to a control server",
    "spam": "spam",
    "anomaly": "unusual activity",
}


@dataclass(frozen=True)
class IncidentSettings:
    """Settings of the incident stage (``awareness.incidents``); see the module docstring."""

    gap_ms: int = 30 * 60_000
    grace_ms: int = 16 * 60_000
    max_open: int = 512
    max_alerts_per_incident: int = 500
    max_series: int = 200
    max_entities: int = 64
    max_audit: int = 50
    max_snoozes: int = 256
    max_list_entities: int = 8
    link_types: tuple[str, ...] = DEFAULT_LINK_TYPES
    stage_weight: float = 2.0
    chain_weight: float = 6.0
    criticality_factors: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_FACTORS))
    max_title_phrases: int = 5
    context_detectors: tuple[str, ...] = ("port_scan.internet_probes",)
    anomaly_score_cap: int = 60
    reopen_ms: int = 6 * 3_600_000 + 6 * 60_000
    max_closed: int = 256
    actor_gap_ms: int = 5 * 3_600_000

    def __post_init__(self) -> None:
        where = "awareness.incidents"
        for name in (
            "max_open",
            "max_alerts_per_incident",
            "max_series",
            "max_entities",
            "max_audit",
            "max_snoozes",
            "max_list_entities",
            "max_title_phrases",
            "max_closed",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("gap_ms", "grace_ms", "anomaly_score_cap", "reopen_ms", "actor_gap_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must not be negative, got {getattr(self, name)}")
        for name in ("stage_weight", "chain_weight"):
            if not 0 <= getattr(self, name) <= 100:
                raise ConfigError(f"{where}.{name}: must be within 0..100, got {getattr(self, name)}")
        bad = [t for t in self.link_types if t not in ENTITY_TYPES]
        if bad:
            raise ConfigError(
                f"{where}.link_types: unknown entity types {bad}; known: {', '.join(ENTITY_TYPES)}"
            )
        factors = dict(self.criticality_factors)
        unknown = sorted(set(factors) - set(CRITICALITIES))
        if unknown:
            raise ConfigError(
                f"{where}.criticality_factors: unknown levels {unknown}; levels: {', '.join(CRITICALITIES)}"
            )
        for level, value in factors.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 10:
                raise ConfigError(
                    f"{where}.criticality_factors.{level}: expected a number in (0, 10], got {value!r}"
                )
        object.__setattr__(
            self, "criticality_factors", {**_DEFAULT_FACTORS, **{k: float(v) for k, v in factors.items()}}
        )
        object.__setattr__(self, "link_types", tuple(self.link_types))
        object.__setattr__(self, "context_detectors", tuple(self.context_detectors))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "awareness.incidents") -> IncidentSettings:
        """Settings from the ``awareness.incidents`` mapping; unknown keys and wrong types refused."""
        defaults = cls()
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in cls.__dataclass_fields__:
                known = ", ".join(sorted(cls.__dataclass_fields__))
                raise ConfigError(f"{where}.{key}: unknown setting (known: {known})")
            default = getattr(defaults, key)
            if isinstance(default, bool) or isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected {type(default).__name__}, got {value!r}")
            if isinstance(default, int):
                if not isinstance(value, int):
                    raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
            elif isinstance(default, float):
                if not isinstance(value, int | float):
                    raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
                value = float(value)
            elif isinstance(default, tuple):
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where}.{key}: expected a list of names, got {value!r}")
                value = tuple(value)
            elif isinstance(default, Mapping) and not isinstance(value, Mapping):
                raise ConfigError(f"{where}.{key}: expected a mapping, got {value!r}")
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_config(cls, config: DetectorConfig) -> IncidentSettings:
        try:
            return cls.from_mapping(config.awareness_section("incidents"))
        except ConfigError as exc:
            raise ConfigError(f"{config.source}: {exc}") from None


def incident_id(tenant: str, alert_id: str) -> str:
    """blake2b-128 hex of the tenant and the id of the alert that opened the incident."""
    return hashlib.blake2b(f"{tenant}\x00{alert_id}".encode(), digest_size=16).hexdigest()


def tenant_views(
    alert: Mapping[str, Any],
    registry: TenantRegistry | None = None,
    settings: IncidentSettings | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The (tenant, alert view) pairs an alert belongs to (``awareness.entities.tenant_views``),
    reading evidence with the settings' ``link_types`` and ``max_list_entities``. Pass the tenant
    registry when there is one: it places addresses and VMs on their tenant's side and links a VM
    with its address."""
    s = settings or IncidentSettings()
    return _tenant_views(alert, registry, link_types=s.link_types, max_list=s.max_list_entities)


_ACTOR: Final = "actor:"


def _actor_key(address: str) -> str:
    """The link key of an outside actor's address (its own key: it joins over ``actor_gap_ms``)."""
    return _ACTOR + address


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _phrase(view: Mapping[str, Any], tenant: str) -> str:
    """What one alert says happened, in words, for the title (from ``tenant``'s side)."""
    category = str(view.get("category") or "")
    ev = view.get("evidence")
    ev = ev if isinstance(ev, Mapping) else {}
    others = [t for t in view.get("other_tenants") or () if t != tenant]
    src, dst = ev.get("src_tenant"), ev.get("dst_tenant")
    channel = str(ev.get("channel") or "resource")
    if view.get("view") == "foreign" and view.get("subject_tenant") != PROVIDER:
        actor = str(view.get("subject_tenant") or "another tenant")
        if category == "vm_escape":
            return f"emulator escape by a VM of tenant {actor} reaching its VM"
        if category == "cross_tenant_leak":
            if channel == "flow":
                return f"traffic from tenant {actor}" if dst == tenant else f"traffic to tenant {actor}"
            if view.get("detector") == "cross_tenant.resource_shared_out":
                return f"{channel} shared to it by tenant {actor}"
            return f"access to its {channel} by tenant {actor}"
        return f"{_PHRASES.get(category, category.replace('_', ' '))} from tenant {actor}"
    if category == "vm_escape":
        signal = str(ev.get("signal") or "")
        if signal in ("foreign_vm_disk", "svirt_cross_vm"):
            whose = f"tenant {others[0]}'s" if others else "another VM's"
            return f"emulator escape and read of {whose} disk"
        if signal.startswith("management_plane"):
            return "reach into the management network"
        return "emulator escape"
    if category == "cross_tenant_leak":
        peer = dst if src == tenant or dst != tenant else src
        peer = peer if isinstance(peer, str) and peer else (others[0] if others else "another tenant")
        if channel == "flow":
            return f"traffic to tenant {peer}" if src == tenant else f"traffic from tenant {peer}"
        if view.get("detector") == "cross_tenant.resource_shared_out":
            return (
                f"{channel} shared to the public" if dst == "public" else f"{channel} shared to tenant {peer}"
            )
        if dst == tenant:
            return f"access to its {channel} by tenant {src}"
        return f"read of tenant {peer}'s {channel}"
    if category == "brute_force" and ev.get("success_after_failures") is True:
        return "password guessing with a successful login"
    return _PHRASES.get(category, category.replace("_", " ") or "alert")


def _subject_text(etype: str, eid: str, tenant: str) -> str:
    of = "" if tenant == PROVIDER else f" of tenant {tenant}"
    if etype == "vm":
        return f"VM {eid}{of}"
    if etype == "host":
        return f"Host {eid}"
    if etype == "principal":
        return f"Principal {eid}{of}"
    if etype == "user":
        return f"User {eid}{' in tenant ' + tenant if tenant != PROVIDER else ''}"
    if etype == "ip":
        return f"Address {eid}{' seen by tenant ' + tenant if tenant != PROVIDER else ''}"
    if etype == "resource":
        return f"Resource {eid}{of}"
    return f"Tenant {tenant}, from tenant {eid}"


def _join(phrases: list[str], cap: int) -> str:
    more = len(phrases) - cap
    shown = phrases[:cap]
    text = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + ", then " + shown[-1]
    return text + (f" (and {more} more)" if more > 0 else "")


_MORE: Final = re.compile(r" \(and \d+ more\)$")


def phrases_once(title: str) -> str:
    """``title`` (``_join``'s shape after ``<subject>: ``) with a repeated phrase kept once, in
    first-seen order: in a tenant's redacted copy two other tenants' phrases read alike ("traffic
    to another tenant"), and the copy must not tell how many there were."""
    subject, sep, rest = title.partition(": ")
    if not sep:
        return title
    more = _MORE.search(rest)
    tail = more.group(0) if more else ""
    rest = rest[: more.start()] if more else rest
    head, then, last = rest.rpartition(", then ")
    phrases = [*head.split(", "), last] if then else [rest]
    unique = list(dict.fromkeys(phrases))
    if len(unique) == len(phrases):
        return title
    return f"{subject}: {_join(unique, len(unique))}{tail}"


class _Incident:
    """One open incident's state (plain data: pickled with the tracker)."""

    __slots__ = (
        "alert_count",
        "alert_ids",
        "alert_ids_dropped",
        "audit",
        "audit_dropped",
        "categories",
        "chain_stages",
        "context",
        "detected_at",
        "entities",
        "entities_dropped",
        "first_seen",
        "id",
        "last_seen",
        "links",
        "max_score",
        "other_tenants",
        "repeats",
        "root",
        "series",
        "series_dropped",
        "stages",
        "subject",
        "suppressed",
        "tactics",
        "updated",
        "version",
    )

    def __init__(self, iid: str, first_seen: int, last_seen: int, root: tuple[int, str] = (0, "")) -> None:
        self.id = iid
        # (first_seen, alert_id) of the alert the id is made from: the earliest of the incident's.
        self.root = root
        self.first_seen = first_seen
        self.last_seen = last_seen
        self.updated = last_seen
        self.detected_at = 0  # the earliest ts (detection time) of the incident's own alerts
        self.version = 0
        self.alert_ids: dict[str, None] = {}
        self.alert_count = 0
        self.alert_ids_dropped = 0
        self.entities: dict[str, dict[str, str]] = {}
        self.links: dict[str, None] = {}
        self.entities_dropped = 0
        self.other_tenants: dict[str, None] = {}
        self.series: dict[str, dict[str, Any]] = {}
        self.series_dropped = 0
        self.repeats = 0
        self.suppressed = 0
        self.context = 0
        self.stages: dict[str, dict[str, Any]] = {}
        self.chain_stages: dict[str, None] = {}  # stages reached by alerts other than anomaly
        self.tactics: dict[str, int] = {}
        self.categories: dict[str, int] = {}
        self.max_score = 0
        self.subject: tuple[int, int, int, str, str] | None = None
        self.audit: list[dict[str, Any]] = []
        self.audit_dropped = 0

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class IncidentTracker:
    """The incidents of one tenant (see the module docstring). Picklable, bounded, event-time."""

    def __init__(
        self, tenant: str, settings: IncidentSettings, criticality: str = DEFAULT_CRITICALITY
    ) -> None:
        if criticality not in CRITICALITIES:
            raise ValueError(f"criticality must be one of {', '.join(CRITICALITIES)}, got {criticality!r}")
        self.tenant = tenant
        self.settings = settings
        self.criticality = criticality
        self._open: dict[str, _Incident] = {}
        # link key -> incident id -> the activity spans of that incident's alerts naming the key,
        # sorted, spans closer than gap_ms coalesced (that keeps "within the gap of one of them").
        self._index: dict[str, dict[str, list[list[int]]]] = {}
        self._snoozes: dict[tuple[str, str], dict[str, Any]] = {}
        self._closed: dict[
            str, tuple[_Incident, int]
        ] = {}  # closed, still re-openable: (incident, closed at)
        self._now = 0
        self._stats: dict[str, int] = {
            "alerts": 0,
            "duplicates": 0,
            "opened": 0,
            "merged": 0,
            "closed_inactive": 0,
            "reopened": 0,
            "forgotten_closed": 0,
            "superseded": 0,
            "evicted_incidents": 0,
            "evicted_snoozes": 0,
            "suppressed_unattached": 0,
            "context_unattached": 0,
        }

    # --- public --------------------------------------------------------------------------------
    def observe(self, alert: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One alert view of this tenant; the incident documents it created or changed (merged
        incidents first, as closed, then the incident the alert is in). A view of another tenant
        is a ValueError."""
        view_tenant = alert.get("tenant") or PROVIDER
        if view_tenant != self.tenant:
            raise ValueError(
                f"alert {alert.get('alert_id')!r} is tenant {view_tenant!r}'s, not {self.tenant!r}'s"
            )
        s = self.settings
        alert_id = str(alert.get("alert_id") or "")
        ts = _int(alert.get("ts"), 0)
        first = _int(alert.get("first_seen"), ts)
        last = max(_int(alert.get("last_seen"), ts), first)
        self._now = max(self._now, ts)
        self._stats["alerts"] += 1
        if "incident_entities" in alert:
            entities = list(alert["incident_entities"])
            others = list(alert.get("other_tenants") or ())
        else:
            entities, others = view_entities(
                alert, self.tenant, None, link_types=s.link_types, max_list=s.max_list_entities
            )
        keys = [f"{e['type']}:{e['id']}" for e in entities if e.get("link")]
        keys += [_actor_key(str(e["id"])) for e in entities if e.get("link") and e.get("actor")]
        candidates: dict[str, _Incident] = {}
        for key in keys:
            gap = self._gap(key)
            for iid, spans in self._index.get(key, {}).items():
                if iid not in candidates and any(first <= b + gap and last >= a - gap for a, b in spans):
                    found = self._open.get(iid)
                    candidates[iid] = found if found is not None else self._closed[iid][0]
        if any(alert_id in inc.alert_ids for inc in candidates.values()):
            self._stats["duplicates"] += 1
            return []
        entity = alert.get("entity") if isinstance(alert.get("entity"), Mapping) else {}
        detector = str(alert.get("detector") or "")
        snooze = self._snooze_for(detector, str(entity.get("id") or ""), ts)  # type: ignore[union-attr]
        context = snooze is None and detector in s.context_detectors
        out: list[dict[str, Any]] = []
        if snooze is not None or context:  # a quiet alert re-opens nothing
            candidates = {iid: inc for iid, inc in candidates.items() if iid in self._open}
        else:
            for iid in [iid for iid in candidates if iid in self._closed]:
                out.extend(self._reopen(iid, ts))
        if not candidates:
            if snooze is not None or context:
                self._stats["suppressed_unattached" if snooze is not None else "context_unattached"] += 1
                return []
            if len(self._open) >= s.max_open:
                out.append(self._evict_one())
            inc = _Incident(incident_id(self.tenant, alert_id), first, last, (first, alert_id))
            self._open[inc.id] = inc
            self._stats["opened"] += 1
        else:
            ordered = sorted(candidates.values(), key=lambda i: i.root)
            inc = ordered[0]
            if snooze is None and not context:
                for loser in ordered[1:]:
                    out.append(self._merge(inc, loser, ts))
                if (first, alert_id) < inc.root:
                    # The story began earlier than the alert it is named after: name it after this
                    # one. Alerts of the two event-time paths arrive interleaved in no fixed order,
                    # and an incident named after its earliest alert gets the same id either way.
                    renamed = _Incident(incident_id(self.tenant, alert_id), first, last, (first, alert_id))
                    self._open[renamed.id] = renamed
                    out.append(self._merge(renamed, inc, ts))
                    inc = renamed
        self._attach(inc, alert, first, last, ts, entities, others, snooze, context)
        own_id = incident_id(self.tenant, alert_id)
        if snooze is None and not context and inc.id != own_id:
            out.append(self._superseded(own_id, alert_id, inc, first, last, ts))
        out.append(self._document(inc, "open"))
        return out

    def _superseded(
        self, own_id: str, alert_id: str, inc: _Incident, first: int, last: int, ts: int
    ) -> dict[str, Any]:
        """The document that closes the incident ``alert_id`` would be named after, as merged into
        the incident it joined. In this order of arrival it was never opened; in another it was
        (this alert came before the earlier ones it links to). The job's Kafka sinks are
        at-least-once, so the documents a killed attempt wrote after its last checkpoint stay in
        Elasticsearch, and the restored attempt, fed the same alerts in another order, would
        otherwise never write that id again: an open incident nobody closes. (Version 0: the job
        puts each attempt's versions above the previous attempt's, ``streams.awareness_fn``.)"""
        self._stats["superseded"] += 1
        return {
            "incident_id": own_id,
            "tenant": self.tenant,
            "status": "closed",
            "close_reason": "merged",
            "merged_into": inc.id,
            "closed_at": ts,
            "title": f"merged into incident {inc.id}",
            "first_seen": first,
            "last_seen": last,
            "updated": ts,
            "alert_ids": [alert_id],
            "alert_count": 1,
            "version": 0,
        }

    def expire(self, watermark_ms: int) -> list[dict[str, Any]]:
        """Close the incidents idle for more than ``gap_ms + grace_ms`` at this watermark; each is
        returned once, as closed (``close_reason: inactive``), and leaves the state."""
        s = self.settings
        self._now = max(self._now, watermark_ms)
        limit = s.gap_ms + s.grace_ms
        done = sorted(
            (inc for inc in self._open.values() if watermark_ms - inc.last_seen > limit),
            key=lambda i: (i.last_seen, i.id),
        )
        out = []
        for inc in done:
            # Closed as of the event time it had been idle long enough, not the watermark that
            # found it so: how far the watermark had run when this stage looked differs between a
            # run that keeps up and one reading a backlog or restored, and closed_at gives the
            # report's time to close and the forgetting ``reopen_ms`` later.
            at = inc.last_seen + limit + 1
            self._close(inc, at)
            inc.version += 1
            inc.updated = max(inc.updated, at)
            self._stats["closed_inactive"] += 1
            out.append(self._document(inc, "closed", reason="inactive", closed_at=at))
        for iid in [iid for iid, (_inc, at) in self._closed.items() if watermark_ms - at >= s.reopen_ms]:
            self._forget(iid)
        for key in [k for k, sn in self._snoozes.items() if watermark_ms > sn["until"] + limit + s.reopen_ms]:
            del self._snoozes[key]
        return out

    def open_incidents(self) -> list[dict[str, Any]]:
        """The open incidents' documents (current version, not bumped), oldest first."""
        return [
            self._document(inc, "open")
            for inc in sorted(self._open.values(), key=lambda i: (i.first_seen, i.id))
        ]

    def snooze(
        self, detector: str, entity_id: str, until_ms: int, reason: str, by: str
    ) -> list[dict[str, Any]]:
        """An analyst's snooze of one detector on one entity until ``until_ms`` (event time). The
        open incidents holding that detector and entity get the snooze in their audit trail and
        are returned (new version)."""
        if not detector or not entity_id:
            raise ValueError("a snooze needs a detector and an entity id")
        s = self.settings
        key = (detector, entity_id)
        self._snoozes.pop(key, None)
        if len(self._snoozes) >= s.max_snoozes:
            oldest = next(iter(self._snoozes))
            del self._snoozes[oldest]
            self._stats["evicted_snoozes"] += 1
        record = {
            "action": "snooze",
            "detector": detector,
            "entity_id": entity_id,
            "until": int(until_ms),
            "reason": str(reason),
            "by": str(by),
            "at": self._now,
        }
        self._snoozes[key] = record
        out = []
        for inc in sorted(self._open.values(), key=lambda i: (i.first_seen, i.id)):
            if any(e["detector"] == detector and e["entity"]["id"] == entity_id for e in inc.series.values()):
                self._audit(inc, record)
                inc.version += 1
                inc.updated = max(inc.updated, self._now)
                out.append(self._document(inc, "open"))
        return out

    def stats(self) -> dict[str, int]:
        """Counters since the tracker was made (pickled with it), and the current sizes."""
        return {
            **self._stats,
            "open": len(self._open),
            "closed_kept": len(self._closed),
            "snoozes": len(self._snoozes),
            "index_keys": len(self._index),
        }

    # --- internals -----------------------------------------------------------------------------
    def _snooze_for(self, detector: str, entity_id: str, ts: int) -> dict[str, Any] | None:
        sn = self._snoozes.get((detector, entity_id))
        return sn if sn is not None and ts < sn["until"] else None

    def _audit(self, inc: _Incident, record: Mapping[str, Any]) -> None:
        if any(a == record for a in inc.audit):
            return
        inc.audit.append(dict(record))
        if len(inc.audit) > self.settings.max_audit:
            del inc.audit[0]
            inc.audit_dropped += 1

    def _gap(self, key: str) -> int:
        """How far apart two alerts naming ``key`` may be and still join: for an outside actor's
        key ``actor_gap_ms``, within ``gap_ms .. gap_ms + reopen_ms`` (a closed incident is
        forgotten ``reopen_ms`` after it closes; a later actor alert could not re-open it, and
        grouping would depend on arrival order), else ``gap_ms``."""
        s = self.settings
        if not key.startswith(_ACTOR):
            return s.gap_ms
        return max(s.gap_ms, min(s.actor_gap_ms, s.gap_ms + s.reopen_ms))

    def _index_add(self, key: str, iid: str, spans: Iterable[list[int]]) -> None:
        """Add alert spans under ``key`` for ``iid``, coalescing those within the key's gap."""
        merged: list[list[int]] = []
        gap = self._gap(key)
        for a, b in sorted([*self._index.setdefault(key, {}).get(iid, []), *spans]):
            if merged and a <= merged[-1][1] + gap:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._index[key][iid] = merged

    def _index_remove(self, key: str, iid: str) -> None:
        ids = self._index.get(key)
        if ids is not None and iid in ids:
            del ids[iid]
            if not ids:
                del self._index[key]

    def _add_entity(
        self, inc: _Incident, key: str, etype: str, eid: str, link: bool, spans: Iterable[list[int]]
    ) -> None:
        """``spans``: the activity spans of the incident's alerts that name a link entity."""
        if key not in inc.entities:
            inc.entities[key] = {"type": etype, "id": eid}
            if len(inc.entities) > self.settings.max_entities:
                old = next(iter(inc.entities))
                del inc.entities[old]
                inc.entities_dropped += 1
                for gone in (old, _actor_key(old[3:]) if old.startswith("ip:") else None):
                    if gone is not None and gone in inc.links:
                        del inc.links[gone]
                        self._index_remove(gone, inc.id)
                if old == key:
                    return
        if link:
            self._add_link(inc, key, spans)

    def _add_link(self, inc: _Incident, key: str, spans: Iterable[list[int]]) -> None:
        inc.links[key] = None
        self._index_add(key, inc.id, spans)

    def _attach(
        self,
        inc: _Incident,
        alert: Mapping[str, Any],
        first: int,
        last: int,
        ts: int,
        entities: Iterable[Mapping[str, Any]],
        others: Iterable[str],
        snooze: Mapping[str, Any] | None,
        context: bool,
    ) -> None:
        s = self.settings
        alert_id = str(alert.get("alert_id") or "")
        inc.alert_ids[alert_id] = None
        if len(inc.alert_ids) > s.max_alerts_per_incident:
            del inc.alert_ids[next(iter(inc.alert_ids))]
            inc.alert_ids_dropped += 1
        inc.alert_count += 1
        inc.version += 1
        inc.updated = max(inc.updated, ts)
        if snooze is not None:
            inc.suppressed += 1
            self._audit(inc, snooze)
            return
        if context:
            inc.context += 1
            return
        inc.detected_at = min(inc.detected_at, ts) if inc.detected_at else ts
        for e in entities:
            etype, eid = str(e.get("type")), str(e.get("id"))
            self._add_entity(inc, f"{etype}:{eid}", etype, eid, bool(e.get("link")), [[first, last]])
            if e.get("link") and e.get("actor") and f"{etype}:{eid}" in inc.entities:
                self._add_link(inc, _actor_key(eid), [[first, last]])
        for name in others:
            if name not in inc.other_tenants and name != self.tenant:
                inc.other_tenants[name] = None
                if len(inc.other_tenants) > s.max_entities:
                    del inc.other_tenants[next(iter(inc.other_tenants))]
                    inc.entities_dropped += 1
        inc.first_seen = min(inc.first_seen, first)
        inc.last_seen = max(inc.last_seen, last)
        score = _int(alert.get("score"), 0)
        category = str(alert.get("category") or "")
        if category == "anomaly":
            score = min(score, s.anomaly_score_cap)
        inc.max_score = max(inc.max_score, min(100, max(0, score)))
        stage = stage_of(alert)
        st = inc.stages.setdefault(stage, {"first_seen": first, "categories": {}, "alert_count": 0})
        st["first_seen"] = min(st["first_seen"], first)
        st["categories"][category] = None
        st["alert_count"] += 1
        if category != "anomaly":
            inc.chain_stages[stage] = None
        tactic = tactic_of(alert)
        if tactic:
            inc.tactics[tactic] = min(inc.tactics.get(tactic, first), first)
        inc.categories[category] = min(inc.categories.get(category, first), first)
        for i, e in enumerate(entities):  # the alert's own entity first
            candidate = (
                _SUBJECT_RANK.get(str(e.get("type")), 9),
                first,
                i,
                str(e.get("type")),
                str(e.get("id")),
            )
            if inc.subject is None or candidate < inc.subject:
                inc.subject = candidate
        entity = alert.get("entity") if isinstance(alert.get("entity"), Mapping) else {}
        etype, eid = str(entity.get("type") or ""), str(entity.get("id") or "")  # type: ignore[union-attr]
        self._add_series(inc, alert, stage, category, etype, eid, first, last)

    def _add_series(
        self, inc: _Incident, alert: Mapping[str, Any], stage: str, category: str, etype: str, eid: str,
        first: int, last: int,
    ) -> None:  # fmt: skip
        ev = alert.get("evidence") if isinstance(alert.get("evidence"), Mapping) else {}
        ws = _int(ev.get("window_start"), first)  # type: ignore[union-attr]
        we = max(_int(ev.get("window_end"), _int(alert.get("ts"), last)), ws)  # type: ignore[union-attr]
        detector = str(alert.get("detector") or "")
        base = f"{detector}\x00{etype}\x00{eid}"
        for entry in inc.series.values():
            if entry["_base"] == base and ws <= entry["window_end"] and we >= entry["window_start"]:
                entry["count"] += 1
                entry["window_start"] = min(entry["window_start"], ws)
                entry["window_end"] = max(entry["window_end"], we)
                entry["first_seen"] = min(entry["first_seen"], first)
                entry["last_seen"] = max(entry["last_seen"], last)
                inc.repeats += 1
                return
        key = f"{base}\x00{ws}"
        inc.series[key] = {
            "_base": base,
            "detector": detector,
            "category": category,
            "stage": stage,
            "entity": {"type": etype, "id": eid},
            "phrase": _phrase(alert, self.tenant),
            "first_seen": first,
            "last_seen": last,
            "window_start": ws,
            "window_end": we,
            "count": 1,
        }
        if len(inc.series) > self.settings.max_series:
            del inc.series[next(iter(inc.series))]
            inc.series_dropped += 1

    def _merge(self, into: _Incident, other: _Incident, ts: int) -> dict[str, Any]:
        """Fold ``other`` into ``into``; ``other``'s closing document."""
        s = self.settings
        spans = {key: self._index.get(key, {}).get(other.id, []) for key in other.links}
        self._drop(other)
        for aid in other.alert_ids:
            into.alert_ids[aid] = None
        while len(into.alert_ids) > s.max_alerts_per_incident:
            del into.alert_ids[next(iter(into.alert_ids))]
            into.alert_ids_dropped += 1
        into.alert_ids_dropped += other.alert_ids_dropped
        into.alert_count += other.alert_count
        for key, e in other.entities.items():
            self._add_entity(into, key, e["type"], e["id"], key in other.links, spans.get(key, []))
        for key in other.links:
            if key.startswith(_ACTOR) and f"ip:{key[len(_ACTOR) :]}" in into.entities:
                self._add_link(into, key, spans.get(key, []))
        into.entities_dropped += other.entities_dropped
        for name in other.other_tenants:
            into.other_tenants.setdefault(name, None)
        while len(into.other_tenants) > s.max_entities:
            del into.other_tenants[next(iter(into.other_tenants))]
            into.entities_dropped += 1
        for key, entry in other.series.items():
            if key in into.series:
                mine = into.series[key]
                mine["count"] += entry["count"]
                for f, pick in (
                    ("first_seen", min),
                    ("last_seen", max),
                    ("window_start", min),
                    ("window_end", max),
                ):
                    mine[f] = pick(mine[f], entry[f])
            else:
                into.series[key] = dict(entry)
        while len(into.series) > s.max_series:
            del into.series[next(iter(into.series))]
            into.series_dropped += 1
        into.series_dropped += other.series_dropped
        into.repeats += other.repeats
        into.suppressed += other.suppressed
        into.context += other.context
        for stage, st in other.stages.items():
            mine_st = into.stages.setdefault(
                stage, {"first_seen": st["first_seen"], "categories": {}, "alert_count": 0}
            )
            mine_st["first_seen"] = min(mine_st["first_seen"], st["first_seen"])
            mine_st["categories"].update(st["categories"])
            mine_st["alert_count"] += st["alert_count"]
        for stage in other.chain_stages:
            into.chain_stages[stage] = None
        for tactic, t in other.tactics.items():
            into.tactics[tactic] = min(into.tactics.get(tactic, t), t)
        for cat, t in other.categories.items():
            into.categories[cat] = min(into.categories.get(cat, t), t)
        into.max_score = max(into.max_score, other.max_score)
        if other.subject is not None and (into.subject is None or other.subject < into.subject):
            into.subject = other.subject
        into.first_seen = min(into.first_seen, other.first_seen)
        into.last_seen = max(into.last_seen, other.last_seen)
        if other.detected_at:
            into.detected_at = (
                min(into.detected_at, other.detected_at) if into.detected_at else other.detected_at
            )
        for record in other.audit:
            self._audit(into, record)
        into.audit_dropped += other.audit_dropped
        self._audit(into, {"action": "merged", "incident_id": other.id, "at": max(ts, other.updated)})
        into.updated = max(into.updated, other.updated, ts)
        other.version += 1
        other.updated = into.updated
        self._stats["merged"] += 1
        return self._document(other, "closed", reason="merged", merged_into=into.id, closed_at=into.updated)

    def _drop(self, inc: _Incident) -> None:
        del self._open[inc.id]
        for key in inc.links:
            self._index_remove(key, inc.id)

    def _close(self, inc: _Incident, at: int) -> None:
        """Out of the open incidents, into the re-openable closed ones (links stay indexed)."""
        del self._open[inc.id]
        self._closed[inc.id] = (inc, at)
        if self.settings.reopen_ms == 0:
            self._forget(inc.id)
        elif len(self._closed) > self.settings.max_closed:
            self._forget(next(iter(self._closed)))

    def _forget(self, iid: str) -> None:
        inc, _at = self._closed.pop(iid)
        for key in inc.links:
            self._index_remove(key, iid)
        self._stats["forgotten_closed"] += 1

    def _reopen(self, iid: str, ts: int) -> list[dict[str, Any]]:
        """A closed incident back among the open ones (an alert arrived for it within the gap);
        the document of an incident evicted to make room, if any."""
        inc, _at = self._closed.pop(iid)
        out = [self._evict_one()] if len(self._open) >= self.settings.max_open else []
        self._open[iid] = inc
        self._audit(inc, {"action": "reopened", "at": ts})
        self._stats["reopened"] += 1
        return out

    def _evict_one(self) -> dict[str, Any]:
        victim = min(self._open.values(), key=lambda i: (i.last_seen, i.id))
        self._close(victim, self._now)
        victim.version += 1
        victim.updated = max(victim.updated, self._now)
        self._stats["evicted_incidents"] += 1
        return self._document(victim, "closed", reason="evicted", closed_at=self._now)

    def _score(self, inc: _Incident, *, weighted: bool = True) -> int:
        s = self.settings
        reached = [stage_index(st) for st in inc.stages]
        furthest = max(reached) if reached else 0
        chain = max(1, len(inc.chain_stages))
        raw = inc.max_score + s.stage_weight * furthest + s.chain_weight * (chain - 1)
        factor = s.criticality_factors.get(self.criticality, 1.0) if weighted else 1.0
        return int(min(100, max(0, round(raw * factor))))

    def _title(self, inc: _Incident) -> str:
        if inc.subject is not None:
            etype, eid = inc.subject[3], inc.subject[4]
            subject = _subject_text(etype, eid, self.tenant)
        else:
            subject = f"Tenant {self.tenant}"
        phrases: list[str] = []
        for entry in sorted(
            inc.series.values(), key=lambda e: (e["first_seen"], e["window_start"], e["_base"])
        ):
            if entry["phrase"] not in phrases:
                phrases.append(entry["phrase"])
        return f"{subject}: {_join(phrases, self.settings.max_title_phrases)}" if phrases else subject

    def _document(
        self,
        inc: _Incident,
        status: str,
        *,
        reason: str | None = None,
        merged_into: str | None = None,
        closed_at: int | None = None,
    ) -> dict[str, Any]:
        score = self._score(inc)
        base = self._score(inc, weighted=False)
        chain = sorted(inc.stages.items(), key=lambda kv: (kv[1]["first_seen"], stage_index(kv[0])))
        furthest = max(inc.stages, key=stage_index) if inc.stages else STAGES[0]
        return {
            "incident_id": inc.id,
            "tenant": self.tenant,
            "status": status,
            "close_reason": reason,
            "merged_into": merged_into,
            "closed_at": closed_at,
            "title": self._title(inc),
            "severity": severity_for_score(score),
            "score": score,
            "criticality": self.criticality,
            "base_score": base,
            "base_severity": severity_for_score(base),
            "stage": furthest,
            "kill_chain": [
                {
                    "tactic": stage,
                    "first_seen": st["first_seen"],
                    "categories": sorted(st["categories"]),
                    "alert_count": st["alert_count"],
                }
                for stage, st in chain
            ],
            "tactics": [t for t, _ in sorted(inc.tactics.items(), key=lambda kv: (kv[1], kv[0]))],
            "categories": [c for c, _ in sorted(inc.categories.items(), key=lambda kv: (kv[1], kv[0]))],
            "first_seen": inc.first_seen,
            "detected_at": inc.detected_at or None,
            # The report's times, stored (aggregations run no scripts): to detect, and to the job's
            # close after inactivity (an analyst's close writes its own ``ttc_ms``).
            "ttd_ms": max(0, inc.detected_at - inc.first_seen) if inc.detected_at else None,
            "inactive_ttc_ms": (
                max(0, closed_at - inc.first_seen) if reason == "inactive" and closed_at is not None else None
            ),
            "last_seen": inc.last_seen,
            "updated": inc.updated,
            "alert_ids": list(inc.alert_ids),
            "alert_count": inc.alert_count,
            "alert_ids_dropped": inc.alert_ids_dropped,
            "entities": [dict(e) for e in inc.entities.values()],
            "entities_dropped": inc.entities_dropped,
            "other_tenants": sorted(inc.other_tenants),
            "repeats": inc.repeats,
            "series": [
                {k: (dict(v) if k == "entity" else v) for k, v in e.items() if k != "_base"}
                for e in sorted(
                    inc.series.values(), key=lambda e: (e["first_seen"], e["window_start"], e["_base"])
                )
            ],
            "series_dropped": inc.series_dropped,
            "suppressed": inc.suppressed,
            "context": inc.context,
            "audit": [dict(a) for a in inc.audit],
            "audit_dropped": inc.audit_dropped,
            "version": inc.version,
        }
