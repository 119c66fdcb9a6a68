"""Seasonal forecasts and early warnings (awareness/forecast.py, awareness/warnings.py).

The series are simulated quiet weeks: the hour-of-day curve of ``ingest/simulator/rhythm.json``,
half the activity on Saturday and Sunday, gamma-mixed Poisson counts (overdispersed) and rare
benign bursts, seeded.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Iterator
from typing import Any

import pytest

from awareness.forecast import ForecastSettings, SeasonalForecaster, hour_of_day, hour_of_week
from awareness.threat import ThreatSettings, signal_threshold, signal_threshold_now
from awareness.warnings import EarlyWarning, WarningSettings, warning_id
from detectors.config import ConfigError, DetectorConfig
from ingest.simulator.rhythm import load_rhythm

RH = load_rhythm()
MIN = 60_000
WEEK = 7 * 24 * 60
T0 = 1_767_571_200_000  # Monday 2026-01-05 00:00 UTC
YELLOW = 10.0  # failed logins per minute that alone make a tenant yellow (default posture line)


def mean_at(minute: int, base: float) -> float:
    ts = T0 + minute * MIN
    weekend = (ts // 86_400_000 + 3) % 7 >= 5
    return base * RH.factor((ts % 86_400_000) / 3_600_000) * (0.5 if weekend else 1.0)


def poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def quiet(rng: random.Random, minute: int, base: float) -> float:
    v = float(poisson(rng, mean_at(minute, base) * rng.gammavariate(5, 1 / 5)))
    if rng.random() < 0.002:  # a user mistyping a password several times
        v += poisson(rng, 4)
    return v


def minutes(start: int, stop: int) -> Iterator[tuple[int, int]]:
    for m in range(start, stop):
        yield m, T0 + m * MIN


@pytest.fixture(scope="module")
def warmed() -> tuple[bytes, int]:
    """An EarlyWarning that has seen one quiet week of four signals (pickled, so each test gets a
    copy), and the seed's generator state."""
    rng = random.Random(7)
    ew = EarlyWarning("t1", WarningSettings())
    for m, ts in minutes(0, WEEK):
        ew.observe_minute(ts, signals(rng, m), "blue")
    return pickle.dumps((ew, rng)), WEEK


def signals(rng: random.Random, m: int, logins: float = 1.0) -> dict[str, float]:
    return {
        "failed_logins": quiet(rng, m, logins),
        "alerts": quiet(rng, m, 0.2),
        "probes": quiet(rng, m, 20.0),
        "cross_tenant_flows": float(poisson(rng, 0.01)),
    }


def test_hour_buckets() -> None:
    assert hour_of_week(T0) == 0 and hour_of_day(T0) == 0
    assert hour_of_week(T0 + (24 + 5) * 3_600_000 + 59 * MIN) == 29
    assert hour_of_week(T0 + 7 * 86_400_000 - 1) == 167
    assert hour_of_week(T0 + 7 * 86_400_000) == 0


def test_intervals_cover_about_the_nominal_share() -> None:
    rng = random.Random(11)
    f = SeasonalForecaster(ForecastSettings(), "failed_logins")
    inside = total = 0
    widths = []
    for m, ts in minutes(0, 3 * WEEK):
        x = quiet(rng, m, 2.0)
        fc = f.update(ts, x)
        if m >= 2 * WEEK:
            inside += fc.lower <= x <= fc.upper
            total += 1
            widths.append(fc.upper - fc.lower)
            assert fc.warm
    coverage = inside / total
    assert 0.97 <= coverage <= 0.997, coverage  # nominal 0.99 (z 2.576)
    # the interval follows the rhythm: narrower at night than at the daily peak
    night = [
        w for (m, _), w in zip(minutes(2 * WEEK, 3 * WEEK), widths, strict=True) if 0 <= (m % 1440) < 240
    ]
    day = [
        w for (m, _), w in zip(minutes(2 * WEEK, 3 * WEEK), widths, strict=True) if 540 <= (m % 1440) < 780
    ]
    assert sum(night) / len(night) < 0.6 * sum(day) / len(day)


