"""The prepare pipeline on synthetic catalogues with planted problems: uncertain galaxies,
a missing image, an unreadable image and an exact duplicate are each dropped and counted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galaxy_core.cli import main
from galaxy_core.config import Config
from galaxy_core.data.cache import load_part
from galaxy_core.data.prepare import PrepareRequest, prepare
from galaxy_core.data.prepared import open_prepared
from galaxy_core.errors import CatalogueError, DataNotFoundError

CONFIG = Config(image_size=32, val_fraction=0.2, test_fraction=0.2)
EXPECTED = {"kept": {"elliptical": 10, "spiral": 11},
            "dropped": {"uncertain": 3, "image missing": 1, "image unreadable": 1,
                        "duplicate image": 1}}


@pytest.mark.parametrize("source", ["catalogue+mapping", "catalogue+flags", "leaf"])
def test_prepare_counts_every_drop(gz1_fixture, tmp_path, source):
    if source == "leaf":
        req = PrepareRequest(images=gz1_fixture["images_gz1"], out=tmp_path / "out",
                             labels=gz1_fixture["leaf"])
    else:
        req = PrepareRequest(images=gz1_fixture["images_gz2"], out=tmp_path / "out",
                             catalogue=gz1_fixture["catalogue"], mapping=gz1_fixture["mapping"],
                             use_flags=source.endswith("flags"))
    prepared = prepare(req, CONFIG)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kept_per_class"] == EXPECTED["kept"]
    assert summary["dropped"] == EXPECTED["dropped"]
    assert summary["rows_read"] == 27
    joined = pd.read_csv(tmp_path / "out" / "joined_galaxies_table.csv")
    kept = pd.read_csv(tmp_path / "out" / "joined_galaxies_with_existing_images_table.csv")
    assert len(joined) == 27 and len(kept) == 21
    assert (prepared.image_dir / kept["image"]).map(lambda p: p.is_file()).all()


def test_threshold_changes_selection(gz1_fixture, tmp_path):
    req = PrepareRequest(images=gz1_fixture["images_gz2"], out=tmp_path / "strict",
                         catalogue=gz1_fixture["catalogue"], mapping=gz1_fixture["mapping"],
                         build_cache=False)
    at_90 = prepare(req, CONFIG.replace(prob_threshold=0.9)).summary
    assert at_90["kept_per_class"] == EXPECTED["kept"]
    # Ellipticals have P_EL_DEBIASED = 0.9 in the fixture: 0.91 drops them all, leaving one class.
    with pytest.raises(CatalogueError, match="each class"):
        prepare(req, CONFIG.replace(prob_threshold=0.91))
    with pytest.raises(CatalogueError, match="threshold"):
        prepare(req, CONFIG.replace(prob_threshold=0.3))


def test_splits_are_deterministic_disjoint_and_stratified(gz1_fixture, tmp_path):
    def run(out):
        req = PrepareRequest(images=gz1_fixture["images_gz1"], out=out,
                             labels=gz1_fixture["leaf"], n_splits=3, build_cache=False)
        return prepare(req, CONFIG)

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a.table.equals(b.table)
    for k in range(3):
        t = a.split_table(k)
        assert set(t["split"]) == {"train", "val", "test"}
        for part in ("val", "test"):
            assert set(t.loc[t["split"] == part, "label"]) == {"elliptical", "spiral"}
        assert not set(t.loc[t.split == "train", "objid"]) & set(t.loc[t.split == "test", "objid"])
    assert not a.table["split_0"].equals(a.table["split_1"])
    with pytest.raises(DataNotFoundError, match="split 5"):
        a.split_table(5)


def test_out_may_be_several_new_folders_deep(gz1_fixture, tmp_path, capsys):
    """``make run`` on a fresh clone prepares into ``data/gz1`` with no ``data/`` yet: the
    disk-space check once asked about the missing parent and the command failed."""
    out = tmp_path / "clone" / "data" / "gz1"
    code = main(["prepare", "--labels", str(gz1_fixture["leaf"]), "--images",
                 str(gz1_fixture["images_gz1"]), "--out", str(out), "--image-size", "32"])
    assert code == 0, capsys.readouterr().err
    assert open_prepared(out).summary["kept_total"] == 21
    assert next((out / "cache").rglob("split0_train.npy")).is_file()


def test_cache_matches_split_and_is_reused(gz1_fixture, tmp_path):
    req = PrepareRequest(images=gz1_fixture["images_gz1"], out=tmp_path / "out",
                         labels=gz1_fixture["leaf"])
    prepared = prepare(req, CONFIG)
    parts = {p: load_part(prepared, CONFIG.crop_fraction, 32, 0, p) for p in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 21
    assert parts["train"].images.shape[1:] == (32, 32, 3)
    assert parts["train"].images.dtype == np.uint8
    table = prepared.split_table(0)
    assert sorted(parts["test"].table["objid"]) == sorted(table.loc[table.split == "test", "objid"])
    npy = next((tmp_path / "out" / "cache").rglob("split0_train.npy"))
    stamp = npy.stat().st_mtime_ns
    load_part(prepared, CONFIG.crop_fraction, 32, 0, "train")
    assert npy.stat().st_mtime_ns == stamp  # second load reads, does not rebuild


def test_export_folders(gz1_fixture, tmp_path):
    req = PrepareRequest(images=gz1_fixture["images_gz1"], out=tmp_path / "out",
                         labels=gz1_fixture["leaf"], export=True, build_cache=False)
    prepare(req, CONFIG)
    assert len(list((tmp_path / "out" / "spirals").iterdir())) == 11
    assert len(list((tmp_path / "out" / "ellipticals").iterdir())) == 10


def test_open_prepared_explains_how_to_make_one(tmp_path):
    with pytest.raises(DataNotFoundError, match="galaxy prepare"):
        open_prepared(tmp_path)


def test_cli_prepare_bad_input_exits_2_with_one_line(gz1_fixture, tmp_path, capsys):
    broken = tmp_path / "no_class.csv"
    pd.read_csv(gz1_fixture["leaf"]).drop(columns=["CLASS"]).to_csv(broken, index=False)
    code = main(["prepare", "--labels", str(broken), "--images", str(gz1_fixture["images_gz1"]),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "CLASS" in err and "Traceback" not in err
    code = main(["prepare", "--labels", str(gz1_fixture["leaf"]), "--images",
                 str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert code == 2


def test_cli_prepare_ok(gz1_fixture, tmp_path, capsys):
    code = main(["prepare", "--labels", str(gz1_fixture["leaf"]), "--images",
                 str(gz1_fixture["images_gz1"]), "--out", str(tmp_path / "out"),
                 "--image-size", "32", "--val", "0.2", "--test", "0.2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "kept 10 elliptical, 11 spiral" in out


def test_image_names_cannot_escape_the_image_folder(gz1_fixture, tmp_path):
    req = PrepareRequest(images=gz1_fixture["images_gz1"], out=tmp_path / "out",
                         labels=gz1_fixture["leaf"], build_cache=False)
    prepared = prepare(req, CONFIG)
    assert prepared.image_path(prepared.table["image"].iloc[0]).is_file()
    with pytest.raises(DataNotFoundError, match="outside"):
        prepared.image_path("../../../etc/passwd")
