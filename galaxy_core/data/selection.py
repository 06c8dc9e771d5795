"""From catalogue rows to a clean, labelled image list, recording why every dropped row went.

The original project did this with two loose scripts; here each step is a function so that the
funnel (rows read -> uncertain dropped -> no image -> kept per class) can be reported and plotted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from galaxy_core.data import pool
from galaxy_core.data.catalogues import LEAF_NAMES, LEAF_SUBCLASSES, LEAF_TO_LABEL
from galaxy_core.data.duplicates import near_duplicates
from galaxy_core.data.image_roots import ImageRoots
from galaxy_core.data.imageio import IMAGE_SUFFIXES
from galaxy_core.errors import CatalogueError

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` during long steps; the CLI and the app draw it."""

REASON_UNCERTAIN = "uncertain"
REASON_NO_MAPPING = "not in filename mapping"
REASON_MISSING = "image missing"
REASON_UNREADABLE = "image unreadable"
REASON_DUPLICATE = "duplicate image"
REASON_INCONSISTENT = "inconsistent flags"
"""A GZ1 row whose SPIRAL, ELLIPTICAL and UNCERTAIN flags are not exactly one 1: the release
sets exactly one, so such a row is damaged, and neither its flags nor its votes are trusted."""


def labels_from_gz1(table: pd.DataFrame, threshold: float | None = 0.8) -> pd.DataFrame:
    """Label GZ1 rows spiral/elliptical; rows below the vote threshold are 'uncertain'.

    With ``threshold=None`` the catalogue's own SPIRAL/ELLIPTICAL/UNCERTAIN flags are used (they
    were made with an 80% debiased threshold). Otherwise a galaxy is elliptical when
    ``P_EL_DEBIASED >= threshold`` and spiral when ``P_CS_DEBIASED >= threshold``.
    """
    if threshold is None:
        label = pd.Series(None, index=table.index, dtype=object)
        label[table["ELLIPTICAL"] == 1] = "elliptical"
        label[table["SPIRAL"] == 1] = "spiral"
        label[table["UNCERTAIN"] == 1] = None
    else:
        if not 0.5 < threshold <= 1:
            raise CatalogueError(f"the probability threshold must be in (0.5, 1], got {threshold}")
        label = pd.Series(None, index=table.index, dtype=object)
        label[table["P_EL_DEBIASED"] >= threshold] = "elliptical"
        label[table["P_CS_DEBIASED"] >= threshold] = "spiral"
    out = pd.DataFrame({"objid": table["OBJID"].astype("int64"), "label": label,
                        "p_elliptical_votes": table["P_EL_DEBIASED"],
                        "p_spiral_votes": table["P_CS_DEBIASED"]})
    out["drop_reason"] = out["label"].isna().map({True: REASON_UNCERTAIN, False: ""})
    flags = table["SPIRAL"] + table["ELLIPTICAL"] + table["UNCERTAIN"]
    out.loc[(flags != 1).to_numpy(), ["label", "drop_reason"]] = [None, REASON_INCONSISTENT]
    return out


def labels_from_leaf(table: pd.DataFrame) -> pd.DataFrame:
    """Label a leaf-class table: EL -> elliptical, CW/ACW/EDGE -> spiral, DK/MG -> uncertain."""
    out = pd.DataFrame({"objid": table["OBJID"].astype("int64"),
                        "label": table["CLASS"].map(LEAF_TO_LABEL),
                        "leaf_class": table["CLASS"].map(LEAF_NAMES),
                        "subclass": table["CLASS"].map(LEAF_SUBCLASSES)})
    out["drop_reason"] = out["label"].isna().map({True: REASON_UNCERTAIN, False: ""})
    return out


def labels_from_class_table(table: pd.DataFrame) -> pd.DataFrame:
    """A class table's rows: every galaxy already carries a confident class."""
    return pd.DataFrame({"objid": table["galaxy_id"].astype("int64"), "label": table["label"],
                         "subclass": table["subclass"], "drop_reason": ""})


def join_mapping(labels: pd.DataFrame, mapping: pd.DataFrame) -> pd.DataFrame:
    """Attach the GZ2 ``asset_id`` (and so the image name ``<asset_id>.jpg``) to each galaxy."""
    joined = labels.merge(mapping, on="objid", how="left")
    no_map = joined["asset_id"].isna()
    joined.loc[no_map & (joined["drop_reason"] == ""), "drop_reason"] = REASON_NO_MAPPING
    joined["image"] = joined["asset_id"].map(lambda a: "" if pd.isna(a) else f"{int(a)}.jpg")
    joined["asset_id"] = joined["asset_id"].astype("Int64")
    return joined


