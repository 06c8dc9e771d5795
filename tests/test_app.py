"""The dashboard under ``streamlit.testing.v1.AppTest``: every page renders without an exception,
shows its key elements, and degrades to a one-line message when the model or data is missing.

Everything is synthetic and built here: a tiny untrained resnet18 model folder (32 px input) with
an evaluation report on random logits, the synthetic galaxies of tests/conftest.py, and a
prepared dataset made from them with ``galaxy_core.data.prepare``. Locations reach the app through GALAXY_MODEL_DIR,
GALAXY_RUNS_DIR, GALAXY_DATA and GALAXY_PREPARED.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galaxy_core.data.prepared import SUMMARY
from galaxy_core.evaluate.report import REPORT_FILE
from galaxy_core.model.store import META_FILE, report_dir
from galaxy_core.train import run_folder
from tests.conftest import draw_galaxy

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
PAGES = ["pages/classify.py", "pages/evaluate.py", "pages/failures.py", "pages/train.py",
         "pages/data.py"]
TIMEOUT = 180


# --- synthetic inputs ---------------------------------------------------------------------------
def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def build_tiny_model(root: Path, image_dir: Path, images: list[str], labels: list[int]) -> Path:
    """A resnet18 model folder (untrained, 32 px) with test/val reports on random logits."""
    import torch

    from galaxy_core.config import Config
    from galaxy_core.evaluate.report import build_report, write_report
    from galaxy_core.model.build import build_model
    from galaxy_core.model.store import save_model

    torch.manual_seed(0)
    folder = root / "tiny_model"
    history = [{"epoch": e, "train_loss": 0.7 - 0.1 * e, "val_loss": 0.68 - 0.05 * e,
                "val_accuracy": 0.5 + 0.1 * e, "val_macro_f1": 0.45 + 0.1 * e, "lr": 1e-3,
                "seconds": 1.0} for e in (1, 2, 3)]
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (len(labels), 2))
    ids = [Path(name).stem for name in images]
    reports = {part: build_report(logits, np.array(labels), ids, images, temperature=1.4,
                                  logit_bias=np.zeros(2)) for part in ("test", "val")}
    test = reports["test"]["calibrated"]
    meta = {"temperature": 1.4, "logit_bias": [0.0, 0.0],
            "metrics": {"test": {**test["metrics"], "ece": test["ece"]}},
            "splits": {"accuracy": {"mean": 0.6, "std": 0.05, "values": [0.55, 0.6, 0.65]},
                       "macro_f1": {"mean": 0.5, "std": 0.04, "values": [0.46, 0.5, 0.54]}},
            "training": {"history": history, "epochs_run": 3, "n_train": 100,
                         "class_counts": {"elliptical": 74, "spiral": 26}}}
    save_model(folder, build_model("resnet18"), Config(arch="resnet18", image_size=32), meta)
    for part, report in reports.items():
        report.update(split=0, part=part, image_dir=str(image_dir))
        write_report(report_dir(folder, part), report)
    return folder


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Synthetic images (in class folders), a prepared dataset of them and a tiny model."""
    from galaxy_core.config import Config
    from galaxy_core.data.prepare import PrepareRequest, prepare

    root = tmp_path_factory.mktemp("dashboard")
    images = root / "images"
    names, labels = [], []
    for i in range(24):
        kind = "spiral" if i % 2 else "elliptical"
        rel = f"{kind}s/g{i:03d}.png"
        (images / f"{kind}s").mkdir(parents=True, exist_ok=True)
        draw_galaxy(kind, 64, seed=i).save(images / rel)
        names.append(rel)
        labels.append(1 if kind == "spiral" else 0)
    prepare(PrepareRequest(images=images, out=root / "prepared", folders=True, n_splits=2,
                           build_cache=False), Config(val_fraction=0.25, test_fraction=0.25))
    model = build_tiny_model(root, images, names, labels)
    return {"root": root, "images": images, "prepared": root / "prepared", "model": model}


