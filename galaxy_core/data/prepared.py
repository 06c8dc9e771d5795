"""A prepared dataset folder, as written by ``galaxy prepare``; everything downstream
(training, evaluation, the dashboard) reads data through this one view of it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from galaxy_core.data.image_roots import ImageRoots
from galaxy_core.data.splits import split_columns
from galaxy_core.errors import DataNotFoundError
from galaxy_core.io_utils import read_json

JOINED_TABLE = "joined_galaxies_table.csv"
KEPT_TABLE = "joined_galaxies_with_existing_images_table.csv"
SUMMARY = "summary.json"
DESCRIPTIVE_COLUMNS = ("source", "subclass")
"""Columns a multi-source table adds to each galaxy (its survey and its finer class), carried
into every split table so reports can be broken down by them."""


@dataclass
class PreparedData:
    root: Path
    summary: dict
    table: pd.DataFrame
    """Kept galaxies: objid, label, image (relative to image_dir) and split_0..split_k."""

    @cached_property
    def image_roots(self) -> ImageRoots:
        """Where the images are: one folder, or one per source (``summary["image_dirs"]``)."""
        folders = self.summary.get("image_dirs")
        if isinstance(folders, dict) and folders:
            return ImageRoots.by_source(folders)
        return ImageRoots.single(self.summary["image_dir"])

    @property
    def image_dir(self) -> Path:
        """The image folder, or the first source's for a multi-source dataset (messages only:
        files are found through :attr:`image_roots`)."""
        return self.image_roots.folders[0][1]

    @property
    def n_splits(self) -> int:
        return len(split_columns(self.table))

    def describe(self, images: list[str]) -> dict[str, list[str]]:
        """Each image's :data:`DESCRIPTIVE_COLUMNS` (source, sub-class) from the kept table,
        where it has them: the cache tables carry only id, label and image, so a cache built
        before a column existed still gets it here."""
        columns = [c for c in DESCRIPTIVE_COLUMNS if c in self.table.columns]
        if not columns:
            return {}
        table = self.table.drop_duplicates("image").set_index("image")
        return {c: table[c].reindex(images).fillna("").astype(str).tolist() for c in columns}

    def image_path(self, name: str) -> Path:
        """Path of a kept image; names from an edited table cannot point outside image_dir."""
        path = self.image_roots.resolve(name)
        if path is None:
            raise DataNotFoundError(f"image name {name!r} points outside "
                                    f"{self.image_roots.describe()}")
        return path

    def split_table(self, split: int) -> pd.DataFrame:
        """The kept table with a single ``split`` column for split number ``split``."""
        column = f"split_{split}"
        if column not in self.table.columns:
            raise DataNotFoundError(f"{self.root} has {self.n_splits} split(s); split {split} "
                                    f"does not exist (re-run galaxy prepare with --splits)")
        extra = [c for c in DESCRIPTIVE_COLUMNS if c in self.table.columns]
        out = self.table[["objid", "label", "image", *extra]].copy()
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
