"""Incident statistics export (``ssa report``): incidents and alerts of a period, with the trend.

Everything is read with Elasticsearch aggregations: no alert and no incident is loaded one by one.
``composite`` aggregations are paged with ``after_key`` and each page is folded into the tables by
pure functions (:func:`fold_buckets`, :func:`fold_incident_buckets`,
:func:`fold_incident_category_buckets`, :func:`fold_trend_buckets`, :func:`threat_tables`), which
the unit tests drive with hand-made buckets. The previous period of equal length
(``[start - (end - start), start)``) is folded the same way for the trend columns.

**Alerts** (``ssa-alerts-*``): the alerts with ``start <= ts < end``. Time to detect of an alert is
``ttd_ms`` (``ts - first_seen``, written by the indexer); mean and p90 from ``avg``/``percentiles``.

**Incidents** (``ssa-incidents-*``, one document per incident and tenant, ``_id`` = incident id):

- *Which count*: the incidents whose story began in the period (``start <= first_seen < end``),
  so each incident is counted in exactly one period however long it lasts. Merged incidents
  (``merged_into`` set, or ``close_reason: merged``) are not counted: their alerts are counted in
  the incident that absorbed them. An attack seen by two tenants is one incident document per
  tenant (each with its own side), and counts once for each.
- *By category*: an incident counts once under each category of its alerts (so the rows add up
  to more than the incidents); by severity (``critical, high, medium, low``, in that order), by
  stage reached (kill-chain order, :data:`awareness.killchain.STAGES`), by threat level (below)
  and by the tenant industry of the registry (``unknown`` without one).
- *Threat level of an incident* (:func:`incident_level`): the level this incident alone puts its
  tenant at when it is fresh, by the threat index of :mod:`awareness.threat` with the same
  settings (``awareness.threat``)::

      points = min(100, (severity_points[severity] + stage_points[stage]) * criticality_factors[c])
      index  = max(points, level_thresholds[floor])   # floor: category_floors of its categories
      level  = level_for_index(index)

  Chosen over "the highest level its tenant reached during the incident" (``ssa-threat-*``)
  because a tenant's level mixes all its open incidents and its posture: with two incidents at
  once, the quiet one would be charged with the other's red. It uses the incident's final
  severity and stage, its criticality (as the job saw the registry) and its categories.
  The incident's own ``score`` (the alerts' 0-100 bands) is not on the threat index's scale and
  is not used.
- *Time to detect* (:func:`incident_ttd_ms`): ``detected_at - first_seen``, ``detected_at`` being
  the time (``ts``) of the incident's first alert. Incidents without ``detected_at`` are left out
  of the mean and p90; how many were known is in the summary (``incident_ttd_known``).
- *Time to close* (:func:`incident_ttc_ms`): an analyst's close (``workflow: closed``, at
  ``workflow_updated_at``) when there is one, else the job's inactivity close (``close_reason:
  inactive``, at ``closed_at``), minus ``first_seen``. The job closes an incident once the
  watermark is ``gap_ms + grace_ms`` (46 min by default) past its last alert's evidence and stamps
  ``closed_at`` with that instant (however late the watermark got there), so an incident nobody
  closed by hand takes at least that long. An analyst's time is the wall clock,
  the job's event time. Incidents closed by neither (still open, or evicted at the state cap) are
  left out of the mean and p90 (``incident_ttc_known``).
- Per-row means are sums over counts from the composite buckets; the p90s are overall only
  (a percentile cannot be added up across buckets). Both times are stored on each incident
  document (``ttd_ms`` and ``inactive_ttc_ms`` by the indexer, ``ttc_ms`` by the analyst's close:
  the same definitions as :func:`incident_ttd_ms` and :func:`incident_ttc_ms`); the time-to-close
  p90 merges two 1-minute histograms, so it is exact to the minute below.

**Trend over time**: alerts (``ts``) and incidents (``first_seen``) per hour for periods up to
3 days, per day up to 400 days, else per week (:func:`trend_interval`), by severity, from
``composite`` aggregations with a ``date_histogram`` source (tables ``alerts_over_time`` and
``incidents_over_time``, rows ``<bucket start ISO>|<severity>``, only non-empty cells).

**Threat level over the period** (``ssa-threat-*``): for the whole cloud (tenant ``_cloud``), or
the tenant's own when the report is scoped to one: the job writes one document per minute, so the
time at each level is the number of minute documents at that level; minutes without a document
are ``no data`` (table ``threat_time``). The highest level of each trend bucket is table
``threat_over_time``.

Every row keeps the set of tenants it describes, so :mod:`analyst.anonymize` can suppress rows
describing fewer than k tenants (the cloud's level describes the tenants of the report).
csv and json keep these machine names and milliseconds; md, html and pdf put words and minutes or
hours on them (:mod:`analyst.render`).

**Where it reads** (``infra.tenant_indices.read_index``): the whole cloud's report reads each
family's SOC alias (every tenant's indices and the SOC's; an alert that involves several tenants
is counted once, by its full document); a report scoped to a tenant reads only that tenant's own
indices (``tenant_index_pattern``: what its Elasticsearch role grants), and still filters on
``tenant`` and checks every row.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from elasticsearch import Elasticsearch

from analyst.scope import ScopedStore, TenantScopeError
from awareness.killchain import STAGES
from awareness.threat import CLOUD, LEVELS, ThreatSettings, level_for_index
from infra.settings import Settings
from infra.tenant_indices import read_index


class IndustryLookup(Protocol):
    """Anything that names a tenant's industry (the tenant registry does)."""

    def industry_of(self, tenant: str | None) -> str | None: ...


__all__ = [
    "COMPOSITE_SOURCES",
    "LEVEL_ORDER",
    "SEVERITY_ORDER",
    "IncidentTotals",
    "Report",
    "Row",
    "Table",
    "Totals",
    "bucket_key",
    "bucket_ms",
    "build_report",
    "fold_buckets",
    "fold_incident_buckets",
    "fold_incident_category_buckets",
    "fold_trend_buckets",
    "incident_level",
    "incident_points",
    "incident_summary",
    "incident_tables",
    "incident_ttc_ms",
    "incident_ttd_ms",
    "iter_composite",
    "overview_tables",
    "run_overview",
    "threat_tables",
    "trend_interval",
]

