"""brute_force.flow_guessing: credential guessing and spraying seen in flows, from every exporter's shape."""

from __future__ import annotations

import pickle
from typing import Any, cast

import msgspec
import pytest

from detectors.base import Batch
from detectors.config import DetectorConfig
from detectors.rules.brute_force.flow_guessing import FlowGuessing, client_spoke, robust_spread
from detectors.samples import samples_registry
from ingest.schema import Event, FlowEvent

REGISTRY = samples_registry()
T0 = 1_736_150_400_000  # a 10-minute boundary
ATTACKER = "203.0.113.77"
VM = "10.1.1.10"


def _det(**params: Any) -> FlowGuessing:
    cfg = DetectorConfig.default()
    if params:
        cfg = cfg.merged({"detectors": {"brute_force.flow_guessing": {"params": params}}})
    det = FlowGuessing(cfg)
    det.bind(REGISTRY)
    return det


def _flow(i: int, **kw: Any) -> FlowEvent:
    raw: dict[str, Any] = {
        "kind": "flow",
        "id": f"e{i}-{kw.get('src_port', 40000 + i)}-{kw.get('dst_ip', VM)}",
        "ts": T0 + 1000 + i * 2000,  # up to i = 299 in one window
        "source": "zeek",
        "tenant": "t-acme",
        "src_ip": ATTACKER,
        "dst_ip": VM,
        "src_port": 40000 + i,
        "dst_port": 22,
        "proto": "tcp",
        "bytes_out": 3400,
        "bytes_in": 4200,
        "packets_out": 18,
        "packets_in": 16,
        "duration_ms": 9000,
        "action": "accept",
        "extra": {"conn_state": "SF"},
    }
    raw.update(kw)
    return msgspec.convert(raw, FlowEvent)


def _run(det: FlowGuessing, events: list[FlowEvent]):
    det.observe_batch(Batch(cast(list[Event], events), REGISTRY))
    return det.close_all()


def test_guessing_on_ssh_fires_with_its_evidence() -> None:
    events = [_flow(i, bytes_out=3400 + (i % 7) * 16) for i in range(45)]
    (f,) = _run(_det(), events)
    ev = f.evidence
    assert (f.entity.type, f.entity.id) == ("ip", ATTACKER)
    assert ev["variant"] == "guessing" and ev["service"] == "SSH" and ev["port"] == 22
    assert ev["sessions"] == 45 and ev["distinct_targets"] == 1 and ev["top_target"] == VM
    assert 3400 <= ev["median_bytes_per_session"] <= 3500 and ev["byte_spread"] < 0.05
    assert ev["answered_share"] == 1.0 and not ev["source_internal"]
    assert f.attack is not None and f.attack.technique_id == "T1110.001"
    assert f.count == 45 and len(f.event_ids) == 5


def test_below_min_sessions_is_quiet_and_at_it_fires() -> None:
    assert _run(_det(), [_flow(i) for i in range(39)]) == []
    assert len(_run(_det(), [_flow(i) for i in range(40)])) == 1


def test_refused_and_unanswered_attempts_are_not_sessions_but_lower_the_answered_share() -> None:
    refused = [_flow(i, extra={"conn_state": "REJ"}, packets_out=1, bytes_out=60) for i in range(100)]
    unanswered = [_flow(100 + i, extra={"conn_state": "S0"}, packets_out=3) for i in range(100)]
    assert _run(_det(), refused + unanswered) == []
    answered = [_flow(200 + i) for i in range(40)]
    late_refused = [
        _flow(240 + i, extra={"conn_state": "REJ"}, packets_out=1, bytes_out=60) for i in range(40)
    ]
    (f,) = _run(_det(), answered + late_refused)
    assert f.evidence["sessions"] == 40 and f.evidence["failed_attempts"] == 40
    assert f.evidence["answered_share"] == 0.5


def test_large_or_varied_sessions_are_not_guessing() -> None:
    big = [_flow(i, bytes_out=60_000) for i in range(60)]  # Ansible modules, rsync
    assert _run(_det(), big) == []
    varied = [_flow(i, bytes_out=1000 + 150 * i) for i in range(60)]  # git/interactive mix, median 5.4 kB
    assert _run(_det(), varied) == []
    assert len(_run(_det(max_byte_spread=1.0), varied)) == 1  # quiet only because of the spread


