"""The parse principal's ACLs (``infra.secure.parse_plan``): what ``ssa parse`` needs in secure
mode, transactions included, and nothing more."""

from __future__ import annotations

from infra import secure
from infra.settings import Settings


def _ops(rules: list[secure.AclRule], resource: str) -> set[tuple[str, str, str]]:
    return {(r.name, r.pattern, r.operation) for r in rules if r.resource == resource}


def test_the_parse_principal_reads_raw_writes_telemetry_and_owns_its_transactions() -> None:
    s = Settings()
    rules = secure.parse_plan(s)
    assert {r.principal for r in rules} == {secure.PARSE_USER}
    topics = _ops(rules, "TOPIC")
    for topic in [s.topic_dlq, s.topic_metrics]:
        assert (topic, "LITERAL", "WRITE") in topics and (topic, "LITERAL", "READ") not in topics
    # No shared raw or telemetry topic: in secure mode the job reads only the tenants' topics.
    assert not {name for name, _, _ in topics if name.startswith(s.topic_raw_prefix)}
    assert not {name for name, _, _ in topics} & set(s.telemetry_topics.values())
    assert {op for name, _, op in topics if name == s.topic_parse_state} == {"READ", "WRITE", "DESCRIBE"}
    assert _ops(rules, "GROUP") == {(s.parse_group_id, "LITERAL", "READ")}
    # the default transactional id is <group>-<host name>: every id the group prefixes
    assert _ops(rules, "TRANSACTIONAL_ID") == {
        (s.parse_group_id, "PREFIXED", op) for op in ("WRITE", "DESCRIBE")
    }
    assert not {r for r in rules if r.operation in ("CREATE", "DELETE", "ALTER", "ALL")}
    for rule in rules:  # every rule is a binding the broker's admin API takes
        assert secure._binding(rule) is not None


def test_a_set_transactional_id_is_granted_literally() -> None:
    s = Settings().with_overrides(parse_transactional_id="parse-eu-1")
    assert _ops(secure.parse_plan(s), "TRANSACTIONAL_ID") == {
        ("parse-eu-1", "LITERAL", "WRITE"),
        ("parse-eu-1", "LITERAL", "DESCRIBE"),
    }


def test_the_default_transactional_id_is_under_the_granted_prefix() -> None:
    from streams.parse_stage import parse_transactional_id

    s = Settings()
    assert parse_transactional_id(s).startswith(s.parse_group_id + "-")
    assert parse_transactional_id(s, "other-group").startswith("other-group-")
    assert parse_transactional_id(s.with_overrides(parse_transactional_id="p-1")) == "p-1"


def test_per_tenant_the_parse_principal_reads_its_raw_prefix_and_writes_its_telemetry() -> None:
    s = Settings()
    rules = [r for r in secure.acl_plan(s, "t-a") if r.principal == secure.PARSE_USER]
    assert _ops(rules, "TOPIC") == {
        ("ssa.t-a.raw.", "PREFIXED", "READ"), ("ssa.t-a.raw.", "PREFIXED", "DESCRIBE"),
        ("ssa.t-a.telemetry.", "PREFIXED", "WRITE"), ("ssa.t-a.telemetry.", "PREFIXED", "DESCRIBE"),
    }  # fmt: skip
    provider = [r for r in secure.acl_plan(s, secure.PROVIDER) if r.principal == secure.PARSE_USER]
    assert _ops(provider, "TOPIC") == {
        *((f"ssa.provider.raw.{fmt}", "LITERAL", op) for fmt in ("auditd", "syslog") for op in ("READ", "DESCRIBE")),
        *((f"ssa.provider.telemetry.{kind}", "LITERAL", op) for kind in ("process", "audit", "auth")
          for op in ("WRITE", "DESCRIBE")),
    }  # fmt: skip
    for rule in [*rules, *provider]:
        assert secure._binding(rule) is not None
