"""Flow anomaly models on public labelled data, next to ADBench's published figures.

- ADBench ``http`` and ``smtp`` (KDD Cup 99 subsets, 3 features): ADBench's unsupervised protocol
  as we read it (stratified 70/30 split, fit on the unlabelled training part, score the test part),
  averaged over seeds 0, 1, 2.
- UNSW-NB15 (82,332-record partition, numeric flow features, log-scaled as our flow features are):
  (a) our production protocol: fit on a baseline of normal records only (half of them, seeded),
  score the other normal records and every attack; per-category recall at the calibrated 0.99
  threshold; (b) the normal + ``Backdoor`` records under the unsupervised 70/30 protocol, to stand
  next to ADBench's ``backdoor`` (which ADBench derives from UNSW-NB15 with one-hot categorical
  features), once with our 19 flow features and once with ADBench-like features (every numeric
  column plus one-hot proto/service/state).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Final

import numpy as np
from sklearn.model_selection import train_test_split

from detectors.anomaly.models import FAMILIES, AnomalyModel, make_pyod
from detectors.evaluation.common import auc_pair, published_adbench

__all__ = ["NOTES", "UNSW_FEATURES", "adbench", "load_unsw", "unsw"]

UNSW_FEATURES: Final = (
    "dur", "spkts", "dpkts", "sbytes", "dbytes", "rate", "sload", "dload", "sinpkt", "dinpkt", "smean",
    "dmean", "ct_srv_src", "ct_dst_ltm", "ct_src_dport_ltm", "ct_dst_sport_ltm", "ct_dst_src_ltm",
    "ct_src_ltm", "ct_srv_dst",
)  # fmt: skip
SEEDS: Final = (0, 1, 2)
NOTES: Final = {
    "pyod_direct_same_splits": "PyOD's own estimators (ECOD/COPOD transductive decision_function) on the very "
    "same splits; ours equals it to within 0.0005 everywhere, so any gap to the published figure is not "
    "our wrapper or the fitted-tail scoring.",
    "adbench_http": "ECOD, COPOD and HBOS land 0.001-0.003 ROC-AUC (0.02-0.06 AUC-PR) under ADBench's table "
    "while IForest is above it. PyOD 3.6.7 itself gives our numbers on identical splits, and fitting on all "
    "rows gives the same (ECOD 0.9786); the difference is between this PyOD version and the one ADBench ran "
    "(ECDF tie handling and histogram binning changed since; http's 3 log-scaled features are heavily tied), "
    "plus ADBench's own splits/seeds. Not a defect to fix here.",
    "adbench_smtp": "Only 30 anomalies (9 per 30 % test split): ROC-AUC is 0.04-0.20 above the table and "
    "AUC-PR swings with where a handful of positives rank. COPOD/IForest/HBOS AUC-PR are below the table "
    "(HBOS 0.014 vs 0.352); neither the split protocol nor fitting on all rows (HBOS 0.0075, n_bins='auto' "
    "0.018) reproduces the published AUC-PR with PyOD 3.6.7, so we report it as not reproducible rather "
    "than tune towards it.",
    "unsw_backdoor": "With our 19 numeric flow features ECOD (0.834) trails ADBench's backdoor figure (0.863) "
    "while COPOD, IForest and HBOS beat theirs. ADBench's backdoor set carries one-hot protocol/service/state "
    "features; with every numeric column plus those one-hot columns ECOD reaches 0.869 (above the table) "
    "and COPOD/HBOS improve too: the gap is the feature set, not the model. Our online flow features have no "
    "service/state field (the canonical flow event has none).",
    "unsw_baseline_protocol": "Fit on normal traffic only (as in production), the models flag ~1 % of unseen "
    "normal records at the calibrated q=0.99 threshold (the calibration holds) and ~22-25 % of attacks, "
    "almost all of them 'Generic'; Exploits, Fuzzers, Reconnaissance, Shellcode and Worms look like normal "
    "flows in these volume/timing features, which is why the rule detectors carry the named threats.",
}


def _fit_score(family: str, x_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    names = [f"f{i}" for i in range(x_train.shape[1])]
    model = AnomalyModel(family, names, random_state=seed).fit(x_train)
    return model.raw_scores(x_test)


def _pyod_direct(family: str, x_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """PyOD's own estimator scoring the test part (transductive for ECOD/COPOD), for comparison."""
    return np.asarray(make_pyod(family, seed).fit(x_train).decision_function(x_test))


