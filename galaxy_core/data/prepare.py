"""``galaxy prepare``: catalogue(s) + image folder -> the same products as the original project
(``joined_galaxies_table.csv``, ``joined_galaxies_with_existing_images_table.csv``), a JSON
summary of the funnel, reproducible splits and the preprocessing cache."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from galaxy_core.config import Config
from galaxy_core.data import catalogues, selection
from galaxy_core.data.cache import build_cache
from galaxy_core.data.prepared import JOINED_TABLE, KEPT_TABLE, SUMMARY, PreparedData, open_prepared
from galaxy_core.data.splits import make_splits
from galaxy_core.errors import CatalogueError
from galaxy_core.io_utils import write_csv, write_json


@dataclass
class PrepareRequest:
    images: Path
    out: Path
    catalogue: Path | None = None
    """GZ1 table 2 (``GalaxyZoo1_DR_table2.csv``)."""
    mapping: Path | None = None
    """GZ2 ``gz2_filename_mapping.csv``; without it images are found as ``<OBJID>.<ext>``."""
    labels: Path | None = None
    """Leaf-class table ``OBJID,CLASS``."""
    folders: bool = False
    """Read labels from ``images/spirals`` and ``images/ellipticals`` instead of a catalogue."""
    use_flags: bool = False
    """GZ1 table: use the catalogue's UNCERTAIN flag instead of ``config.prob_threshold``."""
    n_splits: int = 1
    export: bool = False
    build_cache: bool = True


def _labelled(req: PrepareRequest, config: Config) -> tuple[pd.DataFrame, str]:
    sources = sum(x is not None for x in (req.catalogue, req.labels)) + int(req.folders)
    if sources != 1:
        raise CatalogueError("give exactly one label source: --catalogue, --labels or --folders")
    if req.folders:
        frame = catalogues.read_class_folders(req.images)
        frame["drop_reason"] = ""
        return frame, f"class folders in {req.images}"
    if req.labels is not None:
        labels = selection.labels_from_leaf(catalogues.read_leaf_classes(req.labels))
        source = f"leaf classes {req.labels}"
    else:
        threshold = None if req.use_flags else config.prob_threshold
        labels = selection.labels_from_gz1(catalogues.read_gz1_table(req.catalogue), threshold)
        source = f"Galaxy Zoo 1 table {req.catalogue}" + (
            " (UNCERTAIN flag)" if req.use_flags else f" (debiased p >= {threshold})")
    if req.mapping is not None:
        return selection.join_mapping(labels, catalogues.read_gz2_mapping(req.mapping)), source
    return selection.attach_images_by_id(labels, Path(req.images)), source


def export_folders(kept: pd.DataFrame, image_dir: Path, out: Path) -> None:
    """Put the selected images into ``out/spirals`` and ``out/ellipticals`` (hard links if possible)."""
    for label, folder in (("spiral", "spirals"), ("elliptical", "ellipticals")):
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        for name in kept.loc[kept["label"] == label, "image"]:
            src, dst = image_dir / name, target / Path(name).name
            if dst.exists():
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


def prepare(req: PrepareRequest, config: Config, progress: selection.Progress | None = None,
            cache_progress: selection.Progress | None = None) -> PreparedData:
    """Run the whole pipeline and return the prepared dataset it wrote."""
    image_dir = Path(req.images).resolve()
    if not image_dir.is_dir():
        raise CatalogueError(f"image folder not found: {req.images}")
    joined, source = _labelled(req, config)
    joined = selection.check_images(joined, image_dir, progress)
    summary = selection.summarise(joined, source)
    kept = joined[joined["drop_reason"] == ""].drop(columns=["drop_reason"])
    kept = make_splits(kept, req.n_splits, config.seed, config.val_fraction, config.test_fraction)
    summary.update(image_dir=str(image_dir), n_splits=req.n_splits, seed=config.seed,
                   val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                   split_counts={c: kept[c].value_counts().to_dict()
                                 for c in kept.columns if c.startswith("split_")})
    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "cache", ignore_errors=True)  # the selection may have changed
    write_csv(out / JOINED_TABLE, joined.drop(columns=["sha1"], errors="ignore"))
    write_csv(out / KEPT_TABLE, kept.drop(columns=["sha1"], errors="ignore"))
    write_json(out / SUMMARY, summary)
    if req.export:
        export_folders(kept, image_dir, out)
    prepared = open_prepared(out)
    if req.build_cache:
        build_cache(prepared, config.crop_fraction, config.image_size, 0, cache_progress)
    return prepared
