"""c2.beacon (RITA-style beacon scoring over flows) and spam.smtp_spam."""

from __future__ import annotations

import pickle
import random
from collections.abc import Sequence
from typing import Any

import pytest

from detectors.alert import Alert
from detectors.base import Batch
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.rules.c2.beacon import C2Beacon, PairState, beacon_score, bowley_skew, mad_score
from detectors.rules.spam.smtp_spam import SmtpSpam
from detectors.samples import samples_registry
from ingest.schema import Event, FlowEvent

REGISTRY = samples_registry()
T0 = 1_736_143_200_000  # a 6-hour boundary (epoch multiple of 21,600,000 ms)
HOUR = 3_600_000
VM = "10.1.1.10"
C2 = "91.212.135.158"


def _flow(n: int, ts: int, **kw: object) -> FlowEvent:
    base: dict[str, object] = {
        "id": f"f{n}", "ts": ts, "source": "zeek", "tenant": "t-acme", "src_ip": VM, "dst_ip": C2,
        "src_port": 40000 + n % 20000, "dst_port": 5678, "proto": "tcp", "bytes_out": 320, "bytes_in": 200,
        "packets_out": 5, "packets_in": 4, "duration_ms": 100,
        "extra": {"conn_state": "SF", "history": "ShADadFf"},
    }  # fmt: skip
    base.update(kw)
    return FlowEvent(**base)  # type: ignore[arg-type]


def _run(
    events: Sequence[Event], cfg: DetectorConfig | None = None, cls: type = C2Beacon
) -> tuple[list[Alert], Any]:
    cfg = cfg or DetectorConfig.default()
    det = cls(cfg)
    engine = DetectionEngine([det], DetectionContext(REGISTRY, cfg), strict=True)
    return engine.run(sorted(events, key=lambda e: (e.ts, e.id))), det


def _series(times_ms: list[int], **kw: object) -> list[FlowEvent]:
    return [_flow(i, T0 + t, **kw) for i, t in enumerate(times_ms)]


# --- the statistics ------------------------------------------------------------------------------
def test_bowley_skew_of_symmetric_skewed_and_narrow_data() -> None:
    assert bowley_skew([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]) == 0.0
    # quartiles 20, 30, 100 (Tukey's hinges): (20 + 100 - 60) / 80
    assert bowley_skew([10.0, 20.0, 30.0, 30.0, 40.0, 100.0, 100.0]) == pytest.approx(0.75)
    assert bowley_skew([60.0, 61.0, 62.0, 63.0, 69.0]) == 0.0  # spread under 10: jitter, not skew


def test_mad_score_is_relative_to_the_median() -> None:
    med, mad, score = mad_score([270.0, 280.0, 300.0, 320.0, 330.0], 1.0)
    assert (med, mad) == (300.0, 20.0) and score == pytest.approx(280 / 300)
    assert mad_score([0.0, 0.0, 0.0], 0.0)[2] == 0.0  # median under 1: the default
    assert mad_score([1.0, 100.0, 1000.0], 1.0)[2] == pytest.approx(0.01)  # MAD 99 about a median of 100


def test_regular_beacon_scores_near_one_and_random_traffic_low() -> None:
    n = 360
    regular = beacon_score([i * 60_000 for i in range(n)], [320] * n, n, 1, 6 * HOUR)
    assert regular is not None and regular.score > 0.99 and regular.interval_s == 60
    rng = random.Random(7)
    jitter = [int(i * 275_000 + rng.uniform(-75_000, 75_000)) for i in range(78)]  # RITA's 200-350 s
    jittered = beacon_score(jitter, [327] * 78, 78, 1, 6 * HOUR)
    assert jittered is not None and jittered.score > 0.9
    t, starts = 0.0, []
    for _ in range(200):  # Poisson arrivals, sizes of web pages
        t += rng.expovariate(1 / 100_000)
        starts.append(int(t))
    sizes = [int(rng.lognormvariate(8, 1.2)) for _ in starts]
    poisson = beacon_score(starts, sizes, len(starts), 1, 6 * HOUR)
    assert poisson is not None and poisson.score < 0.7
    assert beacon_score([0, 1000, 2000], [1, 1, 1], 3, 1, HOUR) is None  # fewer than 3 intervals


