"""Hostile and careless input, one table per input class: each row says what is given and what
must come out (an error row, an exit code, one line naming the problem, nothing deleted, nothing
half-written). No row may end in a traceback.

The inputs are made here; nothing is read from the network or the real data.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save

from galaxy_core.cli import main
from galaxy_core.config import Config
from galaxy_core.model.build import build_model
from galaxy_core.model.ood import OOD_FILE, fit_ood, save_ood
from galaxy_core.model.store import META_FILE, save_model
from tests.conftest import draw_galaxy


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``galaxy ARGS`` in-process; (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_clear_line(err: str, *must_name: str) -> None:
    """The error is a single line (no traceback, no usage block) naming what is wrong."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and " object at 0x" not in err, err
    for name in must_name:
        assert name in lines[0], (name, lines[0])


# --- model folders --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_model(tmp_path_factory) -> Path:
    """A tiny but complete model folder (resnet18 at 32 px, with an OOD reference)."""
    folder = tmp_path_factory.mktemp("model") / "good"
    torch.manual_seed(0)
    config = Config(arch="resnet18", image_size=32)
    save_model(folder, build_model("resnet18"), config,
               {"temperature": 1.3, "logit_bias": [0.2, -0.2]})
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(40, 512)), np.arange(40) % 2
    state, _ = fit_ood(feats, labels, rng.normal(size=(10, 512)),
                       rng.integers(0, 30, (10, 32, 32, 3), dtype=np.uint8))
    save_ood(folder, state)
    return folder


@pytest.fixture(scope="module")
def galaxy_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "galaxy.jpg"
    draw_galaxy("spiral", 96, seed=1).save(path, quality=92)
    return path


