"""The alert of DESIGN.md: one JSON object in ``ssa.alerts``, one document in ``ssa-alerts-*``.

``alert_id`` is deterministic (detector, entity, evidence window), so a replay after a crash
rewrites the same Elasticsearch documents instead of adding duplicates.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "CATEGORIES",
    "SEVERITIES",
    "STATUSES",
    "Alert",
    "Attack",
    "Entity",
    "decode_alert",
    "encode_alert",
    "make_alert_id",
    "severity_for_score",
]

Category = Literal[
    "vm_escape",
    "cross_tenant_leak",
    "port_scan",
    "brute_force",
    "exfiltration",
    "cryptomining",
    "dos",
    "command_and_control",
    "spam",
    "anomaly",
]
Severity = Literal["low", "medium", "high", "critical"]
Status = Literal["open", "acknowledged", "closed"]
EntityType = Literal["vm", "host", "ip", "principal", "user"]

CATEGORIES: Final[tuple[str, ...]] = Category.__args__  # type: ignore[attr-defined]
SEVERITIES: Final[tuple[str, ...]] = Severity.__args__  # type: ignore[attr-defined]
STATUSES: Final[tuple[str, ...]] = Status.__args__  # type: ignore[attr-defined]


class Entity(msgspec.Struct, frozen=True):
    type: EntityType
    id: str


class Attack(msgspec.Struct, frozen=True):
    tactic: str
    technique_id: str
    technique: str


class Alert(msgspec.Struct, kw_only=True, frozen=True):
    alert_id: str
    ts: int
    first_seen: int
    last_seen: int
    tenant: str | None
    entity: Entity
    category: Category
    severity: Severity
    score: int
    detector: str
    detector_version: str
    attack: Attack
    summary: str
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    status: Status = "open"


def make_alert_id(
    detector: str,
    entity: Entity,
    window_start: int,
    window_end: int,
    tenant: str | None = None,
    secret: bytes | None = None,
) -> str:
    """Hash of detector id, entity and evidence window: stable across replays.

    ``tenant`` (optional, compatible extension) scopes the id to the tenant whose telemetry raised
    it, so one external scanner seen by two tenants gives two alerts instead of one overwriting
    the other. Without it the id is the original (detector, entity, window) hash.

    ``secret`` (the provider's ``alert_id_key_file``) makes it a keyed hash (BLAKE2b's MAC mode):
    an alert involving two tenants keeps its id in both tenants' copies, and an unkeyed id lets
    one tenant confirm a guess about the other side (its VM, its tenant id) by hashing the guess.
    """
    key = f"{detector}\x00{entity.type}\x00{entity.id}\x00{window_start}\x00{window_end}"
    if tenant is not None:
        key += f"\x00{tenant}"
    return hashlib.blake2b(key.encode(), digest_size=16, key=secret or b"").hexdigest()


def severity_for_score(score: int) -> Severity:
    if score >= 90:
        return "critical"
    if score >= 70:
        return "high"
    if score >= 40:
        return "medium"
    return "low"


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Alert)


def encode_alert(alert: Alert) -> bytes:
    return _encoder.encode(alert)


def decode_alert(data: bytes | str) -> Alert:
    return _decoder.decode(data)
