"""The pure parts of the access preflight and of provisioning's stale-ACL removal (issue 22):
which needs a broker's answers refuse, the one line a refusal becomes, what the job and the parse
stage need, and which ACLs ``provision`` removes. The same on a real secure broker:
tests/integration/test_secure_preflight.py."""

from __future__ import annotations

import pytest

from infra import secure
from infra.access_check import Need, Refusal, refusal_line, refusals, uses_sasl
from infra.settings import Settings
from streams.access import check_job_access, fix_for, job_needs, parse_needs

A, B = "t-a", "t-b"


def test_a_need_is_refused_only_when_the_broker_does_not_allow_it() -> None:
    read = Need("TOPIC", "ssa.t-a.telemetry.auth", "READ")
    write = Need("TOPIC", "ssa.alerts", "WRITE")
    group = Need("GROUP", "ssa-detect", "READ")
    missing = Need("TOPIC", "ssa.t-a.raw.zeek", "READ")
    granted = {
        ("TOPIC", read.name): frozenset({"READ", "DESCRIBE"}),
        ("TOPIC", write.name): frozenset({"READ", "DESCRIBE"}),  # WRITE taken away, READ kept
        ("GROUP", group.name): frozenset(),  # refused outright
        ("TOPIC", missing.name): None,  # does not exist: nothing to refuse
    }
    assert refusals("ssa-job", [read, write, group, missing], granted) == [
        Refusal("ssa-job", group),
        Refusal("ssa-job", write),
    ]


def test_granted_operations_imply_describe_and_all_implies_everything() -> None:
    describe = Need("TOPIC", "t", "DESCRIBE")
    assert refusals("u", [describe], {("TOPIC", "t"): frozenset({"WRITE"})}) == []
    assert refusals("u", [Need("TOPIC", "t", "WRITE")], {("TOPIC", "t"): frozenset({"ALL"})}) == []
    assert refusals("u", [describe], {("TOPIC", "t"): frozenset({"IDEMPOTENT_WRITE"})}) == [
        Refusal("u", describe)
    ]


def test_a_refusal_is_one_line_naming_principal_operation_resource_and_fix() -> None:
    found = [Refusal("ssa-job", Need("TOPIC", "ssa.t-a.telemetry.auth", "READ"))]
    line = refusal_line(found, "localhost:9093", fix_for("ssa-job"))
    assert line == (
        "user ssa-job is not allowed to READ topic ssa.t-a.telemetry.auth (Kafka at localhost:9093 refused): "
        "run `ssa tenants provision` (as the Kafka admin) to restore the ACLs of ssa-job"
    )
    many = [
        Refusal("ssa-parse", Need("GROUP", "ssa-parse", "READ")),
        Refusal("ssa-parse", Need("TOPIC", "ssa.t-a.telemetry.auth", "WRITE")),
        Refusal("ssa-parse", Need("TOPIC", "ssa.t-a.telemetry.flow", "WRITE")),
        Refusal("ssa-parse", Need("TOPIC", "ssa.t-a.telemetry.process", "WRITE")),
        Refusal("ssa-parse", Need("TRANSACTIONAL_ID", "ssa-parse-h1", "WRITE")),
    ]
    line = refusal_line(many, "b:1", fix_for("ssa-parse"))
    assert "\n" not in line
    assert line.startswith(
        "user ssa-parse is not allowed to READ consumer group ssa-parse, WRITE topic ssa.t-a.telemetry.auth, "
        "WRITE topic ssa.t-a.telemetry.flow and 2 more (Kafka at b:1 refused): run `ssa tenants provision`"
    )
    # A principal that is not the project's own: its ACLs are the operator's to grant.
    assert fix_for("soc-reader") == "grant soc-reader these ACLs on the cluster"
    only_txn = [Refusal("p", Need("TRANSACTIONAL_ID", "p-h1", "WRITE"))]
    assert "WRITE transactional id p-h1" in refusal_line(only_txn, "b:1", "x")


