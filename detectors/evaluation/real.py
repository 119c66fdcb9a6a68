"""The real-data scorecard: parse + detectors over the labelled real captures of ``../shared/data``.

Library face of ``ssa evaluate --dataset NAME|all [--data-dir PATH]``. Per capture
(``captures.CAPTURES``): every file is parsed by the project's parser for its format through
``ingest.pipeline.run_ingest``, exactly as ``ssa ingest`` would (DLQ and skips counted), in the
order the files hold the records (never sorted: the export order is part of the test), and the
events go to one detection engine as ``ssa scan`` drives it (default detector configuration,
chunks of 50,000 events, ``flush`` at the end; the CLI gives it the job's allowances for disorder,
``out_of_orderness_ms`` and ``flow_export_delay_ms``), with a tenant registry of the capture's one
tenant. Late events are reported as ``ssa scan`` counts them (``late_events``: events late for at
least one of their detectors, which the job sends to the DLQ) and summed per detector (``late``).
The labels are read from the same files (``captures.read_labels``) and the alerts scored per class
(``coverage``); an event with no label (``events_without_label``, 0 on the captures) is detected on
but not scored. Data is read where it is, never copied; results go to ``results/real-scorecard.json``."""

from __future__ import annotations

import io
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, Lateness
from detectors.evaluation.captures import CAPTURES, Capture, LabelRead, open_text, read_labels
from detectors.evaluation.coverage import AlertIndex, FlowTable, HostDays, alert_span, score_classes
from detectors.flowdir import ONE_WAY, flow_view, is_response
from detectors.job_order import OrderedFeed
from detectors.registry import all_detectors
from ingest.parsers import get_format
from ingest.pipeline import run_ingest
from ingest.producer import SinkCounters
from ingest.schema import Event, FlowEvent
from ingest.tenants import TenantRegistry

__all__ = [
    "DATASETS",
    "CaptureRun",
    "alert_index",
    "engine_figures",
    "evaluate_capture",
    "evaluate_datasets",
    "index_alerts",
    "machine_facts",
    "missing_captures",
    "run_capture",
    "score_run",
    "table",
    "write_scorecard",
]

DATASETS: Final = tuple(CAPTURES)
_CHUNK: Final = 50_000  # events per engine call, as ``ssa scan`` feeds it
Say = Callable[[str], None]


def _one_way_response(ev: FlowEvent) -> bool:
    """A one-way exporter's record of a connection's reply, as the detectors read it
    (``detectors.flowdir``): scored from the connection's initiator, as its label means. Without
    this an alert that names the attacker as its source covered only half of a NetFlow capture's
    attack (the victim's replies are records it sent)."""
    view = flow_view(ev)
    return bool(view & ONE_WAY) and is_response(view)


