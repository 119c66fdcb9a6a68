"""The engine's contract: windows aligned to epoch multiples, watermark and late events, one batch
equals the same events streamed (any chunking, pickled mid-stream, or cut into Flink batches),
deterministic alert ids, suppression, failure accounting, registry reload and the clock."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import random
from collections.abc import Hashable
from typing import Any

import pytest

from detectors.alert import Alert, make_alert_id
from detectors.base import Batch, Finding
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine, DetectorFailure, Lateness
from detectors.registry import all_detectors, group_by_window
from detectors.rule import Hit, Rule
from detectors.rules.vm_escape.emulator_child_process import EmulatorChildProcess
from detectors.samples import SAMPLE_START_MS, load_cases, sample_files, samples_registry
from detectors.windows import Window, WindowSpec
from ingest.schema import AuthEvent, Event, FlowEvent, ProcessEvent
from ingest.tenants import RegistryWatcher

REGISTRY = samples_registry()
T0 = SAMPLE_START_MS - SAMPLE_START_MS % 600_000


def _sample_stream() -> list[Event]:
    """Every sample case, each shifted into its own 10-minute slot, as one ts-ordered stream."""
    events: list[Event] = []
    slot = 0
    for path in sample_files():
        for case in load_cases(path):
            shift = slot * 600_000
            events.extend(
                type(e)(
                    **{
                        **{f: getattr(e, f) for f in e.__struct_fields__},
                        "ts": e.ts + shift,
                        "id": f"{e.id}@{slot}",
                    }
                )
                for e in case.events
            )
            slot += 1
    events.sort(key=lambda e: (e.ts, e.id))
    return events


STREAM = _sample_stream()


def _engine(config: DetectorConfig | None = None, **kw: Any) -> DetectionEngine:
    cfg = config or DetectorConfig.default()
    return DetectionEngine(all_detectors(cfg), DetectionContext(REGISTRY, cfg, **kw), strict=True)


def _key(a: Alert) -> tuple[str, int]:
    return (a.alert_id, a.ts)


def _same(a: list[Alert], b: list[Alert]) -> None:
    assert sorted(a, key=_key) == sorted(b, key=_key)


def test_stream_raises_alerts_in_every_category() -> None:
    alerts = _engine().run(STREAM)
    assert {a.category for a in alerts} - {"anomaly"} == {
        "vm_escape", "cross_tenant_leak", "port_scan", "brute_force", "exfiltration", "cryptomining", "dos",
        "command_and_control", "spam",
    }  # fmt: skip


def test_windows_align_to_epoch_multiples_of_their_size_or_slide() -> None:
    engine = _engine()
    sizes = {d.meta.id: d.window.size_ms for d in engine.detectors}
    steps = {d.meta.id: d.window.pane_ms for d in engine.detectors}
    for a in engine.run(STREAM):
        start, end = a.evidence["window_start"], a.evidence["window_end"]
        assert end - start == sizes[a.detector]
        assert start % steps[a.detector] == 0
        assert start <= a.first_seen <= a.last_seen < end
        assert a.ts == end  # default clock: the window end


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_batch_equals_the_same_events_streamed_in_any_chunks(seed: int) -> None:
    whole = _engine().run(STREAM)
    rng = random.Random(seed)
    engine = _engine()
    streamed: list[Alert] = []
    i = 0
    while i < len(STREAM):
        n = rng.choice((1, 2, 7, 50, 400, 5000))
        streamed.extend(engine.process(STREAM[i : i + n]))
        i += n
    streamed.extend(engine.flush())
    _same(whole, streamed)


def test_engine_pickled_mid_stream_resumes_identically() -> None:
    whole = _engine().run(STREAM)
    engine = _engine()
    half = len(STREAM) // 2
    first = engine.process(STREAM[:half])
    assert engine.state_size() > 0
    revived: DetectionEngine = pickle.loads(pickle.dumps(engine))
    rest = revived.process(STREAM[half:]) + revived.flush()
    _same(whole, first + rest)


def test_fresh_engine_per_aligned_batch_and_partition_equals_one_engine() -> None:
    """A fresh engine per epoch-aligned batch of the longest window per tenant, then flush, gives the
    alerts of one engine, for the detectors whose state lives in their windows: the anomaly models
    learn across windows, the emulator rules keep a host's process table and a sliding window
    (c2.beacon's) overlaps the next batch (the job keeps every key's engine in keyed state, so
    none is ever restarted per batch)."""
    cfg = DetectorConfig.default()

    def window_local() -> DetectionEngine:
        dets = [
            d
            for d in all_detectors(cfg, include_anomaly=False)
            if not hasattr(d, "emu") and not d.window.sliding
        ]
        return DetectionEngine(dets, DetectionContext(REGISTRY, cfg), strict=True)

    whole = window_local().run(STREAM)
    batch_ms = max(d.window.size_ms for d in window_local().detectors)
    window_local().check_batch_window(batch_ms)
    parts: dict[tuple[int, str | None], list[Event]] = {}
    for ev in STREAM:
        parts.setdefault((ev.ts - ev.ts % batch_ms, ev.tenant), []).append(ev)
    pieces: list[Alert] = []
    for key in sorted(parts, key=lambda k: (k[0], k[1] or "")):
        pieces.extend(window_local().run(parts[key]))
    _same(whole, pieces)


def test_check_batch_window_names_detectors_that_do_not_fit() -> None:
    engine = _engine()
    with pytest.raises(ValueError, match=r"brute_force\.auth_failures"):
        engine.check_batch_window(60_000)
    with pytest.raises(ValueError, match=r"c2\.beacon \(sliding"):
        engine.check_batch_window(24 * 3_600_000)  # a sliding window never fits a batch
    groups = group_by_window(d for d in engine.detectors if not d.window.sliding)
    assert 60_000 in groups and 600_000 in groups
    for size, dets in groups.items():
        DetectionEngine(dets, DetectionContext(REGISTRY)).check_batch_window(size)


def test_alert_ids_are_deterministic_and_unique() -> None:
    a = _engine().run(STREAM)
    b = _engine().run(STREAM)
    assert [x.alert_id for x in a] == [x.alert_id for x in b]
    assert len({x.alert_id for x in a}) == len(a)


def test_alert_ids_keyed_with_the_providers_secret_are_stable_and_unguessable() -> None:
    """A tenant holding a copy of an alert can hash a guess of the other side (detector, entity,
    window, tenant) and compare: with the provider's secret the ids differ from that hash."""
    plain = _engine().run(STREAM)
    keyed = [DetectionEngine(all_detectors(DetectorConfig.default()),
                             DetectionContext(REGISTRY, alert_id_secret=secret)).run(STREAM)
             for secret in (b"k" * 32, b"k" * 32, b"j" * 32)]  # fmt: skip
    ids = [[x.alert_id for x in run] for run in (plain, *keyed)]
    assert ids[1] == ids[2] and len(set(ids[1])) == len(ids[1])  # deterministic, one per alert
    assert not set(ids[0]) & set(ids[1]) and not set(ids[1]) & set(ids[3])
    assert [(x.detector, x.entity, x.first_seen) for x in keyed[0]] == [
        (x.detector, x.entity, x.first_seen) for x in plain
    ]
    x = keyed[0][0]
    guess = make_alert_id(
        x.detector, x.entity, x.evidence["window_start"], x.evidence["window_end"], x.tenant
    )
    assert guess == plain[0].alert_id != x.alert_id
    assert make_alert_id(x.detector, x.entity, x.evidence["window_start"], x.evidence["window_end"], x.tenant,
                         b"k" * 32) == x.alert_id  # fmt: skip
    assert "kkkk" not in repr(DetectionContext(REGISTRY, alert_id_secret=b"k" * 32))  # never printed


