"""Two models on the same galaxies: which is better, and is the difference more than noise?

A fine-tuned model (``galaxy train --init-from``) differs from the one it started from by a few
tenths of a point, and each report's own 95 % interval is wider than that (about +-0.7 points on
5,649 galaxies): two headline figures side by side cannot say which model is better. On the
same galaxies the comparison is paired, and the noise mostly cancels: only the galaxies one model
gets right and the other wrong carry information. McNemar's exact test asks how likely so
lopsided a split would be if the two models were equally good, and a paired bootstrap gives the
interval of the difference in balanced accuracy. Issue 22's shipping rule (at least as good on
GZ1, better overall) is a question of exactly this kind.

Every report holds each galaxy's answer (``predictions``: image, true class, answer, source,
sub-class), so the comparison needs no network, only the two reports of one split and part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom

from galaxy_core.errors import GalaxyError
from galaxy_core.evaluate.breakdown import row_groups, subclass_keys
from galaxy_core.evaluate.report import save_figure

BOOTSTRAP = 2000
"""Paired resamples for the interval of the balanced-accuracy difference."""
SIGNIFICANT = 0.05
"""A difference is called real below this McNemar p-value (one comparison; with many groups
some will pass by chance, which the table's reader is told)."""


@dataclass(frozen=True)
class GroupComparison:
    """One group of galaxies (all, one source, one sub-class) under the two models."""

    group: str
    n: int
    accuracy: tuple[float, float]
    balanced: tuple[float, float] | None
    """Mean recall over the classes present, per model; None for a group of one class (a
    sub-class), where it equals the accuracy."""
    only_first: int
    """Galaxies the first model gets right and the second wrong."""
    only_second: int
    p_value: float
    """McNemar's exact two-sided test of ``only_first`` against ``only_second``."""
    balanced_gain: tuple[float, float] | None = None
    """95 % paired-bootstrap interval of balanced accuracy, second minus first (groups with
    both classes)."""

    @property
    def better(self) -> int | None:
        """0 or 1: the model that is better at :data:`SIGNIFICANT`; None: no clear difference."""
        if self.p_value >= SIGNIFICANT:
            return None
        return 1 if self.only_second > self.only_first else 0

    def verdict(self, names: tuple[str, str] = ("first", "second")) -> str:
        """"NAME better" or "no clear difference"."""
        return "no clear difference" if self.better is None else f"{names[self.better]} better"


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value: under "equally good", each disagreement is a fair coin."""
    if only_first < 0 or only_second < 0:
        raise ValueError("counts must not be negative")
    n = only_first + only_second
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(only_first, only_second), n, 0.5)))


def paired_answers(first: dict[str, Any], second: dict[str, Any]) -> pd.DataFrame:
    """One row per galaxy: its true class, source, sub-class and whether each model is right.

    Refuses, with the reason, two reports that are not of the same galaxies: another split or
    part, or a different set of images (a report of another prepared folder)."""
    for key in ("split", "part"):
        if first.get(key) != second.get(key):
            raise GalaxyError(f"The two reports are of different {key}s ({first.get(key)} and "
                              f"{second.get(key)}): compare models on the same galaxies.")
    tables = []
    for report, name in ((first, "first"), (second, "second")):
        rows = report.get("predictions")
        if not rows:
            raise GalaxyError(f"The {name} report holds no per-galaxy answers; write it again "
                              "with `galaxy evaluate`.")
        table = pd.DataFrame(rows)
        if table["image"].duplicated().any():
            raise GalaxyError(f"The {name} report lists an image twice.")
        tables.append(table.set_index("image"))
    a, b = tables
    if set(a.index) != set(b.index):
        only = len(set(a.index) ^ set(b.index))
        raise GalaxyError(f"The two reports are of different galaxies ({only} images in one "
                          "only): evaluate both models on the same prepared folder.")
    b = b.loc[a.index]
    if not (a["true"] == b["true"]).all():
        raise GalaxyError("The two reports give some galaxies different true classes: they "
                          "were evaluated on different labels.")
    out = pd.DataFrame({"true": a["true"], "first": a["predicted"] == a["true"],
                        "second": b["predicted"] == b["true"]}, index=a.index)
    for column in ("source", "subclass"):
        out[column] = a[column].fillna("").astype(str) if column in a else ""
    return out


def _balanced(right: np.ndarray, classes: np.ndarray) -> float:
    return float(np.mean([right[classes == k].mean() for k in np.unique(classes)]))


def _balanced_gain(rows: pd.DataFrame, rng: np.random.Generator) -> tuple[float, float]:
    """95 % interval of the balanced-accuracy difference, galaxies resampled in pairs within
    each true class (so every resample holds both classes in their own numbers).

    Within a class only two counts move a resample's gain: the galaxies right by the second
    model only and by the first only. Resampling n galaxies with replacement draws those counts
    from a multinomial, so the bootstrap needs no per-galaxy arrays however many galaxies a
    survey compares."""
    gains = np.zeros(BOOTSTRAP)
    classes = rows["true"].unique()
    for k in classes:
        cls = rows[rows["true"] == k]
        first, second = cls["first"].to_numpy(), cls["second"].to_numpy()
        n = len(cls)
        cells = np.array([np.count_nonzero(second & ~first), np.count_nonzero(first & ~second)])
        drawn = rng.multinomial(n, [*(cells / n), max(0.0, 1 - cells.sum() / n)], size=BOOTSTRAP)
        gains += (drawn[:, 0] - drawn[:, 1]) / n
    gains /= len(classes)
    low, high = np.quantile(gains, [0.025, 0.975])
    return float(low), float(high)


def _compare(group: str, rows: pd.DataFrame, rng: np.random.Generator) -> GroupComparison:
    first, second = rows["first"].to_numpy(), rows["second"].to_numpy()
    only_first = int(np.count_nonzero(first & ~second))
    only_second = int(np.count_nonzero(second & ~first))
    two_classes = rows["true"].nunique() > 1
    classes = rows["true"].to_numpy()
    return GroupComparison(
        group=group, n=len(rows), accuracy=(float(first.mean()), float(second.mean())),
        balanced=(_balanced(first, classes), _balanced(second, classes)) if two_classes else None,
        only_first=only_first, only_second=only_second,
        p_value=mcnemar_p(only_first, only_second),
        balanced_gain=_balanced_gain(rows, rng) if two_classes else None)


def compare_reports(first: dict[str, Any], second: dict[str, Any],
                    seed: int = 0) -> list[GroupComparison]:
    """All galaxies, then each source, then each ``source: sub-class``: the two models paired
    galaxy by galaxy (:func:`paired_answers`). Sources and sub-classes appear only when the
    reports record more than one, in sorted order."""
    rows = paired_answers(first, second)
    rng = np.random.default_rng(seed)
    out = [_compare("all", rows, rng)]
    sourced = rows[rows["source"] != ""]
    sources = row_groups(sourced["source"])
    if len(sources) > 1:
        out += [_compare(s, sourced.iloc[at], rng) for s, at in sources.items()]
    named = rows[rows["subclass"] != ""]
    keys = subclass_keys(named["subclass"], named["source"])
    out += [_compare(key, named.iloc[at], rng) for key, at in row_groups(keys).items()]
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def comparison_table(rows: Sequence[GroupComparison], names: tuple[str, str]) -> str:
    """The comparison as a Markdown table, one line per group."""
    first, second = names
    lines = [f"| galaxies | n | accuracy {first} -> {second} | balanced {first} -> {second} "
             f"| balanced gain (95%) | right only by {first} | right only by {second} "
             "| McNemar p | |",
             "|---|---:|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        balanced = "-" if r.balanced is None else f"{_pct(r.balanced[0])} -> {_pct(r.balanced[1])}"
        gain = ("-" if r.balanced_gain is None
                else f"{100 * r.balanced_gain[0]:+.1f} to {100 * r.balanced_gain[1]:+.1f}")
        lines.append(f"| {r.group} | {r.n:,} | {_pct(r.accuracy[0])} -> {_pct(r.accuracy[1])} "
                     f"| {balanced} | {gain} | {r.only_first} | {r.only_second} "
                     f"| {r.p_value:.3g} | {r.verdict(names)} |")
    return "\n".join(lines)


VERDICT_COLOURS = {1: "#1a9850", 0: "#d73027", None: "#808080"}
"""Arrow colour by :attr:`GroupComparison.better`: the second model better, the first, neither."""


def comparison_figure(rows: Sequence[GroupComparison], names: tuple[str, str],
                      path: Path) -> None:
    """Each group's accuracy under the two models as an arrow from the first to the second,
    coloured by :attr:`GroupComparison.better`, so a trade between sub-classes shows at a
    glance where a single headline figure hides it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 0.42 * len(rows) + 1.4))
    ax = fig.add_subplot()
    for y, r in enumerate(rows):
        a, b = (100 * v for v in r.accuracy)
        colour = VERDICT_COLOURS[r.better]
        ax.annotate("", xy=(b, y), xytext=(a, y),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.8})
        ax.plot([a], [y], "o", mfc="white", mec=colour)
        ax.plot([b], [y], "o", color=colour)
        ax.text(1.01, y, f"n={r.n:,}  p={r.p_value:.2g}", transform=ax.get_yaxis_transform(),
                va="center", fontsize="small", color=colour)
    ax.set_yticks(range(len(rows)), [r.group for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"accuracy (%): open = {names[0]}, filled = {names[1]}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{names[0]} -> {names[1]} on the same galaxies (green / red: McNemar p < "
                 f"{SIGNIFICANT})", fontsize="medium")
    save_figure(fig, path)