@pytest.fixture
def navigation_only(monkeypatch):
    """AppTest resets Streamlit's "pages/ folder" flag before every run, so each run would start
    in the old multipage mode, where app.py is skipped and a page reruns itself through app.py
    (see dashboard.ui.require_app) and a button click is lost in that rerun. A real server
    clears the flag for good on its first st.navigation call; do the same here. The flag is a
    Streamlit internal: test_streamlit_pages_folder_flag_is_still_there fails first if it
    changes."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class NavigationPages(PagesManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", NavigationPages)


def set_env(monkeypatch, assets, tmp_path) -> dict[str, Path]:
    """Point the app at the tiny model, an empty runs folder, no real data, the tiny dataset."""
    values = {"GALAXY_MODEL_DIR": assets["model"], "GALAXY_RUNS_DIR": tmp_path / "runs",
              "GALAXY_DATA": tmp_path / "no_data", "GALAXY_PREPARED": assets["prepared"]}
    for key, value in values.items():
        monkeypatch.setenv(key, str(value))
    return values


@pytest.fixture
def env(assets, tmp_path, monkeypatch, navigation_only) -> dict[str, Path]:
    return set_env(monkeypatch, assets, tmp_path)


def app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def texts(at) -> str:
    """All visible text of the page (markdown, captions, titles, alerts, metrics)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning",
                 "error", "success"):
        parts += [str(el.value) for el in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error], [e.value for e in at.error]


# --- every page renders -------------------------------------------------------------------------
@pytest.mark.parametrize("page_file", PAGES)
def test_every_page_renders(env, page_file):
    at = app(page_file)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, "each page has a title"
    assert "tiny_model (GALAXY_MODEL_DIR)" in at.sidebar.selectbox[0].options


def test_pages_have_no_stray_strings():
    """Streamlit's magic draws every bare expression of a page script: a string meant as a
    comment (a constant's docstring) would show up on the page. Only the module docstring
    (not drawn) and function docstrings may be bare strings."""
    import ast

    for page_file in ["app.py", *PAGES]:
        tree = ast.parse((REPO / page_file).read_text())
        stray = [node.lineno for node in tree.body[1:]
                 if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                 and isinstance(node.value.value, str)]
        assert not stray, f"{page_file} lines {stray}: bare strings are drawn on the page"


def test_page_opened_first_still_gets_the_sidebar(assets, tmp_path, monkeypatch):
    """Without the test-only patch: a page run on its own (Streamlit's pages/ folder mode, as for
    the first request after a server start) reruns itself through app.py."""
    set_env(monkeypatch, assets, tmp_path)
    at = app("pages/evaluate.py")
    assert not at.exception
    assert at.sidebar.selectbox and at.sidebar.selectbox[0].label == "Model"
    assert {"Accuracy", "Macro-F1"} <= {m.label for m in at.metric}


def test_streamlit_pages_folder_flag_is_still_there():
    """The navigation_only fixture (tests only; the app itself uses st.navigation's documented
    effect) sets the internal PagesManager.uses_pages_directory. If Streamlit renames it or stops
    reading it, this fails with the reason instead of lost button clicks in other tests."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    why = ("Streamlit changed PagesManager.uses_pages_directory (streamlit/runtime/"
           "pages_manager.py), the flag the navigation_only fixture in tests/test_app.py sets to "
           "keep AppTest out of the old pages/ folder mode: rewrite that fixture")
    assert "uses_pages_directory" in vars(PagesManager), why
    assert app_test.PagesManager is PagesManager or issubclass(app_test.PagesManager,
                                                                PagesManager), why
    saved = PagesManager.uses_pages_directory
    try:
        PagesManager.uses_pages_directory = None
        PagesManager(str(REPO / "app.py"))
        assert PagesManager.uses_pages_directory is True, why  # pages/ beside app.py: old mode
        PagesManager.uses_pages_directory = False
        PagesManager(str(REPO / "app.py"))
        assert PagesManager.uses_pages_directory is False, why  # a cleared flag stays cleared
    finally:
        PagesManager.uses_pages_directory = saved


def headline(at) -> str:
    """The Classify page's answer line (the coloured heading in the 'verdict' container)."""
    lines = [m.value for m in at.main.markdown if m.value.startswith("### :")]
    assert len(lines) == 1, lines
    return lines[0]


def test_classify_upload_returns_prediction_and_gradcam(env):
    at = app()
    at.file_uploader[0].upload("spiral.png", png_bytes(draw_galaxy("spiral", 120)), "image/png")
    at.run()
    assert_clean(at)
    assert re.search(r"(Spiral \(confident|Probably (spiral|elliptical)|Unsure: perhaps "
                     r"(spiral|elliptical)|Elliptical \(confident)", headline(at))
    assert len(at.image) >= 2, "model input and Grad-CAM overlay are shown"
    assert at.get("plotly_chart"), "probability bars are drawn"
    assert any(b.label.startswith("Download result") for b in at.get("download_button"))


