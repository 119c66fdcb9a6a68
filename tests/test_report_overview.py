"""``ssa report``'s SOC overview section: the board's own queries, the tables folded from their
results, rendering, tenant scope and anonymisation (no services; the live run is in
tests/test_cli.py::test_simulate_detect_index_then_the_analyst_commands)."""

from __future__ import annotations

import json
import re
from typing import Any

from analyst.anonymize import anonymize, pseudonym
from analyst.charts import overview_chart
from analyst.render import render
from analyst.report import Report, bucket_key, course_interval, overview_tables
from awareness.killchain import STAGES
from dashboards import board_soc, build
from dashboards.fields import TIME_FIELDS
from dashboards.panels import DS_FAMILY
from dashboards.translate import translate_target

KEY = b"0123456789abcdef-test-key"
BASE = 1_736_899_200_000  # 2025-01-15T00:00Z
MIN = 60_000
HOUR = 3_600_000
END = BASE + 6 * HOUR


def test_the_section_runs_exactly_the_boards_panel_queries():
    model = build.dashboards()[board_soc.UID]
    panels = {p["id"]: p for p in model["panels"]}
    searches = board_soc.overview_searches(BASE, END, "1h")
    for name, panel_id in (
        ("cloud_level", 11),
        ("tenant_levels", 12),
        ("open_by_stage", 13),
        ("warnings", 14),
    ):
        panel = panels[panel_id]
        family = DS_FAMILY[panel["datasource"]["uid"]]
        body = translate_target(
            panel["targets"][0],
            time_field=TIME_FIELDS[family],
            start_ms=BASE,
            end_ms=END,
            variables={"tenant": "_cloud"},
        )
        assert searches[name][0] == family
        assert searches[name][1] == body, name
    # the course is the tenant view's threat index panel, for the cloud
    tenant_panel = next(p for p in build.dashboards()["ssa-tenant"]["panels"] if p["id"] == 11)
    assert searches["course"][1]["query"]["bool"]["filter"][1]["query_string"]["query"] == "tenant:_cloud"
    assert tenant_panel["targets"][0]["query"] == "tenant:$tenant"
    assert searches["course"][1]["aggs"]["2"]["date_histogram"]["fixed_interval"] == "1h"


def results(tenants: int = 6) -> dict[str, list[dict[str, Any]]]:
    levels = [3, 2, 1, 1, 0, 0, 0, 0][:tenants]
    return {
        "cloud_level": [{"ts": END - MIN, "1": 3.0, "2": 81.5}],
        "course": [{"ts": BASE + h * HOUR, "1": [10.0, 30.0, 55.0, None, 70.0, 81.5][h]} for h in range(6)],
        "tenant_levels": [
            {"tenant": f"t{i}", "ts": END - MIN - i * MIN, "1": float(rank), "2": 20.0 * rank + 5}
            for i, rank in enumerate(levels)
        ],
        "open_by_stage": [
            {"filter": "1 reconnaissance", "count": 4, "by_severity": {"low": (3, ["t1", "t2"]), "medium": (1, ["t3"])}},
            {"filter": "3 privilege escalation", "count": 2, "by_severity": {"critical": (2, ["t0"])}},
            {"filter": "6 exfiltration", "count": 0, "by_severity": {}},
        ],
        "warnings": [
            {"tenant": "t0", "ts": END - 2 * MIN, "level": "orange", "signal": "failed_logins",
             "reason": "failed logins at 40 ... which alone would raise tenant t0 from yellow to orange."},
            {"tenant": "t2", "ts": END - 9 * MIN, "level": "yellow", "signal": "probes", "reason": "probes up"},
        ],
    }  # fmt: skip


def report_with(tables, tenant=None, n=6) -> Report:
    return Report(
        start_ms=BASE, end_ms=END, tenant=tenant, generated_ms=END, summary={"alerts": 1, "tenants": n},
        tables=tables, tenants=frozenset(f"t{i}" for i in range(n)), interval_ms=HOUR,
    )  # fmt: skip


