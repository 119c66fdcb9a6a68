"""Tenant view: one tenant (``$tenant``): its alerts, traffic posture, peers, and how far its
windows stand above the baseline the anomaly detectors learnt for it (the job's ``kind: anomaly``
metrics, ``streams.posture.anomaly_records``; empty while a tenant's baseline is still warming up).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import piechart, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    ALERTS_DS,
    METRICS_DS,
    count,
    dashboard_url,
    date_histogram,
    field_link,
    max_,
    query,
    raw_data,
    sum_,
    terms,
    terms_variable,
    transformation,
)

__all__ = ["SLUG", "UID", "build"]

UID: Final = "ssa-tenant"
SLUG: Final = "ssa-tenant-view"
TENANT_FILTER: Final = "tenant:$tenant"


def build() -> db.Dashboard:
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
        .description("One tenant: alerts, traffic posture from ssa-metrics-*, peers.")
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("utc")
        .with_variable(terms_variable("tenant", "Tenant", "tenant"))
        .with_variable(entity)
        .with_panel(by_category)
        .with_panel(by_status)
        .with_panel(alerts)
        .with_panel(traffic)
        .with_panel(peers)
        .with_panel(anomaly)
    )
