"""Turn a panel's Elasticsearch target into the ``_search`` body Grafana's datasource sends.

Behaviour follows Grafana's Elasticsearch backend (11.x/12.x, ``pkg/tsdb/elasticsearch``), written
from its documented behaviour, not copied:

- ``size: 0`` and a ``bool.filter`` of a ``range`` on the datasource time field
  (``gte``/``lte``, ``format: epoch_millis``) and a ``query_string`` (``analyze_wildcard``);
- bucket aggregations nest in the order listed, metrics go in the innermost level, ``count`` is
  the bucket's ``doc_count`` (no aggregation);
- ``date_histogram``: ``fixed_interval`` (``auto`` = the panel interval), ``min_doc_count`` 0,
  ``extended_bounds`` = the time range, ``format: epoch_millis``;
- ``terms``: ``size`` (0 or missing = 500), ``order`` by ``_count``/``_key`` or by a metric id (that
  metric is then added under the terms), ``min_doc_count``; ``filters``: one ``query_string`` per
  label;
- ``raw_data``/``raw_document``: documents sorted by the time field then ``_doc``, newest first.

Template variables are substituted first, with Lucene escaping of values as Grafana's ``lucene``
format does; a variable set to its "All" value is replaced by ``*`` unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["flatten_response", "interpolate", "lucene_escape", "translate_target", "translate_variable"]

DEFAULT_SIZE: Final = 500
_LUCENE_SPECIAL: Final = re.compile(r'([+\-=&|><!(){}\[\]^"~*?:\\/ ])')
_VAR: Final = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")
ALL: Final = "*"


def lucene_escape(value: str) -> str:
    return _LUCENE_SPECIAL.sub(r"\\\1", value)


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``$name`` / ``${name}``; unknown names are left as they are (Grafana does the same)."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            return match.group(0)
        value = variables[name]
        return value if value == ALL else lucene_escape(value)

    return _VAR.sub(sub, text)


def _int(value: Any, default: int) -> int:
    try:
        parsed = int(value)
    except (TypeError, ValueError):
        return default
    return parsed if parsed != 0 else default


def _interval(setting: str, interval_ms: int) -> str:
    return f"{interval_ms}ms" if setting in ("", "auto") else setting


def _query_string(query: str) -> dict[str, Any]:
    return {"query_string": {"analyze_wildcard": True, "query": query}}


def _metric_agg(metric: Mapping[str, Any]) -> dict[str, Any]:
    kind = metric["type"]
    body: dict[str, Any] = {"field": metric["field"]} if metric.get("field") else {}
    settings = dict(metric.get("settings") or {})
    if kind == "percentiles" and "percents" in settings:
        body["percents"] = [float(p) for p in settings.pop("percents")]
    if "missing" in settings:
        body["missing"] = settings.pop("missing")
    return {kind: body}


def _bucket_agg(
    bucket: Mapping[str, Any],
    metrics: list[Mapping[str, Any]],
    time_field: str,
    start_ms: int,
    end_ms: int,
    interval_ms: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The aggregation for ``bucket`` and the dict its children go into."""
    kind = bucket["type"]
    settings = bucket.get("settings") or {}
    children: dict[str, Any] = {}
    if kind == "date_histogram":
        body: dict[str, Any] = {
            "field": bucket.get("field") or time_field,
            "fixed_interval": _interval(str(settings.get("interval", "auto")), interval_ms),
            "min_doc_count": _int(settings.get("min_doc_count"), 0),
            "extended_bounds": {"min": start_ms, "max": end_ms},
            "format": "epoch_millis",
        }
        agg = {"date_histogram": body}
    elif kind == "terms":
        body = {"field": bucket["field"], "size": _int(settings.get("size"), DEFAULT_SIZE)}
        if "min_doc_count" in settings:
            body["min_doc_count"] = int(settings["min_doc_count"])
        if "missing" in settings:
            body["missing"] = settings["missing"]
        order_by = settings.get("orderBy")
        if order_by:
            direction = settings.get("order", "desc")
            metric_id = re.match(r"^\d+", order_by)
            if metric_id:
                metric = next((m for m in metrics if m["id"] == metric_id.group(0)), None)
                if metric is not None and metric["type"] == "count":
                    body["order"] = {"_count": direction}
                elif metric is not None:
                    body["order"] = {order_by: direction}
                    children[metric["id"]] = _metric_agg(metric)
            else:
                body["order"] = {order_by: direction}
        agg = {"terms": body}
    elif kind == "filters":
        named = {}
        for item in settings.get("filters") or []:
            label = item.get("label") or item.get("query", "")
            named[label] = _query_string(item.get("query") or "*")
        agg = {"filters": {"filters": named}}
    elif kind == "histogram":
        body = {
            "field": bucket["field"],
            "interval": _int(settings.get("interval"), 1000),
            "min_doc_count": _int(settings.get("min_doc_count"), 0),
        }
        agg = {"histogram": body}
    else:
        raise ValueError(f"bucket aggregation {kind!r} is not supported by this translator")
    if children:
        agg["aggs"] = children
    return agg, children


