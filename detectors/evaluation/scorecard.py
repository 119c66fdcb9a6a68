"""Alerts against ground truth: precision, recall, F1, time to detect and alert rate.

Matching. An alert matches a ground-truth record when all hold:

1. same category (an ``anomaly`` alert may match a record of any category);
2. overlapping event time: ``alert.first_seen <= record.end + slack`` and
   ``alert.last_seen >= record.start - slack`` (``slack_ms``, default 0);
3. same entity (type and id), or the alert's ``evidence.event_ids`` share an id with the record's.

An alert is a true positive when it matches at least one attack record (``benign: false``),
otherwise a false positive: ``on_benign`` if it matches a look-alike record, else ``unmatched``.
Per category: precision = TP alerts / alerts of the category; recall = attack records with at
least one matching alert / attack records; F1 their harmonic mean; time to detect = the first
matching alert's ``ts`` minus the record's ``start`` (median and max over detected records);
alerts per 1,000 events = alerts of the category x 1000 / events scanned. Per scenario the same,
where an attack scenario's precision counts its matched alerts against the false alerts of its
category (on look-alikes or unmatched), unmatched alerts are reported on a
``<category>.(unmatched)`` row, and a look-alike row reports its false alerts, with ``recall`` the
share of its instances that drew any (there, lower is better).

Context records (``context: true``, the simulator's background: internet scanners probing every
VM) are what a detector may rightly report without it being an injected attack. An alert matching
no attack record but a context record of its own category (never an ``anomaly`` alert: the context
spans every VM all run) is a context alert: neither true nor false, left out of its
category's precision (TP / (alerts - context alerts)) and its recall (context records are not
instances); the context record's own row gives the share of its entities reported (``recall``).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from detectors.alert import Alert

__all__ = ["CategoryRow", "ScenarioRow", "Scorecard", "Truth", "TruthEntity", "load_truth", "score"]


class TruthEntity(msgspec.Struct, frozen=True):
    type: str
    id: str


class Truth(msgspec.Struct, frozen=True, kw_only=True):
    """One ground-truth record (the simulator's ``ground_truth.jsonl`` line)."""

    scenario: str
    category: str
    tenant: str | None
    entity: TruthEntity
    start: int
    end: int
    event_ids: list[str]
    benign: bool
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
    context: bool = False


_truth_decoder = msgspec.json.Decoder(Truth)


def load_truth(path: str | os.PathLike[str]) -> list[Truth]:
    out = []
    with Path(path).open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(_truth_decoder.decode(line))
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    raise ValueError(f"{path}:{lineno}: {exc}") from None
    return out


@dataclass
class CategoryRow:
    category: str
    alerts: int = 0
    true_alerts: int = 0
    false_alerts_on_benign: int = 0
    false_alerts_unmatched: int = 0
    context_alerts: int = 0
    instances: int = 0
    detected: int = 0
    benign_instances: int = 0
    benign_alerted: int = 0
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    ttd_median_s: float | None = None
    ttd_max_s: float | None = None
    alerts_per_1k_events: float = 0.0


@dataclass
class ScenarioRow:
    scenario: str
    category: str
    benign: bool
    instances: int = 0
    detected: int = 0
    alerts: int = 0
    context: bool = False
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    ttd_median_s: float | None = None
    ttd_max_s: float | None = None
    alerts_per_1k_events: float = 0.0
    missed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scorecard:
    events: int
    alerts: int
    categories: dict[str, CategoryRow]
    scenarios: dict[str, ScenarioRow]
    false_alerts: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "alerts": self.alerts,
            "categories": {k: asdict(v) for k, v in self.categories.items()},
            "scenarios": {k: asdict(v) for k, v in self.scenarios.items()},
            "false_alerts": self.false_alerts,
            "meta": self.meta,
        }

    def table(self) -> str:
        """Plain-text tables, per category then per scenario."""

        def f(x: float | None) -> str:
            return "   -  " if x is None else f"{x:6.3f}"

        def s(x: float | None) -> str:
            return "    -" if x is None else f"{x:5.0f}"

        lines = [
            f"events {self.events}, alerts {self.alerts}",
            "",
            f"{'category':<20} {'alerts':>6} {'TP':>5} {'FP':>4} {'ctx':>4} {'inst':>5} {'det':>4} "
            f"{'precis':>6} {'recall':>6} {'F1':>6} {'ttd_s':>5} {'ttdmax':>6} {'/1k ev':>7}",
        ]
        for r in self.categories.values():
            fp = r.false_alerts_on_benign + r.false_alerts_unmatched
            lines.append(
                f"{r.category:<20} {r.alerts:>6} {r.true_alerts:>5} {fp:>4} {r.context_alerts:>4} {r.instances:>5} "
                f"{r.detected:>4} "
                f"{f(r.precision)} {f(r.recall)} {f(r.f1)} {s(r.ttd_median_s)} {s(r.ttd_max_s):>6} "
                f"{r.alerts_per_1k_events:7.3f}"
            )
        if any(r.context_alerts for r in self.categories.values()):
            lines.append(
                "ctx: alerts on what the background itself carries (a context row below), neither TP nor FP"
            )
        lines += [
            "",
            f"{'scenario':<42} {'inst':>4} {'det':>4} {'alerts':>6} {'precis':>6} {'recall':>6} "
            f"{'F1':>6} {'ttd_s':>5} {'/1k ev':>7}",
        ]
        for sc in self.scenarios.values():
            lines.append(
                f"{sc.scenario:<42} {sc.instances:>4} {sc.detected:>4} {sc.alerts:>6} {f(sc.precision)} "
                f"{f(sc.recall)} {f(sc.f1)} {s(sc.ttd_median_s)} {sc.alerts_per_1k_events:7.3f}"
            )
        return "\n".join(lines)


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _matches(alert: Alert, rec: Truth, slack_ms: int) -> bool:
    if alert.category != rec.category and alert.category != "anomaly":
        return False
    if alert.first_seen > rec.end + slack_ms or alert.last_seen < rec.start - slack_ms:
        return False
    if alert.entity.type == rec.entity.type and alert.entity.id == rec.entity.id:
        return True
    ids = alert.evidence.get("event_ids") or ()
    return bool(ids) and not set(ids).isdisjoint(rec.event_ids)