def _edit_meta(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        meta = json.loads((folder / META_FILE).read_text())
        result = change(meta)
        (folder / META_FILE).write_text(json.dumps(meta if result is None else result))
    return edit


def _set(path: str, value: object) -> Callable[[Path], None]:
    def change(meta: dict) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value
    return _edit_meta(change)


def _write_raw(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / META_FILE).write_text(text)


def _ood_bytes(data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        old = (folder / OOD_FILE).read_bytes()
        (folder / OOD_FILE).write_bytes(data(old) if callable(data) else data)
    return edit


def _ood_arrays(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        from safetensors.numpy import load_file

        state = dict(load_file(str(folder / OOD_FILE)))
        change(state)
        (folder / OOD_FILE).write_bytes(save({k: np.ascontiguousarray(v)
                                              for k, v in state.items()}))
    return edit


BAD_MODEL_FOLDERS = {
    # name: (how the folder is spoiled, what the one error line must name)
    "huge image_size": (_set("config.image_size", 100000), ("model.json", "config.image_size")),
    "text image_size": (_set("config.image_size", "96"), ("model.json", "config.image_size")),
    "mean of length 1": (_set("config.mean", [0.5]), ("model.json", "config.mean")),
    "std all zero": (_set("config.std", [0, 0, 0]), ("model.json", "config.std")),
    "config not a dict": (_set("config", "notadict"), ("model.json", "config")),
    "nan temperature": (_write_raw('{"temperature": NaN, "config": {"arch": "resnet18", '
                                   '"image_size": 32}}'), ("model.json", "temperature")),
    "negative temperature": (_set("temperature", -1.0), ("model.json", "temperature")),
    "bias of wrong length": (_set("logit_bias", [0.1]), ("model.json", "logit_bias")),
    "unknown class list": (_set("classes", ["cat", "dog"]), ("model.json", "classes")),
    "unknown arch": (_set("config.arch", "vgg99"), ("model.json", "config.arch")),
    "crop above one": (_set("config.crop_fraction", 3.0), ("model.json", "config.crop_fraction")),
    "input_size copy disagrees": (_set("input_size", 224), ("model.json", "input_size",
                                                          "config.image_size")),
    "mean copy disagrees": (_set("mean", [0.1, 0.1, 0.1]), ("model.json", "'mean'")),
    "std copy disagrees": (_set("std", [1, 1, 1]), ("model.json", "'std'")),
    "JSON list": (_write_raw("[1, 2, 3]"), ("model.json", "JSON object")),
    "deeply nested": (_write_raw("[" * 100_000 + "]" * 100_000), ("model.json",)),
    "not JSON": (_write_raw("{\"config\": "), ("model.json", "not valid JSON")),
    "5-million-digit id": (_write_raw('{"id": ' + "9" * 5_000_000 + "}"), ("model.json",)),
    "truncated ood": (_ood_bytes(lambda b: b[:100]), ("ood.safetensors",)),
    "random ood": (_ood_bytes(np.random.default_rng(0).bytes(5000)), ("ood.safetensors",)),
    "ood of another network": (_ood_arrays(lambda s: s.update(
        pca_mean=np.zeros(2048, np.float32))), ("ood.safetensors", "features")),
    "ood with nan": (_ood_arrays(lambda s: s["precision"].__setitem__((0, 0), np.nan)),
                     ("ood.safetensors", "precision")),
}


@pytest.mark.parametrize("case", list(BAD_MODEL_FOLDERS))
def test_bad_model_folder_is_refused_in_one_line(case, good_model, galaxy_jpeg, tmp_path,
                                                 capsys):
    spoil, names = BAD_MODEL_FOLDERS[case]
    folder = tmp_path / "model"
    shutil.copytree(good_model, folder)
    spoil(folder)
    code, out, err = run_cli(["predict", galaxy_jpeg, "--model", folder], capsys)
    assert code == 2 and out == ""
    assert_one_clear_line(err, *names)
    assert len(err) < 400, err


def test_good_model_folder_still_predicts(good_model, galaxy_jpeg, capsys):
    code, out, err = run_cli(["predict", galaxy_jpeg, "--model", good_model], capsys)
    assert code == 0, err
    row = out.splitlines()[1].split(",")
    assert row[1] in ("spiral", "elliptical") and 0 <= float(row[2]) <= 1
    assert row[4] != ""  # an OOD score from the reference


# --- numeric options --------------------------------------------------------------------------------
BAD_OPTIONS = [
    ["predict", "x.jpg", "--batch-size", "0"],
    ["predict", "x.jpg", "--batch-size", "-1"],
    ["predict", "x.jpg", "--batch-size", "many"],
    ["predict", "x.jpg", "--accept-at", "95"],
    ["train", "--out", "RUN", "--epochs", "-1"],
    ["train", "--out", "RUN", "--epochs", "0"],
    ["train", "--out", "RUN", "--batch-size", "1"],
    ["train", "--out", "RUN", "--lr", "nan"],
    ["train", "--out", "RUN", "--lr", "inf"],
    ["train", "--out", "RUN", "--image-size", "20000"],
    ["train", "--out", "RUN", "--crop", "0"],
    ["train", "--out", "RUN", "--patience", "-3"],
    ["train", "--out", "RUN", "--splits", "0"],
    ["train", "--out", "RUN", "--seed", "-1"],
    ["evaluate", "--split", "-1"],
    ["prepare", "--images", "IMG", "--out", "OUT", "--labels", "L", "--splits", "0"],
    ["prepare", "--images", "IMG", "--out", "OUT", "--labels", "L", "--splits", "-1"],
    ["prepare", "--images", "IMG", "--out", "OUT", "--labels", "L", "--crop", "0"],
    ["prepare", "--images", "IMG", "--out", "OUT", "--labels", "L", "--image-size", "0"],
    ["prepare", "--images", "IMG", "--out", "OUT", "--labels", "L", "--image-size", "20000"],
    ["prepare", "--images", "IMG", "--out", "OUT", "--labels", "L", "--val", "1.5"],
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=[" ".join(a[:1] + a[-2:]) for a in BAD_OPTIONS])
def test_bad_numeric_option_is_one_line_and_exit_2(args, tmp_path, capsys):
    args = [str(tmp_path / a) if a in ("RUN", "OUT", "IMG", "L") else a for a in args]
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert_one_clear_line(err, args[-2])
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused option"


# --- training runs ---------------------------------------------------------------------------------
RUN_CONFIG = Config(arch="resnet18", image_size=32, epochs=2, batch_size=8, lr=1e-3,
                    warmup_epochs=0, val_fraction=0.25, test_fraction=0.25, patience=10,
                    tta=False)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory) -> Path:
    from galaxy_core.data.prepare import PrepareRequest, prepare
    from tests.conftest import write_gz1_fixture

    root = tmp_path_factory.mktemp("hostile_train")
    paths = write_gz1_fixture(root / "src", n_per_class=8, size=48)
    prepare(PrepareRequest(images=paths["images_gz1"], out=root / "prepared",
                           labels=paths["leaf"]), RUN_CONFIG)
    return root / "prepared"


def _adam_steps(run_dir: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(run_dir / "checkpoint.safetensors"), framework="pt") as handle:
        return int(handle.get_tensor("optim.0.step").item())


@pytest.mark.slow
def test_checkpoint_is_one_unit_and_a_stale_counter_file_is_ignored(prepared_dir, tmp_path):
    """The kill between the two checkpoint files: a checkpoint.json saying epoch 1 beside
    tensors of epoch 2 made resume train an extra epoch silently. The counters now live inside
    the one checkpoint file."""
    from galaxy_core.train.loop import train

    run = tmp_path / "run"
    train(prepared_dir, run, RUN_CONFIG)
    per_epoch = _adam_steps(run) // 2
    assert per_epoch > 0 and not (run / "checkpoint.json").exists()
    (run / "checkpoint.json").write_text(json.dumps(
        {"epoch": 1, "best_val_loss": 9.0, "bad_epochs": 0}))  # as an old version left it
    result = train(prepared_dir, run, RUN_CONFIG.replace(epochs=3), resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert _adam_steps(run) == 3 * per_epoch


@pytest.mark.slow
def test_orphan_temp_files_are_removed_on_the_next_start(prepared_dir, tmp_path):
    from galaxy_core.train.loop import train

    run = tmp_path / "run"
    run.mkdir()
    orphan = run / ".checkpoint.safetensors.k9x2.tmp"
    orphan.write_bytes(b"\0" * 4096)  # a partial checkpoint from a kill -9
    keep = run / "notes.txt"
    keep.write_text("mine")
    train(prepared_dir, run, RUN_CONFIG.replace(epochs=1))
    assert not orphan.exists() and keep.read_text() == "mine"


@pytest.mark.slow
def test_disk_full_names_the_path_and_how_to_resume(prepared_dir, tmp_path, monkeypatch):
    import errno

    import galaxy_core.train.checkpoint as checkpoint
    from galaxy_core.errors import GalaxyError
    from galaxy_core.train.loop import train
    from galaxy_core.train.run_folder import read_history

    run = tmp_path / "run"
    real = checkpoint.atomic_write

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "atomic_write", full)
    with pytest.raises(GalaxyError) as refused:
        train(prepared_dir, run, RUN_CONFIG)
    message = str(refused.value)
    assert "disk full" in message and "checkpoint.safetensors" in message
    assert "--resume" in message and "free" in message
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "disk full" in status["error"]
    monkeypatch.setattr(checkpoint, "atomic_write", real)  # room made
    result = train(prepared_dir, run, RUN_CONFIG, resume=True)
    assert [r["epoch"] for r in read_history(run)] == [1, 2] and result.state == "finished"


def test_refused_pickle_weights_are_one_line_and_leave_no_run_folder(prepared_dir, tmp_path,
                                                                     capsys):
    import datetime

    weights = tmp_path / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(1), "when": datetime.datetime(2020, 1, 1)}, weights)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--data", prepared_dir, "--out", run, "--arch", "resnet18",
                            "--weights", weights, "--epochs", "1"], capsys)
    assert code == 2
    assert_one_clear_line(err, "backbone.pth", "safetensors")
    assert "weights_only=False" not in err
    assert not run.exists()


