"""Per-tenant index names, where each document goes, and the per-tenant copies of an alert that
involves several tenants (``infra.tenant_indices``, ``streams.documents``). The live side (the
SOC alias, a tenant's pattern on a real Elasticsearch) is ``tests/integration/test_tenant_indices.py``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from analyst.alerts import AlertStore
from analyst.incidents import IncidentStore
from dashboards.datasource import datasources
from detectors.alert import Alert, Attack, Entity, decode_alert, encode_alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors
from detectors.samples import load_cases, sample_files, samples_registry
from infra.bootstrap import alerts_template, awareness_templates, metrics_template
from infra.settings import Settings
from infra.tenant_indices import (
    COPY_FIELD,
    document_index,
    is_index_tenant,
    read_index,
    soc_alias,
    soc_alias_filter,
    soc_index,
    tenant_index,
    tenant_index_pattern,
    tenant_index_patterns,
)
from ingest.tenants import TenantRegistry
from streams.documents import (
    ANOTHER_TENANT,
    alert_action,
    alert_actions,
    alert_copies,
    awareness_action,
    awareness_actions,
    daily_index,
    dlq_action,
    incident_copies,
    lag_action,
    metrics_action,
    redact,
)
from streams.indexer import Indexer

DAY = 1_764_000_000_000  # 2025-11-24
REG = samples_registry()


# --- names ---------------------------------------------------------------------------------------
def test_names_of_a_tenants_indices_and_the_socs() -> None:
    assert tenant_index("ssa-alerts-", "t-acme", DAY) == "ssa-alerts-t-t-acme.2025.11.24"
    assert soc_index("ssa-alerts-", DAY) == "ssa-alerts-soc.2025.11.24"
    assert tenant_index_pattern("ssa-alerts-", "t-acme") == "ssa-alerts-t-t-acme.*"
    assert soc_alias("ssa-alerts-") == "ssa-alerts" and soc_alias("x_") == "x"
    assert read_index("ssa-alerts-", None) == "ssa-alerts"
    assert read_index("ssa-alerts-", "t-acme") == "ssa-alerts-t-t-acme.*"
    # Capitals: lower case (index names must be), with a hash of the exact id.
    upper, lower = tenant_index("p-", "Acme", DAY), tenant_index("p-", "acme", DAY)
    assert upper != lower and upper == upper.lower() and upper.startswith("p-t-acme~")


@pytest.mark.parametrize("other", ["ab", "a-b", "a_b", "a-", "b", "Ab", "A"])
def test_a_tenants_pattern_matches_no_other_tenants_index_nor_the_socs(other: str) -> None:
    for prefix in ("ssa-alerts-", "ssa-incidents-", "ssa-metrics-"):
        pattern = tenant_index_pattern(prefix, "a")
        assert fnmatchcase(tenant_index(prefix, "a", DAY), pattern)
        assert not fnmatchcase(tenant_index(prefix, other, DAY), pattern)
        assert not fnmatchcase(soc_index(prefix, DAY), pattern)
        assert not fnmatchcase(prefix + "2025.11.24", pattern)  # the shared index of earlier versions


def test_every_kind_has_a_pattern_per_tenant() -> None:
    patterns = tenant_index_patterns(Settings(), "t-acme")
    assert len(patterns) == 5 and all(p.endswith("t-t-acme.*") for p in patterns)


@pytest.mark.parametrize(
    "tenant", [None, "", "-", "_cloud", "_provider", "unknown", "provider", "a.b", "a b", 7]
)
def test_documents_of_no_tenant_go_to_the_soc_index(tenant: Any) -> None:
    assert not is_index_tenant(tenant)
    assert document_index("ssa-metrics-", tenant, DAY) == "ssa-metrics-soc.2025.11.24"


def test_the_templates_put_every_new_index_in_the_soc_alias_and_the_alerts_alias_is_filtered() -> None:
    s = Settings()
    alerts = alerts_template(s)["template"]
    assert alerts["aliases"] == {"ssa-alerts": {"filter": soc_alias_filter()}}
    assert alerts["mappings"]["properties"]["copy"]["type"] == "keyword"
    assert metrics_template(s)["template"]["aliases"] == {"ssa-metrics": {}}
    assert {name: t["template"]["aliases"] for name, t in awareness_templates(s).items()} == {
        "ssa-incidents": {"ssa-incidents": {"filter": soc_alias_filter()}},
        "ssa-threat": {"ssa-threat": {}},
        "ssa-warnings": {"ssa-warnings": {}},
    }


# --- where documents go --------------------------------------------------------------------------
def test_metrics_awareness_dlq_and_lag_documents_go_to_their_tenants_or_the_soc_index() -> None:
    m = msgspec.json.encode({"ts": DAY, "tenant": "t-a", "kind": "flow", "key": "t-a", "events": 3})
    assert metrics_action(m, "m-").index == "m-t-t-a.2025.11.24"
    m = msgspec.json.encode({"ts": DAY, "tenant": "-", "kind": "flow", "key": "k", "events": 3})
    assert metrics_action(m, "m-").index == "m-soc.2025.11.24"
    assert dlq_action("m-", "ssa.dlq", 0, 1, DAY, b"{}").index == "m-soc.2025.11.24"
    assert lag_action("m-", "ssa.telemetry.flow", 3, DAY).index == "m-soc.2025.11.24"
    cloud = {"kind": "threat", "doc_id": "c1", "tenant": "_cloud", "ts": DAY, "index": 3.0}
    assert awareness_action(msgspec.json.encode(cloud), "threat", "th-").index == "th-soc.2025.11.24"
    level = cloud | {"tenant": "t-b", "doc_id": "b1"}
    assert awareness_action(msgspec.json.encode(level), "threat", "th-").index == "th-t-t-b.2025.11.24"
    # An incident stays in the index of the day it began, its tenant's.
    incident = {"incident_id": "i1", "tenant": "t-b", "first_seen": DAY, "last_seen": DAY + 3 * 86_400_000}
    action = awareness_action(msgspec.json.encode(incident), "incidents", "inc-")
    assert (action.index, action.op_type) == ("inc-t-t-b.2025.11.24", "update")


def _alert(tenant: str | None, entity: Entity, evidence: dict[str, Any], summary: str = "s") -> Alert:
    return Alert(
        alert_id="a" * 32, ts=DAY, first_seen=DAY - 5_000, last_seen=DAY - 1_000, tenant=tenant, entity=entity,
        category="cross_tenant_leak", severity="high", score=80, detector="cross_tenant.unpeered_flow",
        detector_version="1.0.0", attack=Attack("Exfiltration", "T1048", "Exfiltration Over Alternative Protocol"),
        summary=summary, evidence={"count": 1, **evidence},
    )  # fmt: skip


def test_an_alert_of_one_tenant_is_one_document_in_its_index_and_one_without_a_tenant_the_socs() -> None:
    own = _alert("t-acme", Entity("vm", "vm-acme-01"), {"victim": "203.0.113.5"})
    actions = alert_actions(encode_alert(own), "a-", REG.industry_of, REG)
    assert [(a.index, a.id, a.op_type) for a in actions] == [("a-t-t-acme.2025.11.24", "a" * 32, "create")]
    assert "copy" not in actions[0].source and actions[0].source["evidence"]["victim"] == "203.0.113.5"
    none = _alert(None, Entity("host", "hv-01"), {})
    assert [a.index for a in alert_actions(encode_alert(none), "a-", REG.industry_of, REG)] == [
        "a-soc.2025.11.24"
    ]


# --- alerts that involve two tenants -------------------------------------------------------------
def _sample_alerts() -> Iterator[Alert]:
    """Every alert the rule samples raise (with the samples' registry)."""
    for path in sample_files():
        for case in load_cases(path):
            if case.trigger:
                ctx = DetectionContext(REG)
                yield from DetectionEngine(all_detectors(ctx.config), ctx, strict=True).run(case.events)


ALERTS = list(_sample_alerts())
MULTI = [a for a in ALERTS if len(alert_actions(encode_alert(a), "a-", REG.industry_of, REG)) > 1]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _tenant_private(tenant: str, registry: TenantRegistry) -> set[str]:
    t = registry.tenants[tenant]
    out = {tenant, t.name, *t.accounts}
    for vm_id in t.vms:
        vm = registry.vms[vm_id]
        out |= {vm_id, *(x for x in (vm.ip, vm.disk) if x)}
    return {x for x in out if x}


def _private_of(tenant: str, full: dict[str, Any], registry: TenantRegistry) -> set[str]:
    """Tenant's private strings, found independently of the code under test: the registry's
    (id, name, accounts, VMs, their addresses and disks), every value of the full alert's entity
    and evidence that holds one of them, and every address of the alert in the tenant's ranges."""
    base = _tenant_private(tenant, registry)
    found = set(base)
    for s in _strings({"entity": full["entity"], "evidence": full["evidence"], "summary": full["summary"]}):
        for word in s.split():
            word = word.strip(",;:.)(")
            if any(b in word for b in base if len(b) >= 4):
                found.add(word)
            for ip in re.findall(r"\d+\.\d+\.\d+\.\d+", word):
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    continue
                if registry.tenant_of_ip(ip) == tenant:
                    found.add(ip)
    return found


def _leaks(doc: dict[str, Any], private: set[str]) -> list[tuple[str, str]]:
    out = []
    for s in _strings(doc):
        for p in private:
            if (len(p) >= 4 and p in s) or (
                len(p) < 4 and re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", s)
            ):
                out.append((p, s))
    return out


def test_the_samples_hold_alerts_involving_two_tenants_of_each_family() -> None:
    detectors = {a.detector for a in MULTI}
    assert {"cross_tenant.unpeered_flow", "cross_tenant.foreign_resource_access"} <= detectors
    assert {"vm_escape.emulator_foreign_file", "vm_escape.svirt_cross_vm_access"} <= detectors


@pytest.mark.parametrize("alert", MULTI, ids=[f"{a.detector}:{a.tenant}:{i}" for i, a in enumerate(MULTI)])
def test_each_tenants_copy_holds_none_of_the_other_tenants_private_entities(alert: Alert) -> None:
    actions = alert_actions(encode_alert(alert), "a-", REG.industry_of, REG)
    full = actions[0].source
    day = soc_index("", alert.ts).removeprefix("soc.")
    assert actions[0].index == f"a-soc.{day}" and "copy" not in full and full["tenant"] == alert.tenant
    assert full["summary"] == alert.summary  # the SOC's document is the whole alert
    copies = {a.source["tenant"]: a for a in actions[1:]}
    assert len(copies) == len(actions) - 1 >= 2 - (alert.tenant is None)
    for tenant, action in copies.items():
        doc = action.source
        assert action.id == doc["alert_id"] == alert.alert_id and action.op_type == "create"
        assert action.index == tenant_index("a-", tenant, alert.ts)
        assert doc["industry"] == REG.industry_of(tenant)
        assert "owner_tenant" not in doc
        if tenant == alert.tenant:
            assert doc["copy"] == "tenant" and "shared_copy" not in doc
        else:
            assert doc["copy"] == "shared" and doc["shared_copy"] is True
            assert set(doc["evidence"]) <= {"src_tenant", "dst_tenant", "channel", "signal", "window_start",
                                            "window_end", "count", "resource"}  # fmt: skip
        # Still an alert document (the workflow and the demo read copies as alerts).
        fields = {k: v for k, v in doc.items() if k in Alert.__struct_fields__}
        assert decode_alert(msgspec.json.encode(fields)).alert_id == alert.alert_id
        for other in set(REG.tenants) - {tenant}:
            private = _private_of(other, full, REG) - _tenant_private(tenant, REG)
            assert not _leaks(doc, private), (tenant, other, _leaks(doc, private))
        # ECS address fields still parse (a redacted address is never written there).
        for field in ("source", "destination"):
            if field in doc:
                ipaddress.ip_address(doc[field]["ip"])


def test_the_non_owning_tenants_copy_keeps_its_own_side() -> None:
    escape = next(a for a in MULTI if a.detector == "vm_escape.emulator_foreign_file")
    by_tenant = {t: d for t, d in alert_copies(msgspec.to_builtins(escape), REG)}
    assert set(by_tenant) == {None, "t-acme", "t-beta"}
    beta = by_tenant["t-beta"]
    assert beta["entity"] == {"type": "vm", "id": "vm-beta-01"}
    assert beta["evidence"]["signal"] == "foreign_vm_disk"
    assert ANOTHER_TENANT in beta["summary"] and "vm-acme" not in str(beta)
    acme = by_tenant["t-acme"]
    assert acme["entity"] == {"type": "vm", "id": "vm-acme-01"} and acme["evidence"]["host"] == "hv-01"
    assert "vm-beta-01" not in str(acme) and acme["evidence"]["count"] == escape.evidence["count"]


def test_the_owner_of_a_resource_reached_gets_it_named_in_its_copy() -> None:
    access = next(
        a for a in MULTI if a.detector == "cross_tenant.foreign_resource_access" and a.tenant == "t-gamma"
    )
    acme = dict(alert_copies(msgspec.to_builtins(access), REG))["t-acme"]
    assert acme["entity"] == {"type": "principal", "id": ANOTHER_TENANT}  # gamma's principal, unnamed
    assert acme["evidence"]["resource"].startswith(("storage/t-acme/", "snapshot/t-acme/"))
    assert acme["evidence"]["resource"] in acme["summary"] and "mallory" not in str(acme)


def test_a_flow_alerts_address_in_free_text_is_redacted_through_the_registry() -> None:
    # An address of acme's range that no VM holds, in the summary only: found by the registry.
    alert = _alert(
        "t-acme", Entity("ip", "10.1.7.7"), {"src_tenant": "t-acme", "dst_tenant": "t-gamma", "channel": "flow"},
        summary="10.1.7.7 sent 3 GB to 10.3.9.9 (t-gamma), 10.3.9.90 too",
    )  # fmt: skip
    copies = dict(alert_copies(msgspec.to_builtins(alert), REG))
    gamma, acme = copies["t-gamma"], copies["t-acme"]
    assert gamma["entity"] == {"type": "ip", "id": ANOTHER_TENANT} and "10.1.7.7" not in str(gamma)
    assert (
        acme["summary"] == f"10.1.7.7 sent 3 GB to {ANOTHER_TENANT} ({ANOTHER_TENANT}), {ANOTHER_TENANT} too"
    )
    assert acme["evidence"]["dst_tenant"] == ANOTHER_TENANT


def test_redaction_takes_whole_words_and_never_a_longer_neighbours_prefix() -> None:
    hidden = {"10.1.0.5", "vm-a", "b"}
    assert redact("10.1.0.5 and 10.1.0.6", hidden, "x") == f"{ANOTHER_TENANT} and 10.1.0.6"
    # A string still holding a hidden string of 4+ characters goes whole (the price of certainty).
    assert redact("10.1.0.5 and 10.1.0.55", hidden, "x") == ANOTHER_TENANT
    assert redact("iam::b:user/mallory, b-c, bb", hidden, "x") == f"{ANOTHER_TENANT}, b-c, bb"
    assert redact({"disk of vm-a: open": 1}, hidden, "x") == {f"disk of {ANOTHER_TENANT}: open": 1}
    assert redact(["x-vm-a-y", 3, None], hidden, "x") == [ANOTHER_TENANT, 3, None]  # inside a word


def test_the_indexer_writes_every_copy_and_alert_action_gives_the_socs() -> None:
    escape = next(a for a in MULTI if a.detector == "vm_escape.emulator_foreign_file")
    s = Settings()
    idx = Indexer(s, industry_of=REG.industry_of, registry=lambda: REG)
    rec = SimpleNamespace(
        topic=s.topic_alerts, partition=0, offset=1, timestamp=0, value=encode_alert(escape)
    )
    actions, bad = idx.actions_for([rec])
    assert bad == [] and [a.index.split(".")[0] for a in actions] == [
        "ssa-alerts-soc", "ssa-alerts-t-t-acme", "ssa-alerts-t-t-beta"]  # fmt: skip
    assert (
        alert_action(encode_alert(escape), s.index_alerts_prefix, REG.industry_of, REG).index
        == actions[0].index
    )
    ahead = idx._indices_ahead(DAY - DAY % 86_400_000)
    assert "ssa-alerts-t-t-gamma.2025.11.25" in ahead and "ssa-metrics-soc.2025.11.24" in ahead
    assert "ssa-incidents-soc.2025.11.24" in ahead
    assert {"ssa-threat-soc.2025.11.25", "ssa-threat-t-t-gamma.2025.11.24"} <= set(ahead)
    assert not any(i.startswith("ssa-warnings-") for i in ahead)  # rare: made by the first one


# --- incidents that involve two tenants ----------------------------------------------------------
def _stage_incidents(alerts: list[Alert]) -> list[dict[str, Any]]:
    """The latest document of each incident the awareness stage makes of ``alerts``."""
    from streams.awareness_eval import AwarenessStage, final_incidents
    from streams.detect_fn import END_OF_TIME

    stage = AwarenessStage(REG, DetectorConfig.default())
    for alert in sorted(alerts, key=lambda a: (a.ts, a.alert_id)):
        stage.on_alert(alert)
    stage.advance(END_OF_TIME)
    return [{k: v for k, v in d.items() if k != "_seq"} for d in final_incidents(stage.incidents).values()]


INCIDENTS = _stage_incidents(ALERTS)
CROSS = [d for d in INCIDENTS if d.get("other_tenants")]


def test_the_sample_alerts_make_incidents_on_both_sides_that_name_each_other() -> None:
    pairs = {(d["tenant"], o) for d in CROSS for o in d["other_tenants"]}
    assert ("t-acme", "t-beta") in pairs and ("t-beta", "t-acme") in pairs
    assert any("tenant t-beta" in d["title"] for d in CROSS if d["tenant"] == "t-acme")
    # The stage keeps a principal it cannot place in a tenant's view: the copy must hide it too.
    assert any(
        e["id"] == "iam::t-beta:user/bob" for d in CROSS if d["tenant"] == "t-acme" for e in d["entities"]
    )


@pytest.mark.parametrize("incident", CROSS, ids=lambda d: f"{d['tenant']}-{d['incident_id'][:12]}")
def test_a_tenants_copy_of_a_cross_tenant_incident_names_no_other_tenant(incident: dict[str, Any]) -> None:
    tenant = incident["tenant"]
    actions = awareness_actions(msgspec.json.encode(incident), "incidents", "inc-", REG)
    day = daily_index("", incident["first_seen"])
    assert [(a.index, a.id, a.op_type) for a in actions] == [
        (f"inc-soc.{day}", incident["incident_id"], "update"),
        (f"inc-t-{tenant}.{day}", incident["incident_id"], "update"),
    ]
    soc, mine = (a.source["doc"] for a in actions)
    assert COPY_FIELD not in soc and soc["other_tenants"] == incident["other_tenants"]  # the SOC's: whole
    assert mine[COPY_FIELD] == "tenant" and mine["tenant"] == tenant
    # Every other tenant's strings: those it names and those of any tenant in the registry.
    private = set().union(*(_tenant_private(o, REG) for o in REG.tenants if o != tenant))
    private -= _tenant_private(tenant, REG)
    assert private and not _leaks(mine, private), _leaks(mine, private)
    # Once, however many other tenants there are: the count is the SOC's to know.
    assert mine["other_tenants"] == [ANOTHER_TENANT]
    assert [e["id"] for e in mine["entities"] if e["type"] == "tenant"] in ([], [ANOTHER_TENANT])
    # What the tenant sees of its own side is unchanged.
    theirs = [e for e in incident["entities"] if e["type"] == "tenant" or _leaks({"e": e}, private)]
    assert [e for e in mine["entities"] if e["id"] != ANOTHER_TENANT] == [
        e for e in incident["entities"] if e not in theirs
    ]
    assert (mine["alert_ids"], mine["kill_chain"], mine["severity"]) == (
        incident["alert_ids"], incident["kill_chain"], incident["severity"],
    )  # fmt: skip


def test_tenant_phrases_of_an_incident_title_read_another_tenant() -> None:
    doc = {"incident_id": "i1", "tenant": "t-acme", "first_seen": DAY, "other_tenants": ["t-beta"],
           "title": "Tenant t-acme, from tenant t-beta: read of tenant t-beta's storage, traffic to tenant t-beta",
           "entities": [{"type": "tenant", "id": "t-beta", "link": True}]}  # fmt: skip
    (_soc, soc), (home, mine) = incident_copies(doc, REG)
    assert home == "t-acme" and soc == doc
    assert mine["title"] == (
        "Tenant t-acme, from another tenant: read of another tenant's storage, traffic to another tenant"
    )
    # A tenant named in an entity only still makes a copy; an incident naming none makes one document.
    only_entity = {k: v for k, v in doc.items() if k != "other_tenants"}
    assert [t for t, _ in incident_copies(only_entity, REG)] == [None, "t-acme"]
    alone = {
        "incident_id": "i2",
        "tenant": "t-acme",
        "first_seen": DAY,
        "title": "VM vm-acme-01 of tenant t-acme",
    }
    assert incident_copies(alone, REG) == [("t-acme", alone)]
    provider = {**doc, "tenant": "_provider"}
    assert incident_copies(provider, REG) == [(None, provider)]


def test_a_tenants_copy_does_not_tell_how_many_other_tenants_its_incident_names() -> None:
    doc = {"incident_id": "i3", "tenant": "t-acme", "first_seen": DAY, "other_tenants": ["t-beta", "t-gamma"],
           "title": "VM vm-acme-01 of tenant t-acme: traffic to tenant t-beta, traffic to tenant t-gamma, "
                    "then read of tenant t-gamma's storage", "alert_ids": ["a1", "a2"],
           "entities": [{"type": "vm", "id": "vm-acme-01"}, {"type": "tenant", "id": "t-beta", "link": True},
                        {"type": "tenant", "id": "t-gamma", "link": True}]}  # fmt: skip
    (_soc, soc), (_home, mine) = incident_copies(doc, REG)
    assert soc["other_tenants"] == ["t-beta", "t-gamma"]  # the SOC's document: both
    assert mine["other_tenants"] == [ANOTHER_TENANT]
    assert mine["entities"] == [
        {"type": "vm", "id": "vm-acme-01"},
        {"type": "tenant", "id": ANOTHER_TENANT, "link": True},
    ]
    assert mine["alert_ids"] == ["a1", "a2"]  # lists without a redacted entry are left as they are
    assert (
        mine["title"]
        == "VM vm-acme-01 of tenant t-acme: traffic to another tenant, then read of another tenant's storage"
    )


# --- readers -------------------------------------------------------------------------------------
def test_readers_search_the_soc_alias_or_the_tenants_own_pattern() -> None:
    s = Settings()
    assert AlertStore(None, s).index == "ssa-alerts"  # type: ignore[arg-type]
    assert AlertStore(None, s, tenant_scope="t-b").index == "ssa-alerts-t-t-b.*"  # type: ignore[arg-type]
    store = IncidentStore(None, s, tenant_scope="t-b")  # type: ignore[arg-type]
    assert (store.index, store.alerts_index) == ("ssa-incidents-t-t-b.*", "ssa-alerts-t-t-b.*")
    assert {d.index for d in datasources(s)} == {"ssa-alerts", "ssa-metrics", "ssa-incidents", "ssa-threat",
                                                 "ssa-warnings"}  # fmt: skip
    assert all(d.index.endswith("t-t-b.*") for d in datasources(s, "t-b"))
