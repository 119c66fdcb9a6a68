"""Configuration: YAML (safe_load) merged over the shipped default, validated with errors that name
the file and key; defaults are safe (allowlists empty) and cover exactly the declared parameters."""

from __future__ import annotations

import pytest

from detectors.config import ConfigError, DetectorConfig, default_config_path
from detectors.registry import anomaly_detector_classes, detector_classes


def test_default_yaml_declares_exactly_each_detectors_parameters() -> None:
    cfg = DetectorConfig.default()
    classes = [*detector_classes(), *anomaly_detector_classes()]
    assert set(cfg.detectors) == {c.meta.id for c in classes}
    for cls in classes:
        assert set(cfg.detectors[cls.meta.id].get("params", {})) == set(cls.param_spec), cls.meta.id
        cfg.settings_for(cls.meta.id, cls.param_spec)  # types check out


def test_allowlists_are_empty_by_default() -> None:
    cfg = DetectorConfig.default()
    for det_id, entry in cfg.detectors.items():
        for name, value in (entry.get("params") or {}).items():
            if name.startswith("allowed_"):
                assert value == (), f"{det_id}.{name} should be empty by default"


def test_site_file_overrides_only_what_it_names(tmp_path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "engine: {max_out_of_orderness_ms: 2000}\n"
        "detectors:\n  port_scan.failed_probe_scan:\n    params: {min_failed_pairs: 7}\n"
    )
    cfg = DetectorConfig.load(site)
    assert cfg.engine.max_out_of_orderness_ms == 2000
    assert cfg.detectors["port_scan.failed_probe_scan"]["params"]["min_failed_pairs"] == 7
    assert cfg.detectors["port_scan.failed_probe_scan"]["params"]["allowed_sources"] == ()
    assert (
        cfg.detectors["brute_force.auth_failures"]
        == DetectorConfig.default().detectors["brute_force.auth_failures"]
    )
    assert cfg.source == str(site)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("detectors:\n  nope.nothing: {}\n", "detectors.nope.nothing: no such detector"),
        (
            "detectors:\n  port_scan.failed_probe_scan:\n    params: {min_failed_pairs: many}\n",
            "min_failed_pairs: expected int",
        ),
        (
            "detectors:\n  port_scan.failed_probe_scan:\n    params: {typo: 1}\n",
            "unknown parameters ['typo']",
        ),
        ("engine: {late_rule_hits: maybe}\n", "late_rule_hits"),
        ("engine: {bogus: 1}\n", "engine.bogus: unknown setting"),
        ("detectors:\n  port_scan.failed_probe_scan: {window_ms: 300000, slide_ms: 7000}\n", "must divide"),
        ("[unclosed\n", "not valid YAML"),
        ("top: 1\n", "unknown top-level keys"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        cfg = DetectorConfig.load(bad)
        for cls in detector_classes():
            cfg.settings_for(cls.meta.id, cls.param_spec)
    assert message in str(err.value)
    assert str(bad) in str(err.value)


def test_yaml_is_loaded_safely(tmp_path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("engine: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        DetectorConfig.load(evil)


def test_enabled_anomaly_detector_without_models_is_a_clear_error(tmp_path) -> None:
    from detectors.registry import all_detectors

    cfg = DetectorConfig.default().merged(
        {"shared": {"models_dir": str(tmp_path)}, "detectors": {"anomaly.flow_features": {"enabled": True}}}
    )
    with pytest.raises(ConfigError, match="no fitted flow models"):
        all_detectors(cfg)


def test_default_config_file_is_shipped() -> None:
    assert default_config_path().is_file()


def test_load_or_default_reads_a_site_file_over_the_default_or_the_default_alone(tmp_path) -> None:
    assert DetectorConfig.load_or_default("").to_dict() == DetectorConfig.default().to_dict()
    assert DetectorConfig.load_or_default(None).to_dict() == DetectorConfig.default().to_dict()
    site = tmp_path / "site.yaml"
    site.write_text("detectors:\n  c2.beacon:\n    params:\n      allowed_ports: [8443]\n", encoding="utf-8")
    loaded = DetectorConfig.load_or_default(str(site))
    assert loaded.to_dict() == DetectorConfig.load(site).to_dict() != DetectorConfig.default().to_dict()
