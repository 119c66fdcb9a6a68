"""Cross-tenant leakage (T1530, T1537, T1048): who reached whom without a peering or share.

A tenant-to-tenant matrix of ``cross_tenant_leak`` alerts from ``evidence.src_tenant`` (the tenant
acting) to ``evidence.dst_tenant`` (the tenant reached or granted), split by ``evidence.channel``
(``flow``, or the cloud service of a control-plane call: ``storage``, ``snapshot``, ``image``, ...),
with ``evidence.resource`` for those calls. Every cross-tenant detector fills them
(``detectors/rules/cross_tenant``, INDEX_FIELDS.md).
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.models import common as cm

from dashboards.panels import (
    ALERTS_DS,
    count,
    dashboard_url,
    date_histogram,
    field_link,
    query,
    raw_data,
    terms,
    terms_variable,
    transformation,
)

__all__ = ["SLUG", "UID", "build"]

UID: Final = "ssa-cross-tenant"
SLUG: Final = "ssa-cross-tenant-leakage"
FILTER: Final = "category:cross_tenant_leak AND evidence.channel:$channel"


def _tenant_url(field: str) -> str:
    return dashboard_url("ssa-tenant", "ssa-tenant-view", {"tenant": '${__data.fields["' + field + '"]}'})


def build() -> db.Dashboard:
    matrix = (
        table.Panel()
        .id(1)
        .title("Unexpected flows and accesses: source tenant (rows) to target tenant (columns)")
        .datasource(ALERTS_DS)
        .with_target(
            query(
                FILTER,
                [count()],
                [terms("evidence.src_tenant", "2", size=50), terms("evidence.dst_tenant", "3", size=50)],
            )
        )
        .with_transformation(
            transformation(
                "groupingToMatrix",
                {
                    "rowField": "evidence.src_tenant",
                    "columnField": "evidence.dst_tenant",
                    "valueField": "Count",
                    "emptyValue": "zero",
                },
            )
        )
        .span(14)
        .height(10)
    )
    pairs = (
        table.Panel()
        .id(2)
        .title("Tenant pairs and channels")
        .datasource(ALERTS_DS)
        .with_target(
            query(
                FILTER,
                [count()],
                [
                    terms("evidence.src_tenant", "2", size=50),
                    terms("evidence.dst_tenant", "3", size=50),
                    terms("evidence.channel", "4", size=5),
                ],
            )
        )
        .override_by_name(
            "evidence.src_tenant", [field_link("Source tenant view", _tenant_url("evidence.src_tenant"))]
        )
        .override_by_name(
            "evidence.dst_tenant", [field_link("Target tenant view", _tenant_url("evidence.dst_tenant"))]
        )
        .span(10)
        .height(10)
    )
    by_channel = (
        timeseries.Panel()
        .id(3)
        .title("Leakage alerts over time by channel")
        .datasource(ALERTS_DS)
        .with_target(query(FILTER, [count()], [terms("evidence.channel", "2", size=5), date_histogram("3")]))
        .draw_style(cm.GraphDrawStyle.BARS)
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
        .span(24)
        .height(8)
    )
    alerts = (
        table.Panel()
        .id(4)
        .title("Cross-tenant alerts")
        .datasource(ALERTS_DS)
        .with_target(query(FILTER, [raw_data(200)]))
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
                            "evidence.src_tenant",
                            "evidence.dst_tenant",
                            "evidence.channel",
                            "evidence.resource",
                            "attack.technique_id",
                            "summary",
                            "alert_id",
                        )
                    }
                },
            )
        )
        .override_by_name(
            "evidence.src_tenant", [field_link("Source tenant view", _tenant_url("evidence.src_tenant"))]
        )
        .span(24)
        .height(9)
    )
    return (
        db.Dashboard("SSA / Cross-tenant leakage")
        .uid(UID)
        .tags(["ssa", "cross_tenant_leak"])
        .description("Tenant-to-tenant matrix of unexpected flows and accesses (no peering, no share).")
        .refresh("30s")
        .time("now-24h", "now")
        .timezone("utc")
        .with_variable(
            terms_variable(
                "channel",
                "Channel",
                "evidence.channel",
                lucene="category:cross_tenant_leak",
                include_all=True,
            )
        )
        .with_panel(matrix)
        .with_panel(pairs)
        .with_panel(by_channel)
        .with_panel(alerts)
    )
