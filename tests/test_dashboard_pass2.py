"""Issue 14, "Dashboard, second pass", items 3, 6 and 7, under AppTest and as plain functions.

3. Doubt is as visible as the answer (headline bands, the answer above the pictures, accepted and
   unusual columns, no labels in the example picker, the spiral-fraction control).
6. Failures draws its cards first and keeps Grad-CAM maps on disk; sort, table view, matrix
   cells, the galaxy dialog's facts; Evaluate's tooltips; app.py draws before heavy imports.
7. Train: the live step between two status writes, the Runs table redrawn live, the wording
   after a stop that kept no epoch.

The synthetic model, data and helpers are those of tests/test_app.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dashboard import verdict as words
from galaxy_core.predict.classify import Prediction
from tests.conftest import draw_galaxy
from tests.test_app import REPO, app, assert_clean, assets, env, headline, \
    model_with_validation_report, navigation_only, png_bytes, texts  # noqa: F401  (fixtures)


# --- helpers -------------------------------------------------------------------------------------
def walk(node):
    """Every element of an AppTest tree in page order (depth first)."""
    children = getattr(node, "children", None)
    if children is None:
        yield node
        return
    for key in sorted(children):
        yield from walk(children[key])


def upload(at, *files: tuple[str, bytes]):
    for name, data in files:
        at.file_uploader[0].upload(name, data, "image/png")
    return at.run()


def galaxies(n: int) -> list[tuple[str, bytes]]:
    return [(f"g{i:02d}.png", png_bytes(draw_galaxy("spiral" if i % 3 else "elliptical", 72,
                                                    seed=i))) for i in range(n)]


def batch_view(at):
    tables = [d for d in at.dataframe if "answer" in d.value.columns]
    assert len(tables) == 1
    return tables[0]


# --- item 3: the wording bands -------------------------------------------------------------------
@pytest.mark.parametrize("confidence, band, text, colour", [
    (0.999, "confident", "Spiral (confident: 99.9%)", "green"),
    (0.9, "confident", "Spiral (confident: 90%)", "green"),
    (0.8996, "probably", "Probably spiral (89%)", "yellow"),
    (0.7, "probably", "Probably spiral (70%)", "yellow"),
    (0.58, "unsure", "Unsure: perhaps spiral (57%)", "orange"),
    (0.5, "unsure", "Unsure: perhaps spiral (50%)", "orange"),
])
def test_wording_bands(confidence, band, text, colour):
    said = words.verdict("spiral", confidence)
    if abs(confidence - 0.58) < 1e-9:  # 0.58 * 100 is 57.99999... in binary: rounded down
        text = f"Unsure: perhaps spiral ({words.percent(0.58)})"
    assert (said.band, said.headline, said.colour) == (band, text, colour)
    assert said.markdown().startswith(f"### :{colour}[")
    assert words.band(confidence) == band


def test_a_flagged_input_never_gets_a_band():
    flagged = words.verdict("elliptical", 0.99, unusual=True)
    assert flagged.headline == "This does not look like a galaxy image"
    assert flagged.band == "not_galaxy" and "confident" not in flagged.headline.lower()
    assert "elliptical (99.0%)" in words.guess_line("elliptical", 0.99)


def test_percent_is_rounded_down():
    assert words.percent(0.8996) == "89%"
    assert words.percent(0.99999) == "99.9%"
    assert words.percent(0.5) == "50%"
    assert words.percent_pair(0.185) == ("19%", "81%")
    assert words.percent_pair(0.9996) == ("99.9%", "0.1%")
    assert words.percent_pair(0.5) == ("50%", "50%")


# --- item 3: the Classify page -------------------------------------------------------------------
def test_answer_comes_before_the_pictures(env):
    """On a phone the columns stack: what comes first in the page comes first on screen."""
    at = upload(app(), ("one.png", png_bytes(draw_galaxy("spiral", 120))))
    assert_clean(at)
    order = list(walk(at.main))
    first_image = next(i for i, el in enumerate(order) if el.type == "image")
    answer = next(i for i, el in enumerate(order)
                  if el.type == "markdown" and str(el.value).startswith("### :"))
    assert answer < first_image
    assert "50% spirals (each image judged alone)" in texts(at)


def test_batch_table_and_csv_have_accepted_unusual_and_prior(env, assets, tmp_path,
                                                             monkeypatch):
    """With a validation threshold the CSV gains `accepted`, and always `unusual` and
    `prior`, as `galaxy predict --prior 0.5 --accept-at 0.95` writes them (plus unusual); a
    flagged input is never accepted and its row is highlighted."""
    model = model_with_validation_report(assets, tmp_path)
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(model))
    flagged_name, framed_name = "g01.png", "g02.png"
    monkeypatch.setattr(Prediction, "unusual", property(
        lambda self: self.ok and self.source in (flagged_name, framed_name)))
    monkeypatch.setattr(Prediction, "may_be_galaxy",
                        property(lambda self: self.ok and self.source == framed_name))
    at = upload(app(), *galaxies(3))
    assert_clean(at)
    table = batch_view(at)
    view = table.value
    assert {"accepted", "unusual", "prior"} <= set(view.columns)
    row = view[view["path"] == flagged_name].iloc[0]
    assert (row["unusual"], row["accepted"], row["answer"]) == ("not like a galaxy", "no",
                                                               "not like a galaxy image")
    # the kind of unusual is said in the table as on the single-picture page
    framed = view[view["path"] == framed_name].iloc[0]
    assert (framed["unusual"], framed["accepted"]) == ("may be a galaxy", "no")
    assert set(view["unusual"]) == {"no", "may be a galaxy", "not like a galaxy"}
    assert set(view["prior"]) == {0.5}
    assert "rgba(247, 118, 142" in str(table.proto), "the unusual row is highlighted"
    csv = at.session_state["classify_adjusted"]  # what the download is built from
    assert csv[2].fraction == 0.5 and csv[2].source == "given"


def test_csv_rows_match_the_command_line():
    """The page's CSV columns: those of `galaxy predict --prior P --accept-at A`, then
    `unusual` and `box` (the region the answer is for, as `--box` takes it); a flagged answer
    is never accepted, a failed file has empty cells."""
    from galaxy_core.predict.runner import PREDICT_COLUMNS

    sure = Prediction("a.png", "spiral", 0.98, 0.02, ood_score=0.4)
    odd = Prediction("b.png", "spiral", 0.98, 0.02, ood_score=1.7)
    broken = Prediction("c.png", error="not an image")
    rows = [words.csv_row(p, 0.5, 0.9) for p in (sure, odd, broken)]
    assert list(rows[0]) == [*PREDICT_COLUMNS, "accepted", "unusual", "box"]
    assert [(r["prior"], r["accepted"], r["unusual"]) for r in rows] == [
        ("0.5000", 1, 0), ("0.5000", 0, 1), ("", "", "")]
    assert list(words.csv_row(sure, float("nan"), None)) == [*PREDICT_COLUMNS, "unusual", "box"]
    boxed = Prediction("a.png", "spiral", 0.98, 0.02, ood_score=0.4, box="10,20,110,220")
    assert words.csv_row(boxed, 0.5, None)["box"] == "10,20,110,220"
    assert words.csv_row(sure, float("nan"), None)["prior"] == ""


def test_a_flagged_input_says_so_where_the_label_would_be(env, monkeypatch):
    monkeypatch.setattr(Prediction, "unusual", property(lambda self: self.ok))
    at = upload(app(), ("photo.png", png_bytes(draw_galaxy("spiral", 120))))
    assert_clean(at)
    assert "This does not look like a galaxy image" in headline(at)
    shown = texts(at)
    assert "The network's guess, for what it is worth" in shown
    assert "Accepted at the" not in shown and "(confident" not in shown


def test_a_galaxy_framed_unlike_a_cutout_is_not_called_not_a_galaxy(env, monkeypatch):
    """Flagged for its framing only (issue 23): the headline says it may be a galaxy, the
    page says why in words and what to do, and the guess stays small and unaccepted."""
    from galaxy_core.predict import classify

    measured = classify.picture_findings

    def bright_border(*args, **kwargs):  # as a galaxy filling a press picture's frame
        scores, findings = measured(*args, **kwargs)
        return np.maximum(scores, 1.5), [["bright border"] for _ in findings]

    monkeypatch.setattr(classify, "picture_findings", bright_border)
    # a picture no other test uploads: answers are kept per picture for the server's life
    at = upload(app(), ("press.png", png_bytes(draw_galaxy("spiral", 132, seed=23))))
    assert_clean(at)
    assert "This may be a galaxy" in headline(at)
    assert "This does not look like a galaxy image" not in headline(at)
    shown = texts(at)
    assert words.FINDING_WORDS["bright border"] in shown and "wider picture" in shown
    assert "The network's guess, for what it is worth" in shown
    assert "Accepted at the" not in shown and "(confident" not in shown


def test_example_picker_does_not_give_the_answer_away(env, tmp_path, monkeypatch):
    data = tmp_path / "data"
    seed = data / "seed_examples"
    seed.mkdir(parents=True)
    draw_galaxy("spiral", 120, seed=5).save(seed / "spiral_to_test.png")
    draw_galaxy("elliptical", 120, seed=6).save(seed / "1254.png")
    (seed / "labels.csv").write_text("name,label\nspiral_to_test.png,spiral\n1254.png,"
                                     "elliptical\n")
    monkeypatch.setenv("GALAXY_DATA", str(data))
    at = app()
    at.radio[0].set_value("Examples").run()
    assert_clean(at)
    options = at.multiselect[0].options
    assert options == ["Seed example 1", "Seed example 2"]
    assert not any(w in " ".join(options) for w in ("spiral", "elliptical", "labelled"))
    order = list(walk(at.main))
    answer = next(i for i, el in enumerate(order)
                  if el.type == "markdown" and str(el.value).startswith("### :"))
    label = next(i for i, el in enumerate(order)
                 if "The example set labels it" in str(getattr(el, "value", "")))
    assert answer < label


def test_spiral_fraction_control(env):
    """Default 50% (with its one-line reason); the training mix and a number move every
    probability by Bayes' rule; the choice is shown and written to the CSV's prior column."""
    from galaxy_core.model.prior import adjust_to_prior

    at = upload(app(), *galaxies(3))
    assert_clean(at)
    control = at.selectbox(key="classify_prior")
    assert control.value == "alone"
    assert "Estimate it from this batch" not in control.options, "3 images are too few"
    assert "artefact of how the Galaxy Zoo training sets were assembled" in texts(at)
    at_half = batch_view(at).value.set_index("path")["p_spiral"]

    control.set_value("train").run()
    assert_clean(at)
    view = batch_view(at).value.set_index("path")
    assert set(view["prior"]) == {0.26}
    expected = adjust_to_prior(view["p_spiral"].to_numpy(), 0.26, 0.5)
    np.testing.assert_allclose(at_half.to_numpy(), expected, atol=2e-3)  # CSV keeps 4 decimals
    assert "26% spirals (the training mix)" in texts(at)

    at.selectbox(key="classify_prior").set_value("number").run()
    at.number_input(key="classify_prior_pct").set_value(80).run()
    assert_clean(at)
    assert set(batch_view(at).value["prior"]) == {0.8}


def test_spiral_fraction_estimated_from_a_batch(env):
    at = upload(app(), *galaxies(21))
    assert_clean(at)
    control = at.selectbox(key="classify_prior")
    assert "Estimate it from this batch" in control.options
    control.set_value("estimate").run()
    assert_clean(at)
    metric = [m for m in at.metric if m.label == "Estimated spiral fraction of this batch"]
    assert metric and "95% interval" in metric[0].delta
    used = at.session_state["classify_adjusted"][2]
    assert used.source == "estimated" and used.estimate.n == 21
    assert set(batch_view(at).value["prior"]) == {round(used.fraction, 4)}


# --- item 6: Failures ----------------------------------------------------------------------------
@pytest.fixture
def own_model(env, assets, tmp_path, monkeypatch) -> Path:
    """A copy of the tiny model (its Grad-CAM cache is written beside its report), with
    GZ1 leaf classes in a copy of the prepared table."""
    import pandas as pd

    from galaxy_core.data.prepared import KEPT_TABLE

    model = tmp_path / "model"
    shutil.copytree(assets["model"], model)
    prepared = tmp_path / "prepared"
    shutil.copytree(assets["prepared"], prepared)
    table = pd.read_csv(prepared / KEPT_TABLE, dtype={"objid": str})
    table["leaf_class"] = ["EL" if label == "elliptical" else ("CW", "ACW", "EDGE")[i % 3]
                           for i, label in enumerate(table["label"])]
    table.to_csv(prepared / KEPT_TABLE, index=False)
    monkeypatch.setenv("GALAXY_MODEL_DIR", str(model))
    monkeypatch.setenv("GALAXY_PREPARED", str(prepared))
    return model


def test_failures_maps_are_computed_once_and_kept_on_disk(own_model, monkeypatch):
    from dashboard import explain
    from galaxy_core.io_utils import orphan_temps
    from galaxy_core.model.store import report_dir

    at = app("pages/failures.py")
    assert_clean(at)
    cache = report_dir(own_model, "test") / explain.CAM_CACHE_FILE
    assert cache.is_file() and not orphan_temps(cache.parent)
    with np.load(cache) as stored:
        assert str(stored["key"]).split(":")[1] == explain.recipe()
        cards = len([b for b in at.button if b.label == "Details"])
        assert len(stored["ids"]) == cards and stored["maps"].dtype == np.uint8

    def refuse(*args, **kwargs):
        raise AssertionError("a map was computed again")

    monkeypatch.setattr(explain.cams, "gradcam_many", refuse)
    again = app("pages/failures.py")
    assert_clean(again)
    assert len(again.image) == cards


def test_map_cache_follows_the_model_stamp(own_model):
    from dashboard import explain
    from galaxy_core.model.store import META_FILE, load_model

    loaded = load_model(own_model)
    image = np.asarray(draw_galaxy("spiral", 32, seed=1))
    first = explain.report_maps(loaded, [("g1", image, 1)])
    path, key = explain.cache_path(loaded), explain.cache_key(loaded)
    assert set(explain.read_maps(path, key)) == {"g1:1"}
    np.testing.assert_allclose(explain.read_maps(path, key)["g1:1"], first["g1:1"], atol=1 / 255)
    later = time.time() + 10
    os.utime(own_model / META_FILE, (later, later))  # the model folder was rewritten
    assert explain.cache_key(loaded) != key
    assert explain.read_maps(path, explain.cache_key(loaded)) == {}


def test_failures_sort_table_and_matrix_cell(own_model):
    at = app("pages/failures.py")
    at.button_group(key="failures_set").set_value("wrong").run()
    at.selectbox(key="failures_sort").set_value("confidence_low").run()
    assert_clean(at)
    cards = [float(m.value.rsplit("(", 1)[1].rstrip("%)")) for m in at.markdown
             if "labelled **" in m.value]
    assert cards == sorted(cards) and len(cards) > 1

    at.button_group(key="failures_view").set_value("table").run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table.columns) == ["objid", "subclass", "labelled", "predicted", "confidence",
                                   "p_spiral"]
    assert list(table["confidence"]) == sorted(table["confidence"])
    assert set(table["subclass"]) <= {"elliptical", "clockwise spiral", "anticlockwise spiral",
                                      "edge-on disc"}
    assert not at.image, "the table view computes no maps"

    at.button_group(key="failures_set").set_value("cell").run()
    at.selectbox(key="failures_cell_true").set_value("spiral").run()
    at.selectbox(key="failures_cell_guess").set_value("spiral").run()
    assert_clean(at)
    cell = at.dataframe[0].value
    assert len(cell) and set(cell["labelled"]) == {"spiral"} == set(cell["predicted"])
    report = json.loads((own_model / "report_test" / "report.json").read_text())
    assert len(cell) == sum(1 for r in report["predictions"]
                            if r["true"] == r["predicted"] == "spiral")


def test_galaxy_facts_for_the_dialog(own_model):
    from dashboard import explain

    assert explain.skyserver_url("587722981741363200") == (
        "https://skyserver.sdss.org/dr16/en/tools/explore/summary.aspx?id=587722981741363200")
    assert explain.skyserver_url("g001") is None
    assert explain.skyserver_url("1 or 1=1") is None
    leaf = explain.subclasses()
    assert leaf and set(leaf.values()) <= {"EL", "CW", "ACW", "EDGE"}
    assert explain.subclass_text("CW") == "clockwise spiral (CW)"


# --- item 6: Evaluate and the first load ---------------------------------------------------------
def test_evaluate_jargon_has_tooltips(env):
    at = app("pages/evaluate.py")
    assert_clean(at)
    helps = {m.label: m.proto.help for m in at.metric}
    for label in ("Accuracy", "Balanced accuracy", "Macro-F1", "ROC AUC", "ECE"):
        assert helps.get(label), label
    assert any("Temperature scaling divides" in c.proto.help for c in at.caption)


def test_dashboard_ui_loads_no_torch():
    """dashboard.ui (imported by every page before require_app) must stay light: a bookmarked
    first request reroutes through app.py before anything loads torch."""
    probe = subprocess.run([sys.executable, "-c", "import sys, dashboard.ui; "
                            "print('torch' in sys.modules)"], cwd=REPO, capture_output=True,
                           text=True, check=True)
    assert probe.stdout.strip() == "False"


# --- item 7: Train ---------------------------------------------------------------------------------
def live_run(step: int, written: float, epoch: int = 1, epochs: int = 3, total: int = 96):
    from dashboard import training

    return training.RunInfo(name="r", path=Path("r"), alive=True, status={
        "state": "training", "epoch": epoch, "epochs": epochs, "step": step, "total_steps": total,
        "updated": written})


def test_live_step_between_two_status_writes():
    from dashboard import training

    seen: list = []
    now = 1000.0
    step, estimated = training.live_step(live_run(1, now - 15), [], seen, now)
    assert (step, estimated) == (1.0, False), "one write: no speed known yet"
    step, estimated = training.live_step(live_run(11, now), [], seen, now + 6)
    assert estimated and step == pytest.approx(15.0)  # 10 steps in 15 s, 6 s later: 4 more
    step, _ = training.live_step(live_run(11, now), [], seen, now + 600)
    assert step == 20, "never past the next write"
    rows = [{"epoch": 1, "seconds": 64.0}]  # 32 steps per epoch, 2 s each
    step, estimated = training.live_step(live_run(41, now, epoch=2), rows, [], now + 5)
    assert estimated and step == pytest.approx(43.5)
    step, _ = training.live_step(live_run(61, now, epoch=2), rows, [], now + 17)
    assert step == 64, "never past the end of the epoch"
    stopped = live_run(41, now, epoch=2)
    stopped.alive = False
    assert training.live_step(stopped, rows, [], now + 5) == (41.0, False)


def test_stopped_wording_says_whether_an_epoch_was_kept():
    from dashboard import training

    assert "nothing was kept" in training.stopped_note([])
    assert "last finished epoch" not in training.stopped_note([]).lower()
    assert training.stopped_note([{"epoch": 1}, {"epoch": 2}]).startswith("Epoch 2 is the last")
    assert training.clock(65) == "1:05" and training.clock(3725) == "1:02:05"


def test_train_page_live_run_and_a_stop_in_the_first_epoch(env):
    from galaxy_core.train import run_folder

    runs = env["GALAXY_RUNS_DIR"]
    live = runs / "live"
    live.mkdir(parents=True)
    (live / run_folder.STATUS_FILE).write_text(json.dumps({
        "state": "training", "pid": os.getpid(), "epoch": 1, "epochs": 3, "step": 11,
        "total_steps": 96, "updated": time.time() - 3}))
    (live / run_folder.LAUNCH_FILE).write_text(json.dumps({
        "state": "starting", "pid": os.getpid(), "started": time.time() - 40, "epochs": 3}))
    early = runs / "early"
    early.mkdir()
    (early / run_folder.STATUS_FILE).write_text(json.dumps({
        "state": "interrupted", "pid": 2**22 + 7, "epoch": 1, "epochs": 3, "step": 31,
        "total_steps": 96}))
    at = app("pages/train.py")
    assert_clean(at)
    states = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["state"]))
    assert states == {"live": "training", "early": "interrupted"}
    progress = at.get("progress")[0].proto.text
    assert "running for 0:4" in progress and "step 11 of 96" in progress
    at.selectbox(key="watch_run").set_value("early").run()
    assert_clean(at)
    notes = [i.value for i in at.info]
    assert any("No epoch had finished, so nothing was kept" in n for n in notes), notes
    assert not any("last finished epoch" in n for n in notes)