# --- the detector --------------------------------------------------------------------------------
def test_outbound_beacon_fires_once_with_the_span_of_its_flows() -> None:
    alerts, _ = _run(_series([i * 33_000 for i in range(240)]))  # ~2.2 h every 33 s
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.detector, a.category, a.entity.id, a.tenant) == (
        "c2.beacon",
        "command_and_control",
        VM,
        "t-acme",
    )
    assert a.evidence["destination"] == C2 and a.evidence["port"] == 5678
    assert a.evidence["direction"] == "outbound" and a.evidence["connections"] == 240
    assert (a.first_seen, a.last_seen) == (T0, T0 + 239 * 33_000)
    assert a.evidence["beacon_score"] >= 0.7


def test_short_burst_and_too_few_connections_do_not_fire() -> None:
    assert not _run(_series([i * 60_000 for i in range(40)]))[0]  # 39 minutes: not "over hours"
    assert not _run(_series([i * 1_200_000 for i in range(10)]))[0]  # 10 connections in 3 h


def test_ntp_and_internal_and_non_global_destinations_are_not_external() -> None:
    times = [i * 64_000 for i in range(200)]
    assert not _run(_series(times, proto="udp", src_port=123, dst_port=123, dst_ip="162.159.200.1"))[0]
    assert not _run(_series(times, dst_ip="10.1.0.2", dst_port=8080))[0]  # the tenant's own server
    assert not _run(_series(times, dst_ip="169.254.169.254", dst_port=80))[0]  # metadata (link-local)
    assert not _run(_series(times, dst_ip="239.255.255.250", dst_port=1900, proto="udp"))[0]  # SSDP


def test_long_connection_re_exported_at_active_timeout_is_one_connection() -> None:
    events = [_flow(i, T0 + (i + 1) * 60_000, src_port=41234, duration_ms=60_000) for i in range(200)]
    alerts, _ = _run(events)
    assert not alerts
    # the same records with a new source port each are 200 connections, and a beacon
    fresh = [_flow(i, T0 + (i + 1) * 60_000, duration_ms=100) for i in range(200)]
    assert len(_run(fresh)[0]) == 1


def test_concurrent_long_connections_written_per_interval_are_no_beacon() -> None:
    # Four TLS sessions held open for 6 h, as VPC Flow Logs write them: a record per session every
    # 10-minute aggregation interval from its first to its last packet in it (a packet every few
    # seconds: the interval's bounds), the interval's records in no order (CTU-50's push client).
    # 1.2.0 remembered the previous record's port only and raised them as a beacon.
    rng = random.Random(5)
    events: list[FlowEvent] = []
    for k in range(36):
        interval = [
            _flow(1000 * k + s, T0 + (k + 1) * 600_000, source="vpcflow", src_port=62536 + s,
                  duration_ms=600_000, bytes_out=12_000 + rng.randrange(3000), extra={})
            for s in range(4)
        ]  # fmt: skip
        rng.shuffle(interval)
        events.extend(interval)
    engine = DetectionEngine(
        [C2Beacon(DetectorConfig.default())], DetectionContext(REGISTRY, DetectorConfig.default())
    )
    assert engine.run(events) == []  # in file order
    # one session a interval, reconnecting with a new source port each time: 36 check-ins, a beacon
    checkins = [e for e in events if e.src_port == 62536]
    fresh = [FlowEvent(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "src_port": 40000 + k})
             for k, e in enumerate(checkins)]  # fmt: skip
    assert len(_run(fresh)[0]) == 1


def test_a_pair_state_pickled_by_1_2_0_restores_its_last_port() -> None:
    st = PairState()
    st.__setstate__((st.starts, st.sizes, 3, 1, T0, T0 + 5, ["a"], 41234, T0 + 60_000))
    assert st.ports == {41234: T0 + 60_000} and st.count == 3
    st.__setstate__((st.starts, st.sizes, 0, 1, 0, 0, [], -1, 0))
    assert st.ports == {}
    again = pickle.loads(pickle.dumps(st))
    assert again.ports == {} and again.count == 0


def test_a_poller_in_bursts_of_parallel_connections_is_not_a_beacon() -> None:
    """A client that opens several connections at once on a timer (a page's or an API batch's
    parallel fetches every 30 s) is not a sleep loop; a C2 check-in is one connection, two when it
    returns a task's output (GET, then POST), and stays a beacon."""
    rng = random.Random(11)
    bursts = [i * 30_000 + k * rng.randrange(20, 120) for i in range(300) for k in range(6)]
    alerts, det = _run(_series(bursts))
    assert not alerts and det.counters["parallel"] >= 1
    off = DetectorConfig.default().merged(
        {"detectors": {"c2.beacon": {"params": {"max_parallel_share": 1.0}}}}
    )
    assert _run(_series(bursts), off)[0]  # its bursts are as regular as a beacon
    tasked = [i * 30_000 + k * 180 for i in range(300) for k in range(2)]  # GET + POST every check-in
    (alert,) = _run(_series(tasked))[0]
    assert alert.evidence["connections"] == 600
    # Start times written to the whole minute (CIC-IDS2017): a 10 s beacon puts six in each minute,
    # which cannot be told from parallel connections, and stays a beacon.
    minutes = [i * 10_000 - i * 10_000 % 60_000 for i in range(1200)]
    assert len(_run(_series(minutes, duration_ms=0))[0]) == 1