def model_with_validation_report(assets, tmp_path: Path) -> Path:
    """A copy of the tiny model with a validation report whose answers reach 95% accuracy above
    some p, so the pages have an acceptance threshold to show."""
    from galaxy_core.evaluate.report import build_report, write_report

    model = tmp_path / "model_with_threshold"
    shutil.copytree(assets["model"], model)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    logits = np.column_stack([-(2 * labels - 1) * rng.uniform(0, 6, 200), np.zeros(200)])
    write_report(report_dir(model, "val"), build_report(
        logits, labels, [f"g{i}" for i in range(200)], [f"{i}.png" for i in range(200)], 1.0))
    return model


def test_classify_says_whether_the_answer_clears_the_validation_threshold(env, assets, tmp_path,
                                                                         monkeypatch):
    """A model whose validation answers reach 95% accuracy above some p gets a line saying
    whether this answer clears it."""
    from galaxy_core.evaluate.report import validation_threshold

    model = model_with_validation_report(assets, tmp_path)
    threshold = validation_threshold(model, 0.95)
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(model))
    at = app()
    at.file_uploader[0].upload("spiral.png", png_bytes(draw_galaxy("spiral", 120)), "image/png")
    at.run()
    assert not at.exception
    lines = [c.value for c in at.caption if "at the 95% level" in c.value]
    if any("Unusual input" in w.value for w in at.warning):
        assert not lines  # an out-of-distribution answer gets no acceptance line
    else:
        assert len(lines) == 1 and f"p ≥ {threshold:.3f}" in lines[0]
        shown = [c.value for c in at.caption if "· P(spiral)" in c.value][0]
        p_spiral = float(re.search(r"P\(spiral\) ([\d.]+)%", shown).group(1)) / 100
        confidence = max(p_spiral, 1 - p_spiral)
        assert ("Not accepted" in lines[0]) == (confidence < threshold - 0.01) or \
            abs(confidence - threshold) < 0.01


def test_dashboard_caches_follow_a_rewritten_model_folder(tmp_path):
    """A run that finishes again into the same folder (or a re-export) must be reloaded, not
    served stale: the file stamps are part of every cache key."""
    import os

    from dashboard import models
    from galaxy_core.evaluate.report import build_report, write_report

    folder = tmp_path / "model"
    choice = models.ModelChoice("m", folder)
    rng = np.random.default_rng(0)
    for version, n in enumerate((40, 60), start=1):
        labels = rng.integers(0, 2, n)
        write_report(report_dir(folder, "test"), build_report(
            rng.normal(size=(n, 2)), labels, [f"g{i}" for i in range(n)],
            [f"{i}.png" for i in range(n)], 1.0))
        os.utime(report_dir(folder, "test") / REPORT_FILE, (version * 1000, version * 1000))
        assert models.report(choice)["n"] == n
    (folder / META_FILE).write_text('{"arch": "resnet18"}')
    os.utime(folder / META_FILE, (1000, 1000))
    assert models.read_meta(choice)["arch"] == "resnet18"
    (folder / META_FILE).write_text('{"arch": "resnet50"}')
    os.utime(folder / META_FILE, (2000, 2000))
    assert models.read_meta(choice)["arch"] == "resnet50"


def test_classify_batch_has_table_csv_and_one_line_errors(env):
    at = app()
    uploader = at.file_uploader[0]
    uploader.upload("a.png", png_bytes(draw_galaxy("spiral", 80, 1)), "image/png")
    uploader.upload("b.jpg", png_bytes(draw_galaxy("elliptical", 80, 2)), "image/jpeg")
    uploader.upload("notes.png", b"this is plainly not an image", "image/png")
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "notes.png" in errors[0] and "\n" not in errors[0]
    assert at.dataframe, "batch results table"
    assert any("CSV" in b.label for b in at.get("download_button"))
    assert "Batch: 2 classified, 1 failed" in texts(at)
    details = [s for s in at.selectbox if s.label == "Show details for"][0]
    assert details.options == ["a.png", "b.jpg"]
    details.set_value("b.jpg").run()
    assert not at.exception
    assert any(c.value.startswith("`b.jpg` · P(spiral)") for c in at.caption)


