"""End-to-end streaming figures on the local stack, all measured in one run:

- ceiling: a plain consumer (confluent-kafka) reading the telemetry topics, events/s;
- sustained: the detection job over a backlog, events/s from the slope of its committed offsets
  while it runs (JVM start-up excluded), the same after its first 30 s (JIT warm-up), and the
  whole run's wall time to the last alert searchable; then the same backlog again without the
  awareness stage (``python -m streams --no-awareness``: the detectors only), with the anomaly
  detectors switched off (a site config), without the awareness stage again and with every stage
  again, so each stage's cost is a ratio of one run (``anomaly_on_to_off_ratio``,
  ``awareness_on_to_off_ratio``; the target is >= 0.9) between means of runs whose mean position
  in the run is the same (runs of one backlog drift);
- latency: the job live, telemetry sent in real time (each event at its event time), time from the
  moment a detector window's input was complete in Kafka to its alert being searchable in
  Elasticsearch, split into job (alert written to Kafka, broker append time) and indexing. The
  first minute of input is reported apart: the job is still compiling (JIT) then, once per start.
  Taken three times, each labelled with its input rate: a trickle (400 events/s asked), and 50 %
  and 80 % of the sustained rate measured just before. The sender shares the machine with the
  job, so each run also reports the rate it really sent and how far it fell behind event time.
  Each run also times the awareness stage: from an alert written to Kafka (its append time) to the
  first searchable incident document listing it in ``alert_ids`` (``alert_to_incident_*``), and
  from the window's input complete to that incident update (``incident_beyond_window_*``), and
  splits both ways per stage (``breakdown``: job, indexer read, bulk to searchable, awareness,
  incident indexing; see ``_breakdown``).

A shorter variant, for comparing settings back to back (``_knob``): ``SSA_BENCH_STREAMS_RATE=<events/s>``
takes the latency runs only, at a trickle and at 50 and 80 % of that rate;
``SSA_BENCH_STREAMS_TRICKLE_S`` and ``SSA_BENCH_STREAMS_LOADED_S`` shorten them (windows ending in
the first minute are reported apart, so under ~150 s few window ends are timed);
``SSA_BENCH_STREAMS_BACKLOG_S`` and ``SSA_BENCH_STREAMS_SUSTAINED_ONLY=1`` shorten the throughput
part. Latency settings of the job (``flink_buffer_timeout_ms``...) reach it as ``SSA_*`` variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from infra.bootstrap import ensure_topics
from infra.clients import es_client, kafka_config
from infra.settings import PROJECT_ROOT, Settings
from infra.tenant_indices import soc_alias
from ingest.schema import encode_event
from ingest.simulator import SimConfig, mean_rate_slice_start_ms, simulate
from streams.demo import alert_timestamps_in_topic, demo_settings, produce_simulation
from streams.offsets import committed_offsets
from tests.bench.live_input import encode_records, send_in_real_time


def _committed(settings: Settings) -> int:
    return sum(committed_offsets(settings, settings.detect_group_id).values())


def _plain_consumer_rate(settings: Settings, expected: int) -> float:
    import confluent_kafka

    conf = {**kafka_config(settings, "confluent"), "group.id": f"bench-ceiling-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}  # fmt: skip
    consumer = confluent_kafka.Consumer(conf)
    consumer.subscribe(list(settings.telemetry_topics.values()))
    n, t0 = 0, None
    deadline = time.monotonic() + 300
    while n < expected and time.monotonic() < deadline:
        msgs = consumer.consume(10000, timeout=1.0)
        if msgs and t0 is None:
            t0 = time.perf_counter()
        n += sum(1 for m in msgs if m.error() is None)
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    consumer.close()
    return n / elapsed if elapsed > 0 else 0.0


def _job(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streams", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings.to_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


_JIT_WARMUP_S = 30  # the JVM compiles the hot paths during the first half minute or so of input


def _slope(samples: list[tuple[float, int]]) -> float | None:
    """Events per second between the first and last (time, committed offsets) sample."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


