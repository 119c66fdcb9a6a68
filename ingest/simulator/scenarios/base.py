"""What a scenario is: a spec (name, category, benign, ATT&CK id, duration range) and a builder.

A builder gets a ``Ctx`` (its own RNG, the topology, an id stream, a start time and the time it
may use) and returns an ``Outcome``: the events it injects and who the ground truth blames.
Builders are pure functions of the context, so the same seed always injects the same events.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ingest.schema import Event
from ingest.simulator.factory import EventMaker
from ingest.simulator.topology import Topology, VmInfo
from ingest.simulator.truth import EntityType

__all__ = ["Ctx", "Outcome", "ScenarioSpec", "spec"]

_T = TypeVar("_T")


@dataclass
class Ctx:
    rng: random.Random
    topo: Topology
    make: EventMaker
    start: int  # ms; the first event may be at ``start``
    span: int  # ms available after ``start`` (the run's end is beyond it)
    lo_s: float  # the scenario's preferred duration range, seconds
    hi_s: float

    def duration(self) -> int:
        """Length in ms of this instance: drawn from the spec's range, cut to the time available."""
        return max(0, min(self.span, int(self.rng.uniform(self.lo_s, self.hi_s) * 1000)))

    def stamps(self, n: int, length: int) -> list[int]:
        """``n`` sorted times spread over ``[start, start + length]``."""
        return sorted(self.start + self.rng.randrange(0, length + 1) for _ in range(n))

    def every(self, step_ms: int, length: int, jitter_ms: int = 0) -> list[int]:
        """Regular times from ``start`` to ``start + length`` (at least one), with small jitter."""
        out = []
        t = 0
        while t <= length:
            j = self.rng.randrange(0, jitter_ms + 1) if jitter_ms else 0
            out.append(self.start + min(length, t + j))
            t += step_ms
        return sorted(out)

    def choice(self, seq: Sequence[_T]) -> _T:
        return seq[self.rng.randrange(len(seq))]

    def vm(self, role: str | None = None, exclude_role: str | None = None) -> VmInfo:
        pool = [
            v
            for v in self.topo.vms
            if (role is None or v.role == role) and (exclude_role is None or v.role != exclude_role)
        ]
        return self.choice(pool or self.topo.vms)


@dataclass
class Outcome:
    tenant: str | None
    entity_type: EntityType
    entity_id: str
    events: list[Event]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScenarioSpec:
    name: str  # "<category>.<variant>"; look-alikes are "<category>.benign_<what>"
    benign: bool
    technique: str  # MITRE ATT&CK technique it is (or imitates)
    span_s: tuple[float, float]
    summary: str
    build: Callable[[Ctx], Outcome]

    @property
    def category(self) -> str:
        return self.name.split(".", 1)[0]


def spec(
    name: str,
    build: Callable[[Ctx], Outcome],
    *,
    technique: str,
    span_s: tuple[float, float],
    summary: str,
) -> ScenarioSpec:
    return ScenarioSpec(
        name=name,
        benign=name.split(".", 1)[1].startswith("benign_"),
        technique=technique,
        span_s=span_s,
        summary=summary,
        build=build,
    )
