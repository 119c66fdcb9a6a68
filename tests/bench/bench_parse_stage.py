"""Parse-stage benchmark: ``ssa parse`` (``streams.parse_stage``) over a backlog of raw records per
format on the raw topics, beside the edge parser (``ssa ingest``'s) on the same input, in one run.

Per format, one after the other, on the run's own topics (``ssa.run.<run>.*``, removed with the
bench's leftovers) and one consumer group (``bench-parse-<run>``, so each new stage process starts
where the last one committed and reads only the new format's topic):

1. the input is made by ``tests.bench.bench_ingest``'s generators and cut into raw records as a
   shipper would send them (``ingest.raw``): one line per record (a Zeek or CSV file's header lines
   first, so they precede their rows on the source's one partition), one JSON document per
   record (CloudTrail), one export datagram per record (NetFlow v9); key: the source name, no
   headers (as rsyslog's ``omkafka`` sends);
2. the backlog is produced to ``<raw prefix><format>``, then ``ssa parse`` is started on it;
   every 0.25 s the group's committed offset of that topic and the process's CPU time
   (``/proc/<pid>/stat``, user + system: the Python thread and librdkafka's threads) are sampled;
   the rates come from the slope between the first and last sample while the offset moves
   (``0 < committed < backlog``: process start-up and the final idle commit left out), as
   ``bench_streams`` takes the job's: ``records_per_s`` (wall clock) and ``records_per_cpu_s``
   (records per CPU-second of the stage process: the per-core figure, the one to compare on a
   shared machine), the events made per record turning them into ``events_per_cpu_s``. The
   events are the records the stage's transactions committed to the telemetry and DLQ topics,
   read back ``read_committed`` (end offsets would also count each transaction's commit marker,
   one per partition written), with a digest of their ids (``stage_event_ids_sha256``: two runs
   over the same input must make the same events);
3. the edge figure: ``ingest.pipeline.run_ingest`` of the same bytes as one file, into a sink that
   encodes each event and keeps nothing (``bench_ingest.EncodeSink``: how ``bench_ingest``
   measures ``ssa ingest``'s parsing), CPU time of this process, best of ``_EDGE_ROUNDS`` (a busy
   machine only slows a run down; the stage's figure is one run's, so the ratio leans against
   the stage).

``stage_to_edge_ratio`` is records per CPU-second of the stage over the edge's: what reading from
and writing to Kafka, the per-record dispatch and the offset bookkeeping cost. The events' counts
of both sides are reported: equal counts mean the stage parsed the same input into the same
number of events. CICFlowMeter rows are not benched (the generator's header is a public intrusion
dataset's, which this project does not use for anything). Run by hand with ``python -m
tests.bench.bench_parse_stage [--scale 0.1]`` on a running stack (the settings' Kafka).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import msgspec

from infra.bootstrap import ensure_topics
from infra.clients import kafka_config
from infra.settings import PROJECT_ROOT, Settings, load_settings
from ingest.pipeline import run_ingest
from ingest.raw import raw_topic
from ingest.tenants import TenantRegistry
from streams.demo import demo_settings
from streams.offsets import end_offsets
from tests.bench.bench_ingest import (
    EncodeSink,
    _registry,
    gen_auditd,
    gen_cloudtrail,
    gen_falco,
    gen_netflow,
    gen_nprobe,
    gen_syslog,
    gen_vpcflow,
    gen_zeek,
)

__all__ = [
    "committed_ids",
    "ids_digest",
    "moving_rates",
    "moving_samples",
    "run",
    "split_datagrams",
    "split_lines",
]

_S = TypeVar("_S", bound=tuple[Any, ...])  # a sample: (wall time, committed offset, ...)

_EDGE_ROUNDS = 3
_SAMPLE_S = 0.25
_STALL_S = 60.0  # no committed progress for this long: the stage is stuck (or holds its last records)
_RUN_LIMIT_S = 900.0
_VERSIONS = (b"\x00\x05", b"\x00\x09", b"\x00\x0a")  # NetFlow v5, v9, IPFIX


def split_lines(data: bytes) -> list[bytes]:
    """A text input's records as a line shipper sends them: each line without its newline."""
    lines = data.split(b"\n")
    return lines[:-1] if lines and lines[-1] == b"" else lines


