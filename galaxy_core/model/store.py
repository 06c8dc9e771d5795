"""The model folder: ``model.safetensors`` (tensors only, no pickle), ``model.json``
(architecture, classes, preprocessing, calibration, metrics, versions), ``ood.safetensors`` (the
out-of-distribution reference) and ``report_<part>/`` (evaluation reports).

Loading reads JSON and raw tensors, so a model folder can never run code on the user's machine.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from galaxy_core import __version__
from galaxy_core.config import CLASSES, Config
from galaxy_core.errors import ModelLoadError
from galaxy_core.io_utils import read_json, write_json
from galaxy_core.model.build import build_model, classifier_layer
from galaxy_core.model.meta_schema import MAX_META_BYTES, check_meta, check_ood
from galaxy_core.model.ood import OOD_FILE, load_ood
from galaxy_core.model.weights import read_state_dict, state_of, write_state_dict

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 1
REPORT_PREFIX = "report_"


def report_dir(folder: Path, part: str) -> Path:
    """Where a model folder keeps its evaluation report on one part (``val`` or ``test``)."""
    return Path(folder) / f"{REPORT_PREFIX}{part}"


@dataclass
class LoadedModel:
    """A ready-to-run network with everything needed to feed it correctly."""

    model: nn.Module
    config: Config
    meta: dict[str, Any]
    path: Path
    classes: tuple[str, ...] = CLASSES
    temperature: float = 1.0
    logit_bias: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASSES)))
    """Added to the logits before the temperature: undoes class-weighted training."""
    ood: dict[str, np.ndarray] | None = None
    """The out-of-distribution reference (``ood.safetensors``); None when the folder has none."""


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


def load_model(folder: str | Path) -> LoadedModel:
    """Load a model folder for inference (eval mode, float32)."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix in {".pth", ".pt", ".pkl", ".ckpt"}:
        raise ModelLoadError(f"{folder.name} is a pickle file; models load only from a folder "
                             f"with {WEIGHTS_FILE} and {META_FILE}")
    if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ModelLoadError(f"{folder} is not a model folder (needs {WEIGHTS_FILE} and "
                             f"{META_FILE}); train one with galaxy train")
    meta_path = folder / META_FILE
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise ModelLoadError(f"{meta_path} is larger than {MAX_META_BYTES // 2**20} MiB; "
                             "a model.json is a few hundred kB")
    try:
        meta = read_json(meta_path)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else _short(exc)
        raise ModelLoadError(f"{meta_path} is not valid JSON: {reason}") from None
    except OSError as exc:
        raise ModelLoadError(f"{meta_path} cannot be read: {exc.strerror}") from None
    check_meta(meta, meta_path)
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
    ood = load_ood(folder)
    if ood is not None:
        check_ood(ood, classifier_layer(model).in_features, folder / OOD_FILE)
    bias = np.asarray(meta.get("logit_bias", [0.0] * len(classes)), dtype=float)
    return LoadedModel(model=model, config=config, meta=meta, path=folder, classes=classes,
                       temperature=float(meta.get("temperature", 1.0)), logit_bias=bias,
                       ood=ood)


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
