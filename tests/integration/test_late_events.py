"""Events that reach the job after their path's watermark passed their time go to the DLQ with the
reason, and are neither detected nor lost: the windows of Flink SQL would drop them without a
count. Flows have a watermark of their own, with the exporters' delay."""

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
from ingest.schema import FlowEvent, ProcessEvent, decode_event

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


def test_late_events_go_to_the_dlq_at_their_own_kinds_allowance_and_the_rest_is_counted_once(
    stack: Settings,
) -> None:
    """Process events keep the small allowance (2 s); flows, which exporters write when the flow
    ends, have the flow export delay (6 min): a flow 28 s behind is detected, one behind the flows'
    watermark goes to the DLQ naming that setting."""
    from infra.bootstrap import ensure_topics
    from streams.demo import demo_settings
    from streams.kafka_target import telemetry_producer
    from streams.offsets import committed_offsets, end_offsets

    # Idle partitions (every one but the tenant's) stop holding the watermark back after 2 s.
    s = demo_settings(stack, "late" + uuid.uuid4().hex[:6]).with_overrides(
        source_idle_timeout_ms=2000, checkpoint_interval_ms=1000
    )
    assert (s.out_of_orderness_ms, s.flow_export_delay_ms) == (2000, 360_000)
    ensure_topics(s)
    now = int(time.time() * 1000)
    minute = now - now % 60_000 - 15 * 60_000  # a whole minute, fifteen minutes ago

    def flow(n: int, ts: int) -> FlowEvent:
        return FlowEvent(id=f"late-test-{n}", ts=ts, source="vpcflow", tenant="t-late", src_ip="10.9.0.5",
                         dst_ip="10.9.0.6", dst_port=443, bytes_out=100)  # fmt: skip

    def process(n: int, ts: int) -> ProcessEvent:
        return ProcessEvent(id=f"late-proc-{n}", ts=ts, source="auditd", tenant="t-late", host="hv-late",
                            exe="/usr/bin/true", syscall="execve")  # fmt: skip

    on_time = [flow(i, minute + 1000 + 100 * i) for i in range(300)]  # 30 s of one tenant
    on_time_processes = [process(i, minute + 1000 + 100 * i) for i in range(300)]
    late_process = process(999, minute + 2000)  # sent when the watermark is ~28 s into the minute
    after_process = process(1000, minute + 3 * 60_000)  # moves the process watermark past the minute
    within = flow(999, minute + 2000)  # 28 s behind the newest flow: well within the export delay
    after = flow(1000, minute + 8 * 60_000)  # the flows' watermark: 2 min past the minute's start
    beyond = flow(1001, minute + 5000)  # sent once the flows' watermark has passed the minute
    producer = telemetry_producer(s)

    def send(*events: FlowEvent | ProcessEvent) -> None:
        for event in events:
            producer.send_event(event)
        producer.flush()

    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "--no-restore", "--no-indexer"],
        cwd=PROJECT_ROOT, env={**os.environ, **s.to_env()}, start_new_session=True,
    )  # fmt: skip
    try:
        send(*on_time, *on_time_processes)
        ends = end_offsets(s, [s.telemetry_topics["flow"], s.telemetry_topics["process"]])

        def read_all() -> bool:
            try:
                done = committed_offsets(s, s.detect_group_id)
            except Exception:  # no group before the first checkpoint
                return False
            return all(done.get(tp, 0) >= end for tp, end in ends.items())

        _wait("checkpoint of the on-time events", read_all, proc)
        time.sleep(4)  # past the idle timeout and many watermark intervals
        send(late_process, after_process, within, after)

        def minute_of(kind: str) -> list[dict]:
            return [
                m
                for m in _records(s, s.topic_metrics)
                if m.get("tenant") == "t-late" and m.get("ts") == minute and m.get("kind") == kind
            ]

        counted_flows = _wait("flow posture minute", lambda: minute_of("flow"), proc)
        counted_processes = _wait("process posture minute", lambda: minute_of("process"), proc)
        time.sleep(2)  # many watermark intervals: the flows' watermark is now past the minute
        send(beyond)

        def two_late() -> list[dict]:
            records = _records(s, s.topic_dlq)
            return records if len(records) >= 2 else []

        dlq = _wait("two late events in the DLQ", two_late, proc)
    finally:
        producer.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)

    by_id = {decode_event(r["raw"]).id: r for r in dlq}
    assert sorted(by_id) == ["late-proc-999", "late-test-1001"], [r["reason"] for r in dlq]
    assert {r["source"] for r in dlq} == {"late"}
    assert decode_event(by_id["late-proc-999"]["raw"]) == late_process
    assert by_id["late-proc-999"]["reason"].startswith("late auditd event late-proc-999: its time ")
    assert "out_of_orderness_ms, 2000 ms" in by_id["late-proc-999"]["reason"]
    assert decode_event(by_id["late-test-1001"]["raw"]) == beyond
    assert "flow_export_delay_ms, 360000 ms" in by_id["late-test-1001"]["reason"]
    # Detected once each: the process events on time, the flows on time and the one 28 s behind.
    assert sum(m["events"] for m in counted_processes) == len(on_time_processes)
    assert sum(m["events"] for m in counted_flows) == len(on_time) + 1