def _sustained(settings: Settings, events: int, awareness: bool = True) -> dict[str, Any]:
    # The checkpoint interval of the settings (5 s by default), as ``ssa detect`` runs: offsets are
    # committed, and so sampled, at each checkpoint. (At 2 s, the bench's old choice, the
    # checkpoints' state copies took ~20% off the rate: 39.3k and 47.4k against 52.8k and 52.6k
    # events/s, interleaved runs over one 4.5M-event backlog.)
    s = settings.with_overrides(detect_group_id=f"bench-detect-{uuid.uuid4().hex[:6]}",
                                indexer_group_id=f"bench-index-{uuid.uuid4().hex[:6]}")  # fmt: skip
    t0 = time.perf_counter()
    proc = _job(
        s, "--bounded", "--no-restore", "--indexer-idle-exit", "3", *([] if awareness else ["--no-awareness"])
    )
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        # The group does not exist before the first checkpoint.
        with contextlib.suppress(Exception):
            samples.append((time.perf_counter(), _committed(s)))
        time.sleep(1.0)
    wall = time.perf_counter() - t0
    moving = [(t, c) for t, c in samples if 0 < c < events]
    warm = [(t, c) for t, c in moving if t - moving[0][0] >= _JIT_WARMUP_S] if moving else []
    rate, warm_rate = _slope(moving), _slope(warm)
    return {
        "job_exit_code": proc.returncode,
        "awareness_stage": awareness,
        "checkpoint_interval_ms": s.checkpoint_interval_ms,
        "backlog_events": events,
        "sustained_events_per_s": round(rate) if rate else None,
        f"sustained_after_first_{_JIT_WARMUP_S}s_events_per_s": round(warm_rate) if warm_rate else None,
        "offset_samples_while_moving": len(moving),
        "whole_run_wall_s_incl_jvm_start": round(wall, 1),
        "whole_run_events_per_s_incl_jvm_start": round(events / wall),
    }


_SLICE_MS = 10_000  # the simulator's slice: one slice's worth times the encoding
_JOB_START_S = 25  # the job is up and reading ~20 s after it is started
_CATCH_UP_S = 180  # how long a job that fell behind gets to read the rest of its input
_WARMUP_MS = 60_000  # windows ending in the first minute of input: reported apart (JIT warm-up)


def _simulation_at(target_rate: float, seconds: float, start_ms: int) -> Any:
    """A simulation whose mean rate over its own span is ``target_rate``: the simulator's rate
    follows the time of day, so the asked rate is divided by the span's mean diurnal factor."""
    config = SimConfig(seed=23, tenants=8, duration_s=seconds, start_ms=start_ms, events_per_s=target_rate)
    factor = simulate(config).expected_background() / (target_rate * seconds)
    return simulate(replace(config, events_per_s=target_rate / factor))


