"""A model folder's network as ONNX files for ONNX Runtime: ``model.onnx`` (float32) and, when
validation and test images are at hand, ``model.int8.onnx`` (static int8), kept only if it
answers as well as the float32 file.

Both files compute the logits and the penultimate features (the OOD score needs them) for a
normalised float32 NCHW batch of any size, with the weights inside the file, so a colleague can
run them with onnxruntime and numpy alone. Each file records the SHA-256 of the
``model.safetensors`` it came from: a file left over from other weights is recognised as stale.

The int8 gate: calibrated on validation galaxies, the int8 network is measured against the
float32 one on the test part in the same run, through the same views and calibrated
probabilities the product uses; it is kept when accuracy and macro-F1 each move by at most
:data:`MAX_MOVE_POINTS` points. The comparison goes into ``model.json`` ("onnx") and the card.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from galaxy_core.data.cache import load_framed_part
from galaxy_core.data.prepared import PreparedData
from galaxy_core.data.tensors import to_tensor
from galaxy_core.errors import GalaxyError, ModelLoadError
from galaxy_core.evaluate.metrics import classification_metrics
from galaxy_core.io_utils import atomic_write, read_json, write_json
from galaxy_core.model.build import classifier_layer
from galaxy_core.model.calibrated import calibrated_probabilities
from galaxy_core.model.inference import run_network
from galaxy_core.model.ood import WARN_AT, fit_ood, ood_scores, save_ood
from galaxy_core.model.onnx_network import (INPUT_NAME, INT8_FILE, INT8_OOD_FILE, ONNX_FILE,
                                            ONNX_KEY, OUTPUT_NAMES, SOURCE_KEY, file_sha256,
                                            load_onnx_network, require_onnxruntime)
from galaxy_core.model.store import META_FILE, WEIGHTS_FILE, LoadedModel, load_model
from galaxy_core.release.model_card import write_model_card

MAX_MOVE_POINTS = 0.5
"""The int8 file is kept when test accuracy and macro-F1 each move by at most this many
percentage points from the float32 file's."""
MAX_OOD_MOVE_POINTS = 1.0
"""Largest move (points) of the share of test galaxies the int8 network's OOD warning flags,
against the float network's: more, and int8 answers would be warned about differently."""
CALIBRATION_IMAGES = 256
"""Validation galaxies the int8 activation ranges are calibrated on: MinMax ranges settle within
a few hundred images; more only costs time."""
QUANTIZATION = ("QDQ; signed weights per output channel in 7 bits (reduce_range); unsigned "
                "8-bit activations, MinMax ranges; classifier layer in float")
PARITY_TOLERANCE = 1e-3
"""Largest difference in logits allowed between the exported float32 file and torch."""
Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``."""


class _LogitsAndFeatures(nn.Module):
    """The network with two outputs: the logits and the head's input (the features the OOD
    score reads), from one pass, as :func:`~galaxy_core.model.inference.run_network` gives them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        head = classifier_layer(model)
        name = next(n for n, child in model.named_children() if child is head)
        self.body = copy.deepcopy(model).float().eval()
        self.body.to(memory_format=torch.contiguous_format)
        setattr(self.body, name, nn.Identity())
        self.head = copy.deepcopy(head).float().eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images)
        return self.head(features), features


def _export_proto(model: nn.Module, image_size: int) -> Any:
    """The ONNX ModelProto of ``model`` (float32, batch axis dynamic, weights inline)."""
    wrapper = _LogitsAndFeatures(model).eval()
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(wrapper, (example,), dynamo=True, external_data=False,
                                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                    dynamic_shapes={"images": {0: batch}}, optimize=True,
                                    verbose=False)
    return program.model_proto


def _stamp(proto: Any, weights_sha256: str, **extra: str) -> None:
    """Record in the file which weights it came from (and anything else worth a look)."""
    import onnx

    onnx.helper.set_model_props(proto, {SOURCE_KEY: weights_sha256, **extra})


def _save(proto: Any, path: Path) -> Path:
    """Write ``proto`` atomically, weights inside (no external data files)."""
    data = proto.SerializeToString()
    return atomic_write(path, lambda f: f.write(data))


