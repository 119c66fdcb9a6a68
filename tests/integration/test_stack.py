"""The real local services: Kafka (KRaft), Elasticsearch 8.14 and PyFlink with the Kafka connector."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest

from infra.bootstrap import ensure_topics
from infra.clients import es_client, kafka_config
from infra.settings import Settings

pytestmark = pytest.mark.integration


def _consume_all(settings: Settings, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **kafka_config(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000, max_records=5000).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def test_ten_thousand_messages_round_trip_in_order_per_partition(stack: Settings) -> None:
    from kafka import KafkaProducer

    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    ensure_topics(stack, [topic], partitions=3)
    producer = KafkaProducer(**kafka_config(stack), acks="all", enable_idempotence=True, linger_ms=5)
    n, keys = 10_000, [f"tenant-{i}" for i in range(7)]
    for seq in range(n):
        key = keys[seq % len(keys)]
        producer.send(topic, key=key.encode(), value=json.dumps({"seq": seq, "key": key}).encode())
    producer.flush(timeout=60)
    producer.close()

    records = _consume_all(stack, topic, n)
    assert len(records) == n
    assert sorted(json.loads(r.value)["seq"] for r in records) == list(range(n))
    by_partition: dict[int, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for r in records:
        body = json.loads(r.value)
        by_partition[r.partition].append(body["seq"])
        partitions_of_key[body["key"]].add(r.partition)
    for seqs in by_partition.values():
        assert seqs == sorted(seqs), "records of one partition came back out of order"
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a key was spread over partitions"
    assert len(by_partition) > 1


def test_documents_indexed_and_searched(stack: Settings) -> None:
    es = es_client(stack)
    index = f"test-docs-{uuid.uuid4().hex[:8]}"
    try:
        info = es.info()
        assert info["version"]["number"].startswith("8.14")
        docs = [{"tenant": f"t{i % 3}", "bytes": i, "ts": 1_700_000_000_000 + i} for i in range(300)]
        from elasticsearch.helpers import bulk

        ok, errors = bulk(es, ({"_index": index, "_id": str(i), "_source": d} for i, d in enumerate(docs)))
        assert ok == 300 and not errors
        es.indices.refresh(index=index)
        res = es.search(
            index=index,
            query={"term": {"tenant.keyword": "t1"}},
            aggs={"total": {"sum": {"field": "bytes"}}},
            size=0,
        )
        assert res["hits"]["total"]["value"] == 100
        assert res["aggregations"]["total"]["value"] == sum(i for i in range(300) if i % 3 == 1)
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
        es.close()


def test_index_templates_installed(stack: Settings) -> None:
    es = es_client(stack)
    try:
        index = f"{stack.index_alerts_prefix}test-{uuid.uuid4().hex[:6]}"
        es.index(index=index, id="a1", document={"alert_id": "a1", "ts": 1_700_000_000_000, "tenant": "t"})
        mapping = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
        assert mapping["ts"]["type"] == "date"
        assert mapping["tenant"]["type"] == "keyword"
        es.indices.delete(index=index)
    finally:
        es.close()


def test_pyflink_job_reads_kafka_and_writes_transformed_topic(stack: Settings) -> None:
    from kafka import KafkaProducer

    from streams.flink_env import create_table_env

    suffix = uuid.uuid4().hex[:8]
    src, dst = f"test.flink.in.{suffix}", f"test.flink.out.{suffix}"
    ensure_topics(stack, [src, dst], partitions=1)
    producer = KafkaProducer(**kafka_config(stack), acks="all")
    n = 500
    for i in range(n):
        producer.send(src, json.dumps({"tenant": f"t{i % 5}", "bytes": i}).encode())
    producer.flush()
    producer.close()

    _env, t_env = create_table_env(stack)
    common = f"'connector' = 'kafka', 'properties.bootstrap.servers' = '{stack.kafka_bootstrap}', 'format' = 'json'"
    t_env.execute_sql(
        f"""CREATE TABLE src (tenant STRING, `bytes` BIGINT) WITH ({common}, 'topic' = '{src}',
            'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"""
    )
    t_env.execute_sql(f"CREATE TABLE dst (tenant STRING, kb DOUBLE) WITH ({common}, 'topic' = '{dst}')")
    t_env.execute_sql("INSERT INTO dst SELECT UPPER(tenant), `bytes` / 1024.0 FROM src").wait(180_000)

    out = [json.loads(r.value) for r in _consume_all(stack, dst, n)]
    assert len(out) == n
    assert {o["tenant"] for o in out} == {f"T{i}" for i in range(5)}
    assert sorted(round(o["kb"] * 1024) for o in out) == list(range(n))


