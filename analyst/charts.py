"""PNG charts of a report (matplotlib, Agg backend: no display needed).

- ``trend``: incidents (by ``first_seen``) and alerts (by ``ts``) per trend bucket (an hour, a day
  or a week: :func:`analyst.report.trend_interval`), stacked by severity, critical on top.
- ``threat``: the cloud's (or the scoped tenant's) threat level over the period, the highest
  level of each bucket as a step line over the four colour bands, and the time spent at each level.
- bar charts of incidents by severity and by stage reached and of alerts by severity and by
  category, this period beside the previous one; each bar carries its number, so a reader (or a
  test looking at the picture) can check the values.

Suppressed rows are left out of every chart (a suppressed trend cell is drawn as 0 and the chart
says how many cells were hidden); a chart with nothing to show is not drawn.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analyst.report import (
    LEVEL_ORDER,
    SEVERITY_ORDER,
    Report,
    Table,
    bucket_ms,
    row_label,
)

__all__ = ["LEVEL_COLOURS", "SEVERITY_COLOURS", "overview_chart", "report_charts"]

SEVERITY_COLOURS = {"critical": "#8b0000", "high": "#e4572e", "medium": "#f3a712", "low": "#7a9cc6"}
LEVEL_COLOURS = {"red": "#d62728", "orange": "#ff7f0e", "yellow": "#e6c619", "blue": "#1f77b4"}


def _png(fig: Figure) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _bars(table: Table, title: str, ylabel: str) -> bytes:
    rows = [r for r in table.rows if not r.suppressed]
    labels = [row_label(table.name, r.key) for r in rows]
    now = [int(r.values.get("count") or 0) for r in rows]
    with_previous = "previous" in table.columns
    fig, ax = plt.subplots(figsize=(7.5, 3.4), dpi=110)
    width = 0.4 if with_previous else 0.7
    xs = list(range(len(rows)))
    bars = ax.bar([x - (width / 2 if with_previous else 0) for x in xs], now, width, label="this period")
    ax.bar_label(bars, padding=2, fontsize=8)
    if with_previous:
        before = [int(r.values.get("previous") or 0) for r in rows]
        prev_bars = ax.bar(
            [x + width / 2 for x in xs], before, width, label="previous period", color="#bbbbbb"
        )
        ax.bar_label(prev_bars, padding=2, fontsize=8, color="#555555")
        ax.legend(fontsize=8)
    ax.set_xticks(xs, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    return _png(fig)


def _bucket_starts(report: Report) -> list[int]:
    step = report.interval_ms
    first = report.start_ms - report.start_ms % step
    return list(range(first, report.end_ms, step))


def _trend(report: Report) -> bytes | None:
    tables = [report.table(n) for n in ("incidents_over_time", "alerts_over_time") if report.has_table(n)]
    if not tables or not any(not r.suppressed for t in tables for r in t.rows):
        return None
    starts = _bucket_starts(report)
    index = {at: i for i, at in enumerate(starts)}
    fig, axes = plt.subplots(
        len(tables), 1, figsize=(7.5, 2.6 * len(tables)), dpi=110, sharex=True, squeeze=False
    )
    width = report.interval_ms / 86_400_000 * 0.85  # in days, matplotlib's date unit
    xs = [mdates.date2num(_utc(at)) for at in starts]
    for ax, table in zip(axes[:, 0], tables, strict=True):
        counts = {sev: [0] * len(starts) for sev in SEVERITY_ORDER}
        hidden = 0
        for row in table.rows:
            if row.suppressed:
                hidden += 1
                continue
            at, severity = bucket_ms(row.key), row.key.split("|", 1)[1]
            if at in index and severity in counts:
                counts[severity][index[at]] += int(row.values.get("count") or 0)
        bottom = [0] * len(starts)
        for severity in reversed(SEVERITY_ORDER):  # low at the bottom, critical on top
            ax.bar(xs, counts[severity], width, bottom=bottom, align="edge", label=severity,
                   color=SEVERITY_COLOURS[severity])  # fmt: skip
            bottom = [b + c for b, c in zip(bottom, counts[severity], strict=True)]
        what = "incidents" if table.name.startswith("incidents") else "alerts"
        per = {3_600_000: "hour", 86_400_000: "day"}.get(report.interval_ms, "week")
        note = f" ({hidden} cells suppressed)" if hidden else ""
        ax.set_title(f"{what.capitalize()} per {per} by severity{note}", fontsize=10)
        ax.set_ylabel(what)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(y=0.1)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels[::-1], fontsize=7, loc="upper left", ncols=4)
    _date_axis(axes[-1, 0], report)
    return _png(fig)


def _utc(ms: int):  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _date_axis(ax, report: Report) -> None:  # type: ignore[no-untyped-def]
    ax.set_xlim(mdates.date2num(_utc(report.start_ms)), mdates.date2num(_utc(report.end_ms)))
    locator = mdates.AutoDateLocator(tz=_utc(0).tzinfo, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=_utc(0).tzinfo))
    ax.set_xlabel("UTC", fontsize=8)


def _threat(report: Report) -> bytes | None:
    if not (report.has_table("threat_time") and report.has_table("threat_over_time")):
        return None
    over = [r for r in report.table("threat_over_time").rows if not r.suppressed]
    spent = [r for r in report.table("threat_time").rows if not r.suppressed]
    if not over and not any(r.values.get("time_ms") for r in spent):
        return None
    fig, (line, bars) = plt.subplots(
        1, 2, figsize=(7.5, 2.8), dpi=110, gridspec_kw={"width_ratios": [2.2, 1]}
    )
    levels = list(reversed(LEVEL_ORDER))  # blue .. red, rank order
    for rank, level in enumerate(levels):
        line.axhspan(rank - 0.5, rank + 0.5, color=LEVEL_COLOURS[level], alpha=0.15, lw=0)
    if over:
        xs = [mdates.date2num(_utc(bucket_ms(r.key))) for r in over]
        ys = [int(r.values.get("level_rank") or 0) for r in over]
        xs.append(mdates.date2num(_utc(min(report.end_ms, bucket_ms(over[-1].key) + report.interval_ms))))
        ys.append(ys[-1])
        line.step(xs, ys, where="post", color="#333333", lw=1.6)
    line.set_yticks(range(len(levels)), [lv.capitalize() for lv in levels], fontsize=8)
    line.set_ylim(-0.5, len(levels) - 0.5)
    subject = report.table("threat_time").title.split(":")[0]
    line.set_title(f"{subject}: highest level per bucket", fontsize=9)
    _date_axis(line, report)
    names = [r.key for r in spent]
    hours = [float(r.values.get("time_ms") or 0) / 3_600_000 for r in spent]
    colours = [LEVEL_COLOURS.get(n, "#cccccc") for n in names]
    hbars = bars.barh([row_label("threat_time", n) for n in names], hours, color=colours)
    bars.bar_label(hbars, labels=[f"{h:.1f} h" for h in hours], padding=2, fontsize=7)
    bars.invert_yaxis()
    bars.tick_params(labelsize=7)
    bars.set_xlabel("hours", fontsize=8)
    bars.set_title("Time at each level", fontsize=9)
    bars.margins(x=0.3)
    return _png(fig)


def report_charts(report: Report) -> dict[str, bytes]:
    """Chart name -> PNG bytes: ``trend``, ``threat``, then the bar charts that have rows to show."""
    charts: dict[str, bytes] = {}
    for name, make in (("trend", _trend), ("threat", _threat)):
        png = make(report)
        if png is not None:
            charts[name] = png
    for name, ylabel in (
        ("incident_severity", "incidents"),
        ("incident_stage", "incidents"),
        ("severity", "alerts"),
        ("category", "alerts"),
    ):
        if not report.has_table(name):
            continue
        table = report.table(name)
        if any(not r.suppressed and (r.values.get("count") or r.values.get("previous")) for r in table.rows):
            charts[name] = _bars(table, table.title, ylabel)
    return charts


def overview_chart(report: Report) -> bytes | None:
    """The SOC overview's threat index over the period (highest per bucket) on the level bands
    (the report's ``level_thresholds``), with the level at the period's end named in the title."""
    if not report.has_table("overview_course"):
        return None
    rows = [r for r in report.table("overview_course").rows if not r.suppressed]
    if not rows:
        return None
    bounds = {"yellow": 25.0, "orange": 50.0, "red": 75.0, **(report.basis.get("level_thresholds") or {})}
    edges = [0.0, bounds["yellow"], bounds["orange"], bounds["red"], 100.0]
    fig, ax = plt.subplots(figsize=(7.5, 2.8), dpi=110)
    for i, level in enumerate(("blue", "yellow", "orange", "red")):
        ax.axhspan(edges[i], edges[i + 1], color=LEVEL_COLOURS[level], alpha=0.15, lw=0)
        ax.text(1.005, (edges[i] + edges[i + 1]) / 2, level, transform=ax.get_yaxis_transform(),
                fontsize=7, va="center")  # fmt: skip
    xs = [mdates.date2num(_utc(bucket_ms(r.key))) for r in rows]
    ys = [float(r.values.get("index") or 0.0) for r in rows]
    step = int(report.basis.get("course_interval_ms") or report.interval_ms)
    xs.append(mdates.date2num(_utc(min(report.end_ms, bucket_ms(rows[-1].key) + step))))
    ys.append(ys[-1])
    ax.step(xs, ys, where="post", color="#333333", lw=1.6)
    ax.set_ylim(0, 100)
    ax.set_ylabel("threat index", fontsize=8)
    end = ""
    if report.has_table("overview_level"):
        row = report.table("overview_level").rows[0]
        rank = row.values.get("level_rank")
        if not row.suppressed and isinstance(rank, int):
            end = f"; at the end: {('blue', 'yellow', 'orange', 'red')[rank]}"
    subject = report.table("overview_course").title.replace(" over the period", "")
    ax.set_title(f"{subject}, highest per bucket{end}", fontsize=9)
    _date_axis(ax, report)
    return _png(fig)
