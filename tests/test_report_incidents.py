"""``ssa report``'s incident part and its reading: folding, levels, times, trend, threat time,
wording, anonymisation, and the queries build_report sends (a fake Elasticsearch; no services)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from analyst.anonymize import anonymize, pseudonym
from analyst.charts import report_charts
from analyst.render import fmt_duration, method_sections, render
from analyst.report import (
    INCIDENT_SOURCES,
    LEVEL_ORDER,
    SEVERITY_ORDER,
    Report,
    _floor_filters,
    _tables,
    bucket_key,
    bucket_ms,
    build_report,
    fold_buckets,
    fold_incident_buckets,
    fold_incident_category_buckets,
    fold_trend_buckets,
    incident_level,
    incident_summary,
    incident_tables,
    incident_ttc_ms,
    incident_ttd_ms,
    threat_tables,
    trend_interval,
)
from awareness.killchain import STAGES
from awareness.threat import ThreatSettings
from infra.settings import Settings
from ingest.tenants import TenantRegistry

KEY = b"0123456789abcdef-test-key"
BASE = 1_736_899_200_000  # 2025-01-15T00:00Z
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
TS = ThreatSettings()
REGISTRY = TenantRegistry.from_dict(
    {"tenants": [{"id": f"t{i}", "industry": "telecom" if i < 5 else "bank"} for i in range(8)]}
)


def inc_bucket(tenant, severity="high", stage="credential_access", n=1, *, crit="medium", workflow=None,
               status="open", reason=None, ttd=(0.0, 0), ttc=(0.0, 0), floors=None, alerts=2):  # fmt: skip
    return {
        "key": {
            "tenant": tenant,
            "severity": severity,
            "stage": stage,
            "criticality": crit,
            "workflow": workflow,
            "status": status,
            "close_reason": reason,
        },
        "doc_count": n,
        "ttd_sum": {"value": ttd[0]},
        "ttd_n": {"value": ttd[1]},
        "ttc_analyst": {"sum": {"value": ttc[0]}, "n": {"value": ttc[1]}},
        "alerts": {"value": float(alerts * n)},
        "floors": {"buckets": {lv: {"doc_count": c} for lv, c in (floors or {}).items()}},
    }


def cat_bucket(tenant, category, n=1, ttd=(0.0, 0), ttc=(0.0, 0)):
    return {"key": {"tenant": tenant, "category": category}, "doc_count": n, "ttd_sum": {"value": ttd[0]},
            "ttd_n": {"value": ttd[1]}, "ttc_analyst": {"sum": {"value": ttc[0]}, "n": {"value": ttc[1]}}}  # fmt: skip


# --- per-document definitions ----------------------------------------------------------------------
def test_time_to_detect_needs_both_times_and_is_never_negative():
    assert incident_ttd_ms({"first_seen": BASE, "detected_at": BASE + 90_000}) == 90_000
    assert incident_ttd_ms({"first_seen": BASE, "detected_at": BASE - 5}) == 0  # clock skew: not negative
    assert incident_ttd_ms({"first_seen": BASE}) is None
    assert incident_ttd_ms({"detected_at": BASE}) is None
    assert incident_ttd_ms({"first_seen": BASE, "detected_at": True}) is None  # a bool is no time


def test_time_to_close_prefers_the_analyst_then_the_inactivity_close():
    doc = {"first_seen": BASE, "status": "closed", "close_reason": "inactive", "closed_at": BASE + 50 * MIN}
    assert incident_ttc_ms(doc) == 50 * MIN
    analyst = doc | {"workflow": "closed", "workflow_updated_at": BASE + 3 * HOUR}
    assert incident_ttc_ms(analyst) == 3 * HOUR
    # acknowledged is not closed: the job's close stands
    assert incident_ttc_ms(doc | {"workflow": "acknowledged", "workflow_updated_at": BASE + HOUR}) == 50 * MIN
    # evicted at the state cap, or still open: no close time
    assert incident_ttc_ms(doc | {"close_reason": "evicted"}) is None
    assert incident_ttc_ms({"first_seen": BASE, "status": "open"}) is None
    # an analyst close without its time falls back to the job's
    assert incident_ttc_ms(doc | {"workflow": "closed"}) == 50 * MIN
    assert incident_ttc_ms({"status": "closed", "close_reason": "inactive", "closed_at": BASE}) is None


def test_incident_level_follows_the_threat_formula_on_its_edges():
    # high (45) + credential access (5) = 50: exactly orange's threshold
    assert incident_level("high", "credential_access", "medium", None, TS) == "orange"
    assert incident_level("high", "reconnaissance", "medium", None, TS) == "yellow"  # 45
    assert incident_level("medium", "reconnaissance", "medium", None, TS) == "yellow"  # 25: yellow's edge
    assert incident_level("low", "impact", "medium", None, TS) == "yellow"  # 10 + 25 = 35
    assert incident_level("low", "credential_access", "medium", None, TS) == "blue"  # 15
    # criticality scales: medium + collection = 40 (yellow); x1.3 for a critical tenant = 52 (orange)
    assert incident_level("medium", "collection", "medium", None, TS) == "yellow"
    assert incident_level("medium", "collection", "critical", None, TS) == "orange"
    assert incident_level("medium", "collection", "no-such-level", None, TS) == "yellow"  # unknown: medium
    # critical + late stage: red; the floor of vm_escape lifts a low incident to orange, never lowers
    assert incident_level("critical", "exfiltration", "medium", None, TS) == "red"
    assert incident_level("low", "reconnaissance", "medium", "orange", TS) == "orange"
    assert incident_level("critical", "exfiltration", "medium", "orange", TS) == "red"
    custom = ThreatSettings(level_thresholds={"yellow": 10.0, "orange": 20.0, "red": 30.0})
    assert incident_level("low", "credential_access", "medium", None, custom) == "yellow"


def test_floor_filters_are_exclusive_highest_first():
    assert _floor_filters(ThreatSettings(category_floors={})) is None
    settings = ThreatSettings(category_floors={"vm_escape": "red", "exfiltration": "orange", "dos": "orange"})
    spec = _floor_filters(settings)
    assert spec is not None
    filters = spec["filters"]["filters"]
    assert list(filters) == ["red", "orange"]
    assert filters["red"] == {"bool": {"filter": [{"terms": {"categories": ["vm_escape"]}}]}}
    assert filters["orange"]["bool"]["filter"] == [{"terms": {"categories": ["dos", "exfiltration"]}}]
    assert filters["orange"]["bool"]["must_not"] == [{"terms": {"categories": ["vm_escape"]}}]


# --- folding ---------------------------------------------------------------------------------------
def test_fold_incidents_counts_levels_times_and_closes():
    buckets = [
        inc_bucket(
            "t0",
            "high",
            "credential_access",
            3,
            ttd=(3 * 120_000.0, 3),
            ttc=(2 * HOUR, 1),
            status="closed",
            reason="inactive",
        ),
        inc_bucket("t1", "low", "reconnaissance", 2, floors={"orange": 1}, ttd=(60_000.0, 1)),
        inc_bucket("t5", "critical", "exfiltration", 1, workflow="closed", ttc=(4 * HOUR, 1)),
        inc_bucket("t6", "medium", "impact", 1, workflow="acknowledged"),
        inc_bucket(None, None, None, 1, crit=None),  # every key missing: counted, as unknown
        inc_bucket("t7", "high", "impact", 0),  # empty bucket: nothing
    ]
    totals = fold_incident_buckets(buckets, TS, REGISTRY)
    assert totals.count == 8 and totals.tenants == {"t0", "t1", "t5", "t6", "unknown"}
    assert totals.alert_count == 16
    assert totals.open == 4 and totals.closed == 4
    assert totals.closed_by == {"inactive": 3, "analyst": 1}
    assert totals.workflow == {"new": 6, "closed": 1, "acknowledged": 1}
    level = {k: c.count for k, c in totals.cells["incident_level"].items()}
    # t0 high+credential 50 -> orange (3); t1 low recon 10 -> blue (1) and, with the floor, orange (1);
    # t5 critical+exfiltration 90 -> red; t6 medium+impact 50 -> orange; unknown severity/stage -> blue
    assert level == {"orange": 5, "blue": 2, "red": 1}
    sev = totals.cells["incident_severity"]
    assert sev["high"].count == 3 and sev["high"].ttd_sum == 360_000 and sev["high"].closed == 3
    assert sev["unknown"].count == 1
    assert totals.cells["incident_stage"]["exfiltration"].ttc_n == 1
    industry = totals.cells["incident_industry"]
    assert industry["telecom"].count == 5 and industry["bank"].count == 2 and industry["unknown"].count == 1
    assert industry["telecom"].tenants == {"t0", "t1"}
    summary = incident_summary(totals, fold_incident_buckets([], TS))
    assert summary["incidents"] == 8 and summary["previous_incidents"] == 0
    assert summary["incidents_change_pct"] is None  # nothing to compare with
    assert summary["incident_ttd_mean_ms"] == pytest.approx((360_000 + 60_000) / 4, abs=0.1)
    assert summary["incident_ttd_known"] == 4 and summary["incident_ttc_known"] == 2
    assert summary["incident_ttc_mean_ms"] == 3 * HOUR
    assert summary["alerts_per_incident"] == 2.0


def test_incident_tables_order_trend_and_zero_rows():
    now = fold_incident_buckets(
        [
            inc_bucket("t0", "low", n=2),
            inc_bucket("t1", "critical", "exfiltration"),
            inc_bucket("t2", "high"),
        ],
        TS,
        REGISTRY,
    )
    fold_incident_category_buckets(
        [cat_bucket("t0", "brute_force", 2, ttd=(4 * MIN, 2)), cat_bucket("t1", "exfiltration"),
         cat_bucket("t1", "brute_force"), cat_bucket("t2", "port_scan", 3)], now,
    )  # fmt: skip
    before = fold_incident_buckets([inc_bucket("t3", "high", n=4), inc_bucket("t4", "medium")], TS, REGISTRY)
    tables = {t.name: t for t in incident_tables(now, before)}
    assert [r.key for r in tables["incident_severity"].rows] == list(SEVERITY_ORDER)  # never alphabetical
    assert [r.key for r in tables["incident_stage"].rows] == list(STAGES)  # kill-chain order, zeros too
    assert [r.key for r in tables["incident_level"].rows] == list(LEVEL_ORDER)
    high = tables["incident_severity"].row("high")
    assert high.values["count"] == 1 and high.values["previous"] == 4 and high.values["change_pct"] == -75.0
    assert high.tenants == {"t2", "t3"}  # both periods: what a trend row describes
    assert tables["incident_severity"].row("medium").values == {
        "count": 0, "previous": 1, "change_pct": -100.0, "ttd_mean_ms": None, "ttc_mean_ms": None,
    }  # fmt: skip
    assert tables["incident_stage"].row("lateral_movement").tenants == frozenset()
    cats = tables["incident_category"]
    assert [r.key for r in cats.rows] == ["brute_force", "port_scan", "exfiltration"]  # largest first
    assert (
        cats.row("brute_force").values["count"] == 3
        and cats.row("brute_force").values["ttd_mean_ms"] == 2 * MIN
    )
    assert tables["incident_industry"].columns == ["count", "previous", "change_pct", "open", "closed"]


def test_alert_severity_table_is_in_severity_order_with_every_severity():
    def bucket(severity, count):
        return {"key": {"tenant": "t0", "category": "dos", "severity": severity, "status": "open"},
                "doc_count": count, "ttd_sum": {"value": 1000.0 * count}}  # fmt: skip

    tables = {
        t.name: t for t in _tables(fold_buckets([bucket("low", 9), bucket("critical", 1)]), fold_buckets([]))
    }
    assert [r.key for r in tables["severity"].rows] == ["critical", "high", "medium", "low"]
    assert tables["severity"].row("high").values["count"] == 0


def test_trend_buckets_fold_tenants_and_sort_by_time_then_severity():
    buckets = [
        {"key": {"time": BASE + HOUR, "severity": "low", "tenant": "t0"}, "doc_count": 2},
        {"key": {"time": BASE + HOUR, "severity": "critical", "tenant": "t0"}, "doc_count": 1},
        {"key": {"time": BASE, "severity": "high", "tenant": "t0"}, "doc_count": 3},
        {"key": {"time": BASE, "severity": "high", "tenant": "t1"}, "doc_count": 4},
        {"key": {"time": BASE, "severity": "medium", "tenant": "t1"}, "doc_count": 0},
    ]
    table = fold_trend_buckets(buckets, "alerts_over_time", "Alerts over time")
    assert [r.key for r in table.rows] == [
        "2025-01-15T00:00Z|high", "2025-01-15T01:00Z|critical", "2025-01-15T01:00Z|low",
    ]  # fmt: skip
    assert table.rows[0].values == {"count": 7} and table.rows[0].tenants == {"t0", "t1"}
    assert bucket_ms(table.rows[1].key) == BASE + HOUR and bucket_key(BASE) == "2025-01-15T00:00Z"


def test_trend_interval_edges():
    assert trend_interval(BASE, BASE + 3 * DAY) == ("1h", HOUR)
    assert trend_interval(BASE, BASE + 3 * DAY + 1) == ("1d", DAY)
    assert trend_interval(BASE, BASE + 400 * DAY) == ("1d", DAY)
    assert trend_interval(BASE, BASE + 400 * DAY + 1) == ("7d", 7 * DAY)


def test_threat_time_counts_minutes_and_no_data():
    tenants = frozenset({"t0", "t1"})
    time_table, over = threat_tables(
        {"blue": 600, "red": 30, "orange": 90},
        [(BASE + HOUR, 3), (BASE, 0)],
        BASE,
        BASE + 12 * HOUR,
        tenants,
        "_cloud",
    )
    assert [r.key for r in time_table.rows] == ["red", "orange", "yellow", "blue", "no data"]
    assert time_table.row("red").values == {"time_ms": 30 * MIN, "share_pct": 4.2}
    assert time_table.row("yellow").values["time_ms"] == 0
    assert time_table.row("no data").values["time_ms"] == (720 - 720) * MIN
    assert "the cloud" in time_table.title and time_table.row("blue").tenants == tenants
    assert [(r.key, r.values["level_rank"]) for r in over.rows] == [
        ("2025-01-15T00:00Z", 0), ("2025-01-15T01:00Z", 3),
    ]  # fmt: skip
    gaps, _ = threat_tables({"blue": 60}, [], BASE, BASE + 2 * HOUR, frozenset({"t0"}), "t0")
    assert gaps.row("no data").values == {"time_ms": HOUR, "share_pct": 50.0} and "t0" not in gaps.title


# --- a hand-built report: wording, charts, anonymisation -----------------------------------------
def hand_report(tenants_with_incidents: int = 6) -> Report:
    inc = [
        inc_bucket(
            f"t{i}",
            "high",
            "credential_access",
            2,
            ttd=(2 * 3 * MIN, 2),
            ttc=(90 * MIN, 1),
            status="closed",
            reason="inactive",
        )
        for i in range(tenants_with_incidents)
    ]
    inc += [inc_bucket("t0", "critical", "privilege_escalation", floors={"orange": 1}, ttd=(12 * MIN, 1))]
    now = fold_incident_buckets(inc, TS, REGISTRY)
    fold_incident_category_buckets(
        [cat_bucket(f"t{i}", "brute_force", 2) for i in range(tenants_with_incidents)]
        + [cat_bucket("t0", "vm_escape")],
        now,
    )
    before = fold_incident_buckets([inc_bucket("t1", "medium", "reconnaissance", 3)], TS, REGISTRY)
    alerts = fold_buckets(
        [{"key": {"tenant": f"t{i}", "category": "brute_force", "severity": "high", "status": "open"},
          "doc_count": 10, "ttd_sum": {"value": 10 * 45_000.0}} for i in range(7)]
    )  # fmt: skip
    trend = [
        {"key": {"time": BASE + h * HOUR, "severity": "high", "tenant": f"t{t}"}, "doc_count": 1 + h % 3}
        for h in range(12) for t in range(6)
    ]  # fmt: skip
    inc_trend = [{"key": {"time": BASE + 2 * HOUR, "severity": "critical", "tenant": "t0"}, "doc_count": 1}]
    tenants = frozenset(alerts.tenants | now.tenants)
    summary = {"alerts": alerts.count, "previous_alerts": 0, "change_pct": None, "tenants": len(tenants),
               "open": alerts.count, "acknowledged": 0, "closed": 0, "ttd_mean_ms": 45_000.0,
               "ttd_p90_ms": 60_000.0, **incident_summary(now, before), "incident_ttd_p90_ms": 12 * MIN,
               "incident_ttc_p90_ms": 90 * MIN}  # fmt: skip
    return Report(
        start_ms=BASE, end_ms=BASE + 12 * HOUR, tenant=None, generated_ms=BASE + 13 * HOUR, summary=summary,
        tables=[*incident_tables(now, before),
                *threat_tables({"blue": 600, "orange": 100, "red": 20}, [(BASE + h * HOUR, h % 4) for h in range(12)],
                               BASE, BASE + 12 * HOUR, tenants, "_cloud"),
                *_tables(alerts, fold_buckets([])),
                fold_trend_buckets(trend, "alerts_over_time", "Alerts over time"),
                fold_trend_buckets(inc_trend, "incidents_over_time", "Incidents over time")],
        tenants=tenants, interval_ms=HOUR,
        basis={"level_thresholds": dict(TS.level_thresholds), "category_floors": dict(TS.category_floors),
               "gap_ms": 30 * MIN, "grace_ms": 16 * MIN},
    )  # fmt: skip


def test_md_html_pdf_read_in_words_and_minutes():
    report = hand_report()
    md = render(report, "md").decode()
    for words in ("Time to detect (mean)", "Time to close (mean)", "Previous period", "Incidents by stage reached",
                  "Red (grade I)", "Privilege escalation / escape", "Password guessing", "VM escape",
                  "Threat level of the cloud: time at each level", "## Method", "What counts as an incident",
                  "Threat levels", "Anonymisation", "not anonymised"):  # fmt: skip
        assert words in md, words
    body = md.split("## Method")[0]  # the method's "Units" paragraph names the csv/json fields on purpose
    for machine in ("ttd_mean_ms", "ttc_mean_ms", "change_pct", "_ms", "brute_force", "credential_access"):
        assert machine not in body, machine
    severities = [line.split("|")[1].strip() for line in md.split("## Incidents by severity")[1].split("##")[0]
                  .splitlines() if line.startswith("| ") and "Severity" not in line]  # fmt: skip
    assert severities == ["Critical", "High", "Medium", "Low"]
    assert "| High | 12 | 0 | new | 3 min | 1 h 30 min |" in md
    assert "| Red (grade I) | 20 min | 2.8 % |" in md
    assert "| Orange (grade II) | 1 h 40 min | 13.9 % |" in md
    html = render(report, "html").decode()
    assert html.count("data:image/png;base64,") == len(report_charts(report)) >= 5
    assert "<th>Time to detect (mean)</th>" in html and "ttd_mean_ms" not in html
    assert "alt='trend chart'" in html and "alt='threat chart'" in html
    assert render(report, "pdf").startswith(b"%PDF")


def test_md_line_for_incident_ttd_is_the_weighted_mean():
    report = hand_report()
    # 6 tenants x 2 incidents at 3 min and one at 12 min: (12 * 3 + 12) / 13 = 3.69 min
    assert report.summary["incident_ttd_mean_ms"] == pytest.approx((12 * 3 * MIN + 12 * MIN) / 13, abs=0.1)
    md = render(report, "md").decode()
    assert "| Time to detect (mean / 90th percentile) | 3.7 min / 12 min |" in md


def test_csv_and_json_keep_machine_names_and_milliseconds():
    report = hand_report()
    rows = list(csv.reader(io.StringIO(render(report, "csv").decode())))
    assert ["incident_severity", "high", "ttc_mean_ms", "5400000.0"] in rows
    assert ["summary", "", "incident_ttc_p90_ms", str(90 * MIN)] in rows
    assert ["threat_time", "red", "time_ms", str(20 * MIN)] in rows
    assert any(r[0] == "method" and r[2] == "What counts as an incident" for r in rows)
    data = json.loads(render(report, "json"))
    assert data["tables"]["incident_level"][0]["key"] == "red"
    assert data["period"]["trend_interval_ms"] == HOUR and "Threat levels" in data["method_sections"]


def test_method_names_the_parameters_in_force():
    text = dict(method_sections(hand_report()))
    assert "gaps of at most 30 min" in text["What counts as an incident"]
    assert "after 46 min without a new alert" in text["What counts as an incident"]
    assert (
        "orange (grade II) from 50" in text["Threat levels"] and "vm escape: orange" in text["Threat levels"]
    )


def test_anonymisation_covers_incident_tables_trend_and_summary():
    report = hand_report()
    anon = anonymize(report, KEY, k=5)
    sev = anon.table("incident_severity")
    assert sev.row("critical").suppressed  # one tenant
    assert not sev.row("high").suppressed and sev.row("high").values["count"] == 12
    assert not sev.row("low").suppressed and sev.row("low").values["count"] == 0  # describes nobody
    # medium: only the previous period's t1 -> hidden; with critical that is two: no secondary
    assert sev.row("medium").suppressed
    level = anon.table("incident_level")
    assert level.row("red").suppressed and not level.row("orange").suppressed
    # the cloud's level describes the 7 tenants of the report: shown
    assert not anon.table("threat_time").row("red").suppressed
    # trend: alert cells of 6 tenants shown, the one-tenant incident cell hidden
    assert all(not r.suppressed for r in anon.table("alerts_over_time").rows)
    assert all(r.suppressed for r in anon.table("incidents_over_time").rows)
    assert anon.summary["incidents"] == 13 and anon.summary["alerts"] == 70
    a = anon.anonymization
    hidden = sum(r.suppressed for t in anon.tables for r in t.rows)
    assert (
        a["suppressed"] == hidden
        and a["rows"] == sum(len(t.rows) for t in anon.tables)
        and a["summary_hidden"] == 0
    )
    md = render(anon, "md").decode()
    assert f"{hidden} of {a['rows']} table rows were suppressed" in md
    for raw in ("t0", "t1", "t5"):
        assert f"| {raw} |" not in md


def test_incident_figures_hidden_when_few_tenants_have_incidents():
    anon = anonymize(hand_report(tenants_with_incidents=3), KEY, k=5)  # 7 tenants, incidents in 3
    assert anon.summary["alerts"] == 70 and anon.summary["tenants"] == 7
    assert all(anon.summary[n] is None for n in anon.summary if "incident" in n)
    assert anon.anonymization["summary_hidden"] == sum(1 for n in anon.summary if "incident" in n)


def test_secondary_suppression_skips_zero_rows():
    report = hand_report()
    # one hidden row in a table whose other rows are a big one and zeros: the big one goes too
    stage = report.table("incident_stage")
    anon = anonymize(report, KEY, k=5).table("incident_stage")
    hidden = [r.key for r in anon.rows if r.suppressed]
    assert "privilege_escalation" in hidden  # t0 alone
    assert "reconnaissance" in hidden  # previous period: t1 alone
    assert not anon.row("impact").suppressed and stage.row("impact").values["count"] == 0
    # now a table with exactly one hidden row: the smallest non-zero row is hidden with it
    only = [inc_bucket(f"t{i}", "high", n=1) for i in range(6)] + [
        inc_bucket(f"t{i}", "medium", n=5) for i in range(5)
    ]
    only += [inc_bucket("t0", "critical")]
    now = fold_incident_buckets(only, TS)
    single = Report(BASE, BASE + HOUR, None, BASE, {"tenants": 6, "incident_tenants": 6},
                    incident_tables(now, fold_incident_buckets([], TS)), frozenset(now.tenants))  # fmt: skip
    sev = anonymize(single, KEY, k=5).table("incident_severity")
    assert sev.row("critical").suppressed and sev.row("high").suppressed  # high (6) < medium (25)
    assert not sev.row("medium").suppressed and not sev.row("low").suppressed  # low is zero: shown


def test_trend_chart_drawn_from_shown_cells_only():
    anon = anonymize(hand_report(), KEY, k=7)  # k above every trend cell's 6 tenants
    charts = report_charts(anon)
    assert "trend" not in charts  # every cell hidden: no chart of zeros pretending to be data
    assert "trend" in report_charts(hand_report())


def test_fmt_duration_edges():
    assert fmt_duration(None) == "-"
    assert fmt_duration(0) == "0 min"
    assert fmt_duration(59_999) == "1 min"
    assert fmt_duration(200_000) == "3.3 min"
    assert fmt_duration(3_597_000) == "1 h 00 min"  # 59.95 min rounds to the hour, not "60.0 min"
    assert fmt_duration(47 * HOUR + 59 * MIN) == "47 h 59 min"
    assert fmt_duration(2 * DAY) == "2.0 days"


# --- build_report's queries, against a fake Elasticsearch ----------------------------------------
class FakeEs:
    """Answers build_report's searches from canned buckets, two composite pages each."""

    def __init__(self, pages: dict[tuple[str, str], list[dict[str, Any]]], threat: dict[str, Any]) -> None:
        self.pages, self.threat = pages, threat
        self.calls: list[dict[str, Any]] = []

    def search(self, **req: Any) -> dict[str, Any]:
        self.calls.append(req)
        aggs = req.get("aggs") or {}
        if "groups" in aggs:
            comp = aggs["groups"]["composite"]
            names = tuple(next(iter(s)) for s in comp["sources"])
            start = req["query"]["bool"]["filter"][0]["range"]
            field = next(iter(start))
            period = "now" if start[field]["gte"] == BASE else "before"
            buckets = self.pages.get((f"{req['index']}|{period}", ",".join(names)), [])
            offset = int((comp.get("after") or {}).get("_page", 0))
            page = buckets[offset : offset + comp["size"]]
            after = {"_page": offset + comp["size"]} if offset + comp["size"] < len(buckets) else None
            return {"aggregations": {"groups": {"buckets": page, **({"after_key": after} if after else {})}}}
        if "levels" in aggs:
            return {"aggregations": self.threat}
        if "ttc_analyst_h" in aggs:  # time-to-close p90 from two merged 1-minute histograms
            hist = {"buckets": [{"key": 60_000.0, "doc_count": 8}, {"key": 7_200_000.0, "doc_count": 2}]}
            return {"aggregations": {"ttd_pct": {"values": {"90.0": 300_000.0}},
                                     "ttc_analyst_h": {"h": hist}, "ttc_inactive_h": {"h": {"buckets": []}}}}  # fmt: skip
        return {"aggregations": {"ttd_avg": {"value": 1500.0}, "ttd_pct": {"values": {"90.0": 2500.0}}}}