# --- files and folders given to galaxy predict ------------------------------------------------------
def _make(kind: str, folder: Path, jpeg: bytes) -> str:
    """Put one entry of ``kind`` into ``folder``; return the name its row must show."""
    import gzip
    import os

    if kind == "good":
        (folder / "ok.jpg").write_bytes(jpeg)
        return "ok.jpg"
    if kind == "no suffix":
        (folder / "cutout").write_bytes(jpeg)
        return "cutout"
    if kind == "carriage return":
        (folder / "cr\rname.jpg").write_bytes(jpeg)
        return "cr\\rname.jpg"
    if kind == "non-UTF-8 name":
        with open(os.fsencode(str(folder)) + b"/bad\xffname.jpg", "wb") as handle:
            handle.write(jpeg)
        return "bad\\xffname.jpg"
    if kind == "text file":
        (folder / "README.txt").write_text("not an image\n")
        return "README.txt"
    if kind == "avif":
        (folder / "x.avif").write_bytes(b"\0\0\0\x1cftypavif" + b"\0" * 64)
        return "x.avif"
    if kind == "jp2":
        (folder / "x.jp2").write_bytes(b"\0\0\0\x0cjP  \r\n\x87\n" + b"\0" * 64)
        return "x.jp2"
    if kind == "dangling link":
        (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
        return "gone.jpg"
    if kind == "fifo":
        os.mkfifo(folder / "pipe.jpg")
        return "pipe.jpg"
    if kind == "gzipped text":
        (folder / "x.fits.gz").write_bytes(gzip.compress(b"SIMPLE? no, just text\n" * 20))
        return "x.fits.gz"
    if kind == "link to folder":
        (folder / "elsewhere").symlink_to(folder.parent)
        return "elsewhere"
    raise ValueError(kind)


FOLDER_ENTRIES = {
    # kind: (classified, skipped (not an image: no failure), words the error must hold)
    "good": (True, False, ""),
    "no suffix": (True, False, ""),
    "carriage return": (True, False, ""),
    "non-UTF-8 name": (True, False, ""),
    "text file": (False, True, "text file"),
    "avif": (False, False, "AVIF"),
    "jp2": (False, False, "JPEG 2000"),
    "dangling link": (False, False, "broken symbolic link"),
    "fifo": (False, False, "named pipe"),
    "gzipped text": (False, False, "not an image"),
    "link to folder": (False, True, "not followed"),
}


@pytest.mark.parametrize("kind", list(FOLDER_ENTRIES))
def test_every_entry_in_a_folder_gets_its_row(kind, good_model, galaxy_jpeg, tmp_path, capsys):
    import pandas as pd

    folder = tmp_path / "in"
    folder.mkdir()
    good = _make("good", folder, galaxy_jpeg.read_bytes())
    shown = good if kind == "good" else _make(kind, folder, galaxy_jpeg.read_bytes())
    out = tmp_path / "out.csv"
    code, _, err = run_cli(["predict", folder, "--model", good_model, "-o", out], capsys)
    classified, skipped, words = FOLDER_ENTRIES[kind]
    rows = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert len(rows) == (1 if kind == "good" else 2), rows  # no row lost, none split in two
    row = rows[rows["path"].str.endswith(shown)].iloc[0]
    assert (row["label"] != "") == classified
    assert words in row["error"]
    assert row["error"].startswith("skipped") == skipped
    assert code == (0 if classified or skipped else 1), err
    if shown != good and "\\" in shown:
        assert "escapes" in row["notes"]
    assert " object at 0x" not in out.read_text()


def test_unreadable_folder_gets_a_row_and_exit_1(good_model, galaxy_jpeg, tmp_path, capsys,
                                                 monkeypatch):
    """(Run as root, a chmod 000 folder is still readable, so the refusal is simulated where
    the search meets it.)"""
    import os

    import pandas as pd

    import galaxy_core.predict.inputs as inputs

    folder = tmp_path / "in"
    (folder / "locked").mkdir(parents=True)
    _make("good", folder, galaxy_jpeg.read_bytes())
    real_walk = os.walk

    def walk(top, onerror=None, **kw):
        for root, dirs, files in real_walk(top, onerror=onerror, **kw):
            if Path(root).name == "locked":
                onerror(PermissionError(13, "Permission denied", root))
                continue
            yield root, dirs, files

    monkeypatch.setattr(inputs.os, "walk", walk)
    out = tmp_path / "out.csv"
    code, _, _ = run_cli(["predict", folder, "--model", good_model, "-o", out], capsys)
    rows = pd.read_csv(out, keep_default_na=False, dtype=str)
    locked = rows[rows["path"].str.endswith("locked")]
    assert len(locked) == 1 and "cannot be read" in locked.iloc[0]["error"]
    assert code == 1


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_special_files_given_directly_never_hang(special, good_model, tmp_path, capsys):
    import os

    path = special
    if special == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    code, out, _ = run_cli(["predict", path, "--model", good_model], capsys)
    assert code == 1 and "not a regular file" in out
    assert "too big" not in out


# --- galaxy prepare: folders it must not touch, output it must not half-write ------------------------
@pytest.fixture
def gz1(tmp_path) -> dict[str, Path]:
    from tests.conftest import write_gz1_fixture

    return write_gz1_fixture(tmp_path / "src", n_per_class=6, size=32)


def _prepare_args(gz1: dict[str, Path], out: Path, *extra: str) -> list:
    return ["prepare", "--labels", gz1["leaf"], "--images", gz1["images_gz1"], "--out", out,
            "--image-size", "16", *extra]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_never_deletes_a_folder_it_did_not_write(gz1, tmp_path, capsys):
    victim = tmp_path / "victim"
    (victim / "cache").mkdir(parents=True)
    (victim / "cache" / "thesis.tex").write_text("thesis")
    before = _tree(victim)
    code, _, err = run_cli(_prepare_args(gz1, victim, "--no-cache"), capsys)
    assert code == 2
    assert_one_clear_line(err, "not written by galaxy prepare")
    assert _tree(victim) == before


@pytest.mark.parametrize("where", ["images itself", "inside images", "above images"])
def test_prepare_refuses_out_overlapping_images(where, gz1, tmp_path, capsys):
    images = gz1["images_gz1"]
    out = {"images itself": images, "inside images": images / "prepared",
           "above images": images.parent}[where]
    before = _tree(images.parent)
    code, _, err = run_cli(_prepare_args(gz1, out), capsys)
    assert code == 2
    assert_one_clear_line(err, "overlap")
    assert _tree(images.parent) == before


def test_prepare_updates_its_own_output_and_keeps_what_is_not_its(gz1, tmp_path, capsys):
    from galaxy_core.data.prepared import open_prepared

    out = tmp_path / "prepared"
    assert run_cli(_prepare_args(gz1, out), capsys)[0] == 0
    (out / "my_notes.txt").write_text("keep me")
    (out / "cache" / "mine.txt").write_text("keep me too")
    assert run_cli(_prepare_args(gz1, out, "--splits", "2"), capsys)[0] == 0
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert (out / "cache" / "mine.txt").read_text() == "keep me too"
    assert open_prepared(out).n_splits == 2
    assert not list(tmp_path.glob(".prepared.prepare-*"))


@pytest.mark.parametrize("failure", ["bad option", "disk full", "interrupted"])
def test_prepare_leaves_no_partial_output(failure, gz1, tmp_path, monkeypatch):
    import errno

    import galaxy_core.data.prepare as prepare_module
    from galaxy_core.data.prepare import PrepareRequest, prepare
    from galaxy_core.errors import GalaxyError

    config = Config(image_size=16)
    for fresh in (True, False):
        out = tmp_path / f"out_{fresh}"
        if not fresh:
            prepare(PrepareRequest(images=gz1["images_gz1"], out=out, labels=gz1["leaf"]),
                    config)
        before = _tree(out) if out.exists() else None
        request = PrepareRequest(images=gz1["images_gz1"], out=out, labels=gz1["leaf"])
        if failure == "bad option":
            request.n_splits, expected = 0, GalaxyError
        else:
            error = OSError(errno.ENOSPC, "No space left on device") if failure == "disk full" \
                else KeyboardInterrupt()
            expected = type(error)

            def broken(*args, error=error, **kwargs):
                raise error

            monkeypatch.setattr(prepare_module, "build_cache", broken)
        with pytest.raises(expected):
            prepare(request, config)
        monkeypatch.undo()
        assert (_tree(out) if out.exists() else None) == before, (failure, fresh)
        assert not list(tmp_path.glob(".out_*.prepare-*"))


def _edit_csv(path: Path, change: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


def _cell(row: int, column: int, value: str) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        cells = lines[row].split(",")
        cells[column] = value
        lines[row] = ",".join(cells)
        return lines
    return change


BAD_CATALOGUE_ROWS = {
    # name: (which file, how it is spoiled, words the one error line must hold)
    "23-digit OBJID": ("leaf", _cell(1, 0, "1" * 23), ("OBJID", "row 2")),
    "scientific OBJID": ("leaf", _cell(3, 0, "5.877e17"), ("OBJID", "row 4")),
    "inf OBJID": ("leaf", _cell(2, 0, "inf"), ("OBJID", "row 3")),
    "5-million-digit OBJID": ("leaf", _cell(1, 0, "7" * 5_000_000), ("OBJID", "row 2")),
    "OBJID and ObjId": ("leaf", lambda lines: [lines[0] + ",ObjId"] + [
        line + ",1" for line in lines[1:]], ("OBJID", "ObjId")),
    "asset_id 10^30": ("mapping", _cell(1, 2, "1" + "0" * 30), ("asset_id", "row 2")),
    "asset_id 1e30": ("mapping", _cell(1, 2, "1e30"), ("asset_id", "row 2")),
}


@pytest.mark.parametrize("case", list(BAD_CATALOGUE_ROWS))
def test_bad_catalogue_row_is_named_in_one_line(case, gz1, tmp_path, capsys):
    which, spoil, words = BAD_CATALOGUE_ROWS[case]
    _edit_csv(gz1[which], spoil)
    out = tmp_path / "prepared"
    if which == "mapping":
        args = ["prepare", "--catalogue", gz1["catalogue"], "--mapping", gz1["mapping"],
                "--images", gz1["images_gz2"], "--out", out]
    else:
        args = _prepare_args(gz1, out)
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert_one_clear_line(err, gz1[which].name, *words)
    assert len(err) < 400
    assert not out.exists()


def test_gz1_row_with_two_flags_is_reported_as_inconsistent(gz1, tmp_path):
    import pandas as pd

    from galaxy_core.data.prepare import PrepareRequest, prepare

    table = pd.read_csv(gz1["catalogue"])
    spiral = table.index[table["SPIRAL"] == 1][2]
    table.loc[spiral, "ELLIPTICAL"] = 1
    table.to_csv(gz1["catalogue"], index=False)
    for flags in (True, False):
        out = tmp_path / f"prepared_{flags}"
        prepared = prepare(PrepareRequest(images=gz1["images_gz2"], out=out,
                                          catalogue=gz1["catalogue"], mapping=gz1["mapping"],
                                          use_flags=flags, build_cache=False), Config())
        assert prepared.summary["dropped"].get("inconsistent flags") == 1
        assert str(table.loc[spiral, "OBJID"]) not in set(prepared.table["objid"])


# --- the classroom's database file (GALAXY_CLASSROOM_DB) ------------------------------------------
def _sqlite_file(script: str, wal: bool = False) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        import sqlite3

        db = sqlite3.connect(path)
        if wal:
            db.execute("PRAGMA journal_mode = WAL")
        db.executescript(script)
        db.commit()
        db.close()
    return make


FOREIGN_CLASSROOM_FILES = {
    # name: how the file is made (each must be refused and left byte-identical)
    "another app's classes table": _sqlite_file(
        "CREATE TABLE classes (id INTEGER PRIMARY KEY, teacher TEXT, room TEXT);"
        "INSERT INTO classes VALUES (1, 'Ms Smith', 'B12'); PRAGMA user_version = 1;"),
    "another app's tables": _sqlite_file(
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);"
        "INSERT INTO invoices VALUES (1, 9.5);"),
    "ours plus a foreign table": _sqlite_file(
        "CREATE TABLE classes (id INTEGER PRIMARY KEY, code TEXT, name TEXT, galaxy_set TEXT);"
        "CREATE TABLE payroll (id INTEGER);"),
    "another app id": _sqlite_file("PRAGMA application_id = 1234; CREATE TABLE t (x);"),
    "another app in WAL mode": _sqlite_file("CREATE TABLE notes (body TEXT);", wal=True),
    "a text file": lambda path: path.write_text("name,score\nada,3\n"),
    "a truncated header": lambda path: path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20),
}


