"""Incident statistics export (``ssa report``): counts, time to detect, status and trend.

Alerts are never loaded one by one: a ``composite`` aggregation over (tenant, industry, category,
severity, status, technique) is paged with ``after_key`` and each page is folded into the tables
(:func:`fold_buckets`, pure and unit-tested); the overall mean and p90 of ``ttd_ms`` come from
``avg``/``percentiles`` aggregations of the same query. The previous period of equal length
(``[start - (end - start), start)``) is folded the same way for the trend columns.

Every row keeps the set of tenants it describes, so :mod:`dashboards.anonymize` can suppress rows
describing fewer than k tenants.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from elasticsearch import Elasticsearch

from infra.settings import Settings


class IndustryLookup(Protocol):
    """Anything that names a tenant's industry (the tenant registry does)."""

    def industry_of(self, tenant: str | None) -> str | None: ...


__all__ = [
    "COMPOSITE_SOURCES",
    "Report",
    "Row",
    "Table",
    "Totals",
    "build_report",
    "fold_buckets",
    "iter_composite",
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
PAGE_SIZE: Final = 500
UNKNOWN: Final = "unknown"


@dataclass
class Row:
    key: str
    values: dict[str, float | int | None]
    tenants: frozenset[str] = frozenset()
    suppressed: bool = False


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"{self.name} has no row {key!r}")


@dataclass
class Totals:
    """What one period's composite pages fold into."""

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
class Report:
    start_ms: int
    end_ms: int
    tenant: str | None
    generated_ms: int
    summary: dict[str, float | int | None]
    tables: list[Table]
    tenants: frozenset[str]
    method: str = ""
    anonymized: bool = False

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def fold_buckets(buckets: Iterable[Mapping[str, Any]], registry: IndustryLookup | None = None) -> Totals:
    """Fold composite buckets (``key`` per source, ``doc_count``, ``ttd_sum.value``) into totals."""
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


_TITLES: Final = {
    "category": "Alerts by category",
    "severity": "Alerts by severity",
    "tenant": "Alerts by tenant",
    "industry": "Alerts by industry",
    "technique": "Alerts by ATT&CK technique",
    "status": "Open vs closed",
}


def _tables(current: Totals, previous: Totals) -> list[Table]:
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
        for key in sorted(set(cells) | (set(before) if with_trend else set())):
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
        table.rows.sort(key=lambda r: (-(r.values["count"] or 0), r.key))
        tables.append(table)
    return tables


def iter_composite(
    es: Elasticsearch, index: str, query: Mapping[str, Any], page_size: int = PAGE_SIZE
) -> Iterator[dict[str, Any]]:
    """Every composite bucket of ``query``, page by page (``after_key``)."""
    sources = [{name: {"terms": {"field": f, "missing_bucket": True}}} for name, f in COMPOSITE_SOURCES]
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {"size": page_size, "sources": sources}
        if after is not None:
            composite["after"] = after
        resp = es.search(
            index=index,
            size=0,
            query=dict(query),
            aggs={"groups": {"composite": composite, "aggs": {"ttd_sum": {"sum": {"field": "ttd_ms"}}}}},
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        agg = (resp.get("aggregations") or {}).get("groups") or {}
        yield from agg.get("buckets", [])
        after = agg.get("after_key")
        if not agg.get("buckets") or after is None:
            return


def _period_query(start_ms: int, end_ms: int, tenant: str | None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"range": {"ts": {"gte": start_ms, "lt": end_ms, "format": "epoch_millis"}}}
    ]
    if tenant:
        filters.append({"term": {"tenant": tenant}})
    return {"bool": {"filter": filters}}


def build_report(
    es_client: Elasticsearch,
    settings: Settings,
    start_ms: int,
    end_ms: int,
    tenant: str | None = None,
    registry: IndustryLookup | None = None,
    *,
    page_size: int = PAGE_SIZE,
) -> Report:
    """Statistics of alerts with ``start_ms <= ts < end_ms`` (optionally one tenant's)."""
    if end_ms <= start_ms:
        raise ValueError("the report period is empty: --to must be after --from")
    index = settings.index_alerts_pattern
    query = _period_query(start_ms, end_ms, tenant)
    current = fold_buckets(iter_composite(es_client, index, query, page_size), registry)
    length = end_ms - start_ms
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
    p90 = ((aggs.get("ttd_pct") or {}).get("values") or {}).get("90.0")
    status = current.cells.get("status", {})
    summary: dict[str, float | int | None] = {
        "alerts": current.count,
        "previous_alerts": previous.count,
        "change_pct": _change(current.count, previous.count),
        "tenants": len(current.tenants),
        "open": status.get("open", {}).get("count", 0),
        "acknowledged": status.get("acknowledged", {}).get("count", 0),
        "closed": status.get("closed", {}).get("count", 0),
        "ttd_mean_ms": round(mean, 1) if mean is not None else None,
        "ttd_p90_ms": round(p90, 1) if p90 is not None else None,
    }
    return Report(
        start_ms=start_ms,
        end_ms=end_ms,
        tenant=tenant,
        generated_ms=int(time.time() * 1000),
        summary=summary,
        tables=_tables(current, previous),
        tenants=frozenset(current.tenants | previous.tenants),
    )
