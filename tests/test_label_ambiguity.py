"""benchmarks/label_ambiguity.py and ``literature.without_subclasses``: GZ2 figures with and
without the sub-classes whose two-class label is ambiguous, on a real report (``build_report``)
of galaxies with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.label_ambiguity import AMBIGUOUS, gz2_subclasses
from galaxy_core.evaluate.report import build_report
from galaxy_core.release.literature import without_subclasses

# (source, sub-class, true class, p(spiral)): a p above 0.5 is answered spiral
ROWS = ([("gz2", "smooth, round", "elliptical", 0.1)] * 6
        + [("gz2", "smooth, cigar-shaped", "elliptical", 0.9)] * 2
        + [("gz2", "smooth", "elliptical", 0.8), ("gz2", "smooth", "elliptical", 0.2)]
        + [("gz2", "disk, spiral", "spiral", 0.9)] * 3
        + [("gz2", "disk, spiral", "spiral", 0.3)]
        + [("gz1", "elliptical", "elliptical", 0.9)] * 5)  # not GZ2


def _report() -> dict:
    labels = np.array([0 if true == "elliptical" else 1 for _, _, true, _ in ROWS])
    logits = np.array([[0.0, math.log(p / (1 - p))] for *_, p in ROWS])
    return build_report(logits, labels, [str(i) for i in range(len(ROWS))],
                        [f"{s}/{i}.jpg" for i, (s, *_) in enumerate(ROWS)], 1.0,
                        sources=[r[0] for r in ROWS], subclasses=[r[1] for r in ROWS])


def test_all_gz2_rows_count_and_gz1_rows_do_not():
    f = without_subclasses(_report(), "gz2", ())
    assert f["n"] == 14
    assert f["recall_elliptical"] == pytest.approx(7 / 10)
    assert f["recall_spiral"] == pytest.approx(3 / 4)
    assert f["balanced_accuracy"] == pytest.approx((0.7 + 0.75) / 2)
    assert f["accuracy"] == pytest.approx(10 / 14)


def test_leaving_out_the_ambiguous_subclasses_changes_only_their_rows():
    f = without_subclasses(_report(), "gz2", AMBIGUOUS)
    assert f["n"] == 10 and f["recall_elliptical"] == pytest.approx(1.0)
    assert f["recall_spiral"] == pytest.approx(3 / 4)  # the spirals are all still there


def test_by_subclass():
    table = gz2_subclasses(_report())
    assert set(table) == {"smooth, round", "smooth, cigar-shaped", "smooth", "disk, spiral"}
    assert table["smooth"]["n"] == 2 and table["smooth"]["accuracy"] == 0.5
    assert table["smooth"]["mean_p_spiral"] == pytest.approx(0.5)
    assert table["smooth, cigar-shaped"]["accuracy"] == 0.0
