"""Shared bits of the evaluation scripts: metrics, published reference figures, result files."""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["auc_pair", "published_adbench", "write_result"]


def auc_pair(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": round(float(roc_auc_score(y, scores)), 4),
        "auc_pr": round(float(average_precision_score(y, scores)), 4),
    }


def published_adbench(reference_dir: str | os.PathLike[str], dataset: str) -> dict[str, dict[str, float]]:
    """ADBench's published unsupervised AUCROC / AUCPR for ``dataset`` (columns = PyOD model names)."""
    out: dict[str, dict[str, float]] = {}
    for metric, name in (
        ("roc_auc", "pyod_adbench_aucroc_unsup.csv"),
        ("auc_pr", "pyod_adbench_aucpr_unsup.csv"),
    ):
        with (Path(reference_dir) / name).open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row["dataset"] == dataset:
                    for model, value in row.items():
                        if model != "dataset" and value:
                            out.setdefault(model.lower(), {})[metric] = float(value)
    return out


def write_result(path: str | os.PathLike[str], name: str, payload: dict[str, Any]) -> Path:
    """Merge ``payload`` under ``name`` into the JSON file at ``path``, with the command that made it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
    payload = {
        **payload,
        "command": " ".join(["python", "-m", "detectors.evaluation", *sys.argv[1:]]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
    }
    data[name] = payload
    p.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return p
