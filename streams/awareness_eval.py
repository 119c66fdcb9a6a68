"""Offline replay of the job's awareness stage over simulated campaigns and quiet weeks: the
measures of issue 21 ("Simulator and measures"), like ``detectors/evaluation`` is for the detectors.

``python -m streams.awareness_eval [--seeds 301 302 303] [--quiet-seeds 311 312] [--out PATH]``
writes a JSON scorecard (default ``results/awareness-scorecard.json``) and prints a summary.
``--record DIR`` also keeps each campaign run's awareness-stage input (alerts, posture records,
watermarks, in order) in ``DIR/<seed>.pickle``; ``--restage DIR`` (same run arguments) then feeds
it to the awareness stage alone: another incident or warning setting measured in seconds, not
the ~20 min a seed's detection takes (``restage``).

What is replayed (deterministic, event time only; no Kafka, Flink or Elasticsearch)
--------------------------------------------------------------------------------------
``JobReplay`` mirrors ``streams.job.build``:

- **two detection paths** (``streams.sql.event_time_paths``): flows (watermark = newest flow time
  minus ``flow_export_delay_ms``, 6 min) and process/audit/auth (minus ``out_of_orderness_ms``,
  2 s). Events are keyed as the producer keys them (``ingest.producer.event_key``: the host for
  process events, the tenant otherwise, ``-`` when null) and grouped into 1 s tumbling windows per
  key; a window's batch goes to that key's ``streams.detect_fn.MicroBatchDetector.step`` once its
  path's watermark passes the window's end (``W - 1``), exactly as the SQL window emits it; a
  key with open work is stepped again at each later tick of the watermark (the job's event-time
  timer; in posture-only mode at the next minute end, where its records can first change). One
  ``KeyState`` (engine and posture) per path and key; the flow path's posture rows
  carry the ``#flow`` key suffix. An event at or behind its path's watermark is late (counted,
  not detected). Events are encoded as the producer encodes them and decoded by the step.
- **the awareness operator** (``streams.awareness_fn``): each alert through
  ``awareness.incidents.tenant_views`` (with the registry) to each tenant's
  ``awareness.stage.TenantAwareness.on_alert``; each posture record of a tenant (not ``-``) to
  ``on_metrics``; one event-time timer per tenant at ``next_timer()``, fired when the operator's
  watermark (the smaller of the two paths', as a union's; a path that has had no event is idle
  and holds nothing back, as the job's sources after ``source_idle_timeout_ms``) reaches it,
  calling ``on_watermark(watermark)``; every tenant threat document to ``CloudAwareness``. At the
  end of input both watermarks jump to the end of time, as Flink's do. Each watermark first emits
  the windows ending by it, then fires the timers it passed (Flink's order: the window operator
  emits before it forwards the watermark).

Warm-up. The forecasters of ``awareness.forecast`` are warm only once the hour-of-day buckets
around a minute have learnt an hour, so a stage started cold can warn only after a day. The job
runs for weeks; the replay therefore first feeds, for each of the ``--warmup-days`` (default 1)
previous days, quiet background over the run's hours of that day plus one hour each side (what
the hour-of-day buckets of the run's minutes need; a whole day costs three times as much), of the
same topology and rate (``quiet_week`` of the run's topology, other draws), through the
posture path only (no detectors: ``PostureState`` per path and key, records per minute, the same
awareness stage), then the campaign run with detectors. Consequence: during warm-up the
``alerts`` and ``anomaly_p99`` signals are never seen (no detector ran), and the run's anomaly
detectors start cold, as at a job's first start.

Measures (``measure_campaigns``)
--------------------------------
- Alerts to truth: an alert covers a stage's truth record as in ``detectors/evaluation/scorecard``
  (same category or ``anomaly``; evidence span overlapping the record's span; same entity, or an
  evidence event id among the record's).
- **Incidents per campaign** (target 1): the incidents of the campaign's victim tenant holding any
  alert that covers one of its stages (merged-away incidents followed to where they went). More
  than one is a *split*; an incident that also holds an alert covering another campaign's stage
  is a *merge*; both are errors. The neighbour tenant's side is reported, not scored.
- **Kill-chain order**: the expected chain is the kill-chain stage (``awareness.killchain.stage_of``)
  of the campaign's covering non-anomaly alerts, stage by stage in campaign order, first
  occurrences kept; the incident's ``kill_chain`` tactics, restricted to those stages, must equal it.
  Scored on campaigns that made one incident.
- **Compression**: all alerts of the run / incidents (every tenant's, merged-away ones not
  counted); also alerts attached to some incident / incidents.
- **Warning lead time** (ramping campaigns, target >= 10 min): the campaign's first critical
  covering alert's ``ts`` minus the time the first warning of the victim tenant was known (its
  minute's end, ``ts + 60 s``), over warnings from 30 min before the campaign's first event on.
  Also given against the escape stage's first event (``critical_ms``), for campaigns whose escape
  drew no critical alert.
- **Orange after the escape** (target <= 2 min): the first tenant threat document at orange or
  red emitted after the escape stage's first covering alert reached the stage; the delay is its
  minute minus the alert's minute (0 = the same minute).
- **False warnings** (``measure_quiet``): warnings per tenant per simulated week on quiet weeks
  (``quiet_week`` of ``--warmup-days + --quiet-days`` days, no attack), counted after the first
  ``--warmup-days`` days; ``--quiet-mode posture`` (default:
  posture path only, as the warm-up) or ``full`` (detectors too; ~10x slower).

Measured, first run (2026-12-03; seeds 301-303: 6 h, 3 campaigns of which 2 ramp, 20 ev/s, ~1.19 M
events each, warm-up 1 day; quiet weeks 311-312: 5 ev/s, 8 days, 7 counted, posture mode; 4
processes on a shared 2-core host, 1,222-1,231 s per campaign seed, 247-877 s per quiet week;
scorecard in ``results/awareness-scorecard.json``): incidents per campaign 1 for 4 of 9 (5 split, 0
merged); kill chain in order 4 of 4; compression 17.5x, 14.2x, 12.5x; warning lead >= 10 min for 1
of 6 ramping campaigns; orange in the escape alert's own minute for 9 of 9; false warnings 0.0 per
tenant-week on both quiet weeks.

Re-measured (2026-12-03 evening; same seeds and arguments, one seed per invocation, 310-847 s per
seed on a host at load 10-25; the input of each seed recorded with ``--record``, then
``--restage``d, which reproduced the live runs exactly): with alert-to-alert grouping (spans within
``gap_ms`` of an alert naming the same link entity): 5 of 9 campaigns one incident (4 split),
kill chain 5 of 5, compression 17.5x, 15.1x, 14.7x (attached 5.1x, 5.0x, 5.1x); with the outside
actor link (``awareness.incidents``, ``actor_gap_ms`` 5 h): 6 of 9 (3 split, 0 merged), kill chain
6 of 6, compression 18.9x, 16.0x, 15.6x (attached 5.5x, 5.3x, 5.4x), no alert of another campaign
or of the background joined a campaign's incident that had not before. Warning lead (warnings
code of that day): >= 10 min for 5 of 6 ramping campaigns (30, 13, 28, 34, 11 min); the sixth
(302-c1) warned 20 min before its escape event but drew no critical alert (its escape alert is
``high``), so it has no lead by this measure; orange in the escape alert's minute 9 of 9. Quiet
week 311 re-run (442 s): 0.0 false warnings per tenant-week; 312 not re-run (posture mode has no
alerts, so the grouping cannot change either).
Remaining splits (all three: 302-c1, 302-c2, 303-c0): the bucket read
(``cross_tenant.foreign_resource_access``) names the principal, not where the call came from, so it
cannot bridge the VM's escape and its upload 38-45 min later. ``awareness.entities`` reads an
``evidence.src_ip`` (with the registry, the VM holding that address); the rule does not write one
yet. Replaying the recorded alerts with that label filled from each alert's own evidence events
(the audit records' ``src_ip``, most frequent first, what a rule label would hold): 9 of 9 one
incident, kill chain 9 of 9, compression 18.9x, 21.3x, 16.6x. Earlier splits, now gone: a ramp's
scan and its first password-guessing alert 33-46 min apart (the guessing starts at 0.2 failures a
minute and is only detected once past ~1 a minute), joined by the actor link;
``brute_force.auth_failures`` now names its ``targets`` (the VM).

Re-measured after a minute's level came to count each incident as it stood at the minute's end
(``awareness.stage``: the replay's process/audit/auth path runs the flow allowance, 6 min, ahead of
the stage's watermark, and its alerts counted in the minutes before them, e.g. the next password-
guessing alert stopped its incident's decay; 2026-12-04, ``--seeds 301 302 303 --quiet-seeds
--record``, 135-247 s per seed): incidents, kill chains, compression and orange unchanged; warning
lead 28, 13, 26, 34, 22 min, 302-c1 19 min before its escape; ``--restage`` of the same recording
with the previous ``awareness/stage.py`` gives the old figures exactly (30, 13, 28, 34, 11; 20), so
the change is the level's alone. Quiet weeks have no alerts, so their levels cannot change (not
re-run). The simulated day (seed 304, 24 h): warnings 37 and 19.2 min before the first critical
alert (22.2 with the previous stage on the same recording).

Quiet weeks with the detectors on (2026-12-05, ``--seeds --quiet-seeds 311 --quiet-mode full``
and the same for 312, one process each, 541-545 s; merged in ``results/awareness-quiet-full.json``):
0 warnings on both; 2,029 and 2,027 alerts in the 7 counted days (``alerts_counted_by_detector``:
1,954 and 1,936 ``port_scan.internet_probes``, 75 and 90 anomaly, 0 and 1 ``dos.source_flood``);
highest tenant level yellow and orange (312's flood alert). Before ``dos.source_flood`` 1.5.0 the
311 week had 26 false flood alerts (established connections of the background's copula tail) and
its tenants reached orange and red.

Re-measured after the replay emits a watermark's windows before its timers (2026-12-06; before,
a key's timer step could close its engine past the key's next batch, whose events were then late
in the engine: on IoT-23's real day 7,998 of 23,145 flows): the three campaign seeds identical;
the simulated day 578 alerts (546), 96.3x (91.0x), warnings 37 and 20 min ahead as before; quiet
weeks with the detectors 0 warnings, 2,161 and 2,137 alerts counted (145 and 124 anomaly), highest
level orange on both.

Then with the robust Holt trend (``awareness.forecast.trend_clip``, 2026-12-06; RITA's public
server warned twice after single bursts of probes): lead 26, 16, 26, 25, 22 min (28, 18, 26, 25,
22), 302-c1 16 min before its escape (19); the day 32 and 18 min (37, 20); warnings 2, 2, 2 per
run (3, 3, 4: the non-ramping campaigns' tenants no longer warned after their attack's first
burst), 2 on the day (3); quiet weeks 0 warnings, posture and full.

Seeds: held out from the simulator's tests (1, 2, 3, 5, 6, 8, 11), the incidents' measures (7, 8),
the detector evaluation (101-105, 201-205) and the campaign helper's run (101-103): campaign runs
301-303, quiet weeks 311-312.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from awareness.incidents import IncidentSettings, tenant_views
from awareness.killchain import stage_of
from awareness.stage import AwarenessOutput, CloudAwareness, TenantAwareness
from detectors.alert import Alert, encode_alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from ingest.producer import event_key
from ingest.schema import Event, FlowEvent, encode_event
from ingest.simulator.campaign import CampaignInfo, CampaignRun, campaign_run, quiet_week
from ingest.simulator.config import DEFAULT_START_MS
from ingest.simulator.truth import TruthRecord
from ingest.tenants import TenantRegistry
from streams.detect_fn import END_OF_TIME, DetectionJobConfig, MicroBatchDetector, closed_batches_end
from streams.posture import PostureState

__all__ = [
    "CAMPAIGN_SEEDS",
    "QUIET_SEEDS",
    "AwarenessStage",
    "JobReplay",
    "ReplayResult",
    "covers",
    "final_incidents",
    "main",
    "measure_campaigns",
    "measure_quiet",
    "replay_run",
    "summarize",
    "warning_diagnostics",
]

CAMPAIGN_SEEDS: Final = (301, 302, 303)
QUIET_SEEDS: Final = (311, 312)
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS
LEAD_TARGET_MIN: Final = 10.0
ORANGE_TARGET_MIN: Final = 2.0
FALSE_WARNINGS_TARGET: Final = 1.0
COMPRESSION_TARGET: Final = 10.0
WARNING_LOOKBACK_MS: Final = 30 * MINUTE_MS  # warnings this long before a campaign's start count
_WARMUP_SEED_OFFSET: Final = 7919  # other background draws, same topology


# --- the awareness operator ---------------------------------------------------------------------
class AwarenessStage:
    """``streams.awareness_fn`` without Flink: per-tenant ``TenantAwareness`` with one event-time
    timer each, and the cloud's level. Every output document is kept in emission order, each
    with a sequence number (``_seq``) so measures can tell what came after what."""

    def __init__(self, registry: TenantRegistry | None, config: DetectorConfig) -> None:
        self.registry = registry
        self.config = config
        self.settings = IncidentSettings.from_config(config)
        self.tenants: dict[str, TenantAwareness] = {}
        self.timers: dict[str, int] = {}
        self.cloud = CloudAwareness(config)
        self.watermark = -(2**63)
        self.seq = 0
        self.incidents: list[dict[str, Any]] = []
        self.threat: list[dict[str, Any]] = []
        self.cloud_threat: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self.alert_seq: dict[str, int] = {}  # alert id -> sequence number when it reached the stage
        # When a list: every input, in order (``("a", Alert)``, ``("m", record)``, ``("w", watermark)``),
        # so ``restage`` can run another awareness configuration without detecting again.
        self.log: list[tuple[str, Any]] | None = None

    def _tenant(self, tenant: str) -> TenantAwareness:
        ta = self.tenants.get(tenant)
        if ta is None:
            crit = self.registry.criticality_of(tenant) if self.registry is not None else "medium"
            ta = self.tenants[tenant] = TenantAwareness(tenant, self.config, crit)
        return ta

    def _schedule(self, tenant: str, ta: TenantAwareness) -> None:
        if tenant in self.timers:
            return
        at = ta.next_timer()
        if at is not None:
            self.timers[tenant] = at

    def _emit(self, out: AwarenessOutput) -> None:
        for doc in out.incidents:
            self.seq += 1
            self.incidents.append({**doc, "_seq": self.seq})
        for doc in out.threat:
            self.seq += 1
            self.threat.append({**doc, "_seq": self.seq})
            self.seq += 1
            self.cloud_threat.append({**self.cloud.on_tenant_threat(doc), "_seq": self.seq})
        for doc in out.warnings:
            self.seq += 1
            self.warnings.append({**doc, "_seq": self.seq})

    def on_alert(self, alert: Alert) -> None:
        if self.log is not None:
            self.log.append(("a", alert))
        record = json.loads(encode_alert(alert))
        self.seq += 1
        self.alert_seq.setdefault(alert.alert_id, self.seq)
        for tenant, view in tenant_views(record, self.registry, self.settings):
            ta = self._tenant(tenant)
            out = ta.on_alert(view)
            self._schedule(tenant, ta)
            self._emit(out)

    def on_metrics(self, record: Mapping[str, Any]) -> None:
        tenant = record.get("tenant")
        if not tenant or tenant == "-":
            return
        if self.log is not None:
            self.log.append(("m", record))
        ta = self._tenant(str(tenant))
        ta.on_metrics(record)
        self._schedule(str(tenant), ta)

    def advance(self, watermark: int) -> None:
        """The operator's watermark moved to ``watermark``: fire the due timers, earliest first."""
        if watermark <= self.watermark:
            return
        if self.log is not None:
            self.log.append(("w", watermark))
        self.watermark = watermark
        while True:
            due = sorted((at, t) for t, at in self.timers.items() if at <= watermark)
            if not due:
                return
            for _at, tenant in due:
                del self.timers[tenant]
                ta = self.tenants[tenant]
                self._emit(ta.on_watermark(watermark))
                self._schedule(tenant, ta)
            if all(at > watermark for at in self.timers.values()):
                return


