"""Command-and-control beaconing: one host connecting to one address and port at regular intervals.

What it scores. For each (tenant, source, destination, destination port) seen in a window, the
start times and initiator byte counts of its connections, scored the way RITA (Active
Countermeasures, https://github.com/activecm/rita) scores a beacon, written here from its
published algorithm (RITA v4 ``pkg/beacon/analyzer.go``; v5 ``analysis/beacons.go``):

- timestamp score: the intervals between unique connection times (whole seconds, zero intervals
  dropped, as RITA v5) must be symmetric and tight. Bowley skewness ``(Q1 + Q3 - 2 Q2) / (Q3 - Q1)``
  with Tukey's hinges as quartiles, taken as 0 when ``Q3 - Q1 < 10`` or the median equals a quartile
  (RITA v5's guard: a spread under 10 s is jitter, not skew), scored ``1 - |skew|``; and the median
  absolute deviation about the median (MAD), scored ``(median - MAD) / median`` (RITA v5's relative
  form; v4 cut the MAD at an absolute 30 s, which scores a 5-minute beacon with 20 % jitter as 0).
- data-size score: the same two measures over the initiator's IP bytes per connection, headers
  included as RITA reads ``orig_ip_bytes`` (``flowdir.ip_bytes``: payload-only counts, CICFlowMeter's,
  get their packets' headers; otherwise requests of one length split into a varying number of
  packets look more alike than in every other format) (a MAD score of
  0 when the median is under one byte, as RITA v5), and RITA v4's smallness ``1 - mode / 65535``.
- connection-count score: RITA v4 scored ``connections / (dataset span / 10 s)``, which only a
  connection every 10 s fills; here the divisor is the pair's own median interval, so the score is
  the share of the window the pair kept beaconing (``connections * median interval / window``).
- beacon score: the mean of the six subscores (RITA v4's ``(tsSum + dsSum) / 6``). An alert needs
  ``params.min_score``: 0.7 is the score RITA v5 starts grading a beacon as a threat ("low";
  ``default_config.hjson`` ``score_thresholds``: base 50, low 70, medium 90); a score of at least
  0.9 (RITA's "medium") raises the alert to ``params.high_score``.

Streaming. A window of ``window_ms`` = 6 h: RITA scores a whole day, and its persistence scores
(v5 duration and histogram) count hours; a window has to hold enough connections of slow beacons
(``params.min_connections`` = 12 in 6 h reaches beacons every 30 min, slower than the default
sleep of Cobalt Strike and Sliver, 60 s, or Empire, 5 s). It slides every ``slide_ms`` = 3 h, so
every stretch of up to 3 h lies wholly inside one window: with tumbling windows a 90-minute beacon
that crossed one of the day's four boundaries was scored as two 45-minute halves, each short of
``params.min_duration_s``, and missed. A pair alerts at most once per window span (the engine
suppresses overlapping windows' repeats), and an alert comes out at most 3 h plus the job's flow
export delay after its window's evidence (flows arrive up to 6 minutes late; a window closes when
the watermark passes its end). Windows are epoch-aligned, built from 3-hour panes that the engine
merges (``merge``: the samples at the coarser stride, the count exact). A pair's first record in
a pane is kept as a plain tuple (most pairs connect once); from its second record on the state is
compact: connection starts and sizes in two ``array('q')`` of at most
``params.max_connections_per_pair`` entries; when full, every other entry is dropped and only every
second later connection is kept (a regular series decimated stays regular: intervals double), while
the exact connection count and the span of the flows are kept. When a pane holds
``engine.max_keys_per_window`` pairs, pairs with the fewest connections are evicted first (counted
under ``evicted``), so one-off connections cannot lock a beacon out; only then a new pair overflows.

Which connections count. Only the initiator's records (``Batch.initiated``: a response record of a
one-way format, VPC or NetFlow, is not a connection). A record with the same 5-tuple as one of the
pair's earlier records in the pane (its source ports are remembered, the ``_MAX_PORTS`` most
recent), starting within ``params.continuation_gap_s`` (130 s) of that record's end, is the same
connection: a long-lived connection re-exported at the exporter's active timeout (NetFlow/IPFIX,
VPC's aggregation interval, Argus status records) or a SYN retried by the client (Linux's 6 SYN
retries span 127 s: ``tcp_syn_retries``, RFC 6298 back-off) is not a beacon. A connection's time is
its start (``ts - duration_ms``; Argus ``ts`` already is the start).

Every earlier record of the pair, not only the previous one: a client holding several connections
open at once (four long TLS sessions to one push service, in CTU-50) has its records interleaved,
and a VPC file lists an interval's records in no order; as VPC Flow Logs (one record per
10-minute aggregation interval) those four sessions were 133 records "every 162 s" to one
address, a perfect beacon, while they were 4 connections. A TCP record with the same 5-tuple as an
earlier one is the same connection whatever the gap: an idle long-lived session whose keep-alives
the exporter writes as records of their own. Zeek
expires a TCP connection after ``tcp_inactivity_timeout`` (5 min) and writes the next packet as a
new record (``conn_state`` ``OTH``, no SYN); NetFlow/IPFIX after the inactive timeout (15 s by
default); Argus and VPC per status or aggregation interval. Push channels are built exactly so:
ESET's push notification service keeps one persistent MQTT-over-TLS connection to
``epns.eset.com`` on tcp/8883 and reconnects when it breaks (ESET PROTECT online help, "ESET Push
Notification Service", https://help.eset.com/protect_admin/ ``epns.html``), the MQTT client sending
a PINGREQ within every Keep Alive period (MQTT 3.1.1 section 3.1.2.10); Windows Push Notification
Services likewise keeps one persistent channel per device (Microsoft Learn, "Windows Push
Notification Services (WNS) overview"), and so do Apple's APNs (tcp/5223) and Firebase Cloud
Messaging (tcp/5228). A C2 check-in is a new
connection each time, and a new connection gets a new ephemeral source port: Windows hands them out
in turn from 16,384 (49152-65535), Linux per destination from a hashed offset with an increment
(RFC 6056 algorithm 3-4; ``ip_local_port_range`` 32768-60999), and the old 4-tuple is in TIME_WAIT
for 60-240 s (RFC 9293 section 3.4.2), so two check-ins on one port do not happen. A session kept
open to an external host is RITA's "long connection" finding, not a beacon. UDP keeps the
``continuation_gap_s`` bound: a UDP client keeps one socket, and so one source port, across sends.
A one-way TCP record of bare headers only (``flowdir.headers_only``: resets) is no connection: as
VPC Flow Logs, RITA's public server resetting a scanner that probes it every ~8 minutes from source
port 51000 was a "beacon" of the server to the scanner, where the two ports' classes tie.

Persistence. The issue's beacon is regular "over hours": a pair must keep connecting for
``params.min_duration_s`` (1 h) within the window; bursts of regular connections that stop sooner
(a password-guessing tool's fixed rate, a page left open for a while) are not scored. Inbound pairs
must persist for ``params.inbound_min_duration_s`` (3 h, half the window, as RITA v5 grades
duration against half the day: ``duration_consistency_ideal_hours_seen`` 12 of 24): a public
service is polled by crawlers, uptime monitors, P2P peers and guessers all day.

Which pairs. Outbound: a tenant's address (``reg.tenant_of_ip``) to an external one, i.e. a globally
routable address that is no tenant's, not the management plane, and not a provider service
(``reg.provider_service``: the provider's resolver, NTP and metadata endpoints). Traffic to the
tenant's own resolvers or NTP servers is internal and never scored. A private address no tenant
owns talking to a globally routable one is outbound too (``detectors.addrscope``: a capture scanned
without a registry), with no tenant on the alert. Inbound
(``params.include_inbound``): an external address connecting to a tenant's at regular intervals
(RITA scores these when its ``filter_external_to_internal`` is off, as its own test of the
``missing_host`` data does); the external client is the alert's entity, scored
``params.inbound_score``. Protocols whose period is their specification are left out by
``params.periodic_services`` (``proto/port``): NTP, udp/123, polls at 2^minpoll..2^maxpoll s
(RFC 5905 section 7.3: 64 to 1024 s by default), and DNS, udp/53, whose beacons hide in query names
that flows do not carry (RITA reads them from dns.log, not conn).

Look-alikes and the allow-lists (empty by default). Update pollers, monitoring agents and SaaS
telemetry poll on timers too. An operator excuses them by destination (``allowed_destinations``,
addresses or CIDRs: a vendor's telemetry range, a public NTP pool pinned by address, the tenant's
monitoring SaaS), by destination port (``allowed_ports``) or by source (``allowed_sources``: a
monitoring server that polls every host, an uptime checker hitting a tenant's web server inbound).
Prefer the narrowest entry: a destination range rather than a port, since a C2 server on an allowed
port is excused with it. DNS over TLS and over QUIC (tcp/udp 853, RFC 7858 and RFC 9250) are a
resolver's protocol like udp/53 and are left out with it.

Shared destinations. A C2 server is contacted by its bots, and every bot beacons to it; a web
portal, a mail service or a search engine is used by many of a tenant's hosts, and one of them
polling it on a timer (a page that reloads itself, a mail or chat client checking every minute)
is that host's software, not an implant. RITA rates a destination by the same measure, its
prevalence: the share of internal hosts that talk to it, a low share being the suspicious one (RITA
v5's "Prevalence" threat modifier, README). So the detector notes, per pane, which of the tenant's
hosts opened a connection to each external address (any port, once is enough; at most 64 hosts
per address and ``engine.max_keys_per_window`` in all per pane, kept apart from the pairs, which
are evicted when a pane is full) and counts them over the window and the
``params.shared_lookback_s`` (a day, RITA's unit of analysis) before it. An address that at least
``params.shared_min_sources`` (4) hosts used, of which at most ``params.shared_max_beacon_share``
(a quarter) beacon to it, is a shared service: its beacons are not raised (counted as
``shared_destination``). A fleet of bots is not excused by the hosts that touched its server once:
the bots are most of its users. Hosts are counted per tenant; another tenant's never excuse a
beacon. What this gives up: a C2 behind an address that many hosts use anyway (a CDN edge or cloud
front, domain fronting) is not raised, as RITA's prevalence lowers its score; flows carry no host
name to tell the two apart.

Inbound pairs must reach ``params.inbound_min_score`` (0.9, RITA's "medium"): uptime checkers,
health checks and patient password guessers connect to a tenant's public service on timers, and
the tenant, not the attacker, chose to expose it. Inbound, only connections the tenant's host took
count (``detectors.flowdir``: not refused, not unanswered): an external host that retries a closed
port every few seconds for days (a reset each time: Zeek ``REJ``) has no channel to anything, it is
the victim's view of a scanner or a client misconfigured or left pointing at a dead address,
which ``port_scan.internet_probes`` reports. On RITA's public-server capture these were 14 of its
17 inbound "beacons" (an address retrying tcp/30003 every 16 s for three days, others on
tcp/30003 and MikroTik's API port tcp/8728 every 20-30 min). Outbound attempts keep counting, answered or
not: an implant whose C2 server is down or blocked at the egress retries on its timer, which RITA
reports too. So must slow beacons, whose median interval is
over ``params.slow_interval_s`` (120 s): the C2 frameworks' default sleeps are at most a minute
(Cobalt Strike 60 s, Sliver's beacon 60 s, Covenant 10 s, Empire 5 s, Mythic's agents 10 s; bots
keep IRC or HTTP check-ins tighter still), while the benign pollers that beacon perfectly sit at
minutes to an hour (antivirus push channels every 5 min, Windows telemetry every 15 min, CDN-hosted
update checks every 5-30 min). A slow beacon is still found when its timing and sizes are near
perfect (RITA's "medium" grade); an attacker who sleeps longer and jitters more trades speed for
stealth, which flows alone cannot undo. With ``params.repeat_quiet_s`` above 0, a pair that
alerted is not raised again for that long (counted as ``suppressed``); 0, the default, reports it
in every window, so each window's flows stay covered.

Fast beacons. Some implants check in every few seconds: Ares, the Python HTTP bot
(https://github.com/sweetsoftware/Ares), POSTs to its server's ``/hello`` every ``HELLO_INTERVAL``
= 2 s while idle and every 0.5 s for a minute after a command (``agent/config.py``,
``agent.py``), each call a fresh connection (``requests.post`` without a session). Connection
times are whole seconds (RITA's unique timestamps), so ``params.min_median_interval_s`` = 1 s is
the fastest period the score can see. A browser or client library that polls that fast keeps one
connection open across requests (HTTP/1.1 persistence, RFC 9112 section 9.3; Firefox holds an
idle one 115 s, ``network.http.keep-alive.timeout``), so a new connection every few seconds comes
from a client that closes each one: a bot or a scripted loop, or a user's burst of page loads. A
sleep loop does not pause and bursts do: under
``params.fast_interval_s`` (5 s, Empire's default delay) a pair must fill its span,
``connections x median interval >= params.fast_min_fill (0.5) x (last - first)``. An agent polling
without pause fills about 1; a minute of 2 s requests every 15 minutes fills 0.07 and is not scored.

Parallel connections. A C2 implant checks in with one connection per sleep: Cobalt Strike's
HTTP beacon sends one GET for its tasks and, when a task has output, one POST with it (Cobalt
Strike manual, "HTTP Beacon"); Sliver's, Empire's and Mythic's HTTP agents likewise make one
request per check-in, and Ares one POST to ``/hello``. So in a C2 pair at most about half of the
connections start together with the pair's previous one (a tasked beacon's GET and POST, every
time). A browser or an application fetching a page or a batch of API calls opens connections in
parallel (up to six per host in HTTP/1.1 browsers, ``network.http.max-persistent-connections-per-server``
in Firefox, the same limit in Chromium; more across a page's resources), and a client polling in
such bursts on a timer has a regular series of bursts, which scores as a beacon: a Windows host
of CTU-50 polled two AWS addresses every ~30 s in bursts of 4 to 20 connections (886 connections
in 6 h, score 0.77). A pair where more than ``params.max_parallel_share`` (0.5) of the connections
start within ``params.parallel_ms`` (500 ms) of the pair's previous one, in arrival order, is
parallel sessions, not a sleep loop, and is not scored (counted as ``parallel``). Records whose
start times are whole minutes (CIC-IDS2017's CSVs) cannot tell parallel connections from a
minute's check-ins; their connections are never counted as parallel.

The evidence names the beaconing host (``sources``) and its destinations (``destinations``).
"""

