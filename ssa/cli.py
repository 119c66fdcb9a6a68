"""The ``ssa`` command line: a thin face over ingest, detectors, streams, dashboards and infra.

Each subcommand parses its arguments and calls the package that owns the work. Expected failures
(a service down, a bad argument, a malformed file) end in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from infra.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from ingest.producer import Sink

__all__ = ["main"]

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
def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.simulator import SimConfig, parse_scenarios, simulate, write_files

    start_ms = args.start_ms if args.start_ms is not None else int(time.time() * 1000 - args.duration * 1000)
    config = SimConfig(
        seed=args.seed,
        tenants=args.tenants,
        hosts=args.hosts,
        vms_per_tenant=args.vms_per_tenant,
        duration_s=args.duration,
        start_ms=start_ms,
        events_per_s=args.rate,
        scenarios=parse_scenarios(args.scenarios) if args.scenarios else None,
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


def _cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import FORMAT_NAMES, run_ingest
    from ingest.tenants import TenantRegistry

    if args.format not in FORMAT_NAMES:
        raise CliError(f"unknown --format {args.format!r}; choose one of {', '.join(FORMAT_NAMES)}")
    if args.tz is not None:
        _check_zone(args.tz)
    registry = TenantRegistry.load(args.tenants) if args.tenants else None
    if registry is None and Path(settings.tenants_file).exists():
        registry = TenantRegistry.load(settings.tenants_file)
    sink = _ingest_sink(args, settings)
    source = sys.stdin.buffer if args.path == "-" else Path(args.path)
    if isinstance(source, Path) and not source.exists():
        raise CliError(f"no such file: {source}")
    last = [0.0]

    def progress(p: object) -> None:
        now = time.monotonic()
        if now - last[0] >= 2:
            last[0] = now
            _say(f"  {p.parsed:,} events, {p.dlq:,} to DLQ, {p.events_per_s:,.0f} events/s")  # type: ignore[attr-defined]

    try:
        summary = run_ingest(source, args.format, tenant=args.tenant, registry=registry, sink=sink,
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
    from detectors.scan import scan

    if args.events != "-" and not Path(args.events).exists():
        raise CliError(f"no such file: {args.events}")
    result = scan(args.events, args.tenants, args.output, config_path=args.config)
    _say(
        f"scan: {result.events:,} events, {result.alerts:,} alerts, {result.rejected_lines:,} rejected lines, "
        f"{result.late_events:,} late, {result.detector_failures} detector failures"
    )
    return 1 if result.detector_failures else 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.config import DetectorConfig
    from detectors.evaluation.evaluate import evaluate

    for path in (args.events, args.truth):
        if not Path(path).exists():
            raise CliError(f"no such file: {path}")
    config = DetectorConfig.load(args.config) if args.config else None
    card = evaluate(args.events, args.truth, args.tenants, config=config, slack_ms=args.slack_ms)
    print(json.dumps(card.to_json(), indent=2, default=str) if args.json else card.table())
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo, summary

    result = run_demo(settings, seed=args.seed, tenants=args.tenants, minutes=args.minutes,
                      events_per_s=args.rate, say=_say)  # fmt: skip
    print(summary(result))
    return 0


# --- analysts ---------------------------------------------------------------------------------
def _cmd_dashboards(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "build":
        from dashboards.build import DEFAULT_OUT_DIR, build_all

        paths = build_all(Path(args.out) if args.out else DEFAULT_OUT_DIR, settings, es_auth=args.es_auth)
        _say(f"dashboards: wrote {len(paths)} files under {Path(args.out) if args.out else DEFAULT_OUT_DIR}")
        return 0
    from dashboards.build import DEFAULT_OUT_DIR
    from dashboards.publish import publish, read_token

    if not args.url or not args.token_file:
        raise CliError("publish needs --url URL and --token-file FILE")
    result = publish(
        args.url, read_token(args.token_file), Path(args.built or DEFAULT_OUT_DIR), settings=settings
    )
    _say(result.summary())
    return 0


def _alert_store(settings: Settings, tenant: str | None) -> object:
    from dashboards.alerts import AlertStore
    from infra.clients import es_client

    return AlertStore(es_client(settings), settings, tenant_scope=tenant)


def _cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.alerts import AlertFilter, format_alert, format_alert_line
    from dashboards.timeparse import parse_time

    store = _alert_store(settings, args.tenant)
    if args.action == "list":
        flt = AlertFilter(
            tenant=args.tenant,
            status=args.status,
            severity=tuple(args.severity or ()),
            category=args.category,
            since_ms=parse_time(args.since) if args.since else None,
            limit=args.limit,
        )
        docs = store.list(flt)  # type: ignore[attr-defined]
        for doc in docs:
            print(json.dumps(doc, default=str) if args.json else format_alert_line(doc))
        _say(f"alerts: {len(docs)} shown")
        return 0
    if not args.alert_id:
        raise CliError(f"`ssa alerts {args.action}` needs an alert id")
    if args.action == "show":
        doc = store.show(args.alert_id)  # type: ignore[attr-defined]
        print(json.dumps(doc, indent=2, default=str) if args.json else format_alert(doc))
        return 0
    by = args.by or getpass.getuser()
    change = store.ack if args.action == "ack" else store.close  # type: ignore[attr-defined]
    doc = change(args.alert_id, by, args.reason or "")
    print(format_alert_line(doc))
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.anonymize import anonymize, load_key
    from dashboards.render import render
    from dashboards.report import build_report
    from dashboards.timeparse import parse_time
    from infra.clients import es_client
    from ingest.tenants import TenantRegistry

    start, end = parse_time(args.start), parse_time(args.end)
    if end <= start:
        raise CliError("--to must be after --from")
    registry = TenantRegistry.load(settings.tenants_file) if Path(settings.tenants_file).exists() else None
    es = es_client(settings)
    try:
        report = build_report(es, settings, start, end, tenant=args.tenant, registry=registry)
    finally:
        es.close()
    if args.anonymize:
        report = anonymize(report, load_key(args.key_file), k=args.k)
    data = render(report, args.format)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
    else:
        Path(args.output).write_bytes(data)
        _say(f"report: {args.format} written to {args.output}")
    return 0


# --- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssa", description="Cloud security situational awareness pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    cmd("up", _cmd_up, "start the local Kafka and Elasticsearch, create topics and templates")
    cmd("down", _cmd_down, "stop what `ssa up` started")
    cmd("status", _cmd_status, "show the local services")

    p = cmd("simulate", _cmd_simulate, "seeded multi-tenant telemetry with labelled attacks")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tenants", type=int, default=8)
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--vms-per-tenant", type=int, default=4)
    p.add_argument("--duration", type=float, default=600.0, help="simulated seconds")
    p.add_argument("--rate", type=float, default=100.0, help="background events per simulated second")
    p.add_argument("--start-ms", type=int, default=None, help="first event time (default: now - duration)")
    p.add_argument("--scenarios", default=None, help='e.g. "vm_escape=3,dos" (default: all, twice)')
    p.add_argument(
        "--output", default="sim-out", help="folder for events.jsonl, tenants.yaml, ground_truth.jsonl"
    )
    p.add_argument("--kafka", action="store_true", help="produce to Kafka instead of files")
    p.add_argument(
        "--kafka-rate",
        type=float,
        default=None,
        help="events/s when producing (default: as fast as possible)",
    )

    p = cmd("ingest", _cmd_ingest, "parse telemetry into canonical events, to Kafka or a file")
    p.add_argument("path", help="input file, or - for stdin")
    p.add_argument("--format", required=True)
    p.add_argument("--tenant", default=None, help="tenant that owns this source")
    p.add_argument("--tenants", default=None, help="tenant registry (default: settings tenants_file)")
    p.add_argument("--output", default=None, help="write JSON lines here (or -) instead of Kafka")
    p.add_argument("--year", type=int, default=None, help="year for syslog timestamps that lack one")
    p.add_argument(
        "--tz",
        default=None,
        help="IANA time zone of local times without an offset: RFC 3164 syslog, CICFlowMeter (default: UTC)",
    )
    p.add_argument(
        "--cic-features",
        action="store_true",
        help="cicflowmeter: keep its ~72 statistical columns in extra (default: Flow ID and Label only)",
    )

    p = cmd("detect", _cmd_detect, "run the PyFlink detection job and the Elasticsearch indexer")
    p.add_argument("--bounded", action="store_true", help="process what Kafka holds now, then stop")
    p.add_argument("--no-restore", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--no-indexer", action="store_true", help="do not ship alerts to Elasticsearch")

    cmd("index", _cmd_index, "ship alerts and metrics from Kafka to Elasticsearch (without the job)")

    p = cmd("scan", _cmd_scan, "run every detector over a file of canonical events, offline")
    p.add_argument("events", help="JSON lines of canonical events (.gz or - for stdin)")
    p.add_argument("--tenants", default=None)
    p.add_argument("--config", default=None, help="detector configuration YAML")
    p.add_argument("--output", default="-")

    p = cmd("evaluate", _cmd_evaluate, "score the detectors against labelled ground truth")
    p.add_argument("events")
    p.add_argument("truth", help="ground_truth.jsonl")
    p.add_argument("--tenants", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--slack-ms", type=int, default=0)
    p.add_argument("--json", action="store_true")

    p = cmd("demo", _cmd_demo, "everything end to end on the embedded default")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--tenants", type=int, default=8)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--rate", type=float, default=1000.0)

    p = cmd("dashboards", _cmd_dashboards, "Grafana dashboards as code: build or publish")
    p.add_argument("action", choices=["build", "publish"])
    p.add_argument("--out", default=None)
    p.add_argument("--es-auth", choices=["basic", "apikey", "none"], default="basic")
    p.add_argument("--url", default=None)
    p.add_argument("--token-file", default=None)
    p.add_argument("--built", default=None)

    p = cmd("alerts", _cmd_alerts, "analyst workflow: list, show, ack, close")
    p.add_argument("action", choices=["list", "show", "ack", "close"])
    p.add_argument("alert_id", nargs="?")
    p.add_argument("--tenant", default=None, help="tenant scope: never shows another tenant's alerts")
    p.add_argument("--status", choices=["open", "acknowledged", "closed"], default=None)
    p.add_argument("--severity", action="append", choices=["low", "medium", "high", "critical"])
    p.add_argument("--category", default=None)
    p.add_argument("--since", default=None, help="e.g. now-24h or 2026-11-01")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--by", default=None, help="analyst name (default: login name)")
    p.add_argument("--reason", default=None)
    p.add_argument("--json", action="store_true")

    p = cmd("report", _cmd_report, "incident statistics for a period")
    p.add_argument("--from", dest="start", required=True)
    p.add_argument("--to", dest="end", required=True)
    p.add_argument("--tenant", default=None)
    p.add_argument("--format", choices=["csv", "json", "md", "html", "pdf"], default="md")
    p.add_argument("--output", default=None)
    p.add_argument("--anonymize", action="store_true")
    p.add_argument("--k", type=int, default=5, help="suppress cells describing fewer than k tenants")
    p.add_argument("--key-file", default=None, help="pseudonym key (or SSA_REPORT_KEY_FILE)")
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from dashboards.alerts import AlertWorkflowError
    from dashboards.publish import PublishError
    from detectors.config import ConfigError
    from infra.jars import JarsError
    from infra.process import ServiceError
    from ingest.producer import DeliveryFailed, KafkaUnavailable
    from ingest.tenants import RegistryError

    return (
        CliError, SettingsError, ServiceError, JarsError, FileNotFoundError, PermissionError, RegistryError,
        ConfigError, KafkaUnavailable, DeliveryFailed, PublishError, AlertWorkflowError, ValueError,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    expected = _expected_errors()
    try:
        settings = load_settings()
        handler: Handler = args.handler
        return handler(args, settings)
    except KeyboardInterrupt:
        print("ssa: interrupted", file=sys.stderr)
        return 130
    except expected as exc:
        print(f"ssa {args.command}: {exc}", file=sys.stderr)
        return 1
    except _transport_errors() as exc:
        print(f"ssa {args.command}: cannot reach a service: {exc}", file=sys.stderr)
        return 1


def _transport_errors() -> tuple[type[BaseException], ...]:
    from elastic_transport import ConnectionError as EsConnectionError
    from kafka.errors import KafkaError

    return (EsConnectionError, KafkaError)


if __name__ == "__main__":
    raise SystemExit(main())
