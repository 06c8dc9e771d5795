"""``galaxy prepare``: catalogue(s) + image folder -> the same products as the original project
(``joined_galaxies_table.csv``, ``joined_galaxies_with_existing_images_table.csv``), a JSON
summary of the funnel, reproducible splits and the preprocessing cache."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from galaxy_core.config import Config
from galaxy_core.data import catalogues, selection
from galaxy_core.data.cache import build_cache
from galaxy_core.data.image_roots import ImageRoots
from galaxy_core.data.pool import Workers, check_workers
from galaxy_core.data.prepared import JOINED_TABLE, KEPT_TABLE, SUMMARY, PreparedData, open_prepared
from galaxy_core.data.splits import make_splits
from galaxy_core.errors import CatalogueError
from galaxy_core.io_utils import is_inside, read_json, write_csv, write_json


@dataclass(frozen=True)
class Source:
    """One survey's labels and images in a multi-source dataset (``--source NAME TABLE
    IMAGES``). The table is any label table :func:`catalogues.table_kind` recognises; images
    are ``<id>.<ext>`` in ``images``."""

    name: str
    table: Path
    images: Path


SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""Source names become the first folder of every image name and a column in the reports."""


@dataclass
class PrepareRequest:
    images: Path | None
    """The image folder of a single-source dataset (None with ``sources``)."""
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
    workers: int = 1
    """Processes that decode the images (checking them and building the cache); the CLI's
    default is every CPU. The outputs are the same, byte for byte, for any number."""
    sources: tuple[Source, ...] = ()
    """Several surveys in one dataset: each row keeps its source and sub-class, splits are
    stratified by source and label, and the same galaxy in two sources is kept once."""


def _source_rows(source: Source, config: Config) -> pd.DataFrame:
    """One source's labelled rows, images named ``<source>/<file>``."""
    kind = catalogues.table_kind(source.table)
    if kind == "classes":
        labels = selection.labels_from_class_table(catalogues.read_class_table(source.table))
    elif kind == "leaf":
        labels = selection.labels_from_leaf(catalogues.read_leaf_classes(source.table))
    else:
        labels = selection.labels_from_gz1(catalogues.read_gz1_table(source.table),
                                           config.prob_threshold)
        labels["subclass"] = labels["label"]
    frame = selection.attach_images_by_id(labels, source.images)
    frame["image"] = frame["image"].map(lambda n: f"{source.name}/{n}" if n else "")
    frame.insert(0, "source", source.name)
    return frame


def _labelled_sources(req: PrepareRequest, config: Config) -> tuple[pd.DataFrame, str]:
    frames = [_source_rows(s, config) for s in req.sources]
    joined = pd.concat(frames, ignore_index=True)
    joined["leaf_class"] = joined.get("leaf_class", pd.Series(dtype=object)).fillna("")
    described = "; ".join(f"{s.name}: {s.table} with images in {s.images}" for s in req.sources)
    return joined, f"sources {described}"


def _labelled(req: PrepareRequest, config: Config) -> tuple[pd.DataFrame, str]:
    if req.sources:
        return _labelled_sources(req, config)
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


def export_folders(kept: pd.DataFrame, roots: ImageRoots, out: Path) -> None:
    """Put the selected images into ``out/spirals`` and ``out/ellipticals`` (hard links if
    possible); a multi-source dataset's files are named ``<source>_<file>``."""
    for label, folder in (("spiral", "spirals"), ("elliptical", "ellipticals")):
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        for name in kept.loc[kept["label"] == label, "image"]:
            src = roots.resolve(name)
            if src is None:
                continue
            dst = target / (Path(name).name if roots.is_single else name.replace("/", "_"))
            if dst.exists():
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)


WRITTEN_BY = "galaxy prepare"
"""``summary.json``'s mark on a folder this command wrote: only such a folder is ever updated."""
CACHE_DIR = "cache"
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024