@pytest.mark.parametrize("case", list(FOREIGN_CLASSROOM_FILES))
def test_foreign_classroom_file_is_refused_and_left_byte_identical(case, tmp_path):
    from galaxy_core.classroom.store import ClassroomError, ClassroomStore

    path = tmp_path / "theirs.sqlite3"
    FOREIGN_CLASSROOM_FILES[case](path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ClassroomError) as refused:
        ClassroomStore(path)
    message = str(refused.value)
    assert "not a classroom file" in message and str(path) in message
    assert "\n" not in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before


@pytest.mark.parametrize("case", ["new", "empty", "ours", "ours unmarked (schema 1)",
                                  "ours unmarked in WAL mode"])
def test_own_or_empty_classroom_file_is_opened_and_marked(case, tmp_path):
    import sqlite3

    from galaxy_core.classroom.store import APPLICATION_ID, ClassroomStore

    path = tmp_path / "classroom.sqlite3"
    legacy = ("CREATE TABLE classes (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, "
              "name TEXT NOT NULL, galaxy_set TEXT NOT NULL, target INTEGER NOT NULL, "
              "model TEXT NOT NULL, created REAL NOT NULL, closed REAL); PRAGMA user_version = 1;")
    if case == "empty":
        path.write_bytes(b"")
    elif case == "ours":
        ClassroomStore(path)
    elif case == "ours unmarked (schema 1)":
        _sqlite_file(legacy)(path)
    elif case == "ours unmarked in WAL mode":
        _sqlite_file(legacy, wal=True)(path)
    ClassroomStore(path).list_classes()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


