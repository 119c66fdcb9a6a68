"""Threat levels: a threat index 0-100 per tenant and for the whole cloud, every minute.

What it does
------------
``tenant_threat`` turns a tenant's open incidents and its posture signals of one minute into a
*threat document*: an index 0-100, the warning level it maps to, and the reasons (the top
contributors, in words). ``cloud_threat`` folds the tenant documents of the same minute into one
document for the whole cloud (tenant ``"_cloud"``). Pure functions of their arguments: no clock,
no state, so a replay of the same incidents and metrics gives byte-identical documents.

Levels (国家网络安全事件应急预案, National Cybersecurity Incident Emergency Response Plan,
Office of the Central Cyberspace Affairs Commission, January 2017, 中网办发文〔2017〕4号, part 3
"监测与预警", 预警分级): "网络安全事件预警等级分为四级：由高到低依次用红色、橙色、黄色和蓝色表示，
分别对应发生或可能发生特别重大、重大、较大和一般网络安全事件" (warning levels, highest first: red,
orange, yellow, blue, for an actual or possible extraordinarily serious (I), major (II), relatively
major (III) and general (IV) incident). The plan grades incidents of national scale; here the same
four colours grade one tenant (or the cloud) of one provider, so the mapping is an analogue, not a
legal classification:

=======  ======  =====================  =============================================================
level    rank    plan's grade           index (default thresholds, ``level_thresholds``)
=======  ======  =====================  =============================================================
blue     0       IV  一般 general        0 <= index < 25: nothing above the background (a quiet tenant)
yellow   1       III 较大 relatively major 25 <= index < 50: an attack under way at an early stage
orange   2       II  重大 major          50 <= index < 75: a serious incident (escape, exfiltration)
red      3       I   特别重大 extraordinarily serious  index >= 75: a critical incident in a late stage
=======  ======  =====================  =============================================================

Blue is the floor here (every tenant has a level); the plan issues a blue *warning* only for a
possible general incident, which our dashboards show as "no warning above blue".

Formula (every weight is a setting under ``awareness.threat``)
--------------------------------------------------------------
For each **open** incident ``i`` (status ``open``; closed ones are ignored)::

    base_i  = severity_points[severity_i] + stage_points[stage_i]
    decay_i = 0.5 ** (max(0, minute_ms - last_seen_i) / half_life_ms)
    p_i     = min(100, base_i * decay_i * criticality_factors[criticality])

The incident part combines them as independent threats (a probabilistic OR, so the worst one
dominates and each further incident adds less, never past 100)::

    I = 100 * (1 - prod_i(1 - p_i / 100))

Each posture signal ``s`` (per-minute value ``x_s``, see ``posture_signals``) gives points linear
between its ``floor`` (the value that is normal for any tenant: 0 points) and its ``ref`` (the
value at which the signal alone is worth ``weight`` points), never negative; the posture part is
their sum, capped::

    q_s = weight_s * max(0, x_s - floor_s) / (ref_s - floor_s)
    P   = min(posture_cap, sum_s q_s)

The index is the probabilistic OR of the two parts, raised to the level floor of any open
incident whose categories hold a floor category (``category_floors``: an open ``vm_escape``
incident holds the tenant at orange at once, whatever its decay, so "orange within 2 minutes of
an escape" holds in the minute its incident opens), clamped to 0-100 and rounded to 0.1::

    index = max(100 * (1 - (1 - I/100) * (1 - P/100)), level_thresholds[floor_level])

Posture alone is capped below red (``posture_cap`` 60): red needs a confirmed incident; metrics
alone can say "orange" (two strong signals at once) but not "extraordinarily serious".

``cloud_threat``: ``m`` = the highest tenant index, ``b`` = the share of tenants at yellow or
above::

    cloud = m + (100 - m) * breadth_weight * b

so one red tenant makes the cloud red (the max), and many tenants raised at once raise the
cloud above its worst tenant (the breadth term: all tenants at yellow 25 give 62.5, orange), while
a plain mean would hide one red tenant among fifty quiet ones.

Parameters and their basis (defaults)
-------------------------------------
- ``half_life_ms`` (1,800,000 = 30 min): equal to the incident inactivity gap (``incidents.gap_ms``
  default): an incident silent for a whole gap counts half, and is closed (dropped) soon after.
- ``severity_points`` (low 10, medium 25, high 45, critical 70): one fresh incident of medium
  criticality lands in the level its severity names: a low one stays blue, medium reaches yellow
  (25), high reaches yellow near orange, critical reaches orange (70) and red once at a
  late stage (+ >= 5).
- ``stage_points`` (reconnaissance 0, credential_access 5, command_and_control 10,
  lateral_movement 15, collection 15, privilege_escalation 20, exfiltration 20, impact 25): the
  further the kill chain went, the nearer the damage; a VM escape (privilege_escalation) is the
  cloud's worst breach, like exfiltration.
- ``criticality_factors`` (low 0.8, medium 1.0, high 1.15, critical 1.3): a tenant's registry
  criticality (``ingest.tenants``) scales its incident points; unknown names count as medium.
- ``category_floors`` (vm_escape: orange): the issue's rule "orange within 2 minutes of an escape".
- ``level_thresholds`` (yellow 25, orange 50, red 75): four equal bands of the index.
- ``posture`` per signal ``{floor, ref, weight}``: ``alerts`` (alerts per minute: floor 0, ref 20,
  weight 20), ``failed_logins`` (floor 0, ref 10 per minute = the brute-force rule's 10 failures
  per source in 10 minutes, ten times over, weight 25), ``probes`` (distinct destination ports of
  the tenant's flows per minute: floor 50, ref 500, weight 20; a web tier touches tens of ports, a
  scan hundreds to thousands), ``cross_tenant_flows`` (floor 0, ref 10 per minute, weight 25: any
  is unusual between tenants that share nothing), ``anomaly_p99`` (the 99th percentile of
  1 - p-value of the tenant's scored windows: floor 0.99, which is what uniform p-values give when
  nothing is anomalous, ref and ``ceiling`` 1.0, weight 20: a score alone never reaches yellow).
  Signals not named here give no points (they are still forecast by ``awareness.forecast``).
  ``ceiling`` (optional) is the largest value a signal can take; a level past it is unreachable.
- ``posture_cap`` (60) and ``breadth_weight`` (0.5): see above. ``max_reasons`` (3): reasons kept.

``signal_threshold(signal, level, settings)`` inverts a posture line: the signal value that alone
lifts a quiet tenant's index to ``level`` (``None`` when the posture cap forbids it); the early
warning (``awareness.warnings``) projects signals against it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from detectors.config import ConfigError, DetectorConfig

__all__ = [
    "CLOUD",
    "LEVELS",
    "STAGES",
    "PostureLine",
    "ThreatSettings",
    "cloud_threat",
    "level_for_index",
    "posture_signals",
    "signal_threshold",
    "signal_threshold_now",
    "tenant_threat",
    "threat_doc_id",
]

LEVELS: Final = ("blue", "yellow", "orange", "red")
CLOUD: Final = "_cloud"
STAGES: Final = (
    "reconnaissance",
    "credential_access",
    "privilege_escalation",
    "lateral_movement",
    "collection",
    "exfiltration",
    "impact",
    "command_and_control",
)
_SEVERITIES: Final = ("low", "medium", "high", "critical")
_CRITICALITIES: Final = ("low", "medium", "high", "critical")
_PLAN_GRADE: Final = {"blue": "IV", "yellow": "III", "orange": "II", "red": "I"}


@dataclass(frozen=True)
class PostureLine:
    """One posture signal's points: ``weight * max(0, x - floor) / (ref - floor)``."""

    floor: float
    ref: float
    weight: float
    ceiling: float | None = None  # the largest value the signal can take (a score's 1.0), if any

    def points(self, value: float) -> float:
        return self.weight * max(0.0, value - self.floor) / (self.ref - self.floor)


