"""The detectors' failures and overflows as the job reports them (streams/detector_health.py,
``MicroBatchDetector.step``)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from ingest.schema import FlowEvent, encode_event
from streams.detect_fn import END_OF_TIME, DetectionJobConfig, KeyState, MicroBatchDetector
from streams.detector_health import DetectorHealth

MIN = 60_000
T0 = 1_700_000_040_000  # 2023-11-14T22:14:00Z, a minute boundary
assert T0 % MIN == 0


def test_increases_are_reported_once_per_minute_after_the_minute_ends() -> None:
    health = DetectorHealth()
    health.observe({"a": (0, 0), "b": (0, 0)}, T0 + 1_000)
    assert not health  # nothing failed: nothing to report
    health.observe({"a": (2, 0), "b": (0, 0)}, T0 + 5_000)
    health.observe({"a": (3, 0), "b": (0, 40)}, T0 + 59_999)
    health.observe({"a": (4, 0), "b": (0, 40)}, T0 + MIN + 1)
    assert health.close(T0 + MIN - 1, "k") == []  # the minute has not ended
    first = health.close(T0 + MIN, "k")
    assert first == [
        {"ts": T0, "tenant": "-", "kind": "detector", "key": "k", "detector": "a", "detector_errors": 3, "overflow": 0},
        {"ts": T0, "tenant": "-", "kind": "detector", "key": "k", "detector": "b", "detector_errors": 0, "overflow": 40},
    ]  # fmt: skip
    assert health.close(T0 + MIN, "k") == []  # emitted once
    assert [r["detector_errors"] for r in health.close(T0 + 2 * MIN, "k")] == [1]
    assert not health


def test_a_fresh_engines_totals_count_from_zero() -> None:
    health = DetectorHealth()
    health.observe({"a": (5, 0)}, T0)
    health.observe({"a": (1, 0)}, T0 + MIN)  # the key's engine was rebuilt: its total restarted
    assert [r["detector_errors"] for r in health.close(T0 + 2 * MIN, "k")] == [5, 1]


def test_health_pickles_with_its_pending_minutes() -> None:
    health = DetectorHealth()
    health.observe({"a": (2, 1)}, T0)
    again = pickle.loads(pickle.dumps(health))
    assert again.close(T0 + MIN, "k") == health.close(T0 + MIN, "k") != []


def _payload(i: int, ts: int) -> bytes:
    event = FlowEvent(id=f"f{i}", ts=ts, source="sim", tenant="t-a", src_ip="10.1.0.5", dst_ip="198.51.100.7",
                      dst_port=443, bytes_out=100, bytes_in=50)  # fmt: skip
    return encode_event(event)


def test_the_job_step_reports_what_the_engine_counted_in_the_minute_it_happened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logic = MicroBatchDetector(DetectionJobConfig())
    state = logic.new_state()
    totals: dict[str, tuple[int, int]] = {"dos.source_flood": (0, 0)}
    monkeypatch.setattr(state.engine, "health_counts", lambda: dict(totals))

    def detector_records(out: Any) -> list[dict[str, Any]]:
        return [m for m in out.metrics if m["kind"] == "detector"]

    out = logic.step(state, "t-a/vm-1", [_payload(1, T0 + 500)], T0 + 1_000)
    assert detector_records(out) == []
    totals["dos.source_flood"] = (2, 7)  # failures and overflows in the batch of second 30
    out = logic.step(state, "t-a/vm-1", [_payload(2, T0 + 30_500)], T0 + 31_000)
    assert detector_records(out) == [] and logic.has_open_work(state)  # its minute is still open
    out = logic.step(state, "t-a/vm-1", [_payload(3, T0 + MIN + 500)], T0 + MIN + 1_000)
    assert detector_records(out) == [
        {"ts": T0, "tenant": "-", "kind": "detector", "key": "t-a/vm-1", "detector": "dos.source_flood",
         "detector_errors": 2, "overflow": 7},
    ]  # fmt: skip
    # At the end of input the final watermark flushes a failure into the last minute of events.
    totals["dos.source_flood"] = (3, 7)
    out = logic.step(state, "t-a/vm-1", None, END_OF_TIME)
    assert [(r["ts"], r["detector_errors"]) for r in detector_records(out)] == [(T0 + MIN, 1)]


def test_a_key_state_of_an_earlier_version_restores_with_empty_health() -> None:
    logic = MicroBatchDetector(DetectionJobConfig())
    state = logic.new_state()
    logic.detach(state)
    old = dict(state.__dict__)
    del old["health"]
    old["reported_failures"] = {}  # the unused field earlier checkpoints hold
    restored = KeyState.__new__(KeyState)
    restored.__setstate__(old)
    assert isinstance(restored.health, DetectorHealth) and not hasattr(restored, "reported_failures")
    assert isinstance(pickle.loads(pickle.dumps(restored)).health, DetectorHealth)
