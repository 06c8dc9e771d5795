"""Classification metrics as plain JSON-ready dicts, so a report can be stored, reloaded and
drawn by the dashboard without any numpy objects leaking through."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from galaxy_core.config import CLASSES

POSITIVE = 1
"""Index of the class ROC curves treat as positive (spiral)."""


def _check(y_true: np.ndarray, probs: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Shape checks up front: a mismatched array otherwise fails deep inside sklearn with a
    message that does not say which argument was wrong."""
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] != n_classes:
        raise ValueError(f"probs must have shape (N, {n_classes}), got {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} rows of probabilities")
    if len(y) == 0:
        raise ValueError("cannot compute metrics on an empty set")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return y, p


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    """Binary Brier score on the positive class for two classes (the usual 0..1 scale);
    for more classes the mean over samples of the summed squared error."""
    if p.shape[1] == 2:
        return float(skm.brier_score_loss(y == POSITIVE, p[:, POSITIVE]))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's balanced accuracy (mean recall over the classes present in ``y``), without its
    warning when a class is predicted but absent: that is expected on tiny evaluation sets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(skm.balanced_accuracy_score(y, pred))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray,
                           classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """Every headline number for one set of predictions; the predicted class is the argmax.

    Returns n, accuracy, balanced_accuracy, macro_f1, per_class {name: precision, recall, f1,
    support}, confusion_matrix (rows true, columns predicted), roc_auc (None when only one class
    is present, where it is undefined), log_loss and brier.
    """
    n_classes = len(classes)
    y, p = _check(y_true, probs, n_classes)
    labels = list(range(n_classes))
    pred = p.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0)
    cm = skm.confusion_matrix(y, pred, labels=labels)
    roc_auc: float | None = None
    if n_classes == 2 and len(np.unique(y)) == 2:
        roc_auc = float(skm.roc_auc_score(y == POSITIVE, p[:, POSITIVE]))
    # Clip before the log loss: a hard 0 on the true class would give infinity, not JSON.
    clipped = np.clip(p, 1e-15, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return {
        "n": int(len(y)),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": _balanced_accuracy(y, pred),
        "macro_f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": cm.astype(int).tolist(),
        "roc_auc": roc_auc,
        "log_loss": float(skm.log_loss(y, clipped, labels=labels)),
        "brier": _brier(y, p),
    }


def bootstrap_intervals(y_true: np.ndarray, probs: np.ndarray, n_boot: int = 1000,
                        level: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of accuracy and macro-F1 over the evaluated galaxies.

    A test split of ~900 galaxies leaves about a point of sampling uncertainty on accuracy; the
    interval says how much of a difference between two models is real.
    """
    y, p = _check(y_true, probs, probs.shape[1] if np.ndim(probs) == 2 else 2)
    pred = p.argmax(axis=1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    correct = (pred == y)[idx]
    acc = correct.mean(axis=1)
    f1 = np.array([skm.f1_score(y[i], pred[i], average="macro", zero_division=0) for i in idx])
    tail = 100 * (1 - level) / 2
    return {name: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))]
            for name, v in (("accuracy", acc), ("macro_f1", f1))}


CURVE_POINTS = 200
"""Points kept of a stored curve: enough to draw, small enough that reports stay small."""


def roc_curve_points(y_true: np.ndarray, probs: np.ndarray,
                     max_points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """ROC points for the spiral class, thinned to at most ``max_points`` so a report with
    thousands of galaxies stays small; the end points are always kept. The first threshold,
    which sklearn sets to infinity (nothing predicted positive), is stored as 1.0 so the result
    is valid JSON. Empty lists when only one class is present."""
    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(probs, dtype=float)
    if len(np.unique(y)) < 2:
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thresholds = skm.roc_curve(y == POSITIVE, p[:, POSITIVE])
    curve = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
             "thresholds": np.minimum(thresholds, 1.0).tolist()}
    return _thin_curve(curve, max_points)


def accuracy_coverage(y_true: np.ndarray, probs: np.ndarray,
                      max_points: int | None = CURVE_POINTS) -> dict[str, list[float]]:
    """Accuracy of the answers the model is most sure of, against the fraction of galaxies kept.

    A survey does not have to accept every answer: it can keep the confident ones and send the
    rest to volunteers. Each point keeps every galaxy whose top-class probability is at least
    ``threshold`` (galaxies with equal confidence are kept or dropped together, as a threshold
    would), so the curve can be read as "accept p >= threshold". Thinned like the ROC points
    unless ``max_points`` is None; the point keeping every galaxy is always last.
    """
    y, p = _check(y_true, probs, probs.shape[1] if np.ndim(probs) == 2 else 2)
    confidence = p.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (p.argmax(axis=1) == y)[order]
    sorted_conf = confidence[order]
    # The last galaxy of each run of equal confidence closes one threshold's group.
    ends = np.flatnonzero(np.r_[sorted_conf[1:] != sorted_conf[:-1], True])
    kept = ends + 1
    accuracy = np.cumsum(correct)[ends] / kept
    coverage, threshold = kept / len(y), sorted_conf[ends]
    curve = {"coverage": coverage.tolist(), "accuracy": accuracy.tolist(),
             "threshold": threshold.tolist()}
    return curve if max_points is None else _thin_curve(curve, max_points)


def _thin_curve(curve: dict[str, list[float]], max_points: int) -> dict[str, list[float]]:
    """Every column of a curve thinned alike to at most ``max_points`` points, ends kept."""
    n = len(next(iter(curve.values())))
    if n <= max_points:
        return curve
    keep = np.unique(np.linspace(0, n - 1, max(max_points, 2)).round().astype(int))
    return {key: [values[i] for i in keep] for key, values in curve.items()}


def coverage_at_accuracy(curve: dict[str, list[float]],
                         target: float) -> dict[str, float] | None:
    """The largest kept fraction whose accuracy still reaches ``target``, with its threshold;
    None when even the single most confident group misses it."""
    best = None
    for cov, acc, thr in zip(curve["coverage"], curve["accuracy"], curve["threshold"]):
        if acc >= target and (best is None or cov > best["coverage"]):
            best = {"coverage": float(cov), "accuracy": float(acc), "threshold": float(thr)}
    return best


SELECTIVE_TARGETS = (0.95, 0.98, 0.99)


def selective_summary(y_true: np.ndarray, probs: np.ndarray,
                      targets: Sequence[float] = SELECTIVE_TARGETS) -> dict[str, Any]:
    """The accuracy-coverage curve (thinned, for drawing) and, read off the full curve so
    thinning cannot move them, the fraction of galaxies kept at each target accuracy."""
    full = accuracy_coverage(y_true, probs, max_points=None)
    return {"curve": _thin_curve(full, CURVE_POINTS),
            "at_accuracy": {f"{t:g}": coverage_at_accuracy(full, t) for t in targets}}


def aggregate(metric_dicts: list[dict[str, Any]],
              keys: Iterable[str] = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc",
                                     "ece")) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation of each metric across splits, so a result is quoted
    with its spread rather than from one lucky split. Missing or None values are skipped, and a
    key with no values at all is left out."""
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = [float(d[key]) for d in metric_dicts if d.get(key) is not None]
        if not values:
            continue
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": float(np.mean(values)), "std": std, "values": values}
    return out