def adbench(
    data_dir: Path, dataset: str, reference_dir: Path, families: tuple[str, ...] = FAMILIES
) -> dict[str, Any]:
    folder = {"http": "adbench_http/16_http.npz", "smtp": "adbench_smtp/34_smtp.npz"}[dataset]
    d = np.load(data_dir / folder, allow_pickle=False)
    x, y = d["X"].astype(np.float64), d["y"].astype(int)
    published = published_adbench(reference_dir, dataset)
    out: dict[str, Any] = {"rows": len(y), "anomalies": int(y.sum()), "protocol": "stratified 70/30, "
                           "fit on unlabelled train part, seeds 0-2 (mean)", "models": {}}  # fmt: skip
    for family in families:
        runs, direct = [], []
        for seed in SEEDS:
            xtr, xte, _ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
            runs.append(auc_pair(yte, _fit_score(family, xtr, xte, seed)))
            direct.append(auc_pair(yte, _pyod_direct(family, xtr, xte, seed)))
        ours = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in ("roc_auc", "auc_pr")}
        pyod_direct = {k: round(float(np.mean([r[k] for r in direct])), 4) for k in ("roc_auc", "auc_pr")}
        ref = published.get(family, {})
        out["models"][family] = {
            "ours": ours,
            "pyod_direct_same_splits": pyod_direct,
            "ours_per_seed": runs,
            "published": ref,
            "delta_roc_auc": round(ours["roc_auc"] - ref["roc_auc"], 4) if "roc_auc" in ref else None,
            "delta_auc_pr": round(ours["auc_pr"] - ref["auc_pr"], 4) if "auc_pr" in ref else None,
        }
    return out


def _unsw_frame(data_dir: Path) -> Any:
    import pandas as pd

    path = data_dir / "unsw_nb15" / "UNSW_NB15_82332rows_official-testing-partition.csv.zip"
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".csv"))
        return pd.read_csv(io.BytesIO(zf.read(name)), encoding="utf-8-sig")


def load_unsw(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log1p flow features, label, attack_cat, ADBench-like features) of the 82,332-record partition.
    The ADBench-like matrix is every numeric column (log1p) plus one-hot proto/service/state."""
    import pandas as pd

    df = _unsw_frame(data_dir)
    x = np.log1p(np.clip(df[list(UNSW_FEATURES)].to_numpy(dtype=np.float64), 0, None))
    numeric = [c for c in df.columns if c not in ("id", "proto", "service", "state", "attack_cat", "label")]
    wide = np.hstack(
        [
            np.log1p(np.clip(df[numeric].to_numpy(dtype=np.float64), 0, None)),
            pd.get_dummies(df[["proto", "service", "state"]].astype(str)).to_numpy(dtype=np.float64),
        ]
    )
    cats = df["attack_cat"].fillna("Normal").astype(str).str.strip().to_numpy()
    return x, df["label"].to_numpy(dtype=int), cats, wide


def unsw(data_dir: Path, reference_dir: Path, families: tuple[str, ...] = FAMILIES) -> dict[str, Any]:
    x, y, cats, wide = load_unsw(data_dir)
    published = published_adbench(reference_dir, "backdoor")
    normal = np.flatnonzero(y == 0)
    out: dict[str, Any] = {
        "rows": len(y),
        "features": list(UNSW_FEATURES),
        "baseline_protocol": "fit on 50% of normal records (seeded), test on the other normal records and all "
        "attacks; per-category recall at calibrated quantile 0.99 of the baseline",
        "backdoor_protocol": "normal + Backdoor records, stratified 70/30, fit on unlabelled train part, seeds 0-2",
        "models": {},
    }
    for family in families:
        rng = np.random.default_rng(0)
        base = rng.permutation(normal)
        train_idx, test_normal = base[: len(base) // 2], base[len(base) // 2 :]
        test_idx = np.r_[test_normal, np.flatnonzero(y == 1)]
        model = AnomalyModel(family, list(UNSW_FEATURES), random_state=0).fit(x[train_idx])
        scored = model.score(x[test_idx])
        yt = y[test_idx]
        flagged = scored.calibrated >= 0.99
        per_cat = {}
        for cat in sorted(set(cats[test_idx])):
            mask = cats[test_idx] == cat
            per_cat[cat] = {"records": int(mask.sum()), "flagged": round(float(flagged[mask].mean()), 4)}
        # AUC-PR at 10 % attack prevalence (the partition is attack-majority)
        rng2 = np.random.default_rng(1)
        attacks = np.flatnonzero(yt == 1)
        keep = rng2.choice(attacks, size=len(test_normal) // 9, replace=False)
        sub = np.r_[np.flatnonzero(yt == 0), keep]
        bd_mask = (cats == "Backdoor") | (y == 0)
        bd: dict[str, dict[str, float]] = {}
        for variant, feats in (("flow_features", x), ("adbench_like_features", wide)):
            xb, yb = feats[bd_mask], y[bd_mask]
            bd_runs = []
            for seed in SEEDS:
                xtr, xte, _ytr, yte = train_test_split(xb, yb, test_size=0.3, stratify=yb, random_state=seed)
                bd_runs.append(auc_pair(yte, _fit_score(family, xtr, xte, seed)))
            bd[variant] = {
                k: round(float(np.mean([r[k] for r in bd_runs])), 4) for k in ("roc_auc", "auc_pr")
            }
        out["models"][family] = {
            "baseline_protocol": {
                **auc_pair(yt, scored.raw),
                "auc_pr_at_10pct_attacks": auc_pair(yt[sub], scored.raw[sub])["auc_pr"],
                "false_positive_rate_at_q99": round(float(flagged[yt == 0].mean()), 4),
                "recall_at_q99": round(float(flagged[yt == 1].mean()), 4),
                "per_category_flagged_at_q99": per_cat,
            },
            "backdoor_unsupervised": {**bd, "published_adbench_backdoor": published.get(family, {})},
        }
    return out
