"""SOC overview: how threatened the cloud is, what is under way, and where to look next.

It opens with the awareness stage's view (``awareness/``): the cloud's threat level of the latest
minute (the stat in the level's colour: blue, yellow, orange, red, from ``ssa-threat-*``
documents of tenant ``_cloud``), a tile per tenant with its latest level, the open incidents by the
kill-chain stage they reached (``ssa-incidents-*``, in the order of ``awareness.killchain.STAGES``)
and the latest early warnings (``ssa-warnings-*``); then the alert panels.

"Latest" is the newest minute with a threat document in the time range: a ``terms`` bucket on
``ts`` ordered by key, descending, size 1 (per tenant for the tiles). One document per tenant and
minute exists (``doc_id`` of tenant and minute), so that bucket holds exactly the latest document,
at the cost of one bucket per tenant (a ``date_histogram`` per tenant would cost a bucket per
tenant and minute, past Elasticsearch's ``search.max_buckets`` with a few hundred tenants over a
day), and without ``top_metrics``, which the project's embedded Elasticsearch node (server jar
without the x-pack modules) does not have.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from grafana_foundation_sdk.builders import bargauge, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.fields import TIME_FIELDS
from dashboards.panels import (
    ALERTS_DS,
    INCIDENTS_DS,
    THREAT_DS,
    WARNINGS_DS,
    avg,
    count,
    dashboard_url,
    date_histogram,
    field_link,
    filters,
    level_mappings,
    level_rank_thresholds,
    link,
    max_,
    percentiles,
    query,
    raw_data,
    terms,
    transformation,
)

__all__ = ["CLOUD", "KILL_CHAIN_STAGES", "SLUG", "UID", "build", "overview_searches", "overview_targets"]

UID: Final = "ssa-soc-overview"
SLUG: Final = "ssa-soc-overview"
TENANT_UID: Final = "ssa-tenant"
TENANT_SLUG: Final = "ssa-tenant-view"
CLOUD: Final = "_cloud"  # the tenant value of the cloud's threat documents (awareness.threat.CLOUD)
# Kill-chain stages in attack order (awareness.killchain.STAGES; a test checks they agree).
KILL_CHAIN_STAGES: Final[tuple[str, ...]] = (
    "reconnaissance",
    "credential_access",
    "privilege_escalation",
    "lateral_movement",
    "collection",
    "exfiltration",
    "impact",
)


def _tenant_url(value: str) -> str:
    return dashboard_url(TENANT_UID, TENANT_SLUG, {"tenant": value})


def overview_targets() -> dict[str, es.Dataquery]:
    """The awareness panels' queries by name (fresh builders each call). The board's panels and
    ``ssa report``'s SOC overview section (through :func:`overview_searches`) both run these."""
    return {
        "cloud_level": query(
            f"tenant:{CLOUD}",
            [max_("level_rank", "1"), max_("index", "2")],
            [terms("ts", "3", size=1, order="desc", order_by="_key")],
            family="threat",
        ),
        "tenant_levels": query(
            f"kind:threat AND NOT tenant:{CLOUD}",
            [max_("level_rank", "1"), max_("index", "2")],
            [
                terms("tenant", "3", size=500, order="asc", order_by="_key"),
                terms("ts", "4", size=1, order="desc", order_by="_key"),
            ],
            family="threat",
        ),
        "open_by_stage": query(
            "status:open",
            [count()],
            [filters("2", {label: f"stage:{stage}" for stage, label in _stage_labels().items()})],
            family="incidents",
        ),
        "warnings": query("*", [raw_data(50)], family="warnings"),
    }


Flatten = Callable[[Mapping[str, Any]], list[dict[str, Any]]]


def overview_searches(
    start_ms: int, end_ms: int, interval: str, who: str = CLOUD
) -> dict[str, tuple[str, dict[str, Any], Flatten]]:
    """Name -> (index family, ``_search`` body, rows of a response) of the SOC overview's queries
    over ``[start_ms, end_ms]``, as Grafana's datasource sends them (:mod:`dashboards.translate`),
    plus ``course``: the tenant view's "Threat index (highest per interval)" panel for ``who``
    (the cloud, ``_cloud``, or one tenant) at ``interval`` (``1h``, ``1d`` ...)."""
    from dashboards import board_tenant
    from dashboards.translate import flatten_response, translate_target

    jsons = {name: _target_json(t) for name, t in overview_targets().items()}
    tenant_board = json.loads(json.dumps(board_tenant.build().build(), cls=JSONEncoder))
    panels = [p for p in tenant_board["panels"] if p.get("id") == board_tenant.THREAT_PANEL_ID]
    course: dict[str, Any] = panels[0]["targets"][0]
    course["bucketAggs"][0].setdefault("settings", {})["interval"] = interval
    jsons["course"] = course
    families = {"cloud_level": "threat", "tenant_levels": "threat", "open_by_stage": "incidents",
                "warnings": "warnings", "course": "threat"}  # fmt: skip
    out: dict[str, tuple[str, dict[str, Any], Flatten]] = {}
    for name, target in jsons.items():
        body = translate_target(
            target, time_field=TIME_FIELDS[families[name]], start_ms=start_ms, end_ms=end_ms,
            variables={"tenant": who},
        )  # fmt: skip
        out[name] = (families[name], body, functools.partial(flatten_response, target))
    return out