def check_request(req: PrepareRequest, config: Config) -> None:
    """Refuse bad options and dangerous folders before anything is read or written."""
    if not 1 <= req.n_splits <= 100:
        raise CatalogueError(f"the number of splits must be 1-100, got {req.n_splits}")
    check_workers(req.workers)
    if not 0 < config.crop_fraction <= 1:
        raise CatalogueError(f"the crop fraction must be in (0, 1], got {config.crop_fraction}")
    if not MIN_IMAGE_SIZE <= config.image_size <= MAX_IMAGE_SIZE:
        raise CatalogueError(f"the image size must be {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE} px, "
                             f"got {config.image_size}")
    if not (0 < config.val_fraction < 1 and 0 < config.test_fraction < 1
            and config.val_fraction + config.test_fraction < 0.9):
        raise CatalogueError("validation and test fractions must each be in (0, 1) and leave "
                             "at least 10% for training")
    out = Path(req.out).resolve()
    check_sources(req)
    for folder in [s.images for s in req.sources] or [req.images]:
        images = Path(folder).resolve()
        if not images.is_dir():
            raise CatalogueError(f"image folder not found: {folder}")
        if out == images or out.is_relative_to(images) or images.is_relative_to(out):
            raise CatalogueError(f"--out {req.out} and the images in {folder} overlap; write "
                                 "the prepared folder beside the images, not in or above them")
    if out.exists() and not out.is_dir():
        raise CatalogueError(f"--out {req.out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and previous_outputs(out) is None:
        raise CatalogueError(f"--out {req.out} is not empty and was not written by galaxy "
                             "prepare; nothing in it is touched. Choose a new or empty folder")


def check_sources(req: PrepareRequest) -> None:
    """Sources replace the single-source options; their names must be distinct and plain."""
    if not req.sources:
        if req.images is None:
            raise CatalogueError("give the image folder (--images) or one --source per survey")
        return
    if req.images is not None or req.catalogue or req.labels or req.folders or req.mapping:
        raise CatalogueError("--source takes each survey's table and images; do not combine it "
                             "with --images, --labels, --catalogue, --mapping or --folders")
    names = [s.name for s in req.sources]
    for name in names:
        if not SOURCE_NAME.fullmatch(name):
            raise CatalogueError(f"source name {name!r}: use 1-32 lower-case letters, digits, "
                                 "'-' or '_', starting with a letter or digit (e.g. gz1, gz2)")
    if len(set(names)) != len(names):
        raise CatalogueError(f"each --source needs its own name; got {', '.join(names)}")
    for source in req.sources:
        if not Path(source.table).is_file():
            raise CatalogueError(f"source {source.name}: label table not found: {source.table}")


def previous_outputs(out: Path) -> list[str] | None:
    """The files an earlier ``galaxy prepare`` wrote into ``out`` (relative paths), or None when
    ``out`` is not such a folder. Folders written before the mark existed are recognised by
    their tables and get the list of names that version wrote."""
    summary_path = out / SUMMARY
    try:
        summary = read_json(summary_path) if summary_path.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    if summary.get("written_by") == WRITTEN_BY and isinstance(summary.get("files"), list):
        return [str(f) for f in summary["files"]]
    if "rows_read" in summary and (out / KEPT_TABLE).is_file():
        return [JOINED_TABLE, KEPT_TABLE, SUMMARY]
    return None


def check_resources(n_images: int, config: Config, out: Path) -> None:
    """Estimate the cache's disk space before decoding a single image, and refuse a job that
    cannot fit (an image size of 20,000 px once asked for 43.6 GiB). Memory is no limit: the
    cache is written a chunk at a time and read back through a memory map."""
    need = n_images * config.image_size**2 * 3
    where = next(p for p in (out, *out.parents) if p.exists())  # --out may be several new levels
    free = shutil.disk_usage(where).free
    if need * 1.1 > free:
        raise CatalogueError(f"the cache needs {need / 2**30:.1f} GiB on disk and "
                             f"{free / 2**30:.1f} GiB is free beside {out}")


def _our_cache_files(out: Path) -> list[Path]:
    """Cache files in ``out/cache`` named as this project names them (anything else stays)."""
    folder = out / CACHE_DIR
    if not folder.is_dir():
        return []
    return [p for p in folder.glob("*px_*/split*_*.*")
            if p.is_file() and p.suffix in (".npy", ".csv") and p.parent.name[0].isdigit()]


def _install(work: Path, out: Path, written: list[str]) -> None:
    """Move the finished products from the work folder into ``out``.

    A new or empty ``out`` is replaced by the work folder in one rename. An earlier output is
    updated file by file: first its summary goes (so a reader never takes a half-updated
    folder for a complete one), then the files it listed and its cache, then the new files,
    the new summary last. Nothing that ``galaxy prepare`` did not write is deleted.
    """
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if out.exists():
            out.rmdir()
        os.replace(work, out)
        return
    old = previous_outputs(out) or []
    (out / SUMMARY).unlink(missing_ok=True)
    for name in old:
        target = out / name
        if target.is_file() and is_inside(out, name):
            target.unlink()
    for path in _our_cache_files(out):
        path.unlink()
    for name in sorted(written, key=lambda n: n == SUMMARY):
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / name, target)
    shutil.rmtree(work, ignore_errors=True)