def export_fp32(loaded: LoadedModel, path: Path | None = None) -> Path:
    """Write ``model.onnx`` beside ``loaded``'s weights (or to ``path``) and check it answers
    like torch within :data:`PARITY_TOLERANCE` on random inputs; returns its path.

    A model stored in float16 is exported in float32 (``load_model`` widens the weights), so the
    file runs on any CPU and matches the torch numbers users get from the same folder."""
    require_onnxruntime()
    _require("onnx")
    _require("onnxscript")
    path = Path(path) if path else loaded.path / ONNX_FILE
    proto = _export_proto(loaded.model, loaded.config.image_size)
    weights = file_sha256(loaded.path / WEIGHTS_FILE)
    _stamp(proto, weights, galaxy_precision="float32")
    _save(proto, path)
    _check_parity(loaded, path)
    if path == loaded.path / ONNX_FILE:
        _record_fp32(loaded.path, fp32_record(path, weights))
    return path


def fp32_record(path: Path, weights_sha256: str) -> dict[str, str]:
    """``model.json``'s "onnx" "fp32" entry for the float32 file at ``path``: the backend opens
    ``model.onnx`` only when its SHA-256 is this one (the SHA in the file's own metadata can be
    forged along with the graph)."""
    return {"file": ONNX_FILE, "sha256": file_sha256(path), "weights_sha256": weights_sha256}


def _record_fp32(folder: Path, entry: dict[str, str]) -> None:
    """Put ``entry`` into ``model.json``'s "onnx" record; an int8 record made from other
    weights than these is stale and dropped (its file is then not vouched for)."""
    meta = read_json(folder / META_FILE)
    record = meta.get(ONNX_KEY) if isinstance(meta.get(ONNX_KEY), dict) else {}
    if record.get("weights_sha256") != entry["weights_sha256"]:
        record = {"weights_sha256": entry["weights_sha256"]}
    record["fp32"] = entry
    meta[ONNX_KEY] = record
    write_json(folder / META_FILE, meta)


def _require(module: str) -> None:
    from importlib.util import find_spec

    if find_spec(module) is None:
        raise GalaxyError(f"exporting to ONNX needs {module}: pip install '.[onnx]'")


def _check_parity(loaded: LoadedModel, path: Path) -> None:
    """Refuse (and delete) an exported file whose logits differ from torch's."""
    size = loaded.config.image_size
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = loaded.model.eval()(x).numpy()
    logits, _ = load_onnx_network(path)(x.numpy())
    gap = float(np.abs(logits - expected).max())
    if not gap <= PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise ModelLoadError(f"the exported {path.name} differs from the torch network by "
                             f"{gap:.2g} in the logits (allowed {PARITY_TOLERANCE:g}); not kept")