def test_a_pair_state_pickled_by_1_4_0_counts_no_parallel_connections() -> None:
    st = PairState()
    st.__setstate__((st.starts, st.sizes, 3, 1, T0, T0 + 5, ["a"], {41234: T0}))
    assert (st.recent, st.together, st.ports) == ([], 0, {41234: T0})
    st.together, st.recent = 4, [T0]
    again = pickle.loads(pickle.dumps(st))
    assert (again.together, again.recent, again.count) == (4, [T0], 3)


def test_response_records_of_one_way_formats_are_not_connections() -> None:
    # NetFlow: the C2 server's replies (source port 5678 -> ephemeral port) are responses
    replies = [
        _flow(i, T0 + i * 60_000, source="netflow", src_ip=C2, dst_ip=VM, src_port=5678, dst_port=40000 + i,
              extra={})
        for i in range(200)
    ]  # fmt: skip
    assert not _run(replies)[0]


def test_inbound_beacon_needs_half_the_window_and_can_be_turned_off() -> None:
    kw = {"src_ip": "73.54.23.243", "dst_ip": VM, "dst_port": 80, "bytes_out": 327}
    steady = _series([i * 270_000 for i in range(79)], **kw)  # 5.9 h every 270 s
    alerts, _ = _run(steady)
    assert len(alerts) == 1 and alerts[0].entity.id == "73.54.23.243"
    assert alerts[0].evidence["direction"] == "inbound" and alerts[0].score == 45
    assert not _run(_series([i * 60_000 for i in range(120)], **kw))[0]  # 2 h inbound: too short
    off = DetectorConfig.default().merged(
        {"detectors": {"c2.beacon": {"params": {"include_inbound": False}}}}
    )
    assert not _run(steady, off)[0]


def test_allow_lists_excuse_destinations_ports_and_sources() -> None:
    events = _series([i * 60_000 for i in range(200)])
    for params in ({"allowed_destinations": ["91.212.135.0/24"]}, {"allowed_ports": [5678]},
                   {"allowed_sources": [VM]}):  # fmt: skip
        cfg = DetectorConfig.default().merged({"detectors": {"c2.beacon": {"params": params}}})
        assert not _run(events, cfg)[0], params


PORTAL = "195.24.232.205"  # a web portal many of the tenant's hosts read


def _visits(hosts: Sequence[str], start_ms: int, n0: int = 50_000) -> list[FlowEvent]:
    """One page load by each host, a minute apart from ``start_ms`` after T0."""
    return [_flow(n0 + i, T0 + start_ms + i * 60_000, src_ip=h, dst_ip=PORTAL, dst_port=80)
            for i, h in enumerate(hosts)]  # fmt: skip


def test_a_timer_on_an_address_most_of_its_users_do_not_beacon_to_is_a_service() -> None:
    # One host polls a portal every 31 s (an auto-refreshing page); four other hosts of the tenant
    # read the same portal now and then. One beacon among five users: a client's timer.
    poll = _series([i * 31_000 for i in range(240)], dst_ip=PORTAL, dst_port=80)
    readers = ["10.1.2.1", "10.1.2.2", "10.1.2.3", "10.1.2.4"]
    alerts, det = _run(poll + _visits(readers, 10 * 60_000))
    assert not alerts and det.counters["shared_destination"] == 2  # both windows that hold it
    # Two readers: three users in all, too few to call the address a shared service.
    assert len(_run(poll + _visits(readers[:2], 10 * 60_000))[0]) == 1
    off = DetectorConfig.default().merged({"detectors": {"c2.beacon": {"params": {"shared_min_sources": 0}}}})
    assert len(_run(poll + _visits(readers, 10 * 60_000), off)[0]) == 1