def prepare(req: PrepareRequest, config: Config, progress: selection.Progress | None = None,
            cache_progress: selection.Progress | None = None,
            workers: Workers | None = None) -> PreparedData:
    """Run the whole pipeline and return the prepared dataset it wrote.

    Everything is written into a temporary folder beside ``req.out`` and moved into place at
    the end, so a bad option, a bad catalogue, Ctrl-C or a full disk leaves ``req.out`` as it
    was: never half a set of tables, never an empty cache.

    ``workers`` is a pool of ``req.workers`` processes the caller entered already: the
    ``galaxy`` command starts it before it imports this module, so the workers get ready on
    another core while pandas loads and the catalogue is read. Without one, a pool is started
    here and kept for both passes over the images.
    """
    check_request(req, config)
    if workers is not None:
        if workers.n != req.workers:
            raise ValueError(f"a pool of {workers.n} workers for a request of {req.workers}")
        return _prepare(req, config, workers, progress, cache_progress)
    with Workers(req.workers) as started:
        return _prepare(req, config, started, progress, cache_progress)


def _prepare(req: PrepareRequest, config: Config, workers: Workers,
             progress: selection.Progress | None,
             cache_progress: selection.Progress | None) -> PreparedData:
    if req.sources:
        roots = ImageRoots.by_source({s.name: s.images for s in req.sources})
        where = {"image_dirs": {name: str(path) for name, path in roots.folders}}
    else:
        roots = ImageRoots.single(req.images)
        where = {"image_dir": str(roots.folders[0][1])}
    joined, source = _labelled(req, config)
    joined = selection.check_images(joined, roots, progress, workers)
    summary = selection.summarise(joined, source)
    kept = joined[joined["drop_reason"] == ""].drop(columns=["drop_reason", "duplicate_of"])
    kept = make_splits(kept, req.n_splits, config.seed, config.val_fraction, config.test_fraction)
    out = Path(req.out)
    if req.build_cache:
        check_resources(len(kept), config, out.resolve())
    summary.update(**where, n_splits=req.n_splits, seed=config.seed,
                   val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                   split_counts={c: kept[c].value_counts().to_dict()
                                 for c in kept.columns if c.startswith("split_")})
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.prepare-", dir=out.resolve().parent))
    try:
        write_csv(work / JOINED_TABLE, joined.drop(columns=["sha1"], errors="ignore"))
        write_csv(work / KEPT_TABLE, kept.drop(columns=["sha1"], errors="ignore"))
        written = [JOINED_TABLE, KEPT_TABLE]
        if req.export:
            export_folders(kept, roots, work)
            written += [str(p.relative_to(work)) for p in sorted(work.glob("*/*"))]
        write_json(work / SUMMARY, {**summary, "written_by": WRITTEN_BY,
                                    "files": [*written, SUMMARY]})
        if req.build_cache:
            cache = build_cache(open_prepared(work), config.crop_fraction, config.image_size, 0,
                                cache_progress, workers=workers)
            written += [str(p.relative_to(work)) for p in sorted(cache.iterdir())]
        _install(work, out, [*written, SUMMARY])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return open_prepared(out)