COMPOSITE_SOURCES: Final[tuple[tuple[str, str], ...]] = (
    ("tenant", "tenant"),
    ("industry", "industry"),
    ("category", "category"),
    ("severity", "severity"),
    ("status", "status"),
    ("technique_id", "attack.technique_id"),
    ("technique", "attack.technique"),
)
INCIDENT_SOURCES: Final[tuple[tuple[str, str], ...]] = (
    ("tenant", "tenant"),
    ("severity", "severity"),
    ("stage", "stage"),
    ("criticality", "criticality"),
    ("workflow", "workflow"),
    ("status", "status"),
    ("close_reason", "close_reason"),
)
INCIDENT_CATEGORY_SOURCES: Final[tuple[tuple[str, str], ...]] = (
    ("tenant", "tenant"),
    ("category", "categories"),
)
PAGE_SIZE: Final = 500
UNKNOWN: Final = "unknown"
NO_DATA: Final = "no data"
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
SEVERITY_ORDER: Final[tuple[str, ...]] = ("critical", "high", "medium", "low")
LEVEL_ORDER: Final[tuple[str, ...]] = tuple(reversed(LEVELS))  # red first, as the plan lists them

# The two times are stored on each incident document (no scripts: the embedded node, like many
# hardened clusters, runs none): ``ttd_ms`` and ``inactive_ttc_ms`` by the indexer
# (``streams.documents.awareness_action``), ``ttc_ms`` by the analyst's close
# (``analyst.incidents``). The time to close is the analyst's where there is one, else the job's.
_ANALYST_CLOSED: Final = {"exists": {"field": "ttc_ms"}}
_TIME_AGGS: Final = {
    "ttd_sum": {"sum": {"field": "ttd_ms"}},
    "ttd_n": {"value_count": {"field": "ttd_ms"}},
    "ttc_analyst": {
        "filter": _ANALYST_CLOSED,
        "aggs": {"sum": {"sum": {"field": "ttc_ms"}}, "n": {"value_count": {"field": "ttc_ms"}}},
    },
    "ttc_inactive": {
        "filter": {"bool": {"must_not": [_ANALYST_CLOSED]}},
        "aggs": {
            "sum": {"sum": {"field": "inactive_ttc_ms"}},
            "n": {"value_count": {"field": "inactive_ttc_ms"}},
        },
    },
}
# Percentiles of the time to close come from two 1-minute histograms (analyst-closed, and the
# rest by the job's close), merged: one percentile cannot be computed over two fields.
_TTC_HISTOGRAMS: Final = {
    "ttc_analyst_h": {
        "filter": _ANALYST_CLOSED,
        "aggs": {"h": {"histogram": {"field": "ttc_ms", "interval": MINUTE_MS, "min_doc_count": 1}}},
    },
    "ttc_inactive_h": {
        "filter": {"bool": {"must_not": [_ANALYST_CLOSED]}},
        "aggs": {"h": {"histogram": {"field": "inactive_ttc_ms", "interval": MINUTE_MS, "min_doc_count": 1}}},
    },
}


@dataclass
class Row:
    key: str
    values: dict[str, float | int | None]
    tenants: frozenset[str] = frozenset()
    suppressed: bool = False
    # words (a warning's signal and reason); never shown for a suppressed row
    text: dict[str, str] = field(default_factory=dict)


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    tenant_keys: bool = False  # row keys are tenant ids (pseudonymised by analyst.anonymize)

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"{self.name} has no row {key!r}")


@dataclass
class Totals:
    """What one period's composite pages of alerts fold into."""

    count: int = 0
    ttd_sum: float = 0.0
    tenants: set[str] = field(default_factory=set)
    cells: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: str, key: str, count: int, tenant: str, ttd_sum: float, status: str) -> None:
        cell = self.cells.setdefault(table, {}).setdefault(
            key, {"count": 0, "ttd_sum": 0.0, "tenants": set(), "open": 0, "acknowledged": 0, "closed": 0}
        )
        cell["count"] += count
        cell["ttd_sum"] += ttd_sum
        cell["tenants"].add(tenant)
        if status in ("open", "acknowledged", "closed"):
            cell[status] += count


@dataclass
class Cell:
    """One incident table cell: count, tenants, summed times (ms) and how many had each time."""

    count: int = 0
    tenants: set[str] = field(default_factory=set)
    ttd_sum: float = 0.0
    ttd_n: int = 0
    ttc_sum: float = 0.0
    ttc_n: int = 0
    open: int = 0
    closed: int = 0


@dataclass
class IncidentTotals:
    """What one period's incident composite pages fold into."""

    count: int = 0
    alert_count: int = 0
    tenants: set[str] = field(default_factory=set)
    ttd_sum: float = 0.0
    ttd_n: int = 0
    ttc_sum: float = 0.0
    ttc_n: int = 0
    open: int = 0
    closed: int = 0
    closed_by: dict[str, int] = field(default_factory=dict)  # analyst, inactive, evicted
    workflow: dict[str, int] = field(default_factory=dict)  # new, acknowledged, closed
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)

    def cell(self, table: str, key: str) -> Cell:
        return self.cells.setdefault(table, {}).setdefault(key, Cell())


@dataclass
class Report:
    start_ms: int
    end_ms: int
    tenant: str | None
    generated_ms: int
    summary: dict[str, float | int | None]
    tables: list[Table]
    tenants: frozenset[str]
    method: str = ""  # the anonymisation method (analyst.anonymize.METHOD), when anonymised
    anonymized: bool = False
    interval_ms: int = HOUR_MS  # the trend tables' bucket
    basis: dict[str, Any] = field(default_factory=dict)  # parameters the method section names
    anonymization: dict[str, int] = field(default_factory=dict)  # what anonymisation removed

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

    def has_table(self, name: str) -> bool:
        return any(t.name == name for t in self.tables)