# --- formula cells in every CSV the project writes ------------------------------------------------
FORMULA_CELLS = {
    # text as given: what the CSV cell must read (a spreadsheet shows it as text)
    "=HYPERLINK(\"http://x\",\"y\")": "'=HYPERLINK(\"http://x\",\"y\")",
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "-2+3": "'-2+3",
    "@SUM(1)": "'@SUM(1)",
    "'=1": "''=1",  # already an apostrophe: one more, so reading back is exact
    "-0.25": "-0.25",  # a number stays a number
    "12345": "12345",
    "plain": "plain",
}


def test_inert_cell_escapes_formulas_and_reads_back_exactly():
    from galaxy_core.io_utils import inert_cell, live_cell

    for given, written in FORMULA_CELLS.items():
        assert inert_cell(given) == written, given
        assert live_cell(written) == given, given
    assert inert_cell(0.5) == 0.5


@pytest.mark.parametrize("output", ["answers.csv", "stdout"])
def test_predict_csv_never_holds_a_formula_cell(output, good_model, galaxy_jpeg, tmp_path,
                                                capsys):
    import csv

    from galaxy_core.io_utils import FORMULA_STARTS

    data = galaxy_jpeg.read_bytes()
    images = tmp_path / "imgs"
    images.mkdir()
    names = ["=1+1.jpeg", "+cmd|x.jpeg", "@SUM(1).jpeg", "-2+3.jpeg", "ok.jpeg"]
    for name in names:
        (images / name).write_bytes(data)
    (images / "=broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    catalogue = tmp_path / "cat.csv"
    catalogue.write_text("file,OBJID\n" + "".join(
        f"{images / n},\"=HYPERLINK(\"\"http://evil\"\",\"\"{i}\"\")\"\n"
        for i, n in enumerate(names)))
    out = tmp_path / "out"
    out.mkdir()
    for args in ([images], ["--catalogue", catalogue, "--path-column", "file",
                            "--id-columns", "OBJID"]):
        target = [] if output == "stdout" else ["-o", out / f"{len(args)}{output}"]
        code, text, err = run_cli(["predict", *args, "--model", good_model, *target], capsys)
        assert code in (0, 1), err
        if output != "stdout":
            text = (out / f"{len(args)}{output}").read_text()
        rows = list(csv.reader(text.splitlines()))
        cells = [c for row in rows[1:] for c in row]
        assert len(rows) > 1 and cells
        for cell in cells:
            assert cell[:1] not in FORMULA_STARTS or _number(cell), (cell, text)
        assert any(c.startswith("'=") for c in cells)
    if output != "stdout":  # a resume reads its own escaped rows back as written
        code, _, err = run_cli(["predict", images, "--model", good_model, "-o",
                                out / f"1{output}", "--resume"], capsys)
        assert code in (0, 1), err
        assert len((out / f"1{output}").read_text().splitlines()) == len(names) + 2


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_dashboard_csv_download_escapes_formula_cells():
    from dashboard.verdict import csv_bytes

    text = csv_bytes([{"path": "=1+1.jpeg", "p_spiral": "0.5", "ood_score": "-0.3",
                       "error": "+oops"}]).decode()
    assert text.splitlines()[1] == "'=1+1.jpeg,0.5,-0.3,'+oops"


# --- an output written inside the folder it classifies --------------------------------------------
@pytest.mark.parametrize("output", ["answers.csv", "answers.parquet"])
def test_output_and_its_side_files_are_never_inputs(output, good_model, galaxy_jpeg, tmp_path,
                                                   capsys):
    from galaxy_core.predict.writers import read_rows

    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        shutil.copy(galaxy_jpeg, images / f"g{i}.jpg")
    out = images / output
    # what a run killed in the middle of an atomic write leaves beside its output
    (images / f".{output}.run.json.k2j3.tmp").write_text("{")
    (images / f".{output}.x81f.tmp").write_text("half")
    code, _, err = run_cli(["predict", images, "--model", good_model, "-o", out], capsys)
    assert code == 0, err
    for _ in range(2):  # resumed twice: nothing new, nothing refused
        code, _, err = run_cli(["predict", images, "--model", good_model, "-o", out,
                                "--resume"], capsys)
        assert code == 0, err
        rows = list(read_rows(out))
        assert sorted(Path(r["path"]).name for r in rows) == ["g0.jpg", "g1.jpg", "g2.jpg"]


# --- small files that decode to gigabytes, and TIFFs of many pages --------------------------------
def _float_tiff(path: Path, side: int = 4000) -> None:
    from PIL import Image

    values = np.zeros((side, side), np.float32)
    values[side // 2 - 100:side // 2 + 100, side // 2 - 100:side // 2 + 100] = 1.0
    Image.fromarray(values, "F").save(path, compression="tiff_adobe_deflate")


def _deep_png(path: Path, side: int = 4000) -> None:
    from PIL import Image

    values = np.zeros((side, side), np.uint16)
    values[side // 2 - 100:side // 2 + 100, side // 2 - 100:side // 2 + 100] = 60000
    Image.fromarray(values).save(path)


def _many_page_tiff(path: Path, pages: int) -> None:
    """An 8x8 grey TIFF of ``pages`` pages, written directly (every page shares one strip)."""
    import struct

    tags = [(256, 3, 8), (257, 3, 8), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (277, 3, 1), (278, 3, 8), (279, 4, 64)]
    ifd_size = 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 72) + bytes(64))
    for page in range(pages):
        start = 72 + page * ifd_size
        following = start + ifd_size if page < pages - 1 else 0
        out += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            out += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3
                                                        else struct.pack("<I", value))
        out += struct.pack("<I", following)
    path.write_bytes(bytes(out))


_PEAK = """
import sys
from galaxy_core.data.imageio import read_image
loaded = read_image(sys.argv[1])
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM:"))  # this process's own peak (ru_maxrss keeps pytest's)
print(loaded.image.width, loaded.image.height, loaded.original_size[0], peak // 1024,
      "|".join(loaded.notes))
"""


@pytest.fixture(scope="module")
def decode_bombs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    files = {"16-megapixel float TIFF": folder / "float.tif",
             "16-megapixel 16-bit PNG": folder / "deep.png"}
    _float_tiff(files["16-megapixel float TIFF"])
    _deep_png(files["16-megapixel 16-bit PNG"])
    return files


