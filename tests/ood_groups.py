"""The four groups of pictures the out-of-distribution limits are fitted and checked on (issue 23),
each cut into a part to fit on and a part held back (tests/test_ood_groups.py and
benchmarks/fit_picture_limits.py).

- ``sdss``: survey cutouts as shipped (GZ1 ``gz1_sdss``; GZ2 ``gz2_kaggle`` where its images
  were written out). Fit part from the prepared split's train part, held-back part from its test
  part, so the held-back galaxies are ones the model never trained on either.
- ``tight``: the same cutouts cropped tight round their galaxy (:func:`tight_thumbnail`), the way
  many catalogues ship thumbnails: the galaxy fills the frame and its outskirts touch the edge.
- ``hubble``: the ESA/Hubble development set (``hubble_dev``, 89 press pictures).
- ``nongalaxy``: the photographs, plots and renders of ``tests/nongalaxy_images.py``.

Which part a picture falls in is decided by a hash of its name (:func:`held_back`), within each
label, so the cut is the same on every machine and needs no stored list.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

GROUPS = ("sdss", "tight", "hubble", "nongalaxy")
TIGHT_MARGINS = (0.85, 1.0, 1.15)
"""Side of a tight thumbnail over the galaxy outline's longer side; a galaxy's name picks one."""
TIGHT_MIN_SIDE = 48
"""Smallest tight thumbnail (px): a catalogue does not ship a galaxy as a smaller one."""


@dataclass(frozen=True)
class Item:
    """One picture of a group: its name, its bytes (as a user would upload them) and its label
    (spiral / elliptical; "" for a non-galaxy)."""

    group: str
    name: str
    data: bytes
    label: str
    held: bool


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def held_back(names: list[str]) -> set[str]:
    """Every other name in hash order: half of ``names`` (the odd positions), the same cut on
    every machine. Call it per label, so each part keeps the label mix."""
    ordered = sorted(names, key=_hash)
    return set(ordered[1::2])


def tight_thumbnail(data: bytes, name: str) -> bytes:
    """A square crop centred on the galaxy the finder sees, its side 0.85-1.15 times the
    outline's longer side (at least :data:`TIGHT_MIN_SIDE` px, at most the frame), as JPEG."""
    from galaxy_core.data.galaxy_finder import find_galaxy

    img = Image.open(io.BytesIO(data)).convert("RGB")
    found = find_galaxy(img)
    left, top, right, bottom = found.box
    margin = TIGHT_MARGINS[_hash(name) % len(TIGHT_MARGINS)]
    side = int(round(max(right - left, bottom - top) * margin))
    side = min(max(side, TIGHT_MIN_SIDE), min(img.size))
    x0 = int(round(min(max(found.x - side / 2, 0), img.width - side)))
    y0 = int(round(min(max(found.y - side / 2, 0), img.height - side)))
    buf = io.BytesIO()
    img.crop((x0, y0, x0 + side, y0 + side)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _split_by_label(group: str, rows: list[tuple[str, bytes, str]]) -> list[Item]:
    held: set[str] = set()
    for label in {row[2] for row in rows}:
        held |= held_back([row[0] for row in rows if row[2] == label])
    return [Item(group, name, data, label, name in held) for name, data, label in rows]


def hubble_items(data_root: Path) -> list[Item]:
    """The 89 hubble_dev pictures, half of each label held back (empty when absent)."""
    import csv

    folder = data_root / "hubble_dev"
    table = folder / "labels.csv"
    if not table.is_file():
        return []
    with open(table, newline="") as f:
        rows = [(r["filename"], (folder / r["filename"]).read_bytes(), r["label"])
                for r in csv.DictReader(f)]
    return _split_by_label("hubble", rows)


def nongalaxy_items() -> list[Item]:
    """The non-galaxy pictures, half held back."""
    from tests.nongalaxy_images import non_galaxy_images

    return _split_by_label("nongalaxy",
                           [(name, data, "") for name, data in non_galaxy_images().items()])


def sdss_items(prepared, split: int, per_source: int, seed: int = 0) -> list[Item]:
    """Up to ``per_source`` cutouts of each survey in ``prepared`` from the split's train part
    (fit) and as many from its test part (held back), each also as a tight thumbnail. Only
    galaxies whose image file is here are drawn."""
    table = prepared.split_table(split)
    if "source" not in table.columns:
        table = table.assign(source="gz1")
    items: list[Item] = []
    for (source, part), rows in table.groupby(["source", "split"]):
        if part not in ("train", "test"):
            continue
        paths = [(name, prepared.image_path(name), label)
                 for name, label in zip(rows["image"], rows["label"])]
        paths = [p for p in paths if p[1].is_file()]
        if not paths:
            continue
        order = sorted(paths, key=lambda p: _hash(f"{seed}:{p[0]}"))[:per_source]
        for name, path, label in order:
            data = path.read_bytes()
            held = part == "test"
            items.append(Item("sdss", name, data, label, held))
            items.append(Item("tight", name, tight_thumbnail(data, name), label, held))
    return items
