"""The evaluation report of one model on one split part: metrics before and after temperature
scaling, the curves behind them and example galaxies, stored as ``report.json`` plus PNG plots
so it can be read without this code (the PNGs) or redrawn by the dashboard (the JSON)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galaxy_core.config import CLASSES
from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.breakdown import breakdown
from galaxy_core.evaluate.calibration import expected_calibration_error, reliability_bins
from galaxy_core.evaluate.charts import (MARKERS, REFERENCE, Heatmap, LineChart,
                                         confusion_chart, coverage_chart, reliability_chart,
                                         roc_chart)
from galaxy_core.evaluate.metrics import (POSITIVE, accuracy_coverage, bootstrap_intervals,
                                          classification_metrics, coverage_at_accuracy,
                                          roc_curve_points, selective_summary)
from galaxy_core.io_utils import atomic_write, read_json, write_json
from galaxy_core.model.calibrated import calibrated_probabilities
from galaxy_core.model.folder import report_dir

REPORT_FILE = "report.json"
PLOT_FILES = ("confusion_matrix.png", "reliability.png", "roc.png", "coverage.png")


def _probability_block(probs: np.ndarray, labels: np.ndarray,
                       classes: Sequence[str]) -> dict[str, Any]:
    return {"metrics": classification_metrics(labels, probs, classes),
            "ece": expected_calibration_error(probs, labels),
            "reliability": reliability_bins(probs, labels)}


def _example(i: int, probs: np.ndarray, labels: np.ndarray, ids: Sequence[str],
             images: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    pred = int(probs[i].argmax())
    item: dict[str, Any] = {"objid": str(ids[i]), "image": str(images[i]),
                            "true": classes[int(labels[i])], "predicted": classes[pred]}
    for c, name in enumerate(classes):
        item[f"p_{name}"] = float(probs[i, c])
    item["confidence"] = float(probs[i, pred])
    return item


def build_report(logits: np.ndarray, labels: np.ndarray, ids: list[str], images: list[str],
                 temperature: float, logit_bias: np.ndarray | None = None,
                 classes: Sequence[str] = CLASSES, n_examples: int = 24,
                 sources: Sequence[str] | None = None,
                 subclasses: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything the model card and dashboard show about one evaluation set.

    ``logit_bias`` is added first because it undoes class-weighted training (a prior shift);
    ``temperature`` is applied after it, as it was fitted on bias-corrected logits. Example
    lists and per-galaxy predictions use the calibrated probabilities, which are what users see.
    ``sources`` and ``subclasses`` (one per galaxy, when the prepared table has them) add the
    per-survey and per-sub-class breakdown, and each galaxy's row carries them.
    """
    z = np.asarray(logits, dtype=float)
    y = np.asarray(labels).astype(int).ravel()
    n_classes = len(classes)
    if z.ndim != 2 or z.shape[1] != n_classes:
        raise ValueError(f"logits must have shape (N, {n_classes}), got {z.shape}")
    if not len(z) == len(y) == len(ids) == len(images):
        raise ValueError(f"lengths differ: {len(z)} logits, {len(y)} labels, {len(ids)} ids, "
                         f"{len(images)} images")
    bias = np.zeros(n_classes) if logit_bias is None else np.asarray(logit_bias, dtype=float)
    if bias.shape != (n_classes,):
        raise ValueError(f"logit_bias must have shape ({n_classes},), got {bias.shape}")
    raw = calibrated_probabilities(z, bias, 1.0)
    cal = calibrated_probabilities(z, bias, temperature)

    pred = cal.argmax(axis=1)
    confidence = cal.max(axis=1)
    wrong = np.flatnonzero(pred != y)
    right = np.flatnonzero(pred == y)
    # Stable sorts keep input order among ties, so reports are reproducible.
    failures = wrong[np.argsort(-confidence[wrong], kind="stable")][:n_examples]
    uncertain = right[np.argsort(confidence[right], kind="stable")][:n_examples]
    positive = f"p_{classes[POSITIVE]}"

    return {
        "classes": list(classes),
        "n": int(len(y)),
        "temperature": float(temperature),
        "logit_bias": [float(b) for b in bias],
        "uncalibrated": _probability_block(raw, y, classes),
        "calibrated": {**_probability_block(cal, y, classes),
                       "ci95": bootstrap_intervals(y, cal) if len(y) > 1 else {}},
        "roc": roc_curve_points(y, cal),
        "selective": selective_summary(y, cal),
        "confident_failures": [_example(int(i), cal, y, ids, images, classes) for i in failures],
        "uncertain_successes": [_example(int(i), cal, y, ids, images, classes)
                                for i in uncertain],
        "predictions": [{"objid": str(ids[i]), "image": str(images[i]),
                         "true": classes[int(y[i])], "predicted": classes[int(pred[i])],
                         positive: float(cal[i, POSITIVE]),
                         **({"source": str(sources[i])} if sources is not None else {}),
                         **({"subclass": str(subclasses[i])} if subclasses is not None else {})}
                        for i in range(len(y))],
        **breakdown(y, cal, sources, subclasses, classes),
    }


