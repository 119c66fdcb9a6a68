"""Small helpers over grafana-foundation-sdk for the SSA dashboards.

The dashboards are built with Grafana's own typed builders (``grafana-foundation-sdk``, the
11.6 line, whose models match the Grafana 11/12 dashboard schema); this module only fixes the
project's conventions in one place: the Elasticsearch datasource uids (alerts, metrics, and the
awareness stage's incidents, threat levels and warnings), the time fields, query and aggregation
shorthands, and data links to the next view an analyst needs.
"""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import quote

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import elasticsearch as em

from dashboards.fields import TIME_FIELD, TIME_FIELDS

__all__ = [
    "ALERTS_DS",
    "ALERTS_DS_UID",
    "DS_FAMILY",
    "INCIDENTS_DS",
    "INCIDENTS_DS_UID",
    "LEVELS",
    "LEVEL_INDEX_THRESHOLDS",
    "METRICS_DS",
    "METRICS_DS_UID",
    "THREAT_DS",
    "THREAT_DS_UID",
    "WARNINGS_DS",
    "WARNINGS_DS_UID",
    "BucketAgg",
    "MetricAgg",
    "avg",
    "count",
    "dashboard_url",
    "date_histogram",
    "field_link",
    "filters",
    "level_index_thresholds",
    "level_mappings",
    "level_rank_thresholds",
    "link",
    "max_",
    "percentiles",
    "query",
    "raw_data",
    "sum_",
    "terms",
    "terms_variable",
    "transformation",
    "unique_count",
]

ALERTS_DS_UID: Final = "ssa-es-alerts"
METRICS_DS_UID: Final = "ssa-es-metrics"
ALERTS_DS: Final = dm.DataSourceRef(type_val="elasticsearch", uid=ALERTS_DS_UID)
METRICS_DS: Final = dm.DataSourceRef(type_val="elasticsearch", uid=METRICS_DS_UID)
INCIDENTS_DS_UID: Final = "ssa-es-incidents"
THREAT_DS_UID: Final = "ssa-es-threat"
WARNINGS_DS_UID: Final = "ssa-es-warnings"
INCIDENTS_DS: Final = dm.DataSourceRef(type_val="elasticsearch", uid=INCIDENTS_DS_UID)
THREAT_DS: Final = dm.DataSourceRef(type_val="elasticsearch", uid=THREAT_DS_UID)
WARNINGS_DS: Final = dm.DataSourceRef(type_val="elasticsearch", uid=WARNINGS_DS_UID)
# Datasource uid -> index family (dashboards.fields.TIME_FIELDS gives its time field).
DS_FAMILY: Final[dict[str, str]] = {
    ALERTS_DS_UID: "alerts",
    METRICS_DS_UID: "metrics",
    INCIDENTS_DS_UID: "incidents",
    THREAT_DS_UID: "threat",
    WARNINGS_DS_UID: "warnings",
}

# The four warning levels of the threat index (awareness.threat.LEVELS, rank 0-3), each shown in
# its own colour, and the index at which each level starts: awareness.threat's default
# ``level_thresholds`` (tests/test_dashboards_sample.py checks both against awareness.threat).
LEVELS: Final[tuple[str, ...]] = ("blue", "yellow", "orange", "red")
LEVEL_INDEX_THRESHOLDS: Final[dict[str, float]] = {"yellow": 25.0, "orange": 50.0, "red": 75.0}

BucketAgg = cogbuilder.Builder[em.BucketAggregation]
MetricAgg = cogbuilder.Builder[em.MetricAggregation]


def query(
    lucene: str,
    metrics: list[MetricAgg],
    buckets: list[BucketAgg] | None = None,
    *,
    ref: str = "A",
    alias: str | None = None,
    family: str = "alerts",
) -> es.Dataquery:
    """One Elasticsearch target: Lucene ``lucene``, ``metrics`` under nested ``buckets``, on the
    time field of index ``family`` (``alerts``, ``metrics``, ``incidents``, ``threat``, ``warnings``)."""
    time_field = TIME_FIELDS[family]
    target = es.Dataquery().ref_id(ref).query(lucene).time_field(time_field).metrics(metrics)
    target = target.bucket_aggs(buckets or [])
    if alias:
        target = target.alias(alias)
    return target


def count(agg_id: str = "1") -> es.Count:
    return es.Count().id(agg_id)


def avg(field: str, agg_id: str) -> es.Average:
    return es.Average().id(agg_id).field(field)


def max_(field: str, agg_id: str) -> es.Max:
    return es.Max().id(agg_id).field(field)


def sum_(field: str, agg_id: str) -> es.Sum:
    return es.Sum().id(agg_id).field(field)


