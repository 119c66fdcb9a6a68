"""The real labelled captures of ``../shared/data`` that the real-data scorecard runs on, and a
reader of their labels.

Each capture is described once here: its files (in the order they are fed), the format name that
``ssa ingest`` would be given, the zone of times written without one, the tenant registry it is
scored with (the monitored host(s) or local network as one tenant's CIDRs), and how a labelled row
maps to a scoring class. The labels are read by ``read_labels`` from the same files the parser
reads, line by line (``ingest.reader.iter_lines``, the parser's own line splitter), and keyed by
the id the parser gives the record's event (``ingest.schema.event_id`` of the source and the line's
bytes), so a label is matched to its event by line whatever the parser skips or rejects.

Classes: ``scan``, ``flood`` and ``beacon`` are attack classes that flows can show (each scored
against the alert categories of ``ATTACK_CATEGORIES``); ``benign`` is verified benign traffic;
``background`` is unverified traffic (reported apart, never as benign truth); ``other`` is
malicious traffic of no class scored here (a bot's DNS lookups, say): not benign, no recall.
"""

from __future__ import annotations

import csv
import glob
import gzip
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal, cast

from ingest.reader import iter_lines
from ingest.schema import event_id_of

__all__ = [
    "ATTACK_CATEGORIES",
    "CAPTURES",
    "Capture",
    "ClassSpec",
    "LabelRead",
    "csv_cells",
    "csv_rows",
    "open_text",
    "read_labels",
    "zeek_fields",
    "zeek_rows",
]

Kind = Literal["attack", "benign", "background", "other"]
Side = Literal["either", "source"]


# The alert categories that count as finding each attack class (an empty tuple: no detector).
ATTACK_CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    "scan": ("port_scan",),
    "flood": ("dos",),
    "beacon": ("command_and_control",),
    "guessing": ("brute_force",),
}


@dataclass(frozen=True)
class ClassSpec:
    """One scoring class of a capture. ``side``: which end of a flow an alert must name to cover
    it (``source`` where the label says the attacker is the source, as for inbound scans, so one
    alert about the victim does not cover every other attacker's flows)."""

    name: str
    kind: Kind
    side: Side = "either"
    note: str = ""
    # The attack class whose alert categories find this one, where its name is not one of them (a
    # user's label, "DoS slowloris", scored as a flood).
    scored_as: str = ""

    @property
    def categories(self) -> tuple[str, ...]:
        return ATTACK_CATEGORIES.get(self.scored_as or self.name, ()) if self.kind == "attack" else ()


Classifier = Callable[[Mapping[str, str]], str]


@dataclass(frozen=True)
class Capture:
    name: str
    folder: str
    patterns: tuple[str, ...]  # globs under the folder, each sorted; fed in this order
    fmt: str  # the ``ssa ingest --format`` name
    table: Literal["zeek", "csv"]  # how ``read_labels`` reads a row
    cidrs: tuple[str, ...]  # the one tenant's CIDRs
    classes: tuple[ClassSpec, ...]
    classify: Classifier
    timezone: str | None = None
    tenant_note: str = ""
    # Each file is another host's day from its own sensor (not one continuous capture): each gets
    # a fresh engine, as the files' times overlap and run back and forth.
    day_files: bool = False
    # A capture of the user's files (``labelled``): its classes come from the labels read, and its
    # patterns are the files themselves, fed in the order given.
    derive_classes: Callable[[], tuple[ClassSpec, ...]] | None = None
    in_given_order: bool = False

    def files(self, data_dir: Path) -> list[Path]:
        if self.in_given_order:
            return [Path(p) for p in self.patterns if Path(p).is_file()]
        out: list[Path] = []
        for pattern in self.patterns:
            out.extend(Path(p) for p in sorted(glob.glob(str(data_dir / self.folder / pattern))))
        return out

    def spec(self, name: str) -> ClassSpec:
        return next(c for c in self.scored_classes() if c.name == name)

    def scored_classes(self) -> tuple[ClassSpec, ...]:
        """The classes to score: the capture's own, or those of the labels read so far."""
        return self.derive_classes() if self.derive_classes is not None else self.classes


