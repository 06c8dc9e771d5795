"""Class-activation maps point at the galaxy: a small network is trained here to tell a bright
blob from empty sky, and its map for "blob" must peak on the blob wherever the blob sits.

A randomly initialised network has an arbitrary peak, and a map whose views were turned back the
wrong way (or not at all) is spread over the 8 rotations and reflections of the blob's position;
both fail the check below, which compares the map on the blob with the map at the point opposite
it through the image centre. The check runs on the default map (a block finer than the last one)
and on the last block's Grad-CAM; one test shows it failing for views not turned back.

The tests that train (the ``blob_finder`` fixture, about a minute) are marked slow; the map's
grid, its cheaper backward pass and the argument checks are not.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from galaxy_core.config import Config
from galaxy_core.data.tensors import to_tensor
from galaxy_core.errors import GalaxyError
from galaxy_core.explain import gradcam as gradcam_module
from galaxy_core.explain.gradcam import (DEFAULT_LAYER, DEFAULT_METHOD, METHODS, gradcam,
                                         gradcam_many, map_grid, map_grid_text, overlay)
from galaxy_core.model.build import CAM_LAYERS, build_model, cam_layer
from galaxy_core.model.store import LoadedModel
from tests.conftest import draw_galaxy

slow = pytest.mark.slow

SIZE = 64
"""Pixels a side: resnet18's last block sees a 2 x 2 grid at this size (layer3 4 x 4, layer2
8 x 8), enough to tell the quadrants apart, and training takes seconds, not minutes."""
BLOB = 1
"""The class index of "a blob somewhere"; 0 is empty sky."""
POSITIONS = [(16.0, 16.0), (48.0, 19.2), (19.2, 48.0), (44.8, 44.8), (12.8, 35.2), (51.2, 32.0)]
"""Blob centres (x, y) in pixels, all off-centre."""
SEED = 0


def blob_image(x: float, y: float, seed: int, amp: float = 180.0) -> np.ndarray:
    return np.array(draw_galaxy("gaussian", SIZE, seed=seed, centre=(x, y), radius=3.0,
                                amp=amp))


@pytest.fixture(scope="module")
def blob_finder(tmp_path_factory) -> LoadedModel:
    """resnet18 trained for two epochs on 256 images: half a blob somewhere, half empty sky."""
    rng = np.random.default_rng(SEED)
    n = 256
    images, labels = [], []
    for i in range(n):
        x, y = rng.uniform(0.15 * SIZE, 0.85 * SIZE, 2)
        label = i % 2
        images.append(blob_image(x, y, seed=i, amp=rng.uniform(120, 220) if label else 0.0))
        labels.append(label)
    config = Config(arch="resnet18", image_size=SIZE, channels_last=False)
    x_all = to_tensor(np.stack(images), config.mean, config.std, channels_last=False)
    y_all = torch.tensor(labels)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    model = build_model("resnet18")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(2):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, 32):
            idx = order[start:start + 32]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # Sixteen steps leave BatchNorm's running averages mostly at their initial values, and the
    # network would be wrong in eval mode; measure them once over the training images instead.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    with torch.no_grad():
        for start in range(0, n, 64):
            model(x_all[start:start + 64])
    model.eval()
    return LoadedModel(model=model, config=config, meta={},
                       path=tmp_path_factory.mktemp("blob_finder"))


def _probability_of_blob(loaded: LoadedModel, image: np.ndarray) -> float:
    x = to_tensor(image[None], loaded.config.mean, loaded.config.std, channels_last=False)
    with torch.inference_mode():
        return float(F.softmax(loaded.model(x), 1)[0, BLOB])


def _points_at(cam: np.ndarray, x: float, y: float) -> tuple[bool, str]:
    """Is the map high on the blob at (x, y) and clearly lower at the opposite point?"""
    on = float(cam[int(y), int(x)])
    opposite = float(cam[int(SIZE - y), int(SIZE - x)])
    top = np.argwhere(cam >= 0.9 * cam.max()) + 0.5  # (row, col) centres of the peak region
    peak_y, peak_x = top.mean(0)
    nearer = np.hypot(peak_x - x, peak_y - y) < np.hypot(peak_x - (SIZE - x), peak_y - (SIZE - y))
    ok = on >= 0.75 and opposite <= on - 0.3 and nearer
    return ok, (f"blob at ({x}, {y}): map {on:.2f} there, {opposite:.2f} opposite, peak region "
                f"centred at ({peak_x:.1f}, {peak_y:.1f})")


@slow
def test_the_network_learned_the_task(blob_finder) -> None:
    for i, (x, y) in enumerate(POSITIONS):
        assert _probability_of_blob(blob_finder, blob_image(x, y, seed=900 + i)) > 0.9
        assert _probability_of_blob(blob_finder, blob_image(x, y, seed=900 + i, amp=0.0)) < 0.1


@slow
@pytest.mark.parametrize("layer, method", [(DEFAULT_LAYER, DEFAULT_METHOD),
                                           ("layer4", "gradcam")])
def test_gradcam_peaks_on_the_blob(blob_finder, layer, method) -> None:
    """The map users see, averaged over the 8 views, peaks on the blob wherever it is: the
    default map, and the last block's Grad-CAM it replaced. (A single view's map of this small
    network is not checked: its blocks sample the image a little off-centre, stride-2 layers on
    even sizes, and lean towards one corner; turning the 8 views back and averaging them
    cancels that.)"""
    for i, (x, y) in enumerate(POSITIONS):
        image = blob_image(x, y, seed=900 + i)
        cam = gradcam(blob_finder, image, target=BLOB, layer=layer, method=method)
        assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
        assert cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        ok, detail = _points_at(cam, x, y)
        assert ok, detail


@slow
def test_gradcam_defaults_to_the_predicted_class_and_overlays(blob_finder) -> None:
    image = blob_image(*POSITIONS[0], seed=900)
    np.testing.assert_allclose(gradcam(blob_finder, image), gradcam(blob_finder, image, BLOB))
    blended = overlay(image, gradcam(blob_finder, image))
    assert blended.shape == image.shape and blended.dtype == np.uint8


@slow
def test_the_check_fails_when_views_are_not_turned_back(blob_finder, monkeypatch) -> None:
    """The same check on a map whose views are averaged without undoing them: the blob is
    smeared over its 8 rotations and reflections, so the check fails wherever the single
    views' lean towards one corner does not happen to favour the blob's side (at least half of
    the positions, the top-left one among them): test_gradcam_peaks_on_the_blob would fail."""
    monkeypatch.setattr(gradcam_module, "undo_view", lambda image, view: image)
    failures = []
    for i, (x, y) in enumerate(POSITIONS):
        ok, _ = _points_at(gradcam(blob_finder, blob_image(x, y, seed=900 + i), BLOB), x, y)
        if not ok:
            failures.append((x, y))
    assert POSITIONS[0] in failures and len(failures) >= len(POSITIONS) // 2, failures


def _untrained(arch: str, size: int) -> LoadedModel:
    torch.manual_seed(SEED)
    return LoadedModel(model=build_model(arch).eval(),
                       config=Config(arch=arch, image_size=size, channels_last=False), meta={},
                       path=Path("untrained"))


def test_the_default_map_of_resnet50_at_96_px_is_finer_than_3x3() -> None:
    """The shipped model's size: its last block is 3 x 3 (every map a centred diamond), the
    default map's grid is finer, and the grid said on screen is the block's real output size."""
    loaded = _untrained("resnet50", 96)
    assert map_grid(loaded, "layer4") == (3, 3)
    rows, cols = map_grid(loaded)
    assert rows > 3 and cols > 3
    assert map_grid_text(loaded) == f"{rows} x {cols} cells of {96 // cols} px"
    caught = {}
    hooks = [cam_layer(loaded.model, name).register_forward_hook(
        lambda module, args, out, name=name: caught.__setitem__(name, out.shape[-2:]))
        for name in CAM_LAYERS]
    with torch.inference_mode():
        loaded.model(torch.zeros(1, 3, 96, 96))
    for hook in hooks:
        hook.remove()
    assert {name: tuple(shape) for name, shape in caught.items()} == \
        {name: map_grid(loaded, name) for name in CAM_LAYERS}


@pytest.mark.parametrize("layer", list(CAM_LAYERS))
def test_backpropagating_from_the_block_changes_no_map(layer, monkeypatch) -> None:
    """The backward pass stops at the map's block (the cheap route); the map is the one a full
    backward pass gives, and the weights need gradients again afterwards."""
    loaded = _untrained("resnet18", SIZE)
    image = blob_image(20.0, 40.0, seed=5)
    fast = gradcam(loaded, image, target=1, layer=layer)
    assert all(p.requires_grad for p in loaded.model.parameters())
    monkeypatch.setattr(gradcam_module, "_gradients_from",
                        lambda model, block: contextlib.nullcontext())
    np.testing.assert_allclose(fast, gradcam(loaded, image, target=1, layer=layer), atol=1e-5)


def test_unknown_layer_or_method_is_refused() -> None:
    loaded = _untrained("resnet18", SIZE)
    image = blob_image(20.0, 40.0, seed=5)
    with pytest.raises(GalaxyError, match="layer"):
        gradcam(loaded, image, layer="layer9")
    with pytest.raises(GalaxyError, match="method"):
        gradcam(loaded, image, method="nonsense")
    with pytest.raises(GalaxyError, match="layer"):
        map_grid(loaded, "conv1")
    assert DEFAULT_METHOD in METHODS and DEFAULT_LAYER in CAM_LAYERS


def test_maps_made_together_equal_maps_made_one_by_one(blob_finder) -> None:
    """A shared pass (the Failures page, concurrent sessions) gives each image the map it gets
    alone: maps are scaled per image and the network is in eval mode."""
    images = np.stack([blob_image(30, 64, seed=1), blob_image(70, 40, seed=2),
                       blob_image(48, 48, seed=3)])
    targets = [1, 0, None]
    together = gradcam_many(blob_finder, images, targets)
    alone = [gradcam(blob_finder, image, target=t) for image, t in zip(images, targets)]
    assert len(together) == 3
    for a, b in zip(together, alone):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)
    assert not np.allclose(together[0], together[1], atol=0.05), "the maps differ per image"
    assert gradcam_many(blob_finder, images[:0], []) == []
    with pytest.raises(ValueError):
        gradcam_many(blob_finder, images, [1])
