"""The real Zeek captures re-exported as AWS VPC Flow Logs: the same traffic as a cloud's exporter
would have written it, through the same scorecard.

    python -m detectors.evaluation.as_vpc [--dataset NAME|all] [--interval-s 600|60] \
        [--data-dir DIR] [--out results/real-scorecard-vpc.json]

The real captures here come from Zeek and Argus, which write one bidirectional record per
connection when it ends. A cloud's tenants are mostly seen through VPC Flow Logs (AWS's
documentation, "Flow log records" and "Aggregation interval"), which differ in every way the
detectors depend on:

- one record per direction, each with its own packets and bytes (``srcaddr`` sent them), and no
  record of a direction that carried nothing: an unanswered SYN is a lone inbound record, a
  refused one has a reset (1 packet, 40 bytes) coming back;
- a record per aggregation interval (10 minutes by default, 1 minute as an option): a connection
  that lasts an hour is 6 (or 60) records a direction, with ``start``/``end`` the first and last
  packet seen in the interval, in whole seconds;
- no flags, states or payload counts in the default (version 2) format; ICMP has ports 0;
- records published per interval, in no order within it.

Each Zeek ``conn`` record becomes those records: its directions with packets (``orig_pkts``/
``orig_ip_bytes``, ``resp_pkts``/``resp_ip_bytes``: IP bytes, as VPC counts them), each cut at the
interval boundaries with its packets and bytes shared in proportion to the time in each piece (a
constant rate: Zeek keeps no timing inside a connection), pieces without packets dropped. Lines
are ordered by interval, shuffled within it (seeded), and parsed by the project's ``vpcflow``
parser with the allowance for disorder that the README gives VPC users
(``SSA_FLOW_EXPORT_DELAY_MS=900000``). Every line carries the label of the record it came from.
The account and interface ids are made up; the tenant comes from the addresses, as for a VPC
whose account is not in the registry. Day-file captures get a fresh engine per file, as in the
scorecard. Argus's CTU-13 records hold no per-direction packet counts, so it is not re-exported.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, Lateness
from detectors.evaluation.captures import CAPTURES, Capture, LabelRead, open_text, zeek_rows
from detectors.evaluation.coverage import HostDays, score_classes
from detectors.evaluation.real import _EngineSink, engine_figures, index_alerts, machine_facts, table
from detectors.registry import all_detectors
from ingest.pipeline import run_ingest
from ingest.reader import iter_lines
from ingest.schema import Event, FlowEvent, event_id_of
from ingest.tenants import TenantRegistry

__all__ = [
    "ZEEK_CAPTURES",
    "VpcExport",
    "classified_rows",
    "conn_directions",
    "constant_rate",
    "evaluate_as_vpc",
    "events_as_vpc",
    "main",
    "reexport_cli",
    "score_reexport",
    "timeout_pieces",
    "vpc_pieces",
    "with_origins",
    "zeek_number",
]

ZEEK_CAPTURES: Final = tuple(n for n, c in CAPTURES.items() if c.fmt == "zeek")
VPC_EXPORT_DELAY_MS: Final = 900_000  # the README's allowance for VPC Flow Logs
OUT_OF_ORDERNESS_MS: Final = 2_000  # the job's default for every other kind
_ACCOUNT: Final = "123456789012"
_ENI: Final = "eni-0a1b2c3d4e5f60789"
_PROTO: Final = {"tcp": 6, "udp": 17, "icmp": 1}
_vpc_id: Final = event_id_of("vpcflow")


def zeek_number(text: str) -> float:
    """A Zeek number cell; ``-`` (unset) and empty read as 0."""
    return 0.0 if text in ("-", "") else float(text)


def _pieces(t0: float, t1: float, interval_s: int) -> Iterator[tuple[int, float, float]]:
    """(interval index, start, end) of ``[t0, t1]`` cut at the interval boundaries."""
    k = int(t0 // interval_s)
    while True:
        lo, hi = max(t0, k * interval_s), min(t1, (k + 1) * interval_s)
        yield k, lo, hi
        if t1 < (k + 1) * interval_s:
            return
        k += 1


def timeout_pieces(t0: float, t1: float, timeout_s: float) -> Iterator[tuple[int, float, float]]:
    """(piece index, start, end) of ``[t0, t1]`` cut every ``timeout_s`` from its first packet: an
    exporter's active timeout (NetFlow) or flow timeout (CICFlowMeter)."""
    lo, k = t0, 0
    while True:
        hi = min(t1, lo + timeout_s)
        yield k, lo, hi
        if hi >= t1:
            return
        lo, k = hi, k + 1


