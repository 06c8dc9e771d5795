"""One report's galaxies broken down by survey and by finer class.

A single figure over a mixed test set hides what a user of one survey meets: the GZ2 galaxies
outnumber GZ1's five to one, so a model could fail GZ1 and still look good. Each source gets
its own metrics and its own calibration error (one temperature may not fit two surveys), and
each sub-class (GZ1's leaves, GZ2's smooth/disk classes) the share it gets right, which is
where the errors live: edge-on disks, cigar-shaped ellipticals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from galaxy_core.config import CLASSES
from galaxy_core.evaluate.calibration import expected_calibration_error
from galaxy_core.evaluate.metrics import POSITIVE, classification_metrics

def _source_block(y: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    m = classification_metrics(y, probs, classes)
    return {"n": m["n"], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"],
            "recall": {c: m["per_class"][c]["recall"] for c in classes},
            "support": {c: m["per_class"][c]["support"] for c in classes},
            "roc_auc": m["roc_auc"], "ece": expected_calibration_error(probs, y)}


def breakdown(labels: np.ndarray, probs: np.ndarray, sources: Sequence[str] | None,
              subclasses: Sequence[str] | None,
              classes: Sequence[str] = CLASSES) -> dict[str, Any]:
    """``by_source``: every headline metric and the ECE of each source; ``by_subclass``: for
    each ``source: sub-class`` (or sub-class alone), its count, true class, the share right
    and the mean probability of spiral. Empty blocks are left out."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, dtype=float)
    out: dict[str, Any] = {}
    if sources is not None:
        src = pd.Series(list(sources), dtype=str)
        out["by_source"] = {name: _source_block(y[rows], p[rows], classes)
                            for name, rows in row_groups(src).items()}
    if subclasses is not None:
        key = subclass_keys(pd.Series(list(subclasses), dtype=str),
                            None if sources is None else pd.Series(list(sources), dtype=str))
        right = p.argmax(axis=1) == y
        out["by_subclass"] = {
            name: {"n": int(len(rows)), "true": classes[int(np.bincount(y[rows]).argmax())],
                   "accuracy": float(right[rows].mean()),
                   f"mean_p_{classes[POSITIVE]}": float(p[rows, POSITIVE].mean())}
            for name, rows in row_groups(key).items()}
    return out


def subclass_keys(subclasses: pd.Series, sources: pd.Series | None = None) -> pd.Series:
    """Each row's ``source: sub-class`` key (the sub-class alone where no source is known): the
    names of a report's ``by_subclass`` block, which the model card and ``galaxy compare`` read
    back."""
    if sources is None:
        return subclasses
    return (sources + ": " + subclasses).where(sources != "", subclasses)


def row_groups(keys: pd.Series) -> dict[str, np.ndarray]:
    """Row positions of each key, keys in sorted order (reports stay reproducible)."""
    positions = keys.groupby(keys, sort=True).indices
    return {str(k): np.asarray(v) for k, v in positions.items()}
