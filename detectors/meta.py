"""Detector metadata: what a detector is, how bad its findings are, and how to triage them.

Every detector class carries one ``DetectorMeta`` (elastic/detection-rules style: severity,
risk score, false positives, a triage note and the ATT&CK mapping; falco style maturity).
It is validated when the class is defined, so a bad mapping fails at import of that module,
naming the detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from detectors.alert import CATEGORIES, SEVERITIES, Attack, Category, Severity, severity_for_score
from ingest.schema import KINDS

__all__ = ["MATURITIES", "TACTICS", "DetectorMeta", "Maturity", "MetaError", "technique"]

Maturity = Literal["stable", "incubating", "sandbox"]
MATURITIES: Final[tuple[str, ...]] = ("stable", "incubating", "sandbox")

# ATT&CK Enterprise tactics (names as ATT&CK spells them).
TACTICS: Final = frozenset(
    {
        "Reconnaissance",
        "Resource Development",
        "Initial Access",
        "Execution",
        "Persistence",
        "Privilege Escalation",
        "Defense Evasion",
        "Credential Access",
        "Discovery",
        "Lateral Movement",
        "Collection",
        "Command and Control",
        "Exfiltration",
        "Impact",
    }
)


class MetaError(ValueError):
    """A detector's metadata is invalid; the message names the detector."""


def technique(tactic: str, technique_id: str, name: str) -> Attack:
    """An ATT&CK mapping, checked: known tactic and an id like T1611 or T1499.002."""
    tid = technique_id
    ok = (
        len(tid) in (5, 9)
        and tid[0] == "T"
        and tid[1:5].isdigit()
        and (len(tid) == 5 or (tid[5] == "." and tid[6:].isdigit()))
    )
    if not ok:
        raise MetaError(f"bad ATT&CK technique id {technique_id!r}")
    if tactic not in TACTICS:
        raise MetaError(f"unknown ATT&CK tactic {tactic!r}")
    return Attack(tactic=tactic, technique_id=technique_id, technique=name)


@dataclass(frozen=True)
class DetectorMeta:
    """Static description of a detector. ``score`` is the base risk (0-100) of its alerts;
    ``severity`` must be the severity that score maps to, so the two can never disagree."""

    id: str
    version: str
    title: str
    category: Category
    score: int
    severity: Severity
    attack: tuple[Attack, ...]
    kinds: frozenset[str]
    description: str
    false_positives: tuple[str, ...]
    note: str
    maturity: Maturity = "stable"
    references: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"detector {self.id!r}"
        parts = self.id.split(".")
        if len(parts) != 2 or not all(p and p.replace("_", "").isalnum() and p.islower() for p in parts):
            raise MetaError(f"{where}: id must be '<threat>.<name>' in lower_snake_case")
        vparts = self.version.split(".")
        if len(vparts) != 3 or not all(v.isdigit() for v in vparts):
            raise MetaError(f"{where}: version {self.version!r} is not MAJOR.MINOR.PATCH")
        if self.category not in CATEGORIES:
            raise MetaError(f"{where}: unknown category {self.category!r}")
        if self.severity not in SEVERITIES:
            raise MetaError(f"{where}: unknown severity {self.severity!r}")
        if not 0 <= self.score <= 100:
            raise MetaError(f"{where}: score {self.score} outside 0-100")
        if severity_for_score(self.score) != self.severity:
            raise MetaError(
                f"{where}: severity {self.severity!r} disagrees with score {self.score} "
                f"({severity_for_score(self.score)!r})"
            )
        if not self.attack:
            raise MetaError(f"{where}: no ATT&CK mapping")
        if not self.kinds or not self.kinds <= set(KINDS):
            raise MetaError(f"{where}: kinds {sorted(self.kinds)} not a subset of {KINDS}")
        if self.maturity not in MATURITIES:
            raise MetaError(f"{where}: maturity {self.maturity!r} not one of {MATURITIES}")
        if not self.false_positives or not self.note.strip() or not self.description.strip():
            raise MetaError(f"{where}: description, false_positives and triage note are required")
