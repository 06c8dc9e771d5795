"""The mix of galaxies a run learns from: how often each source is drawn, and the class weights
that follow from that mix.

Both live here because they must agree. Oversampling a survey changes the class fractions the
network sees, so the loss weights that balance the classes are computed on the mix as drawn:
whatever the draws, a class-weighted network ends up balanced. The release step then moves it
to the prepared set's own mix (:func:`release_weights`), which validation, test and the model
card share, not to the drawn mix, which no real population has.
"""

from __future__ import annotations

import numpy as np

from galaxy_core.config import CLASSES, Config
from galaxy_core.data.cache import Part
from galaxy_core.errors import GalaxyError


def row_sources(part: Part) -> np.ndarray:
    """Each row's source name: the ``source`` column ``galaxy prepare`` writes for a
    multi-source dataset (:data:`~galaxy_core.data.prepared.DESCRIPTIVE_COLUMNS`), ``""`` for
    a single-source one, which has none."""
    if "source" not in part.table.columns:
        return np.full(len(part), "", dtype=object).astype(str)
    return part.table["source"].fillna("").astype(str).to_numpy()


def draw_weights(part: Part, config: Config) -> np.ndarray | None:
    """Relative chance of drawing each row, or None when every row is drawn equally.

    ``config.source_weights`` names sources the data must hold: a misspelt name would otherwise
    train quietly on the unweighted mix for hours."""
    if not config.source_weights:
        return None
    sources = row_sources(part)
    unknown = sorted(set(config.source_weights) - set(sources.tolist()))
    if unknown:
        present = ", ".join(sorted(set(sources.tolist()) - {""})) or "none (one folder)"
        raise GalaxyError(f"--source-weight names {', '.join(unknown)}, which the training "
                          f"part does not hold; its sources: {present}")
    weights = np.ones(len(sources), dtype=np.float64)
    for name, weight in config.source_weights.items():
        if not weight > 0:
            raise GalaxyError(f"--source-weight {name}={weight}: a weight must be above 0")
        weights[sources == name] = weight
    return weights


def class_weights(labels: np.ndarray, n_classes: int = len(CLASSES),
                  draws: np.ndarray | None = None) -> np.ndarray:
    """'Balanced' weights n / (C * count_c): each class contributes equally to the loss.
    ``draws`` (relative chance of each row) makes the counts those of the mix as drawn."""
    counts = np.bincount(labels, weights=draws, minlength=n_classes).astype(float)
    total = counts.sum()
    return total / (n_classes * np.maximum(counts, 1e-12 if draws is not None else 1))


def _balanced_weights(part: Part, config: Config, on_draws: bool) -> np.ndarray:
    if config.balance != "weights":
        return np.ones(len(CLASSES), dtype=np.float32)
    draws = draw_weights(part, config) if on_draws else None
    return class_weights(part.labels, draws=draws).astype(np.float32)


def loss_weights(part: Part, config: Config) -> np.ndarray:
    """The per-class loss weights a run trains with: balanced on the drawn mix for
    ``balance="weights"``, equal otherwise. The release step undoes them (a prior shift), so it
    asks here too."""
    return _balanced_weights(part, config, on_draws=True)


def release_weights(part: Part, config: Config) -> np.ndarray:
    """The class weights whose prior correction (:func:`galaxy_core.release.finalize.
    prior_correction`) takes the trained network to the training part's own class mix: the
    balanced weights of its raw counts when the run balanced classes by loss weights, ones
    otherwise (as before source weights existed)."""
    return _balanced_weights(part, config, on_draws=False)


def sample_probabilities(part: Part, config: Config) -> np.ndarray | None:
    """Chance of drawing each row per draw (summing to 1), or None for a plain shuffle. The
    ``sampler`` balance draws each class equally within the source mix."""
    draws = draw_weights(part, config)
    if config.balance == "sampler":
        base = np.ones(len(part)) if draws is None else draws
        per_class = np.bincount(part.labels, weights=base, minlength=len(CLASSES))
        draws = base / np.maximum(per_class, 1e-12)[part.labels]
    if draws is None:
        return None
    return draws / draws.sum()
