"""Analysts' snooze file: written atomically, read safely, expired entries dropped."""

from __future__ import annotations

import os

import pytest

from awareness.snooze import (
    MAX_SNOOZE_FILE_BYTES,
    Snooze,
    SnoozeError,
    SnoozeWatcher,
    add_snooze,
    load_snoozes,
)


def _snooze(entity: str = "10.0.0.5", until: int = 5_000, detector: str = "port_scan.fanout") -> Snooze:
    return Snooze(tenant="t-a", detector=detector, entity_id=entity, until_ms=until, reason="scanner", by="ana",
                  at_ms=1_000)  # fmt: skip


def test_absent_file_holds_no_snoozes(tmp_path):
    assert load_snoozes(tmp_path / "none.yaml") == []


def test_add_replaces_the_same_entity_and_drops_expired(tmp_path):
    path = tmp_path / "s.yaml"
    add_snooze(path, _snooze(until=2_000), now_ms=1_000)
    add_snooze(path, _snooze(entity="10.0.0.6", until=3_000), now_ms=1_000)
    add_snooze(path, _snooze(until=9_000), now_ms=1_000)  # replaces the first
    assert sorted((s.entity_id, s.until_ms) for s in load_snoozes(path)) == [
        ("10.0.0.5", 9_000),
        ("10.0.0.6", 3_000),
    ]
    current = add_snooze(path, _snooze(entity="10.0.0.7", until=20_000), now_ms=5_000)  # 10.0.0.6 ended
    assert sorted(s.entity_id for s in current) == ["10.0.0.5", "10.0.0.7"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".snoozes-")]  # no temporary left


def test_covers_only_its_tenant_detector_entity_and_period():
    s = _snooze(until=5_000)
    assert s.covers("t-a", "port_scan.fanout", "10.0.0.5", 4_999)
    assert not s.covers("t-a", "port_scan.fanout", "10.0.0.5", 5_000)
    assert not s.covers("t-b", "port_scan.fanout", "10.0.0.5", 10)
    assert not s.covers("t-a", "dos.source_flood", "10.0.0.5", 10)
    assert not s.covers("t-a", "port_scan.fanout", "10.0.0.6", 10)


@pytest.mark.parametrize(
    "text",
    [
        "snoozes: [{tenant: t-a}]",  # missing fields
        "snoozes: [{tenant: t-a, detector: d, entity_id: e, until_ms: '5', reason: r, by: b, at_ms: 1}]",
        "snoozes: [{tenant: t-a, detector: d, entity_id: e, until_ms: 5, reason: r, by: b, at_ms: 1, x: 1}]",
        "!!python/object/apply:os.system ['true']",  # unsafe YAML is refused, never run
        "snoozes: {a: 1}",
        "[unclosed",
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SnoozeError):
        load_snoozes(path)


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("#" * (MAX_SNOOZE_FILE_BYTES + 1))
    with pytest.raises(SnoozeError, match="byte limit"):
        load_snoozes(path)


def test_watcher_rereads_on_change_and_keeps_the_last_good_list(tmp_path):
    path = tmp_path / "s.yaml"
    watcher = SnoozeWatcher(path)
    assert watcher.current() == []
    add_snooze(path, _snooze(), now_ms=1_000)
    assert [s.entity_id for s in watcher.current()] == ["10.0.0.5"]
    path.write_text("[broken")
    assert [s.entity_id for s in watcher.current()] == ["10.0.0.5"]
    assert watcher.error is not None
