"""Integration tests on the real Galaxy Zoo data in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from galaxy_core.cli import main

pytestmark = pytest.mark.realdata


def test_prepare_real_gz1_gives_published_counts(shared_data, tmp_path, capsys):
    out = tmp_path / "gz1"
    code = main(["prepare", "--labels", str(shared_data / "gz1_sdss" / "gz1_classes.csv"),
                 "--images", str(shared_data / "gz1_sdss" / "images"), "--out", str(out),
                 "--no-cache", "--splits", "3"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kept_per_class"] == {"elliptical": 4345, "spiral": 1548}
    assert summary["dropped"] == {"uncertain": 171}
    assert summary["rows_read"] == 6064
    kept = pd.read_csv(out / "joined_galaxies_with_existing_images_table.csv", dtype=str)
    joined = pd.read_csv(out / "joined_galaxies_table.csv", dtype=str)
    assert len(kept) == 5893 and len(joined) == 6064
    # ids survive exactly (18 digits) and match the file names
    assert (kept["image"] == kept["objid"] + ".jpeg").all()
    for k in range(3):
        counts = kept[f"split_{k}"].value_counts().to_dict()
        assert counts == {"train": 4125, "val": 884, "test": 884}
    assert "kept 4345 elliptical, 1548 spiral" in capsys.readouterr().out