def _target_json(target: es.Dataquery) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(target.build(), cls=JSONEncoder))
    return data


def _awareness_panels() -> list[cogbuilder.Builder[dm.Panel]]:
    targets = overview_targets()
    cloud_level = (
        stat.Panel()
        .id(11)
        .title("Cloud threat level")
        .description(
            "The whole cloud's level in the latest minute with a threat document: the highest tenant "
            "index raised by the share of tenants at yellow or above (awareness.threat.cloud_threat). "
            "Blue < 25 <= yellow < 50 <= orange < 75 <= red."
        )
        .datasource(THREAT_DS)
        .with_target(targets["cloud_level"])
        .reduce_options(
            cb.ReduceDataOptions().calcs(["lastNotNull"]).values(True).fields("/^Max level_rank$/")
        )
        .mappings(level_mappings())
        .thresholds(level_rank_thresholds())
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .span(6)
        .height(6)
    )
    tenant_levels = (
        stat.Panel()
        .id(12)
        .title("Tenants by threat level (latest minute)")
        .description(
            "One tile per tenant in its latest level, highest first. Click a tile for the tenant's view."
        )
        .datasource(THREAT_DS)
        .with_target(targets["tenant_levels"])
        .with_transformation(transformation("sortBy", {"sort": [{"field": "Max level_rank", "desc": True}]}))
        .reduce_options(
            cb.ReduceDataOptions().calcs(["lastNotNull"]).values(True).fields("/^Max level_rank$/")
        )
        .mappings(level_mappings())
        .thresholds(level_rank_thresholds())
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .data_links([link("Tenant view", _tenant_url("${__data.fields.tenant}"))])
        .span(18)
        .height(6)
    )
    by_stage = (
        bargauge.Panel()
        .id(13)
        .title("Open incidents by kill-chain stage")
        .description(
            "Open incidents (ssa-incidents-*, status open, last seen in the time range) by the furthest "
            "stage their alerts reached, in attack order."
        )
        .datasource(INCIDENTS_DS)
        .with_target(targets["open_by_stage"])
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(True))
        .orientation(cm.VizOrientation.HORIZONTAL)
        .span(10)
        .height(8)
    )
    warnings = (
        table.Panel()
        .id(14)
        .title("Latest early warnings")
        .description(
            "A signal above its forecast interval and projected to lift the tenant to the next level "
            "within the horizon (awareness.warnings). Newest first; click a tenant for its forecasts."
        )
        .datasource(WARNINGS_DS)
        .with_target(targets["warnings"])
        .with_transformation(
            transformation(
                "organize",
                {
                    "includeByName": {
                        name: True
                        for name in (
                            "ts",
                            "tenant",
                            "level",
                            "signal",
                            "observed",
                            "upper",
                            "projected",
                            "reason",
                        )
                    },
                    "indexByName": {"ts": 0, "tenant": 1, "level": 2, "signal": 3},
                },
            )
        )
        .override_by_name("tenant", [field_link("Tenant view", _tenant_url("${__data.fields.tenant}"))])
        .override_by_name(
            "level",
            [
                dm.DynamicConfigValue(id_val="mappings", value=[_text_level_mapping()]),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
            ],
        )
        .span(14)
        .height(8)
    )
    return [cloud_level, tenant_levels, by_stage, warnings]


def _stage_labels() -> dict[str, str]:
    """Stage -> bar label, numbered in attack order: Grafana sorts the buckets of a ``filters``
    aggregation by label (so does Elasticsearch), and the numbers keep the kill chain's order."""
    return {stage: f"{n} {stage.replace('_', ' ')}" for n, stage in enumerate(KILL_CHAIN_STAGES, start=1)}


