"""Ground truth: one record per injected scenario instance, attack or benign look-alike.

JSON line layout (keys in this order)::

    {"scenario": "vm_escape.shell_spawn", "category": "vm_escape", "tenant": "t-nordwave",
     "entity": {"type": "vm", "id": "vm-nordwave-02"}, "start": 1736150400000, "end": 1736150412000,
     "event_ids": ["..."], "benign": false, "detail": {...}}

``start``/``end`` are the first and last event times (ms) of the injected events; ``event_ids``
lists every event the instance injected; ``detail`` holds scenario specifics (victim, target,
ports) for humans and scorecards, never needed to match an alert.

``context: true`` marks what the background itself carries rather than a scenario: internet
scanners' thin probes reach every VM all run long (``background.background_truth``). An alert on
it is right (``port_scan.internet_probes`` reports exactly that exposure) but neither finds an
injected attack nor is false; the scorecard counts it apart. Such records list no event ids (the
background is generated slice by slice, after the truth is written).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

__all__ = [
    "EntityType",
    "TruthEntity",
    "TruthRecord",
    "decode_truth",
    "encode_truth",
    "load_ground_truth",
    "write_ground_truth",
]

EntityType = Literal["vm", "host", "ip", "principal", "user"]


class TruthEntity(msgspec.Struct, frozen=True):
    type: EntityType
    id: str


class TruthRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``campaign``/``stage`` (optional, ``ingest.simulator.campaign``): the multi-stage campaign a
    record is one stage of, and that stage's index (0 = first); absent on ordinary scenarios, so
    their lines are byte-identical to before and old files still decode."""

    scenario: str
    category: str
    tenant: str | None
    entity: TruthEntity
    start: int
    end: int
    event_ids: list[str]
    benign: bool
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
    campaign: str | None = None
    stage: int | None = None
    context: bool = False


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(TruthRecord)


def encode_truth(record: TruthRecord) -> bytes:
    return _encoder.encode(record)


def decode_truth(line: bytes | str) -> TruthRecord:
    return _decoder.decode(line)


def write_ground_truth(records: Iterable[TruthRecord], path: str | os.PathLike[str]) -> int:
    n = 0
    with open(path, "wb") as fh:
        for rec in records:
            fh.write(_encoder.encode(rec) + b"\n")
            n += 1
    return n


def load_ground_truth(path: str | os.PathLike[str]) -> list[TruthRecord]:
    """Read ``ground_truth.jsonl``; a malformed line raises ``ValueError`` naming file and line."""
    out = []
    with Path(path).open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(_decoder.decode(line))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
    return out
