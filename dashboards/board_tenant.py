"""Tenant view: one tenant (``$tenant``): its threat level over time, its incidents with their
kill chains, its early warnings with the forecasts and intervals they were raised on; then its
alerts, traffic posture, peers, and how far its windows stand above the baseline the anomaly
detectors learnt for it (the job's ``kind: anomaly`` metrics, ``streams.posture.anomaly_records``;
empty while a tenant's baseline is still warming up).

Threat level: the ``ssa-threat-*`` documents of the tenant (one a minute), the index 0-100 with the
level bands coloured behind it (blue < 25 <= yellow < 50 <= orange < 75 <= red, the default
``awareness.threat.level_thresholds``) and the level as a timeline; per display interval the
highest index and level of its minutes, so a red minute is never averaged away.

Incidents: every incident document of the tenant whose last evidence is in the time range, except
those merged into another (``close_reason: merged``: the incident that absorbed them is listed).

Forecasts: a warning document carries the signal's observed value, the seasonal forecast and its
prediction interval (``lower``, ``upper``) of the minute it was raised; the panel plots them per
signal at those minutes (the forecaster's every-minute state is not written anywhere).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import piechart, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    ALERTS_DS,
    INCIDENTS_DS,
    METRICS_DS,
    THREAT_DS,
    WARNINGS_DS,
    count,
    dashboard_url,
    date_histogram,
    field_link,
    level_index_thresholds,
    level_mappings,
    level_rank_thresholds,
    max_,
    query,
    raw_data,
    sum_,
    terms,
    terms_variable,
    transformation,
)

__all__ = ["SLUG", "THREAT_PANEL_ID", "UID", "build"]

UID: Final = "ssa-tenant"
SLUG: Final = "ssa-tenant-view"
TENANT_FILTER: Final = "tenant:$tenant"
THREAT_PANEL_ID: Final = 11  # the threat index panel, which the alert rules link to
INCIDENTS_FILTER: Final = TENANT_FILTER + " AND NOT close_reason:merged"


def _awareness_panels() -> list[cogbuilder.Builder[dm.Panel]]:
    index = (
        timeseries.Panel()
        .id(THREAT_PANEL_ID)
        .title("Threat index (highest per interval), on the level bands")
        .description(
            "awareness.threat: open incidents (severity, stage, recency, criticality) and posture signals, "
            "0-100. Bands: blue < 25 <= yellow < 50 <= orange < 75 <= red."
        )
        .datasource(THREAT_DS)
        .with_target(query(TENANT_FILTER, [max_("index", "1")], [date_histogram("2")], family="threat"))
        .min(0)
        .max(100)
        .thresholds(level_index_thresholds())
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.AREA))
        .span(16)
        .height(7)
    )
    level = (
        statetimeline.Panel()
        .id(12)
        .title("Threat level (highest per interval)")
        .datasource(THREAT_DS)
        .with_target(query(TENANT_FILTER, [max_("level_rank", "1")], [date_histogram("2")], family="threat"))
        .mappings(level_mappings())
        .thresholds(level_rank_thresholds())
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .span(8)
        .height(7)
    )
    incidents = (
        table.Panel()
        .id(13)
        .title("Incidents of this tenant")
        .description(
            "Latest evidence first. Stage: the furthest kill-chain stage reached; tactics: the ATT&CK "
            "tactics of its alerts in the order first seen. Incidents merged into another are left out."
        )
        .datasource(INCIDENTS_DS)
        .with_target(query(INCIDENTS_FILTER, [raw_data(100)], family="incidents"))
        .with_transformation(
            transformation(
                "organize",
                {
                    "includeByName": {
                        name: True
                        for name in (
                            "title",
                            "status",
                            "severity",
                            "stage",
                            "tactics",
                            "alert_count",
                            "first_seen",
                            "last_seen",
                            "incident_id",
                        )
                    },
                    "indexByName": {"title": 0, "status": 1, "severity": 2, "stage": 3, "tactics": 4},
                },
            )
        )
        .override_by_name("first_seen", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .override_by_name("last_seen", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .span(24)
        .height(8)
    )
    forecasts = (
        timeseries.Panel()
        .id(14)
        .title("Early warnings: observed value, forecast and its interval per signal")
        .description(
            "At each warning: the signal's value, its seasonal forecast and the prediction interval "
            "(lower, upper) of that minute (awareness.forecast)."
        )
        .datasource(WARNINGS_DS)
        .with_target(
            query(
                TENANT_FILTER,
                [max_("observed", "1"), max_("forecast", "2"), max_("lower", "3"), max_("upper", "4")],
                [terms("signal", "5", size=20, order="asc", order_by="_key"), date_histogram("6")],
                family="warnings",
            )
        )
        .show_points(cm.VisibilityMode.ALWAYS)
        .point_size(8)
        .span(12)
        .height(8)
    )
    warnings = (
        table.Panel()
        .id(15)
        .title("Early warnings of this tenant")
        .datasource(WARNINGS_DS)
        .with_target(query(TENANT_FILTER, [raw_data(100)], family="warnings"))
        .with_transformation(
            transformation(
                "organize",
                {
                    "includeByName": {
                        name: True
                        for name in (
                            "ts",
                            "signal",
                            "current_level",
                            "level",
                            "projected",
                            "horizon_ms",
                            "reason",
                        )
                    }
                },
            )
        )
        .override_by_name("horizon_ms", [dm.DynamicConfigValue(id_val="unit", value="ms")])
        .span(12)
        .height(8)
    )
    return [index, level, incidents, forecasts, warnings]


def build() -> db.Dashboard:
    awareness = _awareness_panels()
    by_category = (
        timeseries.Panel()
        .id(1)
        .title("Alerts over time by category")
        .datasource(ALERTS_DS)
        .with_target(query(TENANT_FILTER, [count()], [terms("category", "2", size=8), date_histogram("3")]))
        .draw_style(cm.GraphDrawStyle.BARS)
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        .span(16)
        .height(8)
    )
    by_status = (
        piechart.Panel()
        .id(2)
        .title("Alert status")
        .datasource(ALERTS_DS)
        .with_target(query(TENANT_FILTER, [count()], [terms("status", "2", size=3)]))
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(True))
        .span(8)
        .height(8)
    )
    alerts = (
        table.Panel()
        .id(3)
        .title("Alerts of this tenant")
        .description("Newest first; an entity links to the same view filtered on it.")
        .datasource(ALERTS_DS)
        .with_target(query(TENANT_FILTER + " AND entity.id:$entity", [raw_data(200)]))
        .with_transformation(
            transformation(
                "organize",
                {
                    "includeByName": {
                        name: True
                        for name in (
                            "ts",
                            "severity",
                            "status",
                            "category",
                            "entity.type",
                            "entity.id",
                            "summary",
                            "alert_id",
                        )
                    }
                },
            )
        )
        .override_by_name(
            "entity.id",
            [
                field_link(
                    "Alerts of this entity",
                    dashboard_url(
                        UID, SLUG, {"tenant": "${tenant}", "entity": '${__data.fields["entity.id"]}'}
                    ),
                )
            ],
        )
        .span(24)
        .height(9)
    )
    traffic = (
        timeseries.Panel()
        .id(4)
        .title("Traffic posture: events, flows, bytes")
        .datasource(METRICS_DS)
        .with_target(
            query(
                TENANT_FILTER,
                [sum_("events", "1"), sum_("flows", "2"), sum_("bytes", "3")],
                [date_histogram("4")],
            )
        )
        .override_by_name("Sum bytes", [dm.DynamicConfigValue(id_val="unit", value="bytes")])
        .span(12)
        .height(8)
    )
    peers = (
        timeseries.Panel()
        .id(5)
        .title("Distinct peers and destination ports (max per interval)")
        .datasource(METRICS_DS)
        .with_target(
            query(
                TENANT_FILTER,
                [max_("distinct_peers", "1"), max_("distinct_dst_ports", "2")],
                [date_histogram("3")],
            )
        )
        .span(12)
        .height(8)
    )
    anomaly = (
        timeseries.Panel()
        .id(6)
        .title("Anomaly score of the tenant's windows (95th and 99th percentile, max per interval)")
        .description(
            "1 - p-value against the tenant's own learnt baseline: 0.999 and above is where an anomaly "
            "alert is raised. Empty until the tenant's baseline has warmed up."
        )
        .datasource(METRICS_DS)
        .with_target(
            query(
                TENANT_FILTER + " AND kind:anomaly",
                [max_("anomaly_p95", "1"), max_("anomaly_p99", "2")],
                [date_histogram("3")],
            )
        )
        .span(24)
        .height(7)
    )
    entity = terms_variable("entity", "Entity", "entity.id", lucene=TENANT_FILTER, include_all=True)
    return (
        db.Dashboard("SSA / Tenant view")
        .uid(UID)
        .tags(["ssa", "tenant"])
        .description(
            "One tenant: threat level over time, incidents, early warnings with their forecasts; alerts, "
            "traffic posture from ssa-metrics-*, peers."
        )
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("utc")
        .with_variable(terms_variable("tenant", "Tenant", "tenant"))
        .with_variable(entity)
        .with_panel(awareness[0])
        .with_panel(awareness[1])
        .with_panel(awareness[2])
        .with_panel(awareness[3])
        .with_panel(awareness[4])
        .with_panel(by_category)
        .with_panel(by_status)
        .with_panel(alerts)
        .with_panel(traffic)
        .with_panel(peers)
        .with_panel(anomaly)
    )
