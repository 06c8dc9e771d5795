"""Preprocessing cache: each split part decoded, cropped and resized once, stored as one uint8
array file, so that training epochs never decode a JPEG again (decoding a 423 px JPEG costs
more than a forward pass at 112 px on this hardware).

The cache may be larger than memory. It is written chunk by chunk straight into its ``.npy``
file (decoded by worker processes, :mod:`galaxy_core.data.pool`), and read back through a
memory map: a batch is gathered from the map, and the pages it touched are handed back at once,
so neither ``galaxy prepare`` nor training holds more than a few chunks or batches whatever the
number of galaxies.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from galaxy_core.config import CLASSES, Config
from galaxy_core.data.pool import RowFile, Workers, decode_chunk, decode_into_files, run_chunks
from galaxy_core.data.prepared import PreparedData
from galaxy_core.data.selection import Progress
from galaxy_core.data.splits import PARTS
from galaxy_core.io_utils import TEMP_SUFFIX, write_csv

DECODE_CHUNK = 32
"""Images per chunk a worker decodes: at 112 px a chunk is 1.2 MB to send back, and a few of
them in flight per worker is all the memory ``galaxy prepare`` needs for the cache."""


class CachedImages:
    """Rows of a cached part, read through its memory map: what :class:`Part` holds as
    ``images``.

    It answers ``len``, ``shape``, ``dtype``, ``ndim`` and indexing like the (N, H, W, 3) uint8
    array it stands for: an int, a slice, an int array (sorted is fastest, as the training loop
    asks), or a tuple starting with one of those; ``np.asarray`` reads every row. Each read
    returns a private in-memory copy and then hands the mapped pages back to the kernel
    (``MADV_DONTNEED``), so the process's resident memory holds one batch, not every page an
    epoch has touched; the pages stay in the page cache, shared and reclaimable. ``rows``
    narrows it to a subset of the part (``max_train_images``) without copying anything.
    """

    def __init__(self, mapped: np.ndarray, rows: np.ndarray | None = None) -> None:
        self.mapped = mapped
        """The whole part as ``np.load(..., mmap_mode="r")`` returned it."""
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        """Row numbers in ``mapped`` this view is made of, or None for all of them."""

    def __len__(self) -> int:
        return len(self.mapped) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.mapped.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.mapped.dtype

    @property
    def ndim(self) -> int:
        return self.mapped.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if self.rows is not None:
            first = self.rows[first]
        out = self.mapped[(first, *rest)]
        # A gather (int array) is already a private copy; a slice is a view of the map, copied
        # so that nothing the caller keeps points into pages about to be handed back.
        out = np.array(out) if np.may_share_memory(out, self.mapped) else np.asarray(out)
        self.release()
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def subset(self, rows: np.ndarray) -> CachedImages:
        """The rows ``rows`` (positions in this view) as a new view of the same map."""
        rows = np.asarray(rows, dtype=np.int64)
        return CachedImages(self.mapped, rows if self.rows is None else self.rows[rows])

    def release(self) -> None:
        """Hand the mapped pages back: the next read of them is a page-cache hit, not a disk
        read, and they no longer count in this process's resident memory."""
        handle = getattr(self.mapped, "_mmap", None)
        if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                handle.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass  # closed or not supported: only the memory figure suffers


@dataclass
class Part:
    """One split part: images (N,H,W,3 uint8, memory-mapped :class:`CachedImages`, or any array
    a caller builds), labels (N,) int64, galaxy ids."""

    images: CachedImages | np.ndarray
    labels: np.ndarray
    table: pd.DataFrame

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir(prepared: PreparedData, crop_fraction: float, size: int,
              crop_radii: float = 0.0) -> Path:
    framing = f"radii{crop_radii:.2f}" if crop_radii > 0 else f"crop{crop_fraction:.2f}"
    return prepared.root / "cache" / f"{size}px_{framing}"


def decode_all(paths: list[Path], crop_fraction: float, size: int,
               progress: Progress | None = None, workers: int = 1,
               crop_radii: float = 0.0) -> np.ndarray:
    """Decode, crop and resize every image into one in-memory array (for small sets; the cache
    itself is written by :func:`build_cache` without holding all images)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def store(start: int, chunk: np.ndarray) -> None:
        out[start:start + len(chunk)] = chunk

    work = partial(decode_chunk, crop_fraction=crop_fraction, size=size, crop_radii=crop_radii)
    run_chunks(work, paths, store, workers, DECODE_CHUNK, progress)
    return out


def npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header ``np.save`` writes for a C-ordered uint8 array of ``shape``, so a
    cache written chunk by chunk is the same file, byte for byte, as one saved at once."""
    from io import BytesIO

    buffer = BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                 "fortran_order": False, "shape": tuple(int(n) for n in shape)})
    return buffer.getvalue()


