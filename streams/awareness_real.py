"""Incidents, threat levels and warnings on the real captures: the job's detection and awareness
stages replayed offline over each labelled capture of the real-data scorecard, measured against
its labels. The simulator's campaigns (``streams.awareness_eval``) say whether the stage does what
it was built for; this says what it makes of real traffic: how many incidents an infected host's
story becomes, whether real background alerts join an attack's incident, and where the tenant's
threat level stands.

``python -m streams.awareness_real [--dataset NAME|all] [--data-dir DIR] [--out PATH]`` prints a
table and writes ``results/awareness-real.json`` (default); ``ssa evaluate --incidents`` adds the
same figures to the scorecard of a known capture (``--dataset``) or of the user's own
(``--capture``), under ``incidents``.

What runs. Each capture is parsed and detected on as ``ssa evaluate --dataset`` does it
(``detectors.evaluation.real.run_capture``, the job's allowances for disorder from the settings),
its events kept in the parser's order; then the same events go, in that order, through
``streams.awareness_eval.JobReplay``: the job's two event-time paths, its micro-batch steps (the
alerts and the posture records the job writes) and its awareness stage (incidents per tenant,
threat level per minute, warnings). A capture of one host's day per file (CTU-50) is replayed
one file at a time, each with a stage of its own, as its scorecard gives each file an engine.
The replay's alert ids are compared with the scorecard run's (``alerts_same_as_scorecard``).

What is measured, per capture (the scorecard's classes, ``detectors.evaluation.coverage``):

- per class, the alerts covering its flows (an attack class: of the categories that find it) and
  the incidents holding them (merged-away incidents left out), each attack incident's title,
  stage, kill chain and severity, and whether it also holds an alert that covers benign or
  background flows and no malicious one (``mixed``: an attack and another story in one incident);
- the incidents no alert on malicious flows (an attack class's or ``other``) is in
  (``incidents_without_attack``), and of those the ones holding a false alert on verified benign
  flows, per benign host per day;
- compression: the replay's alerts per incident;
- the tenant's threat level: minutes at each level, the first minute at orange or red;
- warnings: how many, their signals and levels, the first one's time against the first alert
  covering an attack class.

A real capture is short beside the forecasters' warm-up (a day of hours before a warning can be
raised): CTU-13's 2 h and IoT-23's day cannot warn, RITA's later days can.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from awareness.threat import LEVELS
from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.engine import Lateness
from detectors.evaluation.captures import CAPTURES, ClassSpec
from detectors.evaluation.coverage import AlertIndex
from detectors.evaluation.real import CaptureRun, index_alerts, machine_facts, missing_captures, run_capture
from infra.settings import load_settings
from ingest.schema import Event
from streams.awareness_eval import AwarenessStage, JobReplay, final_incidents
from streams.detect_fn import DetectionJobConfig

__all__ = ["incident_figures", "job_config", "measure_capture", "replay_capture", "summary_lines"]

_ALARM_LEVELS: Final = frozenset({"orange", "red"})
_MAX_LISTED: Final = 12  # attack incidents described one by one per class; the rest counted


def replay_capture(run: CaptureRun, config: DetectorConfig, job: DetectionJobConfig) -> list[JobReplay]:
    """The job over the run's kept events: one replay for a continuous capture, one per file for a
    capture of one host's day per file."""
    if run.capture.day_files:
        segments: Iterable[list[Event]] = run.events_by_file
    else:
        segments = [list(itertools.chain.from_iterable(run.events_by_file))]
    replays = []
    for events in segments:
        replay = JobReplay(run.registry, config, AwarenessStage(run.registry, config), job=job)
        replay.feed(events)
        replay.finish()
        replays.append(replay)
    return replays


def _covering(run: CaptureRun, spec: ClassSpec, index: AlertIndex) -> tuple[set[int], set[int]]:
    """Indices of the alerts covering the class's flows: those that count for it (an attack class:
    of its categories), and those of any category."""
    table = run.sink.flows.get(spec.name)
    if table is None:
        return set(), set()
    wanted = frozenset(spec.categories)
    counted: set[int] = set()
    anywhere: set[int] = set()
    for ts, src, dst in zip(table.ts, table.src, table.dst, strict=True):
        for span in index.covering(ts, src, dst, spec.side):
            anywhere.add(span.index)
            if not wanted or span.category in wanted:
                counted.add(span.index)
    return counted, anywhere


def _incident_line(doc: Mapping[str, Any], classes_in: Sequence[str], mixed: bool) -> dict[str, Any]:
    return {
        "incident_id": doc["incident_id"],
        "title": doc["title"],
        "severity": doc["severity"],
        "stage": doc["stage"],
        "kill_chain": [step["tactic"] for step in doc["kill_chain"]],
        "alert_count": doc["alert_count"],
        "first_seen": doc["first_seen"],
        "last_seen": doc["last_seen"],
        "attack_classes": list(classes_in),
        "mixed": mixed,
    }