def test_classify_points_at_one_of_two_galaxies(env, assets):
    """Issue 23: a picture with two galaxies far apart gets 'Which galaxy?' with both offered;
    picking the second classifies its region exactly as that region saved as a file would be
    (the answer, the model input for Grad-CAM, and the CSV row's box); a typed box outside the
    picture is one line; 'the whole picture' goes back. A centred single galaxy is asked
    nothing. The click and the drag on the picture are the streamlit-image-coordinates
    component's, which only a browser can drive: Chromium is not installed here, so the browser
    tests (tests/test_browser.py) skip and these choices are made through the radio and the
    text field that do the same."""
    from dashboard.pointing import Pointing
    from galaxy_core.model.store import load_model
    from galaxy_core.predict.classify import classify_sources
    from tests.test_box import two_galaxies

    picture = two_galaxies()
    at = app()
    at.file_uploader[0].upload("pair.png", png_bytes(picture), "image/png").run()
    assert_clean(at)
    chooser = [r for r in at.radio if r.label == "Classify"]
    assert len(chooser) == 1, "the chooser is shown"
    offered = list(chooser[0].options)
    assert chooser[0].value == "auto" and offered[0] == "The whole picture (the page picks " \
        "galaxy 1)" and sorted(offered[1:]) in (["Galaxy 1 (left)", "Galaxy 2 (right)"],
                                                ["Galaxy 1 (right)", "Galaxy 2 (left)"])
    assert at.session_state["classify_preds"][0].box == ""

    chooser[0].set_value("2").run()
    assert_clean(at)
    want = Pointing.of(picture).candidate_box(2)
    (pred,) = at.session_state["classify_preds"]
    assert pred.box == want.text
    crop = picture.crop((want.x0, want.y0, want.x1, want.y1))
    (alone,) = classify_sources(load_model(assets["model"]), [("crop.png", png_bytes(crop))],
                                keep_inputs=True)
    assert (pred.label, pred.p_spiral, pred.ood_score) == (alone.label, alone.p_spiral,
                                                           alone.ood_score)
    assert np.array_equal(pred.model_input, alone.model_input), "Grad-CAM explains the region"
    (shown,) = at.session_state["classify_adjusted"][1]
    assert shown.box == want.text, "the CSV row records the box"

    typed = [t for t in at.text_input if t.label == "Or type a box"][0]
    typed.set_value("0,0,9999,100").run()
    assert not at.exception
    warnings = [w.value for w in at.warning if "outside" in w.value]
    assert len(warnings) == 1 and "480x240 picture" in warnings[0] and "\n" not in warnings[0]
    assert at.session_state["classify_preds"][0].box == want.text, "a bad box changes nothing"
    typed.set_value("250,20,470,220").run()
    assert_clean(at)
    assert at.session_state["classify_preds"][0].box == "250,20,470,220"
    assert [r for r in at.radio if r.label == "Classify"][0].value == "box"

    [r for r in at.radio if r.label == "Classify"][0].set_value("auto").run()
    assert_clean(at)
    assert at.session_state["classify_preds"][0].box == ""

    single = app()
    single.file_uploader[0].upload("one.png", png_bytes(draw_galaxy("elliptical", 128, seed=3)),
                                   "image/png").run()
    assert_clean(single)
    assert not [r for r in single.radio if r.label == "Classify"], "nothing to ask"


def test_classify_examples_explain_without_data(env):
    at = app()
    at.radio[0].set_value("Examples").run()
    assert not at.exception
    assert "GALAXY_DATA" in texts(at)


def test_evaluate_shows_metrics_and_plots(env):
    at = app("pages/evaluate.py")
    assert_clean(at)
    labels = {m.label for m in at.metric}
    assert {"Accuracy", "Macro-F1", "ECE", "ROC AUC"} <= labels
    charts = at.get("plotly_chart")
    assert len(charts) >= 5, "confusion matrix, reliability, ROC, coverage, spread"
    assert "Spread across splits" in texts(at)
    assert "Accepting only confident answers" in texts(at)
    report = json.loads((report_dir(env["GALAXY_MODEL_DIR"], "test") / REPORT_FILE).read_text())
    hits = [t for t, h in report["selective"]["at_accuracy"].items() if h]
    kept = [m.label for m in at.metric if m.label.startswith("Share kept at")]
    assert len(kept) == len(hits)
    assert at.dataframe, "per-class precision/recall table"


