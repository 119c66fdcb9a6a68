"""ECS fields of alert and incident documents, checked against ECS's own published definitions.

The definitions come from the pinned ``@elastic/ecs`` package (``infra/ecs_spec.py``: cached in
``.cache/ecs``, fetched with npm and verified by sha256 when absent). The spec-based tests skip
only when the package is not cached and the registry cannot be reached; any other failure
(wrong digest, malformed package, npm missing) fails them.
"""

from __future__ import annotations

import io
import ipaddress
import json
import shutil
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from detectors.alert import Alert, Attack, Entity, encode_alert
from detectors.context import DetectionContext
from detectors.ecs import (
    CATEGORY_ECS,
    ECS_VERSION,
    ENTITY_SIDE,
    PARENT_TECHNIQUES,
    RELATED_MAX,
    TACTIC_IDS,
    EcsCollisionError,
    alert_ecs,
    flatten,
    incident_ecs,
    with_ecs,
)
from detectors.engine import DetectionEngine
from detectors.meta import TACTICS
from detectors.registry import all_detectors, anomaly_detector_classes, detector_classes
from detectors.samples import load_cases, sample_files, samples_registry
from infra import ecs_spec
from infra.bootstrap import alerts_template
from infra.ecs_spec import ECS_MAPPED_FIELDS, EcsSpec, EcsSpecError, EcsSpecUnavailable, ecs_properties
from infra.settings import load_settings
from ingest.tenants import TenantRegistry
from streams.documents import alert_action

BASE = 1_736_935_200_000  # 2025-01-15T10:00:00Z


@pytest.fixture(scope="module")
def spec() -> EcsSpec:
    try:
        return ecs_spec.load_spec(fetch=True)
    except EcsSpecUnavailable as exc:
        pytest.skip(f"ECS definitions not cached and the npm registry is unreachable: {exc}")


def _sample_alerts() -> list[dict[str, Any]]:
    """Every alert the rule samples raise through the real engine, plus anomaly alerts (whose
    detectors need fitted models, so they are built here with the detectors' own meta)."""
    registry = samples_registry()
    docs: list[dict[str, Any]] = []
    for path in sample_files():
        for case in load_cases(path):
            context = DetectionContext(registry)
            engine = DetectionEngine(all_detectors(context.config), context, strict=True)
            docs.extend(msgspec.to_builtins(a) for a in engine.run(case.events))
    for i, cls in enumerate(anomaly_detector_classes()):
        meta = cls.meta
        entity = Entity("ip", "10.1.1.10") if i == 0 else Entity("vm", "vm-acme-01")
        docs.append(_alert(detector=meta.id, category=meta.category, attack=meta.attack[0], entity=entity))
    return docs


def _alert(**over: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "alert_id": "a" * 32,
        "ts": BASE + 60_000,
        "first_seen": BASE,
        "last_seen": BASE + 59_000,
        "tenant": "t-acme",
        "entity": Entity("ip", "203.0.113.9"),
        "category": "port_scan",
        "severity": "medium",
        "score": 55,
        "detector": "port_scan.failed_probe_scan",
        "detector_version": "1.0.0",
        "attack": Attack("Discovery", "T1046", "Network Service Discovery"),
        "summary": "External address 203.0.113.9 probed 40 host/port pairs",
        "evidence": {"count": 40},
    }
    fields.update(over)
    return msgspec.to_builtins(Alert(**fields))


def _incidents() -> list[dict[str, Any]]:
    """Incident documents of the shape the incident stage writes, over every alert category."""
    common = {"status": "open", "score": 92, "severity": "critical", "first_seen": BASE,
              "last_seen": BASE + 3_600_000, "alert_ids": ["a" * 32, "b" * 32]}  # fmt: skip
    return [
        {**common, "incident_id": "i" * 32, "tenant": "t-acme", "stage": "exfiltration",
         "title": "VM vm-acme-01 of tenant t-acme: scan, password guessing, then emulator escape",
         "tactics": ["Discovery", "Credential Access", "Privilege Escalation", "Collection", "Exfiltration"],
         "categories": ["port_scan", "brute_force", "vm_escape", "cross_tenant_leak", "exfiltration"],
         "entities": [{"type": "vm", "id": "vm-acme-01"}, {"type": "ip", "id": "10.1.1.10"},
                      {"type": "host", "id": "hv-01"}, {"type": "ip", "id": "203.0.113.9"}]},
        {**common, "incident_id": "j" * 32, "tenant": None, "stage": "impact", "severity": "low",
         "score": 20, "title": "Host hv-01: unexpected KVM device access",
         "tactics": ["Impact", "Command and Control", "Reconnaissance"],
         "categories": ["cryptomining", "dos", "command_and_control", "spam", "anomaly"],
         "entities": [{"type": "vm", "id": "vm-a"}, {"type": "vm", "id": "vm-b"},
                      {"type": "principal", "id": "iam::t-gamma:user/mallory"}, {"type": "ip", "id": "not-an-ip"}]},
    ]  # fmt: skip


