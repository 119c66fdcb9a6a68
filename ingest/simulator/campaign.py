"""Multi-stage attack campaigns and quiet weeks: labelled, seeded input for incidents and forecasts.

Two generators for the situational-awareness measures of issue 21, both pure functions of their
arguments (same arguments, same events, same ids, same truth; no wall clock anywhere):

``campaign_run(seed, start_ms, duration_ms, campaigns=N, ramping_share=0.5, tenants=8, ...)``
    A run of benign background (the simulator's ``Background``, hour-of-day rhythm, optionally the
    day-of-week factor) with ``N`` attack campaigns injected. Returns a ``CampaignRun``, which *is*
    an ``ingest.simulator.SimResult`` (``.events()`` sorted by ts and regenerated per pass,
    ``.truth``, ``.registry``, ``write_files``, ``stream_to`` all work) plus ``.campaigns``, one
    ``CampaignInfo`` per campaign (victim, attacker, neighbour, ramping or not, ``critical_ms``).
``quiet_week(seed, start_ms, tenants=8, days=7, events_per_s=5.0)``
    The same background for a week with no attack at all (``truth == []``), as a ``CampaignRun``.
``quiet_signals(seed, start_ms, minutes=7*1440, tenants=8, events_per_s=100.0)``
    A cheap per-minute, per-tenant signal generator (``MinuteSignals``: events, flows, probes,
    failed logins, cross-tenant flows, auth, process, audit counts) with the *same distribution*
    as counting the background events of the same topology and rate (each count is Poisson with the
    background's mean for that tenant, kind and minute), but not the same draws, without
    generating the events: a simulated week of 8 tenants is 80,640 rows in ~5 s at any rate
    (measured), where counting 100 ev/s of real background would take hours. ``minute_signals(events, topology)`` counts the same signals from real events (a
    campaign run's, to see a ramp), so both sides of a forecaster test speak one format.

The campaign story (``STAGES``; one attacker, one victim VM, one neighbour tenant)
------------------------------------------------------------------------------------
Every stage is an existing scenario, built by calling its builder (``SCENARIOS[name].build``),
never by copying it, so the detectors that catch the scenario alone catch the stage:

====  ====================  ===================================================================
0     reconnaissance        ``port_scan.vertical``: the attacker's address probes the victim VM
1     credential_access     ``brute_force.ssh_password`` (sshd failures and their TCP flows) or
                            ``brute_force.flow_guessing`` (flows only), same attacker, same VM
2     escape                ``vm_escape.shell_spawn`` / ``host_device_open`` /
                            ``namespace_escape`` / ``kernel_module`` by the victim VM's emulator
3     cross_tenant          a read of the neighbour tenant's data: ``cross_tenant_leak.
                            foreign_resource_access`` (the victim tenant's principal reads the
                            neighbour's bucket, from the victim VM's address),
                            ``cross_tenant_leak.unpeered_flow`` (the victim VM connects into the
                            unpeered neighbour's VMs) or ``vm_escape.foreign_disk_open`` (the
                            emulator opens a neighbour VM's disk on the same host)
4     exfiltration          ``exfiltration.bulk_upload``: the victim VM sends gigabytes out
====  ====================  ===================================================================

How a builder is made to tell *this* story: it gets a ``Ctx`` whose ``vm()`` returns the victim
(``_PinnedCtx``) and, for the cross-tenant stage, a topology view holding only the victim and
neighbour tenants; an outcome that still picked another actor is drawn again from a new RNG stream
(``_MAX_TRIES``). The attacker address each builder draws is then replaced by the campaign's one
(``_retarget``), and for the bucket read the audit ``src_ip`` becomes the victim VM's address (the
stolen keys are used from the compromised VM), so every stage names an entity of the story
(attacker ip, victim VM, its address, its host, the victim tenant's principal).

Each stage starts ``min_gap_ms``..``max_gap_ms`` (1..20 min) after the previous stage's last event.
Why 20 min: the incident stage closes an incident after a 30-minute inactivity gap (issue 21, the
incidents helper's ``gap_ms`` default), and a detector's alert spans its evidence, so 20 min
leaves 10 min for a stage whose first and last events do not raise an alert of their own.
A campaign therefore lasts from ~20 min (abrupt) to ~4 h (ramping); ``campaign_length_bound_ms``
gives the bound used to fit campaigns into a run.

Ramping campaigns (``ramping_share`` of them, the forecaster's target)
    The reconnaissance and the password guessing do not come as one burst but grow geometrically:
    probes per minute from ``probe_rate_per_min[0]`` (0.5) to ``[1]`` (20) over ``recon_ramp_ms``
    (10-30 min), then failed logins per minute from ``guess_rate_start_per_min`` (0.2) to a rate
    drawn in ``guess_rate_end_per_min`` (15-30) over ``guess_ramp_ms`` (30-90 min), then the
    escape (the first critical stage) 1-20 min later. The rate at minute ``m`` of a ramp of ``D``
    minutes is ``r(m) = r0 * (r1 / r0) ** (m / D)``; minute ``m`` carries
    ``floor(C(m + 1)) - floor(C(m))`` attempts where ``C`` is the integral of ``r`` (so the
    counts are integers, deterministic, and sum to the integral). Each minute is one call of the
    builder over that minute, thinned to the minute's count (``_thin``: the first attempts, with
    the TCP flow that carries them; a successful login inside the ramp is dropped). Why these
    numbers: ``brute_force.auth_failures`` needs 10 failures in 10 minutes, so the first
    brute-force alert comes when the rate passes ~1/min, tens of minutes before the escape, and
    the peak (15-30 per minute) is below what one ``ssh_password`` call supplies per minute (30+).
    The recon ramp reaches ``port_scan.failed_probe_scan``'s 20 failed pairs in 5 minutes only
    near its end. Abrupt campaigns use each builder's own duration range.

Concurrent campaigns are kept apart so that the simulator does not merge two stories: a victim is
drawn among VMs (not the backup role) whose host and tenant no campaign still running (or
ended less than ``max_gap_ms + 30 min`` ago) uses; only when none is left does it share a host
(``CampaignInfo.shared_host`` says so).

Truth: one ``TruthRecord`` per stage with the stage's own scenario name and category (so the
existing scorecard counts it), ``campaign`` = the campaign id (``"<seed>-c<k>"``), ``stage`` = its
index in ``STAGES``, and ``detail`` = the builder's detail plus ``campaign_stage`` (the stage name)
and ``ramping``; a ramp stage's detail has ``ramp`` (``start_ms``, ``minutes``, start and end rate,
``per_minute`` counts: minute ``m`` covers ``start_ms + m * 60000`` onwards). Event ids are
``event_id("sim", "<seed>:camp:<k>:<stage>:<segment>:<try>:<n>")``.

The week (``WEEKDAY_FACTORS``, Monday first)
    Weekdays 1.0 (the existing hour-of-day curve, unchanged), Saturday 0.6, Sunday 0.55, applied to
    the background's rate on top of ``diurnal_factor``. Basis: an assumption, not a measurement;
    the only day-long captures in the project's data (CTU-50 normal hosts) are four weekdays
    (2022-06-13, -14 and -23, Monday to Thursday UTC), so there is no weekend to learn from. A
    week's mean is (5 + 0.6 + 0.55) / 7 = 0.88 of a weekday's. Pass ``weekday_factors`` to change
    it (seven positive numbers).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Final, NamedTuple

import msgspec

from ingest.schema import AuditEvent, AuthEvent, Event, FlowEvent
from ingest.simulator.background import KIND_WEIGHTS, Background, diurnal_factor
from ingest.simulator.config import DEFAULT_START_MS, SimConfig
from ingest.simulator.engine import SimResult
from ingest.simulator.factory import EventMaker
from ingest.simulator.scenarios import SCENARIOS, Ctx, Outcome
from ingest.simulator.topology import TenantInfo, Topology, VmInfo, build_topology, random_public_ip
from ingest.simulator.truth import TruthEntity, TruthRecord

__all__ = [
    "STAGES",
    "STAGE_VARIANTS",
    "WEEKDAY_FACTORS",
    "CampaignInfo",
    "CampaignRun",
    "CampaignSettings",
    "MinuteSignals",
    "campaign_length_bound_ms",
    "campaign_run",
    "minute_signals",
    "quiet_signals",
    "quiet_week",
    "weekday_factor",
]

_MIN: Final = 60_000
_DAY_MS: Final = 86_400_000
_INCIDENT_GAP_MS: Final = 30 * _MIN
_MAX_TRIES: Final = 64
_SESSION_SLACK_MS: Final = 300_000  # a builder may end a stage with a session after its duration
_by_ts = attrgetter("ts")

STAGES: Final = ("reconnaissance", "credential_access", "escape", "cross_tenant", "exfiltration")
STAGE_VARIANTS: Final[tuple[tuple[str, ...], ...]] = (
    ("port_scan.vertical",),
    ("brute_force.ssh_password", "brute_force.flow_guessing"),
    (
        "vm_escape.shell_spawn",
        "vm_escape.host_device_open",
        "vm_escape.namespace_escape",
        "vm_escape.kernel_module",
    ),
    (
        "cross_tenant_leak.foreign_resource_access",
        "cross_tenant_leak.unpeered_flow",
        "vm_escape.foreign_disk_open",
    ),
    ("exfiltration.bulk_upload",),
)
_RAMP_SCENARIOS: Final = ("port_scan.vertical", "brute_force.ssh_password")  # stages 0 and 1

WEEKDAY_FACTORS: Final = (1.0, 1.0, 1.0, 1.0, 1.0, 0.6, 0.55)  # Monday .. Sunday, UTC


def weekday_factor(ts_ms: int, factors: Sequence[float] = WEEKDAY_FACTORS) -> float:
    """The day-of-week rate multiplier at ``ts_ms`` (UTC; 1970-01-01 was a Thursday)."""
    return factors[(ts_ms // _DAY_MS + 3) % 7]


@dataclass(frozen=True)
class CampaignSettings:
    """The knobs of a campaign run; the module docstring says why each default."""

    min_gap_ms: int = _MIN
    max_gap_ms: int = 20 * _MIN
    recon_ramp_ms: tuple[int, int] = (10 * _MIN, 30 * _MIN)
    guess_ramp_ms: tuple[int, int] = (30 * _MIN, 90 * _MIN)
    probe_rate_per_min: tuple[float, float] = (0.5, 20.0)
    guess_rate_start_per_min: float = 0.2
    guess_rate_end_per_min: tuple[float, float] = (15.0, 30.0)

    def __post_init__(self) -> None:
        if not 0 < self.min_gap_ms <= self.max_gap_ms:
            raise ValueError(f"need 0 < min_gap_ms <= max_gap_ms, got {self.min_gap_ms}, {self.max_gap_ms}")
        for name in ("recon_ramp_ms", "guess_ramp_ms"):
            lo, hi = getattr(self, name)
            if not _MIN <= lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 60000 <= lo <= hi, got {(lo, hi)}")
        r0, r1 = self.probe_rate_per_min
        g0, (g1, g2) = self.guess_rate_start_per_min, self.guess_rate_end_per_min
        if not (0 < r0 < r1 and 0 < g0 < g1 <= g2):
            raise ValueError("ramp rates must be positive and rising")


@dataclass(frozen=True)
class CampaignInfo:
    """One campaign as planned and built: who, where, when."""

    id: str
    index: int
    ramping: bool
    tenant: str
    vm: str
    vm_ip: str
    host: str
    attacker_ip: str
    neighbour_tenant: str
    scenarios: tuple[str, ...]  # one per stage, in stage order
    start: int  # first event, ms
    end: int  # last event, ms
    critical_ms: int  # first event of the escape stage (the first critical one)
    shared_host: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass
class CampaignRun(SimResult):
    """A ``SimResult`` (events, truth, registry) plus the campaigns and the week's rhythm."""

    campaigns: list[CampaignInfo] = field(default_factory=list)
    weekday_factors: tuple[float, ...] | None = None  # None: every day like a weekday

    def _rate(self, lo: int, hi: int) -> float:
        rate = self.config.events_per_s
        if self.weekday_factors is not None:
            rate *= weekday_factor((lo + hi) // 2 + self.config.diurnal_shift_ms, self.weekday_factors)
        return rate

    def events(self) -> Iterator[Event]:
        """Background (with the weekly factor) and injected events, sorted by ts; same each pass."""
        background = Background(self.topology, self.config.seed, self.config.diurnal_shift_ms)
        injected = self.injected
        j = 0
        for index, (lo, hi) in enumerate(self.slices()):
            batch = background.slice(index, lo, hi, self._rate(lo, hi))
            k = j
            while k < len(injected) and injected[k].ts < hi:
                k += 1
            if k > j:
                batch.extend(injected[j:k])
                batch.sort(key=_by_ts)
                j = k
            yield from batch

    def expected_background(self) -> float:
        shift = self.config.diurnal_shift_ms
        return sum(
            self._rate(lo, hi) * (hi - lo) / 1000 * diurnal_factor((lo + hi) // 2 + shift)
            for lo, hi in self.slices()
        )


# --- building stages ----------------------------------------------------------------------------
@dataclass
class _PinnedCtx(Ctx):
    """A builder's context whose ``vm()`` is always the campaign's victim."""

    pinned: VmInfo | None = None

    def vm(self, role: str | None = None, exclude_role: str | None = None) -> VmInfo:
        return self.pinned if self.pinned is not None else super().vm(role, exclude_role)


def _retarget(events: Iterable[Event], old: str, new: str) -> list[Event]:
    """The events with address ``old`` replaced by ``new`` wherever a flow or login names it."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, FlowEvent) and old in (e.src_ip, e.dst_ip):
            e = msgspec.structs.replace(
                e,
                src_ip=new if e.src_ip == old else e.src_ip,
                dst_ip=new if e.dst_ip == old else e.dst_ip,
            )
        elif isinstance(e, AuthEvent | AuditEvent) and e.src_ip == old:
            e = msgspec.structs.replace(e, src_ip=new)
        out.append(e)
    return out


def _thin(events: Sequence[Event], quota: int) -> list[Event]:
    """The first ``quota`` attempts of a builder's output, in its order: an attempt is a failed
    login when there are logins (a flow before it rides along), else a flow. Successful logins go."""
    logins = any(isinstance(e, AuthEvent) for e in events)
    kept: list[Event] = []
    n = 0
    for e in events:
        if isinstance(e, AuthEvent):
            if e.result == "failure" and n < quota:
                kept.append(e)
                n += 1
        elif logins:
            if n < quota:
                kept.append(e)
        elif n < quota:
            kept.append(e)
            n += 1
    return kept


def _ramp_counts(minutes: int, r0: float, r1: float) -> list[int]:
    """Attempts per minute of a geometric ramp from ``r0`` to ``r1`` per minute over ``minutes``."""
    g = math.log(r1 / r0)

    def cum(m: float) -> float:
        return r0 * minutes / g * (math.exp(g * m / minutes) - 1)

    return [math.floor(cum(m + 1)) - math.floor(cum(m)) for m in range(minutes)]


class _Builder:
    """Builds one campaign's stages in time order."""

    def __init__(self, seed: int, k: int, topo: Topology, end_ms: int) -> None:
        self.seed, self.k, self.topo, self.end_ms = seed, k, topo, end_ms

    def call(
        self,
        name: str,
        stage: int,
        segment: int,
        start: int,
        *,
        victim: VmInfo,
        topo: Topology | None = None,
        length_ms: int | None = None,
        accept: Callable[[Outcome], bool] | None = None,
    ) -> Outcome:
        spec = SCENARIOS[name]
        for attempt in range(_MAX_TRIES):
            stream = f"{self.seed}:camp:{self.k}:{stage}:{segment}:{attempt}"
            if length_ms is None:
                lo_s, hi_s = spec.span_s
                span = min(self.end_ms - 1 - start, int(hi_s * 1000) + _SESSION_SLACK_MS)
            else:
                lo_s = hi_s = length_ms / 1000
                span = min(self.end_ms - 1 - start, length_ms)
            ctx = _PinnedCtx(
                rng=random.Random(stream),
                topo=topo or self.topo,
                make=EventMaker(stream),
                start=start,
                span=span,
                lo_s=lo_s,
                hi_s=hi_s,
                pinned=victim,
            )
            out = spec.build(ctx)
            if out.events and (accept is None or accept(out)):
                return out
        raise RuntimeError(f"campaign {self.k}: {name} did not tell the story in {_MAX_TRIES} tries")


def _stage_record(
    name: str, cid: str, stage: int, out: Outcome, events: list[Event], detail: dict[str, Any]
) -> TruthRecord:
    stamps = [e.ts for e in events]
    return TruthRecord(
        scenario=name,
        category=SCENARIOS[name].category,
        tenant=out.tenant,
        entity=TruthEntity(type=out.entity_type, id=out.entity_id),
        start=min(stamps),
        end=max(stamps),
        event_ids=[e.id for e in events],
        benign=False,
        detail=detail,
        campaign=cid,
        stage=stage,
    )


def _view(topo: Topology, tenants: list[TenantInfo]) -> Topology:
    """The topology seen by a builder that must pick among ``tenants`` only."""
    vms = [v for t in tenants for v in t.vms]
    return replace(topo, tenants=tenants, vms=vms)


def _neighbour(
    topo: Topology, victim: VmInfo, rng: random.Random, unpeered: bool, avoid: set[str]
) -> str | None:
    """A tenant other than the victim's, preferring one with a VM on the victim's host."""
    others = [t.id for t in topo.tenants if t.id != victim.tenant]
    if unpeered:
        allowed = set(topo.unpeered_of(victim.tenant))
        others = [t for t in others if t in allowed]
    if not others:
        return None
    on_host = {v.tenant for v in topo.vms_on_host(victim.host)}
    for pool in (
        [t for t in others if t in on_host and t not in avoid],
        [t for t in others if t in on_host],
        [t for t in others if t not in avoid],
        others,
    ):
        if pool:
            return pool[rng.randrange(len(pool))]
    return None


def _build_campaign(
    seed: int,
    k: int,
    topo: Topology,
    start: int,
    end_ms: int,
    ramping: bool,
    victim: VmInfo,
    shared_host: bool,
    avoid_tenants: set[str],
    st: CampaignSettings,
) -> tuple[CampaignInfo, list[TruthRecord], list[Event]]:
    cid = f"{seed}-c{k}"
    rng = random.Random(f"{seed}:camp:{k}:plan")
    attacker = random_public_ip(rng)
    b = _Builder(seed, k, topo, end_ms)
    records: list[TruthRecord] = []
    events: list[Event] = []
    names: list[str] = []
    t = start
    neighbour = ""
    critical = 0

    def gap() -> int:
        return rng.randrange(st.min_gap_ms, st.max_gap_ms + 1)

    for stage, variants in enumerate(STAGE_VARIANTS):
        name = variants[rng.randrange(len(variants))]
        if ramping and stage < 2:
            name = _RAMP_SCENARIOS[stage]
        base = {"campaign_stage": STAGES[stage], "ramping": ramping}
        if ramping and stage < 2:
            if stage == 0:
                minutes = rng.randrange(st.recon_ramp_ms[0], st.recon_ramp_ms[1] + 1) // _MIN
                r0, r1 = st.probe_rate_per_min
            else:
                minutes = rng.randrange(st.guess_ramp_ms[0], st.guess_ramp_ms[1] + 1) // _MIN
                r0 = st.guess_rate_start_per_min
                r1 = round(rng.uniform(*st.guess_rate_end_per_min), 2)
            counts = _ramp_counts(minutes, r0, r1)
            stage_events: list[Event] = []
            first: Outcome | None = None
            for m, quota in enumerate(counts):
                if quota <= 0:
                    continue
                out = b.call(name, stage, m, t + m * _MIN, victim=victim, length_ms=_MIN - 1)
                first = first or out
                stage_events += _thin(_retarget(out.events, out.entity_id, attacker), quota)
            assert first is not None  # a ramp's integral is >= 1 attempt
            out = Outcome(first.tenant, "ip", attacker, stage_events)
            detail = {
                **base,
                "target_vm": victim.id,
                "target_ip": victim.ip,
                "ramp": {"start_ms": t, "minutes": minutes, "rate_start_per_min": r0,
                         "rate_end_per_min": r1, "per_minute": counts},
            }  # fmt: skip
        else:
            accept: Callable[[Outcome], bool] | None = None
            view: Topology | None = None
            if name == "cross_tenant_leak.unpeered_flow":
                n = _neighbour(topo, victim, rng, True, avoid_tenants)
                if n is None:  # every other tenant is peered with the victim's: read a bucket
                    name = "cross_tenant_leak.foreign_resource_access"
                else:
                    neighbour = n
                    own = replace(topo.tenant_by_id[victim.tenant], vms=(victim,))
                    view = _view(topo, [own, topo.tenant_by_id[n]])
                    accept = lambda o: o.entity_id == victim.id  # noqa: E731
            if name == "cross_tenant_leak.foreign_resource_access":
                neighbour = _neighbour(topo, victim, rng, False, avoid_tenants) or ""
                view = _view(topo, [topo.tenant_by_id[victim.tenant], topo.tenant_by_id[neighbour]])
                accept = lambda o: o.tenant == victim.tenant  # noqa: E731
            out = b.call(name, stage, 0, t, victim=victim, topo=view, accept=accept)
            stage_events = out.events
            if out.entity_type == "ip" and stage < 2:  # the attacker's address is the campaign's
                stage_events = _retarget(stage_events, out.entity_id, attacker)
                out = Outcome(out.tenant, "ip", attacker, stage_events, out.detail)
            if name == "cross_tenant_leak.foreign_resource_access":  # keys used from the victim VM
                stage_events = [
                    msgspec.structs.replace(e, src_ip=victim.ip) if isinstance(e, AuditEvent) else e
                    for e in stage_events
                ]
            if name == "vm_escape.foreign_disk_open":
                neighbour = str(out.detail.get("victim_tenant", ""))
            detail = {**out.detail, **base}
        if stage == 2:
            critical = min(e.ts for e in stage_events)
        stage_events.sort(key=_by_ts)
        records.append(_stage_record(name, cid, stage, out, stage_events, detail))
        events += stage_events
        names.append(name)
        t = max(e.ts for e in stage_events) + gap()
    info = CampaignInfo(
        id=cid, index=k, ramping=ramping, tenant=victim.tenant, vm=victim.id, vm_ip=victim.ip,
        host=victim.host, attacker_ip=attacker, neighbour_tenant=neighbour, scenarios=tuple(names),
        start=records[0].start, end=records[-1].end, critical_ms=critical, shared_host=shared_host,
    )  # fmt: skip
    return info, records, events


def campaign_length_bound_ms(settings: CampaignSettings | None = None) -> int:
    """An upper bound of one campaign's length (ramping or not) under ``settings``."""
    st = settings or CampaignSettings()
    longest = [
        max(int(SCENARIOS[n].span_s[1] * 1000) + _SESSION_SLACK_MS for n in variants)
        for variants in STAGE_VARIANTS
    ]
    longest[0] = max(longest[0], st.recon_ramp_ms[1])
    longest[1] = max(longest[1], st.guess_ramp_ms[1])
    return sum(longest) + (len(STAGES) - 1) * st.max_gap_ms


def _pick_victim(
    topo: Topology, rng: random.Random, busy_hosts: set[str], busy_tenants: set[str]
) -> tuple[VmInfo, bool]:
    pool = [v for v in topo.vms if v.role != "backup"] or topo.vms
    for cand, shared in (
        ([v for v in pool if v.host not in busy_hosts and v.tenant not in busy_tenants], False),
        ([v for v in pool if v.host not in busy_hosts], False),
        ([v for v in pool if v.tenant not in busy_tenants], True),
        (pool, True),
    ):
        if cand:
            return cand[rng.randrange(len(cand))], shared
    raise RuntimeError("no VM to attack")  # pragma: no cover (pool is never empty)


def campaign_run(
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    duration_ms: int = 86_400_000,
    *,
    campaigns: int = 3,
    ramping_share: float = 0.5,
    tenants: int = 8,
    hosts: int = 4,
    vms_per_tenant: int = 4,
    events_per_s: float = 20.0,
    weekday_factors: Sequence[float] | None = None,
    settings: CampaignSettings | None = None,
    slice_s: float = 10.0,
) -> CampaignRun:
    """Background plus ``campaigns`` multi-stage campaigns over ``[start_ms, start_ms + duration_ms)``.

    ``round(campaigns * ramping_share)`` of them ramp (which ones is drawn from the seed). Campaign
    ``k`` starts in the ``k``-th of ``campaigns`` equal slots of ``duration_ms -
    campaign_length_bound_ms()``, so campaigns overlap in time when the run is short; a run shorter
    than one campaign's bound is refused. ``weekday_factors`` (e.g. ``WEEKDAY_FACTORS``) applies
    the day-of-week factor to the background; None keeps every day a weekday."""
    st = settings or CampaignSettings()
    if campaigns < 0:
        raise ValueError(f"campaigns must not be negative, got {campaigns}")
    if not 0.0 <= ramping_share <= 1.0:
        raise ValueError(f"ramping_share must be within 0..1, got {ramping_share}")
    bound = campaign_length_bound_ms(st)
    if campaigns and duration_ms <= bound:
        raise ValueError(f"duration_ms must exceed one campaign's bound, {bound} ms, got {duration_ms}")
    factors = _factors(weekday_factors)
    cfg = SimConfig(
        seed=seed, tenants=tenants, hosts=hosts, vms_per_tenant=vms_per_tenant,
        duration_s=duration_ms / 1000, start_ms=start_ms, events_per_s=events_per_s, scenarios={},
        slice_s=slice_s,
    )  # fmt: skip
    topo = build_topology(seed, tenants, hosts, vms_per_tenant)
    rng = random.Random(f"{seed}:campaigns")
    n_ramp = round(campaigns * ramping_share)
    ramp = set(rng.sample(range(campaigns), n_ramp))
    room = duration_ms - bound if campaigns else 0
    infos: list[CampaignInfo] = []
    truth: list[TruthRecord] = []
    injected: list[Event] = []
    for k in range(campaigns):
        start = start_ms + int((k + rng.uniform(0.05, 0.95)) / campaigns * room)
        recent = [c for c in infos if c.end + st.max_gap_ms + _INCIDENT_GAP_MS > start]
        busy_hosts = {c.host for c in recent}
        busy_tenants = {c.tenant for c in recent} | {c.neighbour_tenant for c in recent}
        victim, shared = _pick_victim(topo, rng, busy_hosts, busy_tenants)
        info, recs, evs = _build_campaign(
            seed, k, topo, start, cfg.end_ms, k in ramp, victim, shared, busy_tenants, st
        )
        if min(e.ts for e in evs) < start_ms or max(e.ts for e in evs) >= cfg.end_ms:
            raise RuntimeError(f"campaign {info.id} put events outside the run")
        infos.append(info)
        truth += recs
        injected += evs
    truth.sort(key=lambda r: (r.start, r.scenario))
    injected.sort(key=_by_ts)
    return CampaignRun(
        config=cfg, topology=topo, truth=truth, injected=injected, campaigns=infos, weekday_factors=factors
    )


def _factors(weekday_factors: Sequence[float] | None) -> tuple[float, ...] | None:
    if weekday_factors is None:
        return None
    out = tuple(float(f) for f in weekday_factors)
    if len(out) != 7 or min(out) <= 0:
        raise ValueError(f"weekday_factors must be 7 positive numbers (Monday first), got {out}")
    return out


# --- quiet weeks -------------------------------------------------------------------------------
def quiet_week(
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    *,
    days: float = 7.0,
    tenants: int = 8,
    hosts: int = 4,
    vms_per_tenant: int = 4,
    events_per_s: float = 5.0,
    weekday_factors: Sequence[float] = WEEKDAY_FACTORS,
    slice_s: float = 60.0,
) -> CampaignRun:
    """Benign background only (no scenario, no campaign, ``truth == []``) for ``days`` days, with
    the hour-of-day and day-of-week rhythm. ``events_per_s`` is the weekday mean (5/s: ~2.7 M
    events a week; the job's own volume is the lead's choice); ``slice_s`` 60 s keeps per-slice
    overhead low over a week."""
    cfg = SimConfig(
        seed=seed, tenants=tenants, hosts=hosts, vms_per_tenant=vms_per_tenant,
        duration_s=days * 86_400, start_ms=start_ms, events_per_s=events_per_s, scenarios={},
        slice_s=slice_s,
    )  # fmt: skip
    topo = build_topology(seed, tenants, hosts, vms_per_tenant)
    return CampaignRun(
        config=cfg, topology=topo, truth=[], injected=[], weekday_factors=_factors(weekday_factors)
    )


class MinuteSignals(NamedTuple):
    """Counts of one tenant's events in the minute starting at ``ts`` (epoch ms).

    ``probes``: rejected flows; ``failed_logins``: auth events with result failure;
    ``cross_tenant_flows``: flows to another tenant's network; ``flows`` includes both flow kinds."""

    ts: int
    tenant: str
    events: int
    flows: int
    probes: int
    cross_tenant_flows: int
    failed_logins: int
    auth: int
    process: int
    audit: int


_FLOW_MIX: Final = {  # Background's flow generators and weights (background.py, Background.__init__)
    "outbound": 0.35, "dns": 0.15, "ntp": 0.03, "east_west": 0.22, "inbound_web": 0.15,
    "mgmt": 0.02, "noise": 0.02, "peered": 0.06,
}  # fmt: skip
_AUTH_FAIL: Final = 0.015 + 0.98 * 0.2 * 0.05  # background _auth: throwaway guesses + password typos
_AUTH_TENANT: Final = 0.995  # the rest are operators on hosts (tenant null)
_PROCESS_TENANT: Final = 0.88  # the rest are the libvirt daemon (tenant null)
_AUDIT_SHARED: Final = 0.08  # share of audit calls made by a grantee on a registry share


def _shares(topo: Topology) -> dict[str, tuple[float, ...]]:
    """Per tenant, the expected fraction of all background events that are each disjoint signal:
    (other flows, probes, cross-tenant flows, failed logins, other logins, process, audit)."""
    kinds = dict(KIND_WEIGHTS)
    total_kind = sum(kinds.values())
    mix = dict(_FLOW_MIX)
    if not topo.peerings:
        mix.pop("peered")
    w = sum(mix.values())
    f = kinds["flow"] / total_kind
    web = [v for v in topo.vms if v.role == "web"] or topo.vms
    out: dict[str, tuple[float, ...]] = {}
    for t in topo.tenants:
        vm = sum(1 for v in topo.vms if v.tenant == t.id) / len(topo.vms)
        webs = sum(1 for v in web if v.tenant == t.id) / len(web)
        deg = sum(1 for p in topo.peerings if t.id in p)
        peer = deg / (2 * len(topo.peerings)) if topo.peerings else 0.0
        grants = sum(1 for s in topo.shares if s[1] == t.id) / len(topo.shares) if topo.shares else 0.0
        own = (1 - _AUDIT_SHARED) if topo.shares else 1.0
        other_flows = (
            sum(mix[k] for k in ("outbound", "dns", "ntp", "east_west")) * vm + mix["inbound_web"] * webs
        )
        out[t.id] = (
            f * other_flows / w,
            f * mix["noise"] * vm / w,
            f * mix.get("peered", 0.0) * peer / w,
            kinds["auth"] / total_kind * _AUTH_FAIL * vm,
            kinds["auth"] / total_kind * (_AUTH_TENANT - _AUTH_FAIL) * vm,
            kinds["process"] / total_kind * _PROCESS_TENANT * vm,
            kinds["audit"]
            / total_kind
            * ((_AUDIT_SHARED * grants if topo.shares else 0.0) + own / len(topo.tenants)),
        )
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean >= 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, n, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def quiet_signals(
    seed: int,
    start_ms: int = DEFAULT_START_MS,
    *,
    minutes: int = 7 * 1440,
    tenants: int = 8,
    hosts: int = 4,
    vms_per_tenant: int = 4,
    events_per_s: float = 100.0,
    weekday_factors: Sequence[float] = WEEKDAY_FACTORS,
) -> Iterator[MinuteSignals]:
    """Per-minute, per-tenant counts of a quiet run, minute by minute (tenants in registry order).

    Each count is a Poisson draw whose mean is what ``quiet_week`` with the same arguments yields
    on average for that tenant and minute: ``events_per_s * 60 * diurnal_factor(mid) *
    weekday_factor(mid)`` times the tenant's share of each signal in the background mix
    (``_shares``). Deterministic per seed; ``start_ms`` is floored to the minute."""
    factors = _factors(weekday_factors) or WEEKDAY_FACTORS
    topo = build_topology(seed, tenants, hosts, vms_per_tenant)
    shares = _shares(topo)
    rng = random.Random(f"{seed}:quiet-signals")
    t0 = start_ms // _MIN * _MIN
    for m in range(minutes):
        ts = t0 + m * _MIN
        mid = ts + _MIN // 2
        total = events_per_s * 60 * diurnal_factor(mid) * weekday_factor(mid, factors)
        for t in topo.tenants:
            other, probes, cross, fail, ok, proc, audit = (_poisson(rng, total * s) for s in shares[t.id])
            flows = other + probes + cross
            yield MinuteSignals(
                ts, t.id, flows + fail + ok + proc + audit, flows, probes, cross, fail, fail + ok, proc, audit
            )


def minute_signals(events: Iterable[Event], topology: Topology) -> dict[tuple[int, str], MinuteSignals]:
    """The same signals counted from events, by (minute start, tenant); events without a tenant are
    left out. A flow is cross-tenant when its other end is in another tenant's network."""
    net = {t.net: t.id for t in topology.tenants}
    acc: dict[tuple[int, str], list[int]] = {}
    for e in events:
        if e.tenant is None:
            continue
        row = acc.setdefault((e.ts // _MIN * _MIN, e.tenant), [0] * 8)
        row[0] += 1
        if isinstance(e, FlowEvent):
            row[1] += 1
            row[2] += e.action == "reject"
            other = e.dst_ip if e.tenant == net.get(_net(e.src_ip)) else e.src_ip
            owner = net.get(_net(other))
            row[3] += owner is not None and owner != e.tenant
        elif isinstance(e, AuthEvent):
            row[5] += 1
            row[4] += e.result == "failure"
        elif isinstance(e, AuditEvent):
            row[7] += 1
        else:
            row[6] += 1
    return {key: MinuteSignals(key[0], key[1], *row) for key, row in sorted(acc.items())}


def _net(ip: str) -> str:
    a, _, rest = ip.partition(".")
    return f"{a}.{rest.partition('.')[0]}"
