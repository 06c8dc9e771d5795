"""Build the classifier network: a torchvision ResNet with a two-class head.

Weights: ``None`` trains from scratch (the default here, where nothing can be downloaded),
``"imagenet"`` asks torchvision for its ImageNet weights (online users only; offline this fails
with a clear message), and a path loads a local state dict (safetensors, or a ``.pth`` read with
``weights_only=True``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from galaxy_core.config import CLASSES
from galaxy_core.errors import GalaxyError, ModelLoadError

ARCHES = ("resnet18", "resnet34", "resnet50")
IMAGENET_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                    "resnet50": "ResNet50_Weights"}


def build_model(arch: str = "resnet50", weights: str | None = None,
                num_classes: int = len(CLASSES)) -> nn.Module:
    """A ResNet whose final layer predicts ``num_classes`` logits."""
    if arch not in ARCHES:
        raise GalaxyError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
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
    from galaxy_core.model.store import read_state_dict

    state = read_state_dict(path, allow_pickle=path.suffix in {".pth", ".pt"})
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.startswith("fc.")]:
        raise ModelLoadError(f"{path} does not match {type(model).__name__}: "
                             f"{len(missing)} missing and {len(unexpected)} unexpected tensors")


def feature_layer(model: nn.Module) -> nn.Module:
    """The last convolutional block: where Grad-CAM looks."""
    return model.layer4[-1]


def set_threads(threads: int = 0) -> None:
    """Use all cores for intra-op work unless told otherwise."""
    import os

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
