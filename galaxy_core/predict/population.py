"""Applying a population's spiral fraction to a batch of answers (``galaxy predict --prior``).

The network's probabilities are calibrated for the training mix. ``train`` keeps them so (the
measured calibration holds); a number says what the user knows of their population; ``estimate``
fits the batch's own fraction first and reports it, with an interval, as a result in its own
right. Inputs flagged as unlike the training galaxies take no part in the estimate (a batch of
photographs must not move the spiral fraction of the galaxies beside them), but their answers
are adjusted like the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from galaxy_core.errors import GalaxyError
from galaxy_core.model.prior import (PriorEstimate, adjust_to_prior, estimate_with_interval,
                                     training_prior)
from galaxy_core.predict.framing import Prediction

MIN_FOR_ESTIMATE = 20
"""Fewer galaxies than this give an interval too wide to be worth an estimate."""


@dataclass(frozen=True)
class PriorUsed:
    fraction: float
    """The spiral fraction the answers are now calibrated for."""
    source: str
    """``train``, ``given`` or ``estimated``."""
    estimate: PriorEstimate | None = None


def apply_prior(preds: Sequence[Prediction], meta: Mapping[str, Any],
                choice: str | float) -> PriorUsed:
    """Adjust every classified prediction in place to the prior ``choice`` names."""
    train = training_prior(meta)
    if train is None:
        if choice == "train":
            return PriorUsed(float("nan"), "train")
        raise GalaxyError("this model folder does not record its training class counts, so its "
                          "probabilities cannot be moved to another spiral fraction")
    if choice == "train":
        return PriorUsed(train, "train")
    estimate = None
    if choice == "estimate":
        usable = np.array([p.p_spiral for p in preds if p.ok and not p.unusual], dtype=float)
        if len(usable) < MIN_FOR_ESTIMATE:
            raise GalaxyError(f"--prior estimate needs at least {MIN_FOR_ESTIMATE} classified "
                              f"galaxies that look like the training data; this batch has "
                              f"{len(usable)}. Give a fraction (e.g. --prior 0.5) instead")
        estimate = estimate_with_interval(usable, train)
        target = estimate.fraction
    else:
        target = float(choice)
    for pred in preds:
        if pred.ok:
            pred.p_spiral = float(adjust_to_prior(pred.p_spiral, train, target))
            pred.p_elliptical = 1.0 - pred.p_spiral
            pred.label = "spiral" if pred.p_spiral > 0.5 else "elliptical"
    return PriorUsed(target, "estimated" if estimate else "given", estimate)
