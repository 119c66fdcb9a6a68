"""The job's keyed-state store without Flink: steps logged between snapshots, a restore that
replays them, and a cache that spares a step every read of Flink state."""

from __future__ import annotations

import copy
import pickle
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from ingest.schema import Event, encode_event
from ingest.simulator import SimConfig, simulate
from streams.detect_fn import DetectionJobConfig, MicroBatchDetector
from streams.keyed_state import KeyStateStore, StateCache


class PickledValue:
    """A value handle that stores pickles, like Flink's PICKLED_BYTE_ARRAY state."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.writes = 0

    def value(self) -> Any:
        return None if self.data is None else pickle.loads(self.data)

    def update(self, value: Any) -> None:
        self.data = pickle.dumps(value)
        self.writes += 1


class PickledList:
    def __init__(self) -> None:
        self.items: list[bytes] = []

    def get(self) -> list[Any]:
        return [pickle.loads(i) for i in self.items]

    def add(self, value: Any) -> None:
        self.items.append(pickle.dumps(value))

    def clear(self) -> None:
        self.items.clear()


def _batches() -> tuple[MicroBatchDetector, list[tuple[int, list[bytes]]]]:
    sim = simulate(SimConfig(seed=5, tenants=3, vms_per_tenant=2, duration_s=150, events_per_s=120))
    logic = MicroBatchDetector(DetectionJobConfig())
    logic.context.registry = sim.registry
    tenant = next(t.tenant for t in sim.truth if not t.benign and t.category == "port_scan")
    per_second: dict[int, list[Event]] = defaultdict(list)
    for ev in sim.events():
        if ev.tenant == tenant:
            per_second[ev.ts // 1000 * 1000 + 1000].append(ev)
    batches = [(end, [encode_event(e) for e in evs]) for end, evs in sorted(per_second.items())]
    assert len(batches) > 100
    return logic, batches


def _store(logic: MicroBatchDetector, handles: tuple[Any, Any], every: int) -> KeyStateStore:
    snapshot, log = handles
    return KeyStateStore(logic, snapshot=snapshot, log=log, snapshot_every=every)


def _alert_ids(store: KeyStateStore, batches: list[tuple[int, list[bytes]]]) -> list[str]:
    ids = []
    for end, payloads in batches:
        out, _open = store.step("t", payloads, end)
        ids += [a.alert_id for a in out.alerts]
    return ids


@pytest.mark.parametrize("cut", [1, 37, 64, 99])
def test_a_restored_key_replays_its_logged_steps_and_continues_identically(cut: int) -> None:
    logic, batches = _batches()
    whole = _store(logic, (PickledValue(), PickledList()), 10)
    uninterrupted = _alert_ids(whole, batches)
    assert uninterrupted, "the simulation's attacks raise alerts for this tenant"

    handles = (PickledValue(), PickledList())
    before = _alert_ids(_store(logic, handles, 10), batches[:cut])
    # A checkpoint holds exactly the handles' contents; a new store (empty cache) is a restart.
    restored = _store(logic, copy.deepcopy(handles), 10)
    after = _alert_ids(restored, batches[cut:])
    assert before + after == uninterrupted
    final = restored.cache.get("t")
    expected = whole.cache.get("t")
    assert final is not None and expected is not None
    assert final.engine.stats() == expected.engine.stats()  # every event seen once, none twice
    assert restored.replayed_steps == cut % 10  # the steps since the last whole snapshot


def _reconfigured(logic: MicroBatchDetector, site: Path, text: str) -> MicroBatchDetector:
    site.write_text(text, encoding="utf-8")
    other = MicroBatchDetector(DetectionJobConfig(detector_config_file=str(site)))
    other.context.registry = logic.context.registry
    assert other.config_digest != logic.config_digest
    return other


def test_a_key_restored_under_another_configuration_continues_under_it(tmp_path: Path) -> None:
    logic, batches = _batches()
    cut = 64
    uninterrupted = _alert_ids(_store(logic, (PickledValue(), PickledList()), 10), batches)

    # a change this tenant's traffic never meets: the restored key goes on exactly as before
    handles = (PickledValue(), PickledList())
    before = _alert_ids(_store(logic, handles, 10), batches[:cut])
    other = _reconfigured(logic, tmp_path / "ports.yaml",
                          "detectors:\n  c2.beacon:\n    params:\n      allowed_ports: [8443]\n")  # fmt: skip
    restored = _store(other, copy.deepcopy(handles), 10)
    assert before + _alert_ids(restored, batches[cut:]) == uninterrupted
    state = restored.cache.get("t")
    assert state is not None and state.config_digest == other.config_digest
    assert other.reconfigured_keys == 1 and restored.replayed_steps == cut % 10

    # a flood threshold out of reach: from the restore on, the key raises no flood alert, the rest
    # as before
    def by_detector(store: KeyStateStore, part: list[tuple[int, list[bytes]]]) -> list[tuple[str, str]]:
        return [(a.detector, a.alert_id) for end, p in part for a in store.step("t", p, end)[0].alerts]

    flood = "dos.source_flood"
    handles = (PickledValue(), PickledList())
    plain = by_detector(_store(logic, handles, 10), batches[:cut])
    went_on = by_detector(_store(logic, copy.deepcopy(handles), 10), batches[cut:])
    assert any(d == flood for d, _ in went_on), "the tenant's flood goes on after the cut"
    strict = _reconfigured(logic, tmp_path / "flood.yaml",
                           f"detectors:\n  {flood}:\n    params:\n      min_packets_to_one_destination: 10000000\n"
                           "      min_unanswered_tcp_packets: 10000000\n")  # fmt: skip
    after = by_detector(_store(strict, copy.deepcopy(handles), 10), batches[cut:])
    assert plain and after == [x for x in went_on if x[0] != flood]


def test_the_whole_state_is_written_once_every_n_steps_and_the_log_stays_short() -> None:
    logic, batches = _batches()
    snapshot, log = PickledValue(), PickledList()
    store = _store(logic, (snapshot, log), 10)
    _alert_ids(store, batches[:45])
    assert snapshot.writes == 4 and len(log.items) == 5
    assert store.replayed_steps == 0  # the cache served every step


class CountedCalls:
    """A handle that counts the calls made to it, by method."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.calls: dict[str, int] = defaultdict(int)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.handle, name)

        def counted(*args: Any) -> Any:
            self.calls[name] += 1
            return method(*args)

        return counted