def _qemu(i: int, ts: int, path: str = "/dev/mem", vm: str = "vm-acme-01") -> ProcessEvent:
    return ProcessEvent(
        id=f"q{i}", ts=ts, source="test", tenant="t-acme", host="hv-01", vm=vm,
        exe="/usr/bin/qemu-system-x86_64", syscall="openat", path=path,
    )  # fmt: skip


def test_suppression_one_alert_per_entity_and_window_counting_occurrences() -> None:
    events = [_qemu(i, T0 + 1000 * i) for i in range(5)] + [_qemu(9, T0 + 61_000)]
    alerts = _engine().run(events)
    assert len(alerts) == 2
    first = min(alerts, key=lambda a: a.first_seen)
    assert first.evidence["count"] == 5
    assert first.evidence["event_ids"] == [f"q{i}" for i in range(5)]
    assert first.evidence["details"] == {"host memory: openat /dev/mem": 5}


def test_late_events_are_counted_and_rule_hits_still_alert() -> None:
    cfg = DetectorConfig.default().merged({"engine": {"max_out_of_orderness_ms": 1000}})
    engine = _engine(cfg)
    out = engine.process([_qemu(1, T0 + 120_000)])  # watermark passes the first minute
    out += engine.process([_qemu(2, T0 + 5_000)])  # 115 s late: its window [T0, T0+60 s) closed
    out += engine.flush()
    stats = engine.stats()
    assert stats["detectors"]["vm_escape.emulator_foreign_file"]["late"] == 1
    late = [a for a in out if a.evidence.get("late")]
    assert len(late) == 1 and late[0].evidence["event_ids"] == ["q2"]
    assert late[0].alert_id != next(a for a in out if not a.evidence.get("late")).alert_id
    # windowed detectors count late events and drop them
    auth_late = AuthEvent(
        id="a1", ts=T0 - 700_000, source="test", user="root", src_ip="1.2.3.4", result="failure"
    )
    engine.process([auth_late])
    assert engine.stats()["detectors"]["brute_force.auth_failures"]["late"] == 1