def test_forecaster_before_warm_and_out_of_order() -> None:
    f = SeasonalForecaster(ForecastSettings())
    fc = f.predict(T0)
    assert (fc.forecast, fc.lower, fc.warm) == (0.0, 0.0, False)
    for m, ts in minutes(0, 90):
        f.update(ts, 4.0)
    assert f.predict(T0 + 90 * MIN).warm is False  # hour 1 is not finished: only hour 0 learnt
    assert f.predict(T0 + 30 * MIN).warm is True
    assert f.predict(T0 + 30 * MIN).forecast == pytest.approx(4.0)
    before = pickle.dumps(f)
    f.update(T0, 1000.0)  # an hour already passed: ignored
    assert pickle.dumps(f) == before


def ramp_run(
    warmed: tuple[bytes, int], ramp_minutes: int, seed: int
) -> tuple[list[dict[str, Any]], int, int]:
    """The warmed tenant, then failed logins ramping from their quiet level to twice the yellow
    threshold over ``ramp_minutes``; returns the warnings, the ramp's start and the minute the
    ramp's mean (quiet mean + ramp) crosses the threshold."""
    ew, rng = pickle.loads(warmed[0])
    rng.seed(seed)
    start = warmed[1] + 10 * 60  # Monday 10:00 of the second week
    out: list[dict[str, Any]] = []
    cross = None
    for m, ts in minutes(warmed[1], start + ramp_minutes):
        sig = signals(rng, m)
        if m >= start:
            add = 2 * YELLOW * (m - start) / ramp_minutes
            sig["failed_logins"] += add
            if cross is None and mean_at(m, 1.0) + add >= YELLOW:
                cross = m
        out += [dict(w, minute=m) for w in ew.observe_minute(ts, sig, "blue")]
    assert cross is not None
    return out, start, cross


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_slow_ramp_warns_at_least_10_minutes_before_it_crosses_the_level(
    warmed: tuple[bytes, int], seed: int
) -> None:
    assert signal_threshold("failed_logins", "yellow", ThreatSettings()) == YELLOW
    out, start, cross = ramp_run(warmed, 180, seed)
    assert [w["signal"] for w in out] == ["failed_logins"], out  # one warning, nothing else
    w = out[0]
    assert start < w["minute"] <= cross - 10, (w["minute"] - start, cross - start)
    assert w["level"] == "yellow" and w["current_level"] == "blue" and w["tenant"] == "t1"
    assert w["projected"] >= YELLOW > w["upper"] and w["observed"] > w["forecast"]
    assert w["horizon_ms"] == 3_600_000 and w["warning_id"] == warning_id("t1", "failed_logins", w["ts"])
    assert w["reason"].startswith("failed logins at ") and w["reason"].endswith("from blue to yellow.")


def test_quiet_week_raises_at_most_one_warning(warmed: tuple[bytes, int]) -> None:
    ew, rng = pickle.loads(warmed[0])
    raised = []
    for m, ts in minutes(WEEK, 2 * WEEK):
        raised += ew.observe_minute(ts, signals(rng, m), "blue")
    assert len(raised) <= 1, raised


def test_quiet_week_of_a_busier_tenant_raises_at_most_one_warning() -> None:
    # daytime failed logins peak near 6 a minute (sd ~3) against the yellow threshold of 10
    rng = random.Random(5)
    ew = EarlyWarning("busy", WarningSettings())
    raised = []
    for m, ts in minutes(0, 2 * WEEK):
        w = ew.observe_minute(ts, {"failed_logins": quiet(rng, m, 2.0)}, "blue")
        if m >= WEEK:
            raised += w
    assert len(raised) <= 1, raised