@pytest.mark.parametrize("case", ["16-megapixel float TIFF", "16-megapixel 16-bit PNG"])
def test_small_file_that_decodes_big_is_read_in_bounded_memory(case, decode_bombs):
    """Each file is about 100 KB; read whole, such a file took about 30 bytes of memory per
    pixel (float64 copies; 1.5 GB at 50 megapixels), here about 500 MB. Now it is averaged down
    a band of rows at a time before it is scaled: the decoded picture and little more."""
    import subprocess
    import sys

    path = decode_bombs[case]
    assert path.stat().st_size < 200_000
    done = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True,
                          text=True, timeout=600, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    width, height, original, peak_mb, notes = done.stdout.split(maxsplit=4)
    assert int(original) == 4000 and max(int(width), int(height)) <= 2048
    assert "averaged over 2x2 pixel blocks" in notes
    assert int(peak_mb) < 400, f"peak {peak_mb} MB"  # about 550 MB before


def test_dashboard_sends_small_files_that_decode_big_to_the_decoding_slot(decode_bombs,
                                                                         galaxy_jpeg):
    from dashboard import uploads

    for path in decode_bombs.values():
        assert uploads.is_large(path.read_bytes()), path.name
    assert not uploads.is_large(galaxy_jpeg.read_bytes())


def test_decoded_size_over_the_bound_is_refused_in_one_line(decode_bombs, monkeypatch):
    from galaxy_core.data import imageio
    from galaxy_core.errors import ImageLoadError

    monkeypatch.setattr(imageio, "MAX_DECODED_BYTES", 32 * 2**20)
    with pytest.raises(ImageLoadError) as refused:
        imageio.read_image(decode_bombs["16-megapixel float TIFF"])
    text = str(refused.value)
    assert "float.tif" in text and "once decoded" in text and "\n" not in text


def test_tiff_of_many_pages_reads_the_first_and_caps_the_count(tmp_path):
    """Pillow's page count walks every page again for each one; 100,000 pages took 54 s."""
    import time

    from galaxy_core.data.imageio import MAX_FRAMES, read_image

    path = tmp_path / "pages.tif"
    _many_page_tiff(path, 40_000)
    started = time.perf_counter()
    loaded = read_image(path)
    assert time.perf_counter() - started < 5
    assert loaded.image.size == (8, 8)
    assert f"more than {MAX_FRAMES} frames: using the first" in loaded.notes
    _many_page_tiff(path, 3)
    assert "3 frames: using the first" in read_image(path).notes


# --- a forged model.onnx ---------------------------------------------------------------------------
def _forged_onnx(path: Path, weights_sha: str, side: int = 32, features: int = 512) -> None:
    """A tiny graph with our input and outputs, stamped with the real weights' SHA-256, that
    answers 'elliptical' for everything."""
    import onnx
    from onnx import TensorProto, helper

    from galaxy_core.model.onnx_network import SOURCE_KEY

    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
             helper.make_node("Mul", ["m1", "w"], ["logits"]),
             helper.make_node("Mul", ["m1", "f"], ["features"])]
    graph = helper.make_graph(
        nodes, "forged",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", features])],
        [helper.make_tensor("one", TensorProto.INT64, [1], [1]),
         helper.make_tensor("w", TensorProto.FLOAT, [2], [0.0, 50.0]),
         helper.make_tensor("f", TensorProto.FLOAT, [features], [0.0] * features)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {SOURCE_KEY: weights_sha})
    onnx.save(model, str(path))


@pytest.mark.parametrize("case", ["forged graph with the weights' SHA", "declared image side 60000"])
def test_forged_model_onnx_is_never_run(case, good_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from galaxy_core.errors import ModelLoadError
    from galaxy_core.model.onnx_network import ONNX_FILE, file_sha256, load_onnx_network
    from galaxy_core.predict.backend import fp32_problem, open_model

    folder = tmp_path / "model"
    shutil.copytree(good_model, folder)
    side = 32 if case.startswith("forged") else 60000
    _forged_onnx(folder / ONNX_FILE, file_sha256(folder / "model.safetensors"), side=side)
    if side != 32:
        # refused in one line naming the file, by our shape bound or by onnxruntime's own
        # loader (which, in onnxruntime 1.31, rejects a 60,000 px side before we look)
        with pytest.raises(ModelLoadError, match="declares shapes|is not a usable ONNX model"):
            load_onnx_network(folder / ONNX_FILE)
    from galaxy_core.model.folder import read_model_folder

    assert fp32_problem(read_model_folder(folder)) == "not the file model.json records"
    said: list[str] = []
    opened = open_model(folder, "onnx", note=said.append)  # exported again, then trusted
    assert any("exporting it again" in s for s in said), said
    assert fp32_problem(read_model_folder(folder)) is None
    assert opened.network.n_features == 512


@pytest.mark.parametrize("orientation,rotated", [(1, False), (0, False), (9, False),
                                                 (65535, False), (6, True), (3, True)])
def test_exif_note_says_rotated_only_when_it_was(orientation, rotated, tmp_path):
    from PIL import Image

    from galaxy_core.data.imageio import read_image

    picture = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = picture.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    picture.save(path, exif=exif)
    loaded = read_image(path)
    assert any("rotated" in n for n in loaded.notes) == rotated, loaded.notes
    assert loaded.image.size == ((20, 40) if orientation == 6 else (40, 20))


# --- an unreachable Ray cluster (issue 25, item 11) ------------------------------------------------
# Only this machine is ever addressed: a port bound here and never listened on is closed. Ray
# would turn 127.0.0.1 into this host's own address, which is still this machine.
def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # bound, never listening: refused, then freed


def _ray_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("ray") is not None  # without importing it (seconds)


@pytest.mark.skipif(not _ray_installed(), reason="needs ray")
def test_closed_ray_address_is_refused_at_once_in_one_line(galaxy_jpeg, tmp_path, capsys):
    """Ray retried 127.0.0.1:1 for 617 s, filling the terminal. Now a closed port is refused
    before Ray is imported and before any model is loaded."""
    import time

    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    code, out, err = run_cli(["predict", galaxy_jpeg, "--model", tmp_path / "no-model",
                              "--engine", "ray", "--ray-address", address], capsys)
    assert code == 2 and out == ""
    assert_one_clear_line(err, address, "connection refused")
    assert time.monotonic() - started < 10


_HANGING_RAY = """
import signal, sys, threading, time
from galaxy_core.predict import ray_engine

class HangingRay:
    '''ray.init as it behaves against an address that never answers: it sets its own SIGTERM
    handler (sys.exit) in the main thread, then waits in C++ retries for ten minutes, where no
    Python signal handler runs (blocked signals model that).'''

    @staticmethod
    def is_initialized():
        return False

    @staticmethod
    def init(**options):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        print("joining", file=sys.stderr, flush=True)
        time.sleep(600)

ray_engine._reach = lambda address, seconds: None  # as if something listened there
ray_engine._ray = lambda: HangingRay
from galaxy_core.cli import main
sys.exit(main(["predict", "x.jpg", "--model", "nowhere", "--engine", "ray",
               "--ray-address", "127.0.0.1:1"]))
"""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "timeout"])
def test_a_ray_join_that_hangs_stops_at_once_or_after_the_stated_time(how):
    """A cluster address that never answers: galaxy predict gives up after the stated time
    (GALAXY_RAY_TIMEOUT, here 3 s) with one line and exit 2, and Ctrl-C or SIGTERM while it
    waits stop it at once (exit 130). Ray itself is replaced by a stand-in that hangs the way
    it does, so no cluster, no network and no Ray start is needed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "GALAXY_RAY_TIMEOUT": "3" if how == "timeout" else "600"}
    child = subprocess.Popen([sys.executable, "-c", _HANGING_RAY], env=env,
                             cwd=Path(__file__).parent.parent,  # this checkout's galaxy_core
                             stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        seen = ""
        while "joining" not in seen:
            line = child.stderr.readline()
            assert line, f"ended before joining: {seen}{child.stderr.read()}"
            seen += line
        joined = time.monotonic()
        if how != "timeout":
            time.sleep(0.5)
            child.send_signal(getattr(signal, how))
        _, err = child.communicate(timeout=60)
        waited = time.monotonic() - joined
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    if how == "timeout":
        assert child.returncode == 2 and 3 <= waited < 30, (child.returncode, waited, err)
        assert_one_clear_line(err, "127.0.0.1:1", "within 3 s", "GALAXY_RAY_TIMEOUT")
    else:
        assert child.returncode == 130 and waited < 20, (child.returncode, waited, err)
        assert_one_clear_line(err, "interrupted")


# --- resuming an output that was tampered with, or given another way (items 14, 15) ----------------
@pytest.fixture(scope="module")
def finished_outputs(good_model, galaxy_jpeg, tmp_path_factory) -> dict[str, Path]:
    """A finished CSV and Parquet output of three images (given by absolute path)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("finished")
    images = root / "imgs"
    images.mkdir()
    for i in range(3):
        shutil.copy(galaxy_jpeg, images / f"g{i}.jpg")
    outputs = {"csv": root / "answers.csv", "parquet": root / "answers.parquet"}
    for out in outputs.values():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["predict", str(images), "--model", str(good_model), "-o",
                         str(out)]) == 0
    return {"images": images, **outputs}