# --- the detection paths ------------------------------------------------------------------------
@dataclass
class _Path:
    """One event-time path of the job: its watermark, 1 s windows per key, a state per key."""

    name: str
    allowance_ms: int
    detector: MicroBatchDetector | None  # None: posture only (warm-up, quiet weeks)
    suffix: str
    tick_ms: int = 1000
    max_ts: int = -(2**62)
    watermark: int = -(2**62)
    late: int = 0
    events: int = 0
    steps: int = 0
    pending: dict[int, dict[str, list[Event]]] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)
    advanced: dict[str, int] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=dict)

    def add(self, ev: Event) -> None:
        if ev.ts <= self.watermark:
            self.late += 1
            return
        self.events += 1
        key = event_key(ev) or "-"
        end = ev.ts - ev.ts % self.tick_ms + self.tick_ms
        self.pending.setdefault(end, {}).setdefault(key, []).append(ev)
        if ev.ts > self.max_ts:
            self.max_ts = ev.ts

    def advance(self, watermark: int) -> tuple[list[Alert], list[dict[str, Any]]]:
        """Emit the windows the watermark passed, in event-time order, then fire the timers it
        passed, as Flink does: the SQL window operator emits every window ending by the watermark
        before it forwards the watermark that fires the keyed function's timers. A timer step
        closes up to the watermark itself, so a timer fired between two windows' batches made the
        later batch's events late (where the watermark moves seconds at a time: a sparse capture,
        IoT-23's 23,145 flows in 24 h, lost 7,998 events and 8 of its 10 alerts)."""
        alerts: list[Alert] = []
        metrics: list[dict[str, Any]] = []
        if watermark <= self.watermark:
            return alerts, metrics
        self.watermark = watermark
        for end in sorted(end for end in self.pending if end - 1 <= watermark):
            batch = self.pending.pop(end)
            for k in sorted(batch):
                self._step(k, batch[k], end, alerts, metrics)
        while True:
            due = sorted((at, key) for key, at in self.timers.items() if at <= watermark)
            if not due:
                return alerts, metrics
            for at, key in due:
                if self.timers.get(key) == at:
                    del self.timers[key]
                    if self.advanced.get(key, -(2**62)) < at:
                        self._step(key, None, closed_batches_end(watermark, self.tick_ms), alerts, metrics)

    def _step(
        self,
        key: str,
        events: list[Event] | None,
        advance_to: int,
        alerts: list[Alert],
        metrics: list[dict[str, Any]],
    ) -> None:
        self.steps += 1
        if self.detector is not None:
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = self.detector.new_state()
                self.detector.attach(state)
            payloads = [encode_event(e) for e in events] if events is not None else None
            out = self.detector.step(state, key, payloads, advance_to)
            alerts += out.alerts
            metrics += out.metrics
            open_work = MicroBatchDetector.has_open_work(state)
        else:
            posture = self.states.get(key)
            if posture is None:
                posture = self.states[key] = PostureState()
            if events:
                posture.add_all(sorted(events, key=lambda e: (e.ts, e.id)))
            metrics += posture.close(advance_to, key + self.suffix)
            open_work = bool(posture)
        self.advanced[key] = advance_to
        if open_work and advance_to < END_OF_TIME - MINUTE_MS:
            if self.detector is None:  # posture only: nothing changes before the next minute ends
                self.timers[key] = advance_to - advance_to % MINUTE_MS + MINUTE_MS
            elif events is None:
                self.timers[key] = advance_to - advance_to % self.tick_ms + self.tick_ms
            else:
                self.timers[key] = advance_to + self.tick_ms