def test_pickle_round_trip_mid_series_gives_identical_output(warmed: tuple[bytes, int]) -> None:
    ew, rng = pickle.loads(warmed[0])
    start = WEEK + 10 * 60

    def feed(e: EarlyWarning, r: random.Random, a: int, b: int) -> list[dict[str, Any]]:
        out = []
        for m, ts in minutes(a, b):
            sig = signals(r, m)
            sig["failed_logins"] += max(0, m - start) * 0.15
            out += e.observe_minute(ts, sig, "blue")
        return out

    feed(ew, rng, WEEK, start + 20)
    blob = pickle.dumps((ew, rng))
    first = feed(ew, rng, start + 20, start + 150)
    ew2, rng2 = pickle.loads(blob)
    second = feed(ew2, rng2, start + 20, start + 150)
    assert first and first == second
    assert pickle.dumps(ew) == pickle.dumps(ew2)


def test_cooldown_one_warning_per_signal(warmed: tuple[bytes, int]) -> None:
    ew, rng = pickle.loads(warmed[0])
    start = WEEK + 9 * 60
    out = []
    for m, ts in minutes(WEEK, start + 8 * 60):
        sig = signals(rng, m)
        sig["failed_logins"] += min(9.0, max(0, m - start) * 0.1)  # rises for 90 minutes, then stays
        out += [(m - start, w["signal"]) for w in ew.observe_minute(ts, sig, "blue")]
    # one warning in the first cool-down (6 h), then one more once it is over
    assert [s for _, s in out] == ["failed_logins", "failed_logins"], out
    assert out[1][0] - out[0][0] >= 6 * 60


def test_no_warning_at_red_or_without_a_threshold(warmed: tuple[bytes, int]) -> None:
    ew, rng = pickle.loads(warmed[0])
    start = WEEK + 10 * 60
    got: dict[str, list[str]] = {"red": [], "orange": []}
    for level in got:
        e, r = pickle.loads(pickle.dumps((ew, rng)))
        for m, ts in minutes(WEEK, start + 180):
            sig = signals(r, m)
            sig["failed_logins"] += max(0, m - start) * 0.2
            got[level] += [w["signal"] for w in e.observe_minute(ts, sig, level)]
    assert got == {"red": [], "orange": []}  # red: nothing above; orange -> red: posture is capped below red
    with pytest.raises(ValueError, match="current_level"):
        ew.observe_minute(T0 + start * MIN, {}, "purple")


def test_dotted_signal_uses_its_family_threshold_and_unknown_never_warns() -> None:
    ew = EarlyWarning("t1", ForecastSettings())
    th = WarningSettings().threat
    assert ew._threshold("alerts.port_scan", "yellow") == signal_threshold("alerts", "yellow", th) == 25.0
    assert ew._threshold("something_else", "yellow") is None
    assert ew._threshold("something.else", "yellow") is None


def test_signals_are_bounded_oldest_evicted() -> None:
    ew = EarlyWarning("t1", ForecastSettings(max_signals=2))
    ew.observe_minute(T0, {"a": 1.0, "b": 1.0}, "blue")
    ew.observe_minute(T0 + MIN, {"b": 1.0}, "blue")
    ew.observe_minute(T0 + 2 * MIN, {"c": 1.0, "nan": float("nan")}, "blue")
    assert sorted(ew.forecasters) == ["b", "c"] and ew.evicted == 1


def test_forecast_settings_from_config_and_errors() -> None:
    cfg = DetectorConfig.default()
    ws = WarningSettings.from_config(cfg)
    assert ws.forecast == ForecastSettings.from_mapping(cfg.awareness_section("forecast"))
    s = ForecastSettings.from_mapping(
        {"horizon_ms": 1_800_000, "interval_z": 3, "min_scale_by_signal": {"x": 0.1}}
    )
    assert (s.horizon_ms, s.interval_z, s.min_scale_by_signal) == (1_800_000, 3.0, {"x": 0.1})
    with pytest.raises(ConfigError, match="unknown keys"):
        ForecastSettings.from_mapping({"horizon": 1})
    with pytest.raises(ConfigError, match="expected an integer"):
        ForecastSettings.from_mapping({"horizon_ms": 1.5})
    with pytest.raises(ConfigError, match="within"):
        ForecastSettings.from_mapping({"trend_beta": 0})
    with pytest.raises(ConfigError, match="> 0"):
        ForecastSettings.from_mapping({"min_scale_by_signal": {"x": -1}})
    bad = cfg.merged({"awareness": {"forecast": {"bogus": 1}}})
    with pytest.raises(ConfigError, match=r"awareness\.forecast: unknown keys \['bogus'\]"):
        ForecastSettings.from_config(bad)