def _latency(base: Settings, target_rate: float, seconds: float) -> dict[str, Any]:
    run = "benchlat" + uuid.uuid4().hex[:6]
    # Simulated flows arrive in order: both allowances at 200 ms measure the job, not a flow
    # exporter's delay (a real flow source adds flow_export_delay_ms and its own export interval).
    s = demo_settings(base, run).with_overrides(out_of_orderness_ms=200, flow_export_delay_ms=200,
                                                checkpoint_interval_ms=5000, source_idle_timeout_ms=2000,
                                                index_alerts_prefix=f"ssa-bench-{run}-alerts-",
                                                index_metrics_prefix=f"ssa-bench-{run}-metrics-")  # fmt: skip
    # The job stamps records with event time; these topics keep the broker's append time instead,
    # which is when an alert (an incident version) reached Kafka.
    ensure_topics(s, [s.topic_alerts, s.topic_incidents], configs={"message.timestamp.type": "LogAppendTime"})
    ensure_topics(s)
    # Plan the start after the events are encoded (timed on one slice's worth) and the job is up.
    probe = _simulation_at(target_rate, _SLICE_MS / 1000, int(time.time() * 1000))
    t0 = time.perf_counter()
    made = sum(len(encode_event(ev)) > 0 for ev in probe.events())
    encode_s = (time.perf_counter() - t0) * target_rate * seconds / max(made, 1)
    now = int((time.time() + 1.2 * encode_s + _JOB_START_S) * 1000)
    sim = _simulation_at(target_rate, seconds, now)
    sim.registry.dump(s.tenants_file)
    records = Path(s.checkpoint_dir).parent / "live-input.bin"
    t0 = time.perf_counter()
    encode_records(s, sim.events(), records)
    encoded_s = time.perf_counter() - t0
    job = _job(s, "--no-restore")
    seen: dict[str, float] = {}
    stop = threading.Event()

    def poll_es() -> None:
        es = es_client(s)
        while not stop.is_set():
            try:
                res = es.search(index=soc_alias(s.index_alerts_prefix), size=10_000, source=False,
                                query={"match_all": {}}, ignore_unavailable=True)  # fmt: skip
                t = time.time()
                for hit in res["hits"]["hits"]:
                    seen.setdefault(hit["_id"], t)
            except Exception:
                pass
            time.sleep(0.1)
        es.close()

    poller = threading.Thread(target=poll_es, daemon=True)
    poller.start()
    in_incident: dict[str, float] = {}  # alert id -> when an incident document listing it was found
    incident_poller = threading.Thread(target=_poll_incidents, args=(s, in_incident, stop), daemon=True)
    incident_poller.start()
    try:
        replay = send_in_real_time(s, records)
    finally:
        records.unlink(missing_ok=True)
    complete_at = replay.complete_at
    # A loaded job may still be behind when the last event is sent; alerts it makes later must
    # still be timed, or the slowest would be left out. Its offsets are committed at checkpoints.
    sent_at, caught_up_s = time.monotonic(), None
    while time.monotonic() - sent_at < _CATCH_UP_S:
        with contextlib.suppress(Exception):  # the group exists from the first checkpoint on
            if _committed(s) >= replay.sent:
                caught_up_s = time.monotonic() - sent_at
                break
        time.sleep(1.0)
    time.sleep(15)  # the last windows close and their alerts are indexed
    stop.set()
    poller.join()
    incident_poller.join()
    job.terminate()
    try:
        job.wait(timeout=60)
    except subprocess.TimeoutExpired:
        job.kill()
    es = es_client(s)
    from elasticsearch.helpers import scan

    docs = {
        h["_id"]: h["_source"]
        for h in scan(es, index=soc_alias(s.index_alerts_prefix), query={"query": {"match_all": {}}})
    }
    es.close()
    out: dict[str, Any] = {
        "input_asked_events_per_s": round(target_rate),
        "input_sent_events_per_s": round(replay.sent / replay.wall_s) if replay.wall_s > 0 else None,
        "input_events_sent": replay.sent,
        "input_seconds_of_event_time": seconds,
        "sender_max_behind_event_time_s": round(replay.max_behind_s, 2),
        "sender_delivery_failures": replay.delivery_failures,
        "sender_first_delivery_error": replay.first_delivery_error,
        "input_encoded_before_run_s": round(encoded_s, 1),
        "job_read_all_input_within_s_of_last_send": round(caught_up_s, 1)
        if caught_up_s is not None
        else None,
        "alerts_in_elasticsearch": len(docs),
        "alerts_found_only_after_polling_stopped": sum(1 for i in docs if i not in seen),
    }
    # From the moment a window's input was complete in Kafka (the first event at or after its end
    # was sent) to its alert written to Kafka by the job, and to the alert searchable.
    ready: dict[str, float] = {}
    windows: set[int] = set()  # alerts of one window end close together: the independent samples
    warmup: list[float] = []
    for i, d in docs.items():
        end = d.get("evidence", {}).get("window_end")
        complete = complete_at.get(end - end % 1000) if isinstance(end, int) else None
        if complete is not None and i in seen:
            if end < now + _WARMUP_MS:
                warmup.append((seen[i] - complete) * 1000)
            else:
                ready[i] = complete
                windows.add(end)
    beyond = sorted((seen[i] - t) * 1000 for i, t in ready.items())
    out["alerts_timed"] = len(beyond)
    if not beyond:
        return out
    emitted = alert_timestamps_in_topic(s, s.topic_alerts)
    in_job = sorted(emitted[i] - t * 1000 for i, t in ready.items() if i in emitted)
    to_search = sorted(seen[i] * 1000 - emitted[i] for i in ready if i in emitted)
    # The awareness stage: from the alert written to Kafka to an incident document listing it
    # searchable, and from the window's input complete to that incident update searchable.
    to_incident = [in_incident[i] * 1000 - emitted[i] for i in ready if i in emitted and i in in_incident]
    incident_beyond = [(in_incident[i] - t) * 1000 for i, t in ready.items() if i in in_incident]
    incident_figures = {
        "alerts_timed_to_incident": len(to_incident),
        "alerts_in_no_incident_document_seen": sum(1 for i in ready if i not in in_incident),
        **percentiles_s("alert_to_incident", to_incident),
        **percentiles_s("incident_beyond_window", incident_beyond, (0.5, 0.99)),
    }
    out |= incident_figures
    out["breakdown"] = _breakdown(s, docs, ready, emitted, seen, in_incident)

    def pct(p: float, values: list[float] = beyond) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))] / 1000, 2)

    return out | {
        "window_ends": len(windows),
        "beyond_window_p50_s": pct(0.50),
        "beyond_window_p99_s": pct(0.99),
        "beyond_window_max_s": round(beyond[-1] / 1000, 2),
        "job_emit_p50_s": pct(0.50, in_job) if in_job else None,
        "job_emit_p99_s": pct(0.99, in_job) if in_job else None,
        "kafka_to_searchable_p50_s": pct(0.50, to_search) if to_search else None,
        "kafka_to_searchable_p99_s": pct(0.99, to_search) if to_search else None,
        "first_minute_alerts": len(warmup),
        "first_minute_beyond_window_max_s": round(max(warmup) / 1000, 2) if warmup else None,
    }