class JobReplay:
    """The job offline: two detection paths (or posture-only paths) into one ``AwarenessStage``."""

    def __init__(
        self,
        registry: TenantRegistry,
        config: DetectorConfig,
        stage: AwarenessStage | None = None,
        *,
        detect: bool = True,
        job: DetectionJobConfig | None = None,
    ) -> None:
        job = job or DetectionJobConfig()
        self.registry = registry
        self.stage = stage or AwarenessStage(registry, config)
        detector = None
        if detect:
            detector = MicroBatchDetector(job)
            detector.context = DetectionContext(registry=registry, config=config)
        self.flows = _Path("flow", job.flow_export_delay_ms, detector, "#flow", job.tick_ms)
        self.others = _Path("other", job.out_of_orderness_ms, detector, "", job.tick_ms)
        self.alerts: list[Alert] = []
        self._second = -(2**62)

    def feed(self, events: Iterable[Event]) -> None:
        """Events in the order they reach Kafka (here: time order). The watermarks move once per
        second of event time (Flink emits them every 50 ms: the same windows, a little later)."""
        for ev in events:
            second = ev.ts // 1000
            if second != self._second:
                self._second = second
                self._advance()
            (self.flows if isinstance(ev, FlowEvent) else self.others).add(ev)
        self._advance()

    def finish(self, watermark: int = END_OF_TIME) -> None:
        """End of input: both watermarks jump to ``watermark`` (the end of time, as Flink's)."""
        self._advance(watermark)

    def _advance(self, final: int | None = None) -> None:
        for path in (self.others, self.flows):
            wm = final if final is not None else path.max_ts - path.allowance_ms
            alerts, metrics = path.advance(wm)
            for alert in alerts:
                self.alerts.append(alert)
                self.stage.on_alert(alert)
            for record in metrics:
                self.stage.on_metrics(record)
        # A path that has had no event is idle (the job's sources stop holding the watermark back
        # after source_idle_timeout_ms): a capture of flows alone closes its minutes as it goes.
        live = [p.watermark for p in (self.others, self.flows) if p.events or p.late]
        self.stage.advance(min(live) if live else min(self.others.watermark, self.flows.watermark))

    def stats(self) -> dict[str, Any]:
        return {
            "events": self.flows.events + self.others.events,
            "late_events": self.flows.late + self.others.late,
            "steps": self.flows.steps + self.others.steps,
            "keys": {"flow": len(self.flows.states), "other": len(self.others.states)},
        }


# --- runs -----------------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    run: CampaignRun
    alerts: list[Alert]
    stage: AwarenessStage
    stats: dict[str, Any]
    warmup_end_ms: int


def _warmup_segments(run: CampaignRun, days: int) -> list[CampaignRun]:
    """Quiet background of the run's topology and rate (other draws) over the run's hours of each
    of the ``days`` previous days, one hour wider on each side (a forecast interpolates between
    the two nearest hour buckets), never reaching into the run."""
    cfg = run.config
    duration = int(cfg.duration_s * 1000)
    out = []
    for d in range(days, 0, -1):
        lo = cfg.start_ms - d * DAY_MS - HOUR_MS
        hi = min(cfg.start_ms - d * DAY_MS + duration + HOUR_MS, cfg.start_ms if d == 1 else lo + DAY_MS)
        week = quiet_week(
            cfg.seed, lo, days=(hi - lo) / DAY_MS, tenants=cfg.tenants, hosts=cfg.hosts,
            vms_per_tenant=cfg.vms_per_tenant, events_per_s=cfg.events_per_s,
            weekday_factors=run.weekday_factors or (1.0,) * 7,
        )  # fmt: skip
        seed = cfg.seed + _WARMUP_SEED_OFFSET * d
        out.append(dataclasses.replace(week, config=dataclasses.replace(week.config, seed=seed)))
    return out


