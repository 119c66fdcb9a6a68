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
from typing import IO, TYPE_CHECKING, Any, Final

from infra.settings import Settings, SettingsError, load_settings
from ssa.parser import parse

if TYPE_CHECKING:
    from analyst.alerts import AlertStore
    from analyst.incidents import IncidentStore
    from detectors.config import DetectorConfig
    from detectors.engine import Lateness
    from detectors.evaluation.captures import Capture
    from ingest.producer import Sink
    from ingest.simulator import SimConfig

__all__ = ["HANDLERS", "CliError", "main", "resolve_format"]

Handler = Callable[[argparse.Namespace, Settings], int]


class CliError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- local services ---------------------------------------------------------------------------
def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from infra.services import up

    if args.secure:
        settings = settings.with_overrides(kafka_local_security="sasl_ssl")
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


def _cmd_tenants_provision(args: argparse.Namespace, settings: Settings) -> int:
    from infra.secure import provision
    from ingest.tenants import TenantRegistry

    path = args.tenants or settings.tenants_file
    if not Path(path).exists():
        raise CliError(f"no tenant registry at {path} (--tenants FILE or the tenants_file setting)")
    registry = TenantRegistry.load(path)
    if not args.no_kafka:
        from ingest.parsers import FORMAT_NAMES

        provision(settings, list(registry.tenants), say=print, raw_formats=FORMAT_NAMES)
    from dashboards.grafana_orgs import GrafanaOrgError, provision_grafana
    from infra.es_security import provision_es

    keys = provision_es(settings, list(registry.tenants), say=print)
    try:
        provision_grafana(settings, list(registry.tenants), keys, say=print)
    except GrafanaOrgError as exc:
        raise CliError(str(exc)) from None
    return 0


def _cmd_tenants_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from infra.secure import revoke

    if not args.no_kafka:
        revoke(settings, args.tenant, delete_topics=args.delete_topics, say=print)
    from dashboards.grafana_orgs import GrafanaOrgError, revoke_grafana
    from infra.es_security import revoke_es

    revoke_es(settings, args.tenant, say=print)
    try:
        revoke_grafana(settings, args.tenant, say=print)
    except GrafanaOrgError as exc:
        raise CliError(str(exc)) from None
    return 0


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
        f"simulate: {written.event_count:,} events -> {written.events}, {written.truth_count} scenarios and "
        f"{written.context_count} background context records -> {written.ground_truth}, registry -> {written.tenants}"
    )
    return 0


# The names users type for a format (the README calls the sshd log by its daemon's name).


def resolve_format(name: str) -> str:
    """The ``ingest.pipeline.FORMATS`` name for ``name`` (a name or alias, any case)."""
    from ingest.parsers import FORMAT_ALIASES, FORMATS

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

    if args.path.startswith(("s3://", "file://")):
        return _ingest_bucket(args, settings)
    _refuse_bucket_flags(args)
    fmt = resolve_format(args.format)
    if args.tz is not None:
        _check_zone(args.tz)
    if args.vpc_format is not None and fmt != "vpcflow":
        raise CliError(f"--vpc-format gives the fields of VPC flow log records: --format vpcflow, not {fmt}")
    source = _ingest_source(args.path, fmt)
    registry = TenantRegistry.load(args.tenants) if args.tenants else None
    if registry is None and Path(settings.tenants_file).exists():
        registry = TenantRegistry.load(settings.tenants_file)
    if args.follow:
        return _follow(args, settings, fmt, registry)
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
                             timezone=args.tz, vpc_fields=args.vpc_format)  # fmt: skip
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
    if summary.undated:
        _say(f"  {summary.undated_note}")
    if sink.counters.stale:  # Kafka records carry the event time (ingest.producer.record_timestamp)
        _warn_time_retention(settings, sink)
    return 0


def _warn_time_retention(settings: Settings, sink: Sink) -> None:
    """Old events on a topic that deletes by time are gone before ``ssa detect`` reads them:
    say so when the broker's topics do (those ``ssa up`` creates keep by size)."""
    from infra.bootstrap import time_limited_topics
    from ingest.producer import STALE_AFTER_MS

    written = sorted(t for t, n in sink.counters.by_topic.items() if n)
    limited = time_limited_topics(settings, written) if written else None
    if limited == {}:
        return
    days = STALE_AFTER_MS // 86_400_000
    where = (
        ", ".join(f"{t} ({ms / 86_400_000:g} days)" for t, ms in sorted(limited.items()))
        if limited else "its topics, if they delete by time"
    )  # fmt: skip
    _say(
        f"  warning: {sink.counters.stale:,} events are more than {days} days old, and Kafka deletes a "
        f"segment once its newest record time is older than retention.ms: {where}. For a replay, set "
        "retention.ms=-1 on them first (kafka-configs --alter --add-config retention.ms=-1), or "
        "`ssa detect` may find them gone."
    )