ALERTS = _sample_alerts()
REGISTRY = samples_registry()


def _written() -> list[tuple[str, dict[str, Any]]]:
    out = [(f"alert {d['detector']}", flatten(alert_ecs(d, REGISTRY))) for d in ALERTS]
    out += [(f"alert {d['detector']} (no registry)", flatten(alert_ecs(d))) for d in ALERTS[:5]]
    out += [(f"incident {d['incident_id'][:4]}", flatten(incident_ecs(d, REGISTRY))) for d in _incidents()]
    return out


WRITTEN = _written()


# --- value types by ECS type -------------------------------------------------------------------


def _date_ok(v: Any) -> bool:
    if isinstance(v, int) and not isinstance(v, bool):
        return 946_684_800_000 <= v < 4_102_444_800_000  # epoch ms, 2000-2100
    if isinstance(v, str):
        try:
            datetime.fromisoformat(v.replace("Z", "+00:00"))
            return True
        except ValueError:
            return False
    return False


def _ip_ok(v: Any) -> bool:
    try:
        ipaddress.ip_address(v)
        return isinstance(v, str)
    except ValueError:
        return False


VALUE_OK = {
    "date": _date_ok,
    "ip": _ip_ok,
    "keyword": lambda v: isinstance(v, str) and v != "",
    "constant_keyword": lambda v: isinstance(v, str),
    "wildcard": lambda v: isinstance(v, str),
    "match_only_text": lambda v: isinstance(v, str),
    "text": lambda v: isinstance(v, str),
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "scaled_float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def test_the_samples_cover_every_detector():
    """Otherwise the spec check below would not see every detector's fields."""
    ids = {cls.meta.id for cls in [*detector_classes(), *anomaly_detector_classes()]}
    assert {d["detector"] for d in ALERTS} == ids


@pytest.mark.parametrize(("what", "fields"), WRITTEN, ids=[w for w, _ in WRITTEN])
def test_every_ecs_field_written_is_in_the_spec_with_its_type(spec, what, fields):
    for name, value in fields.items():
        assert name in spec.fields, (what, name)
        field = spec.fields[name]
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            assert field.array, (what, name, "a list in a field ECS does not normalize to an array")
            assert value, (what, name, "empty list")
        check = VALUE_OK.get(field.type)
        assert check is not None, (what, name, f"no value check for ECS type {field.type}")
        bad = [v for v in values if not check(v)]
        assert not bad, (what, name, field.type, bad)
        if field.allowed_values is not None:
            assert set(values) <= set(field.allowed_values), (what, name, values)
    # event.type must be an expected type of every event.category written (ECS's pairing table)
    for category in fields["event.category"]:
        expected = spec.fields["event.category"].expected_event_types[category]
        assert set(fields["event.type"]) <= set(expected), (what, category, fields["event.type"])


def test_core_fields_are_always_written():
    for what, fields in WRITTEN:
        for name in ("@timestamp", "event.kind", "event.category", "event.type", "event.id",
                     "event.severity", "event.risk_score", "event.start", "event.end", "message",
                     "threat.framework", "threat.tactic.name", "threat.tactic.id", "ecs.version"):  # fmt: skip
            assert name in fields, (what, name)
        if what.startswith("alert"):
            for name in ("rule.id", "rule.name", "rule.version", "rule.category", "threat.technique.id"):
                assert name in fields, (what, name)


def test_ecs_version_matches_the_pinned_package(spec):
    assert ECS_VERSION == ecs_spec.ECS_VERSION == spec.version


def test_template_maps_ecs_fields_with_the_spec_types(spec):
    for name, typ in ECS_MAPPED_FIELDS.items():
        assert name in spec.fields, name
        want = spec.fields[name].type
        assert typ == want or (want == "match_only_text" and typ == "text"), (name, typ, want)
    written = {name for _, fields in WRITTEN for name in fields}
    assert written <= set(ECS_MAPPED_FIELDS), sorted(written - set(ECS_MAPPED_FIELDS))
    props = alerts_template(load_settings())["template"]["mappings"]["properties"]

    def leaf(path: str) -> dict[str, Any]:
        node: dict[str, Any] = {"properties": props}
        for part in path.split("."):
            node = node["properties"][part]
        return node

    for name, typ in ECS_MAPPED_FIELDS.items():
        assert leaf(name)["type"] == typ, name
    assert leaf("@timestamp")["format"] == "epoch_millis||strict_date_optional_time"


def test_ecs_mapping_replaces_none_of_our_template_fields():
    own = {"alert_id", "ts", "first_seen", "last_seen", "indexed_at", "ttd_ms", "tenant", "industry",
           "entity", "category", "severity", "score", "detector", "detector_version", "attack",
           "summary", "evidence", "status", "status_updated_at", "status_history"}  # fmt: skip
    props = alerts_template(load_settings())["template"]["mappings"]["properties"]
    assert own <= set(props)
    assert not own & set(ecs_properties())
    assert props["entity"] == {"properties": {"type": props["tenant"], "id": props["tenant"]}}


def test_our_top_level_fields_take_no_ecs_name_but_entity(spec):
    alert_doc = alert_action(
        encode_alert(msgspec.convert(ALERTS[0], Alert)), "ssa-alerts-", lambda _t: "telecom"
    )
    ours = {k for k in alert_doc.source if k not in ecs_properties()}
    incident_keys = {"incident_id", "tenant", "status", "title", "severity", "score", "stage", "tactics",
                     "categories", "first_seen", "last_seen", "entities", "alert_ids", "kill_chain",
                     "updated", "alert_count", "other_tenants", "repeats", "suppressed", "audit", "version"}  # fmt: skip
    assert (ours | incident_keys) & spec.top_level_names == {"entity"}
    # ECS's entity.id / entity.type are keywords, as ours are: the two agree in the mapping.
    assert spec.fields["entity.id"].type == spec.fields["entity.type"].type == "keyword"


def test_alert_action_adds_ecs_and_keeps_our_fields():
    source = ALERTS[0]
    action = alert_action(encode_alert(msgspec.convert(source, Alert)), "ssa-alerts-", lambda _t: "telecom")
    doc = action.source
    for key, value in source.items():
        assert doc[key] == value, key
    assert doc["industry"] == "telecom"
    assert doc["@timestamp"] == source["ts"]
    assert doc["event"]["kind"] == "alert"
    assert doc["event"]["id"] == source["alert_id"] == action.id
    assert doc["rule"]["id"] == source["detector"]
    assert doc["message"] == source["summary"]
    assert action.op_type == "create"


def test_alert_action_with_registry_adds_the_account():
    value = encode_alert(msgspec.convert(_alert(), Alert))
    without = alert_action(value, "p-", lambda _t: None).source
    with_reg = alert_action(value, "p-", lambda _t: None, REGISTRY).source
    assert "cloud" not in without
    assert with_reg["cloud"]["account"]["id"] == REGISTRY.tenants["t-acme"].accounts[0]
    assert with_reg["organization"] == {"id": "t-acme", "name": REGISTRY.tenants["t-acme"].name}


def test_with_ecs_refuses_to_replace_a_field():
    doc = _alert()
    with pytest.raises(EcsCollisionError, match="event"):
        with_ecs({**doc, "event": "ours"}, alert_ecs(doc))
    assert with_ecs(doc, {"x": 1}) == {**doc, "x": 1}


# --- the mapping rules, edges --------------------------------------------------------------------


def test_scanner_is_the_source():
    f = flatten(alert_ecs(_alert()))
    assert f["source.ip"] == "203.0.113.9"
    assert "destination.ip" not in f
    assert f["event.category"] == ["intrusion_detection", "network"]
    assert f["threat.tactic.id"] == ["TA0007"]
    assert f["threat.tactic.reference"] == ["https://attack.mitre.org/tactics/TA0007/"]
    assert f["threat.technique.id"] == ["T1046"]
    assert f["threat.technique.name"] == ["Network Service Discovery"]
    assert "threat.technique.subtechnique.id" not in f
    assert f["event.severity"] == 47 and f["event.risk_score"] == 55.0
    assert f["event.duration"] == 59_000 * 1_000_000
    assert f["rule.name"] == "Port scan"


def test_distributed_flood_entity_is_the_destination():
    doc = _alert(detector="dos.distributed_flood", category="dos", entity=Entity("ip", "10.1.1.10"),
                 evidence={"top_source": "198.18.0.9"})  # fmt: skip
    f = flatten(alert_ecs(doc))
    assert f["destination.ip"] == "10.1.1.10"
    assert "source.ip" not in f  # the largest of many sources is not "the" source


def test_sub_technique_splits_into_parent_and_subtechnique():
    doc = _alert(attack=Attack("Reconnaissance", "T1595.001", "Active Scanning: Scanning IP Blocks"))
    f = flatten(alert_ecs(doc))
    assert f["threat.technique.id"] == ["T1595"]
    assert f["threat.technique.name"] == ["Active Scanning"]
    assert f["threat.technique.reference"] == ["https://attack.mitre.org/techniques/T1595/"]
    assert f["threat.technique.subtechnique.id"] == ["T1595.001"]
    assert f["threat.technique.subtechnique.name"] == ["Scanning IP Blocks"]
    assert f["threat.technique.subtechnique.reference"] == ["https://attack.mitre.org/techniques/T1595/001/"]


def test_unknown_tactic_and_parent_keep_arrays_parallel():
    doc = _alert(attack=Attack("Nonexistent", "T9999.001", "Made Up"))
    f = flatten(alert_ecs(doc))
    assert f["threat.tactic.name"] == ["Nonexistent"]
    assert "threat.tactic.id" not in f and "threat.tactic.reference" not in f
    assert f["threat.technique.id"] == ["T9999"]
    assert "threat.technique.name" not in f  # no parent name: no misaligned array


def test_values_that_are_not_addresses_or_ports_are_not_written():
    doc = _alert(detector="dos.app_flood", category="dos", entity=Entity("ip", "scanner.example"),
                 evidence={"victim": "unknown", "top_target": "10.1.1.10", "port": True,
                           "ports": [70000], "sources": ["a", "b"], "destinations": ["::1", "x"]})  # fmt: skip
    f = flatten(alert_ecs(doc))
    assert f["destination.ip"] == "10.1.1.10"  # the first key that holds an address
    assert "destination.port" not in f  # a bool and an out-of-range port are no ports
    assert "source.ip" not in f  # the entity is no address, and two sources are no one source
    assert f["related.ip"] == ["10.1.1.10", "::1"]


def test_one_listed_port_and_one_source():
    doc = _alert(detector="port_scan.internet_probes", entity=Entity("vm", "vm-acme-01"),
                 evidence={"victim": "10.1.1.10", "sources": ["198.51.100.7"], "ports": [23]})  # fmt: skip
    f = flatten(alert_ecs(doc))
    assert (f["source.ip"], f["destination.ip"], f["destination.port"]) == ("198.51.100.7", "10.1.1.10", 23)
    assert f["cloud.instance.id"] == "vm-acme-01"


def test_related_lists_are_capped_and_deduplicated():
    ips = [f"198.51.100.{i}" for i in range(RELATED_MAX + 10)]
    doc = _alert(evidence={"sources": ips + ips})
    f = flatten(alert_ecs(doc))
    assert f["related.ip"][0] == "203.0.113.9"
    assert len(f["related.ip"]) == RELATED_MAX
    assert len(set(f["related.ip"])) == RELATED_MAX


def _registry(accounts: list[str]) -> TenantRegistry:
    return TenantRegistry.from_dict({
        "hosts": [{"id": "hv-09"}],
        "tenants": [{"id": "t-x", "name": "X Corp", "cidrs": ["10.9.0.0/16"], "accounts": accounts,
                     "vms": [{"id": "vm-x", "host": "hv-09", "ip": "10.9.0.5"}]}],
    })  # fmt: skip


def test_host_from_registry_and_account_only_when_unambiguous():
    doc = _alert(tenant="t-x", entity=Entity("vm", "vm-x"), detector="exfiltration.external_upload",
                 category="exfiltration", evidence={"host": "unknown"})  # fmt: skip
    one = flatten(alert_ecs(doc, _registry(["111111111111"])))
    assert one["host.id"] == one["host.name"] == "hv-09"  # "unknown" in the evidence: the registry's
    assert one["cloud.account.id"] == "111111111111"
    assert one["organization.name"] == "X Corp"
    two = flatten(alert_ecs(doc, _registry(["111111111111", "222222222222"])))
    assert "cloud.account.id" not in two
    bare = flatten(alert_ecs(doc))
    assert "host.id" not in bare and "organization.name" not in bare
    assert bare["organization.id"] == "t-x"


def test_provider_alert_without_tenant_has_no_organization():
    doc = _alert(tenant=None, entity=Entity("host", "hv-01"), detector="vm_escape.kvm_device_access",
                 category="vm_escape")  # fmt: skip
    f = flatten(alert_ecs(doc, REGISTRY))
    assert "organization.id" not in f and "cloud.account.id" not in f
    assert f["host.id"] == "hv-01"
    assert f["event.category"] == ["intrusion_detection", "process"]


def test_principal_is_the_user():
    doc = _alert(entity=Entity("principal", "iam::t-acme:user/alice"), detector="cross_tenant.resource_shared_out",
                 category="cross_tenant_leak", evidence={"users": ["bob", "alice"]})  # fmt: skip
    f = flatten(alert_ecs(doc))
    assert f["user.name"] == "iam::t-acme:user/alice"
    assert f["related.user"] == ["iam::t-acme:user/alice", "bob", "alice"]
    assert f["event.category"] == ["intrusion_detection", "api"]


def test_unknown_detector_falls_back_to_the_category():
    f = flatten(alert_ecs(_alert(detector="brute_force.someday", category="brute_force")))
    assert f["event.category"] == ["intrusion_detection", "authentication", "network"]
    assert f["rule.name"] == "brute_force.someday"
    assert "source.ip" not in f  # no side known for it


def test_severity_numbers_rise_with_severity():
    numbers = [
        flatten(alert_ecs(_alert(severity=s)))["event.severity"]
        for s in ("low", "medium", "high", "critical")
    ]
    assert numbers == sorted(numbers) == [21, 47, 73, 99]


def test_incident_single_valued_fields_only_when_unambiguous():
    first, second = (flatten(incident_ecs(d, REGISTRY)) for d in _incidents())
    assert first["cloud.instance.id"] == "vm-acme-01" and first["host.id"] == "hv-01"
    assert first["@timestamp"] == BASE + 3_600_000
    assert first["event.dataset"] == "ssa.incidents" and first["event.kind"] == "alert"
    assert first["threat.tactic.id"] == ["TA0007", "TA0006", "TA0004", "TA0009", "TA0010"]
    assert first["related.ip"] == ["10.1.1.10", "203.0.113.9"]
    assert not any(k.startswith("rule.") for k in first)
    assert "cloud.instance.id" not in second  # two VMs
    assert second["related.hosts"] == ["vm-a", "vm-b"]
    assert second["user.name"] == "iam::t-gamma:user/mallory"
    assert "related.ip" not in second  # "not-an-ip" is dropped
    assert "organization.id" not in second


def test_output_is_deterministic():
    for doc in ALERTS[:10]:
        a = json.dumps(alert_ecs(doc, REGISTRY)).encode()
        b = json.dumps(alert_ecs(json.loads(json.dumps(doc)), REGISTRY)).encode()
        assert a == b


# --- the tables cover what the detectors use -----------------------------------------------------


def test_every_attack_tactic_has_its_id():
    assert set(TACTIC_IDS) == set(TACTICS)
    assert len(set(TACTIC_IDS.values())) == len(TACTIC_IDS)


def test_every_sub_technique_in_use_has_its_parent_named():
    used = {
        a.technique_id for cls in [*detector_classes(), *anomaly_detector_classes()] for a in cls.meta.attack
    }
    parents = {t.split(".")[0] for t in used if "." in t}
    assert parents <= set(PARENT_TECHNIQUES), sorted(parents - set(PARENT_TECHNIQUES))


def test_entity_sides_name_real_detectors_and_cover_every_address_entity():
    ids = {cls.meta.id for cls in detector_classes()}
    assert set(ENTITY_SIDE) <= ids
    ip_entities = {
        d["detector"] for d in ALERTS if d["entity"]["type"] == "ip" and d["category"] != "anomaly"
    }
    assert ip_entities <= set(ENTITY_SIDE), sorted(ip_entities - set(ENTITY_SIDE))


def test_every_alert_category_has_ecs_categories(spec):
    from detectors.alert import CATEGORIES

    assert set(CATEGORY_ECS) == set(CATEGORIES)
    allowed = set(spec.fields["event.category"].allowed_values or ())
    assert {c for cats in CATEGORY_ECS.values() for c in cats} <= allowed


# --- obtaining the spec ---------------------------------------------------------------------------


def test_a_tarball_with_another_digest_is_refused_and_deleted(tmp_path):
    bad = tmp_path / f"elastic-ecs-{ecs_spec.ECS_PACKAGE_VERSION}.tgz"
    bad.write_bytes(b"not the package")
    with pytest.raises(EcsSpecError, match="sha256"):
        ecs_spec.load_spec(tmp_path, fetch=False)
    assert not bad.exists()


def test_absent_without_fetch_is_unavailable(tmp_path):
    with pytest.raises(EcsSpecUnavailable, match="absent"):
        ecs_spec.load_spec(tmp_path, fetch=False)


def _tarball(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


FLAT = "package/build/commonjs/ecs_flat.js"
INDEX = "package/build/commonjs/index.js"


def test_parse_package_reads_the_literal():
    flat = """exports.EcsFlat = {
    '@timestamp': { type: 'date', normalize: [], example: 1.5e3, required: true, x: null },
    "event.kind": {
        allowed_values: [{ name: 'alert', description: 'it\\'s an \\"alert\\"\\n\\u00e9' }, { name: 'event', }],
        type: 'keyword', // a comment
    },
};"""
    spec = ecs_spec.parse_package(_tarball({FLAT: flat, INDEX: f"exports.EcsVersion = '{ECS_VERSION}';"}))
    assert spec.version == ECS_VERSION
    assert spec.fields["@timestamp"].type == "date" and not spec.fields["@timestamp"].array
    assert spec.fields["event.kind"].allowed_values == ("alert", "event")
    assert ecs_spec._parse_js_literal("{a: 'it\\'s\\n'}", 0)[0] == {"a": "it's\n"}


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ("exports.EcsFlat = { a: { type: require('x') } };", "unexpected"),
        ("exports.EcsFlat = { a: { type: 'k' }, a: { type: 'k' } };", "duplicate"),
        ("exports.EcsFlat = { a: { type: `k` } };", "unexpected"),
        ("exports.EcsFlat = { a: { type: 'k' } b: 1 };", "expected ','"),
        ("exports.EcsFlat = { a: { name: 'k' } };", "no type"),
        ("exports.EcsFlat = {};", "non-empty"),
        ("exports.Other = {};", "EcsFlat"),
    ],
)
def test_parse_package_refuses_what_it_does_not_expect(flat, message):
    data = _tarball({FLAT: flat, INDEX: f"exports.EcsVersion = '{ECS_VERSION}';"})
    with pytest.raises(EcsSpecError, match=message):
        ecs_spec.parse_package(data)


