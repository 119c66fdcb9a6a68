"""The Grafana-target -> Elasticsearch body translator, on hand-written targets."""

from __future__ import annotations

from typing import Any

import pytest

from dashboards.translate import (
    flatten_response,
    interpolate,
    lucene_escape,
    translate_target,
    translate_variable,
)

RANGE: dict[str, Any] = {"time_field": "ts", "start_ms": 1_000, "end_ms": 9_000}


def test_time_range_and_query_string_filters():
    target = {
        "refId": "A",
        "query": "status:open",
        "metrics": [{"type": "count", "id": "1"}],
        "bucketAggs": [
            {"type": "date_histogram", "id": "2", "field": "ts", "settings": {"interval": "auto"}}
        ],
    }
    body = translate_target(target, interval_ms=30_000, **RANGE)
    assert body["size"] == 0
    assert body["query"] == {
        "bool": {
            "filter": [
                {"range": {"ts": {"gte": 1_000, "lte": 9_000, "format": "epoch_millis"}}},
                {"query_string": {"analyze_wildcard": True, "query": "status:open"}},
            ]
        }
    }
    assert body["aggs"] == {
        "2": {
            "date_histogram": {
                "field": "ts",
                "fixed_interval": "30000ms",
                "min_doc_count": 0,
                "extended_bounds": {"min": 1_000, "max": 9_000},
                "format": "epoch_millis",
            }
        }
    }


def test_nesting_order_terms_settings_and_metrics_innermost():
    target = {
        "refId": "A",
        "query": "*",
        "metrics": [
            {"type": "count", "id": "1"},
            {"type": "avg", "id": "5", "field": "ttd_ms"},
            {"type": "percentiles", "id": "6", "field": "ttd_ms", "settings": {"percents": ["50", "90"]}},
        ],
        "bucketAggs": [
            {
                "type": "terms",
                "id": "2",
                "field": "tenant",
                "settings": {"size": "0", "order": "asc", "orderBy": "_key", "min_doc_count": "1"},
            },
            {"type": "date_histogram", "id": "3", "settings": {"interval": "1m", "min_doc_count": "0"}},
        ],
    }
    body = translate_target(target, **RANGE)
    terms = body["aggs"]["2"]
    assert terms["terms"] == {"field": "tenant", "size": 500, "min_doc_count": 1, "order": {"_key": "asc"}}
    histo = terms["aggs"]["3"]
    assert histo["date_histogram"]["fixed_interval"] == "1m"
    assert histo["date_histogram"]["field"] == "ts"  # no field: the time field
    assert histo["aggs"] == {
        "5": {"avg": {"field": "ttd_ms"}},
        "6": {"percentiles": {"field": "ttd_ms", "percents": [50.0, 90.0]}},
    }


def test_terms_ordered_by_metric_adds_that_metric():
    target = {
        "refId": "A",
        "metrics": [{"type": "sum", "id": "1", "field": "dlq"}],
        "bucketAggs": [
            {"type": "terms", "id": "2", "field": "tenant", "settings": {"orderBy": "1", "order": "desc"}}
        ],
    }
    body = translate_target(target, **RANGE)
    assert body["aggs"]["2"]["terms"]["order"] == {"1": "desc"}
    assert body["aggs"]["2"]["aggs"] == {"1": {"sum": {"field": "dlq"}}}
    target["metrics"] = [{"type": "count", "id": "1"}]
    assert translate_target(target, **RANGE)["aggs"]["2"]["terms"]["order"] == {"_count": "desc"}


def test_filters_and_raw_data():
    target = {
        "refId": "A",
        "metrics": [{"type": "count", "id": "1"}],
        "bucketAggs": [
            {
                "type": "filters",
                "id": "2",
                "settings": {
                    "filters": [
                        {"query": "status:open", "label": "open"},
                        {"query": "status:closed", "label": ""},
                    ]
                },
            }
        ],
    }
    aggs = translate_target(target, **RANGE)["aggs"]["2"]["filters"]["filters"]
    assert aggs == {
        "open": {"query_string": {"analyze_wildcard": True, "query": "status:open"}},
        "status:closed": {"query_string": {"analyze_wildcard": True, "query": "status:closed"}},
    }
    raw = {
        "refId": "A",
        "query": "x",
        "metrics": [{"type": "raw_data", "id": "1", "settings": {"size": "50"}}],
    }
    body = translate_target(raw, **RANGE)
    assert body["size"] == 50 and "aggs" not in body
    assert body["sort"][0] == {"ts": {"order": "desc", "unmapped_type": "boolean"}}


def test_metrics_without_buckets_refused_like_grafana():
    with pytest.raises(ValueError, match="bucket"):
        translate_target({"refId": "A", "metrics": [{"type": "count", "id": "1"}]}, **RANGE)


def test_variables_escaped_except_all():
    assert lucene_escape("t-acme") == "t\\-acme"
    assert interpolate("tenant:$tenant AND host:${host}", {"tenant": "t-acme", "host": "*"}) == (
        "tenant:t\\-acme AND host:*"
    )
    assert interpolate("x:$unknown", {}) == "x:$unknown"
    body = translate_variable(
        {"find": "terms", "field": "entity.id", "query": "tenant:$tenant"},
        variables={"tenant": "a b"},
        **RANGE,
    )
    assert body["query"]["bool"]["filter"][1]["query_string"]["query"] == "tenant:a\\ b"
    assert body["aggs"]["1"]["terms"]["field"] == "entity.id"


def test_flatten_nested_buckets():
    target = {
        "metrics": [{"type": "count", "id": "1"}, {"type": "max", "id": "5", "field": "score"}],
        "bucketAggs": [
            {"type": "terms", "id": "2", "field": "host"},
            {"type": "terms", "id": "3", "field": "vm"},
        ],
    }
    response = {
        "aggregations": {
            "2": {
                "buckets": [
                    {
                        "key": "hv-01",
                        "doc_count": 3,
                        "3": {
                            "buckets": [
                                {"key": "vm-1", "doc_count": 2, "5": {"value": 95.0}},
                                {"key": "vm-2", "doc_count": 1, "5": {"value": 80.0}},
                            ]
                        },
                    }
                ]
            }
        }
    }
    assert flatten_response(target, response) == [
        {"host": "hv-01", "vm": "vm-1", "count": 2, "5": 95.0},
        {"host": "hv-01", "vm": "vm-2", "count": 1, "5": 80.0},
    ]