def test_only_a_sasl_principal_is_checked() -> None:
    plain = Settings()
    assert not uses_sasl(plain)
    # Nothing listens there: a check that tried to reach the broker would fail.
    check_job_access(plain.with_overrides(kafka_bootstrap="127.0.0.1:1"))
    assert uses_sasl(plain.with_overrides(kafka_security_protocol="SASL_SSL", kafka_sasl_username="ssa-job"))
    assert not uses_sasl(plain.with_overrides(kafka_security_protocol="SASL_SSL"))


def _topics(needs: list[Need], op: str) -> set[str]:
    return {n.name for n in needs if n.resource == "TOPIC" and n.operation == op}


def test_the_secure_job_needs_every_registry_tenants_topics_and_its_outputs() -> None:
    s = Settings().with_overrides(tenant_topics=True)
    needs = job_needs(s, tenants=[A], visible=["ssa.t-z.telemetry.flow"], awareness=True, index=False)
    reads = _topics(needs, "READ")
    # the registry's tenant (all four kinds), the provider's three (no flows), what the pattern sees
    assert {f"ssa.{A}.telemetry.{k}" for k in ("flow", "process", "audit", "auth")} <= reads
    assert {f"ssa.provider.telemetry.{k}" for k in ("process", "audit", "auth")} <= reads
    assert "ssa.provider.telemetry.flow" not in reads and "ssa.t-z.telemetry.flow" in reads
    assert not reads & set(s.telemetry_topics.values())  # never the shared telemetry topics
    assert _topics(needs, "WRITE") == {
        s.topic_alerts, s.topic_metrics, s.topic_dlq, s.topic_incidents, s.topic_threat, s.topic_warnings
    }  # fmt: skip
    assert {n for n in needs if n.resource == "GROUP"} == {Need("GROUP", s.detect_group_id, "READ")}
    # every need is one the plan grants (else a provisioned broker could never pass)
    plan = secure.full_plan(s, [A, "t-z"])
    assert all(_granted(plan, "ssa-job", n) for n in needs)


def test_the_job_without_awareness_or_indexer_needs_less() -> None:
    s = Settings().with_overrides(tenant_topics=True)
    lean = job_needs(s, awareness=False, index=False)
    assert s.topic_incidents not in _topics(lean, "WRITE")
    indexed = job_needs(s, awareness=False, index=True)
    assert {s.topic_alerts, s.topic_incidents, s.topic_dlq} <= _topics(indexed, "READ")
    assert Need("GROUP", s.indexer_group_id, "READ") in indexed
    assert Need("GROUP", s.detect_group_id, "DESCRIBE") in indexed
    plain = job_needs(Settings(), index=False)
    assert _topics(plain, "READ") == set(Settings().telemetry_topics.values())


def test_the_secure_parse_stage_needs_raw_reads_telemetry_writes_and_its_transactions() -> None:
    s = Settings().with_overrides(tenant_topics=True)
    needs = parse_needs(s, group_id="ssa-parse", transactional_id="ssa-parse-h1", tenants=[A])
    reads, writes = _topics(needs, "READ"), _topics(needs, "WRITE")
    assert f"ssa.{A}.raw.syslog" in reads and f"ssa.{A}.raw.zeek" in reads
    assert {t for t in reads if t.startswith("ssa.provider.")} == {
        "ssa.provider.raw.auditd",
        "ssa.provider.raw.syslog",
    }
    assert {f"ssa.{A}.telemetry.flow", "ssa.provider.telemetry.auth", s.topic_dlq, s.topic_metrics} <= writes
    assert s.topic_parse_state in reads and s.topic_parse_state in writes
    assert Need("GROUP", "ssa-parse", "READ") in needs
    assert {n for n in needs if n.resource == "TRANSACTIONAL_ID"} == {
        Need("TRANSACTIONAL_ID", "ssa-parse-h1", "WRITE"), Need("TRANSACTIONAL_ID", "ssa-parse-h1", "DESCRIBE")
    }  # fmt: skip
    plan = secure.full_plan(s.with_overrides(parse_group_id="ssa-parse"), [A])
    assert all(_granted(plan, "ssa-parse", n) for n in needs)


