"""SOC overview: what is happening across all tenants, and where to look next."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import bargauge, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    ALERTS_DS,
    avg,
    count,
    dashboard_url,
    date_histogram,
    field_link,
    link,
    percentiles,
    query,
    raw_data,
    terms,
    transformation,
)

__all__ = ["SLUG", "UID", "build"]

UID: Final = "ssa-soc-overview"
SLUG: Final = "ssa-soc-overview"
TENANT_UID: Final = "ssa-tenant"
TENANT_SLUG: Final = "ssa-tenant-view"


def _tenant_url(value: str) -> str:
    return dashboard_url(TENANT_UID, TENANT_SLUG, {"tenant": value})


def build() -> db.Dashboard:
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
            "Alerts across all tenants: severity, open critical alerts, tenants, ATT&CK, time to detect."
        )
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("utc")
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