def test_a_late_rule_hit_is_raised_by_the_next_process_or_advance_and_survives_pickling() -> None:
    cfg = DetectorConfig.default().merged({"engine": {"max_out_of_orderness_ms": 1000}})

    def holding_a_late_hit() -> DetectionEngine:
        engine = _engine(cfg)
        assert engine.process([_qemu(1, T0 + 120_000)]) == []  # the first minute closes, empty
        engine.late([_qemu(2, T0 + 5_000)])  # as the job's source finds a late event
        return engine

    def late_ids(alerts: list[Alert]) -> list[list[str]]:
        return [a.evidence["event_ids"] for a in alerts if a.evidence.get("late")]

    assert late_ids(holding_a_late_hit().process([])) == [["q2"]]
    engine = holding_a_late_hit()  # watermark T0 + 119 s: no window ends by T0 + 119.5 s
    assert late_ids(engine.advance(T0 + 119_500)) == [["q2"]]
    assert late_ids(engine.process([])) == []  # raised once
    assert late_ids(pickle.loads(pickle.dumps(holding_a_late_hit())).process([])) == [["q2"]]


def test_late_policy_drop_only_counts() -> None:
    cfg = DetectorConfig.default().merged(
        {"engine": {"max_out_of_orderness_ms": 0, "late_rule_hits": "drop"}}
    )
    engine = _engine(cfg)
    out = engine.process([_qemu(1, T0 + 120_000), _qemu(2, T0 + 1_000)]) + engine.flush()
    assert [a.evidence["event_ids"] for a in out] == [["q1"]]
    assert engine.stats()["late"] >= 1


def test_events_within_the_out_of_orderness_bound_are_not_late() -> None:
    engine = _engine()  # 5 s bound
    out = engine.process([_qemu(1, T0 + 60_500), _qemu(2, T0 + 58_000)]) + engine.flush()
    assert engine.stats()["late"] == 0
    assert sorted(a.evidence["count"] for a in out) == [1, 1]


def test_events_after_flush_for_closed_windows_are_late() -> None:
    engine = _engine()
    engine.run([_qemu(1, T0 + 1000)])
    out = engine.process([_qemu(2, T0 + 2000)])
    stats = engine.stats()
    assert stats["late_events"] == 1
    assert stats["detectors"]["vm_escape.emulator_foreign_file"]["late"] == 1
    assert [a.evidence.get("late") for a in out] == [True]