from __future__ import annotations

import ipaddress
from array import array
from collections.abc import Hashable, Sequence
from itertools import pairwise
from typing import Any, ClassVar, Final, cast

from detectors.addrscope import unowned_outbound
from detectors.alert import Entity
from detectors.base import MANAGEMENT, Batch, Detector, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import (
    ANSWER_MASK,
    ONE_WAY,
    REFUSED,
    UNANSWERED,
    bare_syn_bytes,
    continues_connection,
    headers_only,
    ip_bytes,
)
from detectors.meta import DetectorMeta, technique
from detectors.windowed import WindowedDetector
from detectors.windows import Window
from ingest.schema import FlowEvent

__all__ = ["BeaconScore", "C2Beacon", "Contacts", "PairState", "beacon_score", "bowley_skew", "mad_score"]

_MIN_SPREAD: Final = 10.0  # RITA v5: Bowley skewness is 0 when Q3 - Q1 < 10 (seconds, or bytes)
_MINUTE_MS: Final = 60_000
# Starts of a pair's last connections that a new one is compared with (``parallel``): records of
# parallel connections come in the order of their ends, not of their starts.
_RECENT: Final = 4
_SMALLNESS_MAX: Final = 65535.0  # RITA v4: dsSmallnessScore = 1 - mode / 65535
_GLOBAL_CACHE_MAX: Final = 65536
# Source ports remembered per pair and pane: the connections it holds open at once (a browser keeps
# 6 to a host, a pooled client tens); a beacon's one-off ports pass through, least recent dropped.
_MAX_PORTS: Final = 64
_MAX_USERS: Final = 64  # hosts kept per contacted address and pane: a 1/4 share decides up to 16 beacons
_NOT_TAKEN: Final = frozenset({REFUSED, UNANSWERED})  # an inbound attempt the tenant's host did not take