def _text_level_mapping() -> dict[str, object]:
    """A value mapping of the level names (``yellow`` ...) to their colour, as Grafana stores it."""
    return {
        "type": "value",
        "options": {
            level: {"color": level, "index": rank}
            for rank, level in enumerate(("blue", "yellow", "orange", "red"))
        },
    }


def build() -> db.Dashboard:
    awareness = _awareness_panels()
    alerts_over_time = (
        timeseries.Panel()
        .id(1)
        .title("Alerts over time by severity")
        .datasource(ALERTS_DS)
        .with_target(query("*", [count()], [terms("severity", "2", size=4), date_histogram("3")]))
        .draw_style(cm.GraphDrawStyle.BARS)
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        .fill_opacity(80)
        .span(16)
        .height(8)
    )
    open_alerts = (
        stat.Panel()
        .id(2)
        .title("Open alerts")
        .description("Alerts whose status is open (sum over the time range).")
        .datasource(ALERTS_DS)
        .with_target(query("status:open", [count()], [date_histogram("2")]))
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(False))
        .span(8)
        .height(8)
    )
    critical_table = (
        table.Panel()
        .id(3)
        .title("Open critical alerts")
        .description("Newest first. Click a tenant for its view.")
        .datasource(ALERTS_DS)
        .with_target(query("status:open AND severity:critical", [raw_data(100)]))
        .with_transformation(
            transformation(
                "organize",
                {
                    "includeByName": {
                        name: True
                        for name in (
                            "ts",
                            "tenant",
                            "entity.type",
                            "entity.id",
                            "category",
                            "attack.technique_id",
                            "summary",
                            "alert_id",
                        )
                    },
                    "indexByName": {"ts": 0, "tenant": 1, "entity.type": 2, "entity.id": 3, "summary": 4},
                },
            )
        )
        .override_by_name("tenant", [field_link("Tenant view", _tenant_url("${__data.fields.tenant}"))])
        .span(24)
        .height(9)
    )
    top_tenants = (
        bargauge.Panel()
        .id(4)
        .title("Top tenants by alerts")
        .datasource(ALERTS_DS)
        .with_target(query("*", [count()], [terms("tenant", "2", size=10)]))
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(True))
        .data_links([link("Tenant view", _tenant_url("${__data.fields.tenant}"))])
        .span(8)
        .height(8)
    )
    top_categories = (
        piechart.Panel()
        .id(5)
        .title("Alerts by category")
        .datasource(ALERTS_DS)
        .with_target(query("*", [count()], [terms("category", "2", size=10)]))
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(True))
        .span(8)
        .height(8)
    )
    techniques = (
        table.Panel()
        .id(6)
        .title("ATT&CK techniques seen")
        .datasource(ALERTS_DS)
        .with_target(
            query(
                "*",
                [count()],
                [terms("attack.technique_id", "2", size=30), terms("attack.technique", "3", size=1)],
            )
        )
        .span(8)
        .height(8)
    )
    ttd_by_severity = (
        table.Panel()
        .id(7)
        .title("Time to detect by severity")
        .description("ttd_ms = ts - first_seen: first evidence event to alert.")
        .datasource(ALERTS_DS)
        .with_target(
            query("*", [avg("ttd_ms", "1"), percentiles("ttd_ms", "3")], [terms("severity", "2", size=4)])
        )
        .unit("ms")
        .span(12)
        .height(8)
    )
    ttd_over_time = (
        timeseries.Panel()
        .id(8)
        .title("Time to detect (p50, p90) over time")
        .datasource(ALERTS_DS)
        .with_target(query("*", [percentiles("ttd_ms", "1")], [date_histogram("2")]))
        .unit("ms")
        .span(12)
        .height(8)
    )
    return (
        db.Dashboard("SSA / SOC overview")
        .uid(UID)
        .tags(["ssa", "soc"])
        .description(
            "The cloud's threat level, each tenant's level, open incidents by stage, early warnings; then "
            "alerts across all tenants: severity, open critical alerts, tenants, ATT&CK, time to detect."
        )
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("utc")
        .with_panel(awareness[0])
        .with_panel(awareness[1])
        .with_panel(awareness[2])
        .with_panel(awareness[3])
        .with_panel(alerts_over_time)
        .with_panel(open_alerts)
        .with_panel(critical_table)
        .with_panel(top_tenants)
        .with_panel(top_categories)
        .with_panel(techniques)
        .with_panel(ttd_by_severity)
        .with_panel(ttd_over_time)
        .link(
            db.DashboardLink("SSA dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["ssa"])
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )
