"""The awareness stage's per-tenant state, as the job keeps it (``streams.awareness_fn``) and as
offline replays run it: alerts and posture records in, incident, threat-level and warning
documents out, all decided on event time.

  alert view  -> IncidentTracker.observe -> incident documents; the tenant's level at once
               (provisional); the view is held for the level tracker until its minute closes
  posture     -> kept with its minute until the minute closes
  watermark   -> incidents idle past the gap closed; per closed minute: the held alerts of the
                 minute into the level tracker, the posture signals
                 (``awareness.threat.posture_signals``), the threat level, the early warnings
  snoozes     -> IncidentTracker.snooze (an analyst's, from the snooze file), each applied once

Two trackers of the same incidents. The job's detection paths reach the stage far apart in event
time: the flow path's watermark trails by its export allowance (6 min), and while a backlog is
read the process/audit/auth path runs hours ahead (the two sources are aligned apart), so alerts
arrive long before the stage's clock (the smaller watermark) closes their minute. The incident
documents go out at once (``incidents``), but a minute's level and warnings must count an
incident as it stood at that minute's end: an incident opened by password guessing that already
holds the VM escape of an hour later would put the ramp's minutes at red, and no warning can be
raised for a tenant already at red (the live campaign test's missing warning). ``levels`` is fed
each alert when its minute closes, in event-time order, and expires at each minute's end: the
same levels and warnings whatever order and lead the two paths' outputs have.

A tenant's minute clock runs while it has open incidents or had input in the last hour, then
stops (a quiet tenant costs nothing) and restarts at its next input.
"""

from __future__ import annotations

import copy
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from awareness.incidents import IncidentSettings, IncidentTracker
from awareness.snooze import Snooze
from awareness.threat import ThreatSettings, cloud_threat, posture_signals, tenant_threat
from awareness.warnings import EarlyWarning, WarningSettings
from detectors.config import DetectorConfig

__all__ = ["CLOUD_KEY", "MINUTE_MS", "AwarenessOutput", "CloudAwareness", "TenantAwareness"]

MINUTE_MS: Final = 60_000
CLOUD_KEY: Final = "_cloud"
# A tenant with nothing open keeps its minute clock this long after its last input, so its level
# decays in view before it goes quiet.
QUIET_AFTER_MS: Final = 60 * MINUTE_MS
END_OF_TIME: Final = 2**63 - 1
# Posture records kept per open minute: one per telemetry kind, alerts and anomaly detector, per
# partition key of the detection paths (two): far below this unless something is wrong.
MAX_RECORDS_PER_MINUTE: Final = 64
# Alert views held for the level tracker until their minute closes. A backlog's process/audit/auth
# alerts can run hours ahead of the clock; past this many the earliest go in at once (their
# incident then counts a little early in the level, as it did before the level tracker).
MAX_PENDING_ALERTS: Final = 4096


def _order(view: Mapping[str, Any]) -> tuple[int, str]:
    return int(view.get("ts") or 0), str(view.get("alert_id") or "")


@dataclass
class AwarenessOutput:
    incidents: list[dict[str, Any]] = field(default_factory=list)
    threat: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: AwarenessOutput) -> None:
        self.incidents += other.incidents
        self.threat += other.threat
        self.warnings += other.warnings