def translate_target(
    target: Mapping[str, Any],
    *,
    time_field: str,
    start_ms: int,
    end_ms: int,
    interval_ms: int = 60_000,
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``_search`` body for one panel target over ``[start_ms, end_ms]``."""
    metrics: list[Mapping[str, Any]] = list(target.get("metrics") or [])
    buckets: list[Mapping[str, Any]] = list(target.get("bucketAggs") or [])
    if not metrics:
        raise ValueError(f"target {target.get('refId')!r} has no metrics")
    lucene = interpolate(str(target.get("query") or "*"), variables or {})
    body: dict[str, Any] = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"range": {time_field: {"gte": start_ms, "lte": end_ms, "format": "epoch_millis"}}},
                    _query_string(lucene),
                ]
            }
        },
    }
    first = metrics[0]["type"]
    if first in ("raw_data", "raw_document"):
        settings = metrics[0].get("settings") or {}
        body["size"] = _int(settings.get("size"), DEFAULT_SIZE)
        body["sort"] = [
            {time_field: {"order": "desc", "unmapped_type": "boolean"}},
            {"_doc": {"order": "desc"}},
        ]
        body["docvalue_fields"] = [{"field": time_field, "format": "epoch_millis"}]
        return body
    if not buckets:
        raise ValueError(
            f"target {target.get('refId')!r}: metrics need a bucket aggregation (Grafana refuses)"
        )
    level: dict[str, Any] = {}
    body["aggs"] = level
    for bucket in buckets:
        agg, children = _bucket_agg(bucket, metrics, time_field, start_ms, end_ms, interval_ms)
        level[bucket["id"]] = agg
        agg["aggs"] = children
        level = children
    for metric in metrics:
        if metric["type"] != "count" and not metric.get("hide"):
            level[metric["id"]] = _metric_agg(metric)
    _drop_empty_aggs(body["aggs"])
    return body


def _drop_empty_aggs(aggs: dict[str, Any]) -> None:
    for agg in aggs.values():
        sub = agg.get("aggs")
        if sub is not None:
            if sub:
                _drop_empty_aggs(sub)
            else:
                del agg["aggs"]


def translate_variable(
    query_json: Mapping[str, Any],
    *,
    time_field: str,
    start_ms: int,
    end_ms: int,
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``_search`` body of a ``{"find": "terms", "field": ..., "query": ...}`` variable."""
    if query_json.get("find") != "terms":
        raise ValueError(f"variable find {query_json.get('find')!r} is not supported")
    lucene = interpolate(str(query_json.get("query") or "*"), variables or {})
    return {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"range": {time_field: {"gte": start_ms, "lte": end_ms, "format": "epoch_millis"}}},
                    _query_string(lucene),
                ]
            }
        },
        "aggs": {
            "1": {
                "terms": {
                    "field": query_json["field"],
                    "size": _int(query_json.get("size"), DEFAULT_SIZE),
                    "order": {"_key": "asc"},
                }
            }
        },
    }


def _metric_values(metrics: list[Mapping[str, Any]], bucket: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric in metrics:
        if metric.get("hide"):
            continue
        if metric["type"] == "count":
            row["count"] = bucket["doc_count"]
            continue
        value = bucket.get(metric["id"], {})
        if metric["type"] == "percentiles":
            for pct, number in (value.get("values") or {}).items():
                row[f"{metric['id']}:p{float(pct):g}"] = number
        else:
            row[metric["id"]] = value.get("value")
    return row


def flatten_response(target: Mapping[str, Any], response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per innermost bucket (keys: bucket field or ``ts`` for histograms), as Grafana's
    table view of the same query; raw queries give the hits' ``_source``."""
    metrics: list[Mapping[str, Any]] = list(target.get("metrics") or [])
    if metrics and metrics[0]["type"] in ("raw_data", "raw_document"):
        return [dict(hit["_source"]) for hit in response["hits"]["hits"]]
    buckets: list[Mapping[str, Any]] = list(target.get("bucketAggs") or [])
    rows: list[dict[str, Any]] = []

    def walk(level: Mapping[str, Any], depth: int, prefix: dict[str, Any]) -> None:
        spec = buckets[depth]
        agg = level[spec["id"]]
        raw = agg["buckets"]
        items = raw.items() if isinstance(raw, dict) else ((None, b) for b in raw)
        for label, bucket in items:
            name = "ts" if spec["type"] == "date_histogram" else spec.get("field") or "filter"
            key = label if label is not None else bucket["key"]
            here = {**prefix, name: key}
            if depth + 1 < len(buckets):
                walk(bucket, depth + 1, here)
            else:
                rows.append({**here, **_metric_values(metrics, bucket)})

    walk(response["aggregations"], 0, {})
    return rows
