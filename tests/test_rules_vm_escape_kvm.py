"""VM-escape rules on what real KVM hosts emit (issue 20, item 3): the process table, the SECCOMP,
ANOM_ABEND, AVC (sVirt) and ANOM_PROMISCUOUS rules, and the emulator rules' attribution to the
emulator's own VM. Events are built as the auditd parser's contract describes them."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from detectors.alert import Alert
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.proctable import EMU, EXE, MGR, VM, ProcTable, guest_name, mcs_categories
from detectors.registry import all_detectors
from detectors.samples import SAMPLE_START_MS, samples_registry
from ingest.parsers import ParseContext, parse_bytes
from ingest.schema import ProcessEvent
from ingest.tenants import TenantRegistry

REG = samples_registry()
QEMU = "/usr/libexec/qemu-kvm"
LIBVIRTD = "/usr/sbin/libvirtd"
IMG = "/var/lib/libvirt/images/"
SUBJ_A = "system_u:system_r:svirt_t:s0:c12,c345"
IMG_A = "system_u:object_r:svirt_image_t:s0:c12,c345"
IMG_B = "system_u:object_r:svirt_image_t:s0:c99,c700"
CMD_A = f"{QEMU} -name guest=vm-acme-01,debug-threads=on -drive file={IMG}vm-acme-01.qcow2,format=qcow2"
_n = 0


def ev(exe: str, syscall: str, pid: int = 0, ppid: int = 0, t: int = 0, **kw: Any) -> ProcessEvent:
    global _n
    _n += 1
    kw.setdefault("host", "hv-01")
    return ProcessEvent(id=f"kvm-{_n}", ts=SAMPLE_START_MS + t, source="auditd", exe=exe, syscall=syscall,
                        pid=pid, ppid=ppid, **kw)  # fmt: skip


def run(
    events: list[ProcessEvent], registry: TenantRegistry = REG, overrides: dict[str, Any] | None = None
) -> list[Alert]:
    config = DetectorConfig.default().merged(overrides) if overrides else DetectorConfig.default()
    ctx = DetectionContext(registry, config=config)
    dets = [d for d in all_detectors(ctx.config) if d.meta.id.startswith("vm_escape.")]
    return DetectionEngine(dets, ctx, strict=True).run(events)


def fired(alerts: list[Alert]) -> dict[str, Alert]:
    return {a.detector.removeprefix("vm_escape."): a for a in alerts}


def table(max_pids: int = 100) -> ProcTable:
    return ProcTable(frozenset({QEMU}), frozenset({LIBVIRTD}), max_pids=max_pids, max_hosts=4)


# --- the process table ------------------------------------------------------------------------
def test_guest_name_and_mcs_categories_read_the_real_formats() -> None:
    assert guest_name(CMD_A) == "vm-acme-01"
    assert guest_name(f"{QEMU} -name vm7 -m 1024") == "vm7"
    assert guest_name(f"{QEMU} -name process=qemu-x -m 1") is None
    assert guest_name(f"{QEMU} -m 1024") is None
    assert mcs_categories(SUBJ_A) == {12, 345}
    assert mcs_categories("system_u:system_r:svirt_t:s0-s0:c0.c3") == {0, 1, 2, 3}
    assert mcs_categories("system_u:object_r:svirt_image_t:s0") == frozenset()
    assert mcs_categories("svirt_t") is None and mcs_categories("u:r:t:s0:cX") is None


def test_descendants_of_an_emulator_whose_execve_predates_the_log_belong_to_its_vm() -> None:
    t = table()
    t.learn(ev(QEMU, "ioctl", 4101, 1, cmdline=CMD_A))
    sh = t.learn(ev("/bin/bash", "execve", 500, 4101))
    cat = t.learn(ev("/usr/bin/cat", "openat", 501, 500, vm="vm-beta-01", path=IMG + "vm-beta-01.qcow2"))
    assert sh is not None and cat is not None
    assert (sh[EMU], sh[VM], cat[EMU], cat[VM]) == (4101, "vm-acme-01", 4101, "vm-acme-01")
    assert t.vm_disks("hv-01", "vm-acme-01") == {IMG + "vm-acme-01.qcow2"}


def test_libvirt_records_name_the_emulator_and_its_label() -> None:
    t = table()
    t.learn(ev(LIBVIRTD, "virt_control", 900, 1, extra={"op": "start", "vm": '"vm-acme-02"', "vm-pid": 4102}))
    t.learn(
        ev(
            LIBVIRTD,
            "virt_machine_id",
            900,
            1,
            extra={"vm": "vm-beta-01", "vm-ctx": SUBJ_A, "img-ctx": IMG_A},
        )
    )
    child = t.learn(ev("/bin/sh", "execve", 600, 4102))
    assert child is not None and (child[EMU], child[VM]) == (4102, "vm-acme-02")
    labelled = t.learn(ev("", "avc", 4999, extra={"subj": SUBJ_A}))
    assert labelled is not None and labelled[VM] == "vm-beta-01"
    t.learn(ev(LIBVIRTD, "virt_control", 900, 1, extra={"op": "stop", "vm": "vm-acme-02", "vm-pid": "4102"}))
    host = t.host("hv-01")
    assert host is not None and 4102 not in host


def test_operator_jobs_under_libvirtd_are_marked_and_not_emulator_descendants() -> None:
    t = table()
    t.learn(ev(LIBVIRTD, "clone", 900, 1))
    img = t.learn(ev("/usr/bin/qemu-img", "execve", 700, 900))
    dd = t.learn(ev("/usr/bin/dd", "openat", 701, 700))
    assert img is not None and dd is not None
    assert (img[EMU], img[MGR], dd[EMU], dd[MGR]) == (0, True, 0, True)


def test_table_is_bounded_ages_out_exits_detects_pid_reuse_and_pickles() -> None:
    t = table(max_pids=50)
    t.learn(ev(QEMU, "ioctl", 4101, 1, cmdline=CMD_A))
    for pid in range(10_000, 10_200):
        t.learn(ev("/usr/bin/true", "execve", pid, 1))
        t.learn(ev(QEMU, "ioctl", 4101, 1))  # the emulator keeps writing: it stays (least recently seen goes)
    host = t.host("hv-01")
    assert host is not None and len(host) <= 50 and 4101 in host
    t.learn(ev("/usr/bin/true", "exit_group", 10_199, 1))
    assert 10_199 not in host
    t.learn(ev("/bin/sh", "execve", 800, 4101))
    reused = t.learn(ev("/usr/bin/rsync", "execve", 800, 2201))  # same pid, another parent: a new process
    assert reused is not None and (reused[EXE], reused[EMU]) == ("/usr/bin/rsync", 0)
    clone = pickle.loads(pickle.dumps(t))
    assert clone.size() == t.size() and clone.host("hv-01").get(4101)[VM] == "vm-acme-01"


# --- the rules ----------------------------------------------------------------------------------
def test_seccomp_scores_follow_the_filter_action() -> None:
    def one(code: str, number: int) -> list[Alert]:
        return run([ev(QEMU, "seccomp", 4101, vm="vm-acme-01", extra={"code": code, "syscall": number, "sig": 31,
                                                                     "arch": "c000003e", "subj": SUBJ_A})])  # fmt: skip

    assert fired(one("0x80000000", 59))["emulator_seccomp_violation"].score == 95  # kill_process execve
    assert fired(one("0x00030000", 59))["emulator_seccomp_violation"].score == 95  # trap
    assert fired(one("0x50001", 105))["emulator_seccomp_violation"].score == 80  # errno setuid
    assert fired(one("0x7ffc0000", 105))["emulator_seccomp_violation"].score == 70  # log
    assert "emulator_seccomp_violation" not in fired(one("0x50026", 435))  # clone3 -> ENOSYS by design


def test_crash_scores_below_a_seccomp_kill_and_repeats_score_higher() -> None:
    crash = ev(QEMU, "anom_abend", 4101, vm="vm-acme-01", extra={"sig": 11})
    single = fired(run([crash]))["emulator_crash"]
    again = fired(run([crash, ev(QEMU, "anom_abend", 4177, t=20_000, vm="vm-acme-01", extra={"sig": "6"})]))
    assert single.score == 70 < 95 and again["emulator_crash"].score == 80
    assert run([ev("/usr/bin/qemu-img", "anom_abend", 7001, extra={"sig": 11})]) == []


def test_svirt_denial_needs_categories_the_subject_does_not_hold() -> None:
    def avc(scontext: str, tcontext: str, permissive: int = 0) -> list[Alert]:
        return run([ev("", "avc", 4101, result="failure", extra={
            "scontext": scontext, "tcontext": tcontext, "tclass": "file", "perms": ["read"],
            "seresult": "denied", "permissive": permissive, "name": "x.qcow2"})])  # fmt: skip

    assert fired(avc(SUBJ_A, IMG_B))["svirt_cross_vm_access"].score == 88
    assert fired(avc(SUBJ_A, IMG_B, permissive=1))["svirt_cross_vm_access"].score == 95
    assert avc(SUBJ_A, IMG_A) == []  # its own image
    assert avc("system_u:system_r:svirt_t:s0-s0:c0.c1023", IMG_B) == []  # a range that dominates: not MCS
    assert avc(SUBJ_A, "system_u:object_r:svirt_image_t:s0:c12") == []  # a subset of its own pair


def test_promiscuous_after_libvirt_set_up_is_baseline_and_later_is_not() -> None:
    start = ev(
        LIBVIRTD, "virt_resource", 900, 1, extra={"resrc": "net", "reason": "start", "vm": "vm-acme-01"}
    )

    def prom(t: int) -> ProcessEvent:
        return ev("", "anom_promiscuous", t=t, extra={"dev": "vnet0", "prom": 256, "old_prom": 0})

    assert run([start, prom(50)]) == []
    late = fired(run([start, prom(35_000)]))["guest_interface_promiscuous"]
    assert late.score == 55 and late.evidence["device"] == "vnet0"
    allow = {
        "detectors": {"vm_escape.guest_interface_promiscuous": {"params": {"allowed_devices": ["vnet*"]}}}
    }
    assert run([prom(10)], overrides=allow) == []


def test_a_shell_under_an_emulator_started_before_the_log_is_the_emulators_vm_and_tenant() -> None:
    """The campaign of issue 20: qemu's execve is not in the log; its shell reads another tenant's
    disk, which a parser attributing by path gave to the victim."""
    events = [
        ev(QEMU, "ppoll", 4101, 1, cmdline=CMD_A),
        ev("/bin/sh", "execve", 500, 4101, cmdline="sh -c 'cat /var/lib/libvirt/images/vm-beta-01.qcow2'"),
        ev(
            "/usr/bin/cat",
            "openat",
            501,
            500,
            t=10,
            vm="vm-beta-01",
            tenant="t-beta",
            path=IMG + "vm-beta-01.qcow2",
        ),
    ]
    got = fired(run(events))
    assert set(got) == {"emulator_child_process", "emulator_foreign_file"}
    for alert in got.values():
        assert (alert.entity.id, alert.tenant, alert.evidence["vm"]) == ("vm-acme-01", "t-acme", "vm-acme-01")
        assert alert.evidence["emulator"] == QEMU


def test_overlays_named_after_the_vm_pass_but_a_longer_vm_name_is_not_its_own() -> None:
    reg = TenantRegistry.from_dict({"tenants": [
        {"id": "t-a", "vms": [{"id": "db", "host": "hv-01", "disk": IMG + "db.qcow2"},
                              {"id": "db-prod", "host": "hv-01", "disk": IMG + "db-prod.qcow2"}]}]})  # fmt: skip
    cmd = f"{QEMU} -name guest=db -drive file={IMG}db.qcow2,format=qcow2"

    def opens(path: str) -> list[Alert]:
        return run([ev(QEMU, "openat", 4101, 1, cmdline=cmd, path=path)], registry=reg)

    assert opens(IMG + "db-snap1.qcow2") == [] and opens(IMG + "db.1736150400") == []
    foreign = opens(IMG + "db-prod-snap1.qcow2")
    assert [a.evidence["signal"] for a in foreign] == ["foreign_vm_disk"]
    assert opens(IMG + "unknown.qcow2")[0].evidence["signal"] == "unregistered_image"


def test_any_chunking_gives_the_same_alerts() -> None:
    events = [
        ev(
            LIBVIRTD,
            "virt_machine_id",
            900,
            1,
            extra={"vm": "vm-acme-01", "vm-ctx": SUBJ_A, "img-ctx": IMG_A},
        ),
        ev(QEMU, "ioctl", 4101, 1, t=5, cmdline=CMD_A),
        ev("/bin/sh", "execve", 500, 4101, t=10),
        ev("", "seccomp", 4101, t=20, extra={"code": "0x80000000", "syscall": 59, "subj": SUBJ_A}),
        ev(
            "",
            "avc",
            4101,
            t=30,
            extra={"scontext": SUBJ_A, "tcontext": IMG_B, "tclass": "file", "perms": ["read"]},
        ),
    ]
    ctx = DetectionContext(REG)
    whole = DetectionEngine(all_detectors(ctx.config), ctx, strict=True).run(events)
    pieces = DetectionEngine(all_detectors(ctx.config), ctx, strict=True)
    split = [a for e in events for a in pieces.process([e])] + pieces.flush()
    assert sorted(a.alert_id for a in whole) == sorted(a.alert_id for a in split)
    assert {a.detector for a in whole} >= {
        "vm_escape.emulator_child_process",
        "vm_escape.emulator_seccomp_violation",
        "vm_escape.svirt_cross_vm_access",
    }


SAMPLES = sorted((Path(__file__).parent / "samples").glob("auditd_kvm_*.log"))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_parser_kvm_samples_reach_the_rules(sample: Path) -> None:
    """The auditd parser's raw KVM sample, through the parser and every VM-escape rule: each new
    signal it carries raises its rule, attributed to the emulator's VM."""
    reg = TenantRegistry.load(sample.parent / "tenants.yaml")
    out = parse_bytes("auditd", sample.read_bytes(), ParseContext(registry=reg))
    events = sorted((e for e in out.events if isinstance(e, ProcessEvent)), key=lambda e: (e.ts, e.id))
    got = {(a.detector.removeprefix("vm_escape."), a.entity.id) for a in run(events, registry=reg)}
    assert {
        ("emulator_seccomp_violation", "vm-acme-01"), ("emulator_crash", "vm-beta-01"),
        ("svirt_cross_vm_access", "vm-acme-01"), ("emulator_foreign_file", "vm-acme-01"),
    } <= got  # fmt: skip
    assert ("guest_interface_promiscuous", "hv-01") in got
