"""The population's mix: probabilities for a spiral fraction other than the training set's, and
the spiral fraction of a batch estimated from the model's own probabilities.

A calibrated probability is calibrated for the mix it was calibrated on: here the validation
split, 39% spirals for the shipped model (GZ1 with GZ2's confident classes), an artefact of how
those sets were assembled. A Hubble gallery, a deeper
survey or a class quiz has another mix. When only the mix changes (label shift: a spiral still
looks like a spiral), Bayes' rule moves every answer by the same factor on the odds, and the
batch's own mix can be estimated by expectation-maximisation over its probabilities (Saerens,
Latinne & Decaestecker 2002, Neural Computation 14, 21). Counting the answers instead
("classify and count") is biased towards the training mix, most for the classes the model
confuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-6
"""Probabilities and priors are kept inside [EPS, 1 - EPS], so odds stay finite."""
PRIOR_CHOICES = ("train", "estimate")
"""Named choices of ``--prior`` besides a number."""


def _clip(p: np.ndarray | float) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)


def adjust_to_prior(p_spiral: np.ndarray, train_prior: float, target_prior: float) -> np.ndarray:
    """``p_spiral`` (calibrated under ``train_prior``) as it reads in a population where a
    fraction ``target_prior`` are spirals: the odds times the ratio of the two priors' odds."""
    p = _clip(p_spiral)
    shift = (target_prior / (1 - target_prior)) / (train_prior / (1 - train_prior))
    odds = p / (1 - p) * shift
    return odds / (1 + odds)


def estimate_prior(p_spiral: np.ndarray, train_prior: float, tol: float = 1e-7,
                   max_iter: int = 10_000) -> float:
    """The spiral fraction that makes the batch's adjusted probabilities agree with it: the EM
    fixed point of Saerens et al. (2002), the maximum-likelihood prior under label shift."""
    p = _clip(p_spiral)
    if p.size == 0:
        raise ValueError("no probabilities to estimate a prior from")
    prior = float(np.clip(p.mean(), EPS, 1 - EPS))
    for _ in range(max_iter):
        new = float(np.clip(adjust_to_prior(p, train_prior, prior).mean(), EPS, 1 - EPS))
        if abs(new - prior) < tol:
            return new
        prior = new
    return prior


@dataclass(frozen=True)
class PriorEstimate:
    fraction: float
    low: float
    high: float
    """Bootstrap 95% interval (resampling the batch's galaxies)."""
    n: int
    classify_and_count: float
    """Share of the batch labelled spiral at p >= 0.5, for comparison."""

    def describe(self) -> str:
        return (f"estimated spiral fraction {self.fraction:.1%} (95% interval {self.low:.1%}-"
                f"{self.high:.1%}, {self.n} galaxies; counting answers would say "
                f"{self.classify_and_count:.1%})")


def estimate_with_interval(p_spiral: np.ndarray, train_prior: float, n_boot: int = 300,
                           seed: int = 0) -> PriorEstimate:
    """:func:`estimate_prior` with a bootstrap interval: how far the batch's own sampling
    alone could move the estimate."""
    p = np.asarray(p_spiral, dtype=float)
    rng = np.random.default_rng(seed)
    boots = [estimate_prior(p[rng.integers(0, len(p), len(p))], train_prior)
             for _ in range(n_boot)]
    low, high = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return PriorEstimate(estimate_prior(p, train_prior), float(low), float(high), len(p),
                         float((p >= 0.5).mean()))


def training_prior(meta: Mapping[str, Any]) -> float | None:
    """The spiral fraction a model's probabilities are calibrated for: that of the galaxies
    its temperature was fitted on (stratified splits share the prepared set's mix). None when
    the model folder does not say."""
    counts = (meta.get("training") or {}).get("class_counts") or {}
    try:
        spiral, total = float(counts["spiral"]), float(sum(counts.values()))
    except (KeyError, TypeError, ValueError):
        return None
    return spiral / total if total > 0 else None


def parse_prior(text: str) -> str | float:
    """``train``, ``estimate`` or a spiral fraction strictly between 0 and 1."""
    if text in PRIOR_CHOICES:
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"give 'train', 'estimate' or a spiral fraction such as 0.5, "
                         f"not {text!r}") from None
    if not 0 < value < 1:
        raise ValueError(f"a spiral fraction must be between 0 and 1 (exclusive), not {text}")
    return value
