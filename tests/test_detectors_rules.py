"""Replays every rule sample file (detectors/rules/<threat>/<name>.events.json), streamalert style:
each case must raise exactly the detectors it lists (none for a look-alike), on the entity it names."""

from __future__ import annotations

import pytest

from detectors.base import Batch
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.registry import all_detectors, detector_classes
from detectors.rule import Rule
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
        cases = load_cases(path)
        for c in cases:
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
