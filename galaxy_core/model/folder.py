"""A model folder read without its network: settings, classes, calibration, OOD reference.

``model.safetensors`` (tensors only, no pickle), ``model.json`` (architecture, classes,
preprocessing, calibration, metrics, versions), ``ood.safetensors`` (the out-of-distribution
reference) and ``report_<part>/`` (evaluation reports). Everything but the torch module is read
here, with numpy and JSON only, so a prediction on an ONNX backend never imports torch
(:func:`galaxy_core.predict.backend.open_model`); :func:`galaxy_core.model.store.load_model`
adds the torch module. Reading is JSON and raw tensors: a model folder can never run code on
the user's machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from galaxy_core.config import CLASSES, Config
from galaxy_core.errors import ModelLoadError
from galaxy_core.io_utils import read_json
from galaxy_core.model.meta_schema import MAX_META_BYTES, check_meta
from galaxy_core.model.ood import load_ood

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 1
REPORT_PREFIX = "report_"
PICKLE_SUFFIXES = {".pth", ".pt", ".pkl", ".ckpt"}


def report_dir(folder: Path, part: str) -> Path:
    """Where a model folder keeps its evaluation report on one part (``val`` or ``test``)."""
    return Path(folder) / f"{REPORT_PREFIX}{part}"


@dataclass
class ModelInfo:
    """Everything needed to feed a model correctly and read its answers, but the network."""

    config: Config
    meta: dict[str, Any]
    path: Path
    classes: tuple[str, ...] = CLASSES
    temperature: float = 1.0
    logit_bias: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASSES)))
    """Added to the logits before the temperature: undoes class-weighted training."""
    ood: dict[str, np.ndarray] | None = None
    """The out-of-distribution reference (``ood.safetensors``); None when the folder has none.
    Its size is checked against the network's features when a network is opened."""


def info_fields(info: ModelInfo) -> dict[str, Any]:
    """``info``'s :class:`ModelInfo` fields, to build a model of another kind from it."""
    return {f.name: getattr(info, f.name) for f in fields(ModelInfo)}


def read_model_folder(folder: str | Path) -> ModelInfo:
    """Read and check a model folder's settings, calibration and OOD reference (not its
    weights: only that the file is there)."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix in PICKLE_SUFFIXES:
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
    classes = tuple(meta.get("classes", CLASSES))
    bias = np.asarray(meta.get("logit_bias", [0.0] * len(classes)), dtype=float)
    return ModelInfo(config=Config.from_dict(meta.get("config", {})), meta=meta, path=folder,
                     classes=classes, temperature=float(meta.get("temperature", 1.0)),
                     logit_bias=bias, ood=load_ood(folder))


def _short(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
