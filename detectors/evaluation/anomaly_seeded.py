"""The anomaly models on the real captures, given a baseline fitted offline from the same network.

    python -m detectors.evaluation.anomaly_seeded [--dataset NAME|all] [--data-dir DIR] \
        [--out results/real-anomaly-seeded.json]

Why a run of its own: the real scorecard (``real``) runs the anomaly models as the job does, learned
from the stream and silent until a tenant's baseline holds ``min_baseline_rows`` (1,000) windows
spanning a day (``anomaly/online.py``: no p-value of 0.001 exists below 999 rows, and a day covers
the diurnal rhythm). No capture here has that much history before its end: one or two monitored
hosts make at most 288 five-minute windows a day, and CTU-13's campus makes thousands but in 2 h.
So that scorecard shows 0 windows scored. Here the models get the baseline a deployment would give
them on day one, the documented offline way (``python -m detectors.anomaly.fit``: fitted rows seed
the online baselines, which then keep learning from the stream), from traffic of the same network
outside the part scored:

- a capture of day files (CTU-50: one host's day per file) leaves one day out: the other days'
  hosts are the baseline, the day is scored with a fresh engine (as the scorecard runs it), for
  each day in turn;
- one continuous capture: its first hour is the baseline and the rest is scored, when the whole
  capture holds at least ``min_baseline_rows`` entity-windows (CTU-13); otherwise it is reported
  as not scorable, with its count (IoT-23: one device; RITA: one server, 864 windows in 72 h).

Two baselines, both reported: ``as_recorded`` (every flow of the baseline period: what an operator
fitting on last week's traffic gets, scans and bots included) and ``without_attacks`` (the flows
labelled attack or other left out: the semi-supervised setting of ADBench and of the UNSW-NB15
evaluation, models fitted on normal data). Every detector runs on the scored part, so "covered only
by the anomaly models" is measured against the rules on the same events; the figures cover the
scored part only (its flows, its host-days). Scoring is ``coverage``'s, as in the scorecard.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from detectors.anomaly.fit import collect_rows
from detectors.anomaly.store import ModelSet
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.evaluation.captures import CAPTURES, Capture, LabelRead, open_text, read_labels
from detectors.evaluation.coverage import HostDays, score_classes
from detectors.evaluation.real import DATASETS, _EngineSink, index_alerts, machine_facts
from detectors.registry import all_detectors
from ingest.parsers import get_format
from ingest.pipeline import run_ingest
from ingest.producer import SinkCounters
from ingest.schema import Event
from ingest.tenants import TenantRegistry

__all__ = ["BASELINES", "Part", "evaluate_seeded", "main", "parts"]

FLOW_MODEL: Final = "anomaly.flow_features"
BASELINE_MS: Final = 3_600_000  # a continuous capture's baseline period: its first hour
Baseline = Literal["as_recorded", "without_attacks"]
BASELINES: Final[tuple[Baseline, ...]] = ("as_recorded", "without_attacks")


@dataclass
class Part:
    """One scored part of a capture and the baseline it is given."""

    name: str
    baseline: list[list[Event]]  # each list one continuous stream (a day file), in its order
    scored: list[Event]


class _Collect:
    """An ingest sink that keeps the parsed events, in the file's order."""

    def __init__(self) -> None:
        self.counters = SinkCounters()
        self.events: list[Event] = []

    def send_event(self, event: Event) -> None:
        self.events.append(event)

    def send_events(self, events: list[Event]) -> None:
        self.events.extend(events)

    def send_dlq(self, record: object) -> None:
        """Malformed rows are the scorecard's business (counted there), not this run's."""

    def flush(self) -> None:
        """Nothing buffered."""

    def close(self) -> None:
        """Nothing to release."""


def _parse(
    capture: Capture, data_dir: Path, registry: TenantRegistry
) -> tuple[list[tuple[str, list[Event]]], LabelRead]:
    """Each file's events in the order the file holds them, and the labels of every file."""
    files = capture.files(data_dir)
    if not files:
        raise FileNotFoundError(f"no files of {capture.name} under {data_dir / capture.folder}")
    source = str(getattr(get_format(capture.fmt).factory, "source", capture.fmt))
    labels = LabelRead({}, {})
    out: list[tuple[str, list[Event]]] = []
    for path in files:
        with open_text(path) as fh:
            read_labels(capture, fh, source, labels)
        sink = _Collect()
        run_ingest(path, capture.fmt, registry=registry, sink=sink, timezone=capture.timezone)
        out.append((path.name, sink.events))
    return out, labels