def test_readers_of_the_day_before_count_and_other_tenants_readers_never_do() -> None:
    poll = _series([9 * HOUR + i * 31_000 for i in range(240)], dst_ip=PORTAL, dst_port=80)
    earlier = _visits(["10.1.2.1", "10.1.2.2", "10.1.2.3", "10.1.2.4"], -10 * HOUR)
    assert not _run(poll + earlier)[0]  # read within the day before each window that holds the beacon
    too_old = _visits(["10.1.2.1", "10.1.2.2", "10.1.2.3", "10.1.2.4"], -22 * HOUR)
    assert len(_run(poll + too_old)[0]) == 1
    beta = _visits(["10.2.2.1", "10.2.2.2", "10.2.2.3", "10.2.2.4"], HOUR)  # another tenant's hosts
    assert len(_run(poll + beta)[0]) == 1


def test_a_bot_fleet_is_not_excused_by_its_own_visitors() -> None:
    # Three bots beacon to their C2 and two other hosts touched it once (a lure's download): 3 of
    # 5 users beacon, far above a quarter, so all three are raised.
    bots = ["10.1.1.10", "10.1.1.11", "10.1.1.12"]
    fleet = [ev for k, bot in enumerate(bots)
             for ev in _series([k * 7_000 + i * 60_000 for i in range(200)], src_ip=bot, id=None)]  # fmt: skip
    fleet = [_flow(100_000 + i, ev.ts, src_ip=ev.src_ip) for i, ev in enumerate(fleet)]
    touched = [_flow(90_000 + i, T0 + HOUR + i, src_ip=h) for i, h in enumerate(["10.1.2.1", "10.1.2.2"])]
    alerts, det = _run(fleet + touched)
    assert sorted(a.entity.id for a in alerts) == bots and det.counters.get("shared_destination", 0) == 0


def test_the_users_of_an_address_survive_a_restore_and_are_freed_after_the_day() -> None:
    poll = _series([i * 31_000 for i in range(240)], dst_ip=PORTAL, dst_port=80)
    events = sorted(poll + _visits(["10.1.2.1", "10.1.2.2", "10.1.2.3", "10.1.2.4"], 0), key=lambda e: e.ts)
    det = _fed(events[:30])
    clone = pickle.loads(pickle.dumps(det))
    clone.bind(REGISTRY)
    for i in range(30, len(events), 100):
        clone.observe_batch(Batch(list[Event](events[i : i + 100]), REGISTRY))
    assert not clone.close_all() and clone.counters["shared_destination"] == 2
    later = T0 + 3 * 86_400_000
    clone.observe_batch(Batch([_flow(1, later, dst_ip="8.8.4.4")], REGISTRY))
    clone.close(later + 6 * HOUR)
    assert set(clone._contacts) == {later - later % (3 * HOUR)}  # the earlier days' contacts are gone


def _fed(events: Sequence[Event], max_connections: int = 64) -> C2Beacon:
    """A beacon detector that keeps ``max_connections`` per pair, fed ``events`` in batches of 100."""
    cfg = DetectorConfig.default().merged(
        {"detectors": {"c2.beacon": {"params": {"max_connections_per_pair": max_connections}}}}
    )
    det = C2Beacon(cfg)
    det.bind(REGISTRY)
    for i in range(0, len(events), 100):
        det.observe_batch(Batch(list[Event](events[i : i + 100]), REGISTRY))
    return det


def test_state_is_capped_per_pair_and_decimation_keeps_the_beacon() -> None:
    det = _fed(_series([i * 10_000 for i in range(1000)]))  # 2.8 h every 10 s: one 3-hour pane
    (state,) = [st for pane in det._panes.values() for st in pane.values()]
    assert isinstance(state, PairState)
    assert len(state.starts) <= 64 and len(state.sizes) == len(state.starts) and state.count == 1000
    clone = pickle.loads(pickle.dumps(det))
    clone.bind(REGISTRY)  # the engine re-binds the registry after a restore
    findings = det.close_all()
    assert len(findings) == 1 and findings[0].evidence["connections"] == 1000
    assert findings[0].evidence["median_interval_s"] == pytest.approx(10, abs=1)
    assert len(clone.close_all()) == 1


def test_full_pane_evicts_one_off_pairs_before_refusing_a_beacon() -> None:
    cfg = DetectorConfig.default().merged({"engine": {"max_keys_per_window": 100}})
    noise = [_flow(10_000 + i, T0 + i, dst_ip=f"8.8.{i // 250}.{i % 250}", dst_port=443) for i in range(500)]
    beacon = _series([1000 + i * 60_000 for i in range(200)])
    alerts, det = _run(noise + beacon, cfg)
    assert len(alerts) == 1 and alerts[0].evidence["destination"] == C2
    assert det.counters["evicted"] > 0


