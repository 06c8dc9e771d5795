"""Deterministic stratified train/validation/test splits.

Several independent splits (seed, seed+1, ...) let us report how much a metric moves with the
luck of the split. Each split partitions the unique galaxy ids, so no galaxy is ever in both the
training and the test part of the same split.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from galaxy_core.errors import CatalogueError

PARTS = ("train", "val", "test")


def assign_split(labels: pd.Series, seed: int, val_fraction: float,
                 test_fraction: float) -> pd.Series:
    """Return 'train'/'val'/'test' for each row, stratified by label."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in (0, 1) and sum to less than 1")
    counts = labels.value_counts()
    if len(counts) < 2 or counts.min() < 3:
        raise CatalogueError(f"need at least 3 galaxies of each class to split, have {({k: int(v) for k, v in counts.items()})}")
    index = labels.index.to_numpy()
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    val_share = val_fraction / (1 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=labels.loc[rest],
                                  random_state=seed + 10_000)
    out = pd.Series("train", index=labels.index, dtype=object)
    out.loc[val] = "val"
    out.loc[test] = "test"
    return out


def make_splits(kept: pd.DataFrame, n_splits: int, seed: int, val_fraction: float,
                test_fraction: float) -> pd.DataFrame:
    """Add ``split_0 .. split_{n-1}`` columns to the kept table (split k uses ``seed + k``)."""
    if kept["objid"].duplicated().any():
        raise CatalogueError("a galaxy id appears twice in the selection; cannot split safely")
    out = kept.reset_index(drop=True).copy()
    for k in range(n_splits):
        out[f"split_{k}"] = assign_split(out["label"], seed + k, val_fraction, test_fraction)
    return out


def split_columns(table: pd.DataFrame) -> list[str]:
    return sorted((c for c in table.columns if c.startswith("split_")),
                  key=lambda c: int(c.split("_")[1]))
