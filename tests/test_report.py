"""Incident statistics export: folding, trend, anonymization, rendering; live on Elasticsearch."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess

import pytest

from dashboards.anonymize import AnonymizeError, anonymize, load_key, pseudonym
from dashboards.es import es_client
from dashboards.render import render
from dashboards.report import Report, _tables, build_report, fold_buckets
from dashboards.sample import INDUSTRIES, index_docs, put_templates, sample_alerts
from ingest.tenants import TenantRegistry

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
    assert load_key(None, env={"SSA_REPORT_KEY": KEY.decode()}) == KEY
    with pytest.raises(AnonymizeError, match="at least 16 bytes"):
        load_key(None, env={"SSA_REPORT_KEY": "short"})
    with pytest.raises(AnonymizeError):
        load_key(None, env={})


@pytest.fixture(scope="module")
def live(stack):
    settings = stack.with_overrides(
        index_alerts_prefix="test-rep-alerts-", index_metrics_prefix="test-rep-metrics-"
    )
    es = es_client(settings)
    put_templates(es, settings, "test-rep")
    current = sample_alerts(BASE)
    previous = [
        d | {"alert_id": d["alert_id"] + "-prev", "ts": d["ts"] - HOUR} for d in sample_alerts(BASE)[:6]
    ]
    index_docs(es, settings.index_alerts_prefix, current + previous, id_field="alert_id")
    registry = TenantRegistry.from_dict(
        {"tenants": [{"id": t, "industry": i} for t, i in INDUSTRIES.items()]}
    )
    yield es, settings, current, registry
    names = list(
        es.indices.get(
            index="test-rep-alerts-*,test-rep-metrics-*", ignore_unavailable=True, allow_no_indices=True
        )
    )
    if names:
        es.indices.delete(index=",".join(names))
    for name in ("test-rep-alerts", "test-rep-metrics"):
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


@pytest.mark.integration
def test_render_all_formats_and_pictures(live, tmp_path):
    es, settings, _, registry = live
    report = build_report(es, settings, BASE, BASE + HOUR, None, registry)
    for fmt in ("csv", "json", "md", "html", "pdf"):
        data = render(report, fmt)
        (tmp_path / f"report.{fmt}").write_bytes(data)
        assert data
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["alerts"] == 15
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    if shutil.which("pdftoppm"):
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True
        )
        assert list(tmp_path.glob("page*.png"))


def test_parse_time():
    from dashboards.timeparse import parse_time

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
