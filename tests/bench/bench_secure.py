"""Secure mode's cost (issue 22): producing telemetry and the detection job's rate, plain beside
secure, on the same events, one after the other in one run.

Each mode gets a broker of its own (temporary data directory, free ports, stopped at the end):
plain is the default PLAINTEXT listener; secure is ``ssa up --secure``'s SASL_SSL with SCRAM and
the StandardAuthorizer, tenants provisioned as ``ssa tenants provision`` does. The events are a
simulated cloud of three tenants. Plain: one producer writes them to the shared telemetry topics.
Secure: each feeder writes its own (each tenant's events as its feeder to ``ssa.<t>.telemetry.*``,
the hypervisors' process and auth events as the provider's feeder), and the job reads them all by
pattern as ``ssa-job``, taking the tenant from the topic.

Produce rate: events over the wall time of the producers' sends and final flush (``acks=all``).
Job rate: the bounded job (``python -m streams --bounded --no-indexer --no-awareness``) runs twice
from the earliest offsets, first over the first ``FIRST`` events, then, after the rest are written,
over all of them; the rate is the extra events over the extra wall time, so the JVM's start and the
job's set-up, the same in both runs, cancel out. On a loaded machine the wall-time difference
can drown in the noise of start-up (given as None then); the CPU seconds of the job's processes
(the job's process tree, its JVM included, sampled from ``/proc``) are differenced the same way and are the steadier
figure. Reports figures and ratios, asserts nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from infra import secure
from infra.services import KafkaService
from infra.settings import PROJECT_ROOT, Settings, load_settings
from ingest.producer import TelemetryProducer
from ingest.schema import Event
from streams.kafka_target import kafka_target

SEED, TENANTS = 5, 3
FIRST, TOTAL = 40_000, 240_000


def _events() -> tuple[list[Event], Any]:
    from ingest.simulator import SimConfig, simulate

    sim = simulate(SimConfig(seed=SEED, tenants=TENANTS, duration_s=TOTAL // 60, events_per_s=60))
    return sorted(sim.events(), key=lambda e: (e.ts, e.id))[:TOTAL], sim.registry


def _send(settings: Settings, events: list[Event]) -> None:
    producer = TelemetryProducer(kafka_target(settings), "confluent", flush_timeout_s=120)
    for event in events:
        producer.send_event(event)
    producer.close()  # raises DeliveryFailed if any record was refused


def _job_cost(settings: Settings, run: str) -> tuple[float, float, int]:
    """The bounded job's wall seconds, CPU seconds (its process tree, the JVM included, sampled
    from ``/proc`` while it runs: the JVM is not a child the job waits for) and the alert
    records it wrote (a run that read nothing would look fast)."""
    from streams.demo import records_in_topic

    job = settings.with_overrides(
        checkpoint_dir=str(Path(settings.data_dir) / f"checkpoints-{run}"),
        detect_group_id=f"bench-{run}",
        topic_alerts=f"ssa.bench.{run}.alerts",
    )
    log = Path(settings.data_dir) / f"job-{run}.log"
    ticks: dict[int, int] = {}
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "--bounded", "--no-indexer", "--no-awareness"],
            cwd=PROJECT_ROOT, env={**os.environ, **job.to_env()}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        while proc.poll() is None:
            if time.perf_counter() - t0 > 900:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError(f"bounded job {run} still running after 900 s: see {log}")
            ticks.update(_tree_ticks(proc.pid))
            time.sleep(0.5)
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"bounded job {run} exited {proc.returncode}; its log ends:\n{tail}")
    admin = secure.admin_settings(settings) if settings.kafka_sasl_username else settings
    alerts = sum(1 for _ in records_in_topic(admin, job.topic_alerts))
    return wall, sum(ticks.values()) / os.sysconf("SC_CLK_TCK"), alerts


def _tree_ticks(root: int) -> dict[int, int]:
    """utime + stime (clock ticks) of ``root`` and every process under it, by pid."""
    parent: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = int(fields[11]) + int(fields[12])
    out = {}
    for pid in cpu:
        walk = pid
        while walk > 1 and walk != root:
            walk = parent.get(walk, 0)
        if walk == root:
            out[pid] = cpu[pid]
    return out


def _per_s(events: int, seconds: float) -> int | None:
    return round(events / seconds) if seconds > 0 else None  # None: the difference drowned in noise


def _mode(mode: str, events: list[Event], registry: Any, tmp: str) -> dict[str, Any]:
    from infra.bootstrap import ensure_topics
    from tests.integration.test_kafka_secure import _free_port, as_user
    from tests.integration.test_tenant_topics import _route

    port, controller = _free_port(), _free_port()
    registry.dump(Path(tmp) / "tenants.yaml")
    base = load_settings({}).with_overrides(
        data_dir=tmp, kafka_port=port, kafka_controller_port=controller, kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_local_security="sasl_ssl" if mode == "secure" else "plaintext",
        tenants_file=str(Path(tmp) / "tenants.yaml"), snooze_file=str(Path(tmp) / "snoozes.yaml"),
        detector_config_file="",
    )  # fmt: skip
    svc = KafkaService(base)
    svc.launch()
    try:
        svc.proc.wait_until(svc.healthy, 240, "healthy")
        if mode == "secure":
            ensure_topics(secure.admin_settings(base))
            for run in ("short", "long"):  # the job's group and outputs are LITERAL ACLs: one set per run
                over = base.with_overrides(
                    detect_group_id=f"bench-{run}", topic_alerts=f"ssa.bench.{run}.alerts"
                )
                ensure_topics(secure.admin_settings(over))
                secure.provision(over, list(registry.tenants), say=lambda _line: None)
            job = as_user(base, secure.JOB_USER).with_overrides(
                tenants_file=base.tenants_file, snooze_file=base.snooze_file, detector_config_file=""
            )
        else:
            ensure_topics(base)
            job = base

        def produce(batch: list[Event]) -> tuple[float, int]:
            feeds: dict[str, list[Event]] = defaultdict(list)
            for event in batch:
                owner = _route(event, registry) if mode == "secure" else "all"
                if owner is not None:
                    feeds[owner].append(event)
            t0 = time.perf_counter()
            for owner, feed in feeds.items():
                _send(as_user(base, secure.feeder_user(owner)) if mode == "secure" else base, feed)
            return time.perf_counter() - t0, sum(len(feed) for feed in feeds.values())

        first_s, first_n = produce(events[:FIRST])
        short_s, short_cpu, short_alerts = _job_cost(job, "short")
        rest_s, rest_n = produce(events[FIRST:])
        long_s, long_cpu, long_alerts = _job_cost(job, "long")
    finally:
        svc.proc.stop()
    return {
        "events_sent": first_n + rest_n,  # secure: flows of no tenant have no feeder
        "produce_events_per_s": round((first_n + rest_n) / (first_s + rest_s)),
        "job_alert_records": [short_alerts, long_alerts],
        "job_short_wall_s": round(short_s, 1),
        "job_long_wall_s": round(long_s, 1),
        "job_short_cpu_s": round(short_cpu, 1),
        "job_long_cpu_s": round(long_cpu, 1),
        "job_events_per_s": _per_s(rest_n, long_s - short_s),
        "job_events_per_cpu_s": _per_s(rest_n, long_cpu - short_cpu),
    }


def run(ctx: Any) -> dict[str, Any]:
    events, registry = _events()
    out: dict[str, Any] = {"events": len(events), "load_avg_at_start": os.getloadavg()}
    for mode in ("plain", "secure"):
        with tempfile.TemporaryDirectory(prefix=f"ssa-bench-{mode}-") as tmp:
            out[mode] = _mode(mode, events, registry, tmp)
    for figure in ("produce_events_per_s", "job_events_per_s", "job_events_per_cpu_s"):
        secure_figure, plain_figure = out["secure"][figure], out["plain"][figure]
        if secure_figure and plain_figure:
            out[f"secure_to_plain_{figure}"] = round(secure_figure / plain_figure, 3)
    return out
