"""One VM's emulator touched another VM's image, and sVirt (SELinux MCS) said no.

sVirt (libvirt's SELinux driver, ``src/security/security_selinux.c``; Red Hat "Virtualization
Security Guide: sVirt"; libvirt "drvqemu" docs on SELinux confinement) runs each VM's emulator as
``svirt_t`` (``svirt_tcg_t`` without KVM) with a random MCS category pair, ``s0:c12,c345``, and
labels that VM's images ``svirt_image_t`` with the same pair. The MCS constraint lets a subject
reach an object only when the subject's categories dominate the object's: an emulator can open
its own images and shared ones (``svirt_image_t:s0``, no category), never another VM's. So an
``AVC`` whose source is an sVirt domain and whose target is an sVirt image with categories the
subject does not hold is one VM's emulator reaching for another VM's disk: a compromised qemu,
or a host-level mistake that put another tenant's image within its reach.

Source record: ``type=AVC ... avc: denied { read write } for pid= comm= name= dev= ino=
scontext=system_u:system_r:svirt_t:s0:c12,c345 tcontext=system_u:object_r:svirt_image_t:s0:c99,c700
tclass=file permissive=0`` (format: setroubleshoot ``audit_notes.txt``, Linux audit field
dictionary). The parser gives it either alone (``syscall="avc"``, fields in ``extra``) or inside
the syscall's event (``extra["avc"]``: ``scontext``, ``tcontext``, ``tclass``, ``perms``,
``denied``/``granted``, ``path``, ``name``). ``permissive=1`` means the denial was only logged and
the access happened (``permissive_score``); an enforced denial scores ``denied_score``. Granted
records (``auditallow``) are not denials and are left alone.

Not this rule's: type-enforcement denials on unlabelled images (``virt_image_t``, a relabel that
did not happen), an emulator denied on its own images (same pair: TE, not MCS), shared images
(``s0``), and non-sVirt subjects (``virtqemud_t``, ``unconfined_t``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from detectors.base import Batch
from detectors.config import DetectorConfig, ParamSpec
from detectors.meta import DetectorMeta, technique
from detectors.proctable import EXE, context_type, mcs_categories, text_field
from detectors.rule import Hit, HitState, Rule
from detectors.rules.common import vm_or_host
from detectors.rules.vm_escape import EmulatorTable, attribute, escape_labels, observe_with_libvirt
from ingest.schema import Event, ProcessEvent

__all__ = ["SvirtCrossVmAccess"]


def avc_fields(ev: ProcessEvent) -> dict[str, Any] | None:
    """The AVC of an event: the record itself (``syscall="avc"``) or the syscall's ``extra["avc"]``."""
    extra = ev.extra
    if not isinstance(extra, dict):
        return None
    if ev.syscall == "avc":
        return extra
    avc = extra.get("avc")
    return avc if isinstance(avc, dict) else None


def _granted(avc: dict[str, Any]) -> bool:
    if text_field(avc, "seresult") == "granted":
        return True
    granted = avc.get("granted")
    return bool(granted) and not avc.get("denied")


def _perms(avc: dict[str, Any]) -> str:
    perms = avc.get("perms", avc.get("seperms"))
    if isinstance(perms, list | tuple):
        return ",".join(str(p) for p in perms[:8])
    return str(perms) if isinstance(perms, str | int) else "?"


class SvirtCrossVmAccess(Rule):
    meta = DetectorMeta(
        id="vm_escape.svirt_cross_vm_access",
        version="1.0.0",
        title="sVirt blocked one VM's emulator from another VM's image",
        category="vm_escape",
        score=88,
        severity="high",
        attack=(
            technique("Privilege Escalation", "T1611", "Escape to Host"),
            technique("Collection", "T1005", "Data from Local System"),
        ),
        kinds=frozenset({"process"}),
        description="An SELinux AVC denial whose subject is an sVirt domain (svirt_t) and whose target is an "
        "sVirt image (svirt_image_t) carrying MCS categories the subject does not hold: one VM's emulator "
        "touching another VM's disk.",
        false_positives=(
            "a disk shared between VMs but labelled with one VM's pair instead of the shared s0 label "
            "(<shareable/> missing in the domain XML)",
            "a stale label left on an image by a VM that crashed before libvirt restored it",
        ),
        note="Name both VMs (evidence vm and victim_vm), check the subject emulator for other escape "
        "signals (child processes, seccomp), and treat a permissive=1 record as data read.",
        maturity="incubating",
    )
    learned: ClassVar[tuple[str, ...]] = ("emu",)
    param_spec: ClassVar[ParamSpec] = {"denied_score": int, "permissive_score": int}

    def configure(self, config: DetectorConfig) -> None:
        self.emu = EmulatorTable(config)
        self.domain_types = frozenset(config.shared_value("svirt_domain_types", list))
        self.image_types = frozenset(config.shared_value("svirt_image_types", list))
        self.denied_score = self.params["denied_score"]
        self.permissive_score = self.params["permissive_score"]

    def match(self, event: Event) -> Hit | None:
        ev: ProcessEvent = event  # type: ignore[assignment]
        entry = self.emu.learn_light(ev)
        avc = avc_fields(ev)
        if avc is None:
            return None
        scontext = text_field(avc, "scontext")
        tcontext = text_field(avc, "tcontext")
        if context_type(scontext) not in self.domain_types or context_type(tcontext) not in self.image_types:
            return None
        if _granted(avc):
            return None
        subject = mcs_categories(scontext)
        target = mcs_categories(tcontext)
        if not subject or not target or target <= subject:
            return None
        h = self.emu.table.host(ev.host)
        table_vm = (h.vm_of_label(scontext) if h is not None else None) or self.emu.emulator_vm(ev, entry)[1]
        victim = (h.vm_of_label(tcontext) if h is not None else None) or text_field(avc, "target_vm")
        path = text_field(avc, "path") or text_field(avc, "name") or ev.path or "?"
        vm, tenant = attribute(self.reg, table_vm, ev)
        labels = escape_labels(
            self.reg, ev.host, vm, "svirt_cross_vm", ev.exe or (entry[EXE] if entry else "")
        )
        if victim:
            labels["victim_vm"] = victim
        permissive = text_field(avc, "permissive") == "1"
        mode = "permissive" if permissive else "denied"
        tclass = text_field(avc, "tclass") or "?"
        return Hit(vm_or_host(vm, ev.host), tenant, f"{mode} {tclass} {{{_perms(avc)}}} {path}", labels)

    def observe_batch(self, batch: Batch) -> None:
        """Fast path of ``match``: learn libvirt's records; only AVCs (alone or in ``extra``) go further."""
        observe_with_libvirt(self, self.emu.table, batch, "avc", "avc")

    def score_for(self, st: HitState) -> int:
        if any(d.startswith("permissive ") for d in st.details):
            return self.permissive_score
        return self.denied_score
