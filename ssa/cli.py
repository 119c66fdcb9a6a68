"""The ``ssa`` command line: a thin face over ingest, detectors, streams, dashboards and infra.

Each subcommand (``ssa.parser``) calls the package that owns the work. Expected failures (the
project's own error types: a service down, a bad argument, a missing or malformed file) end in one
line on stderr and exit status 1. Anything else, a ``ValueError`` from deep inside included, is a
bug and keeps its traceback; where a library signals bad user input with ``ValueError`` (time
parsing, the simulator's limits) the handler turns it into a ``CliError`` at the call site.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from infra.settings import Settings, SettingsError, load_settings
from ssa.parser import parse

if TYPE_CHECKING:
    from dashboards.alerts import AlertStore
    from ingest.producer import Sink
    from ingest.simulator import SimConfig

__all__ = ["FORMAT_ALIASES", "HANDLERS", "CliError", "main", "resolve_format"]

Handler = Callable[[argparse.Namespace, Settings], int]


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- local services ---------------------------------------------------------------------------
def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from infra.services import up

    for st in up(settings, progress=_say):
        print(st.line())
    return 0


def _cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from infra.services import down

    down(settings, progress=_say)
    return 0


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from infra.services import status

    states = status(settings)
    for st in states:
        print(st.line())
    return 0 if all(s.healthy for s in states) else 3


# --- telemetry in -----------------------------------------------------------------------------
def _sim_config(**values: object) -> SimConfig:
    """A ``SimConfig`` from command-line values; its range checks raise ``ValueError``."""
    from ingest.simulator import SimConfig, parse_scenarios

    scenarios = values.pop("scenarios", None)
    try:
        selection = parse_scenarios(str(scenarios)) if scenarios else None
        return SimConfig(scenarios=selection, **values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.simulator import simulate, write_files

    start_ms = args.start_ms if args.start_ms is not None else int(time.time() * 1000 - args.duration * 1000)
    config = _sim_config(
        seed=args.seed,
        tenants=args.tenants,
        hosts=args.hosts,
        vms_per_tenant=args.vms_per_tenant,
        duration_s=args.duration,
        start_ms=start_ms,
        events_per_s=args.rate,
        scenarios=args.scenarios,
    )
    result = simulate(config)
    if args.kafka:
        from streams.demo import produce_simulation

        sent = produce_simulation(settings, result, _say, rate_per_s=args.kafka_rate)
        _say(f"simulate: {sent:,} events to Kafka, registry at {settings.tenants_file}")
        return 0
    out = Path(args.output)
    written = write_files(result, out, progress=lambda done, total: _say(f"  {done:,}/{total:,} events"))
    _say(
        f"simulate: {written.event_count:,} events -> {written.events}, {written.truth_count} scenarios -> "
        f"{written.ground_truth}, registry -> {written.tenants}"
    )
    return 0


# The names users type for a format (the README calls the sshd log by its daemon's name).
FORMAT_ALIASES: Final = {"sshd": "syslog", "ipfix": "netflow", "cloudtrail": "cloudaudit",
                         "cic": "cicflowmeter", "nprobe": "nprobe-csv", "binetflow": "argus"}  # fmt: skip


def resolve_format(name: str) -> str:
    """The ``ingest.pipeline.FORMATS`` name for ``name`` (a name or alias, any case)."""
    from ingest.pipeline import FORMATS

    key = FORMAT_ALIASES.get(name.lower(), name.lower())
    if key in FORMATS:
        return key
    aliases = {target: alias for alias, target in FORMAT_ALIASES.items()}
    reads = "; ".join(
        f"{fmt}{f' (or {aliases[fmt]})' if fmt in aliases else ''} reads {spec.description}"
        for fmt, spec in FORMATS.items()
    )
    raise CliError(f"unknown --format {name!r}: {reads}")


def _ingest_source(path: str, fmt: str) -> str | Path | IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    if path.startswith("udp://"):
        if fmt != "netflow":
            raise CliError(f"udp:// input is NetFlow/IPFIX export packets: use --format netflow, not {fmt}")
        return path
    if not Path(path).exists():
        raise CliError(f"no such file: {path}")
    return Path(path)


def _cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import run_ingest
    from ingest.tenants import TenantRegistry

    fmt = resolve_format(args.format)
    if args.tz is not None:
        _check_zone(args.tz)
    source = _ingest_source(args.path, fmt)
    registry = TenantRegistry.load(args.tenants) if args.tenants else None
    if registry is None and Path(settings.tenants_file).exists():
        registry = TenantRegistry.load(settings.tenants_file)
    sink = _ingest_sink(args, settings)
    last = [0.0]

    def progress(p: object) -> None:
        now = time.monotonic()
        if now - last[0] >= 2:
            last[0] = now
            _say(f"  {p.parsed:,} events, {p.dlq:,} to DLQ, {p.events_per_s:,.0f} events/s")  # type: ignore[attr-defined]

    try:
        summary = run_ingest(source, fmt, tenant=args.tenant, registry=registry, sink=sink,
                             progress=progress, year=args.year, cic_features=args.cic_features,
                             timezone=args.tz)  # fmt: skip
    finally:
        sink.close()
    _say(
        f"ingest: {summary.parsed:,} events ({', '.join(f'{k} {v:,}' for k, v in summary.by_kind.items()) or 'none'}), "
        f"{summary.dlq:,} to DLQ, {summary.skipped:,} skipped, {summary.events_per_s:,.0f} events/s"
    )
    for reason, n in sorted(summary.dlq_reasons.items(), key=lambda kv: -kv[1])[:5]:
        _say(f"  DLQ {n:,}: {reason}")
    for reason, n in sorted(summary.skip_reasons.items(), key=lambda kv: -kv[1])[:5]:
        _say(f"  skipped {n:,}: {reason}")
    if sink.counters.stale:  # Kafka records carry the event time (ingest.producer.record_timestamp)
        from ingest.producer import STALE_AFTER_MS

        days = STALE_AFTER_MS // 86_400_000
        _say(
            f"  warning: {sink.counters.stale:,} events are more than {days} days old. Kafka deletes "
            f"a segment once its newest record time is older than the topic's retention.ms ({days} "
            "days by default), perhaps before `ssa detect` reads it: for a replay, raise "
            "retention.ms on the ssa.telemetry.* topics first."
        )
    return 0


def _check_zone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CliError(
            f"unknown --tz {name!r}; give an IANA time zone such as Europe/Berlin or UTC"
        ) from None


def _ingest_sink(args: argparse.Namespace, settings: Settings) -> Sink:
    from ingest.producer import JsonLinesSink
    from streams.kafka_target import telemetry_producer

    if args.output is not None:
        return JsonLinesSink(args.output)
    return telemetry_producer(settings)


# --- detection --------------------------------------------------------------------------------
def _cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
    from streams.__main__ import main as detect_main

    argv = (["--bounded"] if args.bounded else []) + (["--no-restore"] if args.no_restore else [])
    argv += ["--no-indexer"] if args.no_indexer else []
    return detect_main(argv)


def _cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from streams.runner import start_indexer

    indexer, thread = start_indexer(settings, _say)
    try:
        while thread.is_alive():
            thread.join(1)
    except KeyboardInterrupt:
        indexer.stop()
        thread.join(30)
    return 0


def _cmd_scan(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.engine import Lateness
    from detectors.scan import scan

    if args.events != "-" and not Path(args.events).exists():
        raise CliError(f"no such file: {args.events}")
    # The job's allowances (infra.settings), so a file gives the same late counts offline.
    lateness = Lateness.for_flows(settings.out_of_orderness_ms, settings.flow_export_delay_ms)
    result = scan(args.events, args.tenants, args.output, config_path=args.config, lateness=lateness)
    _say(
        f"scan: {result.events:,} events, {result.alerts:,} alerts, {result.rejected_lines:,} rejected lines, "
        f"{result.late_events:,} late, {result.detector_failures} detector failures"
    )
    return 1 if result.detector_failures else 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.config import DetectorConfig
    from detectors.evaluation.evaluate import evaluate
    from detectors.evaluation.scorecard import load_truth

    if args.dataset is not None:
        return _evaluate_dataset(args, settings)
    if args.data_dir is not None or args.out is not None:
        raise CliError("--data-dir and --out go with --dataset")
    if args.events is None or args.truth is None:
        raise CliError("give EVENTS and TRUTH, or --dataset NAME")
    for path in (args.events, args.truth):
        if not Path(path).exists():
            raise CliError(f"no such file: {path}")
    config = DetectorConfig.load(args.config) if args.config else None
    try:
        truth = load_truth(args.truth)
    except ValueError as exc:  # names the file and line
        raise CliError(f"malformed ground truth at {exc}") from None
    card = evaluate(args.events, truth, args.tenants, config=config, slack_ms=args.slack_ms)
    print(json.dumps(card.to_json(), indent=2, default=str) if args.json else card.table())
    return 0


def _evaluate_dataset(args: argparse.Namespace, settings: Settings) -> int:
    """The real-data scorecard (``detectors.evaluation.real``) on one capture or all of them, with
    the job's allowances for disorder, as ``ssa scan`` runs the engine."""
    from detectors.config import DetectorConfig
    from detectors.engine import Lateness
    from detectors.evaluation.real import (
        DATASETS,
        evaluate_datasets,
        missing_captures,
        table,
        write_scorecard,
    )
    from infra.settings import PROJECT_ROOT

    if args.events is not None or args.tenants is not None or args.slack_ms:
        raise CliError("--dataset takes no EVENTS, TRUTH, --tenants or --slack-ms (each capture has its own)")
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    if names[0] not in DATASETS:
        raise CliError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)} or all")
    data_dir = Path(args.data_dir) if args.data_dir else PROJECT_ROOT.parent / "shared" / "data"
    missing = missing_captures(names, data_dir)
    if missing:
        raise CliError(f"no capture {', '.join(missing)} under {data_dir} (give --data-dir)")
    config = DetectorConfig.load(args.config) if args.config else None
    lateness = Lateness.for_flows(settings.out_of_orderness_ms, settings.flow_export_delay_ms)
    results = evaluate_datasets(names, data_dir, config=config, lateness=lateness, say=_say)
    print(json.dumps(results, indent=2) if args.json else table(results))
    out = Path(args.out) if args.out else PROJECT_ROOT / "results" / "real-scorecard.json"
    command = " ".join(
        ["ssa", "evaluate", "--dataset", args.dataset, *(["--config", args.config] if args.config else [])]
    )
    _say(f"wrote {write_scorecard(out, results, PROJECT_ROOT, command)}")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo, summary

    # The demo's own limits, checked before it starts the stack.
    _sim_config(tenants=args.tenants, duration_s=args.minutes * 60, events_per_s=args.rate)
    result = run_demo(settings, seed=args.seed, tenants=args.tenants, minutes=args.minutes,
                      events_per_s=args.rate, say=_say)  # fmt: skip
    print(summary(result))
    return 0