def test_tables_from_the_boards_results():
    everyone = frozenset(f"t{i}" for i in range(6))
    level, course, by_level, tenants, stage, warnings = overview_tables(results(), None, everyone)
    assert level.rows[0].key == "cloud"
    assert level.rows[0].values == {"level_rank": 3, "index": 81.5, "at": END - MIN}
    assert level.rows[0].tenants == everyone
    assert [r.key for r in course.rows] == [
        bucket_key(BASE + h * HOUR) for h in (0, 1, 2, 4, 5)
    ]  # empty bucket left out
    assert {r.key: r.values["tenants"] for r in by_level.rows} == {
        "red": 1,
        "orange": 1,
        "yellow": 2,
        "blue": 2,
    }
    assert by_level.row("yellow").tenants == {"t2", "t3"}
    assert [r.key for r in tenants.rows] == [
        "t0",
        "t1",
        "t2",
        "t3",
        "t4",
        "t5",
    ]  # highest level, then index, then id
    assert tenants.tenant_keys and warnings.tenant_keys
    assert [r.key for r in stage.rows] == list(STAGES)  # kill-chain order, every stage
    recon = stage.row("reconnaissance")
    assert recon.values == {"open": 4, "critical": 0, "high": 0, "medium": 1, "low": 3}
    assert recon.tenants == {"t1", "t2", "t3"}
    assert stage.row("privilege_escalation").values["critical"] == 2
    assert stage.row("impact").values["open"] == 0 and stage.row("impact").tenants == frozenset()
    first = warnings.rows[0]
    assert (first.key, first.values["level_rank"], first.text["signal"]) == ("t0", 2, "failed_logins")
    assert "t0" not in first.text["reason"] and "raise the tenant from yellow" in first.text["reason"]


def test_a_scoped_report_shows_its_tenants_own_level():
    res = results()
    res.pop("cloud_level")  # run_overview does not ask for the cloud's level when scoped
    res["tenant_levels"] = [r for r in res["tenant_levels"] if r["tenant"] == "t1"]
    level, *_ = overview_tables(res, "t1", frozenset({"t1"}))
    assert (level.rows[0].key, level.rows[0].values["level_rank"], level.rows[0].tenants) == (
        "tenant",
        2,
        {"t1"},
    )
    empty, *_ = overview_tables({}, "t9", frozenset({"t9"}))
    assert empty.rows[0].values == {"level_rank": None, "index": None, "at": None}


def test_rendered_in_every_format():
    report = report_with(overview_tables(results(), None, frozenset(f"t{i}" for i in range(6))))
    md = render(report, "md").decode()
    for words in ("## SOC overview at 2025-01-15 06:00 UTC", "### Threat level of the cloud at the end of the period",
                  "| The cloud | red | 82 | 2025-01-15 05:59 UTC |", "| Red (grade I) | 1 |",
                  "| Privilege escalation / escape | 2 | 2 | 0 | 0 | 0 |", "| t0 | 2025-01-15 05:58 UTC | orange | failed_logins |",
                  "lowest 10, highest 82, last 82"):  # fmt: skip
        assert words in md, words
    html = render(report, "html").decode()
    assert "<h2 id='soc-overview'>SOC overview at" in html and html.count("data:image/png") >= 1
    assert render(report, "pdf").startswith(b"%PDF")
    data = json.loads(render(report, "json"))
    assert data["tables"]["overview_warnings"][0]["signal"] == "failed_logins"
    assert data["tables"]["overview_level"][0]["level_rank"] == 3
    png = overview_chart(report)
    assert png is not None and png.startswith(b"\x89PNG")


def test_anonymised_overview_pseudonymises_and_suppresses():
    report = anonymize(
        report_with(overview_tables(results(), None, frozenset(f"t{i}" for i in range(6)))), KEY, k=2
    )
    tenants = report.table("overview_tenants")
    assert {r.key for r in tenants.rows} == {pseudonym(f"t{i}", KEY) for i in range(6)}
    assert all(r.suppressed for r in tenants.rows)  # one tenant each
    assert all(r.suppressed for r in report.table("overview_warnings").rows)
    assert not report.table("overview_level").rows[0].suppressed  # the cloud: six tenants
    assert report.table("overview_levels").row("yellow").values["tenants"] == 2  # two tenants: shown at k=2
    assert report.table("overview_stage").row("privilege_escalation").suppressed  # one tenant
    for fmt in ("md", "html", "json", "csv"):
        out = re.sub(r"base64,[A-Za-z0-9+/=]+", "", render(report, fmt).decode())
        assert not re.search(r"\bt[0-5]\b", out), fmt  # no tenant id anywhere
        assert "failed_logins" not in out and "probes up" not in out


def test_course_interval_edges():
    assert course_interval(BASE, BASE + 3 * HOUR) == ("1m", MIN)
    assert course_interval(BASE, BASE + 3 * HOUR + 1) == ("5m", 5 * MIN)
    assert course_interval(BASE, BASE + 12 * HOUR) == ("5m", 5 * MIN)
    assert course_interval(BASE, BASE + 12 * HOUR + 1) == ("1h", HOUR)
    assert course_interval(BASE, BASE + 30 * 24 * HOUR) == ("1d", 24 * HOUR)
