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


def _row_column(part: Part, column: str) -> np.ndarray:
    """Each row's value of one descriptive column, ``""`` where the table has none (a
    single-source folder has neither ``source`` nor ``subclass``)."""
    if column not in part.table.columns:
        return np.full(len(part), "", dtype=object).astype(str)
    return part.table[column].fillna("").astype(str).to_numpy()


def row_sources(part: Part) -> np.ndarray:
    """Each row's source name: the ``source`` column ``galaxy prepare`` writes for a
    multi-source dataset (:data:`~galaxy_core.data.prepared.DESCRIPTIVE_COLUMNS`), ``""`` for
    a single-source one, which has none."""
    return _row_column(part, "source")


def row_subclasses(part: Part) -> np.ndarray:
    """Each row's sub-class (the GZ1 leaf or the GZ2 class, e.g. ``smooth, cigar-shaped``),
    ``""`` where the folder records none."""
    return _row_column(part, "subclass")


def _weigh(weights: np.ndarray, values: np.ndarray, asked: dict[str, float],
           option: str, what: str) -> None:
    """Multiply the rows whose ``values`` are named in ``asked`` by their weight, in place."""
    unknown = sorted(set(asked) - set(values.tolist()))
    if unknown:
        present = ", ".join(repr(v) for v in sorted(set(values.tolist()) - {""})) \
            or "none (one folder)"
        raise GalaxyError(f"{option} names {', '.join(repr(u) for u in unknown)}, which the "
                          f"training part does not hold; its {what}: {present}")
    for name, weight in asked.items():
        if not weight > 0:
            raise GalaxyError(f"{option} {name}={weight}: a weight must be above 0")
        weights[values == name] *= weight


def draw_weights(part: Part, config: Config) -> np.ndarray | None:
    """Relative chance of drawing each row, or None when every row is drawn equally: the
    source's weight times the sub-class's (a rare sub-class, such as GZ2's cigar-shaped
    ellipticals, is otherwise a few dozen galaxies an epoch, easily called the common class it
    resembles).

    The names must be in the data: a misspelt one would otherwise train quietly on the
    unweighted mix for hours."""
    if not config.source_weights and not config.subclass_weights:
        return None
    weights = np.ones(len(part), dtype=np.float64)
    _weigh(weights, row_sources(part), config.source_weights, "--source-weight", "sources")
    _weigh(weights, row_subclasses(part), config.subclass_weights, "--subclass-weight",
           "sub-classes")
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
