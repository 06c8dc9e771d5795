"""The population prior on a model's test split: estimated spiral fraction against the true one
(EM against counting the answers), and accuracy with the probabilities moved to the estimated
mix, from the per-galaxy test predictions stored in the model's report (no network is run).

    python benchmarks/prior_shift.py [--model models/resnet50_gz1] [--figure docs/prior_shift.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from galaxy_core.evaluate.prior_shift import prior_shift_table
from galaxy_core.evaluate.report import load_report
from galaxy_core.io_utils import read_json
from galaxy_core.locations import SHIPPED_MODEL_DIR
from galaxy_core.model.prior import training_prior
from galaxy_core.model.store import META_FILE, report_dir


def draw(table: list[dict], train: float, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8))
    left, right = fig.subplots(1, 2)
    true = [r["true"] for r in table]
    left.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    left.errorbar(true, [r["estimate"] for r in table], yerr=[r["estimate_std"] for r in table],
                  marker="o", capsize=3, label="EM (--prior estimate)")
    left.plot(true, [r["counted"] for r in table], marker="s", label="counting answers")
    left.axvline(train, color="grey", linewidth=0.8)
    left.set(xlabel="true spiral fraction", ylabel="estimated", xlim=(0, 1), ylim=(0, 1),
             title="Spiral fraction of a batch")
    left.legend(fontsize="small")
    right.plot(true, [r["accuracy"] for r in table], marker="o", label="training mix")
    right.plot(true, [r["accuracy_adjusted"] for r in table], marker="s",
               label="moved to the estimated mix")
    right.axvline(train, color="grey", linewidth=0.8)
    right.set(xlabel="true spiral fraction", ylabel="accuracy", xlim=(0, 1),
              title="Accuracy of the answers")
    right.legend(fontsize="small")
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR)
    ap.add_argument("--figure", type=Path)
    args = ap.parse_args()
    meta = read_json(args.model / META_FILE)
    train = training_prior(meta)
    report = load_report(report_dir(args.model, "test"))
    if train is None or report is None:
        raise SystemExit(f"{args.model} needs training class counts and a test report")
    table = prior_shift_table(report, train)
    print(f"{args.model.name}: training mix {train:.1%} spirals; {table[0]['repeats']} samples "
          f"of {table[0]['n']} test galaxies per fraction")
    print("true   EM estimate     counted  accuracy (train mix -> moved)  balanced accuracy")
    for r in table:
        print(f"{r['true']:5.0%}  {r['estimate']:6.1%} ± {r['estimate_std']:4.1%}  "
              f"{r['counted']:7.1%}  {r['accuracy']:6.1%} -> {r['accuracy_adjusted']:6.1%}"
              f"           {r['balanced']:6.1%} -> {r['balanced_adjusted']:6.1%}")
    if args.figure:
        draw(table, train, args.figure, f"{args.model.name}, test split resampled")
        print(f"figure written to {args.figure}")


if __name__ == "__main__":
    main()
