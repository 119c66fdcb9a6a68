"""A spam bot: a tenant host opening SMTP connections to many distinct external mail servers.

Who speaks SMTP to many servers. A mail client hands its mail to one or two submission servers of
its provider (port 587, or 465 with implicit TLS: RFC 6409, RFC 8314); only a mail transfer agent
delivers directly to each recipient domain's MX on port 25 (RFC 5321 section 5), so an ordinary VM or
workstation reaching many distinct mail servers in minutes is a bot working through a recipient or
relay list (the CTU-13 "Menti" bot tried port 25 on hundreds of servers in two hours; Stringhini et
al., "BotMagnifier", USENIX Security 2011, and Ramachandran & Feamster, "Understanding the
network-level behavior of spammers", SIGCOMM 2006, describe bots spraying many MX hosts directly).
Cloud providers block outbound port 25 by default for this reason (AWS EC2 "port 25 throttling",
Google Compute Engine "blocks outbound connections on port 25"), so such attempts are often
rejected: rejected and unanswered attempts count as much as accepted ones.

The rule: in a tumbling window of ``window_ms`` (10 minutes), a tenant address (``reg.tenant_of_ip``)
whose initiated flows (``Batch.initiated``: one-way formats' response records are skipped) to
``params.smtp_ports`` reach ``params.min_distinct_servers`` (20) distinct external addresses (no
tenant's, not the management plane, not a provider service); a private address no tenant owns
counts as such a host when the servers are globally routable (``detectors.addrscope``: a capture
scanned without a registry), with no tenant on the alert. Twenty servers in ten minutes is ten
times what a client with several mail accounts submits to; an MTA can exceed it, and that is what
the relay allow-list is for. The count is capped at ``engine.max_distinct_per_key`` per host.

Look-alikes. A tenant's own mail relay or MTA (Postfix, Exchange edge, a newsletter platform)
delivers to many MX hosts all day: list its addresses in ``params.allowed_relays`` (empty by default;
the tenant tells the operator which hosts send mail). A client submitting to its provider reaches
one or two servers and never triggers. A mail server receiving mail is the destination, not the
source, and is not counted.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, cast

from detectors.addrscope import unowned_outbound
from detectors.alert import Entity
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.state import Span, add_capped
from detectors.windowed import WindowedDetector
from detectors.windows import Window

__all__ = ["SmtpSpam", "SpamState"]


class SpamState:
    __slots__ = ("attempts", "ports", "rejected", "servers", "span")

    def __init__(self) -> None:
        self.span = Span()
        self.servers: set[str] = set()
        self.ports: set[int] = set()
        self.attempts = 0
        self.rejected = 0

    def __getstate__(self) -> tuple[object, ...]:
        return (self.span, self.servers, self.ports, self.attempts, self.rejected)

    def __setstate__(self, s: tuple[object, ...]) -> None:
        self.span, self.servers, self.ports, self.attempts, self.rejected = s  # type: ignore[assignment]


class SmtpSpam(WindowedDetector[SpamState]):
    meta = DetectorMeta(
        id="spam.smtp_spam",
        version="1.0.0",
        title="Spam bot (SMTP to many mail servers)",
        category="spam",
        score=65,
        severity="medium",
        attack=(technique("Impact", "T1496", "Resource Hijacking"),),
        kinds=frozenset({"flow"}),
        description="A tenant host opens SMTP connections (params.smtp_ports) to at least "
        "params.min_distinct_servers distinct external mail servers within a window: direct-to-MX "
        "delivery by a host that is not a registered mail relay.",
        false_positives=(
            "the tenant's own mail relays and MTAs, newsletter senders (params.allowed_relays)",
        ),
        note="Check whether the host is meant to send mail; if not, block outbound SMTP for it, find the "
        "sending process, and check the provider's abuse reports and blocklists (Spamhaus) for its address.",
        maturity="incubating",
        references=("RFC 5321", "RFC 6409", "https://www.stratosphereips.org/datasets-ctu13"),
    )
    param_spec: ClassVar[ParamSpec] = {
        "smtp_ports": list,
        "min_distinct_servers": int,
        "allowed_relays": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.ports = frozenset(int(p) for p in self.params["smtp_ports"])
        self.min_servers = int(self.params["min_distinct_servers"])
        self.allowed = frozenset(str(x) for x in self.params["allowed_relays"])

    def new_state(self, key: Hashable) -> SpamState:
        return SpamState()

    def observe_batch(self, batch: Batch) -> None:
        batch = batch.initiated()
        ports = self.ports
        flows = batch.flows
        if not any(ev.dst_port in ports for ev in flows):
            return
        src_t, dst_t = batch.src_tenants, batch.dst_tenants
        state, cap, max_ids, allowed = self.state, self.max_distinct, self.max_ids, self.allowed
        service = self.reg.provider_service
        for i, ev in enumerate(flows):
            try:
                port = ev.dst_port
                if port not in ports:
                    continue
                tenant = src_t[i]
                if dst_t[i] is not None or ev.src_ip in allowed:
                    continue
                if tenant is None and not unowned_outbound(ev.src_ip, ev.dst_ip):
                    continue  # outbound from a private address no tenant owns (addrscope) goes on
                if service(ev.dst_ip, port) is not None:
                    continue
                st: SpamState | None = state(ev.ts, (tenant, ev.src_ip))
                if st is None:
                    continue
                st.attempts += 1
                if ev.action == "reject":
                    st.rejected += 1
                st.span.add(ev.ts, ev.id, max_ids)
                add_capped(st.servers, ev.dst_ip, cap)
                add_capped(st.ports, port, cap)
            except Exception as exc:
                self.error(ev, exc)

    def merge(self, into: SpamState, other: SpamState) -> None:
        cap = self.max_distinct
        into.span.merge(other.span, self.max_ids)
        for s in other.servers:
            add_capped(into.servers, s, cap)
        for p in other.ports:
            add_capped(into.ports, p, cap)
        into.attempts += other.attempts
        into.rejected += other.rejected

    def finish_key(self, window: Window, key: Hashable, state: SpamState) -> Finding | None:
        servers = len(state.servers)
        if servers < self.min_servers:
            return None
        tenant, src = cast(tuple[Any, str], key)
        return Finding(
            entity=Entity("ip", src),
            tenant=tenant,
            window=window,
            score=self.meta.score,
            summary=f"{'Tenant host' if tenant else 'Host'} {src} opened {state.attempts} SMTP connections to {servers} distinct "
            f"external mail servers (ports {', '.join(str(p) for p in sorted(state.ports))})",
            first_seen=state.span.first,
            last_seen=state.span.last,
            count=state.span.count,
            event_ids=list(state.span.ids),
            evidence={
                "distinct_servers": servers,
                "smtp_connections": state.attempts,
                "rejected": state.rejected,
                "ports": sorted(state.ports),
            },
        )