def headline_metrics(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ``metrics`` block of model.json from the val and test reports: calibrated test
    metrics with ECE before and after scaling, and calibrated validation metrics."""
    test = reports["test"]
    return {"test": {**test["calibrated"]["metrics"], "ece": test["calibrated"]["ece"],
                     "ece_uncalibrated": test["uncalibrated"]["ece"]},
            "val": reports["val"]["calibrated"]["metrics"]}


FIGURE_SIZES = {"heatmap": (4.2, 3.6), "lines": (4.6, 4.2)}
"""PNG size in inches (at 110 dpi) of each kind of chart."""


def save_figure(fig: Any, path: Path) -> None:
    """Render to memory first so the atomic write never leaves a half-written PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def _heatmap_png(chart: Heatmap, path: Path) -> None:
    """Counts in the cells, light text on the darker half of the colour scale."""
    from matplotlib.figure import Figure

    cm = np.asarray(chart.counts)
    fig = Figure(figsize=FIGURE_SIZES["heatmap"])
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    threshold = cm.max() / 2 if cm.size else 0
    for (r, c), value in np.ndenumerate(cm):
        ax.text(c, r, str(value), ha="center", va="center",
                color="white" if value > threshold else "black")
    ax.set_xticks(range(len(chart.x_categories)), chart.x_categories)
    ax.set_yticks(range(len(chart.y_categories)), chart.y_categories)
    ax.set_xlabel(chart.x.label)
    ax.set_ylabel(chart.y.label)
    ax.set_title(chart.title)
    save_figure(fig, path)


def _line_png(chart: LineChart, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZES["lines"])
    ax = fig.add_subplot()
    for series in chart.series:
        if series.style == REFERENCE:
            ax.plot(series.x, series.y, color="grey", linestyle="--", label=series.name)
        elif series.style == MARKERS:
            ax.plot(series.x, series.y, "o", label=series.name)
        elif series.marker:
            ax.plot(series.x, series.y, marker=series.marker, label=series.name)
        else:
            ax.plot(series.x, series.y, label=series.name)
    if chart.x.range:
        ax.set_xlim(*chart.x.range)
    if chart.y.range:
        ax.set_ylim(*chart.y.range)
    ax.set_xlabel(chart.x.label)
    ax.set_ylabel(chart.y.label)
    ax.set_title(chart.title)
    ax.legend(loc=chart.legend, fontsize="small")
    save_figure(fig, path)


def _stored_predictions(report: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Labels and calibrated (N, 2) probabilities from the per-galaxy rows of a two-class
    report, which store only the positive class's probability."""
    rows, classes = report.get("predictions") or [], report.get("classes") or list(CLASSES)
    if not rows or len(classes) != 2:
        return None
    p = np.array([r[f"p_{classes[POSITIVE]}"] for r in rows], dtype=float)
    y = np.array([classes.index(r["true"]) for r in rows])
    return y, np.column_stack([1 - p, p])


def selective_block(report: dict[str, Any]) -> dict[str, Any] | None:
    """The report's accuracy-coverage block; for a report written before it existed, rebuilt
    from the stored per-galaxy predictions (which hold everything it needs)."""
    if report.get("selective"):
        return report["selective"]
    stored = _stored_predictions(report)
    return selective_summary(*stored) if stored else None


def accepted_at(report: dict[str, Any], threshold: float) -> dict[str, float] | None:
    """What accepting ``p >= threshold`` keeps on this report's galaxies, and how accurate the
    kept answers are: the honest way to quote a threshold is to choose it on validation and
    apply it here. None when nothing would be kept or the report has no predictions."""
    stored = _stored_predictions(report)
    if stored is None:
        return None
    y, probs = stored
    keep = probs.max(axis=1) >= threshold
    if not keep.any():
        return None
    right = probs.argmax(axis=1) == y
    return {"coverage": float(keep.mean()), "accuracy": float(right[keep].mean()),
            "threshold": float(threshold)}


def validation_threshold(model_dir: Path, target: float) -> float:
    """The lowest confidence at which a model's validation answers are still ``target``
    accurate: the threshold a survey applies to new galaxies to keep only confident answers.
    Read from validation, never test, so the test figures stay an honest check of it."""
    report = load_report(report_dir(model_dir, "val"))
    if report is None:
        raise GalaxyError(f"{model_dir} has no validation report to choose a threshold from; "
                          f"run: galaxy evaluate --model {model_dir} --part val")
    stored = _stored_predictions(report)
    curve = accuracy_coverage(*stored, max_points=None) if stored else None
    hit = coverage_at_accuracy(curve, target) if curve else None
    if hit is None:
        raise GalaxyError(f"no confidence threshold reaches {target:.1%} accuracy on this "
                          "model's validation set; choose a lower target")
    return hit["threshold"]


def report_charts(report: dict[str, Any]) -> tuple[Heatmap, LineChart, LineChart, LineChart]:
    """The report's four charts, in the order of PLOT_FILES: confusion matrix, reliability,
    ROC and accuracy against coverage."""
    return (confusion_chart(report), reliability_chart(report), roc_chart(report),
            coverage_chart(selective_block(report)))


def write_report(folder: Path, report: dict[str, Any]) -> None:
    """Write ``report.json`` and the PNG plots into ``folder``.

    Uses matplotlib's object API (Figure with the Agg canvas) rather than pyplot: no display is
    needed, no global backend is switched for the caller, and nothing accumulates in pyplot's
    figure registry inside a long-running app.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / REPORT_FILE, report)
    confusion, *lines = report_charts(report)
    _heatmap_png(confusion, folder / PLOT_FILES[0])
    for chart, name in zip(lines, PLOT_FILES[1:]):
        _line_png(chart, folder / name)


def load_report(folder: Path) -> dict[str, Any] | None:
    """The stored report, or None when the folder has none (e.g. a model without one)."""
    path = Path(folder) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GalaxyError(f"Evaluation report {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise GalaxyError(f"Evaluation report {path} is not a JSON object.")
    return data
