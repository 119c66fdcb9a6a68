"""Slow denial of service: many low-byte connections held open to one web service.

The attacks (each keeps a server's connection slots busy without sending anything worth reading):

- slowloris (RSnake 2009; slowloris.py by gkbrk, github.com/gkbrk/slowloris): opens ``-s``
  sockets (default 150), sends a partial request, then one header line (``X-a: <n>``) per socket
  every ``--sleeptime`` seconds (default 15), reopening any socket the server closes;
- slowhttptest (Sergey Shekyan, github.com/shekyan/slowhttptest): ``-c`` connections (default
  50, runs of several thousand documented), a follow-up of at most ``-x`` bytes (default 32) every
  ``-i`` seconds (default 10), in slow headers (``-H``), slow body (``-B``, the R.U.D.Y. attack: a
  large ``Content-Length`` sent a few bytes at a time) or slow read (``-X``: a tiny receive window
  read slowly);
- R.U.D.Y. ("R U Dead Yet", 2010): slow POST bodies, as slowhttptest ``-B``.

What the server does: Apache closes a request still incomplete after ``Timeout`` (60 s) or, with
mod_reqtimeout (on by default since 2.4), ``header=20-40,MinRate=500``: 20 s for the headers,
1 s more per 500 bytes received, at most 40 s; nginx ``client_header_timeout`` and
``client_body_timeout`` 60 s; IIS ``connectionTimeout`` 120 s. So an attacked server with default
settings sees each slow connection live 20-120 s, then the tool opens another; one without limits
holds them until the tool stops.

What the flow records show. Zeek writes a connection when it ends; NetFlow v9/IPFIX and nProbe at
the active timeout (Cisco default 1800 s; 60-120 s in many deployments) and after the inactive
timeout (Cisco 15 s: a socket written to every 15 s may be cut into records of a packet or two);
Argus a status record per status interval; CICFlowMeter splits at its flow timeout; VPC Flow Logs
one record per 5-tuple per aggregation interval (60 s or 600 s) with that interval's counts. A held
connection is therefore one long record with few bytes per second, or several short records of
one or two packets with the same 5-tuple. Both are read here:

- a record of at least ``params.min_held_ms`` whose bytes (both directions) stay within
  ``params.setup_bytes + params.max_bytes_per_s * duration`` is a held piece of a connection;
- shorter records of at most ``params.max_fragment_packets`` client packets (every format but Zeek
  and Suricata's flow records, which write whole connections) are joined per (source, source port) over the window; the join
  is a held piece when it spans ``min_held_ms`` within that byte budget.

How many are held at once: the most of a source's held pieces (each clipped to the window; a
piece ends at its record's stamp, or begins there in Argus's records, which are stamped at their
start: ``flowdir.record_start``) open at one instant of the window (``held_at_once`` in the
evidence; ``held`` is the mean over the whole window, Little's law, and the bar is read on the
larger). The mean alone missed an attack shorter than the window: slowhttptest does not reopen
the sockets a server closes, and Apache with Debian's mod_reqtimeout (``header=20-40``) closed its
300 slow-header sockets after 20 and 38 s, so the tool lab's run against it held 300 at once and
29 on the 5-minute mean.

A source holds when at least ``params.min_held_share`` of its connections to the service are held
pieces: a slow tool holds every connection it opens, while a flood's whole short connections (a
record with the SYN and the FIN or reset, ``flowdir.whole_connection``) far outnumber the few of
its records that look held. softflowd keeps a finished flow in its cache, so two of ab's
connections on a reused source port 15-19 s apart became one record of 10 packets and ~700 B over
17 s: 4,019 such records among ab's 17,188 against Apache in the tool lab's NetFlow, raised as
holders before 1.4.0. Exporters that write no flags (VPC Flow Logs' default format) give no whole
connections, and every source with held pieces is judged by them alone, as before.

When it fires (entity: the source; a handful of sources: the victim, with the sources named):
one source holds at least ``params.min_concurrent`` connections to one service at once, or at most
``params.max_sources`` sources do together and hold at least ``params.min_top_share`` of the
service's held connection time.

Thresholds and their grounds:

- ``min_concurrent: 50``: slowhttptest's default connection count, a third of slowloris's; no
  single benign client holds that many to one host: browsers keep at most 6 connections per host
  over HTTP/1.1 (Chrome's and Firefox's ``max-persistent-connections-per-server``), one over HTTP/2,
  a websocket or long-poll is one per tab.
- ``min_held_ms: 15000``: slowloris's send interval, under the shortest server limit above (Apache
  mod_reqtimeout's 20 s), so a connection the server cuts there still counts; above Apache's
  ``KeepAliveTimeout`` (5 s), after which an idle keep-alive connection closes.
- ``max_bytes_per_s: 20`` and ``setup_bytes: 1500``: a slow connection costs its set-up once
  (handshake ~180 bytes, the partial request: slowloris's ~230 bytes, slowhttptest's up to ~1 kB,
  the close ~200 bytes, TCP/IP headers counted as NetFlow, Argus and VPC do) and then a trickle:
  slowloris one header line (~70 bytes with headers) per 15 s, slowhttptest at most 32 bytes of
  data per 10 s (~85 with headers), each ACKed by the server (~52 bytes): 8-14 bytes a second
  both ways. Far under Apache mod_reqtimeout's ``MinRate=500`` (the rate under which Apache itself
  calls a client too slow). Idle keep-alive connections of real clients carry whole requests and
  responses, kilobytes over their life, and mostly exceed that budget: of the CTU-13 scenario 6
  client 147.32.84.59's connections to the campus proxy 147.32.80.13 (5-30 kB over 100-430 s),
  most do; 291 of them, tunnels kept open up to ~55 min at ~13 B/s, do not, and one 5-minute
  window counted 51 of those held at once (the one alert of the real-data scorecard before
  ``max_idle_s`` below).
- ``max_idle_s: 120``: a held piece carries at least one packet (either way) per 120 s of its
  duration. A slow attack keeps a server's slot only by beating the server's idle limit between
  packets, and the tools send every 10-15 s for that (slowloris ``--sleeptime`` 15, slowhttptest
  ``-i`` 10); 120 s is the longest of the defaults above (IIS ``connectionTimeout``; Apache
  ``Timeout`` and nginx's client timeouts are 60 s). A connection that goes quieter than that is
  an idle pre-opened or keep-alive socket, which a default server drops and which holds nothing:
  browsers open spare connections ahead of need (Chromium's preconnect and socket pools, Firefox's
  ``network.http.speculative-parallel-limit``) and proxies keep idle CONNECT tunnels, each with a
  handful of packets over minutes to an hour (the CTU-13 client 147.32.84.59's tunnels to the
  campus proxy: 7 packets over 44 minutes). Records with no packet count (0 both ways) are not
  judged by it.
- ``min_held_share: 0.5``: slowloris and slowhttptest open nothing but held connections (a share near
  1: 0.86-0.99 of each slow tool's records in the tool lab's NetFlow, the rest its probes of the
  service); ab's and siege's floods against Apache were 0.20-0.23 there, all of it records of two
  connections. Half is the line between a client whose connections are mostly held and one whose
  held-looking records are the exception.
- ``max_fragment_packets: 2``: between two inactive-timeout cuts a slow client sends one line, a
  packet (two when its ACK of the server's ACK falls in the same record). The connection's opening
  piece, the record that holds its SYN, also holds the handshake: two client packets more (SYN and
  ACK besides the partial request). Without it a held connection's first status interval was lost:
  slowhttptest ``-H -c 300`` against nginx (cut at its 60 s ``client_header_timeout``), recorded by
  Argus with its shipped 5 s status interval, held 60 s a connection and was measured at 49.2 held
  at once, under the bar (``python -m detectors.evaluation.toollab``, the README's tool lab).
- ``service_ports``: the web ports slow HTTP attacks aim at. Long-lived low-byte protocols are
  left out by port: SSH (22) sessions idle, MQTT (1883/8883) keep-alives every 60 s to a broker,
  database connection pools (3306, 5432, 1433, 6379, 27017...), which are also few per client
  (HikariCP's default pool is 10).

The evidence names the holders (``sources``: the one source, or the handful) and the service
(``destinations``: the victim), so the alert covers the flows between them and not the victim's
or the holders' other traffic.

Look-alikes left to configuration: a forward proxy's busy clients (``allowed_destinations``: the
proxy), a NAT gateway or forward proxy whose users hold many idle
keep-alive, websocket or long-poll connections to one site (``allowed_sources``), a load
balancer's idle keep-alive pool to its backends (``allowed_sources``), a push service built on
long-polling (``allowed_destinations``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, ClassVar, Final, cast

from detectors.alert import Entity
from detectors.base import Batch, Detector, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import (
    ACK,
    ANSWER_MASK,
    FIN,
    ONE_WAY,
    REFUSED,
    RST,
    SYN,
    UNANSWERED,
    WRITES_WHOLE,
    holds_syn,
    record_start,
    tcp_flags,
    whole_connection,
)
from detectors.meta import DetectorMeta, technique
from detectors.windows import Window

__all__ = ["SlowConnections", "SlowState", "held_bar"]

# Held time per source: [held ms (clipped spans), pieces, bytes, first ts, last ts, evidence ids,
# the held pieces' (start, end), at most _MAX_SPANS (none if pickled before 1.4.0)]
_HELD, _PIECES, _BYTES, _FIRST, _LAST, _IDS, _SPANS = range(7)
# Spans kept per source and window: a source with more held pieces of >= 15 s in a 5-minute window
# holds over 200 on average, far past any bar, so its spans are not needed to tell.
_MAX_SPANS: Final = 4096
# A fragment join per (source, source port): [start, end, bytes, first ts, last ts, event id, packets]
_F_START, _F_END, _F_BYTES, _F_TS0, _F_TS1, _F_ID, _F_PKTS = range(7)
_OVERFLOW: Final = "@other"
_OPENED: Final = SYN | ACK | FIN | RST
# The client packets of a TCP handshake (SYN, then the ACK of the SYN-ACK): a connection's opening
# piece holds them besides what the slow client sends in any other piece.
_HANDSHAKE: Final = 2


class SlowState:
    """One service's held connection time per source, its short fragments by (src, port), and the
    whole connections per source that held nothing (``whole``)."""

    __slots__ = ("by_src", "dropped", "frags", "whole")

    def __init__(self) -> None:
        self.by_src: dict[str, list[Any]] = {}
        self.frags: dict[tuple[str, int], list[Any]] = {}
        self.whole: dict[str, int] = {}
        self.dropped = 0

    def __getstate__(self) -> tuple[object, ...]:
        return (self.by_src, self.frags, self.dropped, self.whole)

    def __setstate__(self, s: tuple[Any, ...]) -> None:
        self.by_src, self.frags, self.dropped = s[:3]
        self.whole = s[3] if len(s) > 3 else {}  # pickled before 1.4.0


class SlowConnections(Detector):
    meta = DetectorMeta(
        id="dos.slow_connections",
        version="1.4.1",
        title="Slow denial of service: connections held open",
        category="dos",
        score=65,
        severity="medium",
        attack=(
            technique("Impact", "T1499.002", "Service Exhaustion Flood"),
            technique("Impact", "T1499.003", "Application Exhaustion Flood"),
        ),
        kinds=frozenset({"flow"}),
        description="One source (or at most params.max_sources together) holds params.min_concurrent or more "
        "connections open to one web service at once, each sending at most params.setup_bytes plus "
        "params.max_bytes_per_s, and most of its connections there are held: slowloris, slowhttptest, R.U.D.Y.",
        false_positives=(
            "a busy client of a forward proxy holding idle keep-alive or CONNECT tunnels (params.allowed_destinations)",
            "a NAT gateway or forward proxy whose users hold idle keep-alive, websocket or long-poll "
            "connections to one site (params.allowed_sources)",
            "a load balancer's idle keep-alive pool to a backend (params.allowed_sources)",
        ),
        note="Check the server's busy workers and its request-timeout logs (Apache mod_reqtimeout, nginx 408s); "
        "cap connections per client address and shorten header/body timeouts (mod_reqtimeout, "
        "client_header_timeout), or put a buffering proxy in front.",
        maturity="incubating",
    )
    param_spec: ClassVar[ParamSpec] = {
        "service_ports": list,
        "min_concurrent": float,
        "min_held_ms": int,
        "max_bytes_per_s": float,
        "setup_bytes": int,
        "max_fragment_packets": int,
        "max_idle_s": int,
        "min_held_share": float,
        "max_sources": int,
        "min_top_share": float,
        "allowed_sources": list,
        "allowed_destinations": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        p = self.params
        self.ports = frozenset(int(x) for x in p["service_ports"])
        self.min_concurrent = float(p["min_concurrent"])
        self.min_held = int(p["min_held_ms"])
        self.max_bps = float(p["max_bytes_per_s"])
        self.setup = int(p["setup_bytes"])
        self.max_frag_packets = int(p["max_fragment_packets"])
        self.max_idle = int(p["max_idle_s"]) * 1000
        self.min_held_share = float(p["min_held_share"])
        self.max_sources = max(1, int(p["max_sources"]))
        self.min_top_share = float(p["min_top_share"])
        self.allowed_src = frozenset(p["allowed_sources"])
        self.allowed_dst = frozenset(p["allowed_destinations"])
        self._frag_bytes = self.setup + self.max_bps * self.min_held / 1000

    def new_state(self, key: Hashable) -> SlowState:
        return SlowState()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("min_held_share", 0.0)  # pickled before 1.4.0: any source holds, as then

    def observe_batch(self, batch: Batch) -> None:
        batch = batch.initiated()  # a server's records are never the holder
        ports, state, min_held, max_bps, setup = (
            self.ports,
            self.state,
            self.min_held,
            self.max_bps,
            self.setup,
        )
        allowed_src, allowed_dst = self.allowed_src, self.allowed_dst
        frag_packets, frag_bytes, window = self.max_frag_packets, self._frag_bytes, self._size
        max_idle = self.max_idle
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        reg = batch.registry
        service = reg.provider_service if reg.has_provider_services else None
        for ev, view in zip(batch.flows, batch.flow_views, strict=True):
            try:
                if ev.dst_port not in ports or ev.proto != "tcp":
                    continue
                answer = view & ANSWER_MASK
                if answer in (UNANSWERED, REFUSED):  # never established (SYN retries last long)
                    continue
                size = ev.bytes_out + ev.bytes_in
                dur = ev.duration_ms
                packets = ev.packets_out + ev.packets_in
                held = fragment = False
                if dur >= min_held:
                    held = size <= setup + max_bps * dur / 1000  # else a busy long connection
                    if held and 0 < packets * max_idle < dur:
                        continue  # quieter than every server's idle limit: an idle socket, not a trickle
                elif (
                    size <= frag_bytes
                    and ev.source not in WRITES_WHOLE  # their short records are short connections
                    and (
                        ev.packets_out <= frag_packets
                        or (ev.packets_out <= frag_packets + _HANDSHAKE and holds_syn(ev))
                    )
                ):
                    fragment = True
                if not (held or fragment):
                    # A whole connection that held nothing: counted against its source's held share.
                    if not whole_connection(ev):
                        continue
                    if ev.ts - ev.ts % pane != cur:
                        bucket, cur = self.bucket(ev.ts), ev.ts - ev.ts % pane
                    where = (ev.tenant, ev.dst_ip, ev.dst_port)
                    known = bucket.get(where)
                    if known is None:
                        if len(bucket) >= self.max_keys:
                            continue
                        known = bucket[where] = SlowState()
                    known.whole[ev.src_ip] = known.whole.get(ev.src_ip, 0) + 1
                    continue
                if view & ONE_WAY and ev.extra and ev.source != "vpcflow" and tcp_flags(ev) & _OPENED == SYN:
                    continue  # NetFlow/IPFIX flags (OR of all packets) with only SYN: never established
                src, dst = ev.src_ip, ev.dst_ip
                if src in allowed_src or dst in allowed_dst:
                    continue
                if service is not None and service(dst, ev.dst_port) is not None:
                    continue  # the provider's own endpoints (registry provider_services)
                ts = ev.ts
                st: SlowState | None = state(ts, (ev.tenant, dst, ev.dst_port))
                if st is None:
                    continue
                start = record_start(ev)  # Argus stamps the start, every other exporter the end
                end = start + dur
                if fragment:
                    key = (src, ev.src_port)
                    frag = st.frags.get(key)
                    if frag is not None:
                        if start < frag[_F_START]:
                            frag[_F_START] = start
                        if end > frag[_F_END]:
                            frag[_F_END] = end
                        frag[_F_BYTES] += size
                        frag[_F_PKTS] += packets
                        frag[_F_TS0] = min(frag[_F_TS0], ts)
                        frag[_F_TS1] = max(frag[_F_TS1], ts)
                    elif len(st.frags) < self.max_distinct:
                        st.frags[key] = [start, end, size, ts, ts, ev.id, packets]
                    else:
                        st.dropped += 1
                    continue
                # At most a window long: the part nearest the stamp, which names the record's window.
                piece = min(dur, window)
                first = start if start == ts else end - piece
                self._add_held(st, src, first, first + piece, size, ts, ts, ev.id)
            except Exception as exc:
                self.error(ev, exc)

    def _add_held(
        self, st: SlowState, src: str, start: int, end: int, size: int, t0: int, t1: int, event_id: str
    ) -> None:
        """A held piece ``[start, end]`` (clipped to a window's length) of ``src``'s connection."""
        by_src = st.by_src
        rec = by_src.get(src)
        if rec is None:
            if len(by_src) >= self.max_distinct:
                src = _OVERFLOW
                rec = by_src.get(src)
            if rec is None:
                rec = by_src[src] = [0, 0, 0, t0, t1, [], []]
        rec[_HELD] += end - start
        spans = _spans(rec)
        if len(spans) < _MAX_SPANS:
            spans.append((start, end))
        rec[_PIECES] += 1
        rec[_BYTES] += size
        if t0 < rec[_FIRST]:
            rec[_FIRST] = t0
        if t1 > rec[_LAST]:
            rec[_LAST] = t1
        if len(rec[_IDS]) < self.max_ids and event_id not in rec[_IDS]:
            rec[_IDS].append(event_id)

    def merge(self, into: SlowState, other: SlowState) -> None:
        for src, rec in other.by_src.items():
            mine = into.by_src.get(src)
            if mine is None:
                if len(into.by_src) >= self.max_distinct:
                    src = _OVERFLOW
                    mine = into.by_src.get(src)
                if mine is None:
                    into.by_src[src] = [*rec[:_IDS], list(rec[_IDS]), list(_spans(rec))]
                    continue
            mine[_HELD] += rec[_HELD]
            spans = _spans(mine)
            spans.extend(_spans(rec)[: _MAX_SPANS - len(spans)])
            mine[_PIECES] += rec[_PIECES]
            mine[_BYTES] += rec[_BYTES]
            mine[_FIRST] = min(mine[_FIRST], rec[_FIRST])
            mine[_LAST] = max(mine[_LAST], rec[_LAST])
            ids = mine[_IDS]
            for i in rec[_IDS]:
                if len(ids) >= self.max_ids:
                    break
                if i not in ids:
                    ids.append(i)
        for key, frag in other.frags.items():
            have = into.frags.get(key)
            if have is None:
                if len(into.frags) < self.max_distinct:
                    into.frags[key] = list(frag)
                else:
                    into.dropped += 1
                continue
            have[_F_START] = min(have[_F_START], frag[_F_START])
            have[_F_END] = max(have[_F_END], frag[_F_END])
            have[_F_BYTES] += frag[_F_BYTES]
            have[_F_PKTS] += frag[_F_PKTS]
            have[_F_TS0] = min(have[_F_TS0], frag[_F_TS0])
            have[_F_TS1] = max(have[_F_TS1], frag[_F_TS1])
        into.dropped += other.dropped
        for src, n in other.whole.items():
            into.whole[src] = into.whole.get(src, 0) + n

    def _join_fragments(self, st: SlowState) -> None:
        """Fragments of one (source, port) spanning ``min_held_ms`` at a low byte rate: held pieces."""
        min_held, max_bps, setup, window = self.min_held, self.max_bps, self.setup, self._size
        max_idle = self.max_idle
        for (src, _port), frag in st.frags.items():
            span = frag[_F_END] - frag[_F_START]
            if 0 < frag[_F_PKTS] * max_idle < span:
                continue  # fragments further apart than every server's idle limit: not one held connection
            if span >= min_held and frag[_F_BYTES] <= setup + max_bps * span / 1000:
                end = frag[_F_END]
                self._add_held(
                    st,
                    src,
                    end - min(span, window),
                    end,
                    frag[_F_BYTES],
                    frag[_F_TS0],
                    frag[_F_TS1],
                    frag[_F_ID],
                )
        st.frags = {}

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        out: list[Finding] = []
        need = self.min_concurrent
        for key, st in states.items():
            if st.frags:
                self._join_fragments(st)
            recs = st.by_src.values()
            # Never more at once than pieces, nor on average (a piece is at most the window long).
            if sum(rec[_PIECES] for rec in recs) < need or self._peak(window, recs) < need:
                continue
            total = sum(rec[_HELD] for rec in st.by_src.values())
            tenant, dst, port = cast(tuple[Any, str, int], key)
            whole = st.whole
            ranked = sorted(
                (
                    (self._peak(window, [rec]), rec[_HELD], src)
                    for src, rec in st.by_src.items()
                    if src != _OVERFLOW
                    and rec[_PIECES] >= self.min_held_share * (rec[_PIECES] + whole.get(src, 0))
                ),
                reverse=True,
            )
            singles = [(src, st.by_src[src]) for peak, _, src in ranked if peak >= need]
            if singles:
                out.extend(self._finding(window, tenant, dst, port, total, [s], whole) for s in singles)
                continue
            top = [(src, st.by_src[src]) for _, _, src in ranked[: self.max_sources]]
            held = sum(rec[_HELD] for _, rec in top)
            if (
                len(top) >= 2
                and self._peak(window, [rec for _, rec in top]) >= need
                and held >= self.min_top_share * total
            ):
                out.append(self._finding(window, tenant, dst, port, total, top, whole))
        return out

    def _peak(self, window: Window, recs: Iterable[list[Any]]) -> float:
        """Connections the records' sources held at once: the most of their held pieces open at
        one instant of the window (at least the mean over it, which is all that states pickled
        before 1.4.0 and sources past ``_MAX_SPANS`` pieces can tell)."""
        recs = list(recs)
        length = window.end - window.start
        mean = sum(rec[_HELD] for rec in recs) / length
        if sum(rec[_PIECES] for rec in recs) < self.min_concurrent:
            return mean  # fewer pieces than the bar: never that many at once
        edges: list[tuple[int, int]] = []
        for rec in recs:
            for start, end in _spans(rec):
                start, end = max(start, window.start), min(end, window.end)
                if start < end:
                    edges.append((start, 1))
                    edges.append((end, -1))
        edges.sort()  # at one instant an end (-1) sorts before a start: touching pieces are not both open
        held = most = 0
        for _, step in edges:
            held += step
            if held > most:
                most = held
        return float(max(most, mean))

    def _finding(
        self,
        window: Window,
        tenant: Any,
        dst: str,
        port: int,
        total_ms: int,
        who: list[tuple[str, list[Any]]],
        whole: dict[str, int],
    ) -> Finding:
        length = window.end - window.start
        held_ms = sum(r[_HELD] for _, r in who)
        pieces = sum(r[_PIECES] for _, r in who)
        size = sum(r[_BYTES] for _, r in who)
        concurrent = held_ms / length
        at_once = self._peak(window, [r for _, r in who])
        rate = size * 1000 / held_ms if held_ms else 0.0
        evidence: dict[str, Any] = {
            "victim": dst,
            "port": port,
            "held_at_once": round(at_once, 1),
            "held": round(concurrent, 1),
            "whole_connections_not_held": sum(whole.get(s, 0) for s, _ in who),
            "records": pieces,
            "bytes_per_s_per_connection": round(rate, 2),
            "service_held": round(total_ms / length, 1),
            "destinations": [dst],
        }
        if len(who) == 1:
            src = who[0][0]
            entity = Entity("ip", src)
            evidence["sources"] = [src]
            summary = (
                f"{src} held {at_once:.0f} connections open to {dst}:{port} at once ({concurrent:.0f} on "
                f"average over the window; {pieces} records, {rate:.1f} B/s each): slow denial of service"
            )
        else:
            entity = Entity("ip", dst)
            evidence["sources"] = [s for s, _ in who]
            evidence["top_share"] = round(held_ms / total_ms, 3)
            summary = (
                f"{len(who)} sources held {at_once:.0f} connections open to {dst}:{port} at once ({concurrent:.0f} "
                f"on average over the window; {pieces} records, {rate:.1f} B/s each): slow denial of service"
            )
        ids = [i for _, r in who for i in r[_IDS]][: self.max_ids]
        return Finding(
            entity=entity,
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=summary,
            first_seen=min(r[_FIRST] for _, r in who),
            last_seen=max(r[_LAST] for _, r in who),
            count=pieces,
            event_ids=ids,
            evidence=evidence,
        )


def held_bar(config: DetectorConfig) -> tuple[int, int, float]:
    """``(min_held_ms, setup_bytes, max_bytes_per_s)`` of this rule in ``config``: what a connection
    held open on next to nothing is, for a rule that must not take one for its own pattern
    (``brute_force.flow_guessing``), so the bar has one definition."""
    p = config.settings_for(SlowConnections.meta.id, SlowConnections.param_spec).params
    return int(p["min_held_ms"]), int(p["setup_bytes"]), float(p["max_bytes_per_s"])


def _spans(rec: list[Any]) -> list[tuple[int, int]]:
    """A source's held pieces (added to a record pickled before 1.4.0)."""
    if len(rec) <= _SPANS:
        rec.append([])
    return cast(list[tuple[int, int]], rec[_SPANS])
