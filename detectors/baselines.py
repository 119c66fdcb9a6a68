"""Transfer baselines fitted on a baseline period: how much a source VM normally sends to a given
foreign tenant per window. Stored as ``baselines.json`` in the models directory
(``shared.models_dir``), so a fresh engine (e.g. one per Flink window) has them without history.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from ingest.schema import Event, FlowEvent
from ingest.tenants import TenantRegistry

__all__ = ["BASELINES_FILE", "Baselines", "fit_baselines"]

BASELINES_FILE: Final = "baselines.json"


@dataclass(frozen=True)
class Baselines:
    window_ms: int
    quantile: float
    pairs: dict[str, float] = field(default_factory=dict)  # "src->dst": per-window per-source bytes
    samples: dict[str, int] = field(default_factory=dict)

    def pair(self, src_tenant: str, dst_tenant: str) -> float | None:
        return self.pairs.get(f"{src_tenant}->{dst_tenant}")

    def save(self, directory: str | os.PathLike[str]) -> Path:
        path = Path(directory) / BASELINES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "window_ms": self.window_ms,
            "quantile": self.quantile,
            "pairs": self.pairs,
            "samples": self.samples,
        }
        path.write_text(json.dumps(body, indent=1, sort_keys=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Baselines | None:
        path = Path(directory) / BASELINES_FILE
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            window_ms=int(data["window_ms"]),
            quantile=float(data["quantile"]),
            pairs={str(k): float(v) for k, v in data.get("pairs", {}).items()},
            samples={str(k): int(v) for k, v in data.get("samples", {}).items()},
        )


def fit_baselines(
    events: Iterable[Event], registry: TenantRegistry, window_ms: int = 300_000, quantile: float = 0.99
) -> Baselines:
    """Per (source tenant, destination tenant): the ``quantile`` of bytes one source address sent to
    that tenant per aligned window, over the windows in which it sent any."""
    totals: dict[tuple[str, str, str, int], int] = {}
    for ev in events:
        if not isinstance(ev, FlowEvent):
            continue
        src_t = registry.tenant_of_ip(ev.src_ip)
        dst_t = registry.tenant_of_ip(ev.dst_ip) if src_t is not None else None
        if src_t is None or dst_t is None or src_t == dst_t:
            continue
        key = (src_t, dst_t, ev.src_ip, ev.ts - ev.ts % window_ms)
        totals[key] = totals.get(key, 0) + ev.bytes_out
    per_pair: dict[str, list[int]] = {}
    for (src_t, dst_t, _src, _w), total in totals.items():
        per_pair.setdefault(f"{src_t}->{dst_t}", []).append(total)
    pairs = {k: float(np.quantile(np.asarray(v, dtype=np.float64), quantile)) for k, v in per_pair.items()}
    return Baselines(window_ms, quantile, pairs, {k: len(v) for k, v in per_pair.items()})
