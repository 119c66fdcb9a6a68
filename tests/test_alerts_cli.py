"""Alert workflow (``ssa alerts list|show|ack|close``): unit checks and a live run with two tenants."""

from __future__ import annotations

import pytest

from analyst.alerts import (
    AlertFilter,
    AlertNotFoundError,
    AlertStore,
    AlertWorkflowError,
    TenantScopeError,
    format_alert,
    format_alert_line,
)
from dashboards.build import dashboards
from dashboards.es import es_client
from dashboards.sample import put_templates, sample_alerts
from dashboards.translate import flatten_response, translate_target
from infra.settings import Settings
from tests.integration.test_tenant_indices import seed_documents

BASE = 1_736_935_200_000  # 2025-01-15T10:00:00Z


class LeakyES:
    """Returns a hit of another tenant whatever the query says: the store must refuse it."""

    def __init__(self):
        self.queries = []

    def search(self, **kwargs):
        self.queries.append(kwargs["query"])
        hit = {"_id": "x", "_index": "i", "_source": {"tenant": "t-beta", "alert_id": "x"}}
        return {"hits": {"hits": [hit]}}


def test_scoped_store_filters_in_query_and_checks_every_hit():
    es = LeakyES()
    store = AlertStore(es, Settings(), tenant_scope="t-acme")  # type: ignore[arg-type]
    with pytest.raises(TenantScopeError, match="another tenant"):
        store.list()
    assert {"term": {"tenant": "t-acme"}} in es.queries[0]["bool"]["filter"]
    with pytest.raises(TenantScopeError):
        store.show("x")
    with pytest.raises(TenantScopeError, match="scoped to tenant t-acme"):
        store.list(AlertFilter(tenant="t-beta"))


def test_filter_validation():
    with pytest.raises(AlertWorkflowError, match="unknown status"):
        AlertFilter(status="done")
    with pytest.raises(AlertWorkflowError, match="unknown severity"):
        AlertFilter(severity=("urgent",))
    with pytest.raises(AlertWorkflowError, match="limit"):
        AlertFilter(limit=0)


def test_formatting():
    doc = sample_alerts(BASE)[0] | {
        "status_history": [{"status": "acknowledged", "by": "ana", "at": BASE, "reason": "looking"}]
    }
    line = format_alert_line(doc)
    assert doc["alert_id"] in line and "t-acme" in line and "critical" in line and "vm:vm-acme-01" in line
    text = format_alert(doc)
    assert "T1611" in text and "acknowledged by ana: looking" in text


@pytest.fixture(scope="module")
def live(stack):
    settings = stack.with_overrides(
        index_alerts_prefix="test-acli-alerts-", index_metrics_prefix="test-acli-metrics-"
    )
    es = es_client(settings)
    put_templates(es, settings, "test-alerts-cli")
    docs = sample_alerts(BASE)
    seed_documents(es, settings, settings.index_alerts_prefix, docs, "alert_id")  # per tenant, SOC alias
    yield es, settings, docs
    names = list(
        es.indices.get(
            index="test-acli-alerts-*,test-acli-metrics-*", ignore_unavailable=True, allow_no_indices=True
        )
    )
    if names:
        es.indices.delete(index=",".join(names))
    for name in ("test-alerts-cli-alerts", "test-alerts-cli-metrics"):
        es.indices.delete_index_template(name=name)


def _ids(docs, **match):
    return {d["alert_id"] for d in docs if all(d[k] == v for k, v in match.items())}


