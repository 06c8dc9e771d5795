"""A model folder loaded with its torch module, and written from one.

What the folder holds and how it is read without torch is :mod:`galaxy_core.model.folder`;
here the network is built from ``model.safetensors`` (tensors only, no pickle), so loading can
never run code on the user's machine.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from galaxy_core import __version__
from galaxy_core.config import CLASSES, Config
from galaxy_core.errors import ModelLoadError
from galaxy_core.io_utils import write_json
from galaxy_core.model.build import build_model, classifier_layer
from galaxy_core.model.folder import (FORMAT_VERSION, META_FILE, WEIGHTS_FILE, ModelInfo,
                                      info_fields, read_model_folder, report_dir)
from galaxy_core.model.meta_schema import check_ood
from galaxy_core.model.ood import OOD_FILE
from galaxy_core.model.weights import read_state_dict, state_of, write_state_dict

__all__ = ["FORMAT_VERSION", "META_FILE", "WEIGHTS_FILE", "LoadedModel", "load_model",
           "report_dir", "save_model", "versions"]


@dataclass
class LoadedModel(ModelInfo):
    """A ready-to-run torch network with everything needed to feed it correctly."""

    model: nn.Module = field(kw_only=True)


def versions() -> dict[str, str]:
    import torchvision

    return {"galaxy_core": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}


def save_model(folder: str | Path, model: nn.Module, config: Config, meta: dict[str, Any],
               half: bool = False) -> Path:
    """Write the model folder atomically (weights first, then the JSON that makes it valid)."""
    folder = Path(folder)
    write_state_dict(folder / WEIGHTS_FILE, state_of(model, half=half))
    # The caller's meta first: the keys that describe these weights are always this call's own,
    # so re-saving a loaded model's meta (export to fp16) cannot carry a stale dtype or version.
    record = {**meta, "format_version": FORMAT_VERSION, "arch": config.arch,
              "classes": list(CLASSES), "input_size": config.image_size,
              "crop_fraction": config.crop_fraction, "mean": list(config.mean),
              "std": list(config.std), "weights_dtype": "float16" if half else "float32",
              "config": config.to_dict(), "versions": versions()}
    write_json(folder / META_FILE, record)
    return folder


def init_from_model(model: nn.Module, folder: str | Path, arch: str) -> ModelInfo:
    """Copy a trained model folder's weights, head included, into ``model`` (a fresh ``arch``):
    the warm start of fine-tuning. A folder of another architecture or other classes is one
    clear error before anything is copied, never a half-loaded network."""
    info = read_model_folder(folder)
    if info.config.arch != arch:
        raise ModelLoadError(f"{info.path} holds a {info.config.arch}, and this run trains a "
                             f"{arch}: start from a {arch} model, or train with --arch "
                             f"{info.config.arch}")
    if tuple(info.classes) != tuple(CLASSES):
        raise ModelLoadError(f"{info.path} classifies {', '.join(info.classes)}; this run "
                             f"trains {', '.join(CLASSES)}")
    _load_weights(model, info)
    return info


def _load_weights(model: nn.Module, info: ModelInfo) -> None:
    """The folder's weights, widened to float32, into ``model``; a mismatch is one line."""
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in read_state_dict(info.path / WEIGHTS_FILE).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{info.path / WEIGHTS_FILE} does not match a {info.config.arch}: "
                             f"{str(exc).splitlines()[0]}") from None


def load_model(folder: str | Path) -> LoadedModel:
    """Load a model folder for inference (eval mode, float32)."""
    info = read_model_folder(folder)
    model = build_model(info.config.arch, None, num_classes=len(info.classes))
    _load_weights(model, info)
    model.eval()
    if info.ood is not None:
        check_ood(info.ood, classifier_layer(model).in_features, info.path / OOD_FILE)
    return LoadedModel(model=model, **info_fields(info))
