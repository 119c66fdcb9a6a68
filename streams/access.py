"""What the detection job and the parse stage will do on Kafka, checked with their own credentials
before they start (``infra.access_check``; issue 22).

In secure mode both read every tenant's topics by pattern, and a pattern only matches the topics
the principal may DESCRIBE: a tenant whose ACLs are missing would be skipped without a word. So
the tenants' topics are named from the registry (every tenant in it, and the provider), beside
the ones the pattern matches now; a registry tenant's topic the broker refuses is a refusal. A
topic that does not exist is none (a tenant provisioned before its raw topic of some format).
Only a SASL principal is checked: without one there are no ACLs of ours to miss.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from infra.access_check import AccessProbe, Need, require, uses_sasl
from infra.secure import (
    JOB_USER,
    PARSE_USER,
    PROVIDER,
    tenant_raw_topics,
    tenant_telemetry_topics,
)
from infra.settings import Settings
from streams.sql import event_time_paths, tenant_topic_pattern

__all__ = [
    "check_job_access",
    "check_parse_access",
    "fix_for",
    "job_needs",
    "parse_needs",
    "registry_tenants",
]


def fix_for(principal: str) -> str:
    """How to restore a principal's access: provisioning for the project's own, else the operator."""
    if principal in (JOB_USER, PARSE_USER):
        return f"run `ssa tenants provision` (as the Kafka admin) to restore the ACLs of {principal}"
    return f"grant {principal} these ACLs on the cluster"


def registry_tenants(settings: Settings) -> list[str]:
    """The tenants of the registry the commands load (none without one)."""
    from ingest.tenants import TenantRegistry

    path = Path(settings.tenants_file)
    return sorted(TenantRegistry.load(path).tenants) if path.exists() else []


def _reads(topics: Iterable[str]) -> list[Need]:
    return [Need("TOPIC", t, "READ") for t in topics]


def _writes(topics: Iterable[str]) -> list[Need]:
    return [Need("TOPIC", t, "WRITE") for t in topics]


def _job_kinds(settings: Settings) -> list[str]:
    return [kind for path in event_time_paths(settings) for kind in path.kinds]


def job_needs(
    settings: Settings,
    *,
    awareness: bool = True,
    index: bool = True,
    tenants: Iterable[str] = (),
    visible: Iterable[str] = (),
) -> list[Need]:
    """The job's sources (telemetry READ, its group), its sinks (WRITE) and, with ``index``, the
    indexer thread's (streams.indexer: READ on every output it ships, WRITE on the DLQ, its group,
    and DESCRIBE on the job's group for the lag). ``tenants`` are the registry's, ``visible`` the
    topics the job's pattern matches now (secure mode)."""
    kinds = _job_kinds(settings)
    if settings.tenant_topics:
        reads = {
            topic
            for owner in [PROVIDER, *tenants]
            for kind, topic in tenant_telemetry_topics(owner).items()
            if kind in kinds
        } | set(visible)
    else:
        reads = {settings.telemetry_topics[kind] for kind in kinds}
    outputs = [settings.topic_alerts, settings.topic_metrics, settings.topic_dlq]
    awareness_topics = [settings.topic_incidents, settings.topic_threat, settings.topic_warnings]
    needs = [*_reads(sorted(reads)), Need("GROUP", settings.detect_group_id, "READ")]
    needs += _writes(outputs + (awareness_topics if awareness else []))
    if index:
        needs += _reads(outputs + awareness_topics)
        needs += [
            Need("GROUP", settings.indexer_group_id, "READ"),
            Need("GROUP", settings.detect_group_id, "DESCRIBE"),
        ]
    return needs


def check_job_access(
    settings: Settings, *, awareness: bool = True, index: bool = True, probe: AccessProbe | None = None
) -> list[str]:
    """Raise ``AccessRefused`` (one line) if the broker refuses the job any of its needs. Returns
    the tenants' telemetry topics its pattern sees now (secure mode; none otherwise): a running
    job's sources hold the partitions of those it started with, and one gone (a tenant revoked)
    fails every restart (``streams.runner.watch``)."""
    if not uses_sasl(settings):
        return []
    probe = probe or AccessProbe(settings)
    visible = (
        probe.visible_topics(tenant_topic_pattern(_job_kinds(settings))) if settings.tenant_topics else []
    )
    needs = job_needs(settings, awareness=awareness, index=index, tenants=registry_tenants(settings),
                      visible=visible)  # fmt: skip
    require(settings, needs, fix_for(settings.kafka_sasl_username), probe)
    return visible


def parse_needs(
    settings: Settings,
    *,
    group_id: str,
    transactional_id: str,
    tenants: Iterable[str] = (),
    visible: Iterable[str] = (),
) -> list[Need]:
    """``ssa parse``'s: READ on the raw topics (secure mode: every tenant's and the provider's, of
    every format, and those its pattern matches now), WRITE on the telemetry topics they feed, the
    DLQ and the metrics, READ and WRITE on its state topic, READ on its group, and DESCRIBE and
    WRITE on its transactional id."""
    from ingest.parsers import FORMAT_NAMES
    from streams.parse_stage import raw_topics

    if settings.tenant_topics:
        owners = [PROVIDER, *tenants]
        reads = {t for owner in owners for t in tenant_raw_topics(owner, FORMAT_NAMES)} | set(visible)
        writes = {t for owner in owners for t in tenant_telemetry_topics(owner).values()}
    else:
        reads, writes = set(raw_topics(settings)), set(settings.telemetry_topics.values())
    needs = [*_reads(sorted(reads)), *_writes(sorted(writes))]
    needs += _writes([settings.topic_dlq, settings.topic_metrics])
    needs += [Need("TOPIC", settings.topic_parse_state, op) for op in ("READ", "WRITE")]
    needs.append(Need("GROUP", group_id, "READ"))
    needs += [Need("TRANSACTIONAL_ID", transactional_id, op) for op in ("DESCRIBE", "WRITE")]
    return needs


def check_parse_access(
    settings: Settings,
    *,
    group_id: str | None = None,
    transactional_id: str | None = None,
    probe: AccessProbe | None = None,
) -> None:
    """Raise ``AccessRefused`` (one line) if the broker refuses ``ssa parse`` any of its needs."""
    if not uses_sasl(settings):
        return
    from streams.parse_stage import parse_transactional_id, tenant_raw_topic_pattern

    group = group_id or settings.parse_group_id
    txn = transactional_id or parse_transactional_id(settings, group)
    probe = probe or AccessProbe(settings)
    visible = probe.visible_topics(tenant_raw_topic_pattern()) if settings.tenant_topics else []
    needs = parse_needs(settings, group_id=group, transactional_id=txn, tenants=registry_tenants(settings),
                        visible=visible)  # fmt: skip
    require(settings, needs, fix_for(settings.kafka_sasl_username), probe)
