"""Which engine runs a loaded model's network for predictions: torch, ONNX Runtime in float32,
or ONNX Runtime in static int8.

``torch`` gives the numbers of the reports, the model card and the dashboard, bit for bit.
``onnx`` (``model.onnx``) answers the same within float rounding (logits within 1e-3) and is
faster on a CPU; the file is exported on first use and kept beside the weights. ``onnx-int8``
(``model.int8.onnx``) is faster still, and its answers move a little (up to a few hundredths in
probability; accuracy and macro-F1 on the test galaxies within half a point, or the file would
not exist). It is never built on first use: calibrating and gating it needs the prepared
validation and test galaxies and takes minutes (``galaxy export MODEL --onnx``).

``auto`` takes the fastest engine the model folder and the installed packages allow, in that
order: ``onnx-int8`` when its file is there, passed the gate recorded in ``model.json`` and was
made from these weights; else ``onnx`` when onnxruntime is installed (exporting ``model.onnx``
once, about 20 s, when the folder is writable); else ``torch``. Grad-CAM always runs on torch:
``loaded.model`` stays the torch module whatever the engine.

:func:`open_model` opens a model folder on an engine without building the torch module the
ONNX engines do not need: a prediction on ``onnx`` or ``onnx-int8`` then never imports torch
(about two seconds and 400 MB less per process, and per worker and Ray actor). Only exporting a
missing ``model.onnx`` loads the torch module, for the export.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from galaxy_core.errors import GalaxyError, ModelLoadError
from galaxy_core.io_utils import read_json
from galaxy_core.model.folder import (META_FILE, WEIGHTS_FILE, ModelInfo, info_fields,
                                      read_model_folder)
from galaxy_core.model.meta_schema import check_ood
from galaxy_core.model.network import Network
from galaxy_core.model.ood import OOD_FILE, load_ood
from galaxy_core.model.onnx_network import (INT8_FILE, INT8_OOD_FILE, ONNX_FILE, ONNX_KEY,
                                            OnnxNetwork, file_sha256, load_onnx_network,
                                            onnxruntime_available, require_onnxruntime)

if TYPE_CHECKING:
    from torch import nn

    from galaxy_core.model.store import LoadedModel

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
Note = Callable[[str], None]


@dataclass
class BackendModel(ModelInfo):
    """A model whose predictions run on ``network`` (None: on the torch module ``model``).
    :func:`~galaxy_core.model.calibrated.infer` runs ``network``; Grad-CAM needs ``model``,
    which a model opened on an ONNX engine by :func:`open_model` does not load (None)."""

    model: nn.Module | None = field(default=None, kw_only=True)
    network: Network | None = field(default=None, kw_only=True)
    backend: str = field(default="torch", kw_only=True)


def open_model(folder: str | Path, name: str = "torch", note: Note | None = None,
               threads: int = 0) -> BackendModel:
    """The model folder opened for predictions on the engine ``name`` (one of
    :data:`BACKENDS`); the torch module is loaded only for the torch engine (or to export a
    missing ``model.onnx``)."""
    _check_name(name)
    info = read_model_folder(folder)
    name = _chosen(info, name, note or (lambda text: None))
    if name == "torch":
        from galaxy_core.model.store import load_model

        return use_backend(load_model(folder), name, note, threads)
    return use_backend(info, name, note, threads)


def use_backend(loaded: ModelInfo, name: str = "torch", note: Note | None = None,
                threads: int = 0) -> BackendModel:
    """``loaded`` (a :class:`~galaxy_core.model.store.LoadedModel`, or for the ONNX engines
    just its folder's :class:`ModelInfo`) with its predictions running on the engine ``name``
    (one of :data:`BACKENDS`); ``note`` is told what was chosen or built, in one line each."""
    _check_name(name)
    say = note or (lambda text: None)
    module = getattr(loaded, "model", None)
    base = info_fields(loaded)
    name = _chosen(loaded, name, say)
    if name == "torch":
        if module is None:
            raise GalaxyError("the torch backend needs the torch module: load the model with "
                              "galaxy_core.model.store.load_model")
        return BackendModel(**base, model=module, network=None, backend="torch")
    network = _int8(loaded, threads) if name == "onnx-int8" else _fp32(loaded, threads, say)
    reference = OOD_FILE
    if name == "onnx-int8":
        base["ood"] = int8_ood(loaded)
        if base["ood"] is not loaded.ood:
            reference = INT8_OOD_FILE
    if base["ood"] is not None:  # the file named in an error is the one the state came from
        check_ood(base["ood"], network.n_features, loaded.path / reference)
    return BackendModel(**base, model=module, network=network, backend=name)


def int8_ood(loaded: ModelInfo) -> dict | None:
    """The OOD reference the int8 engine scores with: its own
    (:data:`~galaxy_core.model.onnx_network.INT8_OOD_FILE`, fitted on the int8 network's
    features) when ``model.json`` vouches for it, else the float one (a folder exported before
    int8 had its own). A file that is not the one recorded is refused, never used."""
    record = loaded.meta.get(ONNX_KEY, {}).get("int8", {}).get("ood_reference")
    if not record or loaded.ood is None:
        return loaded.ood
    path = loaded.path / INT8_OOD_FILE
    if not path.is_file() or record.get("sha256") != file_sha256(path):
        raise ModelLoadError(f"{path} is not the int8 OOD reference model.json records; run "
                             "galaxy export MODEL --onnx --data PREPARED again")
    return load_ood(loaded.path, INT8_OOD_FILE)


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise GalaxyError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def _chosen(loaded: ModelInfo, name: str, say: Note) -> str:
    """``name``, or for ``auto`` the engine it picks (said in one line)."""
    if name != "auto":
        return name
    name, why = _auto(loaded)
    say(f"backend auto: {name} ({why})")
    return name


def _auto(loaded: ModelInfo) -> tuple[str, str]:
    """The fastest engine available, and why."""
    if not onnxruntime_available():
        return "torch", "onnxruntime is not installed"
    problem = int8_problem(loaded)
    if problem is None:
        return "onnx-int8", f"{INT8_FILE} passed the int8 accuracy gate"
    if (loaded.path / ONNX_FILE).is_file() or os.access(loaded.path, os.W_OK):
        return "onnx", problem
    return "torch", f"{problem}, and {ONNX_FILE} cannot be written in {loaded.path}"


def int8_problem(loaded: ModelInfo) -> str | None:
    """Why ``model.int8.onnx`` cannot be used for ``loaded`` (None: it can): missing, not
    vouched for by ``model.json`` (no gate record, failed, or a different file), or made from
    other weights."""
    path = loaded.path / INT8_FILE
    if not path.is_file():
        return f"no {INT8_FILE} (galaxy export MODEL --onnx --data PREPARED makes one)"
    record = loaded.meta.get(ONNX_KEY, {}).get("int8")
    if not record or not record.get("kept") or not record.get("gate", {}).get("passed"):
        return f"model.json does not record that {INT8_FILE} passed the int8 accuracy gate"
    if record.get("sha256") != file_sha256(path):
        return f"{INT8_FILE} is not the file model.json's int8 gate measured"
    if loaded.meta.get(ONNX_KEY, {}).get("weights_sha256") != file_sha256(loaded.path /
                                                                          WEIGHTS_FILE):
        return f"{INT8_FILE} was made from other weights than {WEIGHTS_FILE}"
    return None


def _int8(loaded: ModelInfo, threads: int) -> OnnxNetwork:
    require_onnxruntime()
    problem = int8_problem(loaded)
    if problem is not None:
        raise ModelLoadError(f"cannot use the int8 backend for {loaded.path}: {problem}")
    network = load_onnx_network(loaded.path / INT8_FILE, threads)
    # int8_problem checked model.json's weights record against the weights file itself
    if network.source_sha256 != loaded.meta[ONNX_KEY]["weights_sha256"]:
        raise ModelLoadError(f"{loaded.path / INT8_FILE} was made from other weights than "
                             f"{WEIGHTS_FILE}; run galaxy export MODEL --onnx --data again")
    return network


def fp32_problem(loaded: ModelInfo) -> str | None:
    """Why ``model.onnx`` cannot be used for ``loaded`` (None: it can): missing, or not the
    file ``model.json`` records as exported from these weights. Checked before the file is
    opened: a forged file stamped with the weights' SHA-256 is never run."""
    path = loaded.path / ONNX_FILE
    if not path.is_file():
        return "missing"
    try:  # as it is now: an export since ``loaded`` was read has recorded its file there
        record = read_json(loaded.path / META_FILE)[ONNX_KEY]["fp32"]
    except (OSError, ValueError, KeyError, TypeError):
        record = {}
    if not isinstance(record, dict) or not record.get("sha256") or record.get("sha256") != file_sha256(path):
        return f"not the file {META_FILE} records"
    if record.get("weights_sha256") != file_sha256(loaded.path / WEIGHTS_FILE):
        return "made from other weights"
    return None


def _fp32(loaded: ModelInfo, threads: int, say: Note) -> OnnxNetwork:
    """``model.onnx``, exported now when it is missing, was made from other weights or is not
    the file ``model.json`` records (which loads the torch module, if ``loaded`` has none, for
    the export)."""
    require_onnxruntime()
    path = loaded.path / ONNX_FILE
    problem = fp32_problem(loaded)
    if problem is None:
        network = load_onnx_network(path, threads)
        if network.matches(loaded.path / WEIGHTS_FILE):
            return network
        problem = "made from other weights"
    if problem == "missing":
        say(f"exporting {path} (once, about 20 s)")
    else:
        say(f"{path} is {problem}: exporting it again")
    from galaxy_core.release.onnx_export import export_fp32

    try:
        export_fp32(_with_module(loaded), path)
    except PermissionError:
        raise GalaxyError(f"cannot write {path}: run galaxy export MODEL --onnx where the "
                          "model folder is writable, or use --backend torch") from None
    return load_onnx_network(path, threads)


def _with_module(loaded: ModelInfo) -> LoadedModel:
    """``loaded`` with its torch module (loaded from its folder when it has none)."""
    from galaxy_core.model.store import LoadedModel, load_model

    module = getattr(loaded, "model", None)
    return load_model(loaded.path) if module is None else LoadedModel(model=module,
                                                                      **info_fields(loaded))


def backend_of(loaded: ModelInfo) -> str:
    """The engine ``loaded`` predicts with."""
    return getattr(loaded, "backend", "torch")