def test_a_cached_key_reads_no_flink_state_and_writes_once_a_step() -> None:
    # Each call into Flink costs the job a wait for the interpreter's lock (module docstring).
    logic, batches = _batches()
    snapshot, log = CountedCalls(PickledValue()), CountedCalls(PickledList())
    store = _store(logic, (snapshot, log), 10)
    _alert_ids(store, batches[:45])
    assert snapshot.calls["value"] == log.calls["get"] == 1  # the key's first step: nothing stored yet
    assert snapshot.calls["update"] == log.calls["clear"] == 4
    assert log.calls["add"] == 45 - 4  # every other step
    assert set(snapshot.calls) == {"value", "update"} and set(log.calls) == {"get", "clear", "add"}
    # What a timer asks (has a later step advanced the key past it?) needs no call either.
    calls = sum(snapshot.calls.values()) + sum(log.calls.values())
    assert store.state("t").advanced_to == batches[44][0]
    assert sum(snapshot.calls.values()) + sum(log.calls.values()) == calls


def test_a_restored_key_knows_how_far_its_last_step_advanced_it() -> None:
    logic, batches = _batches()
    handles = (PickledValue(), PickledList())
    _alert_ids(_store(logic, handles, 10), batches[:25])  # a snapshot at step 20, 5 steps logged
    restored = _store(logic, copy.deepcopy(handles), 10)
    assert restored.state("t").advanced_to == batches[24][0] and restored.replayed_steps == 5
    handles[1].clear()  # a checkpoint just after a snapshot: its time is in the snapshot
    assert _store(logic, copy.deepcopy(handles), 10).state("t").advanced_to == batches[19][0]


