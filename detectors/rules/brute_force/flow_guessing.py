"""Credential guessing seen in flows: many short, answered, small and alike sessions from one source to
one authentication service (password guessing), or to the same service on many hosts (spraying).

What is counted
    A *session* is one TCP connection (distinct source port) from the source to a port of
    ``params.service_ports`` or ``params.web_ports`` that the service took (``detectors.flowdir``:
    the record's source is not the responder and the connection was answered). Refused and
    unanswered attempts are a scan, not guessing (``port_scan.failed_probe_scan`` owns them); they
    only feed ``answered_share`` once the source has an answered session on that port in the window.
    A session must also be short (``params.max_session_ms``) and carry more than a bare connect
    (``params.min_session_packets`` packets from the client). Several records of one connection
    (NetFlow active timeout, Argus status records, VPC Flow Logs logging both interfaces) count
    once: sessions are distinct (target, source port) pairs.

One-way formats (VPC Flow Logs, NetFlow v5/v9, IPFIX without reverse counters)
    Only the initiator's record is used; the server's record is a response and never a subject.
    Its answer is known when flags say so (VPC: SYN and FIN/RST from the initiator). Otherwise
    (NetFlow's OR-ed flags SYN|ACK, or no flags) it is taken from what the initiator alone sent:
    a client that gets no answer sends only SYNs, at most 1 + ``tcp_syn_retries`` = 7 on Linux
    (ip-sysctl.rst, default 6 retries; Windows sends 3), each a bare 60-byte SYN with options
    (80 over IPv6). More than 7 packets, or packets averaging more than a bare SYN (payload
    after the handshake), mean the server answered. VPC's ``start``/``end`` are its aggregation
    interval (60 s or 10 min), not the connection's, so ``max_session_ms`` is not applied to it.
    Bytes are always the initiator's (``bytes_out``): the only side every format has.

When it fires (per tenant, source and service port, 10-minute tumbling window)
    - guessing: at least ``min_sessions`` sessions to one target (``web_min_sessions`` on
      ``web_ports``), or
    - spraying: at least ``spray_min_targets`` distinct targets answered on the port (not on web
      ports: a browser or crawler reaches many web hosts, while spraying a web login goes to many
      accounts of one site, which the per-target bar sees);
    - and in both cases the median client bytes per session is at most ``max_median_bytes`` and
      their spread at most ``max_byte_spread`` (``web_max_byte_spread`` on web ports). The spread
      is the robust coefficient of variation 1.4826 x MAD / median (equal to the CV for normal
      data, with a 50 % breakdown point) over the first 256 sessions of the key. Robustness
      matters: sshd's MaxStartups drops (below), the session that finds the password and the
      last partial batch are outliers of a guessing run, up to a third of its sessions.
    - On web ports, where the records carry the server's bytes (Zeek, Argus, nProbe,
      CICFlowMeter: at least half the sessions with ``bytes_in``), those must be alike too, by the
      same bar: a failed form login earns the same error page every time, while a proxy or web
      server answers each request with a different object (real HTTP clients' requests to a
      campus proxy in CTU-13 were alike within a robust CV of 0.09-0.15; the replies were not).
      One-way records have no server side; the check is skipped for them. The same holds on the
      database ports (``alike_reply_ports``: MSSQL, Oracle, MySQL, PostgreSQL, Redis, MongoDB),
      whose failed login is one fixed error (MySQL's "Access denied for user", PostgreSQL's
      "password authentication failed", Redis's ``-WRONGPASS``), while the look-alike there is an
      application opening a connection per request without a pool (Django's default
      ``CONN_MAX_AGE = 0``, PHP's ``mysqli``/``pg_connect``), whose sessions log in alike but
      get back result sets of every size. It is not applied to the other services: a graphical
      RDP logon (before NLA, still seen from worms such as Morto) streams screen updates whose
      size varies with every attempt.
    One alert per source and window: the service with the most sessions, the others listed. The
    evidence names the source in ``sources``: the alert is about the flows it sent, not about the
    target's other traffic.

Thresholds and what they rest on
    - Window 600 s: the sshd-log rule's window (``brute_force.auth_failures``), five times sshd's
      LoginGraceTime, and long enough for a single-threaded tool to pass ``min_sessions``.
    - ``max_session_ms`` 120000: sshd's LoginGraceTime default (sshd_config(5): "The server
      disconnects after this time if the user has not successfully logged in", 120 s). A failing
      login session cannot outlive it; interactive sessions, rsync/backup and Ansible's
      ControlPersist master connections (60 s idle after the last task) mostly do.
    - ``min_session_packets`` 5: a TCP connect-and-close (connect scan, check_tcp, a browser's
      speculative preconnect) is at most 4 client packets (SYN, ACK, FIN, ACK); a login sends
      credentials besides (SSH: 10 or more packets; FTP USER/PASS: 8-10; an HTTP POST: 5-6).
    - ``min_sessions`` 40 per 10 min to one target: sshd's MaxAuthTries default 6 caps the
      attempts per connection, and hydra keeps one SSH session while the login name stays the
      same (hydra-ssh.c reuses the libssh session until the server disconnects), as ncrack does
      (``at``: it probes the server's maximum tries per connection and uses it, ncrack(1)) and
      patator's ssh_login (``persistent`` connection). With a failure delay of about 2 s per
      attempt (pam_unix/pam_faildelay) a session is ~12 s, so even one connection at a time
      (medusa's default ``-t 1``, hydra ``-t 1``) gives ~50 sessions in 10 minutes; hydra's
      default 16 parallel tasks (``-t``, hydra(1)) and ncrack's normal template (cl=7, CL=80,
      ncrack(1)) give hundreds. sshd's MaxStartups default 10:30:100 (sshd_config(5); 10:30:60 in
      older builds) randomly drops new connections once 10 are unauthenticated, so a tool
      with 16 parallel tasks sees about a third of its connections cut right after the accept:
      short outliers the robust spread ignores. Benign look-alikes stay below: Nagios check_ssh/check_tcp every
      1-5 min (normal_check_interval; 2-10 sessions), a CI server polling a git remote over SSH
      every minute (10), check_by_ssh for up to ~20 services every 5 min (40 is the edge: see
      false positives).
    - ``spray_min_targets`` 20 hosts on one port in 10 minutes: hydra ``-M`` (64 connects in
      parallel overall by default, ``-T``), ncrack and medusa ``-H`` take host lists; an
      administrator's fan-out (Ansible ``forks`` default 5, one ControlPersist connection per host)
      sends large module payloads (AnsiballZ: tens of kB per task), excluded by the bytes bar.
    - ``max_median_bytes`` 10000: the client side of a failing login is a few kB at most (SSH:
      ident + KEXINIT ~1.5 kB, key exchange, up to 6 password requests of ~100 B, headers of
      ~15-25 packets: 3-4 kB; FTP USER/PASS, POP3/IMAP LOGIN, MySQL/PostgreSQL/MSSQL login
      packets, SMB/RDP NTLM exchanges: 0.5-5 kB). Backups (rsync over SSH), git fetches with
      data, Ansible tasks and file transfers are larger and vary.
    - ``max_byte_spread`` 0.3: a guessing run repeats one exchange; only user and password lengths
      change (tens of bytes in kB, SSH pads to the cipher block), a robust CV of a few per cent.
      Mixed interactive use, git and Ansible sessions vary by far more.
    - Web ports (HTTP(S) login forms), a stricter bar: ``web_min_sessions`` 300 (0.5 new
      connection/s for 10 minutes). Browsers open up to 6 parallel connections per host and keep
      them alive (RFC 9112 section 9.4 leaves the limit to clients; browsers use 6), a NAT gateway
      puts many users behind one address, and load-balancer health checks run every 5-30 s per
      prober (AWS ELB: 5-300 s, default 30 s; 120 sessions in 10 minutes at the fastest).
      From ``dos.app_flood``'s bar (its ``min_connections`` per window: 600 a minute, read from its
      configuration) a source's sessions to one web
      service are a flood's, reported by that rule: in flows a form-guessing tool and an HTTP
      flood of one request per connection look alike, and the rate is what tells them apart.
      Measured in the tool lab: hydra's web modes at their defaults (16 tasks; ``http-post-form``,
      and ``http-get`` against HTTP Basic authentication) made 4,750 and 8,700 tries a minute, a
      connection each (two for a form), and are raised there as floods, not here.
      The rate is taken over the sessions' own span in the window (first to last, at least a second):
      averaged over the whole 10 minutes, the last second of ab's 500 requests a second, which fell
      in the next window, was 500 "login sessions" (the README's tool lab).
      SMTP on 25 is not watched: it is delivery between mail servers (RFC 5321), where a spam
      bot's many alike sessions belong to ``spam.smtp_spam``; logins go to submission on 587 and
      465 (RFC 6409, RFC 8314).
      ``web_max_byte_spread`` 0.15: browsing varies in cookies, URLs and requests per
      connection, and above all in what the server sends back; a form-guessing tool re-posts one
      form and gets one error page.
      A reverse proxy or load balancer of the tenant (an address of its own that served at least
      ``dos.app_flood``'s ``forwarder_min_clients`` distinct web clients in the window, read from
      its configuration) passes its clients' requests to the tenant's backend one connection each
      (nginx's default upstream), alike when the backend is an API: not raised there, counted as
      ``forwarder``; a guessing tool's sessions show at the proxy's front.
      Held open: a web session at least 15 s long whose bytes, both ways, stay within 1.5 kB
      plus 20 B/s is a connection held open by a slow denial of service (slowloris sends one
      header line per 15 s, slowhttptest at most 32 bytes per 10 s), not a login. The bar is
      ``dos.slow_connections``' own held piece (its ``min_held_ms``, ``setup_bytes`` and
      ``max_bytes_per_s``, read from its configuration; its docstring gives the sources): a form
      post and its error page are a request and an answer, and a tool that keeps its connection
      alive posts its next guess on it (kilobytes).
      Without this, a slowloris run's partial requests, alike to the byte, read as hundreds of
      short HTTP sessions of one source: a second, wrong, alert beside the slow-DoS one (the
      simulator's slowloris and slowhttptest scenarios raised one each). Counted as ``held_open``.
      A session followed across records is also held when what came after its opening record
      trickles (at least ``min_held_ms`` after the opening's end, within ``max_bytes_per_s``):
      a slow read's opening carries the request and the server's first reply (2.5 kB in the tool
      lab's Argus records), over the set-up budget as a whole until minutes of trickle pay for
      it, so the window that held only its first 48 s raised it as HTTP guessing.

On the real captures here (``ssa evaluate --dataset all``, no labelled guessing among them)
    0 alerts on the benign hosts of all four. Background: 20 windows of 7 Internet addresses
    guessing SSH on the RITA public server (51-171 sessions of ~2 kB, 6.4 s each, robust CV
    <= 0.04), an external address on RDP across 21 CTU-13 campus hosts (487 sessions, August
    2011, the Morto worm's month), and one campus host's 827 alike FTP sessions to one server.

Known limits
    - A success after guessing is invisible in flows (the successful session looks like the
      others); ``brute_force.auth_failures`` sees it where sshd logs reach the pipeline.
    - Tools that keep HTTP connections alive and post many attempts on one connection, or
      guess slower than ~one session per 15 s, stay below the bar.
    - Several records of one long session under an active timeout are one session, but its bytes
      are those of its first record.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, Final, cast

from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import ANSWER_MASK, ANSWERED, ONE_WAY, UNKNOWN, client_spoke, record_start
from detectors.meta import DetectorMeta, technique
from detectors.rules.common import source_entity
from detectors.rules.dos.app_flood import flood_per_minute, forwarder_bar
from detectors.rules.dos.slow_connections import held_bar
from detectors.state import Span, bump_capped
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["FlowGuessing", "GuessState", "client_spoke", "robust_spread"]

_SAMPLES: Final = 256
"""Client byte counts kept per key for the median and spread (the first sessions of the window)."""
_MAD_TO_SD: Final = 1.4826  # MAD x 1.4826 estimates the standard deviation of normal data
# Exporters that cut one connection into several records (Argus's status records, NetFlow/IPFIX
# active and inactive timeouts, CICFlowMeter's FIN tails and flow timeout): their web sessions are
# followed across records (``FlowGuessing.held_sessions``). Zeek and Suricata write a connection
# once; VPC's records span its aggregation interval, not a connection.
_CUT: Final = frozenset({"argus", "netflow", "cicflowmeter"})

SERVICES: Final = {
    21: "FTP", 22: "SSH", 23: "Telnet", 25: "SMTP-AUTH", 80: "HTTP", 110: "POP3", 143: "IMAP",
    443: "HTTPS", 445: "SMB", 465: "SMTPS", 587: "SMTP submission", 993: "IMAPS", 995: "POP3S",
    1433: "MSSQL", 1521: "Oracle", 3306: "MySQL", 3389: "RDP", 5432: "PostgreSQL", 6379: "Redis",
    8080: "HTTP", 8443: "HTTPS", 27017: "MongoDB",
}  # fmt: skip
"""Names for the evidence (the ports watched are the config's)."""


def _service(port: int) -> str:
    name = SERVICES.get(port)
    if name is None and 5900 <= port <= 5906:
        return "VNC"
    return name or f"tcp/{port}"


def robust_spread(values: list[int]) -> tuple[float, float]:
    """(median, 1.4826 x MAD / median) of ``values``; the spread is inf when the median is 0."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return 0.0, float("inf")
    mid = n // 2
    median = float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    if median <= 0:
        return median, float("inf")
    dev = sorted(abs(v - median) for v in ordered)
    mad = dev[mid] if n % 2 else (dev[mid - 1] + dev[mid]) / 2
    return median, _MAD_TO_SD * mad / median


class GuessState:
    """Sessions of one (tenant, source, service port) in one window."""

    __slots__ = ("conns", "extra", "failed", "held", "replies", "samples", "span", "targets")

    def __init__(self) -> None:
        self.span = Span()
        self.conns: set[tuple[str, int | str]] = set()  # (target, client port): one per connection
        self.extra = 0  # sessions beyond the cap of conns (not deduplicated)
        self.targets: dict[str | None, int] = {}  # sessions per target (None: beyond the cap)
        self.samples: list[int] = []  # client bytes per session, the first _SAMPLES
        self.replies: list[int] = []  # server bytes of those sessions: reverse counters or response records
        self.failed = 0  # refused/unanswered attempts seen once the key existed
        # Web ports: each session's [start, end, bytes both ways, its opening record's end, that
        # record's bytes] over all its records, for the connections held open whose records an
        # exporter cut (``FlowGuessing.held_sessions``).
        self.held: dict[tuple[str, int | str], list[int]] = {}

    def sessions(self) -> int:
        return len(self.conns) + self.extra

    def __getstate__(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _PICKLED)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        if len(s) == len(_PICKLED) - 1:  # pickled before ``held``
            s = (*s, {})
        for name, value in zip(_PICKLED, s, strict=True):
            setattr(self, name, value)
        for known in self.held.values():
            if len(known) == 3:  # 1.3.0's [start, end, bytes]: no opening known, the whole span is held
                known += [known[0], 0]


def _held_piece(ev: Any) -> list[int]:
    """One record as a held session ``[start, end, bytes, opening's end, opening's bytes]``: the
    record is its own opening."""
    size = ev.bytes_out + ev.bytes_in
    start = record_start(ev)
    end = start + ev.duration_ms
    return [start, end, size, end, size]


def _widen(known: list[int], start: int, end: int, size: int, opened: int, opening: int) -> None:
    """A held session ``[start, end, bytes, opening's end, opening's bytes]`` joined by another piece
    of its connection (``opened`` and ``opening``: the piece's own first record, itself for one
    record); the earliest record is the opening (records may arrive late)."""
    if start < known[0]:
        known[0] = start
        known[3], known[4] = opened, opening
    if end > known[1]:
        known[1] = end
    known[2] += size


# GuessState's fields in its pickle, in order (``held`` last: added in 1.3.0).
_PICKLED: Final = ("span", "conns", "extra", "targets", "samples", "replies", "failed", "held")


class FlowGuessing(WindowedDetector[GuessState]):
    meta = DetectorMeta(
        id="brute_force.flow_guessing",
        version="1.4.0",
        title="Credential guessing seen in flows",
        category="brute_force",
        score=50,
        severity="medium",
        attack=(
            technique("Credential Access", "T1110.001", "Password Guessing"),
            technique("Credential Access", "T1110.003", "Password Spraying"),
        ),
        kinds=frozenset({"flow"}),
        description="Many short answered sessions from one source to one authentication service "
        "(params.service_ports; params.web_ports with a stricter bar), whose client byte counts are "
        "small (params.max_median_bytes) and alike (robust CV <= params.max_byte_spread): at least "
        "params.min_sessions to one host (guessing) or sessions on params.spray_min_targets hosts "
        "(spraying) in 10 minutes. Refused or unanswered attempts are not sessions.",
        false_positives=(
            "monitoring that opens a session per check (Nagios check_by_ssh for many services, "
            "synthetic login probes) or a server polling many hosts (params.allowed_sources)",
            "CI or deployment jobs opening many short SSH sessions to one host (git polling of "
            "many repositories, scripted ssh loops)",
            "health checks or API clients hitting one web endpoint at high rate from one address",
        ),
        note="Flows cannot show whether a guess succeeded: check the target's authentication log "
        "(brute_force.auth_failures reads sshd) for a login from the source, block it at the edge, "
        "and require keys or MFA on the service. A tenant VM as source is likely compromised.",
        maturity="incubating",
    )
    param_spec: ClassVar[ParamSpec] = {
        "service_ports": list,
        "web_ports": list,
        "min_sessions": int,
        "web_min_sessions": int,
        "spray_min_targets": int,
        "min_session_packets": int,
        "max_session_ms": int,
        "max_median_bytes": int,
        "max_byte_spread": float,
        "web_max_byte_spread": float,
        "alike_reply_ports": list,
        "allowed_sources": list,
        "internal_score": int,
    }

    def configure(self, config: DetectorConfig) -> None:
        p = self.params
        self.web_ports = frozenset(int(x) for x in p["web_ports"])
        self.ports = frozenset(int(x) for x in p["service_ports"]) | self.web_ports
        self.min_sessions = int(p["min_sessions"])
        self.web_min_sessions = int(p["web_min_sessions"])
        self.web_flood = flood_per_minute(config)  # dos.app_flood's bar
        self.forwarder_min = forwarder_bar(config)  # ... and its reverse-proxy bar
        self.spray_targets = int(p["spray_min_targets"])
        self.min_packets = int(p["min_session_packets"])
        self.max_ms = int(p["max_session_ms"])
        self.max_median = int(p["max_median_bytes"])
        self.max_spread = float(p["max_byte_spread"])
        self.web_max_spread = float(p["web_max_byte_spread"])
        self.reply_ports = frozenset(int(x) for x in p["alike_reply_ports"])
        self.held_ms, self.held_setup, self.held_bps = held_bar(config)  # dos.slow_connections' bar
        self.allowed = frozenset(p["allowed_sources"])
        self.internal_score = int(p["internal_score"])

    def new_state(self, key: Hashable) -> GuessState:
        return GuessState()

    def observe_batch(self, batch: Batch) -> None:
        responses = batch.responses()
        batch = batch.initiated()  # a response record is never the subject
        ports, allowed, max_keys, web_ports = self.ports, self.allowed, self.max_keys, self.web_ports
        min_packets, max_ms, max_ids, cap = self.min_packets, self.max_ms, self.max_ids, self.max_distinct
        reg = batch.registry
        service = reg.provider_service if reg.has_provider_services else None
        # The pane of the current event time, cached locally: a batch spans seconds, a pane minutes.
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        for ev, view in zip(batch.flows, batch.flow_views, strict=True):
            port = ev.dst_port
            if port not in ports or ev.proto != "tcp":
                continue
            if service is not None and service(ev.dst_ip, port) is not None:
                continue  # the provider's own endpoints (instance metadata polled over HTTP): no login
            try:
                answer = view & ANSWER_MASK
                ts = ev.ts
                if answer != ANSWERED:
                    if answer != UNKNOWN:  # refused or unanswered: a probe, counted against the share
                        if ts - ts % pane != cur:
                            bucket, cur = self.bucket(ts), ts - ts % pane
                        seen: GuessState | None = bucket.get((ev.tenant, ev.src_ip, port))
                        if seen is not None:
                            seen.failed += 1
                        continue
                    # flowdir.took_connection inlined (the hot path), any role but a response
                    if not view & ONE_WAY or not client_spoke(ev.packets_out, ev.bytes_out, ev.src_ip):
                        continue  # midstream traffic, or a one-way record that shows no answer
                if ev.packets_out < min_packets or (ev.duration_ms > max_ms and ev.source != "vpcflow"):
                    # no session, but perhaps a later piece of one (a slow client's trickle)
                    if port in web_ports and ev.source in _CUT:
                        if ts - ts % pane != cur:
                            bucket, cur = self.bucket(ts), ts - ts % pane
                        st: GuessState | None = bucket.get((ev.tenant, ev.src_ip, port))
                        if st is not None and st.held:
                            self._extend_held(st, (ev.dst_ip, ev.src_port or ev.id), ev)
                    continue
                if port in web_ports and self._held_open(ev):
                    continue  # a slow attack's connection (dos.slow_connections), not a login
                src = ev.src_ip
                if src in allowed:
                    continue
                key = (ev.tenant, src, port)
                if ts - ts % pane != cur:
                    bucket, cur = self.bucket(ts), ts - ts % pane
                st = bucket.get(key)
                if st is None:  # Detector.state, inlined: created, or counted when the pane is full
                    if len(bucket) >= max_keys:
                        self.counters["overflow"] += 1
                        continue
                    st = bucket[key] = GuessState()
                dst = ev.dst_ip
                conn = (dst, ev.src_port or ev.id)  # no port known: each record is its own session
                conns = st.conns
                if conn in conns:  # another record of a connection already counted
                    if port in web_ports and ev.source in _CUT:
                        self._extend_held(st, conn, ev)
                    continue
                if len(conns) < cap:
                    conns.add(conn)
                    if port in web_ports and ev.source in _CUT:
                        st.held[conn] = _held_piece(ev)
                else:
                    st.extra += 1
                targets = st.targets
                n = targets.get(dst)
                if n is not None:
                    targets[dst] = n + 1
                elif len(targets) < cap:
                    targets[dst] = 1
                else:
                    targets[None] = targets.get(None, 0) + 1  # beyond the cap: counted, not named
                samples = st.samples
                if len(samples) < _SAMPLES:
                    samples.append(ev.bytes_out)
                    if ev.bytes_in > 0:  # reverse counters: bidirectional formats only
                        st.replies.append(ev.bytes_in)
                span = st.span  # Span.add, inlined
                if span.count == 0:
                    span.first = span.last = ts
                elif ts < span.first:
                    span.first = ts
                elif ts > span.last:
                    span.last = ts
                span.count += 1
                if len(span.ids) < max_ids:
                    span.ids.append(ev.id)
            except Exception as exc:
                self.error(ev, exc)
        if responses:
            self._note_replies(responses)

    def _note_replies(self, responses: list[tuple[Any, int]]) -> None:
        """One-way formats write the server's side of a session as a record of its own: its bytes are
        the session's reply, sampled for the client's state if it has one in the pane (the request
        came first, in this batch or an earlier one). Without them, a web flood whose pages differ
        (a bidirectional record's reply spread rules it out) was a "password guessing" run as VPC
        Flow Logs."""
        ports = self.ports
        for ev, view in responses:
            if not view & ONE_WAY or ev.src_port not in ports or ev.proto != "tcp":
                continue
            bucket = self.open_pane(ev.ts)
            st: GuessState | None = (
                None if bucket is None else bucket.get((ev.tenant, ev.dst_ip, ev.src_port))
            )
            if st is not None and len(st.replies) < _SAMPLES:
                st.replies.append(ev.bytes_out)

    def _held_open(self, ev: Any) -> bool:
        """A web connection held open with next to nothing sent (``dos.slow_connections``' held
        piece): at least its ``min_held_ms`` long, both directions within its ``setup_bytes`` plus
        ``max_bytes_per_s`` of its duration. VPC's duration is its aggregation interval."""
        if ev.source == "vpcflow" or not self._held(ev.duration_ms, ev.bytes_out + ev.bytes_in):
            return False
        self.counters["held_open"] = self.counters.get("held_open", 0) + 1
        return True

    def _held(self, span_ms: int, size: int) -> bool:
        """``dos.slow_connections``' held piece: at least its ``min_held_ms``, and ``size`` bytes (both
        directions) within its ``setup_bytes`` plus ``max_bytes_per_s`` of the span."""
        return span_ms >= self.held_ms and size <= self.held_setup + self.held_bps * span_ms / 1000

    @staticmethod
    def _extend_held(st: GuessState, conn: tuple[str, int | str], ev: Any) -> None:
        """A later record of a web session (a slow client's trickle, cut into records by its
        exporter): its span and bytes join the session's."""
        known = st.held.get(conn)
        if known is not None:
            _widen(known, *_held_piece(ev))

    def held_sessions(self, st: GuessState) -> int:
        """Web sessions held open across several records (``dos.slow_connections``' held piece:
        at least its ``min_held_ms`` from the first record to the last, within its byte budget).
        An exporter that cuts a connection into records (Argus's status records, every 5 s as
        shipped) shows a slow attack's connection as a short opening record and a trickle after:
        slowhttptest's slow read (``-X``) made 349 such "login sessions" in the tool lab."""
        return sum(1 for known in st.held.values() if self._held_session(*known))

    def _held_session(self, start: int, end: int, size: int, opened: int, opening: int) -> bool:
        """Held as a whole, or held after its opening record: a slow read's opening carries the
        request and the server's first reply (2.5 kB in the tool lab's Argus records), over the
        set-up budget until the trickle after it (66 B each way every 7-30 s, the server's
        zero-window probes) has lasted minutes; the trickle alone is held once it has lasted
        ``min_held_ms``. A login tool posts its next guess on a kept connection (kilobytes)."""
        if self._held(end - start, size):
            return True
        trickle_ms = end - opened
        return trickle_ms >= self.held_ms and size - opening <= self.held_bps * trickle_ms / 1000

    def merge(self, into: GuessState, other: GuessState) -> None:
        cap = self.max_distinct
        for conn, piece in other.held.items():
            known = into.held.get(conn)
            if known is None:
                if conn in into.conns or len(into.conns) < cap:
                    into.held[conn] = list(piece)
            else:
                _widen(known, *piece)
        into.span.merge(other.span, self.max_ids)
        for conn in other.conns:
            if conn in into.conns:
                continue
            if len(into.conns) < cap:
                into.conns.add(conn)
            else:
                into.extra += 1
        into.extra += other.extra
        for dst, n in other.targets.items():
            bump_capped(into.targets, dst, n, cap)
        room = _SAMPLES - len(into.samples)
        if room > 0:
            into.samples.extend(other.samples[:room])
            into.replies.extend(other.replies[:room])
        into.failed += other.failed

    def _forwarders(self, states: dict[Hashable, Any]) -> set[tuple[Any, str]]:
        """(tenant, address) of the window's web servers that ``forwarder_min`` distinct clients had
        sessions with: each client's targets on web ports are what it was served by."""
        served: dict[tuple[Any, str], set[str]] = {}
        web = self.web_ports
        for key, st in states.items():
            tenant, src, port = cast(tuple[Any, str, int], key)
            if port in web:
                for target in st.targets:
                    if target is not None:
                        served.setdefault((tenant, target), set()).add(src)
        return {at for at, clients in served.items() if len(clients) >= self.forwarder_min}

    def _within_tenant_web(self, f: Finding) -> bool:
        """A web "guessing" finding from one of its tenant's addresses at another of them: the shape
        of a reverse proxy or load balancer passing its clients' requests to the tenant's backend
        (``dos.app_flood``'s forwarder), if its source served many clients itself."""
        ev = f.evidence
        if ev["port"] not in self.web_ports or ev["variant"] != "guessing" or f.tenant is None:
            return False
        tenant_of = self.reg.tenant_of_ip
        return (
            tenant_of(cast(str, ev["sources"][0])) == f.tenant
            and tenant_of(cast(str, ev["top_target"])) == f.tenant
        )

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        best: dict[tuple[Any, str], tuple[Finding, int]] = {}
        others: dict[tuple[Any, str], list[str]] = {}
        forwarders: set[tuple[Any, str]] | None = None  # found for the window's first finding in question
        for key, st in states.items():
            f = self.finish_key(window, key, st)
            if f is None:
                continue
            if self.forwarder_min and self._within_tenant_web(f):
                if forwarders is None:
                    forwarders = self._forwarders(states)
                if (f.tenant, f.evidence["sources"][0]) in forwarders:  # its clients are seen at its front
                    self.counters["forwarder"] = self.counters.get("forwarder", 0) + 1
                    continue
            tenant, src, port = cast(tuple[Any, str, int], key)
            owner = (tenant, src)
            others.setdefault(owner, []).append(f"{_service(port)} ({port})")
            sessions = f.evidence["sessions"]
            kept = best.get(owner)
            if kept is None or (sessions, -port) > (kept[1], -kept[0].evidence["port"]):
                best[owner] = (f, sessions)
        out = []
        for owner, (f, _) in best.items():
            mine = f"{f.evidence['service']} ({f.evidence['port']})"
            f.evidence["other_services"] = sorted(s for s in others[owner] if s != mine)
            out.append(f)
        return out

    def finish_key(self, window: Window, key: Hashable, state: GuessState) -> Finding | None:
        tenant, src, port = cast(tuple[Any, str, int], key)
        web = port in self.web_ports
        need = self.web_min_sessions if web else self.min_sessions
        sessions = state.sessions()
        if sessions < (need if web else min(need, self.spray_targets)):
            return None
        known = {t: n for t, n in state.targets.items() if t is not None}
        if not known:
            return None
        top_target = max(known, key=lambda t: (known[t], t))
        top_sessions = known[top_target]
        n_targets = len(known) + (1 if None in state.targets else 0)
        guessing = top_sessions >= need
        # Flood-rate hammering of a web service is dos.app_flood's, not a login's: the rate over the
        # sessions' own span (at least a second), so a flood's last seconds in the next window are too.
        active_ms = min(max(state.span.last - state.span.first, 1000), window.end - window.start)
        if web and guessing and top_sessions * 60_000 >= self.web_flood * active_ms:
            return None
        spraying = not web and n_targets >= self.spray_targets  # a browser reaches many web hosts
        if not guessing and not spraying:
            return None
        max_spread = self.web_max_spread if web else self.max_spread
        median, spread = robust_spread(state.samples)
        if median > self.max_median or spread > max_spread:
            return None
        reply_spread = None
        alike_replies = web or port in self.reply_ports
        if alike_replies and 2 * len(state.replies) >= len(state.samples):  # known server side: alike too
            _, reply_spread = robust_spread(state.replies)
            if reply_spread > max_spread:
                return None
        if web and 2 * self.held_sessions(state) >= sessions:
            self.counters["held_open"] = self.counters.get("held_open", 0) + 1
            return None  # mostly connections held open: a slow attack's (dos.slow_connections)
        variant = "guessing" if guessing else "spraying"
        internal = self.reg.tenant_of_ip(src) is not None
        service = _service(port)
        answered = sessions / (sessions + state.failed)
        where = f"{top_target}" if variant == "guessing" else f"{n_targets} hosts"
        return Finding(
            entity=source_entity(self.reg, src),
            tenant=tenant,
            window=window,
            score=self.internal_score if internal else self.meta.score,
            summary=f"{'Tenant VM' if internal else 'External address'} {src} opened {sessions} short "
            f"{service} sessions to {where} (password {variant}): median {median:.0f} B sent per "
            f"session, spread {spread:.2f}",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=sessions,
            event_ids=list(state.span.ids),
            evidence={
                "variant": variant,
                "service": service,
                "port": port,
                "sessions": sessions,
                "distinct_targets": n_targets,
                "top_target": top_target,
                "top_target_sessions": top_sessions,
                "median_bytes_per_session": round(median, 1),
                "byte_spread": round(spread, 3),
                "reply_byte_spread": None if reply_spread is None else round(reply_spread, 3),
                "answered_share": round(answered, 3),
                "failed_attempts": state.failed,
                "source_internal": internal,
                "sources": [src],  # the alert is about the flows this source sent
            },
            attack=self.meta.attack[1] if variant == "spraying" else self.meta.attack[0],
        )
