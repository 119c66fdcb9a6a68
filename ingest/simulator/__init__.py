"""Seeded, reproducible multi-tenant cloud telemetry with labelled attacks and look-alikes.

Same ``SimConfig`` (seed included) -> byte-identical ``events.jsonl``, ``tenants.yaml`` and
``ground_truth.jsonl``. Usage::

    result = simulate(SimConfig(seed=7, duration_s=600))
    write_files(result, "out/")                    # or: stream_to(result, producer.send, rate_per_s=2000)
    for event in result.events(): ...              # sorted by ts; regenerated per 10 s slice

Event conventions (every event: ``source="sim"``, canonical schema of ``ingest.schema``)
-----------------------------------------------------------------------------------------
Tenants
    id ``t-<slug>`` (e.g. ``t-nordwave``), CIDR ``10.N.0.0/16`` (N = 1..tenants), VPC resolver
    ``10.N.0.2``. VMs ``vm-<slug>-NN`` at ``10.N.1.(9+NN)``; simulator roles (not in the registry):
    01 web, 02 db, last backup, others app. Peerings: about a third of the tenants; shares:
    ``storage/<owner>/<slug>-shared/*`` and ``snapshot/<owner>/<snap-id>`` to some grantee.
Hosts
    ``hv-01``..``hv-NN``, each tenant on two of them, several tenants per host. Management plane
    ``172.31.0.0/16``: host ``mgmt_ip`` = 172.31.0.10 + index, operators' bastion ``172.31.255.10``,
    metrics scraper ``172.31.255.20`` (scrapes ``<mgmt_ip>:9100``). Guests never reach it in
    background traffic.
Flows (``kind=flow``)
    Logged on the VM's side: ``tenant``/``vm``/``host`` are the VM's (the source VM for outbound and
    east-west, the destination VM for inbound). Background: VM->internet 443/80, DNS (udp 53 to the
    tenant resolver or 8.8.8.8/1.1.1.1/9.9.9.9), NTP (udp 123), east-west inside a tenant, peered
    cross-tenant 443/8443 (~20 kB median), internet->web VM 443, single rejected probes from random
    internet addresses, bastion/scraper->host mgmt (``tenant=None``, ``host`` set).
Host processes (``kind=process``)
    Emulator: ``exe=/usr/bin/qemu-system-x86_64``, ``uid=107``, ``pid`` fixed per VM, ``parent_exe``
    ``/usr/sbin/libvirtd`` or ``/usr/sbin/virtqemud`` (one per host), ``host``, ``vm``, ``tenant`` of the
    VM, ``cmdline`` with ``-name guest=<vm>,...`` and ``-drive file=<its disk>,...``. Background
    syscalls: ioctl/open(at)/pread64/pwrite64 of its own disk ``/var/lib/libvirt/images/<vm>.qcow2``,
    ``/dev/kvm``, ``/dev/net/tun``, ``/dev/vhost-net``; futex, ppoll, mmap. The libvirt daemon
    (``uid=0``, ``tenant=None``, ``vm=None``) opens ``/etc/libvirt/qemu/<vm>.xml``, ``/dev/kvm``,
    connects its socket. In-guest process telemetry (only the miner) carries ``extra.scope="guest"``.
Control plane (``kind=audit``)
    ``principal="iam::<tenant>:user/<name>"``, ``tenant=principal_tenant``; resources
    ``storage/<tenant>/<bucket>[/<key>]``, ``snapshot/<tenant>/<snap-id>``, ``image/<tenant>/<img-id>``,
    ``compute/<tenant>/<vm>``; ``resource_tenant`` is the owner. ``src_ip`` is a tenant office address
    or one of its VMs. Share actions (``snapshot.Share``, ``image.Share``, ``snapshot.ModifyAttribute``)
    list the receiving tenant ids in ``extra.grantees`` (as ``ingest.parsers.cloudaudit`` does).
    Background cross-tenant calls are always covered by a registry share.
Logins (``kind=auth``)
    sshd on VMs (``tenant``/``vm``/``host`` of the VM): users ubuntu, deploy and the tenant's people,
    mostly publickey successes; rare single failures. Operators log in to hosts as ``ops-admin``
    from the bastion (``tenant=None``, ``vm=None``).

Scenarios (ground truth ``scenario`` names; ``benign_*`` are look-alikes, ``"benign": true``)
-----------------------------------------------------------------------------------------------
vm_escape (entity vm, or host when no VM is involved)
    shell_spawn (execve /bin/sh|/bin/bash with ``parent_exe`` qemu, then its children),
    host_device_open (/dev/mem, /dev/kmem, /proc/kcore, /dev/sda, /dev/nvme0n1),
    foreign_disk_open (another VM's disk, another tenant's if one shares the host),
    kernel_module (init_module / finit_module), namespace_escape (setns / unshare / mount),
    ptrace (``extra.target_pid`` = another emulator), kvm_device_abuse (non-emulator, non-libvirt
    exe opens /dev/kvm or /dev/vhost-*; entity host, tenant null), mgmt_plane_access (VM ip ->
    172.31.x.x); benign_vm_restart, benign_libvirtd_kvm (host), benign_admin_ssh (host).
cross_tenant_leak (entity source vm, or principal)
    unpeered_flow, foreign_resource_access, share_to_foreign, peer_volume_spike (2,000-20,000x the
    peered baseline); benign_peered_flow, benign_shared_access, benign_registered_share.
port_scan (entity source ip)
    vertical (internet -> hundreds of ports of one VM), horizontal (VM sweeps its own subnet on a
    few ports); benign_admin_scan (own tenant's VMs, ports 22/80/443).
brute_force (entity source ip)
    ssh_password (30-200 failures, sometimes a final success), password_spray (all VMs of a
    tenant); benign_typo (two failures then success from the office).
exfiltration (entity vm)
    bulk_upload (0.1-2 GB flows to one external ip); benign_backup (to the tenant's backup VM).
cryptomining (entity vm)
    pool_mining (periodic flows to a pool on 3333/4444/5555/14444/45700 plus an xmrig execve with a
    ``stratum+tcp://`` cmdline); benign_dev_port (in-tenant service on 4444/5555).
dos
    syn_flood (entity source ip; ~1 s records, packets_out 2k-20k, 40-60 B/packet, no bytes_in,
    ``extra.tcp_flags=2``, the SYN bit as NetFlow reports it); udp_flood (100-300 sources; entity
    is the VICTIM ip); benign_web_peak (150-400 real clients of a web VM; entity is the victim ip).

Ground truth ``tenant`` is the tenant whose telemetry carries the scenario: the VM's or principal's
tenant, the victim's for attacks from the internet, null for host-only scenarios. See ``truth``.
"""

