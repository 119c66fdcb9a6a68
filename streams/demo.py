"""``ssa demo`` (what ``make run`` runs): the whole pipeline on the embedded default.

Starts the local stack, simulates a few minutes of multi-tenant telemetry with labelled attacks
(event times ending now, so dashboards' "last hour" shows them), produces it to Kafka, runs the
detection job over it, ships alerts to Elasticsearch, and prints a situational summary scored
against the simulator's ground truth.

Each run has its own topics, consumer groups and Elasticsearch indices, so it reads back and scores
only its own alerts. Alert ids are deterministic (the same seed over the same windows gives the
same ids) and the indexer's ``create`` keeps the first document of an id, so runs sharing indices
scored an earlier run's documents. The run's indices sit inside the shared patterns
(``ssa-alerts-run-<run>-<day>`` in ``ssa-alerts-*``): Grafana shows every run, and the shared
index templates apply.
"""

from __future__ import annotations

import secrets
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

__all__ = [
    "DemoResult",
    "demo_settings",
    "fetch_alerts",
    "new_run_id",
    "produce_simulation",
    "run_demo",
    "run_index_prefix",
]


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


def new_run_id(settings: Settings) -> str:
    """A run id no other run of this data dir has: the UTC second, then a random suffix for runs
    started in the same second (or on other machines), made certain by claiming the run's folder."""
    runs = settings.data_path / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        try:
            (runs / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id


def run_index_prefix(prefix: str, run_id: str) -> str:
    """A run's index prefix inside the shared one: ``ssa-alerts-`` gives ``ssa-alerts-run-<run>-``."""
    return f"{prefix}run-{run_id}-"


def demo_settings(settings: Settings, run_id: str) -> Settings:
    """Topics, consumer groups, indices, checkpoints and tenant file of the run's own."""
    base = Path(settings.data_dir) / "runs" / run_id
    base.mkdir(parents=True, exist_ok=True)
    return settings.with_overrides(
        index_alerts_prefix=run_index_prefix(settings.index_alerts_prefix, run_id),
        index_metrics_prefix=run_index_prefix(settings.index_metrics_prefix, run_id),
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


def drop_run_scaffolding(settings: Settings) -> None:
    """Once the run's job and indexer are done: the index templates the indexer made for the
    run's own prefixes, and the run's indices that stayed empty (the indexer makes tomorrow's
    ahead). Kept, every run would leave two more templates and two more shards on the stack;
    the shared templates (``ssa-alerts-*``) cover the run's indices."""
    es = es_client(settings)
    try:
        own = {settings.index_alerts_pattern, settings.index_metrics_pattern}
        for template in es.indices.get_index_template()["index_templates"]:
            if set(template["index_template"]["index_patterns"]) <= own:
                es.indices.delete_index_template(name=template["name"])
        patterns = ",".join(sorted(own))
        es.indices.refresh(index=patterns, ignore_unavailable=True)
        for index in es.indices.get(index=patterns, ignore_unavailable=True):
            if es.count(index=index)["count"] == 0:
                es.indices.delete(index=index)
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
    """``start_ms``: event time of the first simulated event. By default the run ends within the
    last ten minutes, so its alerts show in Grafana's default time range, and it is the same run
    whenever it is made (``repeatable_slice``: the start on the grid of the longest detector
    window, the simulated time of day fixed), so every run of one seed scores the same."""
    from detectors.evaluation.scorecard import Truth, score
    from infra.services import up
    from ingest.simulator import SimConfig, repeatable_slice, simulate
    from streams.runner import run_bounded

    t0 = time.monotonic()
    seconds: dict[str, float] = {}
    say("[1/4] starting the local stack (Kafka, Elasticsearch)")
    up(settings, progress=lambda m: say(f"  {m}"))
    seconds["stack"] = time.monotonic() - t0

    run_id = new_run_id(settings)
    s = demo_settings(settings, run_id)
    duration_s = minutes * 60
    shift_ms = 0
    if start_ms is None:
        start_ms, shift_ms = repeatable_slice(int(time.time() * 1000), int(duration_s * 1000))
    sim_config = SimConfig(
        seed=seed, tenants=tenants, duration_s=duration_s, start_ms=start_ms, events_per_s=events_per_s,
        diurnal_shift_ms=shift_ms,
    )  # fmt: skip
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
    drop_run_scaffolding(s)

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


def _by_count(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most first, ties by name: alerts arrive in no fixed order, and the summary of two runs of
    one seed must read the same."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def summary(result: DemoResult) -> str:
    alerts = result.alerts
    by_cat: Counter[str] = Counter(a.category for a in alerts)
    by_sev = Counter(a.severity for a in alerts)
    by_tenant = Counter(a.tenant or "-" for a in alerts)
    lines = [
        "",
        f"Situational summary (run {result.run_id}): {result.events:,} events, {len(alerts)} alerts "
        f"in {result.seconds['total']:.0f} s",
        "  by category: " + ", ".join(f"{k} {v}" for k, v in _by_count(by_cat)),
        "  by severity: "
        + ", ".join(f"{k} {by_sev[k]}" for k in ("critical", "high", "medium", "low") if by_sev[k]),
        "  by tenant:   " + ", ".join(f"{k} {v}" for k, v in _by_count(by_tenant)),
        "",
        result.scorecard.table(),
        "",
        "Most severe:",
    ]
    for a in sorted(alerts, key=lambda a: (-a.score, a.first_seen, a.summary))[:8]:
        lines.append(f"  [{a.severity}] {a.tenant}: {a.summary}")
    s = result.settings
    shared = s.index_alerts_prefix.removesuffix(run_index_prefix("", result.run_id)) + "*"
    lines += [
        "",
        f"This run's alerts are in the indices {s.index_alerts_pattern} (posture: {s.index_metrics_pattern});",
        f"Grafana's {shared} shows every run's. For instance:",
        f"  curl -s '{s.es_url}/{s.index_alerts_pattern}/_search?size=20&sort=score:desc'",
        f"  SSA_INDEX_ALERTS_PREFIX={s.index_alerts_prefix} ssa alerts list --status open",
        "Grafana: `ssa dashboards build`, then mount dashboards/ in Grafana (infra/docker-compose.yml)",
        "Analysts: `ssa alerts list --status open`; reports: `ssa report --from ... --to ... --format html`",
    ]
    return "\n".join(lines)
