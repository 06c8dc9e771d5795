"""A model folder's network run by ONNX Runtime instead of torch: ``model.onnx`` (float32) or
``model.int8.onnx`` (static int8), each giving the logits and the penultimate features.

The files are written by :mod:`galaxy_core.release.onnx_export`; here they are only read. A
:class:`OnnxNetwork` is a :class:`~galaxy_core.model.network.Network`, so it runs through the
same views, averaging and calibration as the torch module, and the OOD score gets its features
from the same pass. onnxruntime is an optional dependency (``pip install '.[onnx]'``): nothing
imports it until an ONNX file is opened.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from galaxy_core.errors import GalaxyError, ModelLoadError

ONNX_FILE = "model.onnx"
"""The float32 network, exported from ``model.safetensors``: a full-size copy, never committed."""
INT8_FILE = "model.int8.onnx"
"""The static int8 network; kept only when it passed the accuracy gate (``model.json`` "onnx")."""
INT8_OOD_FILE = "ood.int8.safetensors"
"""The OOD reference fitted on the int8 network's own features: int8 moves the penultimate
features enough (median distance 1.8 times the float one's on the shipped model) that the
float reference flagged 7.8 % of SDSS test galaxies instead of 2.3 %."""
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "features")
SOURCE_KEY = "galaxy_weights_sha256"
"""ONNX metadata: the SHA-256 of the ``model.safetensors`` the file was exported from, so a file
left over from other weights is recognised as stale instead of silently answering for them."""
INSTALL_HINT = "pip install '.[onnx]' (onnxruntime)"
ONNX_KEY = "onnx"
"""The ``model.json`` key recording the ONNX files: the weights they came from, the int8 gate,
and (under "fp32") the SHA-256 of ``model.onnx`` as exported, which ties that file to the folder
the way the int8 record ties ``model.int8.onnx``: a file's own metadata can be forged."""
MAX_ONNX_BYTES = 1 << 30
"""Largest ONNX file opened (1 GiB; the largest architecture's float32 file is about 100 MB)."""
MAX_INPUT_SIDE = 1024
"""Largest image side an ONNX file may declare (the ``model.json`` image size limit)."""


def require_onnxruntime() -> ModuleType:
    """The onnxruntime module, or a one-line :class:`GalaxyError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise GalaxyError(f"ONNX Runtime is not installed: {INSTALL_HINT}; or use the torch "
                          "backend") from None
    return onnxruntime


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported (without importing it)."""
    from importlib.util import find_spec

    try:
        return find_spec("onnxruntime") is not None
    except (ImportError, ValueError):  # blocked, or a broken installation
        return False


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_threads() -> int:
    """The cores this process may use: ONNX Runtime's own default counts the machine's physical
    cores, which oversubscribes a container or a job limited to fewer."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxNetwork:
    """An ONNX Runtime session on the CPU that answers like the torch module it was exported
    from: float32 NCHW batch in, ``(logits, features)`` out."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        ort = require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path} does not exist; write it with "
                                 "galaxy export MODEL --onnx")
        if self.path.stat().st_size > MAX_ONNX_BYTES:
            raise ModelLoadError(f"{self.path} is {self.path.stat().st_size / 2**30:.1f} GiB, "
                                 f"over the {MAX_ONNX_BYTES / 2**30:.0f} GiB an ONNX model of "
                                 "this project can be; delete it and run galaxy export MODEL "
                                 "--onnx again")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        # Idle threads sleep instead of spinning: a prediction reads and frames its images in
        # worker processes on the same cores, and spinning threads took a sixth of their time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # InvalidProtobuf, InvalidGraph, Fail: all mean a bad file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelLoadError(f"{self.path} is not a usable ONNX model ({first}); delete it "
                                 "and run galaxy export MODEL --onnx again") from None
        self._check_signature()
        meta = self.session.get_modelmeta().custom_metadata_map
        self.source_sha256: str | None = meta.get(SOURCE_KEY)

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        outputs = {o.name: o for o in self.session.get_outputs()}
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 4 \
                or any(name not in outputs for name in OUTPUT_NAMES):
            raise ModelLoadError(f"{self.path} was not written by galaxy export --onnx (needs "
                                 f"input '{INPUT_NAME}' and outputs {', '.join(OUTPUT_NAMES)})")
        sizes = [outputs[name].shape[-1] for name in OUTPUT_NAMES]
        if not all(isinstance(s, int) for s in sizes):
            raise ModelLoadError(f"{self.path}: output sizes are not fixed")
        channels, *sides = inputs[0].shape[1:]
        if channels != 3 or not all(isinstance(s, int) and 0 < s <= MAX_INPUT_SIDE
                                    for s in sides) or not 0 < min(sizes) <= 1 << 16:
            raise ModelLoadError(f"{self.path} declares shapes no model of this project has "
                                 f"(input {list(inputs[0].shape)}, outputs {sizes})")
        self.n_classes, self.n_features = sizes
        self.input_shape = tuple(inputs[0].shape)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, C) and penultimate features (N, D), float32, for a normalised NCHW
        float32 batch."""
        try:
            logits, features = self.session.run(
                list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(x, np.float32)})
        except Exception as exc:  # an allocation failure, a graph that cannot run
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelLoadError(f"{self.path} failed to run ({first})") from None
        return logits, features

    def matches(self, weights: str | Path) -> bool:
        """Whether this file was exported from ``weights`` (a ``model.safetensors``)."""
        return self.source_sha256 is not None and self.source_sha256 == file_sha256(weights)


def load_onnx_network(path: str | Path, threads: int = 0) -> OnnxNetwork:
    """Open ``path`` (``model.onnx`` or ``model.int8.onnx``) for inference on the CPU."""
    return OnnxNetwork(path, threads)
