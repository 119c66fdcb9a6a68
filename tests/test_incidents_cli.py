"""Incident workflow (``ssa incidents list|show|ack|close|snooze``): a live run on the real
Elasticsearch with the sample incidents of three tenants and their alerts."""

from __future__ import annotations

import pytest

from analyst.incidents import IncidentFilter, IncidentStore, format_incident, format_incident_line
from analyst.scope import AnalystError, NotFoundError, TenantScopeError
from awareness.snooze import load_snoozes
from dashboards.es import es_client
from dashboards.sample import (
    put_awareness_templates,
    put_templates,
    sample_alerts,
    sample_incidents,
)
from tests.integration.test_tenant_indices import seed_documents

BASE = 1_736_935_200_000  # 2025-01-15T10:00:00Z
MIN = 60_000


def test_filter_validation():
    with pytest.raises(AnalystError, match="unknown status"):
        IncidentFilter(status="acknowledged")
    with pytest.raises(AnalystError, match="unknown workflow"):
        IncidentFilter(workflow="done")
    with pytest.raises(AnalystError, match="unknown severity"):
        IncidentFilter(min_severity="urgent")


@pytest.fixture(scope="module")
def live(stack, tmp_path_factory):
    settings = stack.with_overrides(
        index_alerts_prefix="test-icli-alerts-", index_metrics_prefix="test-icli-metrics-",
        index_incidents_prefix="test-icli-incidents-", index_threat_prefix="test-icli-threat-",
        index_warnings_prefix="test-icli-warnings-",
        snooze_file=str(tmp_path_factory.mktemp("snooze") / "snoozes.yaml"),
    )  # fmt: skip
    es = es_client(settings)
    put_templates(es, settings, "test-icli")
    put_awareness_templates(es, settings, "test-icli")
    seed_documents(es, settings, settings.index_alerts_prefix, sample_alerts(BASE, newer=True), "alert_id")
    incidents = sample_incidents(BASE)
    seed_documents(es, settings, settings.index_incidents_prefix, incidents, "incident_id", "first_seen")
    yield es, settings, incidents
    names = list(es.indices.get(index="test-icli-*", ignore_unavailable=True, allow_no_indices=True))
    if names:
        es.indices.delete(index=",".join(names))
    for template in es.indices.get_index_template(name="test-icli*")["index_templates"]:
        es.indices.delete_index_template(name=template["name"])


@pytest.mark.integration
def test_list_show_and_scope(live):
    es, settings, incidents = live
    store = IncidentStore(es, settings)
    assert {d["incident_id"] for d in store.list()} == {d["incident_id"] for d in incidents}
    acme = IncidentStore(es, settings, tenant_scope="t-acme")
    mine = {d["incident_id"] for d in incidents if d["tenant"] == "t-acme"}
    assert {d["incident_id"] for d in acme.list()} == mine
    assert {d["incident_id"] for d in acme.list(IncidentFilter(status="closed"))} == {
        d["incident_id"] for d in incidents if d["tenant"] == "t-acme" and d["status"] == "closed"
    }
    with pytest.raises(TenantScopeError):
        acme.list(IncidentFilter(tenant="t-beta"))
    other = next(d for d in incidents if d["tenant"] == "t-beta")
    with pytest.raises(NotFoundError, match="for tenant t-acme"):  # another tenant's id is not found
        acme.show(other["incident_id"])
    first = next(d for d in incidents if d["tenant"] == "t-acme")
    shown = acme.show(first["incident_id"])
    alerts = acme.alerts_of(shown)
    assert {a["alert_id"] for a in alerts} == set(first["alert_ids"])
    assert [a["first_seen"] for a in alerts] == sorted(a["first_seen"] for a in alerts)
    text = format_incident(shown, alerts)
    assert first["title"] in format_incident_line(shown) and "alerts:" in text


@pytest.mark.integration
def test_ack_close_and_snooze_leave_an_audit_trail(live):
    es, settings, incidents = live
    store = IncidentStore(es, settings, tenant_scope="t-gamma")
    doc = next(d for d in incidents if d["tenant"] == "t-gamma" and d["status"] == "open")
    iid = doc["incident_id"]
    acked = store.transition(iid, "acknowledged", "ana", "looking", now_ms=BASE + 90 * MIN)
    assert acked["workflow"] == "acknowledged"
    closed = store.transition(iid, "closed", "ana", "contained", now_ms=BASE + 120 * MIN)
    assert closed["ttc_ms"] == BASE + 120 * MIN - doc["first_seen"]
    with pytest.raises(AnalystError, match="cannot move it"):
        store.transition(iid, "acknowledged", "ana")
    again = store.show(iid)  # the job's fields kept, the analyst's added
    assert again["title"] == doc["title"] and [h["status"] for h in again["workflow_history"]] == [
        "acknowledged",
        "closed",
    ]
    alert = store.alerts_of(again)[0]
    _updated, snooze = store.snooze(
        iid, alert["detector"], alert["entity"]["id"], 2 * 60 * MIN, "ana", "known scanner", now_ms=BASE
    )
    assert snooze.tenant == "t-gamma" and snooze.until_ms == BASE + 120 * MIN
    assert load_snoozes(settings.snooze_file) == [snooze]
    audit = store.show(iid)["audit"]
    assert audit[-1]["action"] == "snooze" and audit[-1]["by"] == "ana"
    with pytest.raises(AnalystError, match="who"):
        store.snooze(iid, alert["detector"], alert["entity"]["id"], MIN, "ana", " ")
