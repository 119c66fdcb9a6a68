"""Which labelled flows the alerts cover, and the scorecard figures that follow (pure logic).

An alert *covers* a flow when it names the flow's source or destination (its entity, or an address
anywhere in its evidence, keys included, ``ip:port`` read as the ip) and its span widened by its
detector's window, ``[first_seen - window, last_seen + window]``, contains the flow's time. The
window margin is there because a windowed alert's span is that of the events it counted, and the
flows of the same attack just before or after them belong to the same finding. An alert that names
its attackers (``evidence.sources``, as a victim's alert about many scanners does) covers only the
flows those sources sent: it says nothing about the victim's other traffic; one that names the
destinations it is about (``evidence.destinations``, as a beacon's, an external upload's and the
flood and slow DoS alerts' do) covers only the flows between its named sources (else any end it names) and them,
either way. The attack classes are measured with the same scopes: a rule that names what it accuses
narrows its coverage of attack flows and of benign ones alike.

Per class (``captures.ClassSpec``):
- attack: recall = share of its flows covered by an alert of one of its categories (None when no
  detector has such a category); the share covered by any alert is given beside it;
- benign: share of its flows covered by any alert, and false alerts per benign host per day;
- background: share covered, and alerts per host per day (unverified traffic, not benign truth);
- the anomaly models (alerts of category ``anomaly``), a row of their own: their alerts, the flows
  of each attack class that only they cover (what they catch that no rule does), and their false
  alerts on the benign classes per host per day.

Each alert is put in one bucket, the first that applies: ``attack`` (it covers a flow of an attack
or ``other`` class: a real attacker, right category or not), ``benign`` (a false alert on verified
benign traffic), ``background``, ``unexplained`` (it covers no labelled flow). Hosts of a class are
the flows' ends inside the capture's tenant (the source when it is, else the destination); a
class's host-days sum, over the capture's files, its hosts in the file times the file's time span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any, Final

from detectors.alert import Alert
from detectors.evaluation.captures import ClassSpec

__all__ = ["AlertIndex", "AlertSpan", "FlowTable", "HostDays", "alert_span", "score_classes"]

_DAY_MS: Final = 86_400_000
ANOMALY: Final = "anomaly"  # the anomaly models' alert category (detectors.anomaly)
_MAX_DEPTH: Final = 4


@dataclass(frozen=True)
class AlertSpan:
    index: int
    category: str
    lo: int
    hi: int
    names: frozenset[str]
    only_from: frozenset[str] = frozenset()  # the attackers it names; empty: any source
    only_with: frozenset[str] = frozenset()  # the peers it is about; empty: any peer

    def scoped_to(self, src: str, dst: str) -> bool:
        """Whether the flow is within the attackers and peers the alert names (if it names any)."""
        if self.only_from and src not in self.only_from:
            return False
        return not self.only_with or src in self.only_with or dst in self.only_with


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _addresses(value: Any, depth: int = 0) -> Iterator[str]:
    if isinstance(value, str):
        if _is_ip(value):
            yield value
        elif value.count(":") == 1 and _is_ip(value.partition(":")[0]):
            yield value.partition(":")[0]
    elif depth < _MAX_DEPTH and isinstance(value, Mapping):
        for key, item in value.items():
            yield from _addresses(key, depth + 1)
            yield from _addresses(item, depth + 1)
    elif depth < _MAX_DEPTH and isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _addresses(item, depth + 1)


def alert_span(index: int, alert: Alert, window_ms: int) -> AlertSpan:
    """The addresses ``alert`` names and its time span widened by ``window_ms`` each side."""
    evidence = {k: v for k, v in alert.evidence.items() if k != "event_ids"}
    names = {alert.entity.id, *_addresses(evidence)}
    only_from = frozenset(_addresses(evidence.get("sources", ())))
    only_with = frozenset(_addresses(evidence.get("destinations", ())))
    return AlertSpan(index, alert.category, alert.first_seen - window_ms, alert.last_seen + window_ms,
                     frozenset(names), only_from, only_with)  # fmt: skip


class AlertIndex:
    """Alert spans by the addresses they name."""

    def __init__(self, spans: Iterable[AlertSpan]) -> None:
        self.spans = list(spans)
        self.by_name: dict[str, list[AlertSpan]] = {}
        for span in self.spans:
            for name in span.names:
                self.by_name.setdefault(name, []).append(span)

    def covering(self, ts: int, src: str, dst: str, side: str = "either") -> Iterator[AlertSpan]:
        """The alerts that cover a flow at ``ts`` from ``src`` to ``dst`` (each once)."""
        by_name = self.by_name
        first = by_name.get(src, ())
        for span in first:
            if span.lo <= ts <= span.hi and span.scoped_to(src, dst):
                yield span
        if side == "source" or dst == src:
            return
        for span in by_name.get(dst, ()):
            if span.lo <= ts <= span.hi and src not in span.names and span.scoped_to(src, dst):
                yield span


@dataclass
class FlowTable:
    """The time, source and destination of each flow of one class, in input order."""

    ts: list[int] = field(default_factory=list)
    src: list[str] = field(default_factory=list)
    dst: list[str] = field(default_factory=list)

    def add(self, ts: int, src: str, dst: str) -> None:
        self.ts.append(ts)
        self.src.append(src)
        self.dst.append(dst)

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class HostDays:
    """Hosts of a class seen in each file and that file's span, for per-host-per-day rates."""

    hosts: set[str] = field(default_factory=set)
    host_days: float = 0.0

    def add_file(self, hosts: set[str], span_ms: int) -> None:
        self.hosts |= hosts
        self.host_days += len(hosts) * span_ms / _DAY_MS