def test_state_cache_evicts_the_least_recently_used_key() -> None:
    logic = MicroBatchDetector(DetectionJobConfig())
    cache = StateCache(2)
    a, b, c = logic.new_state(), logic.new_state(), logic.new_state()
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c
    assert len(cache) == 2


def _ratio_store(
    logic: MicroBatchDetector, handles: tuple[Any, Any], ratio: float, **bounds: int
) -> KeyStateStore:
    snapshot, log = handles
    return KeyStateStore(logic, snapshot=snapshot, log=log, snapshot_every=4, log_ratio=ratio, **bounds)


def test_a_snapshot_waits_until_the_log_holds_its_ratio_of_the_last_snapshots_bytes() -> None:
    logic, batches = _batches()
    snapshot, log = PickledValue(), PickledList()
    store = _ratio_store(logic, (snapshot, log), 2.0)
    last_written, held_back = 0, 0
    for step, (end, payloads) in enumerate(batches[:80], start=1):
        size = len(pickle.loads(snapshot.data)) if snapshot.data is not None else 0
        logged = sum(len(packed) for packed, _end in log.get() if packed is not None)
        writes = snapshot.writes
        store.step("t", payloads, end)
        due = step - last_written >= 4 and logged >= 2.0 * size
        assert (snapshot.writes > writes) == due, f"step {step}"
        if due:
            last_written = step
            assert not log.items
        held_back += step - last_written >= 4 and not due
    assert held_back > 0 and snapshot.writes > 1  # the ratio held some snapshots back, not all
    state = store.cache.get("t")
    assert state is not None and snapshot.data is not None
    assert state.snapshot_bytes == len(pickle.loads(snapshot.data))


@pytest.mark.parametrize(
    ("bounds", "writes"),
    [
        # the first after 4 steps (no size known yet), then every 10 whatever the ratio says
        ({"max_log_steps": 10}, 5),
        # any logged byte is over the bound: every 4 steps, the least there may be
        ({"max_log_bytes": 1}, 11),
    ],
)
def test_the_log_bounds_force_a_snapshot_of_a_large_state(bounds: dict[str, int], writes: int) -> None:
    logic, batches = _batches()
    handles = (PickledValue(), PickledList())
    store = _ratio_store(logic, handles, 1000.0, **bounds)
    _alert_ids(store, batches[:45])
    assert handles[0].writes == writes and len(handles[1].items) == 1


@pytest.mark.parametrize("cut", [3, 50, 97])
def test_a_restore_with_the_ratio_policy_replays_its_log_and_continues_identically(cut: int) -> None:
    logic, batches = _batches()
    uninterrupted = _alert_ids(_ratio_store(logic, (PickledValue(), PickledList()), 2.0), batches)
    handles = (PickledValue(), PickledList())
    before = _alert_ids(_ratio_store(logic, handles, 2.0), batches[:cut])
    restored = _ratio_store(logic, copy.deepcopy(handles), 2.0)
    after = _alert_ids(restored, batches[cut:])
    assert before + after == uninterrupted
    assert restored.replayed_steps == len(handles[1].items)


def test_a_snapshot_written_as_a_state_object_by_an_older_job_is_restored() -> None:
    logic, batches = _batches()
    uninterrupted = _alert_ids(_store(logic, (PickledValue(), PickledList()), 10), batches)
    handles = (PickledValue(), PickledList())
    before = _alert_ids(_store(logic, handles, 10), batches[:25])
    # What the job wrote before it pickled snapshots itself: the KeyState, pickled by Flink.
    assert handles[0].data is not None
    state = pickle.loads(pickle.loads(handles[0].data))
    handles[0].update(state)
    restored = _ratio_store(logic, copy.deepcopy(handles), 2.0)
    after = _alert_ids(restored, batches[25:])
    assert before + after == uninterrupted and restored.replayed_steps == 5
