"""What limits the shipped model's accuracy? Figures from the held-out test split.

Prints, for a model folder and the prepared data it was trained on:
1. test-time rotation averaging: no averaging vs 4 rotations vs all 8 rotations/flips;
2. recall per Galaxy Zoo 1 leaf class (EL, CW, ACW, EDGE): which kind of spiral is missed;
3. accuracy by apparent galaxy size (radius / cutout side, measured by survey matching's
   detector on the full cutout): is resolution the limit?
4. accuracy on the galaxies the model is sure about vs the rest (label noise shows up as
   confident "failures").
With ``--figure FILE.png`` the same figures are drawn as one picture (training curve, rotation
averaging, accuracy by galaxy size, accuracy by confidence).
Usage: python benchmarks/accuracy_limits.py [--model models/resnet50_gz1] [--data data/gz1]
       [--figure docs/accuracy_limits.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from galaxy_core.locations import SHIPPED_MODEL_DIR, default_data_root
from galaxy_core.data.cache import load_framed_part
from galaxy_core.data.imageio import load_image
from galaxy_core.data.prepared import open_prepared
from galaxy_core.data.tensors import to_tensor
from galaxy_core.evaluate.metrics import classification_metrics
from galaxy_core.model.calibrated import calibrated_probabilities
from galaxy_core.model.inference import dihedral_views
from galaxy_core.model.store import load_model
from galaxy_core.data.galaxy_finder import find_galaxy


def calibrated(loaded, logits: np.ndarray) -> np.ndarray:
    return calibrated_probabilities(logits, loaded.logit_bias, loaded.temperature)


def view_logits(loaded, images: np.ndarray) -> np.ndarray:
    """Logits per dihedral view: (8, N, C)."""
    cfg = loaded.config
    model = loaded.model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), 64):
            x = to_tensor(images[s:s + 64], cfg.mean, cfg.std, channels_last=False)
            out.append(torch.stack([model(v.contiguous()) for v in dihedral_views(x)]).numpy())
    return np.concatenate(out, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(SHIPPED_MODEL_DIR))
    ap.add_argument("--data", default="data/gz1")
    ap.add_argument("--figure", help="also draw the figures into this PNG file")
    args = ap.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.model)
    cfg = loaded.config
    prepared = open_prepared(args.data)
    split = loaded.meta.get("training", {}).get("split", 0)
    part = load_framed_part(prepared, cfg, split, "test")
    y = part.labels
    views = view_logits(loaded, part.images)

    print(f"model {args.model}; test split {split}: {len(y)} galaxies\n")
    print("1. Test-time rotation averaging (calibrated probabilities)")
    print(f"   {'views':<28}{'accuracy':>9}{'balanced':>10}{'macro-F1':>10}")
    variants = {"none (1 view)": views[:1].mean(0), "4 rotations": views[:4].mean(0),
                "8 rotations + flips": views.mean(0)}
    tta = {}
    for name, logits in variants.items():
        m = tta[name] = classification_metrics(y, calibrated(loaded, logits))
        print(f"   {name:<28}{m['accuracy']:9.4f}{m['balanced_accuracy']:10.4f}{m['macro_f1']:10.4f}")
    single = np.array([(calibrated(loaded, v).argmax(1) == y).mean() for v in views])
    print(f"   single views: accuracy {single.min():.4f}-{single.max():.4f} "
          f"(mean {single.mean():.4f})\n")

    probs = calibrated(loaded, views.mean(0))
    pred = probs.argmax(1)
    leaf_path = default_data_root() / "gz1_sdss" / "gz1_classes.csv"
    table = part.table.copy()
    table["correct"] = pred == y
    table["confidence"] = probs.max(1)
    if leaf_path.is_file():
        leaf = pd.read_csv(leaf_path, dtype={"OBJID": str}).rename(columns={"OBJID": "objid"})
        table = table.merge(leaf, on="objid", how="left")
        names = {0: "EL (elliptical)", 1: "CW (clockwise spiral)", 2: "ACW (anticlockwise)",
                 3: "EDGE (edge-on disk)"}
        print("2. Recall per Galaxy Zoo 1 leaf class")
        for c, name in names.items():
            rows = table[table["CLASS"] == c]
            if len(rows):
                print(f"   {name:<24} n={len(rows):4d}  recall {rows['correct'].mean():.4f}")
        print()

    print("3. Accuracy by apparent galaxy size (radius / cutout side)")
    radius = []
    for name in table["image"]:
        img = load_image(prepared.image_path(name))
        radius.append(find_galaxy(img).radius / min(img.size))
    table["radius"] = radius
    bins = [0, 0.09, 0.11, 0.13, 0.16, 1.0]
    table["size_bin"] = pd.cut(table["radius"], bins)
    by_size = table.groupby("size_bin", observed=True)["correct"].agg(["mean", "size"])
    for b, row in by_size.iterrows():
        print(f"   {str(b):<16} n={int(row['size']):4d}  accuracy {row['mean']:.4f}")
    print()

    print("4. Accuracy by model confidence")
    by_conf = {}
    for lo, hi in ((0.5, 0.8), (0.8, 0.95), (0.95, 1.01)):
        rows = table[(table["confidence"] >= lo) & (table["confidence"] < hi)]
        if len(rows):
            by_conf[f"{lo:.2f}-{min(hi, 1):.2f}"] = (rows["correct"].mean(), len(rows))
            print(f"   confidence {lo:.2f}-{min(hi, 1):.2f}: n={len(rows):4d}  "
                  f"accuracy {rows['correct'].mean():.4f}")
    wrong = table[~table["correct"]].sort_values("confidence", ascending=False)
    print(f"\n   {len(wrong)} errors; most confident ones (inspect them for label noise):")
    for _, r in wrong.head(12).iterrows():
        leaf = f" leaf {int(r['CLASS'])}" if "CLASS" in r and not pd.isna(r["CLASS"]) else ""
        print(f"   {r['objid']} true {r['label']:<10}{leaf} confidence {r['confidence']:.3f} "
              f"radius {r['radius']:.3f}")
    if args.figure:
        draw_figure(args.figure, args.model, loaded.meta.get("training", {}).get("history", []),
                    tta, by_size, by_conf)
        print(f"\nfigure written to {args.figure}")


def draw_figure(path: str, title: str, history: list[dict], tta: dict[str, dict],
                by_size: pd.DataFrame, by_conf: dict[str, tuple[float, int]]) -> None:
    """Four panels: what the training curve, rotation averaging, galaxy size and confidence say."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    (a, b), (c, d) = fig.subplots(2, 2)
    epochs = [r["epoch"] for r in history]
    a.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="val accuracy")
    a.plot(epochs, [r["val_balanced_accuracy"] for r in history], "s-",
           label="val balanced accuracy")
    a.set_xlabel("epoch")
    a.set_ylabel("accuracy (1 view, uncalibrated)")
    a.set_ylim(0.6, 1.0)
    loss = a.twinx()
    loss.plot(epochs, [r["val_loss"] for r in history], "k--", alpha=0.6, label="val loss")
    loss.set_ylabel("validation loss")
    handles = a.get_legend_handles_labels()[0] + loss.get_legend_handles_labels()[0]
    a.legend(handles=handles, loc="lower right")
    a.set_title("Training curve")

    names = list(tta)
    b.bar(names, [tta[n]["accuracy"] for n in names], color="#4c72b0")
    for i, n in enumerate(names):
        b.text(i, tta[n]["accuracy"] + 0.002, f"{tta[n]['accuracy']:.3f}", ha="center")
    low = min(tta[n]["accuracy"] for n in names)
    b.set_ylim(low - 0.03, min(1.0, low + 0.05))
    b.set_title("Test accuracy with rotation/flip averaging")

    labels = [f"{iv.left:.2f}-{iv.right:.2f}" for iv in by_size.index]
    c.bar(labels, by_size["mean"], color="#55a868")
    for i, (acc, n) in enumerate(zip(by_size["mean"], by_size["size"])):
        c.text(i, acc + 0.005, f"{acc:.3f}\nn={int(n)}", ha="center", fontsize=9)
    c.set_ylim(0.5, 1.05)
    c.set_xlabel("galaxy radius / cutout side")
    c.set_ylabel("test accuracy")
    c.set_title("Small galaxies are where the errors are")

    keys = list(by_conf)
    d.bar(keys, [by_conf[k][0] for k in keys], color="#c44e52")
    for i, k in enumerate(keys):
        d.text(i, by_conf[k][0] + 0.005, f"{by_conf[k][0]:.3f}\nn={by_conf[k][1]}", ha="center",
               fontsize=9)
    d.set_ylim(0.4, 1.08)
    d.set_xlabel("calibrated probability of the predicted class")
    d.set_ylabel("test accuracy")
    d.set_title("Confidence is meaningful")
    fig.suptitle(f"What limits {Path(title).name} (test split)")
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
