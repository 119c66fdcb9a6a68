"""Every scenario the simulator can inject, by name, in a fixed order.

The table is assembled here from each module's ``SCENARIOS`` dict (no registration by import
side effect). Names are ``<category>.<variant>``; look-alikes are ``<category>.benign_<what>``.
"""

from __future__ import annotations

from typing import Final

from ingest.simulator.scenarios import abuse, access, c2, cross_tenant, network, novel, service, vm_escape
from ingest.simulator.scenarios.base import Ctx, Outcome, ScenarioSpec

__all__ = ["CATEGORIES", "SCENARIOS", "SCENARIO_NAMES", "Ctx", "Outcome", "ScenarioSpec"]

SCENARIOS: Final[dict[str, ScenarioSpec]] = {
    **vm_escape.SCENARIOS,
    **cross_tenant.SCENARIOS,
    **network.SCENARIOS,
    **access.SCENARIOS,
    **abuse.SCENARIOS,
    **service.SCENARIOS,
    **c2.SCENARIOS,
    **novel.SCENARIOS,
}
SCENARIO_NAMES: Final = tuple(SCENARIOS)
CATEGORIES: Final = tuple(dict.fromkeys(s.category for s in SCENARIOS.values()))
