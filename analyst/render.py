"""Render a :class:`~analyst.report.Report` as csv, json, md, html (charts inline) or pdf.

md, html and pdf are written for a person (a regulator): column titles in words ("Time to detect
(mean)"), rows in words ("VM escape", "Red (grade I)"), severities critical to low, stages in
kill-chain order, durations in minutes under an hour and hours and minutes above (days beyond
two days), changes as signed percentages, and a closing section on method
(:func:`method_sections`): the period, what counts as an incident, the two times, how levels are
computed, and what anonymisation removed.

csv and json are for machines and keep the machine names: ``count``, ``previous``,
``change_pct`` (percent change over the previous period, empty when the previous period had
none), ``ttd_mean_ms``/``ttc_mean_ms`` (time to detect / to close, milliseconds),
``time_ms`` and ``share_pct`` (time at a threat level and its share of the period),
``level_rank`` (0 blue .. 3 red); summary names as in :func:`analyst.report.build_report`. csv
rows are ``table, key, column, value``; the method section is in both, in words.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import time
from typing import Any, Final, Literal

from analyst.charts import overview_chart, report_charts
from analyst.report import (
    COLUMN_TITLES,
    KEY_TITLES,
    SEVERITY_ORDER,
    Report,
    Table,
    bucket_ms,
    row_label,
)

__all__ = ["FORMATS", "Format", "fmt_duration", "method_sections", "render", "report_to_dict"]

Format = Literal["csv", "json", "md", "html", "pdf"]
FORMATS: Final[tuple[str, ...]] = ("csv", "json", "md", "html", "pdf")
SUPPRESSED: Final = "suppressed"
# Tables drawn as charts in html/pdf (md shows the trend as one pivot table).
_CHART_ONLY: Final = frozenset(
    {"alerts_over_time", "incidents_over_time", "threat_over_time", "overview_course"}
)
# The SOC overview section's tables (drawn after the summary, not with the statistics).
_OVERVIEW: Final = (
    "overview_level",
    "overview_levels",
    "overview_tenants",
    "overview_stage",
    "overview_warnings",
)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def fmt_duration(ms: float | int | None) -> str:
    """Milliseconds in words: ``12.5 min`` (``30 min`` when whole) under an hour, ``3 h 05 min``
    under two days, else ``4.2 days``; ``-`` when unknown."""
    if ms is None:
        return "-"
    minutes = float(ms) / 60_000
    tenths = round(minutes, 1)
    if tenths < 60:
        return f"{int(tenths)} min" if tenths == int(tenths) else f"{tenths:.1f} min"
    if minutes < 48 * 60:
        hours, rest = divmod(round(minutes), 60)
        return f"{hours} h {rest:02d} min"
    return f"{minutes / 1440:.1f} days"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _change_text(pct: float | int | None, now: Any) -> str:
    if pct is None:
        return "new" if now else "-"
    return f"{pct:+.1f} %"


def _cell_text(column: str, values: dict[str, Any]) -> str:
    value = values.get(column)
    if column.endswith("_ms"):
        return fmt_duration(value)
    if column == "change_pct":
        return _change_text(value, values.get("count"))
    if column == "share_pct":
        return "-" if value is None else f"{value:.1f} %"
    if column == "at":
        return _iso(int(value)) if isinstance(value, int) else "-"
    if column == "index":
        return "-" if value is None else f"{float(value):.0f}"
    if column == "level_rank":
        return ("blue", "yellow", "orange", "red")[int(value)] if isinstance(value, int) else "-"
    return _fmt(value)


def _header(table: Table) -> list[str]:
    titles = {**COLUMN_TITLES, **(_OVERVIEW_TITLES if table.name.startswith("overview_") else {})}
    return [KEY_TITLES.get(table.name, "Key"), *(titles.get(c, c) for c in table.columns)]


_OVERVIEW_TITLES: Final = {"level_rank": "Level", "open": "Open incidents"}


def _cells(table: Table) -> list[list[str]]:
    out = []
    for row in table.rows:
        label = row_label(table.name, row.key)
        if row.suppressed:
            out.append([label, *([SUPPRESSED] * len(table.columns))])
        else:
            values: dict[str, Any] = {**row.values, **row.text}
            out.append([label, *(_cell_text(c, values) for c in table.columns)])
    return out


def _summary_sections(report: Report) -> list[tuple[str, list[tuple[str, str]]]]:
    s = report.summary

    def both(mean: str, p90: str) -> str:
        return f"{fmt_duration(s.get(mean))} / {fmt_duration(s.get(p90))}"

    incidents = [
        ("Incidents that began in the period", _fmt(s.get("incidents"))),
        ("Previous period", _fmt(s.get("previous_incidents"))),
        ("Change", _change_text(s.get("incidents_change_pct"), s.get("incidents"))),
        ("Tenants with incidents", _fmt(s.get("incident_tenants"))),
        (
            "Still open / closed",
            f"{_fmt(s.get('incidents_open'))} / {_fmt(s.get('incidents_closed'))}",
        ),
        (
            "Closed by an analyst / by inactivity",
            f"{_fmt(s.get('incidents_closed_by_analyst'))} / {_fmt(s.get('incidents_closed_inactive'))}",
        ),
        ("Alerts per incident (mean)", _fmt(s.get("alerts_per_incident"))),
        ("Time to detect (mean / 90th percentile)", both("incident_ttd_mean_ms", "incident_ttd_p90_ms")),
        ("Incidents with a known detection time", _fmt(s.get("incident_ttd_known"))),
        ("Time to close (mean / 90th percentile)", both("incident_ttc_mean_ms", "incident_ttc_p90_ms")),
        ("Incidents closed with a known time", _fmt(s.get("incident_ttc_known"))),
    ]
    alerts = [
        ("Alerts in the period", _fmt(s.get("alerts"))),
        ("Previous period", _fmt(s.get("previous_alerts"))),
        ("Change", _change_text(s.get("change_pct"), s.get("alerts"))),
        ("Tenants (alerts or incidents)", _fmt(s.get("tenants"))),
        (
            "Open / acknowledged / closed",
            f"{_fmt(s.get('open'))} / {_fmt(s.get('acknowledged'))} / {_fmt(s.get('closed'))}",
        ),
        ("Time to detect (mean / 90th percentile)", both("ttd_mean_ms", "ttd_p90_ms")),
    ]
    return [("Incidents", incidents), ("Alerts", alerts)]


def _heading(report: Report) -> str:
    scope = f", tenant {report.tenant}" if report.tenant else ""
    return f"Security incident report {_iso(report.start_ms)} to {_iso(report.end_ms)}{scope}"


def method_sections(report: Report) -> list[tuple[str, str]]:
    """The closing section, in words: (title, paragraph) pairs."""
    b = report.basis
    length = report.end_ms - report.start_ms
    gap = int(b.get("gap_ms", 1_800_000))
    grace = int(b.get("grace_ms", 960_000))
    thresholds = b.get("level_thresholds") or {"yellow": 25.0, "orange": 50.0, "red": 75.0}
    floors = b.get("category_floors") or {}
    floor_text = (
        "; an incident with a category that holds a floor is at least at that level ("
        + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(floors.items()))
        + ")"
        if floors
        else ""
    )
    per = {3_600_000: "hour", 86_400_000: "day"}.get(report.interval_ms, "week")
    scope = f" for tenant {report.tenant}" if report.tenant else " for all tenants"
    sections = [
        (
            "Period",
            f"This report covers {_iso(report.start_ms)} to {_iso(report.end_ms)}{scope}. Each figure is "
            f"compared with the previous period of the same length, {_iso(report.start_ms - length)} to "
            f"{_iso(report.start_ms)}. The trend charts count per {per} (UTC). Generated "
            f"{_iso(report.generated_ms)}.",
        ),
        (
            "What counts as an incident",
            "An incident is one attack story: the alerts of one tenant about the same or connected "
            "entities (a virtual machine, its address, a principal, a resource named in the evidence) "
            f"that follow each other with gaps of at most {fmt_duration(gap)}. The detection pipeline "
            "groups them as they arrive and closes an incident after "
            f"{fmt_duration(gap + grace)} without a new alert ({fmt_duration(gap)} gap plus "
            f"{fmt_duration(grace)} for late alerts). An incident is counted in the period in which its "
            "first evidence lies, once, however long it lasts; incidents merged into another are not "
            "counted (their alerts count in the one that absorbed them); an attack that involves two "
            "tenants is one incident for each of them. Under categories an incident counts once for "
            "each kind of alert it holds, so those rows add up to more than the incidents. Its stage is "
            "the furthest step of the attack reached (reconnaissance, credential access, privilege "
            "escalation or escape, lateral movement, collection, exfiltration, impact). Alerts are "
            "counted by the end of their detection window.",
        ),
        (
            "Time to detect and time to close",
            "Time to detect is the time from the first evidence of an incident to its first alert "
            "(for an alert: from its first evidence to the end of its detection window). Time to "
            "close runs from the first evidence to the analyst's closing of the incident or, when no "
            "analyst closed it, to the pipeline's closing for inactivity (which includes the "
            f"{fmt_duration(gap + grace)} wait above). Incidents still open are left out of time to "
            "close; the summary says how many incidents each time was known for. Means are over "
            "those incidents; the 90th percentile is the time within which 9 in 10 of them were "
            "detected or closed.",
        ),
        (
            "Threat levels",
            "Every minute the pipeline computes a threat index from 0 to 100 for each tenant and for "
            "the whole cloud, from the open incidents (their severity, the stage reached, how recent "
            "they are and how critical the tenant is) and from unusual activity. The index maps to the "
            "four warning levels of the National Cybersecurity Incident Emergency Response Plan: "
            f"blue (grade IV) below {thresholds.get('yellow', 25):g}, yellow (grade III) from "
            f"{thresholds.get('yellow', 25):g}, orange (grade II) from {thresholds.get('orange', 50):g}, "
            f"red (grade I) from {thresholds.get('red', 75):g}. The cloud's index is its most threatened "
            "tenant's, raised when many tenants are threatened at once. The time at each level counts "
            "the minutes the pipeline recorded at that level; minutes it recorded nothing for are "
            "'no data'. An incident's level in this report is the level it alone puts its tenant at "
            "while fresh: points for its severity and for its stage, scaled by the tenant's "
            f"criticality{floor_text}.",
        ),
    ]
    if report.anonymized:
        a = report.anonymization
        removed = (
            f" In this report: {a.get('suppressed', 0)} of {a.get('rows', 0)} table rows were suppressed "
            f"({a.get('secondary', 0)} of them only to protect another), {a.get('summary_hidden', 0)} "
            "summary figures were hidden, and every tenant name was replaced by its pseudonym."
        )
        sections.append(("Anonymisation", report.method + removed))
    else:
        sections.append(
            ("Anonymisation", "This report is not anonymised: it names tenants and shows every figure.")
        )
    sections.append(
        (
            "Units",
            "Durations are in minutes under an hour, in hours and minutes above. The csv and json "
            "exports keep the field names and milliseconds (ttd: time to detect, ttc: time to close, "
            "_ms: milliseconds, change_pct: percent change over the previous period).",
        )
    )
    return sections


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "period": {
            "from_ms": report.start_ms,
            "to_ms": report.end_ms,
            "from": _iso(report.start_ms),
            "to": _iso(report.end_ms),
            "trend_interval_ms": report.interval_ms,
        },
        "tenant": report.tenant,
        "generated": _iso(report.generated_ms),
        "anonymized": report.anonymized,
        "anonymization": report.anonymization or None,
        "method": report.method or None,
        "summary": report.summary,
        "tables": {
            t.name: [
                {"key": r.key, "suppressed": r.suppressed, **({} if r.suppressed else {**r.values, **r.text})}
                for r in t.rows
            ]
            for t in report.tables
        },
        "method_sections": dict(method_sections(report)),
    }


def _csv(report: Report) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "key", "column", "value"])
    for name, value in report.summary.items():
        text = SUPPRESSED if value is None and report.anonymized else ("" if value is None else str(value))
        writer.writerow(["summary", "", name, text])
    for table in report.tables:
        for row in table.rows:
            for col in table.columns:
                cell = row.values.get(col)
                text = SUPPRESSED if row.suppressed else ("" if cell is None else str(cell))
                writer.writerow([table.name, row.key, col, text])
    if report.method:
        writer.writerow(["method", "", "anonymization", report.method])
    for title, text in method_sections(report):
        writer.writerow(["method", "", title, text])
    return buf.getvalue().encode()


def _trend_pivot(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """The trend tables as (title, header, rows): one row per bucket with a cell per severity."""
    out = []
    for name in ("incidents_over_time", "alerts_over_time"):
        if not report.has_table(name):
            continue
        table = report.table(name)
        grid: dict[int, dict[str, str]] = {}
        for row in table.rows:
            at, severity = bucket_ms(row.key), row.key.split("|", 1)[1]
            text = SUPPRESSED if row.suppressed else _fmt(row.values.get("count"))
            grid.setdefault(at, {})[severity] = text
        header = ["From (UTC)", *(s.capitalize() for s in SEVERITY_ORDER)]
        rows = [
            [
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(at / 1000)),
                *(cells.get(s, "0") for s in SEVERITY_ORDER),
            ]
            for at, cells in sorted(grid.items())
        ]
        out.append((f"{table.title} (buckets with none are left out)", header, rows))
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def _md(report: Report) -> bytes:
    lines = [f"# {_heading(report)}", ""]
    for section, items in _summary_sections(report):
        lines += [f"## {section}", "", *_md_table(["Figure", "Value"], [[k, v] for k, v in items]), ""]
    overview = _overview_tables(report)
    if overview:
        lines += [f"## {_overview_heading(report)}", "", _OVERVIEW_NOTE, ""]
        lines += [f"Threat index over the period: {_course_text(report)}", ""]
        for table in overview:
            body = _md_table(_header(table), _cells(table)) if table.rows else [_NONE]
            lines += [f"### {table.title}", "", *body, ""]
    for table in report.tables:
        if table.name in _CHART_ONLY or table.name in _OVERVIEW:
            continue
        lines += [f"## {table.title}", "", *_md_table(_header(table), _cells(table)), ""]
    for title, header, rows in _trend_pivot(report):
        lines += [f"## {title}", "", *_md_table(header, rows), ""]
    lines += ["## Method", ""]
    for title, text in method_sections(report):
        lines += [f"**{title}.** {text}", ""]
    return "\n".join(lines).encode()


_OVERVIEW_NOTE: Final = (
    "What the SOC overview dashboard shows for this period, computed with the dashboard's own "
    "queries: the level in the latest minute of the period with a threat record, each tenant's "
    "latest level, the incidents still open now whose last evidence lies in the period (by the "
    "furthest stage reached and severity), and the 50 latest early warnings."
)


_NONE: Final = "None in the period."


def _overview_heading(report: Report) -> str:
    return f"SOC overview at {_iso(report.end_ms)}"


def _overview_tables(report: Report) -> list[Table]:
    return [report.table(n) for n in _OVERVIEW if report.has_table(n)]


def _course_text(report: Report) -> str:
    if not report.has_table("overview_course"):
        return "-"
    rows = report.table("overview_course").rows
    if any(r.suppressed for r in rows):
        return SUPPRESSED
    shown = [r.values.get("index") for r in rows if r.values.get("index") is not None]
    if not shown:
        return "no data"
    return f"lowest {min(shown):.0f}, highest {max(shown):.0f}, last {shown[-1]:.0f} ({len(shown)} buckets)"  # type: ignore[type-var]


def _html_table(table: Table, tag: str) -> str:
    e = html.escape
    parts = [f"<{tag}>{e(table.title)}</{tag}><table><tr>"]
    parts.append("".join(f"<th>{e(c)}</th>" for c in _header(table)) + "</tr>")
    for cells in _cells(table):
        cls = " class='s'" if cells[1:2] == [SUPPRESSED] else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def _html(report: Report) -> bytes:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(_heading(report))}</title>",
        "<style>body{font-family:sans-serif;margin:24px;max-width:60em}table{border-collapse:collapse;"
        "margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f2f2f2}.s{color:#999;"
        "font-style:italic}p{line-height:1.4}</style></head><body>",
        f"<h1>{e(_heading(report))}</h1>",
    ]
    for section, items in _summary_sections(report):
        parts.append(f"<h2>{e(section)}</h2><table>")
        parts.append("".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in items) + "</table>")
    overview = _overview_tables(report)
    if overview:
        parts.append(f"<h2 id='soc-overview'>{e(_overview_heading(report))}</h2><p>{e(_OVERVIEW_NOTE)}</p>")
        png = overview_chart(report)
        if png is not None:
            data = base64.b64encode(png).decode()
            parts.append(f"<p><img alt='overview chart' src='data:image/png;base64,{data}'></p>")
        for table in overview:
            parts.append(
                _html_table(table, "h3") if table.rows else f"<h3>{e(table.title)}</h3><p>{_NONE}</p>"
            )
    for name, png in report_charts(report).items():
        data = base64.b64encode(png).decode()
        parts.append(f"<p><img alt='{e(name)} chart' src='data:image/png;base64,{data}'></p>")
    for table in report.tables:
        if table.name in _CHART_ONLY or table.name in _OVERVIEW:
            continue
        parts.append(_html_table(table, "h2"))
    parts.append("<h2>Method</h2>")
    for title, text in method_sections(report):
        parts.append(f"<p><b>{e(title)}.</b> {e(text)}</p>")
    parts.append("</body></html>")
    return "".join(parts).encode()


def _latin1(text: str) -> str:
    """fpdf's core fonts are Latin-1: anything else becomes '?'."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _pdf_table(pdf: Any, table: Table) -> None:
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 8, _latin1(table.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)
    widths = (12, 20, 9, 14, 45) if table.name == "overview_warnings" else None
    with pdf.table(text_align="LEFT", first_row_as_headings=True, col_widths=widths) as grid:
        grid.row([_latin1(c) for c in _header(table)])
        for cells in _cells(table):
            grid.row([_latin1(c) for c in cells])