def parts(capture: Capture, files: Sequence[tuple[str, list[Event]]]) -> list[Part]:
    """Leave one day out for day files; else the first hour of the whole capture as baseline."""
    if capture.day_files:
        return [Part(name, [evs for other, evs in files if other != name], events) for name, events in files]
    events = [e for _, evs in files for e in evs]
    if not events:
        return []
    cut = min(e.ts for e in events) + BASELINE_MS
    name = f"after the first hour of {', '.join(n for n, _ in files[:1])}{' ...' if len(files) > 1 else ''}"
    return [Part(name, [[e for e in events if e.ts < cut]], [e for e in events if e.ts >= cut])]


def _rows(
    streams: Sequence[list[Event]], registry: TenantRegistry, cfg: DetectorConfig
) -> tuple[list[str], dict[str, np.ndarray]]:
    """The flow model's feature rows of each stream, each through an engine of its own (day files'
    times overlap: one engine would drop the second day as late), stacked per tenant."""
    names: list[str] = []
    per_tenant: dict[str, list[np.ndarray]] = {}
    for events in streams:
        names, rows = collect_rows(events, registry, cfg, ["flow"])["flow"]
        for tenant, mat in rows.items():
            per_tenant.setdefault(tenant, []).append(mat)
    return names, {t: np.vstack(m) for t, m in per_tenant.items()}


def _attack_classes(capture: Capture) -> frozenset[str]:
    return frozenset(c.name for c in capture.scored_classes() if c.kind in ("attack", "other"))


def _seeded_config(
    cfg: DetectorConfig, rows: dict[str, Any], names: list[str], models_dir: Path
) -> DetectorConfig:
    """``cfg`` with the flow model's fitted rows in ``models_dir`` (the process model is off: a flow
    capture has no process events, and a models dir without its file is a configuration error)."""
    params = cfg.detectors[FLOW_MODEL]["params"]
    ModelSet.fit(
        "flow", str(params["model"]), names, rows, window_ms=int(cfg.detectors[FLOW_MODEL].get("window_ms", 300_000)),
        min_rows=int(params["min_baseline_rows"]), random_state=int(params["random_state"]),
    ).save(models_dir)  # fmt: skip
    return cfg.merged(
        {
            "shared": {"models_dir": str(models_dir)},
            "detectors": {"anomaly.process_activity": {"enabled": False}},
        }
    )


def _anomaly_alerts(sink: _EngineSink, limit: int = 20) -> list[dict[str, Any]]:
    """The first anomaly alerts, as an analyst reads them: entity, window, the features that stood out."""
    out = []
    for a in sink.alerts:
        if a.category != "anomaly":
            continue
        top = a.evidence.get("top_features", [])
        out.append({
            "entity": f"{a.entity.type} {a.entity.id}", "first_seen": a.first_seen,
            "p_value": a.evidence.get("p_value"),
            "stood_out": [f"{t['feature']} {t['value']:g} (baseline p99 {t['baseline_p99']:g})" for t in top],
        })  # fmt: skip
        if len(out) >= limit:
            break
    return out


def evaluate_seeded(
    name: str, data_dir: str | os.PathLike[str], *, config: DetectorConfig | None = None
) -> dict[str, Any]:
    """The anomaly row of one capture for each baseline (see the module docstring)."""
    capture = CAPTURES[name]
    cfg = config or DetectorConfig.default()
    registry = TenantRegistry.from_dict({"tenants": [{"id": name, "cidrs": list(capture.cidrs)}]})
    files, labels = _parse(capture, Path(data_dir), registry)
    min_rows = int(cfg.detectors[FLOW_MODEL]["params"]["min_baseline_rows"])
    streams = [evs for _, evs in files] if capture.day_files else [[e for _, evs in files for e in evs]]
    total = sum(len(m) for m in _rows(streams, registry, cfg)[1].values())
    out: dict[str, Any] = {"entity_windows_in_capture": total, "min_baseline_rows": min_rows}
    if total < min_rows and not capture.day_files:
        out["scored"] = False
        out["reason"] = (
            f"{total:,} entity-windows in the whole capture, fewer than min_baseline_rows {min_rows:,}: "
            "no baseline of this network can reach a p-value of 0.001"
        )
        return out
    out["scored"] = True
    out["protocol"] = "leave one day out" if capture.day_files else "first hour as baseline, the rest scored"
    attack = _attack_classes(capture)
    for baseline in BASELINES:
        out[baseline] = _run(capture, cfg, registry, labels, parts(capture, files), attack, baseline)
    return out