def test_a_minority_of_odd_sessions_does_not_hide_a_run() -> None:
    """sshd's MaxStartups drops, the found password, the last partial batch: up to a third of outliers."""
    events = [_flow(i, bytes_out=3400) for i in range(40)]
    events += [_flow(40 + i, bytes_out=400 if i % 2 else 9000, packets_out=5) for i in range(18)]
    (f,) = _run(_det(), events)
    assert f.evidence["sessions"] == 58 and f.evidence["byte_spread"] < 0.3


def test_long_sessions_and_bare_connects_are_not_sessions() -> None:
    long = [_flow(i, duration_ms=121_000) for i in range(60)]
    bare = [_flow(100 + i, packets_out=3, bytes_out=160) for i in range(60)]
    assert _run(_det(), long + bare) == []


def test_web_ports_need_more_sessions_and_less_spread() -> None:
    def web(n: int, spread_step: int) -> list[FlowEvent]:
        return [
            _flow(i, dst_port=443, bytes_out=1800 + (i % 10) * spread_step, ts=T0 + 1000 + i * 1500)
            for i in range(n)
        ]

    assert _run(_det(), web(299, 1)) == []  # 40 would be enough on an authentication port
    (f,) = _run(_det(), web(300, 1))
    assert f.evidence["service"] == "HTTPS" and f.evidence["sessions"] == 300
    # a spread that passes on SSH (robust CV ~0.2) fails on a web port
    assert _run(_det(), web(300, 150)) == []
    ssh = [_flow(i, bytes_out=1800 + (i % 10) * 150) for i in range(60)]
    assert len(_run(_det(), ssh)) == 1


def test_an_app_without_a_connection_pool_is_not_guessing_its_database() -> None:
    # Django's default CONN_MAX_AGE = 0: a PostgreSQL login per request, alike, then result sets of every size
    app = [
        _flow(
            i,
            src_ip="10.1.1.5",
            dst_port=5432,
            bytes_out=2000 + (i % 9) * 15,
            bytes_in=600 + (i * 7919) % 90_000,
        )
        for i in range(60)
    ]
    assert _run(_det(), app) == []
    # a guessing tool: the same logins, one fixed "password authentication failed" back each time
    tool = [_flow(i, dst_port=5432, bytes_out=2000 + (i % 9) * 15, bytes_in=420 + i % 5) for i in range(60)]
    (f,) = _run(_det(), tool)
    assert f.evidence["service"] == "PostgreSQL" and f.evidence["reply_byte_spread"] < 0.05
    assert len(_run(_det(alike_reply_ports=[]), app)) == 1  # the replies are what told them apart


def test_a_tenant_reverse_proxy_passing_requests_on_is_not_guessing_its_backend() -> None:
    proxy = "10.1.1.5"  # nginx on a tenant VM, its default upstream: a connection per request

    def upstream(n: int) -> list[FlowEvent]:
        return [
            _flow(i, src_ip=proxy, dst_port=8080, bytes_out=900, bytes_in=2600, ts=T0 + 1000 + i * 1500)
            for i in range(n)
        ]

    def front(clients: int) -> list[FlowEvent]:  # internet clients' HTTPS sessions at the proxy
        return [
            _flow(
                1000 + k,
                src_ip=f"198.51.100.{10 + k}",
                dst_ip=proxy,
                dst_port=443,
                bytes_out=1800 + 97 * k,
                ts=T0 + 5000 + 1000 * k,
            )
            for k in range(clients)
        ]

    det = _det()
    assert _run(det, front(10) + upstream(300)) == [] and det.counters["forwarder"] == 1
    (f,) = _run(_det(), front(9) + upstream(300))  # too few clients served: a tool's pattern
    assert f.evidence["sources"] == [proxy]
    # the tenant's proxy guessing at an outside site's login is raised, clients or not
    outside = [_flow(i, src_ip=proxy, dst_ip="198.51.100.200", dst_port=443, bytes_out=900, bytes_in=2600,
                     ts=T0 + 1000 + i * 1500) for i in range(300)]  # fmt: skip
    assert len(_run(_det(), front(10) + outside)) == 1


