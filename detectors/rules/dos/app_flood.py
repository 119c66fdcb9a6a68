"""Application-layer flood: many short connections from one or a few sources to one web service.

What it counts. Per (tenant, destination address, service port) and window, every connection
record a client opened (``detectors.flowdir``: never a response record) over TCP to one of
``params.service_ports`` that lasted at most ``params.max_duration_ms``, or longer when the record
holds the whole connection and the client sent at most one request's data in it
(``params.max_request_bytes``: a flood's connection that waited its turn at a saturated server),
per source: how many,
how many were answered or failed, and the mean and spread of their byte counts (both directions
where the exporter has them). A record is one connection for Zeek, Argus, nProbe, CICFlowMeter,
and the client side of one for NetFlow/IPFIX and VPC Flow Logs: short connections of a flood each
have their own ephemeral source port, so one record each in every format. A one-way record whose
TCP flags are known and hold no SYN continues a connection that an inactive or active timeout
cut (a slow connection's lines, a long download): it is not a new connection and is skipped, and
so is a CICFlowMeter record with an ACK and no SYN, the tail CICFlowMeter writes after the FIN
that ended a connection's record (``flowdir.continues_connection``), which would otherwise double
the count and, with no payload, spread the byte counts. So is an Argus status record without a SYN
(``flowdir.argus_status_record``): with Argus's shipped 5 s status interval, slowhttptest's 300
slow POST bodies in the tool lab were 1,812 "short connections" a minute, and five flood alerts
beside the slow-DoS one.

When it fires (``params``, thresholds in ``detectors/config/default.yaml``):

- one source: at least ``min_connections`` short connections to the service in the window (the
  entity is the source), with byte counts alike (coefficient of variation <= ``max_bytes_cv``);
- a handful: no source alone reaches that, but the ``max_sources`` busiest together do and make
  at least ``min_top_share`` of the service's short connections (the entity is the victim; the
  evidence names the sources, each of whose connections must be alike as above).

Answered or not is reported, never required: a tool's complete connections are an application-
layer flood; unanswered ones to an open port mean a server that no longer keeps up, or crafted
packets (the Mirai flood of IoT-23 capture 34-1 is 14,260 Zeek ``OTH`` records with history ``C``:
packets with bad checksums, which Zeek counts as 0 packets, so the packet-count rule
``dos.source_flood`` skips every one of them; here they are 9,902 then 4,358 records a minute from
one source to 123.59.209.185:80).

Why these thresholds (the tools, then the benign look-alikes):

- Hulk (Barry Shteiman, hulk.py, 2012): 500 threads, each a loop of ``urllib2.urlopen`` of the
  target with a random query (``buildblock`` of 3-10 letters, ``=``, 3-10 letters), a random
  User-Agent and Referer; urllib2 sends ``Connection: close``, so every request is a new TCP
  connection: thousands of connections a second with similar request sizes.
- GoldenEye (Jan Seidl, github.com/jseidl/GoldenEye): ``DEFAULT_WORKERS = 10`` and
  ``DEFAULT_SOCKETS = 500``; each round a worker opens its 500 connections, sends one request on
  each (``Keep-Alive``/``Cache-Control: no-cache`` headers, random query keys), reads the
  responses and closes them all: 5,000 connections per round, each held until the round's last
  response came, so as long as the round once the server is saturated.
- LOIC (Praetox, HTTP mode): ``Threads`` default 10, each a loop of connect, send one GET,
  optionally wait for the reply, close; at 10 threads and one round trip each, >= 100
  connections a second on any network.
- HOIC: HTTP GET/POST flood of up to 256 URLs with "booster" scripts that randomise headers and
  URLs; new connections per request, rates above LOIC's.
- Mirai's HTTP flood (attack_app_http in the Mirai source, 2016) and its TCP floods: thousands of
  requests or crafted packets a second from each bot.
  The slowest of them (LOIC's 10 threads against a server answering in 1 s) still makes 10
  connections a second: ``min_connections: 600`` a minute is that floor.
- Benign: a browser opens at most 6 connections per host over HTTP/1.1 (Chrome's and Firefox's
  ``max-persistent-connections-per-server``) and one over HTTP/2, and reuses them (keep-alive);
  load-balancer and CDN health checks come every 5-300 s per checking node (AWS ELB/ALB
  ``HealthCheckIntervalSeconds`` 5-300, default 30; Google Cloud health checks default 5 s from
  each prober in 35.191.0.0/16 and 130.211.0.0/22; CloudFront/Akamai origin checks alike): at most
  12 a minute per node; monitoring probes (Prometheus blackbox 15-60 s, Pingdom 1 min, Nagios
  5 min) fewer. Every one of these stays one to two orders of magnitude below 600 a minute, and a
  fleet of checkers is many sources with a small share each. A busy API client with keep-alive
  makes a few long connections with many bytes (excluded by count and ``max_duration_ms``).
- A NAT gateway or forward proxy can pass 600 connections a minute to one popular site, but its
  users fetch different objects for different times: web object sizes are heavy-tailed (Crovella
  and Bestavros, "Self-similarity in World Wide Web traffic", 1997: Pareto, CV > 1), while a flood
  tool repeats one request template (CV well under 0.5): ``max_bytes_cv: 1.0``. The spread is
  taken over the source's whole connections (a record with the SYN and the FIN or reset,
  ``flowdir.whole_connection``) when they are at least half of its records: an opening record that
  an exporter cut holds a part of its connection, of any size. In the tool lab's Argus records,
  whose status interval (5 s) cut siege's longer keep-alive connections against Apache, 62 such
  openings (5 s of requests each, a median of 127 kB) among 2,079 records spread the bytes to a
  CV of 1.78 and the flood was missed; its 2,017 whole connections spread 0.57. Exporters that
  write no flags (VPC Flow Logs' default format) and CICFlowMeter (its flags are the first
  packet's) give none: all records, as before.
- ``max_duration_ms: 10000``: a flood's connection lasts one request (sub-second to a few
  seconds when the server is loaded); longer records are keep-alive sessions or slow attacks
  (``dos.slow_connections``), unless the record holds the whole connection
  (``flowdir.opened_and_closed``: its SYN and its FIN or reset; every Zeek record; a CICFlowMeter
  record with the SYN, shorter than its 120 s flow timeout, which ended it at the FIN) and the client
  sent at most ``max_request_bytes: 2048`` of data in it (``flowdir.data_bytes``, beyond a bare
  header a packet): one request, whose headers are hundreds of bytes (ab's ~100, Hulk's and
  GoldenEye's 300-1,000 with their random headers and query). A flood that saturates its server
  makes its own connections long: GoldenEye's wait for their round's last answer, and any tool's
  wait in the server's queue once its workers are busy. In the tool lab, ab with 500 connections
  at once against an Apache page that costs 4 s (150 workers) made 1,952 connections in a minute,
  each held 4-16 s (median 13 s): as NetFlow (softflowd) records no rule raised it before 1.5.0.
  Modelled on GoldenEye's loop as Zeek records (10 workers of 500, rounds of 30 to 300 s: 10,000
  to 1,000 connections a minute, each held as long as its round), none did either. A keep-alive
  session carries several requests, more than that. A slow attack's connections carry less
  (slowloris's header lines): they count here too when a source opens them at this rule's rate,
  and both rules raise it. Exporters that write no flags (VPC Flow Logs' default format) keep the
  duration bar alone.

A reverse proxy or load balancer of the tenant is a handful of sources making most of a backend's
connections by design, and nginx opens one upstream connection per request unless told otherwise
(``proxy_http_version`` 1.0 and no ``keepalive`` by default, ngx_http_upstream_module): 10
requests a second through it are 600 a minute, with a backend's regular response sizes. What
tells it from a flood tool is that it is a web server itself: a source that the tenant owns and
that served at least ``params.forwarder_min_clients`` distinct clients on these ports in the same
window (answered connections of any length, keep-alive sessions included; one-way records in
which the client sent more than a connect's SYNs) is passing their requests on. Its flood of a
backend of the same tenant is not raised (``counters["forwarder"]``); the clients it forwards
for are each seen at its front. A tool host serves no clients; a compromised web server flooding
an outside victim is still raised (the victim is not of its tenant). An exporter that sees only
the backend side (a provider-managed load balancer whose front records are not in the feed)
keeps the ``allowed_sources`` remedy. Known limit: an intruder who holds a VM can dress it as a
proxy (connections to it from ten addresses of its own) and then flood a backend of the same
tenant without this rule raising it.

Connections to the provider's own endpoints (the registry's ``provider_services`` at their ports:
instance metadata, container registry, update mirrors), which SDKs and agents poll without
keep-alive, are skipped and counted under ``counters["provider_service"]``.

Left to configuration: a client that opens one connection per API call at high rate (no
keep-alive) is indistinguishable by flows: ``allowed_sources``; an address behind which a service
takes floods of checks by design: ``allowed_destinations``. Known limit: a flood that pipelines many
requests over a few keep-alive connections (Mirai's HTTP flood with few ``conns``) shows few
connections and is not counted here. Measured in the tool lab (``detectors.evaluation.toollab``):
siege with 50 keep-alive users at ~200 requests a second against nginx is raised by no rule; wrk at
full speed is raised here, since nginx closes a keep-alive connection after 1,000 requests
(``keepalive_requests``) and 80,000 requests a second made thousands of connections a minute. A
fixed bar on requests over kept-alive connections would also take a CDN's edges or an API
gateway fetching from their origin, which do the same by design.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, ClassVar, Final, cast

from detectors.alert import Entity
from detectors.base import Batch, Detector, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import (
    ANSWER_MASK,
    ANSWERED,
    REFUSED,
    UNANSWERED,
    argus_status_record,
    continues_connection,
    data_bytes,
    opened_and_closed,
    took_connection,
    whole_connection,
)
from detectors.meta import DetectorMeta, technique
from detectors.windows import Window

__all__ = ["AppFlood", "ServiceState", "flood_per_minute", "forwarder_bar"]

# Per-source record: connections, answered, failed (refused or unanswered), sum of bytes, sum of
# squared bytes, first ts, last ts, evidence ids; then the same three sums over the records that
# hold a whole connection (``flowdir.whole_connection``), added in 1.4.0.
_N, _OK, _FAILED, _BYTES, _BYTES2, _FIRST, _LAST, _IDS, _WHOLE, _WBYTES, _WBYTES2 = range(11)
_SUMS: Final = (_N, _OK, _FAILED, _BYTES, _BYTES2, _WHOLE, _WBYTES, _WBYTES2)
_OVERFLOW: Final = "@other"
"""Source key that sums the sources beyond ``engine.max_distinct_per_key``."""


def _new_source(ts: int) -> list[Any]:
    return [0, 0, 0, 0, 0, ts, ts, [], 0, 0, 0]


class ServiceState:
    """One service's short connections in one pane, per source (capped; the rest under ``@other``),
    and the distinct clients it served over connections of any length (up to the forwarder bar)."""

    __slots__ = ("by_src", "clients", "total")

    def __init__(self) -> None:
        self.total = 0
        self.by_src: dict[str, list[Any]] = {}
        self.clients: set[str] | None = None

    def __getstate__(self) -> tuple[object, ...]:
        return (self.total, self.by_src, self.clients)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.total, self.by_src = s[:2]  # type: ignore[assignment]
        self.clients = s[2] if len(s) > 2 else None  # type: ignore[assignment]  # 1.1.0's state had none
        for rec in self.by_src.values():
            if len(rec) == _WHOLE:  # before 1.4.0: no whole connections known, the spread over all
                rec += [0, 0, 0]


def _cv(n: int, total: int, squares: int) -> float:
    """Coefficient of variation of n values from their sum and sum of squares (0 when all are 0)."""
    if n <= 0 or total <= 0:
        return 0.0
    mean = total / n
    return math.sqrt(max(0.0, squares / n - mean * mean)) / mean


def _spread(rec: list[Any]) -> float:
    """The byte spread of a source's connections: over its whole ones (a record with the SYN and the
    FIN or reset) when they are at least half, else over all its records. An opening record that an
    exporter cut (Argus's 5 s status records) holds a part of its connection, of any size."""
    whole = rec[_WHOLE]
    if whole >= 2 and 2 * whole >= rec[_N]:
        return _cv(whole, rec[_WBYTES], rec[_WBYTES2])
    return _cv(rec[_N], rec[_BYTES], rec[_BYTES2])


class AppFlood(Detector):
    meta = DetectorMeta(
        id="dos.app_flood",
        version="1.5.0",
        title="Application-layer flood of short connections",
        category="dos",
        score=65,
        severity="medium",
        attack=(
            technique("Impact", "T1499.002", "Service Exhaustion Flood"),
            technique("Impact", "T1499.003", "Application Exhaustion Flood"),
        ),
        kinds=frozenset({"flow"}),
        description="One source (or at most params.max_sources that make most of the service's traffic) "
        "opens params.min_connections or more short TCP connections to one web service in a window, with "
        "similar byte counts: an HTTP flood of the Hulk, GoldenEye, LOIC or HOIC kind, or a bot's flood.",
        false_positives=(
            "a client that opens a new connection for every API call at a high rate (params.allowed_sources)",
            "a forward proxy or NAT gateway with byte counts as regular as a tool's (params.allowed_sources)",
            "a load balancer whose front is not in the feed (a provider-managed one): its upstream "
            "connections, one per request (params.allowed_sources)",
            "a load test run by the tenant (params.allowed_sources / allowed_destinations)",
        ),
        note="Check the service's request logs for the source's URLs and User-Agents (random query strings "
        "mean Hulk or GoldenEye; one login URL, or 401s, mean a password guesser at its default pace, which "
        "flows show the same way: hydra's web modes in the tool lab); rate-limit or block the source at the "
        "load balancer or WAF. Mostly "
        "unanswered connections (evidence.failed) mean the server no longer keeps up. A tenant VM as source "
        "means it is abused.",
        maturity="incubating",
    )
    param_spec: ClassVar[ParamSpec] = {
        "service_ports": list,
        "min_connections": int,
        "max_sources": int,
        "min_top_share": float,
        "max_duration_ms": int,
        "max_request_bytes": int,
        "max_bytes_cv": float,
        "forwarder_min_clients": int,
        "allowed_sources": list,
        "allowed_destinations": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        p = self.params
        self.ports = frozenset(int(x) for x in p["service_ports"])
        self.min_conns = int(p["min_connections"])
        self.max_sources = max(1, int(p["max_sources"]))
        self.min_top_share = float(p["min_top_share"])
        self.max_duration = int(p["max_duration_ms"])
        self.max_request = int(p["max_request_bytes"])
        self.max_cv = float(p["max_bytes_cv"])
        self.forwarder_min = int(p["forwarder_min_clients"])  # 0: off
        self.allowed_src = frozenset(p["allowed_sources"])
        self.allowed_dst = frozenset(p["allowed_destinations"])

    def new_state(self, key: Hashable) -> ServiceState:
        return ServiceState()

    def observe_batch(self, batch: Batch) -> None:
        batch = batch.initiated()  # a response record is never a connection of the flood
        ports, max_dur, max_request, max_keys = self.ports, self.max_duration, self.max_request, self.max_keys
        allowed_src, allowed_dst = self.allowed_src, self.allowed_dst
        cap, max_ids, forwarder_min = self.max_distinct, self.max_ids, self.forwarder_min
        reg = batch.registry
        service = reg.provider_service if reg.has_provider_services else None
        skipped = 0
        # The pane of the current event time, cached locally: a batch spans seconds, a pane minutes.
        pane, cur, bucket = self._pane, -1, cast(dict[Hashable, Any], {})
        for ev, view in zip(batch.flows, batch.flow_views, strict=True):
            try:
                if ev.dst_port not in ports or ev.proto != "tcp":
                    continue
                long = ev.duration_ms > max_dur and not (
                    data_bytes(ev) <= max_request and opened_and_closed(ev)
                )
                if long and not forwarder_min:
                    continue
                if ev.extra and (continues_connection(ev, view) or argus_status_record(ev)):
                    continue  # no SYN: a later record of a connection (timeouts cut it; CICFlowMeter's tails)
                src, dst = ev.src_ip, ev.dst_ip
                if src in allowed_src or dst in allowed_dst:
                    continue
                if service is not None and service(dst, ev.dst_port) is not None:
                    skipped += 1  # instance metadata, registries, mirrors: the provider's own endpoints
                    continue
                ts = ev.ts
                key = (ev.tenant, dst, ev.dst_port)
                if ts - ts % pane != cur:
                    bucket, cur = self.bucket(ts), ts - ts % pane
                st: ServiceState | None = bucket.get(key)
                if st is None:  # Detector.state, inlined: created, or counted when the pane is full
                    if len(bucket) >= max_keys:
                        self.counters["overflow"] += 1
                        continue
                    st = bucket[key] = ServiceState()
                if forwarder_min and took_connection(view, ev):
                    clients = st.clients
                    if clients is None:
                        clients = st.clients = set()
                    if len(clients) < forwarder_min:
                        clients.add(src)
                if long:
                    continue  # a keep-alive session: a client served, not a connection of a flood
                st.total += 1
                by_src = st.by_src
                rec = by_src.get(src)
                if rec is None:
                    if len(by_src) >= cap:
                        src = _OVERFLOW
                        rec = by_src.get(src)
                    if rec is None:
                        rec = by_src[src] = _new_source(ts)
                rec[_N] += 1
                answer = view & ANSWER_MASK
                if answer == ANSWERED:
                    rec[_OK] += 1
                elif answer in (UNANSWERED, REFUSED):
                    rec[_FAILED] += 1
                size = ev.bytes_out + ev.bytes_in
                rec[_BYTES] += size
                rec[_BYTES2] += size * size
                if whole_connection(ev):
                    rec[_WHOLE] += 1
                    rec[_WBYTES] += size
                    rec[_WBYTES2] += size * size
                if ts < rec[_FIRST]:
                    rec[_FIRST] = ts
                elif ts > rec[_LAST]:
                    rec[_LAST] = ts
                if len(rec[_IDS]) < max_ids:
                    rec[_IDS].append(ev.id)
            except Exception as exc:
                self.error(ev, exc)
        if skipped:
            self.counters["provider_service"] = self.counters.get("provider_service", 0) + skipped

    def merge(self, into: ServiceState, other: ServiceState) -> None:
        into.total += other.total
        if other.clients:
            if into.clients is None:
                into.clients = set()
            served = into.clients
            for client in other.clients:  # up to the bar: the count, min(bar, union), is what matters
                if len(served) >= self.forwarder_min:
                    break
                served.add(client)
        cap = self.max_distinct
        for src, rec in other.by_src.items():
            mine = into.by_src.get(src)
            if mine is None:
                if len(into.by_src) >= cap:
                    src = _OVERFLOW
                    mine = into.by_src.get(src)
                if mine is None:
                    into.by_src[src] = [*rec[:_IDS], list(rec[_IDS]), *rec[_IDS + 1 :]]
                    continue
            for i in _SUMS:
                mine[i] += rec[i]
            mine[_FIRST] = min(mine[_FIRST], rec[_FIRST])
            mine[_LAST] = max(mine[_LAST], rec[_LAST])
            ids = mine[_IDS]
            for i in rec[_IDS]:
                if len(ids) >= self.max_ids:
                    break
                if i not in ids:
                    ids.append(i)

    def _alike(self, recs: list[list[Any]]) -> bool:
        return all(_spread(r) <= self.max_cv for r in recs)

    def _forwarders(self, states: dict[Hashable, Any]) -> set[tuple[Any, str]]:
        """(tenant, address) of the window's web servers that served ``forwarder_min_clients``
        distinct clients, over their ports together."""
        served: dict[tuple[Any, str], set[str]] = {}
        for key, st in states.items():
            if st.clients:
                tenant, dst, _port = cast(tuple[Any, str, int], key)
                served.setdefault((tenant, dst), set()).update(st.clients)
        return {at for at, clients in served.items() if len(clients) >= self.forwarder_min}

    def _passed_on(
        self, forwarders: set[tuple[Any, str]], tenant: Any, dst: str, st: ServiceState
    ) -> set[str]:
        """The service's sources that are reverse proxies or load balancers of its tenant: web
        servers of the tenant's own addresses that served many clients in the window, passing
        their requests on to this backend of the same tenant."""
        tenant_of = self.reg.tenant_of_ip
        if tenant is None or tenant_of(dst) != tenant:
            return set()
        return {
            src
            for src in st.by_src
            if src != _OVERFLOW and (tenant, src) in forwarders and tenant_of(src) == tenant
        }

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        out: list[Finding] = []
        min_conns = self.min_conns
        forwarders: set[tuple[Any, str]] | None = None  # found for the window's first busy service
        for key, st in states.items():
            if st.total < min_conns:
                continue
            tenant, dst, port = cast(tuple[Any, str, int], key)
            # A forwarder's connections are its clients' requests, each client seen at its front:
            # set aside, and the rest judged on their own (a flood hidden behind proxy traffic).
            passed_on: set[str] = set()
            if self.forwarder_min:
                if forwarders is None:
                    forwarders = self._forwarders(states)
                passed_on = self._passed_on(forwarders, tenant, dst, st)
            total = st.total
            if passed_on:
                self.counters["forwarder"] = self.counters.get("forwarder", 0) + 1
                total -= sum(st.by_src[src][_N] for src in passed_on)
            ranked = sorted(
                (
                    (rec[_N], src)
                    for src, rec in st.by_src.items()
                    if src != _OVERFLOW and src not in passed_on
                ),
                reverse=True,
            )
            singles = [
                (src, st.by_src[src]) for n, src in ranked if n >= min_conns and self._alike([st.by_src[src]])
            ]
            if singles:
                out.extend(self._finding(window, tenant, dst, port, total, [single]) for single in singles)
                continue
            top = [(src, st.by_src[src]) for _, src in ranked[: self.max_sources]]
            count = sum(rec[_N] for _, rec in top)
            if (
                len(top) >= 2
                and count >= min_conns
                and count >= self.min_top_share * total
                and self._alike([rec for _, rec in top])
            ):
                out.append(self._finding(window, tenant, dst, port, total, top))
        return out

    def _finding(
        self,
        window: Window,
        tenant: Any,
        dst: str,
        port: int,
        total: int,
        who: list[tuple[str, list[Any]]],
    ) -> Finding:
        """``total``: the service's short connections in the window, less those passed on by its
        tenant's reverse proxies."""
        n = sum(r[_N] for _, r in who)
        ok = sum(r[_OK] for _, r in who)
        failed = sum(r[_FAILED] for _, r in who)
        total_bytes = sum(r[_BYTES] for _, r in who)
        cv = max(_spread(r) for _, r in who)
        seconds = max(1.0, (window.end - window.start) / 1000)
        ids = [i for _, r in who for i in r[_IDS]][: self.max_ids]
        kind = (
            "complete connections: application-layer flood"
            if ok * 2 > n
            else "mostly unanswered: the server no longer keeps up, or the packets are crafted"
            if failed * 2 > n
            else "connections of unknown outcome"
        )
        evidence: dict[str, Any] = {
            "victim": dst,
            "port": port,
            "connections": n,
            "connections_per_s": round(n / seconds, 1),
            "answered": ok,
            "failed": failed,
            "mean_bytes": round(total_bytes / n, 1) if n else 0.0,
            "bytes_cv": round(cv, 3),  # over whole connections where they are most (``_spread``)
            "whole_connections": sum(r[_WHOLE] for _, r in who),
            "service_connections": total,
            "destinations": [dst],  # what the alert is about: these sources' connections to the victim
        }
        if len(who) == 1:
            src = who[0][0]
            entity = Entity("ip", src)
            evidence["sources"] = [src]
            summary = f"{src} opened {n} short connections to {dst}:{port} ({n / seconds:.1f}/s): {kind}"
        else:
            entity = Entity("ip", dst)
            evidence["sources"] = [s for s, _ in who]
            evidence["top_share"] = round(n / total, 3)
            summary = (
                f"{dst}:{port} received {n} short connections ({n / seconds:.1f}/s) from {len(who)} sources "
                f"({n / total:.0%} of its connections): {kind}"
            )
        return Finding(
            entity=entity,
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=summary,
            first_seen=min(r[_FIRST] for _, r in who),
            last_seen=max(r[_LAST] for _, r in who),
            count=n,
            event_ids=ids,
            evidence=evidence,
        )


def flood_per_minute(config: DetectorConfig) -> float:
    """This rule's bar in ``config`` as connections per minute (``min_connections`` per window):
    the rate from which a rule that also counts short web connections (``brute_force.flow_guessing``)
    leaves them to this one, so the bar has one definition."""
    settings = config.settings_for(AppFlood.meta.id, AppFlood.param_spec)
    return int(settings.params["min_connections"]) * 60_000 / settings.window.size_ms


def forwarder_bar(config: DetectorConfig) -> int:
    """This rule's ``forwarder_min_clients`` in ``config`` (0: off): the distinct web clients from
    which a tenant's address is a reverse proxy or load balancer, for a rule that must not take its
    upstream connections for its own pattern (``brute_force.flow_guessing``), so the bar has one
    definition."""
    return int(config.settings_for(AppFlood.meta.id, AppFlood.param_spec).params["forwarder_min_clients"])