class _Boom(Rule):
    """A test-only rule that raises on the event with id ``bad``."""

    meta = dataclasses.replace(EmulatorChildProcess.meta, id="vm_escape.boom_test", title="boom")

    def match(self, event: Event) -> Hit | None:
        if event.id == "bad":
            raise RuntimeError("kaput")
        return None


def test_failing_detector_is_counted_and_logged_with_event_id(caplog: pytest.LogCaptureFixture) -> None:
    cfg = DetectorConfig.default()
    raw = cfg.to_dict()
    raw["detectors"]["vm_escape.boom_test"] = {"params": {}}
    cfg2 = DetectorConfig.from_dict(raw)
    dets = [*all_detectors(cfg2), _Boom(cfg2)]
    engine = DetectionEngine(dets, DetectionContext(REGISTRY, cfg2))
    events = [
        _qemu(1, T0 + 1000),
        ProcessEvent(id="bad", ts=T0 + 2000, source="t", exe="/x", syscall="execve"),
    ]
    with caplog.at_level(logging.ERROR, logger="detectors.engine"):
        alerts = engine.run(events)
    assert any(a.detector == "vm_escape.emulator_foreign_file" for a in alerts)  # others carry on
    assert engine.stats()["failures"] == 1
    assert engine.health_counts()["vm_escape.boom_test"] == (1, 0)  # what the job reports per minute
    assert engine.failures == [
        {"detector": "vm_escape.boom_test", "event_id": "bad", "error": "RuntimeError('kaput')"}
    ]
    assert "vm_escape.boom_test failed on event bad" in caplog.text
    strict = DetectionEngine(dets[-1:], DetectionContext(REGISTRY, cfg2), strict=True)
    with pytest.raises(DetectorFailure, match="event bad"):
        strict.run(events)


def test_clock_sets_detection_time() -> None:
    alerts = _engine(clock=lambda: 42).run([_qemu(1, T0 + 1000)])
    assert [a.ts for a in alerts] == [42]


def test_registry_watcher_reload_is_picked_up(tmp_path) -> None:
    path = tmp_path / "tenants.yaml"
    REGISTRY.dump(path)
    watcher = RegistryWatcher(path, check_interval_s=0.0)
    cfg = DetectorConfig.default()
    engine = DetectionEngine(all_detectors(cfg), DetectionContext(watcher, cfg), strict=True)

    def flow(i: int, ts: int) -> FlowEvent:
        return FlowEvent(id=f"f{i}", ts=ts, source="t", tenant="t-acme", src_ip="10.1.1.10", dst_ip="10.3.1.10",
                         dst_port=5432, bytes_out=900, packets_out=2, packets_in=2)  # fmt: skip

    first = engine.process([flow(1, T0 + 1000)]) + engine.process([flow(2, T0 + 70_000)])
    assert [a.detector for a in first] == ["cross_tenant.unpeered_flow"]
    data = REGISTRY.to_dict()
    data["tenants"][0]["peerings"].append("t-gamma")
    import yaml

    path.write_text(yaml.safe_dump(data) + "\n# changed\n")
    second = engine.process([flow(3, T0 + 200_000)]) + engine.flush()
    assert [a.evidence["event_ids"] for a in second] == [["f2"]]  # f3 is peered now