def replay_run(
    run: CampaignRun,
    config: DetectorConfig | None = None,
    *,
    warmup_days: int = 1,
    detect: bool = True,
    record: bool = False,
) -> ReplayResult:
    """Warm-up (posture only, quiet background of the run's topology over the run's hours of the
    ``warmup_days`` previous days), then ``run`` through the job (``detect``: with the detectors),
    then the end of input. ``record``: keep the awareness stage's input in ``stage.log``."""
    cfg = config or DetectorConfig.default()
    registry = run.registry
    stage = AwarenessStage(registry, cfg)
    if record:
        stage.log = []
    t0 = time.perf_counter()
    warm_events = 0
    if warmup_days > 0:
        warm = JobReplay(registry, cfg, stage, detect=False)
        for segment in _warmup_segments(run, warmup_days):
            warm.feed(segment.events())
        warm.finish(run.config.start_ms)  # every warm-up minute closed, the stage at the run's start
        warm_events = warm.stats()["events"]
    t1 = time.perf_counter()
    job = JobReplay(registry, cfg, stage, detect=detect)
    job.feed(run.events())
    job.finish()
    t2 = time.perf_counter()
    stats = {**job.stats(), "warmup_events": warm_events, "warmup_s": round(t1 - t0, 1),
             "replay_s": round(t2 - t1, 1)}  # fmt: skip
    return ReplayResult(run, job.alerts, stage, stats, run.config.start_ms)


def restage(
    run: CampaignRun, log: Sequence[tuple[str, Any]], stats: Mapping[str, Any], config: DetectorConfig
) -> ReplayResult:
    """The awareness stage alone, fed a recorded input (``replay_run(record=True)``'s
    ``stage.log``) under ``config``: the same alerts, posture records and watermarks in the same
    order, so only the awareness settings and code can differ from the recorded run."""
    stage = AwarenessStage(run.registry, config)
    alerts: list[Alert] = []
    t0 = time.perf_counter()
    for kind, item in log:
        if kind == "a":
            alerts.append(item)
            stage.on_alert(item)
        elif kind == "m":
            stage.on_metrics(item)
        else:
            stage.advance(item)
    out = {**stats, "restaged_s": round(time.perf_counter() - t0, 1)}
    return ReplayResult(run, alerts, stage, out, run.config.start_ms)


# --- measures -------------------------------------------------------------------------------------
def covers(alert: Alert, rec: TruthRecord, slack_ms: int = 0) -> bool:
    """Whether ``alert`` covers the truth record (``detectors.evaluation.scorecard``'s matching)."""
    if alert.category != rec.category and alert.category != "anomaly":
        return False
    if alert.first_seen > rec.end + slack_ms or alert.last_seen < rec.start - slack_ms:
        return False
    if alert.entity.type == rec.entity.type and alert.entity.id == rec.entity.id:
        return True
    ids = alert.evidence.get("event_ids") or ()
    return bool(ids) and not set(ids).isdisjoint(rec.event_ids)


