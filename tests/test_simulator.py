"""The simulator: reproducible bytes, valid events, complete and truthful ground truth, sane rates."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import msgspec
import pytest
import yaml

from ingest.schema import AuditEvent, AuthEvent, Event, FlowEvent, ProcessEvent, decode_event, encode_event
from ingest.simulator import (
    CATEGORIES,
    EMULATOR_EXE,
    SCENARIO_NAMES,
    SCENARIOS,
    SimConfig,
    diurnal_factor,
    load_ground_truth,
    mean_rate_slice_start_ms,
    parse_scenarios,
    simulate,
    stream_to,
    write_files,
)
from ingest.simulator.background import HOURLY_WEIGHTS, mean_rate_centre_ms
from ingest.simulator.config import resolve_scenarios
from ingest.tenants import TenantRegistry

SMALL = SimConfig(seed=11, tenants=6, hosts=3, vms_per_tenant=4, duration_s=600, events_per_s=40)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    result = simulate(SMALL)
    out = tmp_path_factory.mktemp("sim")
    written = write_files(result, out)
    events = [decode_event(line) for line in written.events.read_bytes().splitlines()]
    return result, written, events


def test_same_seed_gives_identical_bytes(run, tmp_path):
    _, first, _ = run
    second = write_files(simulate(SMALL), tmp_path)
    for name in ("events", "tenants", "ground_truth"):
        assert getattr(first, name).read_bytes() == getattr(second, name).read_bytes(), name


def test_different_seed_gives_different_output(run, tmp_path):
    _, first, _ = run
    cfg = dataclasses.replace(SMALL, seed=12, duration_s=60)
    other = write_files(simulate(cfg), tmp_path)
    assert other.tenants.read_bytes() != first.tenants.read_bytes()
    assert other.events.read_bytes()[:4096] != first.events.read_bytes()[:4096]


def test_output_does_not_depend_on_hash_randomisation(tmp_path):
    code = (
        "import hashlib,sys\n"
        "from ingest.simulator import SimConfig, simulate, write_files\n"
        "cfg = SimConfig(seed=3, tenants=4, duration_s=60, events_per_s=20)\n"
        "w = write_files(simulate(cfg), sys.argv[1])\n"
        "for p in (w.events, w.tenants, w.ground_truth):\n"
        "    print(hashlib.sha256(p.read_bytes()).hexdigest())\n"
    )
    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = tmp_path / hash_seed
        proc = subprocess.run(
            [sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, check=True
        )
        digests.append(proc.stdout.split())
    assert digests[0] == digests[1]


def test_every_event_decodes_sorted_with_unique_ids(run):
    result, written, events = run
    assert len(events) == written.event_count > 0
    assert all(e.source == "sim" and e.schema == "ssa/1" for e in events)
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps)
    assert SMALL.start_ms <= stamps[0] and stamps[-1] < SMALL.end_ms
    assert len({e.id for e in events}) == len(events)
    assert {type(e) for e in events} == {FlowEvent, ProcessEvent, AuditEvent, AuthEvent}
    assert [e.id for e in result.events()][:500] == [e.id for e in events][:500]  # iterating again replays


def test_ground_truth_ids_exist_and_spans_match(run):
    result, written, events = run
    by_id = {e.id: e for e in events}
    truth = load_ground_truth(written.ground_truth)
    assert truth == result.truth + result.context_truth()
    for rec in result.truth:
        assert rec.event_ids, rec.scenario
        stamps = [by_id[i].ts for i in rec.event_ids]  # KeyError = an id missing from the stream
        assert (rec.start, rec.end) == (min(stamps), max(stamps))
        assert rec.category == rec.scenario.split(".")[0] and rec.category in CATEGORIES
        assert rec.tenant is None or rec.tenant in result.registry.tenants
        assert rec.entity.type in ("vm", "host", "ip", "principal", "user")
    all_ids = [i for rec in truth for i in rec.event_ids]
    assert len(all_ids) == len(set(all_ids)) == len(result.injected)


def test_every_scenario_and_lookalike_appears(run):
    result, _, _ = run
    seen = Counter(rec.scenario for rec in result.truth)
    assert set(seen) == set(SCENARIO_NAMES)
    assert all(n == 2 for n in seen.values())
    for rec in result.truth:
        assert rec.benign == (".benign_" in rec.scenario) == SCENARIOS[rec.scenario].benign
    for category in CATEGORIES:
        kinds = {rec.benign for rec in result.truth if rec.category == category}
        assert kinds == {True, False}, category


def test_entity_conventions(run):
    result, _, _ = run
    reg = result.registry
    expected = {
        "vm_escape": {"vm", "host"},
        "cross_tenant_leak": {"vm", "principal"},
        "port_scan": {"ip"},
        "brute_force": {"ip"},
        "dos": {"ip"},
        "exfiltration": {"vm"},
        "cryptomining": {"vm"},
        "command_and_control": {"vm"},
        "spam": {"vm"},
        "anomaly": {"vm"},
    }
    for rec in result.truth:
        assert rec.entity.type in expected[rec.category], rec.scenario
        if rec.entity.type == "vm":
            assert reg.tenant_of_vm(rec.entity.id) == rec.tenant
        if rec.entity.type == "principal":
            assert rec.entity.id == f"iam::{rec.tenant}:user/" + rec.entity.id.rsplit("/", 1)[1]
        if rec.entity.type == "host":
            assert rec.entity.id in reg.hosts


def test_tenant_fields_agree_with_registry(run):
    result, _, events = run
    reg = result.registry
    for e in events:
        if e.vm is not None:
            vm = reg.vms[e.vm]
            assert e.tenant == vm.tenant and e.host == vm.host
        if isinstance(e, FlowEvent) and e.vm is not None:
            ip = reg.vms[e.vm].ip
            assert ip in (e.src_ip, e.dst_ip)
            if e.src_ip == ip:
                assert reg.tenant_of_ip(e.src_ip) == e.tenant
        elif isinstance(e, ProcessEvent) and e.exe == EMULATOR_EXE:
            vm = reg.vms[e.vm or ""]
            assert f"-name guest={vm.id}," in e.cmdline and f"-drive file={vm.disk}," in e.cmdline
        elif isinstance(e, AuditEvent):
            assert e.tenant == e.principal_tenant
            assert e.principal.startswith(f"iam::{e.principal_tenant}:user/")
            assert e.resource.split("/")[1] == e.resource_tenant


def test_background_never_looks_like_an_attack(run):
    result, _, events = run
    reg = result.registry
    labelled = {i for rec in result.truth for i in rec.event_ids}
    daemons = {h.daemon for h in result.topology.hosts}
    for e in events:
        if e.id in labelled:
            continue
        if isinstance(e, FlowEvent):
            src_t, dst_t = reg.tenant_of_ip(e.src_ip), reg.tenant_of_ip(e.dst_ip)
            if src_t:
                assert not reg.is_management_ip(e.dst_ip)
                assert dst_t is None or reg.is_peered(src_t, dst_t)
            assert e.dst_port not in (3333, 14444, 45700)
        elif isinstance(e, ProcessEvent):
            assert e.exe in (EMULATOR_EXE, *daemons)
            if e.exe == EMULATOR_EXE and e.path and e.path.endswith(".qcow2"):
                assert reg.vm_of_disk(e.path) == e.vm
            assert e.syscall not in ("execve", "ptrace", "init_module", "finit_module", "setns", "mount")
        elif isinstance(e, AuditEvent) and e.principal_tenant != e.resource_tenant:
            assert reg.has_share(e.resource_tenant, e.principal_tenant, e.resource)


def _events_of(result, events, scenario):
    by_id = {e.id: e for e in events}
    return [[by_id[i] for i in rec.event_ids] for rec in result.truth if rec.scenario == scenario]


def test_attacks_cross_the_lines_their_lookalikes_respect(run):
    result, _, events = run
    reg = result.registry

    def each(name):
        return _events_of(result, events, name)

    for evs in each("vm_escape.shell_spawn"):
        assert any(e.syscall == "execve" and e.parent_exe == EMULATOR_EXE for e in evs)
    for evs in each("vm_escape.foreign_disk_open"):
        assert all(reg.vm_of_disk(e.path) not in (None, e.vm) for e in evs)
    for evs in each("vm_escape.mgmt_plane_access"):
        assert all(reg.is_management_ip(e.dst_ip) and reg.vm_of_ip(e.src_ip) == e.vm for e in evs)
    for evs in each("vm_escape.kvm_device_abuse"):
        assert all(e.exe != EMULATOR_EXE and e.vm is None for e in evs)
    for evs in each("vm_escape.benign_vm_restart"):
        disks = {reg.vm_of_disk(e.path) for e in evs if e.path and e.path.endswith(".qcow2")}
        assert disks == {next(e.vm for e in evs if e.vm)}  # only its own disk
    for evs in each("vm_escape.benign_admin_ssh"):
        assert all(reg.is_management_ip(e.src_ip) for e in evs if isinstance(e, (FlowEvent, AuthEvent)))
    for evs in each("cross_tenant_leak.unpeered_flow"):
        assert all(not reg.is_peered(e.tenant, reg.tenant_of_ip(e.dst_ip)) for e in evs)
    for evs in each("cross_tenant_leak.foreign_resource_access"):
        assert all(not reg.has_share(e.resource_tenant, e.principal_tenant, e.resource) for e in evs)
    for evs in each("cross_tenant_leak.share_to_foreign"):
        share = [e for e in evs if "grantees" in e.extra]
        assert share and not any(
            reg.has_share(e.resource_tenant, g, e.resource) for e in share for g in e.extra["grantees"]
        )
    for evs in each("cross_tenant_leak.benign_registered_share"):
        assert all(reg.has_share(e.resource_tenant, g, e.resource) for e in evs for g in e.extra["grantees"])
    for evs in each("cross_tenant_leak.benign_shared_access"):
        assert all(reg.has_share(e.resource_tenant, e.principal_tenant, e.resource) for e in evs)
    spikes = [e.bytes_out for evs in each("cross_tenant_leak.peer_volume_spike") for e in evs]
    normal = [e.bytes_out for evs in each("cross_tenant_leak.benign_peered_flow") for e in evs]
    assert min(spikes) > 50 * max(normal)
    for evs in each("port_scan.vertical"):
        assert len({e.dst_port for e in evs}) >= 100
    for evs in each("port_scan.benign_admin_scan"):
        assert len({e.dst_port for e in evs}) <= 3
    for evs in each("brute_force.ssh_password"):
        assert sum(isinstance(e, AuthEvent) and e.result == "failure" for e in evs) >= 30
    for evs in each("brute_force.benign_typo"):
        assert [e.result for e in evs if isinstance(e, AuthEvent)] == ["failure", "failure", "success"]
    for evs in each("exfiltration.bulk_upload"):
        assert len({e.dst_ip for e in evs}) == 1 and reg.tenant_of_ip(evs[0].dst_ip) is None
    for evs in each("exfiltration.benign_backup"):
        assert all(reg.tenant_of_ip(e.dst_ip) == e.tenant for e in evs)
    for evs in each("cryptomining.pool_mining"):
        flows = [e for e in evs if isinstance(e, FlowEvent)]
        assert {e.dst_port for e in flows} <= {3333, 4444, 5555, 14444, 45700} and len(flows) >= 5
        assert any(isinstance(e, ProcessEvent) and "stratum+tcp://" in e.cmdline for e in evs)
    for evs in each("dos.syn_flood"):
        assert all(e.bytes_out <= 60 * e.packets_out and e.packets_out >= 2000 for e in evs)


def test_registry_file_round_trips(run):
    result, written, _ = run
    reg = TenantRegistry.load(written.tenants)
    assert reg.to_dict() == result.registry.to_dict()
    assert yaml.safe_load(written.tenants.read_text())["management_cidrs"] == ["172.31.0.0/16"]
    tenants_per_host = Counter(vm.host for vm in {(v.tenant, v.host): v for v in reg.vms.values()}.values())
    assert all(n >= 2 for n in tenants_per_host.values())
    for vm in reg.vms.values():
        assert reg.tenant_of_ip(vm.ip) == vm.tenant
        assert vm.disk == f"/var/lib/libvirt/images/{vm.id}.qcow2"
    assert all(reg.is_management_ip(h.mgmt_ip) for h in reg.hosts.values())
    assert len({t.industry for t in reg.tenants.values()}) == len(reg.tenants)
    assert any(t.peerings for t in reg.tenants.values()) and any(t.shares for t in reg.tenants.values())


def test_background_rate_matches_config(run):
    result, written, _ = run
    background = written.event_count - len(result.injected)
    assert background == pytest.approx(result.expected_background(), rel=0.05)


def test_rate_follows_the_day():
    cfg = SimConfig(seed=5, duration_s=86_400, start_ms=1_736_121_600_000, events_per_s=0.5, scenarios={})
    per_hour = Counter((e.ts - cfg.start_ms) // 3_600_000 for e in simulate(cfg).events())
    assert sum(per_hour.values()) == pytest.approx(43_200, rel=0.05)
    # the hour-of-day curve is the captures' (rhythm.json), office hours busy and nights quiet
    weights = HOURLY_WEIGHTS
    busy, quiet = max(range(24), key=weights.__getitem__), min(range(24), key=weights.__getitem__)
    assert weights[busy] > 5 * weights[quiet]
    assert per_hour[busy] > 5 * per_hour[quiet]
    for h in range(24):  # each hour holds its share (linear between hour centres)
        expected = 1800 * (weights[h] * 0.75 + (weights[h - 1] + weights[(h + 1) % 24]) / 8)
        assert per_hour[h] == pytest.approx(expected, rel=0.15, abs=40), h
    assert diurnal_factor(cfg.start_ms + busy * 3_600_000 + 1_800_000) == pytest.approx(weights[busy])


@pytest.mark.parametrize("hour", [0.0, 3.0, 9.5, 15.0, 20.95, 21.05, 23.9])
def test_mean_rate_slice_holds_the_mean_volume_at_any_hour(hour):
    day = 1_736_121_600_000  # a midnight UTC
    now = day + int(hour * 3_600_000)
    start = mean_rate_slice_start_ms(now, 240_000)
    assert start + 240_000 <= now < start + 240_000 + 86_400_000  # the last one that has ended
    assert (start + 120_000) % 86_400_000 == mean_rate_centre_ms(240_000)
    cfg = SimConfig(seed=5, duration_s=240, start_ms=start, events_per_s=600)
    assert simulate(cfg).expected_background() == pytest.approx(600 * 240, rel=0.01)


def test_stream_to_paces_and_reports():
    result = simulate(SimConfig(seed=2, duration_s=60, events_per_s=50, scenarios={"dos.syn_flood": 1}))
    now = [0.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    sent: list[Event] = []
    reports: list[int] = []
    n = stream_to(result, sent.append, rate_per_s=1000, progress=lambda d, t: reports.append(d),
                  clock=lambda: now[0], sleep=sleep, limit=2000)  # fmt: skip
    assert n == len(sent) == 2000
    assert sum(slept) == pytest.approx(2.0, rel=0.01)
    assert reports[-1] == 2000 and reports[0] == 1000
    assert [e.id for e in sent] == [e.id for e in result.events()][:2000]
    fast = stream_to(result, lambda e: None, sleep=lambda s: pytest.fail("slept without a rate"))
    assert fast == sum(1 for _ in result.events())


def test_scenario_selection():
    assert parse_scenarios("vm_escape=3, dos ,port_scan.vertical=0") == {
        "vm_escape": 3,
        "dos": 2,
        "port_scan.vertical": 0,
    }
    picked = resolve_scenarios({"vm_escape": 1, "vm_escape.ptrace": 0})
    assert "vm_escape.ptrace" not in picked and picked["vm_escape.shell_spawn"] == 1
    assert all(n.startswith("vm_escape.") for n in picked)
    no_benign = resolve_scenarios({"all": 1, "dos.benign_web_peak": 1}, lookalikes=False)
    assert [n for n in no_benign if SCENARIOS[n].benign] == ["dos.benign_web_peak"]
    with pytest.raises(ValueError, match="unknown scenario"):
        parse_scenarios("vm_breakout=1")
    with pytest.raises(ValueError):
        SimConfig(tenants=2)
    result = simulate(SimConfig(seed=4, duration_s=120, events_per_s=5, scenarios={"brute_force": 3}))
    assert Counter(r.scenario for r in result.truth) == {
        "brute_force.ssh_password": 3,
        "brute_force.password_spray": 3,
        "brute_force.benign_typo": 3,
        "brute_force.flow_guessing": 3,
        "brute_force.flow_spray": 3,
        "brute_force.benign_ansible_run": 3,
        "brute_force.benign_nagios_check_ssh": 3,
        "brute_force.benign_rsync_backup": 3,
    }


# --- the attacks real networks carry, as flows, and their look-alikes ------------------------------
def _flows(evs):
    return [e for e in evs if isinstance(e, FlowEvent)]


def _gaps_s(evs):
    starts = sorted(e.ts - e.duration_ms for e in evs)
    return [(b - a) / 1000 for a, b in itertools.pairwise(starts)]


def test_flow_level_guessing_and_its_lookalikes(run):
    result, _, events = run
    reg = result.registry
    for evs in _events_of(result, events, "brute_force.flow_guessing"):
        flows = _flows(evs)
        assert len(flows) == len(evs) >= 50  # flows only: no sshd log
        assert len({e.src_ip for e in flows}) == 1 and reg.tenant_of_ip(flows[0].src_ip) is None
        assert len({(e.dst_ip, e.dst_port) for e in flows}) == 1 and flows[0].dst_port in (22, 3389, 21, 3306)
        small = [e for e in flows if e.bytes_out < 10_000]
        assert len(small) >= len(flows) - 1  # every login attempt is small; a won session may follow
    for evs in _events_of(result, events, "brute_force.flow_spray"):
        flows = _flows(evs)
        tenant = reg.tenant_of_ip(flows[0].dst_ip)
        assert {e.dst_ip for e in flows} == {v.ip for v in reg.vms.values() if v.tenant == tenant}
    for evs in _events_of(result, events, "brute_force.benign_ansible_run"):
        assert min(e.bytes_out for e in evs) > 20_000 and len(evs) <= 4 * len({e.dst_ip for e in evs})
    for evs in _events_of(result, events, "brute_force.benign_nagios_check_ssh"):
        per_dst = Counter(e.dst_ip for e in evs)
        for dst in per_dst:
            gaps = _gaps_s([e for e in evs if e.dst_ip == dst])
            assert all(59 <= g <= 61 for g in gaps), gaps
        assert all(reg.tenant_of_ip(e.src_ip) == reg.tenant_of_ip(e.dst_ip) for e in evs)


def test_http_floods_and_their_lookalikes(run):
    result, _, events = run
    for name, sources in (("dos.http_flood_hulk", {1}), ("dos.http_flood_goldeneye", {1}),
                          ("dos.http_flood_loic", set(range(3, 11)))):  # fmt: skip
        for evs in _events_of(result, events, name):
            assert len({e.src_ip for e in evs}) in sources
            assert len({e.dst_ip for e in evs}) == 1 and evs[0].dst_port in (80, 443)
            span_s = max(1.0, (max(e.ts for e in evs) - min(e.ts for e in evs)) / 1000)
            assert len(evs) / span_s >= 10  # tens of connections per second and more
            assert len({(e.src_ip, e.src_port) for e in evs}) > 0.9 * len(evs)  # a socket per record
    for evs in _events_of(result, events, "dos.http_flood_goldeneye"):
        assert statistics_median([e.packets_out for e in evs]) >= 20  # many requests per keep-alive socket
    for evs in _events_of(result, events, "dos.http_flood_hulk"):
        assert statistics_median([e.packets_out for e in evs]) < 10  # one request per connection
    for evs in _events_of(result, events, "dos.benign_load_balancer"):
        reg = result.registry
        own = [e for e in evs if e.vm is not None]  # health checks and proxied requests to the web VM
        front = [e for e in evs if e.vm is None]  # the clients' sessions at the balancer's front
        assert own and front
        assert all(reg.tenant_of_ip(e.src_ip) == e.tenant for e in own)  # from the tenant's own network
        assert all(
            reg.tenant_of_ip(e.src_ip) is None and reg.tenant_of_ip(e.dst_ip) == e.tenant for e in front
        )
        assert {e.dst_ip for e in front} <= {e.src_ip for e in own}  # to the nodes that pass them on


def statistics_median(values):
    s = sorted(values)
    return s[len(s) // 2]


def test_slow_dos_holds_long_nearly_empty_connections(run):
    result, _, events = run
    for name in ("dos.slowloris", "dos.slowhttptest", "dos.rudy"):
        recs = [r for r in result.truth if r.scenario == name]
        for rec, evs in zip(recs, _events_of(result, events, name), strict=True):
            assert len({e.src_ip for e in evs}) == 1 and len({e.dst_ip for e in evs}) == 1
            sockets = {(e.src_ip, e.src_port) for e in evs}
            assert len(sockets) >= 50
            assert all(e.bytes_out / max(1.0, e.duration_ms / 1000) < 200 for e in evs)  # bytes per second
            assert statistics_median([e.duration_ms for e in evs]) >= 15_000
            if rec.detail["export"] == "active":
                assert max(e.duration_ms for e in evs) <= 60_000
                assert len(evs) > len(sockets)  # an open socket is reported every minute
            else:
                assert len(evs) == len(sockets) or rec.detail["server_reqtimeout"]
    for evs in _events_of(result, events, "dos.slowloris"):
        opened = sorted({(e.src_port, e.ts - e.duration_ms) for e in evs}, key=lambda p: p[1])
        assert len({p for p, _ in opened}) >= 150
    for evs in _events_of(result, events, "dos.benign_websockets"):
        assert len({e.src_ip for e in evs}) >= 50  # many clients (a few of them behind one NAT)


def test_beacons_are_regular_and_their_lookalikes_too(run):
    result, _, events = run
    reg = result.registry
    recs = {name: [r for r in result.truth if r.scenario == name] for name in SCENARIO_NAMES}
    for rec, evs in zip(recs["command_and_control.beacon_cobalt_strike"],
                        _events_of(result, events, "command_and_control.beacon_cobalt_strike"), strict=True):  # fmt: skip
        assert {(e.dst_ip, e.dst_port) for e in evs} == {(rec.detail["c2"], rec.detail["dst_port"])}
        assert reg.tenant_of_ip(rec.detail["c2"]) is None and all(e.vm == rec.entity.id for e in evs)
        sleep, jitter = rec.detail["sleep_s"], rec.detail["jitter_pct"] / 100
        for g in _gaps_s(evs):  # start-to-start, the check-in's own length moves it a little
            assert sleep * (1 - jitter) - 3 <= g <= sleep + 3, (g, sleep, jitter)
    for evs in _events_of(result, events, "command_and_control.beacon_sliver"):
        assert all(57 <= g <= 93 for g in _gaps_s(evs))
    for evs in _events_of(result, events, "command_and_control.benign_monitoring_agent"):
        assert all(57 <= g <= 63 for g in _gaps_s(evs)) and len({e.dst_ip for e in evs}) == 1
        assert min(e.bytes_out for e in evs) > 3_000  # it uploads, a beacon mostly asks
    for evs in _events_of(result, events, "command_and_control.benign_ntp_polling"):
        assert all(e.proto == "udp" and e.dst_port == 123 for e in evs)
    for evs in _events_of(result, events, "spam.spam_bot"):
        assert {e.dst_port for e in evs} == {25} and len({e.dst_ip for e in evs}) >= 10
        assert sum(e.bytes_in == 0 for e in evs) > 0.3 * len(evs)  # many never answered
    for evs in _events_of(result, events, "spam.benign_mail_relay"):
        assert {e.dst_port for e in evs} == {25} and all(e.bytes_in > 0 for e in evs)


def test_background_sizes_come_from_the_real_captures(run):
    import json
    from pathlib import Path

    import ingest.simulator.rhythm as rhythm

    data = json.loads(Path(rhythm.DEFAULT_PATH).read_text())
    assert Path(rhythm.DEFAULT_PATH).stat().st_size < 16_000
    assert data["provenance"]["command"].startswith("python -m ingest.simulator.rhythm")
    assert sum(f["flows_used"] for f in data["provenance"]["files"]) > 100_000
    result, _, events = run
    labelled = {i for rec in result.truth for i in rec.event_ids}
    web = [e for e in events if isinstance(e, FlowEvent) and e.id not in labelled and e.dst_port == 443
           and e.src_ip in {v.ip for v in result.registry.vms.values()} and result.registry.tenant_of_ip(e.dst_ip) is None]  # fmt: skip
    assert len(web) > 500
    levels = data["levels"]
    for field in ("bytes_in", "duration_ms"):
        q = data["classes"]["web"][field]
        values = sorted(getattr(e, field) for e in web)
        for level in (0.25, 0.5, 0.75):
            got = values[int(level * len(values))]
            want = q[levels.index(level)]
            assert want * 0.6 <= got <= want / 0.6 + 60, (field, level, got, want)


def test_rhythm_draws_follow_their_quantiles_and_coupling():
    import random

    from ingest.simulator.rhythm import LEVELS, Draw

    spec: dict[str, Any] = {
        "bytes_out": [100 * (1 + i) for i in range(len(LEVELS))],
        "bytes_in": [1000 * (1 + i) ** 2 for i in range(len(LEVELS))],
        "duration_ms": [10 * (1 + i) for i in range(len(LEVELS))],
        "bpp_out": [100.0] * len(LEVELS),
        "bpp_in": [1000.0] * len(LEVELS),
        "corr": {"bytes_out~bytes_in": 0.9, "bytes_out~duration_ms": 0.0, "bytes_in~duration_ms": 0.0},
    }
    draw = Draw(LEVELS, spec)
    rng = random.Random(1)
    rows = [draw(rng) for _ in range(20_000)]
    for col, key in ((0, "bytes_out"), (1, "bytes_in"), (4, "duration_ms")):
        values = sorted(r[col] for r in rows)
        for level in (0.1, 0.5, 0.9):
            want = spec[key][LEVELS.index(level)]
            assert values[int(level * len(values))] == pytest.approx(want, rel=0.08), (key, level)
    big_out = [r for r in rows if r[0] > spec["bytes_out"][LEVELS.index(0.9)]]
    assert statistics_median([r[1] for r in big_out]) > 2 * statistics_median([r[1] for r in rows])
    assert all(r[2] == max(1, min(round(r[0] / 100), r[0] // 40)) for r in rows[:100])
    assert [draw(random.Random(3)) for _ in range(3)] == [draw(random.Random(3)) for _ in range(3)]


def test_the_backgrounds_context_records_say_what_it_carries(run):
    """Every VM is probed by the background's internet noise (refused single packets from public
    addresses), which ``context_truth`` labels, one record per VM over the whole run."""
    result, _, events = run
    context = result.context_truth()
    assert {r.entity.id for r in context} == {vm.id for vm in result.topology.vms}
    assert all(r.context and not r.benign and r.category == "port_scan" for r in context)
    probed = {
        e.vm
        for e in events
        if isinstance(e, FlowEvent) and e.action == "reject" and ipaddress.ip_address(e.src_ip).is_global
    }
    assert probed == {r.entity.id for r in context}
    assert simulate(dataclasses.replace(SMALL, events_per_s=0.0)).context_truth() == []  # no background


@pytest.mark.parametrize("span_s", [5, 30, 59])
def test_every_scenario_fits_a_run_ending_soon(span_s):
    """A scenario planned near the end of a run gets a short ``span``: its events must still be
    valid telemetry inside it (the job's decoder refuses a negative duration, so such an event
    would reach the DLQ instead of the detectors, and offline the detectors would read it)."""
    import random

    from ingest.simulator.factory import EventMaker
    from ingest.simulator.scenarios import Ctx
    from ingest.simulator.topology import build_topology

    topo = build_topology(5, 4, 3, 4)
    start, end = SMALL.start_ms, SMALL.start_ms + span_s * 1000
    wrong: dict[str, str] = {}
    for name, spec in SCENARIOS.items():
        for i in range(3):
            stream = f"5:sc:{name}:{i}"
            ctx = Ctx(rng=random.Random(stream), topo=topo, make=EventMaker(stream), start=start,
                      span=end - start, lo_s=spec.span_s[0], hi_s=spec.span_s[1])  # fmt: skip
            for event in spec.build(ctx).events:
                try:
                    if decode_event(encode_event(event)) != event or not start <= event.ts <= end:
                        wrong[name] = repr(event)
                except msgspec.ValidationError as exc:
                    wrong[name] = f"{exc}: {event!r}"
    assert not wrong, wrong
