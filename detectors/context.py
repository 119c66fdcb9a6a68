"""What detectors run against: the tenant registry, the configuration and the detection clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from detectors.config import DetectorConfig
from ingest.tenants import RegistryWatcher, TenantRegistry

__all__ = ["DetectionContext"]


@dataclass
class DetectionContext:
    """``registry`` may be a fixed ``TenantRegistry`` or a ``RegistryWatcher`` (reloaded when its
    file changes, picked up at the next ``process`` call). ``clock`` gives the alert ``ts``
    (detection time, ms); ``None`` uses the end of the alert's window, so output is deterministic.
    Everything here pickles (a watcher pickles as its path; use a module-level clock function).
    """

    registry: TenantRegistry | RegistryWatcher | None = None
    config: DetectorConfig = field(default_factory=DetectorConfig.default)
    clock: Callable[[], int] | None = None
    # The key of the alert ids' hash (``detectors.alert.make_alert_id``); None: unkeyed.
    alert_id_secret: bytes | None = field(default=None, repr=False)

    def current_registry(self) -> TenantRegistry:
        reg = self.registry
        if reg is None:
            reg = self.registry = TenantRegistry()
        if isinstance(reg, RegistryWatcher):
            return reg.current()
        return reg
