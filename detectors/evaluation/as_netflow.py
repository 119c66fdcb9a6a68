"""The real Zeek captures re-exported as NetFlow v5/v9 records: the telecoms' format, through the
same scorecard.

    python -m detectors.evaluation.as_netflow [--dataset NAME|all] [--data-dir DIR] \
        [--out results/real-scorecard-netflow.json]

What a router or probe exporting NetFlow v5/v9 writes (Cisco, "NetFlow Version 9 Flow-Record
Format"; the ``ip flow-cache timeout`` defaults: active 30 minutes, inactive 15 seconds), and what
differs from Zeek:

- one record per direction (the flow cache keys on the 5-tuple one way), none for a direction that
  carried nothing, and no reverse counters;
- ``tcp_flags``: the OR of the flags of every packet of the record, so a SYN that was never
  acknowledged is a record with SYN and no ACK, and both sides of a completed connection show SYN
  and ACK;
- a record per active timeout: a connection longer than 30 minutes is cut every 30 minutes from
  its first packet, its packets and bytes shared at a constant rate;
- records written when they end (the flow's last packet, or the active timeout), so they arrive
  in the order of their ends.

Each Zeek ``conn`` record's directions become those records, with the flags its ``history``
letters name (upper case the originator's, lower case the responder's: ``S``/``s`` SYN, ``H``/``h``
SYN-ACK, ``A``/``a`` ACK, ``D``/``d`` data with PSH and ACK, ``F``/``f`` FIN, ``R``/``r`` RST; a
record without history gets no flags). The records are built as the ``netflow`` parser builds its
events (``source`` netflow, ``tcp_flags`` in ``extra``), labelled with their connection's class and
scored from its initiator, fed in the order of their ends with the job's allowance for flows
(``flow_export_delay_ms``, 6 minutes: NetFlow's records of long flows come at the active timeout).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from detectors.engine import Lateness
from detectors.evaluation.as_vpc import (
    classified_rows,
    conn_directions,
    constant_rate,
    reexport_cli,
    score_reexport,
    timeout_pieces,
    zeek_number,
)
from detectors.evaluation.captures import CAPTURES, LabelRead
from detectors.evaluation.real import _EngineSink
from detectors.flowdir import ACK, FIN, RST, SYN
from ingest.schema import FlowEvent, event_id

__all__ = ["ACTIVE_TIMEOUT_S", "evaluate_as_netflow", "history_flags", "main", "netflow_records"]

ACTIVE_TIMEOUT_S: Final = 1800
FLOW_EXPORT_DELAY_MS: Final = 360_000  # the job's default allowance for flows
OUT_OF_ORDERNESS_MS: Final = 2_000
_PSH: Final = 0x08
_LETTERS: Final = {"s": SYN, "h": SYN | ACK, "a": ACK, "d": _PSH | ACK, "f": FIN, "r": RST}
_PROTO: Final = {"tcp": "tcp", "udp": "udp", "icmp": "icmp"}


def history_flags(history: str) -> tuple[int, int]:
    """The OR of the TCP flags a Zeek ``history`` shows for (originator, responder)."""
    orig = resp = 0
    for c in history:
        flag = _LETTERS.get(c.lower(), 0)
        if c.isupper():
            orig |= flag
        else:
            resp |= flag
    return orig, resp


def netflow_records(row: Mapping[str, str], n: int, tenant: str) -> list[tuple[FlowEvent, bool]]:
    """The NetFlow records of one Zeek ``conn`` row (``n``: its position, for unique ids), each with
    whether it is the responder's direction."""
    proto = _PROTO.get(row.get("proto", ""))
    if proto is None:
        return []
    t0 = zeek_number(row["ts"])
    t1 = t0 + zeek_number(row.get("duration", "-"))
    orig_flags, resp_flags = history_flags(row.get("history", "-").strip("-")) if proto == "tcp" else (0, 0)
    out: list[tuple[FlowEvent, bool]] = []
    for src, dst, sport_text, dport_text, packets, total, response in conn_directions(row):
        sport, dport = int(zeek_number(sport_text)), int(zeek_number(dport_text))
        flags = resp_flags if response else orig_flags
        for k, lo, hi, p, b in constant_rate(
            packets, total, t0, t1, timeout_pieces(t0, t1, ACTIVE_TIMEOUT_S)
        ):
            ident = event_id("netflow", f"{n}/{k}/{src}:{sport}>{dst}:{dport}".encode())
            out.append((FlowEvent(
                id=ident, ts=int(hi * 1000), source="netflow", tenant=tenant, src_ip=src, dst_ip=dst,
                src_port=sport, dst_port=dport, proto=proto, bytes_out=b, packets_out=p,
                duration_ms=int((hi - lo) * 1000), extra={"tcp_flags": flags} if proto == "tcp" else {},
            ), response))  # fmt: skip
    return out


def evaluate_as_netflow(name: str, data_dir: str | Path) -> dict[str, Any]:
    """The scorecard of one Zeek capture re-exported as NetFlow (see the module docstring)."""
    capture = CAPTURES[name]

    def feed(group: list[Path], labels: LabelRead, sink: _EngineSink) -> int:
        events: list[FlowEvent] = []
        responses: set[str] = set()
        for n, row, cls in classified_rows(capture, group, labels):
            for ev, response in netflow_records(row, n, name):
                events.append(ev)
                labels.by_id[ev.id] = cls
                labels.rows[cls] = labels.rows.get(cls, 0) + 1
                if response:
                    responses.add(ev.id)
        events.sort(key=lambda e: (e.ts, e.id))  # exported when they end
        sink.responses = frozenset(responses)
        for i in range(0, len(events), 50_000):
            sink.send_events(list(events[i : i + 50_000]))
        return len(events)

    lateness = Lateness.for_flows(OUT_OF_ORDERNESS_MS, FLOW_EXPORT_DELAY_MS)
    result = score_reexport(name, data_dir, lateness, feed)
    return {
        "format": f"netflow (re-exported from zeek, active timeout {ACTIVE_TIMEOUT_S} s)",
        **result,
        "skipped": 0,
    }


def main(argv: list[str] | None = None) -> int:
    return reexport_cli("python -m detectors.evaluation.as_netflow", __doc__ or "",
                        lambda name, data_dir, _args: evaluate_as_netflow(name, data_dir),
                        "results/real-scorecard-netflow.json", argv)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
