"""Incident statistics export: folding, trend, anonymization, rendering; live on Elasticsearch."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess

import pytest

from analyst.anonymize import AnonymizeError, anonymize, load_key, pseudonym
from analyst.charts import report_charts
from analyst.render import render
from analyst.report import Report, _tables, build_report, fold_buckets, incident_ttc_ms, incident_ttd_ms
from dashboards.es import es_client
from dashboards.sample import INDUSTRIES, put_templates, sample_alerts
from ingest.tenants import TenantRegistry
from tests.integration.test_tenant_indices import seed_documents

KEY = b"0123456789abcdef-test-key"
BASE = 1_736_935_200_000  # 2025-01-15T10:00:00Z
HOUR = 3_600_000


def bucket(
    tenant, category, severity="high", status="open", count=1, ttd=1000.0, technique=("T1046", "Scan")
):
    return {
        "key": {
            "tenant": tenant,
            "industry": None,
            "category": category,
            "severity": severity,
            "status": status,
            "technique_id": technique[0],
            "technique": technique[1],
        },
        "doc_count": count,
        "ttd_sum": {"value": ttd * count},
    }


REGISTRY = TenantRegistry.from_dict(
    {"tenants": [{"id": f"t{i}", "industry": "telecom" if i < 5 else "bank"} for i in range(7)]}
)


def _report(current, previous=(), tenant=None):
    now, before = fold_buckets(current, REGISTRY), fold_buckets(previous, REGISTRY)
    return Report(
        start_ms=BASE,
        end_ms=BASE + HOUR,
        tenant=tenant,
        generated_ms=BASE + HOUR,
        summary={"alerts": now.count, "tenants": len(now.tenants), "ttd_mean_ms": 1.0},
        tables=_tables(now, before),
        tenants=frozenset(now.tenants | before.tenants),
    )


def test_fold_counts_industry_trend_and_ttd():
    current = [
        bucket("t0", "dos", count=3, ttd=100),
        bucket("t1", "dos", severity="low", status="closed"),
        bucket("t5", "port_scan", count=2, ttd=400),
    ]
    previous = [bucket("t0", "dos", count=2), bucket("t2", "exfiltration")]
    report = _report(current, previous)
    dos = report.table("category").row("dos")
    assert dos.values == {"count": 4, "previous": 2, "change_pct": 100.0, "ttd_mean_ms": (300 + 1000) / 4}
    assert dos.tenants == {"t0", "t1"}
    exfil = report.table("category").row("exfiltration")
    assert exfil.values["count"] == 0 and exfil.values["change_pct"] == -100.0
    industry = report.table("industry")
    assert industry.row("telecom").values["count"] == 4 and industry.row("bank").values["count"] == 2
    assert industry.row("telecom").values["closed"] == 1
    assert report.table("status").row("open").values["count"] == 5
    assert report.table("technique").row("T1046 Scan").values["count"] == 6
    assert [r.key for r in report.table("category").rows][:2] == ["dos", "port_scan"]  # largest first


def test_k_suppression_really_suppresses():
    # dos: 5 tenants; port_scan: 2; exfiltration: 1; cryptomining: 6
    current = [bucket(f"t{i}", "dos", count=10 + i) for i in range(5)]
    current += [bucket("t0", "port_scan", count=7), bucket("t1", "port_scan", count=1)]
    current += [bucket("t3", "exfiltration", count=4)]  # two hidden rows: no secondary suppression needed
    current += [bucket(f"t{i}", "cryptomining", count=2) for i in range(6)]
    plain = _report(current)
    anon = anonymize(plain, KEY, k=5)
    cat = anon.table("category")
    assert not cat.row("dos").suppressed and cat.row("dos").values["count"] == sum(range(10, 15))
    assert cat.row("port_scan").suppressed and cat.row("port_scan").values == dict.fromkeys(cat.columns)
    assert cat.row("exfiltration").suppressed
    assert not cat.row("cryptomining").suppressed and cat.row("cryptomining").values["count"] == 12
    # every per-tenant row describes one tenant: all hidden for k > 1
    assert all(r.suppressed for r in anon.table("tenant").rows)
    assert {r.key for r in anon.table("tenant").rows} == {pseudonym(f"t{i}", KEY) for i in range(6)}
    # nothing in any export leaks a suppressed number or a tenant id
    for fmt in ("csv", "json", "md", "html"):
        text = render(anon, fmt).decode()
        for raw in ("t0", "t1", "t5"):
            assert f"'{raw}'" not in text and f'"{raw}"' not in text and f">{raw}<" not in text
        assert "suppressed" in text
    rows = list(csv.reader(io.StringIO(render(anon, "csv").decode())))
    assert ["category", "port_scan", "count", "suppressed"] in rows
    assert not any(r[:2] == ["category", "port_scan"] and r[3] == "8" for r in rows)
    assert "HMAC-SHA256" in render(anon, "md").decode() and "k=5" in render(anon, "json").decode()


def test_secondary_suppression_protects_single_hidden_cell():
    current = [bucket(f"t{i}", "dos", count=5) for i in range(6)] + [
        bucket(f"t{i}", "port_scan", count=3) for i in range(5)
    ]
    current += [bucket("t0", "exfiltration", count=4)]
    anon = anonymize(_report(current), KEY, k=5)
    cat = anon.table("category")
    assert cat.row("exfiltration").suppressed
    assert cat.row("port_scan").suppressed  # smallest other row, else 4 = total - 30 - 15
    assert not cat.row("dos").suppressed


def test_small_population_hides_summary_and_pseudonyms_are_stable(monkeypatch, tmp_path):
    anon = anonymize(_report([bucket("t0", "dos"), bucket("t1", "dos")]), KEY, k=5)
    assert set(anon.summary.values()) == {None}
    assert pseudonym("t-acme", KEY) == pseudonym("t-acme", KEY) != pseudonym("t-beta", KEY)
    assert pseudonym("t-acme", KEY) != pseudonym("t-acme", KEY + b"x")
    assert pseudonym("t-acme", KEY).startswith("T-") and len(pseudonym("t-acme", KEY)) == 14
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    assert load_key(str(key_file), env={}) == KEY
    assert load_key(None, env={"SSA_REPORT_KEY_FILE": str(key_file)}) == KEY
    short = tmp_path / "short"
    short.write_bytes(b"short")
    with pytest.raises(AnonymizeError, match="at least 16 bytes"):
        load_key(str(short), env={})
    with pytest.raises(AnonymizeError, match="at least 16 bytes in a file"):
        load_key(None, env={})
    # A key as a variable's value is refused, saying where it goes instead (secrets are files).
    with pytest.raises(AnonymizeError, match=r"SSA_REPORT_KEY is not read.*SSA_REPORT_KEY_FILE"):
        load_key(None, env={"SSA_REPORT_KEY": KEY.decode()})


MIN = 60_000


def _incident(iid, tenant, severity, stage, categories, first_min, **extra):
    """An incident document as the job (and, for workflow fields, the analyst) writes it."""
    first = BASE + first_min * MIN
    return {
        "incident_id": iid, "tenant": tenant, "status": "open", "close_reason": None, "merged_into": None,
        "closed_at": None, "title": f"{iid} of {tenant}", "severity": severity, "score": 50,
        "criticality": "medium", "stage": stage, "categories": categories, "tactics": [],
        "kill_chain": [{"tactic": stage, "first_seen": first, "categories": categories, "alert_count": 1}],
        "first_seen": first, "last_seen": first + 5 * MIN, "updated": first + 5 * MIN,
        "alert_ids": [f"{iid}-a"], "alert_count": 1, "entities": [], "other_tenants": [], "version": 1,
        **extra,
    }  # fmt: skip


# Incidents of the period [BASE, BASE + 1 h) and around it. Levels (default awareness.threat):
# i1 high + credential_access = 50 -> orange; i2 medium + reconnaissance = 25 -> yellow, raised to
# orange by its vm_escape floor; i3 low + reconnaissance = 10 -> blue; i4 (25 + 15) * 1.3 = 52 -> orange.
INCIDENTS = [
    _incident("i1", "t-acme", "high", "credential_access", ["brute_force"], 5, detected_at=BASE + 7 * MIN,
              status="closed", close_reason="inactive", closed_at=BASE + 60 * MIN, alert_count=4),
    _incident("i2", "t-acme", "medium", "reconnaissance", ["port_scan", "vm_escape"], 10,
              detected_at=BASE + 11 * MIN, workflow="closed", workflow_updated_at=BASE + 40 * MIN,
              workflow_history=[{"status": "closed", "by": "ana", "at": BASE + 40 * MIN, "reason": "done"}],
              alert_count=6),
    _incident("i3", "t-beta", "low", "reconnaissance", ["port_scan"], 20),  # no detected_at
    _incident("i4", "t-gamma", "medium", "collection", ["cross_tenant_leak"], 30, criticality="critical",
              detected_at=BASE + 36 * MIN, status="closed", close_reason="evicted", closed_at=BASE + 50 * MIN,
              alert_count=2),
    _incident("i5", "t-beta", "high", "reconnaissance", ["port_scan"], 25, status="closed",
              close_reason="merged", merged_into="i3", closed_at=BASE + 26 * MIN),  # not counted
    _incident("i6", "t-acme", "high", "credential_access", ["brute_force"], -30),  # previous period
    _incident("i7", "t-beta", "critical", "impact", ["dos"], 61),  # after the period
]  # fmt: skip


def _with_stored_times(doc):
    """The document as the job and the analyst leave it: the tracker stores ``ttd_ms`` and, on its
    inactivity close, ``inactive_ttc_ms``; an analyst's close stores ``ttc_ms``."""
    out = dict(doc)
    if (ttd := incident_ttd_ms(doc)) is not None:
        out["ttd_ms"] = ttd
    if (ttc := incident_ttc_ms(doc)) is not None:
        out["ttc_ms" if doc.get("workflow") == "closed" else "inactive_ttc_ms"] = ttc
    return out


