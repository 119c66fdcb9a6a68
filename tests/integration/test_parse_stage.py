"""The parse stage on a real Kafka: raw lines of real logs produced to ``ssa.raw.<format>`` come out
of ``ssa parse`` as the events ``ssa ingest`` makes of the same files (same ids), and a kill -9 of
the stage mid-stream, then a restart, loses nothing and makes no event that is not in that set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from infra.settings import PROJECT_ROOT, Settings
from ingest.pipeline import run_ingest
from ingest.raw import make_headers
from tests.paths import SHARED_DATA
from tests.test_raw_records import ListSink

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
OPENSSH = SHARED_DATA / "loghub_OpenSSH" / "OpenSSH_2k.log"  # LogHub, real sshd log (2,000 lines)


def _inputs() -> list[tuple[str, str, Path]]:
    inputs = [("auditd", "hv-01:/var/log/audit/audit.log", SAMPLES / "auditd_kvm_host.log"),
              ("auditd", "hv-02:/var/log/audit/audit.log", SAMPLES / "audit.log"),
              ("syslog", "web-1:/var/log/auth.log", SAMPLES / "auth.log")]  # fmt: skip
    if OPENSSH.exists():
        inputs.append(("syslog", "labsz:/var/log/auth.log", OPENSSH))
    return inputs


def _ingest_ids(inputs: list[tuple[str, str, Path]]) -> tuple[set[str], Counter[bytes]]:
    ids: set[str] = set()
    dlq: Counter[bytes] = Counter()
    for fmt, _source, path in inputs:
        sink = ListSink()
        run_ingest(path, fmt, sink=sink)
        ids |= {e.id for e in sink.events}
        dlq.update(d.raw.encode() for d in sink.dlqs)
    return ids, dlq


def _start_stage(s: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **s.to_env()}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ssa.cli", "parse"], cwd=PROJECT_ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _committed_all(s: Settings, topics: list[str]) -> bool:
    from streams.offsets import committed_offsets, end_offsets

    ends = end_offsets(s, topics)
    done = committed_offsets(s, s.parse_group_id)
    return all(done.get(tp, 0) >= end for tp, end in ends.items())


def _committed_yet(s: Settings, topics: list[str]) -> bool:
    """``_committed_all``, False while the broker has no group coordinator yet (a fresh broker)."""
    from kafka.errors import KafkaError

    try:
        return _committed_all(s, topics)
    except KafkaError:
        return False


def test_raw_lines_give_the_ids_of_ssa_ingest_through_a_kill_9(stack: Settings, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    from infra.bootstrap import ensure_topics
    from infra.clients import kafka_config
    from streams.demo import records_in_topic

    run = uuid.uuid4().hex[:8]
    s = stack.with_overrides(
        topic_raw_prefix=f"test.{run}.raw.", topic_prefix=f"test.{run}.telemetry.", topic_dlq=f"test.{run}.dlq",
        topic_metrics=f"test.{run}.metrics", parse_group_id=f"test-{run}-parse",
    )  # fmt: skip
    raw = [s.topic_raw_prefix + "auditd", s.topic_raw_prefix + "syslog"]
    ensure_topics(s, [*raw, *s.telemetry_topics.values(), s.topic_dlq, s.topic_metrics])
    inputs = _inputs()
    want, want_dlq = _ingest_ids(inputs)
    records = [
        (s.topic_raw_prefix + fmt, source, line)
        for fmt, source, path in inputs
        for line in path.read_bytes().splitlines()
    ]
    # Interleave the sources, as feeders writing at once would (each source stays in order).
    records.sort(key=lambda r: hash(r[1]) % 7)
    producer = Producer(kafka_config(s, "confluent"))
    produced = threading.Event()
    half = threading.Event()

    def feed() -> None:
        for i, (topic, source, line) in enumerate(records):
            fmt = topic.rsplit(".", 1)[1]
            headers: list[tuple[str, str | bytes | None]] = [*make_headers(fmt, source)]
            producer.produce(topic, line, source.encode(), headers=headers)
            if i % 100 == 99:
                producer.flush()
                time.sleep(0.05)  # a stream, not one burst: the kill lands mid-stream
            if i == len(records) // 2:
                half.set()
        producer.flush()
        produced.set()

    log = tmp_path / "parse.log"
    stage = _start_stage(s, log)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert half.wait(120)
        time.sleep(1.5)  # at least one commit behind us, records still arriving
        assert stage.poll() is None, log.read_text()
        os.killpg(stage.pid, signal.SIGKILL)
        stage.wait(10)
        assert produced.wait(300)
        stage = _start_stage(s, log)
        deadline = time.monotonic() + 180
        while not _committed_all(s, raw):
            assert stage.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the stage did not commit every raw record"
            time.sleep(0.5)
    finally:
        if stage.poll() is None:
            os.killpg(stage.pid, signal.SIGTERM)
            stage.wait(30)
    got: Counter[str] = Counter()
    for topic in s.telemetry_topics.values():
        got.update(json.loads(value)["id"] for _, value in records_in_topic(s, topic))
    assert set(got) == want  # nothing lost, no event the file does not give
    dlq = Counter(json.loads(v)["raw"].encode() for _, v in records_in_topic(s, s.topic_dlq))
    assert set(dlq) == set(want_dlq)
    dupes = sum(n - 1 for n in got.values())
    print(f"[parse] {len(records)} raw records, {len(want)} event ids, {dupes} duplicates after kill -9")
    metrics = [json.loads(v) for _, v in records_in_topic(s, s.topic_metrics)]
    assert metrics and {m["kind"] for m in metrics} == {"parse"}


IOT23 = SHARED_DATA / "iot23_capture_34_1_mirai" / "CTU-IoT-Malware-Capture-34-1.conn.log.labeled.gz"


def test_a_zeek_header_committed_before_a_kill_9_primes_the_restarted_stage(
    stack: Settings, tmp_path: Path
) -> None:
    """The header of a Zeek TSV log (IoT-23, a real conn.log) is read and committed, the stage is
    killed -9, the log goes on with rows only: the restarted stage reads them with the header it
    saved in the state topic (same ids as ``ssa ingest`` of the whole file), none to the DLQ."""
    import gzip
    import io

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, ConfigResource

    from infra.bootstrap import ensure_topics
    from infra.clients import kafka_config
    from streams.demo import records_in_topic
    from streams.parse_stage import read_states

    if not IOT23.exists():
        pytest.skip(f"IoT-23 capture not found at {IOT23}")
    run = uuid.uuid4().hex[:8]
    s = stack.with_overrides(
        topic_raw_prefix=f"test.{run}.raw.", topic_prefix=f"test.{run}.telemetry.", topic_dlq=f"test.{run}.dlq",
        topic_metrics=f"test.{run}.metrics", parse_group_id=f"test-{run}-parse",
        topic_parse_state=f"test.{run}.parse.state",
    )  # fmt: skip
    raw = s.topic_raw_prefix + "zeek"
    ensure_topics(s, [raw, *s.telemetry_topics.values(), s.topic_dlq, s.topic_metrics])
    with gzip.open(IOT23) as f:
        lines = f.read().split(b"\n")[:3000]
    whole = ListSink()
    run_ingest(io.BytesIO(b"\n".join(lines) + b"\n"), "zeek", sink=whole)
    want = {e.id for e in whole.events}
    assert len(want) > 2000 and not whole.dlqs
    source = "sensor-1:/opt/zeek/logs/current/conn.log"
    producer = Producer(kafka_config(s, "confluent"))

    def produce(part: list[bytes]) -> None:
        for line in part:
            producer.produce(raw, line, source.encode(), headers=[*make_headers("zeek", source)])
        producer.flush()

    cut = 500  # the header (8 lines) and rows: committed before the kill
    assert lines[7].startswith(b"#types") and not any(line.startswith(b"#") for line in lines[cut:])
    produce(lines[:cut])
    log = tmp_path / "parse.log"
    stage = _start_stage(s, log)
    try:
        deadline = time.monotonic() + 120
        while not _committed_yet(s, [raw]):
            assert stage.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the stage did not commit the header"
            time.sleep(0.3)
        os.killpg(stage.pid, signal.SIGKILL)
        stage.wait(10)
        partitions = {(raw, p) for p in range(s.kafka_partitions)}
        saved = read_states(s, partitions)
        assert [k.rsplit(b"\0", 1)[1] for k, _ in saved] == [source.encode()]
        assert b"#fields" in (saved[-1][1] or b"")
        produce(lines[cut:])  # rows only, no header: the next one comes with the next rotation
        stage = _start_stage(s, log)
        deadline = time.monotonic() + 120
        while not _committed_yet(s, [raw]):
            assert stage.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the stage did not commit every raw record"
            time.sleep(0.5)
    finally:
        if stage.poll() is None:
            os.killpg(stage.pid, signal.SIGTERM)
            stage.wait(30)
    got: Counter[str] = Counter()
    for topic in s.telemetry_topics.values():
        got.update(json.loads(value)["id"] for _, value in records_in_topic(s, topic))
    dlq = [json.loads(v) for _, v in records_in_topic(s, s.topic_dlq)]
    assert not dlq, dlq[:3]
    assert set(got) == want  # the rows after the restart too, with the ids of ssa ingest
    admin = AdminClient(kafka_config(s, "confluent"))
    resource = ConfigResource("TOPIC", s.topic_parse_state)
    config = admin.describe_configs([resource])[resource].result(timeout=15)
    assert config["cleanup.policy"].value == "compact"
    print(f"[parse] zeek: {len(lines)} lines, {len(want)} event ids, header primed after kill -9")