def test_web_connections_held_open_on_nothing_are_a_slow_attacks_not_logins() -> None:
    """slowloris-like sessions (20 s, a partial request and its trickle: ~1.2 kB both ways) are
    held open, not guesses; the same count of 20 s keep-alive sessions that post on and on (kB)
    still are, and so are held-looking VPC records (their duration is the aggregation interval)."""

    def web(n: int, **kw: Any) -> list[FlowEvent]:
        return [_flow(i, dst_port=80, ts=T0 + 1000 + i * 1500, **kw) for i in range(n)]

    det = _det()
    held = dict(duration_ms=20_000, bytes_out=414, bytes_in=740, packets_out=5, packets_in=5)
    assert _run(det, web(360, **held)) == [] and det.counters["held_open"] == 360
    busy = dict(duration_ms=20_000, bytes_out=6_200, bytes_in=8_100, packets_out=40, packets_in=38)
    assert len(_run(_det(), web(360, **busy))) == 1
    vpc = dict(held, source="vpcflow", duration_ms=60_000, extra={"tcp_flags": 3})
    assert len(_run(_det(), web(360, **vpc))) == 1
    # the bar is the slow-DoS rule's held piece: shorter than its min_held_ms is an ordinary session
    assert len(_run(_det(), web(360, **dict(held, duration_ms=14_000)))) == 1
    # ... and it is read from that rule's configuration: one definition for both rules
    longer = DetectorConfig.default().merged(
        {"detectors": {"dos.slow_connections": {"params": {"min_held_ms": 25_000}}}}
    )
    det = FlowGuessing(longer)
    det.bind(REGISTRY)
    assert len(_run(det, web(360, **held))) == 1 and det.counters.get("held_open", 0) == 0


def test_from_the_app_flood_rules_rate_on_web_sessions_are_a_flood_not_guesses() -> None:
    """10 alike web sessions a second for 10 minutes: dos.app_flood's 600 a minute, left to it;
    the bar is that rule's own (min_connections per its window), so raising it there moves it here."""
    fast = [_flow(i, dst_port=80, ts=T0 + 1000 + i * 99, src_port=1024 + i % 60000) for i in range(6000)]
    assert _run(_det(), fast) == []
    slower_flood = DetectorConfig.default().merged(
        {"detectors": {"dos.app_flood": {"params": {"min_connections": 1200}}}}
    )
    det = FlowGuessing(slower_flood)
    det.bind(REGISTRY)
    (f,) = _run(det, fast)
    assert f.evidence["variant"] == "guessing" and f.evidence["sessions"] == 6000


def test_a_floods_last_second_in_the_next_window_is_not_a_guessing_run() -> None:
    """ab at 500 requests a second (the tool lab): the flood's last second fell in the next
    10-minute window, 500 alike sessions there; their rate over their own span is a flood's."""
    tail = [_flow(i, dst_port=80, ts=T0 + 1000 + i * 2, src_port=1024 + i) for i in range(500)]
    assert _run(_det(), tail) == []
    # the same sessions at a guessing tool's pace (one every 1.5 s) are raised
    (f,) = _run(
        _det(), [_flow(i, dst_port=80, ts=T0 + 1000 + i * 1500, src_port=1024 + i) for i in range(380)]
    )
    assert f.evidence["variant"] == "guessing"