Row = Mapping[str, str]  # a Zeek conn row, field -> text
Record = tuple[int, str, str, str, str, int]  # interval index, srcaddr, dstaddr, srcport, dstport, protocol
Direction = tuple[str, str, str, str, int, int, bool]  # src, dst, sport, dport, packets, bytes, responder's


def conn_directions(row: Mapping[str, str]) -> list[Direction]:
    """Each direction of a Zeek ``conn`` row that carried packets: the originator's (its
    ``orig_pkts``/``orig_ip_bytes``), then the responder's, with its ports as the row writes them."""
    orig, resp, oport, rport = row["id.orig_h"], row["id.resp_h"], row["id.orig_p"], row["id.resp_p"]
    both = (
        (orig, resp, oport, rport, row.get("orig_pkts", "0"), row.get("orig_ip_bytes", "0"), False),
        (resp, orig, rport, oport, row.get("resp_pkts", "0"), row.get("resp_ip_bytes", "0"), True),
    )
    out: list[Direction] = []
    for src, dst, sport, dport, pkts, nbytes, response in both:
        packets = int(zeek_number(pkts))
        if packets > 0:
            out.append((src, dst, sport, dport, packets, int(zeek_number(nbytes)), response))
    return out


def classified_rows(
    capture: Capture, paths: Iterable[Path], labels: LabelRead
) -> Iterator[tuple[int, Row, str]]:
    """Each readable ``conn`` row of ``paths`` with its position (from 1, across the files, for
    unique record ids) and its class; unreadable lines are counted in ``labels``."""
    n = 0
    for path in paths:
        with open_text(path) as fh:
            for _line, row in zeek_rows(item[2] for item in iter_lines(fh)):
                n += 1
                if row is None:
                    labels.unreadable += 1
                    continue
                yield n, row, capture.classify(row)


def constant_rate(
    packets: int, total: int, t0: float, t1: float, cuts: Iterable[tuple[int, float, float]]
) -> Iterator[tuple[int, float, float, int, int]]:
    """(piece index, start, end, packets, bytes) of a direction of ``[t0, t1]`` cut at ``cuts``, its
    packets and bytes shared in proportion to each piece's time (Zeek keeps no timing inside a
    connection); pieces without packets are left out."""
    span = t1 - t0
    sent_p = sent_b = 0
    for k, lo, hi in cuts:
        share = 1.0 if span <= 0 or hi >= t1 else (hi - t0) / span
        p, b = round(packets * share) - sent_p, round(total * share) - sent_b
        if p > 0:
            sent_p, sent_b = sent_p + p, sent_b + b
            yield k, lo, hi, p, b


def vpc_pieces(row: Mapping[str, str], interval_s: int) -> list[tuple[Record, int, int, int, int, bool]]:
    """The per-direction, per-interval pieces of one Zeek ``conn`` row: (record key, packets, bytes,
    first second, last second, whether it is the responder's direction)."""
    proto = _PROTO.get(row.get("proto", ""))
    if proto is None:
        return []
    if proto == 1 and ":" in row["id.orig_h"]:
        proto = 58  # ICMPv6
    t0 = zeek_number(row["ts"])
    t1 = t0 + zeek_number(row.get("duration", "-"))
    out: list[tuple[Record, int, int, int, int, bool]] = []
    for src, dst, sport, dport, packets, total, response in conn_directions(row):
        if proto not in (6, 17):
            sport = dport = "0"  # ICMP's type and code are no ports in VPC
        for k, lo, hi, p, b in constant_rate(packets, total, t0, t1, _pieces(t0, t1, interval_s)):
            out.append(((k, src, dst, sport, dport, proto), p, b, math.floor(lo), math.floor(hi), response))
    return out


