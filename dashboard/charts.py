"""Plotly figures for the dashboard, built only from the plain dicts stored in reports, model
folders and training logs, so any saved run can be redrawn without loading a model.

The four report charts (confusion matrix, reliability, ROC, accuracy against coverage) are
described once in ``galaxy_core.evaluate.charts`` and drawn here from those descriptions, as the
report's PNGs are drawn from them in ``galaxy_core.evaluate.report``. The figures after them
(training curves, probability bars, splits, funnel) exist only in the dashboard.
"""

from __future__ import annotations

import math
import re
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from galaxy_core.evaluate.charts import (MARKERS, REFERENCE, Axis, Heatmap, LineChart, Series,
                                         confusion_chart, coverage_chart, reliability_chart,
                                         roc_chart)

CELL_COLOURS = [[0.0, "#151c33"], [1.0, "#3d63c9"]]
"""Heatmap colours for the dashboard's dark theme: dark to blue, so light cell text stays
readable."""
PROBABILITY_TOP = 1.02
"""Upper end of a probability axis: a little above 1, so markers at 1 are not cut by the frame."""
MARGIN = dict(t=10, l=10, r=10, b=10)
"""Plot margins: plotly's default leaves 100 px above every chart for a title the pages draw as
a heading instead (the blank band above the charts)."""
BIN_BARS = "rgba(160, 170, 200, 0.55)"
MIN_SPAN = 0.02
"""Smallest y span of a splits panel: identical values (a std of 0) otherwise get plotly's
autorange of about ±0.5 around them, an accuracy axis from 0.4 to 1.4."""

_FIELD = re.compile(r"\{(x|y|extra|text)(:[^}]*)?\}")


def hover_template(text: str) -> str:
    """A description's hover text (Python format fields, newlines) as a plotly hovertemplate."""
    def field(match: re.Match) -> str:
        name = "customdata" if match.group(1) == "extra" else match.group(1)
        return "%{" + name + (match.group(2) or "") + "}"

    return _FIELD.sub(field, text).replace("\n", "<br>") + "<extra></extra>"


def heatmap_figure(chart: Heatmap, normalise: bool = False) -> go.Figure:
    """Annotated heatmap. ``normalise`` divides each row by its total (for a confusion matrix:
    recall per class, which matters when classes are imbalanced); the raw counts stay in the
    cell text either way."""
    counts = [[int(c) for c in row] for row in chart.counts]
    if normalise:
        values = chart.row_fractions()
        text = [[f"{v:.1%}<br>({c})" for v, c in zip(vr, cr)] for vr, cr in zip(values, counts)]
    else:
        values = counts
        text = [[str(c) for c in row] for row in counts]
    fig = go.Figure(go.Heatmap(z=values, x=chart.x_categories, y=chart.y_categories, text=text,
                               texttemplate="%{text}", colorscale=CELL_COLOURS, showscale=False,
                               hovertemplate=hover_template(chart.hover)))
    fig.update_layout(xaxis_title=chart.x.label, yaxis_title=chart.y.label,
                      yaxis_autorange="reversed", margin=dict(t=30, l=10, r=10, b=10))
    return fig


def _trace(series: Series) -> go.Scatter:
    extra: dict[str, Any] = {}
    if series.extra is not None:
        extra["customdata"] = series.extra
    if series.hover:
        extra["hovertemplate"] = hover_template(series.hover)
    if series.style == REFERENCE:
        return go.Scatter(x=series.x, y=series.y, mode="lines", name=series.name,
                          line=dict(dash="dash", color="grey"), **extra)
    if series.style == MARKERS:
        return go.Scatter(x=series.x, y=series.y, mode="markers", marker=dict(size=10),
                          name=series.name, **extra)
    mode = "lines+markers" if series.marker else "lines"
    return go.Scatter(x=series.x, y=series.y, mode=mode, name=series.name, **extra)


def _axis_range(axis: Axis, probability_top: bool) -> list[float] | None:
    if axis.range is None:
        return None
    low, high = axis.range
    return [low, max(high, PROBABILITY_TOP)] if probability_top else [low, high]


def line_figure(chart: LineChart, legend_inside: bool = False) -> go.Figure:
    """Lines and points of a chart description. The title is left to the page's heading; the
    legend sits outside on the right unless ``legend_inside`` puts it in the description's
    corner (for a chart in a narrow column)."""
    fig = go.Figure([_trace(s) for s in chart.series])
    fig.update_layout(xaxis_title=chart.x.label, yaxis_title=chart.y.label,
                      xaxis_range=_axis_range(chart.x, False),
                      yaxis_range=_axis_range(chart.y, True),
                      xaxis_tickformat=chart.x.tick_format, yaxis_tickformat=chart.y.tick_format,
                      margin=MARGIN)
    if legend_inside:
        vertical, _, horizontal = chart.legend.partition(" ")
        fig.update_layout(legend=dict(
            x=0.01 if horizontal == "left" else 0.99, xanchor=horizontal or "right",
            y=0.01 if vertical == "lower" else 0.99,
            yanchor="bottom" if vertical == "lower" else "top"))
    return fig


