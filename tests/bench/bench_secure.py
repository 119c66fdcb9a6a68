"""Secure mode's cost (issues 22 and 23): producing telemetry, the detection job's sustained rate
and the parse stage's rate, plain beside secure, over the same input, in one run.

Each mode has a broker of its own (temporary data directory, free ports, stopped at the end), both
up for the whole run so that each figure is taken plain then secure back to back (a shared
machine's load drifts; adjacent runs see nearly the same). Plain: the default PLAINTEXT listener,
shared topics. Secure: ``ssa up --secure``'s SASL_SSL with SCRAM and the StandardAuthorizer,
tenants provisioned as ``ssa tenants provision`` does (raw topics of ``RAW``), the job as
``ssa-job`` and the stage as ``ssa-parse``, each with its own settings file.

Input. A simulated cloud of ``TENANTS`` tenants, stamped in the last day (``mean_rate_slice_start_ms``:
the broker keeps records 168 h by their timestamp and deletes older ones at its first retention
check, ~30 s after it starts: the old version of this bench used the simulator's default start,
2025-01-06, and its backlog vanished while its jobs read it). Only the events a secure feeder can write are used,
in BOTH modes: flows of no tenant have no feeder (the provider has no flow topic), so plain mode
leaves them out too (``events_left_out``).

- produce: plain, one producer writes all events in time order to the shared topics; secure, each
  feeder (each tenant's, the provider's for the hypervisors' process and auth events) writes its
  own events in time order to its ``ssa.<owner>.telemetry.*``, one after the other. Events over the
  wall time of the sends and final flushes (``acks=all``), and per CPU second of this process (the
  producer: encoding, librdkafka, TLS) plus the broker's.
- job: the bounded job (``python -m streams --bounded --no-indexer --no-awareness``) over the whole
  backlog, a consumer group and alerts topic of its own per run. Its rate is the slope of its group's committed
  offsets while they move (JVM start-up and the final commit left out, as ``bench_streams`` takes
  ``sustained``), per wall second and per CPU second of the job's process tree (its JVM included,
  sampled from ``/proc``) and of the broker, over the stretch of the backlog both modes' runs
  covered (interpolated between checkpoints: the rate moves along a run). Bounded runs used to
  restart now and then (FLINK-39728, the watermark alignment pausing a finished split); they read
  unaligned and never restart now (``streams.sql._alignment``, ``streams.runner.JobFailed``). A
  run is still rated before any restart its Flink log shows (a cluster of the user's own may
  restart it), and run again, up to ``JOB_ATTEMPTS`` times, when fewer than ``MIN_SAMPLES``
  moving samples came before it. The alerts of the two modes are compared by id
  (the same events must give the same alerts; records may repeat after a restart), with the late
  events and the tenant mismatches sent to the DLQ.
- parse: per format of ``RAW``, one raw backlog per tenant (sshd lines from its VMs, VPC flow
  records of its VMs' addresses), the same records in both modes: plain, each tenant's records
  keyed by its source on the shared ``ssa.raw.<format>``; secure, written by the tenant's feeder to
  its ``ssa.<tenant>.raw.<format>``. Then ``ssa parse`` (``bench_parse_stage._stage_run``: the
  committed-offset slope, records per CPU second of the stage process), and the events it committed
  compared by id digest between modes.

Reports figures and secure/plain ratios, asserts nothing. ``python -m tests.bench secure --no-stack``
(it starts its own brokers) or ``python -m tests.bench.bench_secure --scale 0.2`` for a short try.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec

from infra import secure
from infra.bootstrap import ensure_topics
from infra.clients import kafka_config
from infra.services import KafkaService
from infra.settings import PROJECT_ROOT, Settings, load_settings
from ingest.producer import TelemetryProducer
from ingest.raw import raw_topic
from ingest.schema import Event
from streams.kafka_target import kafka_target
from tests.bench.bench_parse_stage import _cpu_seconds, _produce, _stage_run, moving_samples, split_lines
from tests.bench.procfs import tree_ticks

SEED, TENANTS = 5, 3
BACKLOG_S, EVENTS_PER_S = 3600, 250  # ~1M events: ~40-60 s of the job's work at the rates seen here
RAW = {"syslog": 360_000, "vpcflow": 540_000}  # raw records per format, all tenants together: ~10-20 s each
SAMPLE_S = 1.0  # the job commits its offsets at each checkpoint (every 5 s)
JOB_LIMIT_S = 900
JOB_ATTEMPTS, MIN_SAMPLES = 3, 4  # runs per mode at most; moving samples before any restart


@dataclass
class _Mode:
    name: str
    tmp: Path
    svc: KafkaService
    base: Settings  # the broker's settings (plain: every client's)
    reader: Settings  # reads any topic and group (secure: the admin)
    job: Settings
    parse: Settings
    tenants: list[str]

    @property
    def secure(self) -> bool:
        return self.name == "secure"

    @property
    def broker_pid(self) -> int:
        pid = self.svc.proc.pid()
        if pid is None:
            raise RuntimeError(f"the {self.name} broker is not running: see {self.svc.proc.log_file}")
        return pid

    def feeder(self, owner: str) -> Settings:
        from tests.integration.test_kafka_secure import as_user

        return as_user(self.base, secure.feeder_user(owner)) if self.secure else self.base

    def telemetry(self) -> list[str]:
        if not self.secure:
            return list(self.base.telemetry_topics.values())
        owners = [secure.PROVIDER, *self.tenants]
        return [topic for o in owners for topic in secure.tenant_telemetry_topics(o).values()]

    def raw_topic(self, tenant: str, fmt: str) -> str:
        if self.secure:
            return secure.tenant_raw_topics(tenant, [fmt])[0]
        return raw_topic(self.base.topic_raw_prefix, fmt)


def _start(name: str, tmp: Path, registry: Any) -> _Mode:
    from tests.integration.test_kafka_secure import _free_port, as_user

    registry.dump(tmp / "tenants.yaml")
    # Both modes' jobs hash alert ids with the same key (the bench's, not a secret), so their
    # alerts compare by id; a provisioned secure job keeps the key its settings name.
    (tmp / "alert-id.key").write_text("ssa bench alert-id key\n")
    files = {
        "alert_id_key_file": str(tmp / "alert-id.key"),
        "tenants_file": str(tmp / "tenants.yaml"),
        "snooze_file": str(tmp / "snoozes.yaml"),
        "checkpoint_dir": str(tmp / "checkpoints"),
        "detector_config_file": "",
    }
    port, controller = _free_port(), _free_port()
    base = load_settings({}).with_overrides(
        data_dir=str(tmp), kafka_port=port, kafka_controller_port=controller, kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_local_security="sasl_ssl" if name == "secure" else "plaintext", **files,
    )  # fmt: skip
    tenants = list(registry.tenants)
    svc = KafkaService(base)
    svc.launch()
    try:
        svc.proc.wait_until(svc.healthy, 240, "healthy")
        if name == "secure":
            reader = secure.admin_settings(base)
            ensure_topics(reader)  # what `ssa up --secure` creates
            secure.provision(base, tenants, say=lambda _line: None, raw_formats=list(RAW))
            job = as_user(base, secure.JOB_USER).with_overrides(**files)
            parse = as_user(base, secure.PARSE_USER).with_overrides(**files)
        else:
            reader = job = parse = base
            ensure_topics(base, [*base.all_topics, *(raw_topic(base.topic_raw_prefix, f) for f in RAW)])
    except BaseException:
        svc.proc.stop()
        raise
    return _Mode(name, tmp, svc, base, reader, job, parse, tenants)


def _events(scale: float) -> tuple[list[tuple[str, Event]], int, Any]:
    """(owner, event) in time order for every event a secure feeder writes, the number left out
    (flows of no tenant), and the registry."""
    from ingest.simulator import SimConfig, mean_rate_slice_start_ms, simulate
    from tests.integration.test_tenant_topics import _route

    seconds = BACKLOG_S * scale
    start = mean_rate_slice_start_ms(int(time.time() * 1000) - 600_000, int(seconds * 1000))
    sim = simulate(SimConfig(seed=SEED, tenants=TENANTS, duration_s=seconds, events_per_s=EVENTS_PER_S,
                             start_ms=start))  # fmt: skip
    routed = [(_route(e, sim.registry), e) for e in sorted(sim.events(), key=lambda e: (e.ts, e.id))]
    kept = [(owner, e) for owner, e in routed if owner is not None]
    return kept, len(routed) - len(kept), sim.registry


def _send(settings: Settings, events: list[Event]) -> None:
    producer = TelemetryProducer(kafka_target(settings), "confluent", flush_timeout_s=120)
    for event in events:
        producer.send_event(event)
    producer.close()  # raises DeliveryFailed if any record was refused
    if producer.counters.events != len(events) or producer.counters.failed:
        raise RuntimeError(
            f"{producer.counters.events} of {len(events)} events sent, {producer.counters.failed} failed"
        )


def _produce_events(mode: _Mode, owned: list[tuple[str, Event]]) -> dict[str, Any]:
    feeds: dict[str, list[Event]] = defaultdict(list)
    for owner, event in owned:
        feeds[owner if mode.secure else "all"].append(event)
    broker0, cpu0, t0 = _cpu_seconds(mode.broker_pid), time.process_time(), time.perf_counter()
    for owner, feed in feeds.items():
        _send(mode.feeder(owner), feed)
    wall = time.perf_counter() - t0
    client, broker = time.process_time() - cpu0, _cpu_seconds(mode.broker_pid) - broker0
    n = len(owned)
    return {
        "events": n,
        "producers": len(feeds),
        "wall_s": round(wall, 2),
        "events_per_s": round(n / wall),
        "client_cpu_s": round(client, 2),
        "broker_cpu_s": round(broker, 2),
        "events_per_cpu_s": round(n / (client + broker)),  # producer and broker together
    }


Sample = tuple[float, int, float, float]  # wall clock (epoch s), committed offsets, job CPU s, broker CPU s
_RESTART = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*switched from state RUNNING to RESTARTING", re.M
)
_CAUSE = re.compile(r"^Caused by: (\S+(?:Exception|Error)[^\n]{0,160})", re.M)


@dataclass
class _JobRun:
    figures: dict[str, Any]
    samples: list[Sample]  # while the offsets moved, before the first restart
    alerts: dict[str, str]  # alert id -> detector


def _job(mode: _Mode, events: int, attempt: int) -> _JobRun:
    """One bounded run of the job over the backlog, with a group and outputs of its own (a bounded
    run starts at its group's committed offsets)."""
    import confluent_kafka

    from detectors.alert import decode_alert
    from streams.demo import records_in_topic

    names = {"detect_group_id": f"bench-detect-{attempt}", "topic_alerts": f"ssa.bench.{attempt}.alerts"}
    job = mode.job.with_overrides(**names)
    ensure_topics(mode.reader, [job.topic_alerts])
    if mode.secure:  # the job's group and alerts are LITERAL ACLs: provisioned for each run
        secure.provision(
            mode.base.with_overrides(**names), mode.tenants, say=lambda _line: None, raw_formats=list(RAW)
        )
    dlq_before = _dlq_counts(mode.reader, job.topic_dlq)  # the DLQ is shared by the runs
    flink_logs, log = mode.tmp / f"flink-logs-{attempt}", mode.tmp / f"job-{attempt}.log"
    probe = confluent_kafka.Consumer(
        {
            **kafka_config(mode.reader, "confluent"),
            "group.id": job.detect_group_id,
            "enable.auto.commit": False,
        }
    )
    parts = [
        confluent_kafka.TopicPartition(t, p) for t in mode.telemetry() for p in range(job.kafka_partitions)
    ]
    tick = os.sysconf("SC_CLK_TCK")
    ticks: dict[int, int] = {}
    samples: list[Sample] = []
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "--bounded", "--no-indexer", "--no-awareness"], cwd=PROJECT_ROOT,
            env={**os.environ, **job.to_env(), "FLINK_LOG_DIR": str(flink_logs)}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            while proc.poll() is None:
                if time.perf_counter() - t0 > JOB_LIMIT_S:
                    raise RuntimeError(f"{mode.name} job still running after {JOB_LIMIT_S} s: see {log}")
                ticks.update(tree_ticks(proc.pid))
                try:
                    done = sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10))
                except confluent_kafka.KafkaException:  # the group's coordinator is not ready yet: later
                    done = None
                if done is not None:
                    samples.append(
                        (time.time(), done, sum(ticks.values()) / tick, _cpu_seconds(mode.broker_pid))
                    )
                time.sleep(SAMPLE_S)
        finally:
            probe.close()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{mode.name} job exited {proc.returncode}; its log ends:\n{tail}")
    flink = "".join(f.read_text(errors="replace") for f in sorted(flink_logs.glob("*.log")))
    restarts = [
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() for m in _RESTART.finditer(flink)
    ]
    # A restart re-reads from the last checkpoint: the rate is taken before the first one.
    before = [x for x in samples if not restarts or x[0] < min(restarts)]
    moving = moving_samples(before, events)
    records = [decode_alert(v) for _, v in records_in_topic(mode.reader, job.topic_alerts)]
    dlq = _dlq_counts(mode.reader, job.topic_dlq) - dlq_before
    figures = {
        "attempt": attempt,
        "restarts": len(restarts),
        "restart_causes": sorted(set(_CAUSE.findall(flink)))[:4],
        "first_restart_s_after_start": round(min(restarts) - samples[0][0], 1)
        if restarts and samples
        else None,
        "offset_samples_while_moving_before_any_restart": len(moving),
        "own_window_events": [moving[0][1], moving[-1][1]] if moving else None,
        **_rates(moving),
        "whole_run_wall_s_incl_start": round(wall, 1),
        "whole_run_cpu_s_incl_start": round(sum(ticks.values()) / tick, 1),
        "alert_records": len(records),  # a restart re-emits the alerts since its checkpoint (same ids)
        "alert_ids": len({a.alert_id for a in records}),
        "late_events_to_dlq": dlq["late"],
        "tenant_mismatches_to_dlq": dlq["tenant mismatch"],
        "other_dlq_records": dlq["other"],
        "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    return _JobRun(figures, moving, {a.alert_id: a.detector for a in records})


def _dlq_counts(reader: Settings, topic: str) -> Counter[str]:
    """The DLQ's records so far: late events, tenant mismatches, others."""
    from streams.demo import records_in_topic

    out: Counter[str] = Counter(late=0, other=0, **{"tenant mismatch": 0})
    for _, value in records_in_topic(reader, topic):
        record = msgspec.json.decode(value)
        reason = str(record.get("reason", ""))
        out[
            "late"
            if record.get("source") == "late"
            else "tenant mismatch"
            if reason.startswith("tenant mismatch")
            else "other"
        ] += 1
    return out


def _at(moving: list[Sample], committed: int) -> Sample | None:
    """The sample at ``committed`` events, interpolated between the two moving samples around it
    (the job's rate between two checkpoints taken as even); None outside them."""
    for x, y in itertools.pairwise(moving):
        if x[1] <= committed <= y[1]:
            f = (committed - x[1]) / (y[1] - x[1])
            return (x[0] + f * (y[0] - x[0]), committed, x[2] + f * (y[2] - x[2]), x[3] + f * (y[3] - x[3]))
    return None


def _rates(moving: list[Sample], lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
    """Events per wall second, per CPU second of the job's process tree and of the broker, from
    ``lo`` to ``hi`` committed events (default: the first and last moving sample)."""
    first = _at(moving, lo) if lo is not None else (moving[0] if moving else None)
    last = _at(moving, hi) if hi is not None else (moving[-1] if moving else None)
    if first is None or last is None or last[1] <= first[1] or last[0] <= first[0]:
        return {"sustained_events_per_s": None, "events_per_cpu_s": None, "events_per_broker_cpu_s": None,
                "window_s": None}  # fmt: skip
    (w0, c0, j0, b0), (w1, c1, j1, b1) = first, last
    n = c1 - c0
    return {
        "sustained_events_per_s": round(n / (w1 - w0)),
        "events_per_cpu_s": round(n / (j1 - j0)) if j1 > j0 else None,  # the job's process tree
        "events_per_broker_cpu_s": round(n / (b1 - b0)) if b1 > b0 else None,
        "cores_used": round((j1 - j0) / (w1 - w0), 2),
        "window_s": round(w1 - w0, 1),
        "window_events": n,
    }


def _job_runs(modes: dict[str, _Mode], events: int, say: Any) -> dict[str, Any]:
    """Each mode's job until a run has ``MIN_SAMPLES`` moving samples before any restart (at most
    ``JOB_ATTEMPTS``; else the run with the most), then both rated over the stretch of the backlog
    both covered: the rate moves along a run (the JIT compiles the first half minute; splits finish
    at the end), so rating plain's first 60 % against secure's whole run would compare different
    things."""
    out: dict[str, Any] = {"attempts": {}}
    runs: dict[str, _JobRun] = {}
    for name, mode in modes.items():
        tries: list[_JobRun] = []
        for attempt in range(1, JOB_ATTEMPTS + 1):
            tries.append(_job(mode, events, attempt))
            say(f"[secure] job {name} attempt {attempt}: {json.dumps(tries[-1].figures)}")
            if len(tries[-1].samples) >= MIN_SAMPLES:
                break
        runs[name] = max(tries, key=lambda r: len(r.samples))  # the first of the best
        out["attempts"][name] = [r.figures for r in tries]
    # The stretch of the backlog both runs covered while rated (a few hundred thousand events).
    lo = max((r.samples[0][1] for r in runs.values() if r.samples), default=0)
    hi = min((r.samples[-1][1] for r in runs.values() if r.samples), default=0)
    out["common_window_events"] = [lo, hi]
    for name, chosen in runs.items():
        out[name] = {
            "attempt": chosen.figures["attempt"],
            "restarts": chosen.figures["restarts"],
            **_rates(chosen.samples, lo, hi),
        }
    plain, sec = runs["plain"].alerts, runs["secure"].alerts
    only_plain = Counter(d for i, d in plain.items() if i not in sec)
    only_secure = Counter(d for i, d in sec.items() if i not in plain)
    out |= {"alert_ids_equal": plain.keys() == sec.keys(), "alert_ids_common": len(plain.keys() & sec.keys()),
            "alert_ids_only_plain_by_detector": dict(only_plain),
            "alert_ids_only_secure_by_detector": dict(only_secure)}  # fmt: skip
    return out


def _raw_feeds(
    registry: Any, fmt: str, total: int, rnd: random.Random
) -> dict[str, tuple[bytes, list[bytes]]]:
    """Per tenant: the key its shipper sends with (the source) and its raw records, about its own
    VMs only (so secure mode's tenant check passes them all, as plain mode does), stamped over the
    half hour before now (within the broker's retention)."""
    end = time.time() - 60
    out: dict[str, tuple[bytes, list[bytes]]] = {}
    for t, tenant in registry.tenants.items():
        vms = [registry.vms[v] for v in tenant.vms]
        n = total // len(registry.tenants)
        lines = []
        for i in range(n):
            vm, at = vms[i % len(vms)], end - 1800 + 1800 * i / n
            peer = (
                f"{rnd.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rnd.randrange(1, 255)}"  # no tenant's
            )
            if fmt == "syslog":
                stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
                msg = rnd.choice((
                    f"Failed password for root from {peer} port {rnd.randrange(1024, 65535)} ssh2",
                    f"Failed password for invalid user admin{i % 50} from {peer} port {rnd.randrange(1024, 65535)} ssh2",
                    f"Accepted publickey for deploy from {peer} port 50022 ssh2: RSA SHA256:abc",
                ))  # fmt: skip
                lines.append(f"<38>1 {stamp} {vm.id} sshd {20000 + i // 3} - - {msg}")
            elif fmt == "vpcflow":
                src, dst = (vm.ip, peer) if i % 2 else (peer, vm.ip)
                lines.append(
                    f"2 123456789012 eni-{t}-{i % len(vms)} {src} {dst} {rnd.randrange(1024, 65535)} "
                    f"{rnd.choice((22, 53, 80, 443))} 6 {rnd.randrange(1, 500)} {rnd.randrange(40, 10**6)} "
                    f"{int(at) - 60} {int(at)} {rnd.choice(('ACCEPT', 'ACCEPT', 'REJECT'))} OK"
                )
            else:
                raise ValueError(f"no raw generator for {fmt}")
        key = f"{t}-relay:/var/log/{fmt}".encode()
        out[t] = (key, split_lines(("\n".join(lines) + "\n").encode()))
    return out


def _parse(mode: _Mode, fmt: str, feeds: dict[str, tuple[bytes, list[bytes]]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    for tenant, (key, records) in feeds.items():
        _produce(mode.feeder(tenant), mode.raw_topic(tenant, fmt), key, records)
    total = sum(len(records) for _, records in feeds.values())
    figures: dict[str, Any] = {"raw_records": total,
                               "backlog_produce_records_per_s": round(total / (time.perf_counter() - t0))}  # fmt: skip
    topics = sorted({mode.raw_topic(t, fmt) for t in feeds})
    figures |= _stage_run(mode.parse, mode.parse.parse_group_id, fmt, total, topics=topics,
                          outputs=mode.telemetry(), reader=mode.reader, broker_pid=mode.broker_pid)  # fmt: skip
    return figures


def _ratio(secure_figure: Any, plain_figure: Any) -> float | None:
    return round(secure_figure / plain_figure, 3) if secure_figure and plain_figure else None


def run(ctx: Any, scale: float = 1.0, say: Any = print) -> dict[str, Any]:
    owned, left_out, registry = _events(scale)
    out: dict[str, Any] = {
        "scale": scale,
        "tenants": TENANTS,
        "events": len(owned),
        "events_left_out": left_out,  # flows of no tenant: no secure feeder writes them
        "event_time_span_utc": [
            datetime.fromtimestamp(owned[i][1].ts / 1000, UTC).isoformat() for i in (0, -1)
        ],
        "load_avg_at_start": os.getloadavg(),
    }
    modes: dict[str, _Mode] = {}
    with (
        tempfile.TemporaryDirectory(prefix="ssa-bench-plain-") as p,
        tempfile.TemporaryDirectory(prefix="ssa-bench-secure-") as s,
    ):
        try:
            for name, tmp in (("plain", p), ("secure", s)):
                modes[name] = _start(name, Path(tmp), registry)
                say(f"[secure] {name} broker up on {modes[name].base.kafka_bootstrap}")
            out["produce"] = {name: _produce_events(m, owned) for name, m in modes.items()}
            say(f"[secure] produce: {json.dumps(out['produce'])}")
            del owned  # the backlog is in Kafka; the job's processes need the memory more
            out["job"] = _job_runs(modes, out["events"], say)
            rnd = random.Random(7)
            out["parse"] = {}
            for fmt, total in RAW.items():
                feeds = _raw_feeds(registry, fmt, max(int(total * scale), 300), rnd)
                per = {name: _parse(m, fmt, feeds) for name, m in modes.items()}
                per["event_ids_equal"] = (
                    per["plain"]["stage_event_ids_sha256"] == per["secure"]["stage_event_ids_sha256"]
                )
                out["parse"][fmt] = per
                say(f"[secure] parse {fmt}: {json.dumps(per)}")
        finally:
            for m in modes.values():
                m.svc.proc.stop()
    out["secure_to_plain"] = {
        "produce_events_per_s": _ratio(out["produce"]["secure"]["events_per_s"], out["produce"]["plain"]["events_per_s"]),
        "produce_events_per_cpu_s": _ratio(out["produce"]["secure"]["events_per_cpu_s"], out["produce"]["plain"]["events_per_cpu_s"]),
        **{f"job_{k}": _ratio(out["job"]["secure"][k], out["job"]["plain"][k])
           for k in ("sustained_events_per_s", "events_per_cpu_s", "events_per_broker_cpu_s")},
        **{f"parse_{fmt}_{k}": _ratio(per["secure"][k], per["plain"][k])
           for fmt, per in out["parse"].items()
           for k in ("stage_records_per_s", "stage_records_per_cpu_s", "broker_records_per_cpu_s")},
    }  # fmt: skip
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_secure")
    parser.add_argument("--scale", type=float, default=1.0, help="input size factor (default 1)")
    args = parser.parse_args()
    print(json.dumps(run(SimpleNamespace(), args.scale), indent=2, default=str))