# --- alerts ------------------------------------------------------------------------------------
def fold_buckets(buckets: Iterable[Mapping[str, Any]], registry: IndustryLookup | None = None) -> Totals:
    """Fold alert composite buckets (``key`` per source, ``doc_count``, ``ttd_sum.value``)."""
    totals = Totals()
    for bucket in buckets:
        key = bucket["key"]
        count = int(bucket["doc_count"])
        ttd_sum = float((bucket.get("ttd_sum") or {}).get("value") or 0.0)
        tenant = key.get("tenant") or UNKNOWN
        industry = (registry.industry_of(tenant) if registry else None) or key.get("industry") or UNKNOWN
        status = key.get("status") or "open"
        technique = key.get("technique_id") or UNKNOWN
        if key.get("technique"):
            technique = f"{technique} {key['technique']}"
        totals.count += count
        totals.ttd_sum += ttd_sum
        totals.tenants.add(tenant)
        for table, cell_key in (
            ("category", key.get("category") or UNKNOWN),
            ("severity", key.get("severity") or UNKNOWN),
            ("tenant", tenant),
            ("industry", industry),
            ("technique", technique),
            ("status", status),
        ):
            totals.add(table, cell_key, count, tenant, ttd_sum, status)
    return totals


def _change(now: int, before: int) -> float | None:
    return None if before == 0 else round(100.0 * (now - before) / before, 1)


def _ordered(rows: list[Row], order: Sequence[str] | None) -> list[Row]:
    """Rows in a fixed order (``order`` first, others after by count), else largest first."""
    if order is None:
        return sorted(rows, key=lambda r: (-(r.values.get("count") or 0), r.key))
    rank = {k: i for i, k in enumerate(order)}
    return sorted(rows, key=lambda r: (rank.get(r.key, len(rank)), -(r.values.get("count") or 0), r.key))


_TITLES: Final = {
    "severity": "Alerts by severity",
    "category": "Alerts by category",
    "industry": "Alerts by tenant industry",
    "technique": "Alerts by ATT&CK technique",
    "tenant": "Alerts by tenant",
    "status": "Alerts open, acknowledged and closed",
}


def _tables(current: Totals, previous: Totals) -> list[Table]:
    """The alert tables: severities in their order (all four, zero rows included), others largest
    first."""
    tables = []
    for name, title in _TITLES.items():
        with_trend = name in ("category", "severity", "industry", "technique")
        columns = ["count"]
        if with_trend:
            columns += ["previous", "change_pct"]
        if name in ("category", "severity"):
            columns.append("ttd_mean_ms")
        if name in ("tenant", "industry"):
            columns += ["open", "closed"]
        table = Table(name, title, columns)
        cells = current.cells.get(name, {})
        before = previous.cells.get(name, {})
        keys = set(cells) | (set(before) if with_trend else set())
        if name == "severity":
            keys |= set(SEVERITY_ORDER)
        for key in sorted(keys):
            cell = cells.get(key, {"count": 0, "ttd_sum": 0.0, "tenants": set(), "open": 0, "closed": 0})
            old = before.get(key, {"count": 0, "tenants": set()})
            values: dict[str, float | int | None] = {"count": cell["count"]}
            tenants = set(cell["tenants"])
            if with_trend:
                values["previous"] = old["count"]
                values["change_pct"] = _change(cell["count"], old["count"])
                tenants |= old["tenants"]
            if "ttd_mean_ms" in columns:
                values["ttd_mean_ms"] = round(cell["ttd_sum"] / cell["count"], 1) if cell["count"] else None
            if "open" in columns:
                values["open"] = cell["open"]
                values["closed"] = cell["closed"]
            table.rows.append(Row(key, values, frozenset(tenants)))
        table.rows = _ordered(table.rows, SEVERITY_ORDER if name == "severity" else None)
        tables.append(table)
    return tables


# --- incidents: per-document definitions (stored on the documents as ttd_ms, ttc_ms, inactive_ttc_ms)
def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def incident_ttd_ms(doc: Mapping[str, Any]) -> int | None:
    """Time to detect of one incident document: ``detected_at - first_seen`` (at least 0), or None."""
    detected, first = _ms(doc.get("detected_at")), _ms(doc.get("first_seen"))
    return None if detected is None or first is None else max(0, detected - first)


def incident_ttc_ms(doc: Mapping[str, Any]) -> int | None:
    """Time to close: the analyst's close, else the job's inactivity close, minus ``first_seen``."""
    first = _ms(doc.get("first_seen"))
    if first is None:
        return None
    at = _ms(doc.get("workflow_updated_at"))
    if doc.get("workflow") == "closed" and at is not None:
        return max(0, at - first)
    at = _ms(doc.get("closed_at"))
    if doc.get("close_reason") == "inactive" and at is not None:
        return max(0, at - first)
    return None


def incident_points(severity: str, stage: str, criticality: str | None, settings: ThreatSettings) -> float:
    """The threat points of one fresh incident (``awareness.threat``: ``p_i`` with no decay)."""
    crit = (
        criticality if criticality is not None and criticality in settings.criticality_factors else "medium"
    )
    base = settings.severity_points.get(severity, 0.0) + settings.stage_points.get(stage, 0.0)
    return min(100.0, base * float(settings.criticality_factors[crit]))


def incident_level(
    severity: str, stage: str, criticality: str | None, floor: str | None, settings: ThreatSettings
) -> str:
    """The level this incident alone puts its tenant at (module docstring); ``floor`` is the highest
    ``category_floors`` level of its categories, or None."""
    index = incident_points(severity, stage, criticality, settings)
    if floor in LEVELS:
        index = max(index, settings.threshold(floor))
    return level_for_index(round(min(100.0, index), 1), settings)


def _floor_filters(settings: ThreatSettings) -> dict[str, Any] | None:
    """A ``filters`` aggregation splitting incidents by the highest floor level of their categories
    (exclusive: an incident with a red-floor category is only in ``red``)."""
    filters: dict[str, Any] = {}
    higher: list[str] = []
    for level in LEVEL_ORDER[:-1]:  # red, orange, yellow: blue is no floor
        cats = sorted(c for c, lv in settings.category_floors.items() if lv == level)
        if not cats:
            continue
        spec: dict[str, Any] = {"bool": {"filter": [{"terms": {"categories": cats}}]}}
        if higher:
            spec["bool"]["must_not"] = [{"terms": {"categories": list(higher)}}]
        filters[level] = spec
        higher += cats
    return {"filters": {"filters": filters}} if filters else None


