"""Render a :class:`~dashboards.report.Report` as csv, json, md, html (charts inline) or pdf."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import time
from typing import Any, Final, Literal

from dashboards.charts import report_charts
from dashboards.report import Report, Table

__all__ = ["FORMATS", "Format", "render", "report_to_dict"]

Format = Literal["csv", "json", "md", "html", "pdf"]
FORMATS: Final[tuple[str, ...]] = ("csv", "json", "md", "html", "pdf")
SUPPRESSED: Final = "suppressed"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cells(table: Table) -> list[list[str]]:
    out = []
    for row in table.rows:
        if row.suppressed:
            out.append([row.key, *([SUPPRESSED] * len(table.columns))])
        else:
            out.append([row.key, *(_fmt(row.values.get(c)) for c in table.columns)])
    return out


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "period": {
            "from_ms": report.start_ms,
            "to_ms": report.end_ms,
            "from": _iso(report.start_ms),
            "to": _iso(report.end_ms),
        },
        "tenant": report.tenant,
        "generated": _iso(report.generated_ms),
        "anonymized": report.anonymized,
        "method": report.method or None,
        "summary": report.summary,
        "tables": {
            t.name: [
                {"key": r.key, "suppressed": r.suppressed, **({} if r.suppressed else r.values)}
                for r in t.rows
            ]
            for t in report.tables
        },
    }


def _heading(report: Report) -> str:
    scope = f" (tenant {report.tenant})" if report.tenant else ""
    return f"Incident statistics {_iso(report.start_ms)} to {_iso(report.end_ms)}{scope}"


def _summary_lines(report: Report) -> list[tuple[str, str]]:
    s = report.summary
    return [
        ("Alerts", _fmt(s.get("alerts"))),
        ("Previous period", _fmt(s.get("previous_alerts"))),
        ("Change %", _fmt(s.get("change_pct"))),
        ("Tenants", _fmt(s.get("tenants"))),
        (
            "Open / acknowledged / closed",
            f"{_fmt(s.get('open'))} / {_fmt(s.get('acknowledged'))} / {_fmt(s.get('closed'))}",
        ),
        ("Mean time to detect (ms)", _fmt(s.get("ttd_mean_ms"))),
        ("p90 time to detect (ms)", _fmt(s.get("ttd_p90_ms"))),
    ]


def _csv(report: Report) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "key", "column", "value"])
    for name, value in report.summary.items():
        writer.writerow(
            ["summary", "", name, SUPPRESSED if value is None and report.anonymized else _fmt(value)]
        )
    for table in report.tables:
        for row in table.rows:
            for col in table.columns:
                cell = row.values.get(col)
                text = SUPPRESSED if row.suppressed else ("" if cell is None else str(cell))
                writer.writerow([table.name, row.key, col, text])
    if report.method:
        writer.writerow(["method", "", "anonymization", report.method])
    return buf.getvalue().encode()


def _md(report: Report) -> bytes:
    lines = [f"# {_heading(report)}", ""]
    lines += ["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in _summary_lines(report)), ""]
    for table in report.tables:
        lines += [f"## {table.title}", "", "| " + " | ".join(["key", *table.columns]) + " |"]
        lines.append("|" + "---|" * (len(table.columns) + 1))
        lines += ["| " + " | ".join(cells) + " |" for cells in _cells(table)]
        lines.append("")
    if report.method:
        lines += ["## Anonymization method", "", report.method, ""]
    return "\n".join(lines).encode()


def _html(report: Report) -> bytes:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(_heading(report))}</title>",
        "<style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse;margin:8px 0 20px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
        "{text-align:left}.s{color:#999;font-style:italic}</style></head><body>",
        f"<h1>{e(_heading(report))}</h1>",
        "<table>"
        + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary_lines(report))
        + "</table>",
    ]
    for name, png in report_charts(report).items():
        data = base64.b64encode(png).decode()
        parts.append(f"<p><img alt='{e(name)} chart' src='data:image/png;base64,{data}'></p>")
    for table in report.tables:
        parts.append(f"<h2>{e(table.title)}</h2><table><tr>")
        parts.append("".join(f"<th>{e(c)}</th>" for c in ["key", *table.columns]) + "</tr>")
        for cells in _cells(table):
            cls = " class='s'" if cells[1] == SUPPRESSED else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    if report.method:
        parts.append(f"<h2>Anonymization method</h2><p>{e(report.method)}</p>")
    parts.append("</body></html>")
    return "".join(parts).encode()


def _pdf(report: Report) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 13)
    pdf.multi_cell(0, 7, _heading(report), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    for label, value in _summary_lines(report):
        pdf.cell(70, 5, label)
        pdf.cell(0, 5, value, new_x="LMARGIN", new_y="NEXT")
    for png in report_charts(report).values():
        pdf.image(io.BytesIO(png), w=170)
    for table in report.tables:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 8, table.title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=8)
        with pdf.table(text_align="LEFT", first_row_as_headings=True) as grid:
            grid.row(["key", *table.columns])
            for cells in _cells(table):
                grid.row(cells)
    if report.method:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 8, "Anonymization method", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=8)
        pdf.multi_cell(0, 4, report.method, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def render(report: Report, fmt: Format) -> bytes:
    """The export in ``fmt``; csv/json/md are text (UTF-8), html embeds PNG charts, pdf too."""
    if fmt == "json":
        return json.dumps(report_to_dict(report), indent=2).encode()
    renderers = {"csv": _csv, "md": _md, "html": _html, "pdf": _pdf}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return renderers[fmt](report)