def test_sliding_windows_are_aligned_and_suppress_overlaps() -> None:
    cfg = DetectorConfig.default().merged(
        {"detectors": {"port_scan.failed_probe_scan": {"window_ms": 300_000, "slide_ms": 60_000}}}
    )
    scan = [
        FlowEvent(
            id=f"s{i}",
            ts=T0 + 1000 * i,
            source="t",
            tenant="t-acme",
            src_ip="203.0.113.9",
            dst_ip="10.1.1.10",
            dst_port=i + 1,
            action="reject",
        )
        for i in range(100)
    ]
    engine = _engine(cfg)
    alerts = [a for a in engine.run(scan) if a.detector == "port_scan.failed_probe_scan"]
    # 100 s of scanning: the first 5-minute window ending after a minute alerts (latency of a slide,
    # not of a window); the 4 overlapping windows after it are suppressed; the next alert's window
    # does not overlap the first one.
    spans = sorted((a.evidence["window_start"], a.evidence["window_end"]) for a in alerts)
    assert spans == [(T0 - 240_000, T0 + 60_000), (T0 + 60_000, T0 + 360_000)]
    assert alerts[0].ts - T0 == 60_000 or alerts[1].ts - T0 == 60_000
    assert engine.stats()["detectors"]["port_scan.failed_probe_scan"]["suppressed"] >= 1
    with pytest.raises(ValueError, match="sliding"):
        engine.check_batch_window(600_000)
    assert WindowSpec(300_000, 60_000).windows_of(T0 + 1) == [
        Window(T0 - 240_000 + k * 60_000, T0 + 60_000 + k * 60_000) for k in range(5)
    ]


def test_state_is_freed_when_windows_close() -> None:
    engine = _engine()
    engine.process(STREAM)
    engine.flush()
    assert engine.state_size() == 0
    assert all(not d._panes for d in engine.detectors)


class _Counter(Rule):
    """Not registered: checks the Batch given to detectors is of one kind, in stream order."""

    meta = _Boom.meta

    def match(self, event: Event) -> Hit | None:
        return None

    def observe_batch(self, batch: Batch) -> None:
        self.seen = getattr(self, "seen", []) + [e.ts for e in batch.events]
        assert len({type(e) for e in batch.events}) == 1

    def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
        return []


def test_batches_are_single_kind_and_in_stream_order() -> None:
    raw = DetectorConfig.default().to_dict()
    raw["detectors"]["vm_escape.boom_test"] = {"params": {}}
    cfg = DetectorConfig.from_dict(raw)
    det = _Counter(cfg)
    DetectionEngine([det], DetectionContext(REGISTRY, cfg), strict=True).run(STREAM)
    procs = [e.ts for e in STREAM if isinstance(e, ProcessEvent)]
    assert det.seen == procs


def test_advance_closes_quiet_windows_like_a_newer_event_would() -> None:
    events = [_qemu(1, T0 + 1000), _qemu(2, T0 + 2000)]
    engine = _engine()
    assert engine.process(events) == []
    assert engine.advance(T0 + 59_000) == []  # window [T0, T0+60 s) still open
    closed = engine.advance(T0 + 60_000)
    assert [a.evidence["count"] for a in closed] == [2]
    assert engine.advance(T0) == []  # never moves back
    _same(closed, _engine().run(events))
    engine.process([_qemu(3, T0 + 3000)])
    assert engine.stats()["late_events"] == 1


def test_engine_pickles_without_its_context_and_reattaches() -> None:
    """The Flink job keeps the engine in keyed state without the shared context."""
    engine = _engine()
    first = engine.process(STREAM[:300])
    ctx = engine.context
    engine.context = None  # type: ignore[assignment]
    blob = pickle.dumps(engine)
    engine.context = ctx
    revived: DetectionEngine = pickle.loads(blob)
    revived.context = ctx
    rest = revived.process(STREAM[300:]) + revived.flush()
    _same(_engine().run(STREAM), first + rest)


def test_a_heavy_destination_is_not_lost_among_many_small_ones() -> None:
    """A busy VM talks to hundreds of sites; the one it uploads a gigabyte to must still be found."""
    small = [
        FlowEvent(id=f"w{i}", ts=T0 + 100 * i, source="t", tenant="t-acme", src_ip="10.1.1.10",
                  dst_ip=f"93.184.{i // 250}.{i % 250 + 1}", dst_port=443, bytes_out=3000, packets_out=5)
        for i in range(2000)
    ]  # fmt: skip
    big = [
        FlowEvent(id=f"x{i}", ts=T0 + 200_000 + i, source="t", tenant="t-acme", src_ip="10.1.1.10",
                  dst_ip="185.220.101.4", dst_port=443, bytes_out=60_000_000, packets_out=45_000)
        for i in range(3)
    ]  # fmt: skip
    cfg = DetectorConfig.default().merged({"engine": {"max_distinct_per_key": 64}})
    alerts = [a for a in _engine(cfg).run(small + big) if a.detector == "exfiltration.external_upload"]
    assert [a.evidence["top_destination"] for a in alerts] == ["185.220.101.4"]
    # the data: each record's bytes beyond a bare 60-byte header a packet (flowdir.data_bytes)
    assert alerts[0].evidence["bytes_external_total"] == 2000 * (3000 - 60 * 5) + 3 * (
        60_000_000 - 60 * 45_000
    )


