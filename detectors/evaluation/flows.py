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

__all__ = ["LOOKS_NORMAL_AT_MOST", "METHOD", "UNSW_FEATURES", "adbench", "findings", "load_unsw", "unsw"]

UNSW_FEATURES: Final = (
    "dur", "spkts", "dpkts", "sbytes", "dbytes", "rate", "sload", "dload", "sinpkt", "dinpkt", "smean",
    "dmean", "ct_srv_src", "ct_dst_ltm", "ct_src_dport_ltm", "ct_dst_sport_ltm", "ct_dst_src_ltm",
    "ct_src_ltm", "ct_srv_dst",
)  # fmt: skip
SEEDS: Final = (0, 1, 2)
# What each comparison is for; the figures it gives are in the results file (``findings``).
METHOD: Final = {
    "pyod_direct_same_splits": "PyOD's own estimators (ECOD/COPOD with their transductive decision_function) "
    "scored on the very same splits as ours. Where the two agree (findings: max_abs_difference), a gap to the "
    "published figure is not our wrapper or our fitted-tail scoring.",
    "adbench_http": "Ours against ADBench's published unsupervised table, and fitted and scored on all rows "
    "(all_rows) to take the split out of the comparison. http's 3 log-scaled features are heavily tied, so "
    "ECDF tie handling and histogram binning (which changed in PyOD since the version ADBench ran) and "
    "ADBench's own splits and seeds move the figures: where PyOD's own estimator agrees with ours, a gap to "
    "the table is not a defect to fix here.",
    "adbench_smtp": "smtp has few anomalies (anomalies, test_split_anomalies): AUC-PR swings with where a "
    "handful of positives rank. Where neither the split protocol nor all_rows reproduces the published "
    "AUC-PR with this PyOD version, it is reported as not reproducible rather than tuned towards.",
    "unsw_backdoor": "ADBench's backdoor set carries one-hot protocol/service/state features; our online flow "
    "features cannot (the canonical flow event has no service or state field). Both feature sets are "
    "scored (flow_features, adbench_like_features), so a gap to the table shows as the feature set's or "
    "the model's.",
    "unsw_baseline_protocol": "Fit on normal traffic only, as in production. The false-positive rate on unseen "
    "normal records at the calibrated q=0.99 threshold checks the calibration (1 - 0.99 if it holds); the "
    "share flagged per attack category shows which attacks look like normal flows in these volume and "
    "timing features, and so must be carried by the rule detectors.",
}
# A category flagged at most this often looks like normal traffic to the models (findings).
LOOKS_NORMAL_AT_MOST: Final = 0.05


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
            out["test_split_anomalies"] = int(yte.sum())  # the same for every seed: stratified
            runs.append(auc_pair(yte, _fit_score(family, xtr, xte, seed)))
            direct.append(auc_pair(yte, _pyod_direct(family, xtr, xte, seed)))
        ours = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in ("roc_auc", "auc_pr")}
        pyod_direct = {k: round(float(np.mean([r[k] for r in direct])), 4) for k in ("roc_auc", "auc_pr")}
        ref = published.get(family, {})
        out["models"][family] = {
            "ours": ours,
            "pyod_direct_same_splits": pyod_direct,
            "ours_per_seed": runs,
            "all_rows": auc_pair(y, _fit_score(family, x, x, SEEDS[0])),
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


def _range(values: list[float]) -> list[float]:
    return [round(min(values), 4), round(max(values), 4)]


def _adbench_findings(result: dict[str, Any]) -> dict[str, Any]:
    models = result["models"]
    out: dict[str, Any] = {
        "anomalies": result["anomalies"],
        "test_split_anomalies": result.get("test_split_anomalies"),
    }
    for metric in ("roc_auc", "auc_pr"):
        deltas = {
            fam: row[f"delta_{metric}"] for fam, row in models.items() if row[f"delta_{metric}"] is not None
        }
        out[f"{metric}_below_published"] = sorted(fam for fam, d in deltas.items() if d < 0)
        out[f"{metric}_at_or_above_published"] = sorted(fam for fam, d in deltas.items() if d >= 0)
        out[f"{metric}_minus_published_range"] = _range(list(deltas.values())) if deltas else None
        out[f"{metric}_all_rows"] = {
            fam: row["all_rows"][metric] for fam, row in models.items() if "all_rows" in row
        }
    return out


def _unsw_findings(result: dict[str, Any]) -> dict[str, Any]:
    models = result["models"]
    backdoor: dict[str, dict[str, float | None]] = {}
    for fam, row in models.items():
        bd = row["backdoor_unsupervised"]
        published = bd["published_adbench_backdoor"].get("roc_auc")
        backdoor[fam] = {
            f"{variant}_roc_auc_minus_published": None
            if published is None
            else round(bd[variant]["roc_auc"] - published, 4)
            for variant in ("flow_features", "adbench_like_features")
        }
    base = {fam: row["baseline_protocol"] for fam, row in models.items()}
    looks_normal = [
        {
            cat
            for cat, c in b["per_category_flagged_at_q99"].items()
            if cat != "Normal" and c["flagged"] <= LOOKS_NORMAL_AT_MOST
        }
        for b in base.values()
    ]
    most_flagged = {
        fam: max(
            (c for c in b["per_category_flagged_at_q99"].items() if c[0] != "Normal"),
            key=lambda item: item[1]["records"] * item[1]["flagged"],
        )[0]
        for fam, b in base.items()
    }
    return {
        "backdoor_roc_auc_against_published": backdoor,
        "baseline_false_positive_rate_at_q99_range": _range(
            [b["false_positive_rate_at_q99"] for b in base.values()]
        ),
        "baseline_recall_at_q99_range": _range([b["recall_at_q99"] for b in base.values()]),
        "baseline_category_with_most_flagged_attacks": most_flagged,
        f"baseline_categories_flagged_at_most_{LOOKS_NORMAL_AT_MOST:.0%}_by_every_model": sorted(
            set.intersection(*looks_normal)
        )
        if looks_normal
        else [],
    }


def findings(flows: dict[str, Any]) -> dict[str, Any]:
    """The figures each ``METHOD`` entry looks at, computed from the results of ``adbench`` (under
    ``adbench_http``, ``adbench_smtp``) and ``unsw`` (under ``unsw_nb15``)."""
    adbench_names = [name for name in ("adbench_http", "adbench_smtp") if name in flows]
    diffs = [
        abs(row["ours"][metric] - row["pyod_direct_same_splits"][metric])
        for name in adbench_names
        for row in flows[name]["models"].values()
        for metric in ("roc_auc", "auc_pr")
    ]
    out: dict[str, Any] = {
        "pyod_direct_same_splits": {"max_abs_difference": round(max(diffs), 4) if diffs else None}
    }
    for name in adbench_names:
        out[name] = _adbench_findings(flows[name])
    if "unsw_nb15" in flows:
        out["unsw_nb15"] = _unsw_findings(flows["unsw_nb15"])
    return out
