"""Tenant topics (issue 22): the job reads every tenant's topics by pattern and takes the tenant
from the topic, never from the payload. The SQL it plans, the pattern's reach, and the check of
each event against its topic's tenant (``streams.detect_fn.check_tenant``)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import msgspec
import pytest

from infra import secure
from infra.settings import PROJECT_ROOT, Settings, load_settings
from ingest.schema import AuthEvent, Event, FlowEvent, ProcessEvent
from ingest.tenants import TenantRegistry
from streams import sql
from streams.detect_fn import DetectionJobConfig, MicroBatchDetector, TopicTenants, check_tenant
from streams.runner import topology

TS = 1_700_000_000_000


def _settings(**overrides: object) -> Settings:
    return load_settings({}).with_overrides(**overrides)


def _paths(tenant_topics: bool) -> dict[str, sql.EventTimePath]:
    return {p.table: p for p in sql.event_time_paths(_settings(tenant_topics=tenant_topics))}


# --- the SQL ---------------------------------------------------------------------------------
def test_plain_mode_sql_is_unchanged_by_the_tenant_topics_option() -> None:
    paths = _paths(False)
    ddl = sql.path_ddl(_settings(), paths[sql.SOURCE_TABLE], group_id="g")
    assert "'topic' = 'ssa.telemetry.process;ssa.telemetry.audit;ssa.telemetry.auth'" in ddl
    assert "topic-pattern" not in ddl and "METADATA FROM 'topic'" not in ddl
    assert "discovery" not in ddl
    query = sql.batches_query("t")
    assert "ROW(COALESCE(pkey, '-'), ARRAY_AGG(payload)) AS batch" in query
    assert "topic" not in query
    assert topology(list(paths.values())) == "telemetry=process,audit,auth;telemetry_flow=flow"


def test_tenant_mode_reads_by_pattern_with_the_topic_column() -> None:
    s = _settings(tenant_topics=True)
    paths = _paths(True)
    for table, kinds in ((sql.SOURCE_TABLE, "process|audit|auth"), (sql.FLOW_SOURCE_TABLE, "flow")):
        path = paths[table]
        assert path.tenant_topics
        ddl = sql.path_ddl(s, path, group_id="g")
        pattern = r"ssa\.([A-Za-z0-9][A-Za-z0-9_-]{0,150})\.telemetry\.(?:" + kinds + ")"
        assert f"'topic-pattern' = '{pattern}'" in ddl
        assert "'topic' =" not in ddl  # the connector takes one of the two
        assert "'scan.topic-partition-discovery.interval' = '30 s'" in ddl
        assert "topic STRING METADATA FROM 'topic' VIRTUAL," in ddl
        bounded = sql.path_ddl(s, path, group_id="g", bounded=True)  # a replay that ends
        assert f"'topic-pattern' = '{pattern}'" in bounded and "discovery" not in bounded
    query = sql.batches_query("t", with_topics=True)
    key = "CONCAT(SPLIT_INDEX(topic, '.', 1), '/', COALESCE(pkey, '-'))"  # the feeder's key, in its tenant
    assert f"ROW({key}, ARRAY_AGG(payload), ARRAY_AGG(topic)) AS batch" in query
    # One row per key and window: the kinds of a path share a tenant's key, as in the plain mode.
    assert f"GROUP BY {key}, window_start, window_end, window_time" in query
    assert topology(list(paths.values())) == (
        "telemetry=process,audit,auth@tenant-topics;telemetry_flow=flow@tenant-topics"
    )


def test_the_pattern_matches_exactly_the_tenants_topics_of_its_kinds() -> None:
    others = re.compile(sql.tenant_topic_pattern(("process", "audit", "auth")))
    flows = re.compile(sql.tenant_topic_pattern(("flow",)))
    for tenant in ("a", "ab", "t-a", "acme_01", secure.PROVIDER):
        for kind in secure.KINDS:
            topic = secure.tenant_prefix(tenant) + kind
            match = (flows if kind == "flow" else others).fullmatch(topic)
            assert match is not None and match.group(1) == tenant, topic
            assert (others if kind == "flow" else flows).fullmatch(topic) is None, topic
    # Tenant "a" is never read from "ab"'s topics, nor from a dotted name sharing its prefix.
    assert others.fullmatch("ssa.ab.telemetry.auth").group(1) == "ab"  # type: ignore[union-attr]
    for topic in (
        "ssa.telemetry.auth",  # the plain mode's shared topics
        "ssa.a.b.telemetry.auth",  # not a tenant id (dots are refused by check_tenant_id)
        "ssa.a.telemetry.auth.x",
        "ssa.a.telemetry.authx",
        "ssa.a.telemetry.",
        "ssa..telemetry.auth",
        "ssa.-a.telemetry.auth",
        "ssa.a.dlq",
        "ssa.run.20260101-abc.telemetry.auth",  # a demo run's topics
        "xssa.a.telemetry.auth",
        "ssa.a.telemetry.auth\n",
    ):
        assert others.fullmatch(topic) is None, topic
    # Java's Pattern reads the same text: nothing Python-only in it.
    assert "(?P" not in others.pattern and "\\A" not in others.pattern and "\\Z" not in others.pattern


def test_every_provisionable_tenant_id_is_matched_and_others_are_not() -> None:
    pattern = re.compile(sql.tenant_topic_pattern(("flow",)))
    for tenant in ("x", "X9", "a" * 151, "t_1-2"):
        secure.check_tenant_id(tenant)
        assert pattern.fullmatch(f"ssa.{tenant}.telemetry.flow") is not None
    for tenant in ("a.b", "a:b", "a" * 152, "_a"):
        with pytest.raises(secure.SecureError):
            secure.check_tenant_id(tenant)
        assert pattern.fullmatch(f"ssa.{tenant}.telemetry.flow") is None


def test_the_job_principals_settings_turn_tenant_topics_on() -> None:
    assert _settings().tenant_topics is False
    assert load_settings({"SSA_TENANT_TOPICS": "true"}).tenant_topics is True
    assert load_settings({"SSA_TENANT_TOPICS": "False"}).tenant_topics is False
    assert load_settings(_settings(tenant_topics=True).to_env()).tenant_topics is True
    from infra.settings import SettingsError

    with pytest.raises(SettingsError, match="tenant_topics must be true or false"):
        load_settings({"SSA_TENANT_TOPICS": "sometimes"})


# --- the check ---------------------------------------------------------------------------------
REGISTRY = TenantRegistry.from_dict(
    {
        "hosts": [{"id": "hv-1", "mgmt_ip": "10.255.0.1"}],
        "tenants": [
            {"id": "a", "name": "A", "cidrs": ["10.1.0.0/16"], "vms": [{"id": "vm-a", "host": "hv-1", "ip": "10.1.0.5"}]},
            {"id": "b", "name": "B", "cidrs": ["10.2.0.0/16"], "vms": [{"id": "vm-b", "host": "hv-1", "ip": "10.2.0.5"}]},
        ],
    }
)  # fmt: skip


def _auth(tenant: str | None, n: int = 0) -> AuthEvent:
    return AuthEvent(id=f"e{n}", ts=TS + n, source="sshd", tenant=tenant, user="root", result="failure")


def _proc(tenant: str | None, vm: str | None, n: int = 0) -> ProcessEvent:
    return ProcessEvent(
        id=f"p{n}", ts=TS + n, source="auditd", tenant=tenant, host="hv-1", vm=vm, exe="/bin/sh", syscall="execve"
    )  # fmt: skip


def test_a_tenants_topic_decides_the_tenant() -> None:
    own = _auth("a")
    assert check_tenant(own, "a", REGISTRY) is own
    assert check_tenant(_auth(None), "a", REGISTRY) == _auth("a")  # filled from the topic
    assert check_tenant(_auth("b"), "a", REGISTRY) == "tenant mismatch: topic of tenant a, payload says b"
    # Tenant ids are compared whole: "a" is not "ab".
    assert check_tenant(_auth("ab"), "a", None) == "tenant mismatch: topic of tenant a, payload says ab"
    assert check_tenant(_auth("a"), "ab", None) == "tenant mismatch: topic of tenant ab, payload says a"
    # A feeder cannot pass for the provider either.
    assert check_tenant(_auth(secure.PROVIDER), "a", None) == (
        "tenant mismatch: topic of tenant a, payload says provider"
    )


def test_the_provider_carries_a_tenant_only_as_the_registry_maps_its_vm() -> None:
    p = secure.PROVIDER
    mapped = _proc("a", "vm-a")
    assert check_tenant(mapped, p, REGISTRY) is mapped
    assert check_tenant(_proc(None, "vm-a"), p, REGISTRY) == mapped  # the registry fills it in
    host = _proc(None, None)
    assert check_tenant(host, p, REGISTRY) is host  # the hypervisor's own: no tenant
    assert check_tenant(_proc(None, "vm-unknown"), p, REGISTRY) == _proc(None, "vm-unknown")
    assert check_tenant(_proc("b", "vm-a"), p, REGISTRY) == (
        "tenant mismatch: provider topic, the registry maps VM vm-a to a, payload says b"
    )
    assert check_tenant(_proc("b", None), p, REGISTRY) == (
        "tenant mismatch: provider topic, payload says b but it names no VM (host telemetry is the provider's)"
    )
    assert check_tenant(_proc("b", "vm-x"), p, REGISTRY) == (
        "tenant mismatch: provider topic, payload says b but its VM vm-x is not in the tenant registry"
    )
    assert check_tenant(_proc("a", "vm-a"), p, None) == (
        "tenant mismatch: provider topic, payload says a but its VM vm-a is not in the tenant registry"
    )


def _flow(tenant: str | None, src: str, dst: str, vm: str | None = None) -> FlowEvent:
    return FlowEvent(
        id="f", ts=TS, source="zeek", tenant=tenant, vm=vm, host="hv-1" if vm else None, src_ip=src, dst_ip=dst
    )  # fmt: skip


def test_a_flow_is_the_topics_tenants_when_either_of_its_addresses_is() -> None:
    """The parser gives a flow to its source's tenant; on a tenant's topic, a flow that reaches the
    tenant's address from another tenant's VM is the tenant's own record (the victim's side of an
    attack), named by its own side's VM."""
    inbound = _flow("b", "10.2.0.5", "10.1.0.5", vm="vm-b")  # b's VM -> a's VM, in a's flow log
    assert check_tenant(inbound, "a", REGISTRY) == _flow("a", "10.2.0.5", "10.1.0.5", vm="vm-a")
    assert check_tenant(_flow(None, "198.51.100.7", "10.1.0.5"), "a", REGISTRY) == _flow(
        "a", "198.51.100.7", "10.1.0.5", vm="vm-a"
    )
    assert check_tenant(_flow(None, "10.1.0.9", "10.2.0.5"), "a", REGISTRY) == _flow(
        "a", "10.1.0.9", "10.2.0.5"
    )
    assert check_tenant(_flow(None, "198.51.100.7", "203.0.113.1"), "a", REGISTRY) == _flow(
        "a", "198.51.100.7", "203.0.113.1"
    )  # no tenant's addresses: the topic's, as any event without a tenant
    # Only another tenant's addresses: not the topic's, whatever the payload says.
    assert check_tenant(_flow("b", "10.2.0.5", "198.51.100.7", vm="vm-b"), "a", REGISTRY) == (
        "tenant mismatch: topic of tenant a, payload says b"
    )
    assert check_tenant(_flow(None, "10.2.0.5", "198.51.100.7"), "a", REGISTRY) == (
        "tenant mismatch: topic of tenant a, the registry gives 10.2.0.5 to b and neither address to a"
    )
    assert check_tenant(_flow("b", "198.51.100.7", "203.0.113.1"), "a", REGISTRY) == (
        "tenant mismatch: topic of tenant a, payload says b"
    )
    # The job trusts a payload that names the topic's tenant (a feeder mislabels only into its own
    # view); the parse stage, which parsed the record, holds it to the registry (verify).
    claimed = _flow("a", "10.2.0.5", "198.51.100.7", vm="vm-b")
    assert check_tenant(claimed, "a", REGISTRY) is claimed
    assert check_tenant(claimed, "a", REGISTRY, verify=True) == (
        "tenant mismatch: topic of tenant a, the registry gives 10.2.0.5 to b and neither address to a"
    )
    own = _flow("a", "10.1.0.5", "198.51.100.7", vm="vm-a")
    assert check_tenant(own, "a", REGISTRY, verify=True) is own
    forced = _flow("a", "10.2.0.5", "10.1.0.5", vm="vm-b")  # b's VM -> a's VM, the header's tenant
    assert check_tenant(forced, "a", REGISTRY, verify=True) == _flow("a", "10.2.0.5", "10.1.0.5", vm="vm-a")
    # Without a registry nothing is known of addresses: the payload's tenant, as for any event.
    assert check_tenant(_flow(None, "10.2.0.5", "198.51.100.7"), "a", None) == _flow(
        "a", "10.2.0.5", "198.51.100.7"
    )
    assert check_tenant(inbound, "a", None) == "tenant mismatch: topic of tenant a, payload says b"