def test_top_counts_keep_heavy_hitters_and_exact_totals() -> None:
    from detectors.state import TopCounts

    top = TopCounts(cap=4)
    for i in range(1000):
        top.add(f"small{i}", 1)
    top.add("big", 500)
    top.add("big", 500)
    assert top.top() == ("big", 1000)
    assert len(top) == 4 and top.total() == 2000
    other = TopCounts(cap=4)
    other.add("big", 1)
    other.add("x", 7)
    top.merge(other)
    assert top.top() == ("big", 1001) and top.total() == 2008
    assert pickle.loads(pickle.dumps(top)).counts == top.counts


def test_top_counts_heap_evicts_what_a_scan_in_insertion_order_would() -> None:
    """The heap behind ``TopCounts`` picks the key a plain scan picks: the first inserted of the
    smallest; same kept keys in the same order, ``other`` and ``top()``, across pickling."""
    from detectors.state import TopCounts

    def scan_add(counts: dict[object, int], other: list[int], cap: int, key: object, amount: int) -> None:
        if key in counts:
            counts[key] += amount
        elif len(counts) < cap:
            counts[key] = amount
        else:
            smallest = min(counts, key=counts.__getitem__)
            if amount > counts[smallest]:
                other[0] += counts.pop(smallest)
                counts[key] = amount
            else:
                other[0] += amount

    rng = random.Random(5)
    for _ in range(300):
        cap = rng.choice([1, 2, 3, 8, 64])
        top, other = TopCounts(cap), [0]
        counts: dict[object, int] = {}
        for _ in range(rng.choice([50, 800])):
            key, amount = rng.randrange(rng.choice([5, 300])), rng.choice([0, 1, 2, 3, rng.randrange(90)])
            top.add(key, amount)
            scan_add(counts, other, cap, key, amount)
            if rng.random() < 0.02:
                top = pickle.loads(pickle.dumps(top))
        assert list(top.counts.items()) == list(counts.items()) and top.other == other[0]
        best = max(counts, key=lambda k: (counts[k], str(k))) if counts else None
        assert top.top() == (None if best is None else (best, counts[best]))


# --- per-kind lateness: flows get the exporters' delay, other kinds the small bound ---------------
FLOWS_LATE = Lateness.for_flows(1_000, 360_000)


def _flow(i: int, ts: int, port: int = 443) -> FlowEvent:
    return FlowEvent(id=f"f{i}", ts=ts, source="zeek", src_ip="203.0.113.9", dst_ip="10.0.0.5",
                     dst_port=port, packets_out=1, action="reject")  # fmt: skip


def _lanes_engine(lateness: Lateness = FLOWS_LATE) -> DetectionEngine:
    cfg = DetectorConfig.default()
    return DetectionEngine(
        all_detectors(cfg), DetectionContext(REGISTRY, cfg), strict=True, lateness=lateness
    )


def test_a_flow_within_the_export_delay_is_on_time_and_a_process_event_keeps_the_small_bound() -> None:
    engine = _lanes_engine()
    engine.process([_flow(1, T0 + 300_000), _flow(2, T0 + 10_000)])  # 4 min 50 s behind: on time
    assert engine.stats()["late_events"] == 0
    assert engine.watermark_of("flow") == T0 + 300_000 - 360_000
    engine.process([_qemu(1, T0 + 120_000), _qemu(2, T0 + 5_000)])  # 115 s behind, window closed
    stats = engine.stats()
    assert stats["late_events"] == 1
    assert stats["detectors"]["vm_escape.emulator_foreign_file"]["late"] == 1
    process_ids = {d.meta.id for d in engine.detectors if "process" in d.meta.kinds}
    assert {d for d, c in stats["detectors"].items() if c["late"]} <= process_ids