# --- analysts ---------------------------------------------------------------------------------
def _time_arg(flag: str, text: str) -> int:
    from dashboards.timeparse import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise CliError(
            f"cannot read {flag} {text!r}: give epoch ms, an ISO 8601 time (2025-01-15T10:00Z) or now-7d"
        ) from None


def _cmd_dashboards_build(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import DEFAULT_OUT_DIR, build_all

    out = Path(args.out) if args.out else DEFAULT_OUT_DIR
    paths = build_all(out, settings, es_auth=args.es_auth)
    _say(f"dashboards: wrote {len(paths)} files under {out}")
    return 0


def _cmd_dashboards_publish(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import DEFAULT_OUT_DIR
    from dashboards.publish import publish, read_token

    built = Path(args.built) if args.built else DEFAULT_OUT_DIR
    result = publish(args.url, read_token(args.token_file), built, settings=settings)
    _say(result.summary())
    return 0


def _alert_store(settings: Settings, tenant: str | None) -> AlertStore:
    from dashboards.alerts import AlertStore
    from infra.clients import es_client

    return AlertStore(es_client(settings), settings, tenant_scope=tenant)


def _cmd_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.alerts import AlertFilter, format_alert_line

    flt = AlertFilter(
        tenant=args.tenant,
        status=args.status,
        severity=tuple(args.severity or ()),
        category=args.category,
        since_ms=_time_arg("--since", args.since) if args.since else None,
        limit=args.limit,
    )
    docs = _alert_store(settings, args.tenant).list(flt)
    for doc in docs:
        print(json.dumps(doc, default=str) if args.json else format_alert_line(doc))
    _say(f"alerts: {len(docs)} shown")
    return 0


def _cmd_alerts_show(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.alerts import format_alert

    doc = _alert_store(settings, args.tenant).show(args.alert_id)
    print(json.dumps(doc, indent=2, default=str) if args.json else format_alert(doc))
    return 0


def _cmd_alerts_change(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.alerts import format_alert_line

    store = _alert_store(settings, args.tenant)
    change = store.ack if args.command == "alerts ack" else store.close
    doc = change(args.alert_id, args.by or getpass.getuser(), args.reason or "")
    print(format_alert_line(doc))
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.anonymize import anonymize, load_key
    from dashboards.render import render
    from dashboards.report import build_report
    from infra.clients import es_client
    from ingest.tenants import TenantRegistry

    start, end = _time_arg("--from", args.start), _time_arg("--to", args.end)
    if end <= start:
        raise CliError("--to must be after --from")
    key = load_key(args.key_file) if args.anonymize else None
    registry = TenantRegistry.load(settings.tenants_file) if Path(settings.tenants_file).exists() else None
    es = es_client(settings)
    try:
        report = build_report(es, settings, start, end, tenant=args.tenant, registry=registry)
    finally:
        es.close()
    if key is not None:
        report = anonymize(report, key, k=args.k)
    data = render(report, args.format)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(args.output).write_bytes(data)
        _say(f"report: {args.format} written to {args.output}")
    return 0


# --- dispatch ---------------------------------------------------------------------------------
HANDLERS: Final[dict[str, Handler]] = {
    "up": _cmd_up,
    "down": _cmd_down,
    "status": _cmd_status,
    "simulate": _cmd_simulate,
    "ingest": _cmd_ingest,
    "detect": _cmd_detect,
    "index": _cmd_index,
    "scan": _cmd_scan,
    "evaluate": _cmd_evaluate,
    "demo": _cmd_demo,
    "dashboards build": _cmd_dashboards_build,
    "dashboards publish": _cmd_dashboards_publish,
    "alerts list": _cmd_alerts_list,
    "alerts show": _cmd_alerts_show,
    "alerts ack": _cmd_alerts_change,
    "alerts close": _cmd_alerts_change,
    "report": _cmd_report,
}


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The project's own error types, and a file that is missing or not ours to read."""
    from dashboards.alerts import AlertWorkflowError
    from dashboards.anonymize import AnonymizeError
    from dashboards.publish import PublishError
    from detectors.config import ConfigError
    from infra.jars import JarsError
    from infra.process import ServiceError
    from ingest.producer import DeliveryFailed, KafkaUnavailable
    from ingest.tenants import RegistryError

    return (
        CliError, SettingsError, ServiceError, JarsError, RegistryError, ConfigError, KafkaUnavailable,
        DeliveryFailed, PublishError, AlertWorkflowError, AnonymizeError, FileNotFoundError,
        IsADirectoryError, PermissionError,
    )  # fmt: skip


def _unreachable(exc: BaseException, settings: Settings | None) -> str | None:
    """One line for a service that did not answer, in our words; None if ``exc`` is not that."""
    from elastic_transport import ConnectionError as EsConnectionError
    from kafka.errors import KafkaError

    if isinstance(exc, EsConnectionError):
        return f"Elasticsearch at {settings.es_url if settings else 'its address'} did not answer"
    if isinstance(exc, KafkaError):
        where = settings.kafka_bootstrap if settings else "its address"
        return f"Kafka at {where} did not do what was asked ({type(exc).__name__})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    settings: Settings | None = None
    try:
        settings = load_settings()
        return HANDLERS[args.command](args, settings)
    except KeyboardInterrupt:
        print("ssa: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as exc:
        print(f"ssa {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        line = _unreachable(exc, settings)
        if line is None:
            raise  # a bug: keep the traceback
        print(f"ssa {args.command}: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