def test_the_parse_stage_holds_an_event_of_the_topics_tenant_to_the_registry() -> None:
    """``verify``: a header naming the topic's tenant gave that tenant to every event of its record;
    an event whose VM, or whose address with no VM, is another tenant's is refused."""
    assert check_tenant(_proc("a", "vm-b"), "a", REGISTRY) == _proc("a", "vm-b")  # the job: trusted
    assert check_tenant(_proc("a", "vm-b"), "a", REGISTRY, verify=True) == (
        "tenant mismatch: topic of tenant a, the registry gives VM vm-b to b"
    )
    assert check_tenant(_proc("a", "vm-a"), "a", REGISTRY, verify=True) == _proc("a", "vm-a")
    assert check_tenant(_proc("a", None), "a", REGISTRY, verify=True) == _proc("a", None)  # host hv-1
    named = AuthEvent(
        id="e", ts=TS, source="sshd", tenant="a", host="10.2.0.9", user="root", result="failure"
    )
    assert check_tenant(named, "a", REGISTRY, verify=True) == (
        "tenant mismatch: topic of tenant a, the registry gives 10.2.0.9 to b"
    )
    assert check_tenant(_auth("a"), "a", REGISTRY, verify=True) == _auth("a")


def _raw(event: Event) -> bytes:
    return msgspec.json.encode(event)