def _false_alert_order(info: dict[str, Any]) -> tuple[Any, ...]:
    return (info["first_seen"], info["detector"], info["entity"], str(info["tenant"]), info["summary"])


def score(alerts: Sequence[Alert], truth: Iterable[Truth], events: int, *, slack_ms: int = 0) -> Scorecard:
    records = list(truth)
    cats: dict[str, CategoryRow] = {}
    scen: dict[str, ScenarioRow] = {}
    for rec in records:
        cats.setdefault(rec.category, CategoryRow(rec.category))
        row = scen.setdefault(
            rec.scenario, ScenarioRow(rec.scenario, rec.category, rec.benign, context=rec.context)
        )
        row.instances += 1
    for a in alerts:
        cats.setdefault(a.category, CategoryRow(a.category))

    first_alert: dict[int, int] = {}  # record index -> earliest matching alert ts
    benign_hit: set[int] = set()
    false_alerts: list[dict[str, Any]] = []
    false_by_cat: dict[str, int] = {}
    for a in alerts:
        crow = cats[a.category]
        crow.alerts += 1
        hits = [i for i, rec in enumerate(records) if _matches(a, rec, slack_ms)]
        attack = [i for i in hits if not records[i].benign and not records[i].context]
        # An attack first, else context of the alert's own category: the anomaly models match any
        # category's attack, but background context spans every VM all run, so an anomaly alert
        # anywhere would otherwise pass as context.
        credited = attack or [i for i in hits if records[i].context and records[i].category == a.category]
        if credited:
            if attack:
                crow.true_alerts += 1
            else:
                crow.context_alerts += 1
            for i in credited:
                first_alert[i] = min(first_alert.get(i, a.ts), a.ts)
            for name in {records[i].scenario for i in credited}:
                scen[name].alerts += 1
            continue
        benign = [i for i in hits if records[i].benign]
        false_by_cat[a.category] = false_by_cat.get(a.category, 0) + 1
        info: dict[str, Any] = {
            "detector": a.detector,
            "entity": f"{a.entity.type}:{a.entity.id}",
            "tenant": a.tenant,
            "first_seen": a.first_seen,
            "summary": a.summary,
        }
        if benign:
            crow.false_alerts_on_benign += 1
            benign_hit.update(benign)
            for name in {records[i].scenario for i in benign}:
                scen[name].alerts += 1
            info["on_benign"] = sorted({records[i].scenario for i in benign})
        else:
            crow.false_alerts_unmatched += 1
            name = f"{a.category}.(unmatched)"
            scen.setdefault(name, ScenarioRow(name, a.category, True)).alerts += 1
        false_alerts.append(info)

    ttd: dict[str, list[float]] = {}
    ttd_cat: dict[str, list[float]] = {}
    for i, rec in enumerate(records):
        row = scen[rec.scenario]
        crow = cats[rec.category]
        if rec.context:
            row.detected += i in first_alert
            continue
        if rec.benign:
            crow.benign_instances += 1
            if i in benign_hit:
                crow.benign_alerted += 1
                row.detected += 1
            continue
        crow.instances += 1
        if i in first_alert:
            crow.detected += 1
            row.detected += 1
            delay = max(0.0, (first_alert[i] - rec.start) / 1000)
            ttd.setdefault(rec.scenario, []).append(delay)
            ttd_cat.setdefault(rec.category, []).append(delay)
        elif len(row.missed) < 10:
            row.missed.append(
                {
                    "entity": f"{rec.entity.type}:{rec.entity.id}",
                    "start": rec.start,
                    "end": rec.end,
                    "tenant": rec.tenant,
                    "detail": rec.detail,
                }
            )

    for crow in cats.values():
        judged = crow.alerts - crow.context_alerts
        crow.precision = crow.true_alerts / judged if judged else None
        crow.recall = crow.detected / crow.instances if crow.instances else None
        crow.f1 = _f1(crow.precision, crow.recall)
        delays = ttd_cat.get(crow.category)
        if delays:
            crow.ttd_median_s = statistics.median(delays)
            crow.ttd_max_s = max(delays)
        crow.alerts_per_1k_events = 1000 * crow.alerts / events if events else 0.0
    for row in scen.values():
        row.alerts_per_1k_events = 1000 * row.alerts / events if events else 0.0
        if row.benign or row.context:
            row.recall = row.detected / row.instances if row.instances else None  # share alerted
            row.precision = 0.0 if row.alerts and row.benign else None
            continue
        row.recall = row.detected / row.instances if row.instances else None
        fp = false_by_cat.get(row.category, 0)
        row.precision = row.alerts / (row.alerts + fp) if row.alerts + fp else None
        row.f1 = _f1(row.precision, row.recall)
        delays = ttd.get(row.scenario)
        if delays:
            row.ttd_median_s = statistics.median(delays)
            row.ttd_max_s = max(delays)
    order = sorted(cats)
    return Scorecard(
        events=events,
        alerts=len(alerts),
        categories={k: cats[k] for k in order},
        scenarios={k: scen[k] for k in sorted(scen)},
        # in a fixed order (alerts read back from Elasticsearch come in no set order among equal times)
        false_alerts=sorted(false_alerts, key=_false_alert_order)[:200],
    )
