"""Where a model's Galaxy Zoo 2 errors are, sub-class by sub-class, and what GZ2 accuracy is
without the two sub-classes whose two-class label is ambiguous.

The GZ2 set's confident classes map "smooth, cigar-shaped" and "smooth" with no shape given to
elliptical. Looked at, many of them are disks: cigar-shaped "ellipticals" are thin, often blue
edge-on shapes like the edge-on disks labelled spiral, and the shapeless smooth ones that the
network calls spiral are blue and diffuse, some with arms. Published accuracies on "confident"
labels (the model card's table) come from vote cuts that leave such galaxies out, so the card
gives GZ2 both ways: every galaxy, and without these two sub-classes.

Reads one ``report.json`` (``galaxy evaluate`` / the release step), prints its per-sub-class
table for GZ2 and the GZ2 figures both ways (``literature.without_subclasses``, as the model card
computes them), and draws a contact sheet of the errors in those sub-classes beside
edge-on disks, at the model's own crop.

Usage: python benchmarks/label_ambiguity.py models/resnet50_gz1/report_test/report.json \
           [--out docs/gz2_ambiguous.png] [--per-row 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

from galaxy_core.data.preprocess import centre_crop
from galaxy_core.release.literature import AMBIGUOUS_GZ2 as AMBIGUOUS
from galaxy_core.release.literature import without_subclasses

TILE = 150
CROP = 0.4  # the shipped model's centre crop: the sheet shows what it saw


def gz2_subclasses(report: dict) -> dict[str, dict]:
    """The report's per-sub-class block (n, true class, share right, mean p(spiral)) for the
    GZ2 sub-classes, by sub-class name."""
    prefix = "gz2: "
    return {key[len(prefix):]: block for key, block in sorted(report["by_subclass"].items())
            if key.startswith(prefix)}


def _tile(path: Path, caption: str, p_spiral: float) -> Image.Image:
    img = centre_crop(Image.open(path).convert("RGB"), CROP)
    img = img.resize((TILE, TILE), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(img)
    draw.text((3, 2), caption, fill=(255, 255, 0))
    draw.text((3, TILE - 14), f"p(spiral) {p_spiral:.2f}", fill=(0, 255, 255))
    return img


def sheet(report: dict, per_row: int) -> Image.Image:
    """One row each: cigar-shaped 'ellipticals' called spiral, edge-on disks called spiral (for
    comparison), shapeless smooth 'ellipticals' called spiral, disk spirals called elliptical.
    The most confident of each, so the sheet shows the network's firm disagreements."""
    folders = {name: Path(folder) for name, folder in report["image_dirs"].items()}
    gz2 = [p for p in report["predictions"] if p.get("source") == "gz2"]
    rows = [("cigar-shaped", lambda p: p["subclass"] == "smooth, cigar-shaped", True),
            ("edge-on disk", lambda p: p["subclass"] == "disk, edge-on", True),
            ("smooth, no shape", lambda p: p["subclass"] == "smooth", True),
            ("disk, spiral", lambda p: p["subclass"] == "disk, spiral", False)]
    canvas = Image.new("RGB", (TILE * per_row, TILE * len(rows)), "black")
    for r, (caption, wanted, most_spiral) in enumerate(rows):
        chosen = sorted((p for p in gz2 if wanted(p)), key=lambda p: p["p_spiral"],
                        reverse=most_spiral)[:per_row]
        for c, p in enumerate(chosen):
            source, name = p["image"].split("/", 1)
            canvas.paste(_tile(folders[source] / name, f"GZ2: {caption}", p["p_spiral"]),
                         (c * TILE, r * TILE))
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="contact sheet (PNG)")
    ap.add_argument("--per-row", type=int, default=6)
    args = ap.parse_args()
    report = json.loads(args.report.read_text())
    print(f"{'GZ2 sub-class':24s} {'n':>5s} {'right':>7s} {'mean p(spiral)':>15s}")
    for name, row in gz2_subclasses(report).items():
        print(f"{name:24s} {row['n']:5d} {row['accuracy']:7.1%} {row['mean_p_spiral']:15.3f}")
    for title, exclude in (("all GZ2", ()), ("without " + " and ".join(AMBIGUOUS), AMBIGUOUS)):
        f = without_subclasses(report, "gz2", exclude)
        print(f"{title}: n {f['n']}, accuracy {f['accuracy']:.4f}, balanced "
              f"{f['balanced_accuracy']:.4f}, recall elliptical {f['recall_elliptical']:.4f}, "
              f"spiral {f['recall_spiral']:.4f}")
    if args.out:
        sheet(report, args.per_row).save(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