def unique_count(field: str, agg_id: str) -> es.UniqueCount:
    return es.UniqueCount().id(agg_id).field(field)


def percentiles(field: str, agg_id: str, percents: tuple[str, ...] = ("50", "90")) -> es.Percentiles:
    settings = es.ElasticsearchPercentilesSettings().percents(list(percents))
    return es.Percentiles().id(agg_id).field(field).settings(settings)


def raw_data(size: int = 100, agg_id: str = "1") -> es.RawData:
    return es.RawData().id(agg_id).settings(es.ElasticsearchRawDataSettings().size(str(size)))


def terms(
    field: str,
    agg_id: str,
    *,
    size: int = 10,
    order: str = "desc",
    order_by: str = "_count",
    min_doc_count: int = 1,
    missing: str | None = None,
) -> es.Terms:
    """Buckets by ``field``; documents without it are left out unless ``missing`` names their bucket."""
    settings = (
        es.ElasticsearchTermsSettings()
        .size(str(size))
        .order(em.TermsOrder(order))
        .order_by(order_by)
        .min_doc_count(str(min_doc_count))
    )
    if missing is not None:
        settings = settings.missing(missing)
    return es.Terms().id(agg_id).field(field).settings(settings)


def date_histogram(agg_id: str, interval: str = "auto", field: str = TIME_FIELD) -> es.DateHistogram:
    settings = es.ElasticsearchDateHistogramSettings().interval(interval).min_doc_count("0")
    return es.DateHistogram().id(agg_id).field(field).settings(settings)


def filters(agg_id: str, named: dict[str, str]) -> es.Filters:
    items: list[cogbuilder.Builder[em.Filter]] = [
        es.Filter().label(label).query(q) for label, q in named.items()
    ]
    return es.Filters().id(agg_id).settings(es.ElasticsearchFiltersSettings().filters(items))


def level_rank_thresholds() -> db.ThresholdsConfig:
    """Colour of a ``level_rank`` (0 blue, 1 yellow, 2 orange, 3 red)."""
    steps = [
        dm.Threshold(value=None if rank == 0 else float(rank), color=level)
        for rank, level in enumerate(LEVELS)
    ]
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def level_index_thresholds() -> db.ThresholdsConfig:
    """Colour of a threat ``index`` (0-100) by the level band it falls in."""
    steps = [dm.Threshold(value=None, color=LEVELS[0])]
    steps += [dm.Threshold(value=LEVEL_INDEX_THRESHOLDS[level], color=level) for level in LEVELS[1:]]
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def level_mappings() -> list[dm.ValueMapping]:
    """``level_rank`` 0-3 shown as the level's name in upper case, in its colour."""
    options = {
        str(rank): dm.ValueMappingResult(text=level.upper(), color=level, index=rank)
        for rank, level in enumerate(LEVELS)
    }
    return [dm.ValueMap(options=options)]


def transformation(kind: str, options: dict[str, object]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=kind, options=options)


def dashboard_url(uid: str, slug: str, variables: dict[str, str] | None = None) -> str:
    """Relative URL of dashboard ``uid`` keeping the time range; ``variables`` values may be
    Grafana interpolations such as ``${__data.fields.tenant}`` (left unescaped)."""
    parts = [f"var-{quote(name)}={value}" for name, value in (variables or {}).items()]
    parts.append("${__url_time_range}")
    return f"/d/{uid}/{slug}?" + "&".join(parts)


def link(title: str, url: str) -> db.DashboardLink:
    """A data link (Grafana reads title, url, targetBlank; the schema types it as DashboardLink)."""
    return (
        db.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(url)
        .target_blank(False)
        .include_vars(False)
        .keep_time(False)
    )


def field_link(title: str, url: str) -> dm.DynamicConfigValue:
    """Override property putting a data link on one column of a table."""
    return dm.DynamicConfigValue(id_val="links", value=[link(title, url).build()])


def terms_variable(
    name: str,
    label: str,
    field: str,
    *,
    lucene: str | None = None,
    include_all: bool = False,
    datasource: dm.DataSourceRef = ALERTS_DS,
) -> db.QueryVariable:
    """A ``$name`` variable listing the values of ``field`` (Elasticsearch ``terms`` find query).

    ``lucene`` narrows the documents the values come from (it may use other variables). With
    ``include_all`` the "All" option sends ``*`` so a Lucene ``field:$name`` matches any value.
    """
    find: dict[str, object] = {"find": "terms", "field": field, "size": 500}
    if lucene:
        find["query"] = lucene
    variable = (
        db.QueryVariable(name)
        .label(label)
        .datasource(datasource)
        .query(json.dumps(find))
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if include_all:
        variable = variable.include_all(True).all_value("*")
    return variable
