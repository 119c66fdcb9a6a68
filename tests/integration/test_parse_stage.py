"""The parse stage on a real Kafka: raw lines of real logs produced to ``ssa.raw.<format>`` come out
of ``ssa parse`` as the events ``ssa ingest`` makes of the same files (same ids), and kills -9 of
the stage mid-stream, each followed by a restart, give every event id EXACTLY ONCE in the telemetry
topics read with ``read_committed`` (as the detection job reads them), and the DLQ records of
``ssa ingest`` once each, none of the stage's own."""

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
    # LabSZ's log: loghub's whole file, or the 21 of its lines in tests/samples/auth.log. Never both:
    # the same lines from two sources are the same records sent twice, which the stage drops as
    # copies while it remembers them (``ingest.recent``) and cannot once a kill has made it forget.
    labsz = OPENSSH if OPENSSH.exists() else SAMPLES / "auth.log"
    return [("auditd", "hv-01:/var/log/audit/audit.log", SAMPLES / "auditd_kvm_host.log"),
            ("auditd", "hv-02:/var/log/audit/audit.log", SAMPLES / "audit.log"),
            ("syslog", "combo:/var/log/messages", SAMPLES / "auth_linux.log"),
            ("syslog", "labsz:/var/log/auth.log", labsz)]  # fmt: skip


def _ingest_ids(inputs: list[tuple[str, str, Path]]) -> tuple[Counter[str], Counter[bytes]]:
    ids: Counter[str] = Counter()
    dlq: Counter[bytes] = Counter()
    for fmt, _source, path in inputs:
        sink = ListSink()
        run_ingest(path, fmt, sink=sink)
        ids.update(e.id for e in sink.events)
        dlq.update(d.raw.encode() for d in sink.dlqs)
    return ids, dlq


def committed_values(s: Settings, topic: str) -> list[bytes]:
    """Every record value of ``topic`` a ``read_committed`` consumer sees (aborted transactions'
    records are not), read to the end."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from infra.clients import kafka_config

    reader = Consumer({**kafka_config(s, "confluent"), "group.id": f"check-{uuid.uuid4().hex[:8]}",
                       "enable.auto.commit": False, "enable.partition.eof": True,
                       "isolation.level": "read_committed"})  # fmt: skip
    try:
        parts = reader.list_topics(topic, timeout=15).topics[topic].partitions
        reader.assign([TopicPartition(topic, p, 0) for p in parts])  # offset 0: from the start
        left, out = set(parts), []
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.5):
                err = msg.error()
                if err is None:
                    out.append(msg.value() or b"")
                elif err.code() == KafkaError._PARTITION_EOF:
                    left.discard(msg.partition())
        assert not left, f"{topic} not read to its end"
        return out
    finally:
        reader.close()


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


KILLS = (0.2, 0.45, 0.7)  # kill -9 once the stage has committed these shares of the records
IN_FLIGHT = 400  # records the feeder writes ahead of what the stage has read and committed


def _keep_forever(s: Settings, topics: list[str]) -> None:
    """Create ``topics`` with no time retention: the logs' events are years old, and the broker's
    7-day retention would delete them (record timestamp = event time) within its 5-minute check."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from infra.clients import kafka_config

    admin = AdminClient(kafka_config(s, "confluent"))
    new = [
        NewTopic(t, s.kafka_partitions, s.kafka_replication_factor, config={"retention.ms": "-1"})
        for t in topics
    ]
    for future in admin.create_topics(new, operation_timeout=15).values():
        future.result(timeout=30)


def _read_total(s: Settings, topics: list[str]) -> int:
    """The raw records the stage has read with their output committed: the positions ``p`` it
    saves in its state topic (its committed offsets stop short of a parser holding lines, which
    waits for lines the feeder would hold back), or the committed offsets if more."""
    from streams.parse_stage import PartitionState, partition_of_state_key, read_states

    read: dict[tuple[str, int], int] = {}
    for key, value in read_states(s, {(t, p) for t in topics for p in range(s.kafka_partitions)}, 5.0):
        tp = partition_of_state_key(key)
        position = PartitionState.decode(value) if tp is not None and value is not None else None
        if tp is not None and position is not None:
            read[tp] = position.p
    return max(sum(read.values()), _committed_total(s, topics))


def _committed_total(s: Settings, topics: list[str]) -> int:
    """The raw records the parse group has committed (0 while the broker has no coordinator)."""
    from kafka.errors import KafkaError

    from streams.offsets import committed_offsets

    try:
        return sum(o for (t, _p), o in committed_offsets(s, s.parse_group_id).items() if t in topics)
    except KafkaError:
        return 0


