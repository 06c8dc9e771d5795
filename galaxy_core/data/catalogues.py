"""Readers for the catalogue formats astronomers actually have, with validation that names the
file, the column and the problem, instead of a KeyError three functions later.

Formats:
- Galaxy Zoo 1 data release table 2 (``GalaxyZoo1_DR_table2.csv``),
- Galaxy Zoo 2 image release mapping (``gz2_filename_mapping.csv``: ``objid,sample,asset_id``),
- a leaf-class table ``OBJID,CLASS`` (GZ1 decision-tree leaves 0-5),
- a folder-per-class tree (``spirals/``, ``ellipticals/``), the original project's layout.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from galaxy_core.data.imageio import IMAGE_SUFFIXES
from galaxy_core.errors import CatalogueError

GZ1_COLUMNS = ("OBJID", "RA", "DEC", "NVOTE", "P_EL", "P_CW", "P_ACW", "P_EDGE", "P_DK", "P_MG",
               "P_CS", "P_EL_DEBIASED", "P_CS_DEBIASED", "SPIRAL", "ELLIPTICAL", "UNCERTAIN")
GZ1_REQUIRED = ("OBJID", "P_EL_DEBIASED", "P_CS_DEBIASED", "SPIRAL", "ELLIPTICAL", "UNCERTAIN")
GZ1_FLAGS = ("SPIRAL", "ELLIPTICAL", "UNCERTAIN")
GZ2_MAPPING_COLUMNS = ("objid", "sample", "asset_id")
LEAF_COLUMNS = ("OBJID", "CLASS")

LEAF_NAMES = {0: "EL", 1: "CW", 2: "ACW", 3: "EDGE", 4: "DK", 5: "MG"}
LEAF_TO_LABEL = {0: "elliptical", 1: "spiral", 2: "spiral", 3: "spiral", 4: None, 5: None}
"""GZ1 leaves to our two classes; DK (don't know) and MG (merger) are uncertain (None)."""
LEAF_SUBCLASSES = {0: "elliptical", 1: "spiral, clockwise", 2: "spiral, anticlockwise",
                   3: "edge-on disk", 4: "don't know", 5: "merger"}
"""The leaves in words, for the per-sub-class reports and the classroom's reveal."""

FOLDER_LABELS = {"ellipticals": "elliptical", "spirals": "spiral"}
CLASS_TABLE_COLUMNS = ("galaxy_id", "label")
"""A class table: one confident class per galaxy, as ``gz2_kaggle/build.py`` writes it
(``galaxy_id,label,gz2_class``); ``gz2_class``, the finer class, is optional."""
CLASS_TABLE_SUBCLASS = "gz2_class"
LABELS = ("elliptical", "spiral")


def _read_csv(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"{what} not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CatalogueError(f"{what} {path.name} is not a readable CSV file: {exc}") from None
    frame.columns = [c.strip() for c in frame.columns]
    return frame


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: str | Path, what: str,
             case_insensitive: bool = False) -> pd.DataFrame:
    """Check the columns exist (optionally matching case) and return the frame with canonical names."""
    if case_insensitive:
        folded = pd.Series([c.lower() for c in frame.columns])
        clash = sorted(set(folded[folded.duplicated()]) & {c.lower() for c in columns})
        if clash:
            same = [c for c in frame.columns if c.lower() == clash[0]]
            raise CatalogueError(f"{what} {Path(path).name}: columns {' and '.join(same)} are "
                                 "one name in different case; keep one of them")
        by_lower = {c.lower(): c for c in frame.columns}
        frame = frame.rename(columns={by_lower[c.lower()]: c for c in columns if c.lower() in by_lower})
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CatalogueError(
            f"{what} {Path(path).name} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(frame.columns) or 'none'}; expected at least {', '.join(columns)}")
    if frame.empty:
        raise CatalogueError(f"{what} {Path(path).name} has no rows")
    return frame


def _shown(value: object, limit: int = 40) -> str:
    """A cell value for a message: quoted, and cut (one id had five million digits)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


INT64_MAX = 2**63 - 1


def _as_int(frame: pd.DataFrame, column: str, path: str | Path, what: str) -> pd.Series:
    """Whole numbers written as digits (an optional sign, then at most 19 digits), within the
    64-bit range that SDSS ids and image numbers use. SDSS object ids exceed float precision,
    so the text is parsed directly, never through a float; '1e5', 'inf' or 23 digits are
    refused by row."""
    text = frame[column].str.strip()
    digits = text.str.fullmatch(r"[+-]?\d{1,19}")
    bad = ~digits
    if not bad.any():
        values = text.map(int)
        bad = values.abs() > INT64_MAX
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise CatalogueError(f"{what} {Path(path).name}: column {column} must hold whole numbers "
                             f"(digits only, within 64 bits); row {row + 2} has "
                             f"{_shown(frame[column].iloc[row])}")
    return values.astype("int64")


def _as_float(frame: pd.DataFrame, column: str, path: str | Path, what: str,
              low: float = 0.0, high: float = 1.0) -> pd.Series:
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    bad = values.isna() | (values < low) | (values > high)
    if bad.any():
        row = int(bad.idxmax())
        raise CatalogueError(f"{what} {Path(path).name}: column {column} must be a number in "
                             f"[{low}, {high}]; row {row + 2} has "
                             f"{_shown(frame[column].iloc[row])}")
    return values.astype(float)


def _no_duplicates(frame: pd.DataFrame, column: str, path: str | Path, what: str) -> None:
    dup = frame[column].duplicated(keep=False)
    if dup.any():
        ids = frame.loc[dup, column].unique()[:5]
        raise CatalogueError(f"{what} {Path(path).name}: {int(dup.sum())} rows share an id in "
                             f"{column} (e.g. {', '.join(map(str, ids))}); each galaxy must appear once")


def read_gz1_table(path: str | Path) -> pd.DataFrame:
    """Galaxy Zoo 1 table 2 with typed columns; extra columns are kept, missing optional ones allowed."""
    what = "Galaxy Zoo 1 table"
    frame = _require(_read_csv(path, what), GZ1_REQUIRED, path, what, case_insensitive=True)
    frame["OBJID"] = _as_int(frame, "OBJID", path, what)
    _no_duplicates(frame, "OBJID", path, what)
    for col in [c for c in GZ1_COLUMNS if c.startswith("P_") and c in frame.columns]:
        frame[col] = _as_float(frame, col, path, what)
    for col in GZ1_FLAGS:
        frame[col] = _as_int(frame, col, path, what)
        if not frame[col].isin([0, 1]).all():
            raise CatalogueError(f"{what} {Path(path).name}: flag {col} must be 0 or 1")
    return frame


def read_gz2_mapping(path: str | Path) -> pd.DataFrame:
    """Galaxy Zoo 2 ``objid,sample,asset_id`` mapping from SDSS id to image number."""
    what = "Galaxy Zoo 2 filename mapping"
    frame = _require(_read_csv(path, what), GZ2_MAPPING_COLUMNS, path, what, case_insensitive=True)
    frame["objid"] = _as_int(frame, "objid", path, what)
    frame["asset_id"] = _as_int(frame, "asset_id", path, what)
    _no_duplicates(frame, "objid", path, what)
    return frame[list(GZ2_MAPPING_COLUMNS)]


def read_leaf_classes(path: str | Path) -> pd.DataFrame:
    """``OBJID,CLASS`` table of GZ1 leaf classes (0 EL, 1 CW, 2 ACW, 3 EDGE, 4 DK, 5 MG)."""
    what = "leaf-class table"
    frame = _require(_read_csv(path, what), LEAF_COLUMNS, path, what, case_insensitive=True)
    frame["OBJID"] = _as_int(frame, "OBJID", path, what)
    frame["CLASS"] = _as_int(frame, "CLASS", path, what)
    bad = ~frame["CLASS"].isin(list(LEAF_NAMES))
    if bad.any():
        raise CatalogueError(f"{what} {Path(path).name}: CLASS must be 0-5 "
                             f"({', '.join(f'{k} {v}' for k, v in LEAF_NAMES.items())}); "
                             f"row {int(bad.idxmax()) + 2} has {frame['CLASS'][bad].iloc[0]}")
    _no_duplicates(frame, "OBJID", path, what)
    return frame[list(LEAF_COLUMNS)]


def read_class_table(path: str | Path) -> pd.DataFrame:
    """``galaxy_id,label[,gz2_class]``: ``galaxy_id`` (whole number), ``label`` (elliptical or
    spiral) and the optional finer class. Images are ``<galaxy_id>.<ext>`` in the source's
    folder."""
    what = "class table"
    frame = _require(_read_csv(path, what), CLASS_TABLE_COLUMNS, path, what,
                     case_insensitive=True)
    frame["galaxy_id"] = _as_int(frame, "galaxy_id", path, what)
    frame["label"] = frame["label"].str.strip().str.lower()
    bad = ~frame["label"].isin(LABELS)
    if bad.any():
        raise CatalogueError(f"{what} {Path(path).name}: label must be elliptical or spiral; "
                             f"row {int(bad.to_numpy().argmax()) + 2} has "
                             f"{_shown(frame['label'][bad].iloc[0])}")
    _no_duplicates(frame, "galaxy_id", path, what)
    by_lower = {c.lower(): c for c in frame.columns}
    sub = by_lower.get(CLASS_TABLE_SUBCLASS)
    frame["subclass"] = frame[sub].str.strip() if sub else frame["label"]
    return frame[["galaxy_id", "label", "subclass"]]


def table_kind(path: str | Path) -> str:
    """Which of the label tables a file is, from its header: ``gz1`` (table 2), ``leaf``
    (``OBJID,CLASS``) or ``classes`` (``galaxy_id,label``). Lets a ``--source`` take any of
    them without a format flag."""
    header = {c.strip().lower() for c in _read_csv(path, "label table").columns}
    if {c.lower() for c in GZ1_REQUIRED} <= header:
        return "gz1"
    if {c.lower() for c in LEAF_COLUMNS} <= header:
        return "leaf"
    if set(CLASS_TABLE_COLUMNS) <= header:
        return "classes"
    raise CatalogueError(
        f"{Path(path).name} is none of the label tables galaxy prepare reads: Galaxy Zoo 1 "
        f"table 2 ({', '.join(GZ1_REQUIRED)}), a leaf-class table ({', '.join(LEAF_COLUMNS)}) "
        f"or a class table ({', '.join(CLASS_TABLE_COLUMNS)}[, {CLASS_TABLE_SUBCLASS}]); "
        f"it has {', '.join(sorted(header)) or 'no columns'}")


def read_class_folders(root: str | Path) -> pd.DataFrame:
    """The original project's layout: ``root/spirals/*`` and ``root/ellipticals/*``.

    Returns ``objid`` (the file stem), ``label`` and ``image`` (path relative to ``root``).
    """
    root = Path(root)
    present = [name for name in FOLDER_LABELS if (root / name).is_dir()]
    if not present:
        raise CatalogueError(f"{root} has neither a spirals/ nor an ellipticals/ folder")
    rows = []
    for folder in present:
        for file in sorted((root / folder).iterdir()):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({"objid": file.stem, "label": FOLDER_LABELS[folder],
                             "image": f"{folder}/{file.name}"})
    if not rows:
        raise CatalogueError(f"no images found under {root}/spirals or {root}/ellipticals")
    frame = pd.DataFrame(rows)
    dup = frame["objid"].duplicated(keep=False)
    if dup.any():
        raise CatalogueError(f"{root}: the same galaxy id appears in both class folders "
                             f"(e.g. {frame.loc[dup, 'objid'].iloc[0]})")
    return frame
