"""Check a model folder's ``model.json`` and OOD reference before anything is built from them.

A model folder is untrusted input: it may come from a colleague, a download or an old version.
Every value that decides how much memory is allocated (image size) or what the user is told
(temperature, prior correction, normalisation) is checked for type and range first, so a bad
folder is refused in one line naming the file and the field, never a traceback, a ``nan``
probability or a machine brought down by a 100,000-pixel input.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from galaxy_core.config import ARCHES, CLASSES, Config
from galaxy_core.errors import ModelLoadError
from galaxy_core.model.onnx_network import INT8_FILE, ONNX_FILE

MAX_META_BYTES = 16 * 2**20
"""model.json of a real model is a few hundred kB (its training history included)."""
MAX_DEPTH = 12
IMAGE_SIZE_RANGE = (16, 1024)
TEMPERATURE_RANGE = (1e-3, 1e3)
MAX_ABS_BIAS = 100.0
OOD_KEYS = ("pca_mean", "pca_components", "class_means", "precision", "scale")


def _fail(path: Path, field: str, why: str, value: Any = None) -> ModelLoadError:
    shown = "" if value is None else f", got {_short(value)}"
    return ModelLoadError(f"{path}: field '{field}' {why}{shown}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of JSON data, stopping once ``limit`` is passed."""
    stack, deepest = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _in_range(path: Path, field: str, value: Any, low: float, high: float,
              whole: bool = False) -> None:
    ok = _number(value) and low <= value <= high and (not whole or isinstance(value, int))
    if not ok:
        kind = "a whole number" if whole else "a finite number"
        raise _fail(path, field, f"must be {kind} in [{low:g}, {high:g}]", value)


def _vector(path: Path, field: str, value: Any, length: int, low: float, high: float,
            positive: bool = False) -> None:
    if not isinstance(value, list | tuple) or len(value) != length:
        raise _fail(path, field, f"must be a list of {length} numbers", value)
    for i, v in enumerate(value):
        _in_range(path, f"{field}[{i}]", v, low, high)
        if positive and v <= 0:
            raise _fail(path, f"{field}[{i}]", "must be greater than 0", v)


def _config_types(path: Path, config: dict[str, Any]) -> None:
    """Every known setting has the type of its default (numbers may be int for float)."""
    for f in dataclasses.fields(Config):
        if f.name not in config:
            continue
        value, default = config[f.name], getattr(Config(), f.name)
        field = f"config.{f.name}"
        if default is None or f.name == "weights":
            ok = value is None or isinstance(value, str)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = _number(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, tuple):
            ok = isinstance(value, list | tuple)
        elif isinstance(default, dict):
            ok = isinstance(value, dict)
        else:
            ok = True
        if not ok:
            raise _fail(path, field, f"must be of type {type(default).__name__}", value)


def check_meta(meta: Any, path: Path) -> None:
    """Raise :class:`ModelLoadError` naming the field when ``meta`` (read from ``path``) is not a
    model.json this version can run safely."""
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: must hold a JSON object, not {type(meta).__name__}")
    if _depth(meta, MAX_DEPTH) > MAX_DEPTH:
        raise ModelLoadError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    config = meta.get("config", {})
    if not isinstance(config, dict):
        raise _fail(path, "config", "must be an object", config)
    _config_types(path, config)
    if config.get("arch", Config.arch) not in ARCHES:
        raise _fail(path, "config.arch", f"must be one of {', '.join(ARCHES)}",
                    config.get("arch"))
    _in_range(path, "config.image_size", config.get("image_size", Config.image_size),
              *IMAGE_SIZE_RANGE, whole=True)
    crop = config.get("crop_fraction", Config.crop_fraction)
    if not (_number(crop) and 0 < crop <= 1):
        raise _fail(path, "config.crop_fraction", "must be a number in (0, 1]", crop)
    _in_range(path, "config.crop_radii", config.get("crop_radii", Config.crop_radii), 0, 100)
    _vector(path, "config.mean", config.get("mean", list(Config.mean)), 3, -10, 10)
    _vector(path, "config.std", config.get("std", list(Config.std)), 3, 0, 10, positive=True)
    classes = meta.get("classes", list(CLASSES))
    if not isinstance(classes, list) or sorted(map(str, classes)) != sorted(CLASSES) \
            or not all(isinstance(c, str) for c in classes):
        raise _fail(path, "classes", f"must list the classes {', '.join(CLASSES)}", classes)
    _in_range(path, "temperature", meta.get("temperature", 1.0), *TEMPERATURE_RANGE)
    _vector(path, "logit_bias", meta.get("logit_bias", [0.0] * len(classes)), len(classes),
            -MAX_ABS_BIAS, MAX_ABS_BIAS)
    _check_copies(path, meta, config)
    if "onnx" in meta:
        check_onnx_record(meta["onnx"], path)


