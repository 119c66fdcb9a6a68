"""Process-activity model on ADFA-LD: train on Training_Data_Master (normal traces), test on
Validation_Data_Master (normal) + Attack_Data_Master, ROC-AUC and AUC-PR per model family.

Three feature variants, each scored by every model family:

- ``syscall_shares``: the vector our process-activity detector builds per VM and window
  (``detectors.anomaly.features.process_vectors``): log length and syscall shares over the
  vocabulary of the training traces (rarer calls pooled in ``<other>``);
- ``syscall_shares+bigrams``: plus hashed syscall-bigram shares;
- ``ngram_novelty``: log length and, for n = 2..6, the share of the trace's n-grams never seen in
  the baseline traces (STIDE's idea as features). A baseline trace's own novelty is computed
  against the other four fifths of the baseline (5-fold cross-fitting), otherwise it would be 0 by
  construction and the model would learn nothing about normal novelty.
"""

from __future__ import annotations

import zlib
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import numpy as np

from detectors.anomaly.features import process_vectors
from detectors.anomaly.models import FAMILIES, AnomalyModel
from detectors.evaluation.common import auc_pair

__all__ = ["METHOD", "adfa", "findings", "load_traces", "novelty_features", "trace_vectors"]

# What the comparison is for; the figures it gives are in the results file (``findings``).
METHOD: Final = (
    "The syscall mix alone is what the online process detector scores per VM window; hashed bigrams add "
    "call order, and the share of n-grams (n=2..6) unseen in the baseline, cross-fitted, is STIDE's idea as "
    "features. Each variant is scored by every model family, so the findings show how much order adds to "
    "the mix. A ROC-AUC below 0.5 means the model scores the validation normals as more unusual than the "
    "attacks. The emulator events of the pipeline carry no per-thread call order yet, so only the syscall "
    "mix is in the online detector."
)

BIGRAM_BUCKETS: Final = 64
NGRAMS: Final = (2, 3, 4, 5, 6)


def load_traces(data_dir: Path) -> tuple[list[list[str]], np.ndarray, np.ndarray, np.ndarray]:
    """(syscall sequences, split, label, attack_type) from the flattened CSV beside the zip."""
    import pandas as pd

    df = pd.read_csv(data_dir / "adfa_ld" / "adfa_ld_traces.csv.gz")
    seqs = [str(s).split() for s in df["syscalls"].fillna("")]
    return (
        seqs,
        df["split"].to_numpy(),
        df["label"].to_numpy(dtype=int),
        df["attack_type"].fillna("").to_numpy(),
    )


def _bigram_shares(seq: list[str]) -> np.ndarray:
    out = np.zeros(BIGRAM_BUCKETS)
    if len(seq) < 2:
        return out
    for a, b in pairwise(seq):
        out[zlib.crc32(f"{a},{b}".encode()) % BIGRAM_BUCKETS] += 1
    return out / (len(seq) - 1)


def trace_vectors(seqs: list[list[str]], vocab: list[str], bigrams: bool) -> np.ndarray:
    rows: list[tuple[int, dict[str, int], dict[str, int]]] = [(len(s), dict(Counter(s)), {}) for s in seqs]
    x = process_vectors(rows, vocab, exe_buckets=0)
    if bigrams:
        x = np.hstack([x, np.vstack([_bigram_shares(s) for s in seqs])])
    return x


def _grams(seq: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def _novelty_row(seq: list[str], seen: dict[int, set[tuple[str, ...]]]) -> list[float]:
    row = [float(np.log1p(len(seq)))]
    for n in NGRAMS:
        grams = _grams(seq, n)
        row.append(sum(1 for g in grams if g not in seen[n]) / max(1, len(grams)))
    return row


def novelty_features(seqs: list[list[str]], train: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Per trace: log length and the share of its n-grams unseen in the baseline (cross-fitted for
    baseline traces)."""
    out = np.zeros((len(seqs), 1 + len(NGRAMS)))
    seen_all = {n: {g for i in train for g in _grams(seqs[i], n)} for n in NGRAMS}
    train_set = set(train.tolist())
    for i, seq in enumerate(seqs):
        if i not in train_set:
            out[i] = _novelty_row(seq, seen_all)
    parts = np.array_split(np.random.default_rng(seed).permutation(train), folds)
    for k, part in enumerate(parts):
        rest = np.concatenate([p for j, p in enumerate(parts) if j != k])
        seen = {n: {g for i in rest for g in _grams(seqs[i], n)} for n in NGRAMS}
        for i in part:
            out[i] = _novelty_row(seqs[i], seen)
    return out


def adfa(data_dir: Path, families: tuple[str, ...] = FAMILIES, vocab_size: int = 64) -> dict[str, Any]:
    seqs, split, label, attack = load_traces(data_dir)
    train = np.flatnonzero(split == "training")
    test = np.flatnonzero(split != "training")
    counts = Counter(c for i in train for c in seqs[i])
    vocab = [c for c, _ in counts.most_common(vocab_size)]
    y = label[test]
    out: dict[str, Any] = {
        "train_traces": len(train),
        "test_traces": len(test),
        "test_attacks": int(y.sum()),
        "vocabulary": len(vocab),
        "protocol": "train on Training_Data_Master (normal), test on Validation (normal) + Attack",
        "models": {},
    }
    variants = {
        "syscall_shares": lambda: trace_vectors(seqs, vocab, False),
        "syscall_shares+bigrams": lambda: trace_vectors(seqs, vocab, True),
        "ngram_novelty": lambda: novelty_features(seqs, train),
    }
    for name, build in variants.items():
        x = build()
        names = [f"f{i}" for i in range(x.shape[1])]
        for family in families:
            model = AnomalyModel(family, names, random_state=0).fit(x[train])
            scored = model.score(x[test])
            flagged = scored.calibrated >= 0.99
            per_attack = {
                a: round(float(flagged[attack[test] == a].mean()), 4) for a in sorted(set(attack[test])) if a
            }
            out["models"].setdefault(family, {})[name] = {
                **auc_pair(y, scored.raw),
                "recall_at_q99": round(float(flagged[y == 1].mean()), 4),
                "false_positive_rate_at_q99": round(float(flagged[y == 0].mean()), 4),
                "per_attack_flagged_at_q99": per_attack,
            }
    return out


def findings(result: dict[str, Any]) -> dict[str, Any]:
    """Per feature variant, the ROC-AUC range over the model families, the best family and those
    below 0.5, computed from ``adfa``'s result."""
    by_variant: dict[str, dict[str, float]] = {}
    for family, variants in result["models"].items():
        for variant, row in variants.items():
            by_variant.setdefault(variant, {})[family] = row["roc_auc"]
    return {
        variant: {
            "roc_auc_range": [min(scores.values()), max(scores.values())],
            "best_family": max(scores, key=scores.__getitem__),
            "families_below_0_5": sorted(fam for fam, v in scores.items() if v < 0.5),
        }
        for variant, scores in by_variant.items()
    }