class VpcExport:
    """Zeek ``conn`` rows as an ENI's VPC Flow Log v2 records: per aggregation interval, one record
    per 5-tuple and direction, its packets and bytes summed over the rows' pieces in the interval,
    ``start``/``end`` the first and last second seen. A record made of rows of several classes
    takes the first of attack, other, benign, background (an attacker's packets in it make it
    the attack's)."""

    def __init__(self, capture: Capture, interval_s: int) -> None:
        self.capture = capture
        self.interval_s = interval_s
        self.records: dict[Record, list[Any]] = {}
        kinds = {c.name: c.kind for c in capture.scored_classes()}
        order = {"attack": 0, "other": 1, "benign": 2, "background": 3}
        self._rank = {name: order.get(kind, 4) for name, kind in kinds.items()}
        self.unreadable = 0
        self.responses: set[str] = set()  # ids of the records of a connection's responder

    def add_file(self, path: Path) -> None:
        with open_text(path) as fh:
            for _line, row in zeek_rows(item[2] for item in iter_lines(fh)):
                if row is None:
                    self.unreadable += 1
                    continue
                cls = self.capture.classify(row)
                for key, p, b, lo, hi, response in vpc_pieces(row, self.interval_s):
                    rec = self.records.get(key)
                    if rec is None:
                        self.records[key] = [p, b, lo, hi, cls, response]
                        continue
                    rec[0] += p
                    rec[1] += b
                    rec[2], rec[3] = min(rec[2], lo), max(rec[3], hi)
                    if self._rank.get(cls, 4) < self._rank.get(rec[4], 4):
                        rec[4] = cls

    def publish(self, labels: LabelRead, seed: int = 0) -> bytes:
        """The records as lines, interval by interval, shuffled within each; their classes go to
        ``labels`` by the event id the ``vpcflow`` parser gives each line."""
        by_interval: dict[int, list[str]] = {}
        for (k, src, dst, sport, dport, proto), (p, b, lo, hi, cls, response) in self.records.items():
            line = f"2 {_ACCOUNT} {_ENI} {src} {dst} {sport} {dport} {proto} {p} {b} {lo} {hi} ACCEPT OK"
            by_interval.setdefault(k, []).append(line)
            ident = _vpc_id(line.encode())
            labels.by_id[ident] = cls
            if response:
                self.responses.add(ident)
            labels.rows[cls] = labels.rows.get(cls, 0) + 1
        labels.unreadable += self.unreadable
        rng = random.Random(seed)
        out: list[str] = []
        for k in sorted(by_interval):
            lines = by_interval[k]
            rng.shuffle(lines)
            out.extend(lines)
        return ("\n".join(out) + "\n").encode()


