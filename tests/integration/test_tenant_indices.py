"""Per-tenant indices on the real stack: alerts of two tenants and one alert involving both go
through Kafka and the real indexer into Elasticsearch; then each tenant's own pattern holds only
its documents, the other tenant's copy holds none of the first tenant's private entities, the SOC
alias counts the shared alert once, and ``ssa alerts``/``ssa report`` work for a tenant and for
the SOC (an acknowledgement lands on the copy that was read)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from detectors.alert import Alert, encode_alert
from infra.bootstrap import ensure_topics
from infra.clients import es_client, kafka_config
from infra.settings import Settings, load_settings
from infra.tenant_indices import document_index, soc_alias, soc_alias_filter, tenant_index_pattern
from streams.documents import daily_index
from streams.indexer import Indexer

pytestmark = pytest.mark.integration

A, B = "t-acme", "t-beta"


def _alerts() -> tuple[Alert, Alert, Alert]:
    """One alert of each tenant alone, and acme's emulator escape reading beta's VM disk."""
    from tests.test_tenant_indices import ALERTS, MULTI

    shared = next(a for a in MULTI if a.detector == "vm_escape.emulator_foreign_file")
    singles: dict[str | None, Alert] = {}
    for a in ALERTS:
        if a.tenant in (A, B) and a not in MULTI and a.alert_id != shared.alert_id:
            singles.setdefault(a.tenant, a)
    return singles[A], singles[B], shared


@pytest.fixture
def own(stack: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """``SSA_*`` pointing at the stack with this test's topics, group, indices and registry."""
    from detectors.samples import samples_registry

    run = f"ti{uuid.uuid4().hex[:8]}"
    samples_registry().dump(tmp_path / "tenants.yaml")
    overrides = {
        "topic_alerts": f"test.{run}.alerts", "topic_metrics": f"test.{run}.metrics",
        "topic_dlq": f"test.{run}.dlq", "topic_incidents": f"test.{run}.incidents",
        "topic_threat": f"test.{run}.threat", "topic_warnings": f"test.{run}.warnings",
        "indexer_group_id": f"test-{run}-indexer",
        **{f"index_{kind}_prefix": f"test-{run}-{kind}-" for kind in ("alerts", "metrics", "incidents", "threat",
                                                                       "warnings")},
        "tenants_file": str(tmp_path / "tenants.yaml"),
        "snooze_file": str(tmp_path / "snoozes.yaml"),
    }  # fmt: skip
    for name, value in (stack.to_env() | {f"SSA_{k.upper()}": v for k, v in overrides.items()}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SSA_SETTINGS_FILE", raising=False)
    monkeypatch.delenv("SSA_ES_API_KEY_FILE", raising=False)
    settings = load_settings()
    assert settings.index_alerts_prefix == overrides["index_alerts_prefix"]
    yield settings
    es = es_client(settings)
    try:
        names = list(es.indices.get(index=f"test-{run}-*", ignore_unavailable=True, allow_no_indices=True))
        if names:
            es.indices.delete(index=",".join(names))
        for template in es.indices.get_index_template(name=f"test-{run}-*")["index_templates"]:
            es.indices.delete_index_template(name=template["name"])
    finally:
        es.close()


def seed_documents(
    es: Any,
    settings: Settings,
    prefix: str,
    docs: list[dict[str, Any]],
    id_field: str,
    time_field: str = "ts",
) -> None:
    """Test documents stored as the indexer stores them (each in its tenant's daily index, or the
    SOC's), with the kind's SOC alias on them (filtered for alerts), for tests that seed
    Elasticsearch directly and then read it as the SOC or as a tenant."""
    from elasticsearch import helpers

    actions = [
        {"_index": document_index(prefix, d.get("tenant"), d[time_field]), "_id": d[id_field], "_source": d}
        for d in docs
    ]
    helpers.bulk(es, actions, refresh="wait_for")
    add: dict[str, Any] = {"index": prefix + "*", "alias": soc_alias(prefix)}
    if prefix == settings.index_alerts_prefix:
        add["filter"] = soc_alias_filter()
    es.indices.update_aliases(actions=[{"add": add}])


def _produce(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka_config(settings), acks="all")
    try:
        for topic, value in records:
            producer.send(topic, value)
        producer.flush(30)
    finally:
        producer.close()


def _make_topics(s: Settings, partitions: int) -> None:
    """This test's topics of every kind the indexer reads."""
    kinds = [s.topic_alerts, s.topic_metrics, s.topic_dlq, s.topic_incidents, s.topic_threat]
    ensure_topics(s, [*kinds, s.topic_warnings], partitions=partitions)


def _hits(es: Any, index: str, **query: Any) -> list[dict[str, Any]]:
    resp = es.search(index=index, size=100, ignore_unavailable=True, allow_no_indices=True,
                     query=query or {"match_all": {}})  # fmt: skip
    return list(resp["hits"]["hits"])


def _index_all(
    s: Settings, registry: Any = None, industry_of: Any = lambda _t: None, *, rejected: int = 0
) -> Indexer:
    """The real indexer, Kafka to Elasticsearch, until it has shipped everything produced (and put
    exactly ``rejected`` records in the DLQ)."""
    indexer = Indexer(s, industry_of=industry_of, registry=lambda: registry, group_id=s.indexer_group_id,
                      say=print)  # fmt: skip
    indexer.drain(idle_s=2.0, max_wait_s=120)
    thread = threading.Thread(target=indexer.run, daemon=True)
    thread.start()
    thread.join(180)
    assert not thread.is_alive() and indexer.fatal is None and indexer.stats.rejected == rejected
    return indexer


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_tenants_read_their_own_indices_and_the_soc_reads_each_alert_once(
    own: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from detectors.samples import samples_registry
    from ssa.cli import main
    from tests.test_tenant_indices import _private_of, _tenant_private

    registry = samples_registry()
    alone_a, alone_b, shared = _alerts()
    s = own
    es = es_client(s)
    # A shared daily index of an earlier version, made before the templates (no alias yet).
    legacy = daily_index(s.index_alerts_prefix, shared.ts - 86_400_000)
    es.index(index=legacy, id="legacy-1", document={"alert_id": "legacy-1", "tenant": A, "ts": shared.ts - 86_400_000,
                                                    "severity": "low", "status": "open"}, refresh="true")  # fmt: skip

    topics = [
        s.topic_alerts,
        s.topic_metrics,
        s.topic_dlq,
        s.topic_incidents,
        s.topic_threat,
        s.topic_warnings,
    ]
    ensure_topics(s, topics, partitions=1)
    incident = {"incident_id": "inc-b", "tenant": B, "first_seen": shared.first_seen, "last_seen": shared.ts,
                "status": "open", "severity": "critical", "score": 90, "version": 1, "alert_ids": [shared.alert_id],
                "title": "t", "entities": [{"type": "vm", "id": "vm-beta-01"}]}  # fmt: skip
    # Beta's side of acme's escape: the stage names acme (other_tenants, a tenant entity, the title).
    crossing = {"incident_id": "inc-b2", "tenant": B, "first_seen": shared.first_seen, "last_seen": shared.ts,
                "status": "open", "severity": "critical", "score": 95, "version": 1, "alert_ids": [shared.alert_id],
                "title": f"VM vm-beta-01 of tenant {B}: emulator escape by a VM of tenant {A} reaching its VM",
                "other_tenants": [A], "entities": [{"type": "vm", "id": "vm-beta-01", "link": True},
                                                   {"type": "tenant", "id": A, "link": True}]}  # fmt: skip
    cloud = {"kind": "threat", "doc_id": "cloud-1", "tenant": "_cloud", "ts": shared.ts, "index": 60.0,
             "level": "orange", "level_rank": 2}  # fmt: skip
    _produce(s, [(s.topic_alerts, encode_alert(a)) for a in (alone_a, alone_b, shared)]
             + [(s.topic_incidents, json.dumps(incident).encode()),
                (s.topic_incidents, json.dumps(crossing).encode()), (s.topic_threat, json.dumps(cloud).encode()),
                (s.topic_metrics, msgspec.json.encode({"ts": shared.ts, "tenant": B, "kind": "flow", "key": B,
                                                       "events": 5}))])  # fmt: skip

    _index_all(s, registry, industry_of=registry.industry_of)
    es.indices.refresh(index=f"{s.index_alerts_prefix}*,{s.index_incidents_prefix}*,{s.index_threat_prefix}*,"
                       f"{s.index_metrics_prefix}*")  # fmt: skip

    # Each tenant's pattern holds its own documents only.
    prefix = s.index_alerts_prefix
    hits_a = _hits(es, tenant_index_pattern(prefix, A))
    hits_b = _hits(es, tenant_index_pattern(prefix, B))
    assert {h["_source"]["tenant"] for h in hits_a} == {A} and {h["_source"]["tenant"] for h in hits_b} == {B}
    assert sorted(h["_id"] for h in hits_a) == sorted([alone_a.alert_id, shared.alert_id])
    assert sorted(h["_id"] for h in hits_b) == sorted([alone_b.alert_id, shared.alert_id])
    assert _hits(es, tenant_index_pattern(prefix, "t-gamma")) == []
    day = daily_index("", shared.first_seen)
    incidents_b = {h["_id"]: h for h in _hits(es, tenant_index_pattern(s.index_incidents_prefix, B))}
    assert {i: h["_index"] for i, h in incidents_b.items()} == {
        "inc-b": f"{s.index_incidents_prefix}t-t-beta.{day}", "inc-b2": f"{s.index_incidents_prefix}t-t-beta.{day}"}  # fmt: skip
    # The cross-tenant incident: beta's copy names no acme string; the SOC reads the whole one, once.
    copy_inc = incidents_b["inc-b2"]["_source"]
    assert copy_inc["copy"] == "tenant" and "another tenant reaching its VM" in copy_inc["title"]
    assert not [(p, t) for t in _strings(copy_inc) for p in _tenant_private(A, registry) if p in t]
    soc_incidents = {h["_id"]: h for h in _hits(es, soc_alias(s.index_incidents_prefix))}
    assert sorted(soc_incidents) == ["inc-b", "inc-b2"]
    assert soc_incidents["inc-b2"]["_index"] == f"{s.index_incidents_prefix}soc.{day}"
    assert soc_incidents["inc-b2"]["_source"]["other_tenants"] == [A]
    assert _hits(es, tenant_index_pattern(s.index_metrics_prefix, B))[0]["_source"]["events"] == 5
    assert _hits(es, tenant_index_pattern(s.index_threat_prefix, A)) == []  # the cloud's level is the SOC's

    # Beta's copy of acme's escape: marked, and none of acme's private entities anywhere in it.
    copy_b = next(h["_source"] for h in hits_b if h["_id"] == shared.alert_id)
    assert (
        copy_b["shared_copy"] is True
        and copy_b["copy"] == "shared"
        and copy_b["entity"]["id"] == "vm-beta-01"
    )
    full = _hits(es, soc_alias(prefix), ids={"values": [shared.alert_id]})[0]["_source"]
    private_a = _private_of(A, full, registry) - _tenant_private(B, registry)
    assert "vm-acme-01" in private_a and A in private_a
    assert not [(p, t) for t in _strings(copy_b) for p in private_a if p in t]
    copy_a = next(h["_source"] for h in hits_a if h["_id"] == shared.alert_id)
    assert copy_a["copy"] == "tenant" and "vm-beta-01" not in json.dumps(copy_a)

    # The SOC alias: every tenant's and the SOC's indices, the shared alert once, the old index too.
    alias = soc_alias(prefix)
    soc_ids = sorted(h["_id"] for h in _hits(es, alias))
    assert soc_ids == sorted([alone_a.alert_id, alone_b.alert_id, shared.alert_id, "legacy-1"])
    assert es.count(index=alias)["count"] == 4 and es.count(index=prefix + "*")["count"] == 6
    assert "orange" in {h["_source"]["level"] for h in _hits(es, soc_alias(s.index_threat_prefix))}
    es.close()

    # ssa alerts list / show / ack, for a tenant and for the SOC.
    assert main(["alerts", "list", "--tenant", B]) == 0
    out = capsys.readouterr().out
    assert alone_b.alert_id in out and shared.alert_id in out and alone_a.alert_id not in out
    assert "vm-acme" not in out
    assert main(["alerts", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count(shared.alert_id) == 1 and alone_a.alert_id in out and alone_b.alert_id in out
    assert main(["alerts", "ack", shared.alert_id, "--tenant", B, "--by", "beta-analyst"]) == 0
    capsys.readouterr()
    es = es_client(s)
    es.indices.refresh(index=prefix + "*")
    status = {
        h["_index"]: h["_source"]["status"]
        for h in _hits(es, prefix + "*", ids={"values": [shared.alert_id]})
    }
    assert status == {
        f"{prefix}soc.{daily_index('', shared.ts)}": "open",
        f"{prefix}t-t-acme.{daily_index('', shared.ts)}": "open",
        f"{prefix}t-t-beta.{daily_index('', shared.ts)}": "acknowledged",
    }
    es.close()
    assert main(["alerts", "ack", shared.alert_id, "--by", "soc"]) == 0  # the SOC's own document
    assert main(["alerts", "show", alone_a.alert_id, "--tenant", B]) != 0  # not beta's: not found
    capsys.readouterr()

    # ssa incidents and ssa report, for a tenant and for the SOC.
    assert main(["incidents", "list", "--tenant", B]) == 0
    out = capsys.readouterr().out
    assert "inc-b" in out and "inc-b2" in out and A not in out
    assert main(["incidents", "list"]) == 0
    assert capsys.readouterr().out.count("inc-b2") == 1
    assert main(["incidents", "list", "--tenant", A]) == 0
    assert "inc-b" not in capsys.readouterr().out
    times = [a.ts for a in (alone_a, alone_b, shared)]
    window = ["--from", str(min(times) - 3_600_000), "--to", str(max(times) + 3_600_000), "--format", "json"]
    assert main(["report", *window, "--tenant", B]) == 0
    report_b = json.loads(capsys.readouterr().out)
    assert main(["report", *window]) == 0
    report_soc = json.loads(capsys.readouterr().out)
    assert report_b["summary"]["alerts"] == 2  # its own alert and its copy of the shared one
    assert report_soc["summary"]["alerts"] == 3  # each alert once


def test_a_provisional_threat_level_never_replaces_its_minutes_final_one(own: Settings) -> None:
    """The job sends a minute's level provisional with an alert and final when the minute closes,
    under one id, on a topic without keys: whatever order the real indexer meets them in, the
    final level is what Elasticsearch keeps."""
    s = own
    _make_topics(s, partitions=2)
    minute = 1_796_000_040_000 - 1_796_000_040_000 % 60_000

    def level(doc_id: str, name: str, provisional: bool) -> tuple[str, bytes]:
        doc = {"kind": "threat", "doc_id": doc_id, "tenant": A, "ts": minute, "level": name,
               **({"provisional": True} if provisional else {})}  # fmt: skip
        return s.topic_threat, json.dumps(doc).encode()

    # final first, then a provisional red; and a provisional red, then the final blue
    _produce(s, [level("m1", "blue", False), level("m1", "red", True)])
    _produce(s, [level("m2", "red", True), level("m2", "blue", False)])
    _index_all(s)
    es = es_client(s)
    try:
        es.indices.refresh(index=f"{s.index_threat_prefix}*")
        stored = {h["_id"]: h["_source"] for h in _hits(es, f"{s.index_threat_prefix}*")}
    finally:
        es.close()
    assert {k: (v["level"], "provisional" in v) for k, v in stored.items()} == {
        "m1": ("blue", False),
        "m2": ("blue", False),
    }


def test_a_record_the_indexer_cannot_read_goes_to_the_dlq_as_a_dlq_record_and_is_counted(
    own: Settings,
) -> None:
    """The indexer's own DLQ records have the shape every other stage's have, and the indexer
    then counts each one as a ``dlq`` document of the SOC's metrics, like any other."""
    from ingest.dlq import decode_dlq
    from streams.demo import records_in_topic

    s = own
    _make_topics(s, partitions=1)
    _produce(s, [(s.topic_alerts, b"{not json")])
    _index_all(s, rejected=1)
    [(_ts, value)] = records_in_topic(s, s.topic_dlq)
    record = decode_dlq(value)
    assert (record.source, record.raw, record.encoding, record.raw_len) == (
        s.topic_alerts,
        "{not json",
        "utf-8",
        9,
    )
    assert "could not read" in record.reason and record.reason.endswith("(partition 0, offset 0)")
    es = es_client(s)
    try:
        es.indices.refresh(index=f"{s.index_metrics_prefix}*")
        counted = [h["_source"] for h in _hits(es, f"{s.index_metrics_prefix}*", term={"kind": "dlq"})]
    finally:
        es.close()
    assert [(d["source"], d["dlq"]) for d in counted] == [(s.topic_alerts, 1)]


def test_an_incident_acknowledged_before_it_turns_cross_tenant_stays_acknowledged_for_the_soc(
    own: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Beta's incident, acknowledged by the SOC while it is beta's alone, then the job's next
    version names acme: the SOC now reads the ``soc`` document, which holds the acknowledgement
    and its history; beta's copy keeps them too, and names no acme."""
    from detectors.samples import samples_registry
    from ssa.cli import main

    registry = samples_registry()
    s = own
    _make_topics(s, partitions=1)
    first = 1_796_000_000_000
    alone = {"incident_id": "inc-c", "tenant": B, "first_seen": first, "last_seen": first + 60_000, "status": "open",
             "severity": "high", "score": 60, "version": 1, "alert_ids": ["a-1"], "title": "VM vm-beta-01: scan",
             "entities": [{"type": "vm", "id": "vm-beta-01"}]}  # fmt: skip
    _produce(s, [(s.topic_incidents, json.dumps(alone).encode())])
    _index_all(s, registry)
    assert main(["incidents", "ack", "inc-c", "--by", "soc-1", "--reason", "looking"]) == 0
    capsys.readouterr()

    crossing = alone | {"version": 2, "last_seen": first + 120_000, "severity": "critical", "alert_ids": ["a-1", "a-2"],
                        "title": f"VM vm-beta-01 of tenant {B}: scan, then emulator escape by a VM of tenant {A}",
                        "other_tenants": [A]}  # fmt: skip
    _produce(s, [(s.topic_incidents, json.dumps(crossing).encode())])
    indexer = _index_all(s, registry)
    assert indexer.stats.analyst_fields_carried == 1
    es = es_client(s)
    try:
        es.indices.refresh(index=f"{s.index_incidents_prefix}*")
        soc = _hits(es, soc_alias(s.index_incidents_prefix))
        copy = _hits(es, tenant_index_pattern(s.index_incidents_prefix, B))
    finally:
        es.close()
    assert [h["_index"] for h in soc] == [f"{s.index_incidents_prefix}soc.{daily_index('', first)}"]
    doc = soc[0]["_source"]
    assert doc["version"] == 2 and doc["other_tenants"] == [A] and doc["workflow"] == "acknowledged"
    assert [(e["status"], e["by"], e["reason"]) for e in doc["workflow_history"]] == [
        ("acknowledged", "soc-1", "looking")
    ]
    beta = copy[0]["_source"]
    assert beta["copy"] == "tenant" and beta["workflow"] == "acknowledged" and A not in json.dumps(beta)
    # The SOC goes on from there: closing it acts on the soc document.
    assert main(["incidents", "close", "inc-c", "--by", "soc-1"]) == 0
    assert main(["incidents", "show", "inc-c"]) == 0
    assert "closed" in capsys.readouterr().out


@pytest.mark.parametrize("stale_first", [True, False])
def test_a_retired_incident_id_is_closed_in_the_soc_index_too(own: Settings, stale_first: bool) -> None:
    """A killed attempt of the job wrote incident r-1 naming acme (so its ``soc`` document); the
    restored attempt, fed the alerts in another order, retires r-1 (merged into r-0) with a
    document naming no other tenant. Whichever the indexer reads first, no document of r-1 is
    left open: the ``soc`` one is closed too, or, retired first, the stale write is refused."""
    from detectors.samples import samples_registry

    registry = samples_registry()
    s = own
    _make_topics(s, partitions=1)
    first = 1_796_000_000_000
    stale = {"incident_id": "r-1", "tenant": B, "first_seen": first, "last_seen": first + 60_000, "status": "open",
             "severity": "critical", "score": 80, "version": 5, "alert_ids": ["a-1", "a-2"],
             "title": f"VM vm-beta-01 of tenant {B}: emulator escape by a VM of tenant {A}", "other_tenants": [A],
             "entities": [{"type": "vm", "id": "vm-beta-01"}]}  # fmt: skip
    retired = {"incident_id": "r-1", "tenant": B, "status": "closed", "close_reason": "merged", "merged_into": "r-0",
               "closed_at": first + 90_000, "title": "merged into incident r-0", "first_seen": first,
               "last_seen": first + 60_000, "updated": first + 90_000, "alert_ids": ["a-1"], "alert_count": 1,
               "version": 9}  # fmt: skip
    for doc in (stale, retired) if stale_first else (retired, stale):
        _produce(s, [(s.topic_incidents, json.dumps(doc).encode())])
        _index_all(s, registry)
    es = es_client(s)
    try:
        es.indices.refresh(index=f"{s.index_incidents_prefix}*")
        every = _hits(es, f"{s.index_incidents_prefix}*")
        soc_view = _hits(es, soc_alias(s.index_incidents_prefix))
    finally:
        es.close()
    soc_index = f"{s.index_incidents_prefix}soc.{daily_index('', first)}"
    beta_index = document_index(s.index_incidents_prefix, B, first)
    assert sorted(h["_index"] for h in every) == sorted(
        [soc_index, beta_index] if stale_first else [beta_index]
    )
    assert all(h["_source"]["merged_into"] == "r-0" and h["_source"]["status"] == "closed" for h in every)
    assert all(h["_source"]["version"] == 9 for h in every)
    # The SOC reads the soc document the stale write made; else beta's, as for any incident of
    # one tenant.
    assert [h["_index"] for h in soc_view] == [soc_index if stale_first else beta_index]