def _pdf(report: Report) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 13)
    pdf.multi_cell(0, 7, _latin1(_heading(report)), new_x="LMARGIN", new_y="NEXT")
    for section, items in _summary_sections(report):
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 7, section, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)
        for label, value in items:
            pdf.cell(85, 5, _latin1(label))
            pdf.cell(0, 5, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    overview = _overview_tables(report)
    if overview:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _latin1(_overview_heading(report)), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=8)
        pdf.multi_cell(0, 4, _latin1(_OVERVIEW_NOTE), new_x="LMARGIN", new_y="NEXT")
        png = overview_chart(report)
        if png is not None:
            pdf.image(io.BytesIO(png), w=170)
        for table in overview:
            if table.rows:
                _pdf_table(pdf, table)
                continue
            pdf.set_font("Helvetica", "B", 10)
            pdf.cell(0, 8, _latin1(table.title), new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", size=8)
            pdf.cell(0, 5, _NONE, new_x="LMARGIN", new_y="NEXT")
        pdf.add_page()
    for png in report_charts(report).values():
        pdf.image(io.BytesIO(png), w=170)
    for table in report.tables:
        if table.name in _CHART_ONLY or table.name in _OVERVIEW:
            continue
        _pdf_table(pdf, table)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 9, "Method", new_x="LMARGIN", new_y="NEXT")
    for title, text in method_sections(report):
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(0, 6, _latin1(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=8)
        pdf.multi_cell(0, 4, _latin1(text), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def render(report: Report, fmt: Format) -> bytes:
    """The export in ``fmt``; csv/json/md are text (UTF-8), html embeds PNG charts, pdf too."""
    if fmt == "json":
        return json.dumps(report_to_dict(report), indent=2).encode()
    renderers = {"csv": _csv, "md": _md, "html": _html, "pdf": _pdf}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return renderers[fmt](report)
