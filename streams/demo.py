"""``ssa demo`` (what ``make run`` runs): the whole pipeline on the embedded default.

Starts the local stack, simulates a few minutes of multi-tenant telemetry with labelled attacks
(event times ending now, so dashboards' "last hour" shows them), produces it to Kafka, runs the
detection job over it, ships alerts to Elasticsearch, and prints a situational summary scored
against the simulator's ground truth. Each run uses its own topics and consumer groups, so runs
never read each other's telemetry; alerts land in the shared ``ssa-alerts-*`` indices.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from detectors.alert import Alert, decode_alert
from infra.clients import es_client
from infra.settings import Settings

__all__ = ["DemoResult", "demo_settings", "fetch_alerts", "produce_simulation", "run_demo"]


@dataclass
class DemoResult:
    run_id: str
    events: int
    alerts: list[Alert]
    scorecard: Any
    seconds: dict[str, float]
    settings: Settings
    truth: list[Any]
    sim_config: Any


def demo_settings(settings: Settings, run_id: str) -> Settings:
    base = Path(settings.data_dir) / "runs" / run_id
    base.mkdir(parents=True, exist_ok=True)
    return settings.with_overrides(
        topic_prefix=f"ssa.run.{run_id}.telemetry.",
        topic_alerts=f"ssa.run.{run_id}.alerts",
        topic_metrics=f"ssa.run.{run_id}.metrics",
        topic_dlq=f"ssa.run.{run_id}.dlq",
        detect_group_id=f"ssa-detect-{run_id}",
        indexer_group_id=f"ssa-indexer-{run_id}",
        checkpoint_dir=str(base / "checkpoints"),
        tenants_file=str(base / "tenants.yaml"),
    )


def produce_simulation(
    settings: Settings, sim: Any, say: Callable[[str], None] = print, rate_per_s: float | None = None
) -> int:
    """Write the registry the simulation used, then produce its events to Kafka."""
    from infra.bootstrap import ensure_topics
    from ingest.simulator import stream_to
    from streams.kafka_target import telemetry_producer

    ensure_topics(settings)
    sim.registry.dump(settings.tenants_file)
    producer = telemetry_producer(settings)
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2:
            last[0] = now
            say(f"  produced {done:,}/{total:,} events ({done / max(now - started, 1e-6):,.0f}/s)")

    try:
        sent = stream_to(
            sim, producer.send_event, rate_per_s=rate_per_s, progress=progress, progress_every=20_000
        )
        producer.flush()
    finally:
        producer.close()
    return sent


def alert_ids_in_topic(settings: Settings, topic: str) -> set[str]:
    """Every alert id the job wrote to ``topic`` (read to its current end)."""
    return set(alert_timestamps_in_topic(settings, topic))


def alert_timestamps_in_topic(settings: Settings, topic: str) -> dict[str, int]:
    """Each alert id in ``topic`` (read to its current end) with its first record's timestamp."""
    seen: dict[str, int] = {}
    for timestamp, value in records_in_topic(settings, topic):
        seen.setdefault(decode_alert(value).alert_id, timestamp)
    return seen