def final_incidents(docs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The last version of every incident, by (tenant, incident id)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for d in docs:
        key = (str(d["tenant"]), str(d["incident_id"]))
        old = latest.get(key)
        if old is None or d["version"] >= old["version"]:
            latest[key] = dict(d)
    return latest


def _holders(latest: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(tenant, alert id) -> the incidents (not merged away) holding it."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (tenant, iid), d in latest.items():
        if d.get("close_reason") == "merged":
            continue
        for aid in d.get("alert_ids") or ():
            out[(tenant, aid)].add(iid)
    return out


def _minute(ts: int) -> int:
    return ts - ts % MINUTE_MS


def _campaign_measures(
    c: CampaignInfo,
    records: list[TruthRecord],
    covering: dict[int, list[Alert]],
    owner: Mapping[str, set[str]],
    holders: Mapping[tuple[str, str], set[str]],
    latest: Mapping[tuple[str, str], Mapping[str, Any]],
    result: ReplayResult,
) -> dict[str, Any]:
    stage = result.stage
    tenant = c.tenant
    alerts = sorted(
        {a.alert_id: a for v in covering.values() for a in v}.values(), key=lambda a: (a.ts, a.alert_id)
    )
    incidents: set[str] = set()
    for a in alerts:
        incidents |= holders.get((tenant, a.alert_id), set())
    neighbour_incidents: set[str] = set()
    for a in alerts:
        neighbour_incidents |= holders.get((c.neighbour_tenant, a.alert_id), set())
    merged_with = sorted(
        {
            other
            for iid in incidents
            for aid in latest[(tenant, iid)].get("alert_ids") or ()
            for other in owner.get(aid, set())
            if other != c.id
        }
    )
    stages = []
    for rec in records:
        got = covering.get(rec.stage or 0, [])
        held = sorted({i for a in got for i in holders.get((tenant, a.alert_id), set())})
        stages.append(
            {
                "stage": rec.stage,
                "scenario": rec.scenario,
                "start": rec.start,
                "alerts": len(got),
                "detectors": sorted({f"{a.detector}:{a.severity}" for a in got}),
                "incidents": held,
                "unattached_alerts": sum(1 for a in got if not holders.get((tenant, a.alert_id))),
            }
        )
    # kill chain
    expected: list[str] = []
    for rec in records:
        for a in sorted(covering.get(rec.stage or 0, []), key=lambda a: (a.first_seen, a.alert_id)):
            if a.category != "anomaly":
                st = stage_of(json.loads(encode_alert(a)))
                if st not in expected:
                    expected.append(st)
    chain: list[str] | None = None
    order_ok: bool | None = None
    if len(incidents) == 1:
        doc = latest[(tenant, next(iter(incidents)))]
        chain = [e["tactic"] for e in doc["kill_chain"]]
        order_ok = [t for t in chain if t in expected] == expected
    # warning lead time
    critical = [a for a in alerts if a.severity == "critical"]
    first_critical = min(critical, key=lambda a: (a.ts, a.alert_id)) if critical else None
    tenant_warnings = sorted(
        (w for w in stage.warnings if w["tenant"] == tenant), key=lambda w: (w["ts"], w["warning_id"])
    )
    in_window = [w for w in tenant_warnings if w["ts"] >= c.start - WARNING_LOOKBACK_MS]
    before = [w for w in tenant_warnings if w["ts"] < c.start - WARNING_LOOKBACK_MS]
    first_warning = in_window[0] if in_window else None
    lead = lead_escape = None
    if first_warning is not None:
        known = first_warning["ts"] + MINUTE_MS
        lead_escape = round((c.critical_ms - known) / MINUTE_MS, 1)
        if first_critical is not None:
            lead = round((first_critical.ts - known) / MINUTE_MS, 1)
    # orange after the escape
    escape = sorted(covering.get(2, []), key=lambda a: (stage.alert_seq.get(a.alert_id, 0), a.ts))
    orange: dict[str, Any] = {"escape_alert": None}
    if escape:
        first = escape[0]
        seq = stage.alert_seq.get(first.alert_id, 0)
        hit = next(
            (d for d in stage.threat if d["tenant"] == tenant and d["_seq"] > seq and d["level_rank"] >= 2),
            None,
        )
        orange = {
            "escape_alert": {"detector": first.detector, "severity": first.severity, "ts": first.ts},
            "orange_ts": hit["ts"] if hit else None,
            "level": hit["level"] if hit else None,
            "delay_min": round((hit["ts"] - _minute(first.ts)) / MINUTE_MS, 1) if hit else None,
            "delay_from_escape_event_min": round((hit["ts"] - _minute(c.critical_ms)) / MINUTE_MS, 1)
            if hit
            else None,
        }
    levels = [
        d["level_rank"]
        for d in stage.threat
        if d["tenant"] == tenant and c.start <= d["ts"] <= c.end + HOUR_MS
    ]
    return {
        "campaign": c.id,
        "ramping": c.ramping,
        "tenant": tenant,
        "vm": c.vm,
        "neighbour_tenant": c.neighbour_tenant,
        "shared_host": c.shared_host,
        "start": c.start,
        "end": c.end,
        "critical_ms": c.critical_ms,
        "stages": stages,
        "stages_detected": sum(1 for s in stages if s["alerts"]),
        "covering_alerts": len(alerts),
        "incidents": sorted(incidents),
        "incident_count": len(incidents),
        "split": len(incidents) > 1,
        "merged_with_campaigns": merged_with,
        "neighbour_incidents": len(neighbour_incidents),
        "incident_titles": [latest[(tenant, i)]["title"] for i in sorted(incidents)],
        "incident_spans": [
            [latest[(tenant, i)]["first_seen"], latest[(tenant, i)]["last_seen"]] for i in sorted(incidents)
        ],
        "kill_chain_expected": expected,
        "kill_chain": chain,
        "kill_chain_ok": order_ok,
        "first_critical_alert": (
            {"detector": first_critical.detector, "ts": first_critical.ts} if first_critical else None
        ),
        "first_warning": (
            {
                "ts": first_warning["ts"],
                "signal": first_warning["signal"],
                "level": first_warning["level"],
                "reason": first_warning["reason"],
            }
            if first_warning
            else None
        ),
        "warnings_in_campaign_window": len(in_window),
        "tenant_warnings_before_window": len(before),
        "lead_min": lead,
        "lead_vs_escape_event_min": lead_escape,
        "orange": orange,
        "max_level_rank": max(levels) if levels else None,
    }


def measure_campaigns(result: ReplayResult) -> dict[str, Any]:
    """The campaign measures of one replayed run (module docstring)."""
    run, stage = result.run, result.stage
    latest = final_incidents(stage.incidents)
    holders = _holders(latest)
    by_campaign: dict[str, list[TruthRecord]] = defaultdict(list)
    for rec in run.truth:
        if rec.campaign is not None:
            by_campaign[rec.campaign].append(rec)
    owner: dict[str, set[str]] = defaultdict(set)  # alert id -> campaigns it covers
    covering_of: dict[str, dict[int, list[Alert]]] = {}
    for cid, recs in by_campaign.items():
        recs.sort(key=lambda r: r.stage or 0)
        cov: dict[int, list[Alert]] = {}
        for rec in recs:
            cov[rec.stage or 0] = [a for a in result.alerts if covers(a, rec)]
            for a in cov[rec.stage or 0]:
                owner[a.alert_id].add(cid)
        covering_of[cid] = cov
    campaigns = [
        _campaign_measures(c, by_campaign[c.id], covering_of[c.id], owner, holders, latest, result)
        for c in run.campaigns
    ]
    live = [d for d in latest.values() if d.get("close_reason") != "merged"]
    attached = {aid for d in live for aid in d.get("alert_ids") or ()}
    n_alerts = len(result.alerts)
    return {
        "seed": run.config.seed,
        "start_ms": run.config.start_ms,
        "duration_h": run.config.duration_s / 3600,
        "events_per_s": run.config.events_per_s,
        "alerts": n_alerts,
        "alerts_attached": sum(1 for a in result.alerts if a.alert_id in attached),
        "incidents": len(live),
        "incidents_by_severity": _count(d["severity"] for d in live),
        "compression": round(n_alerts / len(live), 2) if live else None,
        "compression_attached": (
            round(sum(1 for a in result.alerts if a.alert_id in attached) / len(live), 2) if live else None
        ),
        "warnings": len(stage.warnings),
        "warnings_by_tenant": _count(w["tenant"] for w in stage.warnings),
        "threat_docs": len(stage.threat),
        "cloud_max_level": max((d["level"] for d in stage.cloud_threat), key=_rank, default=None),
        "stats": result.stats,
        "warning_state": warning_diagnostics(stage, run.config.start_ms + HOUR_MS),
        "campaigns": campaigns,
    }


def measure_quiet(result: ReplayResult, count_from_ms: int) -> dict[str, Any]:
    """False warnings of a quiet run, counted from ``count_from_ms`` on."""
    run = result.run
    end = run.config.end_ms
    counted = [w for w in result.stage.warnings if w["ts"] >= count_from_ms]
    weeks = (end - count_from_ms) / WEEK_MS
    tenants = len(run.topology.tenants)
    return {
        "seed": run.config.seed,
        "events_per_s": run.config.events_per_s,
        "days_counted": round((end - count_from_ms) / DAY_MS, 2),
        "tenants": tenants,
        "warnings": len(counted),
        "warnings_per_tenant_week": round(len(counted) / tenants / weeks, 3) if weeks > 0 else None,
        "max_per_tenant_week": round(max(_count(w["tenant"] for w in counted).values(), default=0) / weeks, 3)
        if weeks > 0
        else None,
        "by_signal": _count(w["signal"] for w in counted),
        "by_tenant": _count(w["tenant"] for w in counted),
        "examples": [{k: w[k] for k in ("tenant", "ts", "signal", "level", "reason")} for w in counted[:5]],
        "warning_state": warning_diagnostics(result.stage, end - MINUTE_MS),
        "alerts": len(result.alerts),
        "alerts_counted_by_detector": _count(a.detector for a in result.alerts if a.ts >= count_from_ms),
        "vms": sum(len(t.vms) for t in run.topology.tenants),
        "max_level": max(
            (d["level"] for d in result.stage.threat if d["ts"] >= count_from_ms), key=_rank, default=None
        ),
        "stats": result.stats,
    }


def warning_diagnostics(stage: AwarenessStage, at_ms: int) -> dict[str, Any]:
    """Per tenant: warnings raised, candidates dropped as within the normal range, forecasters
    evicted, and how many of its forecasters are warm at ``at_ms`` (a cold one cannot warn)."""
    out: dict[str, Any] = {}
    for tenant in sorted(stage.tenants):
        ew = stage.tenants[tenant].warning
        warm = sorted(s for s, fc in ew.forecasters.items() if fc.predict(at_ms).warm)
        out[tenant] = {
            "raised": ew.raised,
            "within_normal": ew.within_normal,
            "evicted": ew.evicted,
            "signals": len(ew.forecasters),
            "warm_signals": warm,
        }
    return out


def _rank(level: str) -> int:
    return ("blue", "yellow", "orange", "red").index(level)


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))