def _rate(count: int, host_days: float) -> float | None:
    return round(count / host_days, 3) if host_days > 0 else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def score_classes(
    classes: Sequence[ClassSpec],
    flows: Mapping[str, FlowTable],
    index: AlertIndex,
    host_days: Mapping[str, HostDays],
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per-class figures and the bucket of every alert (see the module docstring)."""
    touched: dict[str, set[int]] = {"attack": set(), "benign": set(), "background": set()}
    per_class: dict[str, dict[str, Any]] = {}
    for spec in classes:
        table = flows.get(spec.name, FlowTable())
        bucket = "attack" if spec.kind in ("attack", "other") else spec.kind
        wanted = frozenset(spec.categories)
        right = anywhere = by_anomaly = only_anomaly = 0
        seen = touched[bucket]
        covering = index.covering
        for ts, src, dst in zip(table.ts, table.src, table.dst, strict=True):
            hit = hit_right = hit_anomaly = hit_rule = False
            for span in covering(ts, src, dst, spec.side):
                hit = True
                seen.add(span.index)
                if span.category in wanted:
                    hit_right = True
                if span.category == ANOMALY:
                    hit_anomaly = True
                else:
                    hit_rule = True
            right += hit_right
            anywhere += hit
            by_anomaly += hit_anomaly
            only_anomaly += hit_anomaly and not hit_rule
        row = _class_row(spec, len(table), right, anywhere, host_days.get(spec.name))
        row |= {"covered_by_anomaly": by_anomaly, "covered_only_by_anomaly": only_anomaly}
        per_class[spec.name] = row
        if progress is not None:
            progress(f"scored {spec.name}: {len(table):,} flows")
    buckets = _buckets(index.spans, touched)
    for spec in classes:
        row = per_class[spec.name]
        if spec.kind in ("benign", "background"):
            count = buckets[spec.kind]["alerts"]
            row["alerts" if spec.kind == "background" else "false_alerts"] = count
            row["per_host_per_day"] = _rate(count, row["host_days"])
    return {
        "classes": per_class,
        "alert_buckets": buckets,
        "anomaly": _anomaly_row(index, per_class, buckets),
    }


def _anomaly_row(
    index: AlertIndex, per_class: Mapping[str, Mapping[str, Any]], buckets: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The anomaly models' own figures: their alerts, the flows of each attack class only they
    cover (what they catch that no rule does), and their false alerts on benign hosts per day."""
    false = int(buckets["benign"]["by_category"].get(ANOMALY, 0))
    benign_days = sum(row["host_days"] for row in per_class.values() if row["kind"] == "benign")
    has_benign = any(row["kind"] == "benign" for row in per_class.values())
    return {
        "alerts": sum(1 for span in index.spans if span.category == ANOMALY),
        "covered_only_by_anomaly": {
            name: row["covered_only_by_anomaly"]
            for name, row in per_class.items()
            if row["kind"] in ("attack", "other") and row["covered_only_by_anomaly"]
        },
        "false_alerts": false if has_benign else None,
        "per_host_per_day": _rate(false, benign_days) if has_benign else None,
    }


def _class_row(spec: ClassSpec, n: int, right: int, anywhere: int, hd: HostDays | None) -> dict[str, Any]:
    row: dict[str, Any] = {"kind": spec.kind, "flows": n, "covered_by_any_alert": anywhere,
                           "share_covered": _share(anywhere, n)}  # fmt: skip
    if spec.kind == "attack":
        if spec.categories:
            row |= {"categories": list(spec.categories), "covered": right, "recall": _share(right, n)}
            if spec.scored_as:
                row["scored_as"] = spec.scored_as
        else:
            row |= {"categories": [], "covered": None, "recall": None, "detector": "none"}
    if spec.kind in ("benign", "background"):
        hd = hd or HostDays()
        row |= {"hosts": len(hd.hosts), "host_days": round(hd.host_days, 3)}
    if spec.side != "either":
        row["side"] = spec.side
    return row


def _buckets(spans: Sequence[AlertSpan], touched: Mapping[str, set[int]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        b: {"alerts": 0, "by_category": {}} for b in ("attack", "benign", "background", "unexplained")
    }
    for span in spans:
        bucket = next(
            (b for b in ("attack", "benign", "background") if span.index in touched[b]), "unexplained"
        )
        row = out[bucket]
        row["alerts"] += 1
        row["by_category"][span.category] = row["by_category"].get(span.category, 0) + 1
    return out
