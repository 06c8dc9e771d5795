"""The model folder format: safetensors + JSON round-trip, and refusal of unsafe or broken files."""

from __future__ import annotations

import pickle

import pytest
import torch

from galaxy_core.config import Config
from galaxy_core.errors import GalaxyError, ModelLoadError
from galaxy_core.model.build import build_model
from galaxy_core.model.store import load_model, save_model
from galaxy_core.model.weights import read_state_dict


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("resnet18"), Config(arch="resnet18", image_size=32)


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, atol: float) -> bool:
    x = torch.randn(2, 3, 32, 32)
    a.eval(), b.eval()
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=atol)


@pytest.mark.parametrize("half,atol", [(False, 1e-5), (True, 5e-2)])
def test_round_trip(tmp_path, tiny, half, atol):
    model, config = tiny
    save_model(tmp_path, model, config, {"temperature": 1.7, "logit_bias": [0.1, -0.1]}, half=half)
    loaded = load_model(tmp_path)
    assert loaded.temperature == pytest.approx(1.7)
    assert loaded.config.image_size == 32 and loaded.config.arch == "resnet18"
    assert loaded.meta["weights_dtype"] == ("float16" if half else "float32")
    assert "torch" in loaded.meta["versions"]
    assert _same_outputs(model, loaded.model, atol)
    assert not list(tmp_path.glob("*.tmp"))


def test_pickles_are_refused_unless_allowed(tmp_path, tiny):
    model, _ = tiny
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelLoadError, match="pickle"):
        read_state_dict(path)
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(path)
    assert set(read_state_dict(path, allow_pickle=True)) == set(model.state_dict())


def test_malicious_pickle_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ModelLoadError):
        read_state_dict(path, allow_pickle=True)
    assert not (tmp_path / "pwned").exists()


def test_broken_model_folders(tmp_path, tiny):
    model, config = tiny
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_model(tmp_path)
    save_model(tmp_path, model, config, {})
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(tmp_path)
    save_model(tmp_path, build_model("resnet34"), config, {})  # json says resnet18
    with pytest.raises(ModelLoadError, match="does not match"):
        load_model(tmp_path)


def test_local_weights_and_offline_imagenet(tmp_path, tiny, monkeypatch):
    model, config = tiny
    save_model(tmp_path, model, config, {})
    fresh = build_model("resnet18", str(tmp_path / "model.safetensors"))
    assert torch.equal(fresh.conv1.weight, model.conv1.weight)

    import torchvision

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(GalaxyError, match="internet"):
        build_model("resnet18", "imagenet")
    with pytest.raises(GalaxyError, match="unknown architecture"):
        build_model("vgg11")
