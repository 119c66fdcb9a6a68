"""Fault tests on the real stack. Each run reads the same telemetry and writes its alerts to its own
indices; the set of alert ids in Elasticsearch must equal the uninterrupted run's: none missing,
none duplicated (Elasticsearch ``_id`` = ``alert_id``).

Resuming from a checkpoint is what ``ssa detect`` does in continuous mode, so the SIGKILL test
compares two continuous runs, each stopped once it has consumed and checkpointed all the input
and its alerts stopped changing (windows still open at the end are open in both). The other
faults are compared on bounded runs, whose final watermark closes every window."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.clients import es_client
from infra.services import ElasticsearchService, KafkaService
from infra.settings import Settings
from tests.integration.jobs import start_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def telemetry(stack: Settings) -> Settings:
    """One simulated input in its own topics, produced once for every run of this module."""
    from ingest.simulator import SimConfig, mean_rate_slice_start_ms, simulate
    from streams.demo import demo_settings, produce_simulation

    run = "faults" + uuid.uuid4().hex[:6]
    s = demo_settings(stack, run)
    # The same volume at any hour: "the last 4 minutes" held 99.5k events at midnight UTC.
    start_ms = mean_rate_slice_start_ms(int(time.time() * 1000), 240_000)
    sim = simulate(SimConfig(seed=5, tenants=5, duration_s=240, start_ms=start_ms, events_per_s=600))
    produced = produce_simulation(s, sim, say=lambda _m: None)
    assert produced > 100_000
    return s


def _run_settings(base: Settings, name: str) -> Settings:
    tag = f"{name}{uuid.uuid4().hex[:6]}"
    ckpt = Path(base.data_dir) / "runs" / tag / "checkpoints"
    return base.with_overrides(
        topic_alerts=f"ssa.run.{tag}.alerts",
        topic_metrics=f"ssa.run.{tag}.metrics",
        topic_dlq=f"ssa.run.{tag}.dlq",
        topic_incidents=f"ssa.run.{tag}.incidents",
        topic_threat=f"ssa.run.{tag}.threat",
        topic_warnings=f"ssa.run.{tag}.warnings",
        detect_group_id=f"ssa-detect-{tag}",
        indexer_group_id=f"ssa-indexer-{tag}",
        index_alerts_prefix=f"ssa-test-{tag}-alerts-",
        index_metrics_prefix=f"ssa-test-{tag}-metrics-",
        index_incidents_prefix=f"ssa-test-{tag}-incidents-",
        index_threat_prefix=f"ssa-test-{tag}-threat-",
        index_warnings_prefix=f"ssa-test-{tag}-warnings-",
        checkpoint_dir=str(ckpt),
        checkpoint_interval_ms=2000,
        # The simulator writes flows in time order; the default export delay (6 min) is longer
        # than the 4-minute input, so the continuous runs would end with every flow window open.
        flow_export_delay_ms=10_000,
    )


def _job(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    return start_job(settings, "--bounded", "--indexer-idle-exit", "8", *extra)


def _alert_ids(settings: Settings, pattern: str | None = None) -> list[str]:
    es = es_client(settings)
    try:
        from infra.tenant_indices import soc_alias

        # The SOC alias: each alert once (the per-tenant copies of a multi-tenant alert left out).
        pattern = pattern or soc_alias(settings.index_alerts_prefix)
        es.indices.refresh(index=pattern, ignore_unavailable=True)
        from elasticsearch.helpers import scan

        return [h["_id"] for h in scan(es, index=pattern, query={"query": {"match_all": {}}}, _source=False)]
    finally:
        es.close()


def _caught_up(settings: Settings, ends: dict[tuple[str, int], int]) -> bool:
    from streams.offsets import group_lag

    try:
        return not any(group_lag(settings, settings.detect_group_id, ends).values())
    except Exception:  # the group does not exist before the first checkpoint
        return False


def _continuous_until_settled(
    settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float = 600
) -> set[str]:
    """Wait until the job has checkpointed the whole input and its alerts and incidents in
    Elasticsearch have not changed for longer than the source idle timeout (a partition with
    nothing left to read holds the watermark back that long), then stop it; returns the alert ids.
    Incidents count too: the indexer may write the last alerts before the incident updates they
    caused, and stopping the job between the two would leave those updates unread."""
    quiet_s = settings.source_idle_timeout_ms / 1000 + 15
    from streams.offsets import end_offsets

    ends = end_offsets(settings, settings.telemetry_topics.values())
    deadline = time.monotonic() + timeout_s
    while not _caught_up(settings, ends):
        assert proc.poll() is None, "the job ended early"
        assert time.monotonic() < deadline, "the job did not catch up"
        time.sleep(1)
    last: list[str] = []
    last_incidents: set[tuple[str, int]] = set()
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < quiet_s:
        ids, incidents = _alert_ids(settings), _incident_versions(settings)
        if sorted(ids) != sorted(last) or incidents != last_incidents:
            last, last_incidents, stable_since = ids, incidents, time.monotonic()
        assert time.monotonic() < deadline, "alerts kept changing"
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    assert len(last) == len(set(last))
    return set(last)


def _continuous(settings: Settings, *extra: str) -> subprocess.Popen[bytes]:
    return start_job(settings, *extra)


def _wait_for_checkpoint(settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    from streams.flink_env import latest_checkpoint

    deadline = time.monotonic() + timeout_s
    while latest_checkpoint(settings.checkpoint_dir) is None:
        assert proc.poll() is None, "the job ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint completed"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def baseline(telemetry: Settings) -> set[str]:
    s = _run_settings(telemetry, "base")
    assert _job(s).wait(timeout=600) == 0
    ids = _alert_ids(s)
    assert len(ids) == len(set(ids)) and len(ids) >= 20
    return set(ids)


def _incident_versions(settings: Settings) -> set[tuple[str, int]]:
    """(incident id, version) of every incident document in Elasticsearch."""
    from elasticsearch.helpers import scan

    es = es_client(settings)
    try:
        pattern = settings.index_incidents_prefix + "*"
        es.indices.refresh(index=pattern, ignore_unavailable=True)
        return {
            (h["_id"], int(h["_source"].get("version") or 0))
            for h in scan(es, index=pattern, query={"query": {"match_all": {}}}, _source=["version"])
        }
    finally:
        es.close()


def _incidents(settings: Settings) -> dict[str, frozenset[str]]:
    """The standing incidents (not merged into another), id -> alert ids, without the context
    alerts (``port_scan.internet_probes``): they attach to an incident only if it is open when they
    arrive, and the two event-time paths' alerts reach the awareness stage interleaved in no fixed
    order. The other alerts group the same in any order (alert-to-alert links)."""
    from elasticsearch.helpers import scan

    from awareness.incidents import IncidentSettings

    es = es_client(settings)
    try:
        es.indices.refresh(index=settings.index_alerts_pattern, ignore_unavailable=True)
        context_query = {"query": {"terms": {"detector": list(IncidentSettings().context_detectors)}}}
        context = {
            h["_id"]
            for h in scan(es, index=settings.index_alerts_pattern, query=context_query, _source=False)
        }
        pattern = settings.index_incidents_prefix + "*"
        es.indices.refresh(index=pattern, ignore_unavailable=True)
        query = {"query": {"bool": {"must_not": [{"exists": {"field": "merged_into"}}]}}}
        docs = {
            h["_id"]: frozenset(h["_source"]["alert_ids"]) - context
            for h in scan(es, index=pattern, query=query)
        }
    finally:
        es.close()
    return {i: a for i, a in docs.items() if a}


def _incident_difference(
    restored: Settings,
    uninterrupted: Settings,
    got: dict[str, frozenset[str]],
    expected: dict[str, frozenset[str]],
) -> list[str]:
    """One line per alert that sits in an incident in one run and not the other, with what it is
    (detector, tenant, entity, first and last seen, summary) and in which runs' alerts it is, so a
    failed comparison says whether the alerts or their grouping changed."""
    from elasticsearch.helpers import scan

    lines = [f"incident only after restore: {i}" for i in got.keys() - expected.keys()]
    lines += [f"incident missing after restore: {i}" for i in expected.keys() - got.keys()]
    moved: dict[str, str] = {}
    moved |= {a: f"{i} (only after restore) holds" for i in got.keys() - expected.keys() for a in got[i]}
    moved |= {
        a: f"{i} (missing after restore) held" for i in expected.keys() - got.keys() for a in expected[i]
    }
    for i in got.keys() & expected.keys():
        moved |= {a: f"{i} gained" for a in got[i] - expected[i]}
        moved |= {a: f"{i} lost" for a in expected[i] - got[i]}
    found: dict[str, list[str]] = {a: [] for a in moved}
    described: dict[str, str] = {}
    runs = (("restored", restored), ("uninterrupted", uninterrupted))
    for name, settings in runs:
        es = es_client(settings)
        try:
            query = {"query": {"ids": {"values": sorted(moved)}}}
            for h in scan(es, index=settings.index_alerts_pattern, query=query):
                a = h["_source"]
                found[h["_id"]].append(name)
                described[h["_id"]] = (
                    f"{a.get('detector')} {a.get('tenant')} {a.get('entity')} "
                    f"{a.get('first_seen')}..{a.get('last_seen')} {a.get('summary')}"
                )
        finally:
            es.close()
    lines += [
        f"{why} {a} (alert of {'+'.join(sorted(set(found[a]))) or 'neither run'}): {described.get(a, '')}"
        for a, why in moved.items()
    ]
    lines += [f"{name}: {_incidents_holding(st, sorted(moved))}" for name, st in runs]
    return lines + [f"DLQ of the {name} run: {_dlq_reasons(st)}" for name, st in runs]


def _incidents_holding(settings: Settings, alert_ids: list[str]) -> list[tuple[Any, ...]]:
    """Every incident document (merged and closed ones too) holding any of ``alert_ids``:
    (incident id, status, merged into, version, alert count, which of the alerts)."""
    from elasticsearch.helpers import scan

    es = es_client(settings)
    try:
        pattern = settings.index_incidents_prefix + "*"
        query = {"query": {"terms": {"alert_ids": alert_ids}}}
        return [
            (h["_id"], d.get("status"), d.get("merged_into"), d.get("version"), len(d.get("alert_ids") or ()),
             sorted(set(alert_ids) & set(d.get("alert_ids") or ())))
            for h in scan(es, index=pattern, query=query, ignore_unavailable=True)
            for d in [h["_source"]]
        ]  # fmt: skip
    finally:
        es.close()


def _dlq_reasons(settings: Settings) -> dict[str, int]:
    """DLQ records of a run by source and reason (late events would change alerts' evidence)."""
    import json
    from collections import Counter

    from streams.demo import records_in_topic

    return dict(
        Counter(
            f"{r.get('source')}: {str(r.get('reason'))[:60]}"
            for r in (json.loads(v) for _ts, v in records_in_topic(settings, settings.topic_dlq))
        )
    )


def test_sigkill_of_the_job_then_restart_from_checkpoint(telemetry: Settings) -> None:
    """The same alert ids, and the same incident ids (the awareness stage's state is restored with
    the detectors' and its replayed alerts rewrite the same incident documents)."""
    uninterrupted = _run_settings(telemetry, "live")
    expected = _continuous_until_settled(uninterrupted, _continuous(uninterrupted))
    assert len(expected) >= 20
    expected_incidents = _incidents(uninterrupted)
    assert 0 < len(expected_incidents) < len(expected)

    s = _run_settings(telemetry, "kill")
    proc = _continuous(s, "--no-indexer")
    _wait_for_checkpoint(s, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # `ssa detect` again: it resumes from the newest checkpoint and ships everything.
    assert set(_continuous_until_settled(s, _continuous(s))) == expected
    # The same incidents: ids and alerts.
    got = _incidents(s)
    assert got == expected_incidents, _incident_difference(s, uninterrupted, got, expected_incidents)


def test_a_checkpoint_that_lost_a_state_file_stops_the_job_in_one_line(
    telemetry: Settings, tmp_path: Path
) -> None:
    """What a CI run met: a job killed while Flink removed a checkpoint left it without a state
    file, and its restore failed on every restart, saying nothing. ``ssa detect`` now names each
    restart's cause and stops with one line saying what to do."""
    from streams.flink_env import latest_checkpoint

    s = _run_settings(telemetry, "lost")
    proc = _continuous(s, "--no-indexer")
    _wait_for_checkpoint(s, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    newest = latest_checkpoint(s.checkpoint_dir)
    assert newest is not None
    state = max((p for p in newest.iterdir() if p.name != "_metadata"), key=lambda p: p.stat().st_size)
    state.unlink()
    log = tmp_path / "detect.log"
    proc = start_job(s, "--no-indexer", output=log)
    assert proc.wait(timeout=600) == 1
    said = log.read_text(encoding="utf-8", errors="replace")
    assert f"java.io.FileNotFoundException: {state.resolve()}" in said, said[-3000:]
    assert f"ssa detect: checkpoint {newest.resolve()} cannot be restored" in said, said[-3000:]
    assert "--no-restore" in said and "Traceback" not in said


def test_elasticsearch_down_for_a_minute(telemetry: Settings, baseline: set[str]) -> None:
    s = _run_settings(telemetry, "esdown")
    es_service = ElasticsearchService(s)
    es_service.proc.stop()
    try:
        proc = _job(s)
        time.sleep(60)
    finally:
        es_service.launch()
        es_service.proc.wait_until(es_service.healthy, 120, "healthy")
    assert proc.wait(timeout=600) == 0
    ids = _alert_ids(s)
    assert len(ids) == len(set(ids))
    assert set(ids) == baseline


def test_kafka_broker_restart_mid_stream(telemetry: Settings, baseline: set[str]) -> None:
    s = _run_settings(telemetry, "kafkarestart")
    kafka = KafkaService(s)
    proc = _job(s)
    _wait_for_checkpoint(s, proc)
    kafka.proc.stop()
    time.sleep(5)
    kafka.launch()
    kafka.proc.wait_until(kafka.healthy, 120, "healthy")
    assert proc.wait(timeout=900) == 0
    ids = _alert_ids(s)
    assert len(ids) == len(set(ids))
    assert set(ids) == baseline
