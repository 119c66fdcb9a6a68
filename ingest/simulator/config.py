"""What to simulate: ``SimConfig`` and the scenario selection it carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ingest.simulator.scenarios import CATEGORIES, SCENARIO_NAMES, SCENARIOS

__all__ = ["DEFAULT_COUNT", "DEFAULT_START_MS", "SimConfig", "parse_scenarios", "resolve_scenarios"]

DEFAULT_START_MS: Final = 1_736_150_400_000  # 2025-01-06T08:00:00Z, a Monday morning
DEFAULT_COUNT: Final = 2


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines the output: same config, same bytes.

    ``scenarios``: ``None`` injects every scenario ``DEFAULT_COUNT`` times. Otherwise a mapping of
    selector to count, applied in order, where a selector is a scenario name
    (``"vm_escape.shell_spawn"``), a category (``"vm_escape"``: its attacks and look-alikes) or
    ``"all"``; anything not selected is not injected, and a count of 0 removes. ``lookalikes=False``
    drops benign look-alikes except those named explicitly.
    """

    seed: int = 1
    tenants: int = 8
    hosts: int = 4
    vms_per_tenant: int = 4
    duration_s: float = 3600.0
    start_ms: int = DEFAULT_START_MS
    events_per_s: float = 100.0
    scenarios: Mapping[str, int] | None = None
    lookalikes: bool = True
    slice_s: float = 10.0
    diurnal_shift_ms: int = 0
    """Added to event times where the background's rate follows the time of day: a run that must
    repeat whatever hour it is simulated at (the demo) fixes the simulated time of day with it."""

    def __post_init__(self) -> None:
        if not 3 <= self.tenants <= 250:
            raise ValueError(
                f"tenants must be within 3..250 (cross-tenant scenarios need 3), got {self.tenants}"
            )
        if self.hosts < 1:
            raise ValueError(f"hosts must be at least 1, got {self.hosts}")
        if self.vms_per_tenant < 2:
            raise ValueError(f"vms_per_tenant must be at least 2, got {self.vms_per_tenant}")
        if self.duration_s <= 0 or self.slice_s <= 0:
            raise ValueError("duration_s and slice_s must be positive")
        if self.events_per_s < 0:
            raise ValueError(f"events_per_s must not be negative, got {self.events_per_s}")
        resolve_scenarios(self.scenarios, self.lookalikes)  # fail early on unknown names

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.duration_s * 1000)


def resolve_scenarios(selection: Mapping[str, int] | None, lookalikes: bool = True) -> dict[str, int]:
    """Expand a selection to ``{scenario name: count}`` in ``SCENARIO_NAMES`` order, zeros dropped."""
    counts: dict[str, int] = {}
    explicit: set[str] = set()
    items = {"all": DEFAULT_COUNT} if selection is None else selection
    for key, count in items.items():
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"scenario count for {key!r} must be a non-negative int, got {count!r}")
        if key == "all":
            names: tuple[str, ...] = SCENARIO_NAMES
        elif key in CATEGORIES:
            names = tuple(n for n in SCENARIO_NAMES if SCENARIOS[n].category == key)
        elif key in SCENARIOS:
            names = (key,)
            explicit.add(key)
        else:
            raise ValueError(
                f"unknown scenario {key!r}; use 'all', a category ({', '.join(CATEGORIES)}) or one of: "
                + ", ".join(SCENARIO_NAMES)
            )
        for n in names:
            counts[n] = count
    return {
        n: counts[n]
        for n in SCENARIO_NAMES
        if counts.get(n) and (lookalikes or not SCENARIOS[n].benign or n in explicit)
    }


def parse_scenarios(text: str) -> dict[str, int]:
    """Parse a command-line selection: ``"vm_escape=3,dos,port_scan.vertical=1"``.

    A bare selector means ``DEFAULT_COUNT``. The result is a ``SimConfig.scenarios`` mapping.
    """
    out: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            out[key] = int(value) if sep else DEFAULT_COUNT
        except ValueError:
            raise ValueError(f"scenario count in {part!r} is not an integer") from None
    resolve_scenarios(out)
    return out
