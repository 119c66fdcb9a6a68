"""Each demo run's own names: a unique run id, indices of its own inside the shared patterns, and
the test session's cleanup recognising them. No services needed."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from infra.bootstrap import alerts_template, metrics_template
from infra.settings import Settings
from streams import demo
from streams.demo import demo_settings, new_run_id
from streams.documents import daily_index
from tests.leftovers import is_throwaway_index, run_ids

DAY_MS = 1_796_256_000_000  # 2026-12-03 00:00 UTC


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings().with_overrides(data_dir=str(tmp_path))


def test_runs_started_in_the_same_second_get_different_ids(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb"])  # the second run draws the first's suffix again
    monkeypatch.setattr(demo.time, "strftime", lambda _fmt, _t: "20261203074500")
    monkeypatch.setattr(demo.secrets, "token_hex", lambda _n: next(suffixes))
    first, second = new_run_id(settings), new_run_id(settings)
    assert (first, second) == ("20261203074500-aaaaaa", "20261203074500-bbbbbb")
    assert (settings.data_path / "runs" / first).is_dir() and (settings.data_path / "runs" / second).is_dir()


def test_a_run_id_is_valid_in_topic_group_and_index_names(settings: Settings) -> None:
    run = new_run_id(settings)
    s = demo_settings(settings, run)
    for topic in s.all_topics:
        assert re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", topic)
    assert run_ids(s.all_topics) == {run}  # no dot in the id: the cleanup finds the run again
    for prefix in (s.index_alerts_prefix, s.index_metrics_prefix):
        assert prefix == prefix.lower() and not re.search(r'[\\/*?"<>| ,#:]', prefix)


def test_a_runs_indices_are_its_own_and_inside_the_shared_patterns(settings: Settings) -> None:
    one, two = (
        demo_settings(settings, "20261203074500-aaaaaa"),
        demo_settings(settings, "20261203074500-bbbbbb"),
    )
    for shared_template, own_template in (
        (alerts_template(settings), alerts_template(one)),
        (metrics_template(settings), metrics_template(one)),
    ):
        (shared,) = shared_template["index_patterns"]
        (own,) = own_template["index_patterns"]
        assert own_template["priority"] > shared_template["priority"]  # never equal where they overlap
        index = daily_index(own.removesuffix("*"), DAY_MS)
        assert fnmatchcase(index, shared) and fnmatchcase(index, own)
    alerts_of_one = daily_index(one.index_alerts_prefix, DAY_MS)
    assert alerts_of_one == "ssa-alerts-run-20261203074500-aaaaaa-2026.12.03"
    assert not fnmatchcase(alerts_of_one, two.index_alerts_pattern)
    assert not fnmatchcase(daily_index(two.index_alerts_prefix, DAY_MS), one.index_alerts_pattern)
    assert not fnmatchcase(daily_index(settings.index_alerts_prefix, DAY_MS), one.index_alerts_pattern)


def test_the_cleanup_removes_the_sessions_run_indices_and_keeps_others(settings: Settings) -> None:
    session_run, developer_run = "20261203074500-aaaaaa", "20261203074501-bbbbbb"
    for prefix in (settings.index_alerts_prefix, settings.index_metrics_prefix):
        ours = daily_index(demo.run_index_prefix(prefix, session_run), DAY_MS)
        theirs = daily_index(demo.run_index_prefix(prefix, developer_run), DAY_MS)
        assert is_throwaway_index(ours, {session_run})
        assert not is_throwaway_index(theirs, {session_run})
        assert not is_throwaway_index(daily_index(prefix, DAY_MS), {session_run})
    assert is_throwaway_index("ssa-test-e2e-alerts-2026.12.03", set())


def test_a_repeatable_slice_is_the_same_simulation_translated_in_time() -> None:
    from ingest.simulator import SimConfig, repeatable_slice, simulate

    now = DAY_MS + 15 * 3_600_000 + 123_456  # 15:02 UTC, the diurnal peak
    shapes = []
    for clock in (now, now + 3_700_000, now + 3 * 86_400_000 + 9 * 3_600_000):  # later, another hour
        start, shift = repeatable_slice(clock, 60_000)
        assert start % 600_000 == 0 and clock - 660_000 <= start <= clock - 60_000
        sim = simulate(
            SimConfig(
                seed=3, tenants=3, duration_s=60, start_ms=start, events_per_s=200, diurnal_shift_ms=shift
            )
        )
        shapes.append(
            [(e.ts - start, e.kind_name(), getattr(e, "src_ip", None)) for e in sim.events()]
            + [(t.start - start, t.scenario, t.entity) for t in sim.truth]
        )
    assert shapes[0] == shapes[1] == shapes[2] and len(shapes[0]) > 8_000
