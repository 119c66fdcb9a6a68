"""The figures the evaluations report beside their method text, computed from result rows
(``detectors.evaluation.flows.findings`` and ``detectors.evaluation.adfa.findings``)."""

from __future__ import annotations

from typing import Any

from detectors.evaluation import adfa, flows


def _adbench_row(ours: float, direct: float, published: float) -> dict[str, Any]:
    return {
        "ours": {"roc_auc": ours, "auc_pr": ours / 2},
        "pyod_direct_same_splits": {"roc_auc": direct, "auc_pr": direct / 2},
        "delta_roc_auc": round(ours - published, 4),
        "delta_auc_pr": None,
        "all_rows": {"roc_auc": ours + 0.01, "auc_pr": ours / 2},
    }


def _unsw_row(fpr: float, flagged: dict[str, tuple[int, float]], flow_auc: float) -> dict[str, Any]:
    return {
        "baseline_protocol": {
            "false_positive_rate_at_q99": fpr,
            "recall_at_q99": round(
                sum(n * f for n, f in flagged.values()) / sum(n for n, _ in flagged.values()), 4
            ),
            "per_category_flagged_at_q99": {c: {"records": n, "flagged": f} for c, (n, f) in flagged.items()}
            | {"Normal": {"records": 1000, "flagged": fpr}},
        },
        "backdoor_unsupervised": {
            "flow_features": {"roc_auc": flow_auc, "auc_pr": 0.1},
            "adbench_like_features": {"roc_auc": 0.9, "auc_pr": 0.2},
            "published_adbench_backdoor": {"roc_auc": 0.85},
        },
    }


def test_flow_findings_come_from_the_rows() -> None:
    result = {
        "adbench_http": {
            "anomalies": 40,
            "test_split_anomalies": 12,
            "models": {"ecod": _adbench_row(0.97, 0.9702, 0.98), "iforest": _adbench_row(0.99, 0.99, 0.95)},
        },
        "unsw_nb15": {
            "models": {
                "ecod": _unsw_row(0.01, {"Generic": (100, 0.9), "Worms": (10, 0.0), "DoS": (50, 0.2)}, 0.8),
                "hbos": _unsw_row(
                    0.02, {"Generic": (100, 0.8), "Worms": (10, 0.04), "DoS": (50, 0.01)}, 0.95
                ),
            }
        },
    }
    found = flows.findings(result)
    assert found["pyod_direct_same_splits"]["max_abs_difference"] == 0.0002
    http = found["adbench_http"]
    assert http["roc_auc_below_published"] == ["ecod"]
    assert http["roc_auc_at_or_above_published"] == ["iforest"]
    assert http["roc_auc_minus_published_range"] == [-0.01, 0.04]
    assert http["auc_pr_minus_published_range"] is None  # no published AUC-PR in the rows
    assert http["roc_auc_all_rows"] == {"ecod": 0.98, "iforest": 1.0}
    assert http["test_split_anomalies"] == 12
    unsw = found["unsw_nb15"]
    assert unsw["backdoor_roc_auc_against_published"]["ecod"] == {
        "flow_features_roc_auc_minus_published": -0.05,
        "adbench_like_features_roc_auc_minus_published": 0.05,
    }
    assert unsw["baseline_false_positive_rate_at_q99_range"] == [0.01, 0.02]
    assert unsw["baseline_category_with_most_flagged_attacks"] == {"ecod": "Generic", "hbos": "Generic"}
    # DoS is flagged often by one model only; Worms by neither
    assert unsw["baseline_categories_flagged_at_most_5%_by_every_model"] == ["Worms"]


def test_adfa_findings_per_variant() -> None:
    rows = {
        "ecod": {"syscall_shares": {"roc_auc": 0.6}, "ngram_novelty": {"roc_auc": 0.78}},
        "hbos": {"syscall_shares": {"roc_auc": 0.4}, "ngram_novelty": {"roc_auc": 0.82}},
    }
    found = adfa.findings({"models": rows})
    assert found["syscall_shares"] == {
        "roc_auc_range": [0.4, 0.6],
        "best_family": "ecod",
        "families_below_0_5": ["hbos"],
    }
    assert found["ngram_novelty"]["best_family"] == "hbos"
    assert found["ngram_novelty"]["families_below_0_5"] == []


def test_method_text_holds_no_measured_figures() -> None:
    # Method text may name parameters (0.99, 70/30, n=2..6) but no result: no figure with three
    # or more decimals, and no percentage range such as "22-25 %".
    import re

    texts = [*flows.METHOD.values(), adfa.METHOD]
    for text in texts:
        assert not re.search(r"\d\.\d{3,}", text), text
        assert not re.search(r"\d+\s*-\s*\d+\s*%", text), text
