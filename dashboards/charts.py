"""PNG charts of a report (matplotlib, Agg backend: no display needed).

Each bar carries its number, so a reader (or a test looking at the picture) can check the values.
Suppressed rows are left out of the charts.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from dashboards.report import Report, Table

__all__ = ["report_charts"]


def _bars(table: Table, title: str, with_previous: bool) -> bytes:
    rows = [r for r in table.rows if not r.suppressed]
    labels = [r.key for r in rows]
    now = [int(r.values.get("count") or 0) for r in rows]
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
    ax.set_ylabel("alerts")
    ax.set_title(title, fontsize=10)
    ax.margins(y=0.15)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def report_charts(report: Report) -> dict[str, bytes]:
    """Chart name -> PNG bytes (category and severity with trend, status)."""
    charts = {}
    for name, with_previous in (("category", True), ("severity", True), ("status", False)):
        table = report.table(name)
        if any(not r.suppressed for r in table.rows):
            charts[name] = _bars(table, table.title, with_previous)
    return charts
