"""Running a network (galaxy_core.model.inference): the 8 views and their inverses, logits and
penultimate features from one pass, and the calibrated probabilities users see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from galaxy_core.config import Config
from galaxy_core.data.tensors import to_tensor
from galaxy_core.model.build import build_model
from galaxy_core.model.calibrated import calibrated_probabilities, infer, softmax
from galaxy_core.model.inference import (DIHEDRAL_VIEWS, apply_view, dihedral_views, run_network,
                                         undo_view)
from galaxy_core.model.ood import ood_scores
from galaxy_core.model.store import LoadedModel
from tests.conftest import draw_galaxy

CFG = Config(arch="resnet18", image_size=32)


def test_the_eight_views_are_the_dihedral_group() -> None:
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    assert DIHEDRAL_VIEWS[0] == (False, 0)
    torch.testing.assert_close(apply_view(x, DIHEDRAL_VIEWS[0]), x)
    seen = {tuple(v.flatten().tolist()) for v in dihedral_views(x)}
    assert len(DIHEDRAL_VIEWS) == len(seen) == 8
    # every view is a rearrangement of the same pixels, per image and channel
    for view in dihedral_views(x):
        assert torch.equal(view.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)


@pytest.mark.parametrize("view", DIHEDRAL_VIEWS)
def test_undo_view_puts_a_map_computed_on_a_view_back_in_place(view) -> None:
    """A per-pixel map computed on a view, once undone, lines up with the original image."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 3, 7, 7)).astype(np.float32)  # no symmetry to hide a mistake
    seen = apply_view(torch.from_numpy(image), view)[0].numpy()

    def saliency(pixels: np.ndarray) -> np.ndarray:  # any map that follows the pixels
        return (pixels**2).sum(0) + pixels[0]

    back = undo_view(saliency(seen), view)
    np.testing.assert_allclose(back, saliency(image[0]), rtol=1e-6)
    # a single bright spot off the diagonals comes back to where it was
    spot = np.zeros((1, 1, 7, 7), np.float32)
    spot[0, 0, 1, 4] = 1.0
    seen_spot = apply_view(torch.from_numpy(spot), view)[0, 0].numpy()
    assert np.unravel_index(undo_view(seen_spot, view).argmax(), (7, 7)) == (1, 4)


def _images(n: int, size: int = 32) -> np.ndarray:
    kinds = ("elliptical", "spiral")
    return np.stack([np.asarray(draw_galaxy(kinds[i % 2], size, seed=i)) for i in range(n)])


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18").eval()


def _penultimate(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    body = torch.nn.Sequential(*list(model.children())[:-1])
    return torch.flatten(body(x), 1)


def test_run_network_features_come_from_the_same_pass(network) -> None:
    """With rotation averaging on, the features are those of the image as given: the same as a
    separate one-view pass, and the model's own penultimate layer; the logits are the mean over
    the 8 views."""
    images = _images(5)
    averaged = run_network(network, images, CFG.mean, CFG.std, tta=True, batch_size=2,
                           features=True)
    plain = run_network(network, images, CFG.mean, CFG.std, tta=False, batch_size=2,
                        features=True)
    assert averaged.features.shape == plain.features.shape == (5, 512)
    np.testing.assert_array_equal(averaged.features, plain.features)
    assert not np.allclose(averaged.logits, plain.logits, atol=1e-4)  # the views did differ

    x = to_tensor(images, CFG.mean, CFG.std, channels_last=False)
    with torch.inference_mode():
        np.testing.assert_allclose(plain.features, _penultimate(network, x).numpy(),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(plain.logits, network(x).numpy(), rtol=1e-4, atol=1e-5)
        mean_logits = torch.stack([network(v.contiguous()) for v in dihedral_views(x)]).mean(0)
    np.testing.assert_allclose(averaged.logits, mean_logits.numpy(), rtol=1e-4, atol=1e-5)
    assert run_network(network, images, CFG.mean, CFG.std, tta=False).features is None


@pytest.mark.parametrize("views", [1, 4, 8])
def test_views_average_the_first_n_dihedral_views(network, views) -> None:
    images = _images(3)
    out = run_network(network, images, CFG.mean, CFG.std, tta=True, views=views, features=True)
    x = to_tensor(images, CFG.mean, CFG.std, channels_last=False)
    with torch.inference_mode():
        expected = torch.stack([network(v.contiguous())
                                for v in dihedral_views(x, views)]).mean(0)
        np.testing.assert_allclose(out.logits, expected.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.features, _penultimate(network, x).numpy(),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="views"):
        run_network(network, images, CFG.mean, CFG.std, views=3)


def test_run_network_on_no_images(network) -> None:
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    out = run_network(network, empty, CFG.mean, CFG.std, features=True)
    assert out.logits.shape == (0, 2) and out.features.shape == (0, 512)


def test_prior_correction_is_added_before_the_temperature() -> None:
    logits = np.array([[2.0, -1.0], [0.5, 0.7]])
    bias = np.array([0.3, -0.4])
    p = calibrated_probabilities(logits, bias, 2.0)
    np.testing.assert_allclose(p, softmax(logits + bias, 2.0))
    assert not np.allclose(p, softmax(logits / 2.0 + bias))  # not after it
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_infer_gives_calibrated_probabilities_and_same_pass_ood_scores(network,
                                                                       tmp_path: Path) -> None:
    images = _images(4)
    bias = np.array([0.2, -0.2])
    loaded = LoadedModel(model=network, config=CFG.replace(tta=True), meta={}, path=tmp_path,
                         temperature=1.7, logit_bias=bias)
    result = infer(loaded, images, batch_size=3)
    assert result.ood_scores is None  # a folder without an OOD reference
    logits = run_network(network, images, CFG.mean, CFG.std, tta=True).logits
    np.testing.assert_allclose(result.probabilities, softmax(logits + bias, 1.7), rtol=1e-5)

    rng = np.random.default_rng(0)
    loaded.ood = {"pca_mean": np.zeros(512, np.float32),
                  "pca_components": rng.normal(size=(4, 512)).astype(np.float32),
                  "class_means": rng.normal(size=(2, 4)).astype(np.float32),
                  "precision": np.eye(4, dtype=np.float32), "scale": np.array([3.0], np.float32),
                  "border_scale": np.array([40.0], np.float32)}
    scored = infer(loaded, images, batch_size=3)
    features = run_network(network, images, CFG.mean, CFG.std, tta=False,
                           features=True).features
    np.testing.assert_allclose(scored.ood_scores, ood_scores(features, loaded.ood, images),
                               rtol=1e-4)
    np.testing.assert_allclose(scored.probabilities, result.probabilities)