def test_web_sessions_cut_into_status_records_and_held_open_are_a_slow_attacks() -> None:
    """slowhttptest's slow read as Argus writes it with its 5 s status interval (the tool lab): a
    short opening record (request and first reply, 3 s, alike) and then the server's zero-window
    probes, one packet a record, for minutes. Each opening record alone looks like a login
    session; the connection's later records show it held open on next to nothing."""
    opening = dict(source="argus", dst_port=80, duration_ms=3_200, bytes_out=765, bytes_in=1_688,
                   packets_out=8, packets_in=8, extra={"state": "SPA_SPA", "dir": "->"})  # fmt: skip
    probe = dict(opening, duration_ms=0, bytes_out=66, bytes_in=66, packets_out=1, packets_in=1,
                 extra={"state": "A_A", "dir": "->"})  # fmt: skip
    conns = range(340)
    first = [_flow(i, ts=T0 + 1000 + i * 600, **opening) for i in conns]  # 300 sockets, reopened
    later = [
        _flow(i, id=f"p{i}-{k}", ts=T0 + 1000 + i * 600 + k * 30_000, **probe)
        for i in conns
        for k in range(1, 8)
    ]
    det = _det()
    assert _run(det, sorted(first + later, key=lambda e: e.ts)) == [] and det.counters["held_open"] == 1
    # without the later records the same sessions are a run of alike web logins
    (f,) = _run(_det(), first)
    assert f.evidence["sessions"] == 340


def test_a_slow_read_whose_window_holds_only_its_first_seconds_is_no_guessing() -> None:
    """The tool lab's slow read against nginx in Argus records, in the 10-minute window that held
    only its first 48 s: each connection an opening record (request and first reply, 820 B out and
    1,688 B in over 3.3 s) and then the server's zero-window probes (66 B each way) 7, 14 and 27 s
    later. Over the set-up budget as a whole (2.9 kB in 30 s against 1.5 kB + 20 B/s), it was raised
    as HTTP password guessing; after its opening the connection trickles, and that is held."""
    opening = dict(source="argus", dst_port=80, duration_ms=3_270, bytes_out=820, bytes_in=1_688,
                   packets_out=8, packets_in=8, extra={"state": "SPA_SPA", "dir": "<?>"})  # fmt: skip
    probe = dict(opening, duration_ms=0, bytes_out=66, bytes_in=66, packets_out=1, packets_in=1,
                 extra={"state": "A_A", "dir": "<?>"})  # fmt: skip
    start = T0 + 552_000  # Argus stamps a record with its start: 48 s before the window's end
    # 300 sockets at 50 a second, then one every 5 s: the run's 309 sessions over 40 s
    opened = [start + i * 20 for i in range(300)] + [start + k * 5_000 for k in range(1, 10)]
    after = (6_760, 13_670, 27_240)
    in_window = [(i, at) for i in range(len(opened)) for at in after if opened[i] + at < T0 + 600_000]
    first = [_flow(i, ts=at, **opening) for i, at in enumerate(opened)]
    later = [_flow(i, id=f"p{i}-{at}", ts=opened[i] + at, **probe) for i, at in in_window]
    det = _det()
    assert _run(det, sorted(first + later, key=lambda e: e.ts)) == [] and det.counters["held_open"] == 1
    # a login tool that posts its next guesses on the kept connection (kilobytes after the opening)
    kept = dict(opening, extra={"state": "PA_PA", "dir": "<?>"})
    guesses = [_flow(i, id=f"g{i}-{at}", ts=opened[i] + at, **kept) for i, at in in_window]
    (f,) = _run(_det(), sorted(first + guesses, key=lambda e: e.ts))
    assert f.evidence["variant"] == "guessing" and f.evidence["sessions"] == 309


