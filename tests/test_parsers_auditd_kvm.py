"""The auditd parser keeps what VM-escape signals need (issue 20, item 3): records without a
SYSCALL record (SECCOMP, ANOM_ABEND, ANOM_PROMISCUOUS, AVC, libvirt's VIRT_*) become events with
every field, an AVC inside a syscall group stays on its event, and an emulator's VM comes from the
emulator (command line, libvirt records, sVirt label), on a hand-made KVM host log in the ENRICHED
format (tests/samples/auditd_kvm_host.log)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from ingest.parsers import ListOutput, ParseContext, parse_bytes
from ingest.parsers import auditd as auditd_module
from ingest.parsers.auditd import AuditdParser
from ingest.parsers.auditd_records import (
    MAX_FIELDS,
    MAX_VALUE,
    emulator_vm,
    is_emulator,
    label_key,
    seccomp_action,
)
from ingest.schema import AuthEvent, ProcessEvent, decode_event, encode_event
from ingest.tenants import TenantRegistry
from tests.fuzz.invariants import check_parse

SAMPLES = Path(__file__).parent / "samples"
KVM_LOG = SAMPLES / "auditd_kvm_host.log"


@pytest.fixture(scope="module")
def registry() -> TenantRegistry:
    return TenantRegistry.load(SAMPLES / "tenants.yaml")


def parse(data: bytes, registry: TenantRegistry | None = None) -> ListOutput:
    out = parse_bytes("auditd", data, ParseContext(registry=registry))
    for event in out.events:
        assert decode_event(encode_event(event)) == event
    return out


@pytest.fixture(scope="module")
def kvm(registry) -> ListOutput:
    return parse(KVM_LOG.read_bytes(), registry)


def by_serial(out: ListOutput) -> dict[int, list]:
    found: dict[int, list] = {}
    for event in out.events:
        found.setdefault(event.extra["serial"], []).append(event)
    return found


def one(out: ListOutput, serial: int, syscall: str) -> ProcessEvent:
    (event,) = [e for e in by_serial(out)[serial] if getattr(e, "syscall", None) == syscall]
    return event


def test_every_record_is_an_event_or_folded_into_one(kvm):
    assert kvm.dlqs == []
    lines = [ln for ln in KVM_LOG.read_bytes().splitlines() if ln.strip()]
    assert len(lines) == len(kvm.events) + sum(kvm.skipped.values())
    assert set(kvm.skipped) == {"auditd record folded into its event's group"}
    kinds = Counter(e.syscall for e in kvm.events if isinstance(e, ProcessEvent))
    assert kinds == {
        "virt_machine_id": 3, "virt_resource": 3, "virt_control": 4, "seccomp": 3, "anom_abend": 1,
        "anom_promiscuous": 3, "avc": 1, "bpf": 1, "execve": 1, "openat": 1, "ioctl": 1, "setsockopt": 1,
    }  # fmt: skip
    assert [type(e) for e in kvm.events].count(AuthEvent) == 1
    # nothing is named "no syscall" any more; every standalone record keeps its type
    assert all(e.extra["record_type"] == e.syscall.upper() for e in kvm.events
               if isinstance(e, ProcessEvent) and "record_type" in e.extra)  # fmt: skip


def test_seccomp_kill_of_an_emulator(kvm):
    ev = one(kvm, 7031, "seccomp")
    assert (ev.exe, ev.pid, ev.uid, ev.result, ev.host, ev.vm, ev.tenant) == (
        "/usr/libexec/qemu-kvm", 2001, 107, "failure", "hv-01", "vm-acme-01", "t-acme",
    )  # fmt: skip
    x = ev.extra
    assert (x["sig"], x["syscall"], x["code"], x["action"], x["syscall_name"], x["compat"]) == (
        31, 59, "0x80000000", "kill_process", "execve", 0,
    )  # fmt: skip
    assert (x["arch"], x["ip"], x["comm"], x["subj"]) == (
        "c000003e", "0x7f3a9c2e5d7b", "qemu-kvm", "system_u:system_r:svirt_t:s0:c12,c345",
    )  # fmt: skip
    # ENRICHED's translated fields are kept under their own (upper-case) names
    assert (x["AUID"], x["UID"], x["SYSCALL"], x["ARCH"], x["record_type"]) == (
        "unset", "qemu", "execve", "x86_64", "SECCOMP",
    )  # fmt: skip
    errno = one(kvm, 7032, "seccomp")  # resourcecontrol=deny: an errno, still a refused call
    assert (errno.result, errno.extra["action"], errno.vm) == ("failure", "errno", "vm-beta-01")
    logged = one(kvm, 7033, "seccomp")  # a log-only profile of a container: allowed
    assert (logged.result, logged.extra["action"], logged.vm, logged.tenant) == ("success", "log", None, None)


def test_emulator_crash_keeps_its_vm_after_libvirt_records_the_stop(kvm):
    crash = one(kvm, 7040, "anom_abend")
    assert (crash.exe, crash.pid, crash.extra["sig"], crash.result, crash.vm, crash.tenant) == (
        "/usr/libexec/qemu-kvm", 2101, 11, "success", "vm-beta-01", "t-beta",
    )  # fmt: skip
    stop = one(kvm, 7041, "virt_control")
    assert (stop.extra["op"], stop.extra["reason"], stop.extra["vm-pid"], stop.vm) == (
        "stop", "crashed", 2101, "vm-beta-01",
    )  # fmt: skip


def test_svirt_denial_alone_and_inside_a_syscall_group(kvm):
    alone = one(kvm, 7050, "avc")
    assert (alone.exe, alone.pid, alone.uid, alone.result, alone.path) == (
        "", 2001, None, "failure", "/var/lib/libvirt/images/vm-beta-01.qcow2",
    )  # fmt: skip
    x = alone.extra
    assert (x["decision"], x["denied"], x["perms"], x["tclass"], x["permissive"], x["ino"]) == (
        "denied", True, ["read"], "file", 0, 9911,
    )  # fmt: skip
    assert x["scontext"].endswith("svirt_t:s0:c12,c345") and x["tcontext"].endswith(
        "svirt_image_t:s0:c77,c801"
    )
    # the emulator's VM (its pid, from libvirt's vm-pid=), and the VM whose image label was touched
    assert (alone.vm, alone.tenant, x["target_vm"]) == ("vm-acme-01", "t-acme", "vm-beta-01")

    group = by_serial(kvm)[7051]
    assert [e.syscall for e in group] == ["openat"]  # the AVC is no event of its own here
    (ev,) = group
    assert (ev.result, ev.path, ev.exe) == (
        "failure", "/var/lib/libvirt/images/vm-beta-01.qcow2", "/usr/libexec/qemu-kvm",
    )  # fmt: skip
    # the emulator's VM, not the disk's owner: the foreign-file rule must see acme touching beta
    assert (ev.vm, ev.tenant, ev.host) == ("vm-acme-01", "t-acme", "hv-01")
    avc = ev.extra["avc"]
    assert (avc["perms"], avc["decision"], avc["denied"], avc["name"], avc["dev"], avc["ino"]) == (
        ["read", "write"], "denied", True, "vm-beta-01.qcow2", "dm-0", 9911,
    )  # fmt: skip
    assert (
        avc["tcontext"] == "system_u:object_r:svirt_image_t:s0:c77,c801" and avc["target_vm"] == "vm-beta-01"
    )
    assert ev.extra["subj"] == "system_u:system_r:svirt_t:s0:c12,c345"  # the sVirt label stays


def test_promiscuous_mode_beside_its_syscall_and_alone(kvm):
    sniff = one(kvm, 7060, "anom_promiscuous")
    assert (sniff.exe, sniff.pid, sniff.uid, sniff.cmdline) == (
        "/usr/sbin/tcpdump", 4421, 0, "tcpdump -i vnet3 -w /tmp/v3.pcap",
    )  # fmt: skip
    assert (sniff.extra["dev"], sniff.extra["prom"], sniff.extra["old_prom"], sniff.extra["auid"]) == (
        "vnet3", 256, "0", 1000,
    )  # fmt: skip
    assert one(kvm, 7060, "setsockopt").exe == "/usr/sbin/tcpdump"  # the syscall event stays too
    bridge = one(kvm, 7006, "anom_promiscuous")  # libvirtd adding vnet0 to a bridge (look-alike)
    assert (bridge.exe, bridge.extra["dev"], bridge.vm) == ("/usr/sbin/libvirtd", "vnet0", None)
    alone = one(kvm, 7062, "anom_promiscuous")
    assert (alone.exe, alone.pid, alone.uid, alone.extra["dev"], alone.host) == ("", 0, 0, "vnet5", "hv-01")


def test_libvirt_records_name_their_vm(kvm):
    start = one(kvm, 7008, "virt_control")
    assert (start.exe, start.pid, start.uid, start.vm, start.tenant, start.result) == (
        "/usr/sbin/libvirtd", 1180, 0, "vm-acme-01", "t-acme", "success",
    )  # fmt: skip
    x = start.extra
    assert (x["virt"], x["op"], x["reason"], x["vm-pid"], x["uuid"], x["res"], x["hostname"]) == (
        "kvm", "start", "booted", 2001, "8f1c2a4e-5b6d-4e7f-9a0b-1c2d3e4f5a6b", "success", "?",
    )  # fmt: skip
    assert (x["subj"], x["auid"], x["UID"], x["AUID"]) == (
        "system_u:system_r:virtd_t:s0-s0:c0.c1023", 4294967295, "root", "unset",
    )  # fmt: skip
    label = by_serial(kvm)[7001][0]
    assert (label.extra["vm-ctx"], label.extra["img-ctx"], label.extra["model"]) == (
        "system_u:system_r:svirt_t:s0:c12,c345", "system_u:object_r:svirt_image_t:s0:c12,c345", "selinux",
    )  # fmt: skip
    disk = one(kvm, 7003, "virt_resource")
    assert (disk.extra["resrc"], disk.path, disk.extra["old-disk"]) == (
        "disk", "/var/lib/libvirt/images/vm-acme-01.qcow2", "?",
    )  # fmt: skip
    encoded = one(kvm, 7012, "virt_control")  # virAuditEncode wrote the name in hex
    assert (encoded.vm, encoded.tenant, encoded.extra["vm"]) == ("web 07", None, "web 07")
    execve = one(kvm, 7020, "execve")
    assert (execve.vm, execve.tenant, execve.extra["UID"]) == ("vm-acme-01", "t-acme", "qemu")
    assert "-name guest=vm-acme-01,debug-threads=on" in execve.cmdline


def test_emulator_command_lines_labels_and_seccomp_codes():
    assert emulator_vm("/usr/libexec/qemu-kvm -name guest=vm-1,debug-threads=on -S") == ("vm-1", None)
    assert emulator_vm("qemu-system-x86_64 -name web07 -uuid 1234-ab") == ("web07", "1234-ab")
    assert emulator_vm("qemu-system-x86_64 -name web07,process=qemu:web07") == ("web07", None)
    assert emulator_vm("qemu-system-x86_64 -name guest=a,,b,debug-threads=on") == ("a,b", None)
    assert emulator_vm("qemu-system-x86_64 -m 2048 -name") == (None, None)
    assert [is_emulator(e) for e in ("/usr/libexec/qemu-kvm", "/usr/bin/qemu-system-aarch64",
                                     "/usr/bin/qemu-img", "/usr/sbin/libvirtd", "")] == [True, True, False, False, False]  # fmt: skip
    assert label_key("system_u:system_r:svirt_t:s0:c12,c345") == "svirt_t:s0:c12,c345"
    assert label_key("libvirt-8f1c2a4e") == "libvirt-8f1c2a4e" and label_key("unconfined") is None
    assert [seccomp_action(c) for c in ("0x80000000", "0x0", "0x30000", "0x50001", "0x7ffc0000", "0x7fff0000", "zz")] == [
        "kill_process", "kill_thread", "trap", "errno", "log", "allow", None,
    ]  # fmt: skip


def rec(rtype: str, serial: int, body: str, node: str = "hv-01") -> str:
    return f"node={node} type={rtype} msg=audit(1717000000.000:{serial}): {body}"


QEMU = 'exe="/usr/libexec/qemu-kvm" subj=system_u:system_r:svirt_t:s0:c5,c6'


def test_a_registered_uuid_names_the_vm_when_the_name_is_unknown():
    reg = TenantRegistry.from_dict(
        {"hosts": [{"id": "hv-01"}], "tenants": [
            {"id": "t-os", "vms": [{"id": "0b7f6a5e-1111-4222-8333-944455556666", "host": "hv-01"}]}]}
    )  # fmt: skip
    title = "\x00".join(["/usr/libexec/qemu-kvm", "-name", "guest=instance-0000002a,debug-threads=on",
                         "-uuid", "0b7f6a5e-1111-4222-8333-944455556666"]).encode().hex().upper()  # fmt: skip
    data = "\n".join([
        rec("SYSCALL", 1, f"arch=c000003e syscall=16 success=yes exit=0 pid=3001 ppid=1 uid=107 {QEMU}"),
        rec("PROCTITLE", 1, f"proctitle={title}"),
        rec("EOE", 1, ""),
    ]).encode()  # fmt: skip
    (ev,) = parse(data, reg).events
    assert (ev.vm, ev.tenant, ev.host) == ("0b7f6a5e-1111-4222-8333-944455556666", "t-os", "hv-01")


def test_emulator_pids_are_learned_per_node_and_only_for_emulators():
    title = "\x00".join(["qemu-system-x86_64", "-name", "guest=vm-x"]).encode().hex().upper()
    data = "\n".join([
        rec("SYSCALL", 1, f"arch=c000003e syscall=59 success=yes exit=0 pid=3001 ppid=1 uid=107 {QEMU}"),
        rec("PROCTITLE", 1, f"proctitle={title}"),
        rec("EOE", 1, ""),
        rec("ANOM_ABEND", 2, f"auid=4294967295 uid=107 gid=107 ses=4294967295 pid=3001 comm=\"qemu-kvm\" {QEMU} sig=6 res=1"),
        rec("ANOM_ABEND", 3, f"auid=4294967295 uid=107 gid=107 ses=4294967295 pid=3001 comm=\"qemu-kvm\" {QEMU} sig=6 res=1", node="hv-02"),
        # the same pid reused by another program is not the emulator
        rec("ANOM_ABEND", 4, 'auid=0 uid=0 gid=0 ses=1 pid=3001 comm="bash" exe="/usr/bin/bash" sig=11 res=1'),
    ]).encode()  # fmt: skip
    events = {e.extra["serial"]: e for e in parse(data).events}
    assert events[1].vm == "vm-x" and events[2].vm == "vm-x"
    assert events[3].vm is None and events[4].vm is None


def test_learned_tables_are_bounded(monkeypatch):
    monkeypatch.setattr(auditd_module, "_MAX_LEARNED", 16)
    out = ListOutput()
    parser = AuditdParser(out)
    lines = [
        rec("VIRT_CONTROL", n, f"pid=1 uid=0 auid=4294967295 ses=4294967295 msg='virt=kvm op=start "
            f"reason=booted vm=\"vm-{n}\" uuid=u-{n} vm-pid={1000 + n} exe=\"/usr/sbin/libvirtd\" "
            f"hostname=? addr=? terminal=? res=success'")
        for n in range(100)
    ]  # fmt: skip
    parser.feed_lines(line.encode() for line in lines)
    parser.close()
    assert len(out.events) == 100 and len(parser._emulator_pids) <= 16
    assert len(parser.pending) == 0  # user-space records are finished as they come


def test_hostile_records_are_bounded_and_accounted():
    many = " ".join(f"f{i}={i}" for i in range(300))
    data = "\n".join([
        rec("SECCOMP", 1, f'pid=7 uid=0 exe="/x" sig=31 syscall=59 arch=c000003e code=0x80000000 big="{"A" * 5000}" {many}'),
        rec("SECCOMP", 2, 'pid=abc uid=0 exe="/x" sig=31 syscall=59 code=0x80000000'),
        rec("AVC", 3, "avc:  denied  { read for  pid=9 scontext=a:b:c:s0 tcontext=a:b:d:s0 tclass=file"),
        rec("EOE", 4, ""),
        rec("PROCTITLE", 5, "proctitle=2F62696E2F7368"),
        rec("ANOM_ABEND", 6, "pid=8 uid=abc sig=11"),
        rec("AVC", 7, "avc:  denied  { " + "read " * 100 + "} for pid=9 tclass=file"),
        rec("SECCOMP", 8, "pid=7 uid=0 syscall=99999999999999999999 code=0x80000000"),
    ]).encode()  # fmt: skip
    out = parse(data)
    events = {e.extra["serial"]: e for e in out.events if isinstance(e, ProcessEvent)}
    big = events[1]
    assert len(big.extra) <= MAX_FIELDS + 8 and big.extra["fields_dropped"] > 0
    assert len(big.extra["big"]) == MAX_VALUE and big.extra["values_clipped"] == 1
    assert events[3].syscall == "avc" and "perms" not in events[3].extra and events[3].result == "success"
    assert events[5].syscall == "proctitle" and events[5].cmdline == "/bin/sh"  # SYSCALL lost: kept
    assert len(events[7].extra["perms"]) == 32
    assert "syscall_name" not in events[8].extra
    assert [(d.line, d.reason) for d in out.dlqs] == [
        (2, "auditd SECCOMP: bad pid 'abc'"), (6, "auditd ANOM_ABEND: bad uid 'abc'"),
    ]  # fmt: skip
    assert out.skipped == {"auditd EOE record without its event's records": 1}
    assert len(out.events) + len(out.dlqs) + sum(out.skipped.values()) == 8
    check_parse("auditd", data)


def test_the_kvm_log_keeps_the_parser_invariants_when_cut_and_shuffled():
    lines = KVM_LOG.read_bytes().splitlines()
    rng = random.Random(20)
    check_parse("auditd", KVM_LOG.read_bytes())
    for _ in range(30):
        sample = rng.sample(lines, rng.randint(1, len(lines)))
        cut = [ln[: rng.randint(0, len(ln))] if rng.random() < 0.2 else ln for ln in sample]
        check_parse("auditd", b"\n".join(cut) + b"\n")