def _threat_docs():
    """The cloud's minute documents: blue 40 min, orange 10, red 5, then 5 minutes of nothing;
    and one t-acme document that the cloud's figures must not count."""
    docs = []
    for m in range(55):
        level = "blue" if m < 40 else "orange" if m < 50 else "red"
        rank = ("blue", "yellow", "orange", "red").index(level)
        docs.append({"doc_id": f"c{m}", "kind": "threat", "tenant": "_cloud", "ts": BASE + m * MIN,
                     "index": 25.0 * rank, "level": level, "level_rank": rank, "reasons": []})  # fmt: skip
    docs.append({"doc_id": "a0", "kind": "threat", "tenant": "t-acme", "ts": BASE, "index": 90.0,
                 "level": "red", "level_rank": 3, "reasons": []})  # fmt: skip
    return docs


@pytest.fixture(scope="module")
def live(stack):
    from infra.bootstrap import awareness_templates

    settings = stack.with_overrides(
        index_alerts_prefix="test-rep-alerts-", index_metrics_prefix="test-rep-metrics-",
        index_incidents_prefix="test-rep-incidents-", index_threat_prefix="test-rep-threat-",
        index_warnings_prefix="test-rep-warnings-",
    )  # fmt: skip
    es = es_client(settings)
    put_templates(es, settings, "test-rep")
    awareness = awareness_templates(settings)
    for name, template in awareness.items():
        es.indices.put_index_template(name=name, **template)
    current = sample_alerts(BASE)
    previous = [
        d | {"alert_id": d["alert_id"] + "-prev", "ts": d["ts"] - HOUR} for d in sample_alerts(BASE)[:6]
    ]
    # Stored as the indexer stores them: per tenant (the cloud's level the SOC's), with the SOC aliases.
    seed_documents(es, settings, settings.index_alerts_prefix, current + previous, "alert_id")
    seed_documents(es, settings, settings.index_incidents_prefix, [_with_stored_times(d) for d in INCIDENTS],
                   "incident_id", "first_seen")  # fmt: skip
    seed_documents(es, settings, settings.index_threat_prefix, _threat_docs(), "doc_id")
    registry = TenantRegistry.from_dict(
        {"tenants": [{"id": t, "industry": i} for t, i in INDUSTRIES.items()]}
    )
    yield es, settings, current, registry
    names = list(
        es.indices.get(
            index="test-rep-alerts-*,test-rep-metrics-*,test-rep-incidents-*,test-rep-threat-*",
            ignore_unavailable=True, allow_no_indices=True,
        )
    )  # fmt: skip
    if names:
        es.indices.delete(index=",".join(names))
    for name in ("test-rep-alerts", "test-rep-metrics", *awareness):
        es.indices.delete_index_template(name=name)


