"""Every panel's query, translated as Grafana would send it, run on a real Elasticsearch.

A known set of alerts, metrics, incidents, threat levels and warnings (dashboards.sample) goes
into this test's own indices; each panel's result, and each alert rule's Elasticsearch query, is
compared with the same aggregation computed here in plain Python over the same documents, and a
few headline numbers are also checked by hand.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import pytest

from dashboards import alerting, build
from dashboards.board_vm_escape import NO_EMULATOR
from dashboards.es import es_client
from dashboards.fields import NEEDED_MAPPINGS, TIME_FIELDS, unmet_fields
from dashboards.panels import DS_FAMILY
from dashboards.sample import (
    QEMU,
    index_docs,
    put_awareness_templates,
    put_templates,
    sample_alerts,
    sample_incidents,
    sample_metrics,
    sample_threat,
    sample_warnings,
)
from dashboards.translate import flatten_response, translate_target, translate_variable

pytestmark = pytest.mark.integration

BASE = 1_736_935_200_000  # 2025-01-15T10:00:00Z
START, END = BASE, BASE + 3_600_000
AUTO_MS = 300_000
MODELS = build.dashboards()
ALL_VARS = {"tenant": "t-acme", "entity": "*", "host": "*", "channel": "*"}
ONE_VARS = {"tenant": "t-beta", "entity": "vm-beta-02", "host": "hv-01", "channel": "flow"}


def get(doc: dict[str, Any], dotted: str) -> Any:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _match(value: Any, wanted: str) -> bool:
    return value is not None if wanted == "*" else value == wanted


# The tests' reading of each Lucene query used by a panel (variables substituted from v).
PREDICATES = {
    "*": lambda d, v: True,
    "status:open": lambda d, v: d["status"] == "open",
    "status:open AND severity:critical": lambda d, v: d["status"] == "open" and d["severity"] == "critical",
    "tenant:$tenant": lambda d, v: d.get("tenant") == v["tenant"],
    "kind:(flow OR process OR audit OR auth)": lambda d, v: d["kind"] in ("flow", "process", "audit", "auth"),
    "kind:dlq": lambda d, v: d["kind"] == "dlq",
    "kind:lag": lambda d, v: d["kind"] == "lag",
    "kind:detector": lambda d, v: d["kind"] == "detector",
    "kind:alert": lambda d, v: d["kind"] == "alert",
    "tenant:$tenant AND kind:anomaly": lambda d, v: d.get("tenant") == v["tenant"] and d["kind"] == "anomaly",
    "tenant:$tenant AND entity.id:$entity": lambda d, v: (
        d["tenant"] == v["tenant"] and _match(get(d, "entity.id"), v["entity"])
    ),
    "category:vm_escape AND evidence.host:$host": lambda d, v: (
        d["category"] == "vm_escape" and _match(get(d, "evidence.host"), v["host"])
    ),
    "category:cross_tenant_leak AND evidence.channel:$channel": lambda d, v: (
        d["category"] == "cross_tenant_leak" and _match(get(d, "evidence.channel"), v["channel"])
    ),
    "tenant:_cloud": lambda d, v: d["tenant"] == "_cloud",
    "kind:threat AND NOT tenant:_cloud": lambda d, v: d["kind"] == "threat" and d["tenant"] != "_cloud",
    "tenant:$tenant AND NOT close_reason:merged": lambda d, v: (
        d["tenant"] == v["tenant"] and d.get("close_reason") != "merged"
    ),
}
# Index prefix setting, id field and sample documents of each index family.
FAMILIES = {
    "alerts": ("index_alerts_prefix", "alert_id"),
    "metrics": ("index_metrics_prefix", None),
    "incidents": ("index_incidents_prefix", "incident_id"),
    "threat": ("index_threat_prefix", "doc_id"),
    "warnings": ("index_warnings_prefix", "warning_id"),
}


def _metric(metric: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    kind, field = metric["type"], metric.get("field")
    values = [get(d, field) for d in docs if get(d, field) is not None] if field else []
    if kind == "count":
        return {"count": len(docs)}
    if kind == "sum":
        return {metric["id"]: float(sum(values))}
    if kind == "max":
        return {metric["id"]: float(max(values)) if values else None}
    if kind == "avg":
        return {metric["id"]: sum(values) / len(values) if values else None}
    if kind == "percentiles":
        return {f"{metric['id']}:p{float(p):g}": ("range", values) for p in metric["settings"]["percents"]}
    raise AssertionError(kind)


def _filter_match(query: str, d: dict[str, Any]) -> bool:
    """A ``filters`` bucket's query: ``field:value`` (the only form the boards use)."""
    field, _, value = query.partition(":")
    return get(d, field) == value