def _times(bucket: Mapping[str, Any]) -> tuple[float, int, float, int]:
    def value(agg: Mapping[str, Any] | None, name: str) -> float:
        return float(((agg or {}).get(name) or {}).get("value") or 0.0)

    analyst, inactive = bucket.get("ttc_analyst"), bucket.get("ttc_inactive")
    ttc_sum = value(analyst, "sum") + value(inactive, "sum")
    ttc_n = int(value(analyst, "n") + value(inactive, "n"))
    return value(bucket, "ttd_sum"), int(value(bucket, "ttd_n")), ttc_sum, ttc_n


def _histogram_p90(aggs: Mapping[str, Any], *names: str) -> float | None:
    """The 90th percentile of the values counted in the named filtered 1-minute histograms (the
    bucket's start: at most a minute under the exact value)."""
    counts: dict[float, int] = {}
    for name in names:
        for b in ((aggs.get(name) or {}).get("h") or {}).get("buckets", []):
            counts[float(b["key"])] = counts.get(float(b["key"]), 0) + int(b["doc_count"])
    total = sum(counts.values())
    if not total:
        return None
    rank, seen = 0.9 * total, 0
    for key in sorted(counts):
        seen += counts[key]
        if seen >= rank:
            return key
    return None


def fold_incident_buckets(
    buckets: Iterable[Mapping[str, Any]],
    settings: ThreatSettings,
    registry: IndustryLookup | None = None,
    totals: IncidentTotals | None = None,
) -> IncidentTotals:
    """Fold incident composite buckets (sources :data:`INCIDENT_SOURCES`; sub-aggregations
    ``alerts`` (sum of alert_count), ``ttd_sum``/``ttd_n``/``ttc_sum``/``ttc_n`` and ``floors``
    (the filters of :func:`_floor_filters`, each ``{doc_count}``)) into severity, stage, level and
    industry cells and the period's totals."""
    out = totals if totals is not None else IncidentTotals()
    for bucket in buckets:
        key = bucket["key"]
        count = int(bucket["doc_count"])
        if count <= 0:
            continue
        tenant = key.get("tenant") or UNKNOWN
        severity = key.get("severity") or UNKNOWN
        stage = key.get("stage") or UNKNOWN
        workflow = key.get("workflow") or "new"
        reason = key.get("close_reason")
        if workflow == "closed":
            closed_by: str | None = "analyst"
        elif key.get("status") == "closed":
            closed_by = str(reason or UNKNOWN)
        else:
            closed_by = None
        industry = (registry.industry_of(tenant) if registry else None) or UNKNOWN
        ttd_sum, ttd_n, ttc_sum, ttc_n = _times(bucket)
        out.count += count
        out.alert_count += int(float((bucket.get("alerts") or {}).get("value") or 0))
        out.tenants.add(tenant)
        out.ttd_sum, out.ttd_n = out.ttd_sum + ttd_sum, out.ttd_n + ttd_n
        out.ttc_sum, out.ttc_n = out.ttc_sum + ttc_sum, out.ttc_n + ttc_n
        out.workflow[workflow] = out.workflow.get(workflow, 0) + count
        if closed_by is None:
            out.open += count
        else:
            out.closed += count
            out.closed_by[closed_by] = out.closed_by.get(closed_by, 0) + count
        for table, cell_key in (("incident_severity", severity), ("incident_stage", stage),
                                ("incident_industry", industry)):  # fmt: skip
            cell = out.cell(table, cell_key)
            cell.count += count
            cell.tenants.add(tenant)
            cell.ttd_sum, cell.ttd_n = cell.ttd_sum + ttd_sum, cell.ttd_n + ttd_n
            cell.ttc_sum, cell.ttc_n = cell.ttc_sum + ttc_sum, cell.ttc_n + ttc_n
            if closed_by is None:
                cell.open += count
            else:
                cell.closed += count
        floors = ((bucket.get("floors") or {}).get("buckets")) or {}
        rest = count
        groups: list[tuple[str | None, int]] = []
        for level in LEVEL_ORDER[:-1]:
            n = int((floors.get(level) or {}).get("doc_count") or 0)
            if n:
                groups.append((level, n))
                rest -= n
        groups.append((None, rest))
        for floor, n in groups:
            if n <= 0:
                continue
            cell = out.cell("incident_level", incident_level(severity, stage, key.get("criticality"), floor,
                                                             settings))  # fmt: skip
            cell.count += n
            cell.tenants.add(tenant)
    return out


def fold_incident_category_buckets(
    buckets: Iterable[Mapping[str, Any]], totals: IncidentTotals
) -> IncidentTotals:
    """Fold (tenant, category) composite buckets with the time sub-aggregations into the category
    cells (an incident with several categories counts under each)."""
    for bucket in buckets:
        key = bucket["key"]
        count = int(bucket["doc_count"])
        if count <= 0:
            continue
        ttd_sum, ttd_n, ttc_sum, ttc_n = _times(bucket)
        cell = totals.cell("incident_category", key.get("category") or UNKNOWN)
        cell.count += count
        cell.tenants.add(key.get("tenant") or UNKNOWN)
        cell.ttd_sum, cell.ttd_n = cell.ttd_sum + ttd_sum, cell.ttd_n + ttd_n
        cell.ttc_sum, cell.ttc_n = cell.ttc_sum + ttc_sum, cell.ttc_n + ttc_n
    return totals


_INCIDENT_TABLES: Final[tuple[tuple[str, str, tuple[str, ...] | None, tuple[str, ...]], ...]] = (
    ("incident_severity", "Incidents by severity", SEVERITY_ORDER, ("ttd_mean_ms", "ttc_mean_ms")),
    ("incident_level", "Incidents by threat level", LEVEL_ORDER, ()),
    ("incident_stage", "Incidents by stage reached", STAGES, ("ttd_mean_ms", "ttc_mean_ms")),
    ("incident_category", "Incidents by category", None, ("ttd_mean_ms", "ttc_mean_ms")),
    ("incident_industry", "Incidents by tenant industry", None, ("open", "closed")),
)


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 1) if n else None