class _EngineSink:
    """The ingest sink: events to the engine in chunks, each flow's time and ends to its class's
    table, DLQ records counted. Nothing is kept but what the scoring needs."""

    def __init__(self, engine: DetectionEngine, labels: LabelRead, registry: TenantRegistry) -> None:
        self.counters = SinkCounters()  # the Sink protocol's; unused here
        self.engine = engine  # fed in the job's order (detectors.job_order)
        self.labels = labels
        self.registry = registry
        self.pending: list[Event] = []
        self.alerts: list[Alert] = []
        self.flows: dict[str, FlowTable] = {}
        self.file_hosts: dict[str, set[str]] = {}
        self.local: dict[str, bool] = {}
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.events = self.dlq = self.unmatched = 0
        self.anomaly_windows = self.anomaly_rows = 0  # the anomaly models' scored (tenant, window)s, rows
        # Ids of one-way records that are a connection's response (a re-export knows): scored the
        # way the label reads, from the connection's initiator to its responder. None: not known,
        # as for a capture read from files, whose one-way records (NetFlow, nfdump, VPC) are
        # flipped when the detectors take them for a response (``_one_way_response``).
        self.responses: frozenset[str] | None = None
        self.kept: list[Event] | None = None  # every event in arrival order, when a caller asks

    @property
    def engine(self) -> DetectionEngine:
        return self._feed.engine

    @engine.setter
    def engine(self, engine: DetectionEngine) -> None:
        self._feed = OrderedFeed(engine)

    def send_event(self, event: Event) -> None:
        self.send_events([event])

    def send_events(self, events: list[Event]) -> None:
        by_id = self.labels.by_id
        for ev in events:
            cls = by_id.get(ev.id)
            if cls is None or not isinstance(ev, FlowEvent):
                self.unmatched += 1
                continue
            table = self.flows.get(cls)
            if table is None:
                table = self.flows[cls] = FlowTable()
            if _one_way_response(ev) if self.responses is None else ev.id in self.responses:
                table.add(ev.ts, ev.dst_ip, ev.src_ip)
            else:
                table.add(ev.ts, ev.src_ip, ev.dst_ip)
            host = ev.src_ip if self._local(ev.src_ip) else ev.dst_ip if self._local(ev.dst_ip) else None
            if host is not None:
                self.file_hosts.setdefault(cls, set()).add(host)
            self.first_ts = ev.ts if self.first_ts is None else min(self.first_ts, ev.ts)
            self.last_ts = ev.ts if self.last_ts is None else max(self.last_ts, ev.ts)
        self.events += len(events)
        self.pending.extend(events)
        if self.kept is not None:
            self.kept.extend(events)
        if len(self.pending) >= _CHUNK:
            self.alerts.extend(self._feed.process(self.pending))
            self.pending = []
            self._count_scored()

    def _count_scored(self) -> None:
        """The anomaly models' windows scored so far (each a tenant's window of entity rows)."""
        scores = self.engine.drain_window_scores()
        self.anomaly_windows += len(scores)
        self.anomaly_rows += sum(int(s["scored"]) for s in scores)

    def _local(self, ip: str) -> bool:
        known = self.local.get(ip)
        if known is None:
            known = self.local[ip] = self.registry.tenant_of_ip(ip) is not None
        return known

    def send_dlq(self, record: object) -> None:
        self.dlq += 1

    def end_file(self, host_days: dict[str, HostDays]) -> None:
        """Add the hosts seen since the last call, over the time span they were seen in."""
        span = (self.last_ts - self.first_ts) if self.first_ts is not None and self.last_ts is not None else 0
        for cls, hosts in self.file_hosts.items():
            host_days.setdefault(cls, HostDays()).add_file(hosts, span)
        self.file_hosts, self.first_ts, self.last_ts = {}, None, None

    def finish(self) -> None:
        self.alerts.extend(self._feed.process(self.pending))
        self.pending = []
        self.alerts.extend(self._feed.flush())
        self._count_scored()

    def flush(self) -> None:
        """Nothing buffered beyond ``pending``, which ``finish`` hands over at end of input."""

    def close(self) -> None:
        """Nothing to release."""


def _head(path: Path, max_lines: int) -> io.BytesIO:
    """The first ``max_lines`` lines of a (gzipped) file, for a slice of a capture."""
    with open_text(path) as fh:
        lines = [fh.readline() for _ in range(max_lines)]
    return io.BytesIO(b"".join(lines))


def missing_captures(names: Sequence[str], data_dir: str | os.PathLike[str]) -> list[str]:
    """The captures among ``names`` with no file under ``data_dir``."""
    return [n for n in names if not CAPTURES[n].files(Path(data_dir))]


@dataclass
class CaptureRun:
    """What running a capture leaves for scoring: the sink (alerts, flows by class, counts), the
    engines (one, or one per day file), the labels read, the host-days by class and the parsers'
    skip count."""

    capture: Capture
    files: list[Path]
    sink: _EngineSink
    engines: list[DetectionEngine]
    labels: LabelRead
    host_days: dict[str, HostDays]
    skipped: int
    seconds: float
    registry: TenantRegistry
    # Each file's events in the order the parser gave them (``keep_events``), else empty.
    events_by_file: list[list[Event]]


