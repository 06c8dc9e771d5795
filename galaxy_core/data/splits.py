"""Deterministic stratified train/validation/test splits.

Several independent splits (seed, seed+1, ...) let us report how much a metric moves with the
luck of the split. Each split partitions the unique galaxy ids, so no galaxy is ever in both the
training and the test part of the same split.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from galaxy_core.errors import CatalogueError

PARTS = ("train", "val", "test")


def _rounded_shares(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``n_draws`` come from each class: each class's proportional share rounded
    down, then the draws still owed go to the largest remainders, ties broken at random."""
    exact = counts / counts.sum() * n_draws
    shares = np.floor(exact)
    owed = int(n_draws - shares.sum())
    remainder = exact - shares
    for value in np.unique(remainder)[::-1]:
        if owed <= 0:
            break
        tied = np.flatnonzero(remainder == value)
        given = rng.choice(tied, size=min(len(tied), owed), replace=False)
        shares[given] += 1
        owed -= len(given)
    return shares.astype(int)


def stratified_draw(labels: np.ndarray, test_fraction: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(keep, held_out)`` of a stratified random draw of ``ceil(test_fraction *
    n)`` of ``labels``: every class keeps its share in both parts.

    The draws are those of scikit-learn 1.9's ``train_test_split(..., stratify=labels,
    random_state=seed)`` (the same legacy generator, called in the same order; a test holds
    the two together), so folders prepared before this module stopped importing
    scikit-learn get the same splits again. Written here because importing scikit-learn cost
    half a second of a 6,000-image ``galaxy prepare`` for a 20 ms computation, and because
    a project's splits should not move when a library is upgraded."""
    n = len(labels)
    n_held = math.ceil(test_fraction * n)
    n_keep = n - n_held
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2 or min(n_keep, n_held) < len(classes):
        raise CatalogueError(f"too few galaxies to split {n} of them {1 - test_fraction:.0%} / "
                             f"{test_fraction:.0%} with every class on both sides")
    members = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    keep_share = _rounded_shares(counts, n_keep, rng)
    held_share = _rounded_shares(counts - keep_share, n_held, rng)
    keep: list[int] = []
    held: list[int] = []
    for rows, k, h in zip(members, keep_share, held_share):
        shuffled = rows[rng.permutation(len(rows))]
        keep.extend(shuffled[:k])
        held.extend(shuffled[k:k + h])
    return rng.permutation(keep), rng.permutation(held)


def assign_split(labels: pd.Series, seed: int, val_fraction: float,
                 test_fraction: float) -> pd.Series:
    """Return 'train'/'val'/'test' for each row, stratified by label."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in (0, 1) and sum to less than 1")
    counts = labels.value_counts()
    if len(counts) < 2 or counts.min() < 3:
        raise CatalogueError(f"need at least 3 galaxies of each class to split, have {({k: int(v) for k, v in counts.items()})}")
    index, values = labels.index.to_numpy(), labels.to_numpy()
    rest, test = stratified_draw(values, test_fraction, seed)
    val_share = val_fraction / (1 - test_fraction)
    train, val = stratified_draw(values[rest], val_share, seed + 10_000)
    train, val, test = index[rest[train]], index[rest[val]], index[test]
    out = pd.Series("train", index=labels.index, dtype=object)
    out.loc[val] = "val"
    out.loc[test] = "test"
    return out


def make_splits(kept: pd.DataFrame, n_splits: int, seed: int, val_fraction: float,
                test_fraction: float) -> pd.DataFrame:
    """Add ``split_0 .. split_{n-1}`` columns to the kept table (split k uses ``seed + k``).

    A multi-source table is split source by source, each stratified by label with the same
    seeds. So every survey keeps its share of spirals in each part, and a source's galaxies
    fall where they fell when it was prepared alone: the GZ1 test galaxies of a GZ1-only model
    stay test galaxies when GZ2 joins, and a model fine-tuned from it never meets in its test
    part a galaxy it trained on before."""
    key = ["source", "objid"] if "source" in kept.columns else ["objid"]
    if kept.duplicated(subset=key).any():
        raise CatalogueError("a galaxy id appears twice in the selection; cannot split safely")
    out = kept.reset_index(drop=True).copy()
    groups = (out.groupby("source", sort=False).groups.values() if "source" in out.columns
              else [out.index])
    for k in range(n_splits):
        column = pd.Series("", index=out.index, dtype=object)
        for rows in groups:
            column.loc[rows] = assign_split(out.loc[rows, "label"], seed + k, val_fraction,
                                            test_fraction)
        out[f"split_{k}"] = column
    return out


def split_columns(table: pd.DataFrame) -> list[str]:
    return sorted((c for c in table.columns if c.startswith("split_")),
                  key=lambda c: int(c.split("_")[1]))