def _follow(args: argparse.Namespace, settings: Settings, fmt: str, registry: object) -> int:
    from ingest.follow import follow
    from ingest.parsers import get_format

    if args.path == "-" or args.path.startswith("udp://") or get_format(fmt).binary:
        raise CliError(f"--follow reads a growing file of a line format, not {args.path} as {fmt}")
    sink = _ingest_sink(args, settings)
    try:
        summary = follow(args.path, fmt, sink, tenant=args.tenant, registry=registry,  # type: ignore[arg-type]
                         state_path=args.state, year=args.year, timezone=args.tz,
                         vpc_fields=args.vpc_format, say=_say)  # fmt: skip
    finally:
        sink.close()
    _say(f"ingest --follow: {summary.line()}")
    return 0


_BUCKET_FLAGS: Final = ("interval", "lookback", "max_object_bytes", "endpoint_url")


def _refuse_bucket_flags(args: argparse.Namespace) -> None:
    if args.format is None:
        raise CliError("--format is required but for a bucket (s3://, file://): e.g. --format syslog")
    given = [f"--{name.replace('_', '-')}" for name in _BUCKET_FLAGS if getattr(args, name) is not None]
    if given:
        raise CliError(
            f"{', '.join(given)} read(s) a bucket (s3://BUCKET/PREFIX or file:///FOLDER), not {args.path}"
        )


def _ingest_bucket(args: argparse.Namespace, settings: Settings) -> int:
    """``ssa ingest s3://BUCKET/PREFIX`` (or ``file:///FOLDER``): VPC flow logs and CloudTrail of a
    log-archive bucket to the telemetry topics (or ``--output``), once or polling with --follow."""
    import signal
    import threading

    from ingest.objectstore import (
        DEFAULT_LOOKBACK_S,
        DEFAULT_MAX_OBJECT_BYTES,
        DEFAULT_POLL_S,
        ObjectStoreError,
        default_state_path,
        read_bucket,
    )  # fmt: skip
    from ingest.tenants import RegistryWatcher

    if args.year is not None or args.tz is not None or args.cic_features:
        raise CliError(
            "--year, --tz and --cic-features do not apply to a bucket's VPC flow logs and CloudTrail"
        )
    if args.vpc_format is not None:
        raise CliError(
            "--vpc-format is for records without a header line: a bucket's flow log files begin with one"
        )
    if args.max_object_bytes is not None and args.max_object_bytes <= 0:
        raise CliError(f"--max-object-bytes must be more than 0, got {args.max_object_bytes}")
    fmt = resolve_format(args.format) if args.format else None
    if fmt not in (None, "vpcflow", "cloudaudit"):
        raise CliError(
            f"a bucket holds VPC flow logs and CloudTrail: --format vpcflow or cloudtrail, not {args.format}"
        )
    tenants = args.tenants or settings.tenants_file
    registry = RegistryWatcher(tenants) if Path(tenants).exists() else None
    if args.tenants and registry is None:
        raise CliError(f"no such file: {args.tenants}")
    state = args.state or default_state_path(Path(settings.data_dir) / "buckets", args.path)
    stop = threading.Event()
    if args.follow:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # save the state, flush, exit
    sink = _ingest_sink(args, settings)
    try:
        summary = read_bucket(
            args.path, sink, state_path=state, follow=args.follow, poll_s=args.interval or DEFAULT_POLL_S,
            stop=stop, fmt=fmt, tenant=args.tenant, registry=registry,
            lookback_s=args.lookback or DEFAULT_LOOKBACK_S,
            max_object_bytes=args.max_object_bytes or DEFAULT_MAX_OBJECT_BYTES,
            endpoint_url=args.endpoint_url, say=_say,
        )  # fmt: skip
    except (ObjectStoreError, ValueError) as exc:
        raise CliError(str(exc)) from None
    finally:
        sink.close()
    _say(f"ingest: {summary.line()}")
    for reason, n in sorted(summary.ingest.dlq_reasons.items(), key=lambda kv: -kv[1])[:5]:
        _say(f"  DLQ {n:,}: {reason}")
    for reason, n in sorted(summary.objects_skipped.items(), key=lambda kv: -kv[1])[:5]:
        _say(f"  objects skipped {n:,}: {reason}")
    return 0


