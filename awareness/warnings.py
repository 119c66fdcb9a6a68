"""Early warning: a signal out of its interval and projected to cross the next threat level.

``EarlyWarning`` is kept per tenant (Flink keyed state; picklable, bounded). Each minute the caller
hands it the tenant's signals of that minute (``awareness.threat.posture_signals``, plus any
per-category alert or incident rates it counts, e.g. ``alerts.port_scan``) and the tenant's
current threat level; it returns the warning documents of that minute (usually none).

Rule: a warning on signal ``s`` is raised at minute ``t`` when

1. the forecaster of ``s`` is warm (its hour buckets have data) and ``s`` has been out of its
   interval upward for ``min_consecutive`` minutes in a row (one noisy minute is not a warning):
   the minute's value above the interval's upper bound, or the smoothed residual (the Holt level
   ``L``, smoothing ``trend_alpha`` = a) above the same bound scaled by sqrt(a / (2 - a)), the
   limit of an EWMA control chart (Roberts 1959; Lucas and Saccucci 1990) at the same z: the
   smoothed residual's standard deviation is sqrt(a / (2 - a)) of the raw one, so a slow ramp
   leaves the smoothed interval long before single minutes leave the raw one (measured: with
   the raw test alone a ramp over 2 h from ~3 to 20 failed logins a minute warned after its first
   noisy minute past the threshold). Only upward: every signal is a count or a score that rises
   under attack;
2. its projection ``horizon_ms`` ahead (``SeasonalForecaster.project``: seasonal baseline then,
   plus the residual's Holt level and trend) reaches the value at which ``s`` would lift the
   tenant to the next level above ``current_level``: given the minute's threat document, with the
   tenant's open incidents and other signals as they stand (``signal_threshold_now``: a tenant
   already at yellow from an incident needs far fewer failed logins to reach orange), else from a
   quiet tenant (``awareness.threat.signal_threshold``; a
   signal ``a.b`` without a posture line of its own uses ``a``'s: ``alerts.port_scan`` uses
   ``alerts``); a signal that cannot lift the tenant (no posture line, or the level is above the
   posture cap, i.e. red, or the tenant is already red) never warns;
3. the threshold is above the interval's upper bound at ``minute + horizon`` (a level that the
   signal's normal noise already reaches is no early warning: measured on simulated quiet weeks
   of a tenant whose daytime failed logins peak at 7 a minute against a threshold of 10, the
   rule without this gate gave 2-3 warnings a week; such a tenant's posture line, not the
   forecast, needs changing; the dropped candidates are counted in ``within_normal``);
4. no warning on ``s`` for this tenant in the last ``cooldown_ms`` (rate limit: one per tenant and
   signal per cool-down, so a slow attack is one warning, not sixty).

Document: ``{kind: "warning", warning_id, tenant, ts, signal, level (the level projected), observed,
forecast, lower, upper, projected, horizon_ms, reason}``; ``warning_id`` = ``w-`` + blake2b-96 of
tenant, signal and minute, so a replay rewrites the same documents.

Bounds: at most ``max_signals`` forecasters per tenant; a new signal beyond it evicts the one
seen least recently (``evicted`` counts them). Parameters live in ``awareness.forecast`` (see
``awareness.forecast``), the thresholds in ``awareness.threat``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.config import DetectorConfig

from .forecast import ForecastSettings, SeasonalForecaster
from .threat import LEVELS, ThreatSettings, signal_threshold, signal_threshold_now

__all__ = ["EarlyWarning", "WarningSettings", "warning_id"]


@dataclass(frozen=True)
class WarningSettings:
    """The forecast parameters and the threat thresholds a warning needs."""

    forecast: ForecastSettings = field(default_factory=ForecastSettings)
    threat: ThreatSettings = field(default_factory=ThreatSettings)

    @classmethod
    def from_config(cls, config: DetectorConfig) -> WarningSettings:
        return cls(ForecastSettings.from_config(config), ThreatSettings.from_config(config))


def warning_id(tenant: str, signal: str, minute_ms: int) -> str:
    key = f"warning\x00{tenant}\x00{signal}\x00{minute_ms}"
    return "w-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def _fmt(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 1 and x != 0 else f"{x:.1f}"


class EarlyWarning:
    """Per-tenant early warning over its per-minute signals (module docstring)."""

    def __init__(self, tenant: str, settings: WarningSettings | ForecastSettings) -> None:
        if isinstance(settings, ForecastSettings):
            settings = WarningSettings(forecast=settings)
        self.tenant = tenant
        self.settings = settings
        self.forecasters: dict[str, SeasonalForecaster] = {}
        self.last_seen: dict[str, int] = {}
        self.last_warning: dict[str, int] = {}
        self.above: dict[str, int] = {}  # consecutive minutes above the interval
        self.evicted = 0
        self.raised = 0
        self.within_normal = 0  # candidate warnings dropped: the threshold is inside the interval

    def reconfigure(self, settings: WarningSettings) -> None:
        """New settings for the forecasts learned so far (a restore under a changed configuration)."""
        self.settings = settings
        for signal, fc in self.forecasters.items():
            fc.reconfigure(settings.forecast, signal)

    def _threshold(self, signal: str, level: str, threat: Mapping[str, Any] | None = None) -> float | None:
        """The value of ``signal`` that lifts the tenant to ``level``: with the minute's threat
        document, from where the tenant stands (its incidents' part and the other signals'
        points); without it, from a quiet tenant."""
        th = self.settings.threat
        line = signal if signal in th.posture else signal.split(".", 1)[0]
        if line not in th.posture:
            return None
        contributors = (threat or {}).get("contributors")
        if not isinstance(contributors, Mapping):
            return signal_threshold(line, level, th)
        points = contributors.get("signals") or {}
        other = sum(float(v) for k, v in points.items() if k != line)
        return signal_threshold_now(line, level, th, float(contributors.get("incidents") or 0.0), other)

    def _forecaster(self, signal: str, minute_ms: int) -> SeasonalForecaster:
        fc = self.forecasters.get(signal)
        if fc is None:
            cap = self.settings.forecast.max_signals
            while len(self.forecasters) >= cap:
                oldest = min(self.forecasters, key=lambda s: (self.last_seen[s], s))
                for d in (self.forecasters, self.last_seen, self.last_warning, self.above):
                    d.pop(oldest, None)
                self.evicted += 1
            fc = self.forecasters[signal] = SeasonalForecaster(self.settings.forecast, signal)
        self.last_seen[signal] = minute_ms
        return fc

    def observe_minute(
        self,
        minute_ms: int,
        signals: Mapping[str, float],
        current_level: str,
        threat: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Learn the minute's signals; the warnings they raise (module docstring). ``threat``, the
        tenant's threat document of the minute, makes the thresholds relative to where the tenant
        stands (its open incidents and other signals); without it they are a quiet tenant's."""
        if current_level not in LEVELS:
            raise ValueError(f"current_level {current_level!r} is not one of {LEVELS}")
        rank = LEVELS.index(current_level)
        nxt = LEVELS[rank + 1] if rank + 1 < len(LEVELS) else None
        fs = self.settings.forecast
        a = fs.trend_alpha
        chart = math.sqrt(a / (2 - a))  # EWMA chart: the smoothed residual's limit, in raw half-widths
        out: list[dict[str, Any]] = []
        for signal in sorted(signals):
            value = float(signals[signal])
            if not math.isfinite(value):
                continue
            fcr = self._forecaster(signal, minute_ms)
            fc = fcr.update(minute_ms, value)
            if fc.warm and (value > fc.upper or fcr.level > (fc.upper - fc.forecast) * chart):
                self.above[signal] = self.above.get(signal, 0) + 1
            else:
                self.above.pop(signal, None)
            if nxt is None or self.above.get(signal, 0) < fs.min_consecutive:
                continue
            threshold = self._threshold(signal, nxt, threat)
            if threshold is None:
                continue
            last = self.last_warning.get(signal)
            if last is not None and minute_ms - last < fs.cooldown_ms:
                continue
            if threshold <= fcr.predict(minute_ms + fs.horizon_ms).upper:
                self.within_normal += 1  # the level is inside the signal's normal range: noise reaches it
                continue
            projected = fcr.project(minute_ms, fs.horizon_ms)
            if projected < threshold:
                continue
            self.last_warning[signal] = minute_ms
            self.raised += 1
            name = signal.replace("_", " ")
            out.append(
                {
                    "kind": "warning",
                    "warning_id": warning_id(self.tenant, signal, minute_ms),
                    "tenant": self.tenant,
                    "ts": minute_ms,
                    "signal": signal,
                    "level": nxt,
                    "current_level": current_level,
                    "observed": round(value, 4),
                    "forecast": round(fc.forecast, 4),
                    "lower": round(fc.lower, 4),
                    "upper": round(fc.upper, 4),
                    "projected": round(projected, 4),
                    "threshold": round(threshold, 4),
                    "horizon_ms": fs.horizon_ms,
                    "reason": (
                        f"{name} at {_fmt(value)} has been above its expected range "
                        f"({_fmt(fc.lower)}-{_fmt(fc.upper)}) for {self.above[signal]} minutes and is "
                        f"projected to reach {_fmt(projected)} within {fs.horizon_ms // 60_000} minutes, "
                        f"past {_fmt(threshold)}, which alone would raise tenant {self.tenant} "
                        f"from {current_level} to {nxt}."
                    ),
                }
            )
        return out
