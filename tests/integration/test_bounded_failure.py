"""A bounded job that fails ends, with its cause in one line, instead of hanging.

Flink restarts a failed job from its last checkpoint when checkpoints are on, and a bounded Kafka
source restored that way never finishes (FLINK-31006): a replay whose job failed once ran until
CI's time limit. Bounded runs therefore turn restarts off (``create_table_env(restarts=False)``),
and ``run_bounded`` raises ``JobFailed`` naming the root cause. Both sides are run here on the
real mini-cluster with a query that fails on its first record."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from infra.bootstrap import ensure_topics
from infra.clients import kafka_config
from infra.settings import Settings

if TYPE_CHECKING:
    from streams.runner import DetectRun

pytestmark = pytest.mark.integration


def _failing_job(stack: Settings, topic: str, checkpoints: Path, *, restarts: bool) -> DetectRun:
    from streams.flink_env import create_table_env
    from streams.runner import DetectRun

    _env, t_env = create_table_env(
        stack, checkpoint_dir=str(checkpoints), checkpoint_interval_ms=200, restarts=restarts
    )
    t_env.execute_sql(
        f"""CREATE TABLE src (n INT) WITH ('connector' = 'kafka', 'topic' = '{topic}',
            'properties.bootstrap.servers' = '{stack.kafka_bootstrap}', 'format' = 'json',
            'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"""
    )
    t_env.execute_sql("CREATE TABLE sink (q INT) WITH ('connector' = 'blackhole')")
    result = t_env.execute_sql("INSERT INTO sink SELECT 1 / (n - n) FROM src")  # / by zero
    return DetectRun(result.get_job_client(), None)


def test_a_bounded_job_that_fails_ends_with_its_cause_where_a_restarting_one_would_not(
    stack: Settings, tmp_path: Path
) -> None:
    from kafka import KafkaProducer

    from streams.runner import failure_cause, watch

    topic = f"test.flink.fail.{uuid.uuid4().hex[:8]}"
    ensure_topics(stack, [topic], partitions=1)
    producer = KafkaProducer(**kafka_config(stack), acks="all")
    for i in range(20):
        producer.send(topic, json.dumps({"n": i}).encode())
    producer.flush()
    producer.close()

    run = _failing_job(stack, topic, tmp_path / "off", restarts=False)
    assert watch(run, stack, poll_s=0.2) == "FAILED"
    assert failure_cause(run) == "java.lang.ArithmeticException: / by zero"

    # Flink's default with checkpoints on: the same job restarts, and would go on doing so.
    run = _failing_job(stack, topic, tmp_path / "on", restarts=True)
    seen: set[str] = set()
    deadline = time.monotonic() + 120
    try:
        while "RESTARTING" not in seen and time.monotonic() < deadline:
            seen.add(run.job_client.get_job_status().result().name)
            time.sleep(0.1)
        assert "RESTARTING" in seen and not run.done()
    finally:
        run.cancel()