def test_raw_lines_give_each_id_of_ssa_ingest_once_through_kills_9(stack: Settings, tmp_path: Path) -> None:
    import random

    from confluent_kafka import Producer

    from infra.bootstrap import ensure_topics
    from infra.clients import kafka_config
    from streams.demo import records_in_topic

    run = uuid.uuid4().hex[:8]
    s = stack.with_overrides(
        topic_raw_prefix=f"test.{run}.raw.", topic_prefix=f"test.{run}.telemetry.", topic_dlq=f"test.{run}.dlq",
        topic_metrics=f"test.{run}.metrics", parse_group_id=f"test-{run}-parse",
        topic_parse_state=f"test.{run}.parse.state",
    )  # fmt: skip
    raw = [s.topic_raw_prefix + "auditd", s.topic_raw_prefix + "syslog"]
    _keep_forever(s, [*s.telemetry_topics.values(), s.topic_dlq])
    ensure_topics(s, [*raw, s.topic_metrics])
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
    sent = [0]

    def feed() -> None:
        """A stream kept IN_FLIGHT records ahead of the stage's commits, so each kill lands while
        the stage holds read records whose offsets are not committed."""
        for i, (topic, source, line) in enumerate(records):
            fmt = topic.rsplit(".", 1)[1]
            headers: list[tuple[str, str | bytes | None]] = [*make_headers(fmt, source)]
            producer.produce(topic, line, source.encode(), headers=headers)
            if i % 50 == 49:  # about 100 records/s
                producer.flush()
                sent[0] = i + 1
                time.sleep(0.5)
                while sent[0] - _read_total(s, raw) > IN_FLIGHT:
                    time.sleep(0.2)
        producer.flush()
        sent[0] = len(records)
        produced.set()

    log = tmp_path / "parse.log"
    stage = _start_stage(s, log)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    kills = 0
    try:
        for share in KILLS:
            deadline = time.monotonic() + 300
            while _read_total(s, raw) < share * len(records):
                assert stage.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"the stage did not reach {share:.0%} of the records"
                time.sleep(0.2)
            time.sleep(random.uniform(0.2, 0.9))  # between two commits (1 s apart)
            assert stage.poll() is None and not produced.is_set(), "the kill must land mid-stream"
            os.killpg(stage.pid, signal.SIGKILL)
            stage.wait(10)
            kills += 1
            stage = _start_stage(s, log)
        assert produced.wait(300)
        deadline = time.monotonic() + 180
        while not _committed_yet(s, raw):
            assert stage.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the stage did not commit every raw record"
            time.sleep(0.5)
    finally:
        if stage.poll() is None:
            os.killpg(stage.pid, signal.SIGTERM)
            stage.wait(30)
    got: Counter[str] = Counter()
    for topic in s.telemetry_topics.values():
        got.update(json.loads(value)["id"] for value in committed_values(s, topic))
    dupes, lost = sum((got - want).values()), sum((want - got).values())
    repeats = sum(n - 1 for n in want.values())  # identical lines in the logs: ssa ingest repeats them too
    print(f"[parse] {len(records)} raw records, {len(want)} distinct event ids ({repeats} repeated by "
          f"ssa ingest too), {kills} kills -9: {dupes} duplicates, {lost} lost")  # fmt: skip
    assert got == want  # each event id exactly as often as ssa ingest gives it: none lost, none twice
    dlq = [json.loads(v) for v in committed_values(s, s.topic_dlq)]
    assert not [d for d in dlq if d["source"] == "parse"], dlq[:3]
    assert Counter(d["raw"].encode() for d in dlq) == want_dlq
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
    from streams.parse_stage import read_states, slot_of_state_key

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
        saved = [(k, v) for k, v in read_states(s, partitions) if slot_of_state_key(k) is not None]
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
        got.update(json.loads(value)["id"] for value in committed_values(s, topic))
    dlq = [json.loads(v) for v in committed_values(s, s.topic_dlq)]
    assert not dlq, dlq[:3]
    assert got == Counter(want)  # the rows after the restart too, with the ids of ssa ingest, once
    admin = AdminClient(kafka_config(s, "confluent"))
    resource = ConfigResource("TOPIC", s.topic_parse_state)
    config = admin.describe_configs([resource])[resource].result(timeout=15)
    assert config["cleanup.policy"].value == "compact"
    print(f"[parse] zeek: {len(lines)} lines, {len(want)} event ids, header primed after kill -9")
