"""Predicting on an ONNX engine without torch (issue 16): the numpy runner answers as the torch
path does for the same network, ``open_model`` loads no torch module for the ONNX engines, and a
whole ``galaxy predict --backend onnx`` never imports torch.

A tiny untrained resnet18 at 32 px on synthetic galaxies (its ``model.onnx`` exported once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from galaxy_core.config import Config
from galaxy_core.data.tensors import to_tensor
from galaxy_core.errors import GalaxyError, ModelLoadError
from galaxy_core.model.build import build_model
from galaxy_core.model.calibrated import infer
from galaxy_core.model.folder import read_model_folder
from galaxy_core.model.inference import run_network
from galaxy_core.model.network import normalise, run_array_network
from galaxy_core.model.ood import save_ood
from galaxy_core.model.onnx_network import ONNX_FILE, load_onnx_network
from galaxy_core.model.store import load_model, save_model
from galaxy_core.predict import backend
from galaxy_core.predict.backend import open_model, use_backend
from galaxy_core.release.onnx_export import export_fp32
from tests.conftest import draw_galaxy

REPO = Path(__file__).resolve().parents[1]
TINY = Config(arch="resnet18", image_size=32, crop_fraction=0.5)


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    kinds = ("elliptical", "spiral")
    return np.stack([np.asarray(draw_galaxy(kinds[i % 2], size, seed=seed + i))
                     for i in range(n)])


def _ood_for(n_features: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = 4
    return {"pca_mean": rng.normal(size=n_features).astype(np.float32),
            "pca_components": rng.normal(size=(k, n_features)).astype(np.float32),
            "class_means": rng.normal(size=(2, k)).astype(np.float32),
            "precision": np.eye(k, dtype=np.float32),
            "scale": np.array([3.0], dtype=np.float32),
            "border_scale": np.array([40.0], dtype=np.float32)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny model folder with an OOD reference and its model.onnx."""
    torch.manual_seed(0)
    meta = {"temperature": 1.3, "logit_bias": [0.2, -0.1], "training": {"split": 0}}
    folder = save_model(tmp_path_factory.mktemp("torch_free") / "tiny",
                        build_model("resnet18").eval(), TINY, meta)
    save_ood(folder, _ood_for(512))
    export_fp32(load_model(folder))
    return folder


def test_numpy_normalisation_is_the_torch_one_bit_for_bit() -> None:
    images = _images(5)
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
    assert np.array_equal(normalise(images, mean, std),
                          to_tensor(images, mean, std, channels_last=False).numpy())


@pytest.mark.parametrize("views", [1, 4, 8])
def test_numpy_runner_answers_as_the_torch_views_of_the_same_network(tiny, views) -> None:
    """The same ONNX network through torch's normalisation and views (computed here as the
    torch path computed them before the numpy runner existed) and through the numpy runner."""
    network = load_onnx_network(tiny / ONNX_FILE)
    images = _images(7)
    x = to_tensor(images, TINY.mean, TINY.std, channels_last=False)
    views_t = [torch.rot90(torch.flip(x, dims=[3]) if flip else x, k, dims=[2, 3])
               for flip in (False, True) for k in range(4)][:views]
    outs = [network(np.ascontiguousarray(v.numpy())) for v in views_t]
    expected = torch.stack([torch.from_numpy(o[0]) for o in outs]).mean(0).numpy()
    ours = run_array_network(network, images, TINY.mean, TINY.std, views=views, batch_size=3,
                             features=True)
    assert np.array_equal(ours.features, outs[0][1])
    if views < 8:
        assert np.array_equal(ours.logits, expected)
    else:  # the mean of 8 is added in another order than torch's
        np.testing.assert_allclose(ours.logits, expected, rtol=0, atol=1e-5)
    through_torch_entry = run_network(network, images, TINY.mean, TINY.std, tta=views > 1,
                                      views=views, batch_size=3, features=True)
    assert np.array_equal(through_torch_entry.logits, ours.logits)


def test_open_model_on_onnx_loads_no_torch_module_and_answers_the_same(tiny) -> None:
    opened = open_model(tiny, "onnx")
    assert opened.model is None and opened.network is not None and opened.backend == "onnx"
    with_module = use_backend(load_model(tiny), "onnx")
    images = _images(6)
    ours, theirs = infer(opened, images, views=8), infer(with_module, images, views=8)
    assert np.array_equal(ours.probabilities, theirs.probabilities)
    assert np.array_equal(ours.ood_scores, theirs.ood_scores)


def test_open_model_auto_without_onnxruntime_loads_torch(tiny, monkeypatch) -> None:
    monkeypatch.setattr(backend, "onnxruntime_available", lambda: False)
    said: list[str] = []
    opened = open_model(tiny, "auto", note=said.append)
    assert opened.backend == "torch" and isinstance(opened.model, torch.nn.Module)
    assert said == ["backend auto: torch (onnxruntime is not installed)"]


def test_the_torch_engine_needs_the_torch_module(tiny) -> None:
    with pytest.raises(GalaxyError, match="needs the torch module"):
        use_backend(read_model_folder(tiny), "torch")


def test_an_ood_reference_of_another_network_is_refused_without_torch(tiny, tmp_path) -> None:
    """The OOD reference is checked against the ONNX network's features when no torch module
    is built to check it against."""
    import shutil

    folder = Path(shutil.copytree(tiny, tmp_path / "other_ood"))
    save_ood(folder, _ood_for(2048))
    with pytest.raises(ModelLoadError, match="512 features"):
        open_model(folder, "onnx")


PROBE = """
import json, runpy, sys
sys.argv = ["galaxy", *sys.argv[1:]]
try:
    runpy.run_module("galaxy_core.cli", run_name="__main__")
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("engine", ["onnx", "auto"])
def test_galaxy_predict_on_an_onnx_engine_never_imports_torch(tiny, tmp_path, engine) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        draw_galaxy("spiral" if i % 2 else "elliptical", 64, seed=i).save(images / f"g{i}.png")
    out = tmp_path / "rows.csv"
    done = subprocess.run([sys.executable, "-c", PROBE, "predict", str(images), "--model",
                           str(tiny), "--backend", engine, "-o", str(out), "--views", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe == {"code": 0, "torch": False}, done.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and all(",spiral," in line or ",elliptical," in line
                                   for line in lines[1:])