def _member_of(settings: Settings, group: str, topic: str) -> Any:
    """A consumer that has joined ``group`` (and committed, so the group is listed) and stays in it."""
    from confluent_kafka import Consumer

    consumer = Consumer({**kafka_config(settings, "confluent"), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            consumer.commit(message=msg, asynchronous=False)
            return consumer
    consumer.close()
    raise AssertionError(f"no message on {topic} within 60 s")


def _commit_one_message(settings: Settings, group: str, topic: str) -> None:
    """Make ``group`` exist: a group with no committed offset is gone once its consumer leaves."""
    _member_of(settings, group, topic).close()


def test_leftovers_removes_a_runs_topics_groups_and_folder_and_keeps_what_was_there(stack: Settings) -> None:
    from confluent_kafka.admin import AdminClient
    from kafka import KafkaProducer

    from tests.leftovers import Leftovers, consumer_groups

    old_run, new_run = f"keep{uuid.uuid4().hex[:6]}", f"drop{uuid.uuid4().hex[:6]}"
    old_topic, new_topic = f"ssa.run.{old_run}.alerts", f"ssa.run.{new_run}.alerts"
    ensure_topics(stack, [old_topic, new_topic], partitions=1)
    producer = KafkaProducer(**kafka_config(stack))
    for topic in (old_topic, new_topic):
        producer.send(topic, b"x")
    producer.flush(timeout=30)
    producer.close()
    _commit_one_message(stack, f"ssa-detect-{old_run}", old_topic)
    old_folder = stack.data_path / "runs" / old_run
    old_folder.mkdir(parents=True)

    leftovers = Leftovers(stack, group_wait_s=3)
    ensure_topics(stack, [f"ssa.run.{new_run}.dlq"], partitions=1)
    unrelated = f"ssa-detect-other{new_run}"  # an id that only starts like the run's
    for group in (f"ssa-detect-{new_run}", f"ssa-indexer-{new_run}", unrelated):
        _commit_one_message(stack, group, new_topic)
    new_folder = stack.data_path / "runs" / new_run / "checkpoints"
    new_folder.mkdir(parents=True)
    busy = f"bench-busy{new_run}"  # a member still in it: left, and said so
    member = _member_of(stack, busy, new_topic)
    assert {f"ssa-detect-{new_run}", f"ssa-indexer-{new_run}", unrelated, busy} <= consumer_groups(stack)
    try:
        message = leftovers.remove()
        assert message == (
            "removed 1 topics, 0 indices, 2 consumer groups and 1 run folders this run created;"
            f" 1 groups still had members and were left: {busy}"
        )
        groups = consumer_groups(stack)
        assert f"ssa-detect-{new_run}" not in groups and f"ssa-indexer-{new_run}" not in groups
        assert unrelated in groups and f"ssa-detect-{old_run}" in groups and busy in groups
        assert not new_folder.parent.exists() and old_folder.is_dir()
    finally:  # the session's own Leftovers removes the rest (the "keep" run is new to it)
        member.close()
        admin = AdminClient(kafka_config(stack, "confluent"))
        for future in admin.delete_consumer_groups([unrelated, busy], request_timeout=30).values():
            future.result(60)


def test_group_lag_counts_records_not_the_commit_markers_of_transactions(stack: Settings) -> None:
    """A consumer that read every record of a transactional producer commits the offset after its
    last record, one short of the end offset (the commit marker): that is no lag. One record
    left unread is."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    from streams.offsets import end_offsets, group_lag

    topic, group = f"test.lag.{uuid.uuid4().hex[:8]}", f"test-lag-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack, [topic], partitions=1)
    producer = KafkaProducer(**kafka_config(stack), transactional_id=f"test-lag-{uuid.uuid4().hex[:8]}")
    member = KafkaConsumer(**kafka_config(stack), group_id=group, enable_auto_commit=False)
    try:
        producer.init_transactions()
        for batch in range(2):
            producer.begin_transaction()
            for n in range(3):
                producer.send(topic, value=f"{batch}-{n}".encode())
            producer.commit_transaction()
        ends = end_offsets(stack, [topic])
        assert ends == {(topic, 0): 8}  # 6 records, 2 markers
        tp = TopicPartition(topic, 0)
        member.assign([tp])
        member.commit({tp: OffsetAndMetadata(7, "", -1)})
        assert group_lag(stack, group, ends) == {(topic, 0): 0}
        member.commit({tp: OffsetAndMetadata(6, "", -1)})
        assert group_lag(stack, group, ends) == {(topic, 0): 1}
        member.commit({tp: OffsetAndMetadata(3, "", -1)})
        assert group_lag(stack, group, ends) == {(topic, 0): 3}  # the marker at 3 is no record
    finally:
        producer.close()
        member.close()  # the session's stack removes the topic and group this run made
