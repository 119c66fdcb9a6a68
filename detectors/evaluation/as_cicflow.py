"""The real Zeek captures re-exported as CICFlowMeter CSV: the format of the public intrusion
datasets and of many research feeds, through the project's ``cicflowmeter`` parser and the same
scorecard.

    python -m detectors.evaluation.as_cicflow [--dataset NAME|all] [--minutes] [--data-dir DIR] \
        [--out results/real-scorecard-cicflow.json]

What CICFlowMeter's 2017-2018 releases (CICFlowMeter-V3, ``FlowGenerator`` and ``BasicFlow``;
the CIC-IDS2017 and CSE-CIC-IDS2018 papers) write, and what differs from Zeek:

- one bidirectional record per flow, its source the sender of the flow's first packet: ``Fwd``
  counters are that side's, ``Bwd`` the other's, and byte counts are payload only (``Total Length
  of Fwd Packets``), as Zeek's ``orig_bytes``/``resp_bytes``;
- the flag counts hold the first packet's flags only (``BasicFlow`` counts flags in its
  constructor, not in ``addPacket``): a record that began with a SYN shows SYN and nothing else;
- a record ends at the first packet with FIN, that packet included; the packets after it (the
  other side's FIN-ACK, the last ACK) open a new record, whose source is the other side and whose
  flags are FIN and ACK, or ACK alone when the other side never closed;
- a record ends when its flow timeout (120 s from its first packet) has passed, and the next
  packet opens another record, which began mid-connection (its flags an ACK);
- records written when they end, so in the order of their ends; a tail opened by the last packets
  of a connection has no later packet to end it, and is written when its flow timeout passes;
- ``Timestamp`` is the first packet's time, day first (``dd/mm/yyyy HH:MM:SS``); CIC-IDS2017's
  CSVs write it to the minute only (``--minutes``), so every record of a minute starts at ``:00``;
  ``Flow Duration`` is microseconds.

Each Zeek ``conn`` record (TCP and UDP: the 2017-2018 releases read no ICMP) becomes those
records: its packets and payload bytes per direction shared at a constant rate over the 120 s
pieces (Zeek keeps no timing inside a connection), the piece that holds the first FIN minus the
tail's packets, and the tail. ``history`` says which side closed first (``F`` the originator,
``f`` the responder), whether the connection began with the originator's SYN (``S``), and
whether the other side closed too. A piece after the first is the originator's when it sent
packets in it (which side sent a piece's first packet Zeek does not keep). Rows are CSV lines with
CIC-IDS2017's header names and the connection's label, parsed by the ``cicflowmeter`` parser
(UTC), fed in the order of their ends with the job's allowance for flows
(``flow_export_delay_ms``, 6 minutes). A tail written at its flow timeout ends 120 s before it is
written, within that allowance; the 2017-2018 releases keep it until the next packet of the
same 5-tuple or the end of the capture, which only makes it later (and dropped as late).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

from detectors.engine import Lateness
from detectors.evaluation.as_vpc import (
    classified_rows,
    reexport_cli,
    score_reexport,
    timeout_pieces,
    zeek_number,
)
from detectors.evaluation.captures import CAPTURES, LabelRead
from detectors.evaluation.real import _EngineSink
from detectors.flowdir import ACK, FIN, SYN
from ingest.pipeline import run_ingest
from ingest.schema import Event, FlowEvent, event_id_of

__all__ = [
    "FLOW_TIMEOUT_S",
    "HEADER",
    "CicRecord",
    "cic_event",
    "cic_line",
    "cic_records",
    "evaluate_as_cicflow",
    "events_as_cicflow",
    "main",
]

FLOW_TIMEOUT_S: Final = 120  # CICFlowMeter's default flow timeout (120,000,000 µs)
FLOW_EXPORT_DELAY_MS: Final = 360_000  # the job's default allowance for flows
OUT_OF_ORDERNESS_MS: Final = 2_000
HEADER: Final = (
    "Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp, Flow Duration,"
    " Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets, Total Length of Bwd Packets,"
    "FIN Flag Count, SYN Flag Count, RST Flag Count, PSH Flag Count, ACK Flag Count, URG Flag Count,"
    " CWE Flag Count, ECE Flag Count, Label"
)  # CIC-IDS2017's names, leading spaces included
_PROTO: Final = {"tcp": 6, "udp": 17}
_cic_id: Final = event_id_of("cicflowmeter")


class CicRecord(NamedTuple):
    """One CSV row to be: the source is the first packet's sender; ``response``: that sender is the
    connection's responder (the row is scored from the initiator); ``written``: when the exporter
    writes it (seconds)."""

    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    start: float
    end: float
    packets_fwd: int
    packets_bwd: int
    bytes_fwd: int
    bytes_bwd: int
    flags: int
    response: bool
    written: float


def _shares(total: int, cuts: list[float], t0: float, t1: float) -> list[int]:
    """``total`` shared over the pieces ending at ``cuts`` at a constant rate over ``[t0, t1]``."""
    span, out, sent = t1 - t0, [], 0
    for hi in cuts:
        upto = total if span <= 0 or hi >= t1 else round(total * (hi - t0) / span)
        out.append(upto - sent)
        sent = upto
    return out


def _paired(orig: list[int], resp: list[int]) -> tuple[list[int], list[int]]:
    """Pieces of a connection both sides spoke in, by the packets each sent in each: a piece where
    only one side did gives its packets to the next one (the last to the latest piece both spoke
    in). Queries and their answers come milliseconds apart, so a flow timeout falls between the two
    almost never; the constant rate alone would cut a 64 s NTP poll's 14 packets into 120 s pieces
    of a lone answer, records of "the server" that a client never answered."""
    if not sum(orig) or not sum(resp):
        return orig, resp
    orig, resp = orig[:], resp[:]
    for k in range(len(orig) - 1):
        if (orig[k] == 0) != (resp[k] == 0):
            orig[k + 1] += orig[k]
            resp[k + 1] += resp[k]
            orig[k] = resp[k] = 0
    last = len(orig) - 1
    both = [k for k in range(last) if orig[k] and resp[k]]
    if (orig[last] == 0) != (resp[last] == 0) and both:
        orig[both[-1]] += orig[last]
        resp[both[-1]] += resp[last]
        orig[last] = resp[last] = 0
    return orig, resp


def _along(total: int, packets: list[int]) -> list[int]:
    """``total`` bytes shared over the pieces in proportion to a direction's packets in each."""
    count, out, sent, seen = sum(packets), [], 0, 0
    for p in packets:
        seen += p
        upto = total if seen >= count else round(total * seen / count)
        out.append(upto - sent)
        sent = upto
    return out


