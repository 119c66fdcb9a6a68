"""The detector registry: a function that returns detectors, never a table filled on import.

``detector_classes()`` lists every rule class; ``all_detectors(config)`` builds fresh, enabled
instances (each engine owns its detectors' state). Anomaly detectors join when their config entry
is enabled (the default: they learn from the stream, see ``detectors.anomaly``).
"""

from __future__ import annotations

from collections.abc import Iterable

from detectors.base import Detector
from detectors.config import DetectorConfig

__all__ = ["ANOMALY_IDS", "all_detectors", "anomaly_detector_classes", "detector_classes", "group_by_window"]


ANOMALY_IDS = ("anomaly.flow_features", "anomaly.process_activity")


def detector_classes() -> list[type[Detector]]:
    """Every rule detector class (imported here, inside the function, so nothing runs at import)."""
    from detectors.rules.brute_force.auth_failures import AuthFailures
    from detectors.rules.brute_force.flow_guessing import FlowGuessing
    from detectors.rules.c2.beacon import C2Beacon
    from detectors.rules.cross_tenant.foreign_resource_access import ForeignResourceAccess
    from detectors.rules.cross_tenant.foreign_transfer_volume import ForeignTransferVolume
    from detectors.rules.cross_tenant.resource_shared_out import ResourceSharedOut
    from detectors.rules.cross_tenant.unpeered_flow import UnpeeredFlow
    from detectors.rules.cryptomining.miner_process import MinerProcess
    from detectors.rules.cryptomining.mining_pool_connection import MiningPoolConnection
    from detectors.rules.dos.app_flood import AppFlood
    from detectors.rules.dos.distributed_flood import DistributedFlood
    from detectors.rules.dos.reflector import Reflector
    from detectors.rules.dos.slow_connections import SlowConnections
    from detectors.rules.dos.source_flood import SourceFlood
    from detectors.rules.exfiltration.external_upload import ExternalUpload
    from detectors.rules.port_scan.failed_probe_scan import FailedProbeScan
    from detectors.rules.port_scan.internet_probes import InternetProbes
    from detectors.rules.spam.smtp_spam import SmtpSpam
    from detectors.rules.vm_escape.emulator_child_process import EmulatorChildProcess
    from detectors.rules.vm_escape.emulator_crash import EmulatorCrash
    from detectors.rules.vm_escape.emulator_foreign_file import EmulatorForeignFile
    from detectors.rules.vm_escape.emulator_privileged_syscall import EmulatorPrivilegedSyscall
    from detectors.rules.vm_escape.emulator_seccomp_violation import EmulatorSeccompViolation
    from detectors.rules.vm_escape.guest_interface_promiscuous import GuestInterfacePromiscuous
    from detectors.rules.vm_escape.guest_to_management import GuestToManagement
    from detectors.rules.vm_escape.kvm_device_access import KvmDeviceAccess
    from detectors.rules.vm_escape.svirt_cross_vm_access import SvirtCrossVmAccess

    return [
        EmulatorChildProcess,
        EmulatorForeignFile,
        EmulatorPrivilegedSyscall,
        KvmDeviceAccess,
        GuestToManagement,
        EmulatorSeccompViolation,
        EmulatorCrash,
        SvirtCrossVmAccess,
        GuestInterfacePromiscuous,
        UnpeeredFlow,
        ForeignResourceAccess,
        ResourceSharedOut,
        ForeignTransferVolume,
        FailedProbeScan,
        InternetProbes,
        AuthFailures,
        FlowGuessing,
        ExternalUpload,
        MiningPoolConnection,
        MinerProcess,
        SourceFlood,
        DistributedFlood,
        Reflector,
        AppFlood,
        SlowConnections,
        C2Beacon,
        SmtpSpam,
    ]


def anomaly_detector_classes() -> list[type[Detector]]:
    from detectors.anomaly.detectors import FlowAnomaly, ProcessAnomaly

    return [FlowAnomaly, ProcessAnomaly]


def all_detectors(config: DetectorConfig | None = None, *, include_anomaly: bool = True) -> list[Detector]:
    """Fresh instances of every enabled detector for ``config`` (default: the shipped default).

    Anomaly detectors are included when enabled in the config (the default; ``include_anomaly=False``
    leaves them out). With ``shared.models_dir`` set, their fitted models seed the learned baselines
    and a missing model file raises ``ConfigError`` naming it."""
    cfg = config if config is not None else DetectorConfig.default()
    classes = list(detector_classes())
    if include_anomaly and any(cfg.detectors.get(i, {}).get("enabled", False) for i in ANOMALY_IDS):
        classes += anomaly_detector_classes()
    out = []
    for cls in classes:
        det = cls(cfg)
        if det.enabled:
            out.append(det)
    return out


def group_by_window(detectors: Iterable[Detector]) -> dict[int, list[Detector]]:
    """Detectors grouped by window size (ms), for a job that runs one batch size per group."""
    groups: dict[int, list[Detector]] = {}
    for d in detectors:
        groups.setdefault(d.window.size_ms, []).append(d)
    return dict(sorted(groups.items()))