@pytest.mark.integration
def test_build_report_on_elasticsearch(live):
    es, settings, docs, registry = live
    report = build_report(es, settings, BASE, BASE + HOUR, None, registry, page_size=4)  # several pages
    again = build_report(es, settings, BASE, BASE + HOUR, None, registry, page_size=500)
    assert report.tables == again.tables
    assert report.summary["alerts"] == 15 and report.summary["previous_alerts"] == 6
    assert (
        report.summary["open"] == 9 and report.summary["closed"] == 4 and report.summary["acknowledged"] == 2
    )
    ttds = sorted(d["ttd_ms"] for d in docs)
    assert report.summary["ttd_mean_ms"] == pytest.approx(sum(ttds) / len(ttds), abs=0.1)
    assert ttds[11] <= report.summary["ttd_p90_ms"] <= ttds[-1]
    cat = report.table("category")
    assert cat.row("vm_escape").values["count"] == 4 and cat.row("vm_escape").values["previous"] == 4
    assert cat.row("cross_tenant_leak").values == {
        "count": 4,
        "previous": 2,
        "change_pct": 100.0,
        "ttd_mean_ms": (45 + 300 + 240 + 15) * 1000 / 4,
    }
    assert report.table("tenant").row("t-acme").values == {"count": 7, "open": 3, "closed": 3}
    assert report.table("industry").row("finance").values["count"] == 3
    assert report.table("technique").row("T1611 Escape to Host").values["count"] == 4
    scoped = build_report(es, settings, BASE, BASE + HOUR, "t-beta", registry)
    assert scoped.summary["alerts"] == 5 and {r.key for r in scoped.table("tenant").rows} == {"t-beta"}
    assert scoped.summary["incidents"] == 1  # i3; i5 was merged into it, i7 is after the period
    assert scoped.table("threat_time").row("no data").values["time_ms"] == HOUR  # its own level: none written


