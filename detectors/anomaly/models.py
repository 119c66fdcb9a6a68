"""One anomaly model: a PyOD detector fitted on baseline feature vectors, scored in batches, with
scores calibrated to the baseline's empirical quantile so one threshold means the same for every
tenant ("above 99.9 % of this tenant's baseline windows").

Families: ``ecod``, ``copod`` (scored from fitted tails, see ``tails``), ``iforest``, ``hbos``
(PyOD's batch ``decision_function``). Never score one row per call: ``score`` takes a matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from detectors.anomaly.tails import TailScorer

__all__ = ["FAMILIES", "AnomalyModel", "Scored", "make_pyod"]

FAMILIES: Final = ("ecod", "copod", "iforest", "hbos")
SEED_ROWS: Final = 4096  # baseline rows kept with a fitted model, to seed the online reservoirs


def make_pyod(family: str, random_state: int = 0, **params: Any) -> Any:
    """A fresh PyOD estimator of the family (imported lazily)."""
    if family == "ecod":
        from pyod.models.ecod import ECOD

        return ECOD(**params)
    if family == "copod":
        from pyod.models.copod import COPOD

        return COPOD(**params)
    if family == "iforest":
        from pyod.models.iforest import IForest

        return IForest(random_state=random_state, **params)
    if family == "hbos":
        from pyod.models.hbos import HBOS

        return HBOS(**params)
    raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")


@dataclass
class Scored:
    raw: np.ndarray  # model scores, higher = more anomalous
    calibrated: np.ndarray  # share of baseline rows scoring <= raw, in [0, 1]


@dataclass
class AnomalyModel:
    family: str
    feature_names: list[str]
    random_state: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    n_baseline_: int = 0
    baseline_scores_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    median_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spread_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    estimator_: Any = None
    tails_: TailScorer | None = None
    rows_: Any = None  # float32 sample of the baseline rows (seeds the online models); None in old files

    def fit(self, x: np.ndarray) -> AnomalyModel:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected rows of {len(self.feature_names)} features, got shape {x.shape}")
        if x.shape[0] < 2:
            raise ValueError("a baseline needs at least 2 rows")
        self.n_baseline_ = x.shape[0]
        if self.family in ("ecod", "copod"):
            self.tails_ = TailScorer(self.family, x)  # type: ignore[arg-type]
            self.estimator_ = None
        else:
            self.estimator_ = make_pyod(self.family, self.random_state, **self.params).fit(x)
            self.tails_ = None
        self.baseline_scores_ = np.sort(self.raw_scores(x))
        self.median_ = np.median(x, axis=0)
        q75, q25 = np.percentile(x, [75, 25], axis=0)
        self.spread_ = np.maximum(q75 - q25, 1e-9 + 0.1 * np.abs(self.median_))
        keep = x if x.shape[0] <= SEED_ROWS else x[np.linspace(0, x.shape[0] - 1, SEED_ROWS).astype(np.int64)]
        self.rows_ = keep.astype(np.float32)
        return self

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError("score a 2-D batch of rows, not a single row")
        if self.tails_ is not None:
            return self.tails_.score(x)
        if self.estimator_ is None:
            raise ValueError("model is not fitted")
        return np.asarray(self.estimator_.decision_function(x), dtype=np.float64)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        base = self.baseline_scores_
        result: np.ndarray = np.searchsorted(base, raw, side="right") / max(1, base.size)
        return result

    def score(self, x: np.ndarray) -> Scored:
        raw = self.raw_scores(x)
        return Scored(raw=raw, calibrated=self.calibrate(raw))

    def threshold_raw(self, quantile: float) -> float:
        """Raw score at the baseline's ``quantile`` (what a calibrated threshold means in raw terms)."""
        return float(np.quantile(self.baseline_scores_, min(max(quantile, 0.0), 1.0)))

    def top_features(self, row: np.ndarray, k: int = 3) -> list[dict[str, Any]]:
        """The features that drove a row's score: tail contributions for ECOD/COPOD, otherwise the
        distance from the baseline median in units of the baseline's spread."""
        row = np.asarray(row, dtype=np.float64)
        if self.tails_ is not None:
            contrib = self.tails_.components(row[None, :])[0]
        else:
            contrib = np.abs(row - self.median_) / self.spread_
        order = np.argsort(-contrib, kind="stable")[:k]
        return [
            {
                "feature": self.feature_names[i],
                "value": round(float(row[i]), 4),
                "baseline_median": round(float(self.median_[i]), 4),
                "contribution": round(float(contrib[i]), 3),
            }
            for i in order
        ]
