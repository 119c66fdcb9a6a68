"""The ``ssa`` argument tree: one subparser per command, and one per action where a command has
several (``ssa alerts ack``), each with only the flags that action reads, so a flag it would
ignore is refused instead of silently accepted.

Every leaf stores its full name in ``command`` (``"alerts ack"``); ``ssa.cli`` maps that name to
its handler. A usage error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["COMMANDS", "OneLineParser", "build_parser", "parse"]

# Every leaf of the tree, as ``args.command`` names it.
COMMANDS = (
    "up", "down", "status", "simulate", "ingest", "parse", "detect", "index", "scan", "evaluate", "demo",
    "dashboards build", "dashboards publish", "alerts list", "alerts show", "alerts ack",
    "alerts close", "incidents list", "incidents show", "incidents ack", "incidents close",
    "incidents snooze", "report", "tenants provision", "tenants revoke",
    "receive syslog",
)  # fmt: skip


class OneLineParser(argparse.ArgumentParser):
    """Reports a usage error in one line; the full usage is one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments of one ``ssa`` command line; a usage error exits with status 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused by the action that would have ignored them, in its own name
        leaf = OneLineParser(prog=f"ssa {args.command}")
        leaf.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _vpc_format(text: str) -> tuple[str, ...]:
    """``--vpc-format``'s field names; a bad format is a usage error, named in one line."""
    from ingest.parsers.vpcflow import log_format_fields

    try:
        return log_format_fields(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _leaf(
    sub: argparse._SubParsersAction, name: str, command: str, help_text: str
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(command=command)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ssa", description="Cloud security situational awareness pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return _leaf(sub, name, name, help_text)

    p = cmd("up", "start the local Kafka and Elasticsearch, create topics and templates")
    p.add_argument(
        "--secure",
        action="store_true",
        help="Kafka with SASL_SSL (SCRAM-SHA-512, a local CA) and ACLs only (= kafka_local_security sasl_ssl)",
    )
    cmd("down", "stop what `ssa up` started")
    cmd("status", "show the local services")
    _simulate(cmd("simulate", "seeded multi-tenant telemetry with labelled attacks"))
    _ingest(cmd("ingest", "parse telemetry into canonical events, to Kafka or a file"))

    p = cmd(
        "parse",
        "the parse stage: raw records of ssa.raw.<format> (secure mode: ssa.<tenant>.raw.<format>) to events",
    )
    p.add_argument("--tenants", default=None, help="tenant registry (default: settings tenants_file)")
    p.add_argument(
        "--tz", default=None, help="IANA time zone of local times without an offset (default: UTC)"
    )
    p.add_argument(
        "--vpc-format",
        type=_vpc_format,
        default=None,
        metavar="FORMAT",
        help="ssa.raw.vpcflow: the fields of records that come without a header line (a custom format "
        "through CloudWatch Logs), as for ssa ingest --vpc-format",
    )
    p.add_argument("--group", default=None, help="consumer group (default: settings parse_group_id)")
    p.add_argument(
        "--transactional-id", default=None,
        help="Kafka transactional id, one per process (default: settings parse_transactional_id, "
        "else <group>-<host name>)",
    )  # fmt: skip
    _receive(cmd("receive", "continuous sources feeding the raw topics (ssa.raw.<format>)"))

    p = cmd("detect", "run the PyFlink detection job and the Elasticsearch indexer")
    p.add_argument("--bounded", action="store_true", help="process what Kafka holds now, then stop")
    p.add_argument("--no-restore", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--no-indexer", action="store_true", help="do not ship alerts to Elasticsearch")
    p.add_argument(
        "--no-awareness",
        action="store_true",
        help="leave the awareness stage (incidents, threat levels, warnings) out: benchmarks, diagnosis; "
        "needs --bounded or --no-restore",
    )

    cmd("index", "ship alerts and metrics from Kafka to Elasticsearch (without the job)")

    p = cmd("scan", "run every detector over a file of canonical events, offline")
    p.add_argument("events", help="JSON lines of canonical events (.gz or - for stdin)")
    p.add_argument("--tenants", default=None)
    p.add_argument("--config", default=None, help="detector configuration YAML")
    p.add_argument("--output", default="-")

    p = cmd("evaluate", "score the detectors: on events with ground truth, or on a real capture")
    p.add_argument("events", nargs="?", help="JSON lines of canonical events (not with --dataset)")
    p.add_argument("truth", nargs="?", help="ground_truth.jsonl (not with --dataset)")
    p.add_argument("--tenants", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--slack-ms", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="a labelled real capture of the data dir, or all (the real-data scorecard)",
    )
    p.add_argument("--data-dir", default=None, help="where the captures are (default: ../shared/data)")
    p.add_argument(
        "--out",
        default=None,
        help="scorecard results file for --dataset (default: results/real-scorecard.json) or --capture",
    )
    p.add_argument(
        "--capture", nargs="+", default=None, metavar="FILE",
        help="score your own labelled capture: its files in time order (with --format; each label is a class)",
    )  # fmt: skip
    p.add_argument("--format", default=None, help="--capture: the ssa ingest format of its files")
    p.add_argument(
        "--label-column", default=None, help="--capture: the label column (default: Label, label...)"
    )
    p.add_argument("--benign", action="append", default=None, metavar="LABEL",
                   help="--capture: a benign label (repeatable; default: benign, normal, any case)")  # fmt: skip
    p.add_argument("--class", dest="label_class", action="append", default=None, metavar="LABEL=CLASS",
                   help="--capture: score LABEL as CLASS: scan, flood, beacon, guessing, benign, background, other")  # fmt: skip
    p.add_argument("--cidr", action="append", default=None,
                   help="--capture: the monitored network (repeatable; default: the private ranges)")  # fmt: skip
    p.add_argument(
        "--tz", default=None, help="--capture: IANA zone of local times in its files (default UTC)"
    )
    p.add_argument(
        "--name", default=None, help="--capture: its name in the scorecard (default: first file's)"
    )
    p.add_argument(
        "--incidents", action="store_true",
        help="with --dataset or --capture: also replay the capture through the job's awareness stage and "
        "score its incidents, threat levels and warnings against the labels",
    )  # fmt: skip

    p = cmd("demo", "everything end to end on the embedded default")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--tenants", type=int, default=8)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--rate", type=float, default=1000.0)

    _dashboards(cmd("dashboards", "Grafana dashboards as code: build or publish"))
    _alerts(cmd("alerts", "analyst workflow: list, show, ack, close"))
    _incidents(cmd("incidents", "analyst workflow on incidents: list, show, ack, close, snooze"))
    _report(cmd("report", "incident statistics for a period"))
    _tenants(
        cmd(
            "tenants",
            "Kafka principals, topics and ACLs, Elasticsearch roles and API keys, Grafana "
            "organisations of the registry's tenants (secure mode)",
        )
    )
    return parser


def _tenants(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    provision = _leaf(
        actions, "provision", "tenants provision",
        "per tenant: a SCRAM user feeder-<tenant> (password in a 0600 file), topics ssa.<tenant>.*, "
        "ACLs; and the job and provider principals; an Elasticsearch role and API key (0600 file) "
        "when Elasticsearch security is on; a Grafana organisation when grafana_admin_* are set (idempotent)",
    )  # fmt: skip
    provision.add_argument("--tenants", default=None, help="tenant registry (default: settings tenants_file)")
    no_kafka = "leave Kafka alone (a broker not in secure mode): only Elasticsearch and Grafana"
    provision.add_argument("--no-kafka", action="store_true", help=no_kafka)
    revoke = _leaf(
        actions,
        "revoke",
        "tenants revoke",
        "remove a tenant's feeder user, ACLs, Elasticsearch role and keys, Grafana organisation, files",
    )
    revoke.add_argument("tenant")
    revoke.add_argument("--no-kafka", action="store_true", help=no_kafka)
    revoke.add_argument("--delete-topics", action="store_true", help="also delete its topics and their data")


def _simulate(p: argparse.ArgumentParser) -> None:
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
        type=_positive_float,
        default=None,
        help="events/s when producing (default: as fast as possible)",
    )


def _receive(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="SOURCE")
    leaf = _leaf(
        actions, "syslog", "receive syslog",
        "syslog receiver (RFC 5424/3164 over UDP, TCP with RFC 6587 framing, TLS per RFC 5425) "
        "writing each message to the raw topic of its format; stops cleanly on SIGTERM",
    )  # fmt: skip
    leaf.add_argument(
        "--udp", action="append", default=[], metavar="HOST:PORT", help="UDP listener (RFC 5426)"
    )
    leaf.add_argument("--tcp", action="append", default=[], metavar="HOST:PORT", help="plain TCP listener")
    leaf.add_argument(
        "--tls", action="append", default=[], metavar="HOST:PORT",
        help="TCP over TLS listener (RFC 5425, port 6514); needs --tls-cert and --tls-key",
    )  # fmt: skip
    leaf.add_argument("--tls-cert", default=None, help="server certificate chain (PEM)")
    leaf.add_argument("--tls-key", default=None, help="server private key (PEM)")
    leaf.add_argument(
        "--tls-client-ca", default=None, help="require client certificates signed by this CA (PEM)"
    )
    leaf.add_argument(
        "--format", default="syslog",
        help="what the messages carry: syslog (sshd/auth lines, the default), auditd (audit lines "
        "forwarded by rsyslog imfile or audisp), or another text format of ssa ingest",
    )  # fmt: skip
    leaf.add_argument("--tenant", default=None, help="tenant that owns this feed (ssa-tenant header)")
    leaf.add_argument(
        "--output", default=None, help="write raw records as JSON lines here (or -) instead of Kafka"
    )
    leaf.add_argument("--max-message", type=int, default=64 * 1024, help="bytes per message (default 65536)")
    leaf.add_argument(
        "--max-connections", type=int, default=1000, help="open TCP/TLS connections (default 1000)"
    )
    leaf.add_argument("--idle-timeout", type=_positive_float, default=900.0, help="seconds (default 900)")
    leaf.add_argument(
        "--frame-timeout", type=_positive_float, default=30.0,
        help="seconds a started frame may take to complete (slow senders; default 30)",
    )  # fmt: skip


def _ingest(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        help="input file, - for stdin, udp://HOST:PORT for NetFlow/IPFIX, or a log-archive bucket: "
        "s3://BUCKET/PREFIX or file:///FOLDER (VPC flow logs and CloudTrail as AWS writes them)",
    )
    p.add_argument(
        "--format",
        default=None,
        help="e.g. syslog (or sshd), zeek, vpcflow, netflow; required but for a bucket, whose "
        "objects' keys say their format (there --format vpcflow or cloudtrail reads only those)",
    )
    p.add_argument("--tenant", default=None, help="tenant that owns this source")
    p.add_argument("--tenants", default=None, help="tenant registry (default: settings tenants_file)")
    p.add_argument("--output", default=None, help="write JSON lines here (or -) instead of Kafka")
    p.add_argument("--year", type=int, default=None, help="year for syslog timestamps that lack one")
    p.add_argument(
        "--tz",
        default=None,
        help="IANA time zone of local times without an offset: RFC 3164 syslog, CICFlowMeter, Argus, nfdump (default: UTC)",
    )
    p.add_argument(
        "--cic-features",
        action="store_true",
        help="cicflowmeter: keep its ~72 statistical columns in extra (default: Flow ID and Label only)",
    )
    p.add_argument(
        "--vpc-format",
        type=_vpc_format,
        default=None,
        metavar="FORMAT",
        help="vpcflow: the fields of records that come without a header line (a custom format through "
        "CloudWatch Logs), as the flow log's LogFormat ('${version} ${srcaddr} ...', as aws ec2 "
        "describe-flow-logs prints it) or the field names (default: AWS's default format)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="follow the growing file as tail -F does (rotation, truncation), resuming after a restart",
    )
    p.add_argument("--state", default=None, help="--follow's state file (default: PATH.ssa-follow.json)")
    bucket = p.add_argument_group(
        "bucket",
        "s3:// or file:// input (ingest.objectstore): read once, or polled with --follow; "
        "--state defaults to <data_dir>/buckets/<url>.json",
    )
    bucket.add_argument(
        "--interval",
        type=_positive_float,
        default=None,
        help="seconds between polls with --follow (default 60)",
    )
    bucket.add_argument(
        "--lookback", type=_positive_float, default=None,
        help="seconds an object may arrive after newer ones of its account and region and still be read (default 3600)",
    )  # fmt: skip
    bucket.add_argument(
        "--max-object-bytes",
        type=int,
        default=None,
        help="decompressed bytes read per object (default 1 GiB)",
    )
    bucket.add_argument(
        "--endpoint-url", default=None, help="an S3-compatible endpoint (default: boto3's own configuration)"
    )


def _dashboards(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = _leaf(actions, "build", "dashboards build", "write the dashboards and provisioning files")
    build.add_argument("--out", default=None, help="folder to write (default: dashboards/built)")
    build.add_argument("--es-auth", choices=["basic", "apikey", "none"], default="basic")
    publish = _leaf(actions, "publish", "dashboards publish", "push the built dashboards to a Grafana")
    publish.add_argument("--url", required=True, help="Grafana base URL")
    publish.add_argument("--token-file", required=True, help="file holding a Grafana API token")
    publish.add_argument("--built", default=None, help="folder `build` wrote (default: dashboards/built)")


def _alerts(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        leaf = _leaf(actions, name, f"alerts {name}", help_text)
        leaf.add_argument("--tenant", default=None, help="tenant scope: never shows another tenant's alerts")
        if name != "list":
            leaf.add_argument("alert_id")
        return leaf

    listing = action("list", "alerts matching filters, newest first")
    listing.add_argument("--status", choices=["open", "acknowledged", "closed"], default=None)
    listing.add_argument("--severity", action="append", choices=["low", "medium", "high", "critical"])
    listing.add_argument("--category", default=None)
    listing.add_argument("--since", default=None, help="e.g. now-24h or 2026-11-01")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    action("show", "one alert with its status history").add_argument("--json", action="store_true")
    for name, verb in (("ack", "acknowledge"), ("close", "close")):
        change = action(name, f"{verb} an alert; the change joins its status history")
        change.add_argument("--by", default=None, help="analyst name (default: login name)")
        change.add_argument("--reason", default=None)


def _incidents(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        leaf = _leaf(actions, name, f"incidents {name}", help_text)
        leaf.add_argument(
            "--tenant", default=None, help="tenant scope: never shows another tenant's incidents"
        )
        if name != "list":
            leaf.add_argument("incident_id")
        return leaf

    listing = action("list", "incidents matching filters, most recently active first")
    listing.add_argument(
        "--status", choices=["open", "closed"], default=None, help="the job's: open or idle-closed"
    )
    listing.add_argument("--workflow", choices=["new", "acknowledged", "closed"], default=None)
    listing.add_argument("--min-severity", choices=["low", "medium", "high", "critical"], default=None)
    listing.add_argument("--since", default=None, help="active since, e.g. now-24h or 2026-11-01")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    action("show", "one incident: its kill-chain, entities, history and alerts").add_argument(
        "--json", action="store_true"
    )
    for name, verb in (("ack", "acknowledge"), ("close", "close")):
        change = action(name, f"{verb} an incident; the change joins its history")
        change.add_argument("--by", default=None, help="analyst name (default: login name)")
        change.add_argument("--reason", default=None)
    snooze = action("snooze", "snooze one detector's alerts about one entity (noise) for a while")
    snooze.add_argument("--detector", required=True, help="detector id, e.g. port_scan.failed_probe_scan")
    snooze.add_argument("--entity", required=True, help="entity id as the alerts name it (address, VM, ...)")
    snooze.add_argument("--for", dest="duration", required=True, help="how long: 30m, 2h, 1d (at most 30d)")
    snooze.add_argument("--reason", required=True)
    snooze.add_argument("--by", default=None, help="analyst name (default: login name)")


def _report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", required=True)
    p.add_argument("--to", dest="end", required=True)
    p.add_argument("--tenant", default=None)
    p.add_argument("--format", choices=["csv", "json", "md", "html", "pdf"], default="md")
    p.add_argument("--output", default=None)
    p.add_argument("--anonymize", action="store_true")
    p.add_argument("--k", type=int, default=5, help="suppress cells describing fewer than k tenants")
    p.add_argument("--key-file", default=None, help="pseudonym key (or SSA_REPORT_KEY_FILE)")
