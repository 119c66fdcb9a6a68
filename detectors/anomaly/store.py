"""A set of per-tenant models of one feature kind, persisted with joblib in a models directory.

Each tenant with at least ``min_rows`` baseline rows gets its own model; every other tenant (and
a tenant first seen after fitting) is scored by the global model ``"*"`` fitted on all rows.
Files: ``<models_dir>/<kind>_models.joblib``. Only load models from a directory you trust
(joblib files are pickles). In the engine these fitted models are seeds: each tenant's online
reservoir starts from its model's kept rows (``AnomalyModel.rows_``), see ``detectors.anomaly.detectors``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import joblib
import numpy as np

from detectors.anomaly.models import FAMILIES, AnomalyModel

__all__ = ["GLOBAL", "ModelSet", "model_path"]

GLOBAL: Final = "*"


def model_path(models_dir: str | os.PathLike[str], kind: str) -> Path:
    return Path(models_dir) / f"{kind}_models.joblib"


@dataclass
class ModelSet:
    kind: str
    family: str
    feature_names: list[str]
    window_ms: int
    models: dict[str, AnomalyModel] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def for_tenant(self, tenant: str | None) -> AnomalyModel:
        model = self.models.get(tenant or GLOBAL)
        return model if model is not None else self.models[GLOBAL]

    @classmethod
    def fit(
        cls,
        kind: str,
        family: str,
        feature_names: Sequence[str],
        rows: Mapping[str, np.ndarray],
        *,
        window_ms: int,
        min_rows: int = 50,
        random_state: int = 0,
        params: Mapping[str, Any] | None = None,
    ) -> ModelSet:
        """``rows``: tenant -> baseline feature matrix. Fits one model per tenant with enough rows and
        the global model on all of them."""
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")
        names = list(feature_names)
        mats = [np.asarray(m, dtype=np.float64) for m in rows.values() if len(m)]
        if not mats:
            raise ValueError(f"no baseline rows to fit {kind} models on")
        every = np.vstack(mats)
        out = cls(kind=kind, family=family, feature_names=names, window_ms=window_ms)
        p = dict(params or {})
        out.models[GLOBAL] = AnomalyModel(family, names, random_state, dict(p)).fit(every)
        for tenant in sorted(rows):
            mat = np.asarray(rows[tenant], dtype=np.float64)
            if len(mat) >= min_rows:
                out.models[tenant] = AnomalyModel(family, names, random_state, dict(p)).fit(mat)
        out.info = {
            "rows": int(every.shape[0]),
            "tenants_with_own_model": sorted(t for t in out.models if t != GLOBAL),
            "min_rows": min_rows,
        }
        return out

    def save(self, models_dir: str | os.PathLike[str]) -> Path:
        path = model_path(models_dir, self.kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, models_dir: str | os.PathLike[str], kind: str) -> ModelSet:
        path = model_path(models_dir, kind)
        obj = joblib.load(path)
        if not isinstance(obj, cls) or obj.kind != kind:
            raise ValueError(f"{path}: not a {kind} model set")
        return obj
