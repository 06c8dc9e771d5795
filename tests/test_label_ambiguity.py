"""benchmarks/label_ambiguity.py: GZ2 figures with and without the sub-classes whose two-class
label is ambiguous, on prediction records with known answers."""

from __future__ import annotations

import pytest

from benchmarks.label_ambiguity import AMBIGUOUS, by_subclass, gz2_figures


def _row(subclass: str, true: str, predicted: str, p: float, source: str = "gz2") -> dict:
    return {"source": source, "subclass": subclass, "true": true, "predicted": predicted,
            "p_spiral": p}


ROWS = ([_row("smooth, round", "elliptical", "elliptical", 0.1)] * 6
        + [_row("smooth, cigar-shaped", "elliptical", "spiral", 0.9)] * 2
        + [_row("smooth", "elliptical", "spiral", 0.8),
           _row("smooth", "elliptical", "elliptical", 0.2)]
        + [_row("disk, spiral", "spiral", "spiral", 0.9)] * 3
        + [_row("disk, spiral", "spiral", "elliptical", 0.3)]
        + [_row("elliptical", "elliptical", "spiral", 0.9, source="gz1")] * 5)  # not GZ2


def test_all_gz2_rows_count_and_gz1_rows_do_not():
    f = gz2_figures(ROWS)
    assert f["n"] == 14
    assert f["recall_elliptical"] == pytest.approx(7 / 10)
    assert f["recall_spiral"] == pytest.approx(3 / 4)
    assert f["balanced_accuracy"] == pytest.approx((0.7 + 0.75) / 2)
    assert f["accuracy"] == pytest.approx(10 / 14)


def test_leaving_out_the_ambiguous_subclasses_changes_only_their_rows():
    f = gz2_figures(ROWS, AMBIGUOUS)
    assert f["n"] == 10 and f["recall_elliptical"] == 1.0
    assert f["recall_spiral"] == pytest.approx(3 / 4)  # the spirals are all still there


def test_by_subclass():
    table = by_subclass(ROWS)
    assert set(table) == {"smooth, round", "smooth, cigar-shaped", "smooth", "disk, spiral"}
    assert table["smooth"] == {"n": 2, "right": 0.5, "mean_p_spiral": pytest.approx(0.5)}
    assert table["smooth, cigar-shaped"]["right"] == 0.0