def split_datagrams(data: bytes) -> list[bytes]:
    """Concatenated NetFlow v5/v9 and IPFIX export packets cut back into their datagrams: v5's
    size follows from its record count (24-byte header, 48-byte records), IPFIX's header holds
    its length, and a v9 packet runs over its flowsets (id and length each) up to the next
    packet's header (a v9 flowset id is 0, 1 or >= 256, never a version: 5, 9, 10). ``ValueError``
    on anything else."""
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 20:
            raise ValueError(f"{end - pos} trailing bytes at {pos}: no export header")
        version = int.from_bytes(data[pos : pos + 2], "big")
        if version == 5:
            size = 24 + 48 * int.from_bytes(data[pos + 2 : pos + 4], "big")
        elif version == 10:
            size = int.from_bytes(data[pos + 2 : pos + 4], "big")
        elif version == 9:
            cursor = pos + 20
            while cursor + 4 <= end and data[cursor : cursor + 2] not in _VERSIONS:
                length = int.from_bytes(data[cursor + 2 : cursor + 4], "big")
                if length < 4:
                    raise ValueError(f"v9 flowset of length {length} at {cursor}")
                cursor += length
            size = cursor - pos
        else:
            raise ValueError(f"NetFlow version {version} at byte {pos}")
        if size < 16 or pos + size > end:
            raise ValueError(f"NetFlow v{version} packet of {size} bytes at {pos} overruns the input")
        out.append(data[pos : pos + size])
        pos += size
    return out


def moving_samples(samples: list[_S], total: int) -> list[_S]:
    """The samples (each with the committed offset at index 1) that show a new committed value
    strictly between 0 and ``total``: start-up, and the last commit after the backlog ran out,
    left out."""
    out, last = [], -1
    for x in samples:
        if x[1] != last and 0 < x[1] < total:
            out.append(x)
        last = x[1]
    return out


def moving_rates(
    samples: list[tuple[float, int, float]], total: int
) -> tuple[float | None, float | None, int]:
    """(records per wall second, records per CPU second, samples used) from (wall time, committed
    offset, CPU seconds) samples, between the first and last ``moving_samples``. None when fewer
    than two such samples or no time passed."""
    moving = moving_samples(samples, total)
    if len(moving) < 2:
        return None, None, len(moving)
    (w0, c0, u0), (w1, c1, u1) = moving[0], moving[-1]
    wall_rate = (c1 - c0) / (w1 - w0) if w1 > w0 else None
    cpu_rate = (c1 - c0) / (u1 - u0) if u1 > u0 else None
    return wall_rate, cpu_rate, len(moving)


def _inputs(rnd: random.Random, scale: float) -> dict[str, tuple[bytes, list[bytes]]]:
    """Per format: (the input as a file for the edge, its raw records for the stage). Sizes give
    each format roughly 5-15 s of the stage's work on one core."""

    def n(count: int) -> int:
        return max(int(count * scale), 200)

    made: dict[str, bytes] = {
        "syslog": gen_syslog(n(200_000), rnd),
        "auditd": gen_auditd(n(40_000), rnd),  # 5 lines an event
        "vpcflow": gen_vpcflow(n(500_000), rnd),
        "zeek": gen_zeek(n(300_000), rnd),
        "nprobe-csv": gen_nprobe(n(400_000), rnd),
        "falco": gen_falco(n(150_000), rnd),
        "cloudaudit": gen_cloudtrail(n(120_000), rnd),  # one CloudTrail record per raw record
    }
    out = {fmt: (data, split_lines(data)) for fmt, data in made.items()}
    netflow = gen_netflow(n(600_000), rnd, 9)  # 24 flows a datagram
    out["netflow"] = (netflow, split_datagrams(netflow))
    return out


def _produce(settings: Settings, topic: str, key: bytes, records: list[bytes]) -> float:
    """Write the records to ``topic`` in order; returns records/s."""
    import confluent_kafka

    producer = confluent_kafka.Producer(
        {
            **kafka_config(settings, "confluent"),
            "linger.ms": 50,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "queue.buffering.max.messages": 500_000,
        }
    )
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    t0 = time.perf_counter()
    for value in records:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    if failures:
        raise RuntimeError(f"{len(failures)} raw records not delivered to {topic}: {failures[0]}")
    return len(records) / (time.perf_counter() - t0)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from ``/proc/<pid>/stat``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Id(msgspec.Struct):
    id: str = ""  # an event's id; a DLQ record has none