def test_a_batch_sends_claims_on_another_tenant_to_the_dlq_and_keeps_the_rest_in_order() -> None:
    topics = TopicTenants(sql.tenant_topic_pattern(("process", "audit", "auth")))
    payloads = [
        _raw(_auth("a", 1)),
        _raw(_auth("b", 2)),
        b"",
        b"{not json",
        _raw(_auth(None, 3)),
        _raw(_auth("b", 4)),
    ]
    where = ["ssa.a.telemetry.auth"] * 5 + ["ssa.b.telemetry.auth"]
    events, dlq = topics.decode(payloads, where, REGISTRY)
    assert [(e.id, e.tenant) for e in events] == [("e1", "a"), ("e3", "a"), ("e4", "b")]
    assert len(dlq) == 2  # in input order; the empty value is skipped, as in the plain mode
    assert (
        dlq[0]["reason"]
        == "tenant mismatch: topic of tenant a, payload says b (event e2, topic ssa.a.telemetry.auth)"
    )
    assert dlq[0]["source"] == "detect" and msgspec.json.decode(dlq[0]["raw"]) == msgspec.to_builtins(
        _auth("b", 2)
    )
    assert dlq[1]["reason"].startswith("not a canonical event in the detection job")
    # A topic outside the pattern (never read by the source; a bug if it ever came) is refused too.
    events, dlq = topics.decode([_raw(_auth("a"))], ["ssa.telemetry.auth"], REGISTRY)
    assert not events and dlq[0]["reason"].startswith(
        "topic ssa.telemetry.auth is not a tenant's telemetry topic"
    )
    with pytest.raises(RuntimeError, match="2 payloads with 1 topics"):
        topics.decode([b"x", b"y"], ["ssa.a.telemetry.auth"], REGISTRY)  # fmt: skip


