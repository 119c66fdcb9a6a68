"""Grafana alert rules, provisioned as code: notify when a tenant's threat level is orange or red.

``rules_doc()`` is a Grafana *file provisioning* document for alert rules (``apiVersion: 1``,
``groups: [...]``; Grafana 9.1 and later read it from ``<provisioning>/alerting/*.yaml`` at start,
and the Admin API's ``provisioning/alerting/reload`` re-reads it). ``ssa dashboards build`` writes
it to ``built/provisioning/alerting/ssa-threat-rules.yaml``, beside the datasources and dashboards
that the compose file mounts at ``/etc/grafana/provisioning``. The shape follows Grafana's own
reader (``pkg/services/provisioning/alerting/rules_types.go``: group ``orgId``, ``name``,
``folder``, ``interval``; rule ``uid``, ``title``, ``condition``, ``data``, ``noDataState``,
``execErrState``, ``for``, ``annotations``, ``labels``, ``isPaused``, ``dashboardUid``,
``panelId``); tests/test_dashboards_schema.py checks it against that and against Grafana's
published JSON schemas of alert rules and server-side expressions (vendored in ``schema/``).

Each rule evaluates three queries, every ``INTERVAL`` (1 minute, the threat documents' cadence):

- ``A`` (the threat datasource, ``ssa-threat-*``): the highest ``level_rank`` per tenant (``terms``
  on ``tenant``, the cloud's own ``_cloud`` documents left out: the rules are per tenant) and per
  minute (``date_histogram`` of ``1m``) over the last ``LOOKBACK_S`` (30 minutes) of *wall-clock*
  time. One series per tenant, labelled ``tenant``: one alert instance per tenant.
- ``B`` (``reduce``, ``last``, non-numbers dropped): each tenant's level in its latest minute with
  a threat document. The look-back is 30 minutes and not 1 because threat documents are written
  in event time, when the job's watermark passes the minute: behind the wall clock by the
  watermark allowances (``flow_export_delay_ms``, 6 minutes by default) and any backlog. A tenant
  whose latest document is older than the look-back has no series (no data: ``OK``).
- ``C`` (``threshold``): ``B > 1.5`` for orange, ``B > 2.5`` for red. Ranks are integers 0-3, so
  ``> 1.5`` is ``level_rank >= 2`` (orange or red) and ``> 2.5`` is ``level_rank == 3`` (red).
  ``gt`` is the evaluator every Grafana with threshold expressions knows; ``gte`` and ``eq`` are in
  the 11.6 schema but not in earlier ones (Grafana's ``pkg/expr/query.types.json`` of early 2024
  lists only ``gt``, ``lt``, ``within_range``, ``outside_range``).

``for`` is ``0s``: the level already persists (an incident's points decay with a 30-minute half
life, an open escape holds orange, posture alone cannot reach red), and the issue asks for orange
within 2 minutes of an escape; a pending period would delay every notification by its length.
A red tenant fires both rules (labels ``level: red`` / ``level: orange``, ``severity: critical`` /
``warning``): a notification policy routes or inhibits on those labels. ``noDataState: OK`` (no
threat document in the look-back means no known threat; the pipeline-health board shows a
stopped pipeline), ``execErrState: Error`` (a failing query shows as an error, not as a threat).

Contact points and notification policies are not provisioned here: they name the SOC's own
receivers (mail, webhook, pager) and belong to the deployment.
"""

from __future__ import annotations

import json
from typing import Any, Final

from grafana_foundation_sdk.builders import expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import board_tenant
from dashboards.panels import THREAT_DS, THREAT_DS_UID, date_histogram, max_, query, terms

__all__ = [
    "EXPR_UID",
    "FOLDER",
    "GROUP",
    "INTERVAL",
    "LOOKBACK_S",
    "RULES",
    "ThreatRule",
    "rules_doc",
    "threat_query",
]

FOLDER: Final = "SSA"  # the dashboards' folder (build.provider_doc)
GROUP: Final = "ssa-threat-levels"
INTERVAL: Final = "1m"
LOOKBACK_S: Final = 1800
EXPR_UID: Final = "__expr__"
CLOUD: Final = "_cloud"


class ThreatRule:
    """One rule: fire for a tenant whose latest ``level_rank`` is above ``above``."""

    def __init__(self, uid: str, level: str, above: float, severity: str) -> None:
        self.uid, self.level, self.above, self.severity = uid, level, above, severity

    @property
    def title(self) -> str:
        return (
            f"Tenant threat level {self.level} or above" if self.level != "red" else "Tenant threat level red"
        )


RULES: Final[tuple[ThreatRule, ...]] = (
    ThreatRule("ssa-threat-orange", "orange", 1.5, "warning"),
    ThreatRule("ssa-threat-red", "red", 2.5, "critical"),
)


def threat_query() -> dict[str, Any]:
    """Query ``A``: the highest ``level_rank`` per tenant and minute (an Elasticsearch dataquery)."""
    target = query(
        f"kind:threat AND NOT tenant:{CLOUD}",
        [max_("level_rank", "1")],
        [terms("tenant", "2", size=500, order="asc", order_by="_key"), date_histogram("3", "1m")],
        family="threat",
    ).datasource(THREAT_DS)
    model: dict[str, Any] = json.loads(json.dumps(target.build(), cls=JSONEncoder))
    return model  # intervalMs/maxDataPoints left to Grafana's defaults: the histogram's interval is fixed


def _expression(builder: Any) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    model["datasource"] = {"type": EXPR_UID, "uid": EXPR_UID}
    return model


def _rule(rule: ThreatRule) -> dict[str, Any]:
    reduce = (
        expr.TypeReduce()
        .ref_id("B")
        .expression("A")
        .reducer("last")
        .settings(expr.ExprTypeReduceSettings().mode("dropNN"))
    )
    threshold = (
        expr.TypeThreshold()
        .ref_id("C")
        .expression("B")
        .conditions(
            [
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator().type("gt").params([rule.above])
                )
            ]
        )
    )
    return {
        "uid": rule.uid,
        "title": rule.title,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": LOOKBACK_S, "to": 0},
                "datasourceUid": THREAT_DS_UID,
                "model": threat_query(),
            },
            {
                "refId": "B",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": EXPR_UID,
                "model": _expression(reduce),
            },
            {
                "refId": "C",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": EXPR_UID,
                "model": _expression(threshold),
            },
        ],
        "dashboardUid": board_tenant.UID,
        "panelId": board_tenant.THREAT_PANEL_ID,
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "0s",
        "annotations": {
            "summary": f"Tenant {{{{ $labels.tenant }}}} is at threat level {rule.level}"
            + (" or above" if rule.level != "red" else ""),
            "description": (
                "The latest threat document of tenant {{ $labels.tenant }} has level rank "
                "{{ $values.B }} (0 blue, 1 yellow, 2 orange, 3 red). Its reasons are in the tenant "
                "view's threat panels and in ssa-threat-* (field reasons)."
            ),
            "runbook_url": "/d/ssa-tenant/ssa-tenant-view?var-tenant={{ $labels.tenant }}",
        },
        "labels": {"level": rule.level, "severity": rule.severity, "source": "ssa"},
        "isPaused": False,
    }


def rules_doc() -> dict[str, Any]:
    """The alert rules file (Grafana file provisioning, ``apiVersion: 1``)."""
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": GROUP,
                "folder": FOLDER,
                "interval": INTERVAL,
                "rules": [_rule(rule) for rule in RULES],
            }
        ],
    }
