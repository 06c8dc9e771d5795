"""The report's charts described once (galaxy_core.evaluate.charts) and drawn twice: as PNGs by
evaluate.report (matplotlib) and interactively by dashboard/charts.py (plotly), plus the
dashboard-only figures."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard import charts as figures
from galaxy_core.evaluate import charts
from galaxy_core.evaluate.report import build_report, report_charts


def _report(n: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    signal = (2 * labels - 1) * 1.5 + rng.normal(0, 1.5, n)
    logits = np.column_stack([-signal, signal]) * 2.0
    return build_report(logits, labels, [f"g{i}" for i in range(n)],
                        [f"img/{i}.jpg" for i in range(n)], 2.0)


# --- the descriptions ------------------------------------------------------------------------
def test_descriptions_carry_the_report_facts() -> None:
    report = _report()
    confusion, reliability, roc, coverage = report_charts(report)
    assert isinstance(confusion, charts.Heatmap)
    assert confusion.counts == report["calibrated"]["metrics"]["confusion_matrix"]
    assert (confusion.x.label, confusion.y.label) == ("Predicted", "True")
    assert reliability.title == "Reliability (T = 2.00)"
    names = [s.name for s in reliability.series]
    assert names[0] == "Perfect calibration"
    assert f"{report['calibrated']['ece']:.3f}" in names[2]
    non_empty = sum(1 for c in report["calibrated"]["reliability"]["count"] if c)
    assert len(reliability.series[2].x) == len(reliability.series[2].extra) == non_empty
    assert roc.title == "ROC (spiral positive)"
    assert roc.series[1].x == report["roc"]["fpr"]
    assert roc.series[1].name == f"AUC {report['calibrated']['metrics']['roc_auc']:.3f}"
    hits = [h for h in report["selective"]["at_accuracy"].values() if h]
    assert len(coverage.series) == 1 + len(hits)
    assert all(s.style == charts.MARKERS for s in coverage.series[1:])


def test_descriptions_of_degenerate_reports() -> None:
    report = _report()
    report["calibrated"]["metrics"]["roc_auc"] = None
    assert charts.roc_chart(report).series[1].name == "AUC undefined"
    empty = charts.coverage_chart(None)
    assert len(empty.series) == 1 and empty.series[0].x == []


def test_row_fractions() -> None:
    heat = charts.Heatmap("t", charts.Axis("x"), charts.Axis("y"), ["a", "b"], ["a", "b"],
                          [[8, 2], [0, 0]])
    np.testing.assert_allclose(heat.row_fractions(), [[0.8, 0.2], [0.0, 0.0]])


# --- the plotly renderer ---------------------------------------------------------------------
def test_hover_template() -> None:
    assert (figures.hover_template("FPR {x:.3f}\n{extra} galaxies\nTrue {y}")
            == "FPR %{x:.3f}<br>%{customdata} galaxies<br>True %{y}<extra></extra>")


def test_confusion_matrix_figure() -> None:
    report = {"classes": ["elliptical", "spiral"],
              "calibrated": {"metrics": {"confusion_matrix": [[8, 2], [1, 3]]}}}
    fig = figures.confusion_matrix_figure(report)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    assert fig.layout.xaxis.title.text == "Predicted" and fig.layout.yaxis.title.text == "True"
    norm = figures.confusion_matrix_figure(report, normalise=True)
    np.testing.assert_allclose(np.asarray(norm.data[0].z), [[0.8, 0.2], [0.25, 0.75]])
    assert norm.data[0].text[0][0] == "80.0%<br>(8)"


def test_report_figures_follow_the_descriptions() -> None:
    report = _report()
    rel = figures.reliability_figure(report)
    assert len(rel.data) == 4, "three reliability lines, then the bin counts"
    assert [t.name for t in rel.data[:3]] == [s.name for s in
                                              charts.reliability_chart(report).series]
    non_empty = sum(1 for c in report["calibrated"]["reliability"]["count"] if c)
    assert len(rel.data[2].x) == non_empty
    assert list(rel.layout.yaxis.range) == [0, figures.PROBABILITY_TOP]
    bars = rel.data[3]
    assert isinstance(bars, go.Bar) and bars.yaxis == "y2"
    assert list(bars.y) == report["calibrated"]["reliability"]["count"]
    assert sum(bars.y) == report["n"]
    assert rel.layout.margin.t <= 20, "no blank title band above the chart"
    roc = figures.roc_figure(report)
    assert len(roc.data) == 2 and len(roc.data[1].x) == len(report["roc"]["fpr"])
    empty = {**report, "roc": {"fpr": [], "tpr": [], "thresholds": []}}
    assert len(figures.roc_figure(empty).data) == 2


def test_coverage_figure_marks_each_target_reached() -> None:
    block = _report()["selective"]
    fig = figures.coverage_figure(block)
    hits = [h for h in block["at_accuracy"].values() if h]
    assert len(fig.data) == 1 + len(hits)
    assert list(fig.data[0].x) == block["curve"]["coverage"]
    assert [trace.x[0] for trace in fig.data[1:]] == [h["coverage"] for h in hits]
    assert (fig.layout.legend.xanchor, fig.layout.legend.yanchor) == ("left", "bottom")
    assert len(figures.coverage_figure({"curve": {}, "at_accuracy": {"0.95": None}}).data) == 1


# --- dashboard-only figures ------------------------------------------------------------------
def test_training_curves_figure() -> None:
    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5 + e / 20,
             "val_macro_f1": 0.4 + e / 20, "lr": 1e-3} for e in range(1, 6)]
    fig = figures.training_curves_figure(rows)
    assert len(fig.data) == 4
    assert list(fig.data[0].y) == pytest.approx([r["train_loss"] for r in rows])
    partial = figures.training_curves_figure([{"epoch": 1, "train_loss": 0.7}])
    assert len(partial.data) == 1


def test_probability_splits_and_funnel_figures() -> None:
    prob = figures.probability_figure({"elliptical": 0.2, "spiral": 0.8})
    assert len(prob.data) == 1 and prob.data[0].orientation == "h"
    assert list(prob.data[0].x) == [0.2, 0.8]
    agg = {"accuracy": {"mean": 0.9, "std": 0.01, "values": [0.89, 0.91]},
           "macro_f1": {"mean": 0.85, "std": 0.02, "values": [0.83, 0.87]}}
    splits = figures.splits_figure(agg)
    assert len(splits.data) == 4  # per metric: the split values, then mean ± std
    assert [list(splits.data[i].y) for i in (0, 2)] == [[0.89, 0.91], [0.83, 0.87]]
    assert [list(splits.data[i].error_y.array) for i in (1, 3)] == [[0.01], [0.02]]
    assert [splits.data[i].y[0] for i in (1, 3)] == [0.9, 0.85]
    assert splits.layout.margin.t <= 40
    funnel = figures.funnel_figure({"rows_read": 6064,
                                    "dropped": {"uncertain": 171, "image missing": 0},
                                    "kept_per_class": {"elliptical": 4345, "spiral": 1548}})
    assert len(funnel.data) == 1 and isinstance(funnel.data[0], go.Funnel)
    assert list(funnel.data[0].x) == [6064, 5893, 5893, 5893]


def _ticks(low: float, high: float, tick_format: str, nticks: int = 6) -> list[str]:
    """The labels plotly draws on a linear axis: a step of 1, 2 or 5 times a power of ten, at
    least (high - low) / nticks, formatted with ``tick_format``."""
    import math

    rough = (high - low) / nticks
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough - 1e-15)
    first = math.ceil(low / step - 1e-9)
    values = [(first + k) * step for k in range(int((high - low) / step) + 2)]
    return [format(v, tick_format[1:]) for v in values if low - 1e-12 <= v <= high + 1e-12]


@pytest.mark.parametrize("name, block", [
    # The shipped model's splits summary: three identical accuracies (std 0) and ROC AUCs
    # within 0.0014 of each other.
    ("accuracy", {"mean": 0.8914, "std": 0.0, "values": [0.8914, 0.8914, 0.8914]}),
    ("roc_auc", {"mean": 0.95734, "std": 0.000685, "values": [0.95716, 0.95809, 0.95676]}),
    ("macro_f1", {"mean": 0.858, "std": 0.0072, "values": [0.864, 0.8597, 0.8501]}),
    ("ece", {"mean": 0.0318, "std": 0.0067, "values": [0.0243, 0.034, 0.0371]}),
    ("perfect", {"mean": 0.9997, "std": 0.0005, "values": [0.9995, 1.0, 1.0]}),
])
def test_splits_panels_stay_in_range_with_distinct_ticks(name, block) -> None:
    """Issue 14: the accuracy axis of the spread-across-splits chart ran 0-1.5 (identical
    values), and the ROC AUC ticks repeated (0.957, 0.957, 0.958)."""
    fig = figures.splits_figure({name: block})
    axis = fig.layout.yaxis
    low, high = axis.range
    assert 0 <= low < high <= 1
    assert high - low >= figures.MIN_SPAN - 1e-12
    assert all(low <= v <= high for v in block["values"])
    assert low <= max(block["mean"] - block["std"], 0)
    assert min(block["mean"] + block["std"], 1) <= high + 1e-12
    labels = _ticks(low, high, axis.tickformat, axis.nticks)
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
