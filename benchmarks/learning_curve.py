"""How much would more labelled galaxies help? Accuracy against training-set size.

Reads finished runs (``galaxy train ... --max-train-images N``, one run per size, the same split
and recipe otherwise) and prints, per network and size, the held-out figures from each run's
model folder. Then two fits of error against training-set size n:

1. ``error = b * n^-c`` on the test error of the largest three sizes. This law has no floor, so
   it is the optimistic case: it answers "how many labelled galaxies would this recipe need for
   the target if nothing but data limited it?". Only the largest three sizes are used because
   every run gets the same number of epochs, so the smallest runs also get fewer optimisation
   steps; their extra error is partly under-training, which would flatter more data.
2. ``error = a + b * n^-c`` on all sizes (four or more), where ``a`` is the error no amount of
   this kind of data removes: label noise and galaxies a two-class label cannot settle. It is
   fitted to validation and test pooled (twice the galaxies; 1,768 on GZ1 alone), because
   with one point per size the noise of a single split swamps a three-parameter fit.
   Validation chose each run's best epoch and temperature, which flatters it a little, by the
   same rule at every size.

Usage: python benchmarks/learning_curve.py RUN [RUN ...] [--target 0.95] [--figure FILE.png]
       [--source-target gz2=0.97 ...]
where each RUN is a run folder (holding ``model/``) or a model folder.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galaxy_core.evaluate.report import load_report
from galaxy_core.io_utils import read_json

FIT_POINTS = 3
"""The floorless power law is fitted to this many of the largest training-set sizes."""


FLOOR_SE_LIMIT = 0.02
"""A fitted floor less certain than this (2 points of accuracy) is reported as not determined."""


@dataclass(frozen=True)
class Point:
    arch: str
    n_train: int
    epochs: int
    test_accuracy: float
    test_balanced: float
    test_macro_f1: float
    test_auc: float
    n_test: int
    val_accuracy: float
    n_val: int
    data: str
    """The surveys and split the run learned from, e.g. ``gz1 + gz2, split 0``."""
    whole_train: int
    """The split's whole training part: where the curve's x axis ends in the data at hand."""
    source_balanced: dict[str, float]
    """Test balanced accuracy per survey, for a dataset of several."""

    @property
    def test_error_se(self) -> float:
        """Binomial standard error of the test accuracy: the noise each point carries."""
        return math.sqrt(self.test_accuracy * (1 - self.test_accuracy) / self.n_test)

    @property
    def pooled_accuracy(self) -> float:
        return ((self.test_accuracy * self.n_test + self.val_accuracy * self.n_val)
                / (self.n_test + self.n_val))


@dataclass(frozen=True)
class FloorFit:
    floor: float
    floor_se: float
    b: float
    c: float

    def error(self, n: np.ndarray | float) -> np.ndarray | float:
        return self.floor + self.b * np.asarray(n, float) ** -self.c


def read_point(run: Path) -> Point:
    """One run's size and calibrated held-out metrics, from its model folder."""
    model_dir = run / "model" if (run / "model" / "model.json").exists() else run
    meta = read_json(model_dir / "model.json")
    test = load_report(model_dir / "report_test")
    val = load_report(model_dir / "report_val")
    if test is None or val is None:
        raise SystemExit(f"{model_dir}: no evaluation reports (is the run finished?)")
    t, v = test["calibrated"]["metrics"], val["calibrated"]["metrics"]
    # Models finished before the cap was recorded give the whole train part as n_train.
    training = meta["training"]
    n_train = int(training["n_train"])
    cap = int(meta.get("config", {}).get("max_train_images") or 0)
    by_source = test.get("by_source") or {}
    split = int(training.get("split", 0))
    return Point(arch=meta["arch"], n_train=min(n_train, cap) if cap else n_train,
                 epochs=int(training["epochs_run"]), test_accuracy=t["accuracy"],
                 test_balanced=t["balanced_accuracy"], test_macro_f1=t["macro_f1"],
                 test_auc=t["roc_auc"], n_test=int(t["n"]), val_accuracy=v["accuracy"],
                 n_val=int(v["n"]),
                 data=f"{' + '.join(sorted(by_source)) or 'one survey'}, split {split}",
                 whole_train=whole_train_part(training, n_train),
                 source_balanced={name: float(part["balanced_accuracy"])
                                  for name, part in sorted(by_source.items())})