def test_evaluate_shows_each_survey_of_a_multi_survey_model(env, assets, tmp_path,
                                                             monkeypatch):
    """A report with ``by_source`` (a model trained on several surveys) gets a row per survey,
    with the figures the report's breakdown computed from its predictions."""
    import numpy as np

    from galaxy_core.evaluate.breakdown import breakdown

    model = tmp_path / "two_surveys"
    shutil.copytree(assets["model"], model)
    report_path = report_dir(model, "test") / REPORT_FILE
    report = json.loads(report_path.read_text())
    rows = report["predictions"]
    sources = ["gz1" if i % 2 else "gz2" for i in range(len(rows))]
    labels = np.array([report["classes"].index(r["true"]) for r in rows])
    p_spiral = np.array([float(r["p_spiral"]) for r in rows])
    probs = np.stack([1 - p_spiral, p_spiral], axis=1)
    report.update(breakdown(labels, probs, sources, None, report["classes"]))
    report_path.write_text(json.dumps(report))
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(model))
    at = app("pages/evaluate.py")
    assert_clean(at)
    assert "By survey" in texts(at)
    table = [d.value for d in at.dataframe if "survey" in d.value.columns][0]
    assert list(table["survey"]) == ["gz1", "gz2"]
    assert list(table["galaxies"]) == [sources.count("gz1"), sources.count("gz2")]
    gz1 = np.array(sources) == "gz1"
    right = (p_spiral >= 0.5).astype(int) == labels
    assert table["accuracy"][0] == pytest.approx(right[gz1].mean())


def test_evaluate_of_a_single_survey_model_has_no_survey_table(env):
    at = app("pages/evaluate.py")
    assert "By survey" not in texts(at)


def test_failures_gallery_and_details(env):
    at = app("pages/failures.py")
    assert_clean(at)
    assert at.image, "gallery images with Grad-CAM"
    buttons = [b for b in at.button if b.label == "Details"]
    assert buttons
    buttons[0].click().run()  # opens a dialog (its content is checked by the browser test)
    assert not at.exception
    at.button_group[0].set_value("uncertain").run()
    assert not at.exception
    cards = [m.value for m in at.markdown if "labelled **" in m.value]
    assert cards and all(":material/check:" in card for card in cards)


def _two_survey_report(assets, tmp_path) -> Path:
    """The tiny model with its test report made a two-survey one whose 'gz2' images are not on
    this machine: the first four of the report's own failure and uncertain lists are gz2's."""
    model = tmp_path / "two_surveys"
    shutil.copytree(assets["model"], model)
    report_path = report_dir(model, "test") / REPORT_FILE
    report = json.loads(report_path.read_text())
    listed = {r["objid"] for r in report["confident_failures"][:4]
              + report["uncertain_successes"][:4]}
    for row in [*report["predictions"], *report["confident_failures"],
                *report["uncertain_successes"]]:
        row["source"] = "gz2" if row["objid"] in listed else "gz1"
        row["image"] = f"{row['source']}/{row['image']}"
    report["image_dirs"] = {"gz1": str(assets["images"]), "gz2": str(tmp_path / "gz2_gone")}
    report_path.write_text(json.dumps(report))
    return model


def test_failures_shows_the_galaxies_that_are_here_when_a_survey_is_missing(
        env, assets, tmp_path, monkeypatch):
    """A fresh clone has GZ1's images and not GZ2's: the lists are made again from the galaxies
    that can be shown, instead of an empty page."""
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(_two_survey_report(assets, tmp_path)))
    at = app("pages/failures.py")
    at.segmented_control(key="failures_set").set_value("uncertain").run()
    assert_clean(at)
    assert any("The gz2 images are not on this machine" in c.value for c in at.caption), texts(at)
    assert at.image, texts(at)  # cards of gz1 galaxies
    assert not at.info, [i.value for i in at.info]  # not "No galaxies match these filters."


def test_evaluate_cell_lists_only_galaxies_that_are_here(env, assets, tmp_path, monkeypatch):
    model = _two_survey_report(assets, tmp_path)
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(model))
    at = app("pages/evaluate.py")
    assert_clean(at)
    said = [c.value for c in at.caption if "whose images are not on this machine" in c.value]
    assert said and "come from gz2" in said[0]
    listed = [d.value for d in at.dataframe if "objid" in d.value.columns][0]
    report = json.loads((report_dir(model, "test") / REPORT_FILE).read_text())
    gz1 = {r["objid"] for r in report["predictions"] if r["source"] == "gz1"}
    assert set(listed["objid"]) <= gz1


