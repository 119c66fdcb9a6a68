"""Events that reach the job after the watermark passed their time go to the DLQ with the reason,
and are neither detected nor lost: the windows of Flink SQL would drop them without a count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from infra.settings import PROJECT_ROOT, Settings
from ingest.schema import FlowEvent, decode_event

pytestmark = pytest.mark.integration


def _records(settings: Settings, topic: str) -> list[dict]:
    """Every record now in ``topic``, decoded as JSON."""
    from streams.demo import records_in_topic

    return [json.loads(value) for _, value in records_in_topic(settings, topic)]


def _wait(what: str, check, proc: subprocess.Popen[bytes], timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert proc.poll() is None, f"the job ended while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(1)
    return result


def test_an_event_behind_the_watermark_goes_to_the_dlq_and_the_rest_is_counted_once(stack: Settings) -> None:
    from infra.bootstrap import ensure_topics
    from streams.demo import demo_settings
    from streams.kafka_target import telemetry_producer
    from streams.offsets import committed_offsets, end_offsets

    # Idle partitions (every one but the tenant's) stop holding the watermark back after 2 s.
    s = demo_settings(stack, "late" + uuid.uuid4().hex[:6]).with_overrides(
        source_idle_timeout_ms=2000, checkpoint_interval_ms=1000
    )
    ensure_topics(s)
    now = int(time.time() * 1000)
    minute = now - now % 60_000 - 10 * 60_000  # a whole minute, ten minutes ago

    def flow(n: int, ts: int) -> FlowEvent:
        return FlowEvent(id=f"late-test-{n}", ts=ts, source="vpcflow", tenant="t-late", src_ip="10.9.0.5",
                         dst_ip="10.9.0.6", dst_port=443, bytes_out=100)  # fmt: skip

    on_time = [flow(i, minute + 1000 + 100 * i) for i in range(300)]  # 30 s of one tenant
    late = flow(999, minute + 2000)  # sent when the watermark is ~29 s into the minute
    after = flow(1000, minute + 3 * 60_000)  # moves the watermark past the minute's end
    producer = telemetry_producer(s)

    def send(*events: FlowEvent) -> None:
        for event in events:
            producer.send_event(event)
        producer.flush()

    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "--no-restore", "--no-indexer"],
        cwd=PROJECT_ROOT, env={**os.environ, **s.to_env()}, start_new_session=True,
    )  # fmt: skip
    try:
        send(*on_time)
        ends = end_offsets(s, [s.telemetry_topics["flow"]])

        def read_all() -> bool:
            try:
                done = committed_offsets(s, s.detect_group_id)
            except Exception:  # no group before the first checkpoint
                return False
            return all(done.get(tp, 0) >= end for tp, end in ends.items())

        _wait("checkpoint of the on-time events", read_all, proc)
        time.sleep(4)  # past the idle timeout and many watermark intervals
        send(late, after)
        dlq = _wait("late event in the DLQ", lambda: _records(s, s.topic_dlq), proc)
        counted = _wait(
            "posture minute",
            lambda: [
                m
                for m in _records(s, s.topic_metrics)
                if m.get("tenant") == "t-late" and m.get("ts") == minute
            ],
            proc,
        )
    finally:
        producer.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)

    assert len(dlq) == 1 and decode_event(dlq[0]["raw"]) == late
    assert dlq[0]["source"] == "late"
    assert dlq[0]["reason"].startswith("late vpcflow event late-test-999: its time ")
    assert "behind the watermark" in dlq[0]["reason"]
    # The on-time events were detected, each once; the late one was not, so nothing is counted twice.
    assert sum(m["events"] for m in counted if m.get("kind") == "flow") == len(on_time)