def test_threshold_from_where_the_tenant_stands() -> None:
    s = ThreatSettings()
    quiet_tenant = signal_threshold("failed_logins", "orange", s)
    assert signal_threshold_now("failed_logins", "orange", s, 0.0, 0.0) == pytest.approx(quiet_tenant)
    # an open incident worth 40 of the index: orange (50) needs 1 - 0.5 / 0.6 = 16.7 posture points
    assert signal_threshold_now("failed_logins", "orange", s, 40.0, 0.0) == pytest.approx(
        16.667 / 25 * 10, abs=0.01
    )
    # other signals' points count too, and the posture cap still bounds what posture can do
    assert signal_threshold_now("failed_logins", "orange", s, 40.0, 10.0) == pytest.approx(
        6.667 / 25 * 10, abs=0.01
    )
    assert signal_threshold_now("failed_logins", "red", s, 0.0, 0.0) is None


@pytest.mark.parametrize("seed", [1, 2])
def test_a_tenant_at_yellow_is_warned_of_orange_by_a_ramp_a_quiet_tenant_shrugs_off(
    warmed: tuple[bytes, int], seed: int
) -> None:
    """Failed logins ramping by 10 a minute over two hours never reach the 20 that alone make
    orange, but with an open incident worth 30 points 11.4 do: only the relative threshold warns."""
    threat = {"contributors": {"incidents": 30.0, "signals": {}}}
    found = {}
    for relative in (True, False):
        ew, rng = pickle.loads(warmed[0])
        rng.seed(seed)
        start = warmed[1] + 10 * 60
        out = []
        for m, ts in minutes(warmed[1], start + 120):
            sig = signals(rng, m)
            if m >= start:
                sig["failed_logins"] += 10.0 * (m - start) / 120
            out += ew.observe_minute(ts, sig, "yellow", threat if relative else None)
        found[relative] = [w for w in out if w["signal"] == "failed_logins"]
    assert found[False] == []
    assert len(found[True]) == 1 and found[True][0]["level"] == "orange"
    assert found[True][0]["threshold"] == pytest.approx(11.43, abs=0.01)


@pytest.mark.parametrize(("clip", "warned"), [(2.0, False), (0.0, True)])
def test_one_minute_burst_is_no_trend(warmed: tuple[bytes, int], clip: float, warned: bool) -> None:
    """A single minute of 3,000 probes (one scanner's sweep, normal ~20) and then the usual: the
    robust Holt (``trend_clip``) takes its one-step error at 2 scales, so no trend is projected an
    hour ahead; unclipped (0: off) the burst alone projected past yellow (612.5 probes a minute
    for a quiet tenant) and warned minutes later (RITA's public server: 2 such warnings in 2
    days, where its open incidents brought the threshold down to ~75)."""
    ew, rng = pickle.loads(warmed[0])
    ew.reconfigure(WarningSettings(forecast=ForecastSettings(trend_clip=clip)))
    burst = WEEK + 14 * 60  # a weekday afternoon
    raised = []
    for m, ts in minutes(WEEK, burst + 90):
        sig = signals(rng, m)
        if m == burst:
            sig["probes"] += 3000.0
        raised += [w["signal"] for w in ew.observe_minute(ts, sig, "blue") if m >= burst]
    assert ("probes" in raised) == warned, raised