# --- the report's charts -------------------------------------------------------------------------
def confusion_matrix_figure(report: dict[str, Any], normalise: bool = False) -> go.Figure:
    return heatmap_figure(confusion_chart(report), normalise)


def reliability_figure(report: dict[str, Any]) -> go.Figure:
    """The reliability diagram (before and after temperature scaling) and, under it on the
    same confidence axis, how many galaxies each bin holds after scaling: a point far off the
    diagonal matters only if its bin holds many galaxies."""
    chart = reliability_chart(report)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.74, 0.26],
                        vertical_spacing=0.05)
    for series in chart.series:
        fig.add_trace(_trace(series), row=1, col=1)
    bins = report["calibrated"]["reliability"]
    edges, counts = bins.get("edges") or [], bins.get("count") or []
    if len(edges) == len(counts) + 1:
        centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
        widths = [0.9 * (b - a) for a, b in zip(edges, edges[1:])]
        fig.add_trace(go.Bar(
            x=centres, y=counts, width=widths, name="Galaxies per bin (after)",
            marker_color=BIN_BARS, text=[str(c) if c else "" for c in counts],
            textposition="outside", cliponaxis=False, showlegend=False,
            customdata=[[a, b] for a, b in zip(edges, edges[1:])],
            hovertemplate="confidence %{customdata[0]:.2f}-%{customdata[1]:.2f}<br>"
                          "%{y} galaxies<extra></extra>"), row=2, col=1)
        top = max(counts, default=0)
        fig.update_yaxes(range=[0, top * 1.35 if top else 1], row=2, col=1)
    fig.update_yaxes(title_text=chart.y.label, range=_axis_range(chart.y, True), row=1, col=1)
    fig.update_yaxes(title_text="Galaxies", row=2, col=1)
    fig.update_xaxes(range=_axis_range(chart.x, False), row=1, col=1)
    fig.update_xaxes(title_text=chart.x.label, range=_axis_range(chart.x, False), row=2, col=1)
    fig.update_layout(margin=MARGIN, height=480,
                      legend=dict(x=0.01, xanchor="left", y=0.99, yanchor="top"))
    return fig


def roc_figure(report: dict[str, Any]) -> go.Figure:
    return line_figure(roc_chart(report))


def coverage_figure(selective: dict[str, Any]) -> go.Figure:
    """From the report's accuracy-coverage block (``evaluate.report.selective_block``); hover
    gives the probability threshold to accept at."""
    return line_figure(coverage_chart(selective), legend_inside=True)


# --- dashboard-only figures ----------------------------------------------------------------------
_LOSS_KEYS = (("train_loss", "Train loss"), ("val_loss", "Validation loss"))
_SCORE_KEYS = (("val_accuracy", "Validation accuracy"), ("val_macro_f1", "Validation macro F1"))


def training_curves_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Loss (left) and validation accuracy / macro F1 (right) per epoch. A series no row has is
    left out, so a partial log from a run still in progress draws what it can."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy / F1"))
    for col, keys in ((1, _LOSS_KEYS), (2, _SCORE_KEYS)):
        for key, name in keys:
            points = [(r["epoch"], r[key]) for r in rows
                      if r.get(key) is not None and r.get("epoch") is not None]
            if not points:
                continue
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points],
                                     mode="lines+markers", name=name), row=1, col=col)
    fig.update_xaxes(title_text="Epoch")
    fig.update_layout(margin=dict(MARGIN, t=30))
    return fig


def probability_figure(probs: dict[str, float]) -> go.Figure:
    """Horizontal bars of one galaxy's class probabilities, fixed to 0..1 so bars from
    different galaxies compare by eye."""
    names = list(probs)
    values = [float(probs[n]) for n in names]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h",
                           text=[f"{v:.1%}" for v in values], textposition="auto"))
    fig.update_layout(xaxis_range=[0, 1], xaxis_title="Probability", height=200,
                      margin=dict(t=10, l=10, r=10, b=10))
    return fig