def _granted(plan: list[secure.AclRule], principal: str, need: Need) -> bool:
    """Whether a plan rule grants ``need`` (the broker's matching: LITERAL equal, PREFIXED prefix)."""
    implied = {"DESCRIBE": {"READ", "WRITE", "DESCRIBE"}}.get(need.operation, {need.operation})
    return any(
        r.principal == principal
        and r.resource == need.resource
        and r.operation in implied
        and (need.name == r.name if r.pattern == "LITERAL" else need.name.startswith(r.name))
        for r in plan
    )


# --- provisioning's stale ACLs ------------------------------------------------------------------
def _old_parse_rules(s: Settings) -> list[secure.AclRule]:
    """``ssa-parse``'s ACLs of the version before per-tenant raw topics: the shared raw prefix and
    the shared telemetry topics."""
    rules = [
        secure.AclRule("ssa-parse", "TOPIC", s.topic_raw_prefix, "PREFIXED", op)
        for op in ("READ", "DESCRIBE")
    ]
    return rules + [
        secure.AclRule("ssa-parse", "TOPIC", t, "LITERAL", op)
        for t in s.telemetry_topics.values()
        for op in ("WRITE", "DESCRIBE")
    ]


def test_stale_acls_are_the_owned_principals_allow_rules_outside_the_plan() -> None:
    s = Settings()
    plan = secure.full_plan(s, [A])
    old = _old_parse_rules(s)
    foreign = [
        secure.AclRule("soc-reader", "TOPIC", s.topic_alerts, "LITERAL", "READ"),  # an operator's principal
        secure.AclRule(
            "feeder-t-x", "TOPIC", "ssa.t-x.telemetry.", "PREFIXED", "WRITE"
        ),  # not provisioned now
        secure.AclRule("ssa-job", "TOPIC", s.topic_alerts, "LITERAL", "WRITE", permission="DENY"),  # a block
    ]
    elsewhere = secure.AclRule("ssa-job", "TOPIC", s.topic_alerts, "LITERAL", "READ", host="10.0.0.9")
    existing = [*plan, *old, *foreign, elsewhere]
    owned = secure.owned_principals([A])
    assert owned == {"ssa-job", "ssa-parse", "feeder-provider", f"feeder-{A}"}
    stale = secure.stale_acls(existing, plan, owned)
    assert stale == sorted([*old, elsewhere])
    # once removed, nothing is stale: provisioning again removes nothing
    after = [r for r in existing if r not in stale]
    assert secure.stale_acls(after, plan, owned) == []


def test_a_tenant_provisioned_before_keeps_the_jobs_access_to_its_topics() -> None:
    s = Settings()
    existing = secure.full_plan(s, [A, B])  # B provisioned earlier, not in this run's registry
    assert secure.provisioned_tenants(existing) == {A, B}
    others = secure.provisioned_tenants(existing) - {A}
    stale = secure.stale_acls(existing, secure.full_plan(s, [A, *others]), secure.owned_principals([A]))
    assert stale == []
    # without B in the plan, the job's and the stage's rules of B would have been removed
    dropped = secure.stale_acls(existing, secure.full_plan(s, [A]), secure.owned_principals([A]))
    assert dropped and all(r.principal in ("ssa-job", "ssa-parse") and f".{B}." in r.name for r in dropped)


def test_rules_of_the_plan_are_bindings_the_broker_takes() -> None:
    rule = secure.AclRule(
        "ssa-job", "TOPIC", "ssa.alerts", "LITERAL", "READ", host="10.0.0.9", permission="DENY"
    )
    binding = secure._binding(rule)
    assert binding.host == "10.0.0.9" and binding.permission_type.name == "DENY"
    assert secure._rule_of(binding) == rule
    assert secure.describe_rule(rule) == "ssa-job READ topic ssa.alerts (LITERAL) from host 10.0.0.9"


@pytest.mark.parametrize("principal", ["Group:admins", "User:feeder-provider"])
def test_broker_principals_map_to_plan_names(principal: str) -> None:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    binding = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, principal, "*", AclOperation.READ,
                         AclPermissionType.ALLOW)  # fmt: skip
    name = secure._rule_of(binding).principal
    assert name == ("feeder-provider" if principal.startswith("User:") else "Group:admins")