def run_capture(
    name: str | Capture,
    data_dir: str | os.PathLike[str],
    *,
    config: DetectorConfig | None = None,
    max_files: int | None = None,
    max_lines: int | None = None,
    lateness: Lateness | None = None,
    say: Say | None = None,
    keep_events: bool = False,
) -> CaptureRun:
    """Parse and detect over one capture (see the module docstring). ``max_files`` and
    ``max_lines`` (per file) cut a slice of it, for a quick check. ``lateness``: the allowances for
    disorder that ``ssa scan`` gives the engine (the job's settings); None: the engine's default.
    ``keep_events``: also keep each file's events (``events_by_file``), for a replay through more
    than the engine (``streams.awareness_real``)."""
    capture = CAPTURES[name] if isinstance(name, str) else name
    name = capture.name
    files = capture.files(Path(data_dir))[:max_files]
    if not files:
        raise FileNotFoundError(f"no files of {name} under {Path(data_dir) / capture.folder}")
    cfg = config or DetectorConfig.default()
    registry = TenantRegistry.from_dict({"tenants": [{"id": name, "cidrs": list(capture.cidrs)}]})

    def new_engine() -> DetectionEngine:
        return DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg), lateness=lateness)

    source = str(getattr(get_format(capture.fmt).factory, "source", capture.fmt))
    labels = LabelRead({}, {})
    sink = _EngineSink(new_engine(), labels, registry)
    engines = [sink.engine]
    events_by_file: list[list[Event]] = []
    host_days: dict[str, HostDays] = {}
    skipped = 0
    t0 = time.perf_counter()
    for n, path in enumerate(files):
        if capture.day_files and n:  # another host's day, from its own sensor: a fresh engine
            sink.finish()
            sink.end_file(host_days)
            sink.engine = new_engine()
            engines.append(sink.engine)
        if keep_events:
            sink.kept = []
            events_by_file.append(sink.kept)
        with _head(path, max_lines) if max_lines else open_text(path) as fh:
            read_labels(capture, fh, source, labels)
        summary = run_ingest(
            _head(path, max_lines) if max_lines else path, capture.fmt, registry=registry, sink=sink,
            timezone=capture.timezone,
        )  # fmt: skip
        skipped += summary.skipped
        if say is not None:
            say(
                f"{name}: {path.name}: {summary.parsed:,} events, {summary.dlq} DLQ, {summary.skipped} skipped"
            )
    sink.finish()
    sink.end_file(host_days)
    seconds = time.perf_counter() - t0
    return CaptureRun(
        capture, files, sink, engines, labels, host_days, skipped, seconds, registry, events_by_file
    )


def alert_index(run: CaptureRun) -> AlertIndex:
    """The run's alerts, each widened by its detector's window."""
    return index_alerts(run.sink.alerts, run.engines[0])


def index_alerts(alerts: Sequence[Alert], engine: DetectionEngine) -> AlertIndex:
    """``alerts``, each widened by the window of its detector in ``engine``."""
    windows = {d.meta.id: d.window.size_ms for d in engine.detectors}
    return AlertIndex(alert_span(i, a, windows.get(a.detector, 0)) for i, a in enumerate(alerts))


def engine_figures(
    sink: _EngineSink, engines: Sequence[DetectionEngine], scored: dict[str, Any]
) -> dict[str, Any]:
    """What a scorecard reports of its engines and alerts beside the scored classes: allowances for
    disorder, late events, failures, alerts by detector, the anomaly models' row."""
    stats = [engine.stats() for engine in engines]
    by_detector: dict[str, int] = {}
    for a in sink.alerts:
        by_detector[a.detector] = by_detector.get(a.detector, 0) + 1
    lateness = engines[0].lateness
    return {
        "lateness_ms": {"default": lateness.default_ms, **lateness.per_kind},
        "engines": len(engines),
        "late": sum(int(st["late"]) for st in stats),
        "late_events": sum(int(st["late_events"]) for st in stats),
        "detector_failures": sum(int(st["failures"]) for st in stats),
        "alerts": len(sink.alerts),
        "alerts_by_detector": dict(sorted(by_detector.items())),
        **scored,
        "anomaly": {
            **scored["anomaly"],
            "windows_scored": sink.anomaly_windows,
            "entity_windows_scored": sink.anomaly_rows,
        },
    }


def evaluate_capture(
    name: str | Capture,
    data_dir: str | os.PathLike[str],
    *,
    config: DetectorConfig | None = None,
    max_files: int | None = None,
    max_lines: int | None = None,
    lateness: Lateness | None = None,
    say: Say | None = None,
) -> dict[str, Any]:
    """The scorecard of one capture: ``run_capture``, then ``score_run``."""
    run = run_capture(
        name, data_dir, config=config, max_files=max_files, max_lines=max_lines, lateness=lateness, say=say
    )
    return score_run(run, config=config, max_lines=max_lines, say=say)


def score_run(
    run: CaptureRun,
    *,
    config: DetectorConfig | None = None,
    max_lines: int | None = None,
    say: Say | None = None,
) -> dict[str, Any]:
    """A run's alerts scored per class, with what the scorecard reports of the run."""
    capture, sink = run.capture, run.sink
    classes = capture.scored_classes()
    scored = score_classes(classes, sink.flows, alert_index(run), run.host_days, say)
    return {
        "format": capture.fmt,
        "config": "default" if config is None else (config.source or "<memory>"),
        "files": len(run.files),
        "max_lines_per_file": max_lines,
        "tenant": {"cidrs": list(capture.cidrs), "note": capture.tenant_note},
        "timezone": capture.timezone or "UTC (epoch times)",
        "events": sink.events,
        "dlq": sink.dlq,
        "skipped": run.skipped,
        "labelled_rows": dict(sorted(run.labels.rows.items())),
        "unreadable_label_rows": run.labels.unreadable,
        "events_without_label": sink.unmatched,
        **engine_figures(sink, run.engines, scored),
        "class_notes": {c.name: c.note for c in classes if c.note},
        "seconds": round(run.seconds, 1),
    }