def test_parse_package_checks_the_ecs_version_and_members():
    flat = "exports.EcsFlat = { a: { type: 'keyword' } };"
    with pytest.raises(EcsSpecError, match="EcsVersion"):
        ecs_spec.parse_package(_tarball({FLAT: flat, INDEX: "exports.EcsVersion = '8.12.0-dev';"}))
    with pytest.raises(EcsSpecError, match="has no"):
        ecs_spec.parse_package(_tarball({FLAT: flat}))


def test_the_cached_package_is_the_pinned_one(spec):
    path = Path(ecs_spec.CACHE_DIR) / f"elastic-ecs-{ecs_spec.ECS_PACKAGE_VERSION}.tgz"
    assert ecs_spec._sha256(path) == ecs_spec.ECS_PACKAGE_SHA256
    assert len(spec.fields) > 2000  # ECS 9.4.0 defines 2,605


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_an_unreachable_registry_is_unavailable_not_a_failure(tmp_path, monkeypatch):
    """The one case the spec tests skip on: npm cannot reach its registry (here a closed port on
    loopback); nothing is left in the cache."""
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    with pytest.raises(EcsSpecUnavailable, match="ECONNREFUSED"):
        ecs_spec.fetch_package(tmp_path / "ecs")
    assert not list((tmp_path / "ecs").glob("*.tgz"))


def test_without_npm_the_fetch_fails_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(ecs_spec.shutil, "which", lambda _name: None)
    with pytest.raises(EcsSpecError, match="npm is required") as info:
        ecs_spec.fetch_package(tmp_path)
    assert not isinstance(info.value, EcsSpecUnavailable)  # a missing tool fails, never skips
