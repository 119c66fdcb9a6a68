"""One source probes many ports or hosts and most probes fail (Zeek-style scan detection).

A probe is a connection attempt whose source is not a responder (``detectors.flowdir``): refused or
unanswered. Records of one-way formats (VPC Flow Logs, NetFlow, IPFIX) carry no reverse counters:
their answer is the record with the reversed 5-tuple, so each window keeps a table of the one-way
records it saw (``FlowTable``, at most ``engine.max_keys_per_window`` keys) and decides their
probes when it closes: a reverse record that started earlier makes the probe a response, one that
refuses (a reset) leaves it a failed probe, any other answers it.

When the table is full, records are dropped (``counters["overflow"]``), and a probe whose reverse
record is missing may have lost it there: it is undecided, not failed (``counters["undecided"]``).
As VPC Flow Logs every record is one-way: a simulated half hour of 36 VMs made 133,000 records in
a 5-minute window, the table held the first 50,000, and the answers it dropped had turned VMs'
ordinary traffic into probes that failed (195 false scans in 30 minutes). A window whose table
overflowed judges its one-way probes no more; raise ``engine.max_keys_per_window`` for tenants
whose one-way records exceed it.

A scan moves on; a poller comes back. A source sweeping one service (a horizontal sweep: at most
8 ports) across many hosts, whose failed pairs in a window are mostly (``params.repeat_overlap``,
0.8) the failed pairs of its previous failing window, if that ended within
``params.repeat_within_s`` (1 h: SNMP pollers run every 1 to 15 minutes, Cacti, LibreNMS and
Nagios' checks every 5 by default), is polling the same devices, not discovering new ones, and is
raised once, in its first window (the repeats are counted as ``repeated_sweep``). Monitoring
stations are the look-alike: an SNMP manager polls its devices every few minutes on udp/161, and
an agent discards a request whose community fails authentication without answering (RFC 1157
section 4.1), so a station with a stale community string or devices that are down fails on the
same list all day (CTU-13: one station, 28 devices every 5 minutes, 25 alerts in 2 h before).
Only the last horizontal sweep of each source raised is kept (``engine.max_keys_per_window``
sources). A port scan of a host repeated (nmap run again with another technique, -sS, -sT, -sF,
-sX, -sN, -sA against the same 1,000 ports) is vertical, not a poller's shape, and is raised every
window.

A peer-to-peer client is not scanning. Its overlay (BitTorrent's DHT, eMule's Kad, Skype's and
P2P botnets' peer lists) runs over UDP from the one port the client listens on, to peers that
each listen on a port of their own chosen at random at install, many of them offline or behind a
NAT that drops the packet: hundreds of failed (host, port) pairs in a window, the ports as many as
the hosts, while the online peers answer. A UDP scan needs a service's payload to be answered, so
scanners aim at known service ports (nmap's ``nmap-payloads``, ZMap's probe modules, masscan's
templates: DNS, NTP, SNMP...), and random closed ports answer an empty datagram with nothing or
an ICMP error (a failure). So a mixed window whose failed pairs are >= 90 % UDP from at most two
source ports, >= 90 % of them to ports >= 1024, with distinct ports >= half the failed pairs and
>= 10 % of the pairs tried answered, is counted as ``peer_to_peer`` and not raised. CTU-13: two
campus hosts, each from its one port (7103, 13363), one to 175-308 ports on 186-388 hosts every
5 minutes with about a quarter of the pairs answered; 22 alerts in 2 h before. An empty-payload
UDP sweep of random ports is answered by no one and stays a scan. The overlay of a P2P botnet is
the command-and-control rules' matter, not a scan.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, Final, cast

from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import (
    ANSWER_MASK,
    ANSWERED,
    ONE_WAY,
    RESPONDER,
    ROLE_MASK,
    UNKNOWN,
    FlowKey,
    flow_key,
    reply_refuses,
    reverse_key,
)
from detectors.meta import DetectorMeta, technique
from detectors.state import FlowTable, Span, add_capped
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["FLOWS_PANE", "FailedProbeScan", "ScanState"]

FLOWS_PANE: Final = "@one-way flows"
"""Pane key of the window's ``FlowTable`` (never a (tenant, source) key)."""