def _default_posture() -> dict[str, PostureLine]:
    return {
        "alerts": PostureLine(0.0, 20.0, 20.0),
        "failed_logins": PostureLine(0.0, 10.0, 25.0),
        "probes": PostureLine(50.0, 500.0, 20.0),
        "cross_tenant_flows": PostureLine(0.0, 10.0, 25.0),
        "anomaly_p99": PostureLine(0.99, 1.0, 20.0, 1.0),
    }


@dataclass(frozen=True)
class ThreatSettings:
    """Parameters of the threat index (``awareness.threat``; the module docstring gives each basis)."""

    half_life_ms: int = 30 * 60_000
    severity_points: Mapping[str, float] = field(
        default_factory=lambda: {"low": 10.0, "medium": 25.0, "high": 45.0, "critical": 70.0}
    )
    stage_points: Mapping[str, float] = field(
        default_factory=lambda: {
            "reconnaissance": 0.0,
            "credential_access": 5.0,
            "command_and_control": 10.0,
            "lateral_movement": 15.0,
            "collection": 15.0,
            "privilege_escalation": 20.0,
            "exfiltration": 20.0,
            "impact": 25.0,
        }
    )
    criticality_factors: Mapping[str, float] = field(
        default_factory=lambda: {"low": 0.8, "medium": 1.0, "high": 1.15, "critical": 1.3}
    )
    category_floors: Mapping[str, str] = field(default_factory=lambda: {"vm_escape": "orange"})
    level_thresholds: Mapping[str, float] = field(
        default_factory=lambda: {"yellow": 25.0, "orange": 50.0, "red": 75.0}
    )
    posture: Mapping[str, PostureLine] = field(default_factory=_default_posture)
    posture_cap: float = 60.0
    breadth_weight: float = 0.5
    max_reasons: int = 3

    def __post_init__(self) -> None:
        where = "awareness.threat"
        if self.half_life_ms <= 0:
            raise ConfigError(f"{where}.half_life_ms: must be > 0, got {self.half_life_ms}")
        _need_keys(self.severity_points, _SEVERITIES, f"{where}.severity_points")
        _need_keys(self.stage_points, STAGES, f"{where}.stage_points")
        _need_keys(self.criticality_factors, _CRITICALITIES, f"{where}.criticality_factors")
        _need_keys(self.level_thresholds, LEVELS[1:], f"{where}.level_thresholds")
        for name, mapping in (
            ("severity_points", self.severity_points),
            ("stage_points", self.stage_points),
            ("criticality_factors", self.criticality_factors),
        ):
            for k, v in mapping.items():
                if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                    raise ConfigError(f"{where}.{name}.{k}: expected a number >= 0, got {v!r}")
        t = [self.level_thresholds[lv] for lv in LEVELS[1:]]
        if not (0 < t[0] < t[1] < t[2] <= 100):
            raise ConfigError(f"{where}.level_thresholds: need 0 < yellow < orange < red <= 100, got {t}")
        for cat, lv in self.category_floors.items():
            if lv not in LEVELS:
                raise ConfigError(f"{where}.category_floors.{cat}: {lv!r} is not one of {list(LEVELS)}")
        for sig, line in self.posture.items():
            if not line.ref > line.floor or line.weight < 0:
                raise ConfigError(f"{where}.posture.{sig}: need ref > floor and weight >= 0, got {line}")
        if not 0 <= self.posture_cap <= 100:
            raise ConfigError(f"{where}.posture_cap: must be within 0-100, got {self.posture_cap}")
        if not 0 <= self.breadth_weight <= 1:
            raise ConfigError(f"{where}.breadth_weight: must be within 0-1, got {self.breadth_weight}")
        if self.max_reasons < 1:
            raise ConfigError(f"{where}.max_reasons: must be >= 1, got {self.max_reasons}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "awareness.threat") -> ThreatSettings:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        defaults = cls()
        kw: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ("half_life_ms", "max_reasons"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
                kw[key] = value
            elif key in ("posture_cap", "breadth_weight"):
                kw[key] = _number(value, f"{where}.{key}")
            elif key == "posture":
                kw[key] = _posture(value, defaults.posture, f"{where}.posture")
            elif key == "category_floors":
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{where}.{key}: expected a mapping")
                kw[key] = {str(k): str(v) for k, v in value.items()}
            else:  # the number mappings: merged over the defaults, unknown names refused
                base: Mapping[str, float] = getattr(defaults, key)
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{where}.{key}: expected a mapping")
                extra = set(value) - set(base)
                if extra:
                    raise ConfigError(f"{where}.{key}: unknown names {sorted(extra)} (known: {sorted(base)})")
                kw[key] = {**base, **{k: _number(v, f"{where}.{key}.{k}") for k, v in value.items()}}
        return cls(**kw)

    @classmethod
    def from_config(cls, config: DetectorConfig) -> ThreatSettings:
        return cls.from_mapping(config.awareness_section("threat"), f"{config.source}: awareness.threat")

    def threshold(self, level: str) -> float:
        """The lowest index of ``level`` (0 for blue)."""
        return 0.0 if level == "blue" else float(self.level_thresholds[level])


def _need_keys(mapping: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ConfigError(f"{where}: missing {missing}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _posture(value: Any, base: Mapping[str, PostureLine], where: str) -> dict[str, PostureLine]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of signal -> {{floor, ref, weight}}")
    out = dict(base)
    for sig, spec in value.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}.{sig}: expected a mapping with floor, ref, weight")
        extra = set(spec) - {"floor", "ref", "weight", "ceiling"}
        if extra:
            raise ConfigError(
                f"{where}.{sig}: unknown keys {sorted(extra)} (known: floor, ref, weight, ceiling)"
            )
        old = base.get(str(sig))
        if old is None and not {"floor", "ref", "weight"} <= set(spec):
            raise ConfigError(f"{where}.{sig}: a new signal needs floor, ref and weight")
        vals = {k: _number(v, f"{where}.{sig}.{k}") for k, v in spec.items() if v is not None}
        ceiling = vals.get("ceiling") if "ceiling" in spec else (old.ceiling if old else None)
        out[str(sig)] = PostureLine(
            vals.get("floor", old.floor if old else 0.0),
            vals.get("ref", old.ref if old else 1.0),
            vals.get("weight", old.weight if old else 0.0),
            ceiling,
        )
    return out


# --- levels ------------------------------------------------------------------------------------
def level_for_index(index: float, settings: ThreatSettings) -> str:
    level = "blue"
    for lv in LEVELS[1:]:
        if index >= settings.level_thresholds[lv]:
            level = lv
    return level


def signal_threshold(signal: str, level: str, settings: ThreatSettings) -> float | None:
    """The value of ``signal`` whose posture points alone bring a quiet tenant to ``level``;
    ``None`` when the signal gives no points or the posture cap keeps it below the level."""
    line = settings.posture.get(signal)
    target = settings.threshold(level)
    if line is None or line.weight <= 0 or target > settings.posture_cap:
        return None
    value = line.floor + target / line.weight * (line.ref - line.floor)
    return None if line.ceiling is not None and value > line.ceiling else value


def signal_threshold_now(
    signal: str, level: str, settings: ThreatSettings, incident_part: float, other_points: float
) -> float | None:
    """The value of ``signal`` that, with the tenant's other contributions as they stand (the open
    incidents' part of the index and the other signals' posture points), brings the tenant to
    ``level``; ``None`` when the signal gives no points or the posture cap keeps it below."""
    line = settings.posture.get(signal)
    target = settings.threshold(level)
    if line is None or line.weight <= 0 or incident_part >= 100:
        return None
    # 1 - (1 - I)(1 - P) >= T  <=>  P >= 1 - (1 - T) / (1 - I), on the 0-100 scale
    need = 100 * (1 - (1 - target / 100) / (1 - incident_part / 100))
    if need > settings.posture_cap:
        return None
    points = max(0.0, need - other_points)
    value = line.floor + points / line.weight * (line.ref - line.floor)
    return None if line.ceiling is not None and value > line.ceiling else value


def threat_doc_id(tenant: str, minute_ms: int) -> str:
    key = f"threat\x00{tenant}\x00{minute_ms}"
    return "t-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


# --- posture -----------------------------------------------------------------------------------
def posture_signals(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The per-minute posture signals of one tenant from its ``ssa-metrics`` records of that minute
    (``streams.posture``: kinds flow/process/audit/auth/alert/anomaly; several partition keys may
    each write one record per kind, so counts add up):

    - ``alerts``: the ``alerts`` of the ``alert`` records;
    - ``probes``: ``distinct_dst_ports`` of the ``flow`` records (summed over keys: an upper bound);
    - ``auth_events``, ``flow_events``, ``bytes``, ``distinct_peers``: volumes for the forecasts;
    - ``failed_logins``: the ``failures`` of the ``auth`` records (or a field of that name);
    - ``cross_tenant_flows``: from a field of that name when a record carries it (``streams.posture``
      does not write it today: absent, the signal is absent, not 0);
    - ``anomaly_p99``: the highest ``anomaly_p99`` of the ``anomaly`` records.
    """
    out: dict[str, float] = {}

    def add(name: str, value: Any) -> None:
        out[name] = out.get(name, 0.0) + float(value)

    for rec in records:
        kind = rec.get("kind")
        if kind == "alert":
            add("alerts", rec.get("alerts", 0))
        elif kind == "anomaly":
            p99 = rec.get("anomaly_p99")
            if p99 is not None:
                out["anomaly_p99"] = max(out.get("anomaly_p99", 0.0), float(p99))
        elif kind in ("flow", "process", "audit", "auth"):
            add(f"{kind}_events", rec.get("events", 0))
            if kind == "flow":
                add("probes", rec.get("distinct_dst_ports", 0))
                add("bytes", rec.get("bytes", 0))
                add("distinct_peers", rec.get("distinct_peers", 0))
            if kind == "auth" and "failures" in rec:  # failed logins (streams.posture)
                add("failed_logins", rec["failures"])
        for name in ("failed_logins", "cross_tenant_flows"):
            if name in rec:
                add(name, rec[name])
    return out


# --- tenant and cloud --------------------------------------------------------------------------
def _ago(ms: int) -> str:
    minutes = ms // 60_000
    if minutes < 1:
        return "this minute"
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes / 60:.1f} h ago"


def _fmt(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 1 and x != 0 else f"{x:g}" if x == int(x) else f"{x:.1f}"


def tenant_threat(
    tenant: str,
    minute_ms: int,
    incidents: Iterable[Mapping[str, Any]],
    posture: Mapping[str, float],
    criticality: str | None,
    settings: ThreatSettings,
) -> dict[str, Any]:
    """The threat document of ``tenant`` for the minute starting at ``minute_ms`` (formula: module
    docstring). ``incidents``: the tenant's incident documents (only ``open`` ones count);
    ``posture``: signal -> per-minute value (``posture_signals``); ``criticality``: the tenant's
    registry criticality (``None`` or unknown: medium)."""
    crit = (
        criticality if criticality is not None and criticality in settings.criticality_factors else "medium"
    )
    factor = float(settings.criticality_factors[crit])
    scored: list[tuple[float, str, Mapping[str, Any], int]] = []
    floor_level, floor_why = "blue", ""
    for inc in incidents:
        if inc.get("status", "open") != "open":
            continue
        sev = str(inc.get("severity", "low"))
        stage = str(inc.get("stage", "reconnaissance"))
        last = int(inc.get("last_seen", minute_ms))
        age = max(0, minute_ms - last)
        base = settings.severity_points.get(sev, 0.0) + settings.stage_points.get(stage, 0.0)
        pts = min(100.0, base * 0.5 ** (age / settings.half_life_ms) * factor)
        iid = str(inc.get("incident_id", "?"))
        scored.append((pts, iid, inc, age))
        for cat in inc.get("categories") or ():
            lv = settings.category_floors.get(str(cat))
            if lv is not None and LEVELS.index(lv) > LEVELS.index(floor_level):
                floor_level = lv
                floor_why = f"open {cat} incident {iid} holds the level at {lv} or above"
    scored.sort(key=lambda s: (-s[0], s[1]))
    rest = 1.0
    for pts, *_ in scored:
        rest *= 1 - pts / 100
    inc_part = 100 * (1 - rest)
    signal_pts: dict[str, float] = {}
    for sig in sorted(posture):
        line = settings.posture.get(sig)
        if line is not None:
            signal_pts[sig] = line.points(float(posture[sig]))
    post_part = min(settings.posture_cap, sum(signal_pts.values()))
    raw = 100 * (1 - (1 - inc_part / 100) * (1 - post_part / 100))
    index = round(min(100.0, max(raw, settings.threshold(floor_level), 0.0)), 1)
    level = level_for_index(index, settings)

    # reasons: the largest contributors, in words
    cands: list[tuple[float, str]] = []
    for pts, iid, inc, age in scored:
        if pts <= 0:
            continue
        cats = ", ".join(str(c) for c in inc.get("categories") or ()) or "no category"
        cands.append(
            (
                pts,
                f"open {inc.get('severity', 'low')} incident {iid} at stage {inc.get('stage', '?')} "
                f"({cats}), last seen {_ago(age)}: {pts:.1f} points",
            )
        )
    for sig, pts in signal_pts.items():
        if pts <= 0:
            continue
        line = settings.posture[sig]
        cands.append(
            (
                min(pts, settings.posture_cap),
                f"{sig.replace('_', ' ')} {_fmt(float(posture[sig]))} this minute "
                f"(normal up to {_fmt(line.floor)}, {_fmt(line.ref)} is worth {_fmt(line.weight)}): "
                f"{pts:.1f} points",
            )
        )
    cands.sort(key=lambda c: (-c[0], c[1]))
    reasons = [text for _, text in cands[: settings.max_reasons]]
    if floor_why and raw < settings.threshold(floor_level):
        reasons.insert(0, floor_why)
    if crit != "medium" and scored:
        reasons.append(f"tenant criticality {crit} scales incident points by {factor:g}")
    if not reasons:
        reasons = ["no open incident and no posture signal above normal"]
    return {
        "kind": "threat",
        "doc_id": threat_doc_id(tenant, minute_ms),
        "tenant": tenant,
        "ts": minute_ms,
        "index": index,
        "level": level,
        "level_rank": LEVELS.index(level),
        "plan_grade": _PLAN_GRADE[level],
        "reasons": reasons,
        "contributors": {
            "incidents": round(inc_part, 1),
            "posture": round(post_part, 1),
            "floor": floor_level if floor_why else None,
            "criticality": crit,
            "open_incidents": len(scored),
            "top_incidents": [
                {"incident_id": iid, "points": round(pts, 1)}
                for pts, iid, _, _ in scored[: settings.max_reasons]
            ],
            "signals": {sig: round(pts, 1) for sig, pts in signal_pts.items()},
        },
    }


def cloud_threat(
    minute_ms: int, tenant_docs: Iterable[Mapping[str, Any]], settings: ThreatSettings
) -> dict[str, Any]:
    """The cloud's threat document of the minute from its tenants' documents (module docstring)."""
    docs = sorted(
        (d for d in tenant_docs if d.get("tenant") != CLOUD),
        key=lambda d: (-float(d["index"]), str(d["tenant"])),
    )
    n = len(docs)
    if n == 0:
        top, share, raised = 0.0, 0.0, []
    else:
        top = float(docs[0]["index"])
        raised = [d for d in docs if float(d["index"]) >= settings.threshold("yellow")]
        share = len(raised) / n
    index = round(min(100.0, top + (100 - top) * settings.breadth_weight * share), 1)
    level = level_for_index(index, settings)
    reasons: list[str] = []
    for d in docs[: settings.max_reasons]:
        if float(d["index"]) <= 0:
            break
        why = (d.get("reasons") or [""])[0]
        reasons.append(
            f"tenant {d['tenant']} at {d['level']} (index {float(d['index']):.1f}): {why}".rstrip(": ")
        )
    if raised:
        reasons.append(f"{len(raised)} of {n} tenants at yellow or above")
    if not reasons:
        reasons = [f"all {n} tenants quiet" if n else "no tenant reported this minute"]
    by_level = {lv: 0 for lv in LEVELS}
    for d in docs:
        by_level[str(d["level"])] = by_level.get(str(d["level"]), 0) + 1
    return {
        "kind": "threat",
        "doc_id": threat_doc_id(CLOUD, minute_ms),
        "tenant": CLOUD,
        "ts": minute_ms,
        "index": index,
        "level": level,
        "level_rank": LEVELS.index(level),
        "plan_grade": _PLAN_GRADE[level],
        "reasons": reasons,
        "contributors": {
            "max_tenant": docs[0]["tenant"] if n else None,
            "max_index": top,
            "tenants": n,
            "raised_share": round(share, 4),
            "tenants_by_level": by_level,
        },
    }
