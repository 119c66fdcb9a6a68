"""A miner starts: stratum URL on the command line or a known miner executable."""

from __future__ import annotations

from typing import ClassVar

from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, Rule
from detectors.rules.common import vm_or_host
from ingest.schema import Event, ProcessEvent

__all__ = ["MinerProcess"]


class MinerProcess(Rule):
    meta = DetectorMeta(
        id="cryptomining.miner_process",
        version="1.0.0",
        title="Cryptocurrency miner started",
        category="cryptomining",
        score=72,
        severity="high",
        attack=(technique("Impact", "T1496", "Resource Hijacking"),),
        kinds=frozenset({"process"}),
        description="An exec whose command line carries a stratum pool URL (params.cmdline_markers) or "
        "whose executable name is a known miner (params.miner_names).",
        false_positives=("sanctioned mining or benchmarking (params.allowed_exes)",),
        note="Kill the process, find how it got there (parent, cron, recent logins), and block the pool "
        "named in the command line.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {
        "exec_syscalls": list,
        "cmdline_markers": list,
        "miner_names": list,
        "allowed_exes": list,
    }

    def configure(self, config: DetectorConfig) -> None:
        self.exec_calls = frozenset(self.params["exec_syscalls"])
        self.markers = tuple(str(m).lower() for m in self.params["cmdline_markers"])
        self.names = frozenset(self.params["miner_names"])
        self.allowed = frozenset(self.params["allowed_exes"])

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        if ev.syscall not in self.exec_calls or ev.exe in self.allowed:
            return None
        name = ev.exe.rsplit("/", 1)[-1]
        if name in self.names:
            return Hit(vm_or_host(ev.vm, ev.host), ev.tenant, f"miner {ev.exe}")
        cmd = ev.cmdline.lower()
        for marker in self.markers:
            if marker in cmd:
                return Hit(vm_or_host(ev.vm, ev.host), ev.tenant, f"{marker} in {ev.exe}")
        return None