def committed_ids(
    reader: Settings, topics: list[str], since: dict[tuple[str, int], int], timeout_s: float = 120
) -> list[str]:
    """The ``id`` of every record committed to ``topics`` after the offsets of ``since`` (0 where it
    has none; ``read_committed``: neither transaction markers nor aborted output), "" for records
    without one."""
    import confluent_kafka

    ends = end_offsets(reader, topics)
    todo = [confluent_kafka.TopicPartition(t, p, since.get((t, p), 0))
            for (t, p), end in ends.items() if end > since.get((t, p), 0)]  # fmt: skip
    if not todo:
        return []
    consumer = confluent_kafka.Consumer({**kafka_config(reader, "confluent"), "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
                                         "enable.auto.commit": False, "enable.partition.eof": True,
                                         "isolation.level": "read_committed"})  # fmt: skip
    decoder = msgspec.json.Decoder(_Id)
    ids: list[str] = []
    left = {(tp.topic, tp.partition) for tp in todo}
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign(todo)
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 0.5):
                err = msg.error()
                if err is None:
                    try:
                        ids.append(decoder.decode(msg.value() or b"{}").id)
                    except msgspec.DecodeError:
                        ids.append("")
                elif err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    left.discard((msg.topic(), msg.partition()))
    finally:
        consumer.close()
    if left:
        raise RuntimeError(
            f"{len(left)} partitions not read to their end within {timeout_s:.0f} s: {sorted(left)[:3]}"
        )
    return ids