@pytest.mark.integration
def test_list_filters_and_tenant_scope(live):
    es, settings, docs = live
    store = AlertStore(es, settings)
    assert len(store.list()) == 15
    acme = AlertStore(es, settings, tenant_scope="t-acme")
    got = acme.list()
    assert {d["alert_id"] for d in got} == _ids(docs, tenant="t-acme")
    assert all(d["tenant"] == "t-acme" for d in got)
    assert [d["ts"] for d in got] == sorted((d["ts"] for d in got), reverse=True)
    beta_open = AlertStore(es, settings, tenant_scope="t-beta").list(AlertFilter(status="open"))
    assert {d["alert_id"] for d in beta_open} == _ids(docs, tenant="t-beta", status="open")
    crit = store.list(AlertFilter(severity=("critical",), category="vm_escape"))
    assert {d["alert_id"] for d in crit} == _ids(docs, severity="critical", category="vm_escape")
    since = store.list(AlertFilter(since_ms=BASE + 40 * 60_000))
    assert {d["alert_id"] for d in since} == {d["alert_id"] for d in docs if d["ts"] >= BASE + 40 * 60_000}
    # another tenant's alert does not exist for a scoped view, whatever the action
    beta_id = sorted(_ids(docs, tenant="t-beta"))[0]
    assert store.show(beta_id)["tenant"] == "t-beta"
    with pytest.raises(AlertNotFoundError):
        acme.show(beta_id)
    with pytest.raises(AlertNotFoundError):
        acme.ack(beta_id, by="mallory", reason="not mine")
    assert store.show(beta_id)["status"] == next(d["status"] for d in docs if d["alert_id"] == beta_id)


@pytest.mark.integration
def test_ack_close_history_and_dashboard_status(live):
    es, settings, docs = live
    store = AlertStore(es, settings, tenant_scope="t-acme")
    alert_id = next(
        d["alert_id"]
        for d in docs
        if d["tenant"] == "t-acme" and d["status"] == "open" and d["category"] == "port_scan"
    )
    open_panel = next(p for p in dashboards()["ssa-soc-overview"]["panels"] if p["title"] == "Open alerts")

    def open_count():
        body = translate_target(
            open_panel["targets"][0],
            time_field="ts",
            start_ms=BASE,
            end_ms=BASE + 3_600_000,
            interval_ms=300_000,
        )
        rows = flatten_response(
            open_panel["targets"][0], es.search(index=settings.index_alerts_pattern, body=body)
        )
        return sum(r["count"] for r in rows)

    before = open_count()
    acked = store.ack(alert_id, by="ana", reason="investigating", now_ms=BASE + 4_000_000)
    assert acked["status"] == "acknowledged"
    assert store.ack(alert_id, by="ana")["status_history"] == acked["status_history"]  # repeat: no change
    closed = store.close(
        alert_id, by="bo", reason="scanner of the tenant's own pentest", now_ms=BASE + 5_000_000
    )
    shown = store.show(alert_id)
    assert shown["status"] == "closed" and shown["status_updated_at"] == BASE + 5_000_000
    assert [(h["status"], h["by"], h["at"]) for h in shown["status_history"]] == [
        ("acknowledged", "ana", BASE + 4_000_000),
        ("closed", "bo", BASE + 5_000_000),
    ]
    assert closed["status_history"] == shown["status_history"]
    with pytest.raises(AlertWorkflowError, match="is closed; cannot move it to acknowledged"):
        store.ack(alert_id, by="ana")
    assert open_count() == before - 1  # the SOC dashboard's open count follows the workflow


@pytest.mark.integration
def test_concurrent_change_is_retried_not_lost(live):
    es, settings, docs = live
    alert_id = next(
        d["alert_id"]
        for d in docs
        if d["tenant"] == "t-beta" and d["status"] == "open" and d["category"] == "anomaly"
    )
    slow = AlertStore(es, settings)
    stale = slow.show(alert_id)
    AlertStore(es, settings).ack(alert_id, by="ana", reason="first")  # lands between read and write
    reads = []
    real_show = slow.show

    def show_once_stale(aid):
        reads.append(aid)
        return stale if len(reads) == 1 else real_show(aid)

    slow.show = show_once_stale  # type: ignore[method-assign]
    slow.close(alert_id, by="bo", reason="second")
    assert len(reads) == 2  # the first write hit a version conflict and was redone
    history = real_show(alert_id)["status_history"]
    assert [(h["status"], h["by"]) for h in history] == [("acknowledged", "ana"), ("closed", "bo")]