def _ctu13(row: Mapping[str, str]) -> str:
    # SOURCE.txt's coarse rule: "Botnet" -> botnet (+"CC" -> C&C); "Normal" -> normal; else background
    label = row.get("Label", "")
    if "Botnet" in label:
        if "CC" in label:
            return "beacon"
        return "scan" if "SPAM" in label else "other"
    return "benign" if "Normal" in label else "background"


def _iot23(row: Mapping[str, str]) -> str:
    detail = row.get("detailed-label", "-")
    if row.get("label") == "Benign":
        return "benign"
    return {"DDoS": "flood", "C&C": "beacon", "PartOfAHorizontalPortScan": "scan"}.get(detail, "other")


def _ctu50(row: Mapping[str, str]) -> str:
    return {"Malicious": "scan", "Benign": "benign"}.get(row.get("label", ""), "background")


_RITA_PAIR: Final = frozenset({"73.54.23.243", "64.225.56.201"})


def _rita(row: Mapping[str, str]) -> str:
    # Only the documented pair is labelled: its HTTP beacon; the pair's other flows are "other".
    if {row.get("id.orig_h"), row.get("id.resp_h")} != _RITA_PAIR:
        return "background"
    return "beacon" if row.get("proto") == "tcp" and row.get("id.resp_p") == "80" else "other"


CAPTURES: Final[dict[str, Capture]] = {
    c.name: c
    for c in (
        Capture(
            "ctu13_scenario6_menti", "ctu13_scenario6_menti", ("capture20110816.binetflow.gz",),
            "argus", "csv", ("147.32.0.0/16",),
            (
                ClassSpec("scan", "attack", note="bot's SMTP spam attempts to port 25 of many servers"),
                ClassSpec("beacon", "attack", note="bot's C&C to 91.212.135.158:5678 every ~33 s"),
                ClassSpec("other", "other", note="bot's DNS, ad clicks, single attempts"),
                ClassSpec("benign", "benign", note="normal hosts (From-Normal labels)"),
                ClassSpec("background", "background", note="unverified campus traffic"),
            ),
            _ctu13, timezone="Europe/Prague",
            tenant_note="the university network 147.32.0.0/16 (local times read as Europe/Prague)",
        ),
        Capture(
            "iot23_capture_34_1_mirai", "iot23_capture_34_1_mirai",
            ("CTU-IoT-Malware-Capture-34-1.conn.log.labeled.gz",), "zeek", "zeek", ("192.168.1.0/24",),
            (
                ClassSpec("flood", "attack", note="HTTP/TCP flood to 123.59.209.185:80 and 71.61.66.148:80"),
                ClassSpec("beacon", "attack", note="IRC C&C to 185.244.25.235:6667 all day"),
                ClassSpec("scan", "attack", note="labelled a horizontal scan: 121 unanswered SYN bursts at one "
                          "address, 66.67.61.168:63798, in 20 s (38,060 SYNs, a SYN flood by its "
                          "records) and one UDP flow to 1.1.1.1:256"),
                ClassSpec("other", "other"),
                ClassSpec("benign", "benign", note="the infected device's own normal traffic; labelled benign too: "
                          "65 flows to the C&C server's 185.244.25.235:80 in the first hour (HTTP downloads "
                          "of 90-165 kB and their failed attempts), and 41 flows at 05:41 UTC to "
                          "50.50.50.53:53/tcp, a SYN burst of the scan's shape (same source-port sequence, "
                          "3,069 SYNs on one 5-tuple in 3 s)"),
            ),
            _iot23, tenant_note="the infected device's LAN 192.168.1.0/24",
        ),
        Capture(
            "stratosphere_ctu50_normal_hosts", "stratosphere_ctu50_normal_hosts",
            ("*-zeek-mixed.conn.log.labeled.gz",), "zeek", "zeek",
            ("147.32.81.167/32", "147.32.83.234/32", "147.32.83.165/32", "147.32.83.161/32"),
            (
                ClassSpec("scan", "attack", side="source", note="inbound Internet scans (attacker = source)"),
                ClassSpec("benign", "benign", note="the normal hosts' own traffic"),
                ClassSpec("background", "background"),
            ),
            _ctu50, tenant_note="the four monitored Windows hosts, one per day file", day_files=True,
        ),
        Capture(
            "rita_missing_host_beacon", "rita_missing_host_beacon", ("2024-04-*/conn.*.log.gz",),
            "zeek", "zeek", ("64.225.56.201/32",),
            (
                ClassSpec("beacon", "attack", note="HTTP beacon 73.54.23.243 -> 64.225.56.201:80"),
                ClassSpec("other", "other", note="the beacon pair's other flows"),
                ClassSpec("background", "background", note="unsolicited Internet traffic to the server"),
            ),
            _rita, tenant_note="the monitored public server 64.225.56.201",
        ),
    )
}  # fmt: skip