def ids_digest(ids: list[str]) -> str:
    """sha256 of the sorted ids: equal for the same events in any order."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _stage_run(
    settings: Settings,
    group: str,
    fmt: str,
    records: int,
    *,
    topics: list[str] | None = None,
    outputs: list[str] | None = None,
    reader: Settings | None = None,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """One ``ssa parse`` process (as ``settings``' principal) over the backlog of ``fmt``'s raw
    topics (already produced): by default the shared ``<raw prefix><fmt>``, its events to the
    shared telemetry topics. Secure mode (``bench_secure``) names the tenants' raw ``topics``, the
    ``outputs`` the stage writes, a ``reader`` (the admin) for the offsets, and the broker's pid, whose
    CPU time is then sampled too (``broker_records_per_cpu_s``: TLS and SASL are paid there as well)."""
    import confluent_kafka

    reader = reader or settings
    topics = topics or [raw_topic(settings.topic_raw_prefix, fmt)]
    outputs = outputs or [*settings.telemetry_topics.values()]
    before = end_offsets(reader, [*outputs, settings.topic_dlq])
    probe = confluent_kafka.Consumer(
        {**kafka_config(reader, "confluent"), "group.id": group, "enable.auto.commit": False}
    )
    parts = [confluent_kafka.TopicPartition(t, p) for t in topics for p in range(settings.kafka_partitions)]
    log = Path(settings.checkpoint_dir).parent / f"parse-{fmt}.log"
    ssa = str(Path(sys.executable).with_name("ssa"))
    load_before = os.getloadavg()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [ssa, "parse", "--group", group, "--tenants", settings.tenants_file],
            cwd=PROJECT_ROOT,
            env={**os.environ, **settings.to_env()},
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        samples: list[tuple[float, int, float]] = []
        broker: list[tuple[float, int, float]] = []
        t0 = last_move = time.perf_counter()
        committed = 0
        try:
            while proc.poll() is None and committed < records:
                now = time.perf_counter()
                if now - last_move > _STALL_S or now - t0 > _RUN_LIMIT_S:
                    break
                try:
                    done = sum(max(tp.offset, 0) for tp in probe.committed(parts, timeout=10))
                except confluent_kafka.KafkaException:  # a fresh broker's group coordinator still loading
                    time.sleep(_SAMPLE_S)
                    continue
                cpu = _cpu_seconds(proc.pid)
                samples.append((time.perf_counter(), done, cpu))
                if broker_pid is not None:
                    broker.append((samples[-1][0], done, _cpu_seconds(broker_pid)))
                if done != committed:
                    committed, last_move = done, time.perf_counter()
                time.sleep(_SAMPLE_S)
            cpu_total = _cpu_seconds(proc.pid) if proc.poll() is None else None
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the stage commits and writes its last metrics
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            probe.close()
    wall = time.perf_counter() - t0
    rate, cpu_rate, used = moving_rates(samples, records)
    ids = committed_ids(reader, outputs, before)
    events = len(ids)
    dlq = len(committed_ids(reader, [settings.topic_dlq], before))
    out: dict[str, Any] = {
        "stage_exit_code": proc.returncode,
        "stage_records": records,
        "stage_records_committed_before_stop": committed,
        "stage_events": events,
        "stage_event_ids_sha256": ids_digest(ids),
        "stage_dlq_records": dlq,
        "stage_samples_while_moving": used,
        "stage_records_per_s": round(rate) if rate else None,
        "stage_records_per_cpu_s": round(cpu_rate) if cpu_rate else None,
        "stage_events_per_cpu_s": round(cpu_rate * events / records) if cpu_rate and records else None,
        "stage_cores_used": round(rate / cpu_rate, 2) if rate and cpu_rate else None,
        "stage_whole_run_wall_s_incl_start": round(wall, 1),
        "stage_whole_run_cpu_s": round(cpu_total, 2) if cpu_total is not None else None,
        "load_avg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    if broker_pid is not None:
        broker_rate = moving_rates(broker, records)[1]
        out["broker_records_per_cpu_s"] = round(broker_rate) if broker_rate else None
    if proc.returncode not in (0, -signal.SIGTERM):
        lines = log.read_text(errors="replace").strip().splitlines()
        out["stage_last_error_line"] = lines[-1] if lines else ""
    return out


def _edge(fmt: str, data: bytes, registry: TenantRegistry) -> tuple[float, Any]:
    """CPU seconds of this process for ``ssa ingest``'s parse and encode of ``data``, and the summary."""
    start = time.process_time()
    summary = run_ingest(io.BytesIO(data), fmt, registry=registry, sink=EncodeSink())
    return time.process_time() - start, summary


def _edge_best(fmt: str, data: bytes, records: int, registry: TenantRegistry) -> dict[str, Any]:
    best, summary = min((_edge(fmt, data, registry) for _ in range(_EDGE_ROUNDS)), key=lambda r: r[0])
    return {
        "edge_events": summary.parsed,
        "edge_dlq_records": summary.dlq,
        "edge_records_per_cpu_s": round(records / best) if best > 0 else None,
        "edge_events_per_cpu_s": round(summary.parsed / best) if best > 0 else None,
    }


def run(ctx: Any, scale: float = 1.0, say: Callable[[str], None] = print) -> dict[str, Any]:
    if not ctx.stack_up:
        return {"skipped": "needs the local stack (Kafka)"}
    run_id = "benchparse" + uuid.uuid4().hex[:6]
    s = demo_settings(ctx.settings, run_id).with_overrides(topic_raw_prefix=f"ssa.run.{run_id}.raw.")
    group = f"bench-parse-{run_id}"
    registry = _registry()
    registry.dump(s.tenants_file)
    inputs = _inputs(random.Random(7), scale)
    ensure_topics(s, [*(raw_topic(s.topic_raw_prefix, f) for f in inputs), *s.telemetry_topics.values(),
                      s.topic_dlq, s.topic_metrics])  # fmt: skip
    results: dict[str, Any] = {"scale": scale, "edge_rounds_best_of": _EDGE_ROUNDS}
    for fmt, (data, records) in inputs.items():
        key = b"192.0.2.10" if fmt == "netflow" else f"bench-host:/var/log/{fmt}".encode()
        produce_rate = _produce(s, raw_topic(s.topic_raw_prefix, fmt), key, records)
        figures: dict[str, Any] = {"raw_records": len(records), "raw_bytes": len(data),
                                   "backlog_produce_records_per_s": round(produce_rate)}  # fmt: skip
        figures |= _stage_run(s, group, fmt, len(records))
        figures |= _edge_best(fmt, data, len(records), registry)
        stage, edge = figures.get("stage_records_per_cpu_s"), figures.get("edge_records_per_cpu_s")
        figures["stage_to_edge_ratio"] = round(stage / edge, 3) if stage and edge else None
        figures["events_equal_edge"] = figures["stage_events"] == figures["edge_events"]
        results[fmt.replace("-", "_")] = figures
        say(f"[parse_stage] {fmt}: " + ", ".join(f"{k} {v}" for k, v in figures.items() if "per" in k))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_parse_stage")
    parser.add_argument("--scale", type=float, default=1.0, help="input size factor (default 1)")
    args = parser.parse_args()
    ctx = SimpleNamespace(settings=load_settings(), stack_up=True)
    for fmt, value in run(ctx, args.scale).items():
        print(f"{fmt:12s} {value}")
