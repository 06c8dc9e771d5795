"""The stratified draw behind every split: it must give exactly the draws scikit-learn's
``train_test_split(..., stratify=...)`` gave before the project stopped importing it for
splitting, or every folder prepared again would get other train/validation/test parts (and
every figure measured on a test part would move)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from galaxy_core.data.splits import assign_split, stratified_draw
from galaxy_core.errors import CatalogueError


def _cases() -> list[tuple[np.ndarray, float, int]]:
    """Label arrays of many sizes and balances, two and three classes, equal class counts
    (ties in the rounding, which the generator breaks), with the project's fractions."""
    rng = np.random.default_rng(7)
    cases = []
    for n in (6, 7, 10, 21, 33, 100, 257, 1000, 5829):
        for balance in (0.5, 0.26, 0.1):
            labels = np.where(rng.random(n) < balance, "spiral", "elliptical").astype(object)
            labels[:2], labels[2:4] = "spiral", "elliptical"  # both classes, twice at least
            for fraction in (0.15, 0.15 / 0.85, 0.2, 0.5):
                cases.append((labels, fraction, int(rng.integers(0, 10_000))))
    for n in (12, 30, 90):  # equal counts: remainders tie
        cases.append((np.repeat(np.array(["a", "b", "c"], dtype=object), n // 3), 0.15, 3))
        cases.append((np.repeat(np.array(["elliptical", "spiral"], dtype=object), n // 2), 0.25, 11))
    return cases


def test_draws_are_scikit_learns():
    compared = 0
    for labels, fraction, seed in _cases():
        positions = np.arange(len(labels))
        try:
            want = train_test_split(positions, test_size=fraction, stratify=labels,
                                    random_state=seed)
        except ValueError:  # too few to split: we refuse the same cases, in one line
            with pytest.raises(CatalogueError, match="too few galaxies to split"):
                stratified_draw(labels, fraction, seed)
            continue
        got = stratified_draw(labels, fraction, seed)
        assert [list(g) for g in got] == [list(w) for w in want], (len(labels), fraction, seed)
        compared += 1
    assert compared > 100


def test_assign_split_is_the_two_step_draw_of_before():
    """The whole split of a table as the code before did it, with scikit-learn, step by step."""
    rng = np.random.default_rng(1)
    labels = pd.Series(np.where(rng.random(3000) < 0.27, "spiral", "elliptical"),
                       index=rng.permutation(10_000)[:3000])
    for seed in (42, 43, 44):
        rest, test = train_test_split(labels.index.to_numpy(), test_size=0.15, stratify=labels,
                                      random_state=seed)
        train, val = train_test_split(rest, test_size=0.15 / 0.85, stratify=labels.loc[rest],
                                      random_state=seed + 10_000)
        got = assign_split(labels, seed, 0.15, 0.15)
        assert set(got[got == "test"].index) == set(test)
        assert set(got[got == "val"].index) == set(val)
        assert set(got[got == "train"].index) == set(train)


def test_prepare_imports_no_scikit_learn():
    """Half a second of start-up for a 20 ms draw: galaxy prepare must not pay it."""
    import subprocess
    import sys

    code = ("import sys, galaxy_core.data.prepare; "
            "print(any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
