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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields

from galaxy_core.errors import GalaxyError, ModelLoadError
from galaxy_core.model.inference import Network
from galaxy_core.model.onnx_network import (INT8_FILE, ONNX_FILE, OnnxNetwork, file_sha256,
                                            load_onnx_network, onnxruntime_available,
                                            require_onnxruntime)
from galaxy_core.model.store import WEIGHTS_FILE, LoadedModel
from galaxy_core.release.onnx_export import ONNX_KEY, export_fp32

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
Note = Callable[[str], None]


@dataclass
class BackendModel(LoadedModel):
    """A :class:`LoadedModel` whose predictions run on ``network`` (None: the torch module).
    :func:`~galaxy_core.model.inference.infer` runs ``network``; Grad-CAM keeps ``model``."""

    network: Network | None = None
    backend: str = "torch"


def use_backend(loaded: LoadedModel, name: str = "torch", note: Note | None = None,
                threads: int = 0) -> BackendModel:
    """``loaded`` with its predictions running on the engine ``name`` (one of
    :data:`BACKENDS`); ``note`` is told what was chosen or built, in one line each."""
    if name not in BACKENDS:
        raise GalaxyError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    say = note or (lambda text: None)
    base = {f.name: getattr(loaded, f.name) for f in fields(LoadedModel)}
    if name == "auto":
        name, why = _auto(loaded)
        say(f"backend auto: {name} ({why})")
    if name == "torch":
        return BackendModel(**base, network=None, backend="torch")
    network = _int8(loaded, threads) if name == "onnx-int8" else _fp32(loaded, threads, say)
    return BackendModel(**base, network=network, backend=name)


def _auto(loaded: LoadedModel) -> tuple[str, str]:
    """The fastest engine available, and why."""
    if not onnxruntime_available():
        return "torch", "onnxruntime is not installed"
    problem = int8_problem(loaded)
    if problem is None:
        return "onnx-int8", f"{INT8_FILE} passed the int8 accuracy gate"
    if (loaded.path / ONNX_FILE).is_file() or os.access(loaded.path, os.W_OK):
        return "onnx", problem
    return "torch", f"{problem}, and {ONNX_FILE} cannot be written in {loaded.path}"


def int8_problem(loaded: LoadedModel) -> str | None:
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


def _int8(loaded: LoadedModel, threads: int) -> OnnxNetwork:
    require_onnxruntime()
    problem = int8_problem(loaded)
    if problem is not None:
        raise ModelLoadError(f"cannot use the int8 backend for {loaded.path}: {problem}")
    network = load_onnx_network(loaded.path / INT8_FILE, threads)
    if not network.matches(loaded.path / WEIGHTS_FILE):
        raise ModelLoadError(f"{loaded.path / INT8_FILE} was made from other weights than "
                             f"{WEIGHTS_FILE}; run galaxy export MODEL --onnx --data again")
    return network


def _fp32(loaded: LoadedModel, threads: int, say: Note) -> OnnxNetwork:
    """``model.onnx``, exported now when it is missing or was made from other weights."""
    require_onnxruntime()
    path = loaded.path / ONNX_FILE
    if path.is_file():
        network = load_onnx_network(path, threads)
        if network.matches(loaded.path / WEIGHTS_FILE):
            return network
        say(f"{path} was made from other weights: exporting it again")
    else:
        say(f"exporting {path} (once, about 20 s)")
    try:
        export_fp32(loaded, path)
    except PermissionError:
        raise GalaxyError(f"cannot write {path}: run galaxy export MODEL --onnx where the "
                          "model folder is writable, or use --backend torch") from None
    return load_onnx_network(path, threads)


def backend_of(loaded: LoadedModel) -> str:
    """The engine ``loaded`` predicts with."""
    return getattr(loaded, "backend", "torch")

