"""Every dashboard against Grafana's published JSON schemas, plus cross-checks of links and queries.

Schemas: dashboards/schema/*.jsonschema.json, vendored from grafana-foundation-sdk (Apache-2.0,
see dashboards/schema/NOTICE.md). Two documented translation artefacts are relaxed (see NOTICE).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from dashboards import alerting, build
from dashboards.datasource import provisioning_doc
from dashboards.fields import TIME_FIELDS
from dashboards.panels import (
    ALERTS_DS_UID,
    DS_FAMILY,
    INCIDENTS_DS_UID,
    METRICS_DS_UID,
    THREAT_DS_UID,
    WARNINGS_DS_UID,
)
from dashboards.translate import translate_target
from infra.settings import Settings

SCHEMA_DIR = Path(build.__file__).parent / "schema"
MODELS = build.dashboards()
EXPECTED_UIDS = {"ssa-soc-overview", "ssa-tenant", "ssa-vm-escape", "ssa-cross-tenant", "ssa-pipeline-health"}


def _load(name):
    return json.loads((SCHEMA_DIR / f"{name}.jsonschema.json").read_text())


def _dashboard_validator():
    schema = _load("dashboard")
    defs = schema["definitions"]
    defs["MatcherConfig"]["properties"]["options"] = {}  # CUE: options?: _
    defs["DynamicConfigValue"]["properties"]["value"] = {}  # CUE: value?: _
    # The base step's -Infinity is serialised as null (the schema's own description says so).
    defs["Threshold"]["properties"]["value"]["type"] = ["number", "null"]
    return jsonschema.Draft7Validator(schema)


def _discriminated(schema, union, type_to_def):
    """Replace a oneOf union by if/then on ``type`` (how Grafana picks the branch)."""
    defs = schema["definitions"]
    branches = [
        {
            "if": {"properties": {"type": {"const": t}}, "required": ["type"]},
            "then": {"$ref": f"#/definitions/{d}"},
        }
        for t, d in type_to_def.items()
    ]
    defs[union] = {
        "allOf": [{"required": ["type"], "properties": {"type": {"enum": list(type_to_def)}}}, *branches]
    }


def _es_validator():
    schema = _load("elasticsearch")
    _discriminated(
        schema,
        "BucketAggregation",
        {"date_histogram": "DateHistogram", "histogram": "Histogram", "terms": "Terms", "filters": "Filters"},
    )
    _discriminated(
        schema,
        "MetricAggregation",
        {
            "count": "Count",
            "avg": "Average",
            "sum": "Sum",
            "max": "Max",
            "min": "Min",
            "cardinality": "UniqueCount",
            "percentiles": "Percentiles",
            "raw_data": "RawData",
        },
    )
    return jsonschema.Draft7Validator(schema)


DASHBOARD_VALIDATOR = _dashboard_validator()
ES_VALIDATOR = _es_validator()


def _panels():
    for uid, model in MODELS.items():
        for panel in model["panels"]:
            yield uid, panel


def test_all_dashboards_built_with_stable_uids(tmp_path):
    assert set(MODELS) == EXPECTED_UIDS
    paths = build.build_all(tmp_path, Settings())
    assert {p.stem for p in paths if p.suffix == ".json"} == EXPECTED_UIDS
    again = {p.name: p.read_text() for p in build.build_all(tmp_path, Settings())}
    assert again == {p.name: p.read_text() for p in paths}  # deterministic output


def test_committed_build_is_current(tmp_path):
    """dashboards/built/ (what the compose file's Grafana mounts) is what the builders give with
    the default settings: after changing a board, run ``ssa dashboards build``."""
    fresh = {p.relative_to(tmp_path): p.read_text() for p in build.build_all(tmp_path, Settings())}
    committed = {
        p.relative_to(build.DEFAULT_OUT_DIR): p.read_text()
        for p in build.DEFAULT_OUT_DIR.rglob("*")
        if p.is_file()
    }
    assert sorted(committed) == sorted(fresh)
    stale = [str(rel) for rel, text in fresh.items() if committed[rel] != text]
    assert stale == []


@pytest.mark.parametrize("uid", sorted(EXPECTED_UIDS))
def test_dashboard_validates_against_grafana_schema(uid):
    errors = [
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in DASHBOARD_VALIDATOR.iter_errors(MODELS[uid])
    ]
    assert errors == []


def test_relaxation_is_narrow():
    """The relaxed validator still rejects what Grafana rejects."""
    bad = copy.deepcopy(MODELS["ssa-soc-overview"])
    bad["panels"][0]["gridPos"]["w"] = "wide"
    assert list(DASHBOARD_VALIDATOR.iter_errors(bad))
    del bad["schemaVersion"]
    assert any("schemaVersion" in e.message for e in DASHBOARD_VALIDATOR.iter_errors(bad))
    bad = copy.deepcopy(MODELS["ssa-soc-overview"])
    steps = bad["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0]["value"] is None  # the relaxed base step
    steps[1]["value"] = "one"
    assert list(DASHBOARD_VALIDATOR.iter_errors(bad))
    target = copy.deepcopy(MODELS["ssa-soc-overview"]["panels"][0]["targets"][0])
    target["bucketAggs"][0]["settings"]["sizee"] = "3"
    assert list(ES_VALIDATOR.iter_errors(target))
    target["bucketAggs"][0] = {"id": "9", "type": "no_such_agg"}
    assert list(ES_VALIDATOR.iter_errors(target))


@pytest.mark.parametrize(
    ("uid", "panel"), list(_panels()), ids=lambda v: v if isinstance(v, str) else v["title"]
)
def test_panel_targets_validate_and_translate(uid, panel):
    assert panel["datasource"]["type"] == "elasticsearch"
    assert panel["datasource"]["uid"] in DS_FAMILY
    assert panel.get("id") and panel.get("title") and panel.get("gridPos")
    time_field = TIME_FIELDS[DS_FAMILY[panel["datasource"]["uid"]]]
    for target in panel["targets"]:
        errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in ES_VALIDATOR.iter_errors(target)]
        assert errors == []
        assert target["timeField"] == time_field, (uid, panel["title"])
        body = translate_target(
            target, time_field=time_field, start_ms=0, end_ms=3_600_000, variables={"tenant": "t"}
        )
        assert body["query"]["bool"]["filter"][0]["range"][time_field] == {
            "gte": 0,
            "lte": 3_600_000,
            "format": "epoch_millis",
        }


def test_panel_ids_unique_and_no_overlap():
    for uid, model in MODELS.items():
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), uid
        cells: set[tuple[int, int]] = set()
        for p in model["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (uid, p["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not (cells & mine), (uid, p["title"])
            cells |= mine


def _links(obj):
    if isinstance(obj, dict):
        if obj.get("type") == "link" and "url" in obj:
            yield obj["url"]
        for value in obj.values():
            yield from _links(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _links(value)


def test_data_links_reach_existing_dashboards_and_variables():
    variables = {uid: {v["name"] for v in m["templating"].get("list", [])} for uid, m in MODELS.items()}
    seen = 0
    for _uid, model in MODELS.items():
        for url in _links(model["panels"]):
            m = re.match(r"^/d/([\w-]+)/[\w-]+\?(.*)$", url)
            assert m, url
            target, query = m.groups()
            assert target in MODELS, url
            assert "${__url_time_range}" in query, url  # keep the analyst's time range
            for name in re.findall(r"var-(\w+)=", query):
                assert name in variables[target], url
            seen += 1
    assert seen >= 8


def test_query_variables_defined_where_used():
    for uid, model in MODELS.items():
        defined = {v["name"] for v in model["templating"].get("list", [])}
        for _, panel in ((uid, p) for p in model["panels"]):
            for target in panel["targets"]:
                used = set(re.findall(r"\$(\w+)", target.get("query", "")))
                assert used <= defined, (uid, panel["title"], used - defined)


def test_provisioning_files(tmp_path):
    settings = Settings().with_overrides(index_alerts_prefix="x-alerts-")
    build.build_all(tmp_path, settings)
    ds = yaml.safe_load((tmp_path / "provisioning/datasources/ssa-elasticsearch.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    assert set(by_uid) == {ALERTS_DS_UID, METRICS_DS_UID, INCIDENTS_DS_UID, THREAT_DS_UID, WARNINGS_DS_UID}
    assert by_uid[ALERTS_DS_UID]["jsonData"]["index"] == "x-alerts"  # the SOC's alias
    assert by_uid[INCIDENTS_DS_UID]["jsonData"] | {} == {
        "index": "ssa-incidents",
        "timeField": "last_seen",
        "maxConcurrentShardRequests": 5,
    }
    assert by_uid[THREAT_DS_UID]["jsonData"]["index"] == "ssa-threat"
    assert by_uid[WARNINGS_DS_UID]["jsonData"]["index"] == "ssa-warnings"
    assert {d["jsonData"]["timeField"] for d in ds["datasources"]} == {"ts", "last_seen"}
    assert by_uid[ALERTS_DS_UID]["url"] == "${SSA_ES_URL}"
    assert by_uid[ALERTS_DS_UID]["secureJsonData"]["basicAuthPassword"] == "${SSA_ES_PASSWORD}"
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/ssa.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == build.GRAFANA_DASHBOARDS_PATH
    api = provisioning_doc(Settings(), es_auth="apikey", tls_ca=True)["datasources"][0]
    assert api["secureJsonData"]["httpHeaderValue1"] == "ApiKey ${SSA_ES_API_KEY}"
    assert "basicAuth" not in api
    assert api["jsonData"]["tlsAuthWithCACert"] is True


def test_dashboards_group_only_by_listed_evidence_keys():
    """``evidence`` is one flattened field, so the mapping no longer names its keys; the keys the
    dashboards read are listed in ``EVIDENCE_KEYWORDS`` (and INDEX_FIELDS.md) for detector authors."""
    from dashboards.fields import EVIDENCE_KEYWORDS

    used = {
        key
        for model in build.dashboards().values()
        for key in re.findall(r"evidence\.(\w+)", json.dumps(model))
    }
    assert used, "no dashboard reads evidence: the scan is broken"
    assert used <= set(EVIDENCE_KEYWORDS), sorted(used - set(EVIDENCE_KEYWORDS))


# --- alert rules (provisioning/alerting) ------------------------------------------------------

RULES_PATH = build.ALERT_RULES_PATH
# Durations as Grafana's file reader parses them (Prometheus model.ParseDuration).
PROM_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
NO_DATA_STATES = {"Alerting", "NoData", "OK"}  # models.NoDataStateFromString (11.x, without KeepLast)
ERR_STATES = {"Alerting", "Error", "OK"}
UID_PATTERN = re.compile(r"^[a-zA-Z0-9\-_]{1,40}$")  # Grafana's util.ValidateUID


def _alerting_validator():
    schema = _load("alerting")
    return jsonschema.Draft7Validator({**schema, "$ref": "#/definitions/Rule"})


def _expr_validator():
    schema = _load("expr")
    _discriminated(
        schema,
        "expr",
        {
            "math": "TypeMath",
            "reduce": "TypeReduce",
            "resample": "TypeResample",
            "classic_conditions": "TypeClassicConditions",
            "threshold": "TypeThreshold",
            "sql": "TypeSql",
        },
    )
    return jsonschema.Draft7Validator(schema)


RULE_VALIDATOR = _alerting_validator()
EXPR_VALIDATOR = _expr_validator()


def _duration_ok(text: str) -> bool:
    return bool(text) and bool(PROM_DURATION.match(text))


def _rule_problems(doc) -> list[str]:
    """What Grafana's alert rule file reader (rules_types.go) and the published schemas refuse."""
    problems: list[str] = []
    if doc.get("apiVersion") != 1:
        problems.append("apiVersion must be 1")
    groups = doc.get("groups")
    if not isinstance(groups, list) or not groups:
        return [*problems, "groups must be a non-empty list"]
    for group in groups:
        name = str(group.get("name") or "").strip()
        if not name:
            problems.append("rule group has no name set")
        if not str(group.get("folder") or "").strip():
            problems.append(f"{name}: rule group has no folder set")
        if not _duration_ok(str(group.get("interval", ""))):
            problems.append(f"{name}: interval {group.get('interval')!r} is not a duration")
        for rule in group.get("rules") or []:
            title = rule.get("title", "")
            if not UID_PATTERN.match(str(rule.get("uid", ""))):
                problems.append(f"{title}: uid {rule.get('uid')!r}")
            if rule.get("for") and not _duration_ok(rule["for"]):
                problems.append(f"{title}: for {rule['for']!r}")
            if rule.get("noDataState") not in NO_DATA_STATES or rule.get("execErrState") not in ERR_STATES:
                problems.append(f"{title}: noDataState/execErrState")
            # The API model of the same rule, as the file reader maps it (group fields onto the rule).
            api_rule = {
                key: value
                for key, value in rule.items()
                if key not in ("uid", "dashboardUid", "panelId")
            } | {"uid": rule.get("uid"), "folderUID": group.get("folder"), "orgID": group.get("orgId", 1),
                 "ruleGroup": name}  # fmt: skip
            problems += [
                f"{title}: {list(e.absolute_path)}: {e.message[:200]}"
                for e in RULE_VALIDATOR.iter_errors(api_rule)
            ]
            refs = [q.get("refId") for q in rule.get("data") or []]
            if not refs or len(refs) != len(set(refs)):
                problems.append(f"{title}: data refIds {refs}")
            if rule.get("condition") not in refs:
                problems.append(f"{title}: condition {rule.get('condition')!r} names no query")
            for q in rule.get("data") or []:
                model = q.get("model") or {}
                if model.get("refId") != q.get("refId"):
                    problems.append(f"{title}: model refId of {q.get('refId')}")
                if q.get("datasourceUid") == alerting.EXPR_UID:
                    errors = EXPR_VALIDATOR.iter_errors(model)
                    if model.get("expression") not in refs:
                        problems.append(f"{title}: {q['refId']} reads {model.get('expression')!r}")
                else:
                    errors = ES_VALIDATOR.iter_errors(model)
                    if q.get("datasourceUid") not in DS_FAMILY:
                        problems.append(f"{title}: unknown datasource {q.get('datasourceUid')}")
                    if (q.get("relativeTimeRange") or {}).get("from", 0) <= 0:
                        problems.append(f"{title}: {q['refId']} queries no time range")
                problems += [
                    f"{title}: {q.get('refId')}: {list(e.absolute_path)}: {e.message[:200]}" for e in errors
                ]
    return problems


def test_alert_rules_file_is_written_beside_the_dashboards(tmp_path):
    build.build_all(tmp_path, Settings())
    text = (tmp_path / RULES_PATH).read_text()
    assert text.startswith("# Generated by")
    assert yaml.safe_load(text) == alerting.rules_doc()
    assert RULES_PATH.parts[:2] == ("provisioning", "alerting")


def test_alert_rules_validate_against_grafana():
    assert _rule_problems(alerting.rules_doc()) == []


def test_alert_rule_validation_is_not_vacuous():
    """Each check above refuses what Grafana refuses."""
    good = alerting.rules_doc()
    breakages = [
        lambda d: d.update(apiVersion=2),
        lambda d: d["groups"][0].update(folder=""),
        lambda d: d["groups"][0].update(interval="every minute"),
        lambda d: d["groups"][0]["rules"][0].update(uid="x" * 41),
        lambda d: d["groups"][0]["rules"][0].update(condition="Z"),
        lambda d: d["groups"][0]["rules"][0].update(noDataState="Silence"),
        lambda d: d["groups"][0]["rules"][0].update(title=""),
        lambda d: d["groups"][0]["rules"][0]["data"][1]["model"].update(reducer="median_of_means"),
        lambda d: d["groups"][0]["rules"][0]["data"][1]["model"].update(expression="Q"),
        lambda d: d["groups"][0]["rules"][0]["data"][2]["model"]["conditions"][0]["evaluator"].update(
            type="greater"
        ),
        lambda d: d["groups"][0]["rules"][0]["data"][0]["model"]["bucketAggs"][0]["settings"].update(
            sizee="1"
        ),
        lambda d: d["groups"][0]["rules"][0]["data"][0].update(relativeTimeRange={"from": 0, "to": 0}),
    ]
    for n, breakage in enumerate(breakages):
        bad = copy.deepcopy(good)
        breakage(bad)
        assert _rule_problems(bad), n


def test_alert_rules_fire_per_tenant_on_orange_and_red():
    """Query A gives one series per tenant (cloud excluded) of the highest level rank per minute;
    B takes each tenant's latest; C is level_rank >= 2 for orange and == 3 for red."""
    rules = {r["labels"]["level"]: r for r in alerting.rules_doc()["groups"][0]["rules"]}
    assert set(rules) == {"orange", "red"}
    for level, rule in rules.items():
        a, b, c = rule["data"]
        assert a["datasourceUid"] == THREAT_DS_UID
        body = translate_target(a["model"], time_field="ts", start_ms=0, end_ms=1_800_000)
        assert (
            body["query"]["bool"]["filter"][1]["query_string"]["query"] == "kind:threat AND NOT tenant:_cloud"
        )
        tenants = body["aggs"]["2"]["terms"]
        assert tenants["field"] == "tenant" and tenants["size"] == 500
        per_minute = body["aggs"]["2"]["aggs"]["3"]["date_histogram"]
        assert per_minute["fixed_interval"] == "1m"
        assert body["aggs"]["2"]["aggs"]["3"]["aggs"]["1"] == {"max": {"field": "level_rank"}}
        assert (b["model"]["type"], b["model"]["reducer"], b["model"]["settings"]["mode"]) == (
            "reduce",
            "last",
            "dropNN",
        )
        evaluator = c["model"]["conditions"][0]["evaluator"]
        assert evaluator["type"] == "gt"
        fires = [rank for rank in range(4) if rank > evaluator["params"][0]]
        assert fires == ([2, 3] if level == "orange" else [3])
        assert rule["dashboardUid"] in MODELS
        panel = next(p for p in MODELS[rule["dashboardUid"]]["panels"] if p["id"] == rule["panelId"])
        assert panel["datasource"]["uid"] == THREAT_DS_UID
        assert rule["labels"]["severity"] == ("critical" if level == "red" else "warning")


def test_the_installed_templates_map_every_field_the_readers_need_with_its_type():
    from dashboards.fields import ALERTS_MAPPING, NEEDED_MAPPINGS, unmet_fields
    from infra.bootstrap import installed_mappings

    installed = installed_mappings(Settings())
    assert {family: unmet_fields(need, installed[family]) for family, need in NEEDED_MAPPINGS.items()} == {
        family: {} for family in ("alerts", "metrics", "incidents", "threat", "warnings")
    }
    # The check can fail: a template that maps a needed field otherwise, or not at all.
    broken = copy.deepcopy(installed["alerts"])
    broken["properties"]["score"] = {"type": "keyword"}
    del broken["properties"]["ttd_ms"]
    assert unmet_fields(ALERTS_MAPPING, broken) == {"score": ("integer", "keyword"), "ttd_ms": ("long", None)}
    # A needed keyword left to the strings-as-keywords dynamic template is met; without it, not.
    assert "industry" not in unmet_fields(ALERTS_MAPPING, {**broken, "properties": {}})
    assert unmet_fields(ALERTS_MAPPING, {"properties": {}})["industry"] == ("keyword", None)
