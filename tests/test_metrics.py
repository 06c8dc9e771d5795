"""Metrics against values worked out by hand and against direct scikit-learn calls."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from galaxy_core.evaluate.metrics import (accuracy_coverage, aggregate, classification_metrics,
                                          coverage_at_accuracy, roc_curve_points,
                                          selective_summary)

# Five galaxies; argmax predictions are 0, 0, 1, 1, 0 against truth 0, 0, 0, 1, 1.
Y = np.array([0, 0, 0, 1, 1])
P = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])


def test_hand_computed_values() -> None:
    m = classification_metrics(Y, P)
    assert m["n"] == 5
    assert m["confusion_matrix"] == [[2, 1], [1, 1]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    # recall elliptical 2/3, spiral 1/2
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["per_class"]["elliptical"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_class"]["spiral"] == pytest.approx(
        {"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # Spiral scores 0.8, 0.45 vs elliptical 0.1, 0.4, 0.7: 5 of 6 pairs ranked right.
    assert m["roc_auc"] == pytest.approx(5 / 6)
    expected_nll = -np.mean(np.log([0.9, 0.6, 0.3, 0.8, 0.45]))
    assert m["log_loss"] == pytest.approx(expected_nll)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.49 + 0.04 + 0.3025) / 5)


def test_agrees_with_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0.01, 0.99)
    probs = np.column_stack([1 - p1, p1])
    m = classification_metrics(y, probs)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["per_class"]["spiral"]["f1"] == pytest.approx(f1_score(y, pred))
    assert m["log_loss"] == pytest.approx(log_loss(y, probs))
    assert sum(sum(row) for row in m["confusion_matrix"]) == 300


def test_single_class_gives_no_auc_and_valid_json() -> None:
    y = np.zeros(4, dtype=int)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [1.0, 0.0], [0.7, 0.3]])
    m = classification_metrics(y, probs)
    assert m["roc_auc"] is None
    assert m["confusion_matrix"] == [[3, 1], [0, 0]]
    assert m["per_class"]["spiral"]["precision"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(3 / 4)
    json.dumps(m, allow_nan=False)  # raises on NaN/inf or numpy types
    assert math.isfinite(m["log_loss"])


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        classification_metrics(Y[:4], P)
    with pytest.raises(ValueError):
        classification_metrics(Y, P[:, :1])
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 2, 1, 0, 1]), P)


def test_roc_points_thinned_and_json_safe() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p1 = rng.uniform(size=5000)
    roc = roc_curve_points(y, np.column_stack([1 - p1, p1]), max_points=50)
    assert 2 <= len(roc["fpr"]) <= 50
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    assert np.all(np.diff(roc["fpr"]) >= 0)
    assert max(roc["thresholds"]) <= 1.0
    json.dumps(roc, allow_nan=False)


def test_roc_points_small_input_unthinned_and_single_class_empty() -> None:
    roc = roc_curve_points(Y, P)
    assert roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
    assert roc_curve_points(np.ones(3, dtype=int), P[:3]) == {"fpr": [], "tpr": [],
                                                                "thresholds": []}


def test_aggregate_mean_std_and_missing_keys() -> None:
    dicts = [{"accuracy": 0.8, "roc_auc": 0.9}, {"accuracy": 0.9, "roc_auc": None},
             {"accuracy": 1.0}]
    agg = aggregate(dicts)
    assert agg["accuracy"]["mean"] == pytest.approx(0.9)
    assert agg["accuracy"]["std"] == pytest.approx(0.1)  # sample std of 0.8, 0.9, 1.0
    assert agg["accuracy"]["values"] == [0.8, 0.9, 1.0]
    assert agg["roc_auc"] == {"mean": 0.9, "std": 0.0, "values": [0.9]}
    assert "macro_f1" not in agg and "ece" not in agg
    assert set(aggregate(dicts, keys=("accuracy",))) == {"accuracy"}


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_n():
    from galaxy_core.evaluate.metrics import bootstrap_intervals

    rng = np.random.default_rng(3)

    def case(n):
        y = rng.integers(0, 2, n)
        correct = rng.random(n) < 0.9
        pred = np.where(correct, y, 1 - y)
        return y, np.eye(2)[pred] * 0.8 + 0.1, (pred == y).mean()

    y, p, acc = case(200)
    small = bootstrap_intervals(y, p, n_boot=300)
    assert small["accuracy"][0] <= acc <= small["accuracy"][1]
    y2, p2, _ = case(5000)
    big = bootstrap_intervals(y2, p2, n_boot=300)
    width = lambda ci: ci[1] - ci[0]
    assert width(big["accuracy"]) < width(small["accuracy"]) / 3
    assert 0 < width(small["macro_f1"]) < 0.2


# --- accepting only confident answers --------------------------------------------------------


def _brute_force_curve(y: np.ndarray, p: np.ndarray) -> list[tuple[float, float, float]]:
    """Each distinct confidence as a threshold: keep every galaxy at or above it."""
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
    return [((confidence >= t).mean(), correct[confidence >= t].mean(), t)
            for t in sorted(set(confidence), reverse=True)]


def test_accuracy_coverage_matches_thresholding_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p1 = rng.random(300).round(2)  # many ties in confidence
    probs = np.column_stack([1 - p1, p1])
    curve = accuracy_coverage(y, probs, max_points=None)
    expected = _brute_force_curve(y, probs)
    assert len(curve["coverage"]) == len(expected)
    for cov, acc, thr, (e_cov, e_acc, e_thr) in zip(curve["coverage"], curve["accuracy"],
                                                    curve["threshold"], expected):
        assert (cov, thr) == pytest.approx((e_cov, e_thr))
        assert acc == pytest.approx(e_acc)
    assert curve["coverage"][-1] == 1.0
    assert curve["accuracy"][-1] == pytest.approx(accuracy_score(y, probs.argmax(axis=1)))


def test_accuracy_coverage_thinned_keeps_the_ends_and_is_json_safe() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 2000)
    p1 = rng.random(2000)
    curve = accuracy_coverage(y, np.column_stack([1 - p1, p1]), max_points=40)
    assert len(curve["coverage"]) <= 40
    assert curve["coverage"][0] == pytest.approx(1 / 2000) and curve["coverage"][-1] == 1.0
    assert np.all(np.diff(curve["coverage"]) > 0)
    json.dumps(curve)


def test_coverage_at_accuracy_reads_the_largest_set_meeting_the_target() -> None:
    # Confidences 0.95, 0.9, 0.8, 0.7, 0.6: right, right, wrong, right, wrong.
    y = np.array([1, 0, 0, 1, 0])
    probs = np.array([[0.05, 0.95], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    curve = accuracy_coverage(y, probs)
    assert curve["accuracy"] == pytest.approx([1.0, 1.0, 2 / 3, 3 / 4, 3 / 5])
    assert coverage_at_accuracy(curve, 0.95) == pytest.approx(
        {"coverage": 0.4, "accuracy": 1.0, "threshold": 0.9})
    assert coverage_at_accuracy(curve, 0.7) == pytest.approx(
        {"coverage": 0.8, "accuracy": 0.75, "threshold": 0.7})
    wrong_first = np.array([[0.9, 0.1]] + [[0.4, 0.6]] * 4)
    assert coverage_at_accuracy(accuracy_coverage(np.ones(5, dtype=int), wrong_first), 0.9) is None
    summary = selective_summary(y, probs, targets=(0.95, 0.5))
    assert summary["at_accuracy"]["0.95"]["coverage"] == 0.4
    assert summary["at_accuracy"]["0.5"]["coverage"] == 1.0
