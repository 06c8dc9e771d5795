"""The population's spiral fraction applied to an output already written: ``galaxy predict
--prior estimate`` (the fraction is fitted on all the answers, which are only known at the end)
and a resumed run whose earlier rows were written for another fraction.

Rows are written as they are made, so for ``estimate`` they are first written at the training
mix. This pass then reads only the probability, score, error and prior columns, fits the batch's
fraction (holding one float per usable galaxy: the one part of ``galaxy predict`` whose memory
grows with the number of inputs, 8 bytes each), and rewrites the output atomically with every
answer moved to it (:meth:`~galaxy_core.predict.writers.Output.rewrite`).

Each row records in ``prior`` the fraction its probabilities are for, so the pass starts from
what each row says, not from what it expects: running it twice, or after a kill half-way
through a Parquet rewrite, gives the same result.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

from galaxy_core.errors import GalaxyError
from galaxy_core.model.ood import WARN_AT
from galaxy_core.model.prior import adjust_to_prior, estimate_with_interval
from galaxy_core.predict.framing import Prediction
from galaxy_core.predict.population import MIN_FOR_ESTIMATE, PriorUsed
from galaxy_core.predict.writers import Output, Row

READ_COLUMNS = ("p_spiral", "ood_score", "error", "prior")


def prior_cell(fraction: float) -> str:
    """How the ``prior`` column writes a fraction."""
    return f"{fraction:.4f}"


def usable(row: Row) -> bool:
    """Classified and like the training galaxies: the answers an estimate may count
    (:func:`galaxy_core.predict.population.apply_prior` counts the same)."""
    return not row["error"] and row["p_spiral"] != "" and not (
        row["ood_score"] not in ("", "nan") and float(row["ood_score"]) > WARN_AT)


def at_training_mix(row: Row, train: float) -> float:
    """The row's p_spiral moved back from the fraction its ``prior`` cell records to the
    training mix."""
    p = float(row["p_spiral"])
    cell = row["prior"]
    if cell in ("", prior_cell(train)) or math.isnan(float(cell)):
        return p
    return float(adjust_to_prior(p, float(cell), train))


def settle_prior(output: Output, train: float, choice: str | float,
                 threshold: float | None = None) -> PriorUsed:
    """Move every classified row of ``output`` to the fraction ``choice`` names (``train``, a
    number, or ``estimate``: fitted here on the usable rows), recompute ``label``, ``prior``
    and, with ``threshold``, ``accepted``; rows already at that fraction are left as they are."""
    estimate = None
    if choice == "estimate":
        found = array("d")
        for row in output.rows(READ_COLUMNS):
            if usable(row):
                found.append(at_training_mix(row, train))
        if len(found) < MIN_FOR_ESTIMATE:
            raise GalaxyError(f"--prior estimate needs at least {MIN_FOR_ESTIMATE} classified "
                              f"galaxies that look like the training data; this batch has "
                              f"{len(found)}. Give a fraction (e.g. --prior 0.5) instead")
        estimate = estimate_with_interval(np.frombuffer(found, dtype=float), train)
        target = estimate.fraction
    else:
        target = train if choice == "train" else float(choice)
    target_text = prior_cell(target)

    def change(rows: list[Row]) -> list[Row]:
        for row in rows:
            if row["error"] or row["p_spiral"] == "" or row["prior"] == target_text:
                continue
            p = float(adjust_to_prior(at_training_mix(row, train), train, target))
            row.update(p_spiral=f"{p:.4f}", p_elliptical=f"{1 - p:.4f}", prior=target_text,
                       label="spiral" if p > 0.5 else "elliptical")
            if threshold is not None and "accepted" in row:
                ood = None if row["ood_score"] in ("", "nan") else float(row["ood_score"])
                pred = Prediction(source="", p_spiral=p, p_elliptical=1 - p, ood_score=ood)
                row["accepted"] = str(int(pred.accepted(threshold)))
        return rows

    output.rewrite(change)
    source = "estimated" if estimate else ("train" if choice == "train" else "given")
    return PriorUsed(target, source, estimate)


__all__ = ["prior_cell", "settle_prior"]