def records_in_topic(settings: Settings, topic: str) -> list[tuple[int, bytes]]:
    """(timestamp, value) of every record in ``topic``, read to its current end."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    from infra.clients import kafka_config

    consumer = KafkaConsumer(**kafka_config(settings), enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        records: list[tuple[int, bytes]] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=1000, max_records=5000).values():
                records += [(r.timestamp, r.value) for r in batch]
        return records
    finally:
        consumer.close()


def fetch_alerts(settings: Settings, alert_ids: set[str]) -> list[Alert]:
    """The Elasticsearch documents of these alerts (several per id would be a duplicate)."""
    from elasticsearch.helpers import scan

    es = es_client(settings)
    try:
        es.indices.refresh(index=settings.index_alerts_pattern, ignore_unavailable=True)
        out: list[Alert] = []
        ids = sorted(alert_ids)
        for i in range(0, len(ids), 1000):
            query = {"query": {"terms": {"alert_id": ids[i : i + 1000]}}}
            for hit in scan(es, index=settings.index_alerts_pattern, query=query, size=1000):
                src = {k: v for k, v in hit["_source"].items() if k in Alert.__struct_fields__}
                out.append(decode_alert(msgspec.json.encode(src)))
        return out
    finally:
        es.close()


def run_demo(
    settings: Settings,
    *,
    seed: int = 7,
    tenants: int = 8,
    minutes: float = 4.0,
    events_per_s: float = 1000.0,
    start_ms: int | None = None,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """``start_ms``: event time of the first simulated event; by default the last ``minutes`` up
    to now, so the demo's alerts show in Grafana's default time range."""
    from detectors.evaluation.scorecard import Truth, score
    from infra.services import up
    from ingest.simulator import SimConfig, simulate
    from streams.runner import run_bounded

    t0 = time.monotonic()
    seconds: dict[str, float] = {}
    say("[1/4] starting the local stack (Kafka, Elasticsearch)")
    up(settings, progress=lambda m: say(f"  {m}"))
    seconds["stack"] = time.monotonic() - t0

    run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    s = demo_settings(settings, run_id)
    duration_s = minutes * 60
    if start_ms is None:
        start_ms = int(time.time() * 1000) - int(duration_s * 1000)
    sim_config = SimConfig(
        seed=seed, tenants=tenants, duration_s=duration_s, start_ms=start_ms, events_per_s=events_per_s
    )
    sim = simulate(sim_config)
    say(f"[2/4] simulating {minutes:g} min of telemetry from {tenants} tenants with attacks (seed {seed})")
    t1 = time.monotonic()
    events = produce_simulation(s, sim, say)
    seconds["simulate_and_produce"] = time.monotonic() - t1
    say(f"  {events:,} events in Kafka ({len(sim.truth)} labelled scenarios)")

    say("[3/4] running the PyFlink detection job and shipping alerts to Elasticsearch")
    t2 = time.monotonic()
    run_bounded(s, say=lambda m: say(f"  {m}"), indexer_idle_exit_s=5.0)
    seconds["detect_and_index"] = time.monotonic() - t2

    say("[4/4] reading the alerts back from Elasticsearch")
    alerts = fetch_alerts(s, alert_ids_in_topic(s, s.topic_alerts))
    truth = [
        Truth(
            scenario=r.scenario, category=r.category, tenant=r.tenant, entity=r.entity,  # type: ignore[arg-type]
            start=r.start, end=r.end, event_ids=list(r.event_ids), benign=r.benign,
        )
        for r in sim.truth
    ]  # fmt: skip
    card = score(alerts, truth, events)
    seconds["total"] = time.monotonic() - t0
    return DemoResult(run_id, events, alerts, card, seconds, s, truth, sim_config)


def summary(result: DemoResult) -> str:
    alerts = result.alerts
    by_cat = Counter(a.category for a in alerts)
    by_sev = Counter(a.severity for a in alerts)
    by_tenant = Counter(a.tenant or "-" for a in alerts)
    lines = [
        "",
        f"Situational summary (run {result.run_id}): {result.events:,} events, {len(alerts)} alerts "
        f"in {result.seconds['total']:.0f} s",
        "  by category: " + ", ".join(f"{k} {v}" for k, v in by_cat.most_common()),
        "  by severity: "
        + ", ".join(f"{k} {by_sev[k]}" for k in ("critical", "high", "medium", "low") if by_sev[k]),
        "  by tenant:   " + ", ".join(f"{k} {v}" for k, v in by_tenant.most_common()),
        "",
        result.scorecard.table(),
        "",
        "Most severe:",
    ]
    for a in sorted(alerts, key=lambda a: (-a.score, a.first_seen))[:8]:
        lines.append(f"  [{a.severity}] {a.tenant}: {a.summary}")
    s = result.settings
    lines += [
        "",
        f"Elasticsearch: {s.es_url}/{s.index_alerts_pattern}/_search  (alerts), {s.index_metrics_pattern} (posture)",
        "Grafana: `ssa dashboards build`, then mount dashboards/ in Grafana (infra/docker-compose.yml)",
        "Analysts: `ssa alerts list --status open`; reports: `ssa report --from ... --to ... --format html`",
    ]
    return "\n".join(lines)