def _run(
    capture: Capture, cfg: DetectorConfig, registry: TenantRegistry, labels: LabelRead, todo: list[Part],
    attack: frozenset[str], baseline: Baseline,
) -> dict[str, Any]:  # fmt: skip
    by_id = labels.by_id
    sink: _EngineSink | None = None
    host_days: dict[str, HostDays] = {}
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ssa-anomaly-seed-") as tmp:
        for n, part in enumerate(todo):
            streams = [
                evs if baseline == "as_recorded" else [e for e in evs if by_id.get(e.id) not in attack]
                for evs in part.baseline
            ]
            names, rows = _rows(streams, registry, cfg)
            fitted = sum(len(m) for m in rows.values())
            run_cfg = _seeded_config(cfg, rows, names, Path(tmp) / str(n)) if fitted else cfg
            engine = DetectionEngine(all_detectors(run_cfg), DetectionContext(registry, run_cfg))
            if sink is None:
                sink = _EngineSink(engine, labels, registry)
            else:
                sink.engine = engine
            windows, rows_scored = sink.anomaly_windows, sink.anomaly_rows
            for i in range(0, len(part.scored), 50_000):
                sink.send_events(part.scored[i : i + 50_000])
            sink.finish()
            sink.end_file(host_days)
            runs.append({
                "scored": part.name, "baseline_flows": sum(map(len, streams)), "baseline_rows": fitted,
                "windows_scored": sink.anomaly_windows - windows, "entity_windows_scored": sink.anomaly_rows - rows_scored,
            })  # fmt: skip
    assert sink is not None, "a capture with files has parts"
    scored = score_classes(
        capture.scored_classes(), sink.flows, index_alerts(sink.alerts, sink.engine), host_days
    )
    return {
        "parts": runs,
        "windows_scored": sum(r["windows_scored"] for r in runs),
        "entity_windows_scored": sum(r["entity_windows_scored"] for r in runs),
        "anomaly": scored["anomaly"],
        "classes": {
            cls: {
                k: row[k]
                for k in ("kind", "flows", "covered_by_anomaly", "covered_only_by_anomaly", "host_days")
                if k in row
            }
            for cls, row in scored["classes"].items()
        },
        "rule_alerts": sum(1 for a in sink.alerts if a.category != "anomaly"),
        "anomaly_alerts": _anomaly_alerts(sink),
    }


def line(name: str, result: dict[str, Any]) -> str:
    """One capture's figures as text."""
    if not result["scored"]:
        return f"{name}: not scored: {result['reason']}"
    rows = [f"{name} ({result['protocol']}):"]
    for baseline in BASELINES:
        r = result[baseline]
        a = r["anomaly"]
        only = ", ".join(f"{c} {n:,} flows" for c, n in a["covered_only_by_anomaly"].items()) or "none"
        fa = (
            "-"
            if a["false_alerts"] is None
            else f"{a['false_alerts']:,} ({a['per_host_per_day']:.2f} per benign host per day)"
        )
        rows.append(
            f"  {baseline}: {a['alerts']:,} anomaly alerts over {r['windows_scored']:,} windows "
            f"({r['entity_windows_scored']:,} entity-windows); false alerts {fa}; attack flows only they cover: {only}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m detectors.evaluation.anomaly_seeded", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--dataset", default="all", choices=(*DATASETS, "all"))
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("results/real-anomaly-seeded.json"))
    args = ap.parse_args(argv)
    names = DATASETS if args.dataset == "all" else (args.dataset,)
    if not args.data_dir.is_dir():
        ap.error(f"--data-dir {args.data_dir}: no such directory")
    results = {}
    for name in names:
        try:
            results[name] = evaluate_seeded(name, args.data_dir)
        except FileNotFoundError as exc:
            ap.error(str(exc))
        print(line(name, results[name]), flush=True)
    run = {"command": "python -m detectors.evaluation.anomaly_seeded " + " ".join(argv or []),
           **machine_facts(Path(__file__).resolve().parents[2])}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"method": __doc__, "run": run, "captures": results}, indent=1) + "\n", encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
