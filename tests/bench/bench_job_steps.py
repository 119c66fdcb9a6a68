"""The detection job's Python work without Flink: the streams bench's backlog cut as the job's SQL
cuts it (per partition key and one-second window, flows on their own path) and run through the
keyed function's steps (``MicroBatchDetector`` in a ``KeyStateStore``) with in-memory state
handles that pickle what they hold, as Flink's ``PICKLED_BYTE_ARRAY`` state does, at the worker's
garbage-collector thresholds. CPU seconds of this process (``time.process_time``), so the figure is
free of the JVM, Kafka and the GIL handoffs of the real job (``bench_streams`` measures those), and
steady enough to compare a change to the step logic in one run. Reports figures, asserts nothing.

Two passes over the same steps: the first timed whole (``us_per_event``, per path), the second
with each stage of a step timed (``split_s``): decoding the payloads, the engine's ``process`` and
``advance``, the posture counts, pickling the snapshots, packing the log's entries; ``other`` is
the rest (sorting, health, the store). ``full_collections``: generation-2 collections in the
first pass. ``SSA_BENCH_STEPS_S`` sets the backlog's length (300 s of event time by default).
"""

from __future__ import annotations

import gc
import os
import pickle
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import streams.detect_fn as detect_fn
import streams.keyed_state as keyed_state
from detectors.engine import DetectionEngine
from ingest.producer import event_key
from ingest.schema import encode_event
from ingest.simulator import SimConfig, mean_rate_slice_start_ms, simulate
from streams.detect_fn import GC_YOUNG_THRESHOLD, DetectionJobConfig, MicroBatchDetector
from streams.keyed_state import KeyStateStore
from streams.posture import PostureState

__all__ = ["run"]

_START_MS = 1_796_000_000_000  # a fixed day: the same backlog every run


class _Value:
    """A keyed ValueState of pickled bytes; ``key`` is set before each step, as Flink scopes it."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.key = ""

    def value(self) -> Any:
        held = self.data.get(self.key)
        return None if held is None else pickle.loads(held)

    def update(self, value: Any) -> None:
        self.data[self.key] = pickle.dumps(value)


class _List:
    def __init__(self) -> None:
        self.data: dict[str, list[bytes]] = defaultdict(list)
        self.key = ""

    def get(self) -> list[Any]:
        return [pickle.loads(x) for x in self.data[self.key]]

    def add(self, value: Any) -> None:
        self.data[self.key].append(pickle.dumps(value))

    def clear(self) -> None:
        self.data[self.key].clear()


def _steps(seconds: int) -> tuple[list[tuple[int, str, str, list[bytes]]], int]:
    """The backlog's steps in the order the job meets them: (window end, path, key, payloads)."""
    start = mean_rate_slice_start_ms(_START_MS, seconds * 1000)
    sim = simulate(SimConfig(seed=21, tenants=16, duration_s=seconds, start_ms=start, events_per_s=2500))
    batches: dict[tuple[int, str, str], list[bytes]] = defaultdict(list)
    events = 0
    for ev in sim.events():
        path = "flow" if ev.__struct_config__.tag == "flow" else "other"
        batches[(ev.ts // 1000 * 1000 + 1000, path, event_key(ev) or "-")].append(encode_event(ev))
        events += 1
    return [(end, path, key, batches[(end, path, key)]) for end, path, key in sorted(batches)], events


def _stores() -> dict[str, KeyStateStore]:
    out = {}
    for path, suffix in (("flow", "#flow"), ("other", "")):
        job = DetectionJobConfig(posture_key_suffix=suffix)
        out[path] = KeyStateStore(
            MicroBatchDetector(job), snapshot=_Value(), log=_List(), cache_keys=job.state_cache_keys,
            snapshot_every=job.snapshot_every_steps, log_ratio=job.snapshot_log_ratio,
            max_log_steps=job.max_log_steps, max_log_bytes=job.max_log_bytes,
        )  # fmt: skip
    return out


def _replay(steps: list[tuple[int, str, str, list[bytes]]]) -> dict[str, float]:
    stores = _stores()
    cpu: dict[str, float] = defaultdict(float)
    for end, path, key, payloads in steps:
        store = stores[path]
        store.snapshot.key = store.log.key = key  # type: ignore[attr-defined]
        t0 = time.process_time()
        store.step(key, payloads, end)
        cpu[path] += time.process_time() - t0
    return cpu


@contextmanager
def _timed_stages(split: dict[str, float]) -> Iterator[None]:
    """Each stage of a step timed into ``split`` (CPU seconds), its function restored after."""
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, stage: str) -> None:
        inner: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                split[stage] += time.process_time() - t0

        patched.append((owner, name, inner))
        setattr(owner, name, timed)

    class _Pickle:  # keyed_state's pickle: only the snapshots go through its dumps
        HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
        dumps = staticmethod(pickle.dumps)
        loads = staticmethod(pickle.loads)

    wrap(detect_fn, "_decode_batch", "decode")
    wrap(DetectionEngine, "process", "engine_process")
    wrap(DetectionEngine, "advance", "engine_advance")
    wrap(PostureState, "add_all", "posture")
    wrap(_Pickle, "dumps", "snapshot_pickle")
    wrap(keyed_state, "_pack", "log_pack")
    patched.append((keyed_state, "pickle", keyed_state.pickle))
    keyed_state.pickle = _Pickle  # type: ignore[assignment]
    try:
        yield
    finally:
        for owner, name, inner in reversed(patched):
            setattr(owner, name, inner)


def run(ctx: Any) -> dict[str, Any]:
    seconds = int(os.environ.get("SSA_BENCH_STEPS_S", "300"))
    steps, events = _steps(seconds)
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)  # as the job's worker (streams.detect_fn)
    try:
        full_before = gc.get_stats()[2]["collections"]
        cpu = _replay(steps)
        full = gc.get_stats()[2]["collections"] - full_before
        split: dict[str, float] = defaultdict(float)
        with _timed_stages(split):
            split_cpu = _replay(steps)
    finally:
        gc.set_threshold(*thresholds)
    total = sum(cpu.values())
    split["other"] = sum(split_cpu.values()) - sum(split.values())
    return {
        "backlog_event_time_s": seconds,
        "events": events,
        "steps": len(steps),
        "cpu_s": {path: round(s, 2) for path, s in cpu.items()},
        "us_per_event": round(total / events * 1e6, 2),
        "full_collections": full,
        "split_s": {stage: round(s, 2) for stage, s in sorted(split.items(), key=lambda kv: -kv[1])},
        "split_pass_cpu_s": round(sum(split_cpu.values()), 2),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(None), indent=1))
