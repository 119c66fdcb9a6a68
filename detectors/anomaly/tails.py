"""ECOD / COPOD scoring from fitted tails: per-feature empirical tail probabilities by binary search.

PyOD's ``ECOD.decision_function`` and ``COPOD.decision_function`` recompute the empirical CDFs over
the training set *plus* the rows being scored on every call, so scoring one row costs a full pass
over the training data and a batch's scores depend on what else is in the batch. Here the training
columns are sorted once at fit time and each new value's left and right tail probabilities come
from ``numpy.searchsorted``, counting the scored value itself as one more sample: exactly what PyOD
computes when it scores that row alone, at O(d log n) per row and independent of the batch.

Per feature j, with n training values: left = (#{train <= x} + 1) / (n + 1), right =
(#{train >= x} + 1) / (n + 1), L = -log left, R = -log right. The skewness sign s of the training
column picks the "expected" tail: S = L if s < 0, R if s > 0, L + R if s == 0 (PyOD's formula).
ECOD sums max(L, R, S) over features; COPOD sums max(S, (L + R) / 2).
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np

__all__ = ["TailScorer"]

Family = Literal["ecod", "copod"]
_FAMILIES: Final = ("ecod", "copod")


def _skew_sign(x: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=0)
    centered = x - mean
    m2 = (centered**2).mean(axis=0)
    m3 = (centered**3).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(m2 > 0, m3 / np.power(m2, 1.5), 0.0)
    return np.sign(skew)


class TailScorer:
    def __init__(self, family: Family, x_train: np.ndarray) -> None:
        if family not in _FAMILIES:
            raise ValueError(f"tail scoring is for {_FAMILIES}, not {family!r}")
        x = np.asarray(x_train, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError("training data must be a non-empty 2-D array")
        self.family: Family = family
        self.n = x.shape[0]
        self.sorted_ = np.sort(x, axis=0)
        self.skew_sign_ = _skew_sign(x)

    def components(self, x: np.ndarray) -> np.ndarray:
        """Per-feature outlyingness (rows x features); the score is their sum."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        n = self.n
        out = np.empty_like(x)
        log_n1 = np.log(n + 1)
        for j in range(x.shape[1]):
            col = self.sorted_[:, j]
            v = x[:, j]
            le = np.searchsorted(col, v, side="right")  # train values <= v
            ge = n - np.searchsorted(col, v, side="left")  # train values >= v
            left = log_n1 - np.log(le + 1.0)  # -log((le + 1) / (n + 1))
            right = log_n1 - np.log(ge + 1.0)
            s = self.skew_sign_[j]
            skew_tail = left if s < 0 else right if s > 0 else left + right
            if self.family == "ecod":
                out[:, j] = np.maximum(np.maximum(left, right), skew_tail)
            else:
                out[:, j] = np.maximum(skew_tail, (left + right) / 2)
        return out

    def score(self, x: np.ndarray) -> np.ndarray:
        result: np.ndarray = self.components(x).sum(axis=1)
        return result

    def loo_components(self, x_train: np.ndarray) -> np.ndarray:
        """Components of the training rows themselves, each scored against the *other* n - 1 rows
        (leave-one-out): what a fresh row from the same distribution would get, so the scores of
        the baseline are exchangeable with the scores of new rows and a conformal p-value over them
        is calibrated (in-sample scores are lower, by up to log 2 per feature at the extremes)."""
        x = np.asarray(x_train, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != self.n:
            raise ValueError("leave-one-out scoring takes exactly the training rows")
        n = self.n - 1
        out = np.empty_like(x)
        log_n1 = np.log(n + 1)
        for j in range(x.shape[1]):
            col = self.sorted_[:, j]
            v = x[:, j]
            le = np.searchsorted(col, v, side="right") - 1  # other rows <= v
            ge = self.n - np.searchsorted(col, v, side="left") - 1
            left = log_n1 - np.log(le + 1.0)
            right = log_n1 - np.log(ge + 1.0)
            s = self.skew_sign_[j]
            skew_tail = left if s < 0 else right if s > 0 else left + right
            if self.family == "ecod":
                out[:, j] = np.maximum(np.maximum(left, right), skew_tail)
            else:
                out[:, j] = np.maximum(skew_tail, (left + right) / 2)
        return out
