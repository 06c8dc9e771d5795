"""``galaxy compare``: two models' reports of the same galaxies, paired galaxy by galaxy
(galaxy_core/evaluate/compare.py). Real reports (``build_report``) of galaxies whose answers are
set, so every count is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from galaxy_core.cli import main
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.compare import (
    compare_reports,
    comparison_table,
    mcnemar_p,
    paired_answers,
)
from galaxy_core.evaluate.report import build_report
from galaxy_core.io_utils import write_json

# (source, sub-class, true class); answers are given per model below
GALAXIES = ([("gz1", "elliptical", "elliptical")] * 20 + [("gz1", "edge-on disk", "spiral")] * 10
            + [("gz2", "smooth, round", "elliptical")] * 40
            + [("gz2", "disk, spiral", "spiral")] * 30)


def _report(right: np.ndarray, part: str = "val", order: np.ndarray | None = None,
            labels: list[str] | None = None) -> dict:
    """A report where galaxy i is answered rightly exactly when ``right[i]`` (p 0.9 or 0.1).
    Each distinct report is built once (``build_report``'s bootstrap takes a second or two)."""
    key = (right.tobytes(), None if order is None else order.tobytes(),
           None if labels is None else tuple(labels))
    return {**_built(key, right, order, labels), "part": part, "split": 0}


_BUILT: dict = {}


def _built(key: tuple, right: np.ndarray, order: np.ndarray | None,
           labels: list[str] | None) -> dict:
    if key not in _BUILT:
        _BUILT[key] = _build(right, order, labels)
    return _BUILT[key]


def _build(right: np.ndarray, order: np.ndarray | None, labels: list[str] | None) -> dict:
    true = labels or [g[2] for g in GALAXIES]
    y = np.array([0 if t == "elliptical" else 1 for t in true])
    p = np.where(right == (y == 1), 0.9, 0.1)
    idx = np.arange(len(GALAXIES)) if order is None else order
    logits = np.array([[0.0, math.log(p[i] / (1 - p[i]))] for i in idx])
    return build_report(logits, y[idx], [str(i) for i in idx],
                        [f"{GALAXIES[i][0]}/{i}.jpg" for i in idx], 1.0,
                        sources=[GALAXIES[i][0] for i in idx],
                        subclasses=[GALAXIES[i][1] for i in idx])


def _answers() -> tuple[np.ndarray, np.ndarray]:
    """First model: wrong on 5 GZ2 spirals; second: wrong on 2 GZ1 ellipticals and right on
    those 5 spirals; both wrong on the same 3 GZ1 edge-on disks."""
    first = np.ones(len(GALAXIES), bool)
    second = np.ones(len(GALAXIES), bool)
    spirals = [i for i, g in enumerate(GALAXIES) if g[1] == "disk, spiral"][:5]
    first[spirals] = False
    second[[0, 1]] = False
    edge = [i for i, g in enumerate(GALAXIES) if g[1] == "edge-on disk"][:3]
    first[edge] = second[edge] = False
    return first, second


@pytest.mark.parametrize("only_first,only_second", [(0, 0), (0, 7), (3, 12), (40, 60), (9, 9)])
def test_mcnemar_is_the_exact_two_sided_binomial_test(only_first, only_second):
    n = only_first + only_second
    expected = 1.0 if n == 0 else binomtest(only_first, n, 0.5).pvalue
    assert mcnemar_p(only_first, only_second) == pytest.approx(expected)
    assert mcnemar_p(only_second, only_first) == pytest.approx(expected)


def test_galaxies_only_one_model_gets_right_are_counted_per_group():
    first, second = _answers()
    rows = {r.group: r for r in compare_reports(_report(first), _report(second))}
    assert list(rows) == ["all", "gz1", "gz2", "gz1: edge-on disk", "gz1: elliptical",
                          "gz2: disk, spiral", "gz2: smooth, round"]
    everything = rows["all"]
    assert (everything.n, everything.only_first, everything.only_second) == (100, 2, 5)
    assert everything.accuracy == pytest.approx((92 / 100, 95 / 100))
    # ellipticals: 60, all right first, 58 second; spirals: 40, 32 right first, 37 second
    assert everything.balanced == pytest.approx(((1 + 32 / 40) / 2, (58 / 60 + 37 / 40) / 2))
    assert everything.p_value == pytest.approx(binomtest(2, 7, 0.5).pvalue)
    assert (rows["gz1"].only_first, rows["gz1"].only_second) == (2, 0)
    assert (rows["gz2"].only_first, rows["gz2"].only_second) == (0, 5)
    edge = rows["gz1: edge-on disk"]  # both wrong on the same three: no disagreement at all
    assert (edge.only_first, edge.only_second, edge.p_value) == (0, 0, 1.0)
    assert edge.accuracy == pytest.approx((0.7, 0.7))
    assert edge.balanced is None and edge.balanced_gain is None
    assert rows["gz2: disk, spiral"].accuracy == pytest.approx((25 / 30, 1.0))


def test_a_lopsided_split_is_called_and_an_even_one_is_not():
    first = np.ones(len(GALAXIES), bool)
    second = first.copy()
    first[-20:] = False  # 20 GZ2 spirals right only by the second model
    rows = {r.group: r for r in compare_reports(_report(first), _report(second))}
    assert rows["all"].better == 1 and rows["all"].verdict(("old", "new")) == "new better"
    assert rows["gz1"].better is None and rows["gz1"].verdict() == "no clear difference"
    rows = {r.group: r for r in compare_reports(_report(second), _report(first))}
    assert rows["all"].verdict() == "first better"
    low, high = rows["all"].balanced_gain
    assert low <= -0.25 <= high < 0  # spiral recall 1 -> 0.5: balanced -0.25, never a gain


def test_the_bootstrap_interval_holds_the_observed_gain_and_is_zero_for_equal_answers():
    first, second = _answers()
    r = compare_reports(_report(first), _report(second))[0]
    observed = r.balanced[1] - r.balanced[0]
    assert r.balanced_gain[0] <= observed <= r.balanced_gain[1]
    same = compare_reports(_report(first), _report(first))[0]
    assert same.balanced_gain == (0.0, 0.0) and same.p_value == 1.0


def test_galaxies_are_paired_by_image_whatever_the_order():
    first, second = _answers()
    shuffled = np.random.default_rng(1).permutation(len(GALAXIES))
    a = compare_reports(_report(first), _report(second))
    b = compare_reports(_report(first), _report(second, order=shuffled))
    assert [(r.group, r.only_first, r.only_second) for r in a] == \
        [(r.group, r.only_first, r.only_second) for r in b]


def test_reports_of_other_galaxies_are_refused_with_the_reason():
    first, second = _answers()
    with pytest.raises(GalaxyError, match="different parts"):
        paired_answers(_report(first), _report(second, part="test"))
    with pytest.raises(GalaxyError, match="different galaxies"):
        paired_answers(_report(first), _report(second, order=np.arange(len(GALAXIES) - 1)))
    flipped = [g[2] for g in GALAXIES]
    flipped[0] = "spiral"
    with pytest.raises(GalaxyError, match="different true classes"):
        paired_answers(_report(first), _report(second, labels=flipped))
    with pytest.raises(GalaxyError, match="no per-galaxy answers"):
        paired_answers(_report(first), {**_report(second), "predictions": []})


def test_the_table_has_one_line_per_group():
    first, second = _answers()
    rows = compare_reports(_report(first), _report(second))
    lines = comparison_table(rows, ("old", "new")).splitlines()
    assert len(lines) == 2 + len(rows)
    assert "accuracy old -> new" in lines[0]
    assert lines[2].startswith("| all | 100 | 92.0% -> 95.0% |")


def test_cli_compares_model_folders_and_says_what_is_missing(tmp_path, capsys):
    first, second = _answers()
    for name, right in (("old", first), ("new", second)):
        write_json(tmp_path / name / "report_val" / "report.json", _report(right))
    figure = tmp_path / "compare.png"
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--names", "old,new",
                 "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "the same 100 galaxies, paired" in out
    assert "| gz2: disk, spiral | 30 | 83.3% -> 100.0% |" in out
    assert "accuracy old -> new" in out
    assert figure.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit):
        main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--names", "old"])
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--part", "test"]) == 2
    err = capsys.readouterr().err
    assert "no test report in" in err and "galaxy evaluate --model" in err
    # report folders given directly: their own part is what is said, and test is warned about
    for name, right in (("old", first), ("new", second)):
        write_json(tmp_path / name / "report_test" / "report.json", _report(right, part="test"))
    assert main(["compare", str(tmp_path / "old" / "report_test"),
                 str(tmp_path / "new" / "report_test")]) == 0
    out = capsys.readouterr().out
    assert "test part of split 0" in out and "choose on val" in out
