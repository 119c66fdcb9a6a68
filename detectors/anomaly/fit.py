"""Fit anomaly models (and transfer baselines) on a baseline period and save them in a models dir.

    python -m detectors.anomaly.fit EVENTS --tenants tenants.yaml --models-dir models/ [--model ecod]

The baseline events go through the same windowed feature accumulators the detectors use online,
so training and scoring features cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Hashable, Iterable
from typing import Any, cast

import numpy as np

from detectors.anomaly.detectors import AnomalyDetector, FlowAnomaly, ProcessAnomaly
from detectors.anomaly.store import ModelSet
from detectors.base import Finding
from detectors.baselines import fit_baselines
from detectors.config import DetectorConfig
from detectors.context import DetectionContext
from detectors.engine import DetectionEngine
from detectors.windows import Window
from ingest.schema import Event
from ingest.tenants import TenantRegistry

__all__ = ["collect_rows", "fit_models", "main"]

_KINDS: dict[str, type[AnomalyDetector]] = {"flow": FlowAnomaly, "process": ProcessAnomaly}


def _collector(cls: type[AnomalyDetector], config: DetectorConfig) -> AnomalyDetector:
    class Collector(cls):  # type: ignore[valid-type,misc]
        def configure(self, cfg: DetectorConfig) -> None:
            self.enabled = False  # never loads models
            super().configure(cfg)
            self.rows: dict[str | None, list[np.ndarray]] = {}

        def finish(self, window: Window, states: dict[Hashable, Any]) -> list[Finding]:
            keys, x = self.feature_rows(states)
            for key, row in zip(keys, x, strict=True):
                self.rows.setdefault(cast(tuple[Any, ...], key)[0], []).append(row)
            return []

    det: AnomalyDetector = Collector(config)
    return det


def collect_rows(
    events: Iterable[Event], registry: TenantRegistry, config: DetectorConfig, kinds: Iterable[str]
) -> dict[str, tuple[list[str], dict[str, np.ndarray]]]:
    """Windowed feature rows per kind: (feature names, tenant -> matrix)."""
    collectors = {kind: _collector(_KINDS[kind], config) for kind in kinds}
    DetectionEngine(list(collectors.values()), DetectionContext(registry, config), strict=True).run(events)
    out: dict[str, tuple[list[str], dict[str, np.ndarray]]] = {}
    for kind, det in collectors.items():
        rows = {str(t): np.vstack(r) for t, r in det.rows.items() if r}  # type: ignore[attr-defined]
        out[kind] = (det.feature_names(), rows)
    return out


def fit_models(
    events: Iterable[Event],
    registry: TenantRegistry,
    config: DetectorConfig,
    models_dir: str | os.PathLike[str],
    *,
    kinds: Iterable[str] = ("flow", "process"),
    family: str | None = None,
) -> dict[str, Any]:
    """Fit and save per-tenant model sets for ``kinds`` and the cross-tenant transfer baselines."""
    evs = list(events)
    kinds = list(kinds)
    summary: dict[str, Any] = {"events": len(evs), "models_dir": str(models_dir)}
    collected = collect_rows(evs, registry, config, kinds)
    for kind, (names, rows) in collected.items():
        det_id = _KINDS[kind].meta.id
        params = config.detectors[det_id]["params"]
        fam = family or str(params["model"])
        window_ms = int(config.detectors[det_id].get("window_ms", 300_000))
        ms = ModelSet.fit(
            kind, fam, names, rows, window_ms=window_ms,
            min_rows=int(params["min_baseline_rows"]), random_state=int(params["random_state"]),
        )  # fmt: skip
        path = ms.save(models_dir)
        summary[kind] = {"family": fam, "path": str(path), **ms.info}
    vol = config.detectors["cross_tenant.foreign_transfer_volume"]
    baselines = fit_baselines(evs, registry, window_ms=int(vol.get("window_ms", 300_000)))
    summary["baselines"] = {"path": str(baselines.save(models_dir)), "pairs": len(baselines.pairs)}
    return summary


def main(argv: list[str] | None = None) -> int:
    from detectors.io import iter_events

    ap = argparse.ArgumentParser(prog="python -m detectors.anomaly.fit", description=__doc__.splitlines()[0])
    ap.add_argument("events", help="baseline events, JSON lines (.gz ok)")
    ap.add_argument("--tenants", required=True, help="tenant registry YAML")
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--config", help="detector config YAML (merged over the default)")
    ap.add_argument(
        "--model", choices=("ecod", "copod", "iforest", "hbos"), help="override the configured family"
    )
    ap.add_argument("--kinds", default="flow,process")
    args = ap.parse_args(argv)
    config = DetectorConfig.load_or_default(args.config)
    registry = TenantRegistry.load(args.tenants)
    summary = fit_models(
        iter_events(args.events), registry, config, args.models_dir,
        kinds=[k for k in args.kinds.split(",") if k], family=args.model,
    )  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
