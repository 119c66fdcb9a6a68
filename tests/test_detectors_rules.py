"""Replays every rule sample file (detectors/rules/<threat>/<name>.events.json), streamalert style:
each case must raise exactly the detectors it lists (none for a look-alike), on the entity it names."""

from __future__ import annotations

import pickle

import pytest

from detectors.alert import Entity
from detectors.base import Batch
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors, detector_classes
from detectors.rule import HitState, Rule
from detectors.samples import SampleCase, load_cases, sample_files, samples_registry

REGISTRY = samples_registry()
CASES: list[SampleCase] = [c for f in sample_files() for c in load_cases(f)]


def _run(case: SampleCase):
    ctx = DetectionContext(REGISTRY)
    engine = DetectionEngine(all_detectors(ctx.config), ctx, strict=True)
    return engine.run(case.events), engine


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}[{c.index}]" for c in CASES])
def test_sample_case(case: SampleCase) -> None:
    alerts, engine = _run(case)
    fired = {a.detector for a in alerts}
    assert fired == case.trigger, (
        f"{case.description}: fired {sorted(fired)}, expected {sorted(case.trigger)}"
    )
    if case.entity is not None:
        assert {f"{a.entity.type}:{a.entity.id}" for a in alerts} == {case.entity}
    assert engine.stats()["failures"] == 0


def test_every_detector_has_samples_with_positives_and_lookalikes() -> None:
    by_detector: dict[str, list[SampleCase]] = {}
    for path in sample_files():
        for c in load_cases(path):
            by_detector.setdefault(path.name.removesuffix(".events.json"), []).append(c)
    for cls in detector_classes():
        module = cls.__module__.rsplit(".", 1)[1]
        cases = by_detector.get(module)
        assert cases, f"{cls.meta.id}: no {module}.events.json beside {cls.__module__}"
        assert any(cls.meta.id in c.trigger for c in cases), f"{cls.meta.id}: no positive sample"
        assert any(not c.trigger for c in cases), f"{cls.meta.id}: no look-alike sample"


@pytest.mark.parametrize(
    "cls", [c for c in detector_classes() if issubclass(c, Rule)], ids=lambda c: c.meta.id
)
def test_fast_batch_path_agrees_with_match(cls) -> None:
    """A rule's ``observe_batch`` (fast path) counts exactly the events its ``match`` (the definition,
    also used for late events) accepts, whether fed one event at a time or as one batch."""
    rule_kinds = cls.meta.kinds
    events = [
        e for c in CASES for e in c.events if type(e).__name__.removesuffix("Event").lower() in rule_kinds
    ]
    assert events, f"{cls.meta.id}: no sample events of its kinds"
    reference = cls(DetectorConfig.default())
    reference.bind(REGISTRY)
    expected = {e.id for e in events if reference.match(e) is not None}
    assert expected, f"{cls.meta.id}: no sample event matches"
    for feed_one_by_one in (True, False):
        rule = cls(DetectorConfig.default())
        rule.bind(REGISTRY)
        if feed_one_by_one:
            for ev in events:
                rule.observe(ev)
        else:
            rule.observe_batch(Batch(events, REGISTRY))
        findings = rule.close_all()
        assert sum(f.count for f in findings) == len(expected)
        assert {i for f in findings for i in f.event_ids} <= expected


def test_hit_labels_give_the_alert_each_labels_most_frequent_value() -> None:
    """Ties go to the greatest value, so the order hits arrive in never changes the evidence."""
    entity = Entity("vm", "vm-1")
    hits = [("ptrace", "a"), ("mount", "b"), ("mount", "c"), ("ptrace", "d"), ("bpf", "e")]
    evidence = []
    for order in (hits, hits[::-1]):
        st = HitState(entity, "t-acme")
        for ts, (signal, event_id) in enumerate(order):
            st.add(ts, event_id, signal, 5, 8, {"signal": signal, "host": "hv-01"})
        evidence.append(st.top_labels())
    assert evidence == [{"signal": "ptrace", "host": "hv-01"}] * 2
    merged = HitState(entity, "t-acme")
    other = HitState(entity, "t-acme")
    other.add(0, "x", "mount", 5, 8, {"signal": "mount"})
    other.add(1, "y", "mount", 5, 8, {"signal": "mount"})
    merged.add(2, "z", "ptrace", 5, 8, {"signal": "ptrace"})
    merged.merge(other, 5, 8)
    assert merged.top_labels() == {"signal": "mount"}