# At most this many ports across more than two hosts: a horizontal sweep, the only shape a poller has.
_HORIZONTAL_PORTS: Final = 8
# The peer-to-peer overlay's shape (module docstring): its failed pairs nearly all UDP from at most
# two source ports, to registered or dynamic ports nearly all distinct, with peers answering.
_P2P_SOURCE_PORTS: Final = 2
_P2P_UDP_SHARE: Final = 0.9
_P2P_DISTINCT_PORTS: Final = 0.5  # distinct ports per failed pair: each peer listens on its own port
_P2P_MIN_ANSWERED: Final = 0.1  # of the pairs tried: online peers reply, random closed ports do not
_REGISTERED: Final = 1024

# What the detector does with a record, by its flow view (see observe_batch).
_SKIP, _ANSWERED, _FAILED, _PENDING, _TABLE = 0, 1, 2, 3, 4


def _action(view: int) -> int:
    one_way = _TABLE if view & ONE_WAY else 0
    answer = view & ANSWER_MASK
    if view & ROLE_MASK == RESPONDER:
        return one_way + _SKIP  # a response record is never a probe
    if answer == ANSWERED:
        return one_way + _ANSWERED
    if answer == UNKNOWN:
        # one-way: pending until the window's reverse records are known; bidirectional: no attempt
        # was seen (midstream traffic), so no probe
        return one_way + (_PENDING if one_way else _SKIP)
    return one_way + _FAILED


_ACTIONS: Final = tuple(_action(view) for view in range(32))


class ScanState:
    __slots__ = (
        "answered",
        "attempts",
        "high",
        "hosts",
        "packets",
        "pairs",
        "pending",
        "ports",
        "span",
        "sports",
        "udp",
    )

    def __init__(self) -> None:
        self.span = Span()
        self.pairs: set[tuple[str, int]] = set()
        self.hosts: set[str] = set()
        self.ports: set[int] = set()
        self.answered: set[tuple[str, int]] = set()  # distinct (host, port) pairs that answered it
        self.attempts = 0  # failed and pending attempts (records), repeats of a pair included
        self.packets = 0  # their packets (probes are a few packets each)
        # one-way attempts -> (ts, event id, whether its source is known to be the initiator, start)
        self.pending: dict[FlowKey, tuple[int, str, bool, int]] = {}
        # the failed pairs' UDP share, for the peer-to-peer overlay's shape (module docstring): how
        # many were UDP, their source ports (up to 3), and how many of them went to ports >= 1024
        self.udp = 0
        self.sports: set[int] = set()
        self.high = 0

    def __getstate__(self) -> tuple[object, ...]:
        return (
            self.span,
            self.pairs,
            self.hosts,
            self.ports,
            self.answered,
            self.pending,
            self.packets,
            self.attempts,
            self.udp,
            self.sports,
            self.high,
        )

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.pairs, self.hosts, self.ports, answered = s[:5]  # type: ignore[assignment]
        self.answered = answered if isinstance(answered, set) else set()  # an old count: not pairs
        self.pending = s[5] if len(s) > 5 else {}  # type: ignore[assignment]
        self.packets = s[6] if len(s) > 6 else 0  # type: ignore[assignment]
        self.attempts = s[7] if len(s) > 7 else 0  # type: ignore[assignment]
        self.udp, self.sports, self.high = s[8:11] if len(s) > 10 else (0, set(), 0)  # type: ignore[assignment]


def _shape(state: ScanState) -> str:
    """vertical (one or two hosts), horizontal (a few ports across hosts) or mixed."""
    if len(state.hosts) <= 2:
        return "vertical"
    return "horizontal" if len(state.ports) <= _HORIZONTAL_PORTS else "mixed"