def incident_tables(current: IncidentTotals, previous: IncidentTotals) -> list[Table]:
    """The incident tables with the previous period's counts; severities, levels and stages in
    their order with every value listed (zeros too), categories and industries largest first."""
    tables = []
    for name, title, order, extra in _INCIDENT_TABLES:
        table = Table(name, title, ["count", "previous", "change_pct", *extra])
        cells, before = current.cells.get(name, {}), previous.cells.get(name, {})
        for key in sorted(set(cells) | set(before) | set(order or ())):
            cell, old = cells.get(key, Cell()), before.get(key, Cell())
            values: dict[str, float | int | None] = {
                "count": cell.count,
                "previous": old.count,
                "change_pct": _change(cell.count, old.count),
            }
            if "ttd_mean_ms" in extra:
                values["ttd_mean_ms"] = _mean(cell.ttd_sum, cell.ttd_n)
                values["ttc_mean_ms"] = _mean(cell.ttc_sum, cell.ttc_n)
            if "open" in extra:
                values["open"], values["closed"] = cell.open, cell.closed
            table.rows.append(Row(key, values, frozenset(cell.tenants | old.tenants)))
        table.rows = _ordered(table.rows, order)
        tables.append(table)
    return tables


# --- trend and threat level over time ----------------------------------------------------------
def trend_interval(start_ms: int, end_ms: int) -> tuple[str, int]:
    """The trend bucket: an hour up to 3 days, a day up to 400 days, else a week (UTC-aligned)."""
    length = end_ms - start_ms
    if length <= 3 * DAY_MS:
        return "1h", HOUR_MS
    if length <= 400 * DAY_MS:
        return "1d", DAY_MS
    return "7d", 7 * DAY_MS


def course_interval(start_ms: int, end_ms: int) -> tuple[str, int]:
    """The SOC overview's threat-index course: a minute up to 3 hours, 5 minutes up to 12 hours,
    else the trend bucket (:func:`trend_interval`), so a short period is not two steps."""
    length = end_ms - start_ms
    if length <= 3 * HOUR_MS:
        return "1m", MINUTE_MS
    if length <= 12 * HOUR_MS:
        return "5m", 5 * MINUTE_MS
    return trend_interval(start_ms, end_ms)


def bucket_key(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ms / 1000))


def bucket_ms(key: str) -> int:
    """Inverse of :func:`bucket_key` (the time part of a trend row key)."""
    return calendar.timegm(time.strptime(key.split("|")[0], "%Y-%m-%dT%H:%MZ")) * 1000


def fold_trend_buckets(buckets: Iterable[Mapping[str, Any]], name: str, title: str) -> Table:
    """(time, severity, tenant) composite buckets -> one row per non-empty (bucket, severity)."""
    cells: dict[tuple[int, str], tuple[int, set[str]]] = {}
    for bucket in buckets:
        key = bucket["key"]
        count = int(bucket["doc_count"])
        if count <= 0 or key.get("time") is None:
            continue
        cell_key = (int(key["time"]), key.get("severity") or UNKNOWN)
        n, tenants = cells.get(cell_key, (0, set()))
        tenants.add(key.get("tenant") or UNKNOWN)
        cells[cell_key] = (n + count, tenants)
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    table = Table(name, title, ["count"])
    for (at, severity), (n, tenants) in sorted(
        cells.items(), key=lambda kv: (kv[0][0], rank.get(kv[0][1], 9))
    ):
        table.rows.append(Row(f"{bucket_key(at)}|{severity}", {"count": n}, frozenset(tenants)))
    return table


