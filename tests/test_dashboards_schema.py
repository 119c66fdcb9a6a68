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

from dashboards import build
from dashboards.datasource import provisioning_doc
from dashboards.panels import ALERTS_DS_UID, METRICS_DS_UID
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
    assert panel["datasource"]["uid"] in (ALERTS_DS_UID, METRICS_DS_UID)
    assert panel.get("id") and panel.get("title") and panel.get("gridPos")
    for target in panel["targets"]:
        errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in ES_VALIDATOR.iter_errors(target)]
        assert errors == []
        body = translate_target(
            target, time_field="ts", start_ms=0, end_ms=3_600_000, variables={"tenant": "t"}
        )
        assert body["query"]["bool"]["filter"][0]["range"]["ts"] == {
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
    assert set(by_uid) == {ALERTS_DS_UID, METRICS_DS_UID}
    assert by_uid[ALERTS_DS_UID]["jsonData"]["index"] == "x-alerts-*"
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
