"""Kill-chain stages of an incident: where each alert sits in an attack's progress.

Seven stages, in the order an attack on a multi-tenant cloud progresses (issue 21)::

    0 reconnaissance        finding targets
    1 credential_access     getting in: guessing or stealing credentials
    2 privilege_escalation  escalating: a guest breaking out of its emulator (VM escape)
    3 lateral_movement      moving on from the foothold: to the host, other VMs, other tenants
    4 collection            reading what is not yours: a neighbour's disk, bucket or snapshot
    5 exfiltration          taking it out of the cloud, or handing it to another tenant
    6 impact                using or denying the victim's resources: floods, mining, spam

An alert's stage comes from its detector when ``DETECTOR_STAGE`` names it, else its category; only the categories whose rules mean different steps
(``cross_tenant_leak``: a flow into another tenant is lateral movement, a read of its resource is
collection, a share or a bulk transfer to it is exfiltration) take it from the alert's ATT&CK
tactic (``attack.tactic``, the first technique of the rule, or the one ``attack_for`` chose).

| category | stage | why |
|---|---|---|
| ``port_scan`` | reconnaissance | ATT&CK Reconnaissance / Discovery (T1595, T1046) |
| ``brute_force`` | credential_access | ATT&CK Credential Access (T1110) |
| ``vm_escape`` | privilege_escalation | ATT&CK Escape to Host (T1611) and its relatives; the rules' other tactics (Discovery for a promiscuous guest NIC, Collection for an sVirt denial) are facets of the same escape |
| ``cross_tenant_leak`` | by tactic, else collection | Lateral Movement -> lateral_movement, Collection -> collection, Exfiltration -> exfiltration (``foreign_resource_access``: collection, or credential access for stolen instance credentials; ``resource_shared_out``, ``foreign_transfer_volume``: exfiltration) |
| ``cross_tenant.unpeered_flow`` (one rule) | lateral_movement | a flow into an unpeered tenant's network is reaching into it (the rule's second technique, T1021 Remote Services); how much left is ``foreign_transfer_volume``'s to say, so its first tactic (Exfiltration) would overstate one packet |
| ``command_and_control`` | lateral_movement | a beacon means an outside party controls a host inside: the foothold an attacker moves on from. ATT&CK lists C2 after Collection in its matrix, but a beacon starts with the compromise, so ranking it at collection would make a lone beacon look like data already read |
| ``exfiltration`` | exfiltration | ATT&CK Exfiltration (T1048) |
| ``cryptomining`` | impact | ATT&CK Resource Hijacking (T1496, Impact) |
| ``dos`` | impact | ATT&CK Network / Endpoint Denial of Service (T1498, T1499) |
| ``spam`` | impact | the tenant's address and reputation abused (the rule's tactic is Impact) |
| ``anomaly`` | reconnaissance | an anomaly says an entity behaves unusually, not how far an attack got (its rule's tactics are guesses of the feature family): it sits at the lowest stage so it never advances an incident's stage, while its alert still joins the incident |

An unknown category (a future rule) takes its tactic's stage, else reconnaissance. The ATT&CK
tactics map as: Reconnaissance, Resource Development, Discovery -> reconnaissance; Initial Access,
Credential Access -> credential_access; Execution, Persistence, Privilege Escalation, Defense
Evasion -> privilege_escalation; Lateral Movement, Command and Control -> lateral_movement;
Collection -> collection; Exfiltration -> exfiltration; Impact -> impact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from detectors.alert import CATEGORIES

__all__ = [
    "CATEGORY_STAGE",
    "DETECTOR_STAGE",
    "STAGES",
    "STAGE_LABELS",
    "TACTIC_STAGE",
    "TACTIC_STAGED_CATEGORIES",
    "stage_index",
    "stage_of",
    "tactic_of",
]

STAGES: Final[tuple[str, ...]] = (
    "reconnaissance",
    "credential_access",
    "privilege_escalation",
    "lateral_movement",
    "collection",
    "exfiltration",
    "impact",
)
STAGE_LABELS: Final[Mapping[str, str]] = {
    "reconnaissance": "reconnaissance",
    "credential_access": "credential access",
    "privilege_escalation": "privilege escalation / escape",
    "lateral_movement": "lateral movement",
    "collection": "collection",
    "exfiltration": "exfiltration",
    "impact": "impact",
}
_RANK: Final[Mapping[str, int]] = {s: i for i, s in enumerate(STAGES)}

TACTIC_STAGE: Final[Mapping[str, str]] = {
    "reconnaissance": "reconnaissance",
    "resource development": "reconnaissance",
    "discovery": "reconnaissance",
    "initial access": "credential_access",
    "credential access": "credential_access",
    "execution": "privilege_escalation",
    "persistence": "privilege_escalation",
    "privilege escalation": "privilege_escalation",
    "defense evasion": "privilege_escalation",
    "lateral movement": "lateral_movement",
    "command and control": "lateral_movement",
    "collection": "collection",
    "exfiltration": "exfiltration",
    "impact": "impact",
}

CATEGORY_STAGE: Final[Mapping[str, str]] = {
    "port_scan": "reconnaissance",
    "brute_force": "credential_access",
    "vm_escape": "privilege_escalation",
    "cross_tenant_leak": "collection",
    "command_and_control": "lateral_movement",
    "exfiltration": "exfiltration",
    "cryptomining": "impact",
    "dos": "impact",
    "spam": "impact",
    "anomaly": "reconnaissance",
}
"""Stage of each alert category (for the tactic-staged ones, the fallback)."""

DETECTOR_STAGE: Final[Mapping[str, str]] = {"cross_tenant.unpeered_flow": "lateral_movement"}
"""Rules whose alerts sit at another stage than their category's or tactic's (see the table)."""

TACTIC_STAGED_CATEGORIES: Final = frozenset({"cross_tenant_leak"})
"""Categories whose rules mean different steps: their stage follows the alert's tactic."""

assert set(CATEGORY_STAGE) == set(CATEGORIES), "every alert category needs a stage"


def tactic_of(alert: Mapping[str, Any]) -> str:
    """The alert's ATT&CK tactic name (``attack.tactic``), or ``""``."""
    attack = alert.get("attack")
    if isinstance(attack, Mapping):
        tactic = attack.get("tactic")
        if isinstance(tactic, str):
            return tactic
    return ""


def stage_of(alert: Mapping[str, Any]) -> str:
    """The kill-chain stage of one alert (see the module's table)."""
    detector = alert.get("detector")
    if isinstance(detector, str) and detector in DETECTOR_STAGE:
        return DETECTOR_STAGE[detector]
    category = alert.get("category")
    fixed = CATEGORY_STAGE.get(category) if isinstance(category, str) else None
    if fixed is not None and category not in TACTIC_STAGED_CATEGORIES:
        return fixed
    by_tactic = TACTIC_STAGE.get(tactic_of(alert).strip().lower())
    return by_tactic or fixed or "reconnaissance"


def stage_index(stage: str) -> int:
    """0 (reconnaissance) to 6 (impact); ValueError for a name that is no stage."""
    try:
        return _RANK[stage]
    except KeyError:
        raise ValueError(f"unknown kill-chain stage {stage!r}; stages are {', '.join(STAGES)}") from None
