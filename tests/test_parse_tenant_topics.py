"""Raw feeding per tenant (issues 22 and 23): in secure mode each tenant's feeder writes only its
own ``ssa.<tenant>.raw.<format>``, and the parse stage takes the tenant from the raw topic: a
record whose ``ssa-tenant`` header, or whose parsed event, names another tenant goes to the DLQ
with the reason, and the events go to that tenant's ``ssa.<tenant>.telemetry.<kind>``. The
naming, the pattern's reach, and the stage's Kafka-free core with a sink per tenant."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from infra import secure
from ingest.dlq import DlqRecord
from ingest.pipeline import run_ingest
from ingest.raw import HEADER_TENANT, RawRejected
from ingest.schema import FlowEvent
from ingest.tenants import TenantRegistry
from streams.parse_stage import (
    ParseStage,
    header_tenant_mismatch,
    tenant_raw_format,
    tenant_raw_topic_pattern,
)
from tests.test_raw_records import ListSink, Msg

SAMPLES = Path(__file__).parent / "samples"
REGISTRY = TenantRegistry.load(SAMPLES / "tenants.yaml")  # t-acme (vm-acme-01), t-beta (vm-beta-01)
A, B = "t-acme", "t-beta"


class Routes:
    """The sinks of the tenants' telemetry topics (what ``TelemetryProducer.with_topics`` gives: its
    DLQ records go to the one DLQ topic, as the stage's own)."""

    def __init__(self) -> None:
        self.sinks: dict[str, ListSink] = defaultdict(ListSink)
        self.topics: dict[str, dict[str, str]] = {}

    def __call__(self, tenant: str) -> ListSink:
        self.topics[tenant] = secure.tenant_telemetry_topics(tenant)
        return self.sinks[tenant]

    def dlqs(self, shared: ListSink) -> list[DlqRecord]:
        return [*shared.dlqs, *(d for sink in self.sinks.values() for d in sink.dlqs)]


def _stage(registry: TenantRegistry | None = REGISTRY) -> tuple[ParseStage, ListSink, Routes]:
    shared, routes = ListSink(), Routes()
    return ParseStage(shared, registry=registry, tenant_topics=True, route=routes), shared, routes


def _msgs(topic: str, lines: list[bytes], headers: list[tuple[str, bytes]] | None = None) -> list[Msg]:
    return [Msg(topic, 0, i, line, _headers=headers) for i, line in enumerate(lines)]


def _auth_lines() -> list[bytes]:
    return (SAMPLES / "auth.log").read_bytes().splitlines()


# --- names and the pattern --------------------------------------------------------------------
def test_tenant_raw_topic_names() -> None:
    assert secure.tenant_raw_prefix(A) == "ssa.t-acme.raw."
    assert secure.tenant_raw_topics(A, ["syslog", "auditd"]) == [
        "ssa.t-acme.raw.syslog",
        "ssa.t-acme.raw.auditd",
    ]
    # The provider's are its hypervisor logs only, whatever formats are asked for.
    assert secure.tenant_raw_topics(secure.PROVIDER, ["vpcflow"]) == [
        "ssa.provider.raw.auditd", "ssa.provider.raw.syslog",
    ]  # fmt: skip
    assert secure.tenant_telemetry_topics(A) == {k: f"ssa.t-acme.telemetry.{k}" for k in secure.KINDS}
    assert secure.tenant_telemetry_topics(secure.PROVIDER) == {
        k: f"ssa.provider.telemetry.{k}" for k in ("process", "audit", "auth")
    }


@pytest.mark.parametrize(
    ("topic", "want"),
    [
        ("ssa.t-acme.raw.syslog", (A, "syslog")),
        ("ssa.t-acme.raw.sshd", (A, "syslog")),  # aliases as on the shared topics
        ("ssa.a.raw.vpcflow", ("a", "vpcflow")),
        ("ssa.provider.raw.auditd", (secure.PROVIDER, "auditd")),
    ],
)
def test_the_tenant_and_format_come_from_the_topic(topic: str, want: tuple[str, str]) -> None:
    assert tenant_raw_format(topic) == want


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("ssa.raw.syslog", "not a tenant's raw topic"),  # the shared (plain mode) topic
        ("ssa.a.b.raw.syslog", "not a tenant's raw topic"),  # tenant ids hold no dot
        ("ssa.t-acme.telemetry.auth", "not a tenant's raw topic"),
        ("ssa.t-acme.raw.klingon", "names no input format"),
        ("ssa.provider.raw.vpcflow", "the provider: its raw topics carry auditd, syslog only"),
    ],
)
def test_other_topics_are_refused(topic: str, reason: str) -> None:
    with pytest.raises(RawRejected, match=re.escape(reason)):
        tenant_raw_format(topic)


