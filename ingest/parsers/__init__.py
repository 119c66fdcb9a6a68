"""Parsers for real telemetry export formats, one module each, and the table of format names.

``FORMATS`` maps the names the CLI accepts (``ssa ingest --format NAME``) to a ``FormatSpec``; the
table is a plain dict built here (no registration by import side effect). ``parse_bytes`` is the
one-call way to parse an in-memory input (tests, notebooks).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ingest.parsers.argus import ArgusParser
from ingest.parsers.auditd import AuditdParser
from ingest.parsers.base import ListOutput, Output, ParseContext, Parser
from ingest.parsers.cicflow import CicFlowParser
from ingest.parsers.cloudaudit import CloudAuditParser
from ingest.parsers.falco import FalcoParser
from ingest.parsers.netflow import NetflowParser
from ingest.parsers.nfdump_csv import NfdumpCsvParser
from ingest.parsers.nprobe_csv import NprobeCsvParser
from ingest.parsers.suricata import SuricataEveParser
from ingest.parsers.syslog_auth import SyslogAuthParser
from ingest.parsers.vpcflow import VpcFlowParser
from ingest.parsers.zeek import ZeekConnParser

__all__ = [
    "FORMATS",
    "FORMAT_ALIASES",
    "FORMAT_NAMES",
    "FormatSpec",
    "ListOutput",
    "Output",
    "ParseContext",
    "Parser",
    "get_format",
    "parse_bytes",
]


@dataclass(frozen=True)
class FormatSpec:
    name: str
    kind: str  # canonical event kind it produces
    binary: bool
    description: str
    factory: Callable[[Output, ParseContext], Parser]


FORMATS: Final[dict[str, FormatSpec]] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            "vpcflow",
            "flow",
            False,
            "AWS VPC Flow Logs: text records (v2 default; custom fields via header or --vpc-format) "
            "or CloudWatch Logs subscription JSON",
            VpcFlowParser,
        ),
        FormatSpec(
            "netflow",
            "flow",
            True,
            "NetFlow v5/v9 and IPFIX packets: pcap or concatenated export packets",
            NetflowParser,
        ),
        FormatSpec(
            "nprobe-csv",
            "flow",
            False,
            "nProbe-style NetFlow CSV/text (IPV4_SRC_ADDR, IN_BYTES, ...)",
            NprobeCsvParser,
        ),
        FormatSpec(
            "nfdump",
            "flow",
            False,
            "nfdump's CSV (nfdump -o csv, csv-fast or csv:%...; 1.6 and 1.7 layouts)",
            NfdumpCsvParser,
        ),
        FormatSpec(
            "zeek", "flow", False, "Zeek conn.log, TSV with #fields header or JSON lines", ZeekConnParser
        ),
        FormatSpec(
            "cicflowmeter", "flow", False, "CICFlowMeter CSV (CIC-IDS2017/2018 columns)", CicFlowParser
        ),
        FormatSpec(
            "argus",
            "flow",
            False,
            "Argus bidirectional flows as ra -c , prints them (Stratosphere/CTU-13 .binetflow)",
            ArgusParser,
        ),
        FormatSpec(
            "suricata",
            "flow",
            False,
            "Suricata EVE JSON: flow and netflow records (other event types skipped)",
            SuricataEveParser,
        ),
        FormatSpec(
            "auditd",
            "process",
            False,
            "Linux auditd raw audit.log (SYSCALL/EXECVE/PATH/... joined)",
            AuditdParser,
        ),
        FormatSpec("falco", "process", False, "Falco JSON alerts (json_output: true)", FalcoParser),
        FormatSpec(
            "syslog",
            "auth",
            False,
            "sshd and other auth lines from syslog (RFC 3164 / RFC 5424)",
            SyslogAuthParser,
        ),
        FormatSpec(
            "cloudaudit",
            "audit",
            False,
            'CloudTrail JSON: {"Records": [...]} files, JSON lines, EventBridge events '
            "or CloudWatch Logs subscription JSON",
            CloudAuditParser,
        ),
    )
}
# Other names the CLI accepts for a format (``ssa ingest --format``, ``get_format``).
FORMAT_ALIASES: Final = {"sshd": "syslog", "cloudtrail": "cloudaudit", "ipfix": "netflow", "cic": "cicflowmeter",
                         "nprobe": "nprobe-csv", "audit": "auditd", "binetflow": "argus", "eve": "suricata",
                         "nfdump-csv": "nfdump"}  # fmt: skip
FORMAT_NAMES: Final = tuple(sorted(FORMATS))


def get_format(name: str) -> FormatSpec:
    """The spec for a format name or alias; ``KeyError`` names the accepted formats."""
    key = FORMAT_ALIASES.get(name.lower(), name.lower())
    try:
        return FORMATS[key]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; choose one of {', '.join(FORMAT_NAMES)}") from None


def parse_bytes(fmt: str, data: bytes, ctx: ParseContext | None = None) -> ListOutput:
    """Parse a whole in-memory input; everything produced is in the returned ``ListOutput``."""
    out = ListOutput()
    parser = get_format(fmt).factory(out, ctx or ParseContext())
    parser.feed_stream(io.BytesIO(data))
    return out
