"""The fixed galaxy set of a class, drawn from the **test** part of the model's own split (never
a galaxy the network trained or was calibrated on), with the network's answers read from the
model's stored test report, so a class is made without running the network for its answers.

- ``balanced``: half spirals, half ellipticals, in a seeded shuffled order.
- ``hard``: the galaxies the network found hardest: probability closest to 0.5, or a confident
  answer the volunteers disagree with.
- ``mixed``: as the test split comes (about three ellipticals to one spiral, like the sky in
  this catalogue), seeded.

The same seed gives the same set in the same order, so every student sees the same galaxies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_core.classroom.store import Galaxy
from galaxy_core.data.catalogues import LEAF_NAMES
from galaxy_core.data.prepared import PreparedData
from galaxy_core.errors import DataNotFoundError
from galaxy_core.evaluate.report import load_report
from galaxy_core.model.store import report_dir

SETS = ("balanced", "hard", "mixed")


def test_galaxies(prepared: PreparedData, model_dir: Path) -> pd.DataFrame:
    """The model's test galaxies: objid, image, label, leaf, p_spiral, model_label."""
    report = load_report(report_dir(model_dir, "test"))
    if not report or not report.get("predictions"):
        raise DataNotFoundError(f"{model_dir} has no test report with per-galaxy predictions; "
                                f"run: galaxy evaluate --model {model_dir} --part test")
    split = int(report.get("split", 0))
    answers = pd.DataFrame(report["predictions"])[["objid", "p_spiral", "predicted"]]
    table = prepared.split_table(split)
    table = table[table["split"] == "test"].copy()
    table["objid"] = table["objid"].astype(str)
    by_id = prepared.table.set_index(prepared.table["objid"].astype(str))
    table["leaf"] = ""
    for column in ("subclass", "leaf_class"):  # GZ1's leaf code wins over its words
        if column in by_id.columns:
            found = table["objid"].map(by_id[column]).fillna("").astype(str)
            table["leaf"] = found.where(found != "", table["leaf"])
    merged = table.merge(answers.assign(objid=answers["objid"].astype(str)), on="objid")
    if merged.empty:
        raise DataNotFoundError(f"the prepared data at {prepared.root} does not hold this "
                                "model's test galaxies; prepare the data the model was trained on")
    return merged.rename(columns={"predicted": "model_label"})


def with_images(prepared: PreparedData, galaxies: pd.DataFrame) -> pd.DataFrame:
    """The rows whose image file is there (inside the image folder: names pointing elsewhere
    are dropped too), so a class never holds a galaxy nobody can see."""
    def present(name: object) -> bool:
        try:
            return prepared.image_path(str(name)).is_file()
        except (DataNotFoundError, OSError, ValueError):
            return False

    if galaxies.empty:
        return galaxies
    return galaxies[galaxies["image"].map(present)].reset_index(drop=True)


def choose(galaxies: pd.DataFrame, kind: str, n: int, seed: int) -> pd.DataFrame:
    """``n`` galaxies of set ``kind`` in the order students will see them."""
    if kind not in SETS:
        raise ValueError(f"galaxy set must be one of {', '.join(SETS)}, not {kind!r}")
    rng = np.random.default_rng(seed)
    n = min(n, len(galaxies))
    if kind == "balanced":
        half = n // 2
        parts = [g.iloc[rng.permutation(len(g))[:k]] for g, k in
                 ((galaxies[galaxies["label"] == "spiral"], n - half),
                  (galaxies[galaxies["label"] == "elliptical"], half))]
        chosen = pd.concat(parts)
    elif kind == "hard":
        wrong = galaxies["model_label"] != galaxies["label"]
        doubt = (galaxies["p_spiral"] - 0.5).abs()
        order = np.lexsort((rng.random(len(galaxies)), doubt.to_numpy(), ~wrong.to_numpy()))
        chosen = galaxies.iloc[order[:n]]
    else:
        chosen = galaxies.iloc[rng.permutation(len(galaxies))[:n]]
    return chosen.iloc[rng.permutation(len(chosen))].reset_index(drop=True)


GZ2_SUBCLASSES = ("smooth, round", "smooth, in between", "smooth, cigar-shaped", "smooth",
                  "disk, spiral", "disk, edge-on")
"""Galaxy Zoo 2's classes as the GZ2 set names them, shown in the reveal beside GZ1's leaves."""


def _subclass(text: str) -> str:
    """A GZ1 leaf code or a GZ2 class as the store keeps it; anything else is not shown."""
    return text if text in LEAF_NAMES.values() or text in GZ2_SUBCLASSES else ""


def as_galaxies(chosen: pd.DataFrame) -> list[Galaxy]:
    """Rows of :func:`choose` as the store keeps them (maps added later, when computed)."""
    return [Galaxy(position=i, objid=str(r.objid), image=str(r.image), label=str(r.label),
                   leaf=_subclass(str(r.leaf)),
                   model_label=str(r.model_label), p_spiral=float(r.p_spiral))
            for i, r in enumerate(chosen.itertuples())]
