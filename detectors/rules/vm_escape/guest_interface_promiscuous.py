"""A guest-facing network interface entered promiscuous mode outside its baseline.

Source record: the kernel's ``type=ANOM_PROMISCUOUS`` (``net/core/dev.c``
``__dev_set_promiscuity``: ``dev=%s prom=%d old_prom=%d auid=%u uid=%u gid=%u ses=%u``, where
``prom``/``old_prom`` are ``flags & IFF_PROMISC`` = 256), written only when the flag changes.
It may come alone (``syscall="anom_promiscuous"``, no pid or exe: the record names neither) or
in the group of the syscall that caused it (``ioctl``/``setsockopt``/``sendmsg`` with the setter's
``exe`` and ``pid``); the rule reads ``dev``/``prom``/``old_prom`` from ``extra`` in both cases.

The guest-facing devices are libvirt's and QEMU's tap names (``vnetN``, ``tapN``, ``macvtapN``;
``guest_device_prefixes``). Their baseline: a Linux bridge and Open vSwitch put each port into
promiscuous mode when the port is added (``br_add_if``, OVS ``ovs_netdev_link``), which happens
as a VM starts or an interface is hot-plugged. So an entry into promiscuous mode is expected when
its setter is one of the bridge managers (``bridge_setters``: libvirtd, virtqemud,
virtnetworkd, ovs-vswitchd, NetworkManager, systemd-networkd, qemu-bridge-helper) or a child of a
management daemon (``shared.manager_exes``), and, for a record that does not name its setter, when
libvirt set up a guest interface on that host within ``attach_grace_ms`` before it
(``VIRT_CONTROL op=start`` or ``VIRT_RESOURCE resrc=net``; libvirt ``domain_audit.c``). Anything
else (tcpdump, a script, an emulator's own process) is someone listening to a tenant's traffic:
``setter_score``; a record whose setter is unknown and that follows no libvirt set-up scores
``unknown_setter_score`` (lower: on a host whose libvirt writes no audit records it may be a
VM start). ``allowed_devices`` (names, or prefixes ending in ``*``) excuses interfaces a site
monitors on purpose (an IDS tap).

Known limit: a device already promiscuous (a bridge port) does not change its flag when a
sniffer opens it, so the kernel writes nothing: this rule sees sniffing of unbridged guest taps
(routed, macvtap, ``type='ethernet'``) and ports taken off their bridge.
"""

from __future__ import annotations

from typing import ClassVar, Final

from detectors.base import Batch
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.proctable import EMU, EXE, VM, text_field
from detectors.rule import Hit, HitState, Rule
from detectors.rules.common import vm_or_host
from detectors.rules.vm_escape import EmulatorTable, attribute, escape_labels, observe_with_libvirt
from ingest.schema import Event, ProcessEvent

__all__ = ["GuestInterfacePromiscuous"]

_IFF_PROMISC: Final = 256


def _flag(extra: object, name: str) -> int:
    text = text_field(extra, name)
    return int(text) if text is not None and text.isdigit() and len(text) < 12 else 0


class GuestInterfacePromiscuous(Rule):
    meta = DetectorMeta(
        id="vm_escape.guest_interface_promiscuous",
        version="1.0.0",
        title="Guest interface entered promiscuous mode",
        category="vm_escape",
        score=80,
        severity="high",
        attack=(
            technique("Discovery", "T1040", "Network Sniffing"),
            technique("Credential Access", "T1557", "Adversary-in-the-Middle"),
        ),
        kinds=frozenset({"process"}),
        description="An ANOM_PROMISCUOUS audit record turning promiscuous mode on for a guest-facing tap "
        "(vnet*, tap*, macvtap*) by a process that is not a bridge manager, or with no libvirt interface "
        "set-up just before: someone on the host listening to a tenant's traffic.",
        false_positives=(
            "an operator's packet capture on a guest tap during troubleshooting",
            "a bridge or switch manager not in bridge_setters (add it)",
        ),
        note="Find the capturing process (the syscall record's pid/exe, or ss -p / lsof on the host), and "
        "which VM the tap belongs to (virsh domiflist); a capture from an emulator's process tree is an escape.",
        maturity="incubating",
    )
    learned: ClassVar[tuple[str, ...]] = ("emu",)
    param_spec: ClassVar[ParamSpec] = {
        "guest_device_prefixes": list,
        "bridge_setters": list,
        "attach_grace_ms": int,
        "setter_score": int,
        "unknown_setter_score": int,
        "allowed_devices": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.emu = EmulatorTable(config)
        self.prefixes = tuple(self.params["guest_device_prefixes"])
        self.setters = frozenset(self.params["bridge_setters"])
        self.grace = self.params["attach_grace_ms"]
        self.setter_score = self.params["setter_score"]
        self.unknown_score = self.params["unknown_setter_score"]
        allowed = self.params["allowed_devices"]
        self.allowed_names = frozenset(d for d in allowed if not d.endswith("*"))
        self.allowed_prefixes = tuple(d[:-1] for d in allowed if d.endswith("*"))

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        entry = self.emu.learn_light(ev)
        extra = ev.extra
        if ev.syscall != "anom_promiscuous" and not (isinstance(extra, dict) and "prom" in extra):
            return None
        dev = text_field(extra, "dev")
        if not dev or not dev.startswith(self.prefixes):
            return None
        if not _flag(extra, "prom") & _IFF_PROMISC or _flag(extra, "old_prom") & _IFF_PROMISC:
            return None
        if dev in self.allowed_names or (self.allowed_prefixes and dev.startswith(self.allowed_prefixes)):
            return None
        setter = ev.exe or (entry[EXE] if entry is not None else "")
        if setter:
            if setter in self.setters or ev.parent_exe in self.emu.hv.managers:
                return None
            kind = "setter"
        else:
            h = self.emu.table.host(ev.host)
            if h is not None and 0 <= ev.ts - h.attach_ts <= self.grace:
                return None
            kind = "unknown"
        table_vm = entry[VM] if entry is not None and entry[EMU] else None
        vm, tenant = attribute(self.reg, table_vm, ev) if table_vm else (None, None)
        labels = escape_labels(self.reg, ev.host, vm, "promiscuous_guest_interface", setter or "unknown")
        labels["device"] = dev
        return Hit(vm_or_host(vm, ev.host), tenant, f"{kind} {dev} by {setter or 'unknown process'}", labels)

    def observe_batch(self, batch: Batch) -> None:
        """Fast path of ``match``: learn libvirt's records; only promiscuous-mode records go further."""
        observe_with_libvirt(self, self.emu.table, batch, "anom_promiscuous", "prom")

    def score_for(self, st: HitState) -> int:
        if any(d.startswith("setter ") for d in st.details):
            return self.setter_score
        return self.unknown_score