def events_as_vpc(events: Iterable[Event], interval_s: int) -> tuple[list[Event], dict[str, list[str]]]:
    """Every bidirectional flow event (the simulator's, a Zeek conn's) as the VPC Flow Log records of
    its connection, the way ``VpcExport`` writes a Zeek capture: one record per direction that
    carried packets, 5-tuple and aggregation interval, whole seconds, no flags, no reverse
    counters; a rejected connection has no record back. Other events pass as they are. Returns the
    events sorted by time (the records' disorder within an interval is the captures' test, not
    this one's) and, for each record, the ids of the events it was made of (at most 16)."""
    records: dict[Record, list[Any]] = {}
    out: list[Event] = []
    for ev in events:
        if not isinstance(ev, FlowEvent) or ev.source in ("vpcflow", "netflow"):
            out.append(ev)
            continue
        t1 = ev.ts / 1000
        t0 = t1 - ev.duration_ms / 1000
        row = {
            "proto": ev.proto, "id.orig_h": ev.src_ip, "id.resp_h": ev.dst_ip, "id.orig_p": str(ev.src_port),
            "id.resp_p": str(ev.dst_port), "ts": repr(t0), "duration": repr(t1 - t0),
            "orig_pkts": str(ev.packets_out), "orig_ip_bytes": str(ev.bytes_out),
            "resp_pkts": "0" if ev.action == "reject" else str(ev.packets_in),
            "resp_ip_bytes": "0" if ev.action == "reject" else str(ev.bytes_in),
        }  # fmt: skip
        for key, p, b, lo, hi, _response in vpc_pieces(row, interval_s):
            rec = records.get(key)
            if rec is None:
                records[key] = [p, b, lo, hi, ev, [ev.id]]
                continue
            rec[0] += p
            rec[1] += b
            rec[2], rec[3] = min(rec[2], lo), max(rec[3], hi)
            if len(rec[5]) < 16:
                rec[5].append(ev.id)
    origins: dict[str, list[str]] = {}
    extra = {"version": 2, "account-id": _ACCOUNT, "interface-id": _ENI}
    for (_k, src, dst, sport, dport, proto), (p, b, lo, hi, first, ids) in records.items():
        line = f"2 {_ACCOUNT} {_ENI} {src} {dst} {sport} {dport} {proto} {p} {b} {lo} {hi} ACCEPT OK"
        ident = _vpc_id(line.encode())
        origins[ident] = ids
        out.append(FlowEvent(
            id=ident, ts=hi * 1000, source="vpcflow", tenant=first.tenant, host=first.host, vm=first.vm,
            extra=dict(extra), src_ip=src, dst_ip=dst, src_port=int(sport), dst_port=int(dport),
            proto=first.proto, bytes_out=b, packets_out=p, duration_ms=(hi - lo) * 1000,
            action="reject" if first.action == "reject" and src == first.src_ip else "accept",
        ))  # fmt: skip
    out.sort(key=lambda e: (e.ts, e.id))
    return out, origins


def with_origins(alert: Alert, origins: Mapping[str, list[str]]) -> Alert:
    """``alert`` with the evidence ids of re-exported records replaced by the events they came from."""
    ids = alert.evidence.get("event_ids")
    if not ids:
        return alert
    back = [o for i in ids for o in origins.get(i, [i])]
    return msgspec.structs.replace(alert, evidence={**alert.evidence, "event_ids": back})


Feed = Callable[[list[Path], LabelRead, _EngineSink], int]
"""Re-export a group of a capture's files into the sink (labels and ``sink.responses`` filled);
returns the records written."""


