"""Temperature scaling and calibration error: a network's softmax is usually over-confident,
and one fitted temperature fixes most of that without changing which class wins."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

T_MIN, T_MAX = 0.05, 20.0
"""Bounds on the fitted temperature: wide enough for any sane network, and finite so a
perfectly separable validation set cannot push T to zero."""


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    logp = log_softmax(logits / temperature, axis=1)
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises negative log-likelihood on held-out data.

    Searched over log T so the bounded search treats 0.1 and 10 symmetrically.
    """
    z = np.asarray(logits, dtype=float)
    y = np.asarray(labels).astype(int).ravel()
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (N, C) logits and N labels, got {z.shape} and {y.shape}")
    result = minimize_scalar(lambda log_t: _nll(z, y, float(np.exp(log_t))),
                             bounds=(np.log(T_MIN), np.log(T_MAX)), method="bounded",
                             options={"xatol": 1e-5})
    return float(np.exp(result.x))


def _top_label(probs: np.ndarray, labels: np.ndarray,
               n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confidence, correctness, bin index and bin edges. Bins are (lo, hi], with 0 in the
    first bin, so a confidence of exactly 0.8 counts towards the 0.733-0.8 bin of 15."""
    p = np.asarray(probs, dtype=float)
    y = np.asarray(labels).astype(int).ravel()
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"need (N, C) probabilities and N labels, got {p.shape} and {y.shape}")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    return confidence, correct, bins, edges


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: the count-weighted mean gap between confidence and accuracy over
    ``n_bins`` equal-width confidence bins. 0 for a perfectly calibrated model."""
    confidence, correct, bins, _ = _top_label(probs, labels, n_bins)
    if len(confidence) == 0:
        return 0.0
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.sum() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(total / len(confidence))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    """Per-bin mean confidence, accuracy and count for a reliability diagram; empty bins get
    None so the plot leaves a gap instead of drawing a fake point."""
    confidence, correct, bins, edges = _top_label(probs, labels, n_bins)
    conf_out: list[float | None] = []
    acc_out: list[float | None] = []
    counts: list[int] = []
    for b in range(n_bins):
        mask = bins == b
        count = int(mask.sum())
        counts.append(count)
        conf_out.append(float(confidence[mask].mean()) if count else None)
        acc_out.append(float(correct[mask].mean()) if count else None)
    return {"edges": edges.tolist(), "confidence": conf_out, "accuracy": acc_out, "count": counts}