def _first_fin(history: str) -> str | None:
    """``F`` (the originator closed first), ``f`` (the responder did), or None."""
    for c in history:
        if c in "Ff":
            return c
    return None


def cic_records(row: Mapping[str, str]) -> list[CicRecord]:
    """The CICFlowMeter records of one Zeek ``conn`` row (see the module docstring)."""
    proto = _PROTO.get(row.get("proto", ""))
    if proto is None:
        return []
    orig, resp = row["id.orig_h"], row["id.resp_h"]
    oport, rport = int(zeek_number(row["id.orig_p"])), int(zeek_number(row["id.resp_p"]))
    opk, rpk = int(zeek_number(row.get("orig_pkts", "0"))), int(zeek_number(row.get("resp_pkts", "0")))
    ob, rb = int(zeek_number(row.get("orig_bytes", "0"))), int(zeek_number(row.get("resp_bytes", "0")))
    if opk + rpk == 0:
        return []  # Zeek saw no packet (its capture lost them): CICFlowMeter would write nothing
    t0 = zeek_number(row["ts"])
    t1 = t0 + zeek_number(row.get("duration", "-"))
    history = row.get("history", "-").strip("-") if proto == 6 else ""
    # The tail after the first FIN: the other side's answer (FIN-ACK, or its ACK if it never
    # closed) and, when it closed too, the closer's last ACK. Only packets the row has to spare.
    closer = _first_fin(history)
    tail_from_closer = tail_from_other = 0
    if closer is not None:
        closer_pkts, other_pkts = (opk, rpk) if closer == "F" else (rpk, opk)
        other_closed = ("f" if closer == "F" else "F") in history
        tail_from_other = 1 if other_pkts >= 2 else 0
        tail_from_closer = 1 if tail_from_other and other_closed and closer_pkts >= 2 else 0
    tail_o, tail_r = (
        (tail_from_closer, tail_from_other) if closer == "F" else (tail_from_other, tail_from_closer)
    )
    cuts = [(lo, hi) for _k, lo, hi in timeout_pieces(t0, t1, FLOW_TIMEOUT_S)]
    ends = [hi for _, hi in cuts]
    o_pk, r_pk = _paired(_shares(opk - tail_o, ends, t0, t1), _shares(rpk - tail_r, ends, t0, t1))
    o_b, r_b = _along(ob, o_pk), _along(rb, r_pk)
    out: list[CicRecord] = []
    for k, (lo, hi) in enumerate(cuts):
        if o_pk[k] <= 0 and r_pk[k] <= 0:
            continue
        if k == 0:
            flags = (SYN if history.startswith("S") else ACK) if proto == 6 else 0
        else:
            flags = ACK if proto == 6 else 0
        if o_pk[k] > 0 or k == 0:
            out.append(CicRecord(orig, resp, oport, rport, proto, lo, hi, o_pk[k], r_pk[k], o_b[k], r_b[k],
                                 flags, False, hi))  # fmt: skip
        else:
            out.append(CicRecord(resp, orig, rport, oport, proto, lo, hi, r_pk[k], o_pk[k], r_b[k], o_b[k],
                                 flags, True, hi))  # fmt: skip
    if tail_from_other:
        other_closed = tail_from_closer > 0
        flags = FIN | ACK if other_closed else ACK
        if closer == "F":  # the responder answers first
            out.append(CicRecord(resp, orig, rport, oport, proto, t1, t1, tail_r, tail_o, 0, 0, flags, True,
                                 t1 + FLOW_TIMEOUT_S))  # fmt: skip
        else:
            out.append(CicRecord(orig, resp, oport, rport, proto, t1, t1, tail_o, tail_r, 0, 0, flags, False,
                                 t1 + FLOW_TIMEOUT_S))  # fmt: skip
    return out