def _breakdown(
    s: Settings,
    docs: dict[str, Any],
    ready: dict[str, float],
    emitted: dict[str, int],
    seen: dict[str, float],
    in_incident: dict[str, float],
) -> dict[str, Any]:
    """Where the time from window end to searchable goes, per timed alert (p50/p99/max, s):

    - ``job``: the window's input complete in Kafka -> the alert appended to the alerts topic
      (watermark allowance and interval, the micro-batch window, detection, the Kafka sink);
    - ``indexer_read``: alert appended -> the indexer built its document (``indexed_at``);
    - ``bulk_to_searchable``: ``indexed_at`` -> found by the bench's search (bulk with refresh,
      plus up to 0.1 s of the bench's own polling);
    - ``awareness``: alert appended -> the first incident version listing it appended to the
      incidents topic (also LogAppendTime here): the job's alert views, keying, the stage, its sink;
    - ``incident_indexing``: that incident version appended -> searchable listing the alert."""
    from streams.demo import records_in_topic

    first_incident: dict[str, int] = {}  # alert id -> append time of the first incident version naming it
    for appended, value in records_in_topic(s, s.topic_incidents):
        try:
            ids = json.loads(value).get("alert_ids") or ()
        except ValueError:
            continue
        for alert_id in ids:
            if alert_id not in first_incident or appended < first_incident[alert_id]:
                first_incident[alert_id] = appended
    timed = [i for i in ready if i in emitted]
    indexed = [i for i in timed if isinstance(docs[i].get("indexed_at"), int)]
    aware = [i for i in timed if i in first_incident]
    return {
        **percentiles_s("job", [emitted[i] - ready[i] * 1000 for i in timed], _SHARES),
        **percentiles_s("indexer_read", [docs[i]["indexed_at"] - emitted[i] for i in indexed], _SHARES),
        **percentiles_s(
            "bulk_to_searchable", [seen[i] * 1000 - docs[i]["indexed_at"] for i in indexed], _SHARES
        ),
        **percentiles_s("awareness", [first_incident[i] - emitted[i] for i in aware], _SHARES),
        **percentiles_s(
            "incident_indexing",
            [in_incident[i] * 1000 - first_incident[i] for i in aware if i in in_incident],
            _SHARES,
        ),
    }


