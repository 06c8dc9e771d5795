"""What limits the shipped model's accuracy? Figures from the held-out test split.

Prints, for a model folder and the prepared data it was trained on:
1. test-time rotation averaging: no averaging vs 4 rotations vs all 8 rotations/flips;
2. recall per Galaxy Zoo 1 leaf class (EL, CW, ACW, EDGE): which kind of spiral is missed;
3. accuracy by apparent galaxy size (radius / cutout side, measured by survey matching's
   detector on the full cutout): is resolution the limit?
4. accuracy on the galaxies the model is sure about vs the rest (label noise shows up as
   confident "failures").
Usage: python benchmarks/accuracy_limits.py [--model models/resnet50_gz1] [--data data/gz1]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from galaxy_core.config import SHIPPED_MODEL_DIR, default_data_root
from galaxy_core.data.cache import load_part
from galaxy_core.data.imageio import load_image
from galaxy_core.data.prepared import open_prepared
from galaxy_core.data.tensors import to_tensor
from galaxy_core.evaluate.metrics import classification_metrics
from galaxy_core.model.store import load_model
from galaxy_core.predict.classify import calibrated
from galaxy_core.predict.survey_match import find_galaxy
from galaxy_core.train.augment import dihedral_views


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
    args = ap.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.model)
    cfg = loaded.config
    prepared = open_prepared(args.data)
    split = loaded.meta.get("training", {}).get("split", 0)
    part = load_part(prepared, cfg.crop_fraction, cfg.image_size, split, "test")
    y = part.labels
    views = view_logits(loaded, part.images)

    print(f"model {args.model}; test split {split}: {len(y)} galaxies\n")
    print("1. Test-time rotation averaging (calibrated probabilities)")
    print(f"   {'views':<28}{'accuracy':>9}{'balanced':>10}{'macro-F1':>10}")
    variants = {"none (1 view)": views[:1].mean(0), "4 rotations": views[:4].mean(0),
                "8 rotations + flips": views.mean(0)}
    for name, logits in variants.items():
        m = classification_metrics(y, calibrated(loaded, logits))
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
    for b, rows in table.groupby("size_bin", observed=True):
        print(f"   {str(b):<16} n={len(rows):4d}  accuracy {rows['correct'].mean():.4f}")
    print()

    print("4. Accuracy by model confidence")
    for lo, hi in ((0.5, 0.8), (0.8, 0.95), (0.95, 1.01)):
        rows = table[(table["confidence"] >= lo) & (table["confidence"] < hi)]
        if len(rows):
            print(f"   confidence {lo:.2f}-{min(hi, 1):.2f}: n={len(rows):4d}  "
                  f"accuracy {rows['correct'].mean():.4f}")
    wrong = table[~table["correct"]].sort_values("confidence", ascending=False)
    print(f"\n   {len(wrong)} errors; most confident ones (inspect them for label noise):")
    for _, r in wrong.head(12).iterrows():
        leaf = f" leaf {int(r['CLASS'])}" if "CLASS" in r and not pd.isna(r["CLASS"]) else ""
        print(f"   {r['objid']} true {r['label']:<10}{leaf} confidence {r['confidence']:.3f} "
              f"radius {r['radius']:.3f}")


if __name__ == "__main__":
    main()