def evaluate_datasets(
    names: Sequence[str], data_dir: str | os.PathLike[str], *, config: DetectorConfig | None = None,
    lateness: Lateness | None = None, say: Say | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    return {n: evaluate_capture(n, data_dir, config=config, lateness=lateness, say=say) for n in names}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _allowances(lateness_ms: dict[str, int]) -> str:
    default = lateness_ms.get("default", 0)
    kinds = [f"{kind} {ms / 1000:g} s" for kind, ms in lateness_ms.items() if kind != "default"]
    return ", ".join([*kinds, f"{'other kinds' if kinds else 'every kind'} {default / 1000:g} s"])


def table(results: dict[str, dict[str, Any]]) -> str:
    """The scorecard as text, one block per capture."""
    lines: list[str] = []
    for name, r in results.items():
        lines.append(
            f"{name} ({r['format']}, {r['files']} file(s)): {r['events']:,} events, {r['dlq']:,} DLQ, "
            f"{r['skipped']:,} skipped, {r['late_events']:,} late events ({r['late']:,} late for a detector, "
            f"summed; allowance {_allowances(r['lateness_ms'])}), {r['alerts']:,} alerts, {r['seconds']} s"
        )
        width = min(max([11, *(len(c) + 1 for c in r["classes"])]), 32)  # a user's labels name classes
        lines.append(
            f"  {'class':<{width}}{'kind':<11}{'flows':>9}{'covered':>9}{'recall':>8}{'any':>8}  figures"
        )
        for cls, row in r["classes"].items():
            if row["kind"] == "other" and not row["flows"]:
                continue
            figures = "malicious, of no class scored here" if row["kind"] == "other" else ""
            if row["kind"] == "attack" and not row["categories"]:
                figures = "of no class a detector is scored for: any alert counts"
            elif row["kind"] == "attack":
                figures = "by " + "/".join(row["categories"])
            elif row["kind"] in ("benign", "background"):
                count = row.get("false_alerts", row.get("alerts"))
                figures = (
                    f"{_fmt(count)} {'false alerts' if row['kind'] == 'benign' else 'alerts'}, "
                    f"{_fmt(row['per_host_per_day'])} per host per day "
                    f"({row['hosts']:,} hosts, {row['host_days']:.2f} host-days)"
                )
            lines.append(
                f"  {_clip(cls, width - 1):<{width}}{row['kind']:<11}{row['flows']:>9,}{_fmt(row.get('covered')):>9}"
                f"{_fmt(row.get('recall')):>8}{_fmt(row['share_covered']):>8}  {figures}"
            )
        buckets = ", ".join(f"{b} {v['alerts']}" for b, v in r["alert_buckets"].items())
        lines.append(f"  alerts by what they cover: {buckets}")
        lines.append(f"  {_anomaly_line(r['anomaly'])}")
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _anomaly_line(a: Mapping[str, Any]) -> str:
    only = ", ".join(f"{cls} {n:,} flows" for cls, n in a["covered_only_by_anomaly"].items()) or "none"
    text = (
        f"anomaly models: {a['alerts']:,} alerts over {a['windows_scored']:,} scored windows "
        f"({a['entity_windows_scored']:,} entity-windows); attack flows only they cover: {only}"
    )
    if a["false_alerts"] is not None:
        text += f"; false alerts {a['false_alerts']:,}, {_fmt(a['per_host_per_day'])} per benign host per day"
    return text


def machine_facts(repo: str | os.PathLike[str]) -> dict[str, Any]:
    """The commit (``+dirty`` when the work tree has changes) and the machine the figures come from."""

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  timeout=20, check=False)  # fmt: skip
        except OSError:
            return ""
        return proc.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    ) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": commit + ("+dirty" if dirty else ""),
        "cores": os.cpu_count(),
        "cpu_model": cpu,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def write_scorecard(
    path: str | os.PathLike[str], results: dict[str, dict[str, Any]], repo: str | os.PathLike[str],
    command: str,
) -> Path:  # fmt: skip
    """Merge ``results`` into the JSON file at ``path``, each capture with the run it came from."""
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
    run = {"command": command, **machine_facts(repo)}
    captures = data.get("captures", {})
    for name, result in results.items():
        captures[name] = {**result, "run": run}
    data = {"method": __doc__, "captures": dict(sorted(captures.items()))}
    p.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return p