def test_the_subscription_reaches_every_tenant_and_no_other_topic() -> None:
    subscription = re.compile(f"^{tenant_raw_topic_pattern()}$")  # what the consumer subscribes
    for tenant in ("a", "ab", "a-b", "a_b", "T1", "x" * 151, secure.PROVIDER):
        if tenant != secure.PROVIDER:
            secure.check_tenant_id(tenant)  # a tenant that can be provisioned
        match = subscription.match(f"ssa.{tenant}.raw.syslog")
        assert match and match.group(1) == tenant
    for topic in ("ssa.raw.syslog", "ssa.a.telemetry.auth", "ssa.a.dlq", "ssa.a.b.raw.syslog", "xssa.a.raw.x",
                  "ssa.a.raw.", "ssa..raw.syslog", "ssa.parse.state"):  # fmt: skip
        assert not subscription.match(topic), topic


def test_a_header_may_name_only_the_topics_tenant() -> None:
    assert header_tenant_mismatch(None, A) is None
    assert header_tenant_mismatch(A, A) is None
    assert (
        header_tenant_mismatch(B, A)
        == "tenant mismatch: topic of tenant t-acme, header ssa-tenant says t-beta"
    )
    assert header_tenant_mismatch(None, secure.PROVIDER) is None
    assert header_tenant_mismatch(A, secure.PROVIDER) == (
        "tenant mismatch: provider topic, header ssa-tenant says t-acme (the registry gives its events their tenants)"
    )


# --- the stage --------------------------------------------------------------------------------
def test_tenant_topics_need_a_route() -> None:
    with pytest.raises(ValueError, match="route"):
        ParseStage(ListSink(), tenant_topics=True)


def test_a_tenants_raw_lines_become_its_events_and_another_tenants_go_to_the_dlq() -> None:
    """auth.log holds lines of LabSZ (no tenant's), of A's VM and of B's VM (the registry's)."""
    plain = ListSink()
    run_ingest(SAMPLES / "auth.log", "syslog", sink=plain, registry=REGISTRY)
    honest = [e for e in plain.events if e.tenant in (None, A)]
    foreign = [e for e in plain.events if e.tenant == B]
    assert honest and foreign and len(honest) + len(foreign) == len(plain.events)
    lines = _auth_lines()
    stage, shared, routes = _stage()
    assert stage.metrics(now_ms=60_000) == []  # the minute's counts start
    stage.process(_msgs("ssa.t-acme.raw.syslog", lines))
    stage.flush_idle(everything=True)
    mine = routes.sinks[A].events
    assert [e.id for e in mine] == [e.id for e in honest]  # the ids of ssa ingest
    assert {e.tenant for e in mine} == {A}  # the topic's, filled in where the line named none
    assert routes.topics == {A: secure.tenant_telemetry_topics(A)}  # only A's topics were asked for
    assert shared.events == []  # nothing on the shared telemetry topics
    dlqs = routes.dlqs(shared)
    mismatches = [d for d in dlqs if d.reason.startswith("tenant mismatch")]
    assert [d.reason for d in mismatches] == [
        f"tenant mismatch: topic of tenant t-acme, payload says t-beta (event {e.id}, topic ssa.t-acme.raw.syslog)"
        for e in foreign
    ]
    assert {d.source for d in mismatches} == {"parse"}
    assert len(dlqs) == len(plain.dlqs) + len(foreign)  # and the parser's own, as ssa ingest's
    # Counted as DLQ, not as events: records in = events + DLQ + skips.
    (doc,) = stage.metrics(now_ms=60_000, final=True)
    assert (doc["records"], doc["events"], doc["dlq"]) == (len(lines), len(honest), len(dlqs))
    assert doc["topic"] == "ssa.*.raw.syslog"


