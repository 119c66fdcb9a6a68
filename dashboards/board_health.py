"""Pipeline health from ``ssa-metrics-*``: events/s per topic, DLQ, consumer lag, detector
failures and overflows, alerts/min.

Reads the documents streams/ writes to ``ssa-metrics-*``: posture per tenant, telemetry kind and
minute (``events_per_s``), ``kind: alert`` counts, ``kind: dlq`` records (``source``) and
``kind: lag`` samples per topic, and ``kind: detector`` records of the detectors' failures and
overflows per minute (``streams.detector_health``). Per-minute panels use a fixed ``1m`` interval.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import bargauge, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db

from dashboards.panels import (
    METRICS_DS,
    dashboard_url,
    date_histogram,
    link,
    max_,
    query,
    sum_,
    terms,
)

__all__ = ["SLUG", "UID", "build"]

UID: Final = "ssa-pipeline-health"
SLUG: Final = "ssa-pipeline-health"


TELEMETRY: Final = "kind:(flow OR process OR audit OR auth)"


def build() -> db.Dashboard:
    tenant_url = dashboard_url("ssa-tenant", "ssa-tenant-view", {"tenant": "${__field.labels.tenant}"})
    events = (
        timeseries.Panel()
        .id(1)
        .title("Events/s per telemetry topic (ssa.telemetry.<kind>)")
        .description("Sum of the per-minute events_per_s of every tenant, by telemetry kind.")
        .datasource(METRICS_DS)
        .with_target(
            query(
                TELEMETRY,
                [sum_("events_per_s", "1")],
                [terms("kind", "2", size=10), date_histogram("3", "1m")],
            )
        )
        .unit("eps")
        .span(12)
        .height(8)
    )
    dlq = (
        timeseries.Panel()
        .id(2)
        .title("DLQ records per minute by input format")
        .datasource(METRICS_DS)
        .with_target(
            query("kind:dlq", [sum_("dlq", "1")], [terms("source", "2", size=10), date_histogram("3", "1m")])
        )
        .unit("short")
        .span(12)
        .height(8)
    )
    lag = (
        timeseries.Panel()
        .id(3)
        .title("Consumer lag per topic (max)")
        .datasource(METRICS_DS)
        .with_target(
            query(
                "kind:lag", [max_("consumer_lag", "1")], [terms("topic", "2", size=10), date_histogram("3")]
            )
        )
        .unit("short")
        .span(12)
        .height(8)
    )
    detectors = (
        timeseries.Panel()
        .id(4)
        .title("Detector failures and overflows per minute by detector")
        .description(
            "Events a detector failed on (detector_errors: the engine logged the error and the other "
            "detectors carried on) and events a full pane could not track (overflow: "
            "engine.max_keys_per_window): events that rule never judged. Zero lines are not drawn."
        )
        .datasource(METRICS_DS)
        .with_target(
            query(
                "kind:detector",
                [sum_("detector_errors", "1"), sum_("overflow", "4")],
                [terms("detector", "2", size=20), date_histogram("3", "1m")],
            )
        )
        .unit("short")
        .span(12)
        .height(8)
    )
    dlq_total = (
        bargauge.Panel()
        .id(5)
        .title("DLQ total by input format")
        .datasource(METRICS_DS)
        .with_target(query("kind:dlq", [sum_("dlq", "1")], [terms("source", "2", size=10, order_by="1")]))
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(True))
        .span(12)
        .height(8)
    )
    alerts = (
        timeseries.Panel()
        .id(6)
        .title("Alerts produced per minute by tenant")
        .datasource(METRICS_DS)
        .with_target(
            query(
                "kind:alert",
                [sum_("alerts", "1")],
                [terms("tenant", "2", size=10), date_histogram("3", "1m")],
            )
        )
        .data_links([link("Tenant view", tenant_url)])
        .span(12)
        .height(8)
    )
    return (
        db.Dashboard("SSA / Pipeline health")
        .uid(UID)
        .tags(["ssa", "pipeline"])
        .description("Throughput, dead-letter queue, Kafka consumer lag and alert rate of the pipeline.")
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_panel(events)
        .with_panel(dlq)
        .with_panel(lag)
        .with_panel(detectors)
        .with_panel(dlq_total)
        .with_panel(alerts)
    )