_SHARES = (0.5, 0.99)


def _poll_incidents(s: Settings, found: dict[str, float], stop: threading.Event) -> None:
    """Until ``stop``: each alert id listed by an incident document, with the wall time it was
    first found searchable (the documents are rewritten as incidents grow)."""
    es = es_client(s)
    while not stop.is_set():
        try:
            res = es.search(index=s.index_incidents_prefix + "*", size=10_000, source_includes=["alert_ids"],
                            query={"match_all": {}}, ignore_unavailable=True)  # fmt: skip
            t = time.time()
            for hit in res["hits"]["hits"]:
                for alert_id in hit["_source"].get("alert_ids") or ():
                    found.setdefault(alert_id, t)
        except Exception:  # Elasticsearch busy or the index not there yet: poll again
            pass
        time.sleep(0.1)
    es.close()


def percentiles_s(
    name: str, values_ms: list[float], shares: tuple[float, ...] = (0.5, 0.95, 0.99)
) -> dict[str, float | None]:
    """``<name>_p50_s`` ... and ``<name>_max_s`` of millisecond values, in seconds (nearest rank
    below, as the alert figures are taken); None when there are no values."""
    ordered = sorted(values_ms)
    keys = [*(f"{name}_p{round(p * 100)}_s" for p in shares), f"{name}_max_s"]
    if not ordered:
        return dict.fromkeys(keys, None)
    picks = [ordered[min(len(ordered) - 1, int(p * len(ordered)))] for p in shares] + [ordered[-1]]
    return {key: round(v / 1000, 2) for key, v in zip(keys, picks, strict=True)}


_TRICKLE_S = 270
# Loaded runs are shorter: at 80 % of ~60k events/s, 3 minutes are already ~9M events.
_LOADED_S = 180
_BACKLOG_S = 1200
# The simulator's traffic follows the time of day (1.5x its mean rate at 15:00 UTC, 0.5x at
# 03:00), and so did the backlog: 2.7M to 4.5M events for the same 20 minutes, with the job's
# rate moving along (its per-second work per key is spread over fewer events at night). The
# backlog is always the 20 minutes around 21:00 UTC, where the rate is the day's mean.


def _without_anomaly(settings: Settings) -> Settings:
    """The same settings with a site detector config that switches the anomaly detectors off."""
    from detectors.registry import ANOMALY_IDS

    path = Path(settings.data_dir) / "bench-no-anomaly.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("detectors:\n" + "".join(f"  {i}:\n    enabled: false\n" for i in ANOMALY_IDS))
    return settings.with_overrides(detector_config_file=str(path))


def _knob(name: str) -> float | None:
    """``SSA_BENCH_STREAMS_<name>``, a positive number, or None when unset (a shorter variant for
    comparing settings back to back: ``RATE`` gives the sustained rate the 50 and 80 % runs are
    taken of and skips the backlog, ceiling and sustained runs; ``TRICKLE_S`` and ``LOADED_S``
    set the latency runs' seconds of input; ``BACKLOG_S`` the backlog's seconds of event time, and
    ``SUSTAINED_ONLY`` (1) stops after the ceiling and the sustained run with every stage)."""
    key = f"SSA_BENCH_STREAMS_{name}"
    raw = os.environ.get(key)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError(f"{key} must be a positive number, got {raw!r}")
    return value