def _csv_cell(column: str, value: str, row: int = 2) -> Callable[[Path], None]:
    def spoil(out: Path) -> None:
        lines = out.read_text().splitlines(keepends=True)
        header = lines[0].rstrip("\n").split(",")
        cells = lines[row].rstrip("\n").split(",")
        cells[header.index(column)] = value
        lines[row] = ",".join(cells) + "\n"
        out.write_text("".join(lines))
    return spoil


def _csv_bytes(old: bytes, new: bytes) -> Callable[[Path], None]:
    return lambda out: out.write_bytes(out.read_bytes().replace(old, new, 1))


def _stray_part(out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"objid": [1, 2], "ra": [0.5, 0.6]}), out / "part-000001.parquet")


def _record(text: str) -> Callable[[Path], None]:
    from galaxy_core.predict.run_record import record_path

    return lambda out: record_path(out).write_text(text)


def _no_record(out: Path) -> None:
    from galaxy_core.predict.run_record import record_path

    record_path(out).unlink()


SPOILED_OUTPUTS = {
    # case: (format, how the output is spoiled, what the one line must name)
    "deeply nested run record": ("csv", _record("[" * 20_000 + "]" * 20_000),
                                 ("answers.csv.run.json", "damaged")),
    "stray part of another table": ("parquet", _stray_part, ("part-000001.parquet", "objid")),
    "corrupt part": ("parquet", lambda out: (out / "part-000001.parquet").write_bytes(
        b"PAR1" + b"\x07" * 300 + b"PAR1"), ("part-000001.parquet",)),
    "score that is not a number": ("csv", _csv_cell("ood_score", "abc"),
                                   ("answers.csv", "row 2", "abc")),
    "bytes that are not UTF-8": ("csv", _csv_bytes(b"g1.jpg", b"g1\xff.jpg"),
                                 ("answers.csv", "UTF-8")),
    "rows but no run record": ("csv", _no_record, ("answers.csv", "no run record", "--views")),
    "parquet rows but no run record": ("parquet", _no_record,
                                       ("answers.parquet", "no run record")),
}


@pytest.mark.parametrize("case", list(SPOILED_OUTPUTS))
def test_resuming_a_spoiled_output_is_one_line_naming_the_file(case, finished_outputs, good_model,
                                                              tmp_path, capsys):
    """Each used to end in a traceback (RecursionError, KeyError) or in a line naming no file
    ("could not convert string to float", "'utf-8' codec can't decode"), or, with no record,
    in a resume that took the rows as made with whatever --views it was given."""
    kind, spoil, names = SPOILED_OUTPUTS[case]
    source = finished_outputs[kind]
    out = tmp_path / source.name
    (shutil.copytree if source.is_dir() else shutil.copy)(source, out)
    from galaxy_core.predict.run_record import record_path

    if record_path(source).is_file() and not source.is_dir():
        shutil.copy(record_path(source), record_path(out))
    spoil(out)
    before = _snapshot(out)
    code, _, err = run_cli(["predict", finished_outputs["images"], "--model", good_model, "-o",
                            out, "--resume"], capsys)
    assert code == 2, err
    assert_one_clear_line(err, *names)
    assert _snapshot(out) == before, "a refused resume leaves the output as it was"


def _snapshot(out: Path) -> dict[str, bytes]:
    from galaxy_core.predict.run_record import record_path

    files = sorted(out.iterdir()) if out.is_dir() else [out, record_path(out)]
    return {p.name: p.read_bytes() for p in files if p.is_file() and not p.name.endswith(".lock")}


def test_the_same_folder_given_as_an_absolute_path_resumes(finished_outputs, good_model,
                                                          tmp_path, capsys, monkeypatch):
    """Written with ``imgs`` from its parent folder, resumed with ``/.../imgs``: the same
    files, so nothing to refuse and nothing to add."""
    images = finished_outputs["images"]
    monkeypatch.chdir(images.parent)
    out = tmp_path / "relative.csv"
    code, _, err = run_cli(["predict", "imgs", "--model", good_model, "-o", out], capsys)
    assert code == 0, err
    written = out.read_bytes()
    code, _, err = run_cli(["predict", images.resolve(), "--model", good_model, "-o", out,
                            "--resume"], capsys)
    assert code == 0, err
    assert "wrote 0 rows" in err and out.read_bytes() == written