def score_reexport(name: str, data_dir: str | Path, lateness: Lateness, feed: Feed) -> dict[str, Any]:
    """The scorecard figures of a Zeek capture re-exported by ``feed``: a day file is another host's
    day (a fresh engine each, as in the scorecard); the files of one capture are one stream (Zeek
    cut it into hourly files, and a long connection's pieces belong to their own times)."""
    capture = CAPTURES[name]
    if capture.fmt != "zeek":
        raise ValueError(f"{name}: only Zeek captures are re-exported (its records are {capture.fmt})")
    files = capture.files(Path(data_dir))
    if not files:
        raise FileNotFoundError(f"no files of {name} under {Path(data_dir) / capture.folder}")
    cfg = DetectorConfig.default()
    registry = TenantRegistry.from_dict({"tenants": [{"id": name, "cidrs": list(capture.cidrs)}]})

    def new_engine() -> DetectionEngine:
        return DetectionEngine(all_detectors(cfg), DetectionContext(registry, cfg), lateness=lateness)

    labels = LabelRead({}, {})
    sink = _EngineSink(new_engine(), labels, registry)
    engines = [sink.engine]
    host_days: dict[str, HostDays] = {}
    records = 0
    t0 = time.perf_counter()
    for n, group in enumerate([[p] for p in files] if capture.day_files else [files]):
        if n:
            sink.finish()
            sink.end_file(host_days)
            sink.engine = new_engine()
            engines.append(sink.engine)
        records += feed(group, labels, sink)
    sink.finish()
    sink.end_file(host_days)
    scored = score_classes(
        capture.scored_classes(), sink.flows, index_alerts(sink.alerts, engines[0]), host_days
    )
    return {
        "files": len(files),
        "records": records,
        "events": sink.events,
        "dlq": sink.dlq,
        "events_without_label": sink.unmatched,
        "labelled_records": dict(sorted(labels.rows.items())),
        **engine_figures(sink, engines, scored),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def evaluate_as_vpc(name: str, data_dir: str | Path, interval_s: int = 600) -> dict[str, Any]:
    """The scorecard of one Zeek capture re-exported as VPC Flow Logs (see the module docstring)."""
    skipped = 0

    def feed(group: list[Path], labels: LabelRead, sink: _EngineSink) -> int:
        nonlocal skipped
        export = VpcExport(CAPTURES[name], interval_s)
        for path in group:
            export.add_file(path)
        data = export.publish(labels)
        sink.responses = frozenset(export.responses)
        skipped += run_ingest(io.BytesIO(data), "vpcflow", registry=sink.registry, sink=sink).skipped
        return data.count(b"\n")

    result = score_reexport(
        name, data_dir, Lateness.for_flows(OUT_OF_ORDERNESS_MS, VPC_EXPORT_DELAY_MS), feed
    )
    return {
        "format": f"vpcflow (re-exported from zeek, {interval_s} s aggregation)",
        **result,
        "skipped": skipped,
    }


def reexport_cli(prog: str, doc: str, evaluate: Callable[[str, Path, argparse.Namespace], dict[str, Any]],
                 out: str, argv: list[str] | None, *, interval: bool = False, minutes: bool = False) -> int:  # fmt: skip
    """The command of a re-export: ``--dataset``, ``--data-dir``, ``--out`` (and ``--interval-s``, or
    ``--minutes``), each capture's table printed, the results written with the run they came from
    (per interval, or per resolution of the start times)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    ap.add_argument("--dataset", default="all", choices=(*ZEEK_CAPTURES, "all"))
    if interval:
        ap.add_argument(
            "--interval-s", type=int, default=600, choices=(60, 600), help="VPC aggregation interval"
        )
    if minutes:
        ap.add_argument("--minutes", action="store_true", help="start times to the minute, as CIC-IDS2017")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path(out))
    args = ap.parse_args(argv)
    if not args.data_dir.is_dir():
        ap.error(f"--data-dir {args.data_dir}: no such directory")
    results: dict[str, dict[str, Any]] = {}
    for name in ZEEK_CAPTURES if args.dataset == "all" else (args.dataset,):
        try:
            results[name] = evaluate(name, args.data_dir, args)
        except FileNotFoundError as exc:
            ap.error(str(exc))
        print(table({name: results[name]}), flush=True)
    data: dict[str, Any] = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {}
    run = {"command": f"python -m {prog.split()[-1]} " + " ".join(argv or []),
           **machine_facts(Path(__file__).resolve().parents[2])}  # fmt: skip
    if interval:
        key = f"interval_{args.interval_s}s"
    elif minutes:
        key = "start_times_to_the_minute" if args.minutes else "start_times_to_the_second"
    else:
        key = "captures"
    section = data.setdefault(key, {})
    for name, result in results.items():
        section[name] = {**result, "run": run}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**data, "method": doc}, indent=1) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    return reexport_cli("python -m detectors.evaluation.as_vpc", __doc__ or "",
                        lambda name, data_dir, args: evaluate_as_vpc(name, data_dir, args.interval_s),
                        "results/real-scorecard-vpc.json", argv, interval=True)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