def panel_range(values: list[float], mean: float, std: float,
                bounded: bool = True) -> tuple[list[float], str]:
    """The y range of one splits panel and a tick format that gives distinct ticks on it.

    The range covers every split's value and mean ± std with a margin, at least
    :data:`MIN_SPAN` wide, and stays inside [0, 1] for a score (``bounded``). The decimals follow
    the span: a panel spanning 0.0014 (ROC AUC over three splits) at three decimals would label
    its ticks 0.957, 0.957, 0.958."""
    points = [float(v) for v in values] + [mean - std, mean + std]
    low, high = min(points), max(points)
    pad = max((high - low) * 0.25, MIN_SPAN / 2 - (high - low) / 2, 1e-9)
    low, high = low - pad, high + pad
    if bounded:
        if low < 0:
            low, high = 0.0, min(1.0, high - low)
        if high > 1:
            low, high = max(0.0, low - (high - 1)), 1.0
    # plotly's tick step is 1, 2 or 5 times a power of ten and, with nticks=6, at least a sixth
    # of the span: as many decimals as that power needs keep every tick label distinct.
    decimals = max(1, min(6, math.ceil(-math.log10((high - low) / 6))))
    return [low, high], f".{decimals}f"


def splits_figure(aggregate: dict[str, dict[str, Any]]) -> go.Figure:
    """Each split's value as a dot and the mean ± std beside it, one panel per metric (from
    ``metrics.aggregate``). Panels get their own zoomed axis: on a shared 0-1 axis a spread of a
    point is invisible, and the spread is what this chart is for. Every metric here (accuracy,
    balanced accuracy, macro-F1, ROC AUC, ECE) lies in [0, 1]; the axis never leaves it."""
    names = list(aggregate)
    fig = make_subplots(rows=1, cols=max(len(names), 1),
                        subplot_titles=[n.replace("_", " ") for n in names],
                        horizontal_spacing=0.08)
    for col, name in enumerate(names, start=1):
        block = aggregate[name]
        values = list(block.get("values", []))
        colour = qualitative.Plotly[(col - 1) % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(
            x=["each split"] * len(values), y=values, mode="markers",
            marker=dict(size=10, color=colour),
            text=[f"split {k}" for k in range(len(values))], showlegend=False,
            hovertemplate="%{text}: %{y:.4f}<extra></extra>"), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=["mean ± std"], y=[block["mean"]], mode="markers",
            marker=dict(size=12, symbol="diamond", color=colour), showlegend=False,
            error_y=dict(type="data", array=[block["std"]], visible=True, color=colour),
            hovertemplate=f"{block['mean']:.4f} ± {block['std']:.4f}<extra></extra>"),
            row=1, col=col)
        y_range, tick_format = panel_range(values, float(block["mean"]), float(block["std"]))
        fig.update_yaxes(range=y_range, tickformat=tick_format, nticks=6, row=1, col=col)
    fig.update_layout(height=340, margin=dict(MARGIN, t=40))
    return fig


def funnel_figure(summary: dict[str, Any]) -> go.Figure:
    """How the catalogue shrinks to the training set: rows read, then what remains after each
    reason for dropping, then the kept galaxies with their per-class counts."""
    remaining = int(summary["rows_read"])
    stages, values = ["Catalogue rows"], [remaining]
    for reason, dropped in summary.get("dropped", {}).items():
        remaining -= int(dropped)
        stages.append(f"After removing {reason} ({int(dropped)})")
        values.append(remaining)
    kept = summary.get("kept_per_class", {})
    if kept:
        detail = ", ".join(f"{n} {int(c)}" for n, c in kept.items())
        stages.append(f"Kept: {detail}")
        values.append(int(sum(int(c) for c in kept.values())))
    fig = go.Figure(go.Funnel(y=stages, x=values, textinfo="value+percent initial"))
    fig.update_layout(margin=MARGIN)
    return fig


def subclass_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Kept galaxies per source and sub-class as horizontal bars, coloured by class, so the
    mix the network learns from (and how little of it GZ1 is) is seen at a glance. ``rows``:
    ``{"source", "subclass", "label", "count"}``."""
    colours = {"spiral": "#1f77b4", "elliptical": "#ff7f0e"}
    fig = go.Figure()
    for label in ("elliptical", "spiral"):
        mine = [r for r in rows if r["label"] == label]
        fig.add_bar(y=[f"{r['source']} · {r['subclass']}" for r in mine],
                    x=[r["count"] for r in mine], name=label, orientation="h",
                    marker_color=colours[label],
                    hovertemplate="%{y}: %{x:,} galaxies<extra></extra>")
    fig.update_layout(height=90 + 26 * len(rows), margin=dict(l=10, r=10, t=10, b=30),
                      xaxis_title="kept galaxies", yaxis=dict(autorange="reversed"),
                      legend=dict(orientation="h", y=-0.25), barmode="stack")
    return fig
