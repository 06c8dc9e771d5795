"""A prepared dataset folder, as written by ``galaxy prepare``; everything downstream
(training, evaluation, the dashboard) reads data through this one view of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from galaxy_core.data.splits import split_columns
from galaxy_core.errors import DataNotFoundError
from galaxy_core.io_utils import read_json, resolve_inside

JOINED_TABLE = "joined_galaxies_table.csv"
KEPT_TABLE = "joined_galaxies_with_existing_images_table.csv"
SUMMARY = "summary.json"


@dataclass
class PreparedData:
    root: Path
    summary: dict
    table: pd.DataFrame
    """Kept galaxies: objid, label, image (relative to image_dir) and split_0..split_k."""

    @property
    def image_dir(self) -> Path:
        return Path(self.summary["image_dir"])

    @property
    def n_splits(self) -> int:
        return len(split_columns(self.table))

    def image_path(self, name: str) -> Path:
        """Path of a kept image; names from an edited table cannot point outside image_dir."""
        path = resolve_inside(self.image_dir.resolve(), name)
        if path is None:
            raise DataNotFoundError(f"image name {name!r} points outside {self.image_dir}")
        return path

    def split_table(self, split: int) -> pd.DataFrame:
        """The kept table with a single ``split`` column for split number ``split``."""
        column = f"split_{split}"
        if column not in self.table.columns:
            raise DataNotFoundError(f"{self.root} has {self.n_splits} split(s); split {split} "
                                    f"does not exist (re-run galaxy prepare with --splits)")
        out = self.table[["objid", "label", "image"]].copy()
        out["split"] = self.table[column]
        return out


def open_prepared(root: str | Path) -> PreparedData:
    """Open a folder written by ``galaxy prepare``, or say how to make one."""
    root = Path(root)
    if not (root / SUMMARY).is_file() or not (root / KEPT_TABLE).is_file():
        raise DataNotFoundError(
            f"{root} is not a prepared dataset (no {SUMMARY} / {KEPT_TABLE}). Create it with: "
            f"galaxy prepare --labels ../shared/data/gz1_sdss/gz1_classes.csv "
            f"--images ../shared/data/gz1_sdss/images --out {root}")
    summary = read_json(root / SUMMARY)
    table = pd.read_csv(root / KEPT_TABLE, dtype={"objid": str, "image": str})
    return PreparedData(root=root, summary=summary, table=table)
