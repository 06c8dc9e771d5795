"""Which test galaxies do two independently trained models both get wrong, and what do they look
like? Agreement between different networks separates hard or mislabelled galaxies from the
mistakes of one model.

Reads the ``report.json`` of each model on the same test split (written by ``galaxy evaluate``
or ``galaxy export``), prints agreement figures and draws a contact sheet of the shared errors
(most confident first): Galaxy Zoo label on top, each model's calibrated p(spiral) below.
Usage: python benchmarks/hard_cases.py REPORT_A REPORT_B [--out docs/hard_cases.png] [--n 24]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from galaxy_core.data.preprocess import centre_crop

TILE = 160
CROP = 0.4  # the models' own centre crop, so the sheet shows what they saw


def load_predictions(path: str) -> tuple[dict[str, dict], str]:
    report = json.loads(Path(path).read_text())
    return {p["objid"]: p for p in report["predictions"]}, report["image_dir"]


def tile(image_path: Path, label: str, p_a: float, p_b: float) -> Image.Image:
    img = centre_crop(Image.open(image_path).convert("RGB"), CROP)
    img = img.resize((TILE, TILE), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(img)
    draw.text((3, 2), f"GZ: {label}", fill=(255, 255, 0))
    draw.text((3, TILE - 14), f"p(spiral) {p_a:.2f} / {p_b:.2f}", fill=(0, 255, 255))
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report_a")
    ap.add_argument("report_b")
    ap.add_argument("--out", default="docs/hard_cases.png")
    ap.add_argument("--n", type=int, default=24, help="galaxies on the sheet")
    args = ap.parse_args()
    a, image_dir = load_predictions(args.report_a)
    b, _ = load_predictions(args.report_b)
    ids = sorted(set(a) & set(b))
    truth = np.array([a[i]["true"] == "spiral" for i in ids])
    sa = np.array([a[i]["p_spiral"] for i in ids])
    sb = np.array([b[i]["p_spiral"] for i in ids])
    wrong_a, wrong_b = (sa > 0.5) != truth, (sb > 0.5) != truth
    both = wrong_a & wrong_b
    sure = both & (np.maximum(sa, 1 - sa) > 0.9) & (np.maximum(sb, 1 - sb) > 0.9)
    print(f"{len(ids)} galaxies: accuracy A {1 - wrong_a.mean():.4f}, B {1 - wrong_b.mean():.4f}, "
          f"average of both {(((sa + sb) / 2 > 0.5) == truth).mean():.4f}")
    print(f"models agree on {((sa > 0.5) == (sb > 0.5)).mean():.4f}; wrong: A {wrong_a.sum()}, "
          f"B {wrong_b.sum()}, both {both.sum()} (both with p > 0.9: {sure.sum()})")
    for cls in ("elliptical", "spiral"):
        mask = both & (truth == (cls == "spiral"))
        print(f"   shared errors on Galaxy Zoo {cls}s: {mask.sum()}")

    order = np.argsort(-(np.abs(sa - 0.5) + np.abs(sb - 0.5)) * both)[: min(args.n, both.sum())]
    tiles = [tile(Path(image_dir) / a[ids[k]]["image"], a[ids[k]]["true"], sa[k], sb[k])
             for k in order]
    if not tiles:
        return
    cols = 8
    sheet = Image.new("RGB", (cols * TILE, -(-len(tiles) // cols) * TILE))
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % cols) * TILE, (k // cols) * TILE))
    sheet.save(args.out)
    print(f"contact sheet of {len(tiles)} shared errors written to {args.out}")


if __name__ == "__main__":
    main()