COPIES = {"input_size": ("image_size", Config.image_size),
          "crop_fraction": ("crop_fraction", Config.crop_fraction),
          "mean": ("mean", list(Config.mean)), "std": ("std", list(Config.std)),
          "arch": ("arch", Config.arch)}
"""model.json's top-level keys that copy a ``config`` setting, for readers without this
package: the manual's onnxruntime snippet reads ``input_size``, ``mean`` and ``std`` there,
while this package reads ``config``."""


def _check_copies(path: Path, meta: dict[str, Any], config: dict[str, Any]) -> None:
    """Each top-level copy (:data:`COPIES`), when present, must equal its ``config`` setting:
    an edited ``input_size`` would make the snippet feed 224 px pictures to a 96 px model
    while this package used 96, two answers from one folder with nothing to say which."""
    for key, (field, default) in COPIES.items():
        if key not in meta:
            continue  # older files wrote no copies
        copy, setting = meta[key], config.get(field, default)
        if not _same(copy, setting):
            raise _fail(path, key, f"must equal config.{field} ({_short(setting)}), which "
                        "this package uses; the two copies disagree", copy)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, numbers compared as numbers (1 == 1.0, not True)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if _number(a) and _number(b):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return type(a) is type(b) and a == b


def _sha256(path: Path, field: str, value: Any) -> None:
    if not (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value)):
        raise _fail(path, field, "must be a SHA-256 (64 hex digits)", value)


def check_onnx_record(record: Any, path: Path) -> None:
    """The "onnx" block ``galaxy export --onnx`` writes: which weights the ONNX files came from
    and how the int8 file measured against the float32 one. It decides whether ``--backend
    auto`` trusts ``model.int8.onnx``, so its file name is fixed (never a path elsewhere), its
    hash well formed and its verdict a boolean."""
    if not isinstance(record, dict):
        raise _fail(path, "onnx", "must be an object", record)
    _sha256(path, "onnx.weights_sha256", record.get("weights_sha256"))
    fp32 = record.get("fp32")
    if fp32 is not None:
        if not isinstance(fp32, dict) or fp32.get("file") != ONNX_FILE:
            raise _fail(path, "onnx.fp32", f"must be an object with file {ONNX_FILE!r}", fp32)
        _sha256(path, "onnx.fp32.sha256", fp32.get("sha256"))
        _sha256(path, "onnx.fp32.weights_sha256", fp32.get("weights_sha256"))
    int8 = record.get("int8")
    if int8 is None:
        return
    if not isinstance(int8, dict):
        raise _fail(path, "onnx.int8", "must be an object", int8)
    if int8.get("file") != INT8_FILE:
        raise _fail(path, "onnx.int8.file", f"must be {INT8_FILE!r}", int8.get("file"))
    if not isinstance(int8.get("kept"), bool):
        raise _fail(path, "onnx.int8.kept", "must be true or false", int8.get("kept"))
    _sha256(path, "onnx.int8.sha256", int8.get("sha256"))
    gate = int8.get("gate")
    if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        raise _fail(path, "onnx.int8.gate", "must be an object with 'passed' true or false",
                    gate)
    if int8["kept"] and not gate["passed"]:
        raise _fail(path, "onnx.int8.kept", "cannot be true when the gate did not pass")
    for name in ("fp32", "int8"):
        scores = gate.get(name)
        if not isinstance(scores, dict):
            raise _fail(path, f"onnx.int8.gate.{name}", "must be an object", scores)
        for key in ("accuracy", "macro_f1"):
            _in_range(path, f"onnx.int8.gate.{name}.{key}", scores.get(key), 0, 1)


def check_ood(state: dict[str, np.ndarray], n_features: int, path: Path) -> None:
    """Raise :class:`ModelLoadError` unless the OOD reference fits a network whose penultimate
    layer has ``n_features`` values and holds only finite numbers."""
    missing = [k for k in OOD_KEYS if k not in state]
    if missing:
        raise ModelLoadError(f"{path}: lacks {', '.join(missing)}")
    mean, components = state["pca_mean"], state["pca_components"]
    centres, precision = state["class_means"], state["precision"]
    k = components.shape[0] if components.ndim == 2 else -1
    shapes_ok = (mean.shape == (n_features,) and components.shape == (k, n_features)
                 and centres.ndim == 2 and centres.shape[1] == k and len(centres) >= 1
                 and precision.shape == (k, k) and state["scale"].shape == (1,))
    if not shapes_ok:
        raise ModelLoadError(f"{path}: array shapes do not fit this network's {n_features} "
                             "features (written for another model?)")
    for name, array in state.items():
        if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
            raise ModelLoadError(f"{path}: '{name}' must hold finite floating-point numbers")
    for name in ("scale", "border_scale"):
        if name in state and (state[name].shape != (1,) or float(state[name][0]) <= 0):
            raise ModelLoadError(f"{path}: '{name}' must be one number greater than 0")
