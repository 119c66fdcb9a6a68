"""Conformance checks run on every detector the registry returns (river ``checks`` style, elastic
``test_all_rules`` style): metadata and ATT&CK mapping, unique ids and file layout, pickling with
state, determinism, no mutation of input, hostile input, bounded state."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import msgspec
import pytest

from detectors.alert import CATEGORIES, SEVERITIES, severity_for_score
from detectors.base import Batch, Detector
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.meta import MATURITIES, TACTICS
from detectors.registry import ANOMALY_IDS, all_detectors, anomaly_detector_classes, detector_classes
from detectors.samples import load_cases, sample_files, samples_registry
from detectors.testing import fit_small_models, hostile_events, many_keys_events, synthetic_stream
from ingest.schema import to_dict

REGISTRY = samples_registry()
STREAM = sorted(
    [e for f in sample_files() for c in load_cases(f) for e in c.events]
    + synthetic_stream(REGISTRY, 3, 1_736_150_400_000, seed=5),
    key=lambda e: (e.ts, e.id),
)
CATEGORY_OF_PREFIX = {
    "vm_escape": "vm_escape", "cross_tenant": "cross_tenant_leak", "port_scan": "port_scan",
    "brute_force": "brute_force", "exfiltration": "exfiltration", "cryptomining": "cryptomining", "dos": "dos",
    "c2": "command_and_control", "spam": "spam",
    "anomaly": "anomaly",
}  # fmt: skip


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> DetectorConfig:
    return fit_small_models(REGISTRY, tmp_path_factory.mktemp("models"))


def _ids() -> list[str]:
    return [c.meta.id for c in [*detector_classes(), *anomaly_detector_classes()]]


@pytest.fixture(params=_ids())
def make(request: pytest.FixtureRequest, config: DetectorConfig):
    det_id = request.param

    def build(cfg: DetectorConfig | None = None) -> Detector:
        found = [d for d in all_detectors(cfg or config) if d.meta.id == det_id]
        assert found, f"{det_id} not returned by all_detectors"
        found[0].bind(REGISTRY)
        return found[0]

    return build


def _feed(det: Detector, events) -> None:
    kinds = det.meta.kinds
    for cls in {type(e) for e in events}:
        if cls.__name__.removesuffix("Event").lower() in kinds:
            det.observe_batch(Batch([e for e in events if type(e) is cls], REGISTRY))


def test_registry_is_built_by_a_function_with_unique_ids(config: DetectorConfig) -> None:
    ids = [d.meta.id for d in all_detectors(config)]
    assert len(ids) == len(set(ids)) == len(_ids())
    assert set(ANOMALY_IDS) <= set(ids)
    assert set(ANOMALY_IDS) <= {d.meta.id for d in all_detectors()}  # on by default, no models needed
    first, second = all_detectors(config), all_detectors(config)
    assert all(a is not b for a, b in zip(first, second, strict=True))  # fresh instances each call


def test_every_rule_module_is_registered() -> None:
    root = Path(__file__).resolve().parent.parent / "detectors" / "rules"
    modules = {
        ".".join(p.relative_to(root.parent.parent).with_suffix("").parts)
        for p in root.glob("*/*.py")
        if p.name != "__init__.py"
    }
    assert modules == {c.__module__ for c in detector_classes()}


def test_metadata(make) -> None:
    det = make()
    m = det.meta
    prefix, name = m.id.split(".")
    assert CATEGORY_OF_PREFIX[prefix] == m.category and m.category in CATEGORIES
    if prefix != "anomaly":
        assert type(det).__module__ == f"detectors.rules.{prefix}.{name}"
    assert m.severity in SEVERITIES and severity_for_score(m.score) == m.severity
    assert m.maturity in MATURITIES
    assert re.fullmatch(r"\d+\.\d+\.\d+", m.version)
    assert m.attack, "ATT&CK mapping missing"
    for a in m.attack:
        assert a.tactic in TACTICS
        assert re.fullmatch(r"T\d{4}(\.\d{3})?", a.technique_id) and a.technique
    assert m.false_positives and m.note and m.description and m.title


def test_pickles_with_state_and_resumes_identically(make) -> None:
    det = make()
    half = len(STREAM) // 2
    _feed(det, STREAM[:half])
    clone: Detector = pickle.loads(pickle.dumps(det))
    clone.bind(REGISTRY)
    _feed(det, STREAM[half:])
    _feed(clone, STREAM[half:])
    assert msgspec.to_builtins(det.close_all()) == msgspec.to_builtins(clone.close_all())


def test_deterministic(make) -> None:
    a, b = make(), make()
    _feed(a, STREAM)
    _feed(b, STREAM)
    fa, fb = a.close_all(), b.close_all()
    assert msgspec.to_builtins(fa) == msgspec.to_builtins(fb)


def test_never_mutates_input(make) -> None:
    det = make()
    events = STREAM + hostile_events()
    before = [to_dict(e) for e in events]
    snapshot = copy.deepcopy(before)
    _feed(det, events)
    det.close_all()
    assert [to_dict(e) for e in events] == snapshot


def test_survives_missing_extra_and_odd_fields(make, config: DetectorConfig) -> None:
    det = make()
    engine = DetectionEngine([det], DetectionContext(REGISTRY, config), strict=True)
    engine.run(hostile_events())
    assert engine.stats()["failures"] == 0


def test_state_stays_bounded_with_many_keys(make, config: DetectorConfig) -> None:
    small = config.merged({"engine": {"max_keys_per_window": 200, "max_distinct_per_key": 50}})
    det = make(small)
    engine = DetectionEngine([det], DetectionContext(REGISTRY, small), strict=True)
    engine.process(many_keys_events(3000))
    open_panes = max(1, len(det._panes))
    assert det.state_size() <= 200 * open_panes
    engine.flush()
    assert det.state_size() == 0


def test_alerts_have_valid_fields(make, config: DetectorConfig) -> None:
    det = make()
    engine = DetectionEngine([det], DetectionContext(REGISTRY, config), strict=True)
    for a in engine.run(STREAM):
        assert a.detector == det.meta.id and a.category == det.meta.category
        assert 0 <= a.score <= 100 and a.severity == severity_for_score(a.score)
        assert a.first_seen <= a.last_seen and a.summary
        assert 1 <= len(a.evidence["event_ids"]) <= 5
        assert a.attack.technique_id.startswith("T")


def test_detectors_never_import_pyflink_kafka_or_elasticsearch() -> None:
    root = Path(__file__).resolve().parent.parent / "detectors"
    banned = re.compile(r"^\s*(?:from|import)\s+(pyflink|kafka|confluent_kafka|elasticsearch)\b", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if banned.search(p.read_text(encoding="utf-8"))]
    assert not offenders