def summarize(runs: Sequence[Mapping[str, Any]], quiet: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The headline figures over all seeds, each with its target and whether it is met."""
    camps = [c for r in runs for c in r["campaigns"]]
    ramping = [c for c in camps if c["ramping"]]
    one = [c for c in camps if c["incident_count"] == 1 and not c["merged_with_campaigns"]]
    chain = [c for c in camps if c["kill_chain_ok"] is not None]
    leads = [c["lead_min"] for c in ramping]
    orange = [c["orange"].get("delay_min") for c in camps if c["orange"].get("escape_alert")]
    comp = [r["compression"] for r in runs if r["compression"] is not None]
    fw = [q["warnings_per_tenant_week"] for q in quiet if q["warnings_per_tenant_week"] is not None]
    return {
        "campaigns": len(camps),
        "incidents_per_campaign": {
            "target": "1 (split or merged = error)",
            "correct": len(one),
            "split": sum(1 for c in camps if c["split"]),
            "merged": sum(1 for c in camps if c["merged_with_campaigns"]),
            "no_incident": sum(1 for c in camps if c["incident_count"] == 0),
            "met": bool(camps) and len(one) == len(camps),
        },
        "kill_chain_order": {
            "scored": len(chain),
            "correct": sum(1 for c in chain if c["kill_chain_ok"]),
            "met": bool(chain) and all(c["kill_chain_ok"] for c in chain) and len(chain) == len(camps),
        },
        "compression": {
            "target": COMPRESSION_TARGET,
            "per_run": comp,
            "attached_per_run": [r["compression_attached"] for r in runs],
            "met": bool(comp) and min(comp) >= COMPRESSION_TARGET,
        },
        "warning_lead_min": {
            "target": LEAD_TARGET_MIN,
            "ramping_campaigns": len(ramping),
            "per_campaign": {c["campaign"]: c["lead_min"] for c in ramping},
            "vs_escape_event": {c["campaign"]: c["lead_vs_escape_event_min"] for c in ramping},
            "met": bool(ramping) and all(x is not None and x >= LEAD_TARGET_MIN for x in leads),
        },
        "orange_after_escape_min": {
            "target": ORANGE_TARGET_MIN,
            "per_campaign": {c["campaign"]: c["orange"].get("delay_min") for c in camps},
            "met": bool(orange)
            and all(x is not None and x <= ORANGE_TARGET_MIN for x in orange)
            and len(orange) == len(camps),
        },
        "false_warnings_per_tenant_week": {
            "target": FALSE_WARNINGS_TARGET,
            "per_seed": fw,
            "met": bool(fw) and max(fw) <= FALSE_WARNINGS_TARGET,
        },
    }


# --- command line ---------------------------------------------------------------------------------
def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m streams.awareness_eval",
        description="Replay simulated campaigns and quiet weeks through the job's detection and "
        "awareness stages offline; measure incidents, kill chains, compression, warning lead "
        "time, orange after an escape and false warnings (issue 21).",
    )
    p.add_argument("--seeds", type=int, nargs="*", default=list(CAMPAIGN_SEEDS), help="campaign-run seeds")
    p.add_argument("--quiet-seeds", type=int, nargs="*", default=list(QUIET_SEEDS), help="quiet-week seeds")
    p.add_argument("--hours", type=float, default=6.0, help="length of each campaign run (h)")
    p.add_argument("--campaigns", type=int, default=3, help="campaigns per run")
    p.add_argument("--ramping-share", type=float, default=0.67, help="share of ramping campaigns")
    p.add_argument("--rate", type=float, default=20.0, help="background events/s of campaign runs")
    p.add_argument("--warmup-days", type=int, default=1,
                   help="previous days whose hours of the run are replayed quiet, posture only, first")  # fmt: skip
    p.add_argument("--quiet-days", type=float, default=7.0, help="days of each quiet run that are counted")
    p.add_argument("--quiet-rate", type=float, default=5.0, help="background events/s of quiet weeks")
    p.add_argument("--quiet-mode", choices=("posture", "full"), default="posture",
                   help="quiet weeks through the posture path only, or with the detectors")  # fmt: skip
    p.add_argument("--start-ms", type=int, default=DEFAULT_START_MS, help="start of the first run")
    p.add_argument("--config", help="detector configuration YAML (default: the packaged one)")
    p.add_argument("--out", default="results/awareness-scorecard.json", help="JSON output path")
    p.add_argument("--record", metavar="DIR",
                   help="also write each campaign run's awareness input to DIR/<seed>.pickle")  # fmt: skip
    p.add_argument("--restage", metavar="DIR",
                   help="no detection: feed DIR/<seed>.pickle (from --record, same run arguments; "
                   "a local file of your own, pickle trusts it) to the awareness stage alone")  # fmt: skip
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="only combine the runs of these scorecards into --out (no replay)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = _args(argv)
    if a.merge:
        return _merge(a.merge, Path(a.out))
    cfg = DetectorConfig.load_or_default(a.config)
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for k, seed in enumerate(a.seeds):
        start = a.start_ms + k * 7 * DAY_MS
        run = campaign_run(
            seed, start, int(a.hours * HOUR_MS), campaigns=a.campaigns, ramping_share=a.ramping_share,
            events_per_s=a.rate,
        )  # fmt: skip
        t = time.perf_counter()
        if a.restage:
            try:
                # a file this command wrote (--record) on this machine, named by the user
                saved = pickle.loads((Path(a.restage) / f"{seed}.pickle").read_bytes())  # noqa: S301
            except (OSError, pickle.UnpicklingError) as exc:
                print(f"cannot read the recorded input of seed {seed}: {exc}", file=sys.stderr)
                return 2
            result = restage(run, saved["log"], saved["stats"], cfg)
        else:
            result = replay_run(run, cfg, warmup_days=a.warmup_days, record=bool(a.record))
            if a.record and result.stage.log is not None:
                rec = Path(a.record)
                rec.mkdir(parents=True, exist_ok=True)
                saved = {"log": result.stage.log, "stats": result.stats}
                (rec / f"{seed}.pickle").write_bytes(pickle.dumps(saved, pickle.HIGHEST_PROTOCOL))
        measured = measure_campaigns(result)
        measured["wall_s"] = round(time.perf_counter() - t, 1)
        runs.append(measured)
        _print_run(measured)
    quiet: list[dict[str, Any]] = []
    for k, seed in enumerate(a.quiet_seeds):
        start = a.start_ms + (len(a.seeds) + k) * 7 * DAY_MS
        days = a.warmup_days + a.quiet_days
        week = quiet_week(seed, start, days=days, events_per_s=a.quiet_rate)
        t = time.perf_counter()
        res = replay_run(week, cfg, warmup_days=0, detect=a.quiet_mode == "full")
        measured = measure_quiet(res, start + a.warmup_days * DAY_MS)
        measured["mode"] = a.quiet_mode
        measured["wall_s"] = round(time.perf_counter() - t, 1)
        quiet.append(measured)
        print(f"quiet seed {seed}: {measured['warnings']} warnings over {measured['days_counted']} days, "
              f"{measured['warnings_per_tenant_week']} per tenant-week, {measured['wall_s']} s")  # fmt: skip
    doc = {
        "command": "python -m streams.awareness_eval " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": cfg.source,
        "params": {k: v for k, v in vars(a).items() if k != "out"},
        "summary": summarize(runs, quiet),
        "runs": runs,
        "quiet": quiet,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(json.dumps(doc["summary"], indent=2, sort_keys=True))
    print(f"wrote {out} in {doc['wall_s']} s")
    return 0


def _merge(paths: Sequence[str], out: Path) -> int:
    parts = [json.loads(Path(p).read_text()) for p in paths]
    runs = [r for d in parts for r in d["runs"]]
    quiet = [q for d in parts for q in d["quiet"]]
    doc = {
        "command": [d["command"] for d in parts],
        "config": sorted({d["config"] for d in parts}),
        "params": [d["params"] for d in parts],
        "summary": summarize(runs, quiet),
        "runs": runs,
        "quiet": quiet,
        "wall_s": [d["wall_s"] for d in parts],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(json.dumps(doc["summary"], indent=2, sort_keys=True))
    return 0


def _print_run(m: Mapping[str, Any]) -> None:
    print(f"seed {m['seed']}: {m['stats']['events']} events, {m['alerts']} alerts -> {m['incidents']} "
          f"incidents ({m['compression']}x), {m['warnings']} warnings, {m['wall_s']} s")  # fmt: skip
    for c in m["campaigns"]:
        print(f"  {c['campaign']} ramping={c['ramping']} tenant={c['tenant']} incidents={c['incident_count']} "
              f"merged={c['merged_with_campaigns']} chain_ok={c['kill_chain_ok']} lead={c['lead_min']} "
              f"orange={c['orange'].get('delay_min')} stages={[s['alerts'] for s in c['stages']]}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
