"""Pipeline health from ``ssa-metrics-*``: events/s per topic, DLQ, consumer lag, detector errors.

The metrics documents hold per-minute counts, so panels bucket by a fixed ``1m`` and a
``calculateField`` transformation divides by 60 where the unit is per second.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import bargauge, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.panels import (
    METRICS_DS,
    dashboard_url,
    date_histogram,
    link,
    max_,
    query,
    sum_,
    terms,
    transformation,
)

__all__ = ["SLUG", "UID", "build"]

UID: Final = "ssa-pipeline-health"
SLUG: Final = "ssa-pipeline-health"


def _per_second(alias: str) -> dm.DataTransformerConfig:
    return transformation(
        "calculateField",
        {
            "mode": "binary",
            "binary": {"left": "Sum events", "operator": "/", "right": "60"},
            "alias": alias,
            "replaceFields": True,
        },
    )


def build() -> db.Dashboard:
    tenant_url = dashboard_url("ssa-tenant", "ssa-tenant-view", {"tenant": "${__field.labels.tenant}"})
    events = (
        timeseries.Panel()
        .id(1)
        .title("Events/s per topic")
        .datasource(METRICS_DS)
        .with_target(query("*", [sum_("events", "1")], [terms("topic", "2", size=10), date_histogram("3", "1m")]))
        .with_transformation(_per_second("events/s"))
        .unit("eps")
        .span(12)
        .height(8)
    )
    dlq = (
        timeseries.Panel()
        .id(2)
        .title("DLQ messages per minute by tenant")
        .datasource(METRICS_DS)
        .with_target(query("*", [sum_("dlq", "1")], [terms("tenant", "2", size=10), date_histogram("3", "1m")]))
        .data_links([link("Tenant view", tenant_url)])
        .unit("short")
        .span(12)
        .height(8)
    )
    lag = (
        timeseries.Panel()
        .id(3)
        .title("Consumer lag per topic (max)")
        .datasource(METRICS_DS)
        .with_target(query("*", [max_("consumer_lag", "1")], [terms("topic", "2", size=10), date_histogram("3")]))
        .unit("short")
        .span(12)
        .height(8)
    )
    errors = (
        timeseries.Panel()
        .id(4)
        .title("Detector errors per minute")
        .description("Needs the metrics field detector_errors (INDEX_FIELDS.md).")
        .datasource(METRICS_DS)
        .with_target(query("*", [sum_("detector_errors", "1")], [date_histogram("2", "1m")]))
        .span(12)
        .height(8)
    )
    dlq_by_tenant = (
        bargauge.Panel()
        .id(5)
        .title("DLQ total by tenant")
        .datasource(METRICS_DS)
        .with_target(query("*", [sum_("dlq", "1")], [terms("tenant", "2", size=10, order_by="1")]))
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(True))
        .data_links([link("Tenant view", dashboard_url("ssa-tenant", "ssa-tenant-view", {"tenant": "${__data.fields.tenant}"}))])
        .span(12)
        .height(8)
    )
    alerts = (
        timeseries.Panel()
        .id(6)
        .title("Alerts produced per minute")
        .datasource(METRICS_DS)
        .with_target(query("*", [sum_("alerts", "1")], [date_histogram("2", "1m")]))
        .span(12)
        .height(8)
    )
    return (
        db.Dashboard("SSA / Pipeline health")
        .uid(UID)
        .tags(["ssa", "pipeline"])
        .description("Throughput, dead-letter queue, Kafka consumer lag and detector errors of the pipeline.")
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_panel(events)
        .with_panel(dlq)
        .with_panel(lag)
        .with_panel(errors)
        .with_panel(dlq_by_tenant)
        .with_panel(alerts)
    )