def test_the_detector_step_takes_payloads_and_topics_and_replays_alike() -> None:
    """The keyed function's step with tenant topics: the batch is (payloads, topics), as the keyed
    state logs it (msgpack: a list of two lists after a restore)."""
    regex = sql.tenant_topic_pattern(("flow",))
    detector = MicroBatchDetector(DetectionJobConfig(tenant_topic_regex=regex))
    flows = [
        FlowEvent(id=f"f{i}", ts=TS + i, source="vpcflow", tenant=t, src_ip=src, dst_ip="10.2.0.5", dst_port=22)
        for i, (t, src) in enumerate([("a", "10.1.0.5"), ("b", "198.51.100.7"), (None, "10.1.0.5")])
    ]  # fmt: skip
    batch = ([_raw(f) for f in flows], ["ssa.a.telemetry.flow"] * 3)
    state = detector.new_state()
    out = detector.step(state, "a", batch, TS + 1000)
    assert [r["reason"].split(" (")[0] for r in out.dlq] == [
        "tenant mismatch: topic of tenant a, payload says b"
    ]
    assert state.posture and sum(1 for _ in out.dlq) == 1
    packed = msgspec.msgpack.decode(msgspec.msgpack.encode(batch))  # what a restore replays
    again = detector.step(detector.new_state(), "a", packed, TS + 1000)
    assert again.dlq[0]["reason"] == out.dlq[0]["reason"]
    # Plain mode: the payload's tenant, trusted, and no topics in the batch.
    plain = MicroBatchDetector(DetectionJobConfig())
    assert plain.topic_tenants is None
    assert not plain.step(plain.new_state(), "a", batch[0], TS + 1000).dlq