def test_a_beacon_across_a_six_hour_boundary_is_scored_whole() -> None:
    # 90 minutes every 60 s, half before T0 (a 6-hour boundary), half after: tumbling 6-hour
    # windows saw two 45-minute halves, each short of min_duration_s (1 h), and missed it.
    events = _series([-45 * 60_000 + i * 60_000 for i in range(91)])
    alerts, det = _run(events)
    assert len(alerts) == 1 and alerts[0].evidence["connections"] == 91
    assert alerts[0].first_seen == T0 - 45 * 60_000 and alerts[0].last_seen == T0 + 45 * 60_000
    assert det.window.size_ms == 6 * HOUR and det.window.slide_ms == 3 * HOUR
    tumbling = DetectorConfig.default().merged({"detectors": {"c2.beacon": {"slide_ms": 0}}})
    assert not _run(events, tumbling)[0]  # the miss this fixes


def test_a_long_beacon_is_raised_once_per_window_span_not_per_slide() -> None:
    events = _series([i * 60_000 for i in range(12 * 60)])  # 12 h from a 6-hour boundary
    alerts, det = _run(events)
    assert [(a.evidence["window_start"] - T0) // HOUR for a in alerts] == [-3, 3, 9]
    assert det.counters["suppressed"] == 2  # windows [0, 6) and [6, 12): overlapped by reported ones


def test_merging_panes_keeps_the_count_exact_and_the_sample_capped() -> None:
    det = _fed(_series([i * 20_000 for i in range(1000)]))  # 5.5 h every 20 s: two 3-hour panes
    first, second = (pane[("t-acme", VM, C2, 5678)] for _, pane in sorted(det._panes.items()))
    merged = det.new_state(None)
    det.merge(merged, first)
    det.merge(merged, second)
    assert merged.count == first.count + second.count == 1000
    assert len(merged.starts) == len(merged.sizes) <= 64
    assert list(merged.starts) == sorted(merged.starts)
    assert (merged.first, merged.last) == (T0, T0 + 999 * 20_000)
    score = beacon_score(merged.starts, merged.sizes, merged.count, merged.stride, 6 * HOUR)
    assert score is not None and score.interval_s == pytest.approx(20, abs=1)
    # Only pairs with min_connections (12) across the window's panes are merged: 7 + 6 is enough.
    split = _series([3 * HOUR - 7 * 60_000 + i * 60_000 for i in range(13)], dst_ip="91.212.135.1")
    once = [_flow(5000, T0 + 5, dst_ip="91.212.135.2")]
    fresh = C2Beacon(DetectorConfig.default())
    fresh.bind(REGISTRY)
    fresh.observe_batch(Batch(list[Event](once + split), REGISTRY))
    panes = [pane for _, pane in sorted(fresh._panes.items())]
    assert [len(p) for p in panes] == [2, 1]
    assert fresh.window_keys(panes) == [("t-acme", VM, "91.212.135.1", 5678)]
    one_off = det.new_state(None)
    det.merge(one_off, (T0, T0, 320, "x", 40000, T0 + 100))  # a pane's one-record pair is a tuple
    assert one_off.count == 1 and list(one_off.starts) == [T0] and one_off.ids == ["x"]


# --- spam.smtp_spam ------------------------------------------------------------------------------
def _smtp(n: int, dst: str, **kw: object) -> FlowEvent:
    return _flow(n, T0 + n * 1000, dst_ip=dst, dst_port=25, bytes_out=4000 + 100 * n, **kw)


def test_spam_bot_to_many_mail_servers_fires_and_a_relay_is_excused() -> None:
    events = [_smtp(i, f"64.12.{i // 200}.{i % 200 + 1}") for i in range(30)]
    alerts, _ = _run(events, cls=SmtpSpam)
    assert len(alerts) == 1 and alerts[0].category == "spam" and alerts[0].evidence["distinct_servers"] == 30
    cfg = DetectorConfig.default().merged(
        {"detectors": {"spam.smtp_spam": {"params": {"allowed_relays": [VM]}}}}
    )
    assert not _run(events, cfg, SmtpSpam)[0]


def test_spam_rule_ignores_few_servers_inbound_mail_and_internal_relays() -> None:
    few = [_smtp(i, f"64.12.0.{i % 5 + 1}") for i in range(60)]  # one client, 5 servers
    inbound = [_smtp(i, VM, src_ip=f"64.12.0.{i + 1}") for i in range(40)]
    internal = [_smtp(i, f"10.1.2.{i + 1}") for i in range(40)]
    for events in (few, inbound, internal):
        assert not _run(events, cls=SmtpSpam)[0]