def _median(values: Sequence[float]) -> float:
    n = len(values)
    mid = n // 2
    return float(values[mid]) if n % 2 else (values[mid - 1] + values[mid]) / 2.0


def bowley_skew(ordered: Sequence[float]) -> float:
    """Bowley's quartile skewness of sorted values (Tukey's hinges, as RITA's stats library), 0 when
    the quartile spread is under 10 or the median equals a quartile (RITA v5's guard)."""
    n = len(ordered)
    if n < 3:
        return 0.0
    half = n // 2
    q1 = _median(ordered[:half])
    q2 = _median(ordered)
    q3 = _median(ordered[half + (n % 2) :])
    den = q3 - q1
    if den < _MIN_SPREAD or q2 in (q1, q3):
        return 0.0
    return (q1 + q3 - 2.0 * q2) / den


def mad_score(ordered: Sequence[float], default: float) -> tuple[float, float, float]:
    """(median, MAD, score) of sorted values: score ``(median - MAD) / median`` clamped to [0, 1],
    ``default`` when the median is under 1 (RITA v5 ``calculateMedianAbsoluteDeviation``)."""
    med = _median(ordered)
    mad = _median(sorted(abs(v - med) for v in ordered))
    score = default if med < 1 else (med - mad) / med
    return med, mad, min(1.0, max(0.0, score))