def test_build_report_sends_aggregations_and_folds_every_page():
    settings = Settings()
    inc_names = ",".join(n for n, _ in INCIDENT_SOURCES)
    inc_index = "ssa-incidents"  # the SOC's alias (infra.tenant_indices.read_index)
    pages = {
        (f"{inc_index}|now", inc_names): [inc_bucket(f"t{i}", "high", ttd=(MIN, 1)) for i in range(5)],
        (f"{inc_index}|before", inc_names): [inc_bucket("t0", "low")],
        (f"{inc_index}|now", "tenant,category"): [cat_bucket(f"t{i}", "dos") for i in range(5)],
        (f"{inc_index}|now", "time,severity,tenant"): [
            {"key": {"time": BASE, "severity": "high", "tenant": f"t{i}"}, "doc_count": 1} for i in range(5)
        ],
    }
    threat = {"levels": {"buckets": [{"key": "blue", "doc_count": 50}, {"key": "red", "doc_count": 5}]},
              "over_time": {"buckets": [{"key": BASE, "doc_count": 55, "top": {"value": 3.0}}]}}  # fmt: skip
    es = FakeEs(pages, threat)
    report = build_report(es, settings, BASE, BASE + HOUR, None, REGISTRY, page_size=2,  # type: ignore[arg-type]
                          basis={"gap_ms": 10 * MIN})  # fmt: skip
    assert report.summary["incidents"] == 5 and report.summary["previous_incidents"] == 1
    assert report.summary["incident_ttd_mean_ms"] == MIN and report.summary["incident_ttc_p90_ms"] == 2 * HOUR
    assert report.table("incident_category").row("dos").values["count"] == 5
    assert report.table("incidents_over_time").rows[0].values == {"count": 5}
    assert report.table("threat_time").row("red").values["time_ms"] == 5 * MIN
    assert report.table("threat_time").row("no data").values["time_ms"] == 5 * MIN
    assert report.basis["gap_ms"] == 10 * MIN and report.interval_ms == HOUR
    inc_calls = [c for c in es.calls if c["index"] == inc_index]
    # every incident query leaves merged incidents out and selects by first_seen
    for call in inc_calls:
        must_not = call["query"]["bool"]["must_not"]
        assert {"exists": {"field": "merged_into"}} in must_not and {
            "term": {"close_reason": "merged"}
        } in must_not
        assert "first_seen" in call["query"]["bool"]["filter"][0]["range"]
    # 5 buckets at 2 a page: 3 requests for the current period's main composite
    main = [
        c
        for c in inc_calls
        if "groups" in c["aggs"] and len(c["aggs"]["groups"]["composite"]["sources"]) == 7
    ]
    assert (
        len([c for c in main if c["query"]["bool"]["filter"][0]["range"]["first_seen"]["gte"] == BASE]) == 3
    )
    assert all("ttd_n" in c["aggs"]["groups"]["aggs"] and "runtime_mappings" not in c for c in main)
    assert "floors" in main[0]["aggs"]["groups"]["aggs"]
    threat_call = next(c for c in es.calls if c["index"] == "ssa-threat")
    assert {"term": {"tenant": "_cloud"}} in threat_call["query"]["bool"]["filter"]
    scoped = build_report(FakeEs({}, threat), settings, BASE, BASE + HOUR, "t3", REGISTRY)  # type: ignore[arg-type]
    assert (
        "of the tenant" in scoped.table("threat_time").title and "t3" not in scoped.table("threat_time").title
    )
    assert scoped.table("threat_time").row("red").tenants == {"t3"}
    anon = render(anonymize(scoped, KEY, k=2), "md").decode()  # a scoped export names no tenant id
    assert "t3" not in anon.replace("T-", "") and pseudonym("t3", KEY) in anon