def _index_folder(image_dir: Path) -> dict[str, str]:
    """Map file stem -> file name for the image files directly in ``image_dir`` (one listing)."""
    if not image_dir.is_dir():
        raise CatalogueError(f"image folder not found: {image_dir}")
    return {p.stem: p.name for p in image_dir.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


def attach_images_by_id(labels: pd.DataFrame, image_dir: Path) -> pd.DataFrame:
    """Find ``<objid>.<ext>`` for each galaxy (the GZ1 cutout naming)."""
    index = _index_folder(image_dir)
    out = labels.copy()
    out["image"] = out["objid"].astype(str).map(lambda s: index.get(s, ""))
    return out


PROBE_CHUNK = 32
"""Images per chunk sent to a worker: large enough that sending it costs nothing next to the
decoding, small enough that the progress bar moves and Ctrl-C stops within a second or two."""


def check_images(frame: pd.DataFrame, roots: ImageRoots | Path, progress: Progress | None = None,
                 workers: int | pool.Workers = 1) -> pd.DataFrame:
    """Mark rows whose image is missing, unreadable or another row's galaxy again.

    Only rows still in play (empty ``drop_reason``) are opened. Every image is fully decoded,
    which is CPU work: ``workers`` processes share it (the result does not depend on how many).
    A galaxy twice would leak the same picture into train and test, so the second and later
    copies are dropped, and ``duplicate_of`` names the image kept: first exact copies of the
    file, then the same galaxy encoded again (:mod:`galaxy_core.data.duplicates`).
    """
    if not isinstance(roots, ImageRoots):
        roots = ImageRoots.single(roots)
    out = frame.copy()
    todo = out.index[out["drop_reason"] == ""]
    names = out.loc[todo, "image"].fillna("").tolist()
    results: list[tuple[str, str, bytes]] = [(REASON_MISSING, "", b"")] * len(names)
    reasons = {pool.MISSING: REASON_MISSING, pool.UNREADABLE: REASON_UNREADABLE, "": ""}

    def store(start: int, chunk: list[tuple[str, str, bytes]]) -> None:
        results[start:start + len(chunk)] = [(reasons[r], h, f) for r, h, f in chunk]

    work = partial(pool.probe_chunk, roots=roots)  # names checked there
    pool.run_chunks(work, names, store, workers, PROBE_CHUNK, progress)
    out.loc[todo, "drop_reason"] = [r for r, _, _ in results]
    out.loc[todo, "sha1"] = [h for _, h, _ in results]
    out["duplicate_of"] = ""
    dup = out["sha1"].notna() & (out["sha1"] != "") & out["sha1"].duplicated(keep="first")
    first = out[~dup & out["sha1"].notna() & (out["sha1"] != "")].set_index("sha1")["image"]
    exact = dup & (out["drop_reason"] == "")
    out.loc[exact, "duplicate_of"] = out.loc[exact, "sha1"].map(first)
    out.loc[exact, "drop_reason"] = REASON_DUPLICATE
    usable = [i for i, (r, _, f) in enumerate(results) if r == "" and f]
    rows = todo[usable]
    keep = (out.loc[rows, "drop_reason"] == "").to_numpy()
    rows = rows[keep]
    if len(rows) > 1:
        prints = np.frombuffer(b"".join(results[i][2] for i, k in zip(usable, keep) if k),
                               dtype=np.uint8).reshape(len(rows), -1)
        twin = near_duplicates(prints)
        again = twin >= 0
        out.loc[rows[again], "duplicate_of"] = out.loc[rows[twin[again]], "image"].to_numpy()
        out.loc[rows[again], "drop_reason"] = REASON_DUPLICATE
    return out


def duplicate_pairs(joined: pd.DataFrame) -> list[dict[str, str]]:
    """Each dropped copy beside the image kept, with both labels, for the summary: a pair
    whose labels disagree is where two sets of volunteers saw the galaxy differently."""
    dropped = joined[(joined["drop_reason"] == REASON_DUPLICATE)
                     & (joined.get("duplicate_of", "") != "")]
    label = joined.set_index("image")["label"]
    return [{"kept": str(row.duplicate_of), "dropped": str(row.image),
             "kept_label": str(label.get(row.duplicate_of, "")), "dropped_label": str(row.label)}
            for row in dropped.itertuples()]


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def summarise(joined: pd.DataFrame, source: str) -> dict:
    """Counts for the funnel: rows read, dropped per reason, kept per class, and for a table
    that has them, kept per source and per sub-class, and the duplicates dropped."""
    kept = joined[joined["drop_reason"] == ""]
    reasons = joined.loc[joined["drop_reason"] != "", "drop_reason"].value_counts()
    out = {
        "source": source,
        "rows_read": int(len(joined)),
        "dropped": {k: int(v) for k, v in reasons.items()},
        "dropped_total": int((joined["drop_reason"] != "").sum()),
        "kept_total": int(len(kept)),
        "kept_per_class": _counts(kept["label"]),
    }
    if "source" in kept.columns:
        out["kept_per_source"] = {
            name: {"rows_read": int((joined["source"] == name).sum()), "kept": int(len(part)),
                   "per_class": _counts(part["label"]),
                   "per_subclass": _counts(part["subclass"].fillna("(none)"))}
            for name, part in kept.groupby("source", sort=False)}
    elif "subclass" in kept.columns:
        out["kept_per_subclass"] = _counts(kept["subclass"].fillna("(none)"))
    if "duplicate_of" in joined.columns:
        out["duplicates"] = duplicate_pairs(joined)
    return out