def _peer_overlay(state: ScanState, failed: int, answered: int) -> bool:
    """A peer-to-peer client's contacts (module docstring): mixed, nearly all UDP from one or two
    source ports to registered or dynamic ports that are nearly all different, peers answering."""
    if _shape(state) != "mixed" or state.udp < _P2P_UDP_SHARE * failed:
        return False
    return (
        len(state.sports) <= _P2P_SOURCE_PORTS
        and state.high >= _P2P_UDP_SHARE * state.udp
        and len(state.ports) >= _P2P_DISTINCT_PORTS * failed
        and answered >= _P2P_MIN_ANSWERED * (failed + answered)
    )


class FailedProbeScan(WindowedDetector[ScanState]):
    meta = DetectorMeta(
        id="port_scan.failed_probe_scan",
        version="1.3.0",
        title="Port scan",
        category="port_scan",
        score=45,
        severity="medium",
        attack=(technique("Discovery", "T1046", "Network Service Discovery"),),
        kinds=frozenset({"flow"}),
        description="A source whose failed connection attempts (rejected, or no packet back) reach many "
        "distinct (host, port) pairs in one window: vertical (ports of one host) or horizontal (hosts). "
        "Response records are never probes, and a one-way record answered by its reverse record is "
        "not a failed one.",
        false_positives=(
            "vulnerability scanners and asset inventory run by the tenant or the provider "
            "(params.allowed_sources)",
            "a client retrying a dead service on many hosts",
        ),
        note="An internet source scanning one VM is common background; a tenant VM sweeping its own or "
        "other subnets suggests a compromised guest: check the VM's processes and recent logins.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "min_failed_pairs": int,
        "min_failed_share": float,
        "repeat_overlap": float,
        "repeat_within_s": int,
        "allowed_sources": list,
        "internal_score": int,
    }
    learned: ClassVar[tuple[str, ...]] = ("_swept",)

    def configure(self, config: DetectorConfig) -> None:
        self.min_pairs = int(self.params["min_failed_pairs"])
        self.min_failed_share = float(self.params["min_failed_share"])
        self.allowed = frozenset(self.params["allowed_sources"])
        self.internal_score = int(self.params["internal_score"])
        self.repeat_overlap = float(self.params["repeat_overlap"])
        self.repeat_within_ms = int(self.params["repeat_within_s"]) * 1000
        # (tenant, source) -> (end of its window, the pairs it failed on there): its latest sweep
        self._swept: dict[Hashable, tuple[int, frozenset[tuple[str, int]]]] = {}

    def new_state(self, key: Hashable) -> Any:
        return FlowTable() if key == FLOWS_PANE else ScanState()

    def observe_batch(self, batch: Batch) -> None:
        allowed, cap, state, actions = self.allowed, self.max_distinct, self.state, _ACTIONS
        # The pane of the current event time, cached locally: a batch spans seconds, a pane minutes.
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        for ev, view in zip(batch.flows, batch.flow_views, strict=True):
            try:
                action = actions[view]
                if action == _SKIP:
                    continue
                ts = ev.ts
                if action >= _TABLE:  # one-way: matched with its reverse record, or kept until it comes
                    action -= _TABLE
                    start = ev.ts - ev.duration_ms  # ts is when the flow was last seen
                    handled = self._match_reverse(ev, view, action, start)
                    if handled:
                        continue
                    if handled is None:  # no reverse yet: kept for it
                        table: FlowTable | None = state(ts, FLOWS_PANE)
                        if table is None or not table.add(
                            flow_key(ev), start, reply_refuses(ev), self.max_keys
                        ):
                            self.counters["overflow"] += 1
                        if action == _SKIP:
                            continue
                src = ev.src_ip
                if src in allowed:
                    continue
                key = (ev.tenant, src)
                if ts - ts % pane != cur:
                    bucket, cur = self.bucket(ts), ts - ts % pane
                if action == _ANSWERED:
                    seen: ScanState | None = bucket.get(key)
                    if seen is not None:  # answered probes count once the source has failed some
                        add_capped(seen.answered, (ev.dst_ip, ev.dst_port), cap)
                    continue
                st: ScanState | None = bucket.get(key)
                if st is None:
                    st = state(ts, key)  # created, or None when the pane is full (counted)
                    if st is None:
                        continue
                st.attempts += 1
                st.packets += ev.packets_out
                if action == _FAILED:
                    self._add_failed(st, ev.dst_ip, ev.dst_port, ev.ts, ev.id, ev.proto, ev.src_port)
                elif len(st.pending) < cap:  # one-way: decided by the reverse record at close
                    known = view & ROLE_MASK != UNKNOWN
                    st.pending[flow_key(ev)] = (ev.ts, ev.id, known, ev.ts - ev.duration_ms)
            except Exception as exc:
                self.error(ev, exc)

    def _match_reverse(self, ev: Any, view: int, action: int, start: int) -> bool | None:
        """Match a one-way record with its reverse if the pane's table holds it: both are decided now,
        as ``_resolve`` would at the close, and the reverse leaves the table, which so holds the
        records still waiting (probes, answers that came first) rather than a busy window's every
        connection. None: no reverse yet. True: nothing more to do with the record. False: go on
        with the record's own answer (its flags decided it)."""
        bucket = self.open_pane(ev.ts)
        table = None if bucket is None else bucket.get(FLOWS_PANE)
        if bucket is None or table is None:
            return None
        rev = reverse_key(ev)
        reply = table.seen.pop(rev, None)
        if reply is None:
            return None
        other: ScanState | None = bucket.get((ev.tenant, ev.dst_ip))
        waiting = None if other is None else other.pending.pop(rev, None)
        if other is not None and waiting is not None:  # the reverse was an attempt: this record decides it
            w_ts, w_id, w_initiator, w_start = waiting
            if w_initiator or start >= w_start:  # else the reverse was this record's response
                self._settle(other, rev, w_ts, w_id, reply_refuses(ev))
        if action != _PENDING:
            return action == _SKIP
        # An attempt whose answer came first, decided as at the close.
        if view & ROLE_MASK == UNKNOWN and reply[0] < start:
            return True  # the reverse record started first: this one is its response
        if ev.src_ip in self.allowed:
            return True
        st: ScanState | None = self.state(ev.ts, (ev.tenant, ev.src_ip))
        if st is None:
            return True
        st.attempts += 1
        st.packets += ev.packets_out
        self._settle(st, flow_key(ev), ev.ts, ev.id, reply[1])
        return True

    def _settle(self, st: ScanState, attempt: FlowKey, ts: int, event_id: str, failed: bool) -> None:
        """Decide one attempt of ``st``'s source: a failed probe (no answer, or a reset) or answered."""
        if failed:
            self._add_failed(st, attempt[2], attempt[3], ts, event_id, attempt[4], attempt[1])
        else:
            add_capped(st.answered, (attempt[2], attempt[3]), self.max_distinct)

    def _add_failed(
        self, st: ScanState, dst: str, port: int, ts: int, event_id: str, proto: str, sport: int
    ) -> None:
        cap = self.max_distinct
        pairs = st.pairs
        pair = (dst, port)
        if pair not in pairs and len(pairs) < cap:
            pairs.add(pair)
            st.span.add(ts, event_id, self.max_ids)
            add_capped(st.hosts, dst, cap)
            add_capped(st.ports, port, cap)
            if proto == "udp":
                st.udp += 1
                st.high += port >= _REGISTERED
                add_capped(st.sports, sport, _P2P_SOURCE_PORTS + 1)

    def _resolve(self, st: ScanState, table: FlowTable | None) -> None:
        """Decide the window's one-way attempts against the reverse records it saw."""
        seen = table.seen if table is not None else {}
        complete = table is not None and not table.dropped  # else a missing reverse may be a dropped one
        undecided = 0
        for key, (ts, event_id, initiator, start) in st.pending.items():
            reply = seen.get((key[2], key[3], key[0], key[1], key[4]))
            if reply is None and not complete:
                undecided += 1
            elif reply is None:
                self._settle(st, key, ts, event_id, True)  # nothing came back
            elif initiator or reply[0] >= start:  # else the reverse started first: this one answered it
                self._settle(st, key, ts, event_id, reply[1])  # failed when refused by a reset
        st.pending = {}
        if undecided:
            self.counters["undecided"] = self.counters.get("undecided", 0) + undecided

    def merge(self, into: Any, other: Any) -> None:
        if isinstance(into, FlowTable):
            into.merge(other, self.max_keys)
            return
        cap = self.max_distinct
        into.span.merge(other.span, self.max_ids)
        for p in other.pairs:
            add_capped(into.pairs, p, cap)
        for h in other.hosts:
            add_capped(into.hosts, h, cap)
        for port in other.ports:
            add_capped(into.ports, port, cap)
        for pair in other.answered:
            add_capped(into.answered, pair, cap)
        # a UDP pair failing in both panes counts twice here and once in pairs, so the UDP share can
        # only be overstated; panes merge only in a sliding window, and the default one does not slide
        into.udp += other.udp
        into.high += other.high
        for sport in other.sports:
            add_capped(into.sports, sport, _P2P_SOURCE_PORTS + 1)
        into.packets += other.packets
        into.attempts += other.attempts
        for key, value in other.pending.items():
            if len(into.pending) >= cap:
                break
            into.pending.setdefault(key, value)

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        table = states.get(FLOWS_PANE)
        out = []
        for key, st in states.items():
            if key == FLOWS_PANE:
                continue
            if st.pending:
                self._resolve(st, table)
            f = self.finish_key(window, key, st)
            if f is not None and not self._repeats(window, key, st):
                out.append(f)
        horizon = window.end - self.repeat_within_ms  # an older sweep is forgotten
        for stale in [k for k, (end, _) in self._swept.items() if end < horizon]:
            del self._swept[stale]
        return out

    def _repeats(self, window: Window, key: Hashable, st: ScanState) -> bool:
        """Whether the source failed mostly on the pairs of its previous sweep (module docstring);
        the window's pairs become its latest sweep."""
        swept = self._swept
        before = swept.get(key)
        if before is not None and before[0] > window.start:
            return False  # an overlapping window (sliding): the same sweep, not a return to it
        if _shape(st) != "horizontal":
            return False  # a poller checks a service on many devices: vertical and mixed scans never repeat
        if len(swept) < self.max_keys or key in swept:
            swept[key] = (window.end, frozenset(st.pairs))
        if before is None or before[0] < window.start - self.repeat_within_ms or self.repeat_overlap <= 0:
            return False
        again = len(st.pairs & before[1])
        if again < self.repeat_overlap * len(st.pairs):
            return False
        self.counters["repeated_sweep"] = self.counters.get("repeated_sweep", 0) + 1
        return True

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_swept", {})  # a state pickled before sweeps were kept

    def finish_key(self, window: Window, key: Hashable, state: ScanState) -> Finding | None:
        failed = len(state.pairs)
        answered = len(state.answered)
        if failed < self.min_pairs or failed < self.min_failed_share * (failed + answered):
            return None  # few failures, or a busy client's few among many answered (P2P, crawlers)
        if _peer_overlay(state, failed, answered):
            self.counters["peer_to_peer"] = self.counters.get("peer_to_peer", 0) + 1
            return None
        tenant, src = cast(tuple[Any, str], key)
        shape = _shape(state)
        internal = self.reg.tenant_of_ip(src) is not None
        target = next(iter(state.hosts)) if len(state.hosts) == 1 else f"{len(state.hosts)} hosts"
        return Finding(
            entity=Entity("ip", src),
            tenant=tenant,
            window=window,
            score=self.internal_score if internal else self.meta.score,
            summary=f"{'Tenant VM' if internal else 'External address'} {src} probed {failed} host/port "
            f"pairs ({shape}: {len(state.ports)} ports on {target}), "
            f"{answered} answered",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                "failed_pairs": failed,
                "distinct_hosts": len(state.hosts),
                "distinct_ports": len(state.ports),
                "answered": answered,
                "shape": shape,
                "source_internal": internal,
            },
        )