def _cmd_parse(args: argparse.Namespace, settings: Settings) -> int:
    from infra.bootstrap import ensure_topics
    from ingest.tenants import RegistryWatcher
    from streams.access import check_parse_access
    from streams.parse_stage import raw_topics, run_parse_stage

    if args.tz is not None:
        _check_zone(args.tz)
    tenants = args.tenants or settings.tenants_file
    registry = RegistryWatcher(tenants) if Path(tenants).exists() else None
    if args.tenants and registry is None:
        raise CliError(f"no such file: {args.tenants}")
    # As its own principal: a missing ACL is one line now, not an error inside the stage's clients.
    check_parse_access(settings.with_overrides(tenants_file=str(tenants)), group_id=args.group,
                       transactional_id=args.transactional_id)  # fmt: skip
    wanted = [settings.topic_dlq, settings.topic_metrics]
    if not settings.tenant_topics:  # secure mode: `ssa tenants provision` made the tenants' topics
        wanted = [*raw_topics(settings), *settings.telemetry_topics.values(), *wanted]
    created = ensure_topics(settings, wanted)
    if created:
        _say(f"parse: created topics {', '.join(created)}")
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # ssa down, kill: commit, last metrics, exit
    stats = run_parse_stage(settings, stop, _say, registry=registry, timezone=args.tz,
                            vpc_fields=args.vpc_format, group_id=args.group,
                            transactional_id=args.transactional_id)  # fmt: skip
    total = sum(stats.records.values())
    _say(
        f"parse: {total:,} raw records read, {sum(stats.rejected.values()):,} refused, {stats.commits} commits"
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


# --- continuous sources -----------------------------------------------------------------------
def _host_port(flag: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise CliError(f"{flag} {text!r}: give HOST:PORT, e.g. 0.0.0.0:514 or [::]:6514")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a receiver listens where told


def _cmd_receive_syslog(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import logging
    import resource
    import ssl

    from ingest.parsers import get_format
    from ingest.raw import RawRejected, raw_topic
    from ingest.syslog_receiver import (
        JsonLinesRawSink,
        KafkaRawSink,
        Limits,
        RawSink,
        RawTopicMissing,
        ReceiverStats,
        SyslogCodec,
        SyslogReceiver,
        server_ssl_context,
    )

    fmt = resolve_format(args.format)
    if get_format(fmt).binary:
        raise CliError(
            f"--format {fmt} is binary and syslog carries text lines: send NetFlow/IPFIX to "
            "`ssa ingest udp://HOST:PORT --format netflow`"
        )
    udp = [_host_port("--udp", a) for a in args.udp]
    tcp = [_host_port("--tcp", a) for a in args.tcp]
    tls = [_host_port("--tls", a) for a in args.tls]
    if not (udp or tcp or tls):
        raise CliError("no listener: give --udp, --tcp or --tls HOST:PORT (one or more)")
    if tls and not (args.tls_cert and args.tls_key):
        raise CliError("--tls needs --tls-cert and --tls-key (PEM files)")
    if (args.tls_cert or args.tls_key or args.tls_client_ca) and not tls:
        raise CliError("--tls-cert, --tls-key and --tls-client-ca are for a --tls HOST:PORT listener")
    if args.max_message < 480:  # RFC 5424 6.1: receivers MUST accept messages of 480 octets
        raise CliError(f"--max-message {args.max_message}: at least 480 bytes (RFC 5424 6.1)")
    if args.max_connections < 1:
        raise CliError("--max-connections must be at least 1")
    limits = Limits(max_message=args.max_message, max_connections=args.max_connections,
                    idle_timeout_s=args.idle_timeout, frame_timeout_s=args.frame_timeout)  # fmt: skip
    context = None
    if tls:
        try:
            context = server_ssl_context(args.tls_cert, args.tls_key, args.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"TLS certificate, key or CA not usable: {exc}") from None
    prefix = settings.topic_raw_prefix
    topic = raw_topic(prefix, fmt)
    try:
        SyslogCodec(fmt, prefix, args.tenant)
    except RawRejected as exc:
        raise CliError(f"--tenant: {exc}") from None
    sink: RawSink
    if args.output is not None:
        sink, where = JsonLinesRawSink(args.output), args.output
    else:
        from streams.kafka_target import kafka_target

        target = kafka_target(settings)
        try:
            sink = KafkaRawSink(target, [topic])
        except RawTopicMissing as exc:
            from infra.bootstrap import ensure_topics

            try:
                ensure_topics(settings, exc.topics)
            except Exception as err:
                raise CliError(f"{exc}, and creating them failed ({type(err).__name__}: {err})") from None
            sink = KafkaRawSink(target, [topic])
        where = f"topic {topic} ({target.describe})"
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < limits.max_connections + 64:
        _say(f"  warning: the open-file limit ({soft}) is below --max-connections "
             f"({limits.max_connections}) + 64: raise it (ulimit -n) or lower --max-connections")  # fmt: skip
    log = logging.getLogger("ingest.syslog")
    if not log.handlers or all(isinstance(h, logging.NullHandler) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("receive syslog: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.WARNING)

    async def run() -> ReceiverStats:
        receiver = SyslogReceiver(sink, fmt=fmt, topic_prefix=prefix, tenant=args.tenant, limits=limits,
                                  ssl_context=context)  # fmt: skip
        try:
            await receiver.start(udp=udp, tcp=tcp, tls=tls)
        except OSError as exc:
            raise CliError(f"cannot listen: {exc}") from None
        listening = ", ".join(f"{scheme}://{host}:{port}" for scheme, host, port in receiver.bound)
        _say(f"receive syslog: {fmt} messages on {listening} -> {where}; SIGTERM or ^C stops")
        return await receiver.serve()

    stats = asyncio.run(run())
    _say(
        f"receive syslog: {stats.records:,} records, {stats.dlq:,} to DLQ, {stats.skipped:,} blank, "
        f"{stats.udp_dropped:,} UDP datagrams dropped (queue full), {stats.connections:,} connections "
        f"({stats.refused:,} refused)"
    )
    for reason, n in stats.dlq_reasons.most_common(5):
        _say(f"  DLQ {n:,}: {reason}")
    for reason, n in stats.closed.most_common(5):
        _say(f"  closed {n:,}: {reason}")
    return 0


# --- detection --------------------------------------------------------------------------------
def _cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
    from ssa.parser import OneLineParser
    from streams.__main__ import main as detect_main

    if args.no_awareness and not (args.bounded or args.no_restore):
        # Flink refuses a checkpoint holding state of operators the job no longer has.
        OneLineParser(prog="ssa detect").error(
            "--no-awareness needs --bounded or --no-restore: a checkpoint with the awareness stage's "
            "state cannot be restored into a job without it"
        )
    argv = (["--bounded"] if args.bounded else []) + (["--no-restore"] if args.no_restore else [])
    argv += ["--no-indexer"] if args.no_indexer else []
    argv += ["--no-awareness"] if args.no_awareness else []
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
        + (
            f", {result.interface_copies:,} flow records seen again at another interface (counted once)"
            if result.interface_copies
            else ""
        )
    )
    return 1 if result.detector_failures else 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.config import DetectorConfig
    from detectors.evaluation.evaluate import evaluate
    from detectors.evaluation.scorecard import load_truth

    if args.capture:
        return _evaluate_capture(args, settings)
    if capture_only := _capture_flags(args):
        raise CliError(f"{', '.join(capture_only)} go with --capture")
    if args.dataset is not None:
        return _evaluate_dataset(args, settings)
    if args.incidents:
        raise CliError("--incidents goes with --dataset or --capture (a labelled capture to replay)")
    if args.data_dir is not None or args.out is not None:
        raise CliError("--data-dir and --out go with --dataset or --capture")
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
    if args.incidents:
        results = {name: _scored_with_incidents(name, data_dir, config, lateness) for name in names}
    else:
        results = evaluate_datasets(names, data_dir, config=config, lateness=lateness, say=_say)
    _print_scorecard(results, args.json)
    out = Path(args.out) if args.out else PROJECT_ROOT / "results" / "real-scorecard.json"
    command = " ".join(
        ["ssa", "evaluate", "--dataset", args.dataset, *(["--config", args.config] if args.config else []),
         *(["--incidents"] if args.incidents else [])]
    )  # fmt: skip
    _say(f"wrote {write_scorecard(out, results, PROJECT_ROOT, command)}")
    return 0


def _scored_with_incidents(
    capture: str | Capture, data_dir: str | Path, config: DetectorConfig | None, lateness: Lateness
) -> dict[str, Any]:
    """A capture's scorecard with its incidents, levels and warnings (``streams.awareness_real``)
    under ``incidents``: one parse, the events kept for the replay of the job, whose watermarks
    allow what the engine's ``lateness`` does."""
    from detectors.config import DetectorConfig
    from detectors.evaluation.real import run_capture, score_run
    from streams.awareness_real import incident_figures, job_config

    run = run_capture(capture, data_dir, config=config, lateness=lateness, say=_say, keep_events=True)
    result = score_run(run, config=config, say=_say)
    job = job_config(lateness.default_ms, lateness.allowance("flow"))
    result["incidents"] = incident_figures(run, config or DetectorConfig.default(), job)
    return result


def _print_scorecard(results: dict[str, dict[str, Any]], as_json: bool) -> None:
    from detectors.evaluation.real import table
    from streams.awareness_real import summary_lines

    if as_json:
        print(json.dumps(results, indent=2))
        return
    print(table(results))
    for name, result in results.items():
        if "incidents" in result:
            print("\n".join(["", "incidents:", *summary_lines(name, result["incidents"])]))


def _capture_flags(args: argparse.Namespace) -> list[str]:
    given = {"--format": args.format, "--label-column": args.label_column, "--benign": args.benign,
             "--class": args.label_class, "--cidr": args.cidr, "--tz": args.tz, "--name": args.name}  # fmt: skip
    return [flag for flag, value in given.items() if value]


def _evaluate_capture(args: argparse.Namespace, settings: Settings) -> int:
    """A scorecard of the user's own labelled capture (``detectors.evaluation.labelled``), run as
    ``--dataset`` runs the known ones."""
    import ipaddress

    from detectors.config import DetectorConfig
    from detectors.engine import Lateness
    from detectors.evaluation.labelled import (
        DEFAULT_BENIGN,
        DEFAULT_CIDRS,
        LabelClasses,
        coarse_column,
        header_of,
        label_column,
        labelled_capture,
    )
    from detectors.evaluation.real import evaluate_capture, write_scorecard
    from infra.settings import PROJECT_ROOT
    from ingest.parsers.cicflow import missing_count_columns, missing_flow_columns
    from ingest.parsers.nprobe_csv import TIME_COLUMNS, has_flow_times

    if args.events is not None or args.tenants is not None or args.slack_ms or args.dataset or args.data_dir:
        raise CliError("--capture takes no EVENTS, TRUTH, --tenants, --slack-ms, --dataset or --data-dir")
    if not args.format:
        raise CliError("--capture needs --format (the ssa ingest format of its files, e.g. cicflowmeter)")
    fmt = resolve_format(args.format)
    for path in args.capture:
        if Path(path).is_dir():
            raise CliError(f"{path} is a directory: give its files (e.g. {Path(path) / '*.csv'})")
        if not Path(path).is_file():
            raise CliError(f"no such file: {path}")
    files = [Path(path) for path in args.capture]
    if args.tz is not None:
        _check_zone(args.tz)
    for cidr in args.cidr or ():
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise CliError(f"--cidr {cidr!r} is not a network (e.g. 192.168.10.0/24)") from None
    mapping: dict[str, str] = {}
    for item in args.label_class or ():
        label, sep, cls = item.rpartition("=")
        if not sep:  # an empty LABEL is allowed: the rows with no label
            raise CliError(f"--class {item!r}: give LABEL=CLASS, e.g. 'DoS Hulk=flood'")
        mapping[label.strip()] = cls.strip()
    table_kind = "zeek" if fmt == "zeek" else "csv"
    try:
        classes = LabelClasses(args.benign or DEFAULT_BENIGN, mapping)
    except ValueError as exc:  # a --class naming no class
        raise CliError(str(exc)) from None
    header = header_of(files[0], table_kind)
    try:
        column = label_column(header, args.label_column)
    except ValueError as exc:
        raise CliError(f"{files[0]}: {exc}") from None
    if fmt == "cicflowmeter" and (lacking := missing_flow_columns(header)):
        # Every row would go to the DLQ, and the scorecard would score no flow.
        raise CliError(
            f"{files[0]}: no {' or '.join(lacking)} column, as in CIC-IDS2017's MachineLearningCVE CSVs and "
            "most CSE-CIC-IDS2018 day files: the detectors need each flow's addresses and start time; "
            "use a layout with them (CIC-IDS2017's TrafficLabelling CSVs)"
        )
    if fmt == "cicflowmeter" and (lacking := missing_count_columns(header)):
        raise CliError(
            f"{files[0]}: no {' or '.join(lacking)} column under any of its names (CIC-IDS2017's, "
            "CSE-CIC-IDS2018's, CICFlowMeter 4's, the Python cicflowmeter's): every flow's counts would be 0"
        )
    if fmt == "nprobe-csv" and not has_flow_times(header):
        # Without times every record is stamped as it is read: the whole capture in a few seconds.
        raise CliError(
            f"{files[0]}: no flow times (none of {', '.join(TIME_COLUMNS)}), as in the NF-*-v2 layouts; "
            "the detectors count over time windows, so this would score the whole capture as one burst: "
            "use a layout with flow times (e.g. FLOW_START_MILLISECONDS)"
        )
    capture = labelled_capture(files, fmt, table_kind, column, classes, coarse=coarse_column(header, column),
                               cidrs=args.cidr or DEFAULT_CIDRS, timezone=args.tz, name=args.name)  # fmt: skip
    config = DetectorConfig.load(args.config) if args.config else None
    lateness = Lateness.for_flows(settings.out_of_orderness_ms, settings.flow_export_delay_ms)
    if args.incidents:
        results = {capture.name: _scored_with_incidents(capture, ".", config, lateness)}
    else:
        results = {capture.name: evaluate_capture(capture, ".", config=config, lateness=lateness, say=_say)}
    _print_scorecard(results, args.json)
    if args.out:
        command = " ".join(["ssa", "evaluate", "--capture", *args.capture, "--format", fmt,
                            *(["--incidents"] if args.incidents else [])])  # fmt: skip
        _say(f"wrote {write_scorecard(Path(args.out), results, PROJECT_ROOT, command)}")
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
    from analyst.timeparse import parse_time

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


def _analyst_scope(settings: Settings, tenant: str | None) -> str | None:
    """The tenant an analyst's queries are scoped to: the tenant of their API key file
    (es_api_key_file, written by ``ssa tenants provision``), else ``--tenant`` (the provider's SOC)."""
    from infra.clients import api_key_tenant

    own = api_key_tenant(settings)
    if own is not None and tenant not in (None, own):
        raise CliError(
            f"--tenant {tenant}: your Elasticsearch API key is tenant {own}'s; you may read only {own}"
        )
    return own or tenant


def _alert_store(settings: Settings, tenant: str | None) -> AlertStore:
    from analyst.alerts import AlertStore
    from infra.clients import es_client

    return AlertStore(es_client(settings), settings, tenant_scope=_analyst_scope(settings, tenant))


def _cmd_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    from analyst.alerts import AlertFilter, format_alert_line

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
    from analyst.alerts import format_alert

    doc = _alert_store(settings, args.tenant).show(args.alert_id)
    print(json.dumps(doc, indent=2, default=str) if args.json else format_alert(doc))
    return 0


def _cmd_alerts_change(args: argparse.Namespace, settings: Settings) -> int:
    from analyst.alerts import format_alert_line

    store = _alert_store(settings, args.tenant)
    change = store.ack if args.command == "alerts ack" else store.close
    doc = change(args.alert_id, args.by or getpass.getuser(), args.reason or "")
    print(format_alert_line(doc))
    return 0


def _incident_store(settings: Settings, tenant: str | None) -> IncidentStore:
    from analyst.incidents import IncidentStore
    from infra.clients import es_client

    return IncidentStore(es_client(settings), settings, tenant_scope=_analyst_scope(settings, tenant))


def _cmd_incidents_list(args: argparse.Namespace, settings: Settings) -> int:
    from analyst.incidents import IncidentFilter, format_incident_line

    flt = IncidentFilter(
        tenant=args.tenant,
        status=args.status,
        workflow=args.workflow,
        min_severity=args.min_severity,
        since_ms=_time_arg("--since", args.since) if args.since else None,
        limit=args.limit,
    )
    docs = _incident_store(settings, args.tenant).list(flt)
    for doc in docs:
        print(json.dumps(doc, default=str) if args.json else format_incident_line(doc))
    _say(f"incidents: {len(docs)} shown")
    return 0


def _cmd_incidents_show(args: argparse.Namespace, settings: Settings) -> int:
    from analyst.incidents import format_incident

    store = _incident_store(settings, args.tenant)
    doc = store.show(args.incident_id)
    alerts = store.alerts_of(doc)
    if args.json:
        print(json.dumps({**doc, "alerts": alerts}, indent=2, default=str))
    else:
        print(format_incident(doc, alerts))
    return 0


def _cmd_incidents_change(args: argparse.Namespace, settings: Settings) -> int:
    from analyst.incidents import format_incident_line

    store = _incident_store(settings, args.tenant)
    workflow = "acknowledged" if args.command == "incidents ack" else "closed"
    doc = store.transition(args.incident_id, workflow, args.by or getpass.getuser(), args.reason or "")
    print(format_incident_line(doc))
    return 0


def _cmd_incidents_snooze(args: argparse.Namespace, settings: Settings) -> int:
    from analyst.timeparse import parse_duration

    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        raise CliError(f"--for: {exc}") from None
    store = _incident_store(settings, args.tenant)
    _doc, snooze = store.snooze(
        args.incident_id, args.detector, args.entity, duration, args.by or getpass.getuser(), args.reason
    )
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snooze.until_ms / 1000))
    _say(f"incidents: {snooze.detector} on {snooze.entity_id} (tenant {snooze.tenant}) snoozed until {until}")
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from analyst.anonymize import anonymize, load_key
    from analyst.render import render
    from analyst.report import build_report, course_interval
    from awareness.incidents import IncidentSettings
    from awareness.threat import ThreatSettings
    from dashboards.board_soc import CLOUD, overview_searches
    from detectors.config import DetectorConfig
    from infra.clients import es_client
    from ingest.tenants import TenantRegistry

    start, end = _time_arg("--from", args.start), _time_arg("--to", args.end)
    if end <= start:
        raise CliError("--to must be after --from")
    tenant = _analyst_scope(settings, args.tenant)
    key = load_key(args.key_file) if args.anonymize else None
    registry = TenantRegistry.load(settings.tenants_file) if Path(settings.tenants_file).exists() else None
    # The job's own awareness settings: incident levels and the method section use the same values.
    config = DetectorConfig.load_or_default(settings.detector_config_file)
    incidents = IncidentSettings.from_config(config)
    es = es_client(settings)
    try:
        report = build_report(
            es, settings, start, end, tenant=tenant, registry=registry,
            threat_settings=ThreatSettings.from_config(config),
            basis={"gap_ms": incidents.gap_ms, "grace_ms": incidents.grace_ms},
            overview=overview_searches(start, end - 1, course_interval(start, end)[0], tenant or CLOUD),
        )  # fmt: skip
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
    "parse": _cmd_parse,
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
    "incidents list": _cmd_incidents_list,
    "incidents show": _cmd_incidents_show,
    "incidents ack": _cmd_incidents_change,
    "incidents close": _cmd_incidents_change,
    "incidents snooze": _cmd_incidents_snooze,
    "report": _cmd_report,
    "tenants provision": _cmd_tenants_provision,
    "tenants revoke": _cmd_tenants_revoke,
    "receive syslog": _cmd_receive_syslog,
}


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The project's own error types, and a file that is missing or not ours to read."""
    from analyst.alerts import AlertWorkflowError
    from analyst.anonymize import AnonymizeError
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
    refusal = _kafka_refusal(exc, settings)
    if refusal:
        return refusal
    if isinstance(exc, KafkaError):
        where = settings.kafka_bootstrap if settings else "its address"
        return f"Kafka at {where} did not do what was asked ({type(exc).__name__})"
    return None


def _kafka_refusal(exc: BaseException, settings: Settings | None) -> str | None:
    """A refused Kafka login or topic in one line (infra.secure), or None."""
    from infra.secure import explain_kafka_error

    return explain_kafka_error(exc, settings)


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
        print(f"ssa {args.command}: {_kafka_refusal(exc, settings) or exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        line = _unreachable(exc, settings)
        if line is None:
            raise  # a bug: keep the traceback
        print(f"ssa {args.command}: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
