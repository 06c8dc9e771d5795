"""What each chart of an evaluation report shows, as plain data: one description per chart, drawn
twice, as a PNG beside ``report.json`` (matplotlib, in ``evaluate.report``) and interactively in
the dashboard (``dashboard/charts.py``). The facts (numbers, titles, axis labels,
series names, hover extras) live here only; each renderer keeps its own look (sizes, colours,
marker shapes, legend placement).

Nothing here draws, so the library needs no plotting package to describe a chart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from galaxy_core.evaluate.metrics import POSITIVE

LINE, MARKERS, REFERENCE = "line", "markers", "reference"
"""Series styles: a line (with markers where ``Series.marker`` is set), points only, or a dashed
grey guide (the diagonal of perfect calibration, the chance line)."""


@dataclass(frozen=True)
class Axis:
    label: str
    range: tuple[float, float] | None = None
    """Shown interval; None lets the renderer fit the data."""
    tick_format: str | None = None
    """d3-style tick format (``".0%"``) for interactive charts; the PNGs keep plain ticks."""


@dataclass(frozen=True)
class Series:
    x: list[Any]
    y: list[Any]
    name: str
    style: str = LINE
    marker: str | None = None
    """Marker shape in matplotlib's letters (``"o"``, ``"s"``) for a line that marks its points."""
    extra: list[Any] | None = None
    """One value per point that the hover text shows beside x and y (``{extra}`` in ``hover``)."""
    hover: str | None = None
    """Hover text, lines separated by newlines, with ``{x}``, ``{y}`` and ``{extra}`` fields in
    Python format syntax (``"FPR {x:.3f}"``)."""


@dataclass(frozen=True)
class LineChart:
    title: str
    x: Axis
    y: Axis
    series: list[Series] = field(default_factory=list)
    legend: str = "best"
    """Where the legend fits inside the axes without hiding the data (matplotlib's ``loc``)."""


@dataclass(frozen=True)
class Heatmap:
    """A matrix of counts, rows ``y_categories`` from the top, columns ``x_categories``."""

    title: str
    x: Axis
    y: Axis
    x_categories: list[str]
    y_categories: list[str]
    counts: list[list[int]]
    hover: str = ""
    """Hover text with ``{x}``, ``{y}`` and ``{text}`` (the cell's text) fields."""

    def row_fractions(self) -> np.ndarray:
        """Each row divided by its total (recall per class for a confusion matrix); an empty
        row stays zero."""
        counts = np.asarray(self.counts, dtype=float)
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def _chance_line(name: str) -> Series:
    return Series([0, 1], [0, 1], name, style=REFERENCE)


def confusion_chart(report: dict[str, Any]) -> Heatmap:
    """Calibrated confusion matrix: rows the true class, columns the predicted one."""
    classes = list(report["classes"])
    return Heatmap(title="Confusion matrix (calibrated)", x=Axis("Predicted"), y=Axis("True"),
                   x_categories=classes, y_categories=classes,
                   counts=report["calibrated"]["metrics"]["confusion_matrix"],
                   hover="True {y}\nPredicted {x}\n{text}")


def _bin_points(bins: dict[str, Any]) -> tuple[list[float], list[float], list[int]]:
    """Non-empty bins only: an empty bin has no accuracy to draw."""
    rows = [(c, a, n) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"])
            if c is not None and a is not None]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def reliability_chart(report: dict[str, Any]) -> LineChart:
    """Reliability diagram before and after temperature scaling, with the diagonal that a
    perfectly calibrated model would follow; ECE is in each series name."""
    series = [_chance_line("Perfect calibration")]
    for key, label, marker in (("uncalibrated", "Before", "o"), ("calibrated", "After", "s")):
        xs, ys, counts = _bin_points(report[key]["reliability"])
        series.append(Series(xs, ys, f"{label} (ECE {report[key]['ece']:.3f})", marker=marker,
                             extra=counts, hover="confidence {x:.3f}\naccuracy {y:.3f}\n"
                                                 "{extra} galaxies"))
    return LineChart(title=f"Reliability (T = {report['temperature']:.2f})",
                     x=Axis("Confidence", (0, 1)), y=Axis("Accuracy", (0, 1)), series=series,
                     legend="upper left")


def roc_chart(report: dict[str, Any]) -> LineChart:
    """ROC curve of the positive class with the chance line."""
    roc = report.get("roc") or {}
    auc = report["calibrated"]["metrics"].get("roc_auc")
    return LineChart(
        title=f"ROC ({report['classes'][POSITIVE]} positive)",
        x=Axis("False positive rate", (0, 1)), y=Axis("True positive rate", (0, 1.01)),
        series=[_chance_line("Chance"),
                Series(list(roc.get("fpr", [])), list(roc.get("tpr", [])),
                       f"AUC {auc:.3f}" if auc is not None else "AUC undefined",
                       extra=list(roc.get("thresholds", [])),
                       hover="FPR {x:.3f}\nTPR {y:.3f}\nthreshold {extra:.3f}")],
        legend="lower right")


def coverage_chart(selective: dict[str, Any] | None) -> LineChart:
    """Accuracy of the accepted answers against the fraction accepted, most confident first,
    with a point where each target accuracy is reached. ``selective`` is the report's
    accuracy-coverage block (``evaluate.report.selective_block``); None draws empty axes."""
    block = selective or {}
    curve = block.get("curve") or {}
    series = [Series(list(curve.get("coverage", [])), list(curve.get("accuracy", [])),
                     "Most confident first", extra=list(curve.get("threshold", [])),
                     hover="accept p ≥ {extra:.3f}\nkeeps {x:.1%}\naccuracy {y:.1%}")]
    for target, hit in (block.get("at_accuracy") or {}).items():
        if hit:
            series.append(Series(
                [hit["coverage"]], [hit["accuracy"]],
                f"{float(target):.0%}: keep {hit['coverage']:.0%} (p ≥ {hit['threshold']:.2f})",
                style=MARKERS,
                hover=f"accept p ≥ {hit['threshold']:.3f}\nkeeps {hit['coverage']:.1%}"))
    return LineChart(title="Accuracy against coverage",
                     x=Axis("Fraction of galaxies accepted", (0, 1.01), tick_format=".0%"),
                     y=Axis("Accuracy of the accepted", tick_format=".0%"), series=series,
                     legend="lower left")