class _ArrayFile:
    """One part's ``.npy`` being written: a temporary file beside its final name, the header
    first and room for every row, which the decoding workers fill in place (plain writes, not
    a writable map: the written pages belong to the page cache, not to any process's resident
    memory); renamed over the final name only by :meth:`install`."""

    def __init__(self, path: Path, shape: tuple[int, ...]) -> None:
        self.path, self.rows = path, int(shape[0])
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        self.tmp = Path(tmp)
        self.handle: BinaryIO = os.fdopen(fd, "wb")
        self.handle.write(npy_header(shape))
        self.offset = self.handle.tell()
        self.handle.truncate(self.offset + self.rows * int(np.prod(shape[1:], dtype=np.int64)))
        self.handle.flush()

    def target(self, first: int) -> RowFile:
        """Where the workers write this part's rows, ``first`` being its first row in the job."""
        return RowFile(self.tmp, self.offset, first, self.rows)

    def install(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.chmod(self.tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


def build_cache(prepared: PreparedData, crop_fraction: float, size: int, split: int = 0,
                progress: Progress | None = None, crop_radii: float = 0.0,
                workers: int | Workers = 1) -> Path:
    """Write ``split{k}_{part}.npy`` and ``.csv`` for each part of split ``k``; return the folder.

    The images are decoded in ``workers`` processes, a chunk at a time, and the worker writes
    each chunk straight into its part's file, so memory holds a few chunks, never the cache. The
    files are written under temporary names and renamed into place only when every part is
    complete: an error or Ctrl-C leaves the folder as it was. The result is the same, byte for
    byte, for any number of workers.
    """
    table = prepared.split_table(split)
    folder = cache_dir(prepared, crop_fraction, size, crop_radii)
    folder.mkdir(parents=True, exist_ok=True)
    rows = {part: table[(table["split"] == part).to_numpy()] for part in PARTS}
    ordered = pd.concat([rows[part] for part in PARTS])  # each part's rows together, in order
    first_row = np.cumsum([0] + [len(rows[part]) for part in PARTS])
    files: list[_ArrayFile] = []
    try:
        for part in PARTS:
            files.append(_ArrayFile(folder / f"split{split}_{part}.npy",
                                    (len(rows[part]), size, size, 3)))

        work = partial(decode_into_files, roots=prepared.image_roots,
                       files=[file.target(int(first)) for file, first in zip(files, first_row)],
                       crop_fraction=crop_fraction, size=size, crop_radii=crop_radii)
        items = list(enumerate(ordered["image"].tolist()))  # (row of the job, image name)
        run_chunks(work, items, lambda start, written: None, workers, DECODE_CHUNK, progress)
        for file in files:
            file.install()
    finally:
        for file in files:
            file.discard()
    for part in PARTS:
        write_csv(folder / f"split{split}_{part}.csv", rows[part][["objid", "label", "image"]])
    return folder


def load_framed_part(prepared: PreparedData, config: Config, split: int, part: str) -> Part:
    """:func:`load_part` framed as ``config`` (a run's or a model's) says: every caller that
    feeds a model goes through here, so a new framing setting is threaded in one place."""
    return load_part(prepared, config.crop_fraction, config.image_size, split, part,
                     crop_radii=config.crop_radii)


def training_part(prepared: PreparedData, config: Config, split: int) -> Part:
    """The training images a run actually learns from: the split's train part, cut down to a
    fixed random ``config.max_train_images`` when that is set. Training and the model's record
    of its data both read it here, so the card states the number of galaxies really used. The
    subset stays a view of the memory map: nothing is read until a batch asks for it."""
    part = load_framed_part(prepared, config, split, "train")
    limit = config.max_train_images
    if not limit or limit >= len(part):
        return part
    order = np.sort(np.random.default_rng(config.seed).permutation(len(part))[:limit])
    images = part.images.subset(order) if isinstance(part.images, CachedImages) \
        else part.images[order]
    return Part(images, part.labels[order], part.table.iloc[order].reset_index(drop=True))


def load_part(prepared: PreparedData, crop_fraction: float, size: int, split: int, part: str,
              progress: Progress | None = None, crop_radii: float = 0.0) -> Part:
    """Load one cached part, building the cache for this split first if it is not there. The
    images are memory-mapped (:class:`CachedImages`), never read whole."""
    folder = cache_dir(prepared, crop_fraction, size, crop_radii)
    npy, csv = folder / f"split{split}_{part}.npy", folder / f"split{split}_{part}.csv"
    if not (npy.is_file() and csv.is_file()):
        build_cache(prepared, crop_fraction, size, split, progress, crop_radii)
    table = pd.read_csv(csv, dtype={"objid": str})
    images = _mapped(npy)
    if len(images) != len(table):
        build_cache(prepared, crop_fraction, size, split, progress, crop_radii)
        return load_part(prepared, crop_fraction, size, split, part, crop_radii=crop_radii)
    labels = table["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype=np.int64)
    for column, values in prepared.describe(table["image"].astype(str).tolist()).items():
        table[column] = values  # source and sub-class: training draws by them
    return Part(images=CachedImages(images), labels=labels, table=table)


def _mapped(npy: Path) -> np.ndarray:
    """The ``.npy`` file as a read-only memory map (an empty part has nothing to map and is
    read as an empty array)."""
    try:
        return np.load(npy, mmap_mode="r", allow_pickle=False)
    except ValueError:
        images = np.load(npy, allow_pickle=False)
        if images.size:
            raise
        return images
