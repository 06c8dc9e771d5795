"""Catalogue readers: the official formats parse with exact ids, and every broken file gets a
CatalogueError that names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from galaxy_core.data import catalogues
from galaxy_core.errors import CatalogueError


def test_gz1_table_keeps_18_digit_ids_exact(gz1_fixture):
    table = catalogues.read_gz1_table(gz1_fixture["catalogue"])
    raw = pd.read_csv(gz1_fixture["catalogue"], dtype=str)
    assert table["OBJID"].astype(str).tolist() == raw["OBJID"].tolist()
    assert table["OBJID"].dtype == "int64"
    assert set(table["UNCERTAIN"]) == {0, 1}


def test_gz2_mapping_and_leaf_table(gz1_fixture):
    mapping = catalogues.read_gz2_mapping(gz1_fixture["mapping"])
    assert list(mapping.columns) == ["objid", "sample", "asset_id"]
    leaf = catalogues.read_leaf_classes(gz1_fixture["leaf"])
    assert set(leaf["CLASS"]) <= set(range(6))
    assert len(leaf) == len(mapping)


def _rewrite(path: Path, change) -> Path:
    frame = pd.read_csv(path, dtype=str)
    frame = change(frame)
    out = path.with_name("broken_" + path.name)
    frame.to_csv(out, index=False)
    return out


@pytest.mark.parametrize("reader,key,change,message", [
    (catalogues.read_gz1_table, "catalogue", lambda f: f.drop(columns=["P_CS_DEBIASED"]),
     "lacks column(s) P_CS_DEBIASED"),
    (catalogues.read_gz1_table, "catalogue", lambda f: pd.concat([f, f.iloc[:1]]),
     "share an id"),
    (catalogues.read_gz1_table, "catalogue", lambda f: f.assign(P_EL_DEBIASED="high"),
     "P_EL_DEBIASED must be a number"),
    (catalogues.read_gz1_table, "catalogue", lambda f: f.assign(UNCERTAIN="2"),
     "must be 0 or 1"),
    (catalogues.read_gz1_table, "catalogue", lambda f: f.assign(OBJID="58772x"),
     "OBJID must hold whole numbers"),
    (catalogues.read_gz2_mapping, "mapping", lambda f: f.drop(columns=["asset_id"]),
     "lacks column(s) asset_id"),
    (catalogues.read_leaf_classes, "leaf", lambda f: f.assign(CLASS="7"), "CLASS must be 0-5"),
    (catalogues.read_leaf_classes, "leaf", lambda f: f.iloc[0:0], "has no rows"),
])
def test_broken_catalogues_say_what_is_wrong(gz1_fixture, reader, key, change, message):
    broken = _rewrite(gz1_fixture[key], change)
    with pytest.raises(CatalogueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        reader(broken)


def test_missing_and_non_csv_files(tmp_path):
    with pytest.raises(CatalogueError, match="not found"):
        catalogues.read_gz1_table(tmp_path / "nope.csv")
    binary = tmp_path / "table.csv"
    binary.write_bytes(b"\xff\xfe\x00\x00garbage\x00")
    with pytest.raises(CatalogueError):
        catalogues.read_leaf_classes(binary)


def test_lower_case_headers_are_accepted(gz1_fixture):
    lower = _rewrite(gz1_fixture["leaf"], lambda f: f.rename(columns=str.lower))
    assert len(catalogues.read_leaf_classes(lower)) == len(pd.read_csv(lower))


def test_class_folders(tmp_path):
    from tests.conftest import draw_galaxy

    for folder, kind in (("spirals", "spiral"), ("ellipticals", "elliptical")):
        (tmp_path / folder).mkdir()
        for i in range(2):
            draw_galaxy(kind, 32, i).save(tmp_path / folder / f"{kind}{i}.png")
    (tmp_path / "spirals" / "notes.txt").write_text("ignored")
    frame = catalogues.read_class_folders(tmp_path)
    assert sorted(frame["label"].value_counts().items()) == [("elliptical", 2), ("spiral", 2)]
    with pytest.raises(CatalogueError, match="neither"):
        catalogues.read_class_folders(tmp_path / "spirals")