def test_a_header_naming_the_topics_tenant_lets_no_line_of_another_tenant_through() -> None:
    """The header acts as ``ssa ingest --tenant`` for what the registry gives no tenant, and a line
    of another tenant's VM still goes to the DLQ, as without the header (it once became the
    topic's tenant's event, naming the other tenant's VM)."""
    forced, plain = ListSink(), ListSink()
    run_ingest(SAMPLES / "auth.log", "syslog", tenant=A, sink=forced, registry=REGISTRY)
    run_ingest(SAMPLES / "auth.log", "syslog", sink=plain, registry=REGISTRY)
    foreign = {e.id for e in plain.events if e.tenant == B}
    assert foreign and {e.vm for e in forced.events if e.id in foreign} == {"vm-beta-01"}
    stage, shared, routes = _stage()
    stage.process(_msgs("ssa.t-acme.raw.syslog", _auth_lines(), [(HEADER_TENANT, A.encode())]))
    stage.flush_idle(everything=True)
    assert [(e.id, e.tenant, e.vm) for e in routes.sinks[A].events] == [
        (e.id, A, e.vm) for e in forced.events if e.id not in foreign
    ]
    mismatches = [d.reason for d in routes.dlqs(shared) if d.reason.startswith("tenant mismatch")]
    assert mismatches == [
        f"tenant mismatch: topic of tenant t-acme, the registry gives VM vm-beta-01 to t-beta (event {i}, "
        "topic ssa.t-acme.raw.syslog)"
        for i in [e.id for e in forced.events if e.id in foreign]
    ]


def _zeek(src: str, dst: str) -> bytes:
    return json.dumps({
        "ts": 1709632800.5, "uid": f"C{src}{dst}", "id.orig_h": src, "id.orig_p": 40001, "id.resp_h": dst,
        "id.resp_p": 22, "proto": "tcp", "duration": 1.5, "orig_bytes": 100, "resp_bytes": 200,
        "conn_state": "SF", "orig_pkts": 5, "resp_pkts": 5, "orig_ip_bytes": 400, "resp_ip_bytes": 500,
    }).encode()  # fmt: skip


@pytest.mark.parametrize("header", [None, A], ids=["no header", "header of the topic's tenant"])
def test_a_flow_is_the_topics_tenants_when_either_address_is(header: str | None) -> None:
    """A's flow log records a connection from B's VM to A's VM (an attack from a neighbour, seen by
    the victim): the parser gives it to its source's tenant, and it went to the DLQ; with a header
    it became A's naming B's VM. Now it is A's, naming A's VM, either way. A flow of B's VM to the
    Internet in A's log is refused either way, and one between addresses no tenant holds is A's."""
    rows = [
        ("10.2.0.7", "10.1.0.5", "vm-acme-01"),  # B's VM -> A's VM: the victim's record
        ("10.1.0.5", "10.2.0.7", "vm-acme-01"),  # A's VM -> B's VM
        ("10.2.0.9", "10.1.0.9", None),  # B's address -> A's address, no VM of the registry
        ("198.51.100.9", "10.1.0.5", "vm-acme-01"),  # the Internet -> A's VM
        ("198.51.100.9", "203.0.113.7", None),  # no tenant's addresses: the topic's
        ("10.2.0.7", "198.51.100.9", "refused"),  # B's VM -> the Internet: not A's
    ]
    stage, shared, routes = _stage()
    headers = [(HEADER_TENANT, header.encode())] if header else None
    stage.process(_msgs("ssa.t-acme.raw.zeek", [_zeek(s, d) for s, d, _ in rows], headers))
    stage.flush_idle(everything=True)
    flows = [e for e in routes.sinks[A].events if isinstance(e, FlowEvent)]
    assert len(flows) == len(routes.sinks[A].events)
    got = [(e.src_ip, e.dst_ip, e.tenant, e.vm, e.host) for e in flows]
    assert got == [(s, d, A, vm, "hv-01" if vm else None) for s, d, vm in rows if vm != "refused"]
    (reason,) = [d.reason for d in routes.dlqs(shared)]
    assert reason.startswith(
        "tenant mismatch: topic of tenant t-acme, "
        + ("payload says t-beta" if header is None else
           "the registry gives 10.2.0.7 to t-beta and neither address to t-acme")
    )  # fmt: skip
    assert not routes.sinks[B].events and B not in routes.topics