class _CalibrationReader:
    """Feeds normalised validation images to onnxruntime's calibrator, a batch at a time."""

    def __init__(self, images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
                 batch_size: int = 16) -> None:
        self._batches = iter([to_tensor(images[i:i + batch_size], mean, std, False).numpy()
                              for i in range(0, len(images), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def calibration_images(loaded: LoadedModel, prepared: PreparedData, split: int,
                       count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """``count`` validation galaxies of ``split``, a fixed random choice (so both classes in
    about their validation proportion), framed as the model frames its inputs."""
    part = load_framed_part(prepared, loaded.config, split, "val")
    if len(part) == 0:
        raise GalaxyError(f"split {split} has no validation galaxies to calibrate int8 on")
    order = np.sort(np.random.default_rng(0).permutation(len(part))[:count])
    return part.images[order]


def quantize_int8(fp32_path: Path, int8_path: Path, images: np.ndarray,
                  mean: tuple[float, ...], std: tuple[float, ...]) -> Path:
    """Static int8 quantisation of ``fp32_path`` into ``int8_path``: QDQ format, signed weights
    per output channel, unsigned 8-bit activations with MinMax ranges calibrated on ``images``.

    Unsigned activations times signed weights (U8S8) is the product x86 CPUs multiply natively
    (VNNI ``vpdpbusd``): 2.4x the speed of signed activations (S8S8) on the CPU that measured
    the shipped model, with the same test accuracy. Without VNNI (AVX2) that product sums pairs
    in 16 bits and can saturate; weights kept to 7 bits (``reduce_range``) rule that out, so
    the gate measured here holds on any x86 CPU (on the shipped model it cost nothing: test
    accuracy and macro-F1 moved by under 0.3 points either way).

    The graph is first prepared as onnxruntime recommends (shape inference and graph
    optimisation before quantising). The classifier layer stays float: it is one tiny matrix
    product, and quantising it would move the logits for no speed."""
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    with tempfile.TemporaryDirectory(prefix="galaxy-int8-") as tmp:
        prepared_path, out_path = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared_path), skip_symbolic_shape=False)
        head_nodes = _head_nodes(onnx.load(str(prepared_path)))
        quantize_static(str(prepared_path), str(out_path),
                        _CalibrationReader(images, mean, std), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=head_nodes,
                        calibration_providers=["CPUExecutionProvider"])
        proto = onnx.load(str(out_path))
    source = {p.key: p.value for p in onnx.load(str(fp32_path), load_external_data=False)
              .metadata_props}
    _stamp(proto, source.get(SOURCE_KEY, ""), galaxy_precision="int8",
           galaxy_calibration_images=str(len(images)))
    return _save(proto, int8_path)


def _head_nodes(proto: Any) -> list[str]:
    """Names of the nodes that compute the ``logits`` output (the classifier layer)."""
    return [node.name for node in proto.graph.node if OUTPUT_NAMES[0] in node.output]


def measure(network: Any, loaded: LoadedModel, images: np.ndarray, labels: np.ndarray,
            views: int, progress: Callable[[int, int], None] | None = None,
            ood: dict[str, np.ndarray] | None = None
            ) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """Metrics, calibrated probabilities and OOD scores (on the reference ``ood``, by default
    the model's; None without one) of ``network`` on model-ready images, through the same
    views, prior correction, temperature and feature pass as a prediction."""
    cfg = loaded.config
    ood = loaded.ood if ood is None else ood
    out = run_network(network, images, cfg.mean, cfg.std, tta=views > 1, views=views,
                      features=ood is not None, progress=progress)
    probs = calibrated_probabilities(out.logits, loaded.logit_bias, loaded.temperature)
    scores = ood_scores(out.features, ood, images) if ood is not None else None
    return classification_metrics(labels, probs, loaded.classes), probs, scores


def compare_warnings(loaded: LoadedModel, fp32: np.ndarray, int8: np.ndarray) -> dict[str, Any]:
    """The int8 network's OOD warning (scores ``int8``, on its own reference) against the
    float one's (``fp32``) on the same galaxies; ``passed`` when the share flagged moves by at
    most :data:`MAX_OOD_MOVE_POINTS` points."""
    warn = float(loaded.meta.get("ood", {}).get("warn_at", WARN_AT))
    flags = {"fp32": fp32 > warn, "int8": int8 > warn}
    flagged = {name: float(np.mean(f)) for name, f in flags.items()}
    move = 100 * (flagged["int8"] - flagged["fp32"])
    return {"reference": INT8_OOD_FILE, "n": len(fp32), "flagged": flagged,
            "move_points": move, "max_move_points": MAX_OOD_MOVE_POINTS,
            "same_warning": float(np.mean(flags["fp32"] == flags["int8"])),
            "passed": abs(move) <= MAX_OOD_MOVE_POINTS}


def int8_gate(loaded: LoadedModel, fp32_path: Path, int8_path: Path, prepared: PreparedData,
              split: int, progress: Progress | None = None,
              int8_ood: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Compare the two files on the test part of ``split`` (the model's own number of views);
    ``passed`` when accuracy and macro-F1 each move by at most :data:`MAX_MOVE_POINTS` and,
    given the int8 network's own OOD reference ``int8_ood``, its warning passes
    :func:`compare_warnings` (scored in the same pass). How far the probabilities and OOD
    scores move is recorded too, for the card."""
    test = load_framed_part(prepared, loaded.config, split, "test")
    if len(test) == 0:
        raise GalaxyError(f"split {split} has no test galaxies to measure int8 on")
    views = 8 if loaded.config.tta else 1
    results = {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        step = (lambda done, total, name=name: progress(f"test {name}", done, total)) \
            if progress else None
        results[name] = measure(load_onnx_network(path), loaded, test.images, test.labels,
                                views, step, int8_ood if name == "int8" else None)
    (fp32, p32, ood32), (int8, p8, ood8) = results["fp32"], results["int8"]
    spiral = loaded.classes.index("spiral")
    moves = {key: 100 * (int8[key] - fp32[key]) for key in ("accuracy", "macro_f1")}
    gate = {"part": "test", "split": split, "n": len(test), "views": views,
            "max_move_points": MAX_MOVE_POINTS,
            "fp32": {k: fp32[k] for k in ("accuracy", "macro_f1", "roc_auc")},
            "int8": {k: int8[k] for k in ("accuracy", "macro_f1", "roc_auc")},
            "move_points": moves,
            "same_label": float(np.mean(p32.argmax(1) == p8.argmax(1))),
            "max_abs_diff_p_spiral": float(np.abs(p32[:, spiral] - p8[:, spiral]).max()),
            "mean_abs_diff_p_spiral": float(np.abs(p32[:, spiral] - p8[:, spiral]).mean())}
    gate["passed"] = all(abs(v) <= MAX_MOVE_POINTS for v in moves.values())
    if ood32 is not None and int8_ood is not None:
        gate["ood"] = compare_warnings(loaded, ood32, ood8)
        gate["passed"] = gate["passed"] and gate["ood"]["passed"]
    elif ood32 is not None:
        warn = float(loaded.meta.get("ood", {}).get("warn_at", WARN_AT))
        gate["ood"] = {"max_abs_diff": float(np.abs(ood32 - ood8).max()),
                       "same_warning": float(np.mean((ood32 > warn) == (ood8 > warn)))}
    return gate


def int8_ood_reference(loaded: LoadedModel, network: Any, prepared: PreparedData, split: int,
                       progress: Progress | None = None) -> tuple[dict[str, np.ndarray],
                                                                  dict[str, Any]]:
    """The OOD reference of ``network`` (the int8 one), fitted as the release step fits the
    float one: on the features of the training galaxies, scaled by the validation galaxies'
    (one view: a prediction's features come from its first view)."""
    cfg = loaded.config
    features, parts = {}, {}
    for part in ("train", "val"):
        parts[part] = load_framed_part(prepared, cfg, split, part)
        step = (lambda done, total, part=part: progress(f"int8 OOD reference: {part}", done,
                                                        total)) if progress else None
        features[part] = run_network(network, parts[part].images, cfg.mean, cfg.std, tta=False,
                                     views=1, features=True, progress=step).features
    return fit_ood(features["train"], parts["train"].labels, features["val"],
                   parts["val"].images)


def ood_agreement(loaded: LoadedModel, fp32: Any, int8: Any, int8_ood: dict[str, np.ndarray],
                  images: np.ndarray) -> dict[str, Any]:
    """:func:`compare_warnings` of the two networks on ``images`` (one view: a prediction's
    features come from its first view), for a folder whose gate has already run."""
    cfg = loaded.config
    scores = {}
    for name, network, state in (("fp32", fp32, loaded.ood), ("int8", int8, int8_ood)):
        out = run_network(network, images, cfg.mean, cfg.std, tta=False, views=1,
                          features=True)
        scores[name] = ood_scores(out.features, state, images)
    return compare_warnings(loaded, scores["fp32"], scores["int8"])


def refit_int8_ood(folder: str | Path, prepared: PreparedData, split: int | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Give a folder whose int8 file passed the accuracy gate before int8 had its own OOD
    reference (:data:`INT8_OOD_FILE`) one: fit it, measure the warning against the float
    network's on the test part, and record both in ``model.json``. The int8 file and its
    accuracy gate are left as they are; a reference that fails the OOD check is not kept (the
    int8 engine then keeps using the float reference, as before)."""
    loaded = load_model(folder)
    record = loaded.meta.get(ONNX_KEY, {})
    if not record.get("int8", {}).get("kept") or not (loaded.path / INT8_FILE).is_file():
        raise GalaxyError(f"{loaded.path} has no int8 file that passed its gate: run galaxy "
                          "export MODEL --onnx --data PREPARED")
    split = int(loaded.meta.get("training", {}).get("split", 0)) if split is None else split
    int8 = load_onnx_network(loaded.path / INT8_FILE)
    state, meta = int8_ood_reference(loaded, int8, prepared, split, progress)
    test = load_framed_part(prepared, loaded.config, split, "test")
    check = ood_agreement(loaded, load_onnx_network(export_fp32(loaded)), int8, state,
                          test.images)
    record["int8"]["gate"]["ood"] = check
    _keep_int8_ood(loaded.path, record["int8"], state, meta, check["passed"])
    record_onnx(loaded.path, record)
    return record


def _keep_int8_ood(folder: Path, int8_record: dict[str, Any], state: dict[str, np.ndarray],
                   meta: dict[str, Any], keep: bool) -> None:
    """Write the int8 OOD reference and vouch for it in the int8 record, or remove both."""
    path = folder / INT8_OOD_FILE
    if not keep:
        path.unlink(missing_ok=True)
        int8_record.pop("ood_reference", None)
        return
    save_ood(folder, state, INT8_OOD_FILE)
    int8_record["ood_reference"] = {"file": INT8_OOD_FILE, "sha256": file_sha256(path),
                                    "fitted_on": "train", **meta}


def export_onnx(folder: str | Path, prepared: PreparedData | None = None,
                split: int | None = None, calibration_count: int = CALIBRATION_IMAGES,
                progress: Progress | None = None) -> dict[str, Any]:
    """Write ``model.onnx`` into the model folder and, with ``prepared``, ``model.int8.onnx``
    through the gate; returns the "onnx" record, which is also written to ``model.json`` (and
    the card) when the int8 file was measured. A failed int8 file is deleted, any older one
    with it: the folder never holds an int8 file its ``model.json`` does not vouch for.

    ``split`` defaults to the one the model was trained on, whose validation and test galaxies
    it never learned from."""
    loaded = load_model(folder)
    if progress:
        progress("export fp32", 0, 1)
    fp32_path = export_fp32(loaded)
    weights = file_sha256(loaded.path / WEIGHTS_FILE)
    record: dict[str, Any] = {"weights_sha256": weights,
                              "fp32": fp32_record(fp32_path, weights)}
    if prepared is None:
        return record
    split = int(loaded.meta.get("training", {}).get("split", 0)) if split is None else split
    images = calibration_images(loaded, prepared, split, calibration_count)
    int8_path = loaded.path / INT8_FILE
    if progress:
        progress("quantise int8", 0, 1)
    with tempfile.TemporaryDirectory(prefix="galaxy-int8-") as tmp:
        candidate = quantize_int8(fp32_path, Path(tmp) / INT8_FILE, images, loaded.config.mean,
                                  loaded.config.std)
        ood_state = ood_meta = None
        if loaded.ood is not None:  # int8 is warned about on its own reference
            ood_state, ood_meta = int8_ood_reference(loaded, load_onnx_network(candidate),
                                                     prepared, split, progress)
        gate = int8_gate(loaded, fp32_path, candidate, prepared, split, progress, ood_state)
        size, sha = candidate.stat().st_size, file_sha256(candidate)
        if gate["passed"]:
            data = candidate.read_bytes()
            atomic_write(int8_path, lambda f: f.write(data))
        else:
            int8_path.unlink(missing_ok=True)
    record["int8"] = {"file": INT8_FILE, "kept": gate["passed"], "sha256": sha, "bytes": size,
                      "quantization": QUANTIZATION,
                      "calibration": {"part": "val", "split": split, "images": len(images)},
                      "gate": gate}
    if ood_state is not None:
        _keep_int8_ood(loaded.path, record["int8"], ood_state, ood_meta, gate["passed"])
    record_onnx(loaded.path, record)
    return record


def record_onnx(folder: Path, record: dict[str, Any]) -> None:
    """Put ``record`` into ``model.json`` under "onnx" (everything else unchanged) and rewrite
    the model card from it."""
    meta = read_json(folder / META_FILE)
    meta[ONNX_KEY] = record
    write_json(folder / META_FILE, meta)
    write_model_card(folder)