def threat_tables(
    level_minutes: Mapping[str, int],
    over_time: Iterable[tuple[int, int]],
    start_ms: int,
    end_ms: int,
    tenants: frozenset[str],
    who: str,
) -> list[Table]:
    """``threat_time`` (time at each level, highest first, then ``no data``) from minute-document
    counts per level, and ``threat_over_time`` (highest level rank per trend bucket)."""
    period_min = max(0, (end_ms - start_ms) // MINUTE_MS)
    subject = "the cloud" if who == CLOUD else "the tenant"  # the id is in the heading (pseudonymised there)
    time_table = Table(
        "threat_time", f"Threat level of {subject}: time at each level", ["time_ms", "share_pct"]
    )
    seen = 0
    for level in LEVEL_ORDER:
        minutes = int(level_minutes.get(level, 0))
        seen += minutes
        share = round(100.0 * minutes / period_min, 1) if period_min else None
        time_table.rows.append(Row(level, {"time_ms": minutes * MINUTE_MS, "share_pct": share}, tenants))
    missing = max(0, period_min - seen)
    share = round(100.0 * missing / period_min, 1) if period_min else None
    time_table.rows.append(Row(NO_DATA, {"time_ms": missing * MINUTE_MS, "share_pct": share}, tenants))
    over = Table("threat_over_time", f"Threat level of {subject} over the period", ["level_rank"])
    for at, rank in sorted(over_time):
        over.rows.append(Row(bucket_key(at), {"level_rank": rank}, tenants))
    return [time_table, over]


# --- Elasticsearch -----------------------------------------------------------------------------
def _terms_sources(sources: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{name: {"terms": {"field": f, "missing_bucket": True}}} for name, f in sources]


def iter_composite(
    es: Elasticsearch,
    index: str,
    query: Mapping[str, Any],
    page_size: int = PAGE_SIZE,
    *,
    sources: list[dict[str, Any]] | None = None,
    aggs: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every composite bucket of ``query``, page by page (``after_key``). Defaults: the alert
    sources (:data:`COMPOSITE_SOURCES`) with ``ttd_sum``."""
    srcs = sources if sources is not None else _terms_sources(COMPOSITE_SOURCES)
    sub = dict(aggs) if aggs is not None else {"ttd_sum": {"sum": {"field": "ttd_ms"}}}
    extra: dict[str, Any] = {"runtime_mappings": dict(runtime)} if runtime else {}
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": page_size, "sources": srcs}
        if after is not None:
            composite["after"] = after
        resp = es.search(
            index=index,
            size=0,
            query=dict(query),
            aggs={"groups": {"composite": composite, **({"aggs": sub} if sub else {})}},
            ignore_unavailable=True,
            allow_no_indices=True,
            **extra,
        )
        agg = (resp.get("aggregations") or {}).get("groups") or {}
        yield from agg.get("buckets", [])
        after = agg.get("after_key")
        if not agg.get("buckets") or after is None:
            return


def _period_query(start_ms: int, end_ms: int, tenant: str | None, time_field: str = "ts") -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"range": {time_field: {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}
    ]
    if tenant:
        filters.append({"term": {"tenant": tenant}})
    return {"bool": {"filter": filters}}


def _incident_query(start_ms: int, end_ms: int, tenant: str | None) -> dict[str, Any]:
    """Incidents that began in the period, merged ones left out."""
    query = _period_query(start_ms, end_ms, tenant, "first_seen")
    query["bool"]["must_not"] = [{"exists": {"field": "merged_into"}}, {"term": {"close_reason": "merged"}}]
    return query


def _fold_incidents(
    es: Elasticsearch,
    index: str,
    query: Mapping[str, Any],
    settings: ThreatSettings,
    registry: IndustryLookup | None,
    page_size: int,
) -> IncidentTotals:
    aggs: dict[str, Any] = {**_TIME_AGGS, "alerts": {"sum": {"field": "alert_count"}}}
    floors = _floor_filters(settings)
    if floors:
        aggs["floors"] = floors
    totals = fold_incident_buckets(
        iter_composite(es, index, query, page_size, sources=_terms_sources(INCIDENT_SOURCES), aggs=aggs,
                       ),
        settings,
        registry,
    )  # fmt: skip
    return fold_incident_category_buckets(
        iter_composite(es, index, query, page_size, sources=_terms_sources(INCIDENT_CATEGORY_SOURCES),
                       aggs=_TIME_AGGS),
        totals,
    )  # fmt: skip


def _trend(
    es: Elasticsearch, index: str, query: Mapping[str, Any], time_field: str, interval: str, page_size: int
) -> Iterator[dict[str, Any]]:
    sources = [
        {"time": {"date_histogram": {"field": time_field, "fixed_interval": interval}}},
        *_terms_sources((("severity", "severity"), ("tenant", "tenant"))),
    ]
    return iter_composite(es, index, query, page_size, sources=sources, aggs={})


def _p90(aggs: Mapping[str, Any], name: str) -> float | None:
    value = ((aggs.get(name) or {}).get("values") or {}).get("90.0")
    return round(float(value), 1) if value is not None else None


def build_report(
    es_client: Elasticsearch,
    settings: Settings,
    start_ms: int,
    end_ms: int,
    tenant: str | None = None,
    registry: IndustryLookup | None = None,
    *,
    threat_settings: ThreatSettings | None = None,
    basis: Mapping[str, Any] | None = None,
    page_size: int = PAGE_SIZE,
    overview: OverviewSearches | None = None,
) -> Report:
    """Statistics of the alerts with ``start_ms <= ts < end_ms`` and the incidents that began in
    the period (optionally one tenant's), with the previous period, the trend and the threat
    level. ``threat_settings``: the ``awareness.threat`` settings the job runs with (default
    values if None); ``basis``: parameters to name in the method section (the incident gap);
    ``overview``: the SOC overview board's searches for the period (``dashboards.board_soc.
    overview_searches``, which the caller supplies: this package may not import ``dashboards``)."""
    if end_ms <= start_ms:
        raise ValueError("the report period is empty: --to must be after --from")
    threat = threat_settings or ThreatSettings()
    length = end_ms - start_ms
    interval, interval_ms = trend_interval(start_ms, end_ms)

    # alerts
    index = read_index(settings.index_alerts_prefix, tenant)
    query = _period_query(start_ms, end_ms, tenant)
    current = fold_buckets(iter_composite(es_client, index, query, page_size), registry)
    prev_query = _period_query(start_ms - length, start_ms, tenant)
    previous = fold_buckets(iter_composite(es_client, index, prev_query, page_size), registry)
    stats = es_client.search(
        index=index,
        size=0,
        query=query,
        aggs={
            "ttd_avg": {"avg": {"field": "ttd_ms"}},
            "ttd_pct": {"percentiles": {"field": "ttd_ms", "percents": [90.0]}},
        },
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    aggs = stats.get("aggregations") or {}
    mean = (aggs.get("ttd_avg") or {}).get("value")
    alert_trend = fold_trend_buckets(
        _trend(es_client, index, query, "ts", interval, page_size), "alerts_over_time", "Alerts over time"
    )

    # incidents
    inc_index = read_index(settings.index_incidents_prefix, tenant)
    inc_query = _incident_query(start_ms, end_ms, tenant)
    inc_now = _fold_incidents(es_client, inc_index, inc_query, threat, registry, page_size)
    inc_before = _fold_incidents(
        es_client,
        inc_index,
        _incident_query(start_ms - length, start_ms, tenant),
        threat,
        registry,
        page_size,
    )
    inc_stats = es_client.search(
        index=inc_index,
        size=0,
        query=inc_query,
        aggs={"ttd_pct": {"percentiles": {"field": "ttd_ms", "percents": [90.0]}}, **_TTC_HISTOGRAMS},
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    inc_aggs = inc_stats.get("aggregations") or {}
    inc_trend = fold_trend_buckets(
        _trend(es_client, inc_index, inc_query, "first_seen", interval, page_size),
        "incidents_over_time",
        "Incidents over time",
    )

    # threat level: the cloud's, or the scoped tenant's own
    who = tenant or CLOUD
    level_resp = es_client.search(
        index=read_index(settings.index_threat_prefix, tenant),
        size=0,
        query={
            "bool": {
                "filter": [
                    {"term": {"tenant": who}},
                    *_period_query(start_ms, end_ms, None)["bool"]["filter"],
                ]
            }
        },
        aggs={
            "levels": {"terms": {"field": "level", "size": len(LEVELS) + 4}},
            "over_time": {
                "date_histogram": {"field": "ts", "fixed_interval": interval, "min_doc_count": 1},
                "aggs": {"top": {"max": {"field": "level_rank"}}},
            },
        },
        ignore_unavailable=True,
        allow_no_indices=True,
    )
    level_aggs = level_resp.get("aggregations") or {}
    level_minutes = {
        str(b["key"]): int(b["doc_count"]) for b in (level_aggs.get("levels") or {}).get("buckets", [])
    }
    over_time = [
        (int(b["key"]), int(b["top"]["value"]))
        for b in (level_aggs.get("over_time") or {}).get("buckets", [])
        if (b.get("top") or {}).get("value") is not None
    ]

    tenants_now = current.tenants | inc_now.tenants
    level_tenants = frozenset({tenant}) if tenant else frozenset(tenants_now)
    overview_part: list[Table] = []
    if overview is not None:
        results = run_overview(es_client, settings, overview, tenant)
        overview_part = overview_tables(results, tenant, level_tenants)
        basis = {"course_interval_ms": course_interval(start_ms, end_ms)[1], **dict(basis or {})}
    summary: dict[str, float | int | None] = {
        "alerts": current.count,
        "previous_alerts": previous.count,
        "change_pct": _change(current.count, previous.count),
        "tenants": len(tenants_now),
        "open": current.cells.get("status", {}).get("open", {}).get("count", 0),
        "acknowledged": current.cells.get("status", {}).get("acknowledged", {}).get("count", 0),
        "closed": current.cells.get("status", {}).get("closed", {}).get("count", 0),
        "ttd_mean_ms": round(mean, 1) if mean is not None else None,
        "ttd_p90_ms": _p90(aggs, "ttd_pct"),
        **incident_summary(inc_now, inc_before),
        "incident_ttd_p90_ms": _p90(inc_aggs, "ttd_pct"),
        "incident_ttc_p90_ms": _histogram_p90(inc_aggs, "ttc_analyst_h", "ttc_inactive_h"),
    }
    return Report(
        start_ms=start_ms,
        end_ms=end_ms,
        tenant=tenant,
        generated_ms=int(time.time() * 1000),
        summary=summary,
        tables=[
            *incident_tables(inc_now, inc_before),
            *threat_tables(level_minutes, over_time, start_ms, end_ms, level_tenants, who),
            *_tables(current, previous),
            alert_trend,
            inc_trend,
            *overview_part,
        ],
        tenants=frozenset(tenants_now | previous.tenants | inc_before.tenants),
        interval_ms=interval_ms,
        basis={
            "level_thresholds": dict(threat.level_thresholds),
            "category_floors": dict(threat.category_floors),
            "severity_points": dict(threat.severity_points),
            **dict(basis or {}),
        },
    )


def incident_summary(now: IncidentTotals, before: IncidentTotals) -> dict[str, float | int | None]:
    """The summary figures of the incidents (the p90s come from their own query)."""
    return {
        "incidents": now.count,
        "previous_incidents": before.count,
        "incidents_change_pct": _change(now.count, before.count),
        "incident_tenants": len(now.tenants),
        "incidents_open": now.open,
        "incidents_closed": now.closed,
        "incidents_closed_by_analyst": now.closed_by.get("analyst", 0),
        "incidents_closed_inactive": now.closed_by.get("inactive", 0),
        "incidents_acknowledged": now.workflow.get("acknowledged", 0),
        "alerts_per_incident": round(now.alert_count / now.count, 1) if now.count else None,
        "incident_ttd_mean_ms": _mean(now.ttd_sum, now.ttd_n),
        "incident_ttd_known": now.ttd_n,
        "incident_ttc_mean_ms": _mean(now.ttc_sum, now.ttc_n),
        "incident_ttc_known": now.ttc_n,
    }


# --- words for the machine names (md, html, pdf and the charts) --------------------------------
CATEGORY_LABELS: Final[Mapping[str, str]] = {
    "vm_escape": "VM escape",
    "cross_tenant_leak": "Cross-tenant access",
    "port_scan": "Port scan",
    "brute_force": "Password guessing",
    "exfiltration": "Exfiltration",
    "cryptomining": "Cryptomining",
    "dos": "Denial of service",
    "command_and_control": "Command and control",
    "spam": "Spam",
    "anomaly": "Anomaly",
}
_PLAN_GRADES: Final[Mapping[str, str]] = {"red": "I", "orange": "II", "yellow": "III", "blue": "IV"}
KEY_TITLES: Final[Mapping[str, str]] = {
    "incident_severity": "Severity",
    "incident_level": "Threat level",
    "incident_stage": "Stage reached",
    "incident_category": "Category",
    "incident_industry": "Tenant industry",
    "threat_time": "Threat level",
    "threat_over_time": "From",
    "severity": "Severity",
    "category": "Category",
    "industry": "Tenant industry",
    "technique": "ATT&CK technique",
    "tenant": "Tenant",
    "status": "Status",
    "alerts_over_time": "From",
    "incidents_over_time": "From",
    "overview_level": "Whose",
    "overview_levels": "Threat level",
    "overview_tenants": "Tenant",
    "overview_stage": "Stage reached",
    "overview_warnings": "Tenant",
}
COLUMN_TITLES: Final[Mapping[str, str]] = {
    "count": "This period",
    "previous": "Previous period",
    "change_pct": "Change",
    "ttd_mean_ms": "Time to detect (mean)",
    "ttc_mean_ms": "Time to close (mean)",
    "open": "Open",
    "closed": "Closed",
    "time_ms": "Time at level",
    "share_pct": "Share of the period",
    "level_rank": "Highest level",
    "index": "Threat index",
    "at": "Minute (UTC)",
    "tenants": "Tenants",
    "signal": "Signal",
    "reason": "Reason",
    **{s: s.capitalize() for s in SEVERITY_ORDER},
}


def row_label(table: str, key: str) -> str:
    """A row key in words: categories, stages, levels (with the plan's grade), severities."""
    if key in (UNKNOWN, NO_DATA):
        return key.capitalize()
    if table.endswith("category"):
        return CATEGORY_LABELS.get(key, key.replace("_", " ").capitalize())
    if table == "overview_level":
        return {"cloud": "The cloud", "tenant": "The tenant"}.get(key, key)
    if table == "overview_levels":
        return row_label("threat_time", key)
    if table in ("incident_stage", "overview_stage"):
        from awareness.killchain import STAGE_LABELS

        return STAGE_LABELS.get(key, key).capitalize()
    if table in ("incident_level", "threat_time"):
        return f"{key.capitalize()} (grade {_PLAN_GRADES[key]})" if key in _PLAN_GRADES else key
    if table in ("incident_severity", "severity", "status", "incident_industry", "industry"):
        return key.replace("_", " ").capitalize()
    return key


# --- SOC overview: the board's own queries (dashboards.board_soc.overview_searches) ------------
# name -> (index family, _search body, rows of a response), as the SOC overview board runs them.
OverviewSearches = Mapping[
    str, tuple[str, Mapping[str, Any], Callable[[Mapping[str, Any]], list[dict[str, Any]]]]
]
_FAMILY_PREFIX: Final = {
    "threat": "index_threat_prefix",
    "incidents": "index_incidents_prefix",
    "warnings": "index_warnings_prefix",
}


class _OverviewScope(ScopedStore):
    """The analyst's tenant scoping (``analyst.scope``) for the overview's searches."""

    what = "overview row"


def run_overview(
    es: Elasticsearch, settings: Settings, searches: OverviewSearches, tenant: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Run each overview search (the board's body, plus the tenant scope filter) and flatten it
    as Grafana would. ``open_by_stage`` also gets, under the board's stage buckets, the severity
    and tenant split the report needs (the counts stay the board's). A scoped report skips the
    cloud's own level (it describes every tenant) and reads its tenant's level from the tiles."""
    scope = _OverviewScope(tenant)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, (family, body, flatten) in searches.items():
        if tenant and name == "cloud_level":
            continue
        search = json_copy(body)
        search["query"]["bool"]["filter"].extend(scope._scope_filters(None))
        stage_agg = None
        if name == "open_by_stage":
            stage_agg = next(iter(search["aggs"]))
            search["aggs"][stage_agg]["aggs"] = {
                "_severity": {
                    "terms": {"field": "severity", "size": 10},
                    "aggs": {"_tenant": {"terms": {"field": "tenant", "size": 10_000}}},
                }
            }
        answer = es.search(
            index=read_index(getattr(settings, _FAMILY_PREFIX[family]), tenant),
            ignore_unavailable=True,
            allow_no_indices=True,
            **search,
        )
        resp: dict[str, Any] = dict(getattr(answer, "body", answer))
        if "aggregations" not in resp and search.get("aggs"):
            resp["aggregations"] = {k: {"buckets": []} for k in search["aggs"]}
        rows = flatten(resp)
        if stage_agg is not None:
            buckets = resp["aggregations"][stage_agg]["buckets"]
            for row in rows:
                sev = buckets.get(row.get("filter"), {}).get("_severity", {}).get("buckets", [])
                row["by_severity"] = {
                    str(b["key"]): (int(b["doc_count"]), [str(t["key"]) for t in b["_tenant"]["buckets"]])
                    for b in sev
                }
        for row in rows:
            if tenant and "tenant" in row and row["tenant"] != tenant:
                raise TenantScopeError(
                    f"refusing output: an overview row belongs to another tenant than {tenant}"
                )
        out[name] = rows
    return out


def json_copy(body: Mapping[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(dict(body))


def _rank(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def overview_tables(
    results: Mapping[str, list[dict[str, Any]]], tenant: str | None, level_tenants: frozenset[str]
) -> list[Table]:
    """The SOC overview section's tables from the board's query results (flattened rows):
    ``overview_level`` (the cloud's level in the latest minute of the period, or the scoped
    tenant's), ``overview_course`` (threat index per trend bucket), ``overview_levels`` (tenants
    at each level), ``overview_tenants`` (each tenant's latest level), ``overview_stage`` (open
    incidents by stage reached and severity), ``overview_warnings`` (the latest warnings)."""
    tiles = [r for r in results.get("tenant_levels", []) if r.get("1") is not None]
    if tenant:
        own = [r for r in tiles if r.get("tenant") == tenant]
        latest = own[0] if own else None
    else:
        latest = next((r for r in results.get("cloud_level", []) if r.get("1") is not None), None)
    subject = "the tenant" if tenant else "the cloud"
    level = Table("overview_level", f"Threat level of {subject} at the end of the period",
                  ["level_rank", "index", "at"])  # fmt: skip
    level.rows.append(
        Row(
            "tenant" if tenant else "cloud",
            {
                "level_rank": _rank(latest.get("1")) if latest else None,
                "index": latest.get("2") if latest else None,
                "at": int(latest["ts"]) if latest else None,
            },
            level_tenants,
        )
    )
    course = Table("overview_course", f"Threat index of {subject} over the period", ["index"])
    for row in results.get("course", []):
        if row.get("1") is not None:
            course.rows.append(Row(bucket_key(int(row["ts"])), {"index": float(row["1"])}, level_tenants))
    by_level: dict[str, set[str]] = {lv: set() for lv in LEVEL_ORDER}
    tenants = Table("overview_tenants", "Tenants by threat level (latest minute of each)",
                    ["level_rank", "index", "at"], tenant_keys=True)  # fmt: skip
    for row in sorted(tiles, key=lambda r: (-(_rank(r.get("1")) or 0), -(r.get("2") or 0), str(r["tenant"]))):
        rank = _rank(row.get("1")) or 0
        by_level[LEVELS[rank]].add(str(row["tenant"]))
        tenants.rows.append(
            Row(str(row["tenant"]), {"level_rank": rank, "index": row.get("2"), "at": int(row["ts"])},
                frozenset({str(row["tenant"])}))
        )  # fmt: skip
    levels = Table("overview_levels", "Tenants at each threat level", ["tenants"])
    for lv in LEVEL_ORDER:
        levels.rows.append(Row(lv, {"tenants": len(by_level[lv])}, frozenset(by_level[lv])))
    stage = Table("overview_stage", "Open incidents by stage reached and severity",
                  ["open", *SEVERITY_ORDER])  # fmt: skip
    got = {
        str(r.get("filter", "")).split(" ", 1)[-1].replace(" ", "_"): r
        for r in results.get("open_by_stage", [])
    }
    for st in STAGES:
        row = got.get(st, {})
        sev = row.get("by_severity") or {}
        values: dict[str, float | int | None] = {"open": int(row.get("count") or 0)}
        who: set[str] = set()
        for s in SEVERITY_ORDER:
            n, names = sev.get(s, (0, []))
            values[s] = n
            who |= set(names)
        stage.rows.append(Row(st, values, frozenset(who)))
    warnings = Table("overview_warnings", "Latest early warnings (newest first)",
                     ["at", "level_rank", "signal", "reason"], tenant_keys=True)  # fmt: skip
    for doc in results.get("warnings", []):
        owner = str(doc.get("tenant") or UNKNOWN)
        level_name = doc.get("level")
        reason = str(doc.get("reason") or "").replace(f"tenant {owner}", "the tenant")
        warnings.rows.append(
            Row(owner, {"at": _ms(doc.get("ts")), "level_rank": LEVELS.index(level_name) if level_name in LEVELS else None},
                frozenset({owner}), text={"signal": str(doc.get("signal") or ""), "reason": reason})
        )  # fmt: skip
    return [level, course, levels, tenants, stage, warnings]
