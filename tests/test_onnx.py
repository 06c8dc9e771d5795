"""The ONNX Runtime backend (issue 16, item 4): export, the int8 gate, the backend choice, the
errors a user can meet, and the "share the model" snippet (docs/survey-scale.md).

Fast tests use a tiny untrained resnet18 at 32 px on synthetic galaxies; the ones marked
``realdata`` use the shipped model on real cutouts and are skipped without ``../shared/data``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from galaxy_core.config import Config
from galaxy_core.data.prepare import PrepareRequest, prepare
from galaxy_core.data.prepared import open_prepared
from galaxy_core.data.preprocess import frame_for_model
from galaxy_core.errors import GalaxyError, ModelLoadError
from galaxy_core.io_utils import read_json, write_json
from galaxy_core.model.build import build_model
from galaxy_core.model.calibrated import infer
from galaxy_core.model.inference import run_network
from galaxy_core.model.onnx_network import (INT8_FILE, ONNX_FILE, SOURCE_KEY, file_sha256,
                                            load_onnx_network)
from galaxy_core.model.store import META_FILE, load_model, save_model
from galaxy_core.predict.backend import BackendModel, int8_problem, use_backend
from galaxy_core.release import onnx_export
from galaxy_core.release.model_card import render_model_card
from galaxy_core.release.onnx_export import export_fp32, export_onnx, quantize_int8
from tests.conftest import draw_galaxy

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "resnet50_gz1"
TINY = Config(arch="resnet18", image_size=32, crop_fraction=0.5)


def _tiny_folder(root: Path, seed: int = 0, name: str = "tiny") -> Path:
    torch.manual_seed(seed)
    meta = {"temperature": 1.3, "logit_bias": [0.2, -0.1], "training": {"split": 0}}
    return save_model(root / name, build_model("resnet18").eval(), TINY, meta)


def _images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    kinds = ("elliptical", "spiral")
    return np.stack([np.asarray(draw_galaxy(kinds[i % 2], size, seed=seed + i))
                     for i in range(n)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny model folder with its model.onnx already exported."""
    folder = _tiny_folder(tmp_path_factory.mktemp("onnx"))
    export_fp32(load_model(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_prepared(tmp_path_factory) -> Path:
    """A prepared dataset of 32 synthetic galaxies in class folders (8 validation, 8 test)."""
    root = tmp_path_factory.mktemp("onnx_data")
    images = root / "images"
    for i in range(32):
        kind = "spiral" if i % 2 else "elliptical"
        (images / f"{kind}s").mkdir(parents=True, exist_ok=True)
        draw_galaxy(kind, 64, seed=100 + i).save(images / f"{kind}s" / f"g{i:03d}.png")
    prepare(PrepareRequest(images=images, out=root / "prepared", folders=True,
                           build_cache=False), Config(val_fraction=0.25, test_fraction=0.25))
    return root / "prepared"


# --- export and parity -------------------------------------------------------------------------
@pytest.mark.parametrize("views", [1, 4, 8])
def test_onnx_fp32_answers_like_torch_through_the_same_views(tiny, views) -> None:
    """Logits and first-view features of model.onnx match the torch module for every number of
    views and for batches of any size (the batch axis is dynamic)."""
    loaded = load_model(tiny)
    network = load_onnx_network(tiny / ONNX_FILE)
    images = _images(7)
    kwargs = dict(tta=views > 1, views=views, batch_size=3, features=True)
    ours = run_network(network, images, TINY.mean, TINY.std, **kwargs)
    theirs = run_network(loaded.model, images, TINY.mean, TINY.std, **kwargs)
    np.testing.assert_allclose(ours.logits, theirs.logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(ours.features, theirs.features, atol=1e-4, rtol=1e-4)
    assert ours.logits.shape == (7, 2) and ours.features.shape == (7, 512)
    empty = run_network(network, images[:0], TINY.mean, TINY.std, **kwargs)
    assert empty.logits.shape == (0, 2) and empty.features.shape == (0, 512)


def test_export_is_one_self_contained_file_stamped_with_its_weights(tiny) -> None:
    import onnx

    proto = onnx.load(str(tiny / ONNX_FILE), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert sorted(p.name for p in tiny.iterdir() if p.name.startswith(".")) == []  # no temp left
    props = {p.key: p.value for p in proto.metadata_props}
    assert props[SOURCE_KEY] == file_sha256(tiny / "model.safetensors")
    assert load_onnx_network(tiny / ONNX_FILE).matches(tiny / "model.safetensors")


def test_an_fp16_stored_model_is_exported_in_float32(tmp_path) -> None:
    import onnx

    torch.manual_seed(1)
    folder = save_model(tmp_path / "half", build_model("resnet18").eval(), TINY, {}, half=True)
    loaded = load_model(folder)
    export_fp32(loaded)
    proto = onnx.load(str(folder / ONNX_FILE))
    real = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
            onnx.TensorProto.DOUBLE}
    assert {t.data_type for t in proto.graph.initializer if t.data_type in real} \
        == {onnx.TensorProto.FLOAT}
    images = _images(3)
    np.testing.assert_allclose(
        run_network(load_onnx_network(folder / ONNX_FILE), images, TINY.mean, TINY.std).logits,
        run_network(loaded.model, images, TINY.mean, TINY.std).logits, atol=1e-4, rtol=1e-4)


# --- backends ----------------------------------------------------------------------------------
def test_onnx_backend_builds_model_onnx_on_first_use_and_keeps_torch_for_gradcam(tmp_path) -> None:
    folder = _tiny_folder(tmp_path)
    loaded = load_model(folder)
    said: list[str] = []
    onnx_model = use_backend(loaded, "onnx", note=said.append)
    assert (folder / ONNX_FILE).is_file() and any("exporting" in s for s in said)
    assert isinstance(onnx_model, BackendModel) and onnx_model.backend == "onnx"
    assert onnx_model.model is loaded.model  # Grad-CAM's network is still the torch module
    images = _images(5)
    ours, theirs = infer(onnx_model, images, views=4), infer(loaded, images, views=4)
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=1e-4)
    mtime = (folder / ONNX_FILE).stat().st_mtime_ns
    use_backend(loaded, "onnx")  # second use: the file is reused, not rebuilt
    assert (folder / ONNX_FILE).stat().st_mtime_ns == mtime
    from galaxy_core.explain.gradcam import gradcam  # the map runs on the torch module

    np.testing.assert_array_equal(gradcam(onnx_model, images[0]), gradcam(loaded, images[0]))


def test_torch_backend_gives_exactly_the_numbers_of_today(tiny) -> None:
    loaded = load_model(tiny)
    images = _images(4)
    chosen = use_backend(loaded, "torch")
    assert chosen.network is None and chosen.backend == "torch"
    np.testing.assert_array_equal(infer(chosen, images).probabilities,
                                  infer(loaded, images).probabilities)


def test_a_model_onnx_of_other_weights_is_exported_again(tmp_path) -> None:
    folder = _tiny_folder(tmp_path, seed=0)
    export_fp32(load_model(folder))
    _tiny_folder(tmp_path, seed=5)  # new weights in the same folder; model.onnx is now stale
    loaded = load_model(folder)
    assert not load_onnx_network(folder / ONNX_FILE).matches(folder / "model.safetensors")
    said: list[str] = []
    chosen = use_backend(loaded, "onnx", note=said.append)
    # saving the new weights rewrote model.json, so its record no longer vouches for the file
    assert any("exporting it again" in s and ("other weights" in s or "records" in s)
               for s in said)
    images = _images(3)
    np.testing.assert_allclose(infer(chosen, images).probabilities,
                               infer(loaded, images).probabilities, atol=1e-4)


def test_auto_without_int8_uses_onnx_and_without_onnxruntime_torch(tmp_path, monkeypatch) -> None:
    folder = _tiny_folder(tmp_path)
    loaded = load_model(folder)
    said: list[str] = []
    assert use_backend(loaded, "auto", note=said.append).backend == "onnx"
    assert "no model.int8.onnx" in said[0]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    assert use_backend(loaded, "auto").backend == "torch"


def test_missing_onnxruntime_is_one_clear_error(tmp_path, monkeypatch) -> None:
    loaded = load_model(_tiny_folder(tmp_path))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    for name in ("onnx", "onnx-int8"):
        with pytest.raises(GalaxyError, match=r"ONNX Runtime is not installed: pip install"):
            use_backend(loaded, name)
    with pytest.raises(GalaxyError, match="not installed"):
        load_onnx_network(tmp_path / "anything.onnx")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other_graph"])
def test_a_damaged_onnx_file_is_one_clear_error(tiny, tmp_path, damage) -> None:
    path = tmp_path / ONNX_FILE
    good = (tiny / ONNX_FILE).read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not an onnx model" * 40)
    elif damage == "truncated":
        path.write_bytes(good[:len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid ONNX file, but not one of ours
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelLoadError) as info:
        load_onnx_network(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and len(message) < 400


def test_a_damaged_model_onnx_is_never_opened_and_is_exported_again(tmp_path) -> None:
    """model.json records the SHA-256 of the model.onnx it exported; any other file there is
    not opened (a forged one could answer anything), it is exported again."""
    folder = _tiny_folder(tmp_path)
    (folder / ONNX_FILE).write_bytes(b"\x08\x07garbage")
    said: list[str] = []
    chosen = use_backend(load_model(folder), "onnx", note=said.append)
    assert any("not the file model.json records: exporting it again" in s for s in said)
    assert chosen.backend == "onnx" and (folder / ONNX_FILE).read_bytes()[:2] != b"\x08\x07"


def test_int8_backend_without_its_file_says_how_to_make_it(tiny) -> None:
    with pytest.raises(ModelLoadError, match=r"no model.int8.onnx \(galaxy export MODEL --onnx"):
        use_backend(load_model(tiny), "onnx-int8")
    with pytest.raises(GalaxyError, match="unknown backend"):
        use_backend(load_model(tiny), "tensorrt")


# --- int8 and its gate -------------------------------------------------------------------------
def test_int8_quantisation_runs_and_stays_near_fp32(tiny, tmp_path) -> None:
    import onnx

    images = _images(24, seed=50)
    out = quantize_int8(tiny / ONNX_FILE, tmp_path / INT8_FILE, images[:16], TINY.mean, TINY.std)
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32 = run_network(load_onnx_network(tiny / ONNX_FILE), images, TINY.mean, TINY.std,
                       features=True)
    int8 = run_network(load_onnx_network(out), images, TINY.mean, TINY.std, features=True)
    # an untrained network's logits sit close together: compare their spread, not labels
    scale = np.abs(fp32.logits).max()
    assert np.abs(int8.logits - fp32.logits).max() < 0.1 * scale
    assert np.corrcoef(int8.features.ravel(), fp32.features.ravel())[0, 1] > 0.99
    assert load_onnx_network(out).matches(tiny / "model.safetensors")


def _copy(folder: Path, root: Path) -> Path:
    target = root / folder.name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.onnx", "report_*"))
    return target


def test_export_onnx_gates_int8_and_records_it(tiny, tiny_prepared, tmp_path) -> None:
    folder = _copy(tiny, tmp_path)
    record = export_onnx(folder, open_prepared(tiny_prepared), calibration_count=8)
    int8 = record["int8"]
    gate = int8["gate"]
    assert gate["passed"] == all(abs(v) <= 0.5 for v in gate["move_points"].values())
    assert int8["kept"] == gate["passed"] == (folder / INT8_FILE).is_file()
    assert int8["calibration"]["images"] == 8 and gate["n"] == 8 and gate["views"] == 8
    meta = load_model(folder).meta  # model.json still loads: the schema accepts the record
    assert meta["onnx"] == record
    card = (folder / "MODEL_CARD.md").read_text()
    assert "## ONNX Runtime" in card and f"calibrated on {8} validation" in card
    if int8["kept"]:
        assert int8_problem(load_model(folder)) is None
        assert use_backend(load_model(folder), "auto").backend == "onnx-int8"


def test_a_failed_int8_file_is_not_kept_and_not_used(tiny, tiny_prepared, tmp_path,
                                                     monkeypatch) -> None:
    folder = _copy(tiny, tmp_path)
    (folder / INT8_FILE).write_bytes(b"an older int8 file")  # must go too
    monkeypatch.setattr(onnx_export, "MAX_MOVE_POINTS", -1.0)  # no file can pass
    record = export_onnx(folder, open_prepared(tiny_prepared), calibration_count=8)
    assert record["int8"]["kept"] is False and record["int8"]["gate"]["passed"] is False
    assert not (folder / INT8_FILE).exists()
    loaded = load_model(folder)
    assert use_backend(loaded, "auto").backend == "onnx"
    assert "**not kept**" in render_model_card(folder)


def test_an_int8_file_model_json_does_not_vouch_for_is_refused(tiny, tiny_prepared,
                                                                tmp_path, monkeypatch) -> None:
    folder = _copy(tiny, tmp_path)
    monkeypatch.setattr(onnx_export, "MAX_MOVE_POINTS", 100.0)  # keep it whatever it scores
    export_onnx(folder, open_prepared(tiny_prepared), calibration_count=8)
    assert use_backend(load_model(folder), "onnx-int8").backend == "onnx-int8"
    data = bytearray((folder / INT8_FILE).read_bytes())
    (folder / INT8_FILE).write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 1]))  # another file
    loaded = load_model(folder)
    assert "not the file" in int8_problem(loaded)
    assert use_backend(loaded, "auto").backend == "onnx"
    with pytest.raises(ModelLoadError, match="not the file model.json's int8 gate measured"):
        use_backend(loaded, "onnx-int8")


def _with_ood_reference(folder: Path, prepared: Path) -> Path:
    """``folder`` given a float OOD reference fitted as the release step fits one."""
    from galaxy_core.data.cache import load_framed_part
    from galaxy_core.model.ood import fit_ood, save_ood

    loaded = load_model(folder)
    data = open_prepared(prepared)
    parts = {name: load_framed_part(data, loaded.config, 0, name) for name in ("train", "val")}
    feats = {name: run_network(loaded.model, part.images, TINY.mean, TINY.std,
                               features=True).features for name, part in parts.items()}
    state, _ = fit_ood(feats["train"], parts["train"].labels, feats["val"], parts["val"].images)
    save_ood(folder, state)
    return folder


def test_int8_gets_its_own_ood_reference_and_a_tampered_one_is_refused(
        tiny, tiny_prepared, tmp_path, monkeypatch) -> None:
    from galaxy_core.model.onnx_network import INT8_OOD_FILE

    folder = _with_ood_reference(_copy(tiny, tmp_path), tiny_prepared)
    monkeypatch.setattr(onnx_export, "MAX_MOVE_POINTS", 100.0)
    monkeypatch.setattr(onnx_export, "MAX_OOD_MOVE_POINTS", 100.0)
    record = export_onnx(folder, open_prepared(tiny_prepared), calibration_count=8)
    ood = record["int8"]["gate"]["ood"]
    assert ood["n"] == 8 and set(ood["flagged"]) == {"fp32", "int8"} and ood["passed"]
    reference = record["int8"]["ood_reference"]
    assert reference["sha256"] == file_sha256(folder / INT8_OOD_FILE)
    loaded = load_model(folder)
    on_int8 = use_backend(loaded, "onnx-int8")
    assert not np.array_equal(on_int8.ood["class_means"], loaded.ood["class_means"])
    assert use_backend(loaded, "onnx").ood is loaded.ood  # float engines keep the float one
    (folder / INT8_OOD_FILE).write_bytes((folder / INT8_OOD_FILE).read_bytes() + b" ")
    with pytest.raises(ModelLoadError, match="not the int8 OOD reference"):
        use_backend(load_model(folder), "onnx-int8")


def test_an_int8_file_whose_ood_warning_moves_too_far_is_not_kept(
        tiny, tiny_prepared, tmp_path, monkeypatch) -> None:
    from galaxy_core.model.onnx_network import INT8_OOD_FILE

    folder = _with_ood_reference(_copy(tiny, tmp_path), tiny_prepared)
    monkeypatch.setattr(onnx_export, "MAX_MOVE_POINTS", 100.0)
    monkeypatch.setattr(onnx_export, "MAX_OOD_MOVE_POINTS", -1.0)  # no warning can agree
    record = export_onnx(folder, open_prepared(tiny_prepared), calibration_count=8)
    assert record["int8"]["kept"] is False and record["int8"]["gate"]["ood"]["passed"] is False
    assert not (folder / INT8_FILE).exists() and not (folder / INT8_OOD_FILE).exists()
    assert "ood_reference" not in record["int8"]


@pytest.mark.parametrize("field, value, message", [
    ("file", "../../elsewhere.onnx", "onnx.int8.file"),
    ("kept", "yes", "onnx.int8.kept"),
    ("sha256", "abc", "onnx.int8.sha256"),
])
def test_model_json_onnx_record_is_checked(tiny, tmp_path, field, value, message) -> None:
    folder = _copy(tiny, tmp_path)
    meta = read_json(folder / META_FILE)
    gate = {"passed": True, "fp32": {"accuracy": 0.9, "macro_f1": 0.8},
            "int8": {"accuracy": 0.9, "macro_f1": 0.8}}
    meta["onnx"] = {"weights_sha256": "0" * 64,
                    "int8": {"file": INT8_FILE, "kept": True, "sha256": "1" * 64, "gate": gate}}
    write_json(folder / META_FILE, meta)
    load_model(folder)  # the well-formed record loads
    meta["onnx"]["int8"][field] = value
    write_json(folder / META_FILE, meta)
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        load_model(folder)


# --- command line ------------------------------------------------------------------------------
def test_cli_export_onnx_then_predict_with_each_backend(tiny, tiny_prepared, tmp_path,
                                                        capsys) -> None:
    from galaxy_core.cli import main

    folder = _copy(tiny, tmp_path)
    assert main(["export", str(folder), "--onnx", "--data", str(tiny_prepared)]) == 0
    out = capsys.readouterr().out
    assert "model.int8.onnx" in out and (folder / ONNX_FILE).is_file()
    assert "onnx" in read_json(folder / META_FILE)
    images = tmp_path / "in"
    images.mkdir()
    for i in range(3):
        draw_galaxy("spiral" if i % 2 else "elliptical", 64, seed=300 + i).save(images / f"{i}.png")
    answers = {}
    for backend in ("torch", "onnx"):
        csv = tmp_path / f"{backend}.csv"
        assert main(["predict", str(images), "--model", str(folder), "--backend", backend,
                     "-o", str(csv)]) == 0
        answers[backend] = pd.read_csv(csv).sort_values("path")
    np.testing.assert_allclose(answers["onnx"]["p_spiral"], answers["torch"]["p_spiral"],
                               atol=2e-4)  # the CSV keeps 4 decimals
    assert main(["export", str(folder)]) == 2  # neither --out nor --onnx: usage error
    assert "--out" in capsys.readouterr().err


def test_shipped_int8_file_when_present_is_vouched_for_by_model_json() -> None:
    """A committed model.int8.onnx must be the very file whose gate model.json records, made
    from the committed weights, and under 30 MB."""
    if not (SHIPPED / INT8_FILE).is_file():
        pytest.skip("the shipped model has no model.int8.onnx")
    loaded = load_model(SHIPPED)
    assert int8_problem(loaded) is None
    assert (SHIPPED / INT8_FILE).stat().st_size < 30 * 2**20
    gate = loaded.meta["onnx"]["int8"]["gate"]
    assert all(abs(v) <= gate["max_move_points"] for v in gate["move_points"].values())
    from galaxy_core.model.onnx_network import INT8_OOD_FILE
    from galaxy_core.predict.backend import int8_ood

    reference = loaded.meta["onnx"]["int8"].get("ood_reference")
    if reference is not None:  # int8 scored on its own OOD reference, vouched for
        assert reference["sha256"] == file_sha256(SHIPPED / INT8_OOD_FILE)
        assert gate["ood"]["passed"] and abs(gate["ood"]["move_points"]) <= 1.0
        assert int8_ood(loaded) is not loaded.ood


# --- real data ---------------------------------------------------------------------------------
def _cutouts(shared_data: Path, n: int) -> list[Path]:
    return sorted((shared_data / "gz1_sdss" / "images").glob("*.jpeg"))[:n]


@pytest.fixture(scope="module")
def shipped_with_onnx(tmp_path_factory) -> Path:
    """A copy of the shipped model with model.onnx exported from it."""
    folder = _copy(SHIPPED, tmp_path_factory.mktemp("shipped"))
    export_fp32(load_model(folder))
    return folder


@pytest.mark.realdata
def test_onnx_fp32_matches_torch_on_real_cutouts(shared_data, shipped_with_onnx) -> None:
    """p(spiral) of the whole prediction path (8 views, prior correction, temperature, OOD
    score) agrees within 1e-3 between torch and ONNX Runtime on real SDSS cutouts."""
    from galaxy_core.predict.classify import classify_sources

    loaded = load_model(shipped_with_onnx)
    paths = _cutouts(shared_data, 24)
    torch_rows = classify_sources(loaded, paths, batch_size=12)
    onnx_rows = classify_sources(use_backend(loaded, "onnx"), paths, batch_size=12)
    p_torch = np.array([p.p_spiral for p in torch_rows])
    p_onnx = np.array([p.p_spiral for p in onnx_rows])
    assert np.all(np.isfinite(p_torch)) and p_torch.std() > 0.05  # real, varied answers
    np.testing.assert_allclose(p_onnx, p_torch, atol=1e-3)
    np.testing.assert_allclose([p.ood_score for p in onnx_rows],
                               [p.ood_score for p in torch_rows], atol=1e-3)


@pytest.mark.realdata
def test_int8_gate_on_real_galaxies(shared_data, tmp_path) -> None:
    """The whole int8 route on real cutouts (about 25 s): a small prepared set of 240 real
    galaxies, the shipped weights quantised on its validation part and gated on its test part. The verdict is the
    gate's; what must hold regardless is that int8 answers close to float32 on real galaxies and
    that the folder, model.json and the card agree with the verdict."""
    labels = pd.read_csv(shared_data / "gz1_sdss" / "gz1_classes.csv")
    subset = pd.concat([labels[labels.CLASS == 0].head(150),
                        labels[labels.CLASS.isin([1, 2, 3])].head(90)])
    subset.to_csv(tmp_path / "labels.csv", index=False)
    prepared = prepare(PrepareRequest(images=shared_data / "gz1_sdss" / "images",
                                      out=tmp_path / "prepared", labels=tmp_path / "labels.csv",
                                      build_cache=False), Config())
    folder = _copy(SHIPPED, tmp_path)
    record = export_onnx(folder, prepared, calibration_count=36)
    int8 = record["int8"]
    gate = int8["gate"]
    assert gate["n"] == 36 and int8["calibration"]["images"] == 36
    assert gate["same_label"] >= 0.94  # at most 2 of 36 labels flip
    assert gate["mean_abs_diff_p_spiral"] < 0.02
    assert gate["ood"]["same_warning"] >= 0.94
    assert int8["kept"] == gate["passed"] == (folder / INT8_FILE).is_file()
    assert load_model(folder).meta["onnx"] == record
    assert "## ONNX Runtime" in (folder / "MODEL_CARD.md").read_text()


# --- the manual's snippet (docs/survey-scale.md; it was in the README) -------------------------
def readme_snippet() -> str:
    """The python block under the manual's "Share the model" heading."""
    text = (REPO / "docs" / "survey-scale.md").read_text(encoding="utf-8")
    start = text.index("Share the model")
    match = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    assert match, "docs/survey-scale.md: no python block after 'Share the model'"
    return match.group(1)


def _snippet_p_spiral(folder: Path, image: Path, tmp_path: Path) -> float:
    script = tmp_path / "share.py"
    script.write_text(readme_snippet())
    done = subprocess.run([sys.executable, str(script), str(folder), str(image)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = re.search(r"P\(spiral\) = ([0-9.]+)", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


def _project_p_spiral(folder: Path, image: Path) -> float:
    """What ``galaxy predict IMAGE --backend onnx --views 1`` computes for an SDSS-like cutout:
    the project's framing, one view, ONNX Runtime, prior correction and temperature."""
    from PIL import Image

    loaded = use_backend(load_model(folder), "onnx")
    frame = frame_for_model(Image.open(image).convert("RGB"), loaded.config)
    probs = infer(loaded, np.array(frame)[None], views=1).probabilities
    return float(probs[0, loaded.classes.index("spiral")])


def test_readme_snippet_needs_no_project_code() -> None:
    code = readme_snippet()
    assert "galaxy_core" not in code and "torch" not in code
    assert len([line for line in code.splitlines() if line.strip()]) <= 16


def test_readme_snippet_agrees_with_the_project_on_a_synthetic_cutout(tmp_path) -> None:
    """On a tiny model: framing (centre crop, BILINEAR and BOX resizes), normalisation, prior
    correction and temperature are the project's."""
    folder = _tiny_folder(tmp_path)
    export_fp32(load_model(folder))
    for size in (48, 160):  # 48 px crops to 24 (bilinear up), 160 to 80 (box down)
        image = tmp_path / f"cutout{size}.png"
        draw_galaxy("spiral", size, seed=size).save(image)
        shared = _snippet_p_spiral(folder, image, tmp_path)
        assert abs(shared - _project_p_spiral(folder, image)) < 1e-3
        # the comparison can tell framings apart: the same cutout shifted by 3 px answers
        # differently by far more than the tolerance
        from PIL import Image

        shifted = tmp_path / f"shifted{size}.png"
        Image.open(image).transform((size, size), Image.Transform.AFFINE,
                                    (1, 0, 3, 0, 1, 0)).save(shifted)
        assert abs(shared - _project_p_spiral(folder, shifted)) > 3e-3


@pytest.mark.realdata
def test_readme_snippet_agrees_with_the_project_on_a_real_cutout(shared_data, shipped_with_onnx,
                                                                  tmp_path) -> None:
    for image in _cutouts(shared_data, 3):
        assert abs(_snippet_p_spiral(shipped_with_onnx, image, tmp_path)
                   - _project_p_spiral(shipped_with_onnx, image)) < 1e-3