@dataclass
class LabelRead:
    """Scoring class by event id, and the labelled rows per class (rows the parser may skip)."""

    by_id: dict[str, str]
    rows: dict[str, int]
    unreadable: int = 0


def zeek_fields(line: str) -> list[str]:
    """The column names of a Zeek log's ``#fields`` line. IoT-23 writes its last three columns
    (``tunnel_parents label detailed-label``) in one tab field separated by spaces, header and rows
    alike: that field is split on whitespace (a single name is unchanged by it)."""
    names = line.rstrip("\r\n").split("\t")[1:]
    return names[:-1] + names[-1].split() if names else names


def zeek_rows(lines: Iterator[bytes]) -> Iterator[tuple[bytes, dict[str, str] | None]]:
    """(line, row) of each record of a Zeek TSV log (``zeek_fields``); row is None when its cells do
    not fit the header."""
    names: list[str] = []
    split_last = False
    for line in lines:
        if line[:1] == b"#":
            if line.startswith(b"#fields\t"):
                names = zeek_fields(line.decode("utf-8", "replace"))
                split_last = len(names) > line.count(b"\t")  # more names than fields: IoT-23's split
            continue
        if not line.strip():
            continue
        cells = line.decode("utf-8", "replace").split("\t")
        if split_last:
            cells = cells[:-1] + cells[-1].split()
        yield line, dict(zip(names, cells, strict=True)) if len(cells) == len(names) else None


def csv_cells(text: str) -> list[str] | None:
    """The stripped cells of one CSV line, or None for a line of separators only (CIC-IDS2017's files
    end in rows of commas, which the parser skips)."""
    if not text.replace(",", "").strip():
        return None
    return [c.strip() for c in next(csv.reader([text]), [])]


def csv_rows(lines: Iterator[bytes]) -> Iterator[tuple[bytes, dict[str, str] | None]]:
    """(line, row) of each record of a CSV whose first line names the columns (``ra -c ,``,
    CICFlowMeter, nProbe). Names and cells are stripped (CIC-IDS2017 writes `` Label``); a repeat of
    the header line and rows of separators only (which the parsers skip) yield nothing."""
    names: list[str] | None = None
    for line in lines:
        cells = csv_cells(line.decode("utf-8", "replace").lstrip("\ufeff"))
        if cells is None:
            continue
        if names is None:
            names = cells
            continue
        if cells == names:
            continue
        yield line, dict(zip(names, cells, strict=True)) if len(cells) == len(names) else None


def open_text(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when it starts with the gzip magic (as ``ssa ingest`` does)."""
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return cast(IO[bytes], gzip.open(path, "rb")) if gz else path.open("rb")


def read_labels(capture: Capture, stream: IO[bytes], source: str, into: LabelRead | None = None) -> LabelRead:
    """The scoring class of every record of one file of ``capture``, keyed by the event id the
    parser named ``source`` gives that line."""
    out = into if into is not None else LabelRead({}, {})
    ident = event_id_of(source)
    rows = zeek_rows if capture.table == "zeek" else csv_rows
    for line, row in rows(item[2] for item in iter_lines(stream)):
        if row is None:
            out.unreadable += 1
            continue
        cls = capture.classify(row)
        out.by_id[ident(line)] = cls
        out.rows[cls] = out.rows.get(cls, 0) + 1
    return out
