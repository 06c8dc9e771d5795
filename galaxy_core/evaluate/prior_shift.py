"""How well a model's answers carry to populations with another spiral fraction, measured on a
report's stored test predictions: the test galaxies are resampled to each target fraction, the
fraction is estimated back (EM, against counting the answers), and accuracy and balanced
accuracy are compared with and without moving the probabilities to the estimated mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from galaxy_core.model.prior import adjust_to_prior, estimate_prior

TARGETS = (0.10, 0.26, 0.50, 0.80)
SAMPLE_SIZE = 400
REPEATS = 50


def _labels_and_probs(report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    rows = report.get("predictions") or []
    y = np.array([r["true"] == "spiral" for r in rows], dtype=bool)
    p = np.array([r["p_spiral"] for r in rows], dtype=float)
    return y, p


def prior_shift_table(report: dict[str, Any], train_prior: float,
                      targets: Sequence[float] = TARGETS, n: int = SAMPLE_SIZE,
                      repeats: int = REPEATS, seed: int = 0) -> list[dict[str, float]]:
    """One row per target spiral fraction: mean and spread of the EM estimate, the
    classify-and-count estimate, and accuracy / balanced accuracy before and after the
    adjustment, over ``repeats`` samples of ``n`` test galaxies drawn at that fraction."""
    y, p = _labels_and_probs(report)
    spirals, ellipticals = np.flatnonzero(y), np.flatnonzero(~y)
    if len(spirals) < 2 or len(ellipticals) < 2:
        return []
    rng = np.random.default_rng(seed)
    table = []
    for target in targets:
        k = int(round(target * n))
        runs = []
        for _ in range(repeats):
            idx = np.concatenate([rng.choice(spirals, k), rng.choice(ellipticals, n - k)])
            yy, pp = y[idx], p[idx]
            estimate = estimate_prior(pp, train_prior)
            moved = adjust_to_prior(pp, train_prior, estimate) > 0.5
            kept = pp > 0.5
            runs.append((estimate, kept.mean(), accuracy_score(yy, kept),
                         accuracy_score(yy, moved), balanced_accuracy_score(yy, kept),
                         balanced_accuracy_score(yy, moved)))
        r = np.array(runs)
        table.append({"true": float(target), "estimate": float(r[:, 0].mean()),
                      "estimate_std": float(r[:, 0].std()), "counted": float(r[:, 1].mean()),
                      "accuracy": float(r[:, 2].mean()), "accuracy_adjusted": float(r[:, 3].mean()),
                      "balanced": float(r[:, 4].mean()),
                      "balanced_adjusted": float(r[:, 5].mean()), "n": n, "repeats": repeats})
    return table