def test_failures_without_images_says_how_to_configure(env, assets, tmp_path, monkeypatch):
    model = tmp_path / "model_no_images"
    shutil.copytree(assets["model"], model)
    report_path = report_dir(model, "test") / REPORT_FILE
    report = json.loads(report_path.read_text())
    report["image_dir"] = str(tmp_path / "gone")
    report_path.write_text(json.dumps(report))
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(model))
    at = app("pages/failures.py")
    assert not at.exception
    assert any("GALAXY_DATA" in w.value for w in at.warning)


def test_data_page_funnel_samples_and_command(env):
    at = app("pages/data.py")
    assert_clean(at)
    assert at.get("plotly_chart"), "funnel"
    assert at.image, "sample grid"
    assert any("galaxy prepare" in c.value for c in at.code)


def test_data_page_without_prepared_data(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_PREPARED", str(tmp_path / "not_prepared"))
    at = app("pages/data.py")
    assert not at.exception
    assert at.warning and "galaxy prepare" in at.warning[0].value
    assert any("galaxy prepare" in c.value for c in at.code)


def test_data_page_prepares_the_dataset_in_process(env, tmp_path, monkeypatch):
    """With raw Galaxy Zoo 1 data but no prepared folder, the page offers to prepare it."""
    root = tmp_path / "raw"
    images = root / "gz1_sdss" / "images"
    images.mkdir(parents=True)
    rows = ["OBJID,CLASS"]
    for i in range(30):
        objid = 587722981741363200 + i
        leaf = (0, 1, 2, 3, 0, 4)[i % 6]  # ellipticals, three spiral leaves, an uncertain one
        rows.append(f"{objid},{leaf}")
        draw_galaxy("elliptical" if leaf == 0 else "spiral", 64, seed=100 + i).save(
            images / f"{objid}.jpeg", quality=92)
    (root / "gz1_sdss" / "gz1_classes.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "prepared_here"
    monkeypatch.setenv("GALAXY_DATA", str(root))
    monkeypatch.setenv("GALAXY_PREPARED", str(out))
    at = app("pages/data.py")
    assert not at.exception
    button = [b for b in at.button if b.label == "Prepare the dataset now"]
    assert button
    button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert (out / SUMMARY).is_file()
    assert at.get("plotly_chart"), "the funnel of the new dataset"
    assert {"Catalogue rows", "Kept elliptical", "Kept spiral"} <= {m.label for m in at.metric}


def test_no_model_anywhere_degrades_gracefully(env, tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(tmp_path / "no_model"))
    monkeypatch.setattr("galaxy_core.locations.SHIPPED_MODEL_DIR", tmp_path / "no_model")
    for page_file in PAGES:
        at = app(page_file)
        assert not at.exception, (page_file, [e.value for e in at.exception])
        assert any("No shipped model yet" in w.value for w in at.sidebar.warning)
    at = app()
    assert "train one on the Train page" in texts(at)


def test_train_page_lists_runs_and_finished_models(env, assets):
    runs = env["GALAXY_RUNS_DIR"]
    done = runs / "done"
    shutil.copytree(assets["model"], run_folder.model_dir(done))
    (done / run_folder.STATUS_FILE).write_text(json.dumps({
        "state": "finished", "epoch": 3, "epochs": 3, "step": 30, "total_steps": 30}))
    (done / run_folder.HISTORY_FILE).write_text("".join(json.dumps(
        {"epoch": e, "train_loss": 0.5, "val_loss": 0.5, "val_accuracy": 0.7,
         "val_macro_f1": 0.6, "lr": 1e-3, "seconds": 1}) + "\n" for e in (1, 2, 3)))
    broken = runs / "crashed"
    broken.mkdir()
    (broken / run_folder.STATUS_FILE).write_text(json.dumps({
        "state": "training", "pid": 2**22 + 12345, "epoch": 2, "epochs": 5}))
    at = app("pages/train.py")
    assert_clean(at)
    assert "Run done" in at.sidebar.selectbox[0].options
    assert at.dataframe, "runs overview"
    watch = at.selectbox(key="watch_run")
    assert set(watch.options) == {"done", "crashed"}
    watch.set_value("crashed").run()
    assert not at.exception
    assert any(b.label == "Resume" for b in at.button), "a dead run can be resumed"
    assert not any(b.label == "Stop" for b in at.button), "nothing to stop"


def test_train_page_shows_a_run_between_training_and_release(env, tmp_path):
    """'trained': the loop is done and the release step is about to write the model folder. A
    live run says so; a dead one (killed before the release) offers Resume to write it."""
    import os

    runs = env["GALAXY_RUNS_DIR"]
    for name, pid in (("releasing", os.getpid()), ("cut", 2**22 + 12345)):
        (runs / name).mkdir(parents=True)
        (runs / name / run_folder.STATUS_FILE).write_text(json.dumps({
            "state": "trained", "pid": pid, "epoch": 3, "epochs": 3, "step": 30,
            "total_steps": 30}))
    at = app("pages/train.py")
    assert_clean(at)
    at.selectbox(key="watch_run").set_value("releasing").run()
    assert_clean(at)
    assert any("release step" in c.value for c in at.caption)
    assert not any(b.label == "Resume" for b in at.button)
    states = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["state"]))
    assert states == {"releasing": "trained", "cut": "interrupted"}
    at.selectbox(key="watch_run").set_value("cut").run()
    assert_clean(at)
    assert any("Resume writes it" in i.value for i in at.info)
    assert any(b.label == "Resume" for b in at.button)


