"""Preprocessing cache: each split part decoded, cropped and resized once, stored as one uint8
array file, so that training epochs never decode a JPEG again (decoding a 423 px JPEG costs
more than a forward pass at 112 px on this hardware)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_core.config import CLASSES, Config
from galaxy_core.data.imageio import load_image
from galaxy_core.data.preprocess import crop_and_resize
from galaxy_core.data.prepared import PreparedData
from galaxy_core.data.selection import Progress
from galaxy_core.data.splits import PARTS
from galaxy_core.io_utils import atomic_write, write_csv


@dataclass
class Part:
    """One split part held in memory: images (N,H,W,3 uint8), labels (N,) int64, galaxy ids."""

    images: np.ndarray
    labels: np.ndarray
    table: pd.DataFrame

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir(prepared: PreparedData, crop_fraction: float, size: int,
              crop_radii: float = 0.0) -> Path:
    framing = f"radii{crop_radii:.2f}" if crop_radii > 0 else f"crop{crop_fraction:.2f}"
    return prepared.root / "cache" / f"{size}px_{framing}"


def decode_all(paths: list[Path], crop_fraction: float, size: int,
               progress: Progress | None = None, workers: int = 2,
               crop_radii: float = 0.0) -> np.ndarray:
    """Decode, crop and resize every image (threads: PIL releases the GIL while decoding)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i: int) -> int:
        out[i] = crop_and_resize(load_image(paths[i]), crop_fraction, size, crop_radii)
        return i

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(one, range(len(paths))), start=1):
            if progress and (done % 64 == 0 or done == len(paths)):
                progress(done, len(paths))
    return out


def build_cache(prepared: PreparedData, crop_fraction: float, size: int, split: int = 0,
                progress: Progress | None = None, crop_radii: float = 0.0) -> Path:
    """Write ``split{k}_{part}.npy`` and ``.csv`` for each part of split ``k``; return the folder."""
    table = prepared.split_table(split)
    folder = cache_dir(prepared, crop_fraction, size, crop_radii)
    all_images = decode_all([prepared.image_path(n) for n in table["image"]], crop_fraction, size,
                            progress, crop_radii=crop_radii)
    for part in PARTS:
        mask = (table["split"] == part).to_numpy()

        def save(handle, arr=all_images[mask]):
            buf = io.BytesIO()
            np.save(buf, arr)
            handle.write(buf.getvalue())

        atomic_write(folder / f"split{split}_{part}.npy", save)
        write_csv(folder / f"split{split}_{part}.csv", table.loc[mask, ["objid", "label", "image"]])
    return folder


def load_framed_part(prepared: PreparedData, config: Config, split: int, part: str) -> Part:
    """:func:`load_part` framed as ``config`` (a run's or a model's) says: every caller that
    feeds a model goes through here, so a new framing setting is threaded in one place."""
    return load_part(prepared, config.crop_fraction, config.image_size, split, part,
                     crop_radii=config.crop_radii)


def training_part(prepared: PreparedData, config: Config, split: int) -> Part:
    """The training images a run actually learns from: the split's train part, cut down to a
    fixed random ``config.max_train_images`` when that is set. Training and the model's record
    of its data both read it here, so the card states the number of galaxies really used."""
    part = load_framed_part(prepared, config, split, "train")
    limit = config.max_train_images
    if not limit or limit >= len(part):
        return part
    order = np.sort(np.random.default_rng(config.seed).permutation(len(part))[:limit])
    return Part(part.images[order], part.labels[order],
                part.table.iloc[order].reset_index(drop=True))


def load_part(prepared: PreparedData, crop_fraction: float, size: int, split: int, part: str,
              progress: Progress | None = None, crop_radii: float = 0.0) -> Part:
    """Load one cached part, building the cache for this split first if it is not there."""
    folder = cache_dir(prepared, crop_fraction, size, crop_radii)
    npy, csv = folder / f"split{split}_{part}.npy", folder / f"split{split}_{part}.csv"
    if not (npy.is_file() and csv.is_file()):
        build_cache(prepared, crop_fraction, size, split, progress, crop_radii)
    table = pd.read_csv(csv, dtype={"objid": str})
    images = np.load(npy, allow_pickle=False)
    if len(images) != len(table):
        build_cache(prepared, crop_fraction, size, split, progress, crop_radii)
        return load_part(prepared, crop_fraction, size, split, part, crop_radii=crop_radii)
    labels = table["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=np.int64)
    return Part(images=images, labels=labels, table=table)