def expected_rows(
    target: dict[str, Any], docs: list[dict[str, Any]], interval_ms: int, time_field: str = "ts"
) -> list[dict[str, Any]]:
    """Plain-Python evaluation of a target's buckets and metrics over ``docs``."""
    rows: list[dict[str, Any]] = []

    def walk(depth: int, subset: list[dict[str, Any]], prefix: dict[str, Any]) -> None:
        if depth == len(target["bucketAggs"]):
            row = dict(prefix)
            for metric in target["metrics"]:
                row.update(_metric(metric, subset))
            rows.append(row)
            return
        spec = target["bucketAggs"][depth]
        if spec["type"] == "terms":
            missing = spec["settings"].get("missing")  # the bucket of documents without the field

            def value(d: dict[str, Any], field: str = spec["field"], missing: Any = missing) -> Any:
                found = get(d, field)
                return missing if found is None else found

            counts = Counter(value(d) for d in subset if value(d) is not None)
            keys = sorted(counts, key=lambda k: (-counts[k], k))[: int(spec["settings"]["size"])]
            if spec["settings"].get("orderBy") == "_key":
                descending = spec["settings"].get("order", "desc") == "desc"
                keys = sorted(counts, reverse=descending)[: int(spec["settings"]["size"])]
            if spec["settings"].get("orderBy", "_count") not in ("_count", "_key"):
                metric = next(m for m in target["metrics"] if m["id"] == spec["settings"]["orderBy"])
                score = {
                    k: _metric(metric, [d for d in subset if value(d) == k])[metric["id"]] for k in counts
                }
                keys = sorted(counts, key=lambda k: (-score[k], k))[: int(spec["settings"]["size"])]
            for key in keys:
                walk(
                    depth + 1,
                    [d for d in subset if value(d) == key],
                    {**prefix, spec["field"]: key},
                )
        elif spec["type"] == "date_histogram":
            step = 60_000 if spec["settings"]["interval"] == "1m" else interval_ms
            by_bucket = defaultdict(list)
            for d in subset:
                by_bucket[d[time_field] // step * step].append(d)
            for key in range(START // step * step, END // step * step + 1, step):
                walk(depth + 1, by_bucket.get(key, []), {**prefix, "ts": key})
        elif spec["type"] == "filters":
            for item in spec["settings"]["filters"]:
                chosen = [d for d in subset if _filter_match(item["query"], d)]
                walk(depth + 1, chosen, {**prefix, "filter": item["label"]})
        else:
            raise AssertionError(spec["type"])

    walk(0, docs, {})
    return rows


def _same(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected, strict=True):
        assert set(got) == set(want), (got, want)
        for key, value in want.items():
            if isinstance(value, tuple):  # percentile: a value within the bucket's range
                values = value[1]
                if not values:
                    assert got[key] is None
                else:
                    assert min(values) <= got[key] <= max(values), (key, got, values)
            elif isinstance(value, float):
                assert got[key] == pytest.approx(value), (key, got, want)
            else:
                assert got[key] == value, (key, got, want)


def drop_indices(es, *patterns: str) -> None:
    """Delete by concrete names (clusters refuse wildcard deletes by default)."""
    names = list(es.indices.get(index=",".join(patterns), ignore_unavailable=True, allow_no_indices=True))
    if names:
        es.indices.delete(index=",".join(names))


PATTERNS = tuple(f"test-dash-{family}-*" for family in FAMILIES)


@pytest.fixture(scope="module")
def seeded(stack):
    settings = stack.with_overrides(
        **{setting: f"test-dash-{family}-" for family, (setting, _) in FAMILIES.items()}
    )
    es = es_client(settings)
    drop_indices(es, *PATTERNS)  # leftovers of an interrupted run
    put_templates(es, settings, "test-dash")
    put_awareness_templates(es, settings, "test-dash")
    docs = {
        "alerts": sample_alerts(BASE, newer=True),
        "metrics": sample_metrics(BASE),
        "incidents": sample_incidents(BASE),
        "threat": sample_threat(BASE),
        "warnings": sample_warnings(BASE),
    }
    for family, (setting, id_field) in FAMILIES.items():
        index_docs(
            es, getattr(settings, setting), docs[family], id_field=id_field, time_field=TIME_FIELDS[family]
        )
    yield es, settings, docs
    drop_indices(es, *PATTERNS)
    for family in FAMILIES:
        es.indices.delete_index_template(name=f"test-dash-{family}")


def _query(seeded, family, target, variables, start=START, end=END):
    es, settings, docs = seeded
    time_field = TIME_FIELDS[family]
    body = translate_target(
        target, time_field=time_field, start_ms=start, end_ms=end, interval_ms=AUTO_MS, variables=variables
    )
    response = es.search(index=getattr(settings, FAMILIES[family][0]) + "*", body=body)
    chosen = [
        d for d in docs[family] if start <= d[time_field] <= end and PREDICATES[target["query"]](d, variables)
    ]
    return flatten_response(target, response), chosen


def _run(seeded, panel, target, variables):
    return _query(seeded, DS_FAMILY[panel["datasource"]["uid"]], target, variables)


PANELS = [(uid, p) for uid, m in MODELS.items() for p in m["panels"]]


@pytest.mark.parametrize("variables", [ALL_VARS, ONE_VARS], ids=["all", "one"])
@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[f"{u}:{p['id']}" for u, p in PANELS])
def test_panel_query_on_elasticsearch(seeded, uid, panel, variables):
    family = DS_FAMILY[panel["datasource"]["uid"]]
    time_field, id_field = TIME_FIELDS[family], FAMILIES[family][1]
    for target in panel["targets"]:
        assert target["query"] in PREDICATES, f"add the test's reading of {target['query']!r}"
        got, docs = _run(seeded, panel, target, variables)
        if target["metrics"][0]["type"] == "raw_data":
            size = int(target["metrics"][0]["settings"]["size"])
            want = sorted(docs, key=lambda d: -d[time_field])[:size]
            assert want, (uid, panel["title"], "the samples give this table nothing to show")
            # newest first; documents of the same time may come in any order
            assert [d[time_field] for d in got] == [d[time_field] for d in want]
            assert {d[id_field] for d in got} == {d[id_field] for d in want}
        else:
            rows = expected_rows(target, docs, AUTO_MS, time_field)
            _same(got, rows)


def _panel(uid, title_start):
    return next(p for p in MODELS[uid]["panels"] if p["title"].startswith(title_start))


def test_headline_numbers(seeded):
    """Numbers an analyst would read off the dashboards, checked by hand against sample.py."""
    soc_open = _panel("ssa-soc-overview", "Open critical")
    got, _ = _run(seeded, soc_open, soc_open["targets"][0], ALL_VARS)
    assert [(d["tenant"], d["entity"]["id"]) for d in got] == [
        ("t-beta", "vm-beta-02"),
        ("t-beta", "vm-beta-01"),
        ("t-acme", "vm-acme-01"),
    ]
    tenants = _panel("ssa-soc-overview", "Top tenants")
    got, _ = _run(seeded, tenants, tenants["targets"][0], ALL_VARS)
    # with the newer samples: spam on t-beta, beaconing on t-gamma
    assert [(r["tenant"], r["count"]) for r in got] == [("t-acme", 7), ("t-beta", 6), ("t-gamma", 4)]
    signals = _panel("ssa-vm-escape", "Signals per host")
    got, _ = _run(seeded, signals, signals["targets"][0], ALL_VARS)
    assert {(r["evidence.host"], r["evidence.emulator"], r["evidence.signal"]): r["count"] for r in got} == {
        ("hv-01", QEMU, "ptrace"): 2,
        ("hv-01", QEMU, "host_memory"): 1,
        ("hv-02", NO_EMULATOR, "management_plane_accept"): 1,  # a flow names no emulator
    }
    matrix = _panel("ssa-cross-tenant", "Unexpected flows")
    got, _ = _run(seeded, matrix, matrix["targets"][0], ALL_VARS)
    assert {(r["evidence.src_tenant"], r["evidence.dst_tenant"]): r["count"] for r in got} == {
        ("t-beta", "t-acme"): 1,
        ("t-beta", "t-gamma"): 1,
        ("t-gamma", "t-acme"): 1,
        ("t-gamma", "t-beta"): 1,
    }
    events = _panel("ssa-pipeline-health", "Events/s")
    got, _ = _run(seeded, events, events["targets"][0], ALL_VARS)
    flow_first_minute = next(r for r in got if r["kind"] == "flow" and r["ts"] == BASE)
    assert flow_first_minute["1"] == pytest.approx((600 + 1200) / 60)  # t-acme + t-beta in minute 0
    dlq = _panel("ssa-pipeline-health", "DLQ total")
    got, _ = _run(seeded, dlq, dlq["targets"][0], ALL_VARS)
    assert [(r["source"], r["1"]) for r in got] == [("vpcflow", 6.0), ("zeek", 3.0)]
    lag = _panel("ssa-pipeline-health", "Consumer lag")
    got, _ = _run(seeded, lag, lag["targets"][0], ALL_VARS)
    assert max(r["1"] for r in got if r["topic"] == "ssa.telemetry.flow" and r["1"] is not None) == 10 * 39
    ttd = _panel("ssa-soc-overview", "Time to detect by severity")
    got, _ = _run(seeded, ttd, ttd["targets"][0], ALL_VARS)
    critical = next(r for r in got if r["severity"] == "critical")
    assert critical["1"] == pytest.approx((30 + 60 + 120 + 45 + 10) * 1000 / 5)


def test_awareness_headline_numbers(seeded):
    """What the SOC reads off the new panels, checked by hand against sample.py."""
    cloud = _panel("ssa-soc-overview", "Cloud threat level")
    got, _ = _run(seeded, cloud, cloud["targets"][0], ALL_VARS)
    assert got == [{"ts": END - 60_000, "1": 3.0, "2": 94.0}]  # red: t-beta at 88, all three raised
    tiles = _panel("ssa-soc-overview", "Tenants by threat level")
    got, _ = _run(seeded, tiles, tiles["targets"][0], ALL_VARS)
    assert [(r["tenant"], r["ts"], r["1"]) for r in got] == [
        ("t-acme", END - 60_000, 2.0),
        ("t-beta", END - 60_000, 3.0),
        ("t-gamma", END - 60_000, 1.0),
    ]
    stages = _panel("ssa-soc-overview", "Open incidents by kill-chain stage")
    got, _ = _run(seeded, stages, stages["targets"][0], ALL_VARS)
    assert [(r["filter"], r["count"]) for r in got] == [  # in attack order
        ("1 reconnaissance", 1),
        ("2 credential access", 1),
        ("3 privilege escalation", 1),
        ("4 lateral movement", 1),
        ("5 collection", 0),
        ("6 exfiltration", 2),
        ("7 impact", 3),
    ]
    warnings = _panel("ssa-soc-overview", "Latest early warnings")
    got, _ = _run(seeded, warnings, warnings["targets"][0], ALL_VARS)
    assert [(d["tenant"], d["signal"]) for d in got] == [
        ("t-gamma", "alerts"),
        ("t-gamma", "cross_tenant_flows"),
        ("t-beta", "probes"),
        ("t-beta", "failed_logins"),
        ("t-acme", "failed_logins"),
    ]
    incidents = _panel("ssa-tenant", "Incidents of this tenant")
    got, _ = _run(seeded, incidents, incidents["targets"][0], ONE_VARS)  # t-beta: the merged one left out
    assert [d["title"].split(":")[0] for d in got] == [
        "Address 10.2.0.9 of tenant t-beta",
        "VM vm-beta-01 of tenant t-beta",
    ]
    assert got[1]["stage"] == "exfiltration" and got[1]["alert_count"] == 5
    level = _panel("ssa-tenant", "Threat level")
    got, _ = _run(seeded, level, level["targets"][0], ONE_VARS)
    # 5-minute buckets: blue until 7, orange from 7, red from 33; nothing at the range's end
    assert [r["1"] for r in got] == [0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, None]
    forecasts = _panel("ssa-tenant", "Early warnings: observed")
    got, _ = _run(seeded, forecasts, forecasts["targets"][0], ONE_VARS)
    seen = [(r["signal"], r["ts"]) for r in got if r["1"] is not None]
    assert seen == [("failed_logins", BASE), ("probes", BASE + AUTO_MS)]
    values = [[r["1"], r["3"], r["4"]] for r in got if r["1"] is not None]  # observed, lower, upper
    assert values == [pytest.approx([6.0, 0.0, 3.1]), pytest.approx([240.0, 20.0, 110.0])]  # float fields


@pytest.mark.parametrize("rule", alerting.rules_doc()["groups"][0]["rules"], ids=lambda r: r["uid"])
def test_alert_rule_query_on_elasticsearch(seeded, rule):
    """Query A over the sample hour, then B (each tenant's last non-null value) and C (the
    threshold) in plain Python, as Grafana's reduce and threshold expressions compute them."""
    a, b, c = rule["data"]
    assert b["model"]["reducer"] == "last" and b["model"]["settings"]["mode"] == "dropNN"
    got, docs = _query(seeded, "threat", a["model"], {})
    _same(got, expected_rows(a["model"], docs, AUTO_MS))
    latest: dict[str, float] = {}
    for row in sorted(got, key=lambda r: r["ts"]):
        if row["1"] is not None:
            latest[row["tenant"]] = row["1"]
    assert latest == {"t-acme": 2.0, "t-beta": 3.0, "t-gamma": 1.0}
    above = c["model"]["conditions"][0]["evaluator"]["params"][0]
    firing = sorted(t for t, rank in latest.items() if rank > above)
    assert firing == (["t-acme", "t-beta"] if rule["labels"]["level"] == "orange" else ["t-beta"])


def test_variable_queries(seeded):
    es, settings, _ = seeded
    for uid, model in MODELS.items():
        for variable in model["templating"].get("list", []):
            body = translate_variable(
                json.loads(variable["query"]), time_field="ts", start_ms=START, end_ms=END, variables=ALL_VARS
            )
            keys = [
                b["key"]
                for b in es.search(index=settings.index_alerts_pattern, body=body)["aggregations"]["1"][
                    "buckets"
                ]
            ]
            expected = {
                "tenant": ["t-acme", "t-beta", "t-gamma"],
                "entity": ["10.1.0.20", "10.1.0.7", "10.1.0.8", "10.1.0.9", "vm-acme-01", "vm-acme-02"],
                "host": ["hv-01", "hv-02"],
                "channel": ["flow", "snapshot", "storage"],
            }[variable["name"]]
            assert keys == expected, (uid, variable["name"])


@pytest.mark.parametrize("kind", sorted(NEEDED_MAPPINGS))
def test_project_template_has_the_fields_dashboards_need(stack, kind):
    """Contract with infra's index templates (skipped until they are installed)."""
    es = es_client(stack)
    prefix = getattr(stack, FAMILIES[kind][0])
    resolved = es.indices.simulate_index_template(name=prefix + "2025.01.15")
    mappings = (resolved.get("template") or {}).get("mappings") or {}
    if not mappings.get("properties"):
        pytest.skip(f"no index template for {prefix}* installed")
    wrong = unmet_fields(NEEDED_MAPPINGS[kind], mappings)
    assert wrong == {}, "field: (dashboards need, template has)"