def _stamp(seconds: float, minutes: bool) -> str:
    t = datetime.fromtimestamp(seconds, UTC)
    return t.strftime("%d/%m/%Y %H:%M" if minutes else "%d/%m/%Y %H:%M:%S")


def _written_times(rec: CicRecord, minutes: bool) -> tuple[float, int]:
    """``Timestamp`` (seconds, whole, or whole minutes as CIC-IDS2017) and ``Flow Duration`` (µs)."""
    start = rec.start - rec.start % 60 if minutes else float(int(rec.start))
    return start, max(0, round((rec.end - rec.start) * 1_000_000))


def cic_line(rec: CicRecord, flow_no: str, label: str, *, minutes: bool = False) -> str:
    """The CSV row of ``rec`` under ``HEADER``: ``Timestamp`` is the first packet's time (to the
    second, or to the minute as CIC-IDS2017 wrote it), ``Flow Duration`` microseconds."""
    start, duration_us = _written_times(rec, minutes)
    flag_counts = [1 if rec.flags & bit else 0 for bit in (FIN, SYN, 0x04, 0x08, ACK, 0x20, 0x80, 0x40)]
    cells = [
        f"{rec.src}-{rec.dst}-{rec.sport}-{rec.dport}-{rec.proto}-{flow_no}", rec.src, rec.sport, rec.dst,
        rec.dport, rec.proto, _stamp(start, minutes), duration_us, rec.packets_fwd, rec.packets_bwd,
        rec.bytes_fwd, rec.bytes_bwd, *flag_counts, label,
    ]  # fmt: skip
    return ",".join(map(str, cells))


def cic_event(rec: CicRecord, ident: str, like: FlowEvent, *, minutes: bool = False) -> FlowEvent:
    """The event the ``cicflowmeter`` parser makes of ``rec``'s row (``cic_line``), owned as ``like``."""
    start, duration_us = _written_times(rec, minutes)
    duration_ms = duration_us // 1000  # as the parser reads ``Flow Duration``
    return FlowEvent(
        id=ident, ts=int(start) * 1000 + duration_ms, source="cicflowmeter", tenant=like.tenant, host=like.host,
        vm=like.vm, extra={"cic_flags": rec.flags} if rec.proto == 6 else {"cic_flags": 0}, src_ip=rec.src,
        dst_ip=rec.dst, src_port=rec.sport, dst_port=rec.dport, proto="tcp" if rec.proto == 6 else "udp",
        bytes_out=rec.bytes_fwd, bytes_in=rec.bytes_bwd, packets_out=rec.packets_fwd,
        packets_in=rec.packets_bwd, duration_ms=duration_ms,
    )  # fmt: skip


_WEB_PORTS: Final = frozenset({80, 443, 8080, 8443})
_SERVER_CLOSES_AFTER_MS: Final = 5_000  # Apache httpd's KeepAliveTimeout default


