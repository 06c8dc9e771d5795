"""Plotly figures for the dashboard, built only from the plain dicts stored in reports and
training logs, so any saved run can be redrawn without loading a model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots


def confusion_matrix_figure(cm: list[list[int]], classes: Sequence[str],
                            normalise: bool = False) -> go.Figure:
    """Annotated heatmap, rows true and columns predicted. ``normalise`` divides each row by
    its total (i.e. shows recall per class), which matters when classes are imbalanced; the
    raw counts stay in the cell text either way."""
    counts = np.asarray(cm, dtype=float)
    if normalise:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        text = [[f"{v:.1%}<br>({int(c)})" for v, c in zip(vr, cr)]
                for vr, cr in zip(values, counts)]
    else:
        values = counts
        text = [[str(int(c)) for c in row] for row in counts]
    fig = go.Figure(go.Heatmap(z=values, x=list(classes), y=list(classes), text=text,
                               texttemplate="%{text}", colorscale="Blues", showscale=False,
                               hovertemplate="True %{y}<br>Predicted %{x}<br>%{text}"
                                             "<extra></extra>"))
    fig.update_layout(xaxis_title="Predicted", yaxis_title="True",
                      yaxis_autorange="reversed", margin=dict(t=30, l=10, r=10, b=10))
    return fig


def _bin_points(bins: dict[str, Any]) -> tuple[list[float], list[float], list[int]]:
    """Non-empty bins only: an empty bin has no accuracy to draw."""
    rows = [(c, a, n) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"])
            if c is not None and a is not None]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def reliability_figure(before: dict[str, Any], after: dict[str, Any], ece_before: float,
                       ece_after: float) -> go.Figure:
    """Reliability diagram before and after temperature scaling, with the diagonal that a
    perfectly calibrated model would follow; ECE is in each legend entry."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Perfect calibration",
                             line=dict(dash="dash", color="grey")))
    for bins, name, ece in ((before, "Before", ece_before), (after, "After", ece_after)):
        xs, ys, ns = _bin_points(bins)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name} (ECE {ece:.3f})",
                                 customdata=ns,
                                 hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}"
                                               "<br>%{customdata} galaxies<extra></extra>"))
    fig.update_layout(xaxis_title="Confidence", yaxis_title="Accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    return fig


def roc_figure(roc: dict[str, list[float]], auc: float | None) -> go.Figure:
    """ROC curve of the positive class with the chance line."""
    label = f"ROC (AUC {auc:.3f})" if auc is not None else "ROC (AUC undefined)"
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Chance",
                             line=dict(dash="dash", color="grey")))
    fig.add_trace(go.Scatter(x=roc.get("fpr", []), y=roc.get("tpr", []), mode="lines",
                             name=label, customdata=roc.get("thresholds", []),
                             hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<br>threshold "
                                           "%{customdata:.3f}<extra></extra>"))
    fig.update_layout(xaxis_title="False positive rate", yaxis_title="True positive rate",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    return fig


def coverage_figure(block: dict[str, Any]) -> go.Figure:
    """Accuracy of the accepted answers against the fraction accepted, most confident first
    (from ``metrics.selective_summary``), with a marker where each target accuracy is reached;
    hover gives the probability threshold to accept at."""
    curve = block.get("curve", {})
    fig = go.Figure(go.Scatter(
        x=curve.get("coverage", []), y=curve.get("accuracy", []), mode="lines",
        name="Most confident first", customdata=curve.get("threshold", []),
        hovertemplate="accept p ≥ %{customdata:.3f}<br>keeps %{x:.1%}<br>accuracy %{y:.1%}"
                      "<extra></extra>"))
    for target, hit in block.get("at_accuracy", {}).items():
        if hit:
            fig.add_trace(go.Scatter(
                x=[hit["coverage"]], y=[hit["accuracy"]], mode="markers", marker=dict(size=10),
                name=f"{float(target):.0%} accuracy: keep {hit['coverage']:.0%}",
                hovertemplate=f"accept p ≥ {hit['threshold']:.3f}<br>keeps "
                              f"{hit['coverage']:.1%}<extra></extra>"))
    fig.update_layout(xaxis_title="Fraction of galaxies accepted",
                      yaxis_title="Accuracy of the accepted", xaxis_range=[0, 1.01],
                      xaxis_tickformat=".0%", yaxis_tickformat=".0%",
                      legend=dict(x=0.01, y=0.01, xanchor="left", yanchor="bottom"))
    return fig


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


def splits_figure(aggregate: dict[str, dict[str, Any]]) -> go.Figure:
    """Each split's value as a dot and the mean ± std beside it, one panel per metric (from
    ``metrics.aggregate``). Panels get their own zoomed axis: on a shared 0-1 axis a spread of a
    point is invisible, and the spread is what this chart is for."""
    names = list(aggregate)
    fig = make_subplots(rows=1, cols=max(len(names), 1),
                        subplot_titles=[n.replace("_", " ") for n in names])
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
        fig.update_yaxes(tickformat=".3f", row=1, col=col)
    fig.update_layout(height=340, margin=dict(t=40, l=10, r=10, b=10))
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
    fig.update_layout(margin=dict(t=10, l=10, r=10, b=10))
    return fig