@pytest.mark.integration
def test_report_counts_incidents_on_elasticsearch(live):
    es, settings, _, registry = live
    report = build_report(es, settings, BASE, BASE + HOUR, None, registry, page_size=2)  # several pages
    again = build_report(es, settings, BASE, BASE + HOUR, None, registry, page_size=500)
    assert report.tables == again.tables
    s = report.summary
    assert s["incidents"] == 4 and s["previous_incidents"] == 1 and s["incidents_change_pct"] == 300.0
    assert s["incidents_open"] == 1 and s["incidents_closed"] == 3
    assert s["incidents_closed_by_analyst"] == 1 and s["incidents_closed_inactive"] == 1
    counted = [d for d in INCIDENTS if d["incident_id"] in ("i1", "i2", "i3", "i4")]
    # the stored times aggregate to what their Python definitions give
    ttds = [t for t in map(incident_ttd_ms, counted) if t is not None]
    ttcs = [t for t in map(incident_ttc_ms, counted) if t is not None]
    assert sorted(ttds) == [MIN, 2 * MIN, 6 * MIN] and sorted(ttcs) == [30 * MIN, 55 * MIN]
    assert s["incident_ttd_known"] == 3 and s["incident_ttd_mean_ms"] == pytest.approx(sum(ttds) / 3, abs=0.1)
    assert s["incident_ttc_known"] == 2 and s["incident_ttc_mean_ms"] == pytest.approx(sum(ttcs) / 2, abs=0.1)
    ttd_p90, ttc_p90 = s["incident_ttd_p90_ms"], s["incident_ttc_p90_ms"]
    assert ttd_p90 is not None and ttc_p90 is not None
    assert MIN <= ttd_p90 <= 6 * MIN and 30 * MIN <= ttc_p90 <= 55 * MIN
    assert s["alerts_per_incident"] == pytest.approx(13 / 4, abs=0.06)  # 3.25 rounded to 0.1
    sev = report.table("incident_severity")
    assert [r.key for r in sev.rows] == ["critical", "high", "medium", "low"]
    assert [r.values["count"] for r in sev.rows] == [0, 1, 2, 1]
    assert sev.row("high").values["previous"] == 1 and sev.row("high").values["ttc_mean_ms"] == 55 * MIN
    level = report.table("incident_level")
    assert {r.key: r.values["count"] for r in level.rows} == {"red": 0, "orange": 3, "yellow": 0, "blue": 1}
    stage = report.table("incident_stage")
    assert stage.row("reconnaissance").values["count"] == 2 and stage.row("collection").values["count"] == 1
    cat = report.table("incident_category")
    assert {r.key: r.values["count"] for r in cat.rows} == {
        "port_scan": 2, "brute_force": 1, "vm_escape": 1, "cross_tenant_leak": 1,
    }  # fmt: skip
    industry = report.table("incident_industry")
    assert industry.row("telecom").values["count"] == 2 and industry.row("finance").values["count"] == 1
    trend = report.table("incidents_over_time")
    assert sum(int(r.values["count"] or 0) for r in trend.rows) == 4
    assert trend.rows[0].key.startswith("2025-01-15T10:00Z")
    assert sum(int(r.values["count"] or 0) for r in report.table("alerts_over_time").rows) == 15
    levels = {r.key: r.values["time_ms"] for r in report.table("threat_time").rows}
    assert levels == {"red": 5 * MIN, "orange": 10 * MIN, "yellow": 0, "blue": 40 * MIN, "no data": 5 * MIN}
    over = report.table("threat_over_time").rows
    assert [r.values["level_rank"] for r in over] == [3]  # one hourly bucket, its highest level red


@pytest.mark.integration
def test_render_all_formats_and_pictures(live, tmp_path):
    es, settings, _, registry = live
    report = build_report(es, settings, BASE, BASE + HOUR, None, registry)
    for fmt in ("csv", "json", "md", "html", "pdf"):
        data = render(report, fmt)
        (tmp_path / f"report.{fmt}").write_bytes(data)
        assert data
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["alerts"] == 15
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["incidents"] == 4
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(report_charts(report))
    assert "alt='trend chart'" in html and "alt='threat chart'" in html
    assert "Time to close (mean)" in html and "ttc_mean_ms" not in html.split("<h2>Method</h2>")[0]
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    if shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True
        )
        assert list(tmp_path.glob("page*.png"))


def test_parse_time():
    from analyst.timeparse import parse_time

    assert (
        parse_time("2025-01-15T10:00Z")
        == BASE
        == parse_time(str(BASE))
        == parse_time("2025-01-15T12:00+02:00")
    )
    assert parse_time("2025-01-15") == BASE - 10 * HOUR
    assert parse_time("now-7d", now_ms=BASE) == BASE - 7 * 24 * HOUR
    with pytest.raises(ValueError, match="cannot read time"):
        parse_time("yesterday")