def test_web_replies_must_be_alike_where_the_record_has_them() -> None:
    """Clients behind a proxy send alike requests and get different objects back; a form-guessing
    tool gets one error page. A one-way format's replies are the server's records."""

    def web(reply: Any, **kw: Any) -> list[FlowEvent]:
        return [
            _flow(i, dst_port=80, bytes_out=1200, bytes_in=reply(i), ts=T0 + 1000 + i * 1500, **kw)
            for i in range(320)
        ]

    assert _run(_det(), web(lambda i: 800 + (i * 7919) % 30_000)) == []  # a proxy's varied answers
    (f,) = _run(_det(), web(lambda i: 2400 + i % 3))  # one error page
    assert f.evidence["reply_byte_spread"] < 0.01
    one_way = web(lambda i: 0, source="netflow", packets_in=0, extra={"tcp_flags": 27})
    (g,) = _run(_det(), one_way)
    assert g.evidence["reply_byte_spread"] is None  # no server records: judged on the client side

    # One-way formats write the server's side as records of their own (VPC Flow Logs: a web flood
    # of slightly varied requests, each answered with a page of its own size): they are the replies.
    def server(size: Any) -> list[FlowEvent]:
        return [
            _flow(i, source="vpcflow", src_ip=VM, dst_ip=ATTACKER, src_port=80, dst_port=40000 + i,
                  bytes_out=size(i), packets_out=12, bytes_in=0, packets_in=0, ts=T0 + 1000 + i * 1500,
                  id=f"r{i}", extra={})
            for i in range(320)
        ]  # fmt: skip

    vpc = web(lambda i: 0, source="vpcflow", packets_in=0, extra={})
    assert _run(_det(), vpc + server(lambda i: 800 + (i * 7919) % 30_000)) == []  # 1.1.0 raised it
    (h,) = _run(_det(), vpc + server(lambda i: 2400 + i % 3))  # one error page
    assert h.evidence["reply_byte_spread"] < 0.01
    # on an authentication port the reply is not judged (a graphical RDP logon streams screen updates)
    rdp = [_flow(i, dst_port=3389, bytes_in=15_000 + (i * 7919) % 100_000) for i in range(45)]
    assert len(_run(_det(), rdp)) == 1


def test_spraying_across_hosts_from_a_tenant_vm() -> None:
    src = "10.1.1.11"  # vm-acme-02
    events = [
        _flow(i, src_ip=src, dst_ip=f"10.1.2.{i + 1}", dst_port=3389, bytes_out=2600) for i in range(20)
    ]
    (f,) = _run(_det(), events)
    assert (f.entity.type, f.entity.id) == ("vm", "vm-acme-02")
    assert f.evidence["variant"] == "spraying" and f.evidence["distinct_targets"] == 20
    assert f.evidence["source_internal"] and f.score == 70
    assert f.attack is not None and f.attack.technique_id == "T1110.003"
    assert _run(_det(), events[:19]) == []


def test_records_of_one_connection_count_once() -> None:
    """NetFlow active timeout, Argus status records, VPC logging both interfaces: one session."""
    events = [_flow(i % 20, id=f"dup{i}", ts=T0 + 1000 + i * 1000) for i in range(80)]
    assert _run(_det(), events) == []  # 20 connections, 80 records


def test_netflow_one_way_records_count_only_when_the_client_shows_an_answer() -> None:
    def nf(i: int, **kw: Any) -> FlowEvent:
        base = {
            "source": "netflow",
            "packets_in": 0,
            "bytes_in": 0,
            "dst_port": 21,
            "extra": {"tcp_flags": 27},
        }
        base.update(kw)
        return _flow(i, **base)

    answered = [nf(i, packets_out=10, bytes_out=560) for i in range(45)]
    replies = [
        nf(i, src_ip=VM, dst_ip=ATTACKER, src_port=21, dst_port=40000 + i, packets_out=9, bytes_out=700)
        for i in range(45)
    ]
    (f,) = _run(_det(), answered + replies)
    assert f.entity.id == ATTACKER and f.evidence["service"] == "FTP" and f.evidence["sessions"] == 45
    syns = [nf(i, packets_out=3, bytes_out=180, extra={"tcp_flags": 2}) for i in range(60)]
    no_flags = [nf(100 + i, packets_out=7, bytes_out=420, extra={}) for i in range(60)]
    assert _run(_det(), syns + no_flags) == []


def test_vpc_aggregation_interval_is_not_a_session_length() -> None:
    events = [
        _flow(i, source="vpcflow", dst_port=3306, packets_in=0, bytes_in=0, packets_out=8, bytes_out=640,
              duration_ms=600_000, extra={"tcp-flags": 3})
        for i in range(45)
    ]  # fmt: skip
    (f,) = _run(_det(), events)
    assert f.evidence["service"] == "MySQL"


def test_one_alert_per_source_with_the_other_services_listed() -> None:
    ssh = [_flow(i) for i in range(50)]
    telnet = [_flow(100 + i, dst_port=23, bytes_out=400, packets_out=8) for i in range(42)]
    (f,) = _run(_det(), ssh + telnet)
    assert f.evidence["port"] == 22 and f.evidence["other_services"] == ["Telnet (23)"]


