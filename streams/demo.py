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

The anomaly models learn each tenant's baseline from the stream, and a few minutes are far too
short for that (a conformal p-value of 0.001 needs 1,000 baseline rows: about 17 hours of one
tenant's 5-minute windows). So the demo does what a production user does to have them alert from
the start: fit them offline on a benign period of the same cloud and seed the job with
``shared.models_dir`` (``anomaly_baseline``: fitted once per simulated cloud, rate and time of
day, then reused from ``<data_dir>/models/``). The simulation carries a labelled attack that no
rule describes (``anomaly.internal_data_staging``) and its look-alike, and the scorecard scores
the ``anomaly`` category with the others.
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
from infra.tenant_indices import soc_alias

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
        index_incidents_prefix=run_index_prefix(settings.index_incidents_prefix, run_id),
        index_threat_prefix=run_index_prefix(settings.index_threat_prefix, run_id),
        index_warnings_prefix=run_index_prefix(settings.index_warnings_prefix, run_id),
        topic_prefix=f"ssa.run.{run_id}.telemetry.",
        topic_incidents=f"ssa.run.{run_id}.incidents",
        topic_threat=f"ssa.run.{run_id}.threat",
        topic_warnings=f"ssa.run.{run_id}.warnings",
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
        # The SOC alias: each alert once (a multi-tenant alert's per-tenant copies are left out).
        alerts = soc_alias(settings.index_alerts_prefix)
        es.indices.refresh(index=alerts, ignore_unavailable=True)
        out: list[Alert] = []
        ids = sorted(alert_ids)
        for i in range(0, len(ids), 1000):
            query = {"query": {"terms": {"alert_id": ids[i : i + 1000]}}}
            for hit in scan(es, index=alerts, query=query, size=1000):
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
        own |= {prefix + "*" for prefix in (settings.index_incidents_prefix, settings.index_threat_prefix,
                                            settings.index_warnings_prefix)}  # fmt: skip
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


_DAY_MS = 86_400_000
BASELINE_VERSION = 2  # bump when the way the baseline is made changes: older cached fits are not reused


def _code_fingerprint() -> str:
    """The sources a baseline's rows depend on: the simulator (its background, rhythm and topology)
    and the anomaly features. A change to any of them makes a new baseline."""
    import hashlib

    import detectors.anomaly.features as features
    import ingest.simulator as simulator

    h = hashlib.blake2b(digest_size=16)
    sim_dir = Path(simulator.__file__).parent
    for path in sorted([*sim_dir.glob("*.py"), *sim_dir.glob("*.json"), Path(features.__file__)]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _kind_background(topology: Any, seed: int, start_ms: int, end_ms: int, events_per_s: float,
                     diurnal_shift_ms: int, slice_ms: int) -> Any:  # fmt: skip
    """The background's flow and process events between two times, without its audit and auth
    events (the anomaly features read neither). The background draws each event's kind
    independently (``KIND_WEIGHTS``), so its flows and its process events are Poisson streams of
    their shares of the rate (thinning): drawn here at those rates, through the background's own
    generators, they have the distribution they have in the full stream, for 84 % of the cost."""
    import random

    from ingest.simulator.background import KIND_WEIGHTS, Background, _poisson, diurnal_factor
    from ingest.simulator.factory import EventMaker

    bg = Background(topology, seed, diurnal_shift_ms)
    shares = dict(KIND_WEIGHTS)
    gens = (("flow", bg._flow_event), ("process", bg._process))
    for index, lo in enumerate(range(start_ms, end_ms, slice_ms)):
        hi = min(end_ms, lo + slice_ms)
        stream = f"{seed}:bgk:{index}"
        rng, make = random.Random(stream), EventMaker(stream)
        rate = events_per_s * (hi - lo) / 1000 * diurnal_factor((lo + hi) // 2 + diurnal_shift_ms)
        batch: list[tuple[int, Any]] = []
        for kind, gen in gens:
            for _ in range(_poisson(rng, rate * shares[kind])):
                batch.append((lo + int(rng.random() * (hi - lo)), gen))
        batch.sort(key=lambda item: item[0])
        yield from (gen(rng, ts, make) for ts, gen in batch)


def anomaly_baseline(
    settings: Settings, sim: Any, config: Any, say: Callable[[str], None] = print
) -> tuple[Path, dict[str, Any]]:
    """Fit (once, then reuse) the anomaly models that seed the job's anomaly detectors: the offline
    path a production user takes (``python -m detectors.anomaly.fit`` on a benign period of their
    own telemetry, then ``shared.models_dir``), on a benign period of the demo's simulated cloud.

    The period: the 5-minute windows of the simulated day from the one holding the demo's
    simulated time of day on, one after another, background only (no attack, no look-alike), same
    tenants, VMs and event rate, each window its own random stream, until the flow features hold
    ``min_baseline_rows`` rows and a tenth more: the fewest with which a conformal p-value can
    reach the threshold (see ``detectors.anomaly.online``). From the demo's time of day on, the
    background's rate falls (the real diurnal curve), so the baseline spans the rate of the demo's
    window, which holds only ``minutes`` of events, down to about a quarter of it. Only the flow
    and process events are drawn (``_kind_background``). The fitted global rows seed each engine's
    pooled model once; the process rows of these windows (about 20 a window at the demo's size)
    stay under ``min_baseline_rows``, so the process model scores only once its pool has learned
    the rest from the stream (not within a demo of minutes): seeding it too would take three times
    the flow windows, for a model the demo's labelled attacks do not need.

    Per-address rows cost the events of one address's window each, so the fit is cached in
    ``<data_dir>/models/`` under a key of everything it depends on (simulated cloud, rate, the time
    of day on the window grid, anomaly parameters, the simulator's and the features' sources) and
    made once: runs at any clock (``repeatable_slice``) and the end-to-end test's mean-rate slice,
    which share the time of day's window, share it."""
    import hashlib
    import json
    import shutil

    import numpy as np

    from detectors.anomaly.fit import collect_rows
    from detectors.anomaly.store import ModelSet, model_path

    cfg = sim.config
    flow_params = dict(config.detectors["anomaly.flow_features"]["params"])
    process_params = dict(config.detectors["anomaly.process_activity"]["params"])
    window_ms = int(config.detectors["anomaly.flow_features"].get("window_ms", 300_000))
    time_of_day = (cfg.start_ms + cfg.diurnal_shift_ms) % _DAY_MS
    first_tod = time_of_day - time_of_day % window_ms  # the window of the day holding the demo's start
    key_doc = {
        "version": BASELINE_VERSION, "seed": cfg.seed, "tenants": cfg.tenants, "hosts": cfg.hosts,
        "vms_per_tenant": cfg.vms_per_tenant, "events_per_s": cfg.events_per_s, "first_window_of_day_ms": first_tod,
        "window_ms": window_ms, "flow": flow_params, "process": process_params, "code": _code_fingerprint(),
    }  # fmt: skip
    key = hashlib.blake2b(
        json.dumps(key_doc, sort_keys=True, default=str).encode(), digest_size=8
    ).hexdigest()
    out = settings.data_path / "models" / f"demo-baseline-{key}"
    info_path = out / "baseline.json"
    if info_path.exists() and all(model_path(out, k).exists() for k in ("flow", "process")):
        info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        return out, {**info, "cached": True}
    target = int(int(flow_params["min_baseline_rows"]) * 1.1) + 1
    rows: dict[str, tuple[list[str], dict[str, list[np.ndarray]]]] = {}
    counts = {"flow": 0, "process": 0}
    windows = 0
    # The day before the run, on the window grid; the simulated time of day is first_tod whatever
    # the run's own offset in its window (the shift carries it), so the rows depend on the key alone.
    first = cfg.start_ms - _DAY_MS - cfg.start_ms % window_ms
    shift = (first_tod - first) % _DAY_MS
    slice_ms = int(cfg.slice_s * 1000)
    say(
        f"  fitting the anomaly baseline: a benign day-before period of this cloud, {target:,} flow rows (once)"
    )
    while counts["flow"] < target and windows < 96:
        start = first + windows * window_ms
        events = _kind_background(
            sim.topology, cfg.seed * 1_000 + 500 + windows, start, start + window_ms, cfg.events_per_s, shift,
            slice_ms,
        )  # fmt: skip
        got = collect_rows(_counted(events, counts), sim.registry, config, ["flow", "process"])
        for kind, (names, by_tenant) in got.items():
            mats = rows.setdefault(kind, (names, {}))[1]
            for tenant, mat in by_tenant.items():
                mats.setdefault(tenant, []).append(mat)
                counts[kind] += mat.shape[0]
        windows += 1
    n_events = counts.pop("events", 0)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for kind, (names, mats) in rows.items():
        params = flow_params if kind == "flow" else process_params
        ModelSet.fit(
            kind, str(params["model"]), names, {t: np.vstack(m) for t, m in sorted(mats.items())},
            window_ms=window_ms, min_rows=int(params["min_baseline_rows"]), random_state=int(params["random_state"]),
        ).save(tmp)  # fmt: skip
    info = {
        "windows": windows,
        "events": n_events,
        "rows": counts,
        "before_run_ms": cfg.start_ms - first,
        "key": key_doc,
    }
    (tmp / "baseline.json").write_text(
        json.dumps(info, indent=1, sort_keys=True, default=str), encoding="utf-8"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out, {**info, "cached": False}


def _counted(events: Any, counts: dict[str, int]) -> Any:
    for ev in events:
        counts["events"] = counts.get("events", 0) + 1
        yield ev


def seeded_config_file(settings: Settings, models_dir: Path) -> Path:
    """The job's detector configuration (the settings' file, or the default) with
    ``shared.models_dir`` pointing at the fitted baseline, written in the run's folder."""
    import yaml

    from detectors.config import DetectorConfig

    base = DetectorConfig.load_or_default(settings.detector_config_file)
    doc = base.merged({"shared": {"models_dir": str(models_dir)}}).to_dict()
    path = Path(settings.tenants_file).parent / "detectors.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=True), encoding="utf-8")
    return path


def run_demo(
    settings: Settings,
    *,
    seed: int = 7,
    tenants: int = 8,
    minutes: float = 4.0,
    events_per_s: float = 1000.0,
    start_ms: int | None = None,
    say: Callable[[str], None] = print,
    seed_anomaly: bool = True,
) -> DemoResult:
    """``start_ms``: event time of the first simulated event. By default the run ends within the
    last ten minutes, so its alerts show in Grafana's default time range, and it is the same run
    whenever it is made (``repeatable_slice``: the start on the grid of the longest detector
    window, the simulated time of day fixed), so every run of one seed scores the same.
    ``seed_anomaly``: seed the anomaly models from ``anomaly_baseline`` (else they learn from the
    stream alone and stay silent for a run of minutes)."""
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
    if seed_anomaly:
        from detectors.config import DetectorConfig

        tb = time.monotonic()
        job_config = DetectorConfig.load_or_default(s.detector_config_file)
        models_dir, baseline = anomaly_baseline(settings, sim, job_config, say)
        s = s.with_overrides(detector_config_file=str(seeded_config_file(s, models_dir)))
        seconds["anomaly_baseline"] = time.monotonic() - tb
        say(
            f"  anomaly models seeded from {models_dir} ({baseline['rows']['flow']:,} flow rows of "
            f"{baseline['windows']} benign windows{', cached' if baseline['cached'] else ''})"
        )
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
            start=r.start, end=r.end, event_ids=list(r.event_ids), benign=r.benign, context=r.context,
        )
        for r in [*sim.truth, *sim.context_truth()]
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