from __future__ import annotations

from ingest.simulator.background import diurnal_factor, mean_rate_slice_start_ms, repeatable_slice
from ingest.simulator.config import DEFAULT_COUNT, DEFAULT_START_MS, SimConfig, parse_scenarios
from ingest.simulator.engine import SimResult, simulate
from ingest.simulator.scenarios import CATEGORIES, SCENARIO_NAMES, SCENARIOS
from ingest.simulator.topology import BASTION_IP, EMULATOR_EXE, MANAGEMENT_CIDR, MONITOR_IP
from ingest.simulator.truth import TruthEntity, TruthRecord, load_ground_truth
from ingest.simulator.writers import WrittenFiles, stream_to, write_files

__all__ = [
    "BASTION_IP",
    "CATEGORIES",
    "DEFAULT_COUNT",
    "DEFAULT_START_MS",
    "EMULATOR_EXE",
    "MANAGEMENT_CIDR",
    "MONITOR_IP",
    "SCENARIOS",
    "SCENARIO_NAMES",
    "SimConfig",
    "SimResult",
    "TruthEntity",
    "TruthRecord",
    "WrittenFiles",
    "diurnal_factor",
    "load_ground_truth",
    "mean_rate_slice_start_ms",
    "parse_scenarios",
    "repeatable_slice",
    "simulate",
    "stream_to",
    "write_files",
]