def test_allowed_sources_and_ports_outside_the_list_are_ignored() -> None:
    assert _run(_det(allowed_sources=[ATTACKER]), [_flow(i) for i in range(60)]) == []
    assert _run(_det(), [_flow(i, dst_port=2222) for i in range(60)]) == []


def test_windows_are_ten_minutes_and_state_pickles() -> None:
    det = _det()
    det.observe_batch(Batch(cast(list[Event], [_flow(i) for i in range(20)]), REGISTRY))
    clone: FlowGuessing = pickle.loads(pickle.dumps(det))
    clone.bind(REGISTRY)
    rest = [_flow(20 + i) for i in range(20)]
    a, b = _run(det, rest), _run(clone, rest)
    assert msgspec.to_builtins(a) == msgspec.to_builtins(b) and len(a) == 1
    assert a[0].window.end - a[0].window.start == 600_000
    split = _det()  # 40 sessions across two windows: 20 + 20, no alert
    late = [_flow(i, ts=T0 + 600_000 + 1000 + i) for i in range(20, 40)]
    assert _run(split, [_flow(i) for i in range(20)] + late) == []


@pytest.mark.parametrize(
    ("values", "median", "spread"),
    [
        ([100, 100, 100], 100.0, 0.0),
        ([90, 100, 110, 1000], 105.0, 1.4826 * 10 / 105),
        ([0, 0, 5], 0.0, float("inf")),
    ],
)
def test_robust_spread(values: list[int], median: float, spread: float) -> None:
    m, s = robust_spread(values)
    assert m == median and s == pytest.approx(spread)


def test_client_spoke() -> None:
    assert not client_spoke(7, 7 * 60, "10.0.0.1")  # Linux's 7 SYNs, nothing back
    assert client_spoke(8, 8 * 52, "10.0.0.1")
    assert client_spoke(5, 850, "10.0.0.1")  # an HTTP POST
    assert not client_spoke(3, 240, "2001:db8::1")  # IPv6 SYNs
    assert not client_spoke(1, 1400, "10.0.0.1")


def test_no_spraying_on_web_ports() -> None:
    """A browser reaches many web hosts with alike connections; spraying a web login is per site."""
    events = [_flow(i, dst_ip=f"10.1.2.{i % 200 + 1}", dst_port=443, bytes_out=1800) for i in range(280)]
    assert _run(_det(), events) == []
    assert (
        len(_run(_det(), [_flow(i, dst_ip=f"10.1.2.{i % 200 + 1}", bytes_out=1800) for i in range(40)])) == 1
    )


def test_a_state_pickled_before_the_held_sessions_still_loads() -> None:
    """1.2.0's checkpoints hold a 7-field GuessState; a restore reads it with no held sessions."""
    from detectors.rules.brute_force.flow_guessing import GuessState

    state = GuessState()
    state.__setstate__(state.__getstate__()[:7])
    assert state.held == {} and state.sessions() == 0
    state.held[("10.1.1.10", 40000)] = [0, 20_000, 900, 3_000, 600]
    assert pickle.loads(pickle.dumps(state)).held == state.held


def test_a_held_session_pickled_without_its_opening_is_judged_as_a_whole() -> None:
    """1.3.0's held sessions are ``[start, end, bytes]``: restored, the opening is unknown (none
    taken off), so the session is held only as a whole, as before."""
    from detectors.rules.brute_force.flow_guessing import GuessState

    state = GuessState()
    state.held[("10.1.1.10", 40000)] = [0, 30_000, 2_900]
    restored = pickle.loads(pickle.dumps(state))
    assert restored.held[("10.1.1.10", 40000)] == [0, 30_000, 2_900, 0, 0]
    det = _det()
    assert det.held_sessions(restored) == 0  # 2.9 kB in 30 s: over 1.5 kB + 20 B/s as a whole
    restored.held[("10.1.1.10", 40000)] = [0, 30_000, 1_900, 0, 0]
    assert det.held_sessions(restored) == 1