def test_train_page_rejects_bad_run_name(env):
    at = app("pages/train.py")
    at.text_input(key="train_name").set_value("../escape")
    [b for b in at.get("form_submit_button") if "Start" in b.label][0].click()
    at.run()
    assert not at.exception
    assert any("run names use" in e.value for e in at.error)
    assert not env["GALAXY_RUNS_DIR"].exists() or not any(env["GALAXY_RUNS_DIR"].iterdir())


@pytest.mark.slow
def test_train_page_starts_a_run_that_finishes_into_the_selector(env):
    """A real (tiny) background run: 1 epoch of resnet18 at 32 px on 24 synthetic galaxies."""
    from dashboard import training

    at = app("pages/train.py")
    at.text_input(key="train_name").set_value("tiny")
    numbers = {n.label: n for n in at.number_input}
    numbers["Epochs"].set_value(1)
    numbers["Training images (0 = all)"].set_value(16)
    numbers["Batch size"].set_value(4)
    numbers["CPU threads (0 = all)"].set_value(1)
    at.select_slider[0].set_value(32)
    [b for b in at.get("form_submit_button") if "Start" in b.label][0].click()
    at.run()
    assert not at.exception
    run_dir = env["GALAXY_RUNS_DIR"] / "tiny"
    info = training.run_info(run_dir)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and info.alive:
            time.sleep(2)
            info = training.run_info(run_dir)
        assert info.has_model, training.log_tail(run_dir, 40)
    finally:
        if info.alive:
            training.stop(info)
    at.run()
    assert not at.exception
    assert "Run tiny" in at.sidebar.selectbox[0].options


@pytest.mark.slow
def test_train_page_stops_a_run_and_offers_resume(env):
    """Start a long run, press Stop once it trains, and see it interrupted and resumable."""
    from dashboard import training

    at = app("pages/train.py")
    at.text_input(key="train_name").set_value("long")
    numbers = {n.label: n for n in at.number_input}
    numbers["Epochs"].set_value(200)
    numbers["Batch size"].set_value(4)
    numbers["CPU threads (0 = all)"].set_value(1)
    at.select_slider[0].set_value(32)
    [b for b in at.get("form_submit_button") if "Start" in b.label][0].click()
    at.run()
    run_dir = env["GALAXY_RUNS_DIR"] / "long"
    info = training.run_info(run_dir)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and info.alive and not read_log(run_dir):
            time.sleep(1)
            info = training.run_info(run_dir)
        assert info.alive and read_log(run_dir), training.log_tail(run_dir, 40)
        at.run()
        at.button(key="stop_long").click().run()
        assert not at.exception
        deadline = time.time() + 120
        while time.time() < deadline and info.alive:
            time.sleep(1)
            info = training.run_info(run_dir)
        assert not info.alive
        assert info.state == "interrupted" and info.can_resume
    finally:
        if info.alive:
            training.stop(info)
    at.run()
    assert any(b.label == "Resume" for b in at.button)


def read_log(run_dir: Path) -> list:
    """The run's per-epoch rows once the first epoch is done."""
    return run_folder.read_history(run_dir)