def test_a_full_disk_names_the_output_and_how_to_go_on(tmp_path):
    import contextlib

    from galaxy_core.predict.runner import PREDICT_COLUMNS
    from galaxy_core.predict.writers import CsvOutput, OutputError

    path = tmp_path / "answers.csv"
    output = CsvOutput(path, PREDICT_COLUMNS)
    output._handle.close()
    full = output._handle = open("/dev/full", "w", encoding="utf-8")  # every write: ENOSPC
    with pytest.raises(OutputError) as refused:
        output.append([dict.fromkeys(PREDICT_COLUMNS, "x")])
    message = str(refused.value)
    assert str(path) in message and "No space left" in message and "--resume" in message
    with contextlib.suppress(OSError):
        full.close()  # what it may still hold cannot be written either


# --- catalogues: text in another encoding, Parquet rows that inflate (items 8, 14) -------------
def test_a_utf16_catalogue_is_named_and_no_nul_reaches_the_terminal(good_model, galaxy_jpeg,
                                                                    tmp_path, capsys):
    catalogue = tmp_path / "cat.csv"
    catalogue.write_text(f"file,OBJID\n{galaxy_jpeg},1\n", encoding="utf-16")
    code, out, err = run_cli(["predict", "--catalogue", catalogue, "--path-column", "file",
                              "--model", good_model], capsys)
    assert code == 2 and out == ""
    assert "\x00" not in err
    assert_one_clear_line(err, "cat.csv", "UTF-16")


def test_control_characters_in_any_error_are_escaped(capsys):
    from galaxy_core.cli import _one_line

    assert _one_line(ValueError("a\x00b\x1b[31mc")) == "a\\x00b\\x1b[31mc"


_INFLATING = """
import sys
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pathlib import Path
from galaxy_core.predict import catalogue as cat

MiB = 2**20
cat.MAX_ROW_BYTES, cat.MAX_BATCH_BYTES = 6 * MiB, 16 * MiB
path = Path(sys.argv[1])
catalogue = cat.Catalogue(cat.CatalogueRequest(path, bytes_column="image", id_columns=("objid",)))
def rss(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) // 1024
start = rss("VmRSS:")
problems = []
for job in catalogue.jobs():
    if job.problem:
        problems.append(job.problem)
print(rss("VmHWM:") - start, "|".join(problems))
"""


@pytest.fixture(scope="module")
def inflating_parquet(tmp_path_factory) -> Path:
    """40 rows of 4 MiB and one of 8 MiB of zero bytes: about 170 MiB in rows, 30 kB on disk
    (the issue's file held 150 MB a row in 24 kB)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("inflate") / "bomb.parquet"
    rows = [bytes(4 * 2**20)] * 40 + [bytes(8 * 2**20)]
    table = pa.table({"objid": [str(i) for i in range(len(rows))],
                      "image": pa.array(rows, pa.binary())})
    pq.write_table(table, path, compression="zstd", data_page_size=2**20, write_batch_size=1)
    assert path.stat().st_size < 1_000_000
    return path


def test_parquet_rows_that_inflate_are_read_in_bounded_batches(inflating_parquet):
    """Read 256 rows at a time, the 41 rows came out at once, with a copy each in Python: about
    340 MB at a time here, 118 GB for the issue's file. Now each batch holds what the bound
    allows (16 MiB here), and the 8 MiB row, over the 6 MiB bound a row, is an error row whose
    bytes are never copied out."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _INFLATING, str(inflating_parquet)],
                          capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    grown, problems = done.stdout.strip().split(" ", 1)
    assert problems == "catalogue row 41: 8 MiB of image bytes, over the bound of 6 MiB a row"
    assert int(grown) < 120, f"grew by {grown} MB while reading"


def test_an_inflating_row_is_an_error_row_in_the_output(inflating_parquet, good_model, tmp_path,
                                                        capsys, monkeypatch):
    from galaxy_core.predict import catalogue

    monkeypatch.setattr(catalogue, "MAX_ROW_BYTES", 6 * 2**20)
    subset = tmp_path / "two.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(inflating_parquet).slice(39, 2), subset, compression="zstd")
    out = tmp_path / "out.csv"
    code, _, err = run_cli(["predict", "--catalogue", subset, "--bytes-column", "image",
                            "--id-columns", "objid", "--model", good_model, "-o", out], capsys)
    assert code == 1, err
    rows = out.read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith("40,row 2,")
    assert "over the bound of 6 MiB a row" in rows[2]


# --- worker processes are gone when a run ends (item 14) ---------------------------------------
@pytest.mark.parametrize("ending", ["finished", "closed early"])
def test_reading_workers_are_shut_down_before_the_run_returns(ending):
    """A pool left to shut down on its own raced the interpreter's exit ("Exception ignored in
    threading ... Bad file descriptor" now and then)."""
    import multiprocessing
    import threading
    from concurrent.futures.process import _ExecutorManagerThread

    from galaxy_core.predict.jobs import Job
    from galaxy_core.predict.stream import prepared_batches

    jobs = [Job(None, problem=f"nothing {i}", shown=f"x{i}") for i in range(12)]
    batches = prepared_batches(jobs, Config(image_size=32), batch_size=2, workers=2)
    if ending == "finished":
        assert sum(len(b) for b in batches) == 12
    else:
        assert len(next(batches)) == 2
        batches.close()
    assert not [t for t in threading.enumerate() if isinstance(t, _ExecutorManagerThread)]
    assert not multiprocessing.active_children()


ALLOCATION_FAILURES = {
    "MemoryError": MemoryError(),
    "torch allocator": RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. "
                                    "DefaultCPUAllocator: not enough memory: you tried to "
                                    "allocate 9663676416 bytes."),
}


@pytest.mark.parametrize("case", list(ALLOCATION_FAILURES))
def test_an_allocation_that_fails_while_classifying_is_one_line(case, finished_outputs,
                                                                good_model, tmp_path, capsys,
                                                                monkeypatch):
    """Both ended in a traceback; the line now says where the rows are and what to change.
    (onnxruntime's failures become ModelLoadError where the session runs.)"""
    import galaxy_core.predict.runner as runner

    def fail(*args, **kwargs):
        raise ALLOCATION_FAILURES[case]

    monkeypatch.setattr(runner, "finish_prepared", fail)
    out = tmp_path / "out.csv"
    code, _, err = run_cli(["predict", finished_outputs["images"], "--model", good_model,
                            "--workers", 0, "-o", out], capsys)
    assert code == 2
    assert_one_clear_line(err, "out of memory", "--batch-size", "--resume", "out.csv")