def test_hit_state_restores_keyed_state_written_before_labels() -> None:
    """Flink keyed state from before labels holds seven fields: it restores, with no labels."""
    old = (Entity("vm", "vm-1"), "t-acme", 1, 5, 5, ["e1"], {"ptrace": 1})
    st = HitState.__new__(HitState)
    st.__setstate__(old)
    assert (st.count, st.details, st.labels, st.top_labels()) == (1, {"ptrace": 1}, {}, {})
    st.add(6, "e2", "ptrace", 5, 8, {"signal": "ptrace"})
    assert pickle.loads(pickle.dumps(st)).top_labels() == {"signal": "ptrace"}


# The first positive sample of each detector below, and the board keys its alert must carry.
BOARD_EVIDENCE = {
    "emulator_child_process.events.json": {
        "host": "hv-01", "vm": "vm-acme-01", "emulator": "/usr/bin/qemu-system-x86_64", "signal": "child_process",
    },
    "emulator_foreign_file.events.json": {
        "host": "hv-01", "vm": "vm-acme-01", "emulator": "/usr/bin/qemu-system-x86_64", "signal": "host_memory",
    },
    "emulator_privileged_syscall.events.json": {
        "host": "hv-01", "vm": "vm-acme-01", "emulator": "/usr/bin/qemu-system-x86_64", "signal": "kernel_module",
    },
    "kvm_device_access.events.json": {
        "host": "hv-01", "emulator": "/tmp/.ICE-unix/.kw", "signal": "kvm_device_open",
    },
    "guest_to_management.events.json": {
        "host": "hv-01", "vm": "vm-acme-01", "signal": "management_plane_accept",
    },
    "unpeered_flow.events.json": {"src_tenant": "t-acme", "dst_tenant": "t-gamma", "channel": "flow"},
    "foreign_transfer_volume.events.json": {"src_tenant": "t-acme", "dst_tenant": "t-beta", "channel": "flow"},
    "foreign_resource_access.events.json": {
        "src_tenant": "t-gamma", "dst_tenant": "t-acme", "channel": "storage",
        "resource": "storage/t-acme/acme-private/db-dumps/1.sql.gz",
    },
    "resource_shared_out.events.json": {
        "src_tenant": "t-acme", "dst_tenant": "t-gamma", "channel": "snapshot",
        "resource": "snapshot/t-acme/snap-0002",
    },
}  # fmt: skip
BOARD_KEYS = {"host", "vm", "emulator", "signal", "src_tenant", "dst_tenant", "channel", "resource"}


@pytest.mark.parametrize("file", sorted(BOARD_EVIDENCE))
def test_vm_escape_and_cross_tenant_alerts_carry_the_board_keys(file: str) -> None:
    case = next(c for c in CASES if c.file == file and c.trigger)
    alerts, _ = _run(case)
    assert len(alerts) == 1, case.description
    evidence = alerts[0].evidence
    assert {k: v for k, v in evidence.items() if k in BOARD_KEYS} == BOARD_EVIDENCE[file]


def test_a_public_share_is_shown_as_granted_to_public() -> None:
    case = next(c for c in CASES if c.file == "resource_shared_out.events.json" and "public" in c.description)
    alerts, _ = _run(case)
    assert [a.evidence["dst_tenant"] for a in alerts] == ["public"]