class BeaconScore:
    """The subscores of one pair (each 0..1) and what they were computed from."""

    __slots__ = ("count", "ds_mad", "ds_skew", "ds_small", "interval_s", "median_bytes", "score",
                 "ts_mad", "ts_skew")  # fmt: skip

    def __init__(self, ts_skew: float, ts_mad: float, count: float, ds_skew: float, ds_mad: float,
                 ds_small: float, interval_s: float, median_bytes: float) -> None:  # fmt: skip
        self.ts_skew, self.ts_mad, self.count = ts_skew, ts_mad, count
        self.ds_skew, self.ds_mad, self.ds_small = ds_skew, ds_mad, ds_small
        self.interval_s, self.median_bytes = interval_s, median_bytes
        self.score = (ts_skew + ts_mad + count + ds_skew + ds_mad + ds_small) / 6.0

    @property
    def ts_score(self) -> float:
        return (self.ts_skew + self.ts_mad + self.count) / 3.0

    @property
    def ds_score(self) -> float:
        return (self.ds_skew + self.ds_mad + self.ds_small) / 3.0


def beacon_score(
    starts_ms: Sequence[int], sizes: Sequence[int], connections: int, stride: int, window_ms: int
) -> BeaconScore | None:
    """RITA-style score of one pair (module docstring), or None with fewer than 3 non-zero intervals.

    ``starts_ms``/``sizes``: the kept sample (any order, same length); ``connections``: the exact
    count; ``stride``: the sample keeps one connection in ``stride``."""
    order = sorted(range(len(starts_ms)), key=starts_ms.__getitem__)
    seconds = sorted({starts_ms[i] // 1000 for i in order})
    intervals = sorted(float(b - a) for a, b in pairwise(seconds))
    if len(intervals) < 3:
        return None
    ts_skew = 1.0 - abs(bowley_skew(intervals))
    med_interval, _, ts_mad = mad_score(intervals, 1.0)
    # Per connection: the sample's intervals span ``stride`` connections, and a second may hold
    # several (records stamped to the minute, as some CICFlowMeter CSVs are, put six check-ins
    # of a 10 s beacon in one): the unique seconds' median interval is shared among them.
    interval_s = med_interval * len(seconds) / (len(starts_ms) * stride)
    count = min(1.0, connections * interval_s * 1000.0 / window_ms) if window_ms > 0 else 0.0
    ordered = sorted(float(s) for s in sizes)
    ds_skew = 1.0 - abs(bowley_skew(ordered))
    med_bytes, _, ds_mad = mad_score(ordered, 0.0)
    ds_small = max(0.0, 1.0 - _mode(ordered) / _SMALLNESS_MAX)
    return BeaconScore(ts_skew, ts_mad, count, ds_skew, ds_mad, ds_small, interval_s, med_bytes)


def _mode(ordered: Sequence[float]) -> float:
    """Most frequent value of sorted values (the smallest among ties, as RITA's count map)."""
    best, best_n, cur, cur_n = ordered[0], 0, ordered[0], 0
    for v in ordered:
        if v == cur:
            cur_n += 1
        else:
            cur, cur_n = v, 1
        if cur_n > best_n:
            best, best_n = cur, cur_n
    return best


def _bare_attempt(ev: FlowEvent) -> bool:
    """A one-way TCP record of at most two bare SYNs: a connection attempt and nothing more. A client
    that completes a connection sends at least three packets (its SYN, the ACK of the SYN-ACK, then
    data or a FIN), and a scanner's probe is one SYN, reset or left unanswered (masscan and ZMap do
    not retry). Inbound, such a record is a probe of the tenant's host, as Zeek's ``S0`` and
    ``REJ`` records are: a scanner coming back every 10 minutes to RITA's server (port 30003, reset
    each time) was, as VPC Flow Logs, an inbound "beacon". The RITA beacon's own check-ins are 5
    packets of 292 bytes (58 a packet: its client sends no TCP timestamps)."""
    packets = ev.packets_out
    return ev.proto == "tcp" and packets <= 2 and ev.bytes_out <= bare_syn_bytes(ev.src_ip) * packets


class PairState:
    """One (tenant, source, destination, port) in one window: a capped sample of connection starts
    and initiator bytes, the exact count, the flows' span, a few evidence ids, and the source ports
    of its connections with each one's last end (the continuation check)."""

    __slots__ = (
        "count",
        "first",
        "ids",
        "last",
        "ports",
        "recent",
        "sizes",
        "starts",
        "stride",
        "together",
    )

    def __init__(self) -> None:
        self.starts = array("q")
        self.sizes = array("q")
        self.count = 0  # connections after de-duplication
        self.stride = 1  # the sample keeps one connection in ``stride``
        self.first = 0  # event-time span of the pair's flow records
        self.last = 0
        self.ids: list[str] = []
        self.ports: dict[int, int] = {}  # source port -> its records' last end, least recent first
        self.recent: list[int] = []  # the starts of the pair's last ``_RECENT`` connections (arrival order)
        self.together = 0  # connections that started within ``parallel_ms`` of the previous one

    def __getstate__(self) -> tuple[object, ...]:
        return (self.starts, self.sizes, self.count, self.stride, self.first, self.last, self.ids, self.ports,
                self.recent, self.together)  # fmt: skip

    def __setstate__(self, s: tuple[Any, ...]) -> None:
        (self.starts, self.sizes, self.count, self.stride, self.first, self.last, self.ids) = s[:7]
        self.recent, self.together = (s[8], s[9]) if len(s) == 10 else ([], 0)  # 1.4.0 counted none
        if len(s) == 9:  # 1.2.0 kept the previous record's port and end only
            self.ports = {s[7]: s[8]} if s[7] >= 0 else {}
        else:
            self.ports = s[7]


class Contacts:
    """One pane's outbound contacts: (tenant, external address) -> the tenant's hosts that opened a
    pair to it, at most ``_MAX_USERS`` per address and ``cap`` in all (kept apart from the pairs,
    which are evicted when the pane is full)."""

    __slots__ = ("total", "users")

    def __init__(self) -> None:
        self.users: dict[tuple[str | None, str], set[str]] = {}
        self.total = 0

    def add(self, dst: tuple[str | None, str], src: str, cap: int) -> bool:
        """Note ``src`` as a user of ``dst``; False when the pane's bound left it out."""
        users = self.users.get(dst)
        if users is not None and (src in users or len(users) >= _MAX_USERS):
            return True
        if self.total >= cap:
            return False
        self.total += 1
        if users is None:
            self.users[dst] = {src}
        else:
            users.add(src)
        return True

    def __getstate__(self) -> tuple[dict[tuple[str | None, str], set[str]], int]:
        return (self.users, self.total)

    def __setstate__(self, s: tuple[dict[tuple[str | None, str], set[str]], int]) -> None:
        self.users, self.total = s


class C2Beacon(WindowedDetector[PairState]):
    meta = DetectorMeta(
        id="c2.beacon",
        version="1.5.0",
        title="C2 beaconing",
        category="command_and_control",
        score=60,
        severity="medium",
        attack=(
            technique("Command and Control", "T1071", "Application Layer Protocol"),
            technique("Command and Control", "T1573", "Encrypted Channel"),
        ),
        kinds=frozenset({"flow"}),
        description="A tenant host connects to one external address and port at regular intervals over "
        "hours (or an external host to a tenant's, inbound), scored like RITA's beacon analysis: "
        "symmetric, tight intervals and sizes, kept up across the window; params.min_score or more.",
        false_positives=(
            "update pollers, monitoring agents and SaaS telemetry on timers (params.allowed_destinations, "
            "params.allowed_ports)",
            "uptime checkers polling a tenant's public service inbound (params.allowed_sources)",
            "NTP and DNS are left out by protocol (params.periodic_services)",
        ),
        note="Look up the destination (evidence.destination, evidence.port): reputation, owner, first seen. "
        "A beacon to an unknown host on an odd port from a server that should not call out is a likely "
        "implant: find the process holding the connections (ss -tp, EDR) and isolate the VM.",
        maturity="incubating",
        references=(
            "https://github.com/activecm/rita (analysis/beacons.go, default_config.hjson)",
            "https://www.activecountermeasures.com/blog/ (RITA beacon analysis)",
        ),
    )
    learned: ClassVar[tuple[str, ...]] = ("_reported",)
    param_spec: ClassVar[ParamSpec] = {
        "min_connections": int,
        "min_median_interval_s": int,
        "fast_interval_s": int,
        "fast_min_fill": float,
        "min_score": float,
        "inbound_min_score": float,
        "slow_interval_s": int,
        "slow_min_score": float,
        "repeat_quiet_s": int,
        "min_duration_s": int,
        "inbound_min_duration_s": int,
        "high_score": int,
        "inbound_score": int,
        "include_inbound": bool,
        "max_connections_per_pair": int,
        "continuation_gap_s": int,
        "periodic_services": list,
        "allowed_destinations": list,
        "allowed_ports": list,
        "allowed_sources": list,
        "shared_min_sources": int,
        "shared_max_beacon_share": float,
        "shared_lookback_s": int,
        "max_parallel_share": float,
        "parallel_ms": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        p = self.params
        self.min_conns = max(5, int(p["min_connections"]))
        self.min_interval_s = float(p["min_median_interval_s"])
        self.fast_interval_s = float(p["fast_interval_s"])
        self.fast_min_fill = float(p["fast_min_fill"])
        self.min_score = float(p["min_score"])
        self.inbound_min_score = float(p["inbound_min_score"])
        self.slow_interval_s = float(p["slow_interval_s"])
        self.slow_min_score = float(p["slow_min_score"])
        self.quiet_ms = int(p["repeat_quiet_s"]) * 1000
        self._reported: dict[tuple[str, str, str, int], int] = {}  # pair -> end of its last alert's window
        self.min_span_ms = int(p["min_duration_s"]) * 1000
        self.inbound_span_ms = int(p["inbound_min_duration_s"]) * 1000
        self.high_score = int(p["high_score"])
        self.inbound_score = int(p["inbound_score"])
        self.inbound = bool(p["include_inbound"])
        self.cap = max(16, int(p["max_connections_per_pair"]))
        self.gap_ms = int(p["continuation_gap_s"]) * 1000
        periodic = set()
        for item in p["periodic_services"]:
            proto, _, port = str(item).partition("/")
            periodic.add((proto.lower(), int(port)))
        self.periodic = frozenset(periodic)
        self.allowed_ports = frozenset(int(x) for x in p["allowed_ports"])
        self.allowed_sources = frozenset(str(x) for x in p["allowed_sources"])
        self.allowed_nets = tuple(
            ipaddress.ip_network(str(x), strict=False) for x in p["allowed_destinations"]
        )
        self.shared_min_sources = int(p["shared_min_sources"])
        self.shared_max_share = float(p["shared_max_beacon_share"])
        self.shared_lookback_ms = int(p["shared_lookback_s"]) * 1000
        self.max_parallel_share = float(p["max_parallel_share"])  # 1 or more: off
        self.parallel_ms = int(p["parallel_ms"])
        self._contacts: dict[int, Contacts] = {}  # pane start -> the pane's outbound contacts
        self._global: dict[str, bool] = {}
        self.counters.setdefault("evicted", 0)

    def new_state(self, key: Hashable) -> PairState:
        return PairState()  # unused: ``observe_batch`` keeps a pair's first record as a tuple

    # --- admission (once per new pair and pane) ------------------------------------------------
    def _is_global(self, ip: str) -> bool:
        hit = self._global.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = addr.is_global and not addr.is_multicast  # 224/4 is "global" to ipaddress
            except ValueError:
                hit = False
            if len(self._global) >= _GLOBAL_CACHE_MAX:
                self._global.clear()
            self._global[ip] = hit
        return hit

    def _admit(self, external: str, dst: str, port: int) -> bool:
        """At close, for pairs that made enough connections only: the costly address checks."""
        if not self._is_global(external) or self.reg.provider_service(dst, port) is not None:
            return False
        if self.allowed_nets:
            addr = ipaddress.ip_address(dst)
            if any(addr in net for net in self.allowed_nets):
                return False
        return True

    def _room(self, bucket: dict[Hashable, Any]) -> bool:
        if len(bucket) < self.max_keys or self._evict(bucket):
            return True
        self.counters["overflow"] += 1
        return False

    @staticmethod
    def _promote(first: tuple[int, int, int, str, int, int]) -> PairState:
        """A pair's second record: its first one, kept as a plain tuple, becomes a ``PairState``."""
        ts, start, size, event_id, sport, end = first
        st = PairState()
        st.first = st.last = ts
        st.ids.append(event_id)
        st.count = 1
        st.starts.append(start)
        st.sizes.append(size)
        st.ports[sport] = end
        st.recent.append(start)
        return st

    def _evict(self, bucket: dict[Hashable, Any]) -> bool:
        """Drop the pairs with the fewest connections until a quarter of the pane is free; True if
        room was made. Pairs with ``min_connections`` or more are never evicted."""
        target = self.max_keys - self.max_keys // 4
        limit = 1
        while len(bucket) > target and limit < self.min_conns:
            doomed = [k for k, st in bucket.items() if st.__class__ is tuple or st.count <= limit]
            doomed = doomed[: len(bucket) - target]
            for k in doomed:
                del bucket[k]
            self.counters["evicted"] += len(doomed)
            limit *= 2
        return len(bucket) < self.max_keys

    # --- hot loop ------------------------------------------------------------------------------
    def observe_batch(self, batch: Batch) -> None:
        batch = batch.initiated()  # a response record is never a connection
        flows = batch.flows
        src_t, dst_t = batch.src_tenants, batch.dst_tenants
        views = batch.flow_views
        inbound, allowed_src = self.inbound, self.allowed_sources
        bucket_of, max_ids, cap, gap = self.bucket, self.max_ids, self.cap, self.gap_ms
        max_keys = self.max_keys
        periodic, allowed_ports = self.periodic, self.allowed_ports
        skip_ports = allowed_ports | {port for _, port in periodic}
        pane, pane_start, pane_end = self._pane, 0, 0
        max_ports, parallel_ms = _MAX_PORTS, self.parallel_ms
        bucket: dict[Hashable, Any] = {}
        contacts = Contacts()
        track_users = self.shared_min_sources > 0
        for i, ev in enumerate(flows):
            try:
                tenant = src_t[i]
                dt = dst_t[i]
                outbound = True
                if tenant is not None:
                    if dt is not None:
                        continue  # internal, cross-tenant or management: not to the outside
                elif inbound and dt is not None and dt != MANAGEMENT:
                    if (views[i] & ANSWER_MASK) in _NOT_TAKEN:
                        continue  # refused or unanswered at the tenant's host: a probe, no channel
                    if views[i] & (ONE_WAY | ANSWER_MASK) == ONE_WAY and _bare_attempt(ev):
                        continue  # the same, in a one-way format: its answer is another record
                    tenant = dt
                    outbound = False
                elif dt is not None or not unowned_outbound(ev.src_ip, ev.dst_ip):
                    continue  # outbound from a private address no tenant owns (addrscope) goes on
                src = ev.src_ip
                if src in allowed_src:
                    continue
                if ev.extra and continues_connection(ev, views[i]):
                    continue  # a later piece of a connection counted already (CICFlowMeter's tails)
                if views[i] & ONE_WAY and headers_only(ev, views[i]):
                    continue  # resets (a server answering a scanner's fixed source port): no connection
                ts = ev.ts
                port = ev.dst_port
                if port in skip_ports and (port in allowed_ports or (ev.proto, port) in periodic):
                    continue
                key = (tenant, src, ev.dst_ip, port)
                if not pane_start <= ts < pane_end:  # 3-hour panes: the pane rarely changes
                    bucket = bucket_of(ts)
                    pane_start = ts - ts % pane
                    pane_end = pane_start + pane
                    known = self._contacts.get(pane_start)
                    if known is None:
                        known = self._contacts[pane_start] = Contacts()
                    contacts = known
                st = bucket.get(key)
                start = ts if ev.source == "argus" else ts - ev.duration_ms  # flowdir.record_start, inlined
                size = ev.bytes_out if ev.source != "cicflowmeter" else ip_bytes(ev)
                if st is None:  # most pairs connect once: a tuple, no object, until a second record
                    if track_users and outbound and not contacts.add((tenant, ev.dst_ip), src, max_keys):
                        self.counters["contacts_full"] = self.counters.get("contacts_full", 0) + 1
                    if len(bucket) < max_keys or self._room(bucket):
                        bucket[key] = (ts, start, size, ev.id, ev.src_port, start + ev.duration_ms)
                    continue
                if st.__class__ is tuple:
                    st = bucket[key] = self._promote(st)
                if ts < st.first:
                    st.first = ts
                elif ts > st.last:
                    st.last = ts
                sport = ev.src_port
                end = start + ev.duration_ms
                ports = st.ports
                prev = ports.get(sport)
                if prev is not None and (start - prev <= gap or ev.proto == "tcp"):
                    del ports[sport]  # the same connection re-exported, or a retried SYN: most recent now
                    ports[sport] = end if end > prev else prev
                    continue
                if len(ports) >= max_ports:  # the least recently seen port makes room
                    del ports[next(iter(ports))]
                ports[sport] = end
                recent = st.recent  # _beside(start, recent, parallel_ms), inlined
                for before in recent:
                    apart = start - before if start >= before else before - start
                    if apart < parallel_ms or (apart <= 1000 and not (start % 1000 or before % 1000)):
                        if start % _MINUTE_MS or before % _MINUTE_MS:  # whole minutes: cannot tell
                            st.together += 1
                        break
                if len(recent) >= _RECENT:
                    del recent[0]
                recent.append(start)
                if len(st.ids) < max_ids:
                    st.ids.append(ev.id)
                n = st.count
                st.count = n + 1
                if n % st.stride:
                    continue
                starts = st.starts
                if len(starts) >= cap:  # decimate: keep every other connection from now on
                    st.starts = starts = starts[::2]
                    st.sizes = st.sizes[::2]
                    st.stride *= 2
                    if n % st.stride:
                        continue
                starts.append(start)
                st.sizes.append(size)
            except Exception as exc:
                self.error(ev, exc)

    # --- closing -------------------------------------------------------------------------------
    def window_keys(self, panes: list[dict[Hashable, Any]]) -> list[Hashable]:
        """Only the pairs with ``min_connections`` across the window's panes are merged: most pairs
        connect once (a tuple), and ``finish`` would pass over the rest anyway."""
        counts: dict[Hashable, int] = {}
        for pane in panes:
            for key, st in pane.items():
                counts[key] = counts.get(key, 0) + (1 if st.__class__ is tuple else st.count)
        return [key for key, n in counts.items() if n >= self.min_conns]

    def _window_users(
        self, window: Window, wanted: set[tuple[str | None, str]]
    ) -> dict[tuple[str | None, str], set[str]]:
        """The tenant's hosts that contacted each ``wanted`` external address in ``window`` or the
        ``shared_lookback_s`` before it (the union of those panes' contacts)."""
        users: dict[tuple[str | None, str], set[str]] = {dst: set() for dst in wanted}
        since = window.start - self.shared_lookback_ms
        for start, contacts in self._contacts.items():
            if since <= start < window.end:
                known = contacts.users
                for dst, have in users.items():
                    srcs = known.get(dst)
                    if srcs:
                        have |= srcs
        return users

    def close(self, watermark: int) -> list[Finding]:
        out = super().close(watermark)
        # Every window ending by the watermark is closed: a later one starts after watermark - size.
        cut = watermark - self._size - self.shared_lookback_ms
        for start in [s for s in self._contacts if s < cut]:
            del self._contacts[start]
        return out

    def adopt(self, old: Detector) -> bool:
        kept = super().adopt(old)
        if kept and type(old) is type(self):
            self._contacts = old.__dict__.get("_contacts", {})
        return kept

    def reset(self) -> None:
        super().reset()
        self._contacts.clear()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_contacts", {})  # a state pickled before contacts were kept

    def merge(self, into: PairState, other: PairState | tuple[Any, ...]) -> None:
        """Fold a later pane's state of the same pair into ``into`` (sliding windows: the engine
        merges a window's panes in time order). Both samples are brought to the coarser stride
        and decimated again while over the cap; the count is exact. A connection re-exported
        across the pane boundary counts once in each pane (one extra at most per boundary)."""
        if other.__class__ is tuple:
            other = self._promote(cast(tuple[int, int, int, str, int, int], other))
        o = cast(PairState, other)
        if o.count == 0:
            return
        if into.count == 0:
            into.first, into.last = o.first, o.last
        else:
            into.first, into.last = min(into.first, o.first), max(into.last, o.last)
        room = self.max_ids - len(into.ids)
        if room > 0:
            into.ids.extend(o.ids[:room])
        stride = max(into.stride, o.stride)
        starts = into.starts[:: stride // into.stride] + o.starts[:: stride // o.stride]
        sizes = into.sizes[:: stride // into.stride] + o.sizes[:: stride // o.stride]
        while len(starts) > self.cap:
            starts, sizes, stride = starts[::2], sizes[::2], stride * 2
        into.starts, into.sizes, into.stride = starts, sizes, stride
        into.count += o.count  # ports: only the panes' own continuation checks read them
        into.together += o.together

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        size = window.end - window.start
        hits: list[tuple[float, tuple[str, str, str, int], PairState, BeaconScore]] = []
        beaconing: dict[tuple[str | None, str], set[str]] = {}  # outbound: (tenant, address) -> sources
        for key, st in states.items():
            if st.__class__ is tuple or st.count < self.min_conns:
                continue
            k = cast(tuple[str, str, str, int], key)
            inbound = self.reg.tenant_of_ip(k[1]) != k[0]
            if st.last - st.first < (self.inbound_span_ms if inbound else self.min_span_ms):
                continue
            if not self._admit(k[1] if inbound else k[2], k[2], k[3]):
                continue
            sc = beacon_score(st.starts, st.sizes, st.count, st.stride, size)
            if sc is None or sc.interval_s < self.min_interval_s:
                continue
            if sc.interval_s < self.fast_interval_s and (
                st.count * sc.interval_s * 1000 < self.fast_min_fill * (st.last - st.first)
            ):
                continue  # fast connections in bursts: sessions, not a sleep loop
            if st.together > self.max_parallel_share * st.count:
                self.counters["parallel"] = self.counters.get("parallel", 0) + 1
                continue  # most connections opened beside another: parallel sessions, not a sleep loop
            bar = self.inbound_min_score if inbound else self.min_score
            if sc.interval_s > self.slow_interval_s:
                bar = max(bar, self.slow_min_score)
            if sc.score < bar:
                continue
            told = self._reported.get(k)
            if self.quiet_ms and told is not None and window.end - told <= self.quiet_ms:
                self.counters["suppressed"] += 1  # this pair's beacon was reported in the quiet period
                continue
            hits.append((sc.score, k, st, sc))
            if not inbound:
                beaconing.setdefault((k[0], k[2]), set()).add(k[1])
        best: dict[
            tuple[str, str], list[tuple[float, tuple[str, str, str, int], PairState, BeaconScore]]
        ] = {}
        for hit in self._unshared(window, hits, beaconing):
            best.setdefault((hit[1][0], hit[1][1]), []).append(hit)
        reported = self._reported
        for stale in [k for k, end in reported.items() if window.end - end > self.quiet_ms]:
            del reported[stale]
        for hits in best.values():
            for hit in hits:
                if len(reported) < self.max_keys:
                    reported[hit[1]] = window.end
        out = []
        for (tenant, src), hits in best.items():
            hits.sort(key=lambda h: (-h[0], h[1][2], h[1][3]))
            out.append(self._finding(window, tenant, src, hits))
        return out

    def _unshared(
        self,
        window: Window,
        hits: list[tuple[float, tuple[str, str, str, int], PairState, BeaconScore]],
        beaconing: dict[tuple[str | None, str], set[str]],
    ) -> list[tuple[float, tuple[str, str, str, int], PairState, BeaconScore]]:
        """The beacons without those to a shared destination (``beaconing``: the window's outbound
        beacons, the sources per external address): an address that at least
        ``shared_min_sources`` of the tenant's hosts contacted in the window or the day before, of
        which at most ``shared_max_beacon_share`` beacon to it (module docstring: one client's timer
        on a service many hosts use)."""
        if not beaconing or not self.shared_min_sources:
            return hits
        users = self._window_users(window, set(beaconing))
        shared = {
            dst
            for dst, srcs in beaconing.items()
            if len(users[dst]) >= self.shared_min_sources
            and len(srcs) <= self.shared_max_share * len(users[dst])
        }
        if not shared:
            return hits
        kept = [h for h in hits if (h[1][0], h[1][2]) not in shared]
        self.counters["shared_destination"] = (
            self.counters.get("shared_destination", 0) + len(hits) - len(kept)
        )
        return kept

    def finish_key(self, window: Window, key: Hashable, state: PairState) -> Finding | None:
        return None  # findings are made per source in ``finish``

    def _finding(
        self,
        window: Window,
        tenant: str | None,
        src: str,
        hits: list[tuple[float, tuple[str, str, str, int], PairState, BeaconScore]],
    ) -> Finding:
        score, key, st, sc = hits[0]
        dst, port = key[2], key[3]
        outbound = self.reg.tenant_of_ip(src) == tenant
        alert_score = self.high_score if score >= 0.9 else self.meta.score
        if not outbound:
            alert_score = min(alert_score, self.inbound_score)
        first = min(h[2].first for h in hits)
        last = max(h[2].last for h in hits)
        ids: list[str] = []
        for h in hits:
            for i in h[2].ids:
                if len(ids) < self.max_ids:
                    ids.append(i)
        who = f"External host {src}" if not outbound else f"Tenant host {src}" if tenant else f"Host {src}"
        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
        return Finding(
            entity=Entity("ip", src),
            tenant=tenant,
            window=window,
            score=alert_score,
            summary=f"{who} beacons to {dst}:{port}{more}: {st.count} connections every "
            f"{sc.interval_s:.0f} s (median), beacon score {score:.2f}",
            first_seen=first,
            last_seen=last,
            count=sum(h[2].count for h in hits),
            event_ids=ids,
            evidence={
                "sources": [src],
                "destinations": [h[1][2] for h in hits[:6]],
                "destination": dst,
                "port": port,
                "direction": "outbound" if outbound else "inbound",
                "beacon_score": round(score, 3),
                "ts_score": round(sc.ts_score, 3),
                "ds_score": round(sc.ds_score, 3),
                "subscores": {
                    "ts_skew": round(sc.ts_skew, 3),
                    "ts_mad": round(sc.ts_mad, 3),
                    "connection_count": round(sc.count, 3),
                    "ds_skew": round(sc.ds_skew, 3),
                    "ds_mad": round(sc.ds_mad, 3),
                    "ds_smallness": round(sc.ds_small, 3),
                },
                "connections": st.count,
                "median_interval_s": round(sc.interval_s, 1),
                "median_bytes": round(sc.median_bytes, 1),
                "other_beacons": [f"{h[1][2]}:{h[1][3]}" for h in hits[1:6]],
            },
        )
