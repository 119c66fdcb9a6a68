"""A key's alerts must not depend on when the watermark reaches its quiet-key timers.

In the job a key's engine steps once per micro-batch (advanced to the batch window's end) and,
while the key is quiet, at event-time timers, advanced as far as ``closed_batches_end`` of the
watermark at that moment. When the watermark reaches a timer depends on the run (how records and
watermarks interleave, a restore after a crash), so the same batches with timers fired at other
watermarks must give the same alerts and posture records, byte for byte. Advanced to the raw
watermark, events of a batch window still open were judged late when their batch came (the
campaign's kill -9 test: a password-guessing alert of 40 failures instead of 52).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from functools import cache

import pytest

from detectors.alert import encode_alert
from ingest.producer import event_key
from ingest.schema import FlowEvent, encode_event
from ingest.simulator import SimConfig, simulate
from streams.detect_fn import END_OF_TIME, DetectionJobConfig, MicroBatchDetector, closed_batches_end

TICK = 1000
Batches = dict[int, list[bytes]]


@cache
def _keys() -> tuple[MicroBatchDetector, dict[str, Batches]]:
    """Per job key (the event's key and its path, as the job partitions them), the 1-s batches."""
    sim = simulate(SimConfig(seed=11, tenants=3, vms_per_tenant=2, duration_s=1800, events_per_s=4))
    logic = MicroBatchDetector(DetectionJobConfig())
    logic.context.registry = sim.registry
    keys: dict[str, Batches] = defaultdict(lambda: defaultdict(list))
    for ev in sim.events():
        path = "flow" if isinstance(ev, FlowEvent) else "other"
        keys[f"{event_key(ev) or '-'}|{path}"][ev.ts - ev.ts % TICK + TICK].append(encode_event(ev))
    return logic, keys


def _outputs(
    logic: MicroBatchDetector, batches: Batches, rng: random.Random | None, advance: Callable[[int], int]
) -> list[bytes | str]:
    """The key's outputs in order. With ``rng``, quiet-key timers fire between batches at random
    watermarks: each at or after the previous step's end plus a tick, before the next batch's
    window closes (its last millisecond: the watermark that fires it)."""
    state = logic.new_state()
    logic.attach(state)
    out: list[bytes | str] = []

    def step(payloads: list[bytes] | None, advance_to: int) -> None:
        o = logic.step(state, "k", payloads, advance_to)
        out.extend(encode_alert(a) for a in o.alerts)
        out.extend(repr(sorted(m.items())) for m in o.metrics)

    done = None
    for end in sorted(batches):
        while rng is not None and done is not None and done + TICK <= end - 2 and rng.random() < 0.7:
            done = advance(rng.randint(done + TICK, end - 2))
            step(None, done)
        step(batches[end], end)
        done = end
    step(None, END_OF_TIME)
    return out


def test_closed_batches_end_is_the_end_of_the_last_window_the_watermark_fired() -> None:
    assert closed_batches_end(4_998, TICK) == 4_000  # [4000, 5000) fires at 4999
    assert closed_batches_end(4_999, TICK) == 5_000
    assert closed_batches_end(5_000, TICK) == 5_000
    assert closed_batches_end(END_OF_TIME, TICK) == END_OF_TIME


@pytest.mark.parametrize("seed", [1, 2])
def test_a_keys_alerts_do_not_depend_on_when_its_timers_fire(seed: int) -> None:
    logic, keys = _keys()
    rng = random.Random(seed)
    alerts = 0
    for key in sorted(keys):
        expected = _outputs(logic, keys[key], None, lambda wm: wm)
        alerts += sum(isinstance(o, bytes) for o in expected)
        got = _outputs(logic, keys[key], rng, lambda wm: closed_batches_end(wm, TICK))
        assert got == expected, key
    assert alerts >= 10, "the simulation's attacks raise alerts"


def test_advancing_quiet_keys_to_the_raw_watermark_would_change_alerts() -> None:
    """The check above can fail: the old policy (advance to the watermark) changes some key's output."""
    logic, keys = _keys()
    rng = random.Random(1)
    changed = [
        key
        for key in sorted(keys)
        if _outputs(logic, keys[key], rng, lambda wm: wm) != _outputs(logic, keys[key], None, lambda wm: wm)
    ]
    assert changed
