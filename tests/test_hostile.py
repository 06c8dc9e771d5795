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