def _latency_runs(base: Settings, sustained: float | None) -> dict[str, Any]:
    trickle_s, loaded_s = _knob("TRICKLE_S") or _TRICKLE_S, _knob("LOADED_S") or _LOADED_S
    out: dict[str, Any] = {}
    out["latency_at_trickle_400_events_per_s"] = _latency(base, target_rate=400, seconds=trickle_s)
    for share in (50, 80):
        key = f"latency_at_{share}pct_of_sustained"
        # Only meaningful against this run's own sustained rate; without one there is no load to ask.
        out[key] = (
            _latency(base, target_rate=sustained * share / 100, seconds=loaded_s)
            if sustained
            else {"skipped": "no sustained rate measured in this run"}
        )
    return out


def run(ctx: Any) -> dict[str, Any]:
    if not ctx.stack_up:
        return {"skipped": "needs the local stack"}
    base: Settings = ctx.settings
    given_rate = _knob("RATE")
    if given_rate is not None:
        return {"sustained_events_per_s_given": given_rate, **_latency_runs(base, given_rate)}
    run_id = "benchstream" + uuid.uuid4().hex[:6]
    s = demo_settings(base, run_id).with_overrides(index_alerts_prefix=f"ssa-bench-{run_id}-alerts-",
                                                   index_metrics_prefix=f"ssa-bench-{run_id}-metrics-")  # fmt: skip
    backlog_s = _knob("BACKLOG_S") or _BACKLOG_S
    start_ms = mean_rate_slice_start_ms(int(time.time() * 1000), int(backlog_s * 1000))
    sim = simulate(SimConfig(seed=21, tenants=16, duration_s=backlog_s, start_ms=start_ms, events_per_s=2500))
    t0 = time.perf_counter()
    events = produce_simulation(s, sim, say=lambda _m: None)
    produce_rate = events / (time.perf_counter() - t0)
    out: dict[str, Any] = {
        "backlog_event_time_start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ms / 1000)),
        "backlog_produce_events_per_s": round(produce_rate),
    }
    out["ceiling_plain_consumer_events_per_s"] = round(_plain_consumer_rate(s, events))
    out |= _sustained(s, events)
    if out.get("sustained_events_per_s"):
        out["sustained_to_ceiling_ratio"] = round(
            out["sustained_events_per_s"] / out["ceiling_plain_consumer_events_per_s"], 3
        )
    if _knob("SUSTAINED_ONLY"):
        return out
    # The same backlog without the awareness stage (``--no-awareness``: the detectors only), without
    # the anomaly models, the awareness stage off again and every stage on again: A B C B A. Runs of
    # one backlog drift (an alternating run at 33ca3d6: stage off, on, off, on gave 29.4k, 29.4k,
    # 33.0k, 31.0k events/s, the second pair faster both ways), so a fixed order biases a ratio; in
    # this order each ratio compares means of runs at the same mean position.
    out["without_awareness_stage"] = _sustained(s, events, awareness=False)
    out["without_anomaly_models"] = _sustained(_without_anomaly(s), events)
    out["without_awareness_stage_again"] = _sustained(s, events, awareness=False)
    out["with_every_stage_again"] = _sustained(s, events)
    on = _mean_rate(out, out["with_every_stage_again"])
    plain = _mean_rate(out["without_anomaly_models"])
    bare = _mean_rate(out["without_awareness_stage"], out["without_awareness_stage_again"])
    if on and plain:
        out["anomaly_on_to_off_ratio"] = round(on / plain, 3)
    if on and bare:  # the target is >= 0.9
        out["awareness_on_to_off_ratio"] = round(on / bare, 3)
    return out | _latency_runs(base, out.get("sustained_events_per_s"))


def _mean_rate(*runs: dict[str, Any]) -> float | None:
    """The mean sustained rate of runs, None unless every one measured it."""
    rates = [float(r.get("sustained_events_per_s") or 0) for r in runs]
    return sum(rates) / len(rates) if rates and all(rates) else None