def _levels(threat: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Minutes at each level per tenant (the last document of each minute) and the first alarm."""
    last: dict[tuple[str, int], Mapping[str, Any]] = {}
    for doc in threat:
        last[(str(doc["tenant"]), int(doc["ts"]))] = doc
    minutes: dict[str, Counter[str]] = {}
    first_alarm: dict[str, int] = {}
    for (tenant, minute), doc in sorted(last.items()):
        level = str(doc["level"])
        minutes.setdefault(tenant, Counter())[level] += 1
        if level in _ALARM_LEVELS and tenant not in first_alarm:
            first_alarm[tenant] = minute
    return {
        tenant: {
            "minutes": {lv: counts.get(lv, 0) for lv in LEVELS},
            "highest": max(counts, key=LEVELS.index),
            "first_orange_or_red_ms": first_alarm.get(tenant),
        }
        for tenant, counts in minutes.items()
    }


def measure_capture(
    run: CaptureRun, replays: Sequence[JobReplay], scorecard_alerts: Sequence[Alert]
) -> dict[str, Any]:
    """The measures of the module docstring for one capture."""
    alerts = [a for r in replays for a in r.alerts]
    index = index_alerts(alerts, run.engines[0])
    by_index = {i: a.alert_id for i, a in enumerate(alerts)}
    incidents: dict[tuple[str, str], dict[str, Any]] = {}
    threat: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    for n, r in enumerate(replays):  # a per-file replay's incident ids are its own
        for (tenant, iid), doc in final_incidents(r.stage.incidents).items():
            if doc.get("close_reason") != "merged":
                incidents[(f"{tenant}#{n}", iid)] = doc
        threat += r.stage.threat
        warnings += r.stage.warnings
    holders: dict[str, set[tuple[str, str]]] = {}
    for key, doc in incidents.items():
        for aid in doc.get("alert_ids") or ():
            holders.setdefault(aid, set()).add(key)

    specs = run.capture.scored_classes()
    counted: dict[str, set[str]] = {}  # class -> ids of the alerts that count for it
    anywhere: dict[str, set[str]] = {}  # class -> ids of the alerts of any category covering it
    for spec in specs:
        right, any_category = _covering(run, spec, index)
        counted[spec.name] = {by_index[i] for i in right}
        anywhere[spec.name] = {by_index[i] for i in any_category}
    attack_names = [s.name for s in specs if s.kind == "attack"]
    # Alerts on malicious flows, of any category: of an attack class, or of the "other" malicious
    # traffic (a bot's DNS lookups) that no class scores.
    attack_alerts = {aid for s in specs if s.kind in ("attack", "other") for aid in anywhere[s.name]}
    quiet_alerts = {aid for s in specs if s.kind in ("benign", "background") for aid in counted[s.name]}
    benign_alerts = {aid for s in specs if s.kind == "benign" for aid in counted[s.name]}

    classes: dict[str, Any] = {}
    for spec in specs:
        ids = counted[spec.name]
        held = {key for aid in ids for key in holders.get(aid, ())}
        row: dict[str, Any] = {
            "kind": spec.kind,
            "alerts": len(ids),
            "alerts_in_no_incident": sum(1 for aid in ids if aid not in holders),
            "incidents": len(held),
        }
        if spec.kind == "attack":
            lines = []
            for key in sorted(held, key=lambda k: (incidents[k]["first_seen"], k)):
                doc = incidents[key]
                inside = set(doc.get("alert_ids") or ())
                classes_in = [c for c in attack_names if counted[c] & inside]
                lines.append(_incident_line(doc, classes_in, bool(inside & (quiet_alerts - attack_alerts))))
            row["attack_incidents"] = lines[:_MAX_LISTED]
            row["attack_incidents_not_listed"] = max(0, len(lines) - _MAX_LISTED)
            row["mixed_incidents"] = sum(1 for line in lines if line["mixed"])
        classes[spec.name] = row

    without_attack = [d for d in incidents.values() if not set(d.get("alert_ids") or ()) & attack_alerts]
    false_benign = [d for d in without_attack if set(d.get("alert_ids") or ()) & benign_alerts]
    benign_days = sum(
        run.host_days[s.name].host_days for s in specs if s.kind == "benign" and s.name in run.host_days
    )
    first_attack_alert = min((a.ts for a in alerts if a.alert_id in attack_alerts), default=None)
    first_warning = min((int(w["ts"]) for w in warnings), default=None)
    scorecard_ids = {a.alert_id for a in scorecard_alerts}
    replay_ids = {a.alert_id for a in alerts}
    return {
        "events": sum(r.stats()["events"] for r in replays),
        "late_events": sum(r.stats()["late_events"] for r in replays),
        "replays": len(replays),
        "alerts": len(alerts),
        "alerts_same_as_scorecard": replay_ids == scorecard_ids,
        "alerts_only_in_replay": len(replay_ids - scorecard_ids),
        "alerts_only_in_scorecard": len(scorecard_ids - replay_ids),
        "incidents": len(incidents),
        "alerts_per_incident": round(len(alerts) / len(incidents), 1) if incidents else None,
        "alerts_in_an_incident": sum(1 for a in alerts if a.alert_id in holders),
        "incidents_by_severity": dict(Counter(str(d["severity"]) for d in incidents.values())),
        "incidents_without_attack": len(without_attack),
        "incidents_with_a_false_alert_on_benign_flows": len(false_benign),
        "false_incidents_per_benign_host_per_day": (
            round(len(false_benign) / benign_days, 3) if benign_days else None
        ),
        "classes": classes,
        "threat": _levels(threat),
        "warnings": len(warnings),
        "warnings_by_signal": dict(Counter(f"{w['signal']} {w['level']}" for w in warnings)),
        "first_warning_ms": first_warning,
        "first_attack_alert_ms": first_attack_alert,
    }


def incident_figures(run: CaptureRun, config: DetectorConfig, job: DetectionJobConfig) -> dict[str, Any]:
    """``replay_capture`` then ``measure_capture``: a run kept with ``keep_events``."""
    return measure_capture(run, replay_capture(run, config, job), run.sink.alerts)


def job_config(out_of_orderness_ms: int, flow_export_delay_ms: int) -> DetectionJobConfig:
    """The job's settings that decide lateness, as ``ssa detect`` gives them."""
    return DetectionJobConfig(
        out_of_orderness_ms=out_of_orderness_ms, flow_export_delay_ms=flow_export_delay_ms
    )


def summary_lines(name: str, m: Mapping[str, Any]) -> list[str]:
    """The measures as text: a head line, a line per class (each attack incident under its class,
    the first three), the tenants' levels and the warnings."""
    same = (
        "same as the scorecard's"
        if m["alerts_same_as_scorecard"]
        else f"{m['alerts_only_in_replay']} only here, {m['alerts_only_in_scorecard']} only in the scorecard"
    )
    lines = [
        f"{name}: {m['events']:,} events, {m['alerts']:,} alerts ({same}) -> {m['incidents']:,} incidents "
        f"({m['alerts_per_incident']}x; {m['alerts_in_an_incident']:,} alerts in one), "
        f"{m['incidents_without_attack']:,} without an attack alert "
        f"({m['incidents_with_a_false_alert_on_benign_flows']} on benign flows)"
    ]
    for cls, row in m["classes"].items():
        line = f"  {cls:<12}{row['kind']:<11}{row['alerts']:>6} alerts {row['incidents']:>5} incidents"
        if row["kind"] == "attack":
            line += f", {row['mixed_incidents']} mixed"
        lines.append(line)
        for inc in row.get("attack_incidents", [])[:3]:
            lines.append(
                f"      {inc['severity']:<8} {' > '.join(inc['kill_chain'])}: {inc['alert_count']} alerts, "
                f"classes {'/'.join(inc['attack_classes'])}: {inc['title'][:90]}"
            )
    for tenant, lv in m["threat"].items():
        minutes = ", ".join(f"{k} {v}" for k, v in lv["minutes"].items())
        lines.append(f"  level of {tenant}: {minutes} minutes; highest {lv['highest']}")
    signals = ", ".join(f"{k} {v}" for k, v in m["warnings_by_signal"].items())
    lines.append(f"  warnings: {m['warnings']}" + (f" ({signals})" if signals else ""))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m streams.awareness_real",
        description="Replay the labelled real captures through the job's detection and awareness "
        "stages offline; measure incidents, threat levels and warnings against the labels.",
    )
    p.add_argument("--dataset", default="all", help=f"one of {', '.join(CAPTURES)}, or all")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--out", default="results/awareness-real.json", help="JSON output path")
    a = p.parse_args(argv)
    names = list(CAPTURES) if a.dataset == "all" else [a.dataset]
    if names[0] not in CAPTURES:
        p.error(f"unknown dataset {a.dataset!r}; choose one of {', '.join(CAPTURES)} or all")
    missing = missing_captures(names, a.data_dir)
    if missing:
        p.error(f"no capture {', '.join(missing)} under {a.data_dir} (give --data-dir)")
    settings = load_settings()
    lateness = Lateness.for_flows(settings.out_of_orderness_ms, settings.flow_export_delay_ms)
    job = job_config(settings.out_of_orderness_ms, settings.flow_export_delay_ms)
    config = DetectorConfig.default()
    out: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        run = run_capture(name, a.data_dir, config=config, lateness=lateness, keep_events=True)
        measured = incident_figures(run, config, job)
        measured["seconds"] = round(time.perf_counter() - t0, 1)
        out[name] = measured
        print("\n".join(summary_lines(name, measured)))
    doc = {
        "command": "python -m streams.awareness_real " + " ".join(sys.argv[1:] if argv is None else argv),
        "run": machine_facts(Path(__file__).resolve().parents[1]),
        "captures": out,
    }
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