def test_a_header_naming_another_tenant_sends_the_record_to_the_dlq_unparsed() -> None:
    stage, shared, routes = _stage()
    lines = _auth_lines()[:20]
    stage.process(_msgs("ssa.t-acme.raw.syslog", lines, [(HEADER_TENANT, B.encode())]))
    stage.flush_idle(everything=True)
    assert not routes.sinks[A].events and not routes.sinks[B].events and B not in routes.topics
    assert len(shared.dlqs) == len(lines)
    assert {d.reason for d in shared.dlqs} == {
        "tenant mismatch: topic of tenant t-acme, header ssa-tenant says t-beta (topic ssa.t-acme.raw.syslog)"
    }
    assert {d.source for d in shared.dlqs} == {"parse"}
    assert [d.raw.encode() for d in shared.dlqs] == lines  # the raw line kept


def test_the_provider_raw_topic_gives_the_registrys_tenants_on_the_provider_topics() -> None:
    lines = (SAMPLES / "auditd_kvm_host.log").read_bytes().splitlines()
    plain = ListSink()
    run_ingest(SAMPLES / "auditd_kvm_host.log", "auditd", sink=plain, registry=REGISTRY)
    stage, shared, routes = _stage()
    stage.process(_msgs("ssa.provider.raw.auditd", lines))
    stage.flush_idle(everything=True)
    got = routes.sinks[secure.PROVIDER].events
    assert set(routes.topics) == {secure.PROVIDER}
    assert [(e.id, e.tenant) for e in got] == [(e.id, e.tenant) for e in plain.events]
    assert {e.tenant for e in got} >= {A, B}  # one host serves both tenants' VMs
    assert not [d for d in routes.dlqs(shared) if "tenant mismatch" in d.reason]
    # A header on the provider's topic is refused: the registry names the tenants.
    stage2, shared2, routes2 = _stage()
    stage2.process(_msgs("ssa.provider.raw.auditd", lines[:10], [(HEADER_TENANT, A.encode())]))
    assert not routes2.sinks[secure.PROVIDER].events
    assert len(shared2.dlqs) == 10 and all(
        d.reason.startswith("tenant mismatch: provider topic") for d in shared2.dlqs
    )


def test_a_provider_event_naming_a_tenant_the_registry_does_not_give_is_refused() -> None:
    """The parser resolves owners with the stage's registry; a registry that maps the VMs to no
    tenant (reloaded, say) leaves the events' tenants to the check: an event of a VM the registry
    does not know cannot carry a tenant on the provider's topic."""
    lines = (SAMPLES / "auditd_kvm_host.log").read_bytes().splitlines()
    stage, _, routes = _stage()
    stage.process(_msgs("ssa.provider.raw.auditd", lines))
    stage.flush_idle(everything=True)
    kept = routes.sinks[secure.PROVIDER].events
    assert kept
    bare = TenantRegistry.from_dict({"tenants": []})
    gate = stage._gates["ssa.provider.raw.auditd"]
    gate.registry = lambda: bare
    before = len(routes.sinks[secure.PROVIDER].dlqs)
    gate.event_batch([e for e in kept if e.tenant is not None][:3])
    refused = routes.sinks[secure.PROVIDER].dlqs[before:]
    assert len(refused) == 3 and len(routes.sinks[secure.PROVIDER].events) == len(kept)
    assert all("its VM" in d.reason and "is not in the tenant registry" in d.reason for d in refused)


def test_plain_mode_reads_the_shared_topics_only() -> None:
    sink = ListSink()
    stage = ParseStage(sink)  # tenant_topics off: as before
    stage.process(_msgs("ssa.t-acme.raw.syslog", _auth_lines()[:3]))
    assert not sink.events and {d.reason for d in sink.dlqs} == {
        "topic 'ssa.t-acme.raw.syslog' is not a raw topic (prefix ssa.raw.)"
    }
    stage.process(_msgs("ssa.raw.syslog", _auth_lines()))
    stage.flush_idle(everything=True)
    assert sink.events and {e.tenant for e in sink.events} == {None}