def test_the_jaas_login_module_is_the_one_the_connector_jar_holds(tmp_path: Path) -> None:
    """The SQL connector relocates the Kafka client: JAAS must name the relocated class, or the
    source's admin client fails with "No LoginModule found" and the job restarts forever."""
    jars = sorted((PROJECT_ROOT / "infra" / "jars" / "flink").glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        pytest.skip("Flink Kafka connector jar not downloaded (infra/jars/flink)")
    with zipfile.ZipFile(jars[-1]) as jar:
        classes = set(jar.namelist())
    pw = tmp_path / "pw"
    pw.write_text("x")
    for mechanism in ("SCRAM-SHA-512", "PLAIN"):
        s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mechanism,
                     kafka_sasl_username="u", kafka_sasl_password_file=str(pw))  # fmt: skip
        module = sql.kafka_properties(s)["properties.sasl.jaas.config"].split()[0]
        assert module.replace(".", "/") + ".class" in classes, module


def test_telemetry_topics_keep_by_size_and_the_parse_state_is_compacted() -> None:
    """Their records carry the event time: a time limit would delete a replay of an old capture."""
    from infra.bootstrap import topic_configs

    s = _settings()
    by_size = {"retention.ms": "-1", "retention.bytes": str(1 << 30)}
    for topic in [
        *s.telemetry_topics.values(),
        *secure.tenant_topics("t-a"),
        *secure.tenant_topics(secure.PROVIDER),
    ]:
        if ".telemetry." in topic:
            assert topic_configs(s, topic) == by_size, topic
    assert topic_configs(s, s.topic_parse_state) == {"cleanup.policy": "compact"}
    for raw in ("ssa.raw.syslog", "ssa.t-a.raw.syslog"):  # stamped when received
        assert topic_configs(s, raw) == {}, raw


def test_output_topics_are_stamped_on_append() -> None:
    """The job stamps its records with event time: by that time a replay's alerts would be older
    than any retention, and deleted before the indexer reads them."""
    from infra.bootstrap import APPEND_TIME, output_topics, topic_configs

    s = _settings()
    outputs = [
        s.topic_alerts,
        s.topic_dlq,
        s.topic_metrics,
        s.topic_incidents,
        s.topic_threat,
        s.topic_warnings,
    ]
    assert sorted(output_topics(s)) == sorted(outputs)
    for topic in [*outputs, secure.tenant_dlq("t-a"), secure.tenant_dlq(secure.PROVIDER)]:
        assert topic_configs(s, topic) == APPEND_TIME == {"message.timestamp.type": "LogAppendTime"}, topic