def test_a_flow_behind_the_export_delay_is_late_for_the_flow_detectors_only() -> None:
    engine = _lanes_engine()
    engine.process([_flow(1, T0 + 20 * 60_000), _flow(2, T0 + 60_000)])  # 19 min behind
    stats = engine.stats()
    assert stats["late_events"] == 1
    flow_ids = {d.meta.id for d in engine.detectors if "flow" in d.meta.kinds}
    late = {d for d, c in stats["detectors"].items() if c["late"]}
    assert late and late <= flow_ids


def test_the_flows_watermark_holds_back_neither_process_alerts_nor_the_reverse() -> None:
    engine = _lanes_engine()
    # a flow window opens first; process events then run 70 s ahead of it
    out = engine.process([_flow(1, T0 + 500), _qemu(1, T0 + 1000), _qemu(2, T0 + 70_000)])
    assert [a.evidence["event_ids"] for a in out] == [["q1"]]  # closed on the process watermark
    assert engine.watermark_of("process") == T0 + 69_000
    assert engine.watermark_of("flow") == T0 + 500 - 360_000
    # process events an hour ahead close no flow window: the flows' state waits for flows
    engine.process([_qemu(3, T0 + 3_600_000)])
    flow_state = sum(d.state_size() for d in engine.detectors if "flow" in d.meta.kinds)
    assert flow_state > 0
    assert engine.watermark == engine.watermark_of("flow")  # the slowest kind's


def test_streamed_in_any_chunks_or_pickled_the_two_clocks_give_the_same_alerts() -> None:
    # flows arrive as exporters write them: each up to 5 minutes after newer events
    delayed = sorted(STREAM, key=lambda e: (e.ts + (300_000 if isinstance(e, FlowEvent) else 0), e.id))
    first = _lanes_engine()
    whole = first.run(delayed)
    assert whole and first.stats()["late_events"] == 0
    rng = random.Random(7)
    engine = _lanes_engine()
    streamed: list[Alert] = []
    i = 0
    while i < len(delayed):
        n = rng.choice((1, 3, 50, 700))
        streamed.extend(engine.process(delayed[i : i + n]))
        i += n
        if i > len(delayed) // 2 and i - n <= len(delayed) // 2:
            engine = pickle.loads(pickle.dumps(engine))
    streamed.extend(engine.flush())
    assert engine.stats()["late_events"] == 0
    _same(whole, streamed)
    # the same events in time order under the single bound: the same alerts
    _same(whole, _engine().run(STREAM))


def test_a_detector_reading_kinds_with_different_allowances_is_refused() -> None:
    raw = DetectorConfig.default().to_dict()
    raw["detectors"]["vm_escape.boom_test"] = {"params": {}}
    cfg = DetectorConfig.from_dict(raw)

    class _Mixed(_Counter):
        meta = dataclasses.replace(_Counter.meta, kinds=frozenset({"flow", "process"}))

    with pytest.raises(ValueError, match="different lateness"):
        DetectionEngine([_Mixed(cfg)], DetectionContext(REGISTRY, cfg), lateness=FLOWS_LATE)
    same = DetectionEngine([_Mixed(cfg)], DetectionContext(REGISTRY, cfg), lateness=Lateness(1_000))
    assert same.run([_flow(1, T0), _qemu(1, T0 + 1)]) == []


def test_advance_moves_every_kind_and_closes_flow_windows_too() -> None:
    engine = _lanes_engine()
    engine.process([_flow(i, T0 + 1000 + i, port=1000 + i) for i in range(30)])
    assert engine.advance(T0 + 299_000) == []  # the 5-minute scan window is still open
    closed = engine.advance(T0 + 300_000)
    assert "port_scan.failed_probe_scan" in {a.detector for a in closed}
    assert engine.watermark_of("flow") == engine.watermark_of("auth") == T0 + 300_000
