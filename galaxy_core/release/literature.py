"""Published spiral/elliptical-type figures, each with what it was measured on, so the model
card never sets one of our numbers beside an unlike one.

A figure means little without its data, its image size and its label cut: ">99%" on galaxies
where 80% of volunteers agreed is not the task of a test set that keeps every majority vote.
Each entry says which of our measurements is the nearest like-for-like one (``ours``: a key
of :func:`comparable`), or that we have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Published:
    who: str
    data: str
    image: str
    labels: str
    figure: str
    ours: str
    """Which of our test figures compares: ``gz2`` (confident GZ2 classes), ``gz1`` (GZ1
    majority-vote leaves) or ``""`` (none of ours is alike)."""


PUBLISHED: tuple[Published, ...] = (
    Published("Dieleman, Willett & Dambre 2015 (MNRAS 450, 1441)",
              "Kaggle Galaxy Challenge: ~61,600 GZ2 SDSS cutouts (the set our GZ2 part comes from)",
              "424 px cutouts cropped to 207 px, downsampled to 69 px",
              "regression on vote fractions; accuracy quoted on galaxies with high volunteer "
              "agreement",
              "> 99% for most questions on high-agreement galaxies", "gz2"),
    Published("Domínguez Sánchez et al. 2018 (MNRAS 476, 3661)",
              "GZ2 (Hart et al. 2016 debiased) and Nair & Abraham 2010, SDSS DR7",
              "424 px cutouts downsampled to 69 px",
              "test galaxies with small GZ2 uncertainties (high agreement)",
              "> 97% accuracy on the GZ2 questions (disk/features, edge-on, ...)", "gz2"),
    Published("Cavanagh, Bekki & Groves 2021 (MNRAS 506, 659)",
              "14,034 SDSS galaxies classified by experts (Nair & Abraham 2010)",
              "SDSS colour cutouts (size in their section 2; not restated here)",
              "expert T-types: E / S0 / Sp / Irr; the binary E vs Sp pair alone",
              "> 98% for elliptical vs spiral (83% 3-way with S0); 92% binary on a small GZ "
              "sample", ""),
    Published("Walmsley et al. 2022, GZ DECaLS (MNRAS 509, 3966)",
              "314,000 DECaLS galaxies, deeper than SDSS (r 23.6 vs 22.2)",
              "DECaLS 424 px cutouts, greyscale, resized to ~224 px",
              "confident volunteer answers (votes well past a majority)",
              "~99% on every question", "gz2"),
)


AMBIGUOUS_GZ2 = ("smooth, cigar-shaped", "smooth")
"""GZ2 sub-classes labelled elliptical whose galaxies are often disks: cigar-shaped "smooth"
galaxies look like the edge-on disks labelled spiral, and many "smooth" ones with no shape given
are blue, clumpy, some with arms (``benchmarks/label_ambiguity.py`` draws them). The
high-agreement cuts of the published figures leave most such galaxies out, so our GZ2 figure is
also given without them."""


def without_subclasses(report: dict[str, Any], source: str,
                       left_out: tuple[str, ...]) -> dict[str, float] | None:
    """Accuracy, balanced accuracy and recall per class of one source's test galaxies leaving
    some sub-classes out, from the report's per-sub-class block (n, true class, share right);
    None when the report has no such block or nothing is left of a class."""
    right = {"elliptical": 0.0, "spiral": 0.0}
    count = {"elliptical": 0, "spiral": 0}
    for key, block in (report.get("by_subclass") or {}).items():
        name, _, subclass = key.partition(": ")
        if name != source or subclass in left_out or block["true"] not in count:
            continue
        count[block["true"]] += block["n"]
        right[block["true"]] += block["accuracy"] * block["n"]
    if not all(count.values()):
        return None
    n = sum(count.values())
    recall = {c: right[c] / count[c] for c in count}
    return {"n": n, "accuracy": sum(right.values()) / n,
            "balanced_accuracy": sum(recall.values()) / len(recall),
            **{f"recall_{c}": value for c, value in recall.items()}}


def comparable(report: dict[str, Any]) -> dict[str, str]:
    """Our test figure for each kind of label cut, from a test report's per-source block (and,
    for GZ2, its per-sub-class block without :data:`AMBIGUOUS_GZ2`)."""
    by_source = report.get("by_source") or {}
    out = {}
    for key in ("gz2", "gz1"):
        block = by_source.get(key)
        if block:
            out[key] = (f"{100 * block['accuracy']:.1f}% accuracy, "
                        f"{100 * block['balanced_accuracy']:.1f}% balanced "
                        f"({block['n']:,} {key.upper()} test galaxies)")
    clear = without_subclasses(report, "gz2", AMBIGUOUS_GZ2)
    if "gz2" in out and clear:
        out["gz2"] += (f"; {100 * clear['accuracy']:.1f}% and "
                       f"{100 * clear['balanced_accuracy']:.1f}% without the cigar-shaped and "
                       f"shapeless smooth 'ellipticals', many of them disks ({clear['n']:,})")
    return out


def literature_lines(report: dict[str, Any]) -> list[str]:
    """The model card's table: each published figure with its data, image size and label cut,
    and ours beside it only where the labels are alike."""
    ours = comparable(report)
    lines = ["", "## Published figures, and which of ours compares", "",
             "| study | data | images | labels / cut | their figure | ours, like for like |",
             "|---|---|---|---|---|---|"]
    for p in PUBLISHED:
        mine = ours.get(p.ours, "not measured here (no like labels)") if p.ours else \
            "not measured here (no expert labels)"
        lines.append(f"| {p.who} | {p.data} | {p.image} | {p.labels} | {p.figure} | {mine} |")
    lines += ["", "Our GZ2 labels are the confident classes of the Kaggle set (a vote-fraction "
              "cut whose exact rule the source repositories do not state); our GZ1 labels are "
              "majority-vote leaves with no agreement cut, a harder test than any above. Our "
              "input is 96 px from the centre 40% of the cutout."]
    return lines
