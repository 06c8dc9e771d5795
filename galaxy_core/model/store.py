"""The model folder format: ``model.safetensors`` (tensors only, no pickle) plus ``model.json``
(architecture, classes, preprocessing, temperature, metrics, versions).

Loading reads JSON and raw tensors, so a model file can never run code on the user's machine.
A ``.pth`` pickle is refused unless the caller explicitly allows it, and even then it is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from galaxy_core import __version__
from galaxy_core.config import CLASSES, Config
from galaxy_core.errors import ModelLoadError
from galaxy_core.io_utils import atomic_write, read_json, write_json

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A ready-to-run network with everything needed to feed it correctly."""

    model: nn.Module
    config: Config
    meta: dict[str, Any]
    path: Path
    classes: tuple[str, ...] = CLASSES
    temperature: float = 1.0
    ood: dict[str, Any] = field(default_factory=dict)


def versions() -> dict[str, str]:
    import torchvision

    return {"galaxy_core": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}


def read_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read tensors from safetensors, or from a pickle only when ``allow_pickle`` is True."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"{path.name} is not a valid safetensors file: {exc}") from None
    if not allow_pickle:
        raise ModelLoadError(
            f"{path.name} is a pickle-based file, which can run code when loaded; refusing it. "
            "Convert it to safetensors, or allow it explicitly (read with weights_only=True).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path.name} could not be read safely (weights_only=True): "
                             f"{type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path.name} does not hold a state dict")
    return state


def save_model(folder: str | Path, model: nn.Module, config: Config, meta: dict[str, Any],
               half: bool = False) -> Path:
    """Write the model folder atomically (weights first, then the JSON that makes it valid)."""
    folder = Path(folder)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda f: f.write(save(state)))
    # The caller's meta first: the keys that describe these weights are always this call's own,
    # so re-saving a loaded model's meta (export to fp16) cannot carry a stale dtype or version.
    record = {**meta, "format_version": FORMAT_VERSION, "arch": config.arch,
              "classes": list(CLASSES), "input_size": config.image_size,
              "crop_fraction": config.crop_fraction, "mean": list(config.mean),
              "std": list(config.std), "weights_dtype": "float16" if half else "float32",
              "config": config.to_dict(), "versions": versions()}
    write_json(folder / META_FILE, record)
    return folder


def load_model(folder: str | Path) -> LoadedModel:
    """Load a model folder for inference (eval mode, float32)."""
    from galaxy_core.model.build import build_model

    folder = Path(folder)
    if folder.is_file() and folder.suffix in {".pth", ".pt", ".pkl", ".ckpt"}:
        raise ModelLoadError(f"{folder.name} is a pickle file; models load only from a folder "
                             f"with {WEIGHTS_FILE} and {META_FILE}")
    if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ModelLoadError(f"{folder} is not a model folder (needs {WEIGHTS_FILE} and "
                             f"{META_FILE}); train one with galaxy train")
    try:
        meta = read_json(folder / META_FILE)
    except ValueError as exc:
        raise ModelLoadError(f"{folder / META_FILE} is not valid JSON: {exc}") from None
    config = Config.from_dict(meta.get("config", {}))
    classes = tuple(meta.get("classes", CLASSES))
    model = build_model(config.arch, None, num_classes=len(classes))
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in read_state_dict(folder / WEIGHTS_FILE).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"{folder / WEIGHTS_FILE} does not match a {config.arch}: "
                             f"{str(exc).splitlines()[0]}") from None
    model.eval()
    return LoadedModel(model=model, config=config, meta=meta, path=folder, classes=classes,
                       temperature=float(meta.get("temperature", 1.0)), ood=meta.get("ood", {}))
