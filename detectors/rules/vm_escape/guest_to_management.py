"""A guest sends traffic to the hypervisor management plane."""

from __future__ import annotations

from typing import ClassVar

from detectors.base import MANAGEMENT, Batch
from detectors.config import DetectorConfig, ParamSpec
from detectors.flowdir import flow_view, is_response
from detectors.meta import DetectorMeta, technique
from detectors.rule import Hit, HitState, Rule
from detectors.rules.common import source_entity
from detectors.rules.vm_escape import escape_labels
from ingest.schema import Event, FlowEvent

__all__ = ["GuestToManagement"]


class GuestToManagement(Rule):
    meta = DetectorMeta(
        id="vm_escape.guest_to_management",
        version="1.0.0",
        title="Guest reached the management plane",
        category="vm_escape",
        score=80,
        severity="high",
        attack=(
            technique("Privilege Escalation", "T1611", "Escape to Host"),
            technique("Lateral Movement", "T1210", "Exploitation of Remote Services"),
        ),
        kinds=frozenset({"flow"}),
        description="A flow from a tenant address to the management network (registry management_cidrs "
        "or a host's mgmt_ip): guests must never reach libvirt, SSH or BMC services of the hypervisors.",
        false_positives=(
            "a service a provider deliberately exposes to guests on the management range (metadata, "
            "DHCP relay): list its ports in params.allowed_ports",
        ),
        note="Accepted flows mean the isolation between guest and management networks is broken: check "
        "the host firewall and the VM's network attachment; rejected ones show intent. Ports 16509/16514 "
        "are libvirt, 22 SSH, 5900 VNC.",
        maturity="stable",
    )
    param_spec: ClassVar[ParamSpec] = {"allowed_ports": list}

    def configure(self, config: DetectorConfig) -> None:
        self.allowed_ports = frozenset(self.params["allowed_ports"])

    def match(self, event: Event) -> Hit | None:
        ev: FlowEvent = event  # type: ignore[assignment]
        if is_response(flow_view(ev)):  # a guest answering the management plane's own request
            return None
        return self._match(ev)

    def _match(self, ev: FlowEvent) -> Hit | None:
        """``match`` of a record known not to be a response."""
        reg = self.reg
        if not reg.is_management_ip(ev.dst_ip) or ev.dst_port in self.allowed_ports:
            return None
        if reg.tenant_of_ip(ev.src_ip) is None and reg.vm_of_ip(ev.src_ip) is None:
            return None
        entity = source_entity(reg, ev.src_ip)
        vm = entity.id if entity.type == "vm" else ev.vm
        # A flow names no process: these alerts carry no emulator.
        labels = escape_labels(reg, ev.host, vm, f"management_plane_{ev.action}")
        return Hit(entity, ev.tenant, f"{ev.action} {ev.dst_ip}:{ev.dst_port}", labels)

    def observe_batch(self, batch: Batch) -> None:
        """Fast path of ``match``: only flows into the management plane go further."""
        batch = batch.initiated()  # the same test as match's, once per batch
        events = batch.flows
        for ev, dst_t in zip(events, batch.dst_tenants, strict=True):
            if dst_t is MANAGEMENT or dst_t == MANAGEMENT:
                try:
                    hit = self._match(ev)
                    if hit is not None:
                        self.record(ev, hit)
                except Exception as exc:
                    self.error(ev, exc)

    def score_for(self, st: HitState) -> int:
        return 85 if any(d.startswith("accept") for d in st.details) else self.meta.score