class TenantAwareness:
    """One tenant's awareness state (pickled in Flink keyed state)."""

    def __init__(self, tenant: str, config: DetectorConfig, criticality: str = "medium") -> None:
        self.tenant = tenant
        self.criticality = criticality
        settings = IncidentSettings.from_config(config)
        self.incidents = IncidentTracker(tenant, settings, criticality)  # the documents, at once
        # The same incidents as they stood at the end of each closed minute, for its level and
        # warnings (module docstring); ``pending``: views it has not taken yet, by (ts, alert id).
        self.levels = IncidentTracker(tenant, settings, criticality)
        self.pending: list[dict[str, Any]] = []
        self.warning = EarlyWarning(tenant, WarningSettings.from_config(config))
        self.threat_settings = ThreatSettings.from_config(config)
        self.minutes: dict[int, list[dict[str, Any]]] = {}  # open minute -> its posture records
        self.last_posture: dict[str, float] = {}
        self.last_input_ms = 0
        self.closed_until = 0  # minutes before this are closed
        self.stopped = False  # the minute clock stopped (nothing open, quiet for QUIET_AFTER_MS)
        self.snoozes_applied: set[tuple[str, str, int]] = set()
        self.config_digest = config.digest()  # of the settings above (``reconfigure``)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "levels" not in state:  # state pickled before the level tracker: start it as things stand
            self.levels = copy.deepcopy(self.incidents)
            self.pending = []
        if "config_digest" not in state:  # before restores took a changed configuration
            self.config_digest = ""

    def reconfigure(self, config: DetectorConfig) -> None:
        """The settings of ``config`` for a tenant restored under another
        configuration: its incidents, their levels and its forecasts stay as learned; gaps, bounds,
        the threat formula's parameters and the forecasts' settings apply from now on."""
        settings = IncidentSettings.from_config(config)
        self.incidents.settings = self.levels.settings = settings
        self.warning.reconfigure(WarningSettings.from_config(config))
        self.threat_settings = ThreatSettings.from_config(config)
        self.config_digest = config.digest()

    # --- inputs ----------------------------------------------------------------------------------
    def on_alert(self, alert: Mapping[str, Any]) -> AwarenessOutput:
        minute = self._minute_of(int(alert["ts"]))
        changed = self.incidents.observe(alert)
        out = AwarenessOutput(incidents=changed)
        if changed:
            self._hold(dict(alert))
            # The level moves with the alert, not a minute later: provisional, from the incidents
            # as known now; the minute's close rewrites it (same id) from the level tracker.
            out.threat.append({**self._threat(minute, self.incidents), "provisional": True})
        return out

    def on_metrics(self, record: Mapping[str, Any]) -> None:
        minute = self._minute_of(int(record.get("ts") or 0))
        records = self.minutes.setdefault(minute, [])
        if len(records) < MAX_RECORDS_PER_MINUTE:
            records.append(dict(record))

    def on_snoozes(self, snoozes: Iterable[Snooze]) -> AwarenessOutput:
        """Apply this tenant's snoozes not applied yet; the incidents whose audit they joined."""
        out = AwarenessOutput()
        for s in snoozes:
            key = (s.detector, s.entity_id, s.until_ms)
            if s.tenant != self.tenant or key in self.snoozes_applied:
                continue
            self.snoozes_applied.add(key)
            out.incidents += self.incidents.snooze(s.detector, s.entity_id, s.until_ms, s.reason, s.by)
            self.levels.snooze(s.detector, s.entity_id, s.until_ms, s.reason, s.by)
        return out

    def on_watermark(self, watermark: int) -> AwarenessOutput:
        """Close every minute that ended by ``watermark`` while the clock runs: expire idle
        incidents, then per minute the threat level and the warnings."""
        out = AwarenessOutput(incidents=self.incidents.expire(watermark))
        minute = self.closed_until
        while minute and minute + MINUTE_MS <= watermark and self.active(minute):
            self._release(minute + MINUTE_MS)
            self.levels.expire(minute + MINUTE_MS)
            signals = posture_signals(self.minutes.pop(minute, []))
            self.last_posture = signals
            threat = self._threat(minute, self.levels)
            out.threat.append(threat)
            out.warnings += self.warning.observe_minute(minute, signals, threat["level"], threat)
            minute += MINUTE_MS
        self.closed_until = max(self.closed_until, minute)
        self.stopped = not self.active(self.closed_until)
        return out

    # --- clock -----------------------------------------------------------------------------------
    def active(self, minute: int) -> bool:
        """Whether the minute clock still runs: open incidents, or input not long ago."""
        return (
            bool(self.incidents.stats()["open"] or self.levels.stats()["open"] or self.pending)
            or minute <= self.last_input_ms + QUIET_AFTER_MS
        )

    def next_timer(self) -> int | None:
        """The event time at which the next open minute closes, or None while the clock stops."""
        minute = self.closed_until
        if not minute or self.stopped or minute + MINUTE_MS >= END_OF_TIME:
            return None
        return minute + MINUTE_MS

    def _minute_of(self, ts: int) -> int:
        """The open minute an input counts in: its own, or the first open one if its minute closed
        (a late record); after a quiet stop the clock restarts at the input."""
        minute = ts - ts % MINUTE_MS
        self.last_input_ms = max(self.last_input_ms, ts)
        if self.stopped or not self.closed_until:  # the clock starts (again) at this input
            self.closed_until = max(self.closed_until, minute)
            self.stopped = False
        return max(minute, self.closed_until)

    def _hold(self, view: dict[str, Any]) -> None:
        """Keep an alert view for the level tracker until its minute closes."""
        insort(self.pending, view, key=_order)
        if len(self.pending) > MAX_PENDING_ALERTS:
            self.levels.observe(self.pending.pop(0))

    def _release(self, until: int) -> None:
        """The held alert views stamped before ``until`` into the level tracker, in time order."""
        n = bisect_left(self.pending, (until, ""), key=_order)
        if n:
            due, self.pending = self.pending[:n], self.pending[n:]
            for view in due:
                self.levels.observe(view)

    def _threat(self, minute: int, tracker: IncidentTracker) -> dict[str, Any]:
        # Only incidents detected by the minute's end: the provisional level of an alert's minute
        # comes from every incident known, and alerts of later minutes may be among them.
        known = [
            inc for inc in tracker.open_incidents()
            if int(inc.get("detected_at") or 0) < minute + MINUTE_MS
        ]  # fmt: skip
        return tenant_threat(
            self.tenant, minute, known, self.last_posture, self.criticality, self.threat_settings
        )


class CloudAwareness:
    """The cloud's threat level: every tenant's latest level document, combined per minute."""

    def __init__(self, config: DetectorConfig) -> None:
        self.settings = ThreatSettings.from_config(config)
        self.latest: dict[str, dict[str, Any]] = {}

    def on_tenant_threat(self, tenant_doc: Mapping[str, Any]) -> dict[str, Any]:
        minute = int(tenant_doc["ts"])
        self.latest[str(tenant_doc["tenant"])] = dict(tenant_doc)
        # A tenant whose clock stopped (quiet for an hour) no longer weighs on the cloud.
        for tenant in [t for t, d in self.latest.items() if d["ts"] < minute - QUIET_AFTER_MS]:
            del self.latest[tenant]
        doc = cloud_threat(minute, [d for d in self.latest.values() if d["ts"] <= minute], self.settings)
        # Made from a tenant's provisional level, the cloud's is provisional too: that tenant's final
        # level of the minute rewrites it, and a provisional document never replaces a final one.
        return {**doc, "provisional": True} if tenant_doc.get("provisional") else doc