def _sim_row(ev: FlowEvent) -> dict[str, str]:
    """A bidirectional event (the simulator's) as the Zeek ``conn`` row of its connection: payload
    bytes its IP bytes less a bare header a packet; an answered TCP connection opened with a SYN and
    closed by its client first (``ShADadFf``), or by its server first when it is a web connection
    that lasted 5 s or more (``ShADadfF``: a server closes an idle keep-alive connection, or one held
    open by a slow client, on its own timeout); one refused with a reset (``Sr``), one unanswered a
    lone SYN (``S``)."""
    header = 40 if ev.proto == "tcp" else 28
    refused = ev.action == "reject" and ev.packets_in > 0
    answered = ev.packets_in > 0 and not refused
    server_first = ev.dst_port in _WEB_PORTS and ev.duration_ms >= _SERVER_CLOSES_AFTER_MS
    history = ("ShADadfF" if server_first else "ShADadFf") if answered else "Sr" if refused else "S"
    t1 = ev.ts / 1000
    return {
        "proto": ev.proto, "id.orig_h": ev.src_ip, "id.resp_h": ev.dst_ip, "id.orig_p": str(ev.src_port),
        "id.resp_p": str(ev.dst_port), "ts": repr(t1 - ev.duration_ms / 1000), "duration": repr(ev.duration_ms / 1000),
        "orig_pkts": str(ev.packets_out), "resp_pkts": str(ev.packets_in),
        "orig_bytes": str(max(0, ev.bytes_out - header * ev.packets_out)),
        "resp_bytes": str(max(0, ev.bytes_in - header * ev.packets_in)), "history": history,
    }  # fmt: skip


def events_as_cicflow(
    events: Iterable[Event], *, minutes: bool = False
) -> tuple[list[Event], dict[str, list[str]]]:
    """Every bidirectional flow event (the simulator's) as the CICFlowMeter records of its connection,
    as ``cic_records`` writes a Zeek row (``_sim_row``); other events pass as they are. Returns the
    events sorted by time and, for each record, the id of the event it came from."""
    out: list[Event] = []
    origins: dict[str, list[str]] = {}
    for ev in events:
        if not isinstance(ev, FlowEvent) or ev.proto not in ("tcp", "udp") or ev.source == "cicflowmeter":
            out.append(ev)
            continue
        for k, rec in enumerate(cic_records(_sim_row(ev))):
            ident = _cic_id(f"{ev.id}/{k}".encode())
            origins[ident] = [ev.id]
            out.append(cic_event(rec, ident, ev, minutes=minutes))
    out.sort(key=lambda e: (e.ts, e.id))
    return out, origins


def evaluate_as_cicflow(name: str, data_dir: str | Path, *, minutes: bool = False) -> dict[str, Any]:
    """The scorecard of one Zeek capture re-exported as CICFlowMeter CSV (see the module docstring)."""
    capture = CAPTURES[name]
    skipped = 0

    def feed(group: list[Path], labels: LabelRead, sink: _EngineSink) -> int:
        nonlocal skipped
        rows: list[tuple[float, str, str, bool]] = []  # (written, line, class, response)
        for n, row, cls in classified_rows(capture, group, labels):
            for k, rec in enumerate(cic_records(row)):
                rows.append((rec.written, cic_line(rec, f"{n}.{k}", cls, minutes=minutes), cls, rec.response))
        rows.sort(key=lambda r: r[0])  # written when they end
        responses: set[str] = set()
        for _written, line, cls, response in rows:
            ident = _cic_id(line.encode())
            labels.by_id[ident] = cls
            labels.rows[cls] = labels.rows.get(cls, 0) + 1
            if response:
                responses.add(ident)
        sink.responses = frozenset(responses)
        data = "\n".join([HEADER, *(line for _w, line, _c, _r in rows)]) + "\n"
        skipped += run_ingest(
            io.BytesIO(data.encode()), "cicflowmeter", registry=sink.registry, sink=sink
        ).skipped
        return len(rows)

    lateness = Lateness.for_flows(OUT_OF_ORDERNESS_MS, FLOW_EXPORT_DELAY_MS)
    result = score_reexport(name, data_dir, lateness, feed)
    when = "to the minute, as CIC-IDS2017" if minutes else "to the second"
    return {
        "format": f"cicflowmeter (re-exported from zeek, flow timeout {FLOW_TIMEOUT_S} s, start times {when})",
        **result,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    return reexport_cli("python -m detectors.evaluation.as_cicflow", __doc__ or "",
                        lambda name, data_dir, args: evaluate_as_cicflow(name, data_dir, minutes=args.minutes),
                        "results/real-scorecard-cicflow.json", argv, minutes=True)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
