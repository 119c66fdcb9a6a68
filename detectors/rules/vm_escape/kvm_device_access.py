"""A process that is neither an emulator nor a virtualization manager opens /dev/kvm or /dev/vhost-*."""

from __future__ import annotations

from typing import ClassVar

from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, Rule
from detectors.rules.common import Hypervisor, vm_or_host
from detectors.rules.vm_escape import escape_labels
from ingest.schema import Event, ProcessEvent

__all__ = ["KvmDeviceAccess"]


class KvmDeviceAccess(Rule):
    meta = DetectorMeta(
        id="vm_escape.kvm_device_access",
        version="1.0.0",
        title="Unexpected process opened a KVM device",
        category="vm_escape",
        score=78,
        severity="high",
        attack=(technique("Privilege Escalation", "T1611", "Escape to Host"),),
        kinds=frozenset({"process"}),
        description="/dev/kvm and /dev/vhost-* give direct access to the hypervisor's virtualization "
        "interfaces; only emulators and the management daemons (shared.manager_exes) should open them.",
        false_positives=(
            "other hypervisor tooling (firecracker, crosvm, kvmtool) a site runs on purpose: add it to "
            "params.allowed_exes",
            "hardware inventory agents probing /dev/kvm",
        ),
        note="Identify the executable (evidence details) and its parent; a binary under /tmp or /dev/shm "
        "is hostile. Check for new VMs or vhost devices created on the host.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {"devices": list, "device_prefixes": list, "allowed_exes": list}

    def configure(self, config: DetectorConfig) -> None:
        hv = Hypervisor(config)
        self.devices = frozenset(self.params["devices"])
        self.prefixes = tuple(self.params["device_prefixes"])
        self.expected = hv.emulators | hv.managers | frozenset(self.params["allowed_exes"])

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        path = ev.path
        if path is None or ev.exe in self.expected:
            return None
        if path in self.devices:
            signal = "kvm_device_open"
        elif path.startswith(self.prefixes):
            signal = "vhost_device_open"  # the default prefix is /dev/vhost-
        else:
            return None
        # The process that opened the device acts as an emulator would: it is the one to name.
        labels = escape_labels(self.reg, ev.host, ev.vm, signal, ev.exe)
        return Hit(vm_or_host(ev.vm, ev.host), ev.tenant, f"{ev.exe} {ev.syscall} {path}", labels)