def whole_train_part(training: dict, n_train: int) -> int:
    """The size of the split's training part, from the prepared folder's summary when it is
    still where the run read it (a capped run records only the galaxies it used)."""
    summary = Path(training.get("prepared", "")) / "summary.json"
    if summary.is_file():
        counts = read_json(summary).get("split_counts", {})
        part = counts.get(f"split_{int(training.get('split', 0))}", {})
        if "train" in part:
            return int(part["train"])
    return n_train


def fit_power_law(n: np.ndarray, error: np.ndarray) -> tuple[float, float]:
    """Least squares in log-log space: ``log error = log b - c log n``; returns (b, c)."""
    slope, intercept = np.polyfit(np.log(n), np.log(error), 1)
    return float(math.exp(intercept)), float(-slope)


def size_for_error(b: float, c: float, error: float) -> float:
    """Training-set size at which ``b * n^-c`` falls to ``error`` (inf when it never does)."""
    return (b / error) ** (1 / c) if c > 0 else math.inf


def fit_with_floor(n: np.ndarray, error: np.ndarray) -> FloorFit:
    """``error = a + b n^-c`` by least squares, with the floor's standard error from the fit."""
    from scipy.optimize import curve_fit

    def law(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a + b * x ** -c

    (a, b, c), cov = curve_fit(law, n, error, p0=[0.5 * error.min(), 10.0, 0.5],
                               bounds=([0.0, 0.0, 0.0], [1.0, 1e6, 3.0]), maxfev=20000)
    return FloorFit(float(a), float(np.sqrt(cov[0, 0])), float(b), float(c))


def size_axis(ax: object, sizes: list[int]) -> None:
    """A log axis labelled at the sizes trained, in plain numbers."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(sorted(set(sizes)), [f"{n:,}" for n in sorted(set(sizes))])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    ax.set_xlabel("training galaxies (log scale)")


def draw_per_source(ax: object, points_by_arch: dict[str, list[Point]],
                    targets: dict[str, float]) -> None:
    """Test balanced accuracy of each survey against size: the issue's targets are per survey,
    and one survey's curve can flatten while the other's still rises."""
    markers = ("o", "s", "^", "D")
    for (arch, pts), colour in zip(points_by_arch.items(), ("tab:blue", "tab:orange")):
        names = sorted({name for p in pts for name in p.source_balanced})
        for name, marker in zip(names, markers):
            kept = [p for p in pts if name in p.source_balanced]
            ax.plot([p.n_train for p in kept], [100 * p.source_balanced[name] for p in kept],
                    marker=marker, color=colour, ls="-" if marker == "o" else "--",
                    label=f"{arch}: {name}")
    for name, value in sorted(targets.items()):
        ax.axhline(100 * value, color="grey", lw=1, ls=":")
        ax.text(ax.get_xlim()[0], 100 * value + 0.2, f"{name} target {value:.0%}",
                color="grey", fontsize=8)
    size_axis(ax, [p.n_train for pts in points_by_arch.values() for p in pts])
    ax.set_ylabel("test balanced accuracy, %")
    ax.set_title("Each survey's own test galaxies")
    ax.legend(fontsize=7.5, loc="center right")
    ax.grid(alpha=0.3)


def draw(points_by_arch: dict[str, list[Point]], fits: dict[str, tuple[float, float]],
         floors: dict[str, FloorFit], target: float, path: Path,
         source_targets: dict[str, float] | None = None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    several = any(len(p.source_balanced) > 1 for pts in points_by_arch.values() for p in pts)
    fig = Figure(figsize=(14, 5) if several else (8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2 if several else 1, 1)
    if several:
        draw_per_source(fig.add_subplot(1, 2, 2, sharex=ax), points_by_arch,
                        source_targets or {})
    sizes = [p.n_train for pts in points_by_arch.values() for p in pts]
    grid = np.geomspace(min(sizes), max(sizes) * 64, 200)
    for colour, (arch, pts) in zip(("tab:blue", "tab:orange", "tab:green"),
                                   points_by_arch.items()):
        n = np.array([p.n_train for p in pts])
        ax.errorbar(n, [100 * p.test_accuracy for p in pts],
                    yerr=[100 * p.test_error_se for p in pts], fmt="o", color=colour,
                    capsize=3, label=f"{arch}: test (±1 s.e.)")
        ax.plot(n, [100 * p.pooled_accuracy for p in pts], "s", mfc="none", color=colour,
                label=f"{arch}: validation + test")
        if arch in fits:
            b, c = fits[arch]
            ax.plot(grid, (1 - b * grid ** -c) * 100, "--", color=colour, lw=1,
                    label=f"{arch}: no floor, error = {b:.2f}·n^-{c:.2f} (test)")
        if arch in floors:
            fit = floors[arch]
            ax.plot(grid, (1 - fit.error(grid)) * 100, "-", color=colour, lw=1,
                    label=f"{arch}: with floor, ceiling {100 * (1 - fit.floor):.1f}% "
                          "(val + test)")
    ax.axhline(target * 100, color="grey", lw=1, ls=":")
    ax.text(grid[0], target * 100 + 0.3, f"target {target:.0%}", color="grey", fontsize=8)
    every = [p for pts in points_by_arch.values() for p in pts]
    whole = max(p.whole_train for p in every)
    ax.axvline(whole, color="grey", lw=0.8)
    ax.text(whole * 0.95, ax.get_ylim()[0] + 0.3, "the whole training split", color="grey",
            fontsize=8, ha="right")
    size_axis(ax, [*sizes, whole])
    ax.set_ylabel("accuracy, %")
    data = sorted({p.data for p in every})
    ax.set_title(f"Accuracy by number of labelled training galaxies ({'; '.join(data)})")
    ax.legend(fontsize=7.5, loc="center right")
    ax.grid(alpha=0.3)
    buffer_path = path.with_suffix(".tmp.png")
    fig.savefig(buffer_path, dpi=100, bbox_inches="tight")
    buffer_path.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--figure", type=Path, help="also draw the curve into this PNG file")
    ap.add_argument("--source-target", action="append", default=[], metavar="NAME=ACC",
                    help="a survey's balanced-accuracy target, drawn on the per-survey panel "
                    "(repeatable, e.g. gz2=0.97)")
    args = ap.parse_args()

    points_by_arch: dict[str, list[Point]] = {}
    for run in args.runs:
        p = read_point(run)
        points_by_arch.setdefault(p.arch, []).append(p)
    print(f"{'arch':<20}{'n_train':>8}{'epochs':>7}{'test acc':>10}{'± s.e.':>8}"
          f"{'balanced':>10}{'macro-F1':>10}{'AUC':>7}{'val acc':>9}{'val+test':>10}")
    fits: dict[str, tuple[float, float]] = {}
    floors: dict[str, FloorFit] = {}
    for arch, pts in points_by_arch.items():
        pts.sort(key=lambda p: p.n_train)
        for p in pts:
            per_source = "".join(f"  {name} balanced {value:.3f}"
                                 for name, value in p.source_balanced.items()
                                 if len(p.source_balanced) > 1)
            print(f"{arch:<20}{p.n_train:>8}{p.epochs:>7}{p.test_accuracy:>10.3f}"
                  f"{p.test_error_se:>8.3f}{p.test_balanced:>10.3f}{p.test_macro_f1:>10.3f}"
                  f"{p.test_auc:>7.3f}{p.val_accuracy:>9.3f}{p.pooled_accuracy:>10.3f}"
                  f"{per_source}")
        sizes = np.array([p.n_train for p in pts], float)
        largest = pts[-FIT_POINTS:]
        if len({p.n_train for p in largest}) == FIT_POINTS:
            b, c = fit_power_law(sizes[-FIT_POINTS:],
                                 np.array([1 - p.test_accuracy for p in largest]))
            fits[arch] = (b, c)
            need = size_for_error(b, c, 1 - args.target)
            print(f"  no floor: test error = {b:.3f} * n^-{c:.3f}; {args.target:.0%} accuracy at "
                  f"n = {need:,.0f} training galaxies ({need / sizes[-1]:.0f}x the largest run)")
        if len(set(sizes)) >= 4:
            fit = fit_with_floor(sizes, np.array([1 - p.pooled_accuracy for p in pts]))
            if fit.floor_se > FLOOR_SE_LIMIT:
                print(f"  with floor: not determined by these points (floor {fit.floor:.3f} "
                      f"± {fit.floor_se:.3f})")
                continue
            floors[arch] = fit
            print(f"  with floor (validation + test): error = {fit.floor:.3f} "
                  f"(± {fit.floor_se:.3f}) + {fit.b:.1f} * n^-{fit.c:.2f}; "
                  f"ceiling {1 - fit.floor:.1%}, "
                  f"{1 - fit.error(4 * sizes[-1]):.1%} at 4x the largest run")
    if args.figure:
        source_targets = {name: float(value) for name, value in
                          (item.split("=", 1) for item in args.source_target)}
        draw(points_by_arch, fits, floors, args.target, args.figure, source_targets)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
